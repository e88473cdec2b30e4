"""The README demo: least squares against every skrobust estimator, with outliers.

Run ``python -m skrobust.demo`` (``--n-samples`` to change the size). It
fits :class:`sklearn.linear_model.LinearRegression` and each skrobust
estimator on the same data, 10% of whose targets carry one-sided gross
errors, and prints the error of the fitted coefficients (the Euclidean, L2,
norm of ``coef_ - coef``), of the intercept (its absolute value) and the fit
time.
"""

import argparse
import time

import numpy as np
from sklearn.linear_model import LinearRegression

import skrobust


def make_contaminated_data(n_samples=20_000, n_features=10, fraction=0.1, seed=0):
    """Linear data with Student-t noise and a fraction of gross outliers in y.

    Returns ``X, y, coef, intercept``.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    coef = rng.normal(size=n_features)
    intercept = 1.0
    y = X @ coef + intercept + rng.standard_t(df=5, size=n_samples)
    bad = rng.random(n_samples) < fraction
    y[bad] += rng.uniform(20.0, 100.0, size=bad.sum())
    return X, y, coef, intercept


def demo_estimators():
    """Name and instance of every estimator in the comparison."""
    return [("LinearRegression (sklearn)", LinearRegression())] + [
        (name, getattr(skrobust, name)()) for name in skrobust.__all__
    ]


def main(argv=None):
    """Fit every estimator on contaminated data and print a table of errors.

    The columns are the L2 norm of the coefficient error
    ``||coef_ - coef||_2``, the absolute intercept error and the fit time in
    seconds, one row per estimator of :func:`demo_estimators` (for
    :class:`~skrobust.MultiQuantileRegressor`, its median level).

    Parameters
    ----------
    argv : list of str, default=None
        Command-line arguments (``--n-samples N``); ``None`` reads
        ``sys.argv``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=20_000)
    args = parser.parse_args(argv)
    X, y, coef, intercept = make_contaminated_data(args.n_samples)
    print(
        f"n_samples={X.shape[0]}, n_features={X.shape[1]}, "
        "10% of y shifted up by 20 to 100 (noise: Student t, 5 dof)\n"
    )
    print(
        f"{'estimator':<30} {'coef L2 error':>14} {'intercept error':>16} "
        f"{'fit [s]':>8}"
    )
    for name, estimator in demo_estimators():
        start = time.perf_counter()
        estimator.fit(X, y)
        elapsed = time.perf_counter() - start
        fitted_coef, fitted_intercept = estimator.coef_, estimator.intercept_
        if np.ndim(fitted_coef) == 2:  # several quantile levels: the median's
            level = int(np.argmin(np.abs(estimator.quantiles_ - 0.5)))
            fitted_coef, fitted_intercept = fitted_coef[level], fitted_intercept[level]
        coef_error = np.linalg.norm(fitted_coef - coef)
        intercept_error = abs(fitted_intercept - intercept)
        print(
            f"{name:<30} {coef_error:>14.4f} {intercept_error:>16.4f} {elapsed:>8.3f}"
        )
    print(
        "\nHeteroscedasticRegressor fits the noise variance by Gaussian likelihood: "
        "like least\nsquares it is not robust to gross errors (it is there for "
        "error bars, see its docs)."
    )


if __name__ == "__main__":
    main()
