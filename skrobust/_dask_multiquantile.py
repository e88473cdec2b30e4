"""``MultiQuantileRegressor`` on row-chunked ``dask.array`` data.

Each level is one dask fit of :class:`~skrobust.QuantileRegressor`
(:func:`skrobust._dask_quantile.fit_column`) on ``X`` persisted once (with
``y`` and the weights) and one setup for all levels
(:class:`skrobust._dask_quantile.ColumnData`: the data's statistics, the
sample and the standardisation of ``y``), visited as in memory: the level
nearest 0.5 first (from the preliminary fit, or the previous fit with
``warm_start``), then outwards, each started from its neighbour's fit. As in memory, the
smoothed levels after the first take its residual scale for their
bandwidth, so that they make the same fits; exact levels are the linear
programmes' optima whatever their start. With ``cov_type``, each level's
covariance is :mod:`skrobust._dask_quantile_cov`'s, at that level's fit.

The rearrangement (``non_crossing="rearrange"``) sorts each row's
predictions, so on a dask array it is a ``map_blocks`` of ``np.sort`` over
the row chunks of the lazy predictions (:func:`sort_rows`).
"""

import numpy as np

from . import _dask, _progress
from ._dask_quantile import ColumnData, fit_column


def sort_rows(predictions):
    """Each row of ``predictions`` sorted: numpy, or lazily for a dask array."""
    if _dask.is_dask_array(predictions):
        return predictions.map_blocks(np.sort, axis=1, dtype=predictions.dtype)
    return np.sort(predictions, axis=1)


def _previous(estimator, levels, n_features):
    """The previous fit's ``(coef, intercept)`` per level (``warm_start``), or None."""
    if not (estimator.warm_start and hasattr(estimator, "coef_")):
        return None
    if estimator.coef_.shape != (levels.size, n_features) or not np.array_equal(
        estimator.quantiles_, levels
    ):
        return None
    intercepts = np.broadcast_to(estimator.intercept_, levels.shape)
    return list(zip(estimator.coef_, intercepts, strict=True))


def _level_model(estimator, level):
    """The single-level estimator of ``level``, with the covariance options."""
    return estimator._level_model(
        level,
        cov_type=estimator.cov_type,
        bandwidth_rule=estimator.bandwidth_rule,
        n_bootstrap=estimator.n_bootstrap,
        random_state=estimator.random_state,
    )


def _fit_levels(estimator, column, levels):
    """Each level's ``(StandardisedFit, model)``, visited as in memory.

    ``column`` (:class:`skrobust._dask_quantile.ColumnData`) is every
    level's setup: only the fits themselves are made per level.
    """
    from ._multiquantile import _adapted_band, _visiting_order

    previous = _previous(estimator, levels, column.data.n_features)
    fits = [None] * levels.size
    scale, options, states = None, None, [None] * levels.size
    order = _visiting_order(levels)
    for j, neighbour in _progress.loop(order, len(order), "level"):
        # (The covariances come after all the fits, in level order.)
        model = _level_model(estimator, levels[j]).set_params(cov_type=None)
        start, exact_options = None, None
        if previous is not None:
            start = (*previous[j], scale)
        elif neighbour is not None:
            near = fits[neighbour][0]
            start = (near.coef, near.intercept, scale)
            exact_options = options
            if options is not None and states[neighbour] is not None:
                exact_options = {**options, "neighbour_density": states[neighbour]}
        fit, _ = fit_column(
            model, None, None, None, 0, 1, start, column, exact_options, False
        )
        state = getattr(model, "_dask_exact_state", None)
        if state is not None:
            states[j] = state[0]
            if options is None:
                options = _neighbour_options(estimator, column, state[2])
                first_size = options["initial_size"]
            elif start is not None:
                options["initial_size"] = _adapted_band(
                    options["initial_size"], first_size, fit.n_iter
                )
            if state[1] is not None:
                options["gram"] = state[1]
        if scale is None:
            scale = getattr(model, "_dask_residual_scale", None)
        fits[j] = (fit, model)
    return fits


