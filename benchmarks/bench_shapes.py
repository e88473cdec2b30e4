"""Fit time and peak memory of every estimator on data of many shapes.

Shapes (``n x p``), ordered by the number of stored entries of ``X``:
dense 1e3 x 20, 1e4 x 20, 1e5 x 20, 1e5 x 200, 2e4 x 1000, 1e6 x 20 and
1e6 x 50 (standard-normal features); a sparse CSR matrix 2e4 x 2000 with
0.5% of its entries non-zero; and a one-hot design, the output of
``ColumnTransformer`` with ``StandardScaler`` on five numeric columns and
``OneHotEncoder`` on one categorical column of 1000 levels (1e5 rows, 1005
columns, sparse). In every data set ``y`` is linear in ``X`` plus Gaussian
noise, and 10% of the targets are shifted up by 20 to 100 (gross,
one-sided errors).

Estimators: ``LinearRegression`` (the reference: every ratio is a time over
its time on the same data in the same run); skrobust's ``HuberRegressor``
and ``LogCoshRegressor`` with ``scale`` ``"joint"``, ``"mad"`` and
``"lad"``; ``QuantileRegressor`` (median) with ``solver="smooth"`` and
``"exact"``; ``HeteroscedasticRegressor``; scikit-learn's
``HuberRegressor`` and ``QuantileRegressor(alpha=0, solver="highs")``. A
scikit-learn fit is skipped when a linear extrapolation of its time on a
smaller shape of the same run exceeds ``--sklearn-limit`` seconds (60; 5
with ``--quick``), and is stopped at that limit otherwise, because those
references take minutes to hours on the large shapes. Every fit runs in a
forked process stopped after ``--timeout`` seconds.

Each time is the best of three fits (one when a fit takes over a second).
Peak extra memory is the largest allocation during one further fit, traced
by ``tracemalloc``, over the bytes of ``X`` (data, indices and index
pointers for a sparse matrix); it is left out for fits over 20 seconds.

``python benchmarks/bench_shapes.py`` runs the whole grid (about an hour on
two cores) and writes ``benchmarks/results/shapes.json``; ``--quick`` runs
the two small dense shapes only (under a minute; what CI runs).
"""

import argparse

import numpy as np
import pandas as pd
import scipy.sparse as sp
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
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import HuberRegressor as SklearnHuberRegressor
from sklearn.linear_model import LinearRegression
from sklearn.linear_model import QuantileRegressor as SklearnQuantileRegressor
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skrobust import (
    HeteroscedasticRegressor,
    HuberRegressor,
    LogCoshRegressor,
    QuantileRegressor,
)

# (design, n_samples, n_features), in increasing stored entries of X.
QUICK_SHAPES = [("dense", 1_000, 20), ("dense", 10_000, 20)]
FULL_SHAPES = QUICK_SHAPES + [
    ("sparse 0.5%", 20_000, 2_000),
    ("one-hot", 100_000, 1_005),
    ("dense", 100_000, 20),
    ("dense", 20_000, 1_000),
    ("dense", 100_000, 200),
    ("dense", 1_000_000, 20),
    ("dense", 1_000_000, 50),
]

ESTIMATORS = {
    REFERENCE: LinearRegression,
    "Huber joint": lambda: HuberRegressor(scale="joint"),
    "Huber mad": lambda: HuberRegressor(scale="mad"),
    "Huber lad": lambda: HuberRegressor(scale="lad"),
    "LogCosh joint": lambda: LogCoshRegressor(scale="joint"),
    "LogCosh mad": lambda: LogCoshRegressor(scale="mad"),
    "LogCosh lad": lambda: LogCoshRegressor(scale="lad"),
    "Quantile smooth": lambda: QuantileRegressor(solver="smooth"),
    "Quantile exact": lambda: QuantileRegressor(solver="exact"),
    "Heteroscedastic": HeteroscedasticRegressor,
    "sklearn Huber": SklearnHuberRegressor,
    "sklearn Quantile highs": lambda: SklearnQuantileRegressor(
        alpha=0.0, solver="highs"
    ),
}
SKLEARN_REFERENCES = {"sklearn Huber", "sklearn Quantile highs"}


