"""Hessian-vector products of a sparse design (``skrobust._sparse_product``).

Oracle: the objective's dense Hessian formed in one pass (``hessian``).
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from test_heteroscedastic_floor import sparse_wide_data

from skrobust import HeteroscedasticRegressor
from skrobust._base import least_squares_start
from skrobust._heteroscedastic import likelihood_objective
from skrobust._sparse_product import SparseProducts


@pytest.mark.parametrize("var_cols", [None, [0, 3, 7], []])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_products_are_the_dense_hessian(var_cols, fit_intercept):
    """``H v`` of the heteroscedastic likelihood on a sparse design, with
    weights (some zero), the implicit centring, a subset of the columns (or
    none) in the log-variance and its penalty, against ``H @ v``."""
    X, y = sparse_wide_data(800, 60, per_row=4)
    weights = np.random.default_rng(1).integers(0, 4, X.shape[0]).astype(float)
    estimator = HeteroscedasticRegressor(fit_intercept=fit_intercept)
    ls_objective, _, _ = least_squares_start(X, y, weights, fit_intercept, 0.0)
    columns = None if var_cols is None else np.array(var_cols, dtype=np.intp)
    objective = likelihood_objective(
        estimator, X, y, weights, columns, 1e-3, ls_objective.column_stats
    )
    coef = np.random.default_rng(2).normal(scale=0.1, size=objective.n_coef)
    _, _, general = objective.loss_gradient_curvature(coef)
    product = SparseProducts(objective).product(general.curvature)
    hessian = objective.hessian(coef)
    for v in np.random.default_rng(3).standard_normal((3, objective.n_coef)):
        expected = hessian @ v
        assert_allclose(
            product(v), expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max()
        )
