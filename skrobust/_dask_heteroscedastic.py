r"""HeteroscedasticRegressor on row-chunked ``dask.array`` data.

The in-memory fit (:class:`skrobust.HeteroscedasticRegressor`) minimises
the jittered Gaussian negative log-likelihood of a linear mean and a linear
log-variance,

.. math::

    \frac{1}{S} \sum_i s_i \left[\frac{(y_i - \mu_i)^2 + \tau^2}{2\sigma_i^2}
    + \frac12 \log \sigma_i^2\right] + \frac{\lambda}{2} \lVert g \rVert^2,

after two standardisations of ``y``: the template's robust one (weighted
median and MAD) and the fit's own (weighted mean and root mean square
deviation ``s_y``, the unit of ``tau``). Here every stage runs where the
rows live, so that the coefficients and ``n_iter_`` are the in-memory ones:

1. **Checks, column statistics and target statistics**: the pass of
   :func:`skrobust._dask_statistics.data_statistics`; the exact distributed weighted
   median and MAD of ``y`` (:func:`skrobust._dask_median.weighted_median`); then
   two passes for the largest ``|y|`` and the merged weighted moments of
   ``y / max|y|`` (:func:`_mean_and_spread`).
2. **The start on the client**: the rows of the in-memory least-squares
   start (every ``n // LEAST_SQUARES_START_ROWS``-th row, or all rows for
   small ``n``) are fetched once; least squares and Harvey's log-variance
   are computed on them exactly as in memory. If least squares fits those
   rows exactly, one pass checks all rows (the in-memory shortcut of
   :func:`skrobust._heteroscedastic.exact_fit_variance`).
3. **The solver on all rows**: :func:`skrobust._solvers.minimize` on a
   :class:`~skrobust._dask_strided.StridedObjective`, each evaluation one
   fused task per chunk (the chunk's
   :class:`~skrobust._objective.LinearObjective` of the likelihood with the
   shared column statistics). Its ``subsample(step)`` is every ``step``-th
   row of all the data by global index, evaluated on the workers, so the
   multilevel start and the null-space search see the rows they see in
   memory.
4. **Attributes**: ``weights_`` and ``outliers_`` are lazy dask arrays
   with ``X``'s row chunks; the MAD of the standardised residuals is one
   more distributed selection; ``cov_type`` adds one pass of per-chunk
   weighted Gram matrices (:func:`covariance`).
"""

import numpy as np
from sklearn.utils.extmath import safe_sparse_dot

from . import _progress
from ._base import (
    MAD_NORMAL_CONSTANT,
    OUTLIER_THRESHOLD,
    StandardisedFit,
    _solve_least_squares,
    copy_budget,
)
from ._column_stats import _centred_moments, merge_moments
from ._dask import standardise_targets, start_rows_setup
from ._dask_chunks import _chunk_weights
from ._dask_median import plausible_warm, weighted_median
from ._dask_objective import _ChunkSetup
from ._dask_strided import StridedObjective
from ._heteroscedastic import (
    _EXACT_FIT_RELATIVE,
    _MAX_LOG_WEIGHT,
    HARVEY_OFFSET,
    likelihood_objective,
    rows_at_floor,
    solve_likelihood,
    variance_columns,
)
from ._linalg import min_norm_solve
from ._objective import LinearObjective
from .losses import FixedScaleLoss, SquaredRho


class _UnitTargets:
    """The in-memory map of ``y`` to the likelihood's units, per chunk.

    ``(y - offset) / spread`` (the template's robust standardisation), then
    ``(. - mean) / s_y`` on the rows with weight, 0 on the others (whose
    ``y`` may be any finite number), as
    :meth:`HeteroscedasticRegressor._fit_standardised` does.
    """

    def __init__(self, offset, spread, mean=0.0, s_y=1.0):
        self.offset, self.spread = float(offset), float(spread)
        self.mean, self.s_y = float(mean), float(s_y)

    def robust(self, y_c, weights):
        with np.errstate(over="ignore"):
            y = (np.asarray(y_c, dtype=np.float64) - self.offset) / self.spread
        y[~(weights > 0)] = 0.0
        return y

    def __call__(self, y_c, weights):
        y_std = self.robust(y_c, weights)
        positive = weights > 0
        y_unit = np.zeros_like(y_std)
        y_unit[positive] = (y_std[positive] - self.mean) / self.s_y
        return y_unit


