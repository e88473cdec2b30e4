"""HeteroscedasticRegressor on row-chunked dask arrays equals the in-memory fit.

The in-memory fit of the same data is the oracle (itself checked against
R's ``nlme::gls`` and statsmodels in test_heteroscedastic.py and
test_cov_gaussian.py). The dask fit repeats its stages on the workers from
the same start rows, so coefficients agree to rounding (1e-10 relative is
asserted, ~1e-14 is typical) and ``n_iter_`` is the same number.
"""

import copy
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from _dask_data import (
    CHUNKS,
    assert_close_within_rounding,
    assert_n_iter_within_rounding,
    weights_with_empty_chunk,
)
from sklearn.exceptions import ConvergenceWarning

from skrobust import HeteroscedasticRegressor
from skrobust._base import least_squares_start_step


def make_data(n=3000, seed=0):
    """Columns of different offsets and spreads; log sigma^2 linear in two."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, 0.0, 100.0]
    log_variance = 0.8 * X[:, 0] - 0.1 * (X[:, 1] - 5.0) - 0.5
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0
    y += np.exp(0.5 * log_variance) * rng.normal(size=n)
    return X, y


_FITTED = ("coef_", "intercept_", "var_coef_", "var_intercept_")


def assert_same_fit(fitted, memory, rtol=1e-10):
    for name in _FITTED:
        np.testing.assert_allclose(
            getattr(fitted, name), getattr(memory, name), rtol=rtol, err_msg=name
        )
    np.testing.assert_array_equal(fitted.n_iter_, memory.n_iter_)


ESTIMATORS = {
    "default": HeteroscedasticRegressor(),
    "no-intercept": HeteroscedasticRegressor(fit_intercept=False),
    "two-variance-columns-observed": HeteroscedasticRegressor(
        variance_features=[0, 1], cov_type="observed"
    ),
    "ridge-expected": HeteroscedasticRegressor(alpha=30.0, cov_type="expected"),
    "no-floor-sandwich": HeteroscedasticRegressor(
        alpha=0.0, variance_floor=0.0, cov_type="sandwich"
    ),
    "lbfgs": HeteroscedasticRegressor(solver="lbfgs"),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("weighted", [False, True])
def test_equals_in_memory_fit(synchronous, name, weighted):
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size) if weighted else None
    memory = copy.deepcopy(ESTIMATORS[name]).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    # y and the weights on dask too when weighted, as numpy otherwise.
    yd = da.from_array(y, chunks=(CHUNKS,)) if weighted else y
    wd = da.from_array(weights, chunks=(CHUNKS,)) if weighted else None
    fitted = copy.deepcopy(ESTIMATORS[name]).fit(Xd, yd, sample_weight=wd)
    if name == "lbfgs":
        # L-BFGS's path follows the rounding of its sums (its curvature
        # pairs): on another CPU's BLAS kernels the in-memory fit itself
        # moves by 1e-8 relative when its rows are reordered.
        assert_close_within_rounding(fitted, memory, X, y, weights, _FITTED)
        assert_n_iter_within_rounding(fitted, memory, X, y, weights)
    else:
        assert_same_fit(fitted, memory)
    assert memory.n_iter_ > 0
    # Per-row attributes: lazy, with X's row chunks, the in-memory values.
    for attribute in ("weights_", "outliers_"):
        lazy = getattr(fitted, attribute)
        assert isinstance(lazy, da.Array) and lazy.chunks == (CHUNKS,)
    # 1 / sigma^2 moves by exp(|x| . |dv| + |dc|) at most when the
    # log-variance coefficients move by (dv, dc): rounding where they agree.
    moved = np.abs(X) @ np.abs(fitted.var_coef_ - memory.var_coef_)
    moved += abs(fitted.var_intercept_ - memory.var_intercept_)
    np.testing.assert_array_less(
        np.abs(fitted.weights_.compute() - memory.weights_),
        memory.weights_ * (np.expm1(np.abs(moved) * 1.01) + 1e-10),
    )
    np.testing.assert_array_equal(fitted.outliers_.compute(), memory.outliers_)
    if memory.cov_type is not None:
        scale = np.sqrt(np.outer(np.diag(memory.cov_), np.diag(memory.cov_)))
        np.testing.assert_allclose(fitted.cov_ / scale, memory.cov_ / scale, atol=1e-10)
        np.testing.assert_allclose(fitted.var_coef_se_, memory.var_coef_se_, rtol=1e-10)
        np.testing.assert_allclose(fitted.coef_se_, memory.coef_se_, rtol=1e-10)


def test_large_n_strided_start_and_multilevel_solve(synchronous):
    """45 001 rows: the start and the solve's first level on every 11th row.

    The in-memory fit computes its start on a strided subsample and first
    solves on every ``SUBSAMPLE_STEP``-th row (whose iterations count in
    ``n_iter_``); the
    dask fit strides all the data by global index on the workers, so the
    same rows give the same iterations. Ten chunks of uneven sizes.
    """
    X, y = make_data(n=45_001, seed=1)
    chunks = (9000, 1, 5000, 4000, 4000, 4000, 7000, 3000, 4000, 5000)
    weights = weights_with_empty_chunk(y.size, chunks)
    model = HeteroscedasticRegressor(variance_features=[0, 1])
    memory = copy.deepcopy(model).fit(X, y, sample_weight=weights)
    fitted = copy.deepcopy(model).fit(
        da.from_array(X, chunks=(chunks, 4)), y, sample_weight=weights
    )
    assert_same_fit(fitted, memory)
    # Statistics, sample, median and MAD, moments, strided weights, Newton.
    assert fitted._dask_round_trips < 40


def test_two_dimensional_y_is_a_fit_per_column(synchronous):
    X, y = make_data()
    Y = np.column_stack([y, 3.0 * y + X[:, 2] * np.exp(X[:, 0])])
    memory = HeteroscedasticRegressor(cov_type="expected").fit(X, Y)
    fitted = HeteroscedasticRegressor(cov_type="expected").fit(
        da.from_array(X, chunks=(CHUNKS, 4)), Y
    )
    assert fitted.coef_.shape == (2, 4) and fitted.n_iter_.shape == (2,)
    assert fitted.var_coef_se_.shape == (2, 4)
    assert_same_fit(fitted, memory)
    np.testing.assert_allclose(fitted.weights_.compute(), memory.weights_, rtol=1e-10)


@pytest.mark.parametrize("n", [3000, 45_001])
def test_exact_least_squares_fit_takes_no_iteration(synchronous, n):
    """Noiseless y: the in-memory shortcut (no iteration), checked on all rows."""
    X, _ = make_data(n=n)
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0
    chunks = (n // 3, 1, n - n // 3 - 1)
    memory = HeteroscedasticRegressor().fit(X, y)
    fitted = HeteroscedasticRegressor().fit(da.from_array(X, chunks=(chunks, 4)), y)
    assert memory.n_iter_ == 0
    assert_same_fit(fitted, memory)


def test_a_row_off_the_start_rows_breaks_the_exact_shortcut(synchronous):
    """Least squares fits every strided start row, but not the others: not exact.

    The in-memory fit then iterates; so must the dask fit, whose check of
    all rows is a distributed pass. (Noise on the other rows, not on one
    row alone: a single misfit row among exact ones would put every
    variance at the floor, where the optimum is only defined to about
    1e-10.)
    """
    n = 45_001
    X, y = make_data(n=n)
    exact = np.arange(n) % least_squares_start_step(n) == 0  # the start rows
    y[exact] = X[exact] @ [1.0, -0.2, 3.0, 0.5] + 2.0
    chunks = (n // 3, 1, n - n // 3 - 1)
    memory = HeteroscedasticRegressor().fit(X, y)
    fitted = HeteroscedasticRegressor().fit(da.from_array(X, chunks=(chunks, 4)), y)
    assert memory.n_iter_ > 0
    assert_same_fit(fitted, memory)


def test_zero_weight_rows_may_hold_any_finite_target(synchronous):
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size)
    wild = y.copy()
    wild[weights == 0] = 1e300
    memory = HeteroscedasticRegressor().fit(X, y, sample_weight=weights)
    fitted = HeteroscedasticRegressor().fit(
        da.from_array(X, chunks=(CHUNKS, 4)), wild, sample_weight=weights
    )
    assert_same_fit(fitted, memory)


def test_warm_start_equals_the_in_memory_warm_start(synchronous):
    X, y = make_data()
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    memory = HeteroscedasticRegressor(warm_start=True, tol=1e-6).fit(X, y)
    fitted = HeteroscedasticRegressor(warm_start=True, tol=1e-6).fit(Xd, y)
    memory.set_params(tol=1e-12).fit(X, 2.0 * y)
    fitted.set_params(tol=1e-12).fit(Xd, 2.0 * y)
    assert_same_fit(fitted, memory)


def test_convergence_warning_as_in_memory(synchronous):
    X, y = make_data()
    with pytest.warns(ConvergenceWarning):
        memory = HeteroscedasticRegressor(max_iter=1).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        fitted = HeteroscedasticRegressor(max_iter=1).fit(
            da.from_array(X, chunks=(CHUNKS, 4)), y
        )
    assert fitted.n_iter_ == memory.n_iter_ == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HeteroscedasticRegressor().fit(da.from_array(X, chunks=(CHUNKS, 4)), y)


def test_bad_input_gives_the_in_memory_errors(synchronous):
    X, y = make_data()
    bad = X.copy()
    bad[1500, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        HeteroscedasticRegressor().fit(da.from_array(bad, chunks=(CHUNKS, 4)), y)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    with pytest.raises(ValueError, match="Negative values in data passed to"):
        HeteroscedasticRegressor().fit(Xd, y, sample_weight=-np.ones(y.size))
    with pytest.raises(ValueError, match="no string column names"):
        HeteroscedasticRegressor(variance_features=["a"]).fit(Xd, y)
    with pytest.raises(ValueError, match=r"indices must be in \[0, 4\)"):
        HeteroscedasticRegressor(variance_features=[7]).fit(Xd, y)


def test_fit_on_a_cluster_equals_in_memory_fit(cluster_client):
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size)
    model = HeteroscedasticRegressor(cov_type="sandwich")
    memory = copy.deepcopy(model).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4)).persist()
    fitted = copy.deepcopy(model).fit(Xd, y, sample_weight=weights)
    assert_same_fit(fitted, memory)
    np.testing.assert_allclose(fitted.var_coef_se_, memory.var_coef_se_, rtol=1e-10)
    # Nothing was gathered: X's chunks are still the same futures.
    assert dask.is_dask_collection(fitted.weights_)


@pytest.fixture
def fresh_client():
    """A LocalCluster of this test's own: no earlier test's traffic in its comms.

    (LocalCluster runs the scheduler in this process: after the other dask
    tests its message buffers held 3.8 MB more, counted by ``tracemalloc``
    as the client's.)
    """
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
        dask.config.set(scheduler=client.get),
    ):
        yield client


def test_client_memory_stays_a_small_fraction_of_x(fresh_client):
    """The client holds the start rows, never X: < 8% of X.nbytes here.

    Measured 5.3% at n = 1e6, p = 10 (10% at n = 5e5): the in-memory start
    rows (a fixed 10 000, 1% of X here) and the copies of them that the
    in-memory least-squares and Harvey starts make, plus the scheduler's
    bookkeeping (LocalCluster runs it in this process). The fraction falls
    as 1 / n.
    """
    import tracemalloc

    n, p = 1_000_000, 10
    Xd = da.random.default_rng(0).normal(size=(n, p), chunks=(250_000, p))
    coef = np.linspace(-1.0, 1.0, p)
    noise = da.random.default_rng(1).normal(size=n, chunks=250_000)
    yd = Xd @ coef + da.exp(0.25 * Xd[:, 0]) * noise
    Xd, yd = dask.persist(Xd, yd)
    HeteroscedasticRegressor().fit(Xd[:20_000], yd[:20_000])  # warm caches
    model = HeteroscedasticRegressor(variance_features=[0])
    tracemalloc.start()
    try:
        model.fit(Xd, yd)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.08 * Xd.nbytes, peak / Xd.nbytes
    np.testing.assert_allclose(model.coef_, coef, atol=0.01)
    np.testing.assert_allclose(model.var_coef_[0], 0.5, atol=0.02)
    assert model._dask_round_trips < 40


def test_lazy_mean_and_log_variance(synchronous):
    """``mean_log_variance`` (``predict(..., return_std=True)`` on dask X)."""
    from skrobust._dask_heteroscedastic import mean_log_variance

    X, y = make_data()
    Y = np.column_stack([y, 2.0 * y])
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    for target in (y, Y):
        memory = HeteroscedasticRegressor().fit(X, target)
        fitted = HeteroscedasticRegressor().fit(Xd, target)
        mean, log_variance = mean_log_variance(fitted, Xd)
        assert isinstance(log_variance, da.Array)
        assert log_variance.chunks[0] == CHUNKS
        expected_mean, expected_std = memory.predict(X, return_std=True)
        np.testing.assert_allclose(mean.compute(), expected_mean, rtol=1e-10)
        np.testing.assert_allclose(
            np.exp(0.5 * log_variance.compute()), expected_std, rtol=1e-10
        )


def test_public_predictions_on_a_dask_array_are_lazy(synchronous):
    """``predict(X, return_std=True)`` and ``predict_interval`` on a dask ``X``
    return lazy arrays with ``X``'s row chunks, equal to the in-memory ones."""
    X, y = make_data()
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    memory = HeteroscedasticRegressor().fit(X, y)
    fitted = HeteroscedasticRegressor().fit(Xd, y)
    mean, std = fitted.predict(Xd, return_std=True)
    intervals = fitted.predict_interval(Xd, coverage=0.8)
    expected_mean, expected_std = memory.predict(X, return_std=True)
    for lazy, expected in [
        (mean, expected_mean),
        (std, expected_std),
        (intervals, memory.predict_interval(X, coverage=0.8)),
    ]:
        assert isinstance(lazy, da.Array)
        assert lazy.chunks[0] == CHUNKS
        np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-10)


