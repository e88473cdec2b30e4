"""Pointwise losses and their first two derivatives.

Two small layers live here, and neither knows anything about ``X``:

* **Residual functions** ``rho(z)`` of a standardised residual ``z``
  (:class:`SquaredRho`, :class:`HuberRho`, :class:`LogCoshRho`), each with
  ``value``, ``derivative`` (``psi = rho'``) and ``second_derivative``
  (``rho''``). Adding a robust loss means adding one of these.
* **Prediction losses**, the per-sample loss ``L(y, eta)`` of a raw prediction
  ``eta`` of shape ``(n_samples, k)`` (one column per linear predictor), with
  its gradient ``(n_samples, k)`` and Hessian ``(n_samples, k, k)`` with
  respect to ``eta``. These are what :mod:`skrobust._objective` chains through
  ``X``:

  - :class:`FixedScaleLoss` (``k = 1``): ``sigma**2 * rho((y - eta) / sigma)``
    for a fixed positive ``sigma``;
  - :class:`ConcomitantScaleLoss` (``k = 2``): Huber's / Owen's jointly convex
    ``sigma * (1 + 2 rho((y - eta) / sigma))`` with ``log sigma`` as a
    second raw prediction;
  - :class:`GaussianNLLLoss` (``k = 2``): ``(y - mu)**2 / (2 sigma**2) +
    0.5 log sigma**2`` with ``eta = (mu, log sigma**2)``.

Every formula is written so that residuals up to ``1e300`` neither overflow
nor raise a ``RuntimeWarning``.
"""

import numpy as np

_LOG2 = np.log(2.0)


class SquaredRho:
    r"""Least squares, :math:`\rho(z) = z^2 / 2`."""

    def value(self, z):
        return 0.5 * z * z

    def derivative(self, z):
        return np.asarray(z, dtype=float).copy()

    def second_derivative(self, z):
        return np.ones_like(z, dtype=float)

    def z_psi_minus_rho(self, z):
        return 0.5 * z * z


class HuberRho:
    r"""Huber's function with threshold ``delta``.

    .. math::

        \rho(z) = \begin{cases} z^2/2 & |z| \le \delta \\
                  \delta |z| - \delta^2/2 & |z| > \delta \end{cases}

    :math:`\rho'(z) = \operatorname{clip}(z, -\delta, \delta)` and
    :math:`\rho''(z) = 1_{|z| \le \delta}`. Smooth-L1 with parameter
    ``beta`` equals ``rho / beta`` with ``delta = beta``: the same minimiser.
    """

    def __init__(self, delta=1.35):
        self.delta = delta

    def value(self, z):
        # 0.5 m^2 + delta (|z| - m) with m = min(|z|, delta) never squares a
        # large residual, so it cannot overflow.
        a = np.abs(z)
        m = np.minimum(a, self.delta)
        return 0.5 * m * m + self.delta * (a - m)

    def derivative(self, z):
        return np.clip(z, -self.delta, self.delta)

    def second_derivative(self, z):
        return (np.abs(z) <= self.delta).astype(float)

    def z_psi_minus_rho(self, z):
        """``z rho'(z) - rho(z) = min(|z|, delta)**2 / 2``, free of cancellation."""
        m = np.minimum(np.abs(z), self.delta)
        return 0.5 * m * m


class LogCoshRho:
    r"""Scaled log-cosh, :math:`\rho(z) = \delta^2 \log\cosh(z / \delta)`.

    Quadratic (``z**2 / 2``) near zero and linear (``delta |z|``) in the tails,
    like Huber's function, but infinitely differentiable:
    :math:`\rho'(z) = \delta \tanh(z/\delta)`,
    :math:`\rho''(z) = \operatorname{sech}^2(z/\delta)`.

    Evaluated as ``|x| + log1p(exp(-2|x|)) - log 2`` with ``x = z / delta``
    for ``|x| >= 1``, which cannot overflow (``cosh`` would for
    ``|x| > 710``), and as ``log1p(2 sinh(x/2)^2)`` below, which keeps full
    relative precision near zero, and ``sech^2 x = 4 e / (1 + e)^2`` with
    ``e = exp(-2|x|)``, which keeps full relative precision in the tails where
    ``1 - tanh^2`` would round to zero.
    """

    def __init__(self, delta=1.0):
        self.delta = delta

    def value(self, z):
        x = np.abs(np.asarray(z, dtype=float)) / self.delta
        out = np.empty_like(x)
        # Near zero log1p(2 sinh^2(x/2)) keeps full relative precision (the
        # tail formula cancels there); far out, sinh would overflow.
        near = x < 1.0
        out[near] = np.log1p(2.0 * np.sinh(0.5 * x[near]) ** 2)
        far = x[~near]
        out[~near] = far + np.log1p(np.exp(-2.0 * far)) - _LOG2
        return self.delta**2 * out

    def derivative(self, z):
        return self.delta * np.tanh(np.asarray(z) / self.delta)

    def second_derivative(self, z):
        e = np.exp(-2.0 * np.abs(z) / self.delta)
        return 4.0 * e / (1.0 + e) ** 2

    def z_psi_minus_rho(self, z):
        """``z rho'(z) - rho(z)`` as ``delta^2 (log 2 - log1p(e) - 2 x e / (1 + e))``.

        With ``x = |z| / delta`` and ``e = exp(-2x)``; the direct difference
        of two terms of size ``delta |z|`` would cancel for large ``|z|``.
        """
        x = np.abs(z) / self.delta
        e = np.exp(-2.0 * x)
        return self.delta**2 * (_LOG2 - np.log1p(e) - 2.0 * x * e / (1.0 + e))


