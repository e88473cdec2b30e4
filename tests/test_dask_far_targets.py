"""Targets far from the rest (1e50 away) on dask: the in-memory fit, via its guard.

In memory, targets more than 1e4 robust scales from the start's fit are
moved in to that distance before solving (the minimiser is the same, the
objective keeps its digits), and the fit is checked afterwards. The dask
fits move them in each chunk's task and check them in one pass; the
in-memory fit of the same data is the oracle.
"""

import copy

import dask.array as da
import numpy as np
import pytest
from _dask_data import CHUNKS

from skrobust import HuberRegressor, LogCoshRegressor, MEstimatorRegressor
from skrobust._dask_far_targets import guard_applies

pytestmark = pytest.mark.usefixtures("small_dask_sample")


def make_data(n=3000, seed=0, far=1e50):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, 0.0, 100.0]
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0 + rng.standard_t(3, size=n)
    wild = rng.random(n) < 0.1
    y[wild] += far * np.where(rng.random(wild.sum()) < 0.7, 1.0, -1.0)
    return X, y


ESTIMATORS = {
    "huber-joint": HuberRegressor(tol=1e-13),
    "huber-mad": HuberRegressor(scale="mad", tol=1e-13),
    "huber-fixed": HuberRegressor(scale=2.0, tol=1e-13),
    "logcosh-lad": LogCoshRegressor(scale="lad", tol=1e-13),
    "no-intercept-joint": MEstimatorRegressor(fit_intercept=False, tol=1e-13),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("weighted", [False, True])
def test_far_targets_give_the_in_memory_fit(synchronous, name, weighted):
    X, y = make_data()
    weights = None
    if weighted:
        weights = np.random.default_rng(1).integers(0, 4, size=y.size).astype(float)
    memory = copy.deepcopy(ESTIMATORS[name]).fit(X, y, sample_weight=weights)
    fitted = copy.deepcopy(ESTIMATORS[name]).fit(
        da.from_array(X, chunks=(CHUNKS, 4)), y, sample_weight=weights
    )
    for attribute in ("coef_", "intercept_", "scale_", "noise_scale_"):
        np.testing.assert_allclose(
            getattr(fitted, attribute), getattr(memory, attribute), rtol=1e-10
        )
    np.testing.assert_array_equal(fitted.outliers_.compute(), memory.outliers_)


def test_the_guard_is_on_exactly_when_in_memory_it_may_be():
    """Half the clip distance from the median of y, and a saturating loss."""
    rho = HuberRegressor()._rho()
    stats = (None, None, None, (-1.0, 4999.0))
    assert not guard_applies(rho, stats, offset=0.0, spread=1.0)
    stats = (None, None, None, (-1.0, 5001.0))
    assert guard_applies(rho, stats, offset=0.0, spread=1.0)
    assert not guard_applies(rho, stats, offset=0.0, spread=2.0)


def test_chunks_move_the_targets_the_in_memory_guard_moves(synchronous):
    """Start.clipped on each chunk against _clip_far_targets on all rows."""
    from skrobust._base import target_offset_scale
    from skrobust._dask_chunks import ChunkedData
    from skrobust._dask_far_targets import Start, moved_rows_keep_sides
    from skrobust._mestimator import _clip_far_targets
    from skrobust._objective import LinearObjective
    from skrobust.losses import FixedScaleLoss, SquaredRho

    X, y = make_data()
    offset, spread = target_offset_scale(y, np.ones(y.size), True)
    y_std = (y - offset) / spread
    ls = LinearObjective(
        FixedScaleLoss(SquaredRho()), X, y_std, np.ones(y.size), [(None, True)], [0.0]
    )
    start = ls.standardize([(np.array([1.0, -0.2, 3.0, 0.5]) / spread, 0.1)])
    rho = HuberRegressor()._rho()
    y_clipped, far, sign = _clip_far_targets(ls, start, rho)
    assert 200 < far.sum() < 400
    ((w0, b0),) = ls.unstandardize(start)
    moved = Start(w0, b0, offset, spread)
    chunks = np.cumsum((0, *CHUNKS))
    clipped = np.concatenate(
        [
            moved.clipped(X[a:b], y[a:b], None)
            for a, b in zip(chunks[:-1], chunks[1:], strict=True)
        ]
    )
    np.testing.assert_allclose(clipped, y_clipped, rtol=1e-12)
    # The check after the fit: at the start itself every moved row is 1e4
    # away on its side; at a fit through a moved row's target it is not.
    data = ChunkedData(da.from_array(X, chunks=(CHUNKS, 4)), y)
    assert moved_rows_keep_sides(data, moved, w0, b0, 1.35)
    row = int(np.flatnonzero(far)[0])
    through = b0 + (y_clipped[row] - (X[row] @ w0 + b0))
    assert not moved_rows_keep_sides(data, moved, w0, through, 1.35)
