"""Regression tests for the MAD scale's secant and its collapse to zero.

* A MAD fixed point that collapses to ``sigma = 0`` (more than half the
  weight fitted exactly by the least-absolute-deviation fit) is returned as
  that boundary, without the overflows of fits at vanishing or negative
  scales (statsmodels' fair data, standardised, no intercept: 68% of the
  targets are 0).
* :class:`skrobust._scale.ScaleSecant` never proposes a non-positive scale.
* The MAD fixed point and fixed-scale fits settle the coefficients, not just
  the gradient, at the default ``tol``: collinear columns (longley) with
  log-cosh's small curvature in the tails left them ``cond(H) tol`` off.
"""

import warnings

import numpy as np
import pytest
import scipy.optimize
import statsmodels.api as sm
from numpy.testing import assert_allclose
from sklearn.datasets import load_diabetes, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skrobust import HuberRegressor, LogCoshRegressor
from skrobust._base import least_squares_start
from skrobust._quantile_exact import solve_exact
from skrobust._scale import (
    MProblem,
    ScaleSecant,
    _boundary_is_optimal,
    _boundary_may_be_optimal,
)
from skrobust._solvers import SolverOptions
from skrobust.losses import HuberRho, LogCoshRho


def _fair_standardised():
    data = sm.datasets.fair.load_pandas().data
    X = StandardScaler().fit_transform(data.iloc[:, :8].to_numpy(float))
    return X, data["affairs"].to_numpy(float)


def _lad_objective_optimum(X, y, fit_intercept):
    """``min sum |y - X w - b|`` by linear programming (scipy's HiGHS)."""
    n = X.shape[0]
    Z = np.column_stack([X, np.ones(n)]) if fit_intercept else X
    p = Z.shape[1]
    # Variables (beta+, beta-, u, v) >= 0 with Z (beta+ - beta-) + u - v = y.
    cost = np.r_[np.zeros(2 * p), np.ones(2 * n)]
    A = np.hstack([Z, -Z, np.eye(n), -np.eye(n)])
    result = scipy.optimize.linprog(cost, A_eq=A, b_eq=y, method="highs")
    assert result.status == 0
    return result.fun


@pytest.mark.parametrize(
    "make_estimator",
    [
        lambda: HuberRegressor(delta=1.345, scale="mad", fit_intercept=False),
        lambda: LogCoshRegressor(scale="mad", fit_intercept=False),
        lambda: HuberRegressor(scale="mad", fit_intercept=False, alpha=1.0),
    ],
    ids=["huber", "logcosh", "huber-ridge"],
)
def test_mad_scale_collapse_on_fair_is_clean(make_estimator):
    """68% of fair's targets are 0 and all are >= 0: without an intercept the
    MAD fixed point tends to ``sigma = 0``, ``w = 0`` (the LAD fit; with a
    ridge, ``w = 0`` as the ridge dominates ``sigma c |r|``). Before: about
    2,300 overflow warnings from fits at a scale the secant stepped to below
    zero, and ``scale_ = 2e-9``.
    """
    X, y = _fair_standardised()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = make_estimator().fit(X, y)
    assert model.scale_ == 0.0
    assert_allclose(model.coef_, 0.0, atol=1e-12)
    # w = 0 is the LAD optimum (independently, by linear programming).
    lad = _lad_objective_optimum(X, y, fit_intercept=False)
    assert np.abs(y - X @ model.coef_).sum() == pytest.approx(lad, rel=1e-9)


