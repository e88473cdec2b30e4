"""Speed of MultiQuantileRegressor: many levels against one fit and against loops.

Data: ``p = 20`` standard-normal features and heteroscedastic Student-t
noise, ``y = 1 + X b + (1 + |x_0| / 2) e`` with ``e ~ t(2)``, so that the
slopes change with the level.

1. ``n = 1e5`` (``1e4`` with ``--quick``): the reference is one exact
   ``QuantileRegressor(quantile=0.5)`` fit; against it, in the same run,
   ``MultiQuantileRegressor`` with 19 levels (0.05, ..., 0.95) and with 99
   levels (0.01, ..., 0.99), exact and smoothed, and a loop of 19 separate
   exact ``QuantileRegressor`` fits. Targets: 19 exact levels in at most 4
   times the reference, 99 in at most 12 times.
2. ``n = 1e4`` (``2e3`` with ``--quick``): 19 exact levels against a loop
   of scikit-learn's ``QuantileRegressor(alpha=0, solver="highs")`` over
   the same levels (target: at least 1000 times faster).

Every multi-level row has ``objective_gap``: the largest, over the levels,
relative excess of its mean pinball loss over that of the separate exact
fit at the same level (19-level rows; 0 to rounding for the exact solver).
Times are the best of three fits (one for fits over a second) in wall time
(``seconds``, ``ratio``) and in CPU time of the fitting process
(``cpu_seconds``, ``cpu_ratio``), which other jobs on a shared machine
disturb less; the targets are read on the CPU ratios.

Run ``python benchmarks/bench_quantiles.py`` (a few minutes, most of it
scikit-learn's loop; writes ``benchmarks/results/quantiles.json``), or
``--quick`` (seconds; what CI runs; writes only with ``--output-dir``).
"""

import argparse
import time
from types import SimpleNamespace

import numpy as np
from _common import add_output_arguments, measure_fit, parse, result_row, write_results
from sklearn.linear_model import QuantileRegressor as SklearnQuantileRegressor

from skrobust import QuantileRegressor
from skrobust._multiquantile import MultiQuantileRegressor

N_FEATURES = 20
REFERENCE = "skrobust QuantileRegressor exact q=0.5"
LEVELS_19 = np.arange(1, 20) / 20
LEVELS_99 = np.arange(1, 100) / 100
DESIGN = "t(2) heteroscedastic"


