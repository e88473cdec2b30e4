"""Hessian-vector products of a sparse design (``skrobust._sparse_product``).

Oracle: the objective's dense Hessian formed in one pass (``hessian``).
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from test_heteroscedastic_floor import sparse_wide_data
from test_heteroscedastic_sparse import weighted_likelihood_at_random_point

from skrobust._sparse_product import SparseProducts


@pytest.mark.parametrize("var_cols", [None, [0, 3, 7], []])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_products_are_the_dense_hessian(var_cols, fit_intercept):
    """``H v`` of the heteroscedastic likelihood on a sparse design, with
    weights (some zero), the implicit centring, a subset of the columns (or
    none) in the log-variance and its penalty, against ``H @ v``."""
    X, y = sparse_wide_data(800, 60, per_row=4)
    objective, coef = weighted_likelihood_at_random_point(X, y, var_cols, fit_intercept)
    _, _, general = objective.loss_gradient_curvature(coef)
    product = SparseProducts(objective).product(general.curvature)
    hessian = objective.hessian(coef)
    for v in np.random.default_rng(3).standard_normal((3, objective.n_coef)):
        expected = hessian @ v
        assert_allclose(
            product(v), expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max()
        )
