"""Levenberg-Marquardt steps where the damped Newton loop stalls.

Convex objectives are minimised by a damped Newton loop; where its line
search keeps only a sliver of the Newton step (a smoothed quantile loss at a
small bandwidth, a column whose rows all lie in a loss's linear zone),
``skrobust._levenberg.minimize`` goes on instead of scipy's ``trust-exact``,
whose bookkeeping made most of a small smoothed quantile fit's time. The
oracle is scipy's ``trust-exact`` itself, on objectives written here from
their formulas, and the linear programme of :func:`_oracles.quantile_linprog`.
"""

import numpy as np
import pytest
import scipy.optimize
from _data import gap_data
from _oracles import quantile_linprog, quantile_objective
from numpy.testing import assert_allclose
from scipy.special import ndtr

from skrobust import QuantileRegressor, _levenberg, _newton, _quantile_smooth


class SmoothedPinball:
    """``mean_i l_h(y_i - x_i c)`` for the Gaussian-smoothed pinball loss.

    ``l_h(u) = q u - u Phi(-u / h) + h phi(u / h)``, whose derivative is
    ``q - Phi(-u / h)`` and second derivative ``phi(u / h) / h``.
    """

    def __init__(self, X, y, quantile, bandwidth):
        self.X, self.y, self.q, self.h = X, y, quantile, bandwidth
        self.n_samples, self.n_coef = X.shape

    def loss_gradient_hessian(self, coef):
        u = self.y - self.X @ coef
        t = u / self.h
        density = np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)
        value = np.mean(self.q * u - u * ndtr(-t) + self.h * density)
        derivative = self.q - ndtr(-t)
        grad = -self.X.T @ derivative / self.n_samples
        hess = (self.X.T * (density / self.h)) @ self.X / self.n_samples
        return value, grad, hess

    def loss_gradient(self, coef):
        return self.loss_gradient_hessian(coef)[:2]


class FixedScaleHuber:
    """``mean_i rho(y_i - x_i c)`` with Huber's ``rho`` at ``delta = 1``."""

    def __init__(self, X, y):
        self.X, self.y = X, y
        self.n_samples, self.n_coef = X.shape

    def loss_gradient_hessian(self, coef):
        r = self.y - self.X @ coef
        a = np.abs(r)
        value = np.mean(np.where(a <= 1.0, 0.5 * r * r, a - 0.5))
        grad = -self.X.T @ np.clip(r, -1.0, 1.0) / self.n_samples
        inlier = (a <= 1.0).astype(float)
        hess = (self.X.T * inlier) @ self.X / self.n_samples
        return value, grad, hess

    def loss_gradient(self, coef):
        return self.loss_gradient_hessian(coef)[:2]


def trust_exact(objective, coef0):
    """The oracle: scipy's exact trust region, to a gradient of 1e-12."""
    result = scipy.optimize.minimize(
        lambda c: objective.loss_gradient_hessian(c)[0],
        coef0,
        jac=lambda c: objective.loss_gradient_hessian(c)[1],
        hess=lambda c: objective.loss_gradient_hessian(c)[2],
        method="trust-exact",
        options={"gtol": 1e-12, "maxiter": 1000},
    )
    return result.x


@pytest.mark.parametrize("quantile", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_bandwidth_pinball_minimised(quantile, seed):
    """Few rows in the curved part near zero: a Hessian of nearly low rank."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.standard_normal((60, 4)), np.ones(60)])
    y = X[:, :4] @ rng.standard_normal(4) + rng.standard_t(2, size=60)
    objective = SmoothedPinball(X, y, quantile, bandwidth=1e-3)
    start = np.zeros(5)
    result = _levenberg.minimize(objective, start, max_iter=200, tol=1e-10)
    assert result.converged, result.message
    assert result.n_iter <= 200
    value, grad, _ = objective.loss_gradient_hessian(result.coef)
    assert np.max(np.abs(grad)) <= 1e-10
    reference = trust_exact(objective, start)
    assert_allclose(result.coef, reference, rtol=0, atol=1e-7)
    reference_value = objective.loss_gradient_hessian(reference)[0]
    assert value <= reference_value + 1e-14 * abs(reference_value)


def test_direction_without_curvature_is_damped():
    """A column whose rows all start in Huber's linear zone has no curvature
    there; damping by the Hessian's diagonal left its step as long as a
    Newton step on that (nil) curvature, and the ratio test rejected step
    after step (198 iterations, not converged, on the leverage rows of
    ``test_huber_hard_cases``)."""
    rng = np.random.default_rng(0)
    n = 400
    X = np.column_stack([np.zeros(n), rng.standard_normal((n, 2)), np.ones(n)])
    far = rng.choice(n, 8, replace=False)
    X[far, 0] = 50.0 * rng.choice([-1.0, 1.0], size=far.size)
    y = X[:, 1:3] @ [1.0, -2.0] + 0.3 * rng.standard_normal(n)
    y[far] += 30.0  # far out: in the linear zone from the start
    objective = FixedScaleHuber(X, y)
    start = np.zeros(4)
    _, _, hess = objective.loss_gradient_hessian(start)
    assert hess[0, 0] == 0.0  # the situation under test
    result = _levenberg.minimize(objective, start, max_iter=50, tol=1e-10)
    assert result.converged, result.message
    assert_allclose(result.coef, trust_exact(objective, start), rtol=0, atol=1e-8)


def test_nil_hessian_start_takes_damped_gradient_steps():
    """Every row in Huber's linear zone at the start: the Hessian is zero,
    and the damping alone sets the steps (a trust region's radius), which
    grow until rows enter the quadratic zone and Newton's steps finish."""
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.standard_normal(30), np.ones(30)])
    y = 200.0 + 3.0 * X[:, 0] + rng.standard_normal(30)
    objective = FixedScaleHuber(X, y)
    start = np.zeros(2)
    assert not np.any(objective.loss_gradient_hessian(start)[2])
    result = _levenberg.minimize(objective, start, max_iter=100, tol=1e-10)
    assert result.converged, result.message
    assert_allclose(result.coef, trust_exact(objective, start), rtol=0, atol=1e-8)


@pytest.mark.parametrize("quantile", [0.25, 0.5, 0.9])
def test_smooth_quantile_fit_needs_no_scipy_trust_region(monkeypatch, quantile):
    """A 1000 x 20 smoothed quantile fit: its continuation's small-bandwidth
    steps, where the damped loop stalls, are finished by Levenberg-Marquardt
    steps, not by scipy's trust-exact (which took 25 of its 47 iterations
    and most of its time), and the fit keeps its accuracy against the LP."""
    methods = []
    minimize = scipy.optimize.minimize

    def recorded(*args, **kwargs):
        methods.append(kwargs.get("method"))
        return minimize(*args, **kwargs)

    monkeypatch.setattr(_newton.scipy.optimize, "minimize", recorded)
    X, y = gap_data(1000, 20)
    model = QuantileRegressor(quantile=quantile, solver="smooth").fit(X, y)
    assert "trust-exact" not in methods
    optimum = quantile_linprog(X, y, quantile).objective
    value = quantile_objective(X, y, model.coef_, model.intercept_, quantile)
    assert optimum <= value <= optimum * (1 + _quantile_smooth._GUARANTEED_GAP)
