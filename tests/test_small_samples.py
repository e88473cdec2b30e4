"""Small samples reach the optimum: the accuracy sweep of issue 11.

Every estimator at its defaults, on ``n`` from ``p + 2`` to ``5 p`` rows with
Gaussian and Student-t(2) noise, must end without a ``ConvergenceWarning``
and with an objective no more than 1e-9 (relative) above an independent
tight minimisation: scipy's L-BFGS-B on Owen's objective, started from our
fit and from least squares, for the M-estimators (:func:`joint_scale_oracle`),
and HiGHS's linear programme for the quantile regressor.

The grid is a deterministic sample of the issue's (``p`` in 1..40, ``n`` in
``p + 2 .. 5 p``, 100 seeds): every ``p`` tier and ``n`` ratio, a few seeds
each, so that the sweep stays fast.
"""

import warnings

import numpy as np
import pytest
from _oracles import (
    huber_psi,
    huber_rho,
    joint_scale_oracle,
    logcosh_psi,
    logcosh_rho,
    quantile_linprog,
    quantile_objective,
)
from sklearn.exceptions import ConvergenceWarning

from skrobust import HuberRegressor, LogCoshRegressor, QuantileRegressor

CASES = [
    (p, n, noise, seed)
    for p in (1, 3, 10, 25, 40)
    for n in sorted({p + 2, 2 * p + 1, 5 * p})
    for noise in ("gaussian", "t2")
    for seed in range(3)
]


def make_problem(p, n, noise, seed):
    rng = np.random.default_rng([p, n, seed])
    X = rng.normal(size=(n, p))
    errors = rng.normal(size=n) if noise == "gaussian" else rng.standard_t(2, size=n)
    y = X @ rng.normal(size=p) + 1.0 + errors
    return X, y


def fit_without_warning(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        return estimator.fit(X, y)


@pytest.mark.parametrize(
    "estimator_class, rho, psi, delta",
    [
        (HuberRegressor, huber_rho, huber_psi, 1.35),
        (LogCoshRegressor, logcosh_rho, logcosh_psi, 1.0),
    ],
    ids=["huber", "logcosh"],
)
@pytest.mark.parametrize("p, n, noise, seed", CASES)
def test_m_estimators_reach_the_joint_optimum(
    estimator_class, rho, psi, delta, p, n, noise, seed
):
    X, y = make_problem(p, n, noise, seed)
    model = fit_without_warning(estimator_class(), X, y)
    ones = np.ones(n)
    args = (X, y, ones, 0.0, True, lambda z: rho(z, delta), lambda z: psi(z, delta))
    ours = np.r_[model.coef_, model.intercept_, max(model.scale_, 1e-12)]
    least_squares = np.linalg.lstsq(np.c_[X, ones], y, rcond=None)[0]
    spread = max(np.std(y - np.c_[X, ones] @ least_squares), 1e-6)
    oracle = joint_scale_oracle(*args, [ours, np.r_[least_squares, spread]])
    from _oracles import owen_objective

    value = owen_objective(ours, *args)[0]
    assert value <= oracle.fun + 1e-9 * abs(oracle.fun) + 1e-12


@pytest.mark.parametrize("p, n, noise, seed", CASES)
def test_quantile_regressor_reaches_the_lp_optimum(p, n, noise, seed):
    X, y = make_problem(p, n, noise, seed)
    model = fit_without_warning(QuantileRegressor(), X, y)
    optimum = quantile_linprog(X, y, 0.5).objective
    value = quantile_objective(X, y, model.coef_, model.intercept_, 0.5)
    assert value <= optimum * (1 + 1e-9) + 1e-12
