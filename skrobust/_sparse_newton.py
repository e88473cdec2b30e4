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


# LEVEL_STEP_AFTER_SLOW Newton steps in a row that each shrank the
# gradient's largest entry by less than LEVEL_STEP_AFTER_RATIO are followed
# by a level step (_LevelSteps) on the levels whose gradient entry is at
# least LEVEL_STEP_SHARE of the largest: Newton's iterations crawling on
# levels beyond the kernel's reach shrink it by ~0.36 each. (Tuned on the
# 1e5 x 1005 one-hot design: stepping every level took as many passes, at
# 2-4 times the cost of a step.)
LEVEL_STEP_AFTER_RATIO = 0.25
LEVEL_STEP_AFTER_SLOW = 1
LEVEL_STEP_SHARE = 0.01
# At most this many safeguarded 1-D Newton iterations in a level step.
LEVEL_STEP_ITERATIONS = 60


class _LevelSteps:
    """Exact minimisation of a smoothed pinball loss over each one-hot level.

    On an arrow design (no row with two sparse entries: one one-hot
    feature) the coefficients of the levels, in the units of ``X``'s
    columns and with the numeric columns and the intercept held, are
    separable: each level's is the root of its rows' derivative
    ``f(d) = sum_i w_i v_i psi_i(r_i - d v_i)``, increasing in ``d``. A
    level whose rows all sit several bandwidths from zero is where
    Newton's steps crawl: the quadratic model of the kernel's exponential
    tail moves it some ``h / 5`` a step (gradient x0.36). A level step
    solves every level's root at once, vectorised over the entries, by
    Newton's iteration safeguarded by bisection in the bracket of
    residuals +- the kernel's reach (where ``f`` has the sign of its
    linear part). It costs one product ``X w`` and arithmetic on the
    levels' entries, and never raises the objective (exact block
    coordinate minimisation). :meth:`of` gives None where it does not
    apply (another loss, several predictors, a Hessian not an arrow).
    """

    def __init__(self, objective, columns, rows, values, reach):
        self.objective = objective
        self.columns = columns  # (level index of each entry)
        self.rows = rows
        self.values = values
        self.reach = reach

    @classmethod
    def of(cls, objective):
        from .losses import FixedScaleLoss, SmoothedPinballRho

        loss = getattr(objective, "loss", None)
        spec = getattr(objective, "predictor_spec", None)
        if not (
            isinstance(loss, FixedScaleLoss)
            and isinstance(loss.rho, SmoothedPinballRho)
            and spec is not None
            and len(spec) == 1
            and spec[0][0] is None
            and getattr(objective, "sparse", False)
        ):
            return None
        split = _sparse_hessian.split_design(objective)
        if split.squared is None or not split.light.size:
            return None
        from ._quantile_smooth import _LINEAR_BEYOND

        sparse = sp.csc_array(split.sparse)
        counts = np.diff(sparse.indptr)
        columns = np.repeat(np.arange(split.light.size), counts)
        rho = loss.rho
        reach = _LINEAR_BEYOND[rho.kernel] * rho.bandwidth * loss.scale
        return cls(objective, columns, sparse.indices, sparse.data, reach)

    def __call__(self, coef, grad, share):
        """``coef`` with the coefficients of some levels at their 1-D minimisers.

        Those whose gradient entry is at least ``share`` of ``grad``'s
        largest (the levels that hold Newton back; any subset leaves a block
        coordinate step exact), on their rows only.
        """
        obj = self.objective
        split = _sparse_hessian.split_design(obj)
        pred = obj.predictors[0]
        m = split.light.size
        top = float(np.max(np.abs(grad), initial=0.0))
        chosen = ~pred.pinned[split.light] & (pred.inv_scale[split.light] > 0)
        chosen &= np.abs(grad[split.light]) >= share * top
        if not chosen.any():
            return coef
        entries = chosen[self.columns]
        rows, v, cols = self.rows[entries], self.values[entries], self.columns[entries]
        weights, intercept = pred.to_raw(coef[pred.slice])
        y_rows = obj.y[rows]
        r = y_rows - (obj.X[rows] @ weights + intercept)
        w = obj.sample_weight[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = r / v
            spread = self.reach / np.abs(v)
        lo = np.full(m, np.inf)
        hi = np.full(m, -np.inf)
        # (The entries are in column order: each level's a run.)
        starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
        lo[cols[starts]] = np.minimum.reduceat(ratio - spread, starts)
        hi[cols[starts]] = np.maximum.reduceat(ratio + spread, starts)
        ok = chosen & np.isfinite(lo) & np.isfinite(hi)
        # (From the levels' present coefficients, clipped into their brackets.)
        delta = np.zeros(m)
        np.clip(delta, lo, hi, where=ok, out=delta)
        active = ok.copy()
        loss = obj.loss
        for _ in range(LEVEL_STEP_ITERATIONS):
            entries = active[cols]
            if not entries.any():
                break
            ce, ve = cols[entries], v[entries]
            ye = y_rows[entries]
            shifted = ye - (r[entries] - delta[ce] * ve)
            # loss(y, eta + d v): gradient psi and curvature per entry
            _, g, h = loss.loss_gradient_hessian(ye, shifted[:, None])
            we = w[entries]
            f = np.bincount(ce, we * ve * g[:, 0], minlength=m)
            df = np.bincount(ce, we * ve * ve * h[:, 0, 0], minlength=m)
            # the bracket keeps the root
            below = active & (f < 0)
            above = active & (f > 0)
            lo[below] = delta[below]
            hi[above] = delta[above]
            # (levels not chosen have lo = inf, hi = -inf: never read)
            with np.errstate(divide="ignore", invalid="ignore"):
                trial = delta - f / df
                inside = (trial > lo) & (trial < hi) & np.isfinite(trial)
                new = np.where(inside, trial, 0.5 * (lo + hi))
            # (f = 0 with no curvature: a root already, in a flat stretch)
            new[f == 0] = delta[f == 0]
            scale = np.maximum(np.abs(new), 1.0)
            done = active & (
                (f == 0)
                | (np.abs(new - delta) <= 1e-14 * scale)
                | (hi - lo <= 1e-14 * scale)
            )
            delta[active] = new[active]
            active &= ~done
        if not ok.any():
            return coef
        # The raw map of the predictor (w = c inv_scale, b = c_b - shift @ w)
        # with b held: each level's c by d / inv_scale, c_b by shift @ d.
        columns = split.light[ok]
        out = coef.copy()
        out[columns] += delta[ok] / pred.inv_scale[columns]
        if pred.fit_intercept:
            out[pred.p] += float(pred.shift[columns] @ delta[ok])
        return out


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
    levels = _LevelSteps.of(objective) if convex else None
    slow = 0  # (consecutive Newton steps that shrank the gradient little)
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
        previous = gnorm
        coef, value, grad, hessian, gnorm = state
        if message == "short step":
            message = None
        if message is not None:
            break
        slow = slow + 1 if gnorm > LEVEL_STEP_AFTER_RATIO * previous else 0
        if levels is not None and tol < gnorm and slow >= LEVEL_STEP_AFTER_SLOW:
            slow = 0
            # Newton crawls (levels beyond the kernel's reach): level steps.
            trial = levels(coef, grad, LEVEL_STEP_SHARE)
            trial_state = evaluate(trial)
            if trial_state[0] <= value:
                coef = trial
                value, grad, hessian = trial_state
                gnorm = float(np.max(np.abs(grad), initial=0.0))
    if gnorm <= tol:
        message = "converged"
    return _solver_result.SolverResult(coef, n_iter, gnorm <= tol, message, None, grad)