def test_mad_scale_collapses_to_the_lp_lad_fit_on_a_plane():
    """28 of 40 rows exactly on a plane, the rest noisy: the MAD fixed point
    is ``sigma = 0`` at the LAD fit, which interpolates the plane (checked
    against linear programming's optimum), without warnings."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    y = X @ [1.0, -2.0, 0.5] + 3.0
    y[28:] += rng.standard_t(1, size=12) * 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = HuberRegressor(scale="mad").fit(X, y)
    assert model.scale_ == 0.0
    assert_allclose(model.coef_, [1.0, -2.0, 0.5], rtol=1e-9)
    assert model.intercept_ == pytest.approx(3.0, rel=1e-9)
    residuals = y - X @ model.coef_ - model.intercept_
    lad = _lad_objective_optimum(X, y, fit_intercept=True)
    assert np.abs(residuals).sum() == pytest.approx(lad, rel=1e-9)


def test_secant_through_zero_falls_back_to_the_mad():
    """``g(sigma) = MAD - sigma`` steeper than -1 before a bracket: the secant
    crosses zero (here to -0.25); the step must be the plain update, the
    MAD, and flag the collapse."""
    secant = ScaleSecant(1e-10)
    assert secant.step(1.0, 0.5, True) == 0.5
    assert not secant.collapsing
    new_scale = secant.step(0.5, 0.2, True)
    assert new_scale == 0.2
    assert secant.collapsing


def test_secant_never_proposes_a_non_positive_scale_on_fair(monkeypatch):
    """The fair collapse above stepped from 2.3e-3 to -3.5e-8."""
    proposals = []
    step = ScaleSecant.step

    def recording_step(self, *args, **kwargs):
        proposal = step(self, *args, **kwargs)
        proposals.append(proposal)
        return proposal

    monkeypatch.setattr(ScaleSecant, "step", recording_step)
    X, y = _fair_standardised()
    HuberRegressor(delta=1.345, scale="mad", fit_intercept=False).fit(X, y)
    assert proposals
    assert all(p is None or p > 0 for p in proposals)


def _logcosh(z):
    a = np.abs(z)
    return a + np.log1p(np.exp(-2 * a)) - np.log(2)


class LogCoshNorm(sm.robust.norms.RobustNorm):
    """statsmodels norm for ``rho(z) = log cosh z`` (delta = 1)."""

    def rho(self, z):
        return _logcosh(np.asarray(z, dtype=float))

    def psi(self, z):
        return np.tanh(z)

    def weights(self, z):
        z = np.asarray(z, dtype=float)
        tiny = np.abs(z) < 1e-8
        safe = np.where(tiny, 1.0, z)
        return np.where(tiny, 1.0, np.tanh(safe) / safe)

    def psi_deriv(self, z):
        return 1 / np.cosh(z) ** 2


def _longley():
    data = sm.datasets.longley.load_pandas().data
    columns = ["GNPDEFL", "GNP", "UNEMP", "ARMED", "POP", "YEAR"]
    X = StandardScaler().fit_transform(data[columns].to_numpy(float))
    return X, data["TOTEMP"].to_numpy(float)


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _logcosh_rlm(X, y):
    """statsmodels' IRLS with the MAD scale, to 1e-13 on the coefficients."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return sm.RLM(y, X, M=LogCoshNorm()).fit(
            scale_est="mad", conv="coefs", tol=1e-13, maxiter=3000
        )


@pytest.mark.parametrize("load", [_longley, _diabetes], ids=["longley", "diabetes"])
def test_logcosh_mad_fixed_point_is_tight_at_the_default_tol(load):
    """statsmodels' IRLS is the oracle; at the default ``tol=1e-10`` the
    coefficients were 5.8e-8 (longley) and 2.2e-8 (diabetes) off it."""
    X, y = load()
    rlm = _logcosh_rlm(X, y)
    model = LogCoshRegressor(scale="mad", fit_intercept=False).fit(X, y)
    assert_allclose(model.coef_, rlm.params, rtol=1e-9)
    assert model.scale_ == pytest.approx(rlm.scale, rel=1e-9)


def _fixed_scale_newton(X, y, sigma, w):
    """``argmin sum log cosh((y - X w) / sigma)`` by damped Newton from ``w``."""

    def objective(w):
        a = np.abs((y - X @ w) / sigma)
        return np.sum(a + np.log1p(np.exp(-2 * a)))

    for _ in range(100):
        tanh = np.tanh((y - X @ w) / sigma)
        gradient = -X.T @ tanh / sigma
        hessian = (X.T * (1 - tanh * tanh)) @ X / sigma**2
        step = np.linalg.solve(hessian, gradient)
        length = 1.0
        while objective(w - length * step) > objective(w) and length > 1e-10:
            length /= 2
        w = w - length * step
    return w