class _LikelihoodSetup(_ChunkSetup):
    """The chunk setup of :mod:`skrobust._dask` with :class:`_UnitTargets`."""

    def __init__(self, setup, unit_targets):
        vars(self).update(vars(setup))
        self.unit_targets = unit_targets

    def targets(self, X_c, y_c, weights):
        return self.unit_targets(y_c, weights)


class _HarveySetup(_ChunkSetup):
    """Harvey's targets ``log(r^2 + tau^2)`` of a chunk's least-squares residuals.

    ``r`` of the unit targets at ``mean_coef`` (0 on the rows without
    weight), as :func:`~skrobust._heteroscedastic.harvey_start` takes them.
    """

    def __init__(self, setup, targets, start_objective, mean_coef, floor):
        vars(self).update(vars(setup))
        self.unit_targets, self.mean_coef, self.floor = targets, mean_coef, floor
        self.mean_predictors = start_objective.predictor_spec

    def targets(self, X_c, y_c, weights):
        y = self.unit_targets(y_c, weights)
        mean = LinearObjective(
            FixedScaleLoss(SquaredRho()),
            X_c,
            y,
            weights,
            self.mean_predictors,
            [0.0],
            column_stats=self.column_stats,
        )
        residuals = y - mean.raw_prediction(self.mean_coef)[:, 0]
        residuals[~(weights > 0)] = 0.0
        # log(r^2 + floor) through hypot, which cannot overflow.
        return 2.0 * np.log(np.hypot(residuals, np.sqrt(self.floor)))


# -- statistics of y ---------------------------------------------------------------


def _largest_kernel(X_c, y_c, w_c, targets):
    weights = _chunk_weights(y_c, w_c)
    y = targets.robust(y_c, weights)[weights > 0]
    return float(np.abs(y).max(initial=0.0))


def _moments_kernel(X_c, y_c, w_c, targets, top, y_max):
    """Weight, weighted mean and squared deviations of ``y_std / y_max``."""
    weights = _chunk_weights(y_c, w_c)
    positive = weights > 0
    u = targets.robust(y_c, weights)[positive] / y_max
    w = weights[positive] / top
    total = float(w.sum())
    if not total > 0:
        return 0.0, 0.0, 0.0
    mean, var = _centred_moments(u[:, None], w, total)
    return total, float(mean[0]), float(var[0]) * total


def _mean_and_spread(data, targets, top, fit_intercept):
    """:func:`skrobust._heteroscedastic._mean_and_spread` of the robust ``y``.

    Two passes: the largest ``|y|`` over rows with weight, then each
    chunk's weighted moments of ``y / max|y|``, merged on the client
    (:func:`skrobust._column_stats.merge_moments`) in place of the in-memory
    sums.
    """
    y_max = max(data.map_chunks(_largest_kernel, targets))
    if not y_max > 0:
        return 0.0, 1.0
    parts = data.map_chunks(_moments_kernel, targets, top, y_max)
    total, mean, m2 = merge_moments(parts)
    if fit_intercept:
        spread = float(np.sqrt(m2 / total))
    else:
        # The root mean square about 0: squared deviations plus the mean's.
        spread = float(np.sqrt(m2 / total + mean * mean))
        mean = 0.0
    if not spread > 0:
        spread = abs(mean)
    return mean * y_max, spread * y_max


# -- the start ---------------------------------------------------------------------


def _exact_kernel(X_c, y_c, w_c, targets, coef, intercept, top):
    """Largest ``|r|`` over rows with weight, and ``sum s r^2``, of least squares."""
    weights = _chunk_weights(y_c, w_c)
    positive = weights > 0
    residuals = targets(y_c, weights) - safe_sparse_dot(X_c, coef) - intercept
    residuals = residuals[positive]
    w = weights[positive] / top
    return float(np.abs(residuals).max(initial=0.0)), float(w @ residuals**2)


