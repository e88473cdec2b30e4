"""The solvers: Newton's method, L-BFGS and their fallbacks.

A solver sees an objective with ``loss_gradient(coef)`` and
``loss_gradient_hessian(coef)`` (see :class:`skrobust._objective.LinearObjective`),
never a loss or ``X``. Each returns a :class:`SolverResult`; whether it
converged is decided here from the gradient, and a solver that stopped early
raises a :class:`~sklearn.exceptions.ConvergenceWarning` and still returns the
best finite point it reached.

``"lbfgs"``
    ``scipy.optimize.minimize(method="L-BFGS-B")`` on the analytic gradient.
    One pass over ``X`` per evaluation and no Hessian: the choice for many
    features; finished by Newton's method where a Hessian is affordable.
``"newton"``
    Newton's method on the analytic Hessian, formed in the same pass as the
    gradient: on convex objectives a damped Newton loop with exact line
    searches, going on with Levenberg-Marquardt steps where it stalls
    (:mod:`skrobust._levenberg`); on the others scipy's ``trust-exact``,
    finished by plain Newton steps. The piecewise quadratic Huber objective
    is solved exactly in a handful of iterations. If it stops early, L-BFGS
    continues from its last point.

Large problems start from the solution of the same objective on a strided
subsample of the rows (recursively): it costs a fraction of one pass and
leaves only a few iterations on all the rows. The Newton methods for
particular shapes have modules of their own: conjugate gradients on sparse
Hessians of one-hot designs (:mod:`skrobust._sparse_newton`), truncated
Newton preconditioned by a few rows for wide dense heteroscedastic fits
(:mod:`skrobust._sketched_newton`), and exact L1 penalties
(:mod:`skrobust._proximal`).
"""

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.optimize
import scipy.sparse.linalg
from sklearn.exceptions import ConvergenceWarning

from . import _levenberg, _lockstep, _progress
from ._lbfgs import _LBFGS_ROUNDING_GTOL, _LatestEvaluations, _lbfgs
from ._linalg import (
    CholeskyFactor,
    _DirectionFloor,
    _newton_direction,
    _regularised_direction,
    secant_update,
)
from ._linalg import cholesky_solve as cholesky_solve  # (for _scale)
from ._solver_result import SolverResult, _gradient_norm, _max_abs, _report_iteration
from ._strides import aperiodic_step

# Above this many coefficients a dense Hessian costs more than it saves.
NEWTON_MAX_COEF = 300

# Problems with at least this many rows (and rows per coefficient) are first
# solved on every SUBSAMPLE_STEP-th row; the subsample's tolerance need only
# bring the full problem into Newton's region of fast convergence. At a
# subsample's optimum the full objective's gradient is of the order of the
# sampling noise (~1e-2 for the 12500 rows of a 1e5-row problem), so solving
# the subsample beyond SUBSAMPLE_TOL buys nothing on the full rows.
# The stride is 11, not 8 (aperiodic_step): every 8th row of monthly rows
# holds 3 of the 12 months. A subsample keeps at least 25 rows per
# coefficient, as with strides of 8 (200 / 8): with 18 (200 / 11) the
# heteroscedastic fit at 1e5 x 20 started its 9091-row level from an
# 826-row one and took 20 iterations on all rows instead of 14 (now 12).
SUBSAMPLE_MIN_ROWS = 5_000
SUBSAMPLE_STEP = aperiodic_step(8)  # 11
SUBSAMPLE_MIN_ROWS_PER_COEF = 25 * SUBSAMPLE_STEP
SUBSAMPLE_TOL = 1e-3


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


@dataclass(frozen=True)
class SolverOptions:
    """How to solve: the method and its stopping rule, named not positional.

    ``solver`` is ``"newton"`` or ``"lbfgs"`` (see :func:`choose_solver`
    for ``"auto"``); ``max_iter`` bounds the iterations of the whole solve,
    subsample levels and fallbacks included; ``tol`` bounds the largest
    gradient entry at convergence; ``warn`` raises a ``ConvergenceWarning``
    when a solve stops short.
    """

    solver: str = "newton"
    max_iter: int = 200
    tol: float = 1e-10
    warn: bool = False
    # Whether the objectives are convex: Newton's method then runs its own
    # damped loop (_damped_newton) rather than scipy's trust region.
    convex: bool = False

    def with_max_iter(self, max_iter):
        """The same options with another iteration budget."""
        return SolverOptions(self.solver, max_iter, self.tol, self.warn, self.convex)


