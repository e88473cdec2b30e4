"""Exact order statistics of per-row values over row-chunked dask data (issue #15).

The in-memory exact quantile solver centres its fits at a weighted quantile
of the residuals and keeps the ``m`` rows nearest a fit
(:func:`skrobust._quantile_exact._weighted_quantile`,
:func:`skrobust._quantile_exact._smallest`). :func:`lower_quantile` finds
the same values on dask data, by the histogram passes of
:func:`skrobust._dask.weighted_median` (one round trip each, typically two
in all: a histogram whose pivots the client's sample places near the
answer, then the values of one bin fetched and ranked), and
:func:`tie_allowances` shares out the rows tied at the ``m``-th value as
memory's positional rule does.
"""

from typing import NamedTuple

import numpy as np

from ._dask import (
    _FETCH_VALUES,
    _PIVOT_SAMPLE,
    _SELECTION_PASSES,
    _chunk_weights,
    _fetch_kernel,
    _histogram_kernel,
    _pivots,
    _select_rows,
)


class Selected(NamedTuple):
    """A selected value and what the passes counted on the way.

    ``weight`` and ``count`` are the total weight (divided by the data's
    largest) and the number of the rows of positive weight; ``below`` and
    ``at`` the numbers of them whose value is below, and equal to,
    ``value``.
    """

    value: float
    weight: float
    count: int
    below: int
    at: int


def _near_fraction(values, fraction, sigmas):
    """The values of sorted ``values`` within ``sigmas`` of their ``fraction``-quantile.

    In standard errors of a sample quantile, ``sqrt(f (1 - f) / N)``, plus
    two values either side. Returns ``(low, high)`` indices.
    """
    size = values.size
    half = sigmas * np.sqrt(fraction * (1.0 - fraction) / size) + 2.0 / size
    low = int(max(fraction - half, 0.0) * size)
    high = int(np.ceil(min(fraction + half, 1.0) * size))
    return low, min(max(high, low + 1), size)


def _first_pivots(hint, fraction):
    """Pivots of the first pass, the bracket whose values it fetches, its share.

    The histogram's pivots crowd in the middle of their candidates: taking
    the hint's values about the expected rank puts them where the answer
    is. The bracket is the hint's values within five standard errors of
    that rank (two pivots): the answer lies in it but for a poor hint, and
    the first pass also brings the values in it. ``share`` is the fraction
    of the hint in the bracket. Without a hint of 16 values or more, no
    bracket (None).
    """
    values = np.sort(np.asarray(hint, dtype=float))
    values = values[np.isfinite(values)]
    if values.size < 16:
        return _pivots(values, -np.inf, np.inf), None, 0.0
    low, high = _near_fraction(values, fraction, 10.0)
    pivots = _pivots(values[low:high], -np.inf, np.inf)
    low, high = _near_fraction(values, fraction, 5.0)
    bracket = (
        values[low - 1] if low > 0 else -np.inf,
        values[high] if high < values.size else np.inf,
    )
    edges = [edge for edge in bracket if np.isfinite(edge)]
    share = (high - low + 2) / values.size
    return np.unique(np.concatenate([pivots, edges])), bracket, share


def _bracket_histogram_kernel(X_c, y_c, w_c, values, top, pivots, stride, bracket, cap):
    """The histogram of all rows, and the values in ``bracket`` if few.

    :func:`skrobust._dask._histogram_kernel` over all values, and the
    values in ``(bracket[0], bracket[1]]`` with their weights, or None if
    there are more than ``cap`` times the chunk's rows of positive weight
    plus a thousand (or no bracket).
    """
    histogram = _histogram_kernel(
        X_c, y_c, w_c, values, -np.inf, np.inf, top, pivots, stride
    )
    if bracket is None:
        return histogram, None
    v, w = _select_rows(X_c, y_c, w_c, values, bracket[0], bracket[1], top)
    if v.size > cap * int(histogram[1].sum()) + 1000:
        return histogram, None
    return histogram, (v, w)


def _rank(v, w, below, target, by_count):
    """The first value of ``v``, sorted, whose cumulative amount reaches ``target``.

    ``below`` is the amount of the rows below them all.
    """
    order = np.argsort(v, kind="stable")
    v = v[order]
    steps = np.ones(v.size) if by_count else w[order]
    k = min(int(np.searchsorted(below + np.cumsum(steps), target)), v.size - 1)
    return float(v[k]), v


