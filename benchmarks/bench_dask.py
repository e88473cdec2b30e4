"""Fit time on a dask array in a two-worker LocalCluster against the numpy fit.

The data of ``bench_huber.py`` ("normal" design: ``p = 20``, 10% gross
one-sided outliers in ``y``) is fitted once in memory (numpy, in a forked
process, as every benchmark) and once as a row-chunked dask array persisted
on a ``distributed.LocalCluster`` of two worker processes with one thread
each, the client in this process. Each dask row records its time, its ratio
to ``LinearRegression`` in memory (the reference of every results file), its
ratio to the same estimator fitted in memory (``vs_in_memory``), the number
of round trips to the cluster, the largest relative difference of its
coefficients from the in-memory fit (for the exact quantile fits also the
relative difference of their objectives), and the client's peak extra
memory (``tracemalloc``) as a fraction of ``X.nbytes``.

The full run also fits with ``MALLOC_TRIM_THRESHOLD_`` unset in the
workers (see ``CONFIGURATIONS``).

Run ``python benchmarks/bench_dask.py`` (n = 2e6, nine minutes on the
loaded two-core machine; writes ``benchmarks/results/dask.json``), or
``--quick`` (n = 2e5, about a minute; writes only with ``--output-dir``);
``--n-samples 1e7`` for the issue's size; ``--estimators HuberRegressor
LogCoshRegressor`` for some rows only (then give ``--output-dir``, so as
not to replace the full results file with a partial one).
"""

import argparse
import time
import tracemalloc
import warnings

import numpy as np
from _common import (
    REFERENCE,
    add_output_arguments,
    best_time,
    measure_fit,
    parse,
    result_row,
    write_results,
)
from bench_huber import N_FEATURES, make_data
from sklearn.linear_model import LinearRegression

from skrobust import (
    HeteroscedasticRegressor,
    HuberRegressor,
    LogCoshRegressor,
    QuantileRegressor,
)
from skrobust._quantile_lp import pinball_objective

ESTIMATORS = {
    "skrobust HuberRegressor": lambda: HuberRegressor(),
    "skrobust LogCoshRegressor": lambda: LogCoshRegressor(),
    "skrobust HuberRegressor(scale='mad')": lambda: HuberRegressor(scale="mad"),
    "skrobust QuantileRegressor(solver='exact')": lambda: QuantileRegressor(
        solver="exact"
    ),
    # Not quantile=0.9: with 10% of the targets shifted up by 20 to 100, the
    # 0.9 quantile of this design is not unique (any plane in the empty gap
    # between the clean rows and the shifted ones), and the exact solver's
    # reduced problems then fail their certificates until it solves the
    # whole linear programme: minutes and gigabytes at n = 2e6, in memory
    # and (with all rows gathered) on dask.
    "skrobust QuantileRegressor(quantile=0.75, solver='exact')": lambda: (
        QuantileRegressor(quantile=0.75, solver="exact")
    ),
    "skrobust QuantileRegressor(solver='smooth')": lambda: QuantileRegressor(
        solver="smooth"
    ),
    "skrobust HeteroscedasticRegressor()": lambda: HeteroscedasticRegressor(),
    "skrobust HuberRegressor(scale='lad')": lambda: HuberRegressor(scale="lad"),
}
DESIGN = "normal"


def _coefficients(model):
    return np.append(model.coef_, model.intercept_).tolist()


def in_memory_rows(X, y, repeats):
    """Rows of the numpy fits, and their times and coefficients by name."""
    rows, seconds, coefs = [], {}, {}
    reference = measure_fit(
        lambda: LinearRegression().fit(X, y), repeats=repeats, memory=False
    )
    rows.append(
        result_row(DESIGN, X.shape[0], N_FEATURES, REFERENCE, reference, None, X.nbytes)
    )
    rows[-1]["ratio"] = 1.0 if reference["seconds"] else None
    for name, make in ESTIMATORS.items():
        outcome = measure_fit(
            lambda make=make: make().fit(X, y),
            repeats=repeats,
            memory=False,
            summary=_coefficients,
        )
        seconds[name], coefs[name] = outcome["seconds"], outcome["summary"]
        rows.append(
            result_row(
                DESIGN,
                X.shape[0],
                N_FEATURES,
                name + " (numpy)",
                outcome,
                reference["seconds"],
                X.nbytes,
            )
        )
    return rows, reference["seconds"], seconds, coefs


# Worker configurations: distributed's default, and without the
# MALLOC_TRIM_THRESHOLD_=65536 its nanny sets in every worker (which turns
# off glibc's adaptive mmap threshold: each half-megabyte temporary of a
# pass is then mapped and unmapped). The second must come first: a nanny
# writes its variables into this process's environment, where later
# clusters would inherit them.
CONFIGURATIONS = {
    "dask, 2 workers, glibc malloc": {
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None
    },
    "dask, 2 workers": {},
}


