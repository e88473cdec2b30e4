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
runs). ``--shapes 1000x200`` runs only the shapes named (and, like
``--quick``, writes only with ``--output-dir``). ``--cpu-time`` measures
CPU time (``time.process_time``) in this process instead, the estimators
of a shape in turn, one fit each per round, best of the rounds (about
``--budget`` seconds per estimator): on a loaded machine a drift of the
load then reaches every estimator alike, and wall time spent waiting for
a core does not count. It traces no memory.
"""

import argparse
import time

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


def _cpu_seconds(fit):
    start = time.process_time()
    result = fit()
    return time.process_time() - start, result


def run_shape_cpu_time(design, n, p, args):
    """Rows of one shape in CPU time: the estimators in turn, best of the rounds."""
    X, y = make_data(design, n, p)
    fits = {
        name: (lambda make_estimator=make_estimator: make_estimator().fit(X, y))
        for name, make_estimator in ESTIMATORS.items()
    }
    best = dict.fromkeys(fits, float("inf"))
    models = {}
    rounds, spent = 0, 0.0
    most = 20 if args.quick else 200
    while rounds < 5 or (spent < args.budget * len(fits) and rounds < most):
        for name, fit in fits.items():
            seconds, models[name] = _cpu_seconds(fit)
            best[name] = min(best[name], seconds)
            spent += seconds
        rounds += 1
    rows = []
    for name in fits:
        n_iter = getattr(models[name], "n_iter_", None)
        outcome = {
            "status": "ok",
            "seconds": best[name],
            "peak": None,
            "n_iter": None if n_iter is None else int(max(np.ravel(n_iter))),
        }
        row = result_row(design, n, p, name, outcome, best[REFERENCE], X.nbytes)
        row["ratio_to_sklearn_huber"] = best[name] / best[SKLEARN_HUBER]
        rows.append(row)
        print_row(row, ["ratio_to_sklearn_huber"])
    return rows


def parse_shape(text):
    """``"1000x200"`` as the dense shape ``("dense", 1000, 200)``."""
    n, p = text.lower().split("x")
    return "dense", int(float(n)), int(float(p))


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
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=parse_shape,
        help="only these dense shapes, as NxP (e.g. 1000x200)",
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="CPU time in this process, estimators in turn (see the module)",
    )
    args = parse(parser, argv)
    if args.budget is None:
        args.budget = 0.05 if args.quick else 0.5
    shapes = args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES)
    measure = run_shape_cpu_time if args.cpu_time else run_shape
    print_header(["ratio_to_sklearn_huber"])
    rows = []
    for design, n, p in shapes:
        rows += measure(design, n, p, args)
    write_results(
        "small",
        "fit time at small sizes (fixed costs), ratios to LinearRegression and "
        "to scikit-learn's HuberRegressor, 10% gross outliers in y"
        + (" (CPU time, estimators in turn)" if args.cpu_time else ""),
        rows,
        # A selection of shapes is a partial run, written only on request.
        quick=args.quick or args.shapes is not None,
        output_dir=args.output_dir,
    )


if __name__ == "__main__":
    main()
