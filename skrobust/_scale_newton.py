r"""Newton's method on the MAD scale's fixed point and its fit together: a start.

The MAD scale is the fixed point of ``sigma -> MAD(r(sigma)) / 0.6745``,
with ``r(sigma)`` the residuals of the fit that minimises the fixed-scale
objective ``f(c; sigma)``. The secant of :mod:`skrobust._scale` solves
that fit at every trial scale (a few Newton iterations each, five or six
fits); on a small problem those fits, and each one's set-up, are most of
the time. Here the two equations

.. math::

    \nabla_c f(c; \sigma) = 0, \qquad \sigma = m(c),

with ``m(c)`` the normalised MAD of the residuals at ``c`` (about zero),
are solved as one system: each iteration is one pass
of the objective's value and gradient at ``sigma`` (with its Hessian,
unless steps on the latest one shrink the gradient and the gap tenfold,
as in :func:`skrobust._newton._newton_steps`) and the step

.. math::

    \begin{pmatrix} H & b \\ -a^\top & 1 \end{pmatrix}
    \begin{pmatrix} \delta c \\ \delta\sigma \end{pmatrix}
    = -\begin{pmatrix} g \\ \sigma - m \end{pmatrix},
    \qquad b = \partial_\sigma g, \quad a = \nabla_c m,

solved by the block elimination ``u = H^{-1} g``, ``v = H^{-1} b``,
``delta sigma = (m - sigma - a'u) / (1 + a'v)``, ``delta c = -u - v delta
sigma``. With ``f = mean_i s_i sigma^2 rho(r_i / sigma) + pen``, the
gradient's ``sigma``-derivative is ``b = -mean_i s_i (psi(z_i) - z_i
psi'(z_i)) x_i``; ``m`` is an order statistic, piecewise linear in ``c``,
so ``a`` is that of the row (or the two rows) at the median: a semismooth
Newton method, which from the L1 start settles in four to six iterations
where the secant takes five or six fits.

Where it settles (gradient and gap within the secant's tolerances) its
point is the answer if the gradient is at rounding already; otherwise one
more joint step is taken past the tests (as the secant polishes its last
fit) and one evaluation without a Hessian confirms it. Only where that
confirmation fails does the secant run from the point, its first fit
going on from there, so that the answer is always the secant's fixed
point, to its tolerance. Where the method does not settle
within ``_MAX_STEPS`` iterations (the median jumping between rows, a
Hessian that is not clearly positive definite, a scale heading for zero),
None sends the secant back to the original start.
"""

import numpy as np

from . import _linalg, _newton, _preconditioned_newton, _progress
from ._base import MAD_NORMAL_CONSTANT, weighted_median
from .losses import FixedScaleLoss

# Iterations before the method gives up (four to six settle the MAD
# fixed point from the L1 start).
_MAX_STEPS = 8
# A step changes the scale by at most these factors (down, up): the
# piecewise-linear MAD can mislead one step, not send the scale to zero.
_SHRINK, _GROW = 0.5, 2.0
# A step on an older Hessian that shrinks the gradient and the gap (the
# larger) by less than this factor has it formed again (see _newton).
_REFRESH_RATIO = _newton._REFRESH_RATIO
# A scale below this fraction of the start's heads for a collapse, which
# the secant detects and solves on the boundary.
_COLLAPSE_FRACTION = 1e-3


