"""Pointwise losses: derivatives against finite differences, and stability."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from skrobust.losses import (
    ConcomitantScaleLoss,
    FixedScaleLoss,
    GaussianNLLLoss,
    HuberRho,
    LogCoshRho,
    ResidualFunction,
    SquaredRho,
)

RHOS = [
    SquaredRho(),
    HuberRho(1.35),
    HuberRho(0.5),
    LogCoshRho(1.0),
    LogCoshRho(2.5),
    LogCoshRho(50.0),
]


def central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


def grid_away_from_kinks(rho):
    z = np.linspace(-6, 6, 241)
    delta = getattr(rho, "delta", None)
    if isinstance(rho, HuberRho):
        # rho'' jumps at +-delta: keep the difference stencil off the kinks.
        z = z[np.abs(np.abs(z) - delta) > 1e-3]
    return z


@pytest.mark.parametrize("rho", RHOS, ids=repr)
def test_rho_derivatives_match_finite_differences(rho):
    z = grid_away_from_kinks(rho)
    h = 1e-6
    assert_allclose(rho.derivative(z), central_difference(rho.value, z, h), atol=1e-7)
    assert_allclose(
        rho.second_derivative(z), central_difference(rho.derivative, z, h), atol=1e-6
    )
    assert_allclose(
        rho.z_psi_minus_rho(z), z * rho.derivative(z) - rho.value(z), atol=1e-12
    )


def test_huber_closed_form():
    rho = HuberRho(1.0)
    z = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    assert_allclose(rho.value(z), [2.5, 0.5, 0.125, 0.0, 0.125, 0.5, 2.5])
    assert_allclose(rho.derivative(z), [-1, -1, -0.5, 0, 0.5, 1, 1])
    assert_allclose(rho.second_derivative(z), [0, 1, 1, 1, 1, 1, 0])


def test_logcosh_matches_naive_formula_where_that_is_safe():
    rho = LogCoshRho(2.0)
    z = np.linspace(-20, 20, 81)
    assert_allclose(
        rho.value(z), 4.0 * np.log(np.cosh(z / 2.0)), rtol=1e-12, atol=1e-15
    )
    assert_allclose(rho.derivative(z), 2.0 * np.tanh(z / 2.0), rtol=1e-14)
    assert_allclose(rho.second_derivative(z), 1 / np.cosh(z / 2.0) ** 2, rtol=1e-12)


@pytest.mark.parametrize("rho", RHOS[1:], ids=repr)
def test_robust_rhos_are_finite_and_warning_free_up_to_1e300(rho):
    z = np.array([-1e300, -1e200, -1e20, -1e-300, 0.0, 1e-300, 1e20, 1e200, 1e300])
    # Underflow to zero is harmless (and silent by default); the rest must not occur.
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        values = rho.value(z)
        for f in (rho.derivative, rho.second_derivative, rho.z_psi_minus_rho):
            assert np.all(np.isfinite(f(z)))
    assert np.all(np.isfinite(values))
    # Linear tails: rho(z) ~ delta |z|.
    assert_allclose(values[-1], rho.delta * 1e300, rtol=1e-12)
    # Tiny residuals keep full relative precision (z^2 / 2), no cancellation,
    # in the value and in z psi - rho (the concomitant scale's gradient).
    assert_allclose(rho.value(np.array([1e-8])), [5e-17], rtol=1e-10)
    assert_allclose(rho.z_psi_minus_rho(np.array([1e-8])), [5e-17], rtol=1e-7)


def test_logcosh_tail_limits_are_exact():
    rho = LogCoshRho(1.5)
    z = np.array([1e3, 1e300])
    assert_allclose(rho.z_psi_minus_rho(z), 1.5**2 * np.log(2.0), rtol=1e-15)
    assert_allclose(
        rho.value(np.array([1e3])), 1.5 * 1e3 - 1.5**2 * np.log(2), rtol=1e-15
    )
    # sech^2 keeps relative precision deep in the tail where 1 - tanh^2 = 0.
    assert_allclose(
        rho.second_derivative(np.array([60.0])), 4 * np.exp(-80.0), rtol=1e-12
    )


PREDICTION_LOSSES = [
    FixedScaleLoss(HuberRho(1.35), 0.7),
    FixedScaleLoss(LogCoshRho(1.0), 2.0),
    ConcomitantScaleLoss(HuberRho(1.35)),
    ConcomitantScaleLoss(LogCoshRho(1.0)),
    GaussianNLLLoss(),
]


@pytest.mark.parametrize("loss", PREDICTION_LOSSES, ids=lambda x: type(x).__name__)
def test_prediction_loss_gradient_and_hessian(loss):
    rng = np.random.default_rng(0)
    n, k = 200, loss.n_predictors
    y = rng.normal(scale=3.0, size=n)
    raw = rng.normal(size=(n, k))
    _, grad, hess = loss.loss_gradient_hessian(y, raw)
    assert grad.shape == (n, k) and hess.shape == (n, k, k)
    h = 1e-6
    for a in range(k):
        step = np.zeros(k)
        step[a] = h
        lp, gp, _ = loss.loss_gradient_hessian(y, raw + step)
        lm, gm, _ = loss.loss_gradient_hessian(y, raw - step)
        ok = np.ones(n, dtype=bool)
        if isinstance(getattr(loss, "rho", None), HuberRho):
            # drop samples whose stencil straddles Huber's kink
            r = (y - raw[:, 0]) / (np.exp(raw[:, 1]) if k == 2 else loss.scale)
            ok = np.abs(np.abs(r) - loss.rho.delta) > 1e-3
        assert_allclose(grad[ok, a], ((lp - lm) / (2 * h))[ok], rtol=1e-6, atol=1e-8)
        assert_allclose(hess[ok, :, a], ((gp - gm) / (2 * h))[ok], rtol=1e-6, atol=1e-7)


def test_concomitant_loss_is_scikit_learns_huber_term():
    # sigma + sigma * H_eps(r / sigma) with H_eps(z) = z^2 or 2 eps |z| - eps^2.
    rng = np.random.default_rng(1)
    y, mu, sigma, eps = rng.normal(size=50) * 4, rng.normal(size=50), 0.8, 1.35
    z = (y - mu) / sigma
    H = np.where(np.abs(z) <= eps, z**2, 2 * eps * np.abs(z) - eps**2)
    raw = np.column_stack([mu, np.full(50, np.log(sigma))])
    loss, _, _ = ConcomitantScaleLoss(HuberRho(eps)).loss_gradient_hessian(y, raw)
    assert_allclose(loss, sigma + sigma * H, rtol=1e-14)


@pytest.mark.parametrize("rho", RHOS, ids=repr)
def test_fused_evaluation_equals_the_separate_methods(rho):
    """value_derivatives is only faster; concomitant_terms within a few eps.

    ``concomitant_terms`` may give up relative precision near zero (its
    ``rho`` and ``z psi - rho`` are added to 1 by the concomitant loss), but
    not absolute precision, and ``rho''`` keeps its relative precision.
    """
    z = np.concatenate(
        [-np.logspace(-300, 300, 301), [0.0], np.logspace(-300, 300, 301)]
    )
    if isinstance(rho, SquaredRho):
        z = z[np.abs(z) < 1e150]
    value, psi, dpsi = rho.value_derivatives(z)
    # (atol: values below 1e-300 are subnormal, where rounding is coarser.)
    assert_allclose(value, rho.value(z), rtol=1e-14, atol=1e-300)
    assert_allclose(psi, rho.derivative(z), rtol=1e-14, atol=0)
    assert_allclose(dpsi, rho.second_derivative(z), rtol=1e-12, atol=1e-300)
    delta = getattr(rho, "delta", 1.0)
    terms = rho.concomitant_terms(z)
    exact = (value, psi, dpsi, rho.z_psi_minus_rho(z))
    units = (delta**2, delta, 1.0, delta**2)
    eps = np.finfo(float).eps
    for got, want, unit in zip(terms, exact, units, strict=True):
        assert np.all(np.abs(got - want) <= 8 * eps * np.maximum(unit, np.abs(want)))
    assert_allclose(terms[2], dpsi, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("rho", RHOS, ids=repr)
@pytest.mark.parametrize("scale", [1e-8, 0.3, 1.0, 7.0, 9.0, 1e6])
def test_fixed_scale_terms_keep_the_precision_the_fixed_scale_loss_needs(rho, scale):
    """``fixed_scale_terms`` may give up relative precision near zero only.

    Where the fixed-scale loss's threshold ``scale * delta`` is at most 8
    (in units of the spread of y), an absolute error of a few ``eps`` times
    ``delta**2`` (``rho``) and ``delta`` (``psi``) is far below the rounding
    of the objective and its gradient; ``rho''`` keeps its relative
    precision (tails). Beyond, towards least squares, every term keeps its
    relative precision: the exact methods are the oracle.
    """
    z = np.concatenate(
        [-np.logspace(-300, 300, 301), [0.0], np.logspace(-300, 300, 301)]
    )
    if isinstance(rho, SquaredRho):
        z = z[np.abs(z) < 1e150]
    exact = (rho.value(z), rho.derivative(z), rho.second_derivative(z))
    with np.errstate(over="ignore", under="ignore"):
        terms = rho.fixed_scale_terms(z, scale)
    delta = getattr(rho, "delta", 1.0)
    eps = np.finfo(float).eps
    assert_allclose(terms[2], exact[2], rtol=1e-12, atol=1e-300)
    if scale * delta <= 8.0 and delta <= 8.0:
        for got, want, unit in zip(terms, exact, (delta**2, delta, 1.0), strict=False):
            assert np.all(
                np.abs(got - want) <= 8 * eps * np.maximum(unit, np.abs(want))
            )
    else:
        assert_allclose(terms[0], exact[0], rtol=1e-14, atol=1e-300)
        assert_allclose(terms[1], exact[1], rtol=1e-14, atol=0)
    scalar = rho.fixed_scale_terms(0.5, scale)
    assert all(np.ndim(v) == 0 for v in scalar)


@pytest.mark.parametrize("scale", ["mad", "lad", 0.05])
def test_fast_fixed_scale_terms_leave_the_fits_unchanged(monkeypatch, scale):
    """Log-cosh fits on the fast terms are the precise terms' fits to rounding."""
    from skrobust import LogCoshRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 4))
    y = X @ [1.0, -2.0, 0.5, 0.0] + 1.0 + rng.standard_t(3, size=3000)
    y[:300] += 40.0
    fast = LogCoshRegressor(scale=scale).fit(X, y)
    monkeypatch.setattr(
        LogCoshRho, "fixed_scale_terms", lambda self, z, scale: self._fused(z)
    )
    precise = LogCoshRegressor(scale=scale).fit(X, y)
    assert_allclose(fast.scale_, precise.scale_, rtol=1e-12)
    assert_allclose(fast.coef_, precise.coef_, rtol=1e-11, atol=1e-13)
    assert_allclose(fast.intercept_, precise.intercept_, rtol=1e-11)


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_only_newton_fits_take_the_fast_fixed_scale_terms(monkeypatch, solver):
    """L-BFGS compares values to a few eps: its fits keep the precise terms.

    (With the fast ones a log-cosh MAD fit at 2e4 x 1000, by L-BFGS, took
    243 passes instead of 171.)
    """
    from skrobust import LogCoshRegressor

    calls = []
    fast = LogCoshRho.fixed_scale_terms

    def counted(self, z, scale):
        calls.append(scale)
        return fast(self, z, scale)

    monkeypatch.setattr(LogCoshRho, "fixed_scale_terms", counted)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 3))
    y = X @ [1.0, 2.0, -1.0] + rng.standard_normal(500)
    LogCoshRegressor(scale="mad", solver=solver).fit(X, y)
    assert (len(calls) > 0) == (solver == "newton")
    default = FixedScaleLoss(LogCoshRho(), 0.5)
    assert not default.fast  # (the inference and other users: precise)


