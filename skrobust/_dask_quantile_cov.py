r"""``QuantileRegressor(cov_type=...)`` on row-chunked ``dask.array`` data.

:func:`skrobust._cov_quantile.quantile_covariance` (R's ``summary.rq``) with
each pass over the rows on the workers and only ``p x p`` sums, or a few
selected residuals, on the client:

``"iid"``
    One pass counts the rows whose weighted residual is (numerically) zero;
    an exact distributed selection (:func:`order_statistic`) finds the
    ``(pz + h + 1)``-th smallest ``|r|``; one pass fetches the ``h + 1``
    residuals up to it (ties in row order, as R's stable ``order``), about
    ``n^{2/3}`` values; the two-point median regression of R's simplex runs
    on the client. One more pass forms ``X'X``.
``"nid"``
    The refits at ``q +- h`` are dask fits of the estimator itself (exact
    fits warm-started from the fit, as in memory); one pass forms each
    chunk's densities and Grams.
``"ker"``
    One pass for the mean and squared deviations of the residuals (their
    standard deviation), two selections for their quartiles (R's type 7),
    one pass for the Powell densities' Grams.

The residuals are computed per row exactly as in memory (for ``"iid"`` in
R's order of summation), so the order statistics, and the covariance, are
the in-memory ones.

``"bootstrap"``
    Each replicate's multiplicities are drawn on the client from the same
    random stream as in memory (``n`` indices of ``random_state``'s
    ``randint``, counted: 32 bytes a row on the client at the peak, not
    ``X``), multiply ``sample_weight`` chunk by chunk, and the replicate is
    the estimator's own dask fit with those weights, warm-started from the
    full-data fit: with the exact solver a reduced problem of the rows near
    that fit plus one certificate pass, the exact minimiser as in memory.
    So the replicates, and their covariance, are the in-memory ones for the
    same ``random_state``; each costs a distributed fit (a few passes).
"""

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state
from sklearn.utils.extmath import safe_sparse_dot

from . import _progress
from ._column_stats import merge_moments
from ._cov_quantile import (
    R_SQRT_EPS,
    _bandwidth_inside,
    _barrodale_roberts,
    _linear_predictor,
    density_covariance,
    iid_covariance,
    iid_ranks,
    nid_rows,
    powell_kappa,
    powell_rows,
    warn_crossing,
)
from ._dask_chunks import _chunk_weights
from ._dask_median import (
    _FETCH_VALUES,
    _PIVOT_SAMPLE,
    _SELECTION_PASSES,
    _pivots,
    binned_extremes,
)
from ._inference import weighted_grams


class Residuals:
    """Per-row weighted residuals ``w_i (y_i - x_i b - b0)`` of summary.rq.

    ``r_order`` sums the linear predictor as R does (for ``"iid"``'s order
    statistics); ``zeros_below`` maps ``|r|`` below ``2^-26`` to ``-inf``
    and the others to ``|r|`` (the ranking of ``"iid"``).
    """

    def __init__(self, coef, intercept, r_order=False, zeros_below=False):
        self.coef, self.intercept = np.asarray(coef, float), float(intercept)
        self.r_order, self.zeros_below = r_order, zeros_below

    def signed(self, X_c, y_c, w_c):
        if self.r_order:
            predictor = _linear_predictor(X_c, self.coef, self.intercept)
        else:
            predictor = np.asarray(safe_sparse_dot(X_c, self.coef)).ravel()
            predictor += self.intercept
        return _chunk_weights(y_c, w_c) * (np.asarray(y_c, float) - predictor)

    def __call__(self, X_c, y_c, w_c):
        r = self.signed(X_c, y_c, w_c)
        if not self.zeros_below:
            return r
        size = np.abs(r)
        size[size < R_SQRT_EPS] = -np.inf
        return size


# -- exact order statistics over all rows -----------------------------------------


def _count_kernel(X_c, y_c, w_c, values, low, high, pivots, stride):
    """Count, smallest and largest value in each bin ``(p[i-1], p[i]]``."""
    v = _in_range(values(X_c, y_c, w_c), low, high)
    bins, smallest, largest = binned_extremes(v, pivots)
    counts = np.bincount(bins, minlength=pivots.size + 1)
    return counts, smallest, largest, v[::stride].copy()


def _values_in_kernel(X_c, y_c, w_c, values, low, high):
    return _in_range(values(X_c, y_c, w_c), low, high)


