r"""The smoothed fits' solves on the rows near a start, on dask data.

In memory, the last smoothed fit of ``solver="smooth"`` on many rows
(:func:`skrobust._quantile_smooth._minimize_near_start`) and each step of
its bandwidth continuation (:func:`skrobust._quantile_smooth.
_continuation_step`) are first solved on the rows whose residuals are near
zero, the others entering as the exact linear term of
:class:`skrobust._quantile_smooth._NearRowsObjective`; the answer stands
if every other row kept its side and stayed in the loss's linear zone,
else the problem is solved on all rows from it. This module makes the
same decisions on a :class:`skrobust._dask_chunks.ChunkedData`, with the same
iterations:

* the centring of the start (its intercept moved to the weighted
  ``q``-quantile of its residuals) and the radius (the ``k``-th smallest
  ``|r|`` over all rows, rows without weight included, as
  ``np.partition`` takes it in memory) are exact distributed selections
  (:func:`skrobust._dask_select.select`), a round trip or two each;
* one pass (:func:`_near_setup_kernel`) returns the far rows' linear term,
  the number and weight of the near rows, their design's Gram matrix (for
  the flat-direction test) and the near objective at the first point the
  solver evaluates; each chunk's task keeps its near rows as a
  :class:`~skrobust._objective.LinearObjective` on its worker
  (:class:`NearRows`), so the solver's evaluations (one round trip each)
  read a fraction of ``X`` and nothing but sums comes to the client;
* one pass certifies the solution (:func:`_near_certify_kernel`) and
  frees the near rows; it also returns the pinball loss and the duality
  gap of the solution, which the continuation needs next.
"""

import threading
import uuid
from collections import OrderedDict

import numpy as np

from . import _quantile_smooth
from ._dask_select import select
from ._null_directions import _clearly_regular
from ._objective import LinearObjective

# Near-row objectives kept on each worker (module state of its process):
# those of the latest few near problems, by token, then by chunk. A task
# that finds none (a new worker, an evicted problem) rebuilds its own.
_KEPT_PROBLEMS = 2
_kept = OrderedDict()
_kept_lock = threading.Lock()


def _chunk_objective(setup, X_c, y_c, w_c):
    """``(objective, weights)``: the chunk's objective on all its rows.

    Rows without weight included, with target 0, as the in-memory
    objective holds them (``weights`` are divided by the largest weight of
    all rows, as there).
    """
    weights = setup.weights(y_c, w_c)
    return setup.objective_on(X_c, y_c, weights), weights


class Reference:
    """The residuals the near rows are chosen by: ``y - D coef - shift``.

    ``shift`` is subtracted after the product, as memory subtracts the
    centring shift from its residuals. Picklable; travels with the tasks.
    """

    def __init__(self, setup, coef, shift=0.0):
        self.setup, self.coef, self.shift = setup, np.array(coef), float(shift)

    def residuals(self, objective):
        residuals = objective.y - objective.raw_prediction(self.coef)[:, 0]
        if self.shift:
            residuals -= self.shift
        return residuals


class _SignedResiduals:
    """Selection rows: the reference residuals of the rows with weight."""

    def __init__(self, reference):
        self.reference = reference

    def __call__(self, X_c, y_c, w_c):
        objective, weights = _chunk_objective(self.reference.setup, X_c, y_c, w_c)
        residuals = self.reference.residuals(objective)
        positive = weights > 0
        return residuals[positive], weights[positive]


class _Distances:
    """Selection rows: ``|reference residual|`` of every row, each counting 1."""

    def __init__(self, reference):
        self.reference = reference

    def __call__(self, X_c, y_c, w_c):
        objective, _ = _chunk_objective(self.reference.setup, X_c, y_c, w_c)
        distance = np.abs(self.reference.residuals(objective))
        return distance, np.ones(distance.size)


