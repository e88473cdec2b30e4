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

import abc
import functools

import numpy as np
from scipy.special import ndtr

_LOG2 = np.log(2.0)

# LogCoshRho.concomitant_terms errs by ~eps delta^2 near zero, next to the 1
# it is added to: up to this delta that stays below ~1e-13.
_FAST_TERMS_MAX_DELTA = 8.0

# |log sigma| beyond this and exp() leaves the floating-point range.
_MAX_LOG_SCALE = 700.0


# How residual functions are evaluated: an intermediate that overflows to
# inf or underflows to 0 on the way to a finite result is not an error.
_LOSS_ERRSTATE = {"over": "ignore", "under": "ignore"}


def _accepts_scalars(method):
    """Let a fused evaluation written with ``out=`` arrays take a scalar too."""

    @functools.wraps(method)
    def wrapper(self, z):
        z = np.asarray(z, dtype=float)
        if z.ndim == 0:
            return tuple(None if v is None else v[0] for v in method(self, z[None]))
        return method(self, z)

    return wrapper


class ResidualFunction(abc.ABC):
    r"""The loss protocol: a function ``rho`` of a standardised residual ``z``.

    A fit calls the methods below and nothing else. A subclass must define
    the three abstract ones; every other method has a correct generic
    default here, which built-in losses override for speed or precision.

    ``rho`` must be convex, with its minimum ``rho(0) = 0`` at zero, and
    each method must accept an ndarray of any shape and return finite
    values of the same shape for every finite ``z``:
    :func:`check_residual_function` verifies this before a fit.

    Required:

    ``value(z)``
        :math:`\rho(z)`.
    ``derivative(z)``
        :math:`\psi(z) = \rho'(z)`.
    ``second_derivative(z)``
        :math:`\rho''(z) \ge 0`.

    Generic (overridable):

    ``value_derivatives(z)``
        The three at once (one pass over a row block calls this).
    ``fixed_scale_terms(z, scale)``
        The three for a fixed-scale loss at ``scale``: ``value_derivatives``
        unless the loss trades relative precision near zero for speed where
        the scale allows.
    ``z_psi_minus_rho(z)``
        :math:`z \psi(z) - \rho(z)`, the score of a concomitant scale.
    ``concomitant_terms(z)``
        ``(rho, psi, rho'', z psi - rho)`` at once.
    ``irls_weight(z)``
        :math:`\psi(z) / z`, the weights of iteratively reweighted least
        squares (a fit's ``weights_``).
    ``saturation``
        A ``|z|`` beyond which :math:`\rho'' = 0`, so that ``psi`` and
        ``z psi - rho`` are constant (``inf`` if there is none).
    ``z_psi_minus_rho_limit``
        :math:`\sup_z (z \psi - \rho)`, which decides whether a joint
        scale exists.

    Examples
    --------
    Fair's loss :math:`c^2 (|z|/c - \log(1 + |z|/c))` in a few lines:

    >>> import numpy as np
    >>> from skrobust.losses import ResidualFunction
    >>> class FairRho(ResidualFunction):
    ...     def __init__(self, c=1.4):
    ...         self.c = c
    ...     def value(self, z):
    ...         a = np.abs(z) / self.c
    ...         return self.c**2 * (a - np.log1p(a))
    ...     def derivative(self, z):
    ...         return z / (1.0 + np.abs(z) / self.c)
    ...     def second_derivative(self, z):
    ...         return 1.0 / (1.0 + np.abs(z) / self.c) ** 2
    >>> float(FairRho().z_psi_minus_rho(np.array([1.0]))[0]) > 0
    True
    """

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in _loss_parameters(self))
        return f"{type(self).__name__}({params})"

    @abc.abstractmethod
    def value(self, z):
        """``rho(z)``, elementwise."""

    @abc.abstractmethod
    def derivative(self, z):
        """``psi(z) = rho'(z)``, elementwise."""

    @abc.abstractmethod
    def second_derivative(self, z):
        """``rho''(z)``, elementwise."""

    def value_derivatives(self, z):
        """``(rho(z), rho'(z), rho''(z))``."""
        return self.value(z), self.derivative(z), self.second_derivative(z)

    def fixed_scale_terms(self, z, scale):
        """``(rho(z), rho'(z), rho''(z))`` for :class:`FixedScaleLoss` at ``scale``.

        :meth:`value_derivatives` here; a loss may give up relative
        precision near zero for speed where the scale keeps the absolute
        error negligible (:meth:`LogCoshRho.fixed_scale_terms`).

        Parameters
        ----------
        z : ndarray
            Standardised residuals ``r / scale``.
        scale : float
            The fixed-scale loss's scale, in units where the spread of ``y``
            is about one (the fits' standardised units).

        Returns
        -------
        tuple of ndarray
            ``(rho, psi, rho'')`` at ``z``.
        """
        return self.value_derivatives(z)

    def z_psi_minus_rho(self, z):
        """``z rho'(z) - rho(z)``, to absolute precision.

        Generic form: the direct difference where it keeps its digits, and
        where it cancels (``|z psi|`` over ``1e6`` times the result: a loss
        that grows about linearly, far out) the integral
        ``int_0^z t rho''(t) dt``, its derivative's, by Gauss-Legendre
        quadrature in ``log t``. Built-in losses override it with closed
        forms.
        """
        z = np.asarray(z, dtype=float)
        with np.errstate(**_LOSS_ERRSTATE):
            z_psi = z * self.derivative(z)
            chi = np.asarray(z_psi - self.value(z), dtype=float)
            cancelled = np.abs(z_psi) > _CANCELLATION * np.abs(chi)
        if np.any(cancelled):
            chi = chi.copy()
            chi[cancelled] = _chi_by_quadrature(self, z[cancelled])
        return chi

    def concomitant_terms(self, z):
        """``(rho, rho', rho'', z rho' - rho)``, as a concomitant scale uses them.

        :class:`ConcomitantScaleLoss` adds ``rho`` and ``z rho' - rho`` to 1,
        so they need absolute, not relative, precision; subclasses may trade
        the one for speed.
        """
        return (*self.value_derivatives(z), self.z_psi_minus_rho(z))

    def irls_weight(self, z):
        """``psi(z) / z``, and ``rho''(0)`` at ``z = 0``: the IRLS weights.

        Generic form: the quotient; built-in losses override it with closed
        forms that divide less.
        """
        at_zero = float(np.asarray(self.second_derivative(np.zeros(1)))[0])
        with np.errstate(
            divide="ignore", invalid="ignore", over="ignore", under="ignore"
        ):
            weights = np.asarray(self.derivative(z)) / z
        return np.where(z == 0, at_zero, weights)

    @property
    def saturation(self):
        """A ``|z|`` beyond which ``rho'' = 0`` on both sides (or ``inf``).

        Beyond it ``psi`` and ``z psi - rho`` are constant, so a residual
        there enters every estimating equation only through its sign: the
        far-target guard of the fits relies on it. Generic: the smallest
        power of two from which ``second_derivative`` is exactly zero at
        every larger power of two up to ``2**64``, found once (further out a
        zero is more likely an overflow in the formula, as for
        ``1 / (1 + |z|)**2``, than a linear tail).
        """
        # Cached per class and attributes, not on the instance: a fit must
        # not change the loss object a user passed as a parameter.
        try:
            key = (type(self), tuple(sorted(vars(self).items())))
            return _SATURATIONS[key]
        except TypeError:  # attributes that cannot be hashed: no cache
            return _saturation_of(self)
        except KeyError:
            if len(_SATURATIONS) > 1024:
                _SATURATIONS.clear()
            _SATURATIONS[key] = _saturation_of(self)
            return _SATURATIONS[key]

    @property
    def z_psi_minus_rho_limit(self):
        """``sup_z (z psi(z) - rho(z))``, reached as ``|z|`` grows.

        ``z psi - rho`` has derivative ``z rho''(z)``, so for a convex
        ``rho`` it grows with ``|z|``: the supremum is its value at the
        saturation, or infinite if ``rho''`` never vanishes.
        """
        if not np.isfinite(self.saturation):
            return np.inf
        z = np.array([self.saturation, -self.saturation])
        with np.errstate(over="ignore"):  # (an infinite limit is a limit)
            return float(np.max(self.z_psi_minus_rho(z)))


