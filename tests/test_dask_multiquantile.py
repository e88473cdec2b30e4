"""MultiQuantileRegressor on dask arrays equals the in-memory fit (issue #15).

The dask fit (:func:`skrobust._dask_multiquantile.fit`, which
``MultiQuantileRegressor.fit`` dispatches to for a dask ``X``) visits the
levels as in memory, each a dask quantile fit started from its neighbour.
The in-memory fit is the oracle: exact levels are linear programmes'
optima (checked against ``linprog`` in test_multiquantile.py), equal to
rounding; smoothed levels make the same fits from the same starts and
scales, and agree to rounding at ``tol=1e-13``.
"""

import dask.array as da
import numpy as np
import pytest
from _dask_data import CHUNKS, weights_with_empty_chunk
from _data import gap_data

from skrobust import MultiQuantileRegressor, _dask
from skrobust._dask_multiquantile import fit as dask_fit
from skrobust._dask_multiquantile import sort_rows

pytestmark = pytest.mark.usefixtures("small_dask_sample")

LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)


def make_data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, 0.0, 100.0]
    noise = rng.standard_t(2, size=n) * (1.0 + 0.3 * np.abs(X[:, 0]))
    return X, X @ [1.0, -0.2, 3.0, 0.5] + 2.0 + noise


def assert_same_levels(fitted, memory, rtol=1e-10):
    np.testing.assert_array_equal(fitted.quantiles_, memory.quantiles_)
    scale = np.abs(memory.coef_).max()
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(fitted.intercept_, memory.intercept_, rtol=rtol)
    assert fitted.solver_ == memory.solver_


@pytest.mark.parametrize("solver", ["exact", "smooth"])
@pytest.mark.parametrize("weighted", [False, True])
def test_equals_in_memory_fit(synchronous, solver, weighted):
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size) if weighted else None
    params = dict(quantiles=LEVELS, solver=solver, tol=1e-13)
    memory = MultiQuantileRegressor(**params).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    yd = da.from_array(y, chunks=(CHUNKS,)) if weighted else y
    fitted = dask_fit(MultiQuantileRegressor(**params), Xd, yd, weights)
    assert_same_levels(fitted, memory)
    if solver == "smooth":
        # The same smoothed fits: the same bandwidths, and iterations but
        # for a last one at the rounding level of tol=1e-13.
        np.testing.assert_allclose(fitted.bandwidth_, memory.bandwidth_, rtol=1e-10)
        assert np.abs(fitted.n_iter_ - memory.n_iter_).max() <= 1
    else:
        # Each level's start, band and programmes are memory's.
        np.testing.assert_array_equal(fitted.n_iter_, memory.n_iter_)
    assert fitted.n_features_in_ == 4 and fitted.n_iter_.shape == (5,)