# 45 001 rows in uneven chunks: the start's rows are every 11th.
LARGE_CHUNKS = (9000, 1, 5000, 4000, 4000, 4000, 7000, 3000, 4000, 5000)


@pytest.mark.parametrize(
    "params",
    [{}, {"variance_features": [0], "alpha": 1.0}, {"fit_intercept": False}],
)
def test_start_rows_without_weight_start_from_all_rows(synchronous, params):
    """No weight on the start's strided rows (every 11th).

    In memory least squares and Harvey's log-variance then come from all
    rows; the dask fit forms their normal equations in one pass each.
    """
    X, y = make_data(45_001)
    weights = np.ones(y.size)
    weights[:: least_squares_start_step(y.size)] = 0.0
    memory = HeteroscedasticRegressor(**params).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(LARGE_CHUNKS, 4))
    fitted = HeteroscedasticRegressor(**params).fit(Xd, y, sample_weight=weights)
    assert_same_fit(fitted, memory)
    # Noiseless targets: least squares fits every row, checked on all rows.
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0
    memory = HeteroscedasticRegressor(variance_floor=1e-6).fit(X, y, weights)
    fitted = HeteroscedasticRegressor(variance_floor=1e-6).fit(Xd, y, weights)
    assert memory.n_iter_ == fitted.n_iter_ == 0
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10)
    np.testing.assert_allclose(fitted.var_intercept_, memory.var_intercept_, rtol=1e-10)


def test_rows_at_the_floor_warning_as_in_memory(synchronous):
    """The fit stopped with rows at the floor: the same message and iterations.

    The data of test_heteroscedastic_floor.py (sparse in memory, here its
    dense form in row chunks); the dask fit counts the rows on the workers.
    """
    from test_heteroscedastic_floor import sparse_wide_data

    X, y = sparse_wide_data()
    X = X.toarray()
    with pytest.warns(ConvergenceWarning, match="rows fitted to within") as memory_w:
        memory = HeteroscedasticRegressor(max_iter=100).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="rows fitted to within") as dask_w:
        fitted = HeteroscedasticRegressor(max_iter=100).fit(
            da.from_array(X, chunks=((700, 1, 499, 800), X.shape[1])), y
        )
    # (Same count of rows at the floor; the stopped iterates themselves
    # differ beyond rounding, 3e-3 relative: curvature 1e8 amplifies the
    # different order of the chunks' sums along an unconverged path.)
    assert [str(w.message) for w in dask_w] == [str(w.message) for w in memory_w]
    assert fitted.n_iter_ == memory.n_iter_ == 100
