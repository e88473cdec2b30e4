"""Newton's method on the objective's Hessian, and the line searches that finish it.

Newton's method forms the Hessian in the same pass as the gradient. On
objectives that are not convex, scipy's ``trust-exact`` (:func:`_newton`),
which also handles indefinite Hessians, brings the gradient to
``_TRUST_REGION_GTOL``; plain Newton steps finish (:func:`_newton_steps`),
where a ratio test of values would reject good steps at random. Those steps
reuse a Hessian while it shrinks the gradient enough (chord steps, with
BFGS's secant update where the objective asks for it), so that near the
optimum most steps cost one pass over the data, not two. On convex
objectives a damped Newton loop (:func:`_damped_newton`) takes full steps
where they lower the objective, else the exact line search on the slope
(:func:`_zero_of_slope`); its step (:func:`_damped_step`) is shared by the
other Newton loops (preconditioned, sparse, sketched). The piecewise
quadratic Huber objective is solved exactly in a handful of iterations.

Where those stall, two finishers search each direction exactly by the zero
of the slope (:func:`_descend`), which compares gradients, not values:
Newton directions on the Hessian with its small eigenvalues raised
(:func:`_newton_line_search`, for singular Hessians), and truncated Newton
directions by conjugate gradients on Hessian-vector products
(:func:`_newton_cg_line_search`, after L-BFGS on many coefficients). The
directions' linear algebra is :mod:`skrobust._linalg`; which method runs
when is decided by :mod:`skrobust._solvers`.
"""

import functools
import warnings

import numpy as np
import scipy.linalg.lapack
import scipy.optimize
import scipy.sparse.linalg

from . import _lockstep, _progress
from ._lbfgs import _LBFGS_ROUNDING_GTOL
from ._linalg import (
    CholeskyFactor,
    _DirectionFloor,
    _newton_direction,
    _regularised_direction,
    secant_update,
)
from ._solver_result import SolverResult, _max_abs, _report_iteration

# trust-exact runs to this gradient norm (or tol, if larger); at most
# _POLISH_STEPS Newton steps then reach tol (see _newton). Regular problems
# need one to three; a scale collapsing to zero (more than a critical share
# of rows fitted exactly) gains a factor e per step in its log.
_TRUST_REGION_GTOL = 1e-6
_POLISH_STEPS = 30

# A Newton step on an older Hessian that shrinks the gradient by less than
# this factor has it re-formed: a fresh one converges quadratically, but it
# costs a pass of Gram matrices, 3-5 passes for the gradient alone at 20
# columns (more at more). Measured at 1e5 x 5..50: at 0.01 the
# heteroscedastic fit formed 3 Hessians on all rows and took 2.8x
# LinearRegression at 20 columns; at 0.1, one Hessian and a few more chord
# steps (each shrinking the gradient ~10x), 2.1x; the M-estimators' fits
# did not change.
_REFRESH_RATIO = 0.1

# Values within this fraction of each other (of 1 near zero) are equal to
# rounding in the Newton loops' tests. (A constant: np.finfo costs
# microseconds a call, and a step takes one.)
_VALUE_ROUNDING = 1e3 * float(np.finfo(float).eps)


class _Memo:
    """trust-exact asks for value, gradient and Hessian apart; one pass gives all.

    scipy's trust-exact forms the Hessian of every trial point, accepted or
    not (its subproblem needs the Hessian's norms up front), so the three
    are always wanted together.
    """

    def __init__(self, objective):
        self.objective = objective
        self.x = None

    def _update(self, x):
        if self.x is None or not np.array_equal(x, self.x):
            self.value, self.grad, self.H = self.objective.loss_gradient_hessian(x)
            self.x = x.copy()

    def fun(self, x):
        self._update(x)
        return self.value

    def jac(self, x):
        self._update(x)
        return self.grad

    def hess(self, x):
        self._update(x)
        return trust_region_hessian(self.H)


