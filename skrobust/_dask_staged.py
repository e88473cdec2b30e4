r"""The in-memory fit's start and objectives for M-estimators on dask (issue #15).

:meth:`skrobust.MEstimatorRegressor._fit_standardised` starts every scale
rule the same way, and :class:`StagedFit` does that on dask data:

- the rows of the in-memory least-squares start (every
  ``n // LEAST_SQUARES_START_ROWS``-th, all for small ``n``) are on the
  client, fetched with the statistics pass, and ``y`` is standardised by
  its exact distributed median and MAD;
- :meth:`StagedFit.start` makes the in-memory start from them: least
  squares (from the normal equations where memory forms them), its
  exact-fit shortcut checked on all rows, the reweighted L1 start and the
  robust scale of its residuals; when the start rows carry no weight, as in
  memory, from all rows (:meth:`StagedFit.start_from_all_rows`);
- :meth:`StagedFit.objective` is a loss on every ``step``-th row of all the
  data, a :class:`~skrobust._dask_strided.StridedObjective` whose
  subsamples stride all the data, so the in-memory solvers take memory's
  levels; :meth:`StagedFit.solve_and_polish` is the fixed-scale solve and
  the Newton polish.

The scale rules' solves are subclasses': ``scale="lad"`` in
:mod:`skrobust._dask_lad`, the others in :mod:`skrobust._dask_mestimator`;
:func:`solve_guarded` moves far targets in around either, as in memory.
"""

import dataclasses

import numpy as np

from . import _dask_far_targets as far
from . import _solvers
from ._base import (
    _DIRECT_LSTSQ_ELEMENTS,
    ITERATIVE_MIN_COEF,
    StandardisedFit,
    _normal_equations_start,
    _solve_least_squares,
    copy_budget,
    lad_start_step,
    least_absolute_deviation_start,
)
from ._dask_chunks import _chunk_weights
from ._dask_far_targets import FarClippedSetup
from ._dask_lad_start import least_squares_by_lsqr, reweighted_start
from ._dask_median import RowValues, robust_scale
from ._dask_objective import _ChunkSetup
from ._dask_strided import StridedData, StridedObjective, rows_kernel, rows_of
from ._linalg import min_norm_solve
from ._objective import LinearObjective
from ._scale import EXACT_FIT_TOL, _newton_polish, fast_for_newton, initial_scale
from .losses import FixedScaleLoss, SquaredRho


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
        coef = _solve_least_squares(ls, direct=True, budget=budget, loose=True)
    return coef


class StagedFit:
    """One output's M-estimator fit on dask data, in standardised units.

    The start and objectives of every scale rule (see the module); a
    subclass's ``solve(coef, scale)`` is its scale rule, returning ``(w, b,
    scale, converged, message)``. ``used`` counts the iterations of
    ``n_iter_``; ``preliminary`` those of preliminary fits with a budget of
    their own (the LAD scale's smoothed fits), as in memory.
    """

    # Whether the solvers' small strided levels are fetched to the client
    # (:class:`~skrobust._dask_strided.StridedObjective`).
    fetch_levels = False
    # The medians of absolute residuals its passes on all rows bracket
    # (a skrobust._dask_brackets.ResidualMedians), where a subclass keeps them.
    residual_medians = None

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
        """``loss`` on every ``step``-th row of all the data (all for 1).

        A fixed-scale loss with its fast terms for Newton's method, as in
        memory (:func:`skrobust._scale.fast_for_newton`).
        """
        loss = fast_for_newton(loss, self.options.solver)
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
            template.pinned,
        )
        if self.clip is not None:
            setup = FarClippedSetup(setup, self.clip)
        objective = StridedObjective(
            self.data, weight, self.stats[1], template, setup, step, self.fetch_levels
        )
        if step <= 1 and self.start_rows.y.size == self.data.n_samples:
            objective.local = template  # (the start rows are all the rows)
        return objective

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
        step = lad_start_step(self.data.n_samples, objective.n_coef, budget)
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

    def solve_and_polish(self, objective, coef, tol=None, **solve_options):
        """A fixed-scale solve within the budget left, then the Newton polish.

        To ``tol`` (default the options'; the fixed-scale fits pass
        :func:`skrobust._scale.fixed_scale_tol`'s, as in memory).
        ``solve_options`` are :func:`skrobust._solvers.solve`'s. Returns
        ``(w, b, converged, message)``.
        """
        options = self.options.with_max_iter(max(self.options.max_iter - self.used, 0))
        if tol is not None:
            options = dataclasses.replace(options, tol=tol)
        result = _solvers.solve(objective, coef, options, **solve_options)
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


def solve_guarded(problem, coef, scale, guard):
    """``problem.solve``, with far targets moved in when that is exact.

    As ``MEstimatorRegressor._solve_guarded`` (see
    :mod:`skrobust._dask_far_targets`): from a cold start, when some target
    is far enough, the fit with the far targets moved in, kept if every
    moved row stays beyond the loss's saturation on its side; else the fit
    again, unclipped (its iterations alone counted). The start is the
    in-memory one, so the moved rows are the in-memory ones.
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


def standardised_warm(estimator, output, n_outputs, n_features, offset, spread):
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