_SATURATIONS = {}

# z psi - rho is recomputed by quadrature where |z psi| exceeds it this much.
_CANCELLATION = 1e6
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(16)


def _chi_by_quadrature(rho, z):
    """``int_0^z t rho''(t) dt`` for each ``z`` (``z psi - rho``, as ``rho(0) = 0``).

    On ``[0, 1]`` in ``t`` and beyond in ``u = log t`` (integrand
    ``e^{2u} rho''(e^u)``), in panels of unit length: 16-point Gauss-Legendre
    integrates both smooth parts to rounding, and ``log 1e300 = 691``
    panels at most.
    """
    out = np.empty(z.shape)
    for i, zi in enumerate(z.ravel()):
        a, sign = abs(float(zi)), np.sign(zi)
        inner = min(a, 1.0)
        t = 0.5 * inner * (_GAUSS_NODES + 1.0)
        with np.errstate(**_LOSS_ERRSTATE, invalid="ignore"):
            total = 0.5 * inner * _GAUSS_WEIGHTS @ (t * rho.second_derivative(sign * t))
            if a > 1.0:
                edges = np.linspace(0.0, np.log(a), int(np.ceil(np.log(a))) + 1)
                mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
                u = mid[:, None] + half[:, None] * _GAUSS_NODES
                t = np.exp(u)
                # t (t rho''): t rho'' stays finite where t^2 would overflow.
                integrand = t * (t * rho.second_derivative(sign * t))
                total += np.sum(half * (integrand @ _GAUSS_WEIGHTS))
        out.flat[i] = total
    return out


def _saturation_of(rho):
    """The generic :attr:`ResidualFunction.saturation` of ``rho``, computed."""
    grid = np.ldexp(1.0, np.arange(-8, 65))
    with np.errstate(**_LOSS_ERRSTATE):
        zero = (rho.second_derivative(grid) == 0) & (rho.second_derivative(-grid) == 0)
    # The first grid point from which every larger one is zero.
    tail = np.flatnonzero(~zero)
    first = 0 if not tail.size else tail[-1] + 1
    return float(grid[first]) if first < grid.size else np.inf


def _loss_parameters(rho):
    """The public attributes of a loss, to know when a cached property is stale."""
    return tuple(sorted((k, v) for k, v in vars(rho).items() if not k.startswith("_")))


