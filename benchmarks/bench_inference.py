"""What ``cov_type`` adds to a fit: standard errors against the fit alone.

For each estimator, at ``p = 20`` features and ``n = 1e5, 1e6`` rows (10%
gross errors in y; heteroscedastic noise for the heteroscedastic model), the
fit with each ``cov_type`` is timed beside the same fit with
``cov_type=None`` in the same run: the ratio is the cost of the standard
errors. ``QuantileRegressor(cov_type="bootstrap")`` (200 warm-started
replicates) is timed at ``1e5`` rows only.

Times are CPU seconds of this process (``time.process_time``) with one BLAS
thread unless ``--blas-threads`` says otherwise, so that other work on the
machine slows them less than wall time. The fits of one design are timed in
``--repeats`` rounds, each round fitting every ``cov_type`` once in turn,
and each keeps its best time: a fit and its reference see the same load.

Run ``python benchmarks/bench_inference.py`` for the full table (writes
``benchmarks/results/inference.json``, about ten minutes), or ``--quick``
for a smoke run (what CI does; writes only with ``--output-dir``).
``--designs`` and ``--sizes`` restrict the table (``--designs "Huber
joint" "LogCosh joint" --sizes 1e6``, say, while working on one
estimator's standard errors); such a partial run, too, writes only with
``--output-dir``, so that it never replaces the full table.
"""

import argparse
import time
import warnings

import numpy as np
from _common import (
    add_output_arguments,
    parse,
    print_header,
    print_row,
    result_row,
    write_results,
)

from skrobust import (
    HeteroscedasticRegressor,
    HuberRegressor,
    LogCoshRegressor,
    QuantileRegressor,
)

REFERENCE = "cov_type=None"

# design label -> (estimator factory, cov_type values)
DESIGNS = {
    "Huber joint": (HuberRegressor, ("H1", "H2", "H3", "sandwich")),
    "Huber mad": (
        lambda **kw: HuberRegressor(scale="mad", **kw),
        ("H1", "H2", "H3", "sandwich"),
    ),
    "LogCosh joint": (LogCoshRegressor, ("H1", "sandwich")),
    "Heteroscedastic": (
        HeteroscedasticRegressor,
        ("expected", "observed", "sandwich"),
    ),
    "Quantile 0.5": (QuantileRegressor, ("iid", "ker", "nid", "bootstrap")),
}


def make_data(n_samples, n_features, heteroscedastic, seed=0):
    """Gaussian features; 10% gross errors, or a log-linear noise scale."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    coef = rng.normal(size=n_features)
    if heteroscedastic:
        var_coef = rng.normal(scale=0.5 / np.sqrt(n_features), size=n_features)
        noise = np.exp(0.5 * (X @ var_coef - 1.0)) * rng.normal(size=n_samples)
    else:
        noise = rng.normal(size=n_samples)
        gross = rng.random(n_samples) < 0.1
        noise[gross] += rng.uniform(20, 50, size=gross.sum())
    return X, X @ coef + 2.0 + noise


def time_in_rounds(fits, repeats):
    """Best CPU time of each fit over ``repeats`` rounds of all of them in turn.

    ``fits`` maps a label to a callable returning the fitted estimator.
    Returns ``{label: outcome}`` with the keys of ``_common.measure_fit``'s
    outcomes (warnings are recorded in ``note``). A fit whose first time
    exceeds 20 s is not repeated.
    """
    best = {label: float("inf") for label in fits}
    outcomes = {}
    for round_index in range(repeats):
        for label, fit in fits.items():
            if round_index and best[label] > 20.0:
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                start = time.process_time()
                model = fit()
                best[label] = min(best[label], time.process_time() - start)
            n_iter = getattr(model, "n_iter_", None)
            names = sorted({warning.category.__name__ for warning in caught})
            outcomes[label] = {
                "status": "ok",
                "seconds": best[label],
                "peak": None,
                "n_iter": None if n_iter is None else int(np.max(n_iter)),
                "note": "warned: " + ", ".join(names) if names else None,
            }
    return outcomes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_arguments(parser)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-features", type=int, default=20)
    parser.add_argument(
        "--designs",
        nargs="+",
        choices=list(DESIGNS),
        help="time only these designs (default: all)",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=lambda text: int(float(text)),
        help="numbers of rows (default: 1e5 and 1e6; 2000 with --quick)",
    )
    parser.set_defaults(blas_threads=1)
    args = parse(parser, argv)
    sizes = [2_000] if args.quick else [100_000, 1_000_000]
    if args.sizes is not None:
        sizes = args.sizes
    designs = DESIGNS if args.designs is None else {d: DESIGNS[d] for d in args.designs}
    partial = args.designs is not None or args.sizes is not None
    bootstrap_max_n = 2_000 if args.quick else 100_000
    repeats = 2 if args.quick else args.repeats
    p = args.n_features

    print_header(extra=("n_iter",))
    rows = []
    for n in sizes:
        for design, (make, cov_types) in designs.items():
            X, y = make_data(n, p, heteroscedastic=design == "Heteroscedastic")
            fits = {}
            for cov_type in (None, *cov_types):
                if cov_type == "bootstrap" and n > bootstrap_max_n:
                    continue
                kwargs = {"cov_type": cov_type}
                if cov_type == "bootstrap":
                    kwargs.update(n_bootstrap=200, random_state=0)
                label = REFERENCE if cov_type is None else f"cov_type={cov_type}"
                fits[label] = lambda make=make, kwargs=kwargs, X=X, y=y: make(
                    **kwargs
                ).fit(X, y)
            outcomes = time_in_rounds(fits, repeats)
            reference_seconds = outcomes[REFERENCE]["seconds"]
            for label, outcome in outcomes.items():
                rows.append(
                    result_row(
                        design, n, p, label, outcome, reference_seconds, X.nbytes
                    )
                )
                print_row(rows[-1], extra=("n_iter",))
    if partial and args.output_dir is None:
        return
    write_results(
        "inference",
        "CPU time of the fit with cov_type over the same fit without it, p = 20, "
        "one BLAS thread, best of rounds",
        rows,
        quick=args.quick,
        output_dir=args.output_dir,
        reference=REFERENCE,
    )


if __name__ == "__main__":
    main()
