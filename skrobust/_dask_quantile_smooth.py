"""Smoothed quantile regression on row-chunked ``dask.array`` data (issue #15).

``solver="smooth"`` (:class:`DaskSmooth`) repeats the stages of
:func:`skrobust._quantile_level.fit_smooth` with distributed passes:
the exact median and MAD of ``y``; least squares on the in-memory strided
subsample and the residual scale of those rows (exact distributed
medians); the first smoothed fit on every ``SUBSAMPLE_STEP``-th row of all
the data (:class:`~skrobust._dask_strided.StridedData`: each chunk's task
takes the rows whose global index is a multiple of the stride, those of
``X[::11]``),
multilevel as in memory;
the second on all rows through a :class:`~skrobust._dask_objective.DaskObjective`,
first, as in memory, on the rows nearest its centred start with the others
as an exact linear term, certified or else refitted on all rows
(:mod:`skrobust._dask_near_rows`: the centring and the radius are exact
distributed selections, and the near rows stay on the workers); then the
continuation of :func:`skrobust._quantile_smooth.refine_smoothed`, each
step on the near rows likewise and its duality gap on all rows. The
targets are clipped as in memory; with ``alpha > 0`` the steps are the
in-memory proximal Newton ones. The minimisers and the iterations are the
in-memory ones. A warm start makes only the fit on all rows, at the
bandwidth of its residuals' scale, as in memory.

The same stages, without the continuation, make the exact solver's
preliminary fit where memory makes it on all rows
(:meth:`DaskSmooth.preliminary`, called by
:mod:`skrobust._dask_quantile`).
"""

import numpy as np

from . import (
    _dask_median,
    _dask_objective,
    _progress,
    _proximal,
    _quantile_level,
    _quantile_smooth,
    _solvers,
)
from ._base import MAD_NORMAL_CONSTANT, least_squares_start_step
from ._dask_chunks import _chunk_weights
from ._dask_median import plausible_warm, weighted_median
from ._dask_quantile_cov import column_covariance
from ._dask_strided import StridedObjective, rows_of
from ._objective import LinearObjective
from .losses import FixedScaleLoss, SmoothedPinballRho, SquaredRho


class _ClippedValues:
    """Per-row values ``clip((y - offset) / spread) - X w - b`` (``|.|`` if asked).

    The standardised targets of the in-memory smoothed fit, clipped at
    ``+-limit`` as :func:`~skrobust._quantile_level.fit_level` clips them.
    """

    def __init__(self, offset, spread, limit, coef=None, intercept=0.0, absolute=False):
        self.offset, self.spread, self.limit = float(offset), float(spread), limit
        self.coef, self.intercept = coef, float(intercept)
        self.absolute = absolute

    def __call__(self, X_c, y_c):
        values = (np.asarray(y_c, dtype=np.float64) - self.offset) / self.spread
        np.clip(values, -self.limit, self.limit, out=values)
        if self.coef is not None:
            values -= np.asarray(X_c @ self.coef).ravel() + self.intercept
        if self.absolute:
            np.abs(values, out=values)
        return values


class _ClippedSetup(_dask_objective._ChunkSetup):
    """:class:`~skrobust._dask_objective._ChunkSetup`, its targets clipped."""

    def __init__(self, setup, limit):
        vars(self).update(vars(setup))
        self.limit = limit


def _gap_kernel(X_c, y_c, w_c, setup, coef, reach):
    """Weighted sums of the pinball loss and of the gap terms over the chunk."""
    objective, _ = setup.objective(X_c, y_c, w_c)
    if objective is None:
        return 0.0, 0.0
    rho = setup.loss.rho
    weights = _chunk_weights(y_c, w_c) / setup.top
    residuals = objective.y - objective.raw_prediction(coef)[:, 0]
    pinball = rho.quantile * residuals - np.minimum(residuals, 0.0)
    close = np.flatnonzero(np.abs(residuals) < reach)
    tail, _, _ = rho._tail_density_g(rho._t(residuals[close]))
    gap = float((weights[close] * np.abs(residuals[close]) * tail).sum())
    return float((weights * pinball).sum()), gap