def trust_region_hessian(hess):
    """``hess`` for trust-exact's model: curvature below its rounding raised to it.

    trust-exact solves ``(H + lambda I) p = -g`` and then ``U' w = p`` with
    the Cholesky factor ``U``, starting from ``lambda = 0`` whenever ``H``
    factorises. A convex objective can have curvature that is positive but
    far below the rounding of ``H``'s largest entries: the log-cosh
    ``rho'' = sech^2(z / delta)`` is ``4 e^(-2x)``, ``x = |z| / delta``,
    1e-301 at ``x = 345`` and exactly 0 only beyond ``x = 373``, so rows
    that far out on the linear part of the loss give a pivot ``u`` of
    ~1e-150 and ``|w| ~ |g| / u^3`` overflows to inf (scipy then raises a
    ``ValueError`` about infs or NaNs). The entries of ``H`` are sums known
    to about ``eps`` times the largest diagonal entry ``h``, so the model
    cannot resolve curvature below ``eps h``: where a squared pivot of
    ``H``'s Cholesky factor is below it (the smallest eigenvalue is then
    below ``n eps h``), the model is ``H + eps h I``, whose pivots are at
    least ``sqrt(eps h)``. A Hessian that factorises clearly, or not at all
    (indefinite or exactly singular, which trust-exact handles by raising
    ``lambda``), is passed unchanged. Newton's steps after the trust region
    use the Hessian itself.
    """
    diag = np.diag(hess)
    if not np.all(np.isfinite(hess)):
        return hess
    floor = np.finfo(float).eps * _max_abs(diag)
    if not floor > 0:
        return hess
    lower, info = scipy.linalg.lapack.dpotrf(hess, lower=1, clean=0)
    if info != 0 or np.min(np.diag(lower)) ** 2 >= floor:
        return hess
    return hess + floor * np.eye(len(diag))


def _newton(objective, coef0, max_iter, tol, hessian=None, origin="subsample"):
    """trust-exact, finished (or, given a Hessian, preceded) by Newton steps.

    Near the optimum a Newton step lowers the objective by about
    ``g' H^-1 g / 2``, which drops below the rounding error of the objective
    (a weighted mean of n terms) once the gradient is ~1e-7: a ratio test
    such as trust-exact's then rejects good steps at random. So the trust
    region brings the gradient to ``_TRUST_REGION_GTOL`` and Newton steps
    (:func:`_newton_steps`) finish. ``hessian``, the curvature of the same
    mean objective on a subsample (``origin="subsample"``) or of a nearby
    problem on the same rows (``"stale"``), lets Newton steps try first: from
    such a start they usually converge with one pass over the data each, and
    trust-exact only runs if they stall.
    """
    n_iter = 0
    if hessian is not None:
        coef0, hessian, n_iter, done = _steps_on_given_hessian(
            objective, coef0, hessian, tol, max_iter, origin
        )
        if done is not None:
            return done
    if n_iter >= max_iter:
        value, grad = objective.loss_gradient(coef0)
        converged = _max_abs(grad) <= tol
        return SolverResult(
            coef0, n_iter, converged, "no iterations left", hessian, grad
        )
    memo = _Memo(objective)
    # (Warning filters are the process's: no other lane may run meanwhile.)
    with _lockstep.alone(), warnings.catch_warnings():
        # trust-exact warns (OptimizeWarning/RuntimeWarning) when it ends on
        # a rounding-level model failure; convergence is judged below.
        warnings.simplefilter("ignore")
        res = scipy.optimize.minimize(
            memo.fun,
            coef0,
            jac=memo.jac,
            hess=memo.hess,
            method="trust-exact",
            callback=_report_iteration,
            # trust-exact tests the Euclidean norm of the gradient, which
            # bounds the max-norm test below.
            options={
                "gtol": max(tol, _TRUST_REGION_GTOL),
                "maxiter": max_iter - n_iter,
            },
        )
    memo._update(res.x)
    n_iter += int(res.nit)
    if not np.isfinite(memo.value):
        return SolverResult(coef0, n_iter, False, "non-finite objective")
    coef, value, grad, hessian, n_iter = _newton_steps(
        objective, res.x, memo.value, memo.grad, memo.H, tol, max_iter, n_iter
    )
    gnorm = _max_abs(grad)
    return SolverResult(coef, n_iter, gnorm <= tol, str(res.message), hessian, grad)