class FixedScaleLoss:
    r"""``sigma**2 * rho((y - eta) / sigma)`` for a fixed scale ``sigma > 0``.

    The factor ``sigma**2`` keeps the loss in the units of ``y**2``: with
    Huber's ``rho`` it is exactly the textbook Huber loss with threshold
    ``delta * sigma``.
    """

    n_predictors = 1

    def __init__(self, rho, scale=1.0):
        self.rho = rho
        self.scale = scale

    def loss_gradient_hessian(self, y, raw):
        s = self.scale
        z = (y - raw[:, 0]) / s
        loss = s * s * self.rho.value(z)
        grad = (-s * self.rho.derivative(z))[:, None]
        hess = self.rho.second_derivative(z)[:, None, None]
        return loss, grad, hess


class ConcomitantScaleLoss:
    r"""Jointly convex loss in the prediction and a concomitant scale.

    With ``eta = (eta_0, t)``, ``sigma = exp(t)`` and ``z = (y - eta_0) /
    sigma``:

    .. math::

        L(y, \eta) = \sigma \, (1 + 2 \rho(z)).

    This is Huber's "proposal 2" objective in Owen's (2007) convex form, the
    one scikit-learn's ``HuberRegressor`` minimises (with ``2 rho`` = its
    ``H_epsilon``). Derivatives, with :math:`\rho, \rho', \rho''` at ``z``:

    .. math::

        \partial_{\eta_0} L = -2\rho', \quad
        \partial_t L = \sigma (1 + 2\rho - 2 z \rho'), \quad
        \partial^2_{\eta_0} L = 2\rho'' / \sigma, \quad
        \partial_{\eta_0}\partial_t L = 2 z \rho'', \quad
        \partial^2_t L = \partial_t L + 2 \sigma z^2 \rho''.

    Using ``t = log sigma`` instead of ``sigma`` keeps the scale positive
    without bounds, so unconstrained second-order solvers apply.
    """

    n_predictors = 2

    def __init__(self, rho):
        self.rho = rho

    def loss_gradient_hessian(self, y, raw):
        sigma = np.exp(raw[:, 1])
        z = (y - raw[:, 0]) / sigma
        rho, psi, dpsi = (
            self.rho.value(z),
            self.rho.derivative(z),
            self.rho.second_derivative(z),
        )
        loss = sigma * (1.0 + 2.0 * rho)
        grad = np.empty_like(raw)
        grad[:, 0] = -2.0 * psi
        grad[:, 1] = sigma * (1.0 - 2.0 * self.rho.z_psi_minus_rho(z))
        z_dpsi = np.where(dpsi > 0, z * dpsi, 0.0)
        hess = np.empty(raw.shape + (2,))
        hess[:, 0, 0] = 2.0 * dpsi / sigma
        hess[:, 0, 1] = hess[:, 1, 0] = 2.0 * z_dpsi
        hess[:, 1, 1] = grad[:, 1] + 2.0 * sigma * np.where(dpsi > 0, z * z_dpsi, 0.0)
        return loss, grad, hess


class GaussianNLLLoss:
    r"""Gaussian negative log-likelihood with a linear log-variance.

    With ``eta = (mu, v)``, ``v = log sigma**2`` and ``r = y - mu``:

    .. math::

        L = \frac{r^2}{2 e^{v}} + \frac{v}{2}, \quad
        \partial_\mu L = -r e^{-v}, \quad
        \partial_v L = \tfrac12 (1 - r^2 e^{-v}),

    .. math::

        \partial^2_\mu L = e^{-v}, \quad
        \partial_\mu \partial_v L = r e^{-v}, \quad
        \partial^2_v L = \tfrac12 r^2 e^{-v}.

    The constant ``log(2 pi) / 2`` is left out.
    """

    n_predictors = 2

    def loss_gradient_hessian(self, y, raw):
        r = y - raw[:, 0]
        inv_var = np.exp(-raw[:, 1])
        r_iv = r * inv_var
        r2_iv = r * r_iv
        loss = 0.5 * r2_iv + 0.5 * raw[:, 1]
        grad = np.empty_like(raw)
        grad[:, 0] = -r_iv
        grad[:, 1] = 0.5 * (1.0 - r2_iv)
        hess = np.empty(raw.shape + (2,))
        hess[:, 0, 0] = inv_var
        hess[:, 0, 1] = hess[:, 1, 0] = r_iv
        hess[:, 1, 1] = 0.5 * r2_iv
        return loss, grad, hess
