r"""M-estimators with ``scale="lad"`` on row-chunked ``dask.array`` data.

In memory (:class:`skrobust._scale.LADScale`) the scale is the fixed point
``sigma = MAD(r - median r) / 0.6745`` of the residuals of the
least-absolute-deviation fit smoothed at bandwidth ``sigma / 2``, settled
on every 8th row for large problems and finished by one smoothed fit on
all rows; the coefficients then minimise the fixed-scale objective at that
``sigma``. The fixed point is settled to a relative ``1e-6`` only, so its
value depends on the path to it: to give the in-memory scale (and so the
in-memory coefficients) to rounding, this module follows the same path
from the same start.

1. **Checks, statistics, start rows**: the statistics pass of
   :func:`skrobust._dask.data_statistics`; the rows of the in-memory
   least-squares start (every ``n // LEAST_SQUARES_START_ROWS``-th, all for
   small ``n``) are fetched once; the exact distributed median and MAD of
   ``y`` standardise it (:func:`skrobust._dask.standardise_targets`).
2. **The start on the client**: least squares on the start rows (its
   exact-fit shortcut checked on all rows by one pass), the reweighted L1
   start and the MAD of its residuals, by the in-memory functions. When
   the start rows carry no weight, as in memory from all rows
   (:meth:`_LadFit.start_from_all_rows`): least squares from one pass of
   normal equations (the in-memory LSQR beyond ``ITERATIVE_MIN_COEF``
   coefficients), the L1 start on its own strided rows of all rows
   (fetched once) or on all rows (:mod:`skrobust._dask_lad_start`), the
   scale by a distributed selection.
3. **The fixed point on the workers**: each smoothed fit is a
   :class:`~skrobust._dask_strided.StridedObjective` on every 8th row (by
   global index, as in memory) or on all rows, solved by the in-memory
   solver; each centred MAD is two exact distributed medians
   (:func:`skrobust._dask.weighted_median`); the secant steps and the
   stopping rules are :mod:`skrobust._scale`'s.
4. **The fixed-scale fit** on all rows from the smoothed fit's
   coefficients, with the Hessian of the 8th-row subsample, then the
   in-memory Newton polish; attributes as for the other scales.

Boundary cases the in-memory fit solves by an exact LAD linear programme on
all rows (at most two rows of positive weight per coefficient, or a fixed
point collapsing to zero: :func:`skrobust._scale.exact_lad_scale_fit`)
take the same steps on dask (:meth:`_LadFit.exact_lad_scale_fit`): the
exact LAD fit is a dask exact quantile fit from the start, the scale is
:func:`skrobust._scale.initial_scale` of its residuals by a distributed
selection (and their RMS by two passes when more than half are zero), and
the fixed-scale fit on all rows is the in-memory multilevel solve (every
8th row first on large problems), then the Newton polish. A LAD fit that
interpolates every row of positive weight (with ``alpha > 0``) hands over
to the MAD scale's fixed point, as in memory
(:mod:`skrobust._dask_mad_scale`).
"""

from functools import partial

import numpy as np

from . import _dask_far_targets as far
from . import _solvers
from ._base import (
    _DIRECT_LSTSQ_ELEMENTS,
    _LAD_START_ROWS,
    ITERATIVE_MIN_COEF,
    MAD_NORMAL_CONSTANT,
    StandardisedFit,
    _normal_equations_start,
    _solve_least_squares,
    copy_budget,
    least_absolute_deviation_start,
)
from ._dask import (
    RowValues,
    _chunk_weights,
    _ChunkSetup,
    robust_scale,
    weighted_median,
)
from ._dask_far_targets import FarClippedSetup
from ._dask_lad_start import least_squares_by_lsqr, reweighted_start
from ._dask_mad_scale import mad_scale_fit
from ._dask_strided import StridedData, StridedObjective, rows_kernel, rows_of
from ._objective import LinearObjective
from ._scale import (
    _FEW_ROWS_PER_COEF,
    EXACT_FIT_TOL,
    LAD_BANDWIDTH,
    LAD_SCALE_RTOL,
    LAD_SMALL_SCALE,
    MIN_RELATIVE_SCALE,
    _lad_fixed_point,
    _newton_polish,
    fixed_scale_start,
    initial_scale,
)
from ._solvers import min_norm_solve
from .losses import FixedScaleLoss, SmoothedPinballRho, SquaredRho