@pytest.mark.parametrize("rho", RHOS, ids=repr)
def test_fused_evaluations_take_scalars(rho):
    """Public residual functions evaluate a scalar as they do an array."""
    for z in (-3.0, 0.5):
        for method in (rho.value_derivatives, rho.concomitant_terms):
            scalar = method(z)
            array = method(np.array([z]))
            assert all(np.ndim(v) == 0 for v in scalar)
            assert_allclose(np.array(scalar), np.array(array)[:, 0], rtol=1e-15)


# -- the Gaussian NLL of the heteroscedastic model (with its jitter) ----------


def test_jittered_loss_derivatives_match_finite_differences():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    y[:5] = 0.0  # residuals of exactly zero, where the jitter matters
    raw = np.c_[np.r_[np.zeros(5), rng.normal(size=45)], rng.normal(size=50)]
    loss = GaussianNLLLoss(0.3)
    value, grad, hess = loss.loss_gradient_hessian(y, raw)
    r2 = (y - raw[:, 0]) ** 2
    assert_allclose(value, 0.5 * (r2 + 0.3) * np.exp(-raw[:, 1]) + 0.5 * raw[:, 1])
    value2, grad2 = loss.loss_gradient(y, raw)
    assert_allclose(value2, value, rtol=1e-15)
    assert_allclose(grad2, grad, rtol=1e-15)
    h = 1e-6
    for k in range(2):
        step = np.zeros(2)
        step[k] = h
        up = loss.loss_gradient_hessian(y, raw + step)
        down = loss.loss_gradient_hessian(y, raw - step)
        assert_allclose(grad[:, k], (up[0] - down[0]) / (2 * h), rtol=1e-6, atol=1e-8)
        assert_allclose(
            hess[:, :, k], (up[1] - down[1]) / (2 * h), rtol=1e-6, atol=1e-8
        )
    # Bounded below by (1 + log tau^2) / 2 even where the residual is zero.
    v = np.linspace(-30, 10, 81)
    at_zero = loss.loss_gradient(np.zeros(81), np.c_[np.zeros(81), v])[0]
    assert at_zero.min() >= 0.5 * (1 + np.log(0.3)) - 1e-12


