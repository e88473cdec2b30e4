"""Newton's method on fit and scale together, the start of the MAD secant.

On problems too small for a subsample the MAD scale's secant used to take
five or six fixed-scale fits (26 passes over the rows at 1000 x 20); it
now starts from the fixed point that Newton's method on the coefficients
and the scale together reaches. That point is final where it settles (its
gradient at rounding, or settled again one joint step past the tests): no
fixed-scale fit confirms it any more. The answer
must be the secant's fixed point (statsmodels' and R's MAD fixed point, to
its tolerance), the derivatives it steps on must be the true ones (finite
differences), and the passes must be fewer.
"""

import functools

import numpy as np
import pytest
import scipy.optimize
from _oracles import (
    FixedScaleOracle,
    huber_psi,
    huber_rho,
    logcosh_psi,
    logcosh_rho,
)
from numpy.testing import assert_allclose

import skrobust._scale_mad as scale_module
from skrobust import HuberRegressor, LogCoshRegressor, _scale
from skrobust._base import MAD_NORMAL_CONSTANT, least_squares_start
from skrobust._objective import LinearObjective
from skrobust._scale_newton import (
    _mad_gradient,
    _median_rows,
    _scale_derivative_of_gradient,
)
from skrobust.losses import FixedScaleLoss, HuberRho, LogCoshRho, SmoothedPinballRho


