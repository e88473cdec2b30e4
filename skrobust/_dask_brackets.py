r"""The median of ``y`` and the MAD about it in one pass, from the sample (issue #15).

:func:`skrobust._dask_median.weighted_median` finds a weighted median exactly in
two round trips (a histogram pass, then the values of one bin fetched);
the standardisation of ``y`` needs two of them, one after the other (the
MAD is about the median), four round trips in all. Here the client's dense
strided sample of ``y`` (fetched with the statistics pass) brackets both,
and one pass confirms them:

* the median ``m`` lies in ``(lo, hi]``, the sample's weighted quantiles at
  ``1/2 -+ z / (2 sqrt(s))`` (``s`` the sample's effective size, ``z =
  _BRACKET_Z`` standard errors);
* the MAD ``t`` (the median of ``|y - m|``) lies in ``[t_lo, t_hi]``, the
  same quantiles of ``|y - m_s|`` about the sample's median ``m_s``,
  widened by the median's bracket (``t`` moves by at most ``|m - m_s|``);
  the rows whose ``|y - m|`` is near ``t`` then have ``y`` in
  ``(lo - t_hi, hi - t_lo]`` or in ``(lo + t_lo, hi + t_hi]``.

The pass counts the weight of every bin between those boundaries and its
smallest and largest ``y``, and fetches the ``y`` of the rows inside the
three intervals (each chunk at most its share of ``_BRACKET_VALUES``). The
median is then ranked exactly among the fetched values of ``(lo, hi]``
with the weight below ``lo`` (as :func:`skrobust._dask_median._rank` does), and
the MAD among the fetched ``|y - m|`` with the weight of the bins between
the two side intervals (all closer to ``m`` than any fetched candidate
that matters) below them and the outer bins above. Whenever a bracket
misses (the sample was unlucky, heavy ties filled a bin, the median sits
in a bin that was not fetched), :func:`bracketed_targets` returns None and
the caller runs the exact selection passes instead: the result is always
the in-memory rule's, only the number of round trips changes.
"""

import numpy as np

from ._dask_median import binned_extremes

# Half-width of a bracket in standard errors of the sample quantile: a
# bracket misses with probability ~6e-5 per side (then the selection passes).
_BRACKET_Z = 4.0

# The same for the residuals' median at each Newton point, bracketed by the
# client's sample of X (10 000 rows): misses cost only the two selection
# passes after the fit, and each pass's fetch is 2 z / sqrt(s) of the rows.
_RESIDUAL_Z = 3.0

# Residual brackets ride on the passes after an evaluation whose largest
# gradient entry is below this times sqrt(tol) (1e-3 at tol=1e-10).
_NEAR_OPTIMUM = 100.0

# Residual brackets are requested only when they would fetch at most this
# many values, or this fraction of the rows (3% with the default sample).
_RESIDUAL_VALUES = 50_000
_RESIDUAL_FRACTION = 1 / 32

# The most values one confirming pass may fetch in all (each chunk its share
# of them, by rows), so that ties or a poor sample cannot flood the client.
_BRACKET_VALUES = 2_000_000


def _sample_quantiles(values, weights, levels):
    """Weighted quantiles of the sample (inverse of the cumulative weight)."""
    order = np.argsort(values, kind="stable")
    v, cum = values[order], np.cumsum(weights[order])
    positions = np.searchsorted(cum, np.asarray(levels) * cum[-1])
    return v[np.clip(positions, 0, v.size - 1)]