def _steps_on_given_hessian(objective, coef0, hessian, tol, max_iter, origin):
    """Newton steps on a given ``hessian``, before :func:`_newton`'s or
    :func:`_damped_newton`'s own iterations.

    Returns ``(coef, hessian, n_iter, done)``: where the steps got to, the
    Hessian they end on, their iterations, and ``done``, the solve's
    :class:`~skrobust._solver_result.SolverResult` when they finish it (the
    gradient within ``tol``, or a non-finite objective at ``coef0``) or
    None when the caller goes on from ``coef``.
    """
    value, grad = objective.loss_gradient(coef0)
    if not np.isfinite(value):
        return coef0, hessian, 0, SolverResult(coef0, 0, False, "non-finite objective")
    coef, value, grad, hessian, n_iter = _newton_steps(
        objective, coef0, value, grad, hessian, tol, max_iter, 0, origin
    )
    if _max_abs(grad) <= tol:
        converged = SolverResult(
            coef, n_iter, True, "Newton steps converged", hessian, grad
        )
        return coef, hessian, n_iter, converged
    return coef, hessian, n_iter, None


def _newton_steps(
    objective, coef, value, grad, hess, tol, max_iter, n_iter, origin="current"
):
    """Newton steps on the latest Hessian while they shrink the gradient.

    A step is accepted while it shrinks the largest gradient entry without
    raising the objective beyond rounding. Near the optimum a step on the
    Hessian of the current point shrinks the gradient by orders of
    magnitude, and the following steps reuse that Hessian (one pass over
    the data each, not two) until one shrinks it by less than
    ``1 / _REFRESH_RATIO``, when the Hessian (``None`` to form one) is
    formed again. Where a step on the current Hessian falls short of that
    (far from the optimum, where steps are not yet quadratic), the next
    trial point gets its Hessian in the same pass as its gradient, as does
    the first trial point after a subsample's Hessian, which differs from
    this objective's by sampling noise; an objective whose
    ``subsample_hessian_steps`` is ``k > 1`` takes up to ``k - 1`` slow steps
    on the subsample's Hessian (secant-updated where the objective asks for
    it) first, so that its own is formed nearer the optimum, where it
    serves more chord steps. ``origin`` says where ``hess`` comes
    from: ``"current"`` (this objective at ``coef``), ``"stale"`` (this
    objective, or a nearby one on the same rows, at an earlier point) or
    ``"subsample"``. Returns
    ``(coef, value, grad, hess, n_iter)``, ``hess`` the latest Hessian
    formed (or given), which a finer level of a multilevel solve starts
    from even when it is due for a refresh here.
    """
    latest = hess
    secant = getattr(objective, "secant_updates", False)
    # Slow steps still to take on a subsample's Hessian before a trial
    # point gets this objective's.
    on_subsample = 0
    if origin == "subsample":
        on_subsample = getattr(objective, "subsample_hessian_steps", 1) - 1
    # Whether the next trial point should come with its Hessian, and whether
    # hess is this objective's at coef (not a subsample's, not an older one).
    with_hessian = origin == "subsample" and on_subsample == 0
    current = origin == "current"
    factored = (None, None)  # (the Hessian factored, its CholeskyFactor)
    for _ in range(_POLISH_STEPS):
        gnorm = _max_abs(grad)
        if gnorm <= tol or n_iter >= max_iter:
            break
        fresh = hess is None
        if fresh:
            hess = latest = objective.hessian(coef)
            current = True
        # Not min_norm_solve: a Hessian can be badly scaled across blocks
        # (a collapsing scale has curvature 1e-14 of the coefficients'), and
        # its cut-off would drop such a direction instead of stepping in it.
        # Cholesky on the unit-diagonal scaling is blind to that scaling and
        # cheaper than lstsq's SVD, which takes the singular cases.
        if factored[0] is not hess:
            # (A Hessian reused for several steps is factored once.)
            factored = (hess, CholeskyFactor.of(hess))
        factor = factored[1]
        if factor is None:
            step = np.linalg.lstsq(hess, -grad, rcond=None)[0]
        else:
            step = factor.solve(-grad)
        trial = coef + step
        if with_hessian:
            trial_value, trial_grad, trial_hess = objective.loss_gradient_hessian(trial)
        else:
            trial_value, trial_grad = objective.loss_gradient(trial)
            trial_hess = None
        n_iter += 1
        trial_gnorm = _max_abs(trial_grad)
        _progress.say(
            2,
            "  Newton step {}: objective {:.10g}, max |gradient| {:.2e}",
            n_iter,
            trial_value,
            trial_gnorm,
        )
        rounding = _VALUE_ROUNDING * max(abs(value), 1.0)
        if trial_gnorm < gnorm and trial_value <= value + rounding:
            slow = trial_gnorm > _REFRESH_RATIO * gnorm
            with_hessian = slow and current
            if trial_hess is not None:
                hess = latest = trial_hess
                current = True
            elif slow and on_subsample > 0:
                on_subsample -= 1
                with_hessian = on_subsample == 0
                if secant and factor is not None:
                    hess = secant_update(hess, step, trial_grad - grad)
            elif slow:
                hess = None
            else:
                current = False
                if secant and factor is not None:
                    hess = secant_update(hess, step, trial_grad - grad)
            coef, value, grad = trial, trial_value, trial_grad
        elif current:
            break  # a Hessian formed again here would give the same step
        else:
            hess = None
            with_hessian = False
    return coef, value, grad, latest, n_iter


