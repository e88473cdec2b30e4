"""Exact L1 penalties: proximal Newton, or L-BFGS-B on split variables.

The smoothed quantile fits with ``alpha > 0`` minimise
``objective(c) + sum_j l1_j |c_j|`` without smoothing ``|c|``, so that
coefficients that are zero at the optimum are exactly zero.
"""

import numpy as np
import scipy.linalg
import scipy.optimize

from . import _solver_result, _solvers


def minimize_l1(
    objective, coef0, l1, solver, max_iter, tol, warn=True, multilevel=True
):
    r"""Minimise ``objective(c) + sum_j l1_j |c_j|`` exactly (no smoothing of ``|c|``).

    ``"newton"``
        Proximal Newton (Lee, Sun and Saunders, SIAM J. Optim. 24, 2014):
        each iteration minimises the L1-penalised quadratic model
        ``g^T d + d^T H d / 2 + sum_j l1_j |c_j + d_j|`` on the analytic
        Hessian by cyclic coordinate descent (exact soft-thresholding, no
        pass over ``X``), then backtracks on the true objective. Near the
        solution it converges quadratically and coefficients that should be
        zero are exactly zero.
    ``"lbfgs"``
        L-BFGS-B on split variables: each penalised coordinate is
        ``c_j = u_j - v_j`` with ``u_j, v_j >= 0``, so the penalty
        ``l1_j (u_j + v_j)`` is linear and the problem is smooth with bounds.

    Parameters
    ----------
    objective : LinearObjective
    coef0 : ndarray of shape (n_coef,)
    l1 : ndarray of shape (n_coef,)
        Non-negative penalty weight per coordinate (0 for intercepts).
    solver : {"newton", "lbfgs"}
        See above; :func:`choose_solver` picks one for ``"auto"``.
    max_iter : int
        Maximum number of (proximal Newton or L-BFGS-B) iterations.
    tol : float
        Converged when the minimum-norm subgradient of the penalised
        objective has no entry larger than ``tol``.
    warn : bool, default=True
        Raise a ``ConvergenceWarning`` (naming the L1 solver) when not
        converged.
    multilevel : bool, default=True
        Start large problems from the penalised solution on a strided
        subsample of the rows, as :func:`skrobust._solvers.minimize` does.

    Returns
    -------
    _solver_result.SolverResult
        ``n_iter`` counts the iterations on all the rows.
    """
    l1 = np.asarray(l1, dtype=float)
    if (
        multilevel
        and objective.n_samples >= _solvers.SUBSAMPLE_MIN_ROWS
        and objective.n_samples
        >= _solvers.SUBSAMPLE_MIN_ROWS_PER_COEF * objective.n_coef
    ):
        sub = objective.subsample(_solvers.SUBSAMPLE_STEP)
        if sub.sum_weight > 0:
            coef0 = minimize_l1(
                sub,
                coef0,
                l1,
                solver,
                max_iter,
                max(tol, _solvers.SUBSAMPLE_TOL),
                warn=False,
            ).coef
    if solver == "newton":
        result = _proximal_newton(objective, coef0, l1, max_iter, tol)
        if not result.converged and result.n_iter < max_iter:
            # Within what is left of max_iter: with all of it, the fallback
            # ran past max_iter (n_iter_ 515 of 500) and, ended by its
            # relative-reduction test, was taken as converged.
            more = _lbfgs_split(
                objective, result.coef, l1, max_iter - result.n_iter, tol
            )
            more.n_iter += result.n_iter
            result = more
    elif solver == "lbfgs":
        result = _lbfgs_split(objective, coef0, l1, max_iter, tol)
    else:  # pragma: no cover - the estimators validate solver
        raise ValueError(f"unknown solver {solver!r}")
    if warn and not result.converged:
        _solvers.warn_not_converged(
            f"L1-penalised {solver}", result.n_iter, tol, result.message
        )
    return result


