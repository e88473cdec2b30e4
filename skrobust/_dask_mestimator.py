r"""M-estimators on row-chunked ``dask.array`` data, stage by stage as in memory.

Every scale rule takes the in-memory fit's path
(:meth:`skrobust.MEstimatorRegressor._fit_standardised`) from the same start,
so that the coefficients, the scale and ``n_iter_`` are memory's:

1. **Checks, statistics, start rows**: :func:`skrobust._dask.start_rows_setup`
   fetches the rows of the in-memory least-squares start (every
   ``n // LEAST_SQUARES_START_ROWS``-th, all for small ``n``); the exact
   distributed median and MAD of ``y`` standardise it.
2. **The start on the client**: least squares, its exact-fit shortcut, the
   reweighted L1 start and the MAD of its residuals, by the in-memory
   functions (:meth:`skrobust._dask_staged.StagedFit.start`).
3. **The scale rule's solve on the workers**, as :mod:`skrobust._scale`
   takes it:

   - ``scale="lad"``: :meth:`skrobust._dask_lad._LadFit.solve`;
   - ``scale="mad"``: the secant of :meth:`skrobust._scale_mad.MADScale.solve`
     (:func:`skrobust._dask_mad_scale.mad_scale_fit`);
   - a fixed scale: the fixed-scale objective on all rows, solved by the
     in-memory multilevel solver, then the Newton polish
     (:func:`skrobust._scale._fixed_scale_fit`), from the exact LAD fit
     where the scale is far below the spread of ``y``
     (:meth:`ScaleRuleFit.fixed_scale_fit`);
   - ``scale="joint"``: :meth:`skrobust._scale.JointScale.solve`, its
     boundary ``sigma = 0`` by :mod:`skrobust._dask_joint_boundary`
     (:func:`joint_fit`).

   The objectives are :class:`~skrobust._dask_strided.StridedObjective`
   whose ``subsample(step)`` is every ``step``-th row by global index: the
   solvers take memory's levels (every ``SUBSAMPLE_STEP``-th row, 11, from
   5 000 rows and 275 rows per coefficient, recursively), each evaluation
   one round trip, and a level
   of at most ``FETCHED_LEVEL_ROWS`` rows one round trip in all.
4. **Attributes** as for every M-estimator
   (:func:`skrobust._dask.residual_attributes`).
"""

import numpy as np

from . import _progress, _solvers
from ._dask import residual_attributes, standardise_targets, start_rows_setup
from ._dask_brackets import ResidualMedians
from ._dask_chunks import _chunk_weights
from ._dask_lad import _LadFit
from ._dask_median import RowValues, plausible_warm, robust_scale
from ._dask_staged import StagedFit, solve_guarded, standardised_warm
from ._scale import (
    _COLLAPSED_SCALE,
    _FEW_ROWS_PER_COEF,
    fixed_scale_tol,
    interpolating_boundary,
    penalised_start_scale,
    starts_from_exact_lad,
)
from .losses import ConcomitantScaleLoss, FixedScaleLoss, SquaredRho