def plan(sketch, fit_intercept):
    """The bracket's intervals from the sketch of ``y`` (a ``_dask_statistics.Sketch``).

    Returns ``(median, lower, upper)``: ``(lo, hi)`` of the median (None
    without an intercept, where the offset is 0) and the two side
    intervals of the MAD, or None when the sketch holds too few values.
    """
    y, weights = sketch.values, sketch.weights
    if y.size < 16:
        return None
    half_width = _BRACKET_Z * 0.5 / np.sqrt(sketch.effective_size) + sketch.resolution
    levels = [0.5 - half_width, 0.5, 0.5 + half_width]
    if fit_intercept:
        lo, centre, hi = _sample_quantiles(y, weights, levels)
        # (Each below itself: a median tied to the quantile is inside.)
        median = (np.nextafter(lo, -np.inf), hi)
    else:
        centre, median = 0.0, None
        lo = hi = 0.0
    t_lo, _, t_hi = _sample_quantiles(np.abs(y - centre), weights, levels)
    # t moves by less than |m - m_s| (often far less: not at all for
    # symmetric y); a quarter of the median's bracket is the margin.
    margin = 0.25 * (hi - lo)
    t_lo, t_hi = max(t_lo - margin, 0.0), t_hi + margin
    lower = (np.nextafter(lo - t_hi, -np.inf), hi - t_lo)
    upper = (np.nextafter(lo + t_lo, -np.inf), hi + t_hi)
    if not all(np.isfinite(lower + upper)):
        return None
    return median, lower, upper


def _bracket_kernel(X_c, y_c, w_c, cap, pivots, fetch, top):
    """Each bin's weight and extreme ``y``, and the ``y`` of the fetched bins."""
    y = np.asarray(y_c, dtype=np.float64)
    weights = None
    if w_c is not None:
        weights = np.asarray(w_c, dtype=np.float64) / top
        keep = weights > 0
        y, weights = y[keep], weights[keep]
    bins, smallest, largest = binned_extremes(y, pivots)
    if weights is None:  # (counts, without an array of ones)
        weight = np.bincount(bins, minlength=pivots.size + 1) / top
    else:
        weight = np.bincount(bins, weights=weights, minlength=pivots.size + 1)
    fetched = fetch[bins]
    if np.count_nonzero(fetched) > cap:
        return weight, smallest, largest, None, None
    fetched_weights = None if weights is None else weights[fetched]
    return weight, smallest, largest, y[fetched], fetched_weights


class Bracket:
    """One confirming pass's bins and fetched values, merged on the client."""

    def __init__(self, data, top, intervals):
        bounds = sorted({float(b) for interval in intervals for b in interval})
        self.pivots = np.asarray(bounds)
        upper = np.append(self.pivots, np.inf)
        lower = np.concatenate([[-np.inf], self.pivots])
        self.lower, self.upper = lower, upper
        self.fetch = np.zeros(self.pivots.size + 1, dtype=bool)
        for a, c in intervals:
            self.fetch |= (lower >= a) & (upper <= c)
        arguments = (self.pivots, self.fetch, top)
        parts = data.map_chunks(_bracket_kernel, *arguments, each=chunk_caps(data))
        self.complete = all(part[3] is not None for part in parts)
        self.weight = np.sum([part[0] for part in parts], axis=0)
        self.smallest = np.min([part[1] for part in parts], axis=0)
        self.largest = np.max([part[2] for part in parts], axis=0)
        if self.complete:
            self.y = np.concatenate([part[3] for part in parts])
            # Unit weights are not fetched: None stands for ones.
            self.w = None
            if data.sample_weight is not None:
                self.w = np.concatenate([part[4] for part in parts])

    def weights(self, mask):
        """The weights of the fetched values where ``mask`` (None: all ones)."""
        return None if self.w is None else self.w[mask]

    def weight_of(self, mask):
        """The total weight of the fetched values where ``mask``."""
        if self.w is None:
            return float(np.count_nonzero(mask))
        return float(self.w[mask].sum())

    def bins_within(self, a, c):
        """The bins inside ``(a, c]``."""
        return (self.lower >= a) & (self.upper <= c)


def chunk_caps(data):
    """Each chunk's share of ``_BRACKET_VALUES``, by rows (and at least 1000)."""
    rows = np.asarray(data.X.chunks[0], dtype=float)
    shares = np.ceil(_BRACKET_VALUES * rows / max(rows.sum(), 1.0))
    return [int(max(share, 1000)) for share in shares]