def _l1_subgradient(grad, coef, l1):
    """Minimum-norm subgradient of ``F + sum_j l1_j |c_j|`` given ``grad F``."""
    return np.where(
        coef != 0,
        grad + l1 * np.sign(coef),
        np.sign(grad) * np.maximum(np.abs(grad) - l1, 0.0),
    )


def _l1_optimality(objective, coef, l1):
    """Largest entry of the minimum-norm subgradient of ``F(c) + l1 |c|``."""
    grad = objective.loss_gradient(coef)[1]
    return float(np.max(np.abs(_l1_subgradient(grad, coef, l1)), initial=0.0))


def _lasso_quadratic(H, b, l1, x, max_sweeps=1000):
    """Minimise ``x^T H x / 2 + b^T x + sum_j l1_j |x_j|`` by coordinate descent.

    Starts from ``x`` (modified in place and returned). A coordinate whose
    curvature is zero is left at zero: the model is then flat or unbounded
    along it and the line search of the caller decides. After each sweep
    the support and signs it found are tried exactly
    (:func:`_lasso_on_support`): coordinate descent alone converges
    linearly, at a rate that ill-conditioned ``H`` makes slow (a penalised
    quantile fit on 300 raw rows took a second per proximal Newton step).
    """
    if not np.any(l1):
        # No penalty: the model's minimiser solves H x = -b (least squares
        # when H is singular).
        return np.linalg.lstsq(H, -b, rcond=None)[0]
    diag = np.diag(H).copy()
    active = diag > 0
    x[~active] = 0.0
    # Hx kept up to date: one axpy per coordinate change.
    Hx = H @ x
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
    for _ in range(max_sweeps):
        largest = 0.0
        for j in np.flatnonzero(active):
            z = diag[j] * x[j] - (Hx[j] + b[j])
            new = np.sign(z) * max(abs(z) - l1[j], 0.0) / diag[j]
            step = new - x[j]
            if step != 0.0:
                Hx += step * H[:, j]
                x[j] = new
                largest = max(largest, abs(step) * diag[j])
        if largest <= 1e-15 * scale:
            break
        exact = _lasso_on_support(H, b, l1, x, active, scale)
        if exact is not None:
            x[:] = exact
            break
    return x


def _lasso_on_support(H, b, l1, x, active, scale):
    """The minimiser with the support and signs of ``x``, if it is one.

    On the support ``S`` with signs ``s`` the model is the quadratic
    ``x_S^T H_SS x_S / 2 + (b_S + l1_S s)^T x_S``; its minimiser is the
    answer when it keeps the signs and every other coordinate's
    subgradient condition ``|(H x + b)_j| <= l1_j`` holds (up to rounding).
    Returns it, or ``None``.
    """
    support = np.flatnonzero((x != 0) & active)
    signs = np.sign(x[support])
    trial = np.zeros_like(x)
    if support.size:
        block = H[np.ix_(support, support)]
        try:
            factor = scipy.linalg.cho_factor(block)
        except np.linalg.LinAlgError:
            return None
        trial[support] = scipy.linalg.cho_solve(
            factor, -(b[support] + l1[support] * signs)
        )
        if np.any(np.sign(trial[support]) != signs):
            return None
    slack = np.abs(H @ trial + b) - l1
    slack[support] = 0.0
    slack[~active] = 0.0
    return trial if np.all(slack <= 1e-12 * scale) else None