class ScaleRuleFit(StagedFit):
    """One output's fit with the joint, MAD or a fixed scale, in standardised units.

    A :class:`~skrobust._dask_staged.StagedFit` (the in-memory start,
    objectives and fixed-scale solve) whose :meth:`solve` is the
    estimator's scale rule.
    ``used`` counts the iterations of ``n_iter_``.
    """

    fetch_levels = True

    def __init__(self, estimator, data, stats, start_rows, offset, spread):
        super().__init__(estimator, data, stats, start_rows, offset, spread)
        self.rule = estimator._scale_rule()
        # As _fit_standardised: the joint objective is in the units of y.
        if self.rule.l2_in_y_units:
            self.l2 *= spread
        self.y_map = offset, spread
        # The medians of the absolute residuals that the passes on all rows
        # found near the optimum: the MAD scale's and noise_scale_.
        self.residual_medians = ResidualMedians(
            data, stats, start_rows, offset, spread, estimator.tol
        )

    def strided_objective(self, template, step=1):
        """As in ``StagedFit``; on all rows, with the residual medians."""
        objective = super().strided_objective(template, step)
        if step <= 1:
            objective.residual_medians = self.residual_medians
        return objective

    def template_for_maps(self):
        """A client objective with the coordinate maps of the coefficients."""
        return self.client_objective(FixedScaleLoss(SquaredRho()), self.l2)

    def solve(self, coef, scale):
        """The scale rule's solve: ``(w, b, scale, converged, message)``."""
        from ._dask_mad_scale import mad_scale_fit

        if self.rule.name == "fixed":
            return self.fixed_scale_fit(coef)
        if self.rule.name == "mad":
            return mad_scale_fit(self, coef, scale)
        return joint_fit(self, coef, scale)

    def fixed_scale_fit(self, coef):
        """:meth:`skrobust._scale.FixedScale.solve`, as :meth:`solve` returns.

        As in memory: from the exact LAD fit (a dask exact quantile fit)
        where :func:`~skrobust._scale.starts_from_exact_lad`, to the
        tolerance of :func:`~skrobust._scale.fixed_scale_tol`.
        """
        from ._dask_joint_boundary import exact_lad_fit

        scale = self.rule.value / self.spread
        if starts_from_exact_lad(self.rho, scale, self.l2):
            maps = self.template_for_maps()
            ((w, b),) = maps.unstandardize(coef)
            w, b = exact_lad_fit(self.data, self.y_map, self.fit_intercept, w, b)
            coef = maps.standardize([(w, b)])
        objective = self.objective(FixedScaleLoss(self.rho, scale), self.l2)
        tol = fixed_scale_tol(self.rho, scale, self.options.tol)
        w, b, converged, message = self.solve_and_polish(objective, coef, tol)
        return w, b, scale, converged, message


def _top_weights_kernel(X_c, y_c, w_c, k, top):
    """The chunk's ``k`` largest positive weights, divided by ``top``."""
    weights = _chunk_weights(y_c, w_c) / top
    weights = weights[weights > 0]
    return np.sort(weights)[-k:]


def boundary_may_be_optimal(problem):
    """:func:`skrobust._scale._boundary_may_be_optimal` over all rows.

    ``T``, the weight of the ``n_coef`` heaviest rows, is at most ``n_coef``
    (weights divided by the largest): where ``(S - n_coef)(2L - 1) > n_coef``
    the condition fails without a pass; else one pass brings each chunk's
    ``n_coef`` largest weights.
    """
    n_coef = problem.data.n_features + problem.fit_intercept
    excess = 2.0 * problem.rho.z_psi_minus_rho_limit - 1.0
    total = problem.stats[0]
    if (total - n_coef) * excess > n_coef:
        return False
    parts = problem.data.map_chunks(_top_weights_kernel, n_coef, problem.stats[1])
    heaviest = np.sort(np.concatenate(list(parts)))[-n_coef:].sum()
    return bool((total - heaviest) * excess <= heaviest)