class NearRows:
    """The rows with ``|reference residual| < radius``, kept on the workers.

    :meth:`objective` gives a chunk's near rows as a
    :class:`~skrobust._objective.LinearObjective` (a copy of them, as in
    memory), built by the first task that asks and kept by its worker
    under this instance's token until :meth:`release`.
    """

    def __init__(self, reference, radius):
        self.reference, self.radius = reference, float(radius)
        self.token = uuid.uuid4().hex

    def split(self, X_c, y_c, w_c):
        """``(objective on all rows, weights, residuals, near)`` of the chunk."""
        objective, weights = _chunk_objective(self.reference.setup, X_c, y_c, w_c)
        residuals = self.reference.residuals(objective)
        return objective, weights, residuals, np.abs(residuals) < self.radius

    def objective(self, chunk, X_c, y_c, w_c, split=None):
        """``(near objective or None, its weight)`` of chunk number ``chunk``."""
        with _kept_lock:
            kept = _kept.get(self.token)
            if kept is not None and chunk in kept:
                return kept[chunk]
        objective, weights, _, near = split or self.split(X_c, y_c, w_c)
        near_weights = weights[near]
        weight = float(near_weights.sum())
        near_objective = None
        if weight > 0:
            near_objective = LinearObjective(
                objective.loss,
                X_c[near],
                objective.y[near],
                near_weights,
                objective.predictor_spec,
                [0.0],
                column_stats=objective.column_stats,
                pinned=objective.pinned,
            )
        with _kept_lock:
            kept = _kept.setdefault(self.token, {})
            _kept.move_to_end(self.token)
            while len(_kept) > _KEPT_PROBLEMS:
                _kept.popitem(last=False)
            kept[chunk] = near_objective, weight
        return near_objective, weight

    def release(self, chunk):
        """Forget chunk ``chunk``'s near rows on this worker."""
        with _kept_lock:
            kept = _kept.get(self.token)
            if kept is not None:
                kept.pop(chunk, None)
                if not kept:
                    del _kept[self.token]


def _near_sums(near_objective, weight, coef, hessian):
    """Weighted sums of the near rows' loss, gradient (and Hessian)."""
    value, grad, hess, _ = near_objective._pass(coef, gradient=True, hessian=hessian)
    if hess is not None:
        hess *= weight
    return value * weight, grad * weight, hess


def _near_setup_kernel(X_c, y_c, w_c, chunk, rows, point):
    """The chunk's part of :func:`near_rows_objective` (see there)."""
    split = rows.split(X_c, y_c, w_c)
    objective, weights, residuals, near = split
    # d rho_q(r) / dr of each far row times its weight, as in memory.
    slope = np.subtract(objective.loss.rho.quantile, residuals < 0, dtype=np.float64)
    slope *= weights
    slope[near] = 0.0
    far_value = float(slope @ residuals)
    far_gradient = -objective.design_rmatvec(slope)
    near_objective, weight = rows.objective(chunk, X_c, y_c, w_c, split)
    gram = sums = None
    if near_objective is not None:
        gram = near_objective._design_grams(0) * weight
        sums = _near_sums(near_objective, weight, point, True)
    return int(np.count_nonzero(near)), weight, far_value, far_gradient, gram, sums


def _near_pass_kernel(X_c, y_c, w_c, chunk, rows, coef, hessian):
    near_objective, weight = rows.objective(chunk, X_c, y_c, w_c)
    if near_objective is None:
        return None
    return _near_sums(near_objective, weight, coef, hessian)


def _near_hessp_kernel(X_c, y_c, w_c, chunk, rows, coef, vector):
    near_objective, weight = rows.objective(chunk, X_c, y_c, w_c)
    if near_objective is None:
        return None
    return near_objective.hessp(coef, vector) * weight


def _near_certify_kernel(X_c, y_c, w_c, chunk, rows, coef, reach):
    """Far rows that left their side or the linear zone; the pinball loss and gap.

    Also frees the chunk's near rows. The loss and the gap terms are
    :func:`skrobust._dask_quantile_smooth._gap_kernel`'s, at ``coef``, for the
    loss of the rows' objective.
    """
    rows.release(chunk)
    objective, weights, residuals, near = rows.split(X_c, y_c, w_c)
    fine = objective.y - objective.raw_prediction(coef)[:, 0]
    far = ~near & (weights > 0)
    kept = (residuals[far] > 0) == (fine[far] > 0)
    moved = int(np.count_nonzero(~(kept & (np.abs(fine[far]) >= reach))))
    rho = objective.loss.rho
    pinball = rho.quantile * fine - np.minimum(fine, 0.0)
    gap_reach = _quantile_smooth._LINEAR_BEYOND[rho.kernel] * rho.bandwidth
    close = np.flatnonzero(np.abs(fine) < gap_reach)
    tail, _, _ = rho._tail_density_g(rho._t(fine[close]))
    gap = float((weights[close] * np.abs(fine[close]) * tail).sum())
    return moved, float((weights * pinball).sum()), gap


