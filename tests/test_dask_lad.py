"""M-estimators with ``scale="lad"`` on dask arrays equal the in-memory fits.

The in-memory fit is the oracle (its LAD scale is checked against an exact
LAD fit's MAD in test_lad_scale.py). Its fixed point is settled to a
relative 1e-6 only, so agreement to 1e-10 means the dask fit followed the
same path: the same start rows, the same smoothed fits on the same
strided rows, the same secant steps; ``n_iter_`` is the same number.
"""

import copy

import dask.array as da
import numpy as np
import pytest
from _dask_data import CHUNKS, assert_close_within_rounding, weights_with_empty_chunk

from skrobust import HuberRegressor, LogCoshRegressor, MEstimatorRegressor
from skrobust._base import copy_budget, lad_start_step, least_squares_start_step

# 45 001 rows: the start and the fixed point on strided rows (every 11th).
LARGE_CHUNKS = (9000, 1, 5000, 4000, 4000, 4000, 7000, 3000, 4000, 5000)


def make_data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, 0.0, 100.0]
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0 + rng.standard_t(3, size=n)
    y[rng.random(n) < 0.1] += 30.0
    return X, y


def weightless_rows(n, *steps):
    """Weights of ``n`` rows: 0 on the multiples of each of ``steps``, else 1."""
    weights = np.ones(n)
    for step in steps:
        weights[::step] = 0.0
    return weights


def weightless_start_rows(X, n_coef):
    """Weights that leave both starts' strided rows of ``X`` without weight.

    The least-squares start's rows (if strided) and the L1 start's rows of
    all of them (``least_squares_start_step``, ``lad_start_step``): no
    weight on either, so the L1 start reweights all rows, in memory as on
    dask.
    """
    n = X.shape[0]
    l1_step = lad_start_step(n, n_coef, copy_budget(X))
    assert l1_step > 1
    steps = [step for step in (least_squares_start_step(n), l1_step) if step > 1]
    return weightless_rows(n, *steps)


def assert_same_fit(fitted, memory, rtol=1e-10):
    for name in ("coef_", "intercept_", "scale_", "noise_scale_"):
        np.testing.assert_allclose(
            getattr(fitted, name), getattr(memory, name), rtol=rtol, err_msg=name
        )
    assert fitted.n_iter_ == memory.n_iter_


ESTIMATORS = {
    "huber": HuberRegressor(scale="lad"),
    "logcosh-ridge": LogCoshRegressor(scale="lad", alpha=3.0),
    "mestimator-no-intercept-H1": MEstimatorRegressor(
        scale="lad", fit_intercept=False, cov_type="H1"
    ),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n", [3000, 45_001])
def test_equals_in_memory_fit(synchronous, name, weighted, n):
    chunks = CHUNKS if n == 3000 else LARGE_CHUNKS
    X, y = make_data(n)
    weights = weights_with_empty_chunk(n, chunks) if weighted else None
    memory = copy.deepcopy(ESTIMATORS[name]).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(chunks, 4))
    yd = da.from_array(y, chunks=(chunks,)) if weighted else y
    fitted = copy.deepcopy(ESTIMATORS[name]).fit(Xd, yd, sample_weight=weights)
    assert_same_fit(fitted, memory)
    np.testing.assert_array_equal(fitted.outliers_.compute(), memory.outliers_)
    np.testing.assert_allclose(fitted.weights_.compute(), memory.weights_, rtol=1e-10)
    if memory.cov_type is not None:
        np.testing.assert_allclose(fitted.cov_, memory.cov_, rtol=1e-10)
    assert fitted._dask_round_trips < 60


def test_warm_start_equals_the_in_memory_warm_start(synchronous):
    X, y = make_data()
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    memory = HuberRegressor(scale="lad", warm_start=True).fit(X, y)
    fitted = HuberRegressor(scale="lad", warm_start=True).fit(Xd, y)
    memory.fit(X, y + X[:, 0])
    fitted.fit(Xd, y + X[:, 0])
    assert_same_fit(fitted, memory)