@pytest.mark.parametrize("weighted", [False, True])
def test_exact_levels_take_the_in_memory_starts_and_bands(synchronous, weighted):
    """19 levels of 40 000 rows: each level after the first starts as in
    memory from its neighbour's solution (one Newton step with the
    neighbour's density estimate) with the in-memory band, widened after a
    level that needed a repair and narrowed back after one that did not;
    so every level solves the same linear programmes (one to three here)."""
    n = 40_000
    X, y = make_data(n, seed=3)
    weights = (
        np.random.default_rng(2).integers(0, 3, size=n).astype(float)
        if weighted
        else None
    )
    params = dict(quantiles=np.linspace(0.05, 0.95, 19), solver="exact")
    memory = MultiQuantileRegressor(**params).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(n // 5, 4))
    fitted = dask_fit(MultiQuantileRegressor(**params), Xd, y, weights)
    assert_same_levels(fitted, memory)
    np.testing.assert_array_equal(fitted.n_iter_, memory.n_iter_)
    # Some levels besides the centre (the preliminary fit's iterations)
    # needed a repair, so the bands adapted.
    assert np.sort(memory.n_iter_)[-2] > 1


@pytest.mark.parametrize("solver", ["exact", "smooth"])
def test_levels_share_one_setup(synchronous, monkeypatch, solver):
    """The statistics pass with its sample and the distributed median and
    MAD of ``y`` are made once for all five levels, not once per
    level (four setups' round trips fewer), and the levels are the in-memory
    ones."""
    calls = {"statistics": 0, "standardise": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        _dask,
        "statistics_and_sample",
        counted("statistics", _dask.statistics_and_sample),
    )
    monkeypatch.setattr(
        _dask,
        "standardise_targets",
        counted("standardise", _dask.standardise_targets),
    )
    X, y = make_data()
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    params = dict(quantiles=LEVELS, solver=solver, tol=1e-13)
    fitted = dask_fit(MultiQuantileRegressor(**params), Xd, y)
    assert calls == {"statistics": 1, "standardise": 1}
    memory = MultiQuantileRegressor(**params).fit(X, y)
    assert_same_levels(fitted, memory)


@pytest.mark.parametrize("solver", ["exact", "smooth"])
def test_covariances_equal_in_memory(synchronous, solver):
    X, y = make_data(seed=1)
    params = dict(quantiles=(0.25, 0.5, 0.75), solver=solver, cov_type="ker")
    memory = MultiQuantileRegressor(tol=1e-13, **params).fit(X, y)
    fitted = dask_fit(
        MultiQuantileRegressor(tol=1e-13, **params),
        da.from_array(X, chunks=(CHUNKS, 4)),
        y,
    )
    assert fitted.cov_.shape == (3, 5, 5)
    diagonal = np.diagonal(memory.cov_, axis1=1, axis2=2)
    scale = np.sqrt(diagonal[:, :, None] * diagonal[:, None, :])
    np.testing.assert_allclose(fitted.cov_ / scale, memory.cov_ / scale, atol=1e-10)
    np.testing.assert_allclose(fitted.coef_se_, memory.coef_se_, rtol=1e-10)
    np.testing.assert_allclose(fitted.intercept_se_, memory.intercept_se_, rtol=1e-10)


def test_warm_start_from_the_previous_levels(synchronous):
    X, y = make_data()
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    params = dict(quantiles=LEVELS, solver="smooth", warm_start=True, tol=1e-13)
    memory = MultiQuantileRegressor(**params).fit(X, y)
    fitted = dask_fit(MultiQuantileRegressor(**params), Xd, y)
    memory.fit(X, y + X[:, 2])
    dask_fit(fitted, Xd, y + X[:, 2])
    assert_same_levels(fitted, memory)


def test_rearranged_predictions_are_lazy_and_sorted(synchronous):
    """Crossing raw quantiles (few rows, many levels) sorted row by row."""
    X, y = make_data(n=200, seed=2)
    chunks = (50, 1, 149)
    Xd = da.from_array(X, chunks=(chunks, 4))
    params = dict(quantiles=9, solver="exact")
    memory = MultiQuantileRegressor(**params).fit(X, y)
    fitted = dask_fit(MultiQuantileRegressor(**params), Xd, y)
    raw = _dask.predict(fitted, Xd)
    assert isinstance(raw, da.Array) and raw.chunks == (chunks, (9,))
    expected = X @ memory.coef_.T + memory.intercept_
    assert np.any(np.diff(expected, axis=1) < 0)  # the raw levels cross
    rearranged = sort_rows(raw)
    assert isinstance(rearranged, da.Array)
    np.testing.assert_allclose(
        rearranged.compute(), memory.predict_quantiles(X), rtol=1e-10
    )


def test_two_dimensional_y_is_refused_as_in_memory(synchronous):
    X, y = make_data()
    with pytest.raises(ValueError, match="y must be 1-dimensional"):
        dask_fit(
            MultiQuantileRegressor(),
            da.from_array(X, chunks=(CHUNKS, 4)),
            np.column_stack([y, y]),
        )


def test_fit_on_a_cluster_equals_in_memory_fit(cluster_client):
    X, y = make_data(seed=3)
    weights = weights_with_empty_chunk(y.size)
    memory = MultiQuantileRegressor(quantiles=LEVELS).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4)).persist()
    fitted = dask_fit(MultiQuantileRegressor(quantiles=LEVELS), Xd, y, weights)
    assert_same_levels(fitted, memory)