def _damped_newton(
    objective, coef0, max_iter, tol, hessian=None, origin="subsample", at=None
):
    """Newton's method on a convex objective: full steps, else an exact line search.

    Each iteration forms the gradient and Hessian of the trial point in one
    pass and steps along the Newton direction
    (:func:`skrobust._linalg._newton_direction`).
    The full step is taken when it lowers the objective (Armijo's test) or,
    near the optimum where a decrease of ``g' H^-1 g / 2`` is below the
    rounding of the objective's value, when it shrinks the largest gradient
    entry without raising the value beyond rounding. Otherwise the step
    length is the zero of the slope along the direction (the exact line
    search of :func:`_zero_of_slope`, which compares gradients, not values).
    On a convex objective this converges from any start, quadratically
    near a regular optimum, and costs no more than the passes themselves:
    scipy's trust region adds its own bookkeeping and an eigenvalue bound
    per iteration, most of a small fit's time. ``hessian`` (of a subsample
    or a nearby problem, see :func:`_newton`) lets Newton steps on it try
    first. ``at``, ``(value, gradient, hessian)`` at ``coef0``, saves the
    pass that evaluates it. Stops without converging when a step improves
    neither the gradient nor the value.
    """
    n_iter = 0
    coef = coef0
    if hessian is not None:
        coef, hessian, n_iter, done = _steps_on_given_hessian(
            objective, coef0, hessian, tol, max_iter, origin
        )
        if done is not None:
            return done
    if at is None or hessian is not None:
        at = objective.loss_gradient_hessian(coef)
    value, grad, hess = at
    if not np.isfinite(value):
        return SolverResult(coef, n_iter, False, "non-finite objective")
    gnorm = _max_abs(grad)
    message = "iteration limit reached"
    floor = _DirectionFloor(_penalty_of(objective))
    while gnorm > tol and n_iter < max_iter:
        direction, regularised = _newton_direction(hess, grad, floor)
        slope = float(grad @ direction) if direction is not None else 0.0
        if not slope < 0:
            message = "no descent direction"
            break
        n_iter += 1
        state, message = _damped_step(
            objective, (coef, value, gnorm), direction, slope, n_iter
        )
        if state is None:
            break
        if regularised:
            floor.update(_step_length(coef, state[0], direction))
        coef, value, grad, hess, gnorm = state
        if message is not None:
            break
    if gnorm <= tol:
        message = "converged"
    return SolverResult(coef, n_iter, gnorm <= tol, message, hess, grad)