def subsample_for_start(objective):
    """The strided subsample whose solution starts a large problem, or None.

    The one rule of skrobust for solving on fewer rows first: problems with
    at least ``SUBSAMPLE_MIN_ROWS`` rows and ``SUBSAMPLE_MIN_ROWS_PER_COEF``
    rows per coefficient are first solved on every ``SUBSAMPLE_STEP``-th
    row (None when those rows carry no weight).
    """
    n = objective.n_samples
    if n < SUBSAMPLE_MIN_ROWS or n < SUBSAMPLE_MIN_ROWS_PER_COEF * objective.n_coef:
        return None
    sub = objective.subsample(SUBSAMPLE_STEP)
    return sub if sub.sum_weight > 0 else None


def solve(
    objective,
    coef0,
    options,
    *,
    multilevel=True,
    hessian=None,
    hessian_origin="stale",
    remember_hessian_point=False,
):
    """Minimise ``objective`` from ``coef0`` with :class:`SolverOptions`.

    See :func:`minimize` for the keyword arguments; ``n_iter`` of the result
    counts every iteration, subsample levels included, and is at most
    ``options.max_iter``. With ``remember_hessian_point`` the result's
    ``hessian_coef`` is the point at which its ``hessian`` was formed, when
    that is a Hessian of ``objective`` itself (not of a subsample, a
    subspace or an earlier problem); else None.
    """
    recorder = _HessianRecorder(objective) if remember_hessian_point else None
    result = minimize(
        objective if recorder is None else recorder,
        coef0,
        options.solver,
        options.max_iter,
        options.tol,
        options.warn,
        multilevel=multilevel,
        hessian=hessian,
        hessian_origin=hessian_origin,
        convex=options.convex,
    )
    if recorder is not None:
        result.hessian_coef = recorder.point_of(result.hessian)
    return result


class _HessianRecorder:
    """``objective``, remembering the point of the latest Hessian it formed.

    Every other attribute is the objective's. A standard-error computation
    reuses a solve's last Hessian (a Gram matrix of the design, the costly
    part of a covariance) only if it knows where it was formed.
    """

    def __init__(self, objective):
        self._objective = objective
        self._latest = (None, None)

    def __getattr__(self, name):
        return getattr(self._objective, name)

    def hessian(self, coef):
        hessian = self._objective.hessian(coef)
        self._latest = (hessian, np.array(coef, dtype=float))
        return hessian

    def loss_gradient_hessian(self, coef):
        value, grad, hessian = self._objective.loss_gradient_hessian(coef)
        self._latest = (hessian, np.array(coef, dtype=float))
        return value, grad, hessian

    def point_of(self, hessian):
        """Where ``hessian`` was formed if it is the latest one, else None."""
        latest, point = self._latest
        return point if hessian is not None and hessian is latest else None


def choose_solver(solver, n_coef):
    """Resolve ``solver="auto"``: Newton unless there are many coefficients."""
    if solver != "auto":
        return solver
    return "lbfgs" if n_coef > NEWTON_MAX_COEF else "newton"