@pytest.mark.parametrize("load", [_longley, _diabetes], ids=["longley", "diabetes"])
def test_logcosh_fixed_scale_fit_is_tight_at_the_default_tol(load):
    """At half statsmodels' MAD scale (more rows in the tails), Newton's
    method written out here from statsmodels' coefficients is the oracle;
    at the default ``tol`` the coefficients were 9.4e-8 off it on longley
    (4.9e-10 on diabetes, within the tolerance already)."""
    X, y = load()
    rlm = _logcosh_rlm(X, y)
    sigma = 0.5 * rlm.scale
    model = LogCoshRegressor(scale=sigma, fit_intercept=False).fit(X, y)
    expected = _fixed_scale_newton(X, y, sigma, rlm.params)
    assert_allclose(model.coef_, expected, rtol=1e-9)


def _joint_problem(X, y, sample_weight, rho, fit_intercept):
    ls_objective, _, _ = least_squares_start(X, y, sample_weight, fit_intercept, 0.0)
    return MProblem(ls_objective, rho, 0.0, fit_intercept, SolverOptions())


@pytest.mark.parametrize(
    "rho",
    [HuberRho(1.05), HuberRho(1.35), HuberRho(2.0), LogCoshRho(1.0), LogCoshRho(2.5)],
    ids=repr,
)
def test_boundary_precheck_never_skips_an_optimal_boundary(rho):
    """``_boundary_may_be_optimal`` is a necessary condition of
    ``_boundary_is_optimal`` at the LP fit: over rows per coefficient from 1
    to twice the bound, with and without weights and intercept, in general position
    (continuous X and y, no ties), it is never False where the boundary is
    optimal; the sweep has optimal boundaries and skipped checks."""
    rng = np.random.default_rng(7)
    skipped = optimal_boundaries = 0
    # Up to twice the rows per coefficient where the check starts skipping.
    most_rows = 2.0 * (1.0 + 1.0 / (2.0 * rho.z_psi_minus_rho_limit - 1.0))
    for trial in range(80):
        p = int(rng.integers(2, 8))
        fit_intercept = bool(trial % 2)
        k = p + fit_intercept
        n = int(rng.integers(k, most_rows * k + 2))
        X = rng.normal(size=(n, p))
        y = X @ rng.normal(size=p) + rng.standard_t(2, size=n) * rng.choice([0.01, 1])
        weights = rng.uniform(0.1, 3.0, size=n) if trial % 3 else np.ones(n)
        problem = _joint_problem(X, y, weights, rho, fit_intercept)
        ls = problem.ls_objective
        w, b, _ = solve_exact(
            ls.X, ls.y, 0.5, ls.sample_weight, 0.0, fit_intercept, None, None
        )
        residuals = ls.y - ls.X @ w - b
        optimal = _boundary_is_optimal(problem, residuals)
        may_be = _boundary_may_be_optimal(problem)
        assert may_be or not optimal, (trial, n, p)
        skipped += not may_be
        optimal_boundaries += optimal
    assert skipped >= 5
    assert optimal_boundaries >= 5


def test_logcosh_joint_collapse_at_50_by_20_needs_no_newton_steps():
    """n = 50, p = 20, 10% of y shifted by 50: the joint scale collapses to 0
    (the LAD fit, checked against linear programming), which the boundary
    check now finds before Newton's method (it took 55 iterations creeping
    down log sigma: 26 ms against 4 ms now)."""
    X, y = make_regression(50, 20, noise=1, random_state=0)
    y[np.random.default_rng(0).choice(50, 5, replace=False)] += 50
    model = LogCoshRegressor().fit(X, y)
    assert model.scale_ == 0.0
    assert model.n_iter_ == 0
    residuals = y - X @ model.coef_ - model.intercept_
    lad = _lad_objective_optimum(X, y, fit_intercept=True)
    assert np.abs(residuals).sum() == pytest.approx(lad, rel=1e-9)