def lower_quantile(data, values, top, target_of, hint, fraction, by_count=False):
    """Smallest value whose rows at or below it reach ``target_of(total)``.

    Over the rows of positive weight: with ``by_count``, the smallest
    ``v`` such that at least ``target_of(n)`` of the ``n`` rows have a value
    at most ``v`` (the ``ceil(target)``-th smallest value); else the smallest
    ``v`` such that their weights (divided by ``top``) at most ``v`` sum to at
    least ``target_of(S)``, ``S`` all of them (the rule of
    :func:`skrobust._quantile_exact._weighted_quantile`). ``hint`` are
    values of the client's sample and ``fraction`` the expected fraction of
    them below the answer. Returns a :class:`Selected`.

    One round trip when the hint's bracket holds the answer (the first
    pass brings the bracket's values); otherwise each further histogram
    pass narrows the bin that holds it, whose values are fetched once few.
    """
    pivots, bracket, share = _first_pivots(hint, fraction)
    parts = data.map_chunks(
        _bracket_histogram_kernel,
        values,
        top,
        pivots,
        max(1, data.n_samples // _PIVOT_SAMPLE),
        bracket,
        # (A bracket with four times its share of a chunk's rows: a poor
        # hint, and the values stay on the worker.)
        4.0 * share,
    )
    fetched = [part[1] for part in parts]
    parts = [part[0] for part in parts]
    low, high, below, below_count = -np.inf, np.inf, 0.0, 0
    target = totals = None
    for _ in range(_SELECTION_PASSES):
        weight = np.sum([part[0] for part in parts], axis=0)
        count = np.sum([part[1] for part in parts], axis=0)
        smallest = np.min([part[2] for part in parts], axis=0)
        largest = np.max([part[3] for part in parts], axis=0)
        amount = count.astype(float) if by_count else weight
        if target is None:
            totals = float(weight.sum()), int(count.sum())
            target = float(target_of(totals[1] if by_count else totals[0]))
        cum = below + np.cumsum(amount)
        positive = np.flatnonzero(count > 0)
        b = int(np.searchsorted(cum, target))
        # (Rounding of the sums may leave the target past the last bin.)
        b = min(max(b, int(positive[0])), int(positive[-1]))
        if count[b] == 0:
            b = int(positive[np.searchsorted(positive, b)])
        count_below = below_count + int(count[:b].sum())
        if smallest[b] == largest[b]:
            return Selected(float(smallest[b]), *totals, count_below, int(count[b]))
        bin_low = pivots[b - 1] if b > 0 else low
        bin_high = pivots[b] if b < pivots.size else high
        rows = None
        if bracket is not None and fetched is not None and None not in fetched:
            if bracket[0] <= bin_low and bin_high <= bracket[1]:
                # The first pass's bracket holds the answer's bin.
                first = int(np.searchsorted(pivots, bracket[0]))
                rows = fetched, (cum[first] if np.isfinite(bracket[0]) else below)
                rows_below = (
                    below_count + int(count[: first + 1].sum())
                    if np.isfinite(bracket[0])
                    else below_count
                )
        fetched = None
        if rows is None and count[b] <= _FETCH_VALUES:
            rows = (
                data.map_chunks(_fetch_kernel, values, bin_low, bin_high, top),
                cum[b - 1] if b > 0 else below,
            )
            rows_below = count_below
        if rows is not None:
            chunks, amount_below = rows
            v = np.concatenate([part[0] for part in chunks])
            w = np.concatenate([part[1] for part in chunks])
            value, v = _rank(v, w, amount_below, target, by_count)
            return Selected(
                value,
                *totals,
                rows_below + int(np.count_nonzero(v < value)),
                int(np.count_nonzero(v == value)),
            )
        samples = np.concatenate([part[4] for part in parts])
        candidates = samples[(samples > bin_low) & (samples <= bin_high)]
        low, high = bin_low, bin_high
        below, below_count = (cum[b - 1] if b > 0 else below), count_below
        pivots = _pivots(candidates, float(smallest[b]), float(largest[b]))
        parts = data.map_chunks(
            _histogram_kernel,
            values,
            low,
            high,
            top,
            pivots,
            max(1, int(count[b]) // _PIVOT_SAMPLE),
        )
    # (Each pass divides the candidates by hundreds: unreachable in practice.)
    raise RuntimeError("the distributed selection did not narrow down")


def _ties_kernel(X_c, y_c, w_c, values, value):
    """How many of the chunk's rows of positive weight have ``value``."""
    v = values(X_c, y_c)
    return int(np.count_nonzero((v == value) & (_chunk_weights(y_c, w_c) > 0)))


def tie_allowances(data, values, selected, wanted):
    """Rows tied at ``selected.value`` each chunk may keep, in row order.

    ``wanted`` rows of value at most ``selected.value`` are to be kept: all
    those below it, and the first of the tied ones in the order of the
    rows, as :func:`skrobust._quantile_exact._smallest` takes them on large
    data. None when every tied row fits (no pass); else a list, one count
    per chunk (one pass, which counts each chunk's tied rows).
    """
    room = int(wanted) - selected.below
    if selected.at <= room:
        return None
    counts = data.map_chunks(_ties_kernel, values, selected.value)
    allowances = []
    for count in counts:
        allowances.append(min(count, max(room, 0)))
        room -= count
    return allowances
