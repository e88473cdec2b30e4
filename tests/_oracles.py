"""Independent oracles: the answers tests compare skrobust's fits with.

Each function here computes a reference result without any of skrobust's
code: the losses are written from their textbook formulas, the minimisers are
scipy's (``linprog`` with HiGHS, L-BFGS-B run to rounding level), numpy's
SVD least squares, or statsmodels' ``RLM``. A test that agrees with one of
them checks skrobust against a separate implementation of the same maths,
not against itself. Tests import them from here, so that each oracle is
written, documented and reviewed once.

* reference losses: :func:`huber_rho`, :func:`huber_psi`, :func:`huber_chi`,
  :func:`logcosh_rho`, :func:`logcosh_psi`, :func:`logcosh_chi`, and
  :data:`MAD_NORMAL_CONSTANT`;
* linear programmes: :func:`quantile_linprog` (quantile regression, and least
  absolute deviation at ``quantile=0.5``) and the objective it minimises,
  :func:`quantile_objective`;
* least squares: :func:`least_squares`;
* statsmodels: :func:`statsmodels_rlm` and the norm :class:`LogCoshNorm`;
* direct minimisation: :func:`tight_minimize`, :func:`owen_objective` with
  :func:`joint_scale_oracle`, and :class:`FixedScaleOracle`.
"""

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import statsmodels.api as sm
from scipy.optimize import linprog, minimize
from statsmodels.robust.norms import RobustNorm
from threadpoolctl import threadpool_limits

# The normalised MAD: median(|r|) / MAD_NORMAL_CONSTANT estimates the standard
# deviation of Gaussian residuals (R's mad(), statsmodels' mad()); it is the
# standard normal's 0.75 quantile, scipy.stats.norm.ppf(0.75).
MAD_NORMAL_CONSTANT = 0.6744897501960817


# ---------------------------------------------------------------------------
# Reference losses, written from their formulas
# ---------------------------------------------------------------------------


def huber_rho(z, delta):
    """Huber's loss: ``z^2 / 2`` for ``|z| <= delta``, ``delta |z| - delta^2 / 2``.

    Written as ``m^2 / 2 + delta (|z| - m)`` with ``m = min(|z|, delta)``,
    which squares nothing larger than ``delta`` and so cannot overflow.

    Examples
    --------
    >>> import numpy as np
    >>> huber_rho(np.array([0.5, 3.0]), 1.0).tolist()
    [0.125, 2.5]
    """
    a = np.abs(z)
    m = np.minimum(a, delta)
    return 0.5 * m * m + delta * (a - m)


def huber_psi(z, delta):
    """Huber's ``psi = rho'``: ``z`` clipped to ``[-delta, delta]``."""
    return np.clip(z, -delta, delta)


def huber_chi(z, delta):
    """``z psi(z) - rho(z) = min(|z|, delta)^2 / 2`` (the scale equation's term)."""
    m = np.minimum(np.abs(z), delta)
    return 0.5 * m * m


def logcosh_rho(z, delta):
    """``delta^2 log cosh(z / delta)`` as ``|x| + log1p(exp(-2|x|)) - log 2``.

    The rewritten form, with ``x = z / delta``, never evaluates ``cosh`` of a
    large argument, so it is finite for every finite ``z``.

    Examples
    --------
    >>> import numpy as np
    >>> bool(np.isclose(logcosh_rho(0.3, 1.0), np.log(np.cosh(0.3))))
    True
    """
    a = np.abs(z) / delta
    return delta**2 * (a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0))


def logcosh_psi(z, delta):
    """Log-cosh's ``psi = rho' = delta tanh(z / delta)``."""
    return delta * np.tanh(z / delta)