def minimize(
    objective,
    coef0,
    solver,
    max_iter,
    tol,
    warn=True,
    multilevel=True,
    hessian=None,
    hessian_origin="stale",
    convex=False,
    levenberg=False,
):
    """Minimise ``objective`` from ``coef0``.

    Parameters
    ----------
    objective : LinearObjective
    coef0 : ndarray of shape (n_coef,)
    solver : {"lbfgs", "newton"}
    max_iter : int
        Maximum number of iterations (of the final solver, when Newton falls
        back on L-BFGS).
    tol : float
        Converged when the largest absolute gradient entry is at most
        ``tol``. The objective is a weighted mean over standardised
        columns, so ``tol`` is relative to the scale of the data.
    warn : bool, default=True
        Raise a ``ConvergenceWarning`` when not converged.
    multilevel : bool, default=True
        Start large problems from the solution on a subsample of rows.
    hessian : ndarray of shape (n_coef, n_coef), default=None
        The Hessian of a nearby problem near ``coef0`` (the previous fit of a
        sequence, as its result's ``hessian``): Newton's method starts from
        it. Ignored without ``solver="newton"``, or when a subsample's
        solution gives the start.
    hessian_origin : {"stale", "subsample"}, default="stale"
        Whether ``hessian`` is of the same rows or of a subsample of them.
    convex : bool, default=False
        Whether ``objective`` is convex: Newton's method is then a damped
        Newton loop with exact line searches (:func:`_damped_newton`), whose
        per-iteration overhead is a fraction of scipy's trust region (the
        bulk of a small fit's time). A trust region also handles indefinite
        Hessians, so non-convex objectives keep it.
    levenberg : bool, default=False
        With ``convex``: Newton's method is Levenberg-Marquardt steps
        (:func:`skrobust._levenberg.minimize`) from the start, not the
        damped loop. For objectives whose quadratic model is poor beyond a
        short step (a smoothed quantile loss, nearly piecewise linear),
        where the damped loop's line searches cost passes of their own: on
        ``1e6 x 20`` smoothed quantile fits they made twice the passes.

    Returns
    -------
    SolverResult
        ``n_iter`` counts the iterations on all the rows.
    """
    # Flat directions matter to Newton's steps (a singular Hessian); L-BFGS
    # from a start in the design's row space stays in it, so needs no search
    # for them, which on a wide design costs a p x p eigendecomposition.
    # (Sparse Newton directions come from conjugate gradients started at
    # zero, which stay in the design's row space too.)
    null = objective.null_directions() if solver == "newton" else np.zeros((0, 0))
    if null.shape[1]:
        # Flat directions (constant, zero or collinear columns): solve in
        # their orthogonal complement, which holds the minimum-norm
        # minimiser; Newton's steps would otherwise wander along them.
        basis = scipy.linalg.null_space(null.T)
        restricted = _Restricted(objective, basis)
        result = minimize(
            restricted,
            basis.T @ coef0,
            solver,
            max_iter,
            tol,
            warn,
            multilevel=False,
            hessian=None if hessian is None else basis.T @ hessian @ basis,
            hessian_origin=hessian_origin,
            convex=convex,
            levenberg=levenberg,
        )
        result.coef = basis @ result.coef
        if result.hessian is not None:
            result.hessian = basis @ result.hessian @ basis.T
        # (Only its projection on the subspace is known.)
        result.gradient = None
        return result
    return _minimize(
        objective,
        coef0,
        solver,
        max_iter,
        tol,
        warn,
        multilevel,
        hessian,
        hessian_origin,
        convex,
        levenberg,
    )


class _Restricted:
    """``objective(basis @ u)``: the objective on a subspace of coefficients."""

    def __init__(self, objective, basis):
        self.objective, self.basis = objective, basis
        self.n_samples = objective.n_samples
        self.n_coef = basis.shape[1]
        self.sum_weight = objective.sum_weight

    def null_directions(self):
        return np.zeros((self.n_coef, 0))

    def subsample(self, step):
        return _Restricted(self.objective.subsample(step), self.basis)

    def loss_gradient(self, u):
        value, grad = self.objective.loss_gradient(self.basis @ u)
        return value, self.basis.T @ grad

    def hessian(self, u):
        return self.basis.T @ self.objective.hessian(self.basis @ u) @ self.basis

    def loss_gradient_hessian(self, u):
        value, grad, hess = self.objective.loss_gradient_hessian(self.basis @ u)
        return value, self.basis.T @ grad, self.basis.T @ hess @ self.basis

    def loss_gradient_curvature(self, u):
        value, grad, product = self.objective.loss_gradient_curvature(self.basis @ u)
        return (
            value,
            self.basis.T @ grad,
            lambda v: self.basis.T @ product(self.basis @ v),
        )