def check_residual_function(rho):
    """Check that ``rho`` follows the loss protocol before a fit uses it.

    Parameters
    ----------
    rho : ResidualFunction
        The loss to check.

    Raises
    ------
    ValueError
        If ``rho`` is not a :class:`ResidualFunction`, or if on a grid of
        residuals from ``-1e300`` to ``1e300`` one of its three required
        methods returns values of another shape, values that are not
        finite, a negative ``rho`` or ``rho''``, or ``rho(0) != 0``.
    """
    if not isinstance(rho, ResidualFunction):
        raise ValueError(
            "rho must be an instance of a skrobust.losses.ResidualFunction "
            f"subclass (with value, derivative and second_derivative), got {rho!r}."
        )
    z = np.unique(np.r_[0.0, np.logspace(-8, 300, 309), np.linspace(0.0, 10.0, 101)])
    z = np.concatenate([-z[::-1], z]).reshape(2, -1)
    # Intermediate overflow or underflow is harmless when the result is
    # finite (1 / (1 + z)**2 at z = 1e300 is 0): fits evaluate losses under
    # the same errstate (_LOSS_ERRSTATE), and only the results are checked.
    with np.errstate(**_LOSS_ERRSTATE):
        values = {
            "value": rho.value(z),
            "derivative": rho.derivative(z),
            "second_derivative": rho.second_derivative(z),
        }
    for name, v in values.items():
        v = np.asarray(v)
        if v.shape != z.shape:
            raise ValueError(
                f"{type(rho).__name__}.{name} returned shape {v.shape} for an "
                f"input of shape {z.shape}: it must work elementwise."
            )
        if not np.all(np.isfinite(v)):
            raise ValueError(
                f"{type(rho).__name__}.{name} is not finite for some residuals "
                "up to 1e300: write it in a stable form."
            )
    if np.any(values["value"] < 0) or np.asarray(rho.value(np.zeros(1)))[0] != 0:
        raise ValueError(f"{type(rho).__name__}: rho must be >= 0 with rho(0) = 0.")
    if np.any(values["second_derivative"] < 0):
        raise ValueError(
            f"{type(rho).__name__}: rho must be convex (second_derivative >= 0)."
        )


class SquaredRho(ResidualFunction):
    r"""Least squares, :math:`\rho(z) = z^2 / 2`."""

    def value(self, z):
        # Residuals beyond 1e154 square to infinity: a legitimate value of
        # this loss, used only for least-squares starts.
        with np.errstate(over="ignore"):
            return 0.5 * z * z

    def derivative(self, z):
        return np.asarray(z, dtype=float).copy()

    def second_derivative(self, z):
        return np.ones_like(z, dtype=float)

    def z_psi_minus_rho(self, z):
        return 0.5 * z * z


class HuberRho(ResidualFunction):
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

    @property
    def saturation(self):
        """Beyond this ``|z|``, ``psi`` and ``z psi - rho`` are constant."""
        return self.delta

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

    def irls_weight(self, z):
        """``psi(z) / z = min(1, delta / |z|)`` (1 at ``z = 0``), the IRLS weights.

        The same numbers as ``clip(z) / z``, without its sign or division
        of every row.
        """
        w = np.abs(z)
        with np.errstate(divide="ignore"):
            np.divide(self.delta, w, out=w)
        return np.minimum(w, 1.0, out=w)

    def z_psi_minus_rho(self, z):
        """``z rho'(z) - rho(z) = min(|z|, delta)**2 / 2``, free of cancellation."""
        m = np.minimum(np.abs(z), self.delta)
        return 0.5 * m * m

    def value_derivatives(self, z):
        return self.concomitant_terms(z)[:3]

    @_accepts_scalars
    def concomitant_terms(self, z):
        """``(rho, rho', rho'', z rho' - rho)`` in one go, to full precision."""
        # With a = |z| and m = min(a, delta): chi = z psi - rho = m^2 / 2,
        # rho = m a - chi, psi = sign(z) m, rho'' = [a <= delta].
        a = np.abs(z)
        m = np.minimum(a, self.delta)
        inlier = np.less_equal(a, self.delta).astype(float)
        chi = m * m
        chi *= 0.5
        a *= m
        a -= chi
        psi = np.copysign(m, z, out=m)
        return a, psi, inlier, chi