def _exact_fit_variance(data, stats, targets, start, mean, floor, subsampled):
    """:func:`skrobust._heteroscedastic.exact_fit_variance` over all rows."""
    objective, coef, residuals = start
    if not floor > 0:
        return None
    tolerance = _EXACT_FIT_RELATIVE * np.sqrt(floor)
    if not np.all(np.abs(residuals) <= tolerance):
        return None
    if not subsampled:
        weights = objective.sample_weight
        return floor + weights @ residuals**2 / weights.sum()
    w, b = mean
    parts = data.map_chunks(_exact_kernel, targets, w, b, stats[1])
    if not max(part[0] for part in parts) <= tolerance:
        return None
    return floor + sum(part[1] for part in parts) / stats[0]


def _start_objective(data, stats, sample, targets, fit_intercept):
    """The least-squares objective on the start's rows (the client's sample)."""
    y = targets(sample.y, sample.weights)
    return LinearObjective(
        FixedScaleLoss(SquaredRho()),
        sample.X,
        y,
        sample.weights,
        [(None, fit_intercept)],
        [0.0],
        column_stats=stats[2],
    )


def _start_residuals(start_objective, mean_coef):
    """Least-squares residuals on the start's rows, 0 where the weight is 0."""
    residuals = start_objective.y - start_objective.raw_prediction(mean_coef)[:, 0]
    residuals[~(start_objective.sample_weight > 0)] = 0.0
    return residuals


def _warm_start(estimator, warm, var_cols, robust, unit):
    """The previous fit (in ``y`` units) as ``[(b, b0), (g, g0)]`` in ``s_y`` units."""
    offset, spread = robust
    intercept = warm.intercept - offset if estimator.fit_intercept else 0.0
    standardised = StandardisedFit(
        warm.coef / spread,
        intercept / spread,
        0,
        estimator._standardise_extras(warm.extras, offset, spread),
    )
    return estimator._warm_params(standardised, var_cols, *unit, spread)


def _floor_kernel(X_c, y_c, w_c, setup, coef, variance_floor):
    """The chunk's :func:`~skrobust._heteroscedastic.rows_at_floor`."""
    objective, _ = setup.objective(X_c, y_c, w_c)
    if objective is None:
        return 0
    return rows_at_floor(objective, coef, variance_floor)


class _LikelihoodObjective(StridedObjective):
    """The likelihood on all rows; counts its rows at the floor where they live."""

    def rows_at_floor(self, coef, variance_floor):
        """:func:`~skrobust._heteroscedastic.rows_at_floor` summed over chunks."""
        parts = self.data.map_chunks(_floor_kernel, self.setup, coef, variance_floor)
        return int(sum(parts))