def _damped_step(
    objective, at, direction, slope, n_iter, curvature=False, evaluate=None, search=True
):
    """The next iterate of the damped Newton loops, from ``direction``.

    ``at`` is ``(coef, value, gnorm)`` of the current iterate. The full
    step is taken when it lowers the value (Armijo's test) or, at the
    rounding level of the value, when it shrinks the largest gradient entry
    without raising the value beyond rounding (otherwise steps would cycle
    there); else the step length is the zero of the slope along
    ``direction`` (:func:`_zero_of_slope`). The new point is evaluated with
    its Hessian, or with ``curvature`` its Hessian-vector product
    (``loss_gradient_curvature``), or with ``evaluate`` by that method
    (a sparse Hessian's). Without ``search`` a full step that fails the
    test is not searched: ``(None, FULL_STEP_REJECTED)``. Returns ``(state,
    message)``: ``state`` is ``(point, value, gradient, hessian or
    product, gnorm)``, or None when no step improves; ``message`` is None
    to go on, else why the loop stops. ``n_iter`` numbers the step in the
    progress report (``verbose=2``).
    """
    if evaluate is None:
        evaluate = (
            objective.loss_gradient_curvature
            if curvature
            else objective.loss_gradient_hessian
        )
    coef, value, gnorm = at
    trial = coef + direction
    trial_value, trial_grad, extra = evaluate(trial)
    trial_gnorm = _max_abs(trial_grad)
    rounding = _VALUE_ROUNDING * max(abs(value), 1.0)
    accept = np.isfinite(trial_value) and (
        trial_value <= min(value + 1e-4 * slope, value - rounding)
        or (trial_gnorm < gnorm and trial_value <= value + rounding)
    )
    message = None
    if not (accept or search):
        return None, FULL_STEP_REJECTED
    if not accept:
        step = _zero_of_slope(objective, coef, direction, slope, _DAMPED_SLOPE_RTOL)
        trial = coef + step * direction
        trial_value, trial_grad, extra = evaluate(trial)
        trial_gnorm = _max_abs(trial_grad)
        improved = trial_gnorm < gnorm or trial_value < value - rounding
        if not (step > 0 and np.isfinite(trial_value) and improved):
            return None, "no improving step (rounding level)"
        if step < _MIN_DAMPED_STEP:
            # The quadratic model is poor far below the Newton step's
            # length (a nearly singular Hessian far from the optimum): a
            # trust region (see _solvers._minimize) handles that better.
            message = "short step"
    if message is None:
        _progress.say(
            2,
            "  Newton step {}: objective {:.10g}, max |gradient| {:.2e}",
            n_iter,
            trial_value,
            trial_gnorm,
        )
    return (trial, trial_value, trial_grad, extra, trial_gnorm), message


# The message of a full step that _damped_step was told not to search.
FULL_STEP_REJECTED = "full Newton step rejected"

# The damped Newton line search stops where the slope along the direction
# is within this fraction of its initial value (strong Wolfe, c2 = 0.1).
_DAMPED_SLOPE_RTOL = 0.1

# A damped Newton step shorter than this fraction of the Newton step hands
# over to the trust region.
_MIN_DAMPED_STEP = 1e-3


def _penalty_of(objective):
    """The ridge weights an objective adds to its Hessian's diagonal, or None."""
    penalty = getattr(objective, "penalty", None)
    if penalty is None or np.shape(penalty) != (objective.n_coef,):
        return None
    penalty = np.asarray(penalty, dtype=float)
    return penalty if np.any(penalty > 0) else None


def _step_length(coef, new_coef, direction):
    """``t`` with ``new_coef = coef + t direction`` (1 within rounding).

    From the direction's largest entry (its squared norm may overflow).
    """
    if direction.size == 0:
        return 0.0
    j = int(np.argmax(np.abs(direction)))
    if not direction[j] != 0:
        return 0.0
    step = float((new_coef[j] - coef[j]) / direction[j])
    return 1.0 if abs(step - 1.0) <= 1e-12 else step


_LINE_SEARCH_STEPS = 60


