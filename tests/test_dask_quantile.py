"""QuantileRegressor on row-chunked dask arrays equals the in-memory fit (issue #15).

The exact minimiser's objective is the oracle: the in-memory exact fit's
(itself checked against one linear programme on all rows in
test_quantile_exact.py) and, here too, scipy's ``linprog`` on all rows. Both
exact fits reach the LP optimum to HiGHS's accuracy, so their objectives
agree to 1e-9 relative; on continuous data the minimiser is unique and the
coefficients agree too. Most tests use the synchronous scheduler and a
sample of ~300 rows, so that the fit on all rows has work to do.
"""

import copy
import tracemalloc

import dask
import dask.array as da
import numpy as np
import pytest
from _dask_data import (
    CHUNKS,
    assert_n_iter_within_rounding,
    plane_data,
    weights_with_empty_chunk,
)

from skrobust import (
    QuantileRegressor,
    _dask_chunks,
    _dask_quantile,
    _dask_strided,
    _quantile_exact,
    _quantile_level,
    _quantile_smooth,
)
from skrobust._quantile_lp import pinball_objective, solve_lp

pytestmark = pytest.mark.usefixtures("small_dask_sample")


@pytest.fixture(autouse=True)
def preliminary_path(monkeypatch):
    """Most tests here compare the preliminary fit's path with memory's: on
    their data of 4 columns the exact solver would start from the zero fit
    instead (tested in test_zero_start_equals_in_memory_fit)."""
    monkeypatch.setattr(_quantile_level, "ZERO_START_MAX_COEF", 0)


def make_data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    # Columns of very different offsets and spreads, heavy-tailed noise.
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, 0.0, 100.0]
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0 + rng.standard_t(2, size=n)
    y[rng.random(n) < 0.1] += 30.0
    return X, y


def objective(model, X, y, weights):
    return pinball_objective(
        X, y, model.coef_, model.intercept_, model.quantile, weights, model.alpha
    )


def assert_same_optimum(fitted, memory, X, y, weights, unique=True):
    f_dask, f_memory = (
        objective(fitted, X, y, weights),
        objective(memory, X, y, weights),
    )
    assert abs(f_dask - f_memory) <= 1e-9 * f_memory, (f_dask, f_memory)
    if unique:
        scale = np.abs(memory.coef_).max()
        np.testing.assert_allclose(fitted.coef_, memory.coef_, atol=1e-8 * scale)
        np.testing.assert_allclose(fitted.intercept_, memory.intercept_, rtol=1e-8)