class _Problem:
    """The data, statistics, sample and target maps of one output's fit."""

    def __init__(self, estimator, X, y, sample_weight):
        self.estimator = estimator
        # The sample: the rows of the in-memory least-squares start.
        data, stats, sample = start_rows_setup(
            X, y, sample_weight, estimator.fit_intercept
        )
        self.data, self.stats, self.sample = data, stats, sample
        self.var_cols = variance_columns(estimator.variance_features, data.n_features)
        sum_weight, top = stats[0], stats[1]
        offset, spread = standardise_targets(estimator, data, stats, sample)
        self.robust = offset, spread
        unit = _mean_and_spread(
            data, _UnitTargets(offset, spread), top, estimator.fit_intercept
        )
        self.unit = unit
        self.targets = _UnitTargets(offset, spread, *unit)
        # As maximise_likelihood: l2 = 2 alpha / S, S the sum of the weights.
        self.l2 = 2.0 * (estimator.alpha / top) / sum_weight

    def likelihood(self):
        """The likelihood on all rows, its template on the sample rows."""
        sample = self.sample
        template = likelihood_objective(
            self.estimator,
            sample.X,
            self.targets(sample.y, sample.weights),
            sample.weights,
            self.var_cols,
            self.l2,
            self.stats[2],
        )
        return self.distributed(
            template, _LikelihoodSetup, self.targets, kind=_LikelihoodObjective
        )

    def distributed(self, template, setup_class, *targets, kind=StridedObjective):
        """``template``'s objective on all rows, targets by ``setup_class``."""
        sum_weight, top = self.stats[0], self.stats[1]
        setup = _ChunkSetup(
            template.loss,
            template.predictor_spec,
            template.column_stats,
            0.0,
            1.0,
            top,
            template.pinned,
        )
        setup = setup_class(setup, *targets)
        # (A strided level of at most FETCHED_LEVEL_ROWS is solved on the client.)
        return kind(self.data, sum_weight, top, template, setup, 1, True)

    def exact_fit(self, start_objective, mean_coef, residuals, subsampled):
        """:meth:`maximise`'s answer when least squares fits exactly, else None.

        The least-squares mean with a constant variance (see
        :func:`_exact_fit_variance`; ``residuals`` those of the start rows,
        whose test ``subsampled`` says to repeat on all rows), and no
        iterations.
        """
        mean = start_objective.unstandardize(mean_coef)[0]
        exact_variance = _exact_fit_variance(
            self.data,
            self.stats,
            self.targets,
            (start_objective, mean_coef, residuals),
            mean,
            self.estimator.variance_floor,
            subsampled,
        )
        if exact_variance is None:
            return None
        p = self.data.n_features
        n_var = p if self.var_cols is None else self.var_cols.size
        return mean, (np.zeros(n_var), float(np.log(exact_variance))), 0

    def maximise_from_all_rows(self, start_objective, warm):
        """:meth:`maximise` when the start rows carry no weight: all rows, as in memory.

        Least squares and Harvey's log-variance from normal equations formed
        in one pass each (in memory from all rows then too), the exact-fit
        test on all rows.
        """
        estimator = self.estimator
        ls = self.distributed(start_objective, _LikelihoodSetup, self.targets)
        _, grad, hess = ls.loss_gradient_hessian(np.zeros(ls.n_coef))
        mean_coef = min_norm_solve(hess, -grad)
        residuals = np.zeros(start_objective.n_samples)
        exact = self.exact_fit(start_objective, mean_coef, residuals, True)
        if exact is not None:
            return exact
        objective = self.likelihood()
        if warm is not None:
            start = _warm_start(estimator, warm, self.var_cols, self.robust, self.unit)
        else:
            var_coef = self.harvey_start(start_objective, mean_coef)
            start = objective.unstandardize(np.concatenate([mean_coef, var_coef]))
        return solve_likelihood(
            estimator,
            objective,
            start,
            mean_coef,
            None,
            self.var_cols,
            self.l2,
            self.stats[2],
        )

    def harvey_start(self, start_objective, mean_coef):
        """:func:`~skrobust._heteroscedastic.harvey_start` on all rows (one pass)."""
        floor = self.estimator.variance_floor
        floor = floor if floor > 0 else 1e-300
        template = LinearObjective(
            FixedScaleLoss(SquaredRho()),
            start_objective.X,
            np.zeros(start_objective.n_samples),
            start_objective.sample_weight,
            [(self.var_cols, True)],
            [self.l2],
            column_stats=self.stats[2],
        )
        objective = self.distributed(
            template, _HarveySetup, self.targets, start_objective, mean_coef, floor
        )
        _, grad, hess = objective.loss_gradient_hessian(np.zeros(objective.n_coef))
        coef = min_norm_solve(hess, -grad)
        coef[-1] += HARVEY_OFFSET
        return coef

    def maximise(self, warm):
        """:func:`~skrobust._heteroscedastic.maximise_likelihood` on all rows.

        Returns ``[(b, b0), (g, g0)]`` in units of ``s_y`` and the iterations.
        """
        estimator = self.estimator
        start_objective = _start_objective(
            self.data,
            self.stats,
            self.sample,
            self.targets,
            estimator.fit_intercept,
        )
        if not start_objective.sample_weight.max(initial=0.0) > 0:
            return self.maximise_from_all_rows(start_objective, warm)
        mean_coef = _solve_least_squares(
            start_objective, direct=True, budget=copy_budget(self.data.X)
        )
        residuals = _start_residuals(start_objective, mean_coef)
        subsampled = self.sample.y.size < self.data.n_samples
        exact = self.exact_fit(start_objective, mean_coef, residuals, subsampled)
        if exact is not None:
            return exact
        objective = self.likelihood()
        start = None
        if warm is not None:
            start = _warm_start(estimator, warm, self.var_cols, self.robust, self.unit)
        start_rows = start_objective.X, residuals, start_objective.sample_weight
        return solve_likelihood(
            estimator,
            objective,
            start,
            mean_coef,
            start_rows,
            self.var_cols,
            self.l2,
            self.stats[2],
        )


