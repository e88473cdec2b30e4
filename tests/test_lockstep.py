"""The lock-step fit of a 2-D y: one pass over X serves every column's fit.

Each column's fit must equal fitting that column alone (the oracle here is
the estimator on ``y[:, k]``, which runs no lanes), on data large enough
that the fits make passes over ``X`` in row blocks (beyond the small
designs that are copied), dense, sparse and weighted; a failing column
must stop the fit as it does column by column.
"""

import threading
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_info

from skrobust import (
    HuberRegressor,
    LogCoshRegressor,
    MEstimatorRegressor,
    QuantileRegressor,
    _lockstep,
)
from skrobust._objective import LinearObjective
from skrobust.losses import ResidualFunction

ESTIMATORS = [
    HuberRegressor(),
    HuberRegressor(scale="mad"),
    HuberRegressor(scale=0.7),
    HuberRegressor(alpha=2.0),
    LogCoshRegressor(),
    MEstimatorRegressor(scale="lad"),
]


@pytest.fixture(autouse=True)
def lanes_on_small_data(monkeypatch):
    """Lanes from the smallest designs on, so that these small tests use them."""
    monkeypatch.setattr(_lockstep, "LANES_MIN_ELEMENTS", 0)


def make_data(n=20_000, k=3, seed=0):
    """Heavy-tailed noise, a column with 10% gross errors, one with 1e6 ones."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, 0.0, -2.0]
    Y = X @ rng.normal(size=(4, k)) + rng.normal(size=k) + rng.standard_t(3, (n, k))
    Y[: n // 10, 0] += 40.0
    Y[-n // 20 :, k - 1] -= 1e6
    return X, Y


def _layout(X, layout):
    if layout == "sparse":
        return sp.csr_matrix(X), None
    if layout == "weighted":
        return X, np.random.default_rng(1).uniform(0.2, 3.0, X.shape[0])
    return X, None


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
@pytest.mark.parametrize("layout", ["dense", "sparse", "weighted"])
def test_lanes_equal_columns_fitted_alone(estimator, layout):
    X, Y = make_data()
    X, weights = _layout(X, layout)
    together = clone(estimator).fit(X, Y, sample_weight=weights)
    for k in range(Y.shape[1]):
        alone = clone(estimator).fit(X, Y[:, k], sample_weight=weights)
        assert_allclose(together.coef_[k], alone.coef_, rtol=1e-10, atol=1e-12)
        assert_allclose(together.intercept_[k], alone.intercept_, rtol=1e-10)
        assert_allclose(together.scale_[k], alone.scale_, rtol=1e-10)
        assert_allclose(together.noise_scale_[k], alone.noise_scale_, rtol=1e-10)
        assert together.n_iter_[k] == alone.n_iter_ <= estimator.max_iter
        assert_array_equal(together.outliers_[:, k], alone.outliers_)
        assert_allclose(together.weights_[:, k], alone.weights_, rtol=1e-9)


def _count_passes(monkeypatch):
    """Count the passes over X (each reads X's row blocks once)."""
    counter = {"passes": 0}
    original = LinearObjective._row_blocks

    def counted(self, vectors_only=False):
        if self.n_samples == counter["rows"]:
            counter["passes"] += 1
        return original(self, vectors_only)

    monkeypatch.setattr(LinearObjective, "_row_blocks", counted)
    return counter


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_one_pass_over_x_serves_every_column(monkeypatch, layout):
    X, Y = make_data(k=4)
    X, _ = _layout(X, layout)
    counter = _count_passes(monkeypatch)
    counter["rows"] = X.shape[0]
    alone = []
    for k in range(Y.shape[1]):
        counter["passes"] = 0
        HuberRegressor().fit(X, Y[:, k])
        alone.append(counter["passes"])
    counter["passes"] = 0
    HuberRegressor().fit(X, Y)
    # Lanes whose solvers take the same steps share every pass; one that
    # needs more passes than the others makes them alone.
    assert counter["passes"] <= max(alone) + (sum(alone) - max(alone)) // 4
    assert counter["passes"] < sum(alone) / 2


def test_convergence_warnings_per_column_as_alone():
    X, Y = make_data()
    with warnings.catch_warnings(record=True) as alone:
        warnings.simplefilter("always")
        n_iter = [HuberRegressor(max_iter=2).fit(X, y).n_iter_ for y in Y.T]
    with warnings.catch_warnings(record=True) as together:
        warnings.simplefilter("always")
        model = HuberRegressor(max_iter=2).fit(X, Y)
    assert_array_equal(model.n_iter_, n_iter)
    assert np.all(model.n_iter_ <= 2)
    assert [w.category for w in together] == [w.category for w in alone]
    assert any(w.category is ConvergenceWarning for w in together)


def test_a_failing_column_stops_the_fit_and_its_lanes():
    X, Y = make_data()
    threads = threading.active_count()
    blas = [info["num_threads"] for info in threadpool_info()]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning):
            HuberRegressor(max_iter=2).fit(X, Y)
    assert threading.active_count() == threads
    assert [info["num_threads"] for info in threadpool_info()] == blas
    # The next fit is unaffected.
    model = HuberRegressor().fit(X, Y)
    alone = HuberRegressor().fit(X, Y[:, 1])
    assert_allclose(model.coef_[1], alone.coef_, rtol=1e-10)