def test_exact_least_squares_fit_has_scale_zero(synchronous):
    """Noiseless y on 45 001 rows: the shortcut, checked on all rows."""
    X, _ = make_data(45_001)
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0
    memory = HuberRegressor(scale="lad").fit(X, y)
    fitted = HuberRegressor(scale="lad").fit(
        da.from_array(X, chunks=(LARGE_CHUNKS, 4)), y
    )
    assert memory.scale_ == fitted.scale_ == 0.0
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10)
    # Noiseless on the start rows only: least squares is not exact on all
    # rows (a distributed check), and the strided fixed point, on exact
    # rows only, collapses: the scale of an exact LAD fit on all rows, a
    # dask exact quantile fit, as in memory.
    off_start = np.arange(y.size) % least_squares_start_step(y.size) != 0
    y[off_start] += np.random.default_rng(1).normal(size=np.count_nonzero(off_start))
    memory = HuberRegressor(scale="lad").fit(X, y)
    fitted = HuberRegressor(scale="lad").fit(
        da.from_array(X, chunks=(LARGE_CHUNKS, 4)), y
    )
    assert memory.scale_ > 0.1
    assert_same_fit(fitted, memory)


@pytest.mark.parametrize("name", ["huber", "logcosh-ridge"])
def test_collapsing_fixed_point_takes_the_exact_lad_scale(synchronous, name):
    """More than half the targets on one plane: the smoothed scale collapses.

    In memory the scale is then that of an exact LAD fit on all rows (the
    root mean square of its residuals, more than half of them zero), and
    the fixed-scale fit follows; the dask fit takes the same steps.
    """
    X, y = make_data()
    tied = y.copy()
    tied[: 2 * y.size // 3] = X[: 2 * y.size // 3] @ [1.0, -0.2, 3.0, 0.5]
    memory = copy.deepcopy(ESTIMATORS[name]).fit(X, tied)
    fitted = copy.deepcopy(ESTIMATORS[name]).fit(
        da.from_array(X, chunks=(CHUNKS, 4)), tied
    )
    assert memory.scale_ > 1.0  # (not the smoothed fixed point's ~0)
    assert_same_fit(fitted, memory)


@pytest.mark.parametrize("rows", [np.arange(8), [3, 700, 701, 1500, 2000, 2999, 40]])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_few_rows_of_positive_weight_take_the_exact_lad_scale(synchronous, rows, name):
    """At most two rows of positive weight per coefficient, as in memory.

    The exact LAD fit of those rows gives the scale (the normalised MAD of
    its residuals), then the fixed-scale fit on all rows; the rows sit in
    one chunk, or across chunks and the chunk of one row.
    """
    X, y = make_data()
    weights = np.zeros(y.size)
    weights[rows] = [1.0, 2.0, 1.0, 3.0, 1.0, 1.0, 2.0, 1.0][: len(rows)]
    memory = copy.deepcopy(ESTIMATORS[name]).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    fitted = copy.deepcopy(ESTIMATORS[name]).fit(Xd, y, sample_weight=weights)
    assert memory.scale_ > 0.1
    assert_same_fit(fitted, memory)
    if memory.cov_type is not None:
        np.testing.assert_allclose(fitted.cov_, memory.cov_, rtol=1e-10)


@pytest.mark.parametrize(
    "estimator, rows",
    [
        (HuberRegressor(scale="lad", alpha=1.0), 5),
        (HuberRegressor(scale="lad", alpha=1.0), 4),
        (LogCoshRegressor(scale="lad", alpha=0.1), 3),
    ],
)
def test_exact_lad_fit_of_every_row_takes_the_mad_scale(synchronous, estimator, rows):
    """No more rows of positive weight than coefficients, and a ridge.

    The exact LAD fit then interpolates them (least squares would too, but
    the ridge skips that shortcut): in memory the MAD scale's fixed point
    follows, and on dask the same secant steps on distributed fits.
    """
    X, y = make_data()
    weights = np.zeros(y.size)
    weights[:rows] = 1.0
    memory = copy.deepcopy(estimator).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(CHUNKS, 4))
    fitted = copy.deepcopy(estimator).fit(Xd, y, sample_weight=weights)
    assert memory.scale_ > 0.01
    assert_same_fit(fitted, memory)