def _minimize(
    objective,
    coef0,
    solver,
    max_iter,
    tol,
    warn,
    multilevel,
    hessian=None,
    origin="stale",
    convex=False,
    levenberg=False,
):
    sub_iter = 0
    sub = subsample_for_start(objective) if multilevel else None
    if sub is not None:
        sub_result = _minimize(
            sub,
            coef0,
            solver,
            max_iter,
            max(tol, SUBSAMPLE_TOL),
            False,
            True,
            convex=convex,
            levenberg=levenberg,
        )
        coef0, hessian = sub_result.coef, sub_result.hessian
        origin = "subsample"
        sub_iter = sub_result.n_iter
    # Every iteration counts against max_iter, the subsample's included.
    budget = max_iter - sub_iter
    if solver == "newton":
        if convex:
            result = _convex_newton(
                objective, coef0, budget, tol, hessian, origin, levenberg
            )
        else:
            result = _newton(objective, coef0, budget, tol, hessian, origin)
        if not result.converged and result.n_iter < budget:
            result = _newton_line_search(objective, result, budget, tol)
        if not result.converged and result.n_iter < budget:
            more = _lbfgs(objective, result.coef, budget - result.n_iter, tol)
            more.n_iter += result.n_iter
            # Keep Newton's point if L-BFGS ended further from stationary.
            if more.converged or _gradient_norm(objective, more.coef) < (
                _gradient_norm(objective, result.coef)
            ):
                result = more
            else:
                result.n_iter = more.n_iter
    elif solver == "sparse-newton":
        from . import _sparse_newton  # (which imports this module)

        result = _sparse_newton.minimize(objective, coef0, budget, tol, convex)
    elif solver == "lbfgs":
        result = _lbfgs_finished(objective, coef0, budget, tol, convex, levenberg)
    else:  # pragma: no cover - the estimators validate solver
        raise ValueError(f"unknown solver {solver!r}")
    result.n_iter += sub_iter
    _progress.say(
        1,
        lambda: (
            f"{solver} on {objective.n_samples} rows: {result.n_iter} iterations, "
            f"max |gradient| {_gradient_norm(objective, result.coef):.2e}"
            + ("" if result.converged else " (not converged)")
        ),
    )
    if warn and not result.converged:
        warn_not_converged(solver, result.n_iter, tol, result.message)
    return result


def _convex_newton(objective, coef0, budget, tol, hessian, origin, levenberg):
    """Newton's method on a convex objective: the chain of :func:`_minimize`.

    Inexact directions by conjugate gradients where the Hessian is dear
    (:func:`_preconditioned_newton`), else the damped loop
    (:func:`_damped_newton`) or, with ``levenberg``, Levenberg-Marquardt
    steps (:func:`skrobust._levenberg.minimize`). Where the damped steps
    stall, Levenberg-Marquardt steps (a trust region at one factorisation a
    step) go on, from their point unless its curvature is implausible (a
    Hessian rounded to a negative diagonal at an extreme scale), where a
    trust region would fail: then from the start. scipy's exact trust
    region (:func:`_newton`) takes what they leave.
    """
    result = None
    if uses_products(objective):
        result = _preconditioned_newton(objective, coef0, budget, tol, hessian)
    if result is None and levenberg:
        result = _levenberg.minimize(objective, coef0, budget, tol)
    elif result is None:
        result = _damped_newton(objective, coef0, budget, tol, hessian, origin)
    if not result.converged and result.n_iter < budget and not levenberg:
        diagonal = (
            np.diag(result.hessian) if result.hessian is not None else np.empty(0)
        )
        plausible = np.all(np.isfinite(diagonal)) and np.all(diagonal >= 0)
        restart = result.coef if plausible else coef0
        more = _levenberg.minimize(objective, restart, budget - result.n_iter, tol)
        more.n_iter += result.n_iter
        result = more
    if not result.converged and result.n_iter < budget:
        more = _newton(objective, result.coef, budget - result.n_iter, tol)
        more.n_iter += result.n_iter
        result = more
    return result


