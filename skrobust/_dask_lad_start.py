r"""The reweighted L1 start of ``scale="lad"`` on all rows of dask data.

:func:`skrobust._base.least_absolute_deviation_start` reweights a strided
subsample of the rows; when neither that subsample nor the least-squares
start's rows carry weight (weight on the odd rows only, with both strides
even), the in-memory start reweights all rows instead. Each step weighs
row ``i`` by ``s_i / max(|r_i|, 10^-6 m)`` (``m`` the weighted median of
``|r|``, an exact distributed selection here) and solves weighted least
squares with the ridge scaled by the reweighted total weight, as in memory:

- up to ``ITERATIVE_MIN_COEF`` coefficients, from the normal equations: one
  distributed pass returns every chunk's Gram matrix and gradient at zero,
  and the client solves them (:func:`skrobust._linalg.regular_solve`);
- beyond, by the in-memory LSQR (:func:`skrobust._base._lsqr_least_squares`,
  at most ``_LSQR_ALL_ROWS_STEP_MAX_ITER`` iterations from the previous
  step, as in memory on all rows) on
  :class:`WorkerDesign`: the targets and weights of all rows come to the
  client once a step, and each product with the design, or with its
  transpose, is one distributed pass.

The in-memory loop also has conjugate-gradient steps
(:func:`skrobust._base._reweighted_step`), but only for designs of at most
``PRECONDITIONED_MAX_ELEMENTS`` (2^19) rows times coefficients
(:func:`skrobust._preconditioned_newton.uses_products`). This start is reached only when
the least-squares start is strided, so on at least ``2 *
LEAST_SQUARES_START_ROWS`` (20 000) rows; from ``PRECONDITIONED_MIN_COEF``
(64) coefficients that is at least 1.28 million elements, where the
in-memory steps are the normal equations above too.
"""

import numpy as np

from ._base import (
    _LAD_START_STEPS,
    _LSQR_ALL_ROWS_STEP_MAX_ITER,
    _LSQR_STEP_TOL,
    ITERATIVE_MIN_COEF,
    _lsqr_least_squares,
    lsqr_start,
)
from ._dask_chunks import _chunk_weights
from ._dask_median import RowValues, weighted_median
from ._linalg import regular_solve
from ._objective import LinearObjective


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


def _reweighted(objective, weights, coef, floor):
    """``s_i / max(|r_i|, floor)`` at ``coef`` for the chunk's rows."""
    residuals = np.abs(objective.y - objective.raw_prediction(coef)[:, 0])
    return weights / np.maximum(residuals, floor)


def _reweighted_kernel(X_c, y_c, w_c, setup, coef, floor):
    """The chunk's reweighted normal equations at zero, times their weight."""
    objective, weights = _chunk_rows(setup, X_c, y_c, w_c)
    if objective is None:
        return None
    weights = _reweighted(objective, weights, coef, floor)
    total = float(weights.sum())
    reweighted = LinearObjective(
        setup.loss,
        X_c,
        objective.y,
        weights,
        setup.predictors,
        [0.0],
        column_stats=setup.column_stats,
        pinned=setup.pinned,
    )
    zero = np.zeros(reweighted.n_coef)
    _, grad, hess, _ = reweighted._pass(zero, gradient=True, hessian=True)
    return total, grad * total, hess * total


def _targets_weights_kernel(X_c, y_c, w_c, setup, coef, floor):
    """The chunk's standardised targets and weights, reweighted at ``coef`` if given."""
    objective, weights = _chunk_rows(setup, X_c, y_c, w_c)
    if objective is None:
        empty = np.zeros(np.shape(y_c)[0])
        return empty, empty
    if coef is not None:
        weights = _reweighted(objective, weights, coef, floor)
    return objective.y, weights


def _matvec_kernel(X_c, y_c, w_c, setup, coef):
    """The chunk's rows of the standardised design times ``coef``.

    Zero on a chunk without weight: LSQR multiplies those rows by their
    weight's root, zero, as in memory.
    """
    objective, _ = _chunk_rows(setup, X_c, y_c, w_c)
    if objective is None:
        return np.zeros(np.shape(y_c)[0])
    return objective.design_matvec(coef)


def _rmatvec_kernel(X_c, y_c, w_c, vector, setup):
    """The chunk's standardised design, transposed, times its piece of ``vector``."""
    objective, _ = _chunk_rows(setup, X_c, y_c, w_c)
    if objective is None:
        return None
    return objective.design_rmatvec(vector)


