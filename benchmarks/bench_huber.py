"""Fit time and memory of HuberRegressor and LogCoshRegressor against references.

Every time is the best of a few repeats, and is reported as a ratio to
``LinearRegression().fit`` on the same data in the same run, so that the
figures travel between machines. Data: ``p = 20`` features, 10% of the
targets shifted by gross one-sided errors; the features are either standard
normal ("normal") or correlated with column scales spanning 1e-3 to 1e3
("scaled").

Peak extra memory is the largest amount allocated at once during ``fit``
(numpy allocations, traced by ``tracemalloc``), as a fraction of ``X.nbytes``.

Run ``python benchmarks/bench_huber.py`` (about two minutes), or with
``--quick`` for a smoke run on small data (what CI runs). ``--json PATH``
also writes the rows for the documentation.
"""

import argparse
import json
import platform
import time
import tracemalloc
import warnings

import numpy as np
import scipy
import sklearn
from sklearn.linear_model import HuberRegressor as SklearnHuber
from sklearn.linear_model import LinearRegression

import skrobust
from skrobust import HuberRegressor, LogCoshRegressor


def make_data(n_samples, design, seed=0, n_features=20):
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


def best_time(fit, repeats):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fit()
        best = min(best, time.perf_counter() - start)
    return best


def peak_extra_memory(fit):
    tracemalloc.start()
    fit()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def statsmodels_rlm(X, y):
    import statsmodels.api as sm

    design = sm.add_constant(X)
    return sm.RLM(y, design, M=sm.robust.norms.HuberT(t=1.35)).fit()


def run(sizes, repeats, slow_limit):
    candidates = {
        "skrobust HuberRegressor": lambda X, y: HuberRegressor().fit(X, y),
        "skrobust LogCoshRegressor": lambda X, y: LogCoshRegressor().fit(X, y),
        "skrobust HuberRegressor(scale='mad')": lambda X, y: HuberRegressor(
            scale="mad"
        ).fit(X, y),
        "sklearn HuberRegressor": lambda X, y: SklearnHuber().fit(X, y),
        "statsmodels RLM(HuberT)": statsmodels_rlm,
    }
    slow = {"sklearn HuberRegressor", "statsmodels RLM(HuberT)"}
    rows = []
    for design in ["normal", "scaled"]:
        for n in sizes:
            X, y = make_data(n, design)
            # Fits of tens of milliseconds vary more between runs: more
            # repeats there, for both sides of every ratio.
            repeats_n = repeats if n >= 1_000_000 else 2 * repeats
            reference = best_time(
                lambda X=X, y=y: LinearRegression().fit(X, y), repeats_n
            )
            rows.append(
                _row(design, n, "sklearn LinearRegression", reference, 1.0, None)
            )
            for name, fit in candidates.items():
                if name in slow and n > slow_limit:
                    continue
                with warnings.catch_warnings():
                    # sklearn's HuberRegressor stops at max_iter=100 on the
                    # scaled design; the time is what matters here.
                    warnings.simplefilter("ignore")
                    seconds = best_time(
                        lambda fit=fit, X=X, y=y: fit(X, y),
                        1 if name in slow else repeats_n,
                    )
                memory = None
                if name.startswith("skrobust"):
                    memory = peak_extra_memory(lambda fit=fit, X=X, y=y: fit(X, y))
                    memory /= X.nbytes
                rows.append(_row(design, n, name, seconds, seconds / reference, memory))
    return rows


def _row(design, n, name, seconds, ratio, memory):
    return {
        "design": design,
        "n": n,
        "estimator": name,
        "seconds": seconds,
        "ratio": ratio,
        "peak_memory_fraction": memory,
    }


def print_table(rows):
    print(
        f"{'design':<7} {'n':>8} {'estimator':<38} {'fit [s]':>8} "
        f"{'/ LinReg':>9} {'peak mem / X':>13}"
    )
    for r in rows:
        memory = (
            ""
            if r["peak_memory_fraction"] is None
            else f"{r['peak_memory_fraction']:.3f}"
        )
        print(
            f"{r['design']:<7} {r['n']:>8} {r['estimator']:<38} {r['seconds']:>8.3f} "
            f"{r['ratio']:>9.2f} {memory:>13}"
        )


def machine():
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "skrobust": skrobust.__version__,
        "processor": platform.processor() or platform.machine(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        sizes, repeats, slow_limit = [2_000, 20_000], 1, 20_000
    else:
        sizes, repeats, slow_limit = [10_000, 100_000, 1_000_000], 3, 1_000_000
    rows = run(sizes, repeats, slow_limit)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "benchmark": "huber",
                    "description": "fit time, p = 20, 10% gross outliers in y",
                    "reference": "sklearn LinearRegression",
                    "machine": machine(),
                    "rows": rows,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