def logcosh_chi(z, delta):
    """``z psi - rho = delta^2 (log 2 - log1p(e) - a (1 - tanh a))``, ``e = exp(-2a)``.

    ``1 - tanh a = 2 e / (1 + e)`` keeps the tail free of cancellation.
    """
    a = np.abs(z) / delta
    e = np.exp(-2.0 * a)
    return delta**2 * (np.log(2.0) - np.log1p(e) - 2.0 * a * e / (1.0 + e))


# ---------------------------------------------------------------------------
# Linear programmes and least squares
# ---------------------------------------------------------------------------


class LinearFit(NamedTuple):
    """Coefficients and intercept of a reference fit, and its objective value."""

    coef: np.ndarray
    intercept: float
    objective: float


def quantile_objective(X, y, coef, intercept, quantile, sample_weight=None, alpha=0.0):
    r"""scikit-learn's quantile objective at ``(coef, intercept)``.

    :math:`\frac1S \sum_i s_i \rho_q(r_i) + \alpha \lVert w\rVert_1` with
    the pinball loss :math:`\rho_q(r) = q r` for ``r >= 0`` and ``(q - 1) r``
    below, written from its definition; :func:`quantile_linprog` returns its
    minimum.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.zeros((2, 1))
    >>> float(quantile_objective(X, np.array([1.0, -1.0]), np.zeros(1), 0.0, 0.9))
    0.5
    """
    s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight)
    r = y - X @ coef - intercept
    pinball = np.where(r < 0, (quantile - 1.0) * r, quantile * r)
    return float(s @ pinball) / s.sum() + alpha * np.abs(coef).sum()


def quantile_linprog(
    X, y, quantile=0.5, sample_weight=None, alpha=0.0, fit_intercept=True
):
    r"""Penalised quantile regression solved as one linear programme (HiGHS).

    Minimises scikit-learn's objective

    .. math::

        \frac1S \sum_i s_i \rho_q(y_i - x_i w - b) + \alpha \lVert w\rVert_1,
        \qquad \rho_q(r) = \max(q r, (q - 1) r), \quad S = \sum_i s_i,

    with variables ``w = w+ - w-`` (``w+-, >= 0``, so that the L1 penalty is
    linear), a free intercept ``b`` and residual parts ``u, v >= 0`` with
    ``X (w+ - w-) + b + u - v = y``; costs ``alpha S`` on ``w+-``, ``q s_i``
    on ``u_i`` and ``(1 - q) s_i`` on ``v_i``, all divided by ``max_i s_i``
    so that HiGHS's absolute tolerances see costs of order one. Rows of zero
    weight stay in with zero cost. At ``quantile=0.5``, ``2 S objective`` is
    the least absolute deviation ``sum_i s_i |r_i|``.

    Independent of skrobust: the LP is written here from the objective and
    solved by scipy's HiGHS, a simplex/interior-point code that shares
    nothing with skrobust's exact quantile solver.

    Returns
    -------
    LinearFit
        ``coef`` and ``intercept`` of an optimal vertex (0.0 without an
        intercept) and ``objective``, the optimal value of the objective
        above.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    >>> fit = quantile_linprog(X, np.array([0.0, 1.0, 2.0, 3.0, 20.0]))
    >>> round(float(fit.coef[0]), 12), round(fit.objective, 12)
    (1.0, 1.6)
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n, p = X.shape
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
    S, unit = s.sum(), s.max()
    n_intercept = 1 if fit_intercept else 0
    identity = sp.eye_array(n, format="csc")
    A = sp.hstack([X, -X, np.ones((n, n_intercept)), identity, -identity], format="csc")
    cost = np.concatenate(
        [
            np.full(2 * p, alpha * S),
            np.zeros(n_intercept),
            quantile * s,
            (1.0 - quantile) * s,
        ]
    )
    bounds = [(0.0, None)] * (2 * p) + [(None, None)] * n_intercept
    bounds += [(0.0, None)] * (2 * n)
    res = linprog(cost / unit, A_eq=A, b_eq=y, bounds=bounds, method="highs")
    assert res.status == 0, res.message
    coef = res.x[:p] - res.x[p : 2 * p]
    intercept = float(res.x[2 * p]) if fit_intercept else 0.0
    return LinearFit(coef, intercept, float(res.fun * unit / S))


def least_squares(X, y):
    """Minimum-norm least squares with an intercept, by ``numpy.linalg.lstsq``.

    Solved on centred columns, so that a large column offset (timestamps)
    does not make the design numerically rank-deficient, and on ``y`` divided
    by a power of two near its largest value (an exact rescaling), so that
    targets up to 1e308 overflow nowhere (no squares of ``y``). With more
    coefficients than rows it returns the minimum-norm interpolant.

    Independent of skrobust: LAPACK's SVD solver, no iteration.

    Returns
    -------
    coef : ndarray of shape (n_features,)
    intercept : float

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0]])
    >>> coef, intercept = least_squares(X, 1e300 * (1.0 + 2.0 * X[:, 0]))
    >>> round(float(coef[0] / 1e300), 12), round(float(intercept / 1e300), 12)
    (2.0, 1.0)
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    largest = np.max(np.abs(y))
    exponent = np.frexp(largest)[1] if largest > 0 else 0
    y_unit = np.ldexp(y, -exponent)
    X_mean, y_mean = X.mean(axis=0), y_unit.mean()
    coef = np.linalg.lstsq(X - X_mean, y_unit - y_mean, rcond=None)[0]
    intercept = y_mean - X_mean @ coef
    return np.ldexp(coef, exponent), float(np.ldexp(intercept, exponent))