def _clipped_fit_kernel(X_c, y_c, w_c, offset, spread, limit, coef, intercept):
    """Largest ``|x_i w + b|`` over the chunk's clipped rows (-1 if none)."""
    y = (np.asarray(y_c, dtype=np.float64) - offset) / spread
    clipped = np.flatnonzero(np.abs(y) > limit)
    if not clipped.size:
        return -1.0
    fitted = np.asarray(X_c[clipped] @ coef).ravel() + intercept
    return float(np.abs(fitted).max())


def _misfit_rows_kernel(X_c, y_c, w_c, values):
    """How many rows of positive weight have ``values`` above the scale floor."""
    misfit = values(X_c, y_c)[_chunk_weights(y_c, w_c) > 0]
    return int(np.count_nonzero(misfit > _quantile_smooth._MIN_RELATIVE_SCALE))


def _start_residuals_kernel(X_c, y_c, w_c, offset, spread, limit, coef, intercept):
    """Residuals of the chunk's rows at ``(coef, intercept)``, and their weights.

    Of the clipped standardised targets, 0 on rows without weight (as the
    in-memory template sets them).
    """
    weights = _chunk_weights(y_c, w_c)
    y = np.clip((np.asarray(y_c, dtype=np.float64) - offset) / spread, -limit, limit)
    y[~(weights > 0)] = 0.0
    return y - (np.asarray(X_c @ coef).ravel() + intercept), weights