def _newton_line_search(objective, result, max_iter, tol):
    """Regularised Newton directions, each with an exact line search.

    Where trust-exact and plain Newton steps stall (a piecewise-quadratic
    objective whose Hessian is singular: fewer rows on Huber's quadratic
    part than coefficients, so the objective is linear along some
    directions), the Newton direction on the Hessian with its small
    eigenvalues raised still descends, across the flat directions too. The
    step length minimises the objective along it exactly: the slope
    ``g(c + t d)' d`` is increasing in ``t`` (convexity), so its zero is
    bracketed and found by regula falsi on the slope, which is exact on a
    quadratic piece and, unlike a comparison of objective values, is not
    limited by their rounding. Each direction counts as an iteration.
    """

    floor = _DirectionFloor(_penalty_of(objective))
    last = None  # (coef, direction) of the previous step

    def direction(coef, grad, extra):
        nonlocal last
        if last is not None:
            d = last[1]
            floor.update(_step_length(last[0], coef, d))
        d = _regularised_direction(
            objective.hessian(coef), grad, floor.penalty, floor.rcond
        )
        last = (coef, d)
        return d

    coef, grad, n_iter = _descend(objective, result, max_iter, tol, direction)
    gnorm = _max_abs(grad)
    return SolverResult(
        coef, n_iter, gnorm <= tol, "Newton directions with exact line search"
    )


# Conjugate-gradient iterations (Hessian-vector products) per truncated
# Newton direction, and the residual they aim for relative to the gradient.
_CG_MAX_ITER = 100
_CG_RTOL = 1e-3
# Truncated Newton steps end after _STALLED_STEPS in a row that each left
# more than _STALL_RATIO of the gradient (see _descend); a step whose
# conjugate gradients reach _CG_RTOL typically leaves 1e-2 to 1e-3 of it.
_STALLED_STEPS = 3
_STALL_RATIO = 0.1


def _newton_cg_line_search(objective, result, max_iter, tol):
    """Truncated Newton directions (CG on Hessian-vector products), exact steps.

    For many coefficients, where L-BFGS stopped at the rounding level of the
    objective's value before its gradient reached ``tol``: each direction
    solves ``H d = -g`` approximately by conjugate gradients on
    :meth:`hessp` (one pass over the data per product, no Hessian matrix),
    and its step length is the zero of the slope (see
    :func:`_newton_line_search`), which compares gradients, not values.
    """

    def evaluate(coef):
        # The rows' loss Hessians are kept from the pass that evaluates the
        # gradient: each product is then two products with X and no
        # evaluation of the loss (a smoothed quantile fit on a 1e5 x 1005
        # one-hot design spent 2.1 of its 4.4 s in the 326 products of its
        # 5 directions, re-evaluating its kernel's special functions in each).
        if hasattr(objective, "loss_gradient_curvature"):
            return objective.loss_gradient_curvature(coef)
        value, grad = objective.loss_gradient(coef)
        return value, grad, functools.partial(objective.hessp, coef)

    def direction(coef, grad, product):
        operator = scipy.sparse.linalg.LinearOperator(
            (coef.size, coef.size), matvec=product, dtype=float
        )
        # (A direction of zero curvature divides by zero inside CG: its
        # non-finite result is replaced by the gradient's direction.)
        with np.errstate(divide="ignore", invalid="ignore"):
            d, _ = scipy.sparse.linalg.cg(
                operator, -grad, rtol=_CG_RTOL, maxiter=_CG_MAX_ITER
            )
        return d if np.all(np.isfinite(d)) and grad @ d < 0 else -grad

    # The direction is only _CG_RTOL accurate, and a line search to the same
    # accuracy loses nothing (searched exactly, one step took 26 passes over
    # a 2e4 x 1000 design). Steps that stall end the search (see _descend).
    coef, grad, n_iter = _descend(
        objective,
        result,
        max_iter,
        tol,
        direction,
        rtol=_CG_RTOL,
        stall=True,
        evaluate=evaluate,
    )
    gnorm = _max_abs(grad)
    converged = gnorm <= tol or (result.converged and gnorm <= _LBFGS_ROUNDING_GTOL)
    return SolverResult(
        coef, n_iter, converged, "truncated Newton with exact line search"
    )


