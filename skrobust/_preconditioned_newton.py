"""Newton's method with inexact directions: conjugate gradients on few Hessians.

For many coefficients a Hessian (``n p^2`` flops) costs as much as dozens
of Hessian-vector products (``2 n p`` each). The convex Newton loop here
(:func:`_preconditioned_newton`) forms one now and then, and takes its
directions from conjugate gradients on products at the current point,
preconditioned by the Cholesky factor of the latest Hessian formed
(:func:`_preconditioned_cg`): the preconditioned system is the identity
plus what changed since, which conjugate gradients resolve in few
iterations. Steps, line search and stopping rule are the damped Newton
loop's (:func:`skrobust._newton._damped_step`), so the solution is the
same; only the work per iteration changes.

:func:`uses_products` says which objectives take this path (from
``PRECONDITIONED_MIN_COEF`` coefficients, on designs between
``PRECONDITIONED_MIN_ELEMENTS`` and ``PRECONDITIONED_MAX_ELEMENTS``
elements); :func:`polish_direction` is one such Newton step, for a
solve's polish. The sparse and sketched Newton methods
(:mod:`skrobust._sparse_newton`, :mod:`skrobust._sketched_newton`) reuse
these conjugate gradients with preconditioners of their own.
"""

import numpy as np

from ._linalg import CholeskyFactor
from ._newton import _damped_newton, _damped_step
from ._solver_result import SolverResult, _max_abs

# From this many coefficients a convex Newton solve forms a Hessian only
# now and then (see _preconditioned_newton): its n p^2 flops cost as much as
# dozens of Hessian-vector products (2 n p each) at p ~ 100.
PRECONDITIONED_MIN_COEF = 64
# ... and while the design has at most this many elements (4 MiB): beyond
# the cache a product reads X from memory, and costs a quarter of a Hessian
# at p = 200 (1e5 x 200 was 25-40% slower with products than with a Hessian
# per step from the subsample's start).
PRECONDITIONED_MAX_ELEMENTS = 2**19
# Below this many (the small-design copy's size, 512 KiB) a Hessian costs
# a few products and the loop that forms one per step is as fast.
PRECONDITIONED_MIN_ELEMENTS = 2**16
# Conjugate-gradient iterations per Newton direction before it is cut short,
# and beyond which the next point's Hessian is formed as the new
# preconditioner, as fractions of the number of coefficients (a Hessian
# costs about n_coef / 10 products, measured at 1000 x 200).
_PCG_MAX_FRACTION = 1 / 8
_PCG_REFRESH_FRACTION = 1 / 20
# Forcing term of the inexact Newton directions: the residual of H d = -g
# is brought below min(_PCG_FORCING, |g|) |g| (quadratic convergence).
_PCG_FORCING = 0.1


def _preconditioned_cg(product, rhs, factor, target, max_iter):
    """``H^-1 rhs`` by conjugate gradients, preconditioned with ``factor``.

    ``product(v)`` is ``H v``; ``factor`` (a
    :class:`~skrobust._linalg.CholeskyFactor`) the factorisation of a nearby
    Hessian, so that the preconditioned system is the identity plus what
    changed: for Huber's loss, the rows that crossed the threshold (a
    low-rank change that CG resolves in as many iterations), for smooth
    losses a perturbation that shrinks as Newton's method converges. Stops
    when the largest entry of the residual is at most ``target``, or after
    ``max_iter`` products. Returns ``(x, iterations, solved)``; every
    iterate from zero is a descent direction for ``-rhs`` a gradient.
    """
    x = np.zeros_like(rhs)
    residual = rhs.copy()
    z = factor.solve(residual)
    direction = z
    rz = float(residual @ z)
    for iteration in range(1, max_iter + 1):
        h_direction = product(direction)
        curvature = float(direction @ h_direction)
        if not (curvature > 0 and rz > 0):
            return x, iteration, False  # (no curvature left to use)
        alpha = rz / curvature
        x = x + alpha * direction
        residual = residual - alpha * h_direction
        if _max_abs(residual) <= target:
            return x, iteration, True
        z = factor.solve(residual)
        rz_next = float(residual @ z)
        direction = z + (rz_next / rz) * direction
        rz = rz_next
    return x, max_iter, False