def _in_range(v, low, high):
    """The values in ``(low, high]``; ``[-inf, high]`` when ``low`` is ``-inf``."""
    inside = v <= high
    if low > -np.inf:
        inside &= v > low
    return v[inside]


def order_statistic(data, values, rank, hint):
    """The values at 0-based ``rank`` and ``rank + 1`` of ``values`` over all rows.

    Every row counts (weights enter only through ``values``), so this is
    ``np.sort(v)[rank]`` and ``np.sort(v)[rank + 1]`` (``inf`` past the
    end) for ``v`` the values of all rows. Histogram passes narrow the
    range to a bin of at most ``_FETCH_VALUES`` values, which is then
    fetched and sorted on the client, as :func:`skrobust._dask_median.weighted_median`
    does for the median.
    """
    low, high, below, next_above = -np.inf, np.inf, 0, np.inf
    candidates = np.asarray(hint, dtype=float)
    low_value, high_value, n_in_range = -np.inf, np.inf, data.n_samples
    for _ in range(_SELECTION_PASSES):
        pivots = _pivots(candidates[np.isfinite(candidates)], low_value, high_value)
        stride = max(1, n_in_range // _PIVOT_SAMPLE)
        parts = data.map_chunks(_count_kernel, values, low, high, pivots, stride)
        count = np.sum([part[0] for part in parts], axis=0)
        smallest = np.min([part[1] for part in parts], axis=0)
        largest = np.max([part[2] for part in parts], axis=0)
        cum = below + np.cumsum(count)
        b = int(np.searchsorted(cum, rank, side="right"))
        after = np.flatnonzero(count[b + 1 :]) + b + 1
        following = float(smallest[after[0]]) if after.size else next_above
        bin_below = int(cum[b - 1]) if b > 0 else below
        if smallest[b] == largest[b]:
            value = float(smallest[b])
            return value, (value if rank + 1 < cum[b] else following)
        bin_low = pivots[b - 1] if b > 0 else low
        bin_high = pivots[b] if b < pivots.size else high
        if count[b] <= _FETCH_VALUES:
            parts = data.map_chunks(_values_in_kernel, values, bin_low, bin_high)
            v = np.sort(np.concatenate(parts))
            i = rank - bin_below
            return float(v[i]), (float(v[i + 1]) if i + 1 < v.size else following)
        samples = np.concatenate([part[3] for part in parts])
        candidates = samples[(samples > bin_low) & (samples <= bin_high)]
        low, high, below, next_above = bin_low, bin_high, bin_below, following
        low_value, high_value = float(smallest[b]), float(largest[b])
        n_in_range = int(count[b])
    raise RuntimeError("the distributed selection did not narrow down")


# -- the passes -----------------------------------------------------------------


def _zeros_kernel(X_c, y_c, w_c, values):
    return int(np.count_nonzero(values(X_c, y_c, w_c) == -np.inf))


def _grams_kernel(X_c, y_c, w_c, density, fit_intercept, center):
    """``[1 X]' W^2 [1 X]`` and, with a ``density``, ``[1 X]' F W^2 [1 X]``."""
    square = _chunk_weights(y_c, w_c) ** 2
    row_weights = [square]
    crossing = 0
    if density is not None:
        f, crossing = density(X_c, y_c, w_c)
        row_weights.append(f * square)
    grams = weighted_grams(X_c, row_weights, fit_intercept, center=center)
    return grams, crossing


class _NidDensity:
    """Hendricks and Koenker's ``f_i`` of one chunk (``_nid_densities``)."""

    def __init__(self, coef_step, intercept_step, h):
        self.coef_step, self.intercept_step, self.h = coef_step, intercept_step, h

    def __call__(self, X_c, y_c, w_c):
        weights = _chunk_weights(y_c, w_c)
        return nid_rows(X_c, weights, self.coef_step, self.intercept_step, self.h)


class _PowellDensity:
    """Powell's kernel densities of one chunk's residuals (``_powell_densities``)."""

    def __init__(self, residuals, kappa):
        self.residuals, self.kappa = residuals, kappa

    def __call__(self, X_c, y_c, w_c):
        return powell_rows(self.residuals(X_c, y_c, w_c), self.kappa), 0


def _moments_kernel(X_c, y_c, w_c, values):
    v = values(X_c, y_c, w_c)
    if not v.size:
        return 0, 0.0, 0.0
    mean = float(v.mean())
    return v.size, mean, float(((v - mean) ** 2).sum())


def _standard_deviation(data, values):
    """``np.std(v, ddof=1)`` of all rows' values: chunk moments, merged."""
    total, _, m2 = merge_moments(data.map_chunks(_moments_kernel, values))
    return float(np.sqrt(m2 / (total - 1)))


def _type7_quantile(data, values, level, hint):
    """``np.quantile(v, level)`` (R's type 7) of all rows' values."""
    position = (data.n_samples - 1) * level
    rank = int(np.floor(position))
    value, following = order_statistic(data, values, rank, hint)
    fraction = position - rank
    if fraction == 0:
        return value
    return float(value + fraction * (following - value))


def _iid_sparsity(data, residuals, n_params, quantile, rule, hint):
    """``_cov_quantile._iid_sparsity`` from the rows it reads, fetched."""
    n = data.n_samples
    ranking = Residuals(residuals.coef, residuals.intercept, True, zeros_below=True)
    n_zero = sum(data.map_chunks(_zeros_kernel, ranking))
    h, ranks = iid_ranks(n, n_zero, n_params, quantile, rule)
    threshold, _ = order_statistic(data, ranking, n_zero + h, hint(ranking))
    # Every non-zero |r| up to the threshold, in row order, with its sign.
    parts = data.map_chunks(_up_to_kernel, residuals, threshold)
    signed = np.concatenate(parts)
    size = np.abs(signed)
    below = np.flatnonzero(size < threshold)
    tied = np.flatnonzero(size == threshold)[: h + 1 - below.size]
    ordered = np.sort(signed[np.concatenate([below, tied])])
    design = np.column_stack([np.ones(ranks.size), ranks / (n - n_params)])
    return float(_barrodale_roberts(design, ordered, 0.5)[1])


def _up_to_kernel(X_c, y_c, w_c, residuals, threshold):
    r = residuals.signed(X_c, y_c, w_c)
    size = np.abs(r)
    return r[(size >= R_SQRT_EPS) & (size <= threshold)]


def _refit(estimator, data, quantile, coef, intercept):
    """The estimator's dask fit at another level, from ``(coef, intercept)``.

    Warm-started from the fit. (In memory the exact refits go further:
    :class:`~skrobust._cov_quantile.ExactLevelRefit` starts them as
    neighbouring levels; here each is a whole distributed fit.)
    """
    model = clone(estimator).set_params(
        quantile=quantile, cov_type=None, warm_start=True, verbose=0
    )
    model.coef_, model.intercept_ = coef, intercept
    model.fit(data.X, data.y, data.sample_weight)
    # The refit's passes are this fit's too.
    data.round_trips += model._dask_round_trips
    return np.asarray(model.coef_, float), float(model.intercept_)


def bootstrap_covariance(estimator, data, coef, intercept):
    """:func:`skrobust._cov_quantile.quantile_bootstrap_covariance` on dask data.

    The multiplicities of each replicate are drawn as in memory (the same
    calls on the same random state), so for the same ``random_state`` the
    replicates are the in-memory ones; each is fitted by :func:`_reweighted_fit`.
    """
    n = data.n_samples
    rng = check_random_state(estimator.random_state)
    replicates = []
    for _ in _progress.loop(
        range(estimator.n_bootstrap), estimator.n_bootstrap, "bootstrap replicate"
    ):
        # As in memory: Multinomial(n, 1/n) counts, drawn as n indices.
        counts = np.bincount(rng.randint(n, size=n), minlength=n)
        weights = _chunked_counts(data, counts.astype(np.float64))
        if data.sample_weight is not None:
            weights = weights * data.sample_weight
        replicates.append(_reweighted_fit(estimator, data, weights, coef, intercept))
    return np.atleast_2d(np.cov(np.array(replicates), rowvar=False))


def _chunked_counts(data, counts):
    """``counts`` as a dask array with ``X``'s row chunks, each where ``X``'s is.

    On a distributed client each chunk's counts are scattered to the worker
    that holds that chunk of ``X`` (one call per worker), so that the
    replicate's passes find them persisted: put in a task graph, the
    ``n``-vector would travel through the scheduler with every pass.
    """
    import dask.array as da

    chunks = (data.X.chunks[0],)
    client = data._client
    if client is None:
        return da.from_array(counts, chunks=chunks)
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    parts = np.split(counts, data.chunk_starts[1:])
    holders = client.who_has([block[0] for block in data._blocks])
    by_worker = {}
    for i, block in enumerate(data._blocks):
        worker = min(holders.get(block[0].key, ()), default=None)
        by_worker.setdefault(worker, []).append(i)
    futures = [None] * len(parts)
    for worker, indices in by_worker.items():
        scattered = client.scatter(
            [parts[i] for i in indices],
            workers=None if worker is None else [worker],
            hash=False,
        )
        for i, future in zip(indices, scattered, strict=True):
            futures[i] = future
    name = "bootstrap-counts-" + tokenize(counts)
    graph = {(name, i): future for i, future in enumerate(futures)}
    layer = HighLevelGraph.from_collections(name, graph, dependencies=())
    return da.Array(layer, name, chunks=chunks, dtype=np.float64)


def _reweighted_fit(estimator, data, weights, coef, intercept):
    """``[intercept, coef...]`` of the estimator's dask fit with ``weights``.

    Warm-started from the full-data fit ``(coef, intercept)``, as the
    in-memory replicates are; its passes are counted as this fit's.
    """
    model = clone(estimator).set_params(cov_type=None, warm_start=True, verbose=0)
    model.coef_, model.intercept_ = coef, intercept
    model.fit(data.X, data.y, weights)
    data.round_trips += model._dask_round_trips
    params = np.asarray(model.coef_, float)
    if estimator.fit_intercept:
        return np.r_[float(model.intercept_), params]
    return params


def _nid_density(estimator, data, coef, intercept, h):
    quantile = float(estimator.quantile)
    coef_hi, intercept_hi = _refit(estimator, data, quantile + h, coef, intercept)
    coef_lo, intercept_lo = _refit(estimator, data, quantile - h, coef, intercept)
    step = intercept_hi - intercept_lo if estimator.fit_intercept else 0.0
    return _NidDensity(coef_hi - coef_lo, step, h)


def _powell_density(estimator, data, residuals, h, hint):
    quantile = float(estimator.quantile)
    upper = _type7_quantile(data, residuals, 0.75, hint(residuals))
    lower = _type7_quantile(data, residuals, 0.25, hint(residuals))
    spread = min(_standard_deviation(data, residuals), (upper - lower) / 1.34)
    return _PowellDensity(residuals, powell_kappa(quantile, h, spread))


def covariance(estimator, data, sample, coef, intercept, center):
    """``cov_`` of a QuantileRegressor fit on dask data, as in memory.

    Parameters
    ----------
    estimator : QuantileRegressor
    data : skrobust._dask_chunks.ChunkedData
    sample : skrobust._dask_statistics.Sample
        The client's strided sample rows (pivots for the selections).
    coef, intercept : ndarray, float
        The fit, in the units of ``y``.
    center : ndarray or None
        Column centre of the Grams (any: :func:`uncentre` maps back).
    """
    cov_type, fit_intercept = estimator.cov_type, estimator.fit_intercept
    intercept = float(intercept) if fit_intercept else 0.0
    if cov_type == "bootstrap":
        return bootstrap_covariance(estimator, data, coef, intercept)
    quantile, rule = float(estimator.quantile), estimator.bandwidth_rule
    n_params = data.n_features + bool(fit_intercept)
    residuals = Residuals(coef, intercept, r_order=cov_type == "iid")

    def hint(values):
        return values(sample.X, sample.y, sample.weights)

    density = None
    if cov_type == "iid":
        sparsity = _iid_sparsity(data, residuals, n_params, quantile, rule, hint)
    else:
        h = _bandwidth_inside(quantile, data.n_samples, rule)
        if cov_type == "nid":
            density = _nid_density(estimator, data, coef, intercept, h)
        else:
            density = _powell_density(estimator, data, residuals, h, hint)
    parts = data.map_chunks(_grams_kernel, density, fit_intercept, center)
    grams = sum(part[0] for part in parts)
    if cov_type == "iid":
        return iid_covariance(grams[0], sparsity, quantile, center)
    warn_crossing(sum(part[1] for part in parts), quantile, h, stacklevel=5)
    return density_covariance(grams[0], grams[1], quantile, center)


def column_covariance(estimator, data, sample, stats, coef, intercept):
    """:func:`covariance` of one column's fit, centred at the column means."""
    center = np.asarray(stats[2][0], float) if estimator.fit_intercept else None
    return covariance(estimator, data, sample, coef, intercept, center)