# ---------------------------------------------------------------------------
# statsmodels
# ---------------------------------------------------------------------------


def statsmodels_rlm(
    X, y, norm, *, tol=1e-12, maxiter=1000, start_params=None, **fit_options
):
    """statsmodels' ``RLM`` with an intercept column, iterated to ``tol``.

    ``RLM(y, [1, X], M=norm).fit(conv="coefs")``: iteratively reweighted
    least squares with the MAD scale (``median|r| / 0.6745``, statsmodels'
    default ``scale_est="mad"``) updated at every iteration, stopping when
    the coefficients change by less than ``tol``. Its fixed point is the
    ``scale="mad"`` estimate of skrobust's M-estimators. ``fit_options``
    go to ``RLMResults.fit`` as they are (``cov="H2"``, ``scale_est``...).

    Independent of skrobust: statsmodels' own IRLS and scale code.

    Returns
    -------
    RLMResults
        ``params`` is ``[intercept, *coef]``; ``scale`` the MAD scale.
    """
    design = np.column_stack([np.ones(len(y)), X])
    return sm.RLM(y, design, M=norm).fit(
        tol=tol,
        maxiter=maxiter,
        conv="coefs",
        start_params=start_params,
        **fit_options,
    )


class LogCoshNorm(RobustNorm):
    r"""statsmodels norm for :math:`\rho(z) = \delta^2 \log\cosh(z / \delta)`.

    :math:`\psi(z) = \delta \tanh(z/\delta)`, IRLS weight
    :math:`\psi(z)/z` (1 at 0) and :math:`\psi'(z) = \operatorname{sech}^2(z/\delta)`.
    statsmodels has no log-cosh norm; this one is written from the formulas
    (``tests/test_logcosh.py`` checks its pieces against each other by finite
    differences).
    """

    def __init__(self, delta=1.0):
        self.delta = delta

    def rho(self, z):
        return logcosh_rho(np.asarray(z, dtype=float), self.delta)

    def psi(self, z):
        return logcosh_psi(np.asarray(z, dtype=float), self.delta)

    def weights(self, z):
        x = np.asarray(z, dtype=float) / self.delta
        out = np.ones_like(x)
        nonzero = x != 0
        out[nonzero] = np.tanh(x[nonzero]) / x[nonzero]
        return out

    def psi_deriv(self, z):
        return 1.0 / np.cosh(np.asarray(z, dtype=float) / self.delta) ** 2


