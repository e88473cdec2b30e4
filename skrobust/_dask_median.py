"""The exact weighted median of per-row values over row-chunked dask data.

:func:`weighted_median` equals :func:`skrobust._base.weighted_median` of the
same values and weights, in histogram passes (one round trip each) that
narrow the bin holding half the weight until it is fetched and ranked on
the client; :func:`robust_scale` is the normalised median absolute value
from it (step 2 of :mod:`skrobust._dask`), and :func:`plausible_warm` the
warm start's check. :mod:`skrobust._dask_select` generalises the selection
to other order statistics.
"""

import numpy as np

from ._dask_chunks import _chunk_weights

# Pivots of a histogram pass of the selection, and the largest number of
# values a bin may hold for them to be fetched and ranked on the client.
_PIVOTS = 1024
_FETCH_VALUES = 50_000
_SELECTION_PASSES = 20

# Values the later histogram passes sample from the current bin for the
# next pivots.
_PIVOT_SAMPLE = 20_000

# Up to this many pivots, binned_extremes counts the pivots below each value
# instead of a binary search.
_FEW_PIVOTS = 16


class RowValues:
    """The per-row values a selection ranks: ``|(y - offset) / spread - X w - b|``.

    ``coef=None`` leaves ``X`` out; ``absolute=False`` keeps the sign.
    Small and picklable: it travels with every selection task.
    """

    def __init__(self, offset=0.0, spread=1.0, coef=None, intercept=0.0, absolute=True):
        self.offset, self.spread = float(offset), float(spread)
        self.coef, self.intercept = coef, float(intercept)
        self.absolute = absolute

    def __call__(self, X_c, y_c):
        values = np.asarray(y_c, dtype=np.float64) - self.offset
        if self.spread != 1.0:
            values /= self.spread
        if self.coef is not None:
            values -= np.asarray(X_c @ self.coef).ravel() + self.intercept
        if self.absolute:
            np.abs(values, out=values)
        return values


def _select_rows(X_c, y_c, w_c, values, low, high, top):
    """Values in ``(low, high]`` of rows with weight, and their weights / top."""
    v = values(X_c, y_c)
    w = _chunk_weights(y_c, w_c) / top
    keep = (w > 0) & (v > low) & (v <= high)
    return v[keep], w[keep]


def binned_extremes(v, pivots):
    """Each value's bin ``(p[i-1], p[i]]`` and each bin's smallest and largest value.

    Bin 0 is ``(-inf, p[0]]`` and bin ``pivots.size`` is ``(p[-1], inf)``;
    an empty bin's smallest is ``inf`` and its largest ``-inf``. The values
    are not NaN (the statistics pass refuses them).
    """
    n_bins = pivots.size + 1
    if pivots.size <= _FEW_PIVOTS:
        # (A count of the pivots below each value: a few vectorised
        # comparisons cost half of searchsorted's branchy binary search.)
        bins = np.zeros(v.shape, dtype=np.intp)
        for pivot in pivots:
            bins += v > pivot
    else:
        bins = np.searchsorted(pivots, v, side="left")
    smallest = np.full(n_bins, np.inf)
    largest = np.full(n_bins, -np.inf)
    np.minimum.at(smallest, bins, v)
    np.maximum.at(largest, bins, v)
    return bins, smallest, largest


def histogram(v, w, pivots, stride):
    """Weight, count, smallest and largest value per bin ``(p[i-1], p[i]]``.

    And every ``stride``-th value, a sample for the next pivots.
    """
    n_bins = pivots.size + 1
    bins, smallest, largest = binned_extremes(v, pivots)
    return (
        np.bincount(bins, weights=w, minlength=n_bins),
        np.bincount(bins, minlength=n_bins),
        smallest,
        largest,
        v[::stride].copy(),
    )


def _histogram_kernel(X_c, y_c, w_c, values, low, high, top, pivots, stride):
    """:func:`histogram` of the chunk's values in ``(low, high]`` with weight."""
    v, w = _select_rows(X_c, y_c, w_c, values, low, high, top)
    return histogram(v, w, pivots, stride)