class DaskSmooth:
    """The stages of :func:`~skrobust._quantile_level.fit_smooth` on dask data.

    Coefficients are in the standardised coordinates of the statistics
    pass (``stats[2]``) and standardised ``y`` units; every objective is a
    :class:`~skrobust._dask_objective.DaskObjective` (of all rows, or of every
    ``step``-th one through :class:`~skrobust._dask_strided.StridedData`)
    whose chunks clip the standardised targets at ``+-limit``.
    """

    def __init__(self, estimator, data, stats, sample, y_map, limit):
        self.estimator, self.data, self.stats, self.sample = (
            estimator,
            data,
            stats,
            sample,
        )
        self.offset, self.spread = y_map
        self.limit = limit
        self.fit_intercept = estimator.fit_intercept
        self.quantile, self.kernel = float(estimator.quantile), estimator.kernel
        self.n_coef = data.n_features + bool(self.fit_intercept)
        self.n_iter = 0
        # The answer of solver="smooth" (preliminary() says otherwise), whose
        # default bandwidth counts rows as _quantile_smooth.effective_rows.
        self.answer = True
        # _quantile_smooth._l1_weights: alpha / column scale, none on the intercept.
        self.l1 = np.zeros(self.n_coef)
        self.l1[: data.n_features] = estimator.alpha / stats[2][1]

    def rows(self, step):
        """``(data, sum of weight / top)`` of every ``step``-th row (all if 1)."""
        if step <= 1:
            return self.data, self.stats[0]
        strided, weight = rows_of(self.data, step, self.stats[1])
        return (strided, weight) if weight > 0 else (self.data, self.stats[0])

    def objective(self, rows, loss):
        data, sum_weight = rows
        sample = self.sample
        y = np.clip((sample.y - self.offset) / self.spread, -self.limit, self.limit)
        y[~(sample.weights > 0)] = 0.0
        template = LinearObjective(
            loss,
            sample.X,
            y,
            sample.weights,
            [(None, self.fit_intercept)],
            [0.0],
            column_stats=self.stats[2],
        )
        objective = _dask_objective.DaskObjective(
            self.data, self.stats[:2], template, self.offset, self.spread
        )
        setup = _ClippedSetup(objective.setup, self.limit)
        if data is self.data:
            objective.setup = setup
            return objective
        # Strided rows: their subsample strides all the data, as X[::a][::b]
        # is X[::a*b] in memory, so the solvers' levels see memory's rows
        # (a level of at most FETCHED_LEVEL_ROWS solved on the client).
        return StridedObjective(
            self.data, sum_weight, self.stats[1], template, setup, data.step, True
        )

    def smoothed(self, rows, bandwidth):
        rho = SmoothedPinballRho(self.quantile, bandwidth, self.kernel)
        return rho, self.objective(rows, FixedScaleLoss(rho, 1.0))

    def residual_scale(self, rows, objective, coef):
        """:func:`skrobust._quantile_smooth._residual_scale` of the rows' residuals."""
        data, sum_weight = rows
        ((w, b),) = objective.unstandardize(coef)
        top, hint = self.stats[1], self.sample.hint
        values = _ClippedValues(self.offset, self.spread, self.limit, w, b)
        median = weighted_median(data, values, sum_weight, top, hint(values))
        values = _ClippedValues(
            self.offset, self.spread, self.limit, w, b + median, absolute=True
        )
        mad = weighted_median(data, values, sum_weight, top, hint(values))
        scale = mad / MAD_NORMAL_CONSTANT
        floor = _quantile_smooth._MIN_RELATIVE_SCALE
        if not scale > floor:
            # More than half the residuals equal: their root mean square
            # about the median, without squaring large ones (two passes).
            squares = _dask_median._sum_of_squares_kernel
            parts = data.map_chunks(squares, values, top, 1.0)
            largest = max(part[0] for part in parts)
            if largest > 0:
                parts = data.map_chunks(squares, values, top, largest)
                scale = largest * float(
                    np.sqrt(sum(part[1] for part in parts) / sum_weight)
                )
        return scale if scale > floor else 0.0

    def fits_every_row(self, objective, coef):
        """Whether ``coef`` fits every row of positive weight (one pass).

        As :func:`~skrobust._quantile_level._smooth_start`'s test of a
        perfect least-squares fit: no clipped residual beyond
        ``_MIN_RELATIVE_SCALE``.
        """
        ((w, b),) = objective.unstandardize(coef)
        values = _ClippedValues(
            self.offset, self.spread, self.limit, w, b, absolute=True
        )
        parts = self.data.map_chunks(_misfit_rows_kernel, values)
        return not sum(parts) > 0

    def least_squares(self):
        """The start of :func:`~skrobust._quantile_level._smooth_start`."""
        rows = self.rows(least_squares_start_step(self.data.n_samples))
        objective = self.objective(rows, FixedScaleLoss(SquaredRho()))
        zero = np.zeros(self.n_coef)
        _, grad, hess = objective.loss_gradient_hessian(zero)
        coef = -np.linalg.lstsq(hess, grad, rcond=None)[0]
        scale = self.residual_scale(rows, objective, coef)
        if self.fit_intercept:
            # conquer's shift to the q-quantile of the residuals of the
            # start rows, fetched (at most 2 LEAST_SQUARES_START_ROWS values).
            ((w, b),) = objective.unstandardize(coef)
            parts = rows[0].map_chunks(
                _start_residuals_kernel, self.offset, self.spread, self.limit, w, b
            )
            residuals = np.concatenate([part[0] for part in parts])
            weights = np.concatenate([part[1] for part in parts])
            coef[-1] += _quantile_smooth._weighted_quantile(
                residuals, weights, self.quantile
            )
        if scale == 0:
            # As in memory: residuals that carry no scale. A fit perfect on
            # every row of positive weight is the answer (without a
            # penalty); else the bandwidth is relative to y's own scale.
            if self.estimator.alpha == 0 and self.fits_every_row(objective, coef):
                return coef, None
            scale = 1.0
        return coef, scale

    def minimize(self, objective, coef, budget, solver=None, **kwargs):
        """:func:`~skrobust._quantile_smooth.minimize_smoothed`, proximal with L1.

        ``solver`` (default: as in memory) names the solver. The objective
        is convex, as in memory.
        """
        tol = self.estimator.tol
        # As in memory, the solver is chosen by the objective's own rows (a
        # problem on the rows near a fit: by the fit's).
        n_samples = getattr(objective, "fit_n_samples", objective.n_samples)
        method = solver or _quantile_smooth.smoothed_solver(self.n_coef, n_samples)
        if self.l1.any():
            result = _proximal.minimize_l1(
                objective, coef, self.l1, method, budget, tol, **kwargs
            )
        else:
            result = _solvers.minimize(
                objective,
                coef,
                method,
                budget,
                tol,
                convex=True,
                levenberg=True,
                **kwargs,
            )
        self.n_iter += result.n_iter
        return result

    def last_stage(self, objective, coef, budget, warn):
        """The last stage's minimisation on all rows (``last=True`` in memory).

        First on the rows near the start, as in memory
        (:func:`skrobust._dask_near_rows.minimize_last`).
        """
        from ._dask_near_rows import minimize_last

        return minimize_last(self, objective, coef, budget, warn)

    def continuation_step(self, full, rho, coef, coarse, start, budgets):
        """One step of the continuation: ``(result, value, gap)``.

        :func:`skrobust._quantile_smooth._continuation_step`, first on the
        rows near the coarser fit ``coef`` (``coarse`` is its ``(value,
        bandwidth)``), as :func:`skrobust._dask_near_rows.continuation_step`
        makes it, with ``budgets`` as
        :func:`~skrobust._quantile_smooth.continuation_budgets` gives them;
        ``value`` and ``gap`` are :meth:`gap`'s at the result.
        """
        from ._dask_near_rows import continuation_step

        return continuation_step(self, full, rho, coef, coarse, start, budgets)

    def gap(self, objective, rho, coef):
        """:func:`skrobust._quantile_smooth.pinball_gap` over all rows: (value, gap)."""
        reach = _quantile_smooth._LINEAR_BEYOND[rho.kernel] * rho.bandwidth
        parts = self.data.map_chunks(_gap_kernel, objective.setup, coef, reach)
        value = sum(part[0] for part in parts) / self.stats[0]
        value += float((self.l1 * np.abs(coef)).sum())
        return value, sum(part[1] for part in parts) / self.stats[0]

    def refine(self, objective, rho, coef, max_iter):
        """:func:`skrobust._quantile_smooth.refine_smoothed`, each step on all rows."""
        factor = _quantile_smooth._CONTINUATION_FACTOR
        value, gap = self.gap(objective, rho, coef)
        previous, hard, first = None, False, self.n_iter
        for _ in range(_quantile_smooth._CONTINUATION_MAX_STEPS):
            left = max_iter - (self.n_iter - first)
            if _quantile_smooth.continuation_ends(value, gap, left, hard):
                break
            finer, full = self.smoothed(
                (self.data, self.stats[0]), rho.bandwidth / factor
            )
            start = coef if previous is None else coef + (coef - previous) / factor
            budgets = _quantile_smooth.continuation_budgets(value, gap, left)
            result, new_value, new_gap = self.continuation_step(
                full, finer, coef, (value, rho.bandwidth), start, budgets
            )
            if not _quantile_smooth.takes_step(result, value, gap, new_value, new_gap):
                break
            hard = result.n_iter > budgets[0]
            previous, coef, rho, value, gap = (
                coef,
                result.coef,
                finer,
                new_value,
                new_gap,
            )
        ran_out = self.n_iter - first >= max_iter
        if ran_out and gap > _quantile_smooth._GUARANTEED_GAP * value:
            _quantile_smooth.warn_uncertified(self.estimator.max_iter)
        return coef, rho

    def solve(self, start=None, scale=None):
        """``(w, b, bandwidth)`` in standardised ``y`` units.

        From ``start``, ``(w, b)`` in standardised ``y`` units (a warm
        start), only the fit on all rows, at the bandwidth of ``scale`` or
        else of the start's residual scale, as
        :func:`skrobust._quantile_level.fit_smooth`.
        """
        estimator = self.estimator
        if start is not None:
            return self.finish(*self.warm(start, scale))
        coef, scale = self.least_squares()
        if scale is None:
            # Least squares fits every row: bandwidth 0, no iteration.
            self.scale = 0.0
            ((w, b),) = self.smoothed(self.rows(1), 1.0)[1].unstandardize(coef)
            return w, b, 0.0
        coef, scale = self.first_stage(coef, scale, estimator.max_iter - 1)
        return self.finish(coef, scale)

    def first_stage(self, coef, scale, budget):
        """The first smoothed fit, from least squares: ``(coef, its residual scale)``.

        On every 11th row of large data, as in memory; nothing if ``budget``
        is below 1.
        """
        if budget < 1:
            return coef, scale
        n = self.data.n_samples
        step = 1
        if n >= _solvers.SUBSAMPLE_MIN_ROWS and (
            n >= _solvers.SUBSAMPLE_MIN_ROWS_PER_COEF * self.n_coef
        ):
            step = _solvers.SUBSAMPLE_STEP
        first_rows = self.rows(step)
        # (As in memory: the bandwidth rule at the subsample's size.)
        share = first_rows[0].n_samples / n
        _, objective = self.smoothed(first_rows, self.factor(share) * scale)
        # Multilevel, as in memory: on every 64th row first, if that
        # subsample is large enough (_solvers.subsample_for_start).
        coef = self.minimize(objective, coef, budget, warn=False).coef
        return coef, self.residual_scale(first_rows, objective, coef) or 1.0

    def preliminary(self, max_iter):
        """The exact solver's preliminary fit on all rows: ``(w, b, bandwidth)``.

        :func:`skrobust._quantile_level.fit_smooth` without the
        continuation, in at most ``max_iter`` iterations (with an L1
        penalty at most ``_PRELIMINARY_MAX_ITER``), counted in ``n_iter``.
        """
        self.answer = False  # (its bandwidth only decides its speed)
        coef, scale = self.least_squares()
        if scale is None:
            # Least squares fits every row: bandwidth 0, no iteration.
            ((w, b),) = self.smoothed(self.rows(1), 1.0)[1].unstandardize(coef)
            return w, b, 0.0
        limit = max_iter
        if self.estimator.alpha > 0:
            limit = min(limit, _quantile_level._PRELIMINARY_MAX_ITER)
        coef, scale = self.first_stage(coef, scale, limit - 1)
        all_rows = (self.data, self.stats[0])
        rho, objective = self.smoothed(all_rows, self.factor() * scale)
        budget = limit - self.n_iter
        if budget >= 1:
            coef = self.last_stage(objective, coef, budget, warn=False).coef
        ((w, b),) = objective.unstandardize(coef)
        return w, b, rho.bandwidth

    def warm(self, start, scale=None):
        """A warm start's coefficients and (unless given) residual scale."""
        all_rows = (self.data, self.stats[0])
        _, objective = self.smoothed(all_rows, 1.0)
        w, b = start
        coef = objective.standardize([(np.asarray(w, float), float(b))])
        if scale is None:
            scale = self.residual_scale(all_rows, objective, coef) or 1.0
        return coef, scale

    def factor(self, share=1.0):
        """The bandwidth in units of the residual scale.

        ``share``: of the rows, for a start's fit on a subsample
        (:func:`skrobust._quantile_smooth.subsample_bandwidth`).
        """
        if self.estimator.bandwidth == "auto":
            n_features = self.data.n_features
            total, (squares, smallest, positive) = self.stats[0], self.stats[4]
            if self.answer:
                kish = _quantile_smooth.kish_bound(total, squares)
                rows = min(total / smallest, kish)
            else:  # (the exact solver's preliminary fit: see default_bandwidth)
                rows = positive
            return _quantile_smooth.subsample_bandwidth(rows, share, n_features)
        return float(self.estimator.bandwidth)

    def finish(self, coef, scale):
        """The fit on all rows from ``coef``, then the continuation."""
        estimator = self.estimator
        self.scale = scale
        rho, objective = self.smoothed(
            (self.data, self.stats[0]), self.factor() * scale
        )
        result = self.last_stage(
            objective, coef, max(estimator.max_iter - self.n_iter, 1), warn=True
        )
        coef = result.coef
        if estimator.bandwidth == "auto" and self.n_iter < estimator.max_iter:
            coef, rho = self.refine(
                objective, rho, coef, estimator.max_iter - self.n_iter
            )
        ((w, b),) = objective.unstandardize(coef)
        return w, b, rho.bandwidth

    def clipped_crossed(self, w, b, bandwidth):
        """Whether a clipped target's fit is not safely inside the clip."""
        low, high = self.stats[3]
        if not max(abs(low - self.offset), abs(high - self.offset)) > (
            self.limit * self.spread
        ):
            return False
        parts = self.data.map_chunks(
            _clipped_fit_kernel, self.offset, self.spread, self.limit, w, b
        )
        margin = self.limit - SmoothedPinballRho._T_MAX[self.kernel] * bandwidth
        return not max(parts) < margin


