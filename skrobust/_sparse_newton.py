"""Newton's method on sparse Hessians, for sparse designs with sparse Gram matrices.

On a one-hot design (a few numeric columns and many levels) the Hessian
``X' D X`` is sparse; :mod:`skrobust._sparse_hessian` forms it in the pass
that forms the gradient. Each Newton direction is then solved by conjugate
gradients preconditioned by its diagonal, where a dense Hessian (and
L-BFGS, the alternative beyond a few hundred coefficients) would cost far
more. Smoothed quantile fits of such designs use it
(:func:`skrobust._quantile_smooth.sparse_newton`).
"""

import numpy as np
import scipy.sparse as sp

from . import (
    _lbfgs,
    _linalg,
    _newton,
    _preconditioned_newton,
    _solver_result,
    _solvers,
    _sparse_hessian,
)
from ._sketched_newton import _shortened

# L-BFGS iterations before the sparse Newton iterations of
# minimize.
LBFGS_BEFORE_SPARSE_NEWTON = 20


# Products of conjugate gradients for a direction of minimize's first
# Newton iterations (sparse_newton's probe). Near the optimum the arrow
# preconditioner solves in one to three; at the start of a finer
# bandwidth, whose levels without curved rows leave the system
# ill-conditioned, the 1e5 x 1005 one-hot design took all 1006 unsolved
# (0.13 s each), where L-BFGS's iterations cost a pass each.
PROBE_MAX_PRODUCTS = 10


class _Jacobi:
    """The diagonal preconditioner of conjugate gradients.

    For :func:`skrobust._preconditioned_newton._preconditioned_cg`.
    """

    def __init__(self, diagonal):
        self.diagonal = diagonal

    def solve(self, rhs):
        return rhs / self.diagonal


def _sparse_direction(hessian, grad, target, rcond, max_products=None):
    """``-H^-1 g`` by conjugate gradients on a sparse Hessian, from zero.

    Preconditioned by the direct solve of
    :class:`~skrobust._sparse_hessian.ArrowPreconditioner` where the
    Hessian is an arrow matrix (dense columns and one one-hot feature
    under one predictor: one or two products per direction, where the
    diagonal took 100 to 200 at small bandwidths), else by the diagonal,
    which carries the scale of each coefficient (a one-hot level's
    curvature is its rows' share). A
    coefficient whose curvature is below ``rcond`` of the largest diagonal
    entry (a level with no row near zero) gets that floor added, as
    :func:`skrobust._linalg._regularised_direction` raises small
    eigenvalues, so that its step stays finite. Started from zero, the
    iterates stay in the span of the gradient and the Hessian's images, the
    design's row space: a flat direction (one-hot levels with an intercept)
    gets no component beyond rounding. Conjugate gradients stopped short
    (by ``n_coef`` iterations, rounding or a direction of negative
    curvature, which a likelihood that is not convex far from its optimum
    has) give their last iterate if it is a descent direction, else the
    gradient scaled by the diagonal (at most ``max_products`` products,
    default ``n_coef``). Returns ``(direction, solved)``, or
    ``(None, False)`` where the diagonal has no curvature at all.
    """
    diagonal = hessian.diagonal()
    floor = rcond * max(float(np.max(diagonal, initial=0.0)), 0.0)
    if not floor > 0:
        return None, False
    raised = np.maximum(floor - diagonal, 0.0)

    def product(vector):
        return hessian.matvec(vector) + raised * vector

    extra = np.broadcast_to(hessian.penalty, raised.shape) + raised
    preconditioner = _sparse_hessian.ArrowPreconditioner.of(hessian, extra, floor)
    if preconditioner is None:
        preconditioner = _Jacobi(diagonal + raised)
    direction, _, solved = _preconditioned_newton._preconditioned_cg(
        product, -grad, preconditioner, target, max_products or grad.size
    )
    if not float(grad @ direction) < 0:
        direction, solved = -grad / (diagonal + raised), False
    return direction, solved


def solver_for(objective, solver):
    """``"sparse-newton"`` for ``solver="lbfgs"`` on an arrow Hessian, else ``solver``.

    For the smoothed least-absolute-deviation fits of ``scale="lad"``
    (convex, smooth at their bandwidth of half the scale), whose fixed
    point warm-starts each fit from the last: on the 1e5 x 1005 one-hot
    design the fits after the first took one or two Newton iterations
    (two or three passes) where L-BFGS took 2 to 5 (4 to 10 passes with
    its Newton-CG finish), and the LAD scale's fits 0.29 -> 0.17 s. Only
    where the Hessian is an arrow matrix (dense columns and one one-hot
    feature: no row with two sparse entries), whose directions
    :class:`~skrobust._sparse_hessian.ArrowPreconditioner` solves, and
    sparse enough (:func:`~skrobust._sparse_hessian.sparse_hessian_affordable`).
    (On a random sparse 2e4 x 2000 design, whose Hessian is not an arrow,
    that test alone, 10 ms a fit, made the LAD scale 50% slower.)
    """
    X = getattr(objective, "X", None)
    if solver != "lbfgs" or not (
        getattr(objective, "sparse", False) and sp.issparse(X)
    ):
        return solver
    if _sparse_hessian.split_design(objective).squared is None:
        return solver
    if _sparse_hessian.sparse_hessian_affordable(objective):
        return "sparse-newton"
    return solver


