"""What ``cov_type`` adds to a fit: standard errors against the fit alone.

For each estimator, at ``p = 20`` features and ``n = 1e5, 1e6`` rows (10%
gross errors in y; heteroscedastic noise for the heteroscedastic model), the
fit with each ``cov_type`` is timed beside the same fit with
``cov_type=None`` in the same run: the ratio is the cost of the standard
errors. ``QuantileRegressor(cov_type="bootstrap")`` (200 warm-started
replicates) is timed at ``1e5`` rows only. Each time is the best of
``--repeats`` fits (one when a fit takes more than a second).

Run ``python benchmarks/bench_inference.py`` for the full table (writes
``benchmarks/results/inference.json``, about ten minutes), or ``--quick``
for a smoke run (what CI does; writes only with ``--output-dir``).
"""

import argparse

import numpy as np
from _common import (
    add_output_arguments,
    measure_fit,
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-features", type=int, default=20)
    args = parse(parser, argv)
    sizes = [2_000] if args.quick else [100_000, 1_000_000]
    bootstrap_max_n = 2_000 if args.quick else 100_000
    repeats = 2 if args.quick else args.repeats
    p = args.n_features

    print_header(extra=("n_iter",))
    rows = []
    for n in sizes:
        for design, (make, cov_types) in DESIGNS.items():
            X, y = make_data(n, p, heteroscedastic=design == "Heteroscedastic")
            reference_seconds = None
            for cov_type in (None, *cov_types):
                if cov_type == "bootstrap" and n > bootstrap_max_n:
                    continue
                kwargs = {"cov_type": cov_type}
                if cov_type == "bootstrap":
                    kwargs.update(n_bootstrap=200, random_state=0)
                outcome = measure_fit(
                    lambda make=make, kwargs=kwargs, X=X, y=y: make(**kwargs).fit(X, y),
                    repeats=repeats,
                    memory=False,
                )
                label = REFERENCE if cov_type is None else f"cov_type={cov_type}"
                if cov_type is None:
                    reference_seconds = outcome["seconds"]
                rows.append(
                    result_row(
                        design, n, p, label, outcome, reference_seconds, X.nbytes
                    )
                )
                print_row(rows[-1], extra=("n_iter",))
    write_results(
        "inference",
        "fit time with cov_type over the same fit without it, p = 20",
        rows,
        quick=args.quick,
        output_dir=args.output_dir,
        reference=REFERENCE,
    )


if __name__ == "__main__":
    main()
