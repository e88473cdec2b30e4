"""L-BFGS-B on the analytic gradient, judged by the gradient and restarted.

``scipy.optimize.minimize(method="L-BFGS-B")``: one pass over ``X`` per
evaluation and no Hessian, the choice for many features. Its options are
explicit (``_LBFGS_OPTIONS``: a rounding-level ``ftol``, a generous line
search). L-BFGS-B also stops when an iteration lowers the objective by
little, which can happen far from the optimum: a run is judged by its
gradient and restarted from its point while that pays
(:func:`_lbfgs_restarts`). The points it evaluated are remembered
(:class:`_LatestEvaluations`), so that judging them costs no pass over the
data. Where a Hessian is affordable, Newton's method finishes what L-BFGS
leaves (:func:`skrobust._solvers._lbfgs_finished`).
"""

import numpy as np
import scipy.optimize

from ._solver_result import SolverResult, _gradient_norm, _report_iteration

_LBFGS_OPTIONS = {
    # Stop on relative reduction only at rounding level (64 eps, as
    # scikit-learn's GLMs); the default ftol=2.2e-9 is how scikit-learn's
    # HuberRegressor ends up short of its optimum.
    "ftol": 64 * np.finfo(float).eps,
    # Huber's piecewise quadratic objective has kinks in its curvature; a
    # generous line search keeps L-BFGS from giving up there (scikit-learn
    # uses the same value for its GLMs).
    "maxls": 50,
    "maxcor": 30,
}
# L-BFGS restarts (see _lbfgs_restarts), and the gradient below which a
# rounding-level stop counts as converged: the objective cannot resolve the
# decrease of a smaller step (about g^2, below 1e-12 of its value).
_LBFGS_RESTARTS = 3
_LBFGS_ROUNDING_GTOL = 1e-6


class _LatestEvaluations:
    """``objective``, whose ``loss_gradient`` remembers its latest few points.

    Every other attribute is the objective's. L-BFGS-B returns a point it
    has evaluated, and a restart starts from it: judging its gradient, and
    the restart's first evaluation, are then look-ups, not passes over the
    data (on a 2e4 x 1000 design a quarter of the passes of a MAD scale's
    fixed-scale fits). The same point gives the same value and gradient
    (copies), so nothing but the time changes.
    """

    _SIZE = 4

    def __init__(self, objective):
        self._objective = objective
        self._latest = []  # (coef, value, grad), newest last

    def __getattr__(self, name):
        return getattr(self._objective, name)

    def loss_gradient(self, coef):
        for point, value, grad in reversed(self._latest):
            if np.array_equal(point, coef):
                return value, grad.copy()
        value, grad = self._objective.loss_gradient(coef)
        self._remember(coef, value, grad)
        return value, grad

    def loss_gradient_sparse_hessian(self, coef):
        """The objective's, whose value and gradient are remembered too.

        (They are ``loss_gradient``'s to the bit: L-BFGS from a point where
        Newton's iterations stopped starts without a pass.)
        """
        value, grad, hessian = self._objective.loss_gradient_sparse_hessian(coef)
        self._remember(coef, value, grad)
        return value, grad, hessian

    def _remember(self, coef, value, grad):
        self._latest = self._latest[1 - self._SIZE :] + [
            (np.array(coef, dtype=float), value, grad.copy())
        ]


def _lbfgs(objective, coef0, max_iter, tol, finished=False):
    """L-BFGS-B from ``coef0``, with restarts (see :func:`_lbfgs_restarts`).

    ``finished``: truncated Newton steps follow
    (:func:`skrobust._solvers._lbfgs_finished`).
    """
    if max_iter <= 0:
        converged = _gradient_norm(objective, coef0) <= tol
        return SolverResult(coef0, 0, converged, "no iterations left")
    res = scipy.optimize.minimize(
        objective.loss_gradient,
        coef0,
        jac=True,
        method="L-BFGS-B",
        options={**_LBFGS_OPTIONS, "maxiter": max_iter, "gtol": tol},
        callback=_report_iteration,
    )
    return _lbfgs_restarts(objective, res, max_iter, tol, finished)


def _lbfgs_restarts(objective, res, max_iter, tol, finished=False):
    """Judge an L-BFGS-B run by its gradient, restarting it while that pays.

    L-BFGS-B also stops (status 0) when an iteration lowers the objective by
    less than ``ftol`` relative, which happens at rounding level but also
    after a line search that backtracked from an overflowing trial point, far
    from the optimum. A fresh start (a new curvature memory) from the point
    reached continues while it at least halves the gradient; the run counts
    as converged only if the gradient ends within ``tol``, or within
    ``_LBFGS_ROUNDING_GTOL`` when the last stop was the rounding-level test.
    With ``finished`` (truncated Newton steps follow), a rounding-level stop
    within ``_LBFGS_ROUNDING_GTOL`` is not restarted: a fresh memory's first
    steps are badly scaled (each restart took four to eight passes and
    gained a factor 2 to 5 on a 2e4 x 1000 design), where one truncated
    Newton direction gains three orders.
    """
    coef, n_iter = res.x, int(res.nit)
    gnorm = _gradient_norm(objective, coef)
    for _ in range(_LBFGS_RESTARTS):
        if gnorm <= tol or n_iter >= max_iter or res.status != 0:
            break
        if finished and gnorm <= _LBFGS_ROUNDING_GTOL:
            break
        more = scipy.optimize.minimize(
            objective.loss_gradient,
            coef,
            jac=True,
            method="L-BFGS-B",
            options={**_LBFGS_OPTIONS, "maxiter": max_iter - n_iter, "gtol": tol},
        )
        n_iter += int(more.nit)
        more_gnorm = _gradient_norm(objective, more.x)
        if not more_gnorm < gnorm:
            break
        improved = more_gnorm <= 0.5 * gnorm
        coef, gnorm, res = more.x, more_gnorm, more
        if not improved:
            break
    converged = gnorm <= tol or (res.status == 0 and gnorm <= _LBFGS_ROUNDING_GTOL)
    return SolverResult(coef, n_iter, converged, str(res.message))
