"""Fit time at small sizes, where fixed costs decide: skrobust against scikit-learn.

Inside a ``GridSearchCV`` loop a robust fit sees a few dozen to a few
thousand rows, and what it costs there is validation, starts and solver
overhead, not passes over ``X``. Shapes (``n x p``, standard-normal
features): 50, 200, 1000, 5000 and 10000 rows of 20 features, and 1000 rows
of 200. ``y`` is linear in ``X`` plus Gaussian noise, with 10% of the
targets shifted up by 20 to 100 (the data of ``bench_shapes.py``).

Estimators: ``LinearRegression`` (the reference of every ``ratio``);
scikit-learn's ``HuberRegressor()`` at its defaults (each row also carries
``ratio_to_sklearn_huber``, its time over this one's in the same run); and
skrobust's ``HuberRegressor`` with ``scale`` ``"joint"`` (the default),
``"mad"`` and ``1.0`` (a fixed scale), and ``LogCoshRegressor()``. The
target of issue 11 is every skrobust row below 1 in
``ratio_to_sklearn_huber``.

Each time is the best of many fits (about half a second of fitting, at
least five), in a forked process; peak extra memory is traced in one
further fit. ``python benchmarks/bench_small.py --blas-threads 1`` runs
every shape (a minute or two) and writes ``benchmarks/results/small.json``;
``--quick`` runs 50 x 20 and 1000 x 20 with fewer repeats (seconds; what CI
runs).
"""

import argparse
import time

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
from bench_shapes import make_data
from sklearn.linear_model import HuberRegressor as SklearnHuberRegressor
from sklearn.linear_model import LinearRegression

from skrobust import HuberRegressor, LogCoshRegressor

QUICK_SHAPES = [("dense", 50, 20), ("dense", 1_000, 20)]
FULL_SHAPES = [
    ("dense", 50, 20),
    ("dense", 200, 20),
    ("dense", 1_000, 20),
    ("dense", 5_000, 20),
    ("dense", 10_000, 20),
    ("dense", 1_000, 200),
]

SKLEARN_HUBER = "sklearn Huber"
ESTIMATORS = {
    REFERENCE: LinearRegression,
    SKLEARN_HUBER: SklearnHuberRegressor,
    "Huber joint": lambda: HuberRegressor(),
    "Huber mad": lambda: HuberRegressor(scale="mad"),
    "Huber scale=1": lambda: HuberRegressor(scale=1.0),
    "LogCosh joint": lambda: LogCoshRegressor(),
}


def repeats_for(fit, budget, most):
    """Fits that take about ``budget`` seconds in all (5 to ``most``)."""
    start = time.perf_counter()
    fit()
    once = max(time.perf_counter() - start, 1e-6)
    return int(min(most, max(5, budget / once)))


def run_shape(design, n, p, args):
    """Rows of one shape, with ratios to LinearRegression and to sklearn's Huber."""
    X, y = make_data(design, n, p)
    rows, seconds = [], {}
    for name, make_estimator in ESTIMATORS.items():

        def fit(make_estimator=make_estimator):
            return make_estimator().fit(X, y)

        repeats = repeats_for(fit, args.budget, 20 if args.quick else 200)
        outcome = measure_fit(fit, repeats=repeats, timeout=args.timeout)
        seconds[name] = outcome["seconds"]
        row = result_row(design, n, p, name, outcome, seconds[REFERENCE], X.nbytes)
        if outcome["seconds"] is not None and seconds.get(SKLEARN_HUBER):
            row["ratio_to_sklearn_huber"] = outcome["seconds"] / seconds[SKLEARN_HUBER]
        rows.append(row)
        print_row(row, ["ratio_to_sklearn_huber"])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_arguments(parser)
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="limit of one measurement [s]"
    )
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds of repeated fits per measurement (default 0.5; 0.05 "
        "with --quick)",
    )
    args = parse(parser, argv)
    if args.budget is None:
        args.budget = 0.05 if args.quick else 0.5
    print_header(["ratio_to_sklearn_huber"])
    rows = []
    for design, n, p in QUICK_SHAPES if args.quick else FULL_SHAPES:
        rows += run_shape(design, n, p, args)
    write_results(
        "small",
        "fit time at small sizes (fixed costs), ratios to LinearRegression and "
        "to scikit-learn's HuberRegressor, 10% gross outliers in y",
        rows,
        quick=args.quick,
        output_dir=args.output_dir,
    )


if __name__ == "__main__":
    main()
