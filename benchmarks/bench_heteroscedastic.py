"""Fit time of HeteroscedasticRegressor against LinearRegression on the same data.

At ``p = 20`` features and ``n = 1e5, 1e6`` rows, the heteroscedastic fit
(mean and log-variance, by maximum likelihood) is timed beside
``LinearRegression().fit`` (the mean only) in the same run; each time is
the best of ``--repeats`` fits, and peak extra memory is traced in one more.

Run ``python benchmarks/bench_heteroscedastic.py`` for the full table
(writes ``benchmarks/results/heteroscedastic.json``), or ``--quick`` for a
few-second smoke run (what CI does; writes only with ``--output-dir``).
"""

import argparse

import numpy as np
from _common import (
    REFERENCE,
    add_output_arguments,
    measure_fit,
    parse,
    print_header,
    print_row,
    result_row,
    write_results,
)
from sklearn.linear_model import LinearRegression

from skrobust import HeteroscedasticRegressor


def make_data(n_samples, n_features, seed=0):
    """Gaussian features, a linear mean and a linear log-variance."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    coef = rng.normal(size=n_features)
    var_coef = rng.normal(scale=0.5 / np.sqrt(n_features), size=n_features)
    sigma = np.exp(0.5 * (X @ var_coef - 1.0))
    y = X @ coef + 2.0 + sigma * rng.normal(size=n_samples)
    return X, y


ESTIMATORS = {
    REFERENCE: LinearRegression,
    "skrobust HeteroscedasticRegressor": HeteroscedasticRegressor,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-features", type=int, default=20)
    args = parse(parser, argv)
    sizes = [2_000, 20_000] if args.quick else [100_000, 1_000_000]
    repeats = 2 if args.quick else args.repeats
    p = args.n_features

    print_header(extra=("n_iter",))
    rows = []
    for n in sizes:
        X, y = make_data(n, p)
        reference_seconds = None
        for name, make_estimator in ESTIMATORS.items():
            outcome = measure_fit(
                lambda make_estimator=make_estimator, X=X, y=y: make_estimator().fit(
                    X, y
                ),
                repeats=repeats,
            )
            if name == REFERENCE:
                reference_seconds = outcome["seconds"]
            rows.append(
                result_row(
                    "heteroscedastic", n, p, name, outcome, reference_seconds, X.nbytes
                )
            )
            print_row(rows[-1], extra=("n_iter",))
    write_results(
        "heteroscedastic",
        "fit time, p = 20, noise standard deviation log-linear in the features",
        rows,
        quick=args.quick,
        output_dir=args.output_dir,
    )


if __name__ == "__main__":
    main()
