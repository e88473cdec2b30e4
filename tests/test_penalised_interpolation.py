"""A ridge on a design with more coefficients than rows: the joint fit at sigma = 0.

With ``alpha > 0`` and at most as many rows as coefficients, the joint
(concomitant-scale) objective

    F(w, b, sigma) = sum_i s_i sigma (1 + 2 rho(r_i / sigma)) + alpha ||w||^2

can have its infimum at ``sigma = 0`` with every row fitted exactly: the
minimum-norm interpolant, when its multipliers stay within ``psi(inf)``.
Newton's method only approaches that boundary, one unit of ``log sigma``
per step, and used to stop at ``max_iter`` with a ``ConvergenceWarning``.
The oracle is the public objective itself, written out here: no point that
scipy's L-BFGS-B finds from several starts, and no small step in a random
direction, lowers it below the fit's value.
"""

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.optimize

from skrobust import HuberRegressor, LogCoshRegressor


def huber_rho(z, delta):
    a = np.abs(z)
    return np.where(a <= delta, 0.5 * z * z, delta * a - 0.5 * delta * delta)


def log_cosh_rho(z, delta):
    x = np.abs(z) / delta
    return delta * delta * (x + np.log1p(np.exp(-2.0 * x)) - np.log(2.0))


RHOS = {HuberRegressor: huber_rho, LogCoshRegressor: log_cosh_rho}


def joint_objective(params, X, y, weights, alpha, rho, delta):
    """Owen's objective in the units of y; at sigma = 0 its limit 2 delta |r|."""
    w, b, sigma = params[:-2], params[-2], params[-1]
    r = y - X @ w - b
    if sigma <= 0:
        loss = 2.0 * delta * np.abs(r)
    else:
        loss = sigma * (1.0 + 2.0 * rho(r / sigma, delta))
    return float(weights @ loss + alpha * w @ w)


def wide_data(n, p, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.5, 3.0, p)
    y = X[:, :3] @ [1.0, -2.0, 0.5] + rng.standard_t(3, size=n)
    return X, y


@pytest.mark.parametrize("estimator", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize("alpha", [0.01, 1.0])
@pytest.mark.parametrize(("n", "p"), [(5, 20), (10, 20), (15, 30)])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_fit_is_the_joint_objective_minimum(estimator, alpha, n, p, weighted):
    X, y = wide_data(n, p, seed=n + p)
    weights = np.ones(n)
    if weighted:
        weights = np.random.default_rng(1).integers(1, 4, n).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning
        fitted = estimator(alpha=alpha).fit(X, y, sample_weight=weights)
    assert fitted.scale_ == 0.0 and fitted.n_iter_ == 0
    np.testing.assert_allclose(fitted.predict(X), y, atol=1e-8)
    rho, delta = RHOS[estimator], fitted.delta
    args = (X, y, weights, alpha, rho, delta)
    point = np.concatenate([fitted.coef_, [fitted.intercept_, 0.0]])
    value = joint_objective(point, *args)
    # Small steps in random directions (sigma moving up) do not descend.
    rng = np.random.default_rng(0)
    for _ in range(200):
        direction = rng.normal(size=point.size)
        direction[-1] = abs(direction[-1])
        for step in (1e-6, 1e-4, 1e-2):
            trial = joint_objective(point + step * direction, *args)
            assert trial >= value - 1e-12 * value
    # Nor does a minimisation from other starts (sigma >= 0 by a bound).
    bounds = [(None, None)] * (p + 1) + [(0.0, None)]
    starts = [
        np.concatenate([np.zeros(p), [np.median(y), np.std(y)]]),
        point + np.concatenate([0.01 * rng.normal(size=p + 1), [0.1]]),
    ]
    for start in starts:
        found = scipy.optimize.minimize(
            joint_objective,
            start,
            args=args,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 20_000, "maxfun": 200_000, "ftol": 1e-15},
        )
        assert value <= found.fun * (1.0 + 1e-9)


