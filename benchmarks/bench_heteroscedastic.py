"""Fit time of HeteroscedasticRegressor against LinearRegression on the same data.

The issue's target: at ``p = 20`` and ``n = 1e5, 1e6`` the heteroscedastic fit
(mean and log-variance, by maximum likelihood) takes at most five times as
long as ``LinearRegression().fit``, both timed in the same run. Each time is
the minimum of ``--repeats`` fits.

Run ``python benchmarks/bench_heteroscedastic.py`` for the full table, or
``--quick`` for a few-second smoke run (what CI does).
"""

import argparse
import time

import numpy as np
from sklearn.linear_model import LinearRegression

from skrobust import HeteroscedasticRegressor

TARGET_RATIO = 5.0


def make_data(n_samples, n_features, seed=0):
    """Gaussian features, a linear mean and a linear log-variance."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    coef = rng.normal(size=n_features)
    var_coef = rng.normal(scale=0.5 / np.sqrt(n_features), size=n_features)
    sigma = np.exp(0.5 * (X @ var_coef - 1.0))
    y = X @ coef + 2.0 + sigma * rng.normal(size=n_samples)
    return X, y


def best_time(make_estimator, X, y, repeats):
    """Minimum wall time of ``repeats`` fits, and the last fitted estimator."""
    times = []
    for _ in range(repeats):
        estimator = make_estimator()
        start = time.perf_counter()
        estimator.fit(X, y)
        times.append(time.perf_counter() - start)
    return min(times), estimator


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, a few seconds"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-features", type=int, default=20)
    args = parser.parse_args(argv)
    sizes = [2_000, 20_000] if args.quick else [100_000, 1_000_000]
    repeats = 2 if args.quick else args.repeats
    p = args.n_features

    print(
        f"{'n':>9} {'p':>3} {'LinearRegression s':>19} "
        f"{'Heteroscedastic s':>18} {'ratio':>6} {'n_iter':>6}"
    )
    ratios = []
    for n in sizes:
        X, y = make_data(n, p)
        t_ls, _ = best_time(LinearRegression, X, y, repeats)
        t_het, model = best_time(HeteroscedasticRegressor, X, y, repeats)
        ratio = t_het / t_ls
        ratios.append(ratio)
        print(
            f"{n:>9} {p:>3} {t_ls:>19.3f} {t_het:>18.3f} {ratio:>6.2f} "
            f"{model.n_iter_:>6}"
        )
    if not args.quick:
        verdict = "within" if max(ratios) <= TARGET_RATIO else "OVER"
        print(
            f"largest ratio {max(ratios):.2f}: {verdict} the {TARGET_RATIO:g}x target"
        )


if __name__ == "__main__":
    main()
