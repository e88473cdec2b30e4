"""A joint scale collapsing to zero on dask: the in-memory boundary fit.

With most rows on one plane, the concomitant-scale objective is smallest
at ``sigma = 0``, where the fit is the exact least-absolute-deviation fit
(Newton's method only approaches it). The in-memory fit solves that
boundary exactly and checks its optimality; the dask fit does the same
with a dask exact LAD fit and a distributed optimality test. The in-memory
fit is the oracle.
"""

import dask.array as da
import numpy as np
import pytest
from _dask_data import CHUNKS, plane_data

from skrobust import HuberRegressor, LogCoshRegressor, _dask_joint_boundary

pytestmark = pytest.mark.usefixtures("small_dask_sample")


@pytest.fixture(params=["fetched", "from-sums"])
def certificate(request, monkeypatch):
    """The exact rows fetched (as in memory), or the certificate from p x p sums.

    With no row allowed to come to the client, the certificates use the
    minimum-norm solution from the sums of the ~2 100 exact rows.
    """
    if request.param == "from-sums":
        monkeypatch.setattr(_dask_joint_boundary, "EXACT_ROWS_FETCHED", 0)
    return request.param


@pytest.mark.parametrize("estimator", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize("weighted", [False, True])
def test_collapsing_joint_scale_gives_the_in_memory_boundary_fit(
    synchronous, certificate, estimator, weighted
):
    X, y = plane_data()
    weights = None
    if weighted:
        weights = np.random.default_rng(1).integers(0, 4, size=y.size).astype(float)
    memory = estimator().fit(X, y, sample_weight=weights)
    fitted = estimator().fit(
        da.from_array(X, chunks=(CHUNKS, 4)), y, sample_weight=weights
    )
    assert memory.scale_ == fitted.scale_ == 0.0
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10)
    np.testing.assert_allclose(fitted.intercept_, memory.intercept_, rtol=1e-10)
    # The plane of the exact rows.
    np.testing.assert_allclose(fitted.coef_, [1.0, -0.2, 3.0, 0.5], rtol=1e-10)


def test_a_boundary_that_is_not_optimal_keeps_newtons_fit(synchronous, certificate):
    """Few exact rows: sigma stays positive, the boundary test says so."""
    from skrobust._dask_joint_boundary import boundary_is_optimal

    X, y = plane_data(0.9)
    memory = HuberRegressor(tol=1e-13).fit(X, y)
    fitted = HuberRegressor(tol=1e-13).fit(da.from_array(X, chunks=(CHUNKS, 4)), y)
    assert memory.scale_ > 0.1
    np.testing.assert_allclose(fitted.scale_, memory.scale_, rtol=1e-10)
    # The distributed test against the in-memory one, at the LAD fit of the
    # plane: optimal with 70% of rows on it, not with 10%.
    from skrobust._base import target_offset_scale
    from skrobust._dask_chunks import ChunkedData
    from skrobust._dask_statistics import data_statistics
    from skrobust._objective import LinearObjective
    from skrobust._scale import MProblem, _boundary_is_optimal
    from skrobust._solvers import SolverOptions
    from skrobust.losses import FixedScaleLoss, SquaredRho

    for share, optimal in [(0.3, True), (0.9, False)]:
        X, y = plane_data(share)
        offset, spread = target_offset_scale(y, np.ones(y.size), True)
        ls = LinearObjective(
            FixedScaleLoss(SquaredRho()),
            X,
            (y - offset) / spread,
            np.ones(y.size),
            [(None, True)],
            [0.0],
        )
        plane = ls.standardize(
            [(np.array([1.0, -0.2, 3.0, 0.5]) / spread, (2.0 - offset) / spread)]
        )
        rho = HuberRegressor()._rho()
        residuals = ls.y - ls.raw_prediction(plane)[:, 0]
        in_memory = _boundary_is_optimal(
            MProblem(ls, rho, 0.0, True, SolverOptions()), residuals
        )
        data = ChunkedData(da.from_array(X, chunks=(CHUNKS, 4)), y)

        class Problem:
            pass

        problem = Problem()
        problem.rho, problem.data = rho, data
        problem.stats = data_statistics(data, center=True)
        problem.y_map, problem.fit_intercept = (offset, spread), True
        coef = LinearObjective(
            FixedScaleLoss(SquaredRho()),
            X,
            y,
            np.ones(y.size),
            [(None, True)],
            [0.0],
            column_stats=problem.stats[2],
        ).standardize(
            [(np.array([1.0, -0.2, 3.0, 0.5]) / spread, (2.0 - offset) / spread)]
        )
        assert boundary_is_optimal(problem, coef) == in_memory == optimal