def _lbfgs_finished(
    objective, coef0, budget, tol, convex, levenberg=False, sketch=True
):
    """L-BFGS, finished by Newton's method or truncated Newton steps.

    Where a Hessian is not affordable and ``sketch``, objectives that
    :func:`~skrobust._sketched_preconditioner.uses_sketch` are solved by
    :func:`skrobust._sketched_newton.minimize` instead, and by L-BFGS only
    from where it stops short.

    Where a Hessian is affordable, L-BFGS gets a share of the budget and
    Newton's method finishes what it leaves (ill-conditioned problems: a
    log-cosh joint fit at 1500 x 500 had a gradient of 1e-5 after 200
    L-BFGS iterations, Newton converged in 13). A rounding-level stop of
    L-BFGS (its test compares values) counts as converged from a gradient
    of 1e-6; Newton directions with exact steps can still bring it to tol.
    """
    fallback = objective.n_samples * objective.n_coef**2 <= _NEWTON_FALLBACK_WORK
    if sketch and not fallback:
        # Where no Hessian is affordable: truncated Newton preconditioned by
        # a few rows, for the objectives it suits (else None), and L-BFGS
        # on from its point if it stops short.
        from . import _sketched_newton  # (which imports this module)

        sketched = _sketched_newton.minimize(objective, coef0, budget, tol)
        if sketched is not None:
            if sketched.converged or sketched.n_iter >= budget:
                return sketched
            more = _lbfgs_finished(
                objective,
                sketched.coef,
                budget - sketched.n_iter,
                tol,
                convex,
                levenberg,
                sketch=False,
            )
            more.n_iter += sketched.n_iter
            return more
    share = min(budget, _LBFGS_BEFORE_NEWTON) if fallback else budget
    # (The gradient tests below ask for points L-BFGS has evaluated.)
    objective = _LatestEvaluations(objective)
    result = _lbfgs(objective, coef0, share, tol, finished=True)
    if fallback and not result.converged and result.n_iter < budget:
        more = _minimize(
            objective,
            result.coef,
            "newton",
            budget - result.n_iter,
            tol,
            False,
            False,
            convex=convex,
            levenberg=levenberg,
        )
        more.n_iter += result.n_iter
        result = more
    if result.n_iter < budget and _gradient_norm(objective, result.coef) > tol:
        result = _newton_cg_line_search(objective, result, budget, tol)
    return result


def warn_not_converged(solver, n_iter, tol, message):
    """The one ConvergenceWarning of skrobust, raised at the user's ``fit`` call."""
    warnings.warn(
        f"The {solver} solver stopped after {n_iter} iterations without "
        f"reaching tol={tol:g} ({message}). Increase max_iter or tol; the "
        "coefficients are the best point found.",
        ConvergenceWarning,
        stacklevel=4,
    )


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
        value, grad = objective.loss_gradient(coef0)
        if not np.isfinite(value):
            return SolverResult(coef0, 0, False, "non-finite objective")
        coef, value, grad, hessian, n_iter = _newton_steps(
            objective, coef0, value, grad, hessian, tol, max_iter, n_iter, origin
        )
        if _max_abs(grad) <= tol:
            return SolverResult(
                coef, n_iter, True, "Newton steps converged", hessian, grad
            )
        coef0 = coef
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


def _damped_newton(
    objective, coef0, max_iter, tol, hessian=None, origin="subsample", at=None
):
    """Newton's method on a convex objective: full steps, else an exact line search.

    Each iteration forms the gradient and Hessian of the trial point in one
    pass and steps along the Newton direction (:func:`_newton_direction`).
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
        value, grad = objective.loss_gradient(coef0)
        if not np.isfinite(value):
            return SolverResult(coef0, 0, False, "non-finite objective")
        coef, value, grad, hessian, n_iter = _newton_steps(
            objective, coef0, value, grad, hessian, tol, max_iter, n_iter, origin
        )
        if _max_abs(grad) <= tol:
            return SolverResult(
                coef, n_iter, True, "Newton steps converged", hessian, grad
            )
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
    objective, at, direction, slope, n_iter, curvature=False, evaluate=None
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
    (a sparse Hessian's). Returns ``(state, message)``: ``state``
    is ``(point, value, gradient, hessian or product, gnorm)``, or None
    when no step improves; ``message`` is None to go on, else why the loop
    stops. ``n_iter`` numbers the step in the progress report
    (``verbose=2``).
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
    rounding = 1e3 * np.finfo(float).eps * max(abs(value), 1.0)
    accept = np.isfinite(trial_value) and (
        trial_value <= min(value + 1e-4 * slope, value - rounding)
        or (trial_gnorm < gnorm and trial_value <= value + rounding)
    )
    message = None
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
            # trust region (see _minimize) handles that better.
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

    ``product(v)`` is ``H v``; ``factor`` (a :class:`CholeskyFactor`) the
    factorisation of a nearby Hessian, so that the preconditioned system is
    the identity plus what changed: for Huber's loss, the rows that crossed
    the threshold (a low-rank change that CG resolves in as many
    iterations), for smooth losses a perturbation that shrinks as Newton's
    method converges. Stops when the largest entry of the residual is at
    most ``target``, or after ``max_iter`` products. Returns ``(x,
    iterations, solved)``; every iterate from zero is a descent direction
    for ``-rhs`` a gradient.
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
    rows times coefficients, for objectives
    with ``loss_gradient_curvature`` (a :class:`_Restricted` one has the
    products of the objective it wraps; the Dask objective has none).
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
    """:func:`_damped_newton` with inexact directions on few Hessians; None if not.

    For many coefficients, where forming a Hessian (``n p^2``) costs dozens
    of Hessian-vector products (``2 n p``). The first direction solves the
    Newton system exactly on the Hessian at ``coef0`` (or on ``hessian``,
    of a nearby problem or a subsample, as the preconditioner of conjugate
    gradients); later ones by conjugate gradients on products at the
    current point, preconditioned by the latest Hessian formed
    (:func:`_preconditioned_cg`). When conjugate gradients took more than
    ``_PCG_REFRESH_FRACTION`` of ``n_coef`` iterations, the Hessian is
    formed again at the next point, unless that point has converged.
    Steps, line search and stopping rule are :func:`_damped_newton`'s: the
    gradient decides convergence, so the solution is the same; only the
    work per iteration changes. Returns None when the first Hessian is not
    clearly positive definite (the caller then runs :func:`_damped_newton`,
    whose directions handle that).
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