def joint_fit(problem, coef, scale):
    """:meth:`skrobust._scale.JointScale.solve`: ``(w, b, scale, converged, message)``.

    ``problem`` is a :class:`ScaleRuleFit`; ``coef`` and ``scale`` the start,
    in its standardised units.
    """
    from ._dask_joint_boundary import collapsed_scale_fit, penalised_boundary_optimal

    n_coef = problem.data.n_features + problem.fit_intercept
    few_rows = problem.data.n_samples <= _FEW_ROWS_PER_COEF * n_coef
    collapsed_start = not scale > 0  # a warm start from sigma = 0
    maps = problem.template_for_maps()
    ((w, b),) = maps.unstandardize(coef)
    if collapsed_start:  # as _positive_scale
        values = RowValues(problem.offset, problem.spread, w, b)
        scale = robust_scale(problem.data, problem.stats, problem.start_rows, values)
    scale = penalised_start_scale(scale, problem.l2)
    unpenalised = problem.estimator.alpha == 0
    if (
        not unpenalised
        and few_rows
        and problem.start_rows.y.size == problem.data.n_samples
    ):
        # As in memory: a ridge's interpolant, on the client's rows, which
        # are all the rows below 20 000. (Beyond, at least 10 000 columns:
        # not tried, Newton's method approaches it as memory's once did.)
        boundary = interpolating_boundary(maps, problem.rho)
        if boundary is not None:
            return boundary.w, boundary.b, 0.0, True, ""
    if unpenalised and (
        few_rows or collapsed_start or boundary_may_be_optimal(problem)
    ):
        boundary = collapsed_scale_fit(problem, w, b)
        if boundary is not None:
            return (*boundary, 0.0, True, "")
    template = problem.client_objective(
        ConcomitantScaleLoss(problem.rho),
        None,
        [((None, problem.fit_intercept), problem.l2), (((), True), 0.0)],
    )
    objective = problem.strided_objective(template)
    options = problem.options
    result = _solvers.solve(
        objective,
        np.append(coef, np.log(scale)),
        options.with_max_iter(max(options.max_iter - problem.used, 0)),
    )
    problem.used += result.n_iter
    (w, b), (_, log_scale) = objective.unstandardize(result.coef)
    scale = float(np.exp(log_scale))
    if unpenalised and (scale < _COLLAPSED_SCALE or not result.converged):
        boundary = collapsed_scale_fit(problem, w, b)
        if boundary is not None:
            return (*boundary, 0.0, True, "")
    elif scale < _COLLAPSED_SCALE and not result.converged:
        if penalised_boundary_optimal(problem, objective, result.coef, scale):
            return w, b, 0.0, True, ""
    return w, b, scale, result.converged, result.message


def fit_column(estimator, X, y, sample_weight, output, n_outputs):
    """One target column's M-estimator fit: ``(StandardisedFit, round trips)``."""
    from ._base import StandardisedFit

    data, stats, start_rows = start_rows_setup(
        X, y, sample_weight, estimator.fit_intercept
    )
    _progress.say(
        1,
        "{} rows in {} chunks: statistics and {} start rows, {} round trips",
        data.n_samples,
        data.X.numblocks[0],
        len(start_rows.y),
        data.round_trips,
    )
    offset, spread = standardise_targets(estimator, data, stats, start_rows)
    rule = estimator._scale_rule()
    problem_class = _LadFit if rule.name == "lad" else ScaleRuleFit
    problem = problem_class(estimator, data, stats, start_rows, offset, spread)
    warm = plausible_warm(
        estimator,
        output,
        n_outputs,
        data,
        stats,
        start_rows,
        offset,
        spread,
    )
    if warm is not None:
        warm = standardised_warm(
            estimator, output, n_outputs, data.n_features, offset, spread
        )
    coef, scale, exact = problem.start(warm)
    if exact is not None:
        (w, b), scale, converged, message = exact, 0.0, True, ""
    else:
        w, b, scale, converged, message = solve_guarded(
            problem, coef, scale, warm is None
        )
    _progress.say(
        1,
        "{} scale solved: {} iterations ({} preliminary), {} round trips in all",
        rule.name,
        problem.used,
        problem.preliminary,
        data.round_trips,
    )
    if not converged:
        _solvers.warn_not_converged(
            problem.options.solver, problem.used, estimator.tol, message
        )
    coef_ = np.asarray(w, dtype=np.float64) * spread
    intercept_ = float(b * spread + offset)
    scale_ = float(rule.report(scale, spread))
    # The median absolute residual at the fit, if its last pass found it.
    medians = problem.residual_medians
    median = None if medians is None else medians.median(w, b)
    extras = residual_attributes(
        estimator,
        data,
        stats,
        start_rows,
        (coef_, intercept_, scale_),
        None if median is None else median * spread,
    )
    return StandardisedFit(coef_, intercept_, problem.used, extras), data.round_trips