class NearObjective:
    """The smoothed objective on the near rows of every chunk (a weighted mean).

    The interface the solvers use, as :class:`skrobust._dask_objective.DaskObjective`
    has it, each evaluation one round trip over the near rows the workers
    keep. ``preset`` is ``(point, value, gradient, Hessian)`` of the setup
    pass, used by the first evaluation at that point.
    """

    def __init__(self, data, rows, n_samples, sum_weight, n_coef, preset):
        self.data, self.rows = data, rows
        self.n_samples, self.sum_weight, self.n_coef = n_samples, sum_weight, n_coef
        # (Only its number of columns is read, by the L1 weights.)
        self.X = data.X
        self.preset = preset
        self.chunks = list(range(data.X.numblocks[0]))

    def null_directions(self):
        # Checked by near_rows_objective: a flat direction means no such
        # objective.
        return np.zeros((self.n_coef, 0))

    def _evaluate(self, coef, hessian):
        preset, self.preset = self.preset, None
        if preset is not None and preset[0] == coef.tobytes():
            value, grad, hess = preset[1:]
        else:
            parts = self.data.map_chunks(
                _near_pass_kernel, self.rows, coef, hessian, each=self.chunks
            )
            value, grad, hess = _add_sums([part for part in parts if part], hessian)
        with np.errstate(over="ignore", invalid="ignore"):
            value = value / self.sum_weight
        if not np.isfinite(value):
            value = np.inf
        hess = None if not hessian else hess / self.sum_weight
        return value, grad / self.sum_weight, hess

    def loss_gradient(self, coef):
        value, grad, _ = self._evaluate(coef, False)
        return value, grad

    def hessian(self, coef):
        return self._evaluate(coef, True)[2]

    def loss_gradient_hessian(self, coef):
        return self._evaluate(coef, True)

    def hessp(self, coef, vector):
        parts = self.data.map_chunks(
            _near_hessp_kernel, self.rows, coef, vector, each=self.chunks
        )
        return sum(part for part in parts if part is not None) / self.sum_weight


def _add_sums(parts, hessian):
    with np.errstate(over="ignore", invalid="ignore"):
        value = sum(part[0] for part in parts)
    grad = sum(part[1] for part in parts)
    hess = sum(part[2] for part in parts) if hessian else None
    return value, grad, hess


def _has_flat_direction(gram, objective):
    """Whether the near rows' design leaves a direction that only far rows fix.

    The test of :func:`skrobust._null_directions.null_directions` on the near
    rows' weighted Gram matrix (no penalty: the smoothed objectives have
    none).
    """
    (pred,) = objective.predictors
    if pred.p == 0 or _clearly_regular(gram):
        return False
    eigenvalues = np.linalg.eigvalsh(gram)
    return bool(np.any(eigenvalues <= 1e-10 * max(eigenvalues[-1], 0.0)))


def near_rows_objective(full, coef, rows, point):
    """:func:`skrobust._quantile_smooth._near_rows_objective` on dask data.

    ``full`` is the :class:`~skrobust._dask_objective.DaskObjective` on all rows,
    ``coef`` the point of the far rows' linear term (``rows``' reference)
    and ``point`` where the solver will first evaluate. One pass. None
    when the near rows are more than half of all rows, carry no weight or
    leave a flat direction, as in memory; else a
    :class:`~skrobust._quantile_smooth._NearRowsObjective` whose near part
    is a :class:`NearObjective`.
    """
    data = full.data
    chunks = list(range(data.X.numblocks[0]))
    parts = data.map_chunks(_near_setup_kernel, rows, point, each=chunks)
    n_near = sum(part[0] for part in parts)
    near_weight = sum(part[1] for part in parts)
    if not 0 < near_weight or 2 * n_near > data.n_samples:
        return None
    with_rows = [part for part in parts if part[4] is not None]
    if _has_flat_direction(sum(part[4] for part in with_rows) / near_weight, full):
        return None
    total = full.sum_weight
    far_value = sum(part[2] for part in parts) / total
    far_gradient = sum(part[3] for part in parts) / total
    value, grad, hess = _add_sums([part[5] for part in with_rows], True)
    preset = (np.asarray(point).tobytes(), value, grad, hess)
    near = NearObjective(data, rows, n_near, near_weight, full.n_coef, preset)
    return _quantile_smooth._NearRowsObjective(
        near, near_weight / total, far_value, far_gradient, coef, full
    )


