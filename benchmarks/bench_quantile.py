"""Speed of skrobust's QuantileRegressor against scikit-learn and statsmodels.

Two experiments, every ratio measured within one run of this script:

1. ``n = 20000, p = 20``, Student-t(2) noise, quantiles 0.1, 0.5, 0.9:
   ``solver="smooth"`` and ``solver="exact"`` against scikit-learn's
   ``QuantileRegressor(alpha=0, solver="highs")`` (one linear programme on
   all rows). Targets: smooth at least 200x faster, exact at least 50x
   faster and at the same objective value to 1e-9 relative.
2. ``n = 1e6, p = 20``: the exact fit against ``LinearRegression().fit`` on
   the same data (target: within 3x), with statsmodels' ``QuantReg`` (its
   iteratively reweighted least squares) timed beside it.

Times are the minimum of a few repeats, except for the slow reference fits
(scikit-learn's LP, statsmodels), which run once. ``--quick`` uses tiny sizes
(a few seconds; for CI, where the ratios mean little); ``--check`` exits with
status 1 if a target is missed.

Usage::

    python benchmarks/bench_quantile.py [--quick] [--check]
"""

import argparse
import sys
import time
import warnings

import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.linear_model import QuantileRegressor as SklearnQuantileRegressor

from skrobust import QuantileRegressor


def pinball_objective(X, y, coef, intercept, q):
    r = y - X @ coef - intercept
    return float(np.mean(np.where(r < 0, (q - 1.0) * r, q * r)))


def best_time(fit, repeats):
    """Minimum wall time of ``repeats`` calls of ``fit``, and its last result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - start)
    return min(times), result


def make_data(n, p, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + 1.0 + rng.standard_t(2, size=n)
    return X, y


def against_sklearn(n, p, repeats):
    X, y = make_data(n, p, seed=0)
    rows = []
    for q in (0.1, 0.5, 0.9):
        t_sk, sk = best_time(
            lambda q=q: SklearnQuantileRegressor(
                quantile=q, alpha=0.0, solver="highs"
            ).fit(X, y),
            1,
        )
        t_smooth, smooth = best_time(
            lambda q=q: QuantileRegressor(quantile=q, solver="smooth").fit(X, y),
            repeats,
        )
        t_exact, exact = best_time(
            lambda q=q: QuantileRegressor(quantile=q, solver="exact").fit(X, y),
            repeats,
        )
        f_sk = pinball_objective(X, y, sk.coef_, sk.intercept_, q)
        f_smooth = pinball_objective(X, y, smooth.coef_, smooth.intercept_, q)
        f_exact = pinball_objective(X, y, exact.coef_, exact.intercept_, q)
        rows.append(
            {
                "q": q,
                "sklearn": t_sk,
                "smooth": t_smooth,
                "exact": t_exact,
                "smooth_speedup": t_sk / t_smooth,
                "exact_speedup": t_sk / t_exact,
                "smooth_gap": (f_smooth - f_sk) / f_sk,
                "exact_gap": (f_exact - f_sk) / f_sk,
            }
        )
    return rows


def against_least_squares(n, p, repeats, statsmodels_fit):
    X, y = make_data(n, p, seed=1)
    t_ls, _ = best_time(lambda: LinearRegression().fit(X, y), repeats)
    t_exact, _ = best_time(
        lambda: QuantileRegressor(quantile=0.5, solver="exact").fit(X, y), repeats
    )
    t_sm = None
    if statsmodels_fit:
        try:
            import statsmodels.api as sm
        except ImportError:  # pragma: no cover - optional
            pass
        else:
            Xc = sm.add_constant(X)
            with warnings.catch_warnings():
                # QuantReg warns when it hits its iteration limit.
                warnings.simplefilter("ignore")
                t_sm, _ = best_time(lambda: sm.QuantReg(y, Xc).fit(q=0.5), 1)
    return {"least_squares": t_ls, "exact": t_exact, "statsmodels": t_sm}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--check", action="store_true", help="fail on a miss")
    args = parser.parse_args(argv)
    n1, n2, repeats = (2000, 20_000, 2) if args.quick else (20_000, 1_000_000, 3)
    p = 20

    print(f"1. n = {n1}, p = {p}, t(2) noise; times in seconds")
    print(
        f"{'q':>4} {'sklearn':>9} {'smooth':>8} {'exact':>8} "
        f"{'x smooth':>9} {'x exact':>8} {'smooth gap':>11} {'exact gap':>10}"
    )
    rows = against_sklearn(n1, p, repeats)
    for r in rows:
        print(
            f"{r['q']:>4} {r['sklearn']:>9.3f} {r['smooth']:>8.4f} "
            f"{r['exact']:>8.4f} {r['smooth_speedup']:>9.0f} "
            f"{r['exact_speedup']:>8.0f} {r['smooth_gap']:>11.1e} "
            f"{r['exact_gap']:>10.1e}"
        )
    print(
        "   (gap: relative pinball objective above scikit-learn's LP optimum; "
        "targets: smooth >= 200x, exact >= 50x with |gap| <= 1e-9)"
    )

    print(f"\n2. n = {n2}, p = {p}, q = 0.5; times in seconds")
    big = against_least_squares(n2, p, repeats, statsmodels_fit=True)
    ratio = big["exact"] / big["least_squares"]
    sm_text = "n/a" if big["statsmodels"] is None else f"{big['statsmodels']:.2f}"
    print(
        f"   LinearRegression {big['least_squares']:.3f}   exact "
        f"{big['exact']:.3f} ({ratio:.2f}x; target <= 3x)   "
        f"statsmodels QuantReg {sm_text}"
    )

    met = (
        all(r["smooth_speedup"] >= 200 for r in rows)
        and all(r["exact_speedup"] >= 50 for r in rows)
        and all(abs(r["exact_gap"]) <= 1e-9 for r in rows)
        and ratio <= 3.0
    )
    print(f"\nall targets met: {met}" + (" (quick sizes)" if args.quick else ""))
    if args.check and not met:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