def dask_rows(X, y, repeats, chunk_rows, reference_seconds, seconds, coefs, label):
    """Rows of the dask fits on a two-worker LocalCluster."""
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    rows = []
    with (
        dask.config.set(CONFIGURATIONS[label]),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        Client(cluster),
    ):
        Xd = da.from_array(X, chunks=(chunk_rows, X.shape[1]))
        yd = da.from_array(y, chunks=(chunk_rows,))
        with warnings.catch_warnings():
            # Loading numpy data into the cluster through the graph is this
            # benchmark's way of sharing the in-memory data; dask warns that
            # it is slow (it is done once, before the timings).
            warnings.simplefilter("ignore", UserWarning)
            Xd, yd = dask.persist(Xd, yd)
            wait([Xd, yd])
        # The workers' first task imports skrobust and fills its caches: a
        # small fit first, so that the first timed estimator does not pay it.
        HuberRegressor().fit(Xd[:chunk_rows], yd[:chunk_rows])
        for name, make in ESTIMATORS.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                elapsed, model = best_time(
                    lambda make=make: make().fit(Xd, yd), repeats
                )
            tracemalloc.start()
            try:
                make().fit(Xd, yd)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            reference = np.asarray(coefs[name])
            difference = np.max(
                np.abs(np.asarray(_coefficients(model)) - reference) / np.abs(reference)
            )
            extra = {}
            if isinstance(model, QuantileRegressor):
                # The exact fits' measure of agreement: the objective.
                def objective(coef, model=model):
                    return pinball_objective(
                        X, y, coef[:-1], coef[-1], model.quantile, None, model.alpha
                    )

                f_memory = objective(reference)
                f_dask = objective(np.asarray(_coefficients(model)))
                extra["objective_rel_diff"] = float(abs(f_dask - f_memory) / f_memory)
            outcome = {
                "status": "ok",
                "seconds": elapsed,
                "peak": peak,
                "n_iter": int(model.n_iter_),
            }
            if caught:
                names = sorted({w.category.__name__ for w in caught})
                outcome["note"] = "warned: " + ", ".join(names)
            rows.append(
                result_row(
                    DESIGN,
                    X.shape[0],
                    N_FEATURES,
                    f"{name} ({label})",
                    outcome,
                    reference_seconds,
                    X.nbytes,
                    vs_in_memory=float(elapsed / seconds[name]),
                    round_trips=int(model._dask_round_trips),
                    coef_max_rel_diff=float(difference),
                    chunks=int(Xd.numblocks[0]),
                    **extra,
                )
            )
    return rows


def print_table(rows):
    print(
        f"{'estimator':<80} {'fit [s]':>8} {'/ numpy':>8} {'trips':>6} "
        f"{'coef diff':>10} {'obj diff':>9} {'client mem / X':>15}"
    )
    for r in rows:
        vs = f"{r['vs_in_memory']:.2f}" if "vs_in_memory" in r else ""
        trips = str(r.get("round_trips", ""))
        diff = f"{r['coef_max_rel_diff']:.1e}" if "coef_max_rel_diff" in r else ""
        objective = r.get("objective_rel_diff")
        objective = "" if objective is None else f"{objective:.1e}"
        memory = r["peak_memory_fraction"]
        memory = "" if memory is None else f"{memory:.4f}"
        print(
            f"{r['estimator']:<80} {r['seconds']:>8.3f} {vs:>8} {trips:>6} "
            f"{diff:>10} {objective:>9} {memory:>15}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_arguments(parser)
    parser.add_argument(
        "--n-samples",
        type=float,
        help="rows (default 2e6, 2e5 with --quick); the issue's goal is 1e7",
    )
    parser.add_argument(
        "--estimators",
        nargs="+",
        metavar="NAME",
        help="only these rows, named without 'skrobust ' (e.g. HuberRegressor "
        "LogCoshRegressor \"HuberRegressor(scale='mad')\"); default all",
    )
    args = parse(parser, argv)
    if args.estimators:
        chosen = {f"skrobust {name}" for name in args.estimators}
        unknown = chosen - set(ESTIMATORS)
        if unknown:
            parser.error(f"unknown estimators {sorted(unknown)}; see ESTIMATORS")
        for name in set(ESTIMATORS) - chosen:
            del ESTIMATORS[name]
    n, repeats = (200_000, 1) if args.quick else (2_000_000, 3)
    if args.n_samples:
        n = int(args.n_samples)
    X, y = make_data(n, DESIGN)
    start = time.perf_counter()
    rows, reference_seconds, seconds, coefs = in_memory_rows(X, y, repeats)
    # Eight chunks: four per worker. (Quick runs: distributed's defaults only.)
    labels = ["dask, 2 workers"] if args.quick else list(CONFIGURATIONS)
    for label in labels:
        rows += dask_rows(
            X, y, repeats, n // 8, reference_seconds, seconds, coefs, label
        )
    print_table(rows)
    print(f"benchmark ran {time.perf_counter() - start:.0f} s")
    write_results(
        "dask",
        f"fit time, n x p = {n:.0e} x {N_FEATURES}, 10% gross outliers in y: "
        "numpy in memory vs a dask array on a 2-worker LocalCluster",
        rows,
        quick=args.quick,
        output_dir=args.output_dir,
    )


if __name__ == "__main__":
    main()