# ---------------------------------------------------------------------------
# Direct minimisation with scipy
# ---------------------------------------------------------------------------


def tight_minimize(fun_and_grad, x0, bounds=None):
    """L-BFGS-B run to rounding level: the test-side minimiser.

    ``fun_and_grad(theta)`` returns the value and the gradient; ``gtol=1e-12``
    and ``ftol=0`` leave only the line search's rounding to stop it.
    Independent of skrobust: scipy's L-BFGS-B on an objective the test
    writes out itself.

    BLAS is limited to one thread: L-BFGS-B's tiny matrix products are
    otherwise dominated by thread wake-ups on a busy machine.

    Returns
    -------
    scipy.optimize.OptimizeResult
    """
    with threadpool_limits(limits=1, user_api="blas"):
        result = minimize(
            fun_and_grad,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={
                "gtol": 1e-12,
                "ftol": 0.0,
                "maxiter": 100_000,
                "maxfun": 100_000,
                "maxcor": 50,
                "maxls": 100,
            },
        )
    return result


def _split_params(theta, n_features, fit_intercept):
    w = theta[:n_features]
    b = theta[n_features] if fit_intercept else 0.0
    return w, b


def owen_objective(theta, X, y, sample_weight, alpha, fit_intercept, rho, psi):
    r"""Owen's concomitant objective and its gradient in ``(w, b, sigma)``.

    .. math::

        F = \sum_i s_i \sigma (1 + 2\rho(r_i / \sigma)) + \alpha \lVert w\rVert^2

    which for Huber's ``rho`` is scikit-learn's ``HuberRegressor`` objective
    ``sum_i (sigma + sigma H_eps(r_i / sigma)) + alpha ||w||^2`` with
    ``H_eps(z) = z^2`` for ``|z| <= eps`` and ``2 eps |z| - eps^2`` beyond
    (unit weights; scikit-learn writes the first term as ``n sigma`` also
    with weights). ``theta`` is ``(w, b, sigma)`` (no ``b`` without an
    intercept); ``rho`` and ``psi`` are one-argument callables.
    """
    n_features = X.shape[1]
    w, b = _split_params(theta, n_features, fit_intercept)
    sigma = theta[-1]
    z = (y - X @ w - b) / sigma
    two_rho, two_psi = 2.0 * rho(z), 2.0 * psi(z)
    value = sample_weight @ (sigma + sigma * two_rho) + alpha * w @ w
    grad_w = -(sample_weight * two_psi) @ X + 2.0 * alpha * w
    grad_b = [-(sample_weight @ two_psi)] if fit_intercept else []
    grad_sigma = sample_weight @ (1.0 + two_rho - z * two_psi)
    return value, np.concatenate([grad_w, grad_b, [grad_sigma]])


def joint_scale_oracle(X, y, sample_weight, alpha, fit_intercept, rho, psi, starts):
    """The minimum of :func:`owen_objective` over tight L-BFGS-B runs from ``starts``.

    ``sigma`` is bounded below by 1e-12; the best run (lowest value) is
    returned, so that a start in a poor region cannot decide the answer.
    Independent of skrobust: scipy's L-BFGS-B on the objective written above.

    Returns
    -------
    scipy.optimize.OptimizeResult
        ``x`` is ``(w, b, sigma)``, ``fun`` the objective there.
    """
    args = (X, y, sample_weight, alpha, fit_intercept, rho, psi)
    size = len(starts[0])
    bounds = [(None, None)] * (size - 1) + [(1e-12, None)]
    results = [
        tight_minimize(lambda t: owen_objective(t, *args), start, bounds)
        for start in starts
    ]
    return min(results, key=lambda result: result.fun)