def scale_fixed_point_newton(
    problem, rows, rho, l2, coef, scale, gap_tol, grad_tol, polished_grad=0.0
):
    """``(coef, scale, hessian, n_iter, mad)`` at the scale's fixed point, or None.

    Parameters
    ----------
    problem : MProblem
        The fit's problem: data, options and the iteration budget, which
        the iterations are taken from (only if the method settles).
    rows : LinearObjective
        The objective whose rows the fit uses (all, or a subsample).
    rho : ResidualFunction
        The fixed-scale fit's loss.
    l2 : float
        The fit's ridge strength (standardised units).
    coef : ndarray
        The start, in the fit's standardised coordinates.
    scale : float
        The start's scale (standardised units).
    gap_tol : float
        Settled when ``|m - sigma| <= gap_tol * sigma`` ...
    grad_tol : callable
        ... and the largest gradient entry is at most ``grad_tol(sigma)``.
    polished_grad : float, default=0.0
        A settled point whose largest gradient entry is at most this is
        at rounding (a polishing step would move it by rounding only).

    Returns
    -------
    tuple or None
        ``hessian`` is the fit's latest (at the returned point or a step
        before it); ``n_iter`` the Newton iterations taken (already counted
        in ``problem.used``). ``mad`` is the normalised MAD of the returned
        point's residuals where that point is final: settled with its
        gradient at ``polished_grad``, or settled again one unevaluated
        step past a settled point (a polish, as the secant's, of
        coefficients and scale together). Otherwise ``mad`` is None and the
        point, one step past a settled one, only starts the secant.
    """
    if (
        problem.options.solver != "newton"
        or rows.n_coef >= _preconditioned_newton.PRECONDITIONED_MIN_COEF
    ):
        # (Many coefficients: a Hessian per iteration costs more than the
        # secant's fits, which step on older ones.)
        return None
    start_scale = scale
    steps = min(_MAX_STEPS, problem.budget)
    sw = rows.sample_weight
    objective = problem.objective(
        FixedScaleLoss(rho, scale),
        [(None, problem.fit_intercept)],
        [l2],
        ls_objective=rows,
    )
    if _preconditioned_newton.uses_products(objective):
        return None  # (a wide design: Hessians cost products there)
    # The residuals' MAD needs the predictions the pass computed: beyond a
    # small design's copy, another product with X otherwise.
    objective.remember_prediction = True
    hessian = factor = None
    fresh, previous = True, None
    stepped = None  # the iterations that settled, once a step went past
    for n_iter in range(steps + 2):
        # The loss is all that depends on the scale: the objective keeps
        # its coordinates and design copy, and takes the loss at the new one.
        objective.loss = FixedScaleLoss(rho, scale, fast=objective.loss.fast)
        if fresh:
            value, grad, hessian = objective.loss_gradient_hessian(coef)
            factor = None
        else:
            value, grad = objective.loss_gradient(coef)
        if not np.isfinite(value):
            return None
        residuals = rows.y - objective.raw_prediction(coef)[:, 0]
        spread = _median_rows(np.abs(residuals), sw)
        mad = spread[0] / MAD_NORMAL_CONSTANT
        if not (mad > 0 and np.isfinite(mad)):
            return None
        gap = mad - scale
        gnorm = float(np.abs(grad).max(initial=0.0))
        if n_iter:
            _progress.say(
                2,
                "  Newton step {} on fit and scale: objective {:.10g}, "
                "max |gradient| {:.2e}, scale {:.10g} (MAD {:+.2e})",
                n_iter,
                value,
                gnorm,
                scale,
                gap / scale,
            )
        settled = abs(gap) <= gap_tol * scale and gnorm <= grad_tol(scale)
        if stepped is not None:
            # The confirming evaluation one step past the test.
            return coef, scale, hessian, stepped, mad if settled else None
        if settled and gnorm <= polished_grad:
            _settled(problem, rows, n_iter)
            return coef, scale, hessian, n_iter, mad
        if not settled and n_iter >= steps:
            return None
        if factor is None:
            factor = _linalg.CholeskyFactor.of(hessian)
        # While steps on the latest Hessian shrink the gradient and the gap
        # fast, the next evaluation keeps it (a pass without Gram matrices,
        # a third to a fifth of one with them beyond small data). (Measured
        # at 1000 x 20, where a Hessian costs about a gradient on the small
        # design's copy, a fresh one at every step: Huber 4.9 -> 5.3 ms,
        # log-cosh 5.6 -> 5.2 ms.)
        residual = max(gnorm, abs(gap))
        fresh = previous is not None and residual > _REFRESH_RATIO * previous
        previous = residual
        step = None
        if factor is not None:
            step = _joint_step(rows, rho, factor, grad, scale, gap, residuals, spread)
        if settled:
            _settled(problem, rows, n_iter)
            if step is None:
                return coef, scale, hessian, n_iter, None
            # One step past the test (as the secant's polish steps past its
            # gradient test), confirmed by one more evaluation without a
            # Hessian: it moves the coefficients and the scale together, so
            # that gradient and gap fall to about the square of theirs. (The
            # secant confirmed the settled point by a fit of its own and
            # polished the coefficients alone, which moved the MAD by up to
            # a few times the gap's tolerance: log-cosh at 1000 x 20 took a
            # second confirming fit, 4 passes after the Newton steps; now 1
            # pass, and none where the gradient is already at rounding.)
            coef, scale = coef + step[0], scale + step[1]
            stepped, fresh = n_iter, False
            continue
        if step is None:
            return None
        coef, scale = coef + step[0], scale + step[1]
        if not scale > _COLLAPSE_FRACTION * start_scale:
            return None
    return None