def test_noiseless_targets_with_a_ridge_take_the_mad_scale(synchronous):
    """Every row on a plane and a ridge: the MAD scale, every 8th row first.

    The smoothed LAD scale collapses, the exact LAD fit interpolates all
    45 001 rows, and the MAD scale's secant runs on the solvers' subsample
    before all rows, as in memory.
    """
    X, _ = make_data(45_001)
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0
    memory = HuberRegressor(scale="lad", alpha=1.0).fit(X, y)
    Xd = da.from_array(X, chunks=(LARGE_CHUNKS, 4))
    fitted = HuberRegressor(scale="lad", alpha=1.0).fit(Xd, y)
    assert memory.scale_ > 1e-4
    assert_same_fit(fitted, memory)


def test_fit_on_a_cluster_equals_in_memory_fit(cluster_client):
    X, y = make_data(45_001)
    weights = weights_with_empty_chunk(y.size, LARGE_CHUNKS)
    memory = LogCoshRegressor(scale="lad").fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(LARGE_CHUNKS, 4)).persist()
    fitted = LogCoshRegressor(scale="lad").fit(Xd, y, sample_weight=weights)
    assert_same_fit(fitted, memory)


def test_polish_on_the_solver_hessian_saves_a_round_trip(synchronous, monkeypatch):
    """The fixed-scale fit's polish steps on its solve's Hessian, as in memory."""
    import skrobust._dask_staged as dask_staged

    # (Data on which the polish takes a step: the solve's last gradient is
    # not yet at rounding, and one step on the solver's Hessian reaches it.
    # Where that takes its second step, it costs what the fresh Hessian's
    # pass does: with seed 0 since the strides of 11, 32 trips either way.)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200_000, 10))
    y = X @ rng.normal(size=10) + rng.standard_t(2, size=200_000)
    Xd = da.from_array(X, chunks=(50_000, 10))
    memory = HuberRegressor(scale="lad").fit(X, y)
    fitted = HuberRegressor(scale="lad").fit(Xd, y)
    assert_same_fit(fitted, memory)
    polish = dask_staged._newton_polish

    def fresh(problem, objective, coef, *args):
        return polish(problem, objective, coef)  # (a Hessian formed for it)

    monkeypatch.setattr(dask_staged, "_newton_polish", fresh)
    reference = HuberRegressor(scale="lad").fit(Xd, y)
    assert_same_fit(reference, memory)
    assert fitted._dask_round_trips == reference._dask_round_trips - 1


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_start_rows_without_weight_start_from_all_rows(synchronous, name):
    """No weight on the least-squares start's strided rows.

    In memory least squares then comes from all rows and the L1 start from
    its own strided rows of all of them; the dask fit takes those steps
    with one pass for the normal equations and one fetch of those rows.
    """
    X, y = make_data(45_001)
    weights = weightless_rows(y.size, least_squares_start_step(y.size))
    memory = copy.deepcopy(ESTIMATORS[name]).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(LARGE_CHUNKS, 4))
    fitted = copy.deepcopy(ESTIMATORS[name]).fit(Xd, y, sample_weight=weights)
    assert_same_fit(fitted, memory)
    if memory.cov_type is not None:
        np.testing.assert_allclose(fitted.cov_, memory.cov_, rtol=1e-10)


def test_start_from_all_rows_finds_an_exact_least_squares_fit(synchronous):
    """Noiseless targets, no weight on the start rows: the all-rows shortcut."""
    X, _ = make_data(45_001)
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0
    weights = weightless_rows(y.size, least_squares_start_step(y.size))
    memory = HuberRegressor(scale="lad").fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=(LARGE_CHUNKS, 4))
    fitted = HuberRegressor(scale="lad").fit(Xd, y, sample_weight=weights)
    assert memory.scale_ == fitted.scale_ == 0.0
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10)
    np.testing.assert_allclose(fitted.coef_, [1.0, -0.2, 3.0, 0.5], rtol=1e-10)


