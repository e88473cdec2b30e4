"""QuantileRegressor's cov_type on dask arrays equals the in-memory covariance.

The in-memory covariance (R's ``summary.rq``, checked against R's output in
test_cov_quantile.py) is the oracle: the same residuals per row, the same
order statistics (found by an exact distributed selection, checked here
against ``np.sort``), the same refits at ``q +- h`` and the same Grams, so
the covariances agree to rounding (1e-10 relative asserted).
"""

import warnings

import dask.array as da
import numpy as np
import pytest
from _dask_data import CHUNKS, weights_with_empty_chunk

from skrobust import QuantileRegressor, _dask_quantile_cov
from skrobust._dask_chunks import ChunkedData

pytestmark = pytest.mark.usefixtures("small_dask_sample")


def make_data(n=3000, seed=0):
    """Heavy-tailed noise whose spread grows with the first column."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, 0.0, 100.0]
    noise = rng.standard_t(2, size=n) * (1.0 + 0.3 * np.abs(X[:, 0]))
    return X, X @ [1.0, -0.2, 3.0, 0.5] + 2.0 + noise


def assert_same_covariance(fitted, memory):
    """Entries to 1e-10 of the geometric mean of their two variances.

    (Relative to themselves, off-diagonal entries near zero would ask for
    more digits than the estimates carry.)
    """
    diagonal = np.diag(memory.cov_)
    scale = np.sqrt(np.outer(diagonal, diagonal))
    np.testing.assert_allclose(fitted.cov_ / scale, memory.cov_ / scale, atol=1e-10)
    np.testing.assert_allclose(np.diag(fitted.cov_), diagonal, rtol=1e-10)


def fit_both(params, X, y, weights=None):
    """The in-memory and the dask fit, and the warnings each gave."""
    Xd = da.from_array(X, chunks=(CHUNKS, X.shape[1]))
    fits, caught = [], []
    for data in (X, Xd):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            fits.append(QuantileRegressor(**params).fit(data, y, sample_weight=weights))
        caught.append([str(w.message) for w in record])
    return fits, caught


@pytest.mark.parametrize("solver", ["exact", "smooth"])
@pytest.mark.parametrize("cov_type", ["iid", "nid", "ker"])
@pytest.mark.parametrize("weighted", [False, True])
def test_equals_in_memory_covariance(synchronous, solver, cov_type, weighted):
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size) if weighted else None
    params = dict(quantile=0.3, solver=solver, cov_type=cov_type)
    (memory, fitted), (memory_warnings, dask_warnings) = fit_both(params, X, y, weights)
    # The zero-weight rows' densities are 0: the nid warning, the same count.
    assert dask_warnings == memory_warnings
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10)
    assert_same_covariance(fitted, memory)
    np.testing.assert_allclose(fitted.coef_se_, memory.coef_se_, rtol=1e-10)
    # (Bounds are differences of the estimates and their margins.)
    bounds = memory.conf_int()
    atol = 1e-10 * np.abs(bounds).max()
    np.testing.assert_allclose(fitted.conf_int(), bounds, rtol=0, atol=atol)


@pytest.mark.parametrize("cov_type", ["iid", "nid", "ker"])
def test_without_intercept_and_with_bofinger_bandwidth(synchronous, cov_type):
    X, y = make_data(seed=1)
    params = dict(
        quantile=0.8,
        fit_intercept=False,
        bandwidth_rule="bofinger",
        cov_type=cov_type,
    )
    (memory, fitted), _ = fit_both(params, X, y)
    assert_same_covariance(fitted, memory)


def test_iid_with_ties_and_a_selection_that_narrows(synchronous, monkeypatch):
    """Ties in |r| (rounded targets) and bins fetched only below 40 values."""
    monkeypatch.setattr(_dask_quantile_cov, "_FETCH_VALUES", 40)
    X, y = make_data(seed=2)
    y = np.round(y)  # many tied residuals, and rows fitted exactly
    (memory, fitted), _ = fit_both(dict(quantile=0.5, cov_type="iid"), X, y)
    assert_same_covariance(fitted, memory)


@pytest.mark.parametrize("fetch", [40, 50_000])
def test_order_statistics_equal_sorting(synchronous, monkeypatch, fetch):
    """The distributed selection against np.sort: ties, -inf, every rank."""
    monkeypatch.setattr(_dask_quantile_cov, "_FETCH_VALUES", fetch)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 1))
    y = np.round(rng.standard_t(2, size=3000), 1)
    values = _dask_quantile_cov.Residuals(np.zeros(1), 0.0, zeros_below=True)
    data = ChunkedData(da.from_array(X, chunks=(CHUNKS, 1)), y)
    expected = np.sort(values(X, y, None))
    hint = values(X[::10], y[::10], None)
    for rank in [0, 1, 150, 1499, 1500, 2998, 2999]:
        value, following = _dask_quantile_cov.order_statistic(data, values, rank, hint)
        assert value == expected[rank]
        assert following == (expected[rank + 1] if rank + 1 < 3000 else np.inf)


@pytest.mark.parametrize(
    "solver, weighted, fit_intercept",
    [("exact", False, True), ("exact", True, False), ("smooth", True, True)],
)
def test_bootstrap_equals_in_memory_bootstrap(
    synchronous, solver, weighted, fit_intercept
):
    """The same draws of the same random state, the same replicate fits.

    The smoothed replicates are iterative fits, equal to rounding at a tight
    ``tol`` (at the default 1e-10 a replicate can stop one iteration apart,
    as a dask fit can); the exact ones are linear programmes' optima.
    """
    X, y = make_data(seed=5)
    weights = weights_with_empty_chunk(y.size) if weighted else None
    params = dict(
        quantile=0.7,
        solver=solver,
        cov_type="bootstrap",
        n_bootstrap=12 if solver == "exact" else 4,
        random_state=3,
        fit_intercept=fit_intercept,
        tol=1e-12 if solver == "smooth" else 1e-10,
    )
    (memory, fitted), _ = fit_both(params, X, y, weights)
    assert_same_covariance(fitted, memory)
    np.testing.assert_allclose(fitted.coef_se_, memory.coef_se_, rtol=1e-10)
    if solver == "smooth":
        return
    # Another seed draws other replicates: the covariance depends on them.
    other = QuantileRegressor(**{**params, "random_state": 4}).fit(
        da.from_array(X, chunks=(CHUNKS, 4)), y, sample_weight=weights
    )
    assert np.abs(np.diag(other.cov_) / np.diag(memory.cov_) - 1).max() > 1e-3


def test_nid_on_a_cluster_equals_in_memory(cluster_client):
    X, y = make_data(seed=4)
    memory = QuantileRegressor(quantile=0.7, cov_type="nid").fit(X, y)
    Xd = da.from_array(X, chunks=(CHUNKS, 4)).persist()
    fitted = QuantileRegressor(quantile=0.7, cov_type="nid").fit(Xd, y)
    assert_same_covariance(fitted, memory)


def test_bootstrap_on_a_cluster_equals_in_memory(cluster_client):
    """Each replicate's counts scattered next to X's chunks: the same replicates."""
    X, y = make_data(seed=6)
    weights = weights_with_empty_chunk(y.size)
    params = dict(quantile=0.4, cov_type="bootstrap", n_bootstrap=4, random_state=1)
    memory = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4)).persist()
    fitted = QuantileRegressor(**params).fit(Xd, y, sample_weight=weights)
    assert_same_covariance(fitted, memory)