class LogCoshRho(ResidualFunction):
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

    @property
    def saturation(self):
        """Beyond this ``|z|``, ``tanh(z / delta)`` is 1.0 in float64 (and
        ``z psi - rho`` constant to rounding)."""
        return 20.0 * self.delta

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

    def irls_weight(self, z):
        """``psi(z) / z = tanh(x) / x``, ``x = |z| / delta`` (1 at 0): IRLS weights.

        From ``e = exp(-2x)`` as ``(1 - e) / ((1 + e) x)``, within 1e-14 of
        it relative (its cancellation is at most ``eps / 2x``), and below
        ``x = 0.005`` from the series ``1 - x^2 / 3 + 2 x^4 / 15`` (its
        remainder under ``0.06 x^6``): ``tanh`` took twice as long (a
        fit's ``weights_`` at 1e5 rows, 2.3 -> 1.3 ms).
        """
        x = np.abs(z)
        if self.delta != 1.0:
            x /= self.delta
        e = np.multiply(x, -2.0)
        np.exp(e, out=e)
        w = np.subtract(1.0, e)
        e += 1.0
        e *= x
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(w, e, out=w)
        small = x < 0.005
        if small.any():
            x2 = x[small] ** 2
            w[small] = 1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0))
        return w

    def second_derivative(self, z):
        e = np.exp(-2.0 * np.abs(z) / self.delta)
        return 4.0 * e / (1.0 + e) ** 2

    @_accepts_scalars
    def concomitant_terms(self, z):
        """``(rho, rho', rho'', z rho' - rho)`` to absolute precision, fast.

        With ``x = |z| / delta``, ``e = exp(-2x)`` and ``s = 1 / (1 + e)``:
        ``tanh x = 2 s - 1``, ``sech^2 x = 4 e s^2``, ``log cosh x = x +
        log1p(e) - log 2`` and ``x tanh x - log cosh x = log 2 - log1p(e) -
        2 x e s``: two transcendental functions per row, and no branch.
        Each is within a few ``eps`` (times ``delta^2``, and ``x`` for ``rho``)
        of the exact value, and ``rho''`` keeps full relative precision; near
        zero ``rho`` and ``z rho' - rho`` lose their relative precision,
        which the concomitant loss, adding them to 1, does not need (the
        fixed-scale loss, which does, uses :meth:`value_derivatives`). That
        holds while ``eps delta^2`` is far below 1: for ``delta`` above
        ``_FAST_TERMS_MAX_DELTA`` (towards least squares) the precise forms
        are used.
        """
        if self.delta > _FAST_TERMS_MAX_DELTA:
            return super().concomitant_terms(z)
        z, x, e = self._x_and_e(z)
        s = e + 1.0
        np.divide(1.0, s, out=s)
        log1p_e = np.log1p(e)
        e_s = np.multiply(e, s, out=e)
        dpsi = e_s * s
        dpsi *= 4.0
        chi = np.multiply(x, e_s, out=e_s)
        chi *= -2.0
        chi -= log1p_e
        chi += _LOG2
        rho = np.add(x, log1p_e, out=log1p_e)
        rho -= _LOG2
        psi = np.multiply(s, 2.0, out=s)
        psi -= 1.0
        np.copysign(psi, z, out=psi)
        if self.delta != 1.0:  # (the default skips three products by 1)
            rho *= self.delta**2
            chi *= self.delta**2
            psi *= self.delta
        return rho, psi, dpsi, chi

    def _x_and_e(self, z):
        """``z`` as floats, ``x = |z| / delta`` and ``e = exp(-2 x)``."""
        z = np.asarray(z, dtype=float)
        x = np.abs(z)
        if self.delta != 1.0:
            np.divide(x, self.delta, out=x)
        e = np.multiply(x, -2.0)
        np.exp(e, out=e)
        return z, x, e

    def value_derivatives(self, z):
        return self._fused(z)

    def fixed_scale_terms(self, z, scale):
        """``(rho, rho', rho'')`` to absolute precision where ``scale`` allows.

        The fixed-scale loss is ``sigma^2 rho(r / sigma)``, its gradient
        terms ``sigma psi(r / sigma) x``: near ``z = 0`` an absolute error of
        ``eps delta^2`` in ``rho`` and ``eps delta`` in ``psi`` is ``eps``
        times ``(sigma delta)^2`` and ``sigma delta`` in the units of ``y``,
        far below the rounding of the objective (a mean of terms of the
        order of the spread of ``y``, 1) and of its gradient while
        ``sigma delta`` (the threshold, in those units) and ``delta`` are at
        most ``_FAST_TERMS_MAX_DELTA``: then :meth:`_fast_fixed_terms`, one
        transcendental function fewer than :meth:`value_derivatives` and
        no branch (a pass of a MAD or LAD scale's fit over 1e5 rows: 3.0 ->
        1.4 ms). ``rho''`` keeps its relative precision in the tails, where
        a small scale puts most rows. Beyond (towards least squares, where
        every ``z`` is small and the relative precision is what is left),
        :meth:`value_derivatives`.
        """
        if self.delta <= _FAST_TERMS_MAX_DELTA and (
            scale * self.delta <= _FAST_TERMS_MAX_DELTA
        ):
            return self._fast_fixed_terms(z)
        return self._fused(z)

    @_accepts_scalars
    def _fast_fixed_terms(self, z):
        """``(rho, rho', rho'')`` as :meth:`concomitant_terms` has them, no chi."""
        z, x, e = self._x_and_e(z)
        s = e + 1.0
        np.divide(1.0, s, out=s)
        rho = np.log1p(e)
        rho += x
        rho -= _LOG2
        dpsi = np.multiply(e, s, out=e)
        dpsi *= s
        dpsi *= 4.0
        psi = np.multiply(s, 2.0, out=s)
        psi -= 1.0
        np.copysign(psi, z, out=psi)
        if self.delta != 1.0:
            rho *= self.delta**2
            psi *= self.delta
        return rho, psi, dpsi

    @_accepts_scalars
    def _fused(self, z):
        """``(rho, rho', rho'')`` to full relative precision, without masks.

        With ``x = |z| / delta``, ``e = exp(-2x)`` and ``m = expm1(-2x)``:
        ``tanh x = -m / (2 + m)`` (full relative precision near zero, where
        ``(1 - e) / (1 + e)`` would cancel), ``sech^2 x = 4 e / (1 + e)^2``
        (full relative precision in the tails, where ``1 - tanh^2`` would
        round to zero) and, below ``x = 1``, ``log cosh x = -log1p(-tanh^2
        x) / 2`` (full relative precision near zero, where the tail form
        cancels), above it ``x + log1p(e) - log 2``. Three transcendental
        functions per row: ``exp``, ``expm1`` and one ``log1p`` of the
        argument each branch needs (``expm1`` costs less than ``tanh``, and
        one ``log1p`` half of two). The branches are picked by ``np.where``:
        selecting rows with a boolean mask, gathering and scattering them
        costs more than the arithmetic it saves. The tests compare these
        against the separate methods and finite differences.
        """
        z = np.asarray(z, dtype=float)
        x = np.abs(z)
        if self.delta != 1.0:
            np.divide(x, self.delta, out=x)
        m = np.multiply(x, -2.0)
        e = np.exp(m)
        m = np.expm1(m, out=m)
        t = m + 2.0
        np.divide(m, t, out=t)
        np.negative(t, out=t)
        one_plus_e = e + 1.0
        dpsi = e / one_plus_e
        dpsi /= one_plus_e
        dpsi *= 4.0
        near = x < 1.0
        # log1p's argument: -tanh^2 x near zero, e in the tails. (The cap
        # keeps t = 1, where only the tail form is used, from log1p(-1) =
        # -inf, whose special-case path is slow.)
        square = np.multiply(t, t, out=m)
        np.minimum(square, 0.75, out=square)
        np.negative(square, out=square)
        log1p = np.log1p(np.where(near, square, e))
        tail = log1p + x
        tail -= _LOG2
        log1p *= -0.5
        lc = np.where(near, log1p, tail)
        psi = np.copysign(t, z, out=t)
        if self.delta != 1.0:
            lc *= self.delta**2
            psi *= self.delta
        return lc, psi, dpsi

    def z_psi_minus_rho(self, z):
        """``z rho'(z) - rho(z)``, with ``x = |z| / delta`` and ``e = exp(-2x)``.

        ``delta^2 (log 2 - log1p(e) - 2 x e / (1 + e))`` for ``x >= 1``,
        where the direct difference of two terms of size ``delta |z|`` would
        cancel, and ``delta^2 (x tanh x - log cosh x)`` below, where the tail
        form would lose the ``x^2 / 2`` it tends to.
        """
        x = np.abs(np.asarray(z, dtype=float)) / self.delta
        out = np.empty_like(x)
        # Near zero both terms are ~x^2 (no cancellation beyond a factor 2);
        # the tail form would subtract numbers of order 1.
        near = x < 1.0
        xn = x[near]
        out[near] = xn * np.tanh(xn) - np.log1p(2.0 * np.sinh(0.5 * xn) ** 2)
        xf = x[~near]
        e = np.exp(-2.0 * xf)
        out[~near] = _LOG2 - np.log1p(e) - 2.0 * xf * e / (1.0 + e)
        return self.delta**2 * out


