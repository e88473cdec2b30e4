r"""Fits on row-chunked ``dask.array`` data without gathering ``X`` on the client.

Everything dask-specific lives in the ``_dask*`` modules, and none imports
dask at module level: :func:`~skrobust._dask_chunks.is_dask_array` looks
for ``dask.array`` in ``sys.modules``, so skrobust imports dask only when
the user already has (by passing a dask array). The estimators' ``fit`` and
``predict`` dispatch here when ``X`` is a dask array.

What every fit on a dask array shares, for each column of ``y`` (a 2-D
``y`` is a fit per column, as in memory, on ``X`` persisted once):

1. **Validation, column statistics and a sample, one pass**
   (:mod:`skrobust._dask_chunks`, :mod:`skrobust._dask_statistics`). ``X``,
   ``y`` and ``sample_weight`` are persisted with ``X``'s row chunks (``X``
   only if it is not persisted yet). One task per chunk checks that its
   values are finite and its weights non-negative and returns its weight
   sum, largest weight and centred column moments; the client merges them
   (Chan, Golub and LeVeque) into the ``column_stats`` that fix the
   standardised coordinates of every objective of the fit, as
   :class:`~skrobust._objective.LinearObjective` would on all rows. The same
   tasks return their rows of a strided sample (the rows an in-memory start
   uses, stacked on a worker; :func:`column_setup`) and a quantile sketch of
   a denser strided sample of ``y``
   (:func:`~skrobust._dask_statistics.quantile_sketch`).
2. **The median and MAD of ``y``, usually one pass**
   (:mod:`skrobust._dask_median`). The sketch brackets
   both, and one pass fetches the values inside the brackets and ranks them
   with the in-memory rule (:mod:`skrobust._dask_brackets`); when a bracket
   misses, the exact selection of
   :func:`~skrobust._dask_median.weighted_median` (histogram passes
   over pivots, then at most ``_FETCH_VALUES`` values fetched and ranked on
   the client with :func:`skrobust._base.weighted_median`'s rule) decides.
   ``y`` is standardised by them exactly as in memory.
3. **The in-memory stages, each pass on the workers**
   (:mod:`skrobust._dask_objective`). Its :class:`DaskObjective`
   has the interface the solvers use; each evaluation evaluates every chunk
   on the worker that holds it (a :class:`LinearObjective` on the chunk with
   the shared ``column_stats``, whose value, gradient and Hessian are
   returned as sums weighted by the chunk's weight sum) and sums them on the
   client in chunk order: one round trip per evaluation, and a task graph of
   one task per chunk (on a distributed cluster, one per worker thread over
   its chunks) that does not grow with the iterations. Its subclass
   :class:`~skrobust._dask_strided.StridedObjective` subsamples as
   ``X[::step]`` does in memory, so the solvers take memory's levels.
   Targets thousands of robust scales away are moved in by each chunk's
   task as the in-memory guard moves them (:mod:`skrobust._dask_far_targets`).
4. **Residual attributes.** ``noise_scale_`` is the median absolute
   residual at the fit: the passes near the optimum bracket it at their
   point (:class:`skrobust._dask_brackets.ResidualMedians`), so the last
   one usually has it; else one more selection. ``outliers_`` and
   ``weights_`` are lazy dask arrays with ``X``'s chunks. With
   ``cov_type``, one more pass forms each chunk's sums of
   :func:`skrobust._cov_mestimator.covariance_sums`, combined on the client.

The M-estimators (every scale rule) are fitted by
:mod:`skrobust._dask_mestimator` from the in-memory start's rows, stage by
stage as in memory, so their coefficients, scale and ``n_iter_`` are the
in-memory fit's. ``QuantileRegressor(solver="exact")`` is fitted by
:mod:`skrobust._dask_quantile`: Portnoy and Koenker's preprocessing with a
band of rows fetched to the client and a distributed sign certificate;
``solver="smooth"`` by :mod:`skrobust._dask_quantile_smooth`.
``HeteroscedasticRegressor`` is fitted by
:mod:`skrobust._dask_heteroscedastic`; a quantile ``cov_type`` by
:mod:`skrobust._dask_quantile_cov` (``"bootstrap"`` is refused) and
``MultiQuantileRegressor`` by :mod:`skrobust._dask_multiquantile`.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import _progress
from ._dask_chunks import (
    ChunkedData,
    _check_chunk_sizes,
    _chunk_weights,
    _is_persisted,
    is_dask_array,
)
from ._dask_median import RowValues, robust_scale, weighted_median
from ._dask_statistics import default_sample_rows, statistics_and_sample

# -- the M-estimator fit ----------------------------------------------------------


def unsupported(estimator):
    """Raise for an estimator that cannot fit dask arrays yet."""
    raise NotImplementedError(
        f"{type(estimator).__name__} cannot fit dask arrays yet: on dask, "
        "skrobust fits HuberRegressor, LogCoshRegressor, MEstimatorRegressor, "
        "QuantileRegressor and "
        "HeteroscedasticRegressor. Call X.compute() to fit in memory."
    )


def _is_quantile(estimator):
    from ._quantile import QuantileRegressor

    return isinstance(estimator, QuantileRegressor)


def _is_heteroscedastic(estimator):
    from ._heteroscedastic import HeteroscedasticRegressor

    return isinstance(estimator, HeteroscedasticRegressor)


def _check_supported(estimator, n_features):
    from ._mestimator import MEstimatorRegressor

    if _is_quantile(estimator) or _is_heteroscedastic(estimator):
        return
    if not isinstance(estimator, MEstimatorRegressor):
        unsupported(estimator)


def fit(estimator, X, y, sample_weight=None):
    """Fit an estimator on a row-chunked dask array (see the module docstring).

    Each column of a 2-D ``y`` is its own fit, as in memory, on ``X``
    persisted once.

    Parameters
    ----------
    estimator : MEstimatorRegressor or QuantileRegressor
        Fitted in place.
    X : dask.array.Array of shape (n_samples, n_features)
    y : dask.array.Array or array-like of shape (n_samples,) or (n_samples, n_targets)
    sample_weight : dask.array.Array or array-like of shape (n_samples,), default=None

    Returns
    -------
    MEstimatorRegressor or QuantileRegressor
        ``estimator``, fitted; an M-estimator's ``outliers_`` and
        ``weights_`` are lazy dask arrays with ``X``'s row chunks.
    """
    estimator._validate_params()
    _check_supported(estimator, X.shape[1] if X.ndim == 2 else 0)
    if X.ndim == 2:
        # As validate_data in memory: _check_fit_parameters may read them.
        estimator.n_features_in_ = X.shape[1]
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    estimator._check_fit_parameters()
    fit_column = _column_fitter(estimator)
    columns = _target_columns(y)
    if columns.ndim == 2:
        X = _persisted_rows(X)
    name = f"{type(estimator).__name__} on dask"
    fits, round_trips = [], 0
    with _progress.reporting(getattr(estimator, "verbose", 0), name):
        n_outputs = 1 if columns.ndim == 1 else columns.shape[1]
        for k in _progress.loop(range(n_outputs), n_outputs, "output"):
            y_k = columns if columns.ndim == 1 else columns[:, k]
            fit, trips = fit_column(estimator, X, y_k, sample_weight, k, n_outputs)
            fits.append(fit)
            round_trips += trips
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    estimator.n_features_in_ = X.shape[1]
    estimator._set_fitted(fits, columns.ndim)
    estimator._dask_round_trips = round_trips
    return estimator


def _column_fitter(estimator):
    """The function fitting one target column of ``estimator`` on dask data."""
    if _is_quantile(estimator):
        from ._dask_quantile import fit_column

        return fit_column
    if _is_heteroscedastic(estimator):
        from ._dask_heteroscedastic import fit_column

        return fit_column
    from ._dask_mestimator import fit_column

    return fit_column


def _target_columns(y):
    """``y`` as a 1-D or 2-D array (dask or numpy), as in-memory ``fit`` reads it."""
    from sklearn.utils.validation import check_array

    if is_dask_array(y):
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got {y.ndim} dimensions.")
        return y
    return check_array(y, ensure_2d=False, dtype=np.float64, ensure_all_finite=False)


def _persisted_rows(X):
    """``X`` with whole rows per chunk, persisted (unless it already is)."""
    import dask

    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D X, got {X.ndim} dimensions.")
    _check_chunk_sizes(X, "X")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    if not _is_persisted(X):
        (X,) = dask.persist(X)
    return X


def standardise_targets(estimator, data, stats, sample):
    """Step 2: the in-memory ``target_offset_scale`` of ``y``, exactly.

    Returns ``(offset, spread)``.
    """
    from ._dask_brackets import bracketed_targets

    sum_weight, top = stats[0], stats[1]
    # One pass when the sample brackets both medians; else selections.
    medians = bracketed_targets(data, stats, sample, estimator.fit_intercept)
    if medians is not None:
        offset, deviation = medians
    else:
        offset, deviation = 0.0, None
        if estimator.fit_intercept:
            values = RowValues(absolute=False)
            hint = sample.hint(values)
            offset = weighted_median(data, values, sum_weight, top, hint)
    spread = robust_scale(
        data,
        stats,
        sample,
        RowValues(offset),
        spread_if_zero=1.0 if offset == 0 else abs(offset),
        median=deviation,
    )
    return offset, spread


def column_setup(X, y, sample_weight, fit_intercept, rows=None, step_for=None):
    """Step 1 of one target column: ``(data, stats, sample)``.

    The :class:`~skrobust._dask_chunks.ChunkedData`, its
    :func:`~skrobust._dask_statistics.data_statistics` and a strided
    :class:`~skrobust._dask_statistics.Sample` of about ``rows`` rows, in
    one round trip (:func:`~skrobust._dask_statistics.statistics_and_sample`).
    ``rows=None`` is the default sample
    (:func:`~skrobust._dask_statistics.default_sample_rows`).
    ``step_for``, if given, maps the number of rows to the sample's stride
    (``X[::step]``), or to None for the sample of ``rows``.
    """
    data = ChunkedData(X, y, sample_weight)
    if rows is None:
        rows = default_sample_rows(data.n_samples)
    step = None if step_for is None else step_for(data.n_samples)
    stats, sample = statistics_and_sample(data, fit_intercept, rows, step)
    return data, stats, sample


def start_rows_setup(X, y, sample_weight, fit_intercept):
    """:func:`column_setup` whose sample is the in-memory least-squares start's rows.

    ``LEAST_SQUARES_START_ROWS`` strided rows (all for small ``n``), as the
    in-memory fits take them. When they carry no weight the in-memory fit
    starts from all rows, and so must the caller (with passes, not this
    sample).
    """
    from ._base import LEAST_SQUARES_START_ROWS, least_squares_start_step

    return column_setup(
        X,
        y,
        sample_weight,
        fit_intercept,
        LEAST_SQUARES_START_ROWS,
        step_for=least_squares_start_step,
    )


def residual_attributes(estimator, data, stats, sample, fit, median=None):
    """Step 4: an M-estimator's attributes beyond ``coef_`` and ``intercept_``.

    ``fit`` is ``(coef_, intercept_, scale_)`` in the units of ``y``.
    ``noise_scale_`` is one more selection unless ``median`` (of the
    absolute residuals at ``fit``) is known, ``outliers_`` and ``weights_``
    lazy dask arrays with ``X``'s row chunks; with ``cov_type``, ``cov_``
    costs one more round trip.
    """
    from ._base import MAD_NORMAL_CONSTANT, OUTLIER_THRESHOLD

    coef_, intercept_, scale_ = fit
    if median is None:
        values = RowValues(coef=coef_, intercept=intercept_)
        hint = sample.hint(values)
        median = weighted_median(data, values, stats[0], stats[1], hint)
    noise = median / MAD_NORMAL_CONSTANT
    residuals = data.y - data.X.dot(coef_) - intercept_
    extras = {
        "scale_": scale_,
        "noise_scale_": noise,
        "outliers_": abs(residuals) > OUTLIER_THRESHOLD * noise,
        "weights_": residuals.map_blocks(
            _irls_weights_block, estimator._rho(), scale_, dtype=np.float64
        ),
    }
    if estimator.cov_type is not None:
        extras["cov_"] = covariance(
            estimator, data, coef_, intercept_, scale_, stats[2][0]
        )
    return extras


def _covariance_kernel(X_c, y_c, w_c, rho, scale, coef, intercept, options):
    from sklearn.utils.extmath import safe_sparse_dot

    from ._cov_mestimator import covariance_sums

    residuals = np.asarray(y_c, dtype=np.float64) - safe_sparse_dot(X_c, coef)
    residuals -= intercept
    weights = _chunk_weights(y_c, w_c)
    return covariance_sums(X_c, residuals, weights, rho, scale, **options)


def covariance(estimator, data, coef, intercept, scale, column_means):
    """``cov_`` of an M-estimator's fit on dask data: one more round trip.

    Each chunk forms the sums of
    :func:`skrobust._cov_mestimator.covariance_sums` over its rows (at the
    residuals of the fit, in the units of ``y``, with the raw frequency
    weights), in the coordinates centred at ``column_means`` (the weighted
    column means of the statistics pass) when there is an intercept;
    :func:`~skrobust._cov_mestimator.combine_covariance_sums` and
    :func:`~skrobust._inference.uncentre` make the in-memory covariance of
    them.
    """
    from ._cov_mestimator import combine_covariance_sums
    from ._inference import uncentre

    joint = isinstance(estimator.scale, str) and estimator.scale == "joint"
    center = np.asarray(column_means, float) if estimator.fit_intercept else None
    options = {
        "fit_intercept": estimator.fit_intercept,
        "cov_type": estimator.cov_type,
        "joint": joint,
        "center": center,
    }
    parts = data.map_chunks(
        _covariance_kernel, estimator._rho(), scale, coef, intercept, options
    )
    cov = combine_covariance_sums(
        list(parts), scale, cov_type=estimator.cov_type, joint=joint
    )
    return uncentre(cov, center)


def _irls_weights_block(residuals, rho, scale):
    from ._mestimator import _irls_weights

    return _irls_weights(rho, residuals, scale)


def _predict_block(X_c, coef, intercept):
    from sklearn.utils.extmath import safe_sparse_dot

    return safe_sparse_dot(X_c, coef) + intercept


def predict(estimator, X):
    """``X @ coef_.T + intercept_`` as a lazy dask array with ``X``'s row chunks."""
    check_is_fitted(estimator)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D X, got {X.ndim} dimensions.")
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is "
            f"expecting {estimator.n_features_in_} features as input."
        )
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    intercept = estimator.intercept_
    if coef.ndim == 1:
        return X.map_blocks(
            _predict_block, coef, intercept, drop_axis=1, dtype=np.float64
        )
    return X.map_blocks(
        _predict_block,
        coef.T,
        intercept,
        chunks=(X.chunks[0], (coef.shape[0],)),
        dtype=np.float64,
    )
