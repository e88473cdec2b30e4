"""Exact order statistics of per-row values over row-chunked dask data (issue #15).

The in-memory quantile solvers centre their fits at a weighted quantile of
the residuals and keep the rows nearest a fit: the exact solver's band
(:func:`skrobust._quantile_exact._weighted_quantile`,
:func:`skrobust._quantile_exact._smallest`) and the smoothed solver's rows
near its start (:func:`skrobust._quantile_smooth._minimize_near_start`).
:func:`select` finds the same values on dask data: a first pass returns a
histogram of all values and the values of a bracket that the client's
sample places around the answer, ranked on the client (one round trip when
the bracket holds it); each further pass narrows the bin that holds it, as
:func:`skrobust._dask_median.weighted_median` does. :func:`tie_allowances` shares
out the rows tied at a ``m``-th value as memory's positional rule does.

The rows a selection ranks, and what each counts, are a ``rows`` callable:
``rows(X_c, y_c, w_c)`` gives a chunk's ``(values, amounts)`` (its rows of
positive weight and their weights, or every row counting one). Picklable,
it travels with every task.
"""

from typing import NamedTuple

import numpy as np

from ._dask_median import _FETCH_VALUES, _PIVOT_SAMPLE, _SELECTION_PASSES, _pivots
from ._dask_median import histogram as _histogram

# The first pass's bracket: the sample's values within this many standard
# errors of the expected rank (a miss, which costs a pass, has probability
# ~6e-5 per side), fetched only if at most _BRACKET_VALUES values are
# expected in it.
_BRACKET_Z = 4.0
_BRACKET_VALUES = 2 * _FETCH_VALUES


class Selected(NamedTuple):
    """A selected value and what the passes counted on the way.

    ``amount`` and ``count`` are the total amount and the number of the
    rows; ``below`` and ``at`` the numbers of them whose value is below, and
    equal to, ``value``.
    """

    value: float
    amount: float
    count: int
    below: int
    at: int


def _in_range(rows, X_c, y_c, w_c, low, high):
    v, w = rows(X_c, y_c, w_c)
    keep = (v > low) & (v <= high)
    return v[keep], w[keep]


def _histogram_kernel(X_c, y_c, w_c, rows, low, high, pivots, stride):
    """The chunk's histogram of its values in ``(low, high]``."""
    return _histogram(*_in_range(rows, X_c, y_c, w_c, low, high), pivots, stride)


def _fetch_kernel(X_c, y_c, w_c, rows, low, high):
    """The chunk's values in ``(low, high]`` and their amounts."""
    return _in_range(rows, X_c, y_c, w_c, low, high)


def _first_kernel(X_c, y_c, w_c, rows, pivots, stride, bracket, cap):
    """The histogram of all the chunk's values, and those in ``bracket`` if few.

    The values in ``(bracket[0], bracket[1]]`` with their amounts, or None
    if there are more than ``cap`` times the chunk's rows plus a hundred
    (or no bracket).
    """
    v, w = rows(X_c, y_c, w_c)
    histogram = _histogram(v, w, pivots, stride)
    if bracket is None:
        return histogram, None
    inside = (v > bracket[0]) & (v <= bracket[1])
    if np.count_nonzero(inside) > cap * v.size + 100:
        return histogram, None
    return histogram, (v[inside], w[inside])


def _first_pivots(hint, fraction, n_samples):
    """Pivots of the first pass, its bracket (or None) and the bracket's share.

    The pivots crowd about the hint's ``fraction``-quantile; the bracket
    is the hint's values ``_BRACKET_Z`` standard errors either side of it
    (two pivots), fetched when about ``_BRACKET_VALUES`` values or fewer of
    the ``n_samples`` rows are expected in it; ``share`` is twice the
    fraction expected. No bracket for a hint of fewer than 16 values.
    """
    values = np.sort(np.asarray(hint, dtype=float))
    values = values[np.isfinite(values)]
    pivots = _pivots(values, -np.inf, np.inf, fraction)
    if values.size < 16:
        return pivots, None, 0.0
    half = _BRACKET_Z * np.sqrt(fraction * (1.0 - fraction) / values.size)
    half += 2.0 / values.size
    low, high = fraction - half, fraction + half
    share = min(high, 1.0) - max(low, 0.0)
    if share * n_samples > _BRACKET_VALUES:
        return pivots, None, 0.0
    bracket = (
        float(np.quantile(values, low)) if low > 0 else -np.inf,
        float(np.quantile(values, high)) if high < 1 else np.inf,
    )
    edges = [edge for edge in bracket if np.isfinite(edge)]
    return np.unique(np.concatenate([pivots, edges])), bracket, 2.0 * share


