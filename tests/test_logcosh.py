"""Log-cosh specific tests of LogCoshRegressor.

The properties it shares with HuberRegressor (oracles for the joint and
fixed scales, invariances, warm starts, scikit-learn tooling) are in
``test_huber.py``, parametrised over both classes. Here:

* ``scale="mad"`` against statsmodels' ``RLM`` with the log-cosh norm of
  ``tests/_oracles.py`` (statsmodels has none);
* ``scale=1.0`` against the documented objective ``sum_i log cosh(r_i/delta)``;
* the limit ``delta -> 0``, least absolute deviation, against
  :func:`scipy.optimize.linprog` (``tests/_oracles.py``);
* smoothness: the fitted coefficients are differentiable in ``y`` with the
  derivative the implicit function theorem gives.
"""

import numpy as np
import pytest
from _huber_logcosh import make_data
from _oracles import LogCoshNorm, quantile_linprog, statsmodels_rlm, tight_minimize
from numpy.testing import assert_allclose
from sklearn.linear_model import LinearRegression

from skrobust import LogCoshRegressor


def with_intercept_column(X):
    return np.column_stack([np.ones(X.shape[0]), X])


@pytest.mark.parametrize("delta", [1.0, 2.5])
@pytest.mark.parametrize("outlier_fraction", [0.1, 0.2, 0.3])
def test_mad_scale_matches_statsmodels_rlm_with_log_cosh_norm(delta, outlier_fraction):
    X, y, _ = make_data(outlier_fraction=outlier_fraction)
    model = LogCoshRegressor(delta, scale="mad").fit(X, y)
    rlm = statsmodels_rlm(X, y, LogCoshNorm(delta), tol=1e-12, maxiter=1000)
    assert_allclose(np.r_[model.intercept_, model.coef_], rlm.params, rtol=1e-6)
    assert model.scale_ == pytest.approx(rlm.scale, rel=1e-6)


def test_log_cosh_norm_is_consistent():
    """The oracle's own pieces agree: psi = rho', weights = psi / z, psi' = psi'."""
    norm = LogCoshNorm(0.7)
    z = np.linspace(-5.0, 5.0, 41)
    h = 1e-6
    assert_allclose(
        norm.psi(z), (norm.rho(z + h) - norm.rho(z - h)) / (2 * h), atol=1e-8
    )
    assert_allclose(
        norm.psi_deriv(z), (norm.psi(z + h) - norm.psi(z - h)) / (2 * h), atol=1e-8
    )
    nonzero = z != 0
    assert_allclose(norm.weights(z)[nonzero], norm.psi(z)[nonzero] / z[nonzero])


@pytest.mark.parametrize("delta", [0.3, 1.0, 3.0])
def test_unit_scale_minimises_sum_of_log_cosh(delta):
    """``scale=1.0, alpha=0`` minimises ``sum_i log cosh(r_i / delta)``."""
    X, y, _ = make_data()
    model = LogCoshRegressor(delta, scale=1.0).fit(X, y)
    mean, sd = X.mean(axis=0), X.std(axis=0)
    design = np.column_stack([(X - mean) / sd, np.ones(len(y))])

    def fun(theta):
        x = (y - design @ theta) / delta
        value = np.mean(np.logaddexp(x, -x) - np.log(2.0))
        return value, -(np.tanh(x) / delta) @ design / len(y)

    def to_theta(w, b):
        return np.r_[w * sd, b + mean @ w]

    ols = LinearRegression().fit(X, y)
    result = tight_minimize(fun, to_theta(ols.coef_, ols.intercept_))
    w = result.x[:3] / sd
    b = result.x[3] - mean @ w
    assert fun(to_theta(model.coef_, model.intercept_))[0] <= result.fun * (1 + 1e-12)
    assert_allclose(model.coef_, w, rtol=1e-6)
    assert model.intercept_ == pytest.approx(b, rel=1e-6)


@pytest.mark.parametrize("delta", [0.1, 0.01, 0.003])
def test_small_delta_approaches_least_absolute_deviation(delta):
    r"""As ``delta -> 0`` the fit minimises the sum of absolute residuals.

    ``delta |z| - delta^2 log 2 <= delta^2 log cosh(z / delta) <= delta |z|``,
    so the log-cosh minimiser :math:`\hat\theta` has
    :math:`\sum_i |r_i(\hat\theta)| \le \mathrm{LAD}^* + n \delta \log 2`.
    """
    X, y, _ = make_data()
    model = LogCoshRegressor(delta, scale=1.0).fit(X, y)
    # The least absolute deviation, sum_i |r_i|, is 2 n times the minimal
    # mean pinball loss at quantile 0.5.
    lad = 2 * len(y) * quantile_linprog(X, y, quantile=0.5).objective
    absolute = np.abs(y - model.predict(X)).sum()
    assert lad * (1 - 1e-12) <= absolute <= lad + len(y) * delta * np.log(2.0)


