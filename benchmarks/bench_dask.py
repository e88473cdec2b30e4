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

Each dask fit is timed ``repeats`` times (all of them, however long),
each time right after the same fit in memory in this process (one BLAS
thread, as each worker has): on a shared machine whose load drifts, only
such interleaved times compare. The best wall time and the best CPU time
of each are kept; the dask fit's CPU time is the client's
``time.process_time`` (which includes the scheduler's, run in this
process by ``LocalCluster``) plus the workers' (``client.run``).
``vs_in_memory`` and ``cpu_vs_in_memory`` are the ratios of those bests;
the rows ``(numpy)`` are the usual forked-child measurements.

The chunks are copied on the workers before the timings: numpy data sent
through the task graph arrive at an address that is not a multiple of 8
(inside the pickled message), and passes over such misaligned chunks were
1.5-1.8x slower; data a worker reads or makes itself (zarr, parquet,
``dask.array.random``) are aligned. ``--graph-chunks`` keeps the chunks as
they arrive. ``--passes`` prints the round trips of one more fit of each
(kernel, wall time, client CPU).

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


def _best_of(fit, repeats, workers_cpu=None):
    """``(best wall time, best CPU time, last result)`` of ``repeats`` calls.

    CPU time is this process's, plus the workers' when ``workers_cpu``
    (a function returning their total CPU time so far) is given.
    """
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(repeats):
        workers_before = workers_cpu() if workers_cpu else 0.0
        start, cpu_start = time.perf_counter(), time.process_time()
        result = fit()
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        if workers_cpu:
            cpu += workers_cpu() - workers_before
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    return best_wall, best_cpu, result


def _interleaved(memory_fit, dask_fit, repeats, workers_cpu):
    """Best ``(wall, cpu)`` of each fit, alternated, and the last dask model."""
    from threadpoolctl import threadpool_limits

    memory, dask_times = [np.inf, np.inf], [np.inf, np.inf]
    model = None
    for _ in range(repeats):
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wall, cpu, _ = _best_of(memory_fit, 1)
        memory = [min(memory[0], wall), min(memory[1], cpu)]
        wall, cpu, model = _best_of(dask_fit, 1, workers_cpu)
        dask_times = [min(dask_times[0], wall), min(dask_times[1], cpu)]
    return memory, dask_times, model


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


def print_passes(fit):
    """Run ``fit()`` and print each round trip: its kernel, wall and client CPU time."""
    from skrobust import _dask_chunks

    original = _dask_chunks.ChunkedData.map_chunks
    passes = []

    def timed(data, kernel, *args, **kwargs):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = original(data, kernel, *args, **kwargs)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        passes.append((kernel.__name__, wall, cpu))
        return result

    _dask_chunks.ChunkedData.map_chunks = timed
    try:
        start = time.perf_counter()
        fit()
        total = time.perf_counter() - start
    finally:
        _dask_chunks.ChunkedData.map_chunks = original
    for kernel, wall, cpu in passes:
        print(f"    {kernel:<32} {wall:7.3f} s, client CPU {cpu:6.3f} s")
    in_passes = sum(p[1] for p in passes)
    print(f"    {len(passes)} round trips, {in_passes:.3f} s of {total:.3f} s")


def _aligned(block):
    """A copy of ``block`` in memory of its own (aligned), made on the worker."""
    return np.array(block, copy=True)


def _alignment(dask_worker):
    """The addresses of the worker's arrays modulo 64 bytes."""
    return sorted(
        {v.ctypes.data % 64 for v in dask_worker.data.values() if hasattr(v, "ctypes")}
    )