def polish(objective, coef, tol, max_iter, n_iter):
    """Newton steps from ``coef``; whether it is then the optimum to ``tol``.

    For a point a solver did not call converged: the point counts as
    converged when the largest gradient entry is at most ``tol``, or when
    the Newton step from it (on its own Hessian), its distance to the
    optimum of the local quadratic model, is: the gradient test can be out
    of reach of every representable point where the curvature is extreme
    (a row of the heteroscedastic model at its variance floor). Only up to
    ``NEWTON_MAX_COEF`` coefficients, where a Hessian is affordable; within
    ``max_iter`` iterations in all. Returns ``(coef, n_iter, converged)``.
    """
    if objective.n_coef > NEWTON_MAX_COEF:
        return coef, n_iter, False
    value, grad = objective.loss_gradient(coef)
    if not np.isfinite(value):
        return coef, n_iter, False
    coef, _, grad, _, n_iter = _newton_steps(
        objective, coef, value, grad, None, tol, max_iter, n_iter
    )
    if np.max(np.abs(grad), initial=0.0) <= tol:
        return coef, n_iter, True
    step = np.linalg.lstsq(objective.hessian(coef), -grad, rcond=None)[0]
    return coef, n_iter, bool(np.max(np.abs(step), initial=0.0) <= tol)


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


# L-BFGS iterations before Newton's method takes over an unconverged solve,
# where a Hessian costs at most _NEWTON_FALLBACK_WORK (rows times squared
# coefficients: a few tenths of a second).
_LBFGS_BEFORE_NEWTON = 100
_NEWTON_FALLBACK_WORK = 4e9

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
    this objective's by sampling noise. ``origin`` says where ``hess`` comes
    from: ``"current"`` (this objective at ``coef``), ``"stale"`` (this
    objective, or a nearby one on the same rows, at an earlier point) or
    ``"subsample"``. Returns
    ``(coef, value, grad, hess, n_iter)``, ``hess`` the latest Hessian
    formed (or given), which a finer level of a multilevel solve starts
    from even when it is due for a refresh here.
    """
    latest = hess
    secant = getattr(objective, "secant_updates", False)
    # Whether the next trial point should come with its Hessian, and whether
    # hess is this objective's at coef (not a subsample's, not an older one).
    with_hessian, current = origin == "subsample", origin == "current"
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
        rounding = 1e3 * np.finfo(float).eps * max(abs(value), 1.0)
        if trial_gnorm < gnorm and trial_value <= value + rounding:
            slow = trial_gnorm > _REFRESH_RATIO * gnorm
            with_hessian = slow and current
            if trial_hess is not None:
                hess = latest = trial_hess
                current = True
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