def _neighbour_options(estimator, column, n_pos):
    """The exact solver's options of the levels after the first, as in memory.

    The first band of :func:`skrobust._multiquantile._neighbour_options`
    (a fraction of the cold default), adapted level by level
    (:func:`skrobust._multiquantile._adapted_band`).
    """
    from ._multiquantile import (
        _NEIGHBOUR_BAND_FRACTION,
        _NEIGHBOUR_MIN_BAND,
        _NEIGHBOUR_ROUNDS,
    )

    n_coef = column.data.n_features + bool(estimator.fit_intercept)
    size = int(np.ceil(_NEIGHBOUR_BAND_FRACTION * np.sqrt(n_pos * n_coef)))
    return {
        "initial_size": max(size, _NEIGHBOUR_MIN_BAND),
        "full_fallback": False,
        "max_rounds": _NEIGHBOUR_ROUNDS,
    }


def fit(estimator, X, y, sample_weight=None):
    """Fit a MultiQuantileRegressor on a dask array (see the module docstring).

    Returns
    -------
    MultiQuantileRegressor
        ``estimator``, with the in-memory fit's attributes.
    """
    from ._multiquantile import _check_levels, _check_one_target

    estimator._validate_params()
    _check_one_target(y)
    levels = _check_levels(estimator.quantiles)
    with _progress.reporting(estimator.verbose, "MultiQuantileRegressor on dask"):
        column = ColumnData(_level_model(estimator, levels[0]), X, y, sample_weight)
        warm = _previous(estimator, levels, column.data.n_features) is not None
        fits = _fit_levels(estimator, column, levels)
    X = column.data.X
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    estimator.n_features_in_ = X.shape[1]
    estimator.quantiles_ = levels
    estimator.coef_ = np.array([fit.coef for fit, _ in fits])
    estimator.intercept_ = np.array([fit.intercept for fit, _ in fits])
    estimator.n_iter_ = np.array([fit.n_iter for fit, _ in fits], dtype=int)
    estimator.bandwidth_ = _bandwidths(estimator, levels, fits, warm)
    estimator.solver_ = fits[0][1]._resolve_solver(X.shape)
    estimator._n_rows_fit = X.shape[0]
    from ._multiquantile import store_level_covariances  # (imports this module)

    with _progress.reporting(estimator.verbose, "MultiQuantileRegressor on dask"):
        covariances = _covariances(estimator, column, levels, fits)
    store_level_covariances(estimator, covariances)
    estimator._dask_round_trips = column.data.round_trips
    return estimator


def _covariances(estimator, column, levels, fits):
    """Each level's ``cov_`` (None without ``cov_type``), in level order.

    As in memory, after all the fits, level by level from the lowest: with
    ``cov_type="bootstrap"`` and a ``random_state`` instance, the levels
    then draw their replicates from it in the in-memory order.
    """
    from ._dask_quantile_cov import column_covariance

    if estimator.cov_type is None:
        return [None] * levels.size
    return [
        column_covariance(
            _level_model(estimator, level),
            column.data,
            column.sample,
            column.stats,
            fit.coef,
            fit.intercept,
        )
        for level, (fit, _) in zip(levels, fits, strict=True)
    ]


def _bandwidths(estimator, levels, fits, warm):
    """Each level's bandwidth in ``y`` units; the first level's where it made none.

    As in memory: an exact level started from a neighbour makes no smoothed
    fit. The first level visited has one, unless it was warm-started (``warm``:
    then the previous fit's bandwidths stand) or ``max_iter < 3`` left it
    none (NaN).
    """
    from ._multiquantile import _visiting_order

    first = fits[_visiting_order(levels)[0][0]][0].extras.get("bandwidth_")
    before = estimator.bandwidth_ if warm else np.full(levels.size, np.nan)
    bandwidths = []
    for j, (fit, _) in enumerate(fits):
        value = fit.extras.get("bandwidth_", first)
        if value is None:
            value = before[j]
        bandwidths.append(float(value))
    return np.array(bandwidths)
