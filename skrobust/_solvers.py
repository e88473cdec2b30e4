"""scipy.optimize wrappers: the only place that runs an optimiser.

A solver sees an objective with ``loss_gradient(coef)`` and
``loss_gradient_hessian(coef)`` (see :class:`skrobust._objective.LinearObjective`),
never a loss or ``X``. Each returns a :class:`SolverResult`; whether it
converged is decided here from the gradient, and a solver that stopped early
raises a :class:`~sklearn.exceptions.ConvergenceWarning` and still returns the
best finite point it reached.

``"lbfgs"``
    ``scipy.optimize.minimize(method="L-BFGS-B")`` on the analytic gradient.
    One pass over ``X`` per evaluation and no Hessian: the choice for many
    features.
``"newton"``
    ``scipy.optimize.minimize(method="trust-exact")``, a trust-region Newton
    method on the analytic Hessian. The Hessian is formed in the same pass as
    the gradient and is only ``n_coef x n_coef``, so for a moderate number of
    features each iteration costs about one ``X.T @ X``, and the piecewise
    quadratic Huber objective is solved exactly in a handful of iterations.
    If it stops early, L-BFGS continues from its last point.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

# Above this many coefficients a dense Hessian costs more than it saves.
NEWTON_MAX_COEF = 300


@dataclass
class SolverResult:
    coef: np.ndarray
    n_iter: int
    converged: bool
    message: str


def choose_solver(solver, n_coef):
    """Resolve ``solver="auto"``: Newton unless there are many coefficients."""
    if solver != "auto":
        return solver
    return "lbfgs" if n_coef > NEWTON_MAX_COEF else "newton"


def minimize(objective, coef0, solver, max_iter, tol, warn=True):
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

    Returns
    -------
    SolverResult
    """
    if solver == "newton":
        result = _newton(objective, coef0, max_iter, tol)
        if not result.converged:
            more = _lbfgs(objective, result.coef, max_iter, tol)
            more.n_iter += result.n_iter
            result = more
    elif solver == "lbfgs":
        result = _lbfgs(objective, coef0, max_iter, tol)
    else:  # pragma: no cover - the estimators validate solver
        raise ValueError(f"unknown solver {solver!r}")
    if warn and not result.converged:
        warn_not_converged(solver, result.n_iter, tol, result.message)
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


def _gradient_norm(objective, coef):
    return float(np.max(np.abs(objective.loss_gradient(coef)[1]), initial=0.0))


def _lbfgs(objective, coef0, max_iter, tol):
    res = scipy.optimize.minimize(
        objective.loss_gradient,
        coef0,
        jac=True,
        method="L-BFGS-B",
        options={
            "maxiter": max_iter,
            "maxfun": 2 * max_iter + 20,
            "gtol": tol,
            # Stop on relative reduction only at rounding level (64 eps, as
            # scikit-learn's GLMs); the default ftol=2.2e-9 is how
            # scikit-learn's HuberRegressor ends up short of its optimum.
            "ftol": 64 * np.finfo(float).eps,
            # Huber's piecewise quadratic objective has kinks in its
            # curvature; a generous line search keeps L-BFGS from giving up
            # there (scikit-learn uses the same value for its GLMs).
            "maxls": 50,
            "maxcor": 30,
        },
    )
    coef = res.x
    # status 0: the gradient test or the rounding-level reduction test
    # passed; no L-BFGS iterate can be better resolved in floating point.
    converged = res.status == 0 or _gradient_norm(objective, coef) <= tol
    return SolverResult(coef, int(res.nit), converged, str(res.message))


class _Memo:
    """One pass over X gives value, gradient and Hessian; trust-exact asks apart."""

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
        return self.H


def _newton(objective, coef0, max_iter, tol):
    memo = _Memo(objective)
    # trust-exact stops on the Euclidean norm of the gradient; asking for
    # tol there guarantees the max-norm test below.
    with warnings.catch_warnings():
        # trust-exact warns (OptimizeWarning/RuntimeWarning) when it ends on
        # a rounding-level model failure; convergence is judged below.
        warnings.simplefilter("ignore")
        res = scipy.optimize.minimize(
            memo.fun,
            coef0,
            jac=memo.jac,
            hess=memo.hess,
            method="trust-exact",
            options={"gtol": tol, "maxiter": max_iter},
        )
    coef = res.x
    memo._update(coef)
    gnorm = float(np.max(np.abs(memo.grad), initial=0.0))
    if not np.isfinite(memo.value):
        return SolverResult(coef0, int(res.nit), False, "non-finite objective")
    return SolverResult(coef, int(res.nit), gnorm <= tol, str(res.message))
