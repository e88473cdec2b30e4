"""The solvers' dispatch: which method runs, from where, and whether it converged.

A solver sees an objective with ``loss_gradient(coef)`` and
``loss_gradient_hessian(coef)`` (see :class:`skrobust._objective.LinearObjective`),
never a loss or ``X``. Each returns a
:class:`~skrobust._solver_result.SolverResult`; whether it converged is
decided here from the gradient, and a solver that stopped early raises a
:class:`~sklearn.exceptions.ConvergenceWarning` and still returns the best
finite point it reached.

``"lbfgs"``
    ``scipy.optimize.minimize(method="L-BFGS-B")`` on the analytic gradient
    (:mod:`skrobust._lbfgs`). One pass over ``X`` per evaluation and no
    Hessian: the choice for many features; finished by Newton's method
    where a Hessian is affordable.
``"newton"``
    Newton's method on the analytic Hessian (:mod:`skrobust._newton`),
    formed in the same pass as the gradient: on convex objectives a damped
    Newton loop with exact line searches (for many coefficients with
    conjugate-gradient directions on few Hessians,
    :mod:`skrobust._preconditioned_newton`), going on with
    Levenberg-Marquardt steps where it stalls (:mod:`skrobust._levenberg`);
    on the others scipy's ``trust-exact``, finished by plain Newton steps.
    The piecewise quadratic Huber objective is solved exactly in a handful
    of iterations. If it stops early, L-BFGS continues from its last point.

Large problems start from the solution of the same objective on a strided
subsample of the rows (recursively): it costs a fraction of one pass and
leaves only a few iterations on all the rows. The Newton methods for
particular shapes have modules of their own: conjugate gradients on sparse
Hessians of one-hot designs (:mod:`skrobust._sparse_newton`), truncated
Newton preconditioned by a few rows for wide dense heteroscedastic fits
(:mod:`skrobust._sketched_newton`), and exact L1 penalties
(:mod:`skrobust._proximal`). The dense linear algebra of Newton's systems
is :mod:`skrobust._linalg`.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning

from . import _levenberg, _progress, _sketched_newton
from ._lbfgs import _LatestEvaluations, _lbfgs
from ._newton import (
    _damped_newton,
    _newton,
    _newton_cg_line_search,
    _newton_line_search,
    _newton_steps,
)
from ._preconditioned_newton import _preconditioned_newton, uses_products
from ._solver_result import _gradient_norm
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
        Newton loop with exact line searches
        (:func:`skrobust._newton._damped_newton`), whose
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
    (:func:`skrobust._preconditioned_newton._preconditioned_newton`), else
    the damped loop (:func:`skrobust._newton._damped_newton`) or, with
    ``levenberg``, Levenberg-Marquardt steps
    (:func:`skrobust._levenberg.minimize`). Where the damped steps stall,
    Levenberg-Marquardt steps (a trust region at one factorisation a step)
    go on, from their point unless its curvature is implausible (a Hessian
    rounded to a negative diagonal at an extreme scale), where a trust
    region would fail: then from the start. scipy's exact trust region
    (:func:`skrobust._newton._newton`) takes what they leave.
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


# L-BFGS iterations before Newton's method takes over an unconverged solve,
# where a Hessian costs at most _NEWTON_FALLBACK_WORK (rows times squared
# coefficients: a few tenths of a second).
_LBFGS_BEFORE_NEWTON = 100
_NEWTON_FALLBACK_WORK = 4e9