def test_a_strong_ridge_is_not_an_interpolant():
    """With alpha large the multipliers leave psi(inf): Newton's fit, sigma > 0."""
    X, y = wide_data(10, 20, seed=30)
    fitted = HuberRegressor(alpha=1000.0).fit(X, y)
    assert fitted.scale_ > 0
    assert np.abs(fitted.predict(X) - y).max() > 1e-3


def test_dask_takes_the_same_boundary():
    X, y = wide_data(10, 20, seed=30)
    memory = HuberRegressor(alpha=1.0).fit(X, y)
    with dask.config.set(scheduler="synchronous"):
        fitted = HuberRegressor(alpha=1.0).fit(da.from_array(X, chunks=(4, 20)), y)
    assert fitted.scale_ == memory.scale_ == 0.0
    assert fitted.n_iter_ == memory.n_iter_ == 0
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=1e-10, atol=1e-12)


def test_an_infinite_penalty_weight_is_the_column_left_out():
    """A column of spread 1e-200 has an infinite penalty weight: it is pinned.

    Its coefficient is held at 0 (the solve never sees the infinite weight,
    on which LAPACK's least squares did not return), and the interpolant is
    that of the design without the column: the KKT solve on the remaining
    columns, computed here on ``X[:, 1:]``.
    """
    from skrobust._objective import LinearObjective
    from skrobust._scale import interpolating_boundary
    from skrobust.losses import FixedScaleLoss, HuberRho, SquaredRho

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 8))
    X[:, 0] *= 1e-200
    y = rng.normal(size=4)

    def boundary(design):
        ls = LinearObjective(
            FixedScaleLoss(SquaredRho()), design, y, np.ones(4), [(None, True)], [0.5]
        )
        assert np.all(np.isfinite(ls.penalty))
        return interpolating_boundary(ls, HuberRho(1.35))

    pinned, without = boundary(X), boundary(X[:, 1:])
    assert pinned is not None and without is not None
    assert pinned.w[0] == 0.0
    np.testing.assert_allclose(pinned.w[1:], without.w, rtol=1e-12, atol=1e-15)
    assert pinned.b == pytest.approx(without.b, rel=1e-12)


@pytest.mark.parametrize("estimator", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize("on_dask", [False, True])
def test_a_ridge_whose_interpolant_is_not_optimal_gets_its_scale(estimator, on_dask):
    """Two rows, three columns, alpha = 0.5: the interpolant is not the
    optimum (its multipliers leave psi(inf)), whose scale is 0.3. The
    interpolating start has no residual scale; at its floor (1e-12) the
    gradient in log sigma vanishes whatever its sign, and Newton's method
    "converged" there on the penalised LAD fit, 22% (Huber) and 8%
    (log-cosh) above the optimum, without a warning. Oracle: L-BFGS-B on
    the objective written out here, from several starts."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))[:2]
    y = X @ [1.0, -2.0, 0.5] + 0.3 * rng.standard_t(3, size=30)[:2]
    alpha = 0.5
    model = estimator(alpha=alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if on_dask:
            with dask.config.set(scheduler="synchronous"):
                model.fit(da.from_array(X, chunks=(1, 3)), y)
        else:
            model.fit(X, y)
    args = (X, y, np.ones(2), alpha, RHOS[estimator], model.delta)
    point = np.concatenate([model.coef_, [model.intercept_, model.scale_]])
    value = joint_objective(point, *args)
    bounds = [(None, None)] * 4 + [(0.0, None)]
    starts = [
        np.concatenate([np.zeros(3), [np.median(y), np.std(y)]]),
        np.concatenate([np.zeros(3), [np.median(y), 1.0]]),
        point + np.concatenate([np.zeros(4), [0.1]]),
    ]
    best = min(
        scipy.optimize.minimize(
            joint_objective,
            start,
            args=args,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 20_000, "maxfun": 200_000, "ftol": 1e-15},
        ).fun
        for start in starts
    )
    assert value <= best * (1.0 + 1e-9)
    assert model.scale_ > 0.1