# -- attributes --------------------------------------------------------------------


def _log_variance(X_c, var_coef, var_intercept):
    return np.asarray(safe_sparse_dot(X_c, var_coef)).ravel() + var_intercept


def _precision_block(X_c, var_coef, var_intercept):
    """``1 / sigma^2`` per row, capped where it would overflow (as in memory)."""
    log_variance = _log_variance(X_c, var_coef, var_intercept)
    return np.exp(-np.maximum(log_variance, -_MAX_LOG_WEIGHT))


class _StandardisedResiduals:
    """Per-row ``|y - mu| / sigma``, the values ``outliers_`` compares."""

    def __init__(self, fit):
        self.coef, self.intercept = fit.coef, fit.intercept
        self.var_coef = fit.extras["var_coef_"]
        self.var_intercept = fit.extras["var_intercept_"]

    def __call__(self, X_c, y_c):
        residuals = np.asarray(y_c, dtype=np.float64) - self.intercept
        residuals -= np.asarray(safe_sparse_dot(X_c, self.coef)).ravel()
        precision = _precision_block(X_c, self.var_coef, self.var_intercept)
        with np.errstate(over="ignore"):
            return np.abs(residuals * np.sqrt(precision))


def _outlier_block(X_c, y_c, values, threshold):
    return values(X_c, y_c) > threshold


def _finish(problem, fit):
    """``weights_``, ``outliers_`` and, with ``cov_type``, the covariance."""
    import dask.array as da

    estimator, data, stats = problem.estimator, problem.data, problem.stats
    var_coef, var_intercept = fit.extras["var_coef_"], fit.extras["var_intercept_"]
    fit.extras["weights_"] = data.X.map_blocks(
        _precision_block, var_coef, var_intercept, drop_axis=1, dtype=np.float64
    )
    values = _StandardisedResiduals(fit)
    median = weighted_median(
        data, values, stats[0], stats[1], problem.sample.hint(values)
    )
    noise = median / MAD_NORMAL_CONSTANT
    fit.extras["outliers_"] = da.blockwise(
        _outlier_block,
        "i",
        data.X,
        "ij",
        data.y,
        "i",
        values,
        None,
        OUTLIER_THRESHOLD * noise,
        None,
        dtype=bool,
        concatenate=True,
    )
    if estimator.cov_type is not None:
        fit.extras.update(covariance(problem, fit))
    return fit


def fit_column(estimator, X, y, sample_weight, output, n_outputs):
    """One target column's fit on a dask array: ``(StandardisedFit, round trips)``.

    The stages of the module docstring; the result is in the units of ``y``,
    as the in-memory template leaves it before ``_set_fitted``.
    """
    problem = _Problem(estimator, X, y, sample_weight)
    data = problem.data
    _progress.say(
        1,
        "{} rows in {} chunks: statistics, targets and {} start rows, {} round trips",
        data.n_samples,
        data.X.numblocks[0],
        problem.sample.y.size,
        data.round_trips,
    )
    warm = plausible_warm(
        estimator,
        output,
        n_outputs,
        data,
        problem.stats,
        problem.sample,
        *problem.robust,
    )
    (w, b), (g, g0), n_iter = problem.maximise(warm)
    _progress.say(
        1,
        "likelihood maximised: {} iterations, {} round trips in all",
        n_iter,
        data.round_trips,
    )
    (offset, spread), (mean, s_y) = problem.robust, problem.unit
    # The in-memory order of the two maps back: s_y units, then the template's.
    var_coef = np.zeros(data.n_features)
    var_coef[slice(None) if problem.var_cols is None else problem.var_cols] = g
    coef = np.asarray(w, dtype=np.float64) * s_y * spread
    intercept = float(float(b * s_y + mean) * spread + offset)
    var_intercept = float(g0 + 2.0 * np.log(s_y)) + 2.0 * float(np.log(spread))
    fit = StandardisedFit(
        coef,
        intercept,
        n_iter,
        {"var_coef_": var_coef, "var_intercept_": var_intercept},
    )
    return _finish(problem, fit), data.round_trips