def _rank_segment(v, w, below, half, slack, following):
    """The in-memory weighted-median rule on a run of exact values, or None.

    ``below`` is the weight of every value smaller than the run, and
    ``following`` the smallest value after it (``inf`` if none); None when
    the median is not decided inside the run. ``w=None`` is unit weights.
    """
    if not below < half - slack or v.size == 0:
        return None
    if w is None:
        # (Unit weights: a sort, and the counts, without argsort's indices.)
        v = np.sort(v)
        cum = np.arange(1.0, v.size + 1.0)
    else:
        order = np.argsort(v, kind="stable")
        v, cum = v[order], np.cumsum(w[order])
    cum += below
    i = int(np.searchsorted(cum, half - slack))
    if i == v.size:
        return None
    if cum[i] <= half + slack:
        nxt = float(v[i + 1]) if i + 1 < v.size else following
        if np.isfinite(nxt):
            return 0.5 * (float(v[i]) + nxt)
    return float(v[i])


def _median(bracket, interval, half, slack):
    lo, hi = interval
    below = float(bracket.weight[bracket.upper <= lo].sum())
    inside = (bracket.y > lo) & (bracket.y <= hi)
    above = bracket.lower >= hi
    following = float(bracket.smallest[above].min(initial=np.inf))
    return _rank_segment(
        bracket.y[inside], bracket.weights(inside), below, half, slack, following
    )


def _median_deviation(bracket, offset, lower, upper, half, slack):
    """The weighted median of ``|y - offset|``, or None (see the module)."""
    opaque = ~bracket.fetch & (bracket.weight > 0)
    middle = bracket.bins_within(lower[1], upper[0])
    smallest, largest = bracket.smallest, bracket.largest
    # Bounds of |y - offset| over each bin (exact: y - offset rounds monotonically).
    near = np.maximum(offset - smallest, largest - offset)
    inner = opaque & middle
    outer = opaque & ~middle
    if np.any(outer & (smallest < offset) & (largest > offset)):
        return None
    far = np.where(largest <= offset, offset - largest, smallest - offset)
    limit_low = float(near[inner].max(initial=-np.inf))
    limit_high = float(far[outer].min(initial=np.inf))
    if not limit_low < limit_high:
        return None
    v = np.abs(bracket.y - offset)
    low = v <= limit_low
    below = float(bracket.weight[inner].sum()) + bracket.weight_of(low)
    run = ~low & (v < limit_high)
    v = v[run]
    return _rank_segment(v, bracket.weights(run), below, half, slack, limit_high)


def bracketed_targets(data, stats, sample, fit_intercept):
    """``(offset, median |y - offset|)`` in one round trip, or None.

    ``offset`` is the weighted median of ``y`` (0 without an intercept),
    as :func:`skrobust._base.target_offset_scale` computes them; None when
    the sample's brackets miss (see the module), and the caller selects.
    """
    if sample.y_sketch is None:
        return None
    intervals = plan(sample.y_sketch, fit_intercept)
    if intervals is None:
        return None
    median, lower, upper = intervals
    sum_weight, top = stats[0], stats[1]
    half, slack = 0.5 * sum_weight, 1e-12 * sum_weight
    bracket = Bracket(
        data, top, [lower, upper] + ([median] if median is not None else [])
    )
    if not bracket.complete:
        return None
    offset = 0.0
    if median is not None:
        offset = _median(bracket, median, half, slack)
        if offset is None:
            return None
    deviation = _median_deviation(bracket, offset, lower, upper, half, slack)
    if deviation is None:
        return None
    return offset, deviation


# -- the residuals' median at the final point of a fit ---------------------------