def test_gaussian_nll_without_jitter_is_the_textbook_formula():
    rng = np.random.default_rng(1)
    y = rng.normal(size=40)
    raw = rng.normal(size=(40, 2))
    value, grad, hess = GaussianNLLLoss().loss_gradient_hessian(y, raw)
    r, inv_var = y - raw[:, 0], np.exp(-raw[:, 1])
    assert_allclose(value, 0.5 * r * r * inv_var + 0.5 * raw[:, 1], rtol=1e-15)
    assert_allclose(grad, np.c_[-r * inv_var, 0.5 - 0.5 * r * r * inv_var], rtol=1e-14)
    assert_allclose(hess[:, 0, 0], inv_var, rtol=1e-15)
    assert_allclose(hess[:, 1, 1], 0.5 * r * r * inv_var, rtol=1e-14)


def test_jittered_loss_out_of_range_rows_are_finite_and_flat():
    """Rows whose exp(-v) or (r^2 + tau^2) exp(-v) would pass exp(300).

    They get the stand-in loss 1e300 (above every row in range) and zero
    derivatives, without a RuntimeWarning, so that a zero weight cancels
    them; the rows in range are untouched.
    """
    loss = GaussianNLLLoss(1e-8)
    # (y, mu, v): in range, 1/sigma^2 too large, r^2/sigma^2 too large,
    # r^2 overflowing, v NaN, v infinite, and a very large variance.
    y = np.array([1.0, 0.0, 1e140, 1e200, 0.0, 0.0, 0.0])
    mu = np.zeros(7)
    v = np.array([0.5, -301.0, 0.0, 10.0, np.nan, np.inf, 1e6])
    raw = np.c_[mu, v]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grad, hess = loss.loss_gradient_hessian(y, raw)
    out = np.array([False, True, True, True, True, True, False])
    assert np.all(value[out] == 1e300)
    assert np.all(grad[out] == 0.0) and np.all(hess[out] == 0.0)
    expected = loss.loss_gradient_hessian(y[~out], raw[~out])
    assert_allclose(value[~out], expected[0], rtol=1e-15)
    assert_allclose(value[0], 0.5 * (1 + 1e-8) * np.exp(-0.5) + 0.25, rtol=1e-15)
    assert value[-1] == 5e5 and grad[-1, 1] == 0.5
    # Just inside the range the loss is finite and below the stand-in.
    edge = loss.loss_gradient_hessian(np.zeros(1), np.array([[0.0, -299.0]]))
    assert np.isfinite(edge[2]).all() and edge[0][0] < 1e300


