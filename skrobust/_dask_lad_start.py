r"""The reweighted L1 start of ``scale="lad"`` on all rows of dask data.

:func:`skrobust._base.least_absolute_deviation_start` reweights a strided
subsample of the rows; when neither that subsample nor the least-squares
start's rows carry weight (weight on the odd rows only, with both strides
even), the in-memory start reweights all rows instead, each step a weighted
least-squares solve from normal equations formed in one pass. Here each
step is one distributed pass: every chunk weighs its rows by ``s_i /
max(|r_i|, 10^-6 m)`` (``m`` the weighted median of ``|r|``, an exact
distributed selection) and returns its Gram matrix and gradient at zero;
the client solves the normal equations as in memory
(:func:`skrobust._solvers.regular_solve`).
"""

import numpy as np

from ._base import _LAD_START_STEPS
from ._dask import RowValues, _chunk_weights, weighted_median
from ._objective import LinearObjective
from ._solvers import PRECONDITIONED_MIN_COEF, regular_solve


def _chunk_rows(setup, X_c, y_c, w_c):
    """The chunk's objective and its weights divided by the largest of all rows.

    The objective's own ``sample_weight`` is scaled to the chunk's largest
    weight, which differs between chunks: the reweighting needs the
    weights in one unit for all rows, as in memory. ``(None, None)`` for a
    chunk without weight.
    """
    objective, _ = setup.objective(X_c, y_c, w_c)
    if objective is None:
        return None, None
    return objective, _chunk_weights(y_c, w_c) / setup.top


def _distances_kernel(X_c, y_c, w_c, setup, coef):
    """``sum s |y|`` and ``sum s |y - x' c|`` over the chunk's rows."""
    objective, weights = _chunk_rows(setup, X_c, y_c, w_c)
    if objective is None:
        return 0.0, 0.0
    fitted = objective.raw_prediction(coef)[:, 0]
    return float(weights @ np.abs(objective.y)), float(
        weights @ np.abs(objective.y - fitted)
    )


def _reweighted_kernel(X_c, y_c, w_c, setup, coef, floor):
    """The chunk's reweighted normal equations at zero, times their weight."""
    objective, weights = _chunk_rows(setup, X_c, y_c, w_c)
    if objective is None:
        return None
    residuals = np.abs(objective.y - objective.raw_prediction(coef)[:, 0])
    weights = weights / np.maximum(residuals, floor)
    total = float(weights.sum())
    reweighted = LinearObjective(
        setup.loss,
        X_c,
        objective.y,
        weights,
        setup.predictors,
        [0.0],
        column_stats=setup.column_stats,
    )
    zero = np.zeros(reweighted.n_coef)
    _, grad, hess, _ = reweighted._pass(zero, gradient=True, hessian=True)
    return total, grad * total, hess * total


def reweighted_start(problem, objective, coef):
    """:func:`~skrobust._base.least_absolute_deviation_start` on all rows.

    ``problem`` is a :class:`skrobust._dask_lad._LadFit`, ``objective`` its
    least-squares objective on all rows and ``coef`` the least-squares
    start, standardised. Raises ``NotImplementedError`` for designs whose
    in-memory steps are conjugate gradients (``PRECONDITIONED_MIN_COEF``
    coefficients and more).
    """
    if objective.n_coef >= PRECONDITIONED_MIN_COEF:
        raise NotImplementedError(
            "scale='lad' on dask: neither the strided rows of the "
            "least-squares start nor those of the L1 start carry weight, and "
            f"with {objective.n_coef} coefficients the in-memory start then "
            "takes conjugate-gradient steps on all rows, not followed on "
            "dask. Shuffle the rows or fit in memory."
        )
    data, stats, setup = problem.data, problem.stats, objective.setup
    parts = data.map_chunks(_distances_kernel, setup, coef)
    # As in memory: the median of y instead, if that is closer in L1.
    if sum(part[0] for part in parts) < sum(part[1] for part in parts):
        coef = np.zeros_like(coef)
    previous = None
    for _ in range(_LAD_START_STEPS):
        ((w, b),) = objective.unstandardize(coef)
        values = RowValues(problem.offset, problem.spread, w, b)
        hint = problem.start_rows.hint(values)
        spread = weighted_median(data, values, stats[0], stats[1], hint)
        if not spread > 0:
            break  # half the rows are fitted exactly
        if previous is not None and abs(previous - spread) <= 1e-3 * spread:
            break
        previous = spread
        parts = data.map_chunks(_reweighted_kernel, setup, coef, 1e-6 * spread)
        parts = [part for part in parts if part is not None]
        total = sum(part[0] for part in parts)
        grad = sum(part[1] for part in parts) / total
        hess = sum(part[2] for part in parts) / total
        # The ridge keeps its strength relative to the total weight.
        hess.flat[:: objective.n_coef + 1] += objective.penalty * (total / stats[0])
        coef = regular_solve(hess, -grad)
    return coef