def fit_smooth_column(estimator, column, output, n_outputs, start=None):
    """One target column's smoothed fit on a dask array: as :func:`fit_column`.

    Sets ``estimator._dask_residual_scale``, the residual scale (in
    standardised ``y`` units) its last bandwidth is relative to: the
    ``scale`` of a start at a neighbouring level.
    """
    from ._base import StandardisedFit

    data, stats, sample = column.data, column.stats, column.sample
    offset, spread = column.offset, column.spread
    warm = plausible_warm(
        estimator,
        output,
        n_outputs,
        data,
        stats,
        sample,
        offset,
        spread,
    )
    problem = DaskSmooth(
        estimator, data, stats, sample, (offset, spread), _quantile_level._Y_CLIP
    )
    scale = None
    if start is not None:
        start, scale = start[:2], start[2]
    elif warm is not None:
        start = warm.coef, warm.intercept
    if start is not None:
        # The template's standardisation of the start.
        b0 = (start[1] - offset) / spread if estimator.fit_intercept else 0.0
        start = (np.asarray(start[0], float) / spread, b0)
    w, b, bandwidth = problem.solve(start, scale)
    if problem.clipped_crossed(w, b, bandwidth):
        # As in memory: a clipped target crossed the fit, refit unclipped.
        n_iter = problem.n_iter
        problem = DaskSmooth(estimator, data, stats, sample, (offset, spread), np.inf)
        w, b, bandwidth = problem.solve(start, scale)
        problem.n_iter += n_iter
    _progress.say(
        1,
        "{} rows in {} chunks: smoothed fit in {} iterations, {} round trips",
        data.n_samples,
        data.X.numblocks[0],
        problem.n_iter,
        data.round_trips,
    )
    coef_ = np.asarray(w, dtype=np.float64) * spread
    intercept_ = float(b * spread + offset) if estimator.fit_intercept else 0.0
    estimator._n_rows_fit = data.n_samples
    estimator._dask_residual_scale = problem.scale
    extras = {"bandwidth_": float(bandwidth * spread)}
    if estimator.cov_type is not None:
        extras["cov_"] = column_covariance(
            estimator, data, sample, stats, coef_, intercept_
        )
    return StandardisedFit(coef_, intercept_, problem.n_iter, extras), data.round_trips
