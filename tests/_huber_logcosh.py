"""Data and comparisons shared by the HuberRegressor and LogCoshRegressor tests.

``test_huber.py`` (oracles), ``test_huber_invariances.py``,
``test_huber_fitting.py``, ``test_huber_hard_cases.py`` and
``test_logcosh.py`` use the same data, scale options and tolerance.
"""

import functools

import numpy as np
from _oracles import huber_psi, huber_rho, logcosh_psi, logcosh_rho
from numpy.testing import assert_allclose

from skrobust import HuberRegressor, LogCoshRegressor

ESTIMATORS = [HuberRegressor, LogCoshRegressor]
# "joint", "mad" and a fixed scale in the units of y (the noise has sd 1).
SCALES = ["joint", "mad", 1.5]
# Two fits of the same minimiser (solvers, sparse/dense, equivalent data)
# agree to the precision the solvers reach, well inside this.
SOLVER_RTOL = 1e-7
TRUE_COEF = np.array([1.5, -0.3, 8.0])
TRUE_INTERCEPT = 2.0


def make_data(n_samples=200, outlier_fraction=0.1, outlier_size=(20.0, 50.0), seed=0):
    """Linear data with N(0, 1) noise and gross positive outliers in ``y``.

    The columns have very different scales and non-zero means so that the
    estimators' internal standardisation is exercised.

    Returns
    -------
    X, y, outlier_rows
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    y = X @ TRUE_COEF + TRUE_INTERCEPT + rng.normal(size=n_samples)
    n_outliers = round(outlier_fraction * n_samples)
    outlier_rows = rng.choice(n_samples, n_outliers, replace=False)
    y[outlier_rows] += rng.uniform(*outlier_size, size=n_outliers)
    return X, y, outlier_rows


def fitted_vector(model):
    """``(coef_, intercept_, scale_)`` stacked, for comparing two fits."""
    return np.r_[model.coef_, model.intercept_, model.scale_]


def assert_same_fit(model, other, rtol=SOLVER_RTOL):
    """Two fits agree to ``rtol`` relative to the size of the fitted vector."""
    a, b = fitted_vector(model), fitted_vector(other)
    assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)))


def reference_rho(estimator_class, delta):
    """``rho`` and ``psi = rho'`` of each estimator, as one-argument callables.

    The independent formulas of ``tests/_oracles.py``: Huber's ``z^2/2``
    inside ``[-delta, delta]``, ``delta |z| - delta^2/2`` outside; log-cosh's
    ``delta^2 log cosh(z / delta)`` in a form that cannot overflow.
    """
    if estimator_class is HuberRegressor:
        rho, psi = huber_rho, huber_psi
    else:
        rho, psi = logcosh_rho, logcosh_psi
    return functools.partial(rho, delta=delta), functools.partial(psi, delta=delta)


def make_outlier_data(outlier_fraction):
    """400 samples, a fraction of them shifted up by 50 to 100 noise sds."""
    return make_data(
        n_samples=400, outlier_fraction=outlier_fraction, outlier_size=(50.0, 100.0)
    )
