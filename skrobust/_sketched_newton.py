"""Truncated Newton on many coefficients, preconditioned by a few rows.

Where no Hessian is affordable (rows times squared coefficients beyond the
solvers' ``_NEWTON_FALLBACK_WORK``) and the Hessian is ill conditioned
through its rows' weights, as a wide heteroscedastic fit's is, L-BFGS needs
thousands of iterations. :func:`minimize` solves each Newton system by
conjugate gradients on Hessian-vector products, preconditioned by
:func:`skrobust._sketched_preconditioner.sketched_block_factor`.
"""

import numpy as np

from . import _newton, _preconditioned_newton, _solver_result
from ._objective import LinearObjective
from ._sketched_preconditioner import sketched_block_factor, uses_sketch
from ._sparse_product import SparseProducts

# Conjugate-gradient iterations per direction of _sketched_newton, and
# beyond which its preconditioner is built again at the next point.
_SKETCH_CG_MAX_ITER = 100
_SKETCH_REFRESH_ITER = 8


def _shortened(objective, coef, value, direction, slope):
    """``(direction, slope)`` quartered until the value is finite and no higher."""
    for _ in range(_newton._LINE_SEARCH_STEPS):
        trial_value = _value(objective, coef + direction)
        if np.isfinite(trial_value) and trial_value <= value:
            break
        direction, slope = 0.25 * direction, 0.25 * slope
    return direction, slope


def _value(objective, coef):
    """The objective's value at ``coef``, without its gradient where it can.

    A pass of a :class:`~skrobust._objective.LinearObjective` without the
    gradient's products with ``X'`` (the same value): 1.0 ms against 1.9 ms
    on the benchmarks' sparse 2e4 x 2000, where the trials of
    :func:`_shortened` were some 380 passes a fit.
    """
    if isinstance(objective, LinearObjective):
        return objective._pass(coef, gradient=False)[0]
    return objective.loss_gradient(coef)[0]


def minimize(objective, coef0, max_iter, tol):
    """Truncated Newton with a preconditioner from a few rows; None if not possible.

    For many coefficients where no Hessian is affordable, and objectives
    whose Hessian is ill conditioned through its rows' weights (the mean
    block of a Gaussian likelihood weighs rows by ``1 / sigma^2``, which
    can span ten orders of magnitude): L-BFGS took some 2000 iterations on
    a 2e4 x 1000 heteroscedastic fit. Each iteration evaluates value,
    gradient and the rows' curvature in one pass; the direction solves
    ``H d = -g`` by conjugate gradients on Hessian-vector products (two
    products with ``X`` each) to the forcing term of
    :func:`skrobust._preconditioned_newton._preconditioned_newton`, preconditioned by
    :func:`~skrobust._sketched_preconditioner.sketched_block_factor` built
    at that point (a pass and a Gram matrix of ``p`` rows per block).
    Conjugate gradients stop at a direction of negative curvature (a
    Gaussian likelihood in mean and log-variance is not convex far from
    its optimum) with the descent direction reached so far, or the
    preconditioned gradient if that is none. Steps, line search and
    stopping rule are :func:`skrobust._newton._damped_newton`'s. Returns None for
    objectives without the rows' curvature. On a sparse design (the
    benchmarks' 2e4 x 2000 with 0.5% of its entries) it converged in 85
    iterations where L-BFGS stopped at 200 with a gradient of 1.9 and a
    likelihood 0.27 per row lower. There the preconditioner of a sparse
    ``X`` is factored by Woodbury's identity on half as many rows
    (:mod:`skrobust._woodbury_factor`) and the products are
    :class:`~skrobust._sparse_product.SparseProducts`': 7.2 s of CPU and 90
    iterations (18 s and 101 with LAPACK's packed solves; two Cholesky
    factorisations of order 2001 per preconditioner took 43-58 s on a
    loaded machine). The likelihood is not convex there, and which local
    optimum the fit reaches depends on rounding: at the benchmark's seed
    -0.508347 per row (standardised units), where the 18 s path reached
    -0.508452 and starts 1e-12 away from it -0.508277 to -0.508320.
    """
    if not uses_sketch(objective):
        return None
    value, grad, product = objective.loss_gradient_curvature(coef0)
    if getattr(product, "curvature", None) is None:
        return None
    # A sparse X's products by SparseProducts (a third of the time).
    lean = SparseProducts(objective).product if objective.sparse else None
    if lean is not None:
        product = lean(product.curvature)
    coef = coef0
    gnorm = float(np.max(np.abs(grad), initial=0.0))
    n_iter, message, factor = 0, "iteration limit reached", None
    while gnorm > tol and n_iter < max_iter and np.isfinite(value):
        if factor is None:
            factor = sketched_block_factor(objective, product.curvature)
        target = max(min(_preconditioned_newton._PCG_FORCING, gnorm) * gnorm, 0.1 * tol)
        direction, used, solved = _preconditioned_newton._preconditioned_cg(
            product, -grad, factor, target, _SKETCH_CG_MAX_ITER
        )
        if not np.any(direction):  # negative curvature at once
            direction = factor.solve(-grad)
        slope = float(grad @ direction)
        if not slope < 0:
            message = "no descent direction"
            break
        if not solved:
            # Cut short by negative curvature (or the iteration limit): the
            # length of the direction means little, and a line search on
            # the slope from a step that overflows the variances took 50
            # passes. Quartered until the value is finite and no higher.
            direction, slope = _shortened(objective, coef, value, direction, slope)
        # The factor is kept while conjugate gradients need few iterations.
        if not solved or used > _SKETCH_REFRESH_ITER:
            factor = None
        n_iter += 1
        state, message = _newton._damped_step(
            objective, (coef, value, gnorm), direction, slope, n_iter, curvature=True
        )
        if state is None:
            break
        coef, value, grad, product, gnorm = state
        if lean is not None:
            product = lean(product.curvature)
        if message is not None:
            break
    if gnorm <= tol:
        message = "converged"
    return _solver_result.SolverResult(coef, n_iter, gnorm <= tol, message)