def _gross_targets(linear_part, rng):
    y = linear_part + 1.0 + rng.standard_normal(linear_part.shape[0])
    bad = rng.random(y.shape[0]) < 0.1
    y[bad] += rng.uniform(20.0, 100.0, size=bad.sum())
    return y


def one_hot_design(n_samples, n_levels=1000, n_numeric=5, seed=0):
    """The ``ColumnTransformer`` output: scaled numeric columns and one-hot levels."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.standard_normal((n_samples, n_numeric)) * [1, 10, 100, 0.1, 1e3],
        columns=[f"x{j}" for j in range(n_numeric)],
    )
    frame["level"] = rng.integers(n_levels, size=n_samples)
    transformer = ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(frame.columns[:n_numeric])),
            ("level", OneHotEncoder(), ["level"]),
        ]
    )
    X = sp.csr_matrix(transformer.fit_transform(frame))
    effects = np.concatenate(
        [rng.standard_normal(n_numeric), rng.standard_normal(n_levels)]
    )
    return X, _gross_targets(X @ effects, rng)


def make_data(design, n_samples, n_features, seed=0):
    """``X, y`` for one shape of the grid (see the module docstring)."""
    if design == "one-hot":
        return one_hot_design(n_samples, seed=seed)
    rng = np.random.default_rng(seed)
    if design.startswith("sparse"):
        X = sp.random_array(
            (n_samples, n_features), density=0.005, format="csr", rng=rng
        )
        X.data = rng.standard_normal(X.data.shape[0])
        X = sp.csr_matrix(X)
    else:
        X = rng.standard_normal((n_samples, n_features))
    coef = rng.standard_normal(n_features)
    return X, _gross_targets(X @ coef, rng)


def stored_bytes(X):
    if sp.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


def stored_entries(X):
    return X.nnz if sp.issparse(X) else X.size


def run_shape(design, n, p, args, seconds_per_entry):
    """Rows of one shape; updates ``seconds_per_entry`` of the references."""
    X, y = make_data(design, n, p)
    entries, nbytes = stored_entries(X), stored_bytes(X)
    rows, reference_seconds = [], None
    for name, make_estimator in ESTIMATORS.items():
        limit = args.timeout
        if name in SKLEARN_REFERENCES:
            limit = args.sklearn_limit
            guess = seconds_per_entry.get(name, 0.0) * entries
            if guess > limit:
                outcome = {
                    "status": "skipped",
                    "seconds": None,
                    "note": f"estimated {guess:.0f} s from a smaller shape",
                }
                rows.append(result_row(design, n, p, name, outcome, None, nbytes))
                continue
        outcome = measure_fit(
            lambda make_estimator=make_estimator: make_estimator().fit(X, y),
            timeout=limit,
        )
        if name == REFERENCE:
            reference_seconds = outcome["seconds"]
        if name in SKLEARN_REFERENCES:
            seconds = outcome["seconds"] if outcome["status"] == "ok" else limit
            seconds_per_entry[name] = seconds / entries
        rows.append(result_row(design, n, p, name, outcome, reference_seconds, nbytes))
        print_row(rows[-1])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_arguments(parser)
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="limit of one measurement [s]"
    )
    parser.add_argument(
        "--sklearn-limit",
        type=float,
        help="scikit-learn's references are skipped or stopped beyond this [s] "
        "(default 60; 5 with --quick, so that the smoke run stays under a minute)",
    )
    args = parse(parser, argv)
    if args.sklearn_limit is None:
        args.sklearn_limit = 5.0 if args.quick else 60.0
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    print_header()
    rows, seconds_per_entry = [], {}
    for design, n, p in shapes:
        rows += run_shape(design, n, p, args, seconds_per_entry)
    write_results(
        "shapes",
        "fit time and peak memory on dense, wide, sparse and one-hot designs, "
        "10% gross outliers in y",
        rows,
        quick=args.quick,
        output_dir=args.output_dir,
    )


if __name__ == "__main__":
    main()