def _positive_rows_kernel(X_c, y_c, w_c):
    return int(np.count_nonzero(_chunk_weights(y_c, w_c) > 0))


def _inexact_rows_kernel(X_c, y_c, w_c, values):
    """How many rows of positive weight ``values`` (``|r|``) does not fit exactly."""
    fitted = values(X_c, y_c)[_chunk_weights(y_c, w_c) > 0]
    return int(np.count_nonzero(fitted > EXACT_FIT_TOL))


def _exact_kernel(X_c, y_c, w_c, offset, spread, coef, intercept):
    """Whether least squares fits every row with weight of the chunk exactly."""
    values = RowValues(offset, spread, coef, intercept)(X_c, y_c)
    return bool(np.all(values[_chunk_weights(y_c, w_c) > 0] <= EXACT_FIT_TOL))


def start_rows_least_squares(ls, budget):
    """:func:`skrobust._base.least_squares_start`'s solve, on the start rows ``ls``.

    From the normal equations where the in-memory start forms them (at most
    ``ITERATIVE_MIN_COEF`` coefficients and more than
    ``_DIRECT_LSTSQ_ELEMENTS`` design elements, unless they are not clearly
    positive definite or the fit is near exact), else by ``lstsq`` on the
    rows, as in memory.
    """
    coef = None
    if (
        ls.n_coef <= ITERATIVE_MIN_COEF
        and ls.n_samples * ls.n_coef > _DIRECT_LSTSQ_ELEMENTS
    ):
        ls.null_cache = {}  # (where the start leaves its Gram matrix)
        coef = _normal_equations_start(ls)
    if coef is None:
        coef = _solve_least_squares(ls, direct=True, budget=budget)
    return coef


