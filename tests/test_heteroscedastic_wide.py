"""HeteroscedasticRegressor on wide dense designs, where no Hessian is affordable.

There the fit is truncated Newton preconditioned by a few rows
(``skrobust._sketched_newton``). Oracles: scipy's trust-exact on the
documented objective written out with its Hessian, and the gradient of that
objective at the fit.
"""

import numpy as np
import scipy.optimize
from _data import gap_data
from numpy.testing import assert_allclose

from skrobust import HeteroscedasticRegressor, _solvers


def documented_objective(X, y, sw, alpha, floor):
    """The class docstring's penalised NLL: value, gradient and Hessian in theta.

    ``theta = (b, b0, g, g0)``, all columns in the log-variance.
    """
    X1 = np.c_[X, np.ones(len(y))]
    p1 = X1.shape[1]
    mean_y = sw @ y / sw.sum()
    tau2 = floor * (sw @ (y - mean_y) ** 2 / sw.sum())

    def fun(theta):
        r = y - X1 @ theta[:p1]
        v = X1 @ theta[p1:]
        e = np.exp(-v)
        g = theta[p1:-1]
        value = sw @ (0.5 * (r * r + tau2) * e + 0.5 * v) + alpha * g @ g
        d_mu = -sw * r * e
        d_v = 0.5 * sw * (1 - (r * r + tau2) * e)
        grad = np.r_[X1.T @ d_mu, X1.T @ d_v]
        grad[p1:-1] += 2 * alpha * g
        return value, grad, (r, e)

    def hess(theta):
        _, _, (r, e) = fun(theta)
        H = np.empty((2 * p1, 2 * p1))
        H[:p1, :p1] = X1.T @ ((sw * e)[:, None] * X1)
        H[:p1, p1:] = X1.T @ ((sw * r * e)[:, None] * X1)
        H[p1:, :p1] = H[:p1, p1:].T
        H[p1:, p1:] = X1.T @ ((0.5 * sw * (r * r + tau2) * e)[:, None] * X1)
        H[p1:-1, p1:-1] += 2 * alpha * np.eye(p1 - 1)
        return H

    return fun, hess


def trust_exact_minimum(fun, hess, start, total, maxiter=200):
    """scipy's trust-exact on ``fun / total`` from ``start``, to a gradient of
    1e-9 (a mean over rows, whose gradient it can resolve)."""
    res = scipy.optimize.minimize(
        lambda t: tuple(part / total for part in fun(t)[:2]),
        start,
        jac=True,
        hess=lambda t: hess(t) / total,
        method="trust-exact",
        options={"gtol": 1e-10, "maxiter": maxiter},
    )
    assert np.max(np.abs(res.jac)) <= 1e-9
    return res


def theta_of(model):
    return np.r_[model.coef_, model.intercept_, model.var_coef_, model.var_intercept_]


def test_sketched_newton_reaches_the_trust_exact_optimum(monkeypatch):
    """2000 x 200 with 10% gross errors, solved as if its Hessian were too
    dear (the wide path): the same optimum as trust-exact on the documented
    objective, to 1e-10 in its value, in a few dozen Newton iterations. The
    variances 1 / sigma^2 weigh the rows over ten orders of magnitude there,
    which L-BFGS did not resolve in its 200 default iterations."""
    monkeypatch.setattr(_solvers, "_NEWTON_FALLBACK_WORK", 0.0)
    X, y = gap_data(2000, 200)
    sw = np.ones(len(y))
    model = HeteroscedasticRegressor().fit(X, y)  # (warnings are errors)
    assert model.n_iter_ <= 40

    fun, hess = documented_objective(X, y, sw, alpha=1e-4, floor=1e-8)
    n = len(y)  # (as a mean over rows, whose gradient trust-exact can resolve)
    start = theta_of(model) + 1e-3 * np.random.default_rng(5).standard_normal(402)
    res = trust_exact_minimum(fun, hess, start, n)
    ours = fun(theta_of(model))[0] / n
    assert abs(ours - res.fun) <= 1e-10 * abs(res.fun)
    assert_allclose(theta_of(model), res.x, rtol=1e-5, atol=1e-7 * np.abs(res.x).max())


def test_wide_default_fit_converges_without_a_warning():
    """10000 x 400 (802 coefficients; a Hessian would cost 6.4e9 flops, more
    than the L-BFGS fallback allows): converged at the defaults, in a few
    dozen iterations where L-BFGS ran out of its 200, and stationary for
    the documented objective."""
    X, y = gap_data(10_000, 400, seed=1)
    model = HeteroscedasticRegressor().fit(X, y)  # (warnings are errors)
    assert model.n_iter_ <= 40
    sw = np.ones(len(y))
    fun, _ = documented_objective(X, y, sw, alpha=1e-4, floor=1e-8)
    value, grad, _ = fun(theta_of(model))
    # The solver's test is the gradient of the weighted-mean objective in
    # standardised units (y / s_y, unit columns) at tol = 1e-10; here in
    # the units of y (s_y ~ 30) and per row summed: a loose multiple.
    s_y = np.std(y)
    scale = len(y) * np.r_[np.full(401, 1.0 / s_y), np.ones(401)]
    assert np.max(np.abs(grad) / scale) <= 1e-8