@pytest.mark.parametrize("layout", ["dense", "sparse", "weighted"])
def test_smoothed_quantile_lanes_equal_columns_fitted_alone(layout):
    X, Y = make_data()
    X, weights = _layout(X, layout)
    estimator = QuantileRegressor(quantile=0.3, solver="smooth")
    together = clone(estimator).fit(X, Y, sample_weight=weights)
    for k in range(Y.shape[1]):
        alone = clone(estimator).fit(X, Y[:, k], sample_weight=weights)
        assert_allclose(together.coef_[k], alone.coef_, rtol=1e-10, atol=1e-12)
        assert_allclose(together.intercept_[k], alone.intercept_, rtol=1e-10)
        assert_allclose(together.bandwidth_[k], alone.bandwidth_, rtol=1e-10)
        assert together.n_iter_[k] == alone.n_iter_
        assert_array_equal(together.outliers_[:, k], alone.outliers_)


@pytest.mark.parametrize("scale", ["joint", "mad"])
def test_lanes_warm_start_and_covariance_as_alone(scale):
    X, Y = make_data()
    Y_next = Y + 0.1 * np.random.default_rng(2).standard_t(3, Y.shape)
    together = HuberRegressor(scale=scale, warm_start=True, cov_type="H1")
    together.fit(X, Y).fit(X, Y_next)
    for k in range(Y.shape[1]):
        alone = HuberRegressor(scale=scale, warm_start=True, cov_type="H1")
        alone.fit(X, Y[:, k]).fit(X, Y_next[:, k])
        assert_allclose(together.coef_[k], alone.coef_, rtol=1e-10, atol=1e-12)
        assert together.n_iter_[k] == alone.n_iter_
        assert_allclose(together.cov_[k], alone.cov_, rtol=1e-9)


class _BreakingRho(ResidualFunction):
    """Huber's loss (delta 1) whose derivative raises after ``after`` calls."""

    def __init__(self, after=20):
        self.after = after
        self.calls = 0

    def value(self, z):
        a = np.abs(z)
        return np.where(a <= 1.0, 0.5 * np.minimum(a, 1.0) ** 2, a - 0.5)

    def derivative(self, z):
        self.calls += 1
        if self.calls > self.after:
            raise ArithmeticError("the loss broke")
        return np.clip(z, -1.0, 1.0)

    def second_derivative(self, z):
        return (np.abs(z) <= 1.0).astype(float)


def test_an_error_in_a_shared_pass_is_raised_once():
    X, Y = make_data()
    rho = _BreakingRho()
    threads = threading.active_count()
    with pytest.raises(ArithmeticError, match="the loss broke") as caught:
        MEstimatorRegressor(rho, scale=1.0).fit(X, Y)
    assert rho.calls > rho.after
    assert threading.active_count() == threads
    # Raised by one lane, not once per lane (each raise would extend it).
    frames = 0
    traceback = caught.value.__traceback__
    while traceback is not None:
        frames, traceback = frames + 1, traceback.tb_next
    assert frames < 40