def spy_on(monkeypatch, module, name):
    """Replace ``module.name`` by a wrapper; return the list its calls append to."""
    calls = []
    function = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return function(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize("tenfold", [False, True])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_l1_start_on_all_rows_when_its_rows_carry_no_weight(
    synchronous, monkeypatch, name, tenfold
):
    """40 000 rows, no weight on the multiples of both starts' strides.

    Neither the least-squares start's rows (every 11th) nor the L1 start's
    (every 23rd) carry weight, so in memory the L1 start reweights all
    rows; the dask fit does so with a pass a step. With ``tenfold`` the
    weighted rows of the second half weigh 10: the chunks' largest weights
    differ, and each chunk's objective scales its weights to its own (the
    reweighting once took those scaled weights, and without an intercept
    the fit was 2e-9 from the in-memory one).
    """
    import skrobust._dask_staged as dask_staged

    calls = spy_on(monkeypatch, dask_staged, "reweighted_start")
    X, y = make_data(40_000)
    weights = weightless_start_rows(X, X.shape[1] + 1)
    if tenfold:
        weights[y.size // 2 :] *= 10.0
    memory = copy.deepcopy(ESTIMATORS[name]).fit(X, y, sample_weight=weights)
    chunks = LARGE_CHUNKS[:-2] + (3999,)
    Xd = da.from_array(X, chunks=(chunks, 4))
    fitted = copy.deepcopy(ESTIMATORS[name]).fit(Xd, y, sample_weight=weights)
    assert calls == [1]
    assert_same_fit(fitted, memory)


def make_wide_data(n, p, seed=0):
    """``p`` columns of scales 0.1 to 10 and means 0 to 100, t(3) noise, 10% shifted."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * np.linspace(0.1, 10.0, p) + np.linspace(0, 100, p)
    y = X @ rng.normal(size=p) + 2.0 + rng.standard_t(3, size=n)
    y[rng.random(n) < 0.1] += 30.0
    return X, y


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_l1_start_on_all_rows_of_a_wide_design(synchronous, monkeypatch, name):
    """As above with 64 columns (64 or 65 coefficients) on 40 000 rows.

    (Fewer than 40 000 rows start from all of them, on the client.) In
    memory each reweighting step then solves normal equations formed by a
    pass over all rows (the conjugate-gradient steps of wide designs need
    at most 2^19 elements, and these have 2.6 million): so does the dask
    fit, a pass a step (this case raised NotImplementedError). On such a
    design (20 000 rows weighted on the odd ones) the in-memory fit itself
    moved by at most 2e-13 when the weighted rows were reordered; on
    others the reweighting, which divides by
    residuals down to 1e-6 of their median, amplifies the rounding of a
    different summation order beyond 1e-10, in memory as on dask: on
    these, reordering the weighted rows moves the in-memory scale by up to
    3e-11 (log-cosh with a ridge; 2 orders), and the dask fit is 2.1e-10
    from it. So the fit is compared with memory's on its weighted rows
    reordered (the strided rows keep no weight) where it is not within
    1e-10.
    """
    import skrobust._dask_staged as dask_staged

    calls = spy_on(monkeypatch, dask_staged, "reweighted_start")
    X, y = make_wide_data(40_000, 64)
    weights = weightless_start_rows(X, X.shape[1] + 1)
    memory = copy.deepcopy(ESTIMATORS[name]).fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=((10_000, 1, 9999, 20_000), 64))
    fitted = copy.deepcopy(ESTIMATORS[name]).fit(Xd, y, sample_weight=weights)
    assert calls == [1]
    assert fitted.n_iter_ == memory.n_iter_
    names = ("coef_", "intercept_", "scale_", "noise_scale_")
    rows = np.flatnonzero(weights > 0)
    assert_close_within_rounding(fitted, memory, X, y, weights, names, rows=rows)
    if memory.cov_type is not None:
        # Relative to the largest entry: the smallest of these 4096 are
        # 1e-6 of it, sums whose terms cancel to that, in memory too.
        scale = np.abs(memory.cov_).max()
        np.testing.assert_allclose(fitted.cov_, memory.cov_, atol=1e-10 * scale)
    assert fitted._dask_round_trips < 90


def test_l1_start_on_all_rows_by_lsqr_beyond_300_coefficients(synchronous, monkeypatch):
    """301 coefficients: the least-squares start and each reweighting by LSQR.

    In memory, beyond ``ITERATIVE_MIN_COEF`` (300) coefficients the start
    and the reweighting steps are LSQR solves (each step stopped after 20
    iterations), not normal equations; on dask the same LSQR runs on the
    client, each product with the design a pass (40 000 rows: fewer start
    from all of them, on the client). Truncated LSQR on the reweighted rows
    amplifies rounding: on 20 000 rows weighted on the odd ones,
    reordering those moved the in-memory fit by up to 1.8e-7 (a
    coefficient) and 1.9e-10 (the scale), and ``n_iter_`` from 10 to 11 in
    one of three orders; the dask fit was as far (1.8e-7, 1.5e-10, 11).
    So the fits are compared to the
    LAD scale's settling tolerance, ``LAD_SCALE_RTOL`` (1e-6), and their
    ``n_iter_`` to one.
    """
    import skrobust._base as base
    import skrobust._dask_lad_start as dask_lad_start
    from skrobust._scale_lad import LAD_SCALE_RTOL

    in_memory = spy_on(monkeypatch, base, "_lsqr_least_squares")
    on_dask = spy_on(monkeypatch, dask_lad_start, "_lsqr_least_squares")
    X, y = make_wide_data(40_000, 300)
    weights = weightless_start_rows(X, X.shape[1] + 1)
    memory = HuberRegressor(scale="lad").fit(X, y, sample_weight=weights)
    Xd = da.from_array(X, chunks=((10_000, 1, 9999, 20_000), 300))
    fitted = HuberRegressor(scale="lad").fit(Xd, y, sample_weight=weights)
    # The start and four reweighting steps, in memory and on dask.
    assert len(in_memory) == len(on_dask) == 5
    for name in ("coef_", "intercept_", "scale_"):
        np.testing.assert_allclose(
            getattr(fitted, name), getattr(memory, name), rtol=LAD_SCALE_RTOL
        )
    assert abs(fitted.n_iter_ - memory.n_iter_) <= 1


def test_smoothed_fits_are_solved_as_convex_as_in_memory(synchronous):
    """The smoothed LAD fits run Newton's damped loop, as in memory.

    In memory they are declared convex (Newton's own damped loop); the dask
    fits once were not, so scipy's trust region took them another way: on
    these data 1.6e-9 apart, where reordering the rows in memory moves the
    fit by 1e-14.
    """
    rng = np.random.default_rng(3)
    n, p = 3000, 12
    X = rng.normal(size=(n, p)) * np.linspace(0.1, 10, p) + np.linspace(0, 100, p)
    y = X @ rng.normal(size=p) + 2.0 + rng.standard_t(2, size=n)
    y[rng.random(n) < 0.2] += 50.0
    memory = copy.deepcopy(ESTIMATORS["logcosh-ridge"]).fit(X, y)
    Xd = da.from_array(X, chunks=(CHUNKS, p))
    fitted = copy.deepcopy(ESTIMATORS["logcosh-ridge"]).fit(Xd, y)
    assert_same_fit(fitted, memory)


def test_wide_l1_start_on_all_rows_on_a_cluster(cluster_client):
    """The wide design's reweighted start on a two-process cluster.

    ``X`` is drawn on the workers (sending its 20 MB in the graph warns),
    then computed for the in-memory fit.
    """
    n, p = 40_000, 64
    chunks = ((10_000, 1, 9999, 20_000), p)
    Xd = da.random.default_rng(0).normal(size=(n, p), chunks=chunks)
    Xd = (Xd * np.linspace(0.1, 10.0, p) + np.linspace(0, 100, p)).persist()
    X = Xd.compute()
    rng = np.random.default_rng(1)
    y = X @ rng.normal(size=p) + 2.0 + rng.standard_t(3, size=n)
    y[rng.random(n) < 0.1] += 30.0
    weights = weightless_start_rows(X, p + 1)
    memory = HuberRegressor(scale="lad").fit(X, y, sample_weight=weights)
    fitted = HuberRegressor(scale="lad").fit(Xd, y, sample_weight=weights)
    assert_same_fit(fitted, memory)