class FixedScaleOracle:
    r"""The fixed-scale objective, minimised tightly by scipy.

    .. math::

        F(w, b) = \frac{1}{S}\Big(\sum_i s_i \sigma^2 \rho(r_i / \sigma)
                  + \alpha \lVert w \rVert^2\Big), \qquad S = \sum_i s_i,

    optimised over coefficients ``u`` of the oracle's own standardised
    columns (``(X - mean) / sd``, centred only with an intercept), which keeps
    L-BFGS well conditioned; :meth:`value` takes ``(w, b)`` in original units.
    Independent of skrobust: the objective is written here and minimised by
    :func:`tight_minimize`; ``rho`` and ``psi`` are one-argument callables.
    """

    def __init__(self, X, y, sample_weight, sigma, alpha, rho, psi, fit_intercept):
        self.y, self.sample_weight = y, sample_weight
        self.sigma, self.alpha, self.rho, self.psi = sigma, alpha, rho, psi
        self.fit_intercept = fit_intercept
        self.mean = X.mean(axis=0) if fit_intercept else np.zeros(X.shape[1])
        self.sd = X.std(axis=0)
        self.design = (X - self.mean) / self.sd
        if fit_intercept:
            self.design = np.column_stack([self.design, np.ones(len(y))])
        self.penalised = np.r_[1.0 / self.sd, [0.0] if fit_intercept else []]

    def fun(self, theta):
        r = self.y - self.design @ theta
        z = r / self.sigma
        penalty_coef = theta * self.penalised  # w, and 0 for the intercept
        total = self.sample_weight.sum()
        value = self.sample_weight @ (self.sigma**2 * self.rho(z))
        value += self.alpha * penalty_coef @ penalty_coef
        grad = -(self.sample_weight * self.sigma * self.psi(z)) @ self.design
        grad += 2.0 * self.alpha * penalty_coef * self.penalised
        return value / total, grad / total

    def to_theta(self, w, b):
        u = w * self.sd
        return np.r_[u, b + self.mean @ w] if self.fit_intercept else u

    def to_original(self, theta):
        w = theta[: self.sd.size] / self.sd
        b = theta[-1] - self.mean @ w if self.fit_intercept else 0.0
        return w, b

    def value(self, w, b):
        return self.fun(self.to_theta(w, b))[0]

    def solve(self, starts):
        """Best ``(w, b, value)`` over tight L-BFGS runs from ``(w, b)`` starts."""
        results = [tight_minimize(self.fun, self.to_theta(w, b)) for w, b in starts]
        best = min(results, key=lambda result: result.fun)
        return (*self.to_original(best.x), best.fun)


def heavy_rows_data(n=30, heavy=3, seed=0):
    """``n`` rows of 3 columns, ``heavy`` of them of weight 1e10, the rest 1e-10.

    ``y`` is linear in ``X`` plus t(3) noise: the data on which issue 11's
    oracle sweeps found the MAD and LAD scales far below the spread of
    ``y``. Returns ``(X, y, weights)``.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.standard_t(3, size=n)
    weights = np.full(n, 1e-10)
    weights[rng.choice(n, heavy, replace=False)] = 1e10
    return X, y, weights


def assert_huber_fixed_scale_optimum(model, X, y, weights, alpha, delta=1.35):
    """``model`` minimises Huber's fixed-scale objective at its ``scale_``.

    :class:`FixedScaleOracle`'s L-BFGS, from the model's fit and from zero,
    must not lower the objective by more than 1e-9 of it. Returns the
    oracle's minimiser ``(w, b)``.
    """
    oracle = FixedScaleOracle(
        X,
        y,
        weights,
        model.scale_,
        alpha,
        lambda z: huber_rho(z, delta),
        lambda z: huber_psi(z, delta),
        True,
    )
    w, b, best = oracle.solve([(model.coef_, model.intercept_), (np.zeros(3), 0.0)])
    assert oracle.value(model.coef_, model.intercept_) <= best * (1 + 1e-9)
    return w, b