# -- covariance --------------------------------------------------------------------


def _covariance_kernel(X_c, y_c, w_c, fit, cov_type, fit_intercept, center):
    """The chunk's Grams of :func:`skrobust._cov_gaussian.gaussian_covariance`.

    Its per-row weights (:func:`skrobust._cov_gaussian.gram_weights`), at
    the fit in the units of ``y`` with the raw frequency weights, of
    ``[1, X - center]``: every Gram of ``cov_type`` in one read of the chunk.
    """
    from ._cov_gaussian import N_GRAMS, gram_weights
    from ._inference import block_grams

    coefs = np.column_stack(
        [np.asarray(fit.coef, dtype=float), fit.extras["var_coef_"]]
    )
    offsets = np.array(
        [fit.intercept if fit_intercept else 0.0, fit.extras["var_intercept_"]]
    )
    y = np.asarray(y_c, dtype=np.float64)
    weights_of_block = gram_weights(
        y, coefs, offsets, _chunk_weights(y_c, w_c), cov_type
    )
    grams, _ = block_grams(
        X_c, weights_of_block, N_GRAMS[cov_type], 0, True, center=center
    )
    return grams


def covariance(problem, fit):
    """``cov_`` and the log-variance's standard errors: one more round trip.

    :func:`skrobust._cov_gaussian.gaussian_covariance` with its Grams summed
    over chunks, in the coordinates centred at the statistics pass's column
    means (any centre gives the same covariance: :func:`uncentre` maps it
    back exactly), then its assembly
    (:func:`skrobust._cov_gaussian.covariance_from_grams`).
    """
    from ._cov_gaussian import covariance_from_grams

    estimator, data = problem.estimator, problem.data
    fit_intercept, cov_type = estimator.fit_intercept, estimator.cov_type
    center = np.asarray(problem.stats[2][0], float) if fit_intercept else None
    parts = data.map_chunks(_covariance_kernel, fit, cov_type, fit_intercept, center)
    p = data.n_features
    var_columns = np.arange(p) if problem.var_cols is None else problem.var_cols
    cov = covariance_from_grams(
        sum(parts),
        p,
        cov_type=cov_type,
        fit_intercept=fit_intercept,
        variance_columns=var_columns,
        alpha=estimator.alpha,
        center=center,
    )
    # As skrobust._heteroscedastic.covariance_attributes.
    se = np.sqrt(np.maximum(np.diag(cov)[p + bool(fit_intercept) :], 0.0))
    var_coef_se = np.full(p, np.nan)
    var_coef_se[var_columns] = se[1:]
    return {"cov_": cov, "var_intercept_se_": float(se[0]), "var_coef_se_": var_coef_se}


# -- prediction --------------------------------------------------------------------


def mean_log_variance(estimator, X):
    """The mean and log-variance at a dask ``X``: lazy, with ``X``'s row chunks.

    ``(n_samples,)`` each, or ``(n_samples, n_targets)`` for a model of a
    2-D ``y``, as ``HeteroscedasticRegressor._mean_log_variance`` returns
    them in memory.
    """
    from ._dask import _predict_block, predict

    mean = predict(estimator, X)  # (checks the fit and X's columns)
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    var_coef = np.asarray(estimator.var_coef_, dtype=np.float64)
    intercept = estimator.var_intercept_
    if var_coef.ndim == 1:
        log_variance = X.map_blocks(
            _predict_block, var_coef, intercept, drop_axis=1, dtype=np.float64
        )
    else:
        log_variance = X.map_blocks(
            _predict_block,
            var_coef.T,
            intercept,
            chunks=(X.chunks[0], (var_coef.shape[0],)),
            dtype=np.float64,
        )
    return mean, log_variance