def dask_rows(
    X, y, repeats, chunk_rows, reference, coefs, label, graph_chunks=False, passes=False
):
    """Rows of the dask fits on a two-worker LocalCluster.

    ``reference`` is the in-memory ``LinearRegression`` time; ``coefs``
    maps each estimator to its in-memory coefficients.
    """
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
        if not graph_chunks:
            Xd = Xd.map_blocks(_aligned, dtype=Xd.dtype)
            yd = yd.map_blocks(_aligned, dtype=yd.dtype)
        with warnings.catch_warnings():
            # Loading numpy data into the cluster through the graph is this
            # benchmark's way of sharing the in-memory data; dask warns that
            # it is slow (it is done once, before the timings).
            warnings.simplefilter("ignore", UserWarning)
            Xd, yd = dask.persist(Xd, yd)
            wait([Xd, yd])
        client = Client.current()
        alignment = sorted({a for v in client.run(_alignment).values() for a in v})
        print(f"{label}: chunk addresses modulo 64 bytes: {alignment}")

        def workers_cpu():
            return sum(client.run(time.process_time).values())

        # The workers' first task imports skrobust and fills its caches: a
        # small fit first, so that the first timed estimator does not pay it.
        HuberRegressor().fit(Xd[:chunk_rows], yd[:chunk_rows])
        for name, make in ESTIMATORS.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                memory, (elapsed, cpu), model = _interleaved(
                    lambda make=make: make().fit(X, y),
                    lambda make=make: make().fit(Xd, yd),
                    repeats,
                    workers_cpu,
                )
            if passes:
                print(f"{name} ({label}), one more fit:")
                print_passes(lambda make=make: make().fit(Xd, yd))
            tracemalloc.start()
            try:
                make().fit(Xd, yd)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            reference_coef = np.asarray(coefs[name])
            difference = np.max(
                np.abs(np.asarray(_coefficients(model)) - reference_coef)
                / np.abs(reference_coef)
            )
            extra = {}
            if isinstance(model, QuantileRegressor):
                # The exact fits' measure of agreement: the objective.
                def objective(coef, model=model):
                    return pinball_objective(
                        X, y, coef[:-1], coef[-1], model.quantile, None, model.alpha
                    )

                f_memory = objective(reference_coef)
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
                    reference,
                    X.nbytes,
                    vs_in_memory=float(elapsed / memory[0]),
                    cpu_seconds=float(cpu),
                    cpu_vs_in_memory=float(cpu / memory[1]),
                    in_memory_seconds=float(memory[0]),
                    in_memory_cpu_seconds=float(memory[1]),
                    round_trips=int(model._dask_round_trips),
                    coef_max_rel_diff=float(difference),
                    chunks=int(Xd.numblocks[0]),
                    chunks_aligned=not graph_chunks,
                    **extra,
                )
            )
    return rows


def print_table(rows):
    print(
        f"{'estimator':<80} {'fit [s]':>8} {'/ numpy':>8} {'CPU /':>6} "
        f"{'trips':>6} {'coef diff':>10} {'obj diff':>9} {'client mem / X':>15}"
    )
    for r in rows:
        vs = f"{r['vs_in_memory']:.2f}" if "vs_in_memory" in r else ""
        cpu = f"{r['cpu_vs_in_memory']:.2f}" if "cpu_vs_in_memory" in r else ""
        trips = str(r.get("round_trips", ""))
        diff = f"{r['coef_max_rel_diff']:.1e}" if "coef_max_rel_diff" in r else ""
        objective = r.get("objective_rel_diff")
        objective = "" if objective is None else f"{objective:.1e}"
        memory = r["peak_memory_fraction"]
        memory = "" if memory is None else f"{memory:.4f}"
        print(
            f"{r['estimator']:<80} {r['seconds']:>8.3f} {vs:>8} {cpu:>6} {trips:>6} "
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
    parser.add_argument(
        "--repeats", type=int, help="timed fits of each (default 3, 1 with --quick)"
    )
    parser.add_argument(
        "--passes",
        action="store_true",
        help="also print each round trip of one more dask fit (kernel, wall "
        "time, client CPU)",
    )
    parser.add_argument(
        "--graph-chunks",
        action="store_true",
        help="time the chunks as they arrive through the graph (misaligned), "
        "not copied on the workers",
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
    if args.repeats:
        repeats = args.repeats
    X, y = make_data(n, DESIGN)
    start = time.perf_counter()
    rows, reference_seconds, seconds, coefs = in_memory_rows(X, y, repeats)
    # Eight chunks: four per worker. (Quick runs: distributed's defaults only.)
    labels = ["dask, 2 workers"] if args.quick else list(CONFIGURATIONS)
    for label in labels:
        rows += dask_rows(
            X,
            y,
            repeats,
            n // 8,
            reference_seconds,
            coefs,
            label,
            args.graph_chunks,
            args.passes,
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