def _proximal_newton(objective, coef0, l1, max_iter, tol):
    """Proximal Newton with Levenberg-Marquardt damping and backtracking.

    The model's Hessian is ``H + mu I`` with ``mu`` proportional to the
    optimality residual (Li, Andersen and Mao's regularised proximal Newton):
    it keeps the model bounded where ``H`` is singular (more coefficients
    than observations, flat directions of the loss) and vanishes at the
    solution, where the full Newton step gives quadratic convergence. The
    factor shrinks after a full step and grows after a backtrack.
    """
    coef = np.array(coef0, dtype=float)
    value, grad, H = objective.loss_gradient_hessian(coef)
    penalty = float(l1 @ np.abs(coef))
    damping = 1.0
    n_iter = 0
    message = "iteration limit reached"
    eye = np.eye(coef.size)
    while n_iter < max_iter:
        gnorm = float(np.max(np.abs(_l1_subgradient(grad, coef, l1)), initial=0.0))
        if gnorm <= tol:
            message = "optimality conditions satisfied"
            break
        n_iter += 1
        model_hessian = H + (damping * gnorm) * eye
        # The model in the new point x = coef + d: x^T M x / 2 + b^T x.
        x = _lasso_quadratic(
            model_hessian, grad - model_hessian @ coef, l1, coef.copy()
        )
        direction = x - coef
        # Predicted decrease (Lee, Sun and Saunders): negative unless the
        # model is already solved. The penalty's change is summed per
        # coordinate: near the solution it is far below the rounding of the
        # penalty itself, and ||x||_1 - ||c||_1 would be that rounding.
        decrease = float(grad @ direction) + float(l1 @ (np.abs(x) - np.abs(coef)))
        if not decrease < 0:
            message = "no descent direction (rounding level)"
            break
        step = 1.0
        total = value + penalty
        # A predicted decrease below the rounding of the objective cannot be
        # seen in its values: the full step is then judged by the optimality
        # residual instead (which Newton's step divides, near the solution).
        invisible = -decrease <= 64 * np.finfo(float).eps * max(abs(total), 1.0)
        for _ in range(60):
            trial = coef + step * direction
            new_value, new_grad = objective.loss_gradient(trial)
            new_penalty = float(l1 @ np.abs(trial))
            if new_value + new_penalty <= total + 1e-4 * step * decrease:
                break
            if invisible and step == 1.0:
                new_sub = _l1_subgradient(new_grad, trial, l1)
                if np.max(np.abs(new_sub), initial=0.0) < 0.5 * gnorm:
                    break
            step *= 0.5
        else:
            message = "line search failed (rounding level)"
            break
        damping = max(damping * 0.25, 1e-6) if step == 1.0 else damping * 4.0
        coef, value, grad, penalty = trial, new_value, new_grad, new_penalty
        H = objective.hessian(coef)
    gnorm = float(np.max(np.abs(_l1_subgradient(grad, coef, l1)), initial=0.0))
    if not np.isfinite(value):
        return _solver_result.SolverResult(
            np.array(coef0, dtype=float), n_iter, False, "non-finite"
        )
    return _solver_result.SolverResult(coef, n_iter, gnorm <= tol, message)


def _lbfgs_split(objective, coef0, l1, max_iter, tol):
    n = coef0.size
    pen = np.flatnonzero(l1 > 0)
    l1_pen = l1[pen]

    def to_coef(z):
        coef = z[:n].copy()
        coef[pen] -= z[n:]
        return coef

    def fun(z):
        value, grad = objective.loss_gradient(to_coef(z))
        value += l1_pen @ (z[n:] + z[pen])
        grad_z = np.concatenate([grad, l1_pen - grad[pen]])
        grad_z[pen] += l1_pen
        return value, grad_z

    z0 = np.concatenate([coef0, np.maximum(-coef0[pen], 0.0)])
    z0[pen] = np.maximum(coef0[pen], 0.0)
    bounds = [(None, None)] * n + [(0.0, None)] * pen.size
    for j in pen:
        bounds[j] = (0.0, None)
    res = scipy.optimize.minimize(
        fun,
        z0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={
            "maxiter": max_iter,
            "maxfun": 2 * max_iter + 20,
            "gtol": tol,
            "ftol": 64 * np.finfo(float).eps,
            "maxls": 50,
            "maxcor": 30,
        },
    )
    coef = to_coef(res.x)
    converged = res.status == 0 or _l1_optimality(objective, coef, l1) <= tol
    return _solver_result.SolverResult(coef, int(res.nit), converged, str(res.message))