CASES = {
    "median": QuantileRegressor(solver="exact"),
    "q0.9-auto": QuantileRegressor(quantile=0.9),
    "q0.2-no-intercept": QuantileRegressor(quantile=0.2, fit_intercept=False),
    "q0.7-l1": QuantileRegressor(quantile=0.7, alpha=0.05),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_exact_fit_equals_in_memory_fit(synchronous, name, weighted):
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size) if weighted else None
    memory = copy.deepcopy(CASES[name]).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    yd = da.from_array(y, chunks=(CHUNKS,))
    fitted = copy.deepcopy(CASES[name]).fit(Xd, yd, sample_weight=weights)
    assert fitted.solver_ == "exact"
    assert_same_optimum(fitted, memory, X, y, weights)
    # 3000 rows: the in-memory preliminary fit is on all rows, and so is
    # the dask one (a round trip per evaluation), with the same iterations,
    # and the reduced problems are memory's.
    np.testing.assert_allclose(fitted.bandwidth_, memory.bandwidth_, rtol=1e-8)
    # (At q = 0.9, on the edge of the tenth of the targets shifted by +30,
    # the smoothed start's Hessian is singular but for rounding: scipy's
    # trust region followed the rounding of the sums there, 22 to 31
    # iterations as the rows were reordered. Levenberg-Marquardt steps
    # do not.)
    assert fitted.n_iter_ == memory.n_iter_
    if fitted.alpha == 0:
        # The first band was certified. (With an L1 penalty the Newton steps
        # use only its subgradient, and a repair round may follow.)
        assert fitted._dask_linear_programmes == 1
    # Against an independent oracle: one LP on all rows.
    coef, intercept = solve_lp(
        X, y, fitted.quantile, weights, fitted.alpha, fitted.fit_intercept
    )
    f_lp = pinball_objective(
        X, y, coef, intercept, fitted.quantile, weights, fitted.alpha
    )
    assert abs(objective(fitted, X, y, weights) - f_lp) <= 1e-9 * f_lp


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_zero_start_equals_in_memory_fit(synchronous, monkeypatch, name, weighted):
    """Up to 50 features the exact solver first tries its reduced problems
    from the zero fit, and makes the preliminary fit only if they fail: on
    dask data alike, with memory's linear programmes and iterations."""
    monkeypatch.setattr(_quantile_level, "ZERO_START_MAX_COEF", 51)
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size) if weighted else None
    memory = copy.deepcopy(CASES[name]).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    fitted = copy.deepcopy(CASES[name]).fit(Xd, y, sample_weight=weights)
    assert_same_optimum(fitted, memory, X, y, weights)
    # (Where the zero start's rounds fail, q = 0.9 at the edge of the
    # shifted targets, the preliminary fit's iterations follow the rounding
    # of its sums: see test_exact_fit_equals_in_memory_fit.)
    assert_n_iter_within_rounding(fitted, memory, X, y, weights)
    assert hasattr(fitted, "bandwidth_") == hasattr(memory, "bandwidth_")
    coef, intercept = solve_lp(
        X, y, fitted.quantile, weights, fitted.alpha, fitted.fit_intercept
    )
    f_lp = pinball_objective(
        X, y, coef, intercept, fitted.quantile, weights, fitted.alpha
    )
    assert abs(objective(fitted, X, y, weights) - f_lp) <= 1e-9 * f_lp


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_exact_fit_starts_from_the_in_memory_preliminary_fit(
    synchronous, name, weighted
):
    """40 000 rows: the sample is the in-memory preliminary fit's rows.

    In memory the preliminary smoothed fit of 40 000 x 4 is made on every
    8th row (:func:`skrobust._quantile_level.preliminary_step`); the dask
    fit fetches those rows as its sample, in its statistics pass, and makes
    the same fit on them. So ``n_iter_`` (the preliminary fit's iterations
    and the linear programmes) and ``bandwidth_`` are memory's, and the
    round trips a handful, independent of the number of rows: checks and
    sample, the median and MAD of ``y``, Newton steps, band and certificate.
    """
    n = 40_000
    X, y = make_data(n, seed=3)
    weights = weights_with_empty_chunk(n) if weighted else None
    memory = copy.deepcopy(CASES[name]).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(uneven_chunks(n, seed=3), 4))
    fitted = copy.deepcopy(CASES[name]).fit(Xd, y, sample_weight=weights)
    assert_same_optimum(fitted, memory, X, y, weights)
    assert fitted.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(fitted.bandwidth_, memory.bandwidth_, rtol=1e-10)
    if fitted.alpha == 0:
        # (With the L1 penalty the two reduced rounds from the subsample's
        # start fail and the preliminary fit is redone on all rows, as in
        # memory: a round trip per evaluation.) A second Newton step of the
        # start, when the first did not land well inside its band, costs
        # three round trips more: 9 to 12 measured.
        assert fitted._dask_round_trips <= 12


def test_a_failed_subsample_start_is_redone_on_all_rows_as_in_memory(
    synchronous, monkeypatch
):
    """No reduced round allowed from the subsample's start: in memory and on
    dask the preliminary fit is redone on all rows, and the iterations of
    both attempts count alike."""
    monkeypatch.setattr(_quantile_level, "_SUBSAMPLE_START_ROUNDS", 0)
    n = 40_000
    X, y = make_data(n, seed=4)
    weights = weights_with_empty_chunk(n)
    params = dict(quantile=0.3, solver="exact")
    memory = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    reference = QuantileRegressor(**params)
    with monkeypatch.context() as patch:
        patch.setattr(_quantile_level, "_SUBSAMPLE_START_ROUNDS", 2)
        reference.fit(X, y, sample_weight=weights)
    assert memory.n_iter_ > reference.n_iter_  # (the redone fit's iterations)
    fitted = QuantileRegressor(**params).fit(
        da.from_array(X, chunks=(uneven_chunks(n, seed=4), 4)), y, sample_weight=weights
    )
    assert_same_optimum(fitted, memory, X, y, weights)
    assert fitted.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(fitted.bandwidth_, memory.bandwidth_, rtol=1e-8)


@pytest.mark.parametrize(
    "size_factor, max_rounds", [(0.05, 6), (0.05, 1)], ids=["repairs", "full"]
)
def test_repairs_and_full_problem_reach_the_optimum(
    synchronous, monkeypatch, size_factor, max_rounds
):
    """A band far too narrow: wrong signs are repaired, or all rows solved."""
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size)
    memory = QuantileRegressor(quantile=0.3).fit(X, y, sample_weight=weights)
    # (The first band's size is skrobust._quantile_exact.first_size's.)
    monkeypatch.setattr(_quantile_exact, "_SIZE_FACTOR", size_factor)
    monkeypatch.setattr(_quantile_exact, "_MIN_SIZE", 5)
    monkeypatch.setattr(_dask_quantile, "_MAX_ROUNDS", max_rounds)
    fitted = QuantileRegressor(quantile=0.3).fit(
        da.from_array(X, chunks=(CHUNKS, 4)), y, sample_weight=weights
    )
    assert_same_optimum(fitted, memory, X, y, weights)
    assert fitted._dask_linear_programmes > 1