def _residual_kernel(X_c, y_c, w_c, cap, request):
    """The chunk's share of a residual bracket (see :class:`ResidualMedians`)."""
    w, b, offset, spread, low, high, top = request
    # (X @ w on every row: a masked X would be a copy of the chunk. The
    # pass rides on a gradient pass, so each temporary over the rows counts:
    # no unit weights are made, and masks are combined in place.)
    with np.errstate(over="ignore", invalid="ignore"):
        residuals = np.subtract(y_c, offset, dtype=np.float64)
        residuals /= spread
        residuals -= np.asarray(X_c @ w).ravel()
        residuals -= b
    v = np.abs(residuals, out=residuals)
    weights = None
    if w_c is not None:
        weights = np.asarray(w_c, dtype=np.float64) / top
        keep = weights > 0
        v, weights = v[keep], weights[keep]
    beyond = v > high
    following = float(np.min(v, where=beyond, initial=np.inf))
    at_most = v <= low
    if weights is None:
        below = float(np.count_nonzero(at_most))
    else:
        below = float(weights.sum(where=at_most))
    inside = np.greater(v, low, out=at_most)
    inside &= ~beyond
    if np.count_nonzero(inside) > cap:
        return below, None, None, following
    return below, v[inside], (None if weights is None else weights[inside]), following


class ResidualMedians:
    """``median |y_s - X w - b|`` at the points a fit evaluates, from its passes.

    ``noise_scale_`` is the median absolute residual at the final fit,
    which in the selection of :func:`skrobust._dask_median.weighted_median`
    takes two round trips after the fit. The final point is one the solver
    evaluated, so each evaluation's pass near the optimum also brackets the
    median at its point with the client's sample (its absolute residuals'
    quantiles at ``1/2 -+ z / (2 sqrt(s))``) and fetches the residuals
    inside; the medians found are kept by point. Near the optimum: the
    previous evaluation's largest gradient entry is below
    ``_NEAR_OPTIMUM * sqrt(tol)``, from where Newton's quadratic steps
    reach ``tol`` in one or two passes (the bracket costs each pass a
    product ``X w``, a quarter of a gradient pass).
    ``y_s = (y - offset) / spread``; ``(w, b)`` in those units.
    """

    def __init__(self, data, stats, sample, offset, spread, tol):
        self.data, self.stats = data, stats
        self.near = _NEAR_OPTIMUM * np.sqrt(tol)
        # (The sample's own arrays: a copy of its X would be 1% of X.)
        self.X, self.weights = sample.X, sample.weights
        self.positive = sample.weights > 0
        self.y = (sample.y - offset) / spread
        self.offset, self.spread = offset, spread
        self.found = {}

    def near_optimum(self, gradient):
        """Whether the next evaluation, after one with ``gradient``, may be the last."""
        return gradient is not None and gradient <= self.near

    @staticmethod
    def key(w, b):
        return np.append(np.asarray(w, dtype=np.float64), float(b)).tobytes()

    def request(self, w, b):
        """What each chunk's task needs to bracket the median at ``(w, b)``, or None."""
        weights = self.weights[self.positive]
        if weights.size < 16:
            return None
        v = np.abs(self.y - self.X @ w - b)[self.positive]
        effective = weights.sum() ** 2 / (weights @ weights)
        half_width = _RESIDUAL_Z * 0.5 / np.sqrt(effective)
        n = self.data.n_samples
        if 2.0 * half_width * n > max(_RESIDUAL_VALUES, n * _RESIDUAL_FRACTION):
            return None  # (a small sample: the selection after the fit is leaner)
        low, high = _sample_quantiles(v, weights, [0.5 - half_width, 0.5 + half_width])
        low = float(np.nextafter(low, -np.inf))
        top = self.stats[1]
        return np.asarray(w, float), float(b), self.offset, self.spread, low, high, top

    def record(self, w, b, parts):
        """Rank the fetched residuals of one pass; keep the median if decided."""
        if any(part[1] is None for part in parts):
            return
        sum_weight = self.stats[0]
        below = sum(part[0] for part in parts)
        following = min(part[3] for part in parts)
        v = np.concatenate([part[1] for part in parts])
        weights = None
        if self.data.sample_weight is not None:
            weights = np.concatenate([part[2] for part in parts])
        parts.clear()  # (the chunks' copies: the fetch is the pass's memory)
        median = _rank_segment(
            v, weights, below, 0.5 * sum_weight, 1e-12 * sum_weight, following
        )
        if median is not None:
            self.found[self.key(w, b)] = median

    def median(self, w, b):
        """The median absolute residual at ``(w, b)`` if a pass found it, else None."""
        return self.found.get(self.key(w, b))
