"""Fit time with several targets at once: k outputs against one (issue 14).

``y`` of shape ``(n, k)`` fits each column as its own robust fit. This
measures what ``k = 10`` outputs cost relative to one output of the same
data, for each estimator: issue 14 asks for at most 3x at ``n = 1e5``,
``p = 20``. ``X`` is standard normal; each column of ``y`` is linear in
``X`` with its own coefficients, plus Gaussian noise, with 10% of its
targets shifted up by 20 to 100 (the data of ``bench_shapes.py``).

Rows: for ``k = 1`` (design ``"1 output"``) and ``k = 10`` (``"10
outputs"``) the reference ``LinearRegression`` (one least-squares solve with
k right-hand sides), skrobust's ``HuberRegressor`` with the joint (default)
and MAD scales, ``LogCoshRegressor``, ``QuantileRegressor`` (exact, the
default) and ``HeteroscedasticRegressor``. Rows of ``k = 10`` carry
``ratio_to_one_output``: their time over the same estimator's with the
first column alone, in the same run.

Each time is the best of a few fits in a forked process. ``python
benchmarks/bench_multioutput.py --blas-threads 1`` runs ``n = 1e5`` (about
a minute) and writes ``benchmarks/results/multioutput.json``; ``--quick``
runs ``n = 1e4`` (seconds; what CI runs).
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
from bench_shapes import _gross_targets
from sklearn.linear_model import LinearRegression

from skrobust import (
    HeteroscedasticRegressor,
    HuberRegressor,
    LogCoshRegressor,
    QuantileRegressor,
)

N_OUTPUTS = 10
N_FEATURES = 20
ESTIMATORS = {
    REFERENCE: LinearRegression,
    "Huber joint": lambda: HuberRegressor(),
    "Huber mad": lambda: HuberRegressor(scale="mad"),
    "LogCosh joint": lambda: LogCoshRegressor(),
    "Quantile exact": lambda: QuantileRegressor(),
    "Heteroscedastic": lambda: HeteroscedasticRegressor(),
}


def make_data(n, p, k, seed=0):
    """``X`` and a ``y`` of ``k`` columns, each with gross errors of its own."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    Y = np.column_stack(
        [_gross_targets(X @ rng.standard_normal(p), rng) for _ in range(k)]
    )
    return X, Y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_arguments(parser)
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="limit of one measurement [s]"
    )
    args = parse(parser, argv)
    n = 10_000 if args.quick else 100_000
    X, Y = make_data(n, N_FEATURES, N_OUTPUTS)
    extra = ["ratio_to_one_output"]
    print_header(extra)
    rows, one_output = [], {}
    for design, y in [("1 output", Y[:, 0]), (f"{N_OUTPUTS} outputs", Y)]:
        reference = None
        for name, make_estimator in ESTIMATORS.items():

            def fit(make_estimator=make_estimator, y=y):
                return make_estimator().fit(X, y)

            outcome = measure_fit(
                fit, repeats=3 if args.quick else 5, timeout=args.timeout
            )
            if name == REFERENCE:
                reference = outcome["seconds"]
            row = result_row(design, n, N_FEATURES, name, outcome, reference, X.nbytes)
            row["n_outputs"] = 1 if y.ndim == 1 else y.shape[1]
            if y.ndim == 1:
                one_output[name] = outcome["seconds"]
            elif outcome["seconds"] is not None and one_output.get(name):
                row["ratio_to_one_output"] = outcome["seconds"] / one_output[name]
            rows.append(row)
            print_row(row, extra)
    write_results(
        "multioutput",
        f"fit time with {N_OUTPUTS} targets against one, ratios to "
        "LinearRegression with as many targets and to the same estimator with "
        "one target",
        rows,
        quick=args.quick,
        output_dir=args.output_dir,
    )


if __name__ == "__main__":
    main()