@pytest.mark.parametrize(
    "estimator, weighted", [(HuberRegressor, True), (LogCoshRegressor, False)]
)
def test_penalised_collapsing_joint_scale_gives_the_in_memory_fit(
    synchronous, certificate, estimator, weighted
):
    """With a ridge, Newton's point on sigma = 0 when the boundary is minimal.

    Newton's steps approach the boundary without converging; the in-memory
    fit then checks that the L1-plus-ridge objective of sigma = 0 is
    minimal there (a bounded least-squares certificate on the rows fitted
    exactly), and so does the dask fit, with one pass for the gradient and
    one for those rows.
    """
    X, y = plane_data()
    weights = None
    if weighted:
        weights = np.random.default_rng(1).integers(0, 4, size=y.size).astype(float)
    memory = estimator(alpha=1.0).fit(X, y, sample_weight=weights)
    fitted = estimator(alpha=1.0).fit(
        da.from_array(X, chunks=(CHUNKS, 4)), y, sample_weight=weights
    )
    assert memory.scale_ == fitted.scale_ == 0.0
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10)
    np.testing.assert_allclose(fitted.intercept_, memory.intercept_, rtol=1e-10)
    # The ridge is absorbed by the exact rows' subgradient: still the plane.
    np.testing.assert_allclose(fitted.coef_, [1.0, -0.2, 3.0, 0.5], rtol=1e-10)
    # A ridge too heavy for those rows keeps a positive scale, in both.
    memory = estimator(alpha=100.0, tol=1e-13).fit(X, y, sample_weight=weights)
    fitted = estimator(alpha=100.0, tol=1e-13).fit(
        da.from_array(X, chunks=(CHUNKS, 4)), y, sample_weight=weights
    )
    assert memory.scale_ > 1e-3
    np.testing.assert_allclose(fitted.scale_, memory.scale_, rtol=1e-10)
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10)


@pytest.mark.parametrize("estimator", [HuberRegressor, LogCoshRegressor])
def test_weights_of_chunks_lighter_than_the_heaviest_row(
    synchronous, certificate, estimator
):
    """The certificate weighs every row by the largest weight of all rows.

    Ten rows on a plane, eight of them of weight 1, and every other row of
    weight 0.01: the chunks holding only light rows must not count them as
    heavy (a chunk's own objective scales its weights to its largest). In
    memory the boundary is optimal (``scale_ == 0``, no iteration); the dask
    fit used to find it not optimal and approach it by Newton's steps,
    ending with a ``ConvergenceWarning``.
    """
    rng = np.random.default_rng(0)
    n = 60
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, 2.0, 3.0] + 0.5
    y[10:] += rng.standard_t(2, n - 10)
    weights = np.full(n, 0.01)
    weights[:8] = 1.0
    memory = estimator().fit(X, y, sample_weight=weights)
    fitted = estimator().fit(da.from_array(X, chunks=(17, 3)), y, sample_weight=weights)
    assert memory.scale_ == fitted.scale_ == 0.0
    assert memory.n_iter_ == fitted.n_iter_ == 0
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10)
    np.testing.assert_allclose(fitted.intercept_, memory.intercept_, rtol=1e-10)


def test_no_boundary_check_where_memory_makes_none(synchronous, monkeypatch):
    """``_boundary_may_be_optimal``'s test with the weight of all rows.

    One row of weight 1 and 59 of weight 0.1: the heaviest four rows weigh
    1.3 of 6.9, so sigma = 0 cannot be optimal and memory goes straight to
    Newton's method. The dask test once summed only each chunk's heaviest
    rows (2.5 in all), passed, and made an exact LAD fit for nothing.
    """
    checks = []
    original = _dask_joint_boundary.collapsed_scale_fit

    def counted(*args):
        checks.append(args)
        return original(*args)

    monkeypatch.setattr(_dask_joint_boundary, "collapsed_scale_fit", counted)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, 2.0, 3.0] + rng.standard_t(3, 60)
    weights = np.full(60, 0.1)
    weights[0] = 1.0
    memory = HuberRegressor().fit(X, y, sample_weight=weights)
    fitted = HuberRegressor().fit(
        da.from_array(X, chunks=(15, 3)), y, sample_weight=weights
    )
    assert checks == []
    assert memory.scale_ > 0 and fitted.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10)