class FixedScaleLoss:
    r"""``sigma**2 * rho((y - eta) / sigma)`` for a fixed scale ``sigma > 0``.

    The factor ``sigma**2`` keeps the loss in the units of ``y**2``: with
    Huber's ``rho`` it is exactly the textbook Huber loss with threshold
    ``delta * sigma``.

    With ``fast``, ``rho`` is evaluated by its ``fixed_scale_terms``, which
    may give up relative precision near zero where the scale allows
    (:meth:`ResidualFunction.fixed_scale_terms`): for Newton's method,
    whose steps are judged on the gradient and on values to 1e3 ``eps``.
    L-BFGS's line search and its stop compare values to a few ``eps``, and
    took more passes on them (a log-cosh MAD fit at ``2e4 x 1000``: 171 ->
    243), so it keeps ``value_derivatives``.
    """

    n_predictors = 1

    def __init__(self, rho, scale=1.0, fast=False):
        self.rho = rho
        self.scale = scale
        self.fast = fast

    def loss_gradient_hessian(self, y, raw):
        s = self.scale
        z = (y - raw[:, 0]) / s
        if self.fast:
            rho, psi, dpsi = _fixed_scale_terms(self.rho, z, s)
        else:
            rho, psi, dpsi = _value_derivatives(self.rho, z)
        # s^2 rho(z) is the loss in y's units: for a scale beyond ~1e150 (a
        # MAD fixed point run away with outliers of 1e300) it is legitimately
        # infinite, which solvers reject; the derivatives stay finite.
        with np.errstate(over="ignore"):
            rho *= s * s
        psi *= -s
        return rho, psi[:, None], dpsi[:, None, None]

    def loss_gradient(self, y, raw):
        return self.loss_gradient_hessian(y, raw)[:2]


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

    def loss_gradient(self, y, raw):
        return self._loss_gradient(y, raw)[:2]

    def _loss_gradient(self, y, raw):
        t = raw[:, 1]
        low, high = (t.min(), t.max()) if t.size else (0.0, 0.0)
        if not (-_MAX_LOG_SCALE < low and high < _MAX_LOG_SCALE):
            # exp(t) would overflow or vanish: no finite loss here. An
            # infinite value makes a solver reject the step that got here.
            # The derivatives must stay finite (zero, with sigma = 1 in the
            # Hessian's divisions): solvers form the Hessian of trial
            # points, rejected or not.
            zero = np.zeros_like(t)
            one = np.ones_like(t)
            return np.full_like(t, np.inf), np.zeros_like(raw), one, zero, zero
        if low == high:
            # An intercept-only scale (the usual case): one exp, not n.
            sigma = float(np.exp(t[0]))
            z = np.subtract(y, raw[:, 0])
            z *= 1.0 / sigma
        else:
            sigma = np.exp(t)
            z = (y - raw[:, 0]) / sigma
        with np.errstate(**_LOSS_ERRSTATE):
            rho, psi, dpsi, scale_score = self.rho.concomitant_terms(z)
        # loss = sigma (1 + 2 rho), d/dt = sigma (1 - 2 (z psi - rho)).
        loss = np.multiply(rho, 2.0 * sigma, out=rho)
        loss += sigma
        grad = np.empty_like(raw)
        np.multiply(psi, -2.0, out=grad[:, 0])
        np.multiply(scale_score, -2.0 * sigma, out=grad[:, 1])
        grad[:, 1] += sigma
        return loss, grad, sigma, z, dpsi

    def loss_gradient_hessian(self, y, raw):
        loss, grad, sigma, z, dpsi = self._loss_gradient(y, raw)
        # z is finite (the objective works in standardised units), and rho''
        # decays faster than 1 / z^2, so these products stay bounded.
        z_dpsi = z * dpsi
        hess = np.empty(raw.shape + (2,))
        hess[:, 0, 0] = 2.0 * dpsi / sigma
        hess[:, 0, 1] = hess[:, 1, 0] = 2.0 * z_dpsi
        hess[:, 1, 1] = grad[:, 1] + 2.0 * sigma * z * z_dpsi
        return loss, grad, hess


def _fixed_scale_terms(rho, z, scale):
    with np.errstate(**_LOSS_ERRSTATE):
        return rho.fixed_scale_terms(z, scale)


def _value_derivatives(rho, z):
    with np.errstate(**_LOSS_ERRSTATE):
        return rho.value_derivatives(z)


# The loss works in units of the spread of y. A row whose 1 / sigma^2 or
# (r^2 + tau^2) / sigma^2 exceeds exp(_MAX_EXPONENT) (a standardised residual
# of 1e65) is out of range: its loss is _OUT_OF_RANGE_LOSS and its
# derivatives are zero. exp(300) keeps every per-row derivative, their sums
# over rows and the squares trust-exact forms from the Hessian finite.
_MAX_EXPONENT = 300.0
_MAX_RATIO = float(np.exp(_MAX_EXPONENT))
# Above the loss of any row in range (at most exp(300) ~ 2e130, short of a
# log-variance near 1e300), so that a solver rejects a step that leaves the
# range; yet finite, so that a row of zero weight contributes 0 * loss = 0
# wherever its X and y put it.
_OUT_OF_RANGE_LOSS = 1e300