def test_ties_and_integer_data_reach_the_same_objective(synchronous):
    """A degenerate LP: the vertex may differ, the objective may not."""
    rng = np.random.default_rng(5)
    X = rng.integers(0, 3, size=(3000, 3)).astype(np.float32)
    y = np.round(X @ [1.0, 2.0, -1.0] + rng.standard_t(3, size=3000))
    memory = QuantileRegressor(quantile=0.4).fit(X, y)
    fitted = QuantileRegressor(quantile=0.4).fit(
        da.from_array(X, chunks=(CHUNKS, 3)), y
    )
    assert_same_optimum(fitted, memory, X.astype(float), y, None, unique=False)


def test_warm_start_and_predict(synchronous):
    X, y = make_data()
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    model = QuantileRegressor(quantile=0.8, warm_start=True).fit(Xd, y)
    first = model.coef_.copy()
    model.fit(Xd, y)
    np.testing.assert_allclose(model.coef_, first, rtol=1e-10)
    prediction = model.predict(Xd)
    assert isinstance(prediction, da.Array) and prediction.chunks == (CHUNKS,)
    np.testing.assert_allclose(
        prediction.compute(), X @ model.coef_ + model.intercept_, rtol=1e-14
    )


def test_bad_input_gives_clear_errors(synchronous):
    X, y = make_data()
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    # Bad input: the in-memory errors, from the chunk that holds it.
    bad = X.copy()
    bad[1500, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        QuantileRegressor().fit(da.from_array(bad, chunks=(CHUNKS, 4)), y)
    with pytest.raises(ValueError, match="Negative values in data passed to"):
        QuantileRegressor().fit(Xd, y, sample_weight=-np.ones(y.size))


def test_fit_on_a_cluster_equals_in_memory_fit(cluster_client):
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size)
    memory = QuantileRegressor(quantile=0.35).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4)).persist()
    fitted = QuantileRegressor(quantile=0.35).fit(Xd, y, sample_weight=weights)
    assert_same_optimum(fitted, memory, X, y, weights)


@pytest.mark.parametrize(("solver", "round_trips"), [("exact", 12), ("smooth", 70)])
def test_client_memory_stays_a_small_fraction_of_x(cluster_client, solver, round_trips):
    """The client holds the sample (and the band), never X: < 8% of X.nbytes.

    Exact: the sample is the in-memory preliminary fit's 20 834 rows
    (2% of X) and its smoothed fit, then the band of about sqrt(n p) rows
    and its linear programme and the scheduler's bookkeeping; a fraction of
    X that shrinks as n grows. Its round trips: 12 measured (two Newton
    steps of the start). Smooth:
    measured 3% (the sample of 10 000 rows is 1%, the rest the scheduler's
    bookkeeping); every stage is a sum over the chunks, and the rows near
    the fit stay on the workers. Its round trips: one per evaluation, 64
    measured (the first stage's levels on every 64th and every 8th row,
    the near rows' and all rows' fits and the continuation, as in memory,
    and the selections).
    """
    n, p = 1_000_000, 20
    Xd = da.random.default_rng(0).normal(size=(n, p), chunks=(250_000, p))
    coef = np.linspace(-1.0, 1.0, p)
    noise = da.random.default_rng(1).standard_t(3, size=n, chunks=250_000)
    Xd, yd = dask.persist(Xd, Xd @ coef + noise)
    QuantileRegressor(quantile=0.7, solver=solver).fit(Xd[:20_000], yd[:20_000])
    model = QuantileRegressor(quantile=0.7, solver=solver)
    tracemalloc.start()
    try:
        model.fit(Xd, yd)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.08 * Xd.nbytes, peak / Xd.nbytes
    np.testing.assert_allclose(model.coef_, coef, atol=0.02)
    assert model._dask_round_trips <= round_trips


def test_two_dimensional_y_is_a_fit_per_column(synchronous):
    X, y = make_data()
    Y = np.column_stack([y, X[:, 1] - 0.5 * y])
    weights = weights_with_empty_chunk(y.size)
    memory = QuantileRegressor(quantile=0.25).fit(X, Y, sample_weight=weights)
    fitted = QuantileRegressor(quantile=0.25).fit(
        da.from_array(X, chunks=(CHUNKS, 4)), Y, sample_weight=weights
    )
    assert fitted.coef_.shape == (2, 4) and fitted.intercept_.shape == (2,)
    for k in range(2):
        f_dask = pinball_objective(
            X, Y[:, k], fitted.coef_[k], fitted.intercept_[k], 0.25, weights, 0.0
        )
        f_memory = pinball_objective(
            X, Y[:, k], memory.coef_[k], memory.intercept_[k], 0.25, weights, 0.0
        )
        assert abs(f_dask - f_memory) <= 1e-9 * f_memory
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("wild", [1e12, 1e20])
def test_wild_targets_are_clipped_as_in_memory(synchronous, wild):
    """Targets 1e20 away would cost HiGHS all its digits: moved in, exactly."""
    X, y = make_data()
    y[np.random.default_rng(2).random(y.size) < 0.05] = wild
    memory = QuantileRegressor().fit(X, y)
    fitted = QuantileRegressor().fit(da.from_array(X, chunks=(CHUNKS, 4)), y)
    # The objective is dominated by the wild rows: the coefficients say more.
    assert_same_optimum(fitted, memory, X, y, None)