@pytest.mark.parametrize(
    "rho", [HuberRho(), HuberRho(0.7), LogCoshRho(), LogCoshRho(2.5)], ids=repr
)
def test_irls_weight_is_psi_over_z(rho):
    """``irls_weight``, the fast form of ``weights_``: ``psi(z) / z``, 1 at 0."""
    rng = np.random.default_rng(0)
    z = np.concatenate(
        [
            rng.standard_t(3, 2000) * 5,
            np.geomspace(1e-300, 1e-1, 200),
            -np.linspace(0.0, 0.05, 201),  # (across the series' cut)
            [0.0, -0.0, 1e300, -1e300, np.inf, -np.inf, np.nan],
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = rho.irls_weight(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(z == 0, 1.0, rho.derivative(z) / z)
    assert_allclose(weights, expected, rtol=1e-13, atol=0, equal_nan=True)


class _ScaledSquare(ResidualFunction):
    """``c z^2 / 2``: only the required methods, so the generic forms apply."""

    def __init__(self, c=3.0):
        self.c = c

    def value(self, z):
        return 0.5 * self.c * np.asarray(z) ** 2

    def derivative(self, z):
        return self.c * np.asarray(z)

    def second_derivative(self, z):
        return np.full(np.shape(z), self.c)


def test_generic_irls_weight_is_psi_over_z_and_rho2_at_zero():
    """The base class's ``irls_weight``: ``psi(z) / z``, ``rho''(0)`` at zero,
    for a loss that does not override it, and the same numbers as the
    built-in losses' closed forms."""
    z = np.array([-4.0, -1e-3, -0.0, 0.0, 1e-300, 0.5, 2.0, 1e300])
    assert_allclose(_ScaledSquare().irls_weight(z), np.full(z.shape, 3.0))
    for rho in [HuberRho(), LogCoshRho(2.5)]:
        generic = ResidualFunction.irls_weight(rho, z)
        assert_allclose(rho.irls_weight(z), generic, rtol=1e-13, atol=0)