class GaussianNLLLoss:
    r"""Gaussian NLL plus ``tau**2 / (2 sigma**2)``, which bounds it below.

    With ``eta = (mu, v)``, ``v = log sigma**2``, ``r = y - mu`` and ``q =
    (r**2 + tau**2) e^{-v}``:

    .. math::

        L_\tau = \frac{r^2 + \tau^2}{2 e^{v}} + \frac{v}{2}, \quad
        \partial_\mu L_\tau = -r e^{-v}, \quad
        \partial_v L_\tau = \tfrac12 (1 - q),

    .. math::

        \partial^2_\mu L_\tau = e^{-v}, \quad
        \partial_\mu \partial_v L_\tau = r e^{-v}, \quad
        \partial^2_v L_\tau = \tfrac12 q.

    ``L_tau`` is the expected Gaussian NLL (without ``log(2 pi) / 2``) when
    ``y`` is jittered by independent ``N(0, tau**2)`` noise; over ``v`` it is
    smallest at ``v = log(r**2 + tau**2) >= log tau**2``, where it equals
    ``(1 + log(r**2 + tau**2)) / 2``, so it is bounded below even for a
    residual of zero. ``jitter_variance=0`` (the default) gives the plain
    Gaussian NLL, :math:`r^2 / (2 e^v) + v / 2`; the constant ``log(2 pi) / 2``
    is left out.

    A row with ``e^{-v}`` or ``q`` above ``exp(300)``, or a NaN or infinite
    ``eta`` (a zero-weight row's ``X`` can be anything), is out of range:
    its loss is ``1e300``, above that of any row in range, and its
    derivatives are 0. A trial point that sends a weighted row there is
    rejected as if its loss were infinite, while the Hessian trust-exact
    forms there stays finite, and a row of zero weight adds exactly nothing
    wherever the solver puts it.
    """

    n_predictors = 2

    def __init__(self, jitter_variance=0.0):
        self.jitter_variance = jitter_variance

    def loss_gradient_hessian(self, y, raw):
        return self._evaluate(y, raw, hessian=True)

    def loss_gradient(self, y, raw):
        # (Without the Hessian's (n, 2, 2) array: the passes of L-BFGS and of
        # line searches, most of a wide fit's, need only the gradient.)
        return self._evaluate(y, raw, hessian=False)

    def loss_gradient_root(self, y, raw):
        r"""Loss, gradient and a root of each row's Hessian, in one evaluation.

        ``root`` has shape (n_samples, 2): :math:`a = e^{-v/2}` and :math:`b
        = r e^{-v/2}`, in terms of which each row's Hessian is

        .. math::

            \begin{pmatrix} a^2 & a b \\ a b & (b^2 + \tau^2 a^2) / 2
            \end{pmatrix},

        so that the Hessian blocks of a design are Gram matrices of its rows
        scaled by :math:`a` and :math:`b`
        (:mod:`skrobust._likelihood_pass`), without the per-row weights
        ``r e^{-v}`` and ``q / 2`` of :meth:`loss_gradient_hessian`. Out of
        range rows have ``a = b = 0``. Loss and gradient are those of
        :meth:`loss_gradient`.
        """
        return self._evaluate(y, raw, hessian=False, root=True)

    def _evaluate(self, y, raw, hessian, root=False):
        v = raw[:, 1]
        # Out-of-range rows overflow here; they are overwritten below.
        with np.errstate(over="ignore", invalid="ignore"):
            r = y - raw[:, 0]
            inv_var = np.exp(-v)
            r_iv = r * inv_var
            q = r * r_iv
            if self.jitter_variance:
                q += self.jitter_variance * inv_var
            in_range = (inv_var <= _MAX_RATIO) & (q <= _MAX_RATIO) & (v < np.inf)
        loss = 0.5 * (q + v)
        grad = np.empty_like(raw)
        np.negative(r_iv, out=grad[:, 0])
        grad[:, 1] = 0.5 - 0.5 * q
        hess = None
        if hessian:
            hess = np.empty(raw.shape + (2,))
            hess[:, 0, 0] = inv_var
            hess[:, 0, 1] = hess[:, 1, 0] = r_iv
            hess[:, 1, 1] = 0.5 * q
        if root:
            hess = np.empty_like(raw)
            # (Out-of-range rows may overflow or be NaN; they are zeroed below.)
            with np.errstate(over="ignore", invalid="ignore"):
                np.sqrt(inv_var, out=hess[:, 0])
                np.multiply(r, hess[:, 0], out=hess[:, 1])
        if not np.all(in_range):
            out = ~in_range
            loss[out] = _OUT_OF_RANGE_LOSS
            grad[out] = 0.0
            if hessian or root:
                hess[out] = 0.0
        return (loss, grad, hess) if hessian or root else (loss, grad)


