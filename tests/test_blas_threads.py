"""Small fits run with one BLAS thread; the caller's threads are restored.

With another process on the second core, threaded BLAS calls too small
for threads (a start's normal equations, L-BFGS-B's own) made a 1000 x 20
exact quantile fit 120 ms instead of 15 ms (median of 30 fits).
"""

import numpy as np
import pytest
import scipy.optimize
from threadpoolctl import threadpool_info, threadpool_limits

from skrobust import (
    HuberRegressor,
    MultiQuantileRegressor,
    QuantileRegressor,
    _base,
    _linalg,
)
from skrobust._passes import _SINGLE_THREAD_MAX_ENTRIES


def blas_threads():
    return [
        info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"
    ]


@pytest.fixture
def seen_threads(monkeypatch):
    """BLAS thread counts at each L-BFGS-B call, start's solve and lstsq of a fit."""
    seen = []

    def recording(function):
        def recorded(*args, **kwargs):
            seen.append(blas_threads())
            return function(*args, **kwargs)

        return recorded

    monkeypatch.setattr(scipy.optimize, "minimize", recording(scipy.optimize.minimize))
    # (The exact quantile solver's Newton steps, from the zero fit.)
    monkeypatch.setattr(np.linalg, "lstsq", recording(np.linalg.lstsq))
    for name in ("regular_solve", "min_norm_solve"):
        monkeypatch.setattr(_base, name, recording(getattr(_base, name)))
    # (Newton's and Levenberg-Marquardt's factorisations.)
    monkeypatch.setattr(_linalg, "cholesky_solve", recording(_linalg.cholesky_solve))
    return seen


@pytest.mark.parametrize(
    "estimator",
    [
        HuberRegressor(),
        QuantileRegressor(solver="exact"),
        MultiQuantileRegressor(quantiles=[0.25, 0.75], solver="smooth"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("n_samples", [2000, _SINGLE_THREAD_MAX_ENTRIES // 4 + 1])
def test_small_fits_use_one_blas_thread(estimator, n_samples, seen_threads):
    if not blas_threads():
        pytest.skip("no BLAS library found by threadpoolctl")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_samples, 4))
    y = X @ [1.0, -2.0, 0.5, 3.0] + rng.standard_t(2, n_samples)
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        estimator.fit(X, y)
        assert blas_threads() == before
    assert seen_threads, "the fit made no call to observe"
    small = X.size <= _SINGLE_THREAD_MAX_ENTRIES
    for threads in seen_threads:
        assert threads == ([1] * len(before) if small else before)
