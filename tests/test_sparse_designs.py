"""Sparse designs give the dense fit: quantile, multi-quantile, heteroscedastic.

And a wide sparse M-estimator fit holds a few times the bytes of ``X``.

The M-estimators have their own test on this design
(``test_wide_one_hot_design_sparse_equals_dense`` in ``test_mestimator.py``).
The one-hot columns sum to the intercept's column of ones, so coefficients
are not identified: predictions, objectives and likelihoods are compared.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from test_mestimator import _one_hot_design

from skrobust import (
    HeteroscedasticRegressor,
    HuberRegressor,
    MultiQuantileRegressor,
    QuantileRegressor,
)


def pinball(y, prediction, quantile):
    residuals = y - prediction
    return np.mean(np.maximum(quantile * residuals, (quantile - 1) * residuals))


@pytest.fixture(scope="module")
def one_hot():
    # 152 columns: beyond the smoothed solver's Newton limit (L-BFGS).
    return _one_hot_design(n=3000, levels=150)


@pytest.mark.parametrize("quantile", [0.25, 0.5])
def test_smoothed_quantile_sparse_equals_dense(one_hot, quantile):
    X, y = one_hot
    sparse = QuantileRegressor(quantile=quantile, solver="smooth").fit(X, y)
    dense = QuantileRegressor(quantile=quantile, solver="smooth").fit(X.toarray(), y)
    assert_allclose(sparse.predict(X), dense.predict(X), rtol=1e-8, atol=1e-8)


def test_exact_quantile_sparse_reaches_the_dense_optimum(one_hot):
    X, y = _one_hot_design(n=2000, levels=60)
    sparse = QuantileRegressor(quantile=0.75, solver="exact").fit(X, y)
    dense = QuantileRegressor(quantile=0.75, solver="exact").fit(X.toarray(), y)
    sparse_loss = pinball(y, sparse.predict(X), 0.75)
    dense_loss = pinball(y, dense.predict(X.toarray()), 0.75)
    assert sparse_loss == pytest.approx(dense_loss, rel=1e-9)


def test_multi_quantile_sparse_reaches_the_dense_objective():
    # Each level's smoothed objective is nearly flat along the effect of a
    # level with few rows near its fit, so the warm-started paths may stop
    # at predictions 1e-2 apart. The sparse fit's Newton iterations on its
    # sparse Hessian reach the dense fit's objective or a lower one (at
    # q = 0.25: 3.7e-7 above the linear programme's optimum, the dense
    # L-BFGS path 2.7e-5, both within the documented 1e-4).
    X, y = _one_hot_design(n=3000, levels=100)
    levels = (0.25, 0.5, 0.75)
    sparse = MultiQuantileRegressor(levels, solver="smooth").fit(X, y)
    dense = MultiQuantileRegressor(levels, solver="smooth").fit(X.toarray(), y)
    for j, quantile in enumerate(levels):
        sparse_loss = pinball(y, sparse.predict_quantiles(X)[:, j], quantile)
        dense_loss = pinball(y, dense.predict_quantiles(X)[:, j], quantile)
        assert sparse_loss <= dense_loss * (1 + 1e-7)


def test_heteroscedastic_sparse_equals_dense(one_hot):
    X, y = one_hot
    # The numeric columns in the variance: 310 level variances would be
    # estimated from about 20 rows each.
    sparse = HeteroscedasticRegressor(variance_features=[0, 1]).fit(X, y)
    dense = HeteroscedasticRegressor(variance_features=[0, 1]).fit(X.toarray(), y)
    mean_sparse, std_sparse = sparse.predict(X, return_std=True)
    mean_dense, std_dense = dense.predict(X.toarray(), return_std=True)
    assert_allclose(mean_sparse, mean_dense, rtol=1e-8, atol=1e-8)
    assert_allclose(std_sparse, std_dense, rtol=1e-8)
    assert sparse.log_likelihood(X, y) == pytest.approx(
        dense.log_likelihood(X.toarray(), y), rel=1e-10
    )


@pytest.mark.parametrize("scale", ["joint", "mad"])
def test_wide_sparse_fit_holds_a_few_times_x(scale):
    """No dense n_coef x n_coef matrix on a wide sparse design: the
    least-squares start from the normal equations (for the wide-design
    speed-up) formed a 2001 x 2001 Gram matrix and its factor, 65 times the
    bytes of this X; beyond 300 coefficients the start is LSQR's again."""
    import tracemalloc

    rng = np.random.default_rng(0)
    X = sp.random_array((20_000, 2_000), density=0.005, format="csr", rng=rng)
    X.data = rng.standard_normal(X.data.shape[0])
    X = sp.csr_matrix(X)
    y = X @ rng.standard_normal(2_000) + rng.standard_t(3, 20_000)
    nbytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    HuberRegressor(scale=scale).fit(X, y)
    tracemalloc.start()
    try:
        HuberRegressor(scale=scale).fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * nbytes, peak / nbytes