def _settled(problem, rows, n_iter):
    """Count the ``n_iter`` iterations that settled in ``problem``'s budget."""
    problem.used[0] += n_iter
    _progress.say(
        1, "newton on fit and scale, {} rows: {} iterations", rows.n_samples, n_iter
    )


def _joint_step(rows, rho, factor, grad, scale, gap, residuals, spread):
    """``(delta c, delta sigma)`` of Newton's method on fit and scale, or None.

    The block elimination of the module's docstring on the factored
    Hessian ``factor``; the scale's step is limited to the factors
    ``_SHRINK`` and ``_GROW``. None where ``1 + a'v`` is zero or not finite.
    """
    b = _scale_derivative_of_gradient(rows, rho, residuals / scale, scale)
    a = _mad_gradient(rows, residuals, spread)
    u, v = factor.solve(grad), factor.solve(b)
    denominator = 1.0 + a @ v
    if not (np.isfinite(denominator) and denominator != 0):
        return None
    step = (gap - a @ u) / denominator
    step = min(max(step, (_SHRINK - 1.0) * scale), (_GROW - 1.0) * scale)
    return -u - v * step, step


def _scale_derivative_of_gradient(rows, rho, z, scale):
    """``d grad / d sigma = -mean_i s_i (psi(z_i) - z_i psi'(z_i)) x_i``.

    The gradient of ``mean_i s_i sigma^2 rho(r_i / sigma)`` is ``-mean_i s_i
    sigma psi(z_i) x_i``, and ``d (sigma psi(r / sigma)) / d sigma = psi(z)
    - z psi'(z)``; the penalty does not depend on ``sigma``. ``psi`` and
    ``psi'`` as the fixed-scale fit at ``scale`` has them
    (``rho.fixed_scale_terms``: log-cosh's without its precise value, 190 ->
    110 us at 1000 rows), to the absolute precision a step needs.
    """
    with np.errstate(over="ignore", under="ignore"):
        _, psi, dpsi = rho.fixed_scale_terms(z, scale)
        terms = psi - z * dpsi
    terms = np.where(np.isfinite(terms), terms, 0.0)
    if not rows.unit_weights:  # (weights all 1.0: the product changes nothing)
        terms *= rows.sample_weight
    return -rows.design_rmatvec(terms) / rows.sum_weight


def _median_rows(values, weights):
    """``(median, rows, shares)``: the weighted median of ``values`` and its rows.

    The row at the median (share 1), or the two whose values it averages
    (the largest at or below it and the smallest at or above, 1/2 each;
    among equal values the first row).
    """
    if (weights == weights[0]).all() and weights[0] > 0:
        found = _middle_rows(values)
        if found is not None:
            return found
    median = weighted_median(values, weights)
    held = weights > 0
    below = np.where(held & (values <= median), values, -np.inf)
    above = np.where(held & (values >= median), values, np.inf)
    low, high = int(np.argmax(below)), int(np.argmin(above))
    if values[low] == values[high]:
        return median, np.array([low]), np.ones(1)
    return median, np.array([low, high]), np.full(2, 0.5)


def _middle_rows(values):
    """:func:`_median_rows` of equally weighted ``values``, or None if tied there.

    One ``argpartition`` gives the middle rows and so the median (as
    :func:`~skrobust._base.weighted_median` forms it), where the general
    path partitions and then searches every row twice for them: a third of
    an iteration of :func:`scale_fixed_point_newton` at 1000 rows. Where
    another row holds a middle value (or both middle values are equal) the
    general path picks among them: None.
    """
    n = values.size
    k = n // 2
    if n % 2:
        rows = np.argpartition(values, k)[k : k + 1]
    else:
        rows = np.argpartition(values, (k - 1, k))[k - 1 : k + 1]
    middle = values[rows]
    if any(np.count_nonzero(values == v) != 1 for v in middle):
        return None
    if rows.size == 1:
        return float(middle[0]), rows, np.ones(1)
    lower, upper = float(middle[0]), float(middle[1])
    median = (lower + upper) / 2
    if not np.isfinite(median):  # (as _base._median: no overflow)
        median = 0.5 * lower + 0.5 * upper
    return median, rows, np.full(2, 0.5)


def _mad_gradient(rows, residuals, spread):
    """``a = grad_c m``: ``m`` is ``|r_k| / 0.6745`` at the median rows ``k``.

    ``r = y - D c``, so ``d |r_k| = -sign(r_k) d_k``; ``spread`` is
    :func:`_median_rows` of ``|r|``.
    """
    _, idx, share = spread
    signs = np.sign(residuals[idx]) * share
    return -(signs @ rows.dense_design(idx)) / MAD_NORMAL_CONSTANT