def _contaminated(n_samples=1_000, n_features=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = X @ rng.normal(size=n_features) + 1.0 + rng.standard_t(3, size=n_samples)
    gross = rng.random(n_samples) < 0.1
    y[gross] += rng.uniform(20, 100, size=gross.sum())
    return X, y


def _assert_mad_fixed_point(fast, reference, X, y, sample_weight=None):
    assert_allclose(fast.scale_, reference.scale_, rtol=1e-9)
    assert_allclose(fast.coef_, reference.coef_, rtol=1e-8, atol=1e-10)
    assert_allclose(fast.intercept_, reference.intercept_, rtol=1e-8, atol=1e-10)
    residuals = y - X @ fast.coef_ - fast.intercept_
    if sample_weight is None:
        mad = np.median(np.abs(residuals)) / MAD_NORMAL_CONSTANT
        assert_allclose(fast.scale_, mad, rtol=1e-9)


class _PassCount:
    """Passes of every objective (value and gradient, with or without Hessian)."""

    def __init__(self, monkeypatch):
        self.count = 0
        original = LinearObjective._pass

        def counted(objective, *args, **kwargs):
            self.count += 1
            return original(objective, *args, **kwargs)

        monkeypatch.setattr(LinearObjective, "_pass", counted)


@pytest.mark.parametrize("estimator_class", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize(
    "shape, seed, weighted, alpha",
    [
        ((1_000, 20), 0, False, 0.0),
        ((1_000, 20), 1, True, 0.0),
        ((200, 20), 2, False, 0.0),
        ((300, 5), 3, True, 1.0),
        ((41, 20), 4, False, 0.0),
    ],
)
def test_fit_is_the_secants_fixed_point(
    monkeypatch, estimator_class, shape, seed, weighted, alpha
):
    X, y = _contaminated(*shape, seed=seed)
    weights = None
    if weighted:
        weights = np.random.default_rng(seed).integers(0, 4, size=y.size)
        weights = weights.astype(float)
    fast = estimator_class(scale="mad", alpha=alpha).fit(X, y, sample_weight=weights)
    # The reference: the secant from the L1 start alone.
    monkeypatch.setattr(scale_module, "_mad_newton_start", lambda *args: None)
    reference = estimator_class(scale="mad", alpha=alpha).fit(
        X, y, sample_weight=weights
    )
    _assert_mad_fixed_point(fast, reference, X, y, weights)
    assert fast.n_iter_ <= fast.max_iter


@pytest.mark.parametrize("estimator_class", [HuberRegressor, LogCoshRegressor])
def test_small_mad_fit_takes_few_passes(monkeypatch, estimator_class):
    """26 passes at 1000 x 20 with the secant alone (both losses); 8 now."""
    X, y = _contaminated()
    passes = _PassCount(monkeypatch)
    estimator_class(scale="mad").fit(X, y)
    assert passes.count <= 12


_ORACLE_LOSSES = {
    HuberRegressor: (huber_rho, huber_psi),
    LogCoshRegressor: (logcosh_rho, logcosh_psi),
}


@pytest.mark.parametrize("estimator_class", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize(
    "shape, seed", [((1_000, 20), 2), ((1_000, 20), 3), ((300, 5), 2), ((5_000, 10), 0)]
)
def test_settled_newton_point_takes_no_fixed_scale_fit(
    monkeypatch, estimator_class, shape, seed
):
    """Where Newton's method settles its point is the answer, with no fit after.

    The secant used to confirm it by a fixed-scale fit (two for log-cosh at
    1000 x 20, seeds 2 and 3, where a polish of the coefficients alone moved
    the MAD past its tolerance), each with its own set-up and passes. The
    answer is still the MAD fixed point: its scale the normalised MAD of
    its residuals, its coefficients the minimum of the fixed-scale
    objective at that scale (scipy, :class:`FixedScaleOracle`).
    """
    X, y = _contaminated(*shape, seed=seed)
    fits = []
    minimize = _scale.MProblem.minimize

    def recorded(self, *args, **kwargs):
        fits.append(args)
        return minimize(self, *args, **kwargs)

    monkeypatch.setattr(_scale.MProblem, "minimize", recorded)
    model = estimator_class(scale="mad").fit(X, y)
    assert fits == []

    residuals = y - X @ model.coef_ - model.intercept_
    mad = np.median(np.abs(residuals)) / MAD_NORMAL_CONSTANT
    assert_allclose(model.scale_, mad, rtol=1e-9)
    rho, psi = (
        functools.partial(f, delta=model.delta) for f in _ORACLE_LOSSES[estimator_class]
    )
    weights = np.ones(y.size)
    oracle = FixedScaleOracle(X, y, weights, model.scale_, 0.0, rho, psi, True)
    _, _, best = oracle.solve([(model.coef_, model.intercept_)])
    assert oracle.value(model.coef_, model.intercept_) <= best * (1 + 1e-11)


def _objective(X, y, rho, scale, weights):
    ls, _, coef = least_squares_start(X, y, weights, True, 0.0)
    loss = FixedScaleLoss(rho, scale)
    objective = LinearObjective(
        loss, X, ls.y, weights, [(None, True)], [0.0], column_stats=ls.column_stats
    )
    return ls, objective, coef


@pytest.mark.parametrize(
    "rho", [HuberRho(1.35), LogCoshRho(1.0), SmoothedPinballRho(0.5, 0.5)]
)
def test_scale_derivative_of_the_gradient_is_the_finite_difference(rho):
    X, y = _contaminated(300, 4, seed=5)
    weights = np.random.default_rng(5).uniform(0.5, 2.0, size=y.size)
    scale = 0.7
    ls, objective, coef = _objective(X, y, rho, scale, weights)
    residuals = ls.y - objective.raw_prediction(coef)[:, 0]
    b = _scale_derivative_of_gradient(ls, rho, residuals / scale, scale)

    def gradient_entry(j):
        def at(sigma):
            objective.loss = FixedScaleLoss(rho, float(sigma[0]))
            return objective.loss_gradient(coef)[1][j]

        return at

    numeric = [
        scipy.optimize.approx_fprime([scale], gradient_entry(j), 1e-6)[0]
        for j in range(coef.size)
    ]
    assert_allclose(b, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("n_samples", [301, 300])
def test_mad_gradient_is_the_finite_difference(n_samples):
    """The MAD is piecewise linear in the coefficients: exact between kinks."""
    X, y = _contaminated(n_samples, 4, seed=6)
    weights = np.ones(n_samples)
    ls, objective, coef = _objective(X, y, HuberRho(1.35), 1.0, weights)

    def mad(c):
        residuals = ls.y - objective.raw_prediction(c)[:, 0]
        return np.median(np.abs(residuals)) / MAD_NORMAL_CONSTANT

    residuals = ls.y - objective.raw_prediction(coef)[:, 0]
    spread = _median_rows(np.abs(residuals), weights)
    assert_allclose(spread[0] / MAD_NORMAL_CONSTANT, mad(coef), rtol=1e-14)
    a = _mad_gradient(ls, residuals, spread)
    # Central differences, a step small enough that no row crosses the median.
    step = 1e-7
    numeric = [
        (mad(coef + step * e) - mad(coef - step * e)) / (2 * step)
        for e in np.eye(coef.size)
    ]
    assert_allclose(a, numeric, rtol=1e-6, atol=1e-8)