def uses_products(objective):
    """Whether Newton systems of ``objective`` are solved by conjugate gradients.

    From ``PRECONDITIONED_MIN_COEF`` coefficients, for designs of more than
    ``PRECONDITIONED_MIN_ELEMENTS`` and at most ``PRECONDITIONED_MAX_ELEMENTS``
    rows times coefficients, for objectives with ``loss_gradient_curvature``
    (a :class:`skrobust._solvers._Restricted` one has the products of the
    objective it wraps; the Dask objective has none).
    """
    inner = getattr(objective, "objective", objective)
    elements = objective.n_samples * objective.n_coef
    return (
        objective.n_coef >= PRECONDITIONED_MIN_COEF
        and PRECONDITIONED_MIN_ELEMENTS < elements <= PRECONDITIONED_MAX_ELEMENTS
        and hasattr(inner, "loss_gradient_curvature")
    )


# Relative residual of the Newton system of a polishing step solved by
# conjugate gradients: it leaves cond(H) 1e-6 |g| of the exact step's error.
_POLISH_RTOL = 1e-6


def polish_direction(objective, coef, hessian):
    """The Newton step at ``coef`` by conjugate gradients, or None.

    ``(grad, step)`` with ``hessian`` (the latest of a converged solve, at or
    near ``coef``) as the preconditioner, for objectives that
    :func:`uses_products`; None where the caller forms the Hessian itself
    (no products, no usable ``hessian``, or conjugate gradients stalled).
    """
    if hessian is None or not uses_products(objective):
        return None
    factor = CholeskyFactor.of(hessian)
    if factor is None:
        return None
    _, grad, product = objective.loss_gradient_curvature(coef)
    gnorm = _max_abs(grad)
    step, _, solved = _preconditioned_cg(
        product, -grad, factor, _POLISH_RTOL * gnorm, objective.n_coef
    )
    return (grad, step) if solved else None


def _preconditioned_newton(objective, coef0, max_iter, tol, hessian=None):
    """The damped Newton loop with inexact directions on few Hessians; None if not.

    :func:`skrobust._newton._damped_newton`, for many coefficients, where
    forming a Hessian (``n p^2``) costs dozens of Hessian-vector products
    (``2 n p``). The first direction solves the Newton system exactly on
    the Hessian at ``coef0`` (or on ``hessian``, of a nearby problem or a
    subsample, as the preconditioner of conjugate gradients); later ones by
    conjugate gradients on products at the current point, preconditioned by
    the latest Hessian formed (:func:`_preconditioned_cg`). When conjugate
    gradients took more than ``_PCG_REFRESH_FRACTION`` of ``n_coef``
    iterations, the Hessian is formed again at the next point, unless that
    point has converged. Steps, line search and stopping rule are the
    damped loop's: the gradient decides convergence, so the solution is the
    same; only the work per iteration changes. Returns None when the first
    Hessian is not clearly positive definite (the caller then runs the
    damped loop, whose directions handle that).
    """
    n = objective.n_coef
    cg_max = max(10, int(n * _PCG_MAX_FRACTION))
    cg_refresh = max(5, int(n * _PCG_REFRESH_FRACTION))
    coef, product = coef0, None
    if hessian is None:
        value, grad, hessian = objective.loss_gradient_hessian(coef)
    else:
        value, grad, product = objective.loss_gradient_curvature(coef)
    factor = CholeskyFactor.of(hessian)
    if factor is None or not np.isfinite(value):
        return None
    gnorm = _max_abs(grad)
    n_iter, message, refresh = 0, "iteration limit reached", False
    while gnorm > tol and n_iter < max_iter:
        if refresh:
            hessian = objective.hessian(coef)
            factor = CholeskyFactor.of(hessian)
            if factor is None:  # singular here: the damped loop's directions
                more = _damped_newton(
                    objective, coef, max_iter - n_iter, tol, hessian, "current"
                )
                more.n_iter += n_iter
                return more
            product, refresh = None, False
        if product is None:  # the factor is this point's Hessian
            direction = factor.solve(-grad)
        else:
            target = max(min(_PCG_FORCING, gnorm) * gnorm, 0.1 * tol)
            direction, used, solved = _preconditioned_cg(
                product, -grad, factor, target, cg_max
            )
            refresh = not solved or used > cg_refresh
        slope = float(grad @ direction)
        if not slope < 0:
            message = "no descent direction"
            break
        n_iter += 1
        state, message = _damped_step(
            objective, (coef, value, gnorm), direction, slope, n_iter, curvature=True
        )
        if state is None:
            break
        coef, value, grad, product, gnorm = state
        if message is not None:
            break
    if gnorm <= tol:
        message = "converged"
    return SolverResult(coef, n_iter, gnorm <= tol, message, hessian)
