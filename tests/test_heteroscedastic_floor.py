"""HeteroscedasticRegressor where the variance floor, not the data, sets the optimum.

Many sparse variance features (each column non-zero on a few rows) let the
likelihood fit rows exactly and shrink their variances until the floor
``tau^2`` stops them. The oracle is scipy's ``trust-exact`` on the
documented objective and its Hessian, written out here on the dense design.
"""

import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from skrobust import HeteroscedasticRegressor


def sparse_wide_data(n=2000, p=200, per_row=10, seed=0):
    """The benchmark's sparse design, scaled down: ``per_row`` non-zeros a row.

    ``y`` is linear plus N(0, 1) noise, 10% of it shifted up by 20 to 100
    (``benchmarks/bench_shapes.py``).
    """
    rng = np.random.default_rng(seed)
    X = sp.random_array((n, p), density=per_row / p, format="csr", rng=rng)
    X.data = rng.standard_normal(X.data.shape[0])
    X = sp.csr_matrix(X)
    y = X @ rng.standard_normal(p) + 1.0 + rng.standard_normal(n)
    bad = rng.random(n) < 0.1
    y[bad] += rng.uniform(20.0, 100.0, size=bad.sum())
    return X, y


def documented_minimum(A, y, tau2, l2, start):
    """``trust-exact`` on the mean NLL plus ``l2 / 2 |g|^2``; ``A`` has a ones column.

    ``y`` in units of its standard deviation (the floor's unit); returns
    scipy's result over ``(b, b0, g, g0)``.
    """
    n, k = A.shape
    slopes = np.r_[np.ones(k - 1), 0.0]

    def parts(t):
        r = y - A @ t[:k]
        v = A @ t[k:]
        return r, v, np.exp(-v)

    def fun(t):
        r, v, e = parts(t)
        value = np.mean(0.5 * (r * r + tau2) * e + 0.5 * v)
        value += 0.5 * l2 * (slopes * t[k:]) @ t[k:]
        d_mu, d_v = -r * e / n, 0.5 * (1 - (r * r + tau2) * e) / n
        return value, np.r_[A.T @ d_mu, A.T @ d_v + l2 * slopes * t[k:]]

    def hess(t):
        r, v, e = parts(t)
        blocks = [e, r * e, 0.5 * (r * r + tau2) * e]
        bb, bg, gg = (A.T @ (A * (d / n)[:, None]) for d in blocks)
        return np.block([[bb, bg], [bg, gg + l2 * np.diag(slopes)]])

    return scipy.optimize.minimize(
        fun,
        start,
        jac=True,
        hess=hess,
        method="trust-exact",
        options={"gtol": 1e-9, "maxiter": 1000},
    )


def floored_rows(A, y, t, tau2, factor=100.0):
    k = A.shape[1]
    r, v = y - A @ t[:k], A @ t[k:]
    return int(np.sum((np.exp(v) <= factor * tau2) & (r * r <= factor * tau2)))


def test_a_fit_stopped_with_rows_at_the_floor_says_so():
    """Sparse 2000 x 200 (10 non-zeros a row), stopped after 100 iterations.

    The old warning advised more iterations; the optimum of the documented
    objective has rows at the floor (oracle), whose variances follow the
    floor when it is lowered: the floor, not the data, sets them. The
    warning must say so.
    """
    X, y = sparse_wide_data()
    with pytest.warns(ConvergenceWarning, match="rows fitted to within 10 tau"):
        HeteroscedasticRegressor(max_iter=100).fit(X, y)

    A = np.c_[X.toarray(), np.ones(X.shape[0])]
    y_unit = (y - y.mean()) / y.std()  # s_y: the floor's unit
    l2 = 2 * 1e-4 / y.size  # alpha = 1e-4 on the sum of unit weights
    # From a zero mean and a unit variance. Rows at the floor have
    # curvature 1 / tau^2 = 1e8 along the mean, so the oracle's gradient
    # stops at rounding level, ~1e-7 (as in test_heteroscedastic.py's
    # rows-at-the-floor test).
    at_default = documented_minimum(A, y_unit, 1e-8, l2, np.zeros(2 * A.shape[1]))
    assert np.max(np.abs(at_default.jac)) < 1e-6
    assert floored_rows(A, y_unit, at_default.x, 1e-8) >= 5
    # With a floor 100 times lower, the rows' variances follow it down (the
    # oracle's gradient stops at rounding level, 1e-5 at curvature 1e10).
    lower = documented_minimum(A, y_unit, 1e-10, l2, at_default.x)
    assert lower.fun < at_default.fun
    assert floored_rows(A, y_unit, lower.x, 1e-10) >= 5


def test_fits_that_converge_with_rows_at_the_floor_do_not_warn():
    """The same data with the default budget: converged, no warning."""
    X, y = sparse_wide_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HeteroscedasticRegressor().fit(X, y)