def certify(full, rows, coef, reach, l1):
    """``(certified, value, gap)`` of the near rows' solution ``coef`` (one pass).

    Certified when every far row of positive weight kept the side of its
    reference residual and is at least ``reach`` from zero. ``value`` and
    ``gap`` are :func:`skrobust._quantile_smooth.pinball_gap`'s at ``coef``
    (with the L1 weights ``l1``).
    """
    data = full.data
    chunks = list(range(data.X.numblocks[0]))
    parts = data.map_chunks(_near_certify_kernel, rows, coef, reach, each=chunks)
    moved = sum(part[0] for part in parts)
    value = sum(part[1] for part in parts) / full.sum_weight
    value += float((l1 * np.abs(coef)).sum())
    gap = sum(part[2] for part in parts) / full.sum_weight
    return moved == 0, value, gap


def minimize_near(problem, reduced, coef, budget, solver=None):
    """The solve of the near rows' problem, as memory makes it.

    :meth:`skrobust._dask_quantile_smooth.DaskSmooth.minimize` (the solver
    chosen by the rows of the whole problem, unless ``solver`` names one),
    its iterations added to ``problem.n_iter``.
    """
    return problem.minimize(
        reduced,
        coef,
        budget,
        solver=solver,
        warn=False,
        multilevel=False,
    )


def _sample_residuals(full, reference):
    """The reference residuals of the client's sample rows (for the pivots)."""
    template = full.template
    return reference.residuals(template), template.sample_weight > 0


def near_start(problem, full, coef, budget):
    """:func:`skrobust._quantile_smooth._minimize_near_start` on dask data.

    Returns ``(result, start, n_iter)`` as memory does: the certified
    result and None, or None, the start of the solve on all rows and the
    iterations spent.
    """
    data = full.data
    rho = full.setup.loss.rho
    start = np.array(coef, dtype=np.float64)
    coef = start.copy()
    reference = Reference(full.setup, start)
    if problem.fit_intercept:
        hint, positive = _sample_residuals(full, reference)
        shift = select(
            data,
            _SignedResiduals(reference),
            lambda total: rho.quantile * total,
            hint[positive],
            rho.quantile,
        ).value
        coef[-1] += shift  # the intercept is the last coordinate
        reference = Reference(full.setup, start, shift)
    reach = _quantile_smooth._LINEAR_BEYOND[rho.kernel] * rho.bandwidth
    n_iter = 0
    for fraction in _quantile_smooth._NEAR_START_FRACTIONS:
        if n_iter >= budget:
            break
        k = int(fraction * data.n_samples)
        hint, _ = _sample_residuals(full, reference)
        kth = select(
            data,
            _Distances(reference),
            lambda total, k=k: k + 1,
            np.abs(hint),
            fraction,
        ).value
        rows = NearRows(reference, max(kth, 2.0 * reach))
        reduced = near_rows_objective(full, coef, rows, coef)
        if reduced is None:
            break
        result = minimize_near(problem, reduced, coef, budget - n_iter)
        n_iter += result.n_iter
        if not result.converged:
            break
        certified, _, _ = certify(full, rows, result.coef, reach, problem.l1)
        if certified:
            result.n_iter = n_iter
            return result, None, n_iter
        start = coef = result.coef
        reference = Reference(full.setup, coef)
    return None, start, n_iter


