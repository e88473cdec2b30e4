"""Exact order statistics of row values on dask data (skrobust._dask_select).

The oracle is numpy on all rows at once: a stable sort and a cumulative sum.
The values are chosen with many ties, rows of zero weight and a chunk of a
single row, so that every rule of the selection is exercised.
"""

import dask.array as da
import numpy as np
import pytest
from _dask_data import weights_with_empty_chunk

from skrobust import QuantileRegressor, _dask_chunks, _dask_quantile
from skrobust._dask_select import select
from skrobust._quantile_smooth import _weighted_quantile

pytestmark = pytest.mark.usefixtures("small_dask_sample")

CHUNKS = (1, 4999, 3000, 7000, 5000)
N = sum(CHUNKS)


def oracle(values, weights, target_of, by_count):
    """Smallest value whose rows at or below it reach the target."""
    positive = weights > 0
    v, w = values[positive], weights[positive]
    order = np.argsort(v, kind="stable")
    amounts = np.ones(v.size) if by_count else w[order]
    target = target_of(v.size if by_count else w.sum())
    k = min(int(np.searchsorted(np.cumsum(amounts), target)), v.size - 1)
    return v[order][k]


def chunked(y, weights):
    return _dask_chunks.ChunkedData(
        da.from_array(np.zeros((N, 1)), chunks=(CHUNKS, 1)),
        da.from_array(y, chunks=(CHUNKS,)),
        da.from_array(weights, chunks=(CHUNKS,)),
    )


class _Values:
    """Selection rows: ``y`` of the rows of positive weight, by weight or each one."""

    def __init__(self, by_count):
        self.by_count = by_count

    def __call__(self, X_c, y_c, w_c):
        y, w = np.asarray(y_c, dtype=float), np.asarray(w_c, dtype=float)
        positive = w > 0
        amounts = np.ones(positive.sum()) if self.by_count else w[positive]
        return y[positive], amounts


@pytest.mark.parametrize("by_count", [False, True])
@pytest.mark.parametrize("fraction", [0.001, 0.3, 0.9])
@pytest.mark.parametrize("tied", [False, True])
def test_select_equals_sorting_all_rows(synchronous, by_count, fraction, tied):
    rng = np.random.default_rng(7)
    y = rng.standard_t(2, size=N)
    if tied:
        y = np.round(y)  # a few distinct values, each on thousands of rows
    weights = weights_with_empty_chunk(N, CHUNKS, seed=7)
    data = chunked(y, weights)
    hint = y[::50][weights[::50] > 0]

    def target_of(total):
        return fraction * total

    rows = _Values(by_count)
    selected = select(data, rows, target_of, hint, fraction)
    expected = oracle(y, weights, target_of, by_count)
    assert selected.value == expected
    positive = weights > 0
    assert selected.count == np.count_nonzero(positive)
    total = np.count_nonzero(positive) if by_count else weights.sum()
    assert selected.amount == pytest.approx(total, rel=1e-12)
    assert selected.below == np.count_nonzero(positive & (y < expected))
    assert selected.at == np.count_nonzero(positive & (y == expected))
    # A hint from elsewhere costs passes, not exactness.
    wrong_hint = select(data, rows, target_of, hint + 100.0, fraction)
    assert wrong_hint.value == expected


def test_ties_at_the_threshold_are_kept_in_row_order(synchronous):
    """The ``m`` rows nearest a fit: those below the ``m``-th value, then the
    tied ones by position, chunk after chunk (memory's rule on large data,
    :func:`skrobust._quantile_exact._smallest`)."""
    rng = np.random.default_rng(8)
    y = rng.integers(-4, 5, size=N).astype(float)  # |r| in 0..4 at the zero fit
    weights = weights_with_empty_chunk(N, CHUNKS, seed=8)
    X = rng.normal(size=(N, 2))
    column = _dask_quantile.ColumnData(
        QuantileRegressor(solver="exact"),
        da.from_array(X, chunks=(CHUNKS, 2)),
        y,
        weights,
    )
    std = _dask_quantile._Standardised(0.0, 1.0, column.stats[1], 0.5)
    problem = _dask_quantile._DaskExact(
        QuantileRegressor(), column.data, column.sample, std, column.stats[0]
    )
    positive = weights > 0
    problem.set_rows_with_weight(np.count_nonzero(positive))
    m = 3001
    band = problem.band((np.zeros(2), 0.0), m)

    distance = np.abs(y)
    threshold = np.sort(distance[positive])[m - 1]
    below = np.flatnonzero(positive & (distance < threshold))
    ties = np.flatnonzero(positive & (distance == threshold))[: m - below.size]
    starts = np.cumsum((0,) + CHUNKS[:-1])
    kept = np.concatenate([s + k for s, k in zip(starts, band.kept, strict=True)])
    np.testing.assert_array_equal(np.sort(kept), np.sort(np.r_[below, ties]))
    assert band.size == m
    # The replaced rows' side sums and the weight within the threshold.
    replaced = positive.copy()
    replaced[kept] = False
    s = weights / weights.max()
    above = replaced & (y >= 0)
    np.testing.assert_allclose(
        band.sums[1], [s[above].sum(), s[replaced & ~above].sum()]
    )
    assert band.within == pytest.approx(s[positive & (distance <= threshold)].sum())


class _TargetRows:
    """Selection rows of :func:`select`: ``y`` and the weights."""

    def __init__(self, every_row):
        self.every_row = every_row

    def __call__(self, X_c, y_c, w_c):
        y = np.asarray(y_c, dtype=float)
        if self.every_row:
            return y, np.ones(y.size)
        w = np.asarray(w_c, dtype=float)
        return y[w > 0], w[w > 0]


@pytest.mark.parametrize("n_values", [7, 200_000])
def test_distributed_selection_equals_the_in_memory_rules(synchronous, n_values):
    """The weighted quantile of memory's rule and ``np.partition``'s k-th value.

    Tied values (a few or many distinct ones), zero weights and a chunk of
    one row. From the sample's values, one pass fetches the values near
    the target and ranks them; from a misleading sample (shifted by half
    the range) that misses, and the histogram passes find the value.
    """
    n = 60_000
    rng = np.random.default_rng(3)
    y = rng.integers(0, n_values, size=n) * 0.25 - 3.0
    weights = rng.integers(0, 4, size=n).astype(float)
    chunks = (20_000, 1, 29_999, 10_000)
    data = _dask_chunks.ChunkedData(
        da.zeros((n, 1), chunks=(chunks, 1)),
        da.from_array(y, chunks=(chunks,)),
        da.from_array(weights, chunks=(chunks,)),
    )
    misleading = y[::200] + 0.5 * (y.max() - y.min())
    for hint in [y[::200], misleading]:
        for quantile in [0.1, 0.3, 0.5, 0.93]:
            expected = _weighted_quantile(y, weights, quantile)
            target = quantile * weights.sum()
            before = data.round_trips
            found = select(
                data, _TargetRows(False), lambda total, t=target: t, hint, quantile
            )
            assert found.value == expected
            if n_values > 7:  # (a few tied values can fill the bracket's ends)
                assert (data.round_trips - before == 1) == (hint is not misleading)
        for k in [0, 6000, 15_000, n - 1]:
            found = select(
                data, _TargetRows(True), lambda total, k=k: k + 1, hint, k / n
            )
            assert found.value == np.partition(y, k)[k]
