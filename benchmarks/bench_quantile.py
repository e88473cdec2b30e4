"""Speed of skrobust's QuantileRegressor against scikit-learn and statsmodels.

Data: ``p = 20`` standard-normal features, Student-t (2 dof) noise, at
``n = 2e4`` and ``1e6`` rows (``2e3`` and ``2e4`` with ``--quick``). At
each size, in the same run: ``LinearRegression().fit`` (the reference of
every ratio); skrobust's ``QuantileRegressor`` with ``solver="smooth"`` and
``solver="exact"`` at quantiles 0.1, 0.5 and 0.9; scikit-learn's
``QuantileRegressor(alpha=0, solver="highs")`` (one linear programme on all
rows) at the smaller size only, as it takes minutes beyond; statsmodels'
``QuantReg`` (iteratively reweighted least squares) at the median.

Every row also has ``objective_gap``: the mean pinball loss reached, relative
to that of skrobust's exact solver at the same quantile (the LP optimum:
scikit-learn's gap is 0 to rounding). Times are the best of three fits, one
for fits over a second.

Run ``python benchmarks/bench_quantile.py`` (a few minutes; writes
``benchmarks/results/quantile.json``), or ``--quick`` (seconds; what CI runs;
writes only with ``--output-dir``).
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
from sklearn.linear_model import LinearRegression
from sklearn.linear_model import QuantileRegressor as SklearnQuantileRegressor

from skrobust import QuantileRegressor

N_FEATURES = 20
QUANTILES = (0.1, 0.5, 0.9)


def make_data(n, p, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + 1.0 + rng.standard_t(2, size=n)
    return X, y


def statsmodels_quantreg(X, y, q):
    import statsmodels.api as sm

    fit = sm.QuantReg(y, sm.add_constant(X)).fit(q=q)
    # The same attributes as the estimators, for the objective.
    fit.coef_, fit.intercept_ = fit.params[1:], fit.params[0]
    return fit


def candidates(n, sklearn_limit):
    """(label, quantile, fit(X, y)) of every fit at ``n`` rows."""
    fits = [(REFERENCE, None, lambda X, y: LinearRegression().fit(X, y))]
    for q in QUANTILES:
        for solver in ("exact", "smooth"):
            fits.append(
                (
                    f"skrobust {solver} q={q}",
                    q,
                    lambda X, y, q=q, solver=solver: QuantileRegressor(
                        quantile=q, solver=solver
                    ).fit(X, y),
                )
            )
        if n <= sklearn_limit:
            fits.append(
                (
                    f"sklearn highs q={q}",
                    q,
                    lambda X, y, q=q: SklearnQuantileRegressor(
                        quantile=q, alpha=0.0, solver="highs"
                    ).fit(X, y),
                )
            )
    fits.append(
        (
            "statsmodels QuantReg q=0.5",
            0.5,
            lambda X, y: statsmodels_quantreg(X, y, 0.5),
        )
    )
    return fits


def _pinball(X, y, q):
    def objective(model):
        residual = y - X @ model.coef_ - model.intercept_
        return float(np.mean(residual * (q - (residual < 0))))

    return objective


def run_size(n, sklearn_limit):
    X, y = make_data(n, N_FEATURES)
    rows, reference_seconds, optimum = [], None, {}
    for name, q, fit in candidates(n, sklearn_limit):
        slow = not name.startswith("skrobust") and name != REFERENCE
        outcome = measure_fit(
            lambda fit=fit: fit(X, y),
            repeats=1 if slow else 3,
            memory=name.startswith("skrobust"),
            summary=None if q is None else _pinball(X, y, q),
        )
        if name == REFERENCE:
            reference_seconds = outcome["seconds"]
        extra = {}
        if q is not None and outcome["summary"] is not None:
            if name.startswith("skrobust exact"):
                optimum[q] = outcome["summary"]
            extra = {"quantile": q, "objective": outcome["summary"]}
            extra["objective_gap"] = (outcome["summary"] - optimum[q]) / optimum[q]
        rows.append(
            result_row(
                "t(2) noise",
                n,
                N_FEATURES,
                name,
                outcome,
                reference_seconds,
                X.nbytes,
                **extra,
            )
        )
        print_row(rows[-1], extra=("objective_gap",))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_arguments(parser)
    args = parse(parser, argv)
    sizes, sklearn_limit = (
        ([2_000, 20_000], 2_000)
        if args.quick
        else (
            [20_000, 1_000_000],
            20_000,
        )
    )
    print_header(extra=("objective_gap",))
    rows = []
    for n in sizes:
        rows += run_size(n, sklearn_limit)
    write_results(
        "quantile",
        "fit time and objective gap, p = 20, Student-t (2 dof) noise",
        rows,
        quick=args.quick,
        output_dir=args.output_dir,
    )


if __name__ == "__main__":
    main()
