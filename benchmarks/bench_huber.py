"""Fit time and memory of HuberRegressor and LogCoshRegressor against references.

Every time is the best of a few repeats, and is reported as a ratio to
``LinearRegression().fit`` on the same data in the same run, so that the
figures travel between machines. Data: ``p = 20`` features, 10% of the
targets shifted by gross one-sided errors; the features are either standard
normal ("normal") or correlated with column scales spanning 1e-3 to 1e3
("scaled").

Peak extra memory is the largest amount allocated at once during ``fit``
(numpy allocations, traced by ``tracemalloc``), as a fraction of ``X.nbytes``,
for skrobust's estimators.

Run ``python benchmarks/bench_huber.py`` (a few minutes; writes
``benchmarks/results/huber.json``), or with ``--quick`` for a smoke run on
small data (what CI runs; writes only with ``--output-dir``).
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
from sklearn.linear_model import HuberRegressor as SklearnHuber
from sklearn.linear_model import LinearRegression

from skrobust import HuberRegressor, LogCoshRegressor

N_FEATURES = 20


def make_data(n_samples, design, seed=0, n_features=N_FEATURES):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    if design == "scaled":
        mixing = np.eye(n_features) + 0.5 * rng.standard_normal(
            (n_features, n_features)
        )
        X = X @ mixing
        X *= np.logspace(-3, 3, n_features)
    coef = rng.standard_normal(n_features) / X.std(axis=0)
    y = X @ coef + 1.0 + rng.standard_normal(n_samples)
    bad = rng.random(n_samples) < 0.1
    y[bad] += rng.uniform(20.0, 100.0, size=bad.sum())
    return X, y


def statsmodels_rlm(X, y):
    import statsmodels.api as sm

    design = sm.add_constant(X)
    return sm.RLM(y, design, M=sm.robust.norms.HuberT(t=1.35)).fit()


ESTIMATORS = {
    REFERENCE: lambda X, y: LinearRegression().fit(X, y),
    "skrobust HuberRegressor": lambda X, y: HuberRegressor().fit(X, y),
    "skrobust LogCoshRegressor": lambda X, y: LogCoshRegressor().fit(X, y),
    "skrobust HuberRegressor(scale='mad')": lambda X, y: HuberRegressor(
        scale="mad"
    ).fit(X, y),
    "sklearn HuberRegressor": lambda X, y: SklearnHuber().fit(X, y),
    "statsmodels RLM(HuberT)": statsmodels_rlm,
}
SLOW = {"sklearn HuberRegressor", "statsmodels RLM(HuberT)"}


def run(sizes, repeats, slow_limit):
    print_header()
    rows = []
    for design in ["normal", "scaled"]:
        for n in sizes:
            X, y = make_data(n, design)
            # Fits of tens of milliseconds vary more between runs: more
            # repeats there, for both sides of every ratio.
            repeats_n = repeats if n >= 1_000_000 else 2 * repeats
            reference_seconds = None
            for name, fit in ESTIMATORS.items():
                if name in SLOW and n > slow_limit:
                    continue
                outcome = measure_fit(
                    lambda fit=fit, X=X, y=y: fit(X, y),
                    repeats=1 if name in SLOW else repeats_n,
                    memory=name.startswith("skrobust"),
                )
                if name == REFERENCE:
                    reference_seconds = outcome["seconds"]
                rows.append(
                    result_row(
                        design,
                        n,
                        N_FEATURES,
                        name,
                        outcome,
                        reference_seconds,
                        X.nbytes,
                    )
                )
                print_row(rows[-1])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_arguments(parser)
    args = parse(parser, argv)
    if args.quick:
        sizes, repeats, slow_limit = [2_000, 20_000], 1, 20_000
    else:
        sizes, repeats, slow_limit = [10_000, 100_000, 1_000_000], 3, 1_000_000
    rows = run(sizes, repeats, slow_limit)
    write_results(
        "huber",
        "fit time, p = 20, 10% gross outliers in y",
        rows,
        quick=args.quick,
        output_dir=args.output_dir,
    )


if __name__ == "__main__":
    main()
