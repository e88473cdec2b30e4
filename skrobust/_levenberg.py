r"""Levenberg-Marquardt steps: Newton's method in a trust region, for convex objectives.

The damped Newton loop (:func:`skrobust._newton._damped_newton`) stops
when its exact line search keeps only a small fraction of the Newton step:
the quadratic model is poor that far out, as on a smoothed quantile
objective at a small bandwidth, nearly piecewise linear, with few rows in
the curved part near zero. A trust region handles that (and the smoothed
quantile fits take these steps from the start: the damped loop's line
searches cost passes of their own). scipy's
``trust-exact`` solves each subproblem exactly, at the price of several
factorisations and an eigenvalue bound per iteration: on a problem of a
few dozen coefficients its bookkeeping costs ten times the objective's
evaluation. Levenberg-Marquardt steps

.. math::

    d(\mu) = -(H + \mu\, \bar h I)^{-1} g,

:math:`\bar h = \operatorname{tr} H / n` the mean curvature, solve the same
subproblem (Euclidean, in the objective's standardised coordinates) for
some radius, set by the damping :math:`\mu` instead of the radius, at one
Cholesky factorisation each. :math:`\mu` follows the ratio
of the objective's actual to its model's predicted decrease (Nielsen's
update, Madsen, Nielsen and Tingleff 2004, "Methods for non-linear least
squares problems", sec. 3.2): shrunk after good steps, doubled (and
doubled again) after rejected ones. As :math:`\mu \to 0` the steps are
Newton's, so convergence is quadratic near a regular optimum; with
:math:`\mu > 0` the damped Hessian is definite even where :math:`H` is
singular.
"""

import numpy as np

from . import _linalg, _newton, _progress, _solver_result

# The first damping, relative to the Hessian's mean curvature: a
# step of nearly Newton's length, which the stall showed to be too long,
# stands only if the ratio test accepts it.
_INITIAL_DAMPING = 1e-3
# Steps whose actual decrease is at least this fraction of the predicted
# one are taken (a decrease is all that convexity needs).
_ACCEPT_RATIO = 1e-4
# The first step is at most this long (Euclidean, in the objective's
# standardised coordinates, where 1 moves a prediction by about the spread
# of y): where the Hessian is nil (every row in a loss's linear zone) the
# damping alone sets the step, as a trust region's initial radius does.
_INITIAL_RADIUS = 1.0
_EPS = np.finfo(float).eps


def minimize(objective, coef0, max_iter, tol):
    """Minimise the convex ``objective`` from ``coef0`` by Levenberg-Marquardt steps.

    Each iteration evaluates one trial point with its Hessian (one pass).
    A step is taken when it lowers the objective by at least
    ``_ACCEPT_RATIO`` of the model's prediction or, at the rounding level of
    the objective where that ratio is noise, when it shrinks the largest
    gradient entry without raising the value beyond rounding (the rule of
    the damped Newton loop). From a largest gradient entry of
    ``_TRUST_REGION_GTOL`` on, the damped Newton loop finishes
    (:func:`skrobust._newton._damped_newton`), as Newton steps finish
    scipy's trust region.

    Parameters
    ----------
    objective : LinearObjective
        With ``loss_gradient_hessian``.
    coef0 : ndarray of shape (n_coef,)
    max_iter : int
        At most this many evaluations (iterations).
    tol : float
        Converged when the largest absolute gradient entry is at most this.

    Returns
    -------
    SolverResult
    """
    coef = np.asarray(coef0, dtype=np.float64)
    value, grad, hess = objective.loss_gradient_hessian(coef)
    if not np.isfinite(value):
        return _solver_result.SolverResult(coef, 0, False, "non-finite objective")
    gnorm = float(np.max(np.abs(grad), initial=0.0))
    # The damped Newton loop finishes (see below) from this gradient on.
    handover = max(tol, _newton._TRUST_REGION_GTOL)
    # The damping is isotropic: damping by the Hessian's diagonal would
    # leave a direction of little curvature here (a column whose rows lie
    # in the loss's linear zone) nearly undamped, its step as long as a
    # Newton step on that curvature.
    # Its scale, the mean curvature, is invariant under rotations of the
    # coordinates, as the steps then are: a solve in another basis of the
    # same subspace (that of a sparse and of a dense copy of a design with
    # flat directions) takes the same steps. (The largest diagonal entry
    # made them 1% apart, the predictions 2e-6.)
    mean_curvature = float(np.trace(hess)) / max(len(grad), 1)
    damping = max(
        _INITIAL_DAMPING * mean_curvature,
        float(np.linalg.norm(grad)) / _INITIAL_RADIUS,
    )
    growth = 2.0
    n_iter, message = 0, "iteration limit reached"
    while gnorm > handover and n_iter < max_iter:
        damped = hess + np.diag(np.full(len(grad), damping))
        step = _linalg.cholesky_solve(damped, -grad)
        if step is None:  # (damping below the rounding of a nil Hessian)
            damping, growth = damping * growth, 2.0 * growth
            if not np.isfinite(damping):
                message = "no definite damped Hessian"
                break
            continue
        if np.max(np.abs(step)) <= _EPS * max(1.0, np.max(np.abs(coef))):
            message = "no improving step (rounding level)"
            break
        predicted = -float(grad @ step + 0.5 * step @ (hess @ step))
        n_iter += 1
        trial = coef + step
        trial_value, trial_grad, trial_hess = objective.loss_gradient_hessian(trial)
        trial_gnorm = float(np.max(np.abs(trial_grad), initial=0.0))
        rounding = 1e3 * _EPS * max(abs(value), 1.0)
        actual = value - trial_value
        ratio = actual / predicted if predicted > 0 else -np.inf
        decreased = np.isfinite(trial_value) and ratio >= _ACCEPT_RATIO and actual > 0
        # At the rounding level the ratio is noise: the gradient decides.
        level = trial_gnorm < gnorm and abs(actual) <= rounding
        if not (decreased or level):
            damping, growth = damping * growth, 2.0 * growth
            continue
        # Nielsen's update: a ratio near 1 (the model good) shrinks the
        # damping threefold, a ratio near 0 keeps it.
        ratio = min(ratio, 1.0) if decreased else 1.0
        damping *= max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
        growth = 2.0
        coef, value, grad, hess, gnorm = (
            trial,
            trial_value,
            trial_grad,
            trial_hess,
            trial_gnorm,
        )
        _progress.say(
            2,
            "  Levenberg-Marquardt step {}: objective {:.10g}, max |gradient| {:.2e}",
            n_iter,
            value,
            gnorm,
        )
    if np.isfinite(value) and n_iter < max_iter and gnorm <= handover:
        # The damped Newton loop finishes, as Newton steps finish scipy's
        # trust region: near the optimum its steps are Newton's, and its
        # regularised directions leave a direction the objective is flat
        # along (a one-hot level whose rows all lie in the linear zone,
        # balanced) alone, where a small damping would turn the rounding of
        # its gradient into a step (1e-5 apart in the predictions of a
        # sparse and a dense copy of one problem).
        more = _newton._damped_newton(
            objective, coef, max_iter - n_iter, tol, at=(value, grad, hess)
        )
        more.n_iter += n_iter
        return more
    if gnorm <= tol:
        message = "converged"
    return _solver_result.SolverResult(coef, n_iter, gnorm <= tol, message, hess, grad)
