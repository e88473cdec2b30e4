"""A 2-D y as LinearRegression takes it: each column its own robust fit.

Every estimator on the fit template (the M-estimators, quantile and
heteroscedastic regression) must give, for y of shape (n, k), exactly the
fits of the columns one at a time, stacked: ``coef_`` (k, p), ``intercept_``
(k,), per-output attributes (k,) and per-sample ones (n, k).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.linear_model import LinearRegression

from skrobust import (
    HeteroscedasticRegressor,
    HuberRegressor,
    LogCoshRegressor,
    MEstimatorRegressor,
    MultiQuantileRegressor,
    QuantileRegressor,
)

ESTIMATORS = [
    HuberRegressor(),
    HuberRegressor(scale="mad"),
    LogCoshRegressor(scale=2.0),
    MEstimatorRegressor(scale="lad"),
    QuantileRegressor(quantile=0.3),
    QuantileRegressor(solver="smooth"),
    HeteroscedasticRegressor(),
]


def make_data(n=400, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    Y = X @ rng.normal(size=(4, k)) + rng.normal(size=k) + rng.standard_t(3, (n, k))
    Y[: n // 10, 0] += 40.0
    Y[-n // 20 :, k - 1] -= 1e6
    return X, Y


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
@pytest.mark.parametrize("layout", ["dense", "sparse", "weighted"])
def test_columns_fitted_together_equal_columns_fitted_alone(estimator, layout):
    X, Y = make_data()
    weights = None
    if layout == "sparse":
        X = sp.csr_matrix(X)
    elif layout == "weighted":
        weights = np.random.default_rng(1).uniform(0.2, 3.0, len(Y))
    together = clone(estimator).fit(X, Y, sample_weight=weights)
    assert together.coef_.shape == (3, 4) and together.intercept_.shape == (3,)
    assert together.predict(X).shape == (len(Y), 3)
    for k in range(Y.shape[1]):
        alone = clone(estimator).fit(X, Y[:, k], sample_weight=weights)
        assert_allclose(together.coef_[k], alone.coef_, rtol=1e-10, atol=1e-12)
        assert_allclose(together.intercept_[k], alone.intercept_, rtol=1e-10)
        assert together.n_iter_[k] == alone.n_iter_
        for name in ("scale_", "noise_scale_", "bandwidth_", "var_intercept_"):
            if hasattr(alone, name):
                assert_allclose(getattr(together, name)[k], getattr(alone, name))
        for name in ("outliers_", "weights_"):
            if hasattr(alone, name):
                assert_allclose(getattr(together, name)[:, k], getattr(alone, name))


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
def test_a_single_column_y_gives_a_single_column_prediction(estimator):
    X, Y = make_data(k=1)
    model = clone(estimator).fit(X, Y)
    reference = LinearRegression().fit(X, Y)
    assert model.predict(X).shape == reference.predict(X).shape == (len(Y), 1)
    assert model.coef_.shape == reference.coef_.shape == (1, 4)


def test_cov_type_per_output():
    X, Y = make_data(k=2)
    together = HuberRegressor(scale="mad", cov_type="H1").fit(X, Y)
    assert together.cov_.shape == (2, 5, 5) and together.coef_se_.shape == (2, 4)
    for k in range(2):
        alone = HuberRegressor(scale="mad", cov_type="H1").fit(X, Y[:, k])
        assert_allclose(together.cov_[k], alone.cov_, rtol=1e-10)


def test_multi_quantile_refuses_a_2d_y_clearly():
    X, Y = make_data(k=2)
    with pytest.raises(ValueError, match="1-dimensional"):
        MultiQuantileRegressor().fit(X, Y)