class WorkerDesign:
    """Weighted least squares on all rows of dask data, for the in-memory LSQR.

    Has what :func:`skrobust._base._lsqr_least_squares` reads of a
    :class:`~skrobust._objective.LinearObjective` of the squared loss:
    ``n_samples``, ``n_coef``, ``y``, ``sample_weight`` (scaled to a
    largest weight of 1, as there), ``sum_weight``, ``penalty``, and the
    products ``design_matvec`` and ``design_rmatvec``, each one distributed
    pass. The design stays on the workers; the targets and weights of all
    rows (``8 n`` bytes each) come to the client once, in one pass, as
    LSQR's vectors of ``n`` entries are there too. ``weights_at``, a pair
    ``(coef, floor)``, reweighs the rows by ``1 / max(|r|, floor)`` at
    ``coef``; ``total`` is the sum of the weights before the scaling, in
    units of the largest weight of the data.

    ``data`` is a :class:`~skrobust._dask_chunks.ChunkedData`, ``setup`` the
    :class:`~skrobust._dask_objective._ChunkSetup` of a squared-loss objective.
    """

    def __init__(self, data, setup, penalty, weights_at=(None, None)):
        self._data, self._setup = data, setup
        parts = data.map_chunks(_targets_weights_kernel, setup, *weights_at)
        self.y = np.concatenate([part[0] for part in parts])
        weights = np.concatenate([part[1] for part in parts])
        self.total = float(weights.sum())
        self.sample_weight = weights / weights.max()
        self.sum_weight = float(self.sample_weight.sum())
        self.penalty = penalty
        self.n_samples, self.n_coef = self.y.size, penalty.size
        self._bounds = np.cumsum(data.X.chunks[0])[:-1]

    def design_matvec(self, coef):
        """``D c`` for all rows: one pass."""
        parts = self._data.map_chunks(_matvec_kernel, self._setup, coef)
        return np.concatenate(parts)

    def design_rmatvec(self, vector):
        """``D' v`` for a ``v`` of all rows: one pass, each chunk sent its piece."""
        pieces = np.split(vector, self._bounds)
        parts = self._data.map_chunks(_rmatvec_kernel, self._setup, each=pieces)
        return sum(part for part in parts if part is not None)


def least_squares_by_lsqr(data, objective):
    """The in-memory least-squares start beyond ``ITERATIVE_MIN_COEF`` coefficients.

    :func:`skrobust._base._lsqr_least_squares` from zero on all rows of
    ``data``, as :func:`skrobust._base._solve_least_squares` solves such a
    start in memory. ``objective`` is the squared-loss objective on all
    rows (a :class:`~skrobust._dask_strided.StridedObjective`).
    """
    design = WorkerDesign(data, objective.setup, objective.penalty)
    return lsqr_start(design, _lsqr_least_squares)


def _reweighted_solve(data, sum_weight, objective, coef, floor):
    """One reweighting step of the L1 start, as in memory (see the module)."""
    # The ridge keeps its strength relative to the total weight.
    if objective.n_coef > ITERATIVE_MIN_COEF:
        rows = WorkerDesign(data, objective.setup, objective.penalty, (coef, floor))
        rows.penalty = objective.penalty * (rows.total / sum_weight)
        # A reweighting step from the previous one needs few digits.
        return _lsqr_least_squares(
            rows, x0=coef, tol=_LSQR_STEP_TOL, max_iter=_LSQR_ALL_ROWS_STEP_MAX_ITER
        )
    parts = data.map_chunks(_reweighted_kernel, objective.setup, coef, floor)
    parts = [part for part in parts if part is not None]
    total = sum(part[0] for part in parts)
    grad = sum(part[1] for part in parts) / total
    hess = sum(part[2] for part in parts) / total
    hess.flat[:: objective.n_coef + 1] += objective.penalty * (total / sum_weight)
    return regular_solve(hess, -grad)


def reweighted_start(problem, objective, coef):
    """:func:`~skrobust._base.least_absolute_deviation_start` on all rows.

    ``problem`` is a :class:`skrobust._dask_staged.StagedFit`, ``objective`` its
    least-squares objective on all rows and ``coef`` the least-squares
    start, standardised.
    """
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
        coef = _reweighted_solve(data, stats[0], objective, coef, 1e-6 * spread)
    return coef