class SmoothedPinballRho(ResidualFunction):
    r"""Convolution-smoothed pinball (check) loss of quantile ``q``, bandwidth ``h``.

    The pinball loss :math:`\rho_q(u) = u\,(q - 1_{u < 0})` convolved with a
    kernel density :math:`K` of bandwidth :math:`h` (Fernandes, Guerre and
    Horta 2021; He, Pan, Tan and Zhou 2023, R's ``conquer``):

    .. math::

        \ell_h(u) = \int \rho_q(v)\, \tfrac1h K\!\left(\tfrac{v - u}{h}\right) dv
                  = \rho_q(u) + h\, g(|u| / h),
        \qquad g(t) = \int_{-\infty}^{-t} F(v)\, dv,

    where :math:`F` is the kernel's distribution function (the second form
    holds for every symmetric kernel). It is convex, with

    .. math::

        \ell_h'(u) = q - F(-u / h), \qquad
        \ell_h''(u) = K(u / h) / h,

    and :math:`0 \le \ell_h - \rho_q \le h\, g(0)`. Kernels:

    ``"gaussian"``
        :math:`K = \phi`, :math:`F = \Phi`,
        :math:`g(t) = \phi(t) - t\,\Phi(-t)`, so
        :math:`\ell_h(u) = u\,(q - \Phi(-u/h)) + h\,\phi(u/h)`.
    ``"logistic"``
        :math:`F(v) = 1 / (1 + e^{-v})`, :math:`K = F (1 - F)`,
        :math:`g(t) = \log(1 + e^{-t})`, so
        :math:`\ell_h(u) = q u + h \log(1 + e^{-u/h})`. Its standard
        deviation is :math:`\pi / \sqrt 3 \approx 1.81` times the Gaussian's
        at the same ``h`` (``conquer``'s convention).

    Written as :math:`\rho_q(u)` plus a bounded correction in
    :math:`t = |u| / h`, with :math:`t` capped where the correction has
    underflowed to zero, so that residuals up to ``1e300`` neither overflow
    nor lose the exact linear tails. The correction and its derivatives are
    set to zero from :math:`t = 10` on (55 for the logistic kernel), where
    they are below ``2e-22`` of their size at zero: there the loss is exactly
    the pinball loss.

    Parameters
    ----------
    quantile : float
        ``q`` in (0, 1).
    bandwidth : float
        ``h > 0``, in the units of the residuals.
    kernel : {"gaussian", "logistic"}, default="gaussian"
        The smoothing kernel.
    """

    # Beyond t = |u| / h of this size the kernel's tail terms (density, tail
    # probability, g) are below the smallest double: capping t there keeps
    # |u| / h from overflowing and changes no value.
    _T_MAX = {"gaussian": 40.0, "logistic": 750.0}
    # From t of this size on, F(-t), K(t) / K(0) and g(t) are below 2e-22
    # (Gaussian: K(10) / K(0) = 1.9e-22, F(-10) = 7.6e-24; logistic:
    # exp(-55) = 1.3e-24) and taken as zero.
    _NEGLIGIBLE_T = {"gaussian": 10.0, "logistic": 55.0}
    _INV_SQRT_2PI = 0.3989422804014327

    def __init__(self, quantile, bandwidth, kernel="gaussian"):
        if kernel not in self._T_MAX:
            raise ValueError(f"unknown kernel {kernel!r}")
        self.quantile = quantile
        self.bandwidth = bandwidth
        self.kernel = kernel

    def _t(self, u):
        """``|u| / h``, capped at ``_T_MAX``; computed without overflow."""
        h = float(self.bandwidth)
        # min(|u|, T h) / h: the product T h is a Python float (inf, not an
        # error, for huge h), and the quotient is at most T. (In place on
        # one array: a pass's temporaries cost as much as its arithmetic.)
        t = np.abs(u, out=np.empty(np.shape(u)))
        np.minimum(t, self._T_MAX[self.kernel] * h, out=t)
        t /= h
        return t

    def _tail_density_g(self, t):
        """``F(-t)``, ``K(t)`` and ``g(t)`` for ``t >= 0``; 0 from ``_NEGLIGIBLE_T`` on.

        There all three are below ``2e-22`` (of ``q``, ``1 - q`` and
        ``K(0)``): the loss is the pinball loss to double precision, and
        setting them to zero makes it exactly so, whichever rows an
        evaluation holds (a chunk of rows gives the same terms as all of
        them). When such rows are the majority (most of them at the default
        bandwidths) the kernel's special functions are evaluated on the
        others only, which costs less than evaluating them everywhere
        (a pass over 1e5 rows: 14 -> 4 ms).
        """
        t = np.asarray(t, dtype=float)
        # (NaN counts as near, so that it reaches every output.)
        near = ~(t >= self._NEGLIGIBLE_T[self.kernel])
        if t.ndim == 0:  # (the kernel's terms are formed in place: an array)
            terms = self._kernel_terms(t.reshape(1))
            return tuple(np.where(near, term[0], 0.0) for term in terms)
        n_near = np.count_nonzero(near)
        if 2 * n_near > t.size:
            terms = self._kernel_terms(t)
            if n_near < t.size:
                far = np.logical_not(near, out=near)
                for term in terms:
                    term[far] = 0.0
            return terms
        # (Flat indices, read and written through flat views: any shape.)
        rows = np.flatnonzero(near)
        terms = tuple(np.zeros(t.shape) for _ in range(3))
        near_terms = self._kernel_terms(t.reshape(-1)[rows])
        for term, values in zip(terms, near_terms, strict=True):
            term.reshape(-1)[rows] = values
        return terms

    def _kernel_terms(self, t):
        """``F(-t)``, ``K(t)`` and ``g(t)`` for ``t >= 0``, at every ``t``."""
        if self.kernel == "gaussian":
            # ndtr(-t), exp(-t^2 / 2) / sqrt(2 pi) and density - t tail, in
            # place (the same roundings: -0.5 t t = -0.5 (t t) exactly).
            tail = ndtr(np.negative(t))
            density = np.multiply(t, t)
            density *= -0.5
            np.exp(density, out=density)
            density *= self._INV_SQRT_2PI
            g = np.multiply(t, tail)
            np.subtract(density, g, out=g)
            return tail, density, g
        e = np.exp(-t)
        tail = e / (1.0 + e)
        return tail, tail / (1.0 + e), np.log1p(e)

    def value(self, z):
        u = np.asarray(z, dtype=float)
        q = self.quantile
        _, _, g = self._tail_density_g(self._t(u))
        pinball = np.where(u < 0, (q - 1.0) * u, q * u)
        return pinball + self.bandwidth * g

    def derivative(self, z):
        # q - F(-u/h) = q - F(-t) for u >= 0, and q - 1 + F(-t) for u < 0:
        # the tail probability is never subtracted from 1, so it keeps its
        # relative precision.
        u = np.asarray(z, dtype=float)
        tail, _, _ = self._tail_density_g(self._t(u))
        q = self.quantile
        return np.where(u < 0, q - 1.0 + tail, q - tail)

    def second_derivative(self, z):
        u = np.asarray(z, dtype=float)
        _, density, _ = self._tail_density_g(self._t(u))
        return density / self.bandwidth

    def value_derivatives(self, z):
        """``(l(u), l'(u), l''(u))`` from one evaluation of the kernel terms."""
        u = np.asarray(z, dtype=float)
        if u.ndim != 1:  # (np.copyto writes to arrays; rows are flat indices)
            flat = self.value_derivatives(u.reshape(-1))
            return tuple(v.reshape(u.shape) for v in flat)
        q = self.quantile
        fused = self.kernel == "gaussian" and u.ndim == 1
        if fused:  # (|u| kept: the fused form's value at the median)
            h = float(self.bandwidth)
            a = np.abs(u)
            t = np.minimum(a, self._T_MAX["gaussian"] * h)
            t /= h  # (the numbers of _t)
        else:
            t = self._t(u)
        near = ~(t >= self._NEGLIGIBLE_T[self.kernel])  # (NaN counts as near)
        n_near = int(np.count_nonzero(near))
        if 2 * n_near <= near.size:
            return self._value_derivatives_far(u, t, near)
        if fused:
            return self._gaussian_value_derivatives(u, a, t, near, n_near)
        tail, density, g = self._tail_density_g(t)
        negative = u < 0
        # np.where(negative, (q - 1) u, q u) + h g and np.where(negative,
        # q - 1 + tail, q - tail), with the same roundings and fewer
        # temporaries (a pass over 1e5 rows: 7.4 -> 4.6 ms).
        value = np.multiply(u, q)
        np.copyto(value, np.multiply(u, q - 1.0), where=negative)
        g *= self.bandwidth
        value += g
        derivative = np.subtract(q, tail)
        tail += q - 1.0
        np.copyto(derivative, tail, where=negative)
        density /= self.bandwidth
        return value, derivative, density

    def _value_derivatives_far(self, u, t, near):
        """:meth:`value_derivatives` where most rows are in the linear zone.

        There (``t`` from ``_NEGLIGIBLE_T`` on) the kernel's terms are zero:
        the value is the pinball loss, the derivative ``q`` or ``q - 1``
        and the curvature zero, formed in a few passes over all the rows;
        the terms are then added on the ``near`` rows only, with the
        general path's roundings (its zero terms leave the far rows as
        they are). Half the passes over all the rows of the general path,
        which fills and adds three arrays of mostly zeros (1e5 rows at the
        continuation's bandwidths: 1.35 -> 1.1 ms).
        """
        q = self.quantile
        negative = u < 0
        value = np.multiply(u, q)
        np.copyto(value, np.multiply(u, q - 1.0), where=negative)
        derivative = np.where(negative, q - 1.0, q)
        density = np.zeros(u.shape)
        rows = np.flatnonzero(near)
        if rows.size:
            tail, near_density, g = self._kernel_terms(t[rows])
            g *= self.bandwidth
            value[rows] += g
            derivative[rows] = np.where(negative[rows], tail + (q - 1.0), q - tail)
            density[rows] = near_density / self.bandwidth
        return value, derivative, density

    def _gaussian_value_derivatives(self, u, a, t, near, n_near):
        """:meth:`value_derivatives` of the Gaussian kernel, fused.

        For a 1-D ``u`` whose rows are mostly near (the caller's ``near``,
        ``n_near`` of them), with ``a = |u|`` and ``t`` as :meth:`_t`
        computes it from ``a`` (both overwritten). The same arithmetic as
        :meth:`_kernel_terms` and :meth:`value_derivatives`' general form
        (so the same numbers), in a third fewer array operations: ``|u|``
        serves ``t`` and, at the median, the pinball loss ``|u| / 2`` (``u
        q`` and ``u (q - 1)`` exactly), whose derivative is then ``sign(u)
        (1/2 - F(-t))`` (the general form's ``F(-t) - 1/2`` for ``u < 0``
        exactly). A pass of a smoothed LAD fit at 1000 x 20: 56 -> 35 us.
        """
        q, h = self.quantile, float(self.bandwidth)
        n_far = t.size - n_near
        far = np.logical_not(near, out=near) if n_far else None
        tail = np.negative(t)
        ndtr(tail, out=tail)
        density = np.multiply(t, t)
        density *= -0.5
        np.exp(density, out=density)
        density *= self._INV_SQRT_2PI
        g = np.multiply(t, tail, out=t)
        np.subtract(density, g, out=g)
        if n_far:
            for term in (tail, density, g):
                np.copyto(term, 0.0, where=far)
        g *= h
        if q == 0.5:
            value = np.multiply(a, q, out=a)
            value += g
            derivative = np.subtract(q, tail, out=tail)
            np.copysign(derivative, u, out=derivative)
        else:
            negative = u < 0
            value = np.multiply(u, q)
            np.copyto(value, np.multiply(u, q - 1.0), where=negative)
            value += g
            derivative = np.subtract(q, tail)
            tail += q - 1.0
            np.copyto(derivative, tail, where=negative)
        density /= h
        return value, derivative, density

    def z_psi_minus_rho(self, z):
        r"""``u l'(u) - l(u) = -h (t F(-t) + g(t))``, free of cancellation."""
        u = np.asarray(z, dtype=float)
        t = self._t(u)
        tail, _, g = self._tail_density_g(t)
        return -self.bandwidth * (t * tail + g)
