"""The one-pass medians of dask fits (skrobust._dask_brackets, issue #15).

The oracle is the in-memory rule (skrobust._base.weighted_median and
target_offset_scale) on the same values: the bracketed medians must be
exactly it when the brackets hold them, and the fit must fall back to the
selection passes (with the same answer) when they miss.
"""

import dask.array as da
import numpy as np
import pytest
from _dask_data import CHUNKS, weights_with_empty_chunk

from skrobust import (
    HuberRegressor,
    LogCoshRegressor,
    _dask,
    _dask_brackets,
    _dask_chunks,
    _dask_median,
    _dask_statistics,
)
from skrobust._base import target_offset_scale, weighted_median

N = sum(CHUNKS)


def data_sets():
    rng = np.random.default_rng(5)
    return [
        ("normal", rng.normal(size=N) * 3.0 + 7.0, None),
        ("skewed, weighted", rng.exponential(size=N), weights_with_empty_chunk(N)),
        ("ties", np.round(rng.normal(size=N), 1), rng.integers(0, 3, N) * 1.0),
        ("few values", rng.integers(0, 5, size=N).astype(float), None),
        # Half the weight at or below one value: the mean of two values.
        ("exact halves", np.arange(N, dtype=float), (np.arange(N) % 2) * 1.0),
        (
            "outliers",
            np.where(rng.random(N) < 0.2, 1e6, 1.0) + rng.normal(size=N),
            None,
        ),
    ]


def setup(y, weights, fit_intercept=True):
    X = np.zeros((N, 1))
    data = _dask_chunks.ChunkedData(da.from_array(X, chunks=(CHUNKS, 1)), y, weights)
    stats, sample = _dask_statistics.statistics_and_sample(data, fit_intercept, 300)
    return data, stats, sample


def in_memory_medians(y, weights, fit_intercept):
    offset = weighted_median(y, weights) if fit_intercept else 0.0
    return offset, weighted_median(np.abs(y - offset), weights)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_bracketed_medians_are_the_in_memory_rule(synchronous, fit_intercept):
    hits = 0
    for name, y, weights in data_sets():
        data, stats, sample = setup(y, weights, fit_intercept)
        before = data.round_trips
        found = _dask_brackets.bracketed_targets(data, stats, sample, fit_intercept)
        assert data.round_trips == before + 1, name
        if found is not None:
            hits += 1
            assert found == in_memory_medians(y, weights, fit_intercept), name
    # (Ties may fill a bracket; the smooth data sets must not miss.)
    assert hits >= 4


def test_missed_brackets_fall_back_to_the_selection(synchronous, monkeypatch):
    """Zero-width brackets from 50 rows miss; the standardisation is still exact."""
    monkeypatch.setattr(_dask_brackets, "_BRACKET_Z", 0.0)
    monkeypatch.setattr(_dask_statistics, "dense_sample_rows", lambda n_samples: 50)
    estimator, misses = HuberRegressor(), 0
    for name, y, weights in data_sets():
        data, stats, sample = setup(y, weights)
        found = _dask_brackets.bracketed_targets(data, stats, sample, True)
        if found is None:
            misses += 1
        else:  # (a tie may still sit inside a narrow bracket)
            assert found == in_memory_medians(y, weights, True), name
        standardised = _dask.standardise_targets(estimator, data, stats, sample)
        assert standardised == target_offset_scale(y, weights, True), name
    assert misses >= 3


def test_a_capped_fetch_falls_back(synchronous, monkeypatch):
    """Chunks refuse to send more than their share of values: a miss."""
    monkeypatch.setattr(_dask_brackets, "_BRACKET_VALUES", 0)
    monkeypatch.setattr(_dask_brackets, "chunk_caps", lambda data: [0] * 5)
    name, y, weights = data_sets()[0]
    data, stats, sample = setup(y, weights)
    assert _dask_brackets.bracketed_targets(data, stats, sample, True) is None
    standardised = _dask.standardise_targets(HuberRegressor(), data, stats, sample)
    assert standardised == target_offset_scale(y, weights, True)


def make_data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, 0.0, 100.0]
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0 + rng.standard_t(3, size=n)
    y[rng.random(n) < 0.1] += 30.0
    return X, y


@pytest.mark.usefixtures("small_dask_sample")
@pytest.mark.parametrize("estimator", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize("weighted", [False, True])
def test_joint_fit_makes_no_selection_pass(
    synchronous, monkeypatch, estimator, weighted
):
    """Statistics, one bracket pass, the Newton passes: no histogram, no fetch.

    The start (least squares, the L1 start and its residual scale) is made
    on the client's start rows; ``noise_scale_`` comes from the last Newton
    pass's residual bracket and equals the in-memory one; the fit equals
    the in-memory fit.
    """
    selections = []
    for kernel in ("_histogram_kernel", "_fetch_kernel"):
        original = getattr(_dask_median, kernel)

        def counted(*args, original=original, **kwargs):
            selections.append(original.__name__)
            return original(*args, **kwargs)

        monkeypatch.setattr(_dask_median, kernel, counted)
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size) if weighted else None
    memory = estimator(tol=1e-13).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    fitted = estimator(tol=1e-13).fit(Xd, y, sample_weight=weights)
    assert selections == []
    for name in ("coef_", "intercept_", "scale_", "noise_scale_"):
        np.testing.assert_allclose(
            getattr(fitted, name), getattr(memory, name), rtol=1e-10, err_msg=name
        )
    # The statistics pass, the bracket pass, the Newton passes (the first
    # forms the Hessian at the start).
    assert fitted._dask_round_trips <= 3 + fitted.n_iter_
    assert fitted.n_iter_ == memory.n_iter_


@pytest.mark.parametrize("n_pivots", [1, 7, 16, 17, 300])
def test_binned_extremes_bins_as_a_binary_search(n_pivots):
    """Counted pivots (few) or searchsorted (many): the bins of (p[i-1], p[i]]."""
    rng = np.random.default_rng(n_pivots)
    pivots = np.unique(rng.normal(size=n_pivots))
    pivots[0] = -np.finfo(float).max
    v = np.concatenate(
        [rng.normal(size=500), pivots, np.nextafter(pivots, np.inf)]
        + [[np.inf, -np.inf, -np.finfo(float).max]]
    )
    bins, smallest, largest = _dask_median.binned_extremes(v, pivots)
    np.testing.assert_array_equal(bins, np.searchsorted(pivots, v, side="left"))
    for b in range(pivots.size + 1):
        inside = v[bins == b]
        assert smallest[b] == inside.min(initial=np.inf)
        assert largest[b] == inside.max(initial=-np.inf)