@pytest.mark.parametrize("alpha", [0.0, 2.0])
def test_coefficients_are_smooth_in_y(alpha):
    r"""The fit is differentiable in ``y``, with the implicit-function derivative.

    With a fixed scale the fit solves
    :math:`\sum_i s_i \sigma \psi(r_i/\sigma) a_i = 2\alpha P\theta`
    (``a_i = (x_i, 1)``, ``P`` selecting ``w``), so
    :math:`\partial\theta / \partial y_k = H^{-1} s_k \psi'(z_k) a_k` with
    :math:`H = \sum_i s_i \psi'(z_i) a_i a_i^\top + 2\alpha P`. Central
    differences of refits must match it: log-cosh has no kinks, so this
    holds at every data point (for Huber it fails at the threshold).
    """
    X, y, _ = make_data()
    sample_weight = np.random.default_rng(8).uniform(0.5, 2.0, size=len(y))
    sigma, delta = 1.5, 1.0

    def fit(y_fit):
        model = LogCoshRegressor(delta, scale=sigma, alpha=alpha)
        model.fit(X, y_fit, sample_weight=sample_weight)
        return np.r_[model.coef_, model.intercept_]

    theta = fit(y)
    design = with_intercept_column(X)[:, [1, 2, 3, 0]]  # (x, 1), as theta
    z = (y - design @ theta) / sigma
    dpsi = 1.0 / np.cosh(z / delta) ** 2
    hessian = design.T @ (design * (sample_weight * dpsi)[:, None])
    hessian[:3, :3] += 2.0 * alpha * np.eye(3)
    # Every row's derivative at once, for the size of a typical one.
    all_derivatives = np.linalg.solve(
        hessian, (design * (sample_weight * dpsi)[:, None]).T
    )
    atol = 1e-6 * np.max(np.abs(all_derivatives))
    step = 1e-3
    # Rows near the fit, further out, and the largest residual (derivative ~0).
    for k in [0, 17, 123, int(np.argmax(np.abs(z)))]:
        expected = np.linalg.solve(hessian, sample_weight[k] * dpsi[k] * design[k])
        y_plus, y_minus = y.copy(), y.copy()
        y_plus[k] += step
        y_minus[k] -= step
        finite_difference = (fit(y_plus) - fit(y_minus)) / (2 * step)
        assert_allclose(
            finite_difference,
            expected,
            rtol=1e-4,
            atol=atol,
        )


@pytest.mark.parametrize(
    "X, y, delta, scale, alpha",
    [
        # delta sigma = 1e-5 against residuals of 0.1-1: every row but the
        # one the fit passes through has rho'' = sech^2(x) ~ 1e-301.
        ([[0.33], [0.19], [0.1]], [-1.4, -0.5, -0.1], 1000.0, 1e-8, 1e-4),
        ([[0.33], [0.19], [0.1]], [-1.4, -0.5, -0.1], 1.0, 1e-5, 1e-4),
        # Targets of 1e5 against a scale of 10.
        ([[-1.6, 0.4], [-1.0, 0.1], [-0.2, 0.9]], [2e5, -40.0, 1.2e5], 1.0, 10.0, 0.5),
    ],
)
def test_curvature_below_the_hessians_rounding_reaches_the_optimum(
    X, y, delta, scale, alpha
):
    """Rows at ``x = |r| / (delta sigma)`` of 250-370 have a curvature
    ``sech^2 x`` positive but below 1e-200, so the Hessian of the
    unpenalised intercept factorises with a pivot of ~1e-150 and scipy's
    trust-exact overflowed solving with it (a ``ValueError`` about infs or
    NaNs, from ``fit``). The fit must reach the minimum of the documented
    fixed-scale objective, found by L-BFGS run to rounding level.
    """
    from _oracles import FixedScaleOracle, logcosh_psi, logcosh_rho

    X, y = np.array(X), np.array(y)
    model = LogCoshRegressor(delta, scale=scale, alpha=alpha).fit(X, y)
    oracle = FixedScaleOracle(
        X,
        y,
        np.ones(len(y)),
        scale,
        alpha,
        lambda z: logcosh_rho(z, delta),
        lambda z: logcosh_psi(z, delta),
        True,
    )
    starts = [(model.coef_, model.intercept_), (np.zeros(X.shape[1]), np.median(y))]
    w, b, best = oracle.solve(starts)
    assert oracle.value(model.coef_, model.intercept_) <= best * (1 + 1e-12)
    assert_allclose(model.coef_, w, rtol=1e-6)
    assert model.intercept_ == pytest.approx(b, rel=1e-6)