@pytest.mark.parametrize("scale", ["mad", "joint"])
def test_warm_start_from_a_collapsed_scale(scale):
    """``scale_ = 0`` from the collapse on fair is a valid warm start: again
    on the same data it stays there (no divide-by-zero or log(0) warnings),
    and on targets that no longer collapse it reaches the cold fit."""
    X, y = _fair_standardised()
    model = HuberRegressor(scale=scale, warm_start=True, fit_intercept=False)
    model.fit(X, y)
    assert model.scale_ == 0.0
    model.fit(X, y)
    assert model.scale_ == 0.0
    assert_allclose(model.coef_, 0.0, atol=1e-12)
    y_noisy = y + np.random.default_rng(0).normal(size=y.size)
    model.fit(X, y_noisy)
    cold = HuberRegressor(scale=scale, fit_intercept=False).fit(X, y_noisy)
    assert model.scale_ == pytest.approx(cold.scale_, rel=1e-9)
    assert_allclose(model.coef_, cold.coef_, rtol=1e-8, atol=1e-12)


def _weighted_mad_scale(residuals, weights):
    """``median |r| / 0.6745`` weighted: the first value past half the weight."""
    from _oracles import MAD_NORMAL_CONSTANT

    order = np.argsort(np.abs(residuals))
    cumulative = np.cumsum(weights[order])
    middle = np.searchsorted(cumulative, 0.5 * cumulative[-1])
    return float(np.abs(residuals)[order][middle]) / MAD_NORMAL_CONSTANT


@pytest.mark.parametrize(
    ("n", "heavy", "alpha"), [(30, 3, 0.1), (60, 2, 0.1), (30, 5, 0.1), (30, 5, 1.0)]
)
def test_mad_fixed_point_far_below_the_spread_of_y_is_solved(n, heavy, alpha):
    """Two or three rows of weight 1e10 among rows of 1e-10, with a ridge.

    The heavy rows are all but interpolated: the MAD fixed point lies at
    ~1e-10 (where the ridge, ``alpha`` against ``1e10 sigma``, pulls them
    apart), and the fixed-scale fits there have gradients of that size.
    Their absolute ``tol`` let the start (the L1 fit) pass after 0
    iterations, 3.2x above the optimum of the objective at ``scale_``
    (``(30, 3, 0.1)``) without a warning; with a relative one, the
    regularised Newton directions raised the ridge's curvature (7e-12) to
    1e-8 and crept for 200 iterations, and the secant chased the MAD's
    rounding (steps of 1e-15) to ``max_iter``. Oracles: L-BFGS on the
    documented fixed-scale objective at ``scale_`` (``sum_i s_i sigma^2
    rho(r_i / sigma) + alpha ||w||^2``), from skrobust's fit and from
    zero, must not lower it beyond 1e-9 (along the heavy rows' null
    direction only the ridge curves it, 7e-12 of their curvature: gradients
    at rounding leave 5e-10 of the objective there); and ``scale_`` is the
    weighted MAD of the residuals of the oracle's minimiser (the fixed
    point).
    """
    from _oracles import assert_huber_fixed_scale_optimum, heavy_rows_data

    X, y, weights = heavy_rows_data(n, heavy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = HuberRegressor(scale="mad", alpha=alpha).fit(
            X, y, sample_weight=weights
        )
    sigma = model.scale_
    assert 0 < sigma < 1e-8
    w, b = assert_huber_fixed_scale_optimum(model, X, y, weights, alpha)
    assert _weighted_mad_scale(y - X @ w - b, weights) == pytest.approx(sigma, rel=1e-4)


def test_lad_scale_far_below_the_spread_of_y_is_solved():
    """The LAD scale's fixed-scale fit at a scale of 8e-10 (the data of
    test_mad_fixed_point_far_below_the_spread_of_y_is_solved, three heavy
    rows): its absolute ``tol`` let the start pass 3.2x above the optimum.
    Oracle: L-BFGS on the fixed-scale objective at ``scale_`` (the LAD
    scale is held fixed), from the fit and from zero.
    """
    from _oracles import assert_huber_fixed_scale_optimum, heavy_rows_data

    X, y, weights = heavy_rows_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = HuberRegressor(scale="lad", alpha=0.1).fit(X, y, sample_weight=weights)
    assert 0 < model.scale_ < 1e-8
    assert_huber_fixed_scale_optimum(model, X, y, weights, 0.1)