def _fetch_kernel(X_c, y_c, w_c, values, low, high, top):
    return _select_rows(X_c, y_c, w_c, values, low, high, top)


def _pivots(candidates, low_value, high_value, level=0.5):
    """Sorted distinct pivots, dense near the ``level`` quantile of ``candidates``.

    With few candidates, evenly spaced between the bin's smallest and
    largest values, or (before the first pass has found them) the
    candidates themselves.
    """
    if candidates.size >= 16:
        spread = 5.0 / np.sqrt(candidates.size)
        levels = np.concatenate(
            [
                np.linspace(0.0, 1.0, _PIVOTS // 4),
                np.linspace(level - spread, level + spread, _PIVOTS - _PIVOTS // 4),
            ]
        )
        pivots = np.quantile(candidates, np.clip(levels, 0.0, 1.0))
    elif np.isfinite(low_value) and np.isfinite(high_value):
        pivots = np.linspace(low_value, high_value, _PIVOTS)
    else:
        pivots = candidates
    pivots = pivots[np.isfinite(pivots)]
    # Each pivot also just below itself, so that a value with many copies
    # gets a bin of its own (which ends the search), and -inf values too.
    below = np.nextafter(pivots, -np.inf)
    lowest = -np.finfo(float).max
    return np.unique(np.concatenate([pivots, below, [lowest]]))


def weighted_median(data, values, sum_weight, top, hint):
    """The weighted median of ``values`` over all rows, as in memory, exactly.

    Equals :func:`skrobust._base.weighted_median` of the same values and
    weights: the first value (in sorted order) at which the cumulative
    weight reaches half the total (within ``1e-12`` of it), averaged with
    the next value carrying weight when the cumulative weight there is half
    the total. Rows without weight never count.

    Each histogram pass (one round trip) counts the rows with weight in
    bins between pivots and keeps the bin where half the weight is reached;
    its smallest and largest values, and the smallest value of the next
    bin with weight, come with it. A bin of one distinct value is the
    answer; a bin of at most ``_FETCH_VALUES`` values is fetched and ranked
    on the client. The first pivots are quantiles of ``hint`` (the values
    of the client's sample rows), later ones of a sample of the bin, so
    that a pass typically divides the candidates by several hundred.
    """
    half = 0.5 * sum_weight
    slack = 1e-12 * sum_weight
    low, high, below, next_above = -np.inf, np.inf, 0.0, np.inf
    candidates = np.asarray(hint, dtype=float)
    low_value, high_value, n_in_range = -np.inf, np.inf, data.n_samples
    for _ in range(_SELECTION_PASSES):
        pivots = _pivots(candidates, low_value, high_value)
        stride = max(1, n_in_range // _PIVOT_SAMPLE)
        parts = data.map_chunks(
            _histogram_kernel, values, low, high, top, pivots, stride
        )
        weight = np.sum([part[0] for part in parts], axis=0)
        count = np.sum([part[1] for part in parts], axis=0)
        smallest = np.min([part[2] for part in parts], axis=0)
        largest = np.max([part[3] for part in parts], axis=0)
        cum = below + np.cumsum(weight)
        positive = np.flatnonzero(weight > 0)
        b = int(np.searchsorted(cum, half - slack))
        # (Rounding of the sums may leave half the weight past the last bin.)
        b = min(max(b, int(positive[0])), int(positive[-1]))
        if weight[b] == 0:
            b = int(positive[np.searchsorted(positive, b)])
        after = positive[positive > b]
        following = float(smallest[after[0]]) if after.size else next_above
        bin_below = cum[b - 1] if b > 0 else below
        if smallest[b] == largest[b]:
            value = float(smallest[b])
            if cum[b] <= half + slack and np.isfinite(following):
                return 0.5 * (value + following)
            return value
        bin_low = pivots[b - 1] if b > 0 else low
        bin_high = pivots[b] if b < pivots.size else high
        if count[b] <= _FETCH_VALUES:
            parts = data.map_chunks(_fetch_kernel, values, bin_low, bin_high, top)
            return _rank(parts, bin_below, half, slack, following)
        samples = np.concatenate([part[4] for part in parts])
        candidates = samples[(samples > bin_low) & (samples <= bin_high)]
        low, high, below, next_above = bin_low, bin_high, bin_below, following
        low_value, high_value = float(smallest[b]), float(largest[b])
        n_in_range = int(count[b])
    # (Each pass divides the candidates by hundreds: unreachable in practice.)
    raise RuntimeError("the distributed selection did not narrow down")


def _rank(parts, below, half, slack, following):
    """The in-memory weighted-median rule on the fetched values of one bin."""
    v = np.concatenate([part[0] for part in parts])
    w = np.concatenate([part[1] for part in parts])
    order = np.argsort(v, kind="stable")
    v, cum = v[order], below + np.cumsum(w[order])
    i = min(int(np.searchsorted(cum, half - slack)), v.size - 1)
    if cum[i] <= half + slack:
        nxt = float(v[i + 1]) if i + 1 < v.size else following
        if np.isfinite(nxt):
            return 0.5 * (float(v[i]) + nxt)
    return float(v[i])


def _sum_of_squares_kernel(X_c, y_c, w_c, values, top, divisor):
    v = values(X_c, y_c) / divisor
    w = _chunk_weights(y_c, w_c) / top
    return float(np.abs(v).max(initial=0.0)), float(w @ (v * v))


def plausible_warm(estimator, output, n_outputs, data, stats, sample, offset, spread):
    """Output ``output``'s warm start (a previous fit, ``y`` units) if within reach.

    None without one (``estimator._warm_start_fit``) or when it is too far.

    :func:`skrobust._base.warm_start_is_plausible` on dask: the normalised
    MAD of its residuals in units of the robust ``spread`` of ``y``, by one
    distributed selection, at most ``WARM_START_MAX_SPREADS``.
    """
    from ._base import MAD_NORMAL_CONSTANT, WARM_START_MAX_SPREADS

    warm = estimator._warm_start_fit(output, n_outputs, data.n_features)
    if warm is None:
        return None
    intercept = warm.intercept - offset if estimator.fit_intercept else 0.0
    coef = np.asarray(warm.coef, dtype=np.float64) / spread
    values = RowValues(offset, spread, coef, intercept / spread)
    median = weighted_median(data, values, stats[0], stats[1], sample.hint(values))
    if median / MAD_NORMAL_CONSTANT <= WARM_START_MAX_SPREADS:
        return warm
    return None


def robust_scale(data, stats, sample, values, spread_if_zero=None, median=None):
    """``median |v| / 0.6745`` over all rows; the weighted RMS if that is 0.

    Follows :func:`skrobust._scale.initial_scale` (``spread_if_zero=None``,
    floored at ``MIN_RELATIVE_SCALE``) or, with ``spread_if_zero``, the
    fallbacks of :func:`skrobust._base.target_offset_scale`. ``median``,
    when known, is the weighted median of ``|v|`` (no selection then).
    """
    from ._base import MAD_NORMAL_CONSTANT
    from ._scale import MIN_RELATIVE_SCALE

    sum_weight, top = stats[0], stats[1]
    if median is None:
        median = weighted_median(data, values, sum_weight, top, sample.hint(values))
    mad = median / MAD_NORMAL_CONSTANT
    threshold = MIN_RELATIVE_SCALE if spread_if_zero is None else 0.0
    if mad > threshold:
        return mad
    parts = data.map_chunks(_sum_of_squares_kernel, values, top, 1.0)
    largest = max(part[0] for part in parts)
    if not largest > 0:
        if spread_if_zero is None:
            return MIN_RELATIVE_SCALE
        return spread_if_zero
    parts = data.map_chunks(_sum_of_squares_kernel, values, top, largest)
    rms = largest * np.sqrt(sum(part[1] for part in parts) / sum_weight)
    if spread_if_zero is None:
        return max(float(rms), MIN_RELATIVE_SCALE)
    return float(rms) if rms > 0 else largest