# -- solver="smooth" ---------------------------------------------------------------


def uneven_chunks(n, seed):
    """Row chunks of random sizes (one of a single row) summing to ``n``."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(2, n - 1), size=6, replace=False))
    sizes = np.diff(np.concatenate([[0, 1], cuts, [n]]))
    return tuple(int(s) for s in sizes)


def assert_same_smoothed_fit(fitted, memory, X, y, weights):
    """Coefficients to 1e-8 relative, pinball objectives to 1e-10, same bandwidth."""
    f_dask, f_memory = (
        objective(fitted, X, y, weights),
        objective(memory, X, y, weights),
    )
    assert abs(f_dask - f_memory) <= 1e-10 * f_memory, (f_dask, f_memory)
    scale = np.abs(memory.coef_).max()
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(
        fitted.intercept_, memory.intercept_, rtol=0, atol=1e-8 * max(scale, 1.0)
    )
    np.testing.assert_allclose(fitted.bandwidth_, memory.bandwidth_, rtol=1e-8)


SMOOTH_CASES = {
    # n, quantile, fit_intercept, weighted, y as a dask array, alpha
    "3000-median-weighted": (3000, 0.5, True, True, False, 0.0),
    "20000-q0.3-dask-y": (20_000, 0.3, True, False, True, 0.0),
    "20000-q0.8-no-intercept-weighted": (20_000, 0.8, False, True, True, 0.0),
    "100000-q0.25-weighted": (100_000, 0.25, True, True, True, 0.0),
    "3000-q0.5-l1": (3000, 0.5, True, True, False, 0.05),
    "20000-q0.3-l1-no-intercept": (20_000, 0.3, False, True, True, 0.02),
    "100000-q0.5-l1": (100_000, 0.5, True, True, True, 0.01),
}


def smooth_case_fits(name, **params):
    """``(X, y, weights, dask fit, in-memory fit)`` of a smoothed case."""
    n, quantile, fit_intercept, weighted, dask_y, alpha = SMOOTH_CASES[name]
    X, y = make_data(n, seed=n)
    weights = (
        np.random.default_rng(n).integers(0, 4, size=n).astype(float)
        if weighted
        else None
    )
    chunks = uneven_chunks(n, seed=n)
    params.update(
        quantile=quantile, solver="smooth", fit_intercept=fit_intercept, alpha=alpha
    )
    memory = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(chunks, 4))
    yd = da.from_array(y, chunks=(chunks,)) if dask_y else y
    wd = None if weights is None else da.from_array(weights, chunks=(chunks,))
    fitted = QuantileRegressor(**params).fit(Xd, yd, sample_weight=wd)
    return X, y, weights, fitted, memory


@pytest.mark.parametrize("name", list(SMOOTH_CASES))
def test_smooth_fit_equals_in_memory_fit(synchronous, name):
    """Every stage replicated on all rows: the in-memory smoothed fit, to 1e-8.

    Sizes of 20000 and more put the first stage on every 8th row (a strided
    view evaluated on the workers) and the least-squares start on a strided
    subsample; integer weights include zeros. With ``alpha`` the proximal
    Newton steps are the in-memory ones, on distributed evaluations; its
    zeros are exact zeros of both fits.
    """
    X, y, weights, fitted, memory = smooth_case_fits(name, tol=1e-13)
    alpha = memory.alpha
    assert_same_smoothed_fit(fitted, memory, X, y, weights)
    np.testing.assert_array_equal(fitted.coef_ == 0, memory.coef_ == 0)
    # Selection passes for the medians and a pass per evaluation: measured
    # 37 to 66 without alpha, 54 to 129 with it (the proximal steps'
    # backtracking evaluates more often).
    assert fitted._dask_round_trips <= (80 if alpha == 0 else 150)


@pytest.mark.parametrize("name", list(SMOOTH_CASES))
def test_smooth_fit_takes_the_in_memory_iterations(synchronous, name):
    """At the default ``tol``, every stage makes memory's iterations.

    The first stage's levels, the near rows' and all rows' fits and the
    continuation steps (near rows first, as in memory) decide as in
    memory, so ``n_iter_`` is memory's. (At ``tol=1e-13`` the stopping
    tests sit at the rounding floor of the gradient, and a stage can take
    one iteration more or fewer on a different summation order: 19 against
    20 in the case with an L1 penalty and no intercept.)
    """
    X, y, weights, fitted, memory = smooth_case_fits(name)
    assert fitted.n_iter_ == memory.n_iter_
    assert_same_smoothed_fit(fitted, memory, X, y, weights)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_smooth_first_stage_takes_the_in_memory_levels(synchronous, weighted, alpha):
    """60 000 rows: the first stage's 7500 rows start on every 64th, as in memory.

    In memory the first smoothed fit (on ``X[::8]``) is itself multilevel
    (:func:`skrobust._solvers.subsample_for_start`): its 7500 rows are
    first fitted on their every 8th. The dask fit takes the same levels, so
    its iterations are memory's, one for one.
    """
    n = 60_000
    X, y = make_data(n, seed=5)
    weights = (
        np.random.default_rng(5).integers(0, 3, size=n).astype(float)
        if weighted
        else None
    )
    params = dict(quantile=0.4, solver="smooth", alpha=alpha)
    memory = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    chunks = uneven_chunks(n, seed=5)
    fitted = QuantileRegressor(**params).fit(
        da.from_array(X, chunks=(chunks, 4)), y, sample_weight=weights
    )
    assert fitted.n_iter_ == memory.n_iter_
    assert_same_smoothed_fit(fitted, memory, X, y, weights)


def test_smooth_fit_is_near_the_linear_programme_optimum(synchronous):
    """The continuation's duality gap: within 1e-6 of HiGHS's optimum on all rows."""
    X, y = make_data()
    weights = weights_with_empty_chunk(y.size)
    fitted = QuantileRegressor(quantile=0.6, solver="smooth", tol=1e-13).fit(
        da.from_array(X, chunks=(CHUNKS, 4)), y, sample_weight=weights
    )
    w_lp, b_lp = solve_lp(X, y, 0.6, weights, 0.0, True)
    f_lp = pinball_objective(X, y, w_lp, b_lp, 0.6, weights, 0.0)
    f_dask = objective(fitted, X, y, weights)
    assert f_lp <= f_dask <= f_lp * (1 + 2e-6), (f_dask, f_lp)


def test_smooth_continuation_on_tied_targets_equals_in_memory(synchronous):
    """Integer targets (an atom of residuals at 0): the bandwidth is lowered.

    The continuation's steps and their duality gaps are evaluated on all
    rows; the bandwidth reached is the in-memory one, below the first fit's.
    """
    rng = np.random.default_rng(5)
    n = 20_000
    X = rng.normal(size=(n, 3))
    y = np.round(X @ [1.0, 2.0, -1.0] + rng.normal(size=n))
    weights = rng.integers(0, 3, size=n).astype(float)
    chunks = uneven_chunks(n, seed=1)
    params = dict(quantile=0.4, solver="smooth", tol=1e-13)
    memory = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    fitted = QuantileRegressor(**params).fit(
        da.from_array(X, chunks=(chunks, 3)),
        da.from_array(y, chunks=(chunks,)),
        sample_weight=da.from_array(weights, chunks=(chunks,)),
    )
    assert_same_smoothed_fit(fitted, memory, X, y, weights)
    # Below the first fit's: the default factor times a residual scale >= 0.3.
    scale = _quantile_smooth.default_bandwidth(weights.sum(), 3) * 0.3
    assert fitted.bandwidth_ < scale, (fitted.bandwidth_, scale)


def test_smooth_fit_with_far_targets_clips_as_in_memory(synchronous):
    """Targets 1e9 away are clipped in every stage, as the in-memory fit does."""
    X, y = make_data(20_000, seed=3)
    y[:5] = 1e9
    chunks = uneven_chunks(y.size, seed=3)
    params = dict(quantile=0.4, solver="smooth", tol=1e-13)
    memory = QuantileRegressor(**params).fit(X, y)
    fitted = QuantileRegressor(**params).fit(da.from_array(X, chunks=(chunks, 4)), y)
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-8)
    np.testing.assert_allclose(fitted.intercept_, memory.intercept_, rtol=1e-8)
    np.testing.assert_allclose(fitted.bandwidth_, memory.bandwidth_, rtol=1e-8)


def test_strided_rows_are_the_global_stride(synchronous):
    """Every 8th row of all the data, whatever the chunk boundaries."""
    n = 1001
    X = np.arange(2.0 * n).reshape(n, 2)
    y = np.arange(float(n))
    chunks = (1, 7, 8, 9, 300, 676)
    data = _dask_chunks.ChunkedData(
        da.from_array(X, chunks=(chunks, 2)), da.from_array(y, chunks=(chunks,))
    )
    strided = _dask_strided.StridedData(data, 8)
    parts = strided.map_chunks(lambda X_c, y_c, w_c: (X_c, y_c))
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y[::8])
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), X[::8])
    assert strided.n_samples == y[::8].size and data.round_trips == 1


def test_smooth_fit_on_a_cluster_equals_in_memory_fit(cluster_client):
    """The tasks (strided kernels, clipped setups) travel to worker processes."""
    X, y = make_data(20_000, seed=4)
    weights = np.random.default_rng(4).integers(0, 4, size=y.size).astype(float)
    chunks = uneven_chunks(y.size, seed=4)
    params = dict(quantile=0.35, solver="smooth", tol=1e-13)
    memory = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(chunks, 4)).persist()
    fitted = QuantileRegressor(**params).fit(Xd, y, sample_weight=weights)
    assert_same_smoothed_fit(fitted, memory, X, y, weights)


def test_smooth_fit_with_warm_start_equals_in_memory(synchronous):
    """From a previous fit: only the fit on all rows, as in memory."""
    X, y = make_data()
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    params = dict(quantile=0.6, solver="smooth", warm_start=True, tol=1e-13)
    memory = QuantileRegressor(**params).fit(X, y)
    fitted = QuantileRegressor(**params).fit(Xd, y)
    memory.set_params(quantile=0.65).fit(X, y + X[:, 2])
    fitted.set_params(quantile=0.65).fit(Xd, y + X[:, 2])
    assert_same_smoothed_fit(fitted, memory, X, y + X[:, 2], None)
    assert fitted.n_iter_ == memory.n_iter_


@pytest.mark.parametrize(
    "quantile, alpha, weighted",
    [(0.5, 0.0, False), (0.3, 0.01, False), (0.5, 0.0, True)],
)
def test_smoothed_fit_whose_residuals_are_mostly_equal(
    synchronous, quantile, alpha, weighted
):
    """70% of the targets on a plane: the residuals' MAD is 0, as in memory.

    The in-memory smoothed fit then takes their root mean square about the
    median as the residual scale (and 1 where that is 0 too); the dask fit
    computes it by two passes, and makes the same fits from there.
    """
    X, y = plane_data(0.3)
    weights = weights_with_empty_chunk(y.size) if weighted else None
    params = dict(solver="smooth", quantile=quantile, alpha=alpha)
    memory = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    fitted = QuantileRegressor(**params).fit(Xd, y, sample_weight=weights)
    scale = np.abs(memory.coef_).max()
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(fitted.intercept_, memory.intercept_, rtol=1e-10)
    np.testing.assert_allclose(fitted.bandwidth_, memory.bandwidth_, rtol=1e-10)
    # Near the plane the iterations follow the rounding of the sums (in
    # memory too, on reordered rows: 21 to 27 at q = 0.3 with alpha = 0.01).
    assert_n_iter_within_rounding(fitted, memory, X, y, weights)
    # The fit is near the plane: the smoothed fit's bandwidth is tiny.
    assert memory.bandwidth_ < 1e-4
    if not weighted:
        # A warm start from the fit: the scale of its residuals, all rows.
        model = QuantileRegressor(warm_start=True, **params)
        model.coef_, model.intercept_ = memory.coef_, memory.intercept_
        warm = copy.deepcopy(model).fit(X, y)
        model.fit(Xd, y)
        np.testing.assert_allclose(model.coef_, warm.coef_, rtol=0, atol=1e-10 * scale)
        # (Its bandwidth, lowered to 1e-8 by the continuation, agrees to
        # rounding in y's units, 1e-16; at such a bandwidth the iterations
        # of the last continuation step count rounding and may differ.)
        np.testing.assert_allclose(model.bandwidth_, warm.bandwidth_, atol=1e-15)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_smoothed_fit_of_noiseless_targets_is_least_squares(synchronous, fit_intercept):
    """Least squares fits every row: the in-memory fit returns it, bandwidth 0."""
    X, y = plane_data(0.0)
    if not fit_intercept:
        y -= 2.0
    params = dict(solver="smooth", quantile=0.3, fit_intercept=fit_intercept)
    memory = QuantileRegressor(**params).fit(X, y)
    fitted = QuantileRegressor(**params).fit(da.from_array(X, chunks=(CHUNKS, 4)), y)
    assert memory.bandwidth_ == fitted.bandwidth_ == 0.0
    assert memory.n_iter_ == fitted.n_iter_ == 0
    np.testing.assert_allclose(fitted.coef_, [1.0, -0.2, 3.0, 0.5], rtol=1e-10)
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10)
    np.testing.assert_allclose(fitted.intercept_, memory.intercept_, atol=1e-10)


@pytest.mark.parametrize("max_iter", [1, 2, 3, 5])
def test_exact_fit_counts_its_linear_programmes_within_max_iter(synchronous, max_iter):
    """As in memory: the sample fit leaves two iterations to the LPs on all rows.

    (It used to count the sample fit's iterations, then the programmes on
    top: 2 for max_iter=1.) The fit stays exact.
    """
    X, y = make_data()
    memory = QuantileRegressor(quantile=0.9, solver="exact").fit(X, y)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    model = QuantileRegressor(quantile=0.9, solver="exact", max_iter=max_iter)
    fitted = model.fit(Xd, y)
    assert 1 <= fitted.n_iter_ <= max_iter
    assert_same_optimum(fitted, memory, X, y, None)


def near_start_chunks(n):
    """Uneven row chunks: one of a single row, rows 4000 to 4699 one chunk."""
    return (1500, 1, 2499, 700, n - 4700)


def near_start_data(seed, weighted, n=6000):
    """``make_data`` rows, with integer weights zero on the whole fourth chunk."""
    X, y = make_data(n, seed=seed)
    weights = None
    if weighted:
        weights = np.random.default_rng(seed).integers(0, 4, size=n).astype(float)
        weights[4000:4700] = 0.0
    return X, y, weights


@pytest.fixture
def near_solves(monkeypatch):
    """Each near-rows solve of the smoothed fits, in memory and on dask.

    ``records[side]`` lists ``(rows, iterations, converged)`` of every
    solve on near rows and ``records[side + " start"]`` the outcome of each
    start of a last stage on the rows near it: ``(certified, iterations)``
    and the solves it made; ``records[side + " step"]`` the solves of each
    continuation step and the iterations it reports.
    """
    from skrobust import _dask_near_rows

    records = {"memory": [], "dask": [], "memory start": [], "dask start": []}

    def record_solves(module, name, side, rows_of):
        solve = getattr(module, name)

        def recorded(*args):
            result = solve(*args)
            rows = rows_of(args)
            if rows is not None:
                records[side].append((rows, result.n_iter, result.converged))
            return result

        monkeypatch.setattr(module, name, recorded)

    def near_rows_of(args):
        objective = args[0]
        if isinstance(objective, _quantile_smooth._NearRowsObjective):
            return objective.n_samples
        return None

    record_solves(_quantile_smooth, "_minimize_all_rows", "memory", near_rows_of)
    record_solves(
        _dask_near_rows, "minimize_near", "dask", lambda args: args[1].n_samples
    )

    def record_starts(module, name, side):
        start = getattr(module, name)

        def recorded(*args):
            before = len(records[side])
            result, start_coef, n_iter = start(*args)
            solves = records[side][before:]
            records[side + " start"].append((result is not None, n_iter, solves))
            return result, start_coef, n_iter

        monkeypatch.setattr(module, name, recorded)

    record_starts(_quantile_smooth, "_minimize_near_start", "memory")
    record_starts(_dask_near_rows, "near_start", "dask")

    def record_steps(module, name, side):
        step = getattr(module, name)

        def recorded(*args, **kwargs):
            before = len(records[side])
            outcome = step(*args, **kwargs)
            solves = records[side][before:]
            records[side + " step"].append((solves, outcome[0].n_iter))
            return outcome

        monkeypatch.setattr(module, name, recorded)

    records["memory step"], records["dask step"] = [], []
    record_steps(_quantile_smooth, "_continuation_step", "memory")
    record_steps(_dask_near_rows, "continuation_step", "dask")
    return records


NEAR_START_CASES = {
    # seed, quantile, fit_intercept, weighted, alpha (6000 rows)
    "q0.8-second-fraction": (0, 0.8, True, False, 0.0),
    "q0.2-weighted-no-intercept": (1, 0.2, False, True, 0.0),
    "q0.2-weighted-l1": (3, 0.2, True, True, 0.01),
    "q0.6-weighted-l1": (1, 0.6, True, True, 0.01),
    "q0.8-no-intercept-l1": (0, 0.8, False, False, 0.01),
    # (Seed 2 took this path with strides of 8; with 11 its first near
    # solve stops at the budget. Seed 114 is the first of 0-114 to take it.)
    "q0.8-all-rows-after-near-rows": (114, 0.8, True, False, 0.0),
}


@pytest.mark.parametrize("name", list(NEAR_START_CASES))
def test_smooth_last_stage_starts_on_the_near_rows_as_in_memory(
    synchronous, near_solves, name
):
    """6000 rows: the last stage's near-rows start makes memory's decisions.

    In memory the last smoothed fit on 5000 rows or more is first solved
    on the rows nearest its (centred) start, then on a wider set around
    that solution if a far row moved, then on all rows if still not
    certified (``_quantile_smooth._minimize_near_start``). The dask fit
    selects the same rows (exact distributed quantile and radius, rows
    without weight counted as in memory, a chunk of one row and one of
    rows without weight), solves the same problems with the same
    iterations and certifies the same way: the iteration counts are
    memory's. The cases cover the second set of rows certified
    (``q0.8``), and its solve stopping at the iteration budget, so that
    all rows are solved from the first near solution (``all-rows``).
    """
    seed, quantile, fit_intercept, weighted, alpha = NEAR_START_CASES[name]
    X, y, weights = near_start_data(seed, weighted)
    params = dict(
        quantile=quantile,
        solver="smooth",
        fit_intercept=fit_intercept,
        tol=1e-13,
        alpha=alpha,
    )
    memory = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    chunks = near_start_chunks(y.size)
    fitted = QuantileRegressor(**params).fit(
        da.from_array(X, chunks=(chunks, 4)),
        y,
        sample_weight=None if weights is None else da.from_array(weights, chunks),
    )
    starts = near_solves["memory start"]
    assert len(starts) == 1
    assert near_solves["dask start"] == starts
    certified, _, solves = starts[0]
    if name.startswith("q0.8-"):
        assert len(solves) == 2 and solves[0][2]  # the first was not certified
    if name == "q0.8-all-rows-after-near-rows":
        assert not certified and not solves[1][2]
    assert_same_smoothed_fit(fitted, memory, X, y, weights)
    # (tol=1e-13 is at the rounding of the gradient: the last iterations
    # follow the rounding of the sums, in memory too on reordered rows.)
    assert_n_iter_within_rounding(fitted, memory, X, y, weights)


@pytest.mark.parametrize(
    "seed, quantile, fit_intercept, weighted, beyond",
    [
        (0, 0.2, True, False, 8.5),
        (1, 0.2, False, True, 8.5),
        (0, 0.8, True, False, 0.5),
    ],
    ids=["q0.2", "q0.2-weighted-no-intercept", "q0.8-not-certified"],
)
def test_smooth_continuation_solves_on_the_near_rows_as_in_memory(
    synchronous,
    monkeypatch,
    near_solves,
    seed,
    quantile,
    fit_intercept,
    weighted,
    beyond,
):
    """Each continuation step is solved on the rows near the coarser fit first.

    In memory (``_quantile_smooth._continuation_step``) the rows within the
    coarse bandwidth's reach of zero are solved with the others as a linear
    term; the solution stands if no far row moved in, else all rows are
    solved from it and only those iterations are reported. The dask steps
    solve the same rows with the same iterations, so that ``n_iter_`` is
    memory's (6000 rows; two steps in the weighted case, whose last has 42
    near rows). A reach of half a bandwidth (``beyond``, for both fits)
    makes a step's near solution fail its certificate.
    """
    monkeypatch.setitem(_quantile_smooth._LINEAR_BEYOND, "gaussian", beyond)
    X, y, weights = near_start_data(seed, weighted)
    params = dict(
        quantile=quantile, solver="smooth", fit_intercept=fit_intercept, tol=1e-13
    )
    memory = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    chunks = near_start_chunks(y.size)
    fitted = QuantileRegressor(**params).fit(
        da.from_array(X, chunks=(chunks, 4)),
        y,
        sample_weight=None if weights is None else da.from_array(weights, chunks),
    )
    steps = near_solves["memory step"]
    assert steps and all(len(solves) == 1 for solves, _ in steps)
    refitted = [n_iter != solves[0][1] for solves, n_iter in steps]
    assert any(refitted) == (beyond < 1)

    def without_counts(records):
        # (tol=1e-13 is at the rounding of the gradient: a solve's last
        # iteration follows the rounding of the sums, in memory too.)
        return [[(rows, ok) for rows, _, ok in solves] for solves, _ in records]

    assert without_counts(near_solves["dask step"]) == without_counts(steps)
    assert [(r, ok) for r, _, ok in near_solves["dask"]] == [
        (r, ok) for r, _, ok in near_solves["memory"]
    ]
    assert_same_smoothed_fit(fitted, memory, X, y, weights)
    assert_n_iter_within_rounding(fitted, memory, X, y, weights)


@pytest.mark.parametrize("solver", ["exact", "smooth"])
def test_weights_of_1e10_against_1e_10_give_the_in_memory_bandwidth(
    synchronous, solver
):
    """Weights are relative (issue #11): every 7th row of weight 1e10, the
    others 1e-10, in uneven chunks whose largest weights differ. The default
    bandwidth's rows (the smallest weight, the sums of the weights and of
    their squares, merged over the chunks) are the in-memory ones, and
    multiplying every weight by 1e10 changes nothing: the fit equals the
    in-memory fit of the unscaled weights."""
    X, y = make_data(3000, seed=4)
    weights = np.full(y.size, 1e-10)
    weights[::7] = 1e10
    chunks = uneven_chunks(y.size, seed=4)
    params = dict(quantile=0.3, solver=solver, tol=1e-13)
    memory = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    fitted = QuantileRegressor(**params).fit(
        da.from_array(X, chunks=(chunks, 4)),
        y,
        sample_weight=da.from_array(weights * 1e10, chunks=(chunks,)),
    )
    if solver == "smooth":
        assert_same_smoothed_fit(fitted, memory, X, y, weights)
    else:
        assert_same_optimum(fitted, memory, X, y, weights)
        np.testing.assert_allclose(fitted.bandwidth_, memory.bandwidth_, rtol=1e-8)