class _LadFit:
    """One output's ``scale="lad"`` fit on dask data, in standardised units.

    Follows :meth:`MEstimatorRegressor._fit_standardised` and
    :meth:`LADScale.solve` stage by stage (see the module docstring).
    ``used`` counts the iterations of ``n_iter_`` (the fixed-scale fit's);
    ``preliminary`` those of the smoothed LAD fits, which have a budget of
    their own, as in memory.
    """

    # Whether the solvers' small strided levels are fetched to the client
    # (:class:`~skrobust._dask_strided.StridedObjective`).
    fetch_levels = False

    def __init__(self, estimator, data, stats, start_rows, offset, spread):
        self.estimator, self.data, self.stats = estimator, data, stats
        self.start_rows, self.offset, self.spread = start_rows, offset, spread
        self.fit_intercept = estimator.fit_intercept
        self.rho = estimator._rho()
        # As _fit_standardised: l2 = 2 alpha / (sum of the weights).
        self.l2 = 2.0 * estimator.alpha / (stats[0] * stats[1])
        self.options = _solvers.SolverOptions(
            _solvers.choose_solver(estimator.solver, data.n_features + 2),
            estimator.max_iter,
            estimator.tol,
            convex=True,
        )
        self.used = self.preliminary = 0
        # The far-target guard's start (_dask_far_targets.Start), when on.
        self.clip = None
        y = (start_rows.y - offset) / spread
        y[~(start_rows.weights > 0)] = 0.0
        self.start_y = y

    def client_objective(self, loss, l2, predictors=None):
        """``loss`` on the start rows, in the coordinates of all the rows.

        ``predictors`` and their penalties, if given, as ``[(spec, l2), ...]``
        (default: the coefficients and intercept, penalised by ``l2``).
        """
        if predictors is None:
            predictors = [((None, self.fit_intercept), l2)]
        return LinearObjective(
            loss,
            self.start_rows.X,
            self.start_y,
            self.start_rows.weights,
            [spec for spec, _ in predictors],
            [penalty for _, penalty in predictors],
            column_stats=self.stats[2],
        )

    def rows_weight(self, step):
        """The weight of every ``step``-th row (a round trip the first time)."""
        if step <= 1:
            return self.stats[0]
        return rows_of(self.data, step, self.stats[1])[1]

    def objective(self, loss, l2, step=1):
        """``loss`` on every ``step``-th row of all the data (all for 1)."""
        return self.strided_objective(self.client_objective(loss, l2), step)

    def strided_objective(self, template, step=1):
        """``template``'s objective on every ``step``-th row of all the data."""
        loss, weight = template.loss, self.rows_weight(step)
        setup = _ChunkSetup(
            loss,
            template.predictor_spec,
            self.stats[2],
            self.offset,
            self.spread,
            self.stats[1],
        )
        if self.clip is not None:
            setup = FarClippedSetup(setup, self.clip)
        objective = StridedObjective(
            self.data, weight, self.stats[1], template, setup, step, self.fetch_levels
        )
        if step <= 1 and self.start_rows.y.size == self.data.n_samples:
            objective.local = template  # (the start rows are all the rows)
        return objective

    def centred_mad(self, objective, coef):
        """:func:`skrobust._scale.centred_mad_scale` of ``objective``'s rows."""
        ((w, b),) = objective.unstandardize(coef)
        rows, sum_weight, top = objective.data, objective.sum_weight, self.stats[1]
        hint = self.start_rows.hint
        values = RowValues(self.offset, self.spread, w, b, absolute=False)
        centre = weighted_median(rows, values, sum_weight, top, hint(values))
        values = RowValues(self.offset, self.spread, w, b + centre)
        mad = weighted_median(rows, values, sum_weight, top, hint(values))
        return mad / MAD_NORMAL_CONSTANT

    def start(self, warm):
        """``(coef, scale, exact)``: the in-memory start, in standardised units.

        ``exact`` is ``(w, b)`` when least squares fits every row with
        weight (then the fit, as in memory), else None. ``warm`` is a
        previous fit in standardised units.
        """
        ls = self.client_objective(FixedScaleLoss(SquaredRho()), self.l2)
        if warm is not None:
            coef = ls.standardize([(warm.coef, warm.intercept)])
            return coef, float(warm.extras["scale_"]), None
        budget = copy_budget(self.data.X)
        if not self.start_rows.weights.max(initial=0.0) > 0:
            return self.start_from_all_rows(budget)
        coef = start_rows_least_squares(ls, budget)
        if self.l2 == 0 and self.least_squares_is_exact(ls, coef):
            ((w, b),) = ls.unstandardize(coef)
            return coef, 0.0, (w, b)
        coef = least_absolute_deviation_start(
            ls, coef, self.fit_intercept, self.l2, budget
        )
        residuals = ls.y - ls.raw_prediction(coef)[:, 0]
        return coef, initial_scale(residuals, ls.sample_weight), None

    def start_from_all_rows(self, budget):
        """:meth:`start` when the start rows carry no weight: all rows, as in memory.

        Least squares from the normal equations of one pass (the in-memory
        fit forms them too on large problems, or solves them from a copy),
        or beyond ``ITERATIVE_MIN_COEF`` coefficients by the in-memory LSQR,
        a pass a product (:func:`~skrobust._dask_lad_start.least_squares_by_lsqr`);
        its exact-fit test on all rows; the reweighted L1 start on the
        strided rows ``least_absolute_deviation_start`` takes of all rows,
        fetched once (about ``_LAD_START_ROWS``), or, when those carry no
        weight either, on all rows (:mod:`skrobust._dask_lad_start`); the
        scale of its residuals on all rows by a distributed selection.
        """
        objective = self.objective(FixedScaleLoss(SquaredRho()), self.l2)
        if objective.n_coef > ITERATIVE_MIN_COEF:
            coef = least_squares_by_lsqr(self.data, objective)
        else:
            _, grad, hess = objective.loss_gradient_hessian(np.zeros(objective.n_coef))
            coef = min_norm_solve(hess, -grad)
        ((w, b),) = objective.unstandardize(coef)
        if self.l2 == 0 and all(
            self.data.map_chunks(_exact_kernel, self.offset, self.spread, w, b)
        ):
            return coef, 0.0, (w, b)
        n_coef = objective.n_coef
        rows = min(_LAD_START_ROWS, max(budget // n_coef, 50 * n_coef))
        step = -(-self.data.n_samples // rows)
        strided = StridedData(self.data, step)
        parts = strided.map_chunks(rows_kernel)
        X, y, weights = (np.concatenate([part[k] for part in parts]) for k in range(3))
        if not weights.max(initial=0.0) > 0:
            # As in memory: the L1 start reweights all rows, a pass a step.
            coef = reweighted_start(self, objective, coef)
            ((w, b),) = objective.unstandardize(coef)
            values = RowValues(self.offset, self.spread, w, b)
            scale = robust_scale(self.data, self.stats, self.start_rows, values)
            return coef, scale, None
        y = (y - self.offset) / self.spread
        weights = weights / self.stats[1]
        y[~(weights > 0)] = 0.0
        l1_rows = LinearObjective(
            FixedScaleLoss(SquaredRho()),
            X,
            y,
            weights,
            [(None, self.fit_intercept)],
            [self.l2],
            column_stats=self.stats[2],
        )
        coef = least_absolute_deviation_start(
            l1_rows, coef, self.fit_intercept, self.l2, budget
        )
        ((w, b),) = objective.unstandardize(coef)
        values = RowValues(self.offset, self.spread, w, b)
        return coef, robust_scale(self.data, self.stats, self.start_rows, values), None

    def least_squares_is_exact(self, ls, coef):
        """:meth:`MEstimatorRegressor._least_squares_is_exact`, on all rows."""
        residuals = ls.y - ls.raw_prediction(coef)[:, 0]
        if not np.all(np.abs(residuals[ls.sample_weight > 0]) <= EXACT_FIT_TOL):
            return False
        if self.start_rows.y.size == self.data.n_samples:
            return True
        ((w, b),) = ls.unstandardize(coef)
        parts = self.data.map_chunks(_exact_kernel, self.offset, self.spread, w, b)
        return all(parts)

    def smoothed_fit(self, step, coef, scale, hessian, origin, tol):
        """:func:`skrobust._scale._smoothed_lad_fit` on every ``step``-th row."""
        loss = FixedScaleLoss(SmoothedPinballRho(0.5, LAD_BANDWIDTH), scale)
        objective = self.objective(loss, 0.0, step)
        # Convex (a smoothed absolute loss), as in memory: Newton's own
        # damped loop, not scipy's trust region.
        options = _solvers.SolverOptions(
            solver=self.options.solver,
            max_iter=max(self.options.max_iter - self.preliminary, 0),
            tol=tol,
            convex=True,
        )
        result = _solvers.solve(
            objective,
            coef,
            options,
            multilevel=False,
            hessian=hessian,
            hessian_origin=origin,
        )
        self.preliminary += result.n_iter
        return result, self.centred_mad(objective, result.coef)

    def fixed_point(self, step, coef, scale, tol):
        """:func:`skrobust._scale._lad_fixed_point` on every ``step``-th row."""

        def exhausted():
            return self.preliminary >= self.options.max_iter

        fit = partial(self.smoothed_fit, step)
        return _lad_fixed_point(fit, exhausted, coef, scale, tol, self.options.max_iter)

    def smoothed_lad_scale(self, coef, scale):
        """:func:`skrobust._scale.smoothed_lad_scale`: ``(coef, scale, settled)``."""
        tol = self.options.tol
        n, n_coef = self.data.n_samples, self.data.n_features + self.fit_intercept
        step = _solvers.SUBSAMPLE_STEP
        if (
            n < _solvers.SUBSAMPLE_MIN_ROWS
            or n < _solvers.SUBSAMPLE_MIN_ROWS_PER_COEF * n_coef
            or not self.rows_weight(step) > 0
        ):
            found = self.fixed_point(1, coef, scale, tol)
            return None if found is None else (found[0], found[1], found[3])
        found = self.fixed_point(step, coef, scale, _solvers.SUBSAMPLE_TOL)
        if found is None:
            return None
        coef, scale, hessian, settled = found
        result, mad = self.smoothed_fit(1, coef, scale, hessian, "subsample", tol)
        if not mad > MIN_RELATIVE_SCALE:
            return None
        return result.coef, mad, settled and result.converged

    def fit_from_lad(self, coef, scale, other=None):
        """:func:`skrobust._scale._fit_from_lad`: ``(w, b, converged, message)``."""
        objective = self.objective(FixedScaleLoss(self.rho, scale), self.l2)
        coef, hessian, origin = fixed_scale_start(
            objective, coef, other, self.options.solver
        )
        return self.solve_and_polish(
            objective, coef, multilevel=False, hessian=hessian, hessian_origin=origin
        )

    def solve_and_polish(self, objective, coef, **solve_options):
        """A fixed-scale solve within the budget left, then the Newton polish.

        ``solve_options`` are :func:`skrobust._solvers.solve`'s. Returns
        ``(w, b, converged, message)``.
        """
        result = _solvers.solve(
            objective,
            coef,
            self.options.with_max_iter(max(self.options.max_iter - self.used, 0)),
            **solve_options,
        )
        self.used += result.n_iter
        coef = result.coef
        if result.converged:
            # On the solve's latest Hessian and gradient, as in memory: the
            # polish then costs one or two round trips for gradients, not
            # one more for a Hessian.
            coef = _newton_polish(
                self, objective, coef, result.hessian, result.gradient
            )
        ((w, b),) = objective.unstandardize(coef)
        return w, b, result.converged, result.message

    def exact_lad_scale_fit(self, coef, scale):
        """:func:`skrobust._scale.exact_lad_scale_fit`, on dask.

        Returns ``(w, b, scale, converged, message)``, as :meth:`solve`.

        ``coef`` and ``scale`` are the start (standardised).
        """
        from ._dask_joint_boundary import exact_lad_fit

        ls = self.client_objective(FixedScaleLoss(SquaredRho()), self.l2)
        ((w, b),) = ls.unstandardize(coef)
        w, b = exact_lad_fit(
            self.data, (self.offset, self.spread), self.fit_intercept, w, b
        )
        values = RowValues(self.offset, self.spread, w, b)
        if not sum(self.data.map_chunks(_inexact_rows_kernel, values)) > 0:
            # The LAD fit interpolates: its residuals carry no scale, so the
            # MAD fixed point provides it, from the start, as in memory.
            return mad_scale_fit(self, coef, scale)
        scale = robust_scale(self.data, self.stats, self.start_rows, values)
        # As _fixed_scale_fit: from the given start, a multilevel solve.
        objective = self.objective(FixedScaleLoss(self.rho, scale), self.l2)
        w, b, converged, message = self.solve_and_polish(objective, coef)
        return w, b, scale, converged, message

    def solve(self, coef, scale):
        """:meth:`LADScale.solve`: ``(w, b, scale, converged, message)``."""
        positive = sum(self.data.map_chunks(_positive_rows_kernel))
        n_coef = self.data.n_features + self.fit_intercept
        if positive <= _FEW_ROWS_PER_COEF * n_coef:
            return self.exact_lad_scale_fit(coef, scale)
        first = min(scale, 1.0)
        found = self.smoothed_lad_scale(coef, first)
        if found is None or not found[1] > LAD_SMALL_SCALE * first:
            return self.exact_lad_scale_fit(coef, scale)
        lad_coef, lad_scale, settled = found
        other = None
        if abs(lad_scale - scale) <= LAD_SCALE_RTOL * lad_scale:
            # A warm start's scale is the fixed point to the same tolerance.
            lad_scale, other = scale, coef
        w, b, converged, message = self.fit_from_lad(lad_coef, lad_scale, other)
        if not settled:
            converged, message = False, "the LAD scale's fixed point did not settle"
        return w, b, lad_scale, converged, message


def _solve_guarded(problem, coef, scale, guard):
    """:meth:`_LadFit.solve`, with far targets moved in when that is exact.

    See :func:`skrobust._dask._solve_guarded`; the start is the in-memory
    one, so the moved rows are the in-memory ones.
    """
    stats, (offset, spread) = problem.stats, (problem.offset, problem.spread)
    if not (guard and far.guard_applies(problem.rho, stats, offset, spread)):
        return problem.solve(coef, scale)
    ls = problem.client_objective(FixedScaleLoss(SquaredRho()), problem.l2)
    ((w0, b0),) = ls.unstandardize(coef)
    problem.clip = far.Start(w0, b0, offset, spread)
    fit = problem.solve(coef, scale)
    margin = problem.rho.saturation * fit[2]
    if far.moved_rows_keep_sides(problem.data, problem.clip, fit[0], fit[1], margin):
        return fit
    problem.clip, problem.used, problem.preliminary = None, 0, 0
    return problem.solve(coef, scale)


def _standardised_warm(estimator, output, n_outputs, n_features, offset, spread):
    """The previous fit of this output in standardised units, or None."""
    warm = estimator._warm_start_fit(output, n_outputs, n_features)
    if warm is None:
        return None
    intercept = warm.intercept - offset if estimator.fit_intercept else 0.0
    return StandardisedFit(
        warm.coef / spread,
        intercept / spread,
        0,
        estimator._standardise_extras(warm.extras, offset, spread),
    )