def _ranked(parts, amount_below, count_below, target, totals):
    """The :class:`Selected` from the fetched values of one range."""
    v = np.concatenate([part[0] for part in parts])
    w = np.concatenate([part[1] for part in parts])
    order = np.argsort(v, kind="stable")
    v = v[order]
    k = min(
        int(np.searchsorted(amount_below + np.cumsum(w[order]), target)), v.size - 1
    )
    value = float(v[k])
    below = count_below + int(np.count_nonzero(v < value))
    return Selected(value, *totals, below, int(np.count_nonzero(v == value)))


def select(data, rows, target_of, hint, fraction):
    """The smallest value whose rows at or below it reach ``target_of(total)``.

    Over the values and amounts of ``rows`` (module docstring): the value
    at index ``searchsorted(cumsum(amounts[order]), target)`` of all of
    them sorted by value, ``target = target_of(total amount)`` (the last
    one if rounding leaves the target past the total). That is the rule of
    :func:`skrobust._quantile_exact._weighted_quantile` (amounts the
    weights, ``target = q S``) and, with amounts of one and ``target =
    k + 1``, ``np.partition(values, k)[k]``. ``hint`` are values of the
    client's sample rows and ``fraction`` the share of them expected below
    the answer. Returns a :class:`Selected`.
    """
    pivots, bracket, share = _first_pivots(hint, fraction, data.n_samples)
    parts = data.map_chunks(
        _first_kernel,
        rows,
        pivots,
        max(1, data.n_samples // _PIVOT_SAMPLE),
        bracket,
        # (More than twice its share of a chunk's rows in the bracket: a
        # poor hint, and the values stay on the worker.)
        share,
    )
    fetched = [part[1] for part in parts]
    parts = [part[0] for part in parts]
    low, high, below, count_below = -np.inf, np.inf, 0.0, 0
    target = totals = None
    for _ in range(_SELECTION_PASSES):
        amount = np.sum([part[0] for part in parts], axis=0)
        count = np.sum([part[1] for part in parts], axis=0)
        smallest = np.min([part[2] for part in parts], axis=0)
        largest = np.max([part[3] for part in parts], axis=0)
        if target is None:
            totals = float(amount.sum()), int(count.sum())
            target = float(target_of(totals[0]))
        cum = below + np.cumsum(amount)
        positive = np.flatnonzero(count > 0)
        b = int(np.searchsorted(cum, target))
        # (Rounding of the sums may leave the target past the last bin.)
        b = min(max(b, int(positive[0])), int(positive[-1]))
        if count[b] == 0:
            b = int(positive[np.searchsorted(positive, b)])
        before = count_below + int(count[:b].sum())
        if smallest[b] == largest[b]:
            return Selected(float(smallest[b]), *totals, before, int(count[b]))
        bin_low = pivots[b - 1] if b > 0 else low
        bin_high = pivots[b] if b < pivots.size else high
        if bracket is not None and None not in fetched:
            if bracket[0] <= bin_low and bin_high <= bracket[1]:
                # The first pass's bracket holds the answer's bin.
                edge = int(np.searchsorted(pivots, bracket[0]))
                if np.isfinite(bracket[0]):
                    below, count_below = cum[edge], int(count[: edge + 1].sum())
                return _ranked(fetched, below, count_below, target, totals)
        bracket = None
        bin_below = cum[b - 1] if b > 0 else below
        if count[b] <= _FETCH_VALUES:
            parts = data.map_chunks(_fetch_kernel, rows, bin_low, bin_high)
            return _ranked(parts, bin_below, before, target, totals)
        samples = np.concatenate([part[4] for part in parts])
        candidates = samples[(samples > bin_low) & (samples <= bin_high)]
        level = float(np.clip((target - bin_below) / amount[b], 0.0, 1.0))
        pivots = _pivots(candidates, float(smallest[b]), float(largest[b]), level)
        low, high, below, count_below = bin_low, bin_high, bin_below, before
        parts = data.map_chunks(
            _histogram_kernel,
            rows,
            low,
            high,
            pivots,
            max(1, int(count[b]) // _PIVOT_SAMPLE),
        )
    # (Each pass divides the candidates by hundreds: unreachable in practice.)
    raise RuntimeError("the distributed selection did not narrow down")


def _ties_kernel(X_c, y_c, w_c, rows, value):
    """How many of the chunk's rows have ``value``."""
    v, _ = rows(X_c, y_c, w_c)
    return int(np.count_nonzero(v == value))


def tie_allowances(data, rows, selected, wanted):
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
    counts = data.map_chunks(_ties_kernel, rows, selected.value)
    allowances = []
    for count in counts:
        allowances.append(min(count, max(room, 0)))
        room -= count
    return allowances