def make_data(n, p, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    noise = (1.0 + 0.5 * np.abs(X[:, 0])) * rng.standard_t(2, size=n)
    return X, X @ rng.standard_normal(p) + 1.0 + noise


def loop(make, levels):
    """Fit ``make(q)`` at every level; the fits' coefficients stacked."""

    def fit(X, y):
        fits = [make(q).fit(X, y) for q in levels]
        return SimpleNamespace(
            coef_=np.array([f.coef_ for f in fits]),
            intercept_=np.array([f.intercept_ for f in fits]),
            n_iter_=np.array([getattr(f, "n_iter_", 1) for f in fits]),
        )

    return fit


def pinball_per_level(X, y, levels):
    def objectives(model):
        residual = y[:, None] - X @ model.coef_.T - model.intercept_
        return np.mean(residual * (levels - (residual < 0)), axis=0).tolist()

    return objectives


def experiment_one_fit(n):
    """Rows of experiment 1: many levels against one exact fit."""
    multi = MultiQuantileRegressor
    return [
        (REFERENCE, None, lambda X, y: QuantileRegressor(solver="exact").fit(X, y)),
        (
            "skrobust exact x19 (loop)",
            LEVELS_19,
            loop(lambda q: QuantileRegressor(quantile=q, solver="exact"), LEVELS_19),
        ),
        (
            "Multi exact 19 levels",
            LEVELS_19,
            lambda X, y: multi(LEVELS_19, solver="exact").fit(X, y),
        ),
        (
            "Multi smooth 19 levels",
            LEVELS_19,
            lambda X, y: multi(LEVELS_19, solver="smooth").fit(X, y),
        ),
        (
            "Multi exact 99 levels",
            LEVELS_99,
            lambda X, y: multi(LEVELS_99, solver="exact").fit(X, y),
        ),
    ]


def experiment_sklearn(n):
    """Rows of experiment 2: 19 levels against scikit-learn's loop."""

    def sklearn(q):
        return SklearnQuantileRegressor(quantile=q, alpha=0.0, solver="highs")

    return [
        (REFERENCE, None, lambda X, y: QuantileRegressor(solver="exact").fit(X, y)),
        (
            "skrobust exact x19 (loop)",
            LEVELS_19,
            loop(lambda q: QuantileRegressor(quantile=q, solver="exact"), LEVELS_19),
        ),
        (
            "Multi exact 19 levels",
            LEVELS_19,
            lambda X, y: MultiQuantileRegressor(LEVELS_19, solver="exact").fit(X, y),
        ),
        ("sklearn highs x19 (loop)", LEVELS_19, loop(sklearn, LEVELS_19)),
    ]


def cpu_timed(fit, X, y, objectives):
    """``fit`` and a summary with its smallest CPU time (and the objectives).

    The timed calls and the summary run in the same child process of
    :func:`measure_fit`, so the closure sees every call's CPU time.
    """
    cpu_seconds = []

    def timed():
        start = time.process_time()
        model = fit(X, y)
        cpu_seconds.append(time.process_time() - start)
        return model

    def summary(model):
        return {
            "cpu_seconds": min(cpu_seconds),
            "objectives": None if objectives is None else objectives(model),
        }

    return timed, summary


def run(n, fits):
    X, y = make_data(n, N_FEATURES)
    rows, reference, optimum = [], (None, None), None
    for name, levels, fit in fits:
        slow = name.startswith("sklearn")
        timed, summary = cpu_timed(
            fit, X, y, None if levels is None else pinball_per_level(X, y, levels)
        )
        outcome = measure_fit(
            timed, repeats=1 if slow else 3, memory=not slow, summary=summary
        )
        cpu_seconds = (outcome["summary"] or {}).get("cpu_seconds")
        if name == REFERENCE:
            reference = (outcome["seconds"], cpu_seconds)
        extra = {"cpu_seconds": cpu_seconds, "cpu_ratio": None}
        if cpu_seconds is not None and reference[1]:
            extra["cpu_ratio"] = cpu_seconds / reference[1]
        objectives = (outcome["summary"] or {}).get("objectives")
        if objectives is not None:
            extra["n_levels"] = len(levels)
            if name == "skrobust exact x19 (loop)":
                optimum = np.array(objectives)
            elif len(levels) == 19 and optimum is not None:
                gap = np.max((np.array(objectives) - optimum) / optimum)
                extra["objective_gap"] = float(gap)
        rows.append(
            result_row(
                DESIGN,
                n,
                N_FEATURES,
                name,
                outcome,
                reference[0],
                X.nbytes,
                **extra,
            )
        )
        row = rows[-1]
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.3f}"
        gap = row.get("objective_gap")
        print(
            f"{n:>8} {name:<40} {row['status']:<8} {seconds:>9} "
            f"{row['ratio'] or 0:>8.2f}x {row['cpu_ratio'] or 0:>8.2f}x "
            f"{'' if gap is None else f'{gap:.1e}':>9}",
            flush=True,
        )
    return rows


def summarise(rows):
    """The ratios the targets are about."""
    by_name = {(row["n"], row["estimator"]): row for row in rows}
    n_one, n_sklearn = sorted({row["n"] for row in rows}, reverse=True)
    for label, target in (("Multi exact 19 levels", 4), ("Multi exact 99 levels", 12)):
        row = by_name[(n_one, label)]
        print(
            f"n = {n_one}: {label}: {row['cpu_ratio']:.2f}x one exact fit in CPU "
            f"time, {row['ratio']:.2f}x in wall time (target <= {target}x)"
        )
    multi = by_name[(n_sklearn, "Multi exact 19 levels")]
    sklearn = by_name[(n_sklearn, "sklearn highs x19 (loop)")]
    if multi["cpu_seconds"] and sklearn["cpu_seconds"]:
        print(
            f"n = {n_sklearn}: 19 levels "
            f"{sklearn['cpu_seconds'] / multi['cpu_seconds']:.0f}x faster than "
            f"looping scikit-learn in CPU time, "
            f"{sklearn['seconds'] / multi['seconds']:.0f}x in wall time "
            "(target >= 1000x)"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_arguments(parser)
    args = parse(parser, argv)
    n_one, n_sklearn = (10_000, 1_000) if args.quick else (100_000, 10_000)
    print(
        f"{'n':>8} {'estimator':<40} {'status':<8} {'fit [s]':>9} "
        f"{'/ 1 fit':>9} {'CPU /1':>9} {'gap':>9}"
    )
    rows = run(n_one, experiment_one_fit(n_one))
    rows += run(n_sklearn, experiment_sklearn(n_sklearn))
    summarise(rows)
    write_results(
        "quantiles",
        "many quantile levels at once, p = 20, heteroscedastic t(2) noise",
        rows,
        quick=args.quick,
        output_dir=args.output_dir,
        reference=REFERENCE,
    )


if __name__ == "__main__":
    main()