def test_public_fit_and_predictions_on_a_dask_array(synchronous):
    """``MultiQuantileRegressor.fit`` dispatches a dask ``X`` to the dask fit,
    and its predictions on a dask ``X`` are lazy, with ``X``'s row chunks,
    and equal the in-memory ones (rearranged: each row sorted)."""
    X, y = make_data(seed=2)
    params = dict(quantiles=LEVELS, solver="exact")
    memory = MultiQuantileRegressor(**params).fit(X, y)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    fitted = MultiQuantileRegressor(**params).fit(Xd, y)
    assert_same_levels(fitted, memory)
    for method, args in [
        ("predict_quantiles", ()),
        ("predict", ()),
        ("predict_interval", (0.8,)),
    ]:
        lazy = getattr(fitted, method)(Xd, *args)
        assert isinstance(lazy, da.Array), method
        assert lazy.chunks[0] == CHUNKS
        np.testing.assert_allclose(
            lazy.compute(), getattr(memory, method)(X, *args), rtol=1e-9, atol=1e-9
        )


@pytest.mark.parametrize("seed", ["integer", "instance"])
def test_bootstrap_covariances_equal_in_memory(synchronous, seed):
    """Each level's replicates from the same draws as in memory.

    An integer seed draws the same replicates at every level; a
    ``RandomState`` instance is drawn from level after level, lowest first,
    after all the fits, in both.
    """
    X, y = make_data(seed=2)

    def random_state():
        return 0 if seed == "integer" else np.random.RandomState(0)

    params = dict(quantiles=(0.25, 0.5, 0.75), cov_type="bootstrap", n_bootstrap=6)
    memory = MultiQuantileRegressor(random_state=random_state(), **params).fit(X, y)
    fitted = dask_fit(
        MultiQuantileRegressor(random_state=random_state(), **params),
        da.from_array(X, chunks=(CHUNKS, 4)),
        y,
    )
    diagonal = np.diagonal(memory.cov_, axis1=1, axis2=2)
    scale = np.sqrt(diagonal[:, :, None] * diagonal[:, None, :])
    np.testing.assert_allclose(fitted.cov_ / scale, memory.cov_ / scale, atol=1e-10)
    np.testing.assert_allclose(fitted.coef_se_, memory.coef_se_, rtol=1e-10)


@pytest.mark.parametrize("max_iter", [1, 2])
def test_too_few_iterations_for_a_smoothed_fit_as_in_memory(synchronous, max_iter):
    """max_iter < 3: no level makes a smoothed fit; the same LP optima and
    NaN bandwidths as in memory (it raised an AttributeError)."""
    X, y = make_data(300)
    params = dict(quantiles=(0.2, 0.5, 0.8), solver="exact", max_iter=max_iter)
    memory = MultiQuantileRegressor(**params).fit(X, y)
    fitted = dask_fit(MultiQuantileRegressor(**params), da.from_array(X, 100), y)
    assert_same_levels(fitted, memory)
    assert np.isnan(fitted.bandwidth_).all() and np.isnan(memory.bandwidth_).all()


def test_far_target_interpolated_at_a_level_as_in_memory(synchronous):
    """One target of 1e12 among 30 that the q = 0.95 optimum interpolates:
    the same optimum as in memory (test_multiquantile.py checks it against
    linprog)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3 * rng.standard_t(3, size=30)
    y[3] = 1e12
    params = dict(quantiles=(0.5, 0.95), solver="exact")
    memory = MultiQuantileRegressor(**params).fit(X, y)
    fitted = dask_fit(MultiQuantileRegressor(**params), da.from_array(X, 10), y)
    assert_same_levels(fitted, memory, rtol=1e-9)


def test_a_level_in_a_gap_is_fitted_cold_as_in_memory(synchronous, monkeypatch):
    """A level whose neighbour's start fails (q = 0.9 at the edge of a tenth
    of the targets shifted far up) is fitted cold on dask as in memory: the
    same levels, iterations and no whole linear programme."""
    from skrobust import _quantile_level

    X, y = gap_data(20_000, 10)
    cold = []
    fit_again = _quantile_level._fit_again

    def recording(*args, **kwargs):
        cold.append(args)
        return fit_again(*args, **kwargs)

    monkeypatch.setattr(_quantile_level, "_fit_again", recording)
    memory = MultiQuantileRegressor(quantiles=(0.7, 0.8, 0.9)).fit(X, y)
    assert cold, "no level's neighbour start failed: the test lost its subject"
    Xd = da.from_array(X, chunks=(5000, 10))
    fitted = dask_fit(MultiQuantileRegressor(quantiles=(0.7, 0.8, 0.9)), Xd, y, None)
    assert_same_levels(fitted, memory)
    np.testing.assert_array_equal(fitted.n_iter_, memory.n_iter_)