def minimize_last(problem, full, coef, budget, warn):
    """:func:`skrobust._quantile_smooth.minimize_smoothed` with ``last=True``.

    On at least ``_NEAR_START_MIN_ROWS`` rows (and a budget of 4), first
    on the rows near the start (:func:`near_start`, at most half the
    budget), then, unless that is certified, on all rows from its
    solution; the iterations of both count.
    """
    if full.n_samples >= _quantile_smooth._NEAR_START_MIN_ROWS and budget >= 4:
        near_budget = min(budget // 2, _quantile_smooth._CONTINUATION_MAX_ITER)
        result, start, used = near_start(problem, full, coef, near_budget)
        if result is not None:
            return result
        result = problem.minimize(
            full, start, budget - used, warn=warn, multilevel=False
        )
        result.n_iter += used
        return result
    return problem.minimize(full, coef, budget, warn=warn, multilevel=False)


def _minimize_all_rows(problem, full, coef, budget, solver=None):
    """:func:`minimize_near`'s solve on all rows (not recorded as a near one)."""
    return problem.minimize(
        full, coef, budget, solver=solver, warn=False, multilevel=False
    )


def _step_minimize(problem, objective, start, budgets, near):
    """:func:`skrobust._quantile_smooth._step_minimize` on dask data.

    A solve that stops on its budget without converging goes on from where
    it stopped for at most ``extra`` more iterations (:func:`_go_on`).
    ``near`` says whether ``objective`` is a near rows' problem (solved by
    :func:`minimize_near`) or the one on all rows.
    """
    budget, extra = budgets
    solve = minimize_near if near else _minimize_all_rows
    result = solve(problem, objective, start, budget)
    if result.converged or result.n_iter < budget or extra < 1:
        return result
    return _go_on(problem, objective, result, extra, near)


def _go_on(problem, objective, result, extra, near):
    """:func:`skrobust._quantile_smooth._go_on` on dask data.

    The iterations are added to ``problem.n_iter``; ``n_iter`` counts
    ``result``'s too.
    """
    solve = minimize_near if near else _minimize_all_rows
    solver = _quantile_smooth.retry_solver(objective)
    more = solve(problem, objective, result.coef, extra, solver)
    more.n_iter += result.n_iter
    return more


def continuation_step(problem, full, rho, coef, coarse, start, budgets):
    """:func:`skrobust._quantile_smooth._continuation_step` on dask data.

    ``full`` is the objective on all rows with the finer loss ``rho``,
    ``coef`` the minimiser for the coarser bandwidth and ``coarse`` its
    ``(value, bandwidth)``; the solves start from ``start`` with
    ``budgets``, ``(budget, extra)`` as memory's: the near rows' problem
    with half of ``extra``, then, if it has not converged, all rows with
    the rest. Returns ``(result, value, gap)``, the last two
    :func:`skrobust._quantile_smooth.pinball_gap`'s at ``result.coef`` (for
    a near solve that did not converge, the coarse value and 0, as in
    memory). As in memory, when the near rows' solution is not certified
    only the solve on all rows counts its iterations.
    """
    _, coarse_bandwidth = coarse
    reach = _quantile_smooth._LINEAR_BEYOND[rho.kernel]
    rows = NearRows(Reference(full.setup, coef), reach * coarse_bandwidth)
    reduced = near_rows_objective(full, coef, rows, start)
    if reduced is not None:
        budget, extra = budgets
        near_budgets = (budget, extra // 2)
        result = _step_minimize(problem, reduced, start, near_budgets, near=True)
        if not result.converged:
            if not extra or result.n_iter < sum(near_budgets):
                # (As memory's: the fit is taken if it certifies the target.)
                return (result, *problem.gap(full, rho, result.coef))
            result = _go_on(problem, full, result, extra - extra // 2, near=False)
            return (result, *problem.gap(full, rho, result.coef))
        certified, value, gap = certify(
            full, rows, result.coef, reach * rho.bandwidth, problem.l1
        )
        if certified:
            return result, value, gap
        problem.n_iter -= result.n_iter  # (memory reports the full solve's)
        start = result.coef
    result = _step_minimize(problem, full, start, budgets, near=False)
    return (result, *problem.gap(full, rho, result.coef))