def minimize(objective, coef0, budget, tol, convex):
    """L-BFGS's first iterations, then :func:`sparse_newton`, then L-BFGS again.

    On a ``convex`` objective (the smoothed pinball loss, see below);
    a likelihood that is not convex (the heteroscedastic model's) starts
    with Newton's iterations, whose directions handle negative curvature:
    from its start (least squares and Harvey's log-variance) the quadratic
    model is good, and L-BFGS's iterations only delayed it (on the 1e5 x
    1005 one-hot design, 20 L-BFGS iterations left as many Newton
    iterations as none).

    Far from the optimum a Newton direction of the smoothed pinball loss,
    whose curvature sits on the few rows near zero, overshoots by orders
    of magnitude and its line search crawls (on a 1e5 x 1005 one-hot
    design: steps of 1e-11 of the direction, then 0.01 to 0.4, for 14 of
    18 iterations, each a pass with its Hessian and two or three more for
    the line search); ``LBFGS_BEFORE_SPARSE_NEWTON`` L-BFGS iterations
    (a pass each) bring it where Newton converges quadratically. Should
    Newton stop short, L-BFGS
    (:func:`skrobust._solvers._lbfgs_finished`) goes on from the better
    point.
    """
    objective = _lbfgs._LatestEvaluations(objective)
    result = _solver_result.SolverResult(coef0, 0, False, "not started")
    more = None
    if convex:
        # Newton's full steps first, until one fails (the line search is
        # what crawls): then L-BFGS's share from there.
        more = sparse_newton(objective, coef0, budget, tol, convex, probe=True)
        if more.message == _newton.FULL_STEP_REJECTED:
            result, more = more, None
    share = min(budget - result.n_iter, LBFGS_BEFORE_SPARSE_NEWTON)
    if more is None and convex and share > 0:
        used = result.n_iter
        result = _lbfgs._lbfgs(objective, result.coef, share, tol, finished=True)
        result.n_iter += used
        if _solver_result._gradient_norm(objective, result.coef) <= tol:
            return result
    if result.n_iter >= budget:
        return result
    if more is None:
        more = sparse_newton(
            objective, result.coef, budget - result.n_iter, tol, convex
        )
        more.n_iter += result.n_iter
    if more.converged:
        return more
    if _solver_result._gradient_norm(objective, more.coef) < (
        _solver_result._gradient_norm(objective, result.coef)
    ):
        result = more
    else:
        result.n_iter = more.n_iter
    if result.n_iter >= budget:
        return result
    more = _solvers._lbfgs_finished(
        objective, result.coef, budget - result.n_iter, tol, convex
    )
    more.n_iter += result.n_iter
    return more


def sparse_newton(objective, coef0, max_iter, tol, convex=True, probe=False):
    """Damped Newton on sparse Hessians (:mod:`skrobust._sparse_hessian`).

    As :func:`skrobust._newton._damped_newton`: each iteration evaluates
    the trial point's value, gradient and sparse Hessian in one pass over
    ``X`` and solves the Newton system by diagonally preconditioned
    conjugate gradients (:func:`_sparse_direction`) to the forcing term of
    :func:`skrobust._preconditioned_newton._preconditioned_newton`; steps
    and line search are :func:`skrobust._newton._damped_step`'s. The floor
    on the curvature of flat coefficients adapts to the steps as
    :class:`skrobust._linalg._DirectionFloor`'s does under a ridge: a step
    cut to ``t`` of its direction (a raised coefficient stepped too far,
    and the line search shortened every other coefficient's step with it)
    raises it by ``1 / t``, a full step lowers it; a short step does not
    end the loop, whose later directions have the higher floor. On an
    objective that is not ``convex``, a direction that conjugate gradients
    cut short (negative curvature) is quartered until the value is finite
    and no higher before the line search, as
    :func:`skrobust._sketched_newton.minimize` does. With ``probe``, the
    loop takes full steps only, on directions that conjugate gradients
    solve in ``PROBE_MAX_PRODUCTS`` products: the first step that fails the
    line search's test, or direction that is not solved, ends it at the
    point before (message ``FULL_STEP_REJECTED``), for the caller to go on
    otherwise.
    """
    evaluate = objective.loss_gradient_sparse_hessian
    coef = coef0
    value, grad, hessian = evaluate(coef)
    if not np.isfinite(value):
        return _solver_result.SolverResult(coef, 0, False, "non-finite objective")
    gnorm = float(np.max(np.abs(grad), initial=0.0))
    n_iter, message = 0, "iteration limit reached"
    floor = _linalg._DirectionFloor(np.ones(1))  # (adapted as under a ridge)
    while gnorm > tol and n_iter < max_iter:
        target = max(min(_preconditioned_newton._PCG_FORCING, gnorm) * gnorm, 0.1 * tol)
        products = PROBE_MAX_PRODUCTS if probe else grad.size
        direction, solved = _sparse_direction(
            hessian, grad, target, floor.rcond, products
        )
        if direction is None:
            message = "no descent direction"
            break
        if probe and not solved:
            message = _newton.FULL_STEP_REJECTED  # (not even solved)
            break
        slope = float(grad @ direction)
        if not (solved or convex):
            direction, slope = _shortened(objective, coef, value, direction, slope)
        n_iter += 1
        state, message = _newton._damped_step(
            objective,
            (coef, value, gnorm),
            direction,
            slope,
            n_iter,
            evaluate=evaluate,
            search=not probe,
        )
        if state is None:
            break
        floor.update(_newton._step_length(coef, state[0], direction))
        coef, value, grad, hessian, gnorm = state
        if message == "short step":
            message = None
        if message is not None:
            break
    if gnorm <= tol:
        message = "converged"
    return _solver_result.SolverResult(coef, n_iter, gnorm <= tol, message, None, grad)