def _descend(
    objective, result, max_iter, tol, direction, rtol=0.0, stall=False, evaluate=None
):
    """Steps along ``direction(coef, grad, extra)`` to the zero of the slope.

    From ``result``'s point, while the largest gradient entry exceeds
    ``tol``, iterations remain and a step improves the gradient or the
    value; to ``rtol`` (see :func:`_zero_of_slope`). With ``stall``, also
    only until ``_STALLED_STEPS`` steps in a row each left more than
    ``_STALL_RATIO`` of the gradient: truncated Newton directions that do
    not bring the gradient down (conjugate gradients stopped far from the
    Newton step; on a smoothed quantile objective of a 1e5 x 1005 one-hot
    design at q = 0.9, 200 steps of 100 products each took the gradient
    from 2e-8 to 1e-8 in 110 s) would spend the whole budget.
    ``evaluate(coef)``, ``objective.loss_gradient`` with a third value by
    default None, evaluates the start and each step's end point; that third
    value is ``direction``'s ``extra`` there.
    Returns ``(coef, grad, n_iter)``.
    """
    if evaluate is None:

        def evaluate(coef):
            return *objective.loss_gradient(coef), None

    coef, n_iter = result.coef, result.n_iter
    value, grad, extra = evaluate(coef)
    gnorm = _max_abs(grad)
    stalled = 0
    while gnorm > tol and n_iter < max_iter and np.isfinite(value):
        if stall and stalled >= _STALLED_STEPS:
            break
        d = direction(coef, grad, extra)
        if d is None:
            break
        n_iter += 1
        step = _zero_of_slope(objective, coef, d, grad @ d, rtol)
        trial_value, trial_grad, trial_extra = evaluate(coef + step * d)
        trial_gnorm = _max_abs(trial_grad)
        improved = trial_gnorm < gnorm or trial_value < value
        if not (np.isfinite(trial_value) and improved):
            break
        stalled = stalled + 1 if trial_gnorm > _STALL_RATIO * gnorm else 0
        coef = coef + step * d
        value, grad, gnorm, extra = trial_value, trial_grad, trial_gnorm, trial_extra
    return coef, grad, n_iter


def _zero_of_slope(objective, coef, direction, slope0, rtol=0.0):
    """``t > 0`` where the slope ``g(coef + t d)' d`` of a convex objective is 0.

    With ``rtol > 0``, any ``t`` whose slope is within ``rtol |slope0|`` of
    zero (the strong Wolfe curvature condition), or the better end of a
    bracket narrowed to ``rtol`` relative: enough for a damped Newton step,
    which does not need the line's minimum to the last digit (and whose
    slope can be rounding noise near the optimum).
    """
    if not slope0 < 0:
        return 0.0
    enough = rtol * abs(slope0)

    def slope(t):
        # Beyond the objective's domain (an infinite value, where the loss
        # reports a zero gradient) the minimum lies behind: slope +inf.
        value, grad = objective.loss_gradient(coef + t * direction)
        return float(grad @ direction) if np.isfinite(value) else np.inf

    low, s_low, high = 0.0, slope0, 1.0
    s_high = slope(high)
    for _ in range(_LINE_SEARCH_STEPS):  # bracket: double until the slope rises
        if s_high >= 0:
            break
        if abs(s_high) <= enough:
            return high
        low, s_low, high = high, s_high, 2.0 * high
        s_high = slope(high)
    if abs(s_high) <= enough:
        return high
    side = 0
    for _ in range(_LINE_SEARCH_STEPS):  # regula falsi, Illinois variant
        # Bisect while s_high is inf, or where the two slopes are equal (a
        # step below the rounding of the iterate: a linear stretch).
        t = 0.5 * (low + high)
        if s_high != s_low:
            with np.errstate(invalid="ignore"):
                t = high - s_high * (high - low) / (s_high - s_low)
        if not low < t < high:
            t = 0.5 * (low + high)
        s = slope(t)
        if s == 0 or abs(s) <= enough:
            return t
        if s < 0:
            low, s_low = t, s
            if side == -1:
                s_high *= 0.5
            side = -1
        else:
            high, s_high = t, s
            if side == 1:
                s_low *= 0.5
            side = 1
        if high - low <= max(4 * np.finfo(float).eps, rtol) * high:
            break  # (with rtol: a damped step needs no more digits than this)
    return low if abs(s_low) <= abs(s_high) else high
