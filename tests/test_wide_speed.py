"""Wide designs: the Newton solves that form few Hessians reach the same optimum.

From ``PRECONDITIONED_MIN_COEF`` coefficients a convex Newton solve forms a
Hessian only now and then and solves the other Newton systems by
conjugate gradients on Hessian-vector products; the least-squares start of
an M-estimator comes from the normal equations; a Gram matrix certified
regular by its Cholesky factor skips the eigendecomposition of the search
for flat directions. These tests check each piece against an independent
oracle (finite differences, ``numpy.linalg``, scipy's L-BFGS-B on the
objective written out in ``tests/_oracles.py``, statsmodels' ``RLM``) on
designs wide enough to take the new paths.
"""

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from _oracles import (
    FixedScaleOracle,
    huber_psi,
    huber_rho,
    joint_scale_oracle,
    logcosh_psi,
    logcosh_rho,
    owen_objective,
    statsmodels_rlm,
)
from numpy.testing import assert_allclose
from statsmodels.robust.norms import HuberT

from skrobust import HuberRegressor, LogCoshRegressor, _linalg, _preconditioned_newton
from skrobust._base import least_squares_start
from skrobust._null_directions import _clearly_regular, null_directions
from skrobust._objective import LinearObjective
from skrobust._small_design import weighted_gram
from skrobust.losses import ConcomitantScaleLoss, FixedScaleLoss, LogCoshRho

# 71 or 72 coefficients on 1000 rows: within the preconditioned path's bounds.
N_FEATURES = 70


def wide_data(n_samples=1000, n_features=N_FEATURES, seed=0, offset=0.0):
    """Gaussian design, N(0, 1) noise and 10% of targets shifted up by 20-60."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) + offset
    y = X @ rng.normal(size=n_features) + 1.5 + rng.normal(size=n_samples)
    rows = rng.choice(n_samples, n_samples // 10, replace=False)
    y[rows] += rng.uniform(20.0, 60.0, size=rows.size)
    return X, y


def reference_rho(estimator):
    """The oracles' ``rho`` and ``psi`` at the estimator's default ``delta``."""
    delta = estimator().delta
    if estimator is HuberRegressor:
        rho, psi = huber_rho, huber_psi
    else:
        rho, psi = logcosh_rho, logcosh_psi
    return functools.partial(rho, delta=delta), functools.partial(psi, delta=delta)


@pytest.mark.parametrize("scale", ["joint", "mad", 2.0])
@pytest.mark.parametrize("estimator", [HuberRegressor, LogCoshRegressor])
def test_wide_fits_take_the_preconditioned_path(monkeypatch, estimator, scale):
    """Wide fits run conjugate gradients, and land where the Hessian-per-step loop does.

    The loop that forms a Hessian at every point (all fits below
    ``PRECONDITIONED_MIN_COEF`` coefficients) is the cross-check; the
    scipy and statsmodels oracles below are the independent ones.
    """
    assert N_FEATURES + 1 >= _preconditioned_newton.PRECONDITIONED_MIN_COEF
    assert 1000 * (N_FEATURES + 2) <= _preconditioned_newton.PRECONDITIONED_MAX_ELEMENTS
    assert 1000 * (N_FEATURES + 1) > _preconditioned_newton.PRECONDITIONED_MIN_ELEMENTS
    X, y = wide_data(seed=11)
    calls = []
    solve = _preconditioned_newton._preconditioned_cg

    def counted(*args):
        calls.append(1)
        return solve(*args)

    monkeypatch.setattr(_preconditioned_newton, "_preconditioned_cg", counted)
    fast = estimator(scale=scale).fit(X, y)
    assert calls
    monkeypatch.setattr(_preconditioned_newton, "PRECONDITIONED_MIN_COEF", 10**6)
    reference = estimator(scale=scale).fit(X, y)
    fitted = np.r_[fast.coef_, fast.intercept_, fast.scale_]
    expected = np.r_[reference.coef_, reference.intercept_, reference.scale_]
    assert_allclose(fitted, expected, rtol=1e-8, atol=1e-8 * np.max(np.abs(expected)))


@pytest.mark.parametrize(
    "design",
    ["dense", "no_intercept", "joint", "offset", "sparse", "column_subset"],
    ids=str,
)
def test_curvature_products_are_finite_differences_of_the_gradient(design):
    """``loss_gradient_curvature``'s ``H v`` is the derivative of the gradient along v.

    Log-cosh is smooth, so central differences of the analytic gradient
    agree with ``H v`` to ~1e-8; dense ``X`` (whole-matrix products, with
    and without an intercept, and with the joint scale's intercept-only
    ``log sigma``), columns offset by 1e6 (explicitly centred row blocks),
    sparse ``X`` and a second predictor on a subset of the columns (row
    blocks) all count.
    """
    X, y = wide_data(
        n_samples=120, n_features=30, offset=1e6 if design == "offset" else 0
    )
    y = (y - np.median(y)) / np.std(y)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, size=y.size)
    if design == "sparse":
        X = sp.csr_matrix(np.where(np.abs(X) > 1.0, X, 0.0))
    if design == "column_subset":
        loss = ConcomitantScaleLoss(LogCoshRho(1.0))
        predictors, l2 = [(None, True), (np.arange(4), True)], [0.3, 0.0]
    elif design == "joint":
        loss = ConcomitantScaleLoss(LogCoshRho(1.0))
        predictors, l2 = [(None, True), ((), True)], [0.3, 0.0]
    elif design == "no_intercept":
        loss = FixedScaleLoss(LogCoshRho(1.0), 0.7)
        predictors, l2 = [(None, False)], [0.3]
    else:
        loss = FixedScaleLoss(LogCoshRho(1.0), 0.7)
        predictors, l2 = [(None, True)], [0.3]
    objective = LinearObjective(loss, X, y, weights, predictors, l2)
    rng = np.random.default_rng(2)
    coef = 0.1 * rng.normal(size=objective.n_coef)
    vector = rng.normal(size=objective.n_coef)
    value, grad, product = objective.loss_gradient_curvature(coef)
    assert value == pytest.approx(objective.loss_gradient(coef)[0], rel=1e-14)
    assert_allclose(grad, objective.loss_gradient(coef)[1], rtol=1e-13, atol=1e-15)
    step = 1e-6
    difference = (
        objective.loss_gradient(coef + step * vector)[1]
        - objective.loss_gradient(coef - step * vector)[1]
    ) / (2 * step)
    hv = product(vector)
    assert_allclose(hv, difference, rtol=1e-6, atol=1e-7 * np.max(np.abs(hv)))


def test_preconditioned_cg_solves_a_perturbed_system():
    """CG preconditioned by a nearby matrix's factor solves ``H x = b`` (numpy's solve).

    The nearby matrix differs by 5 rows' outer products (what rows crossing
    Huber's threshold change): CG needs about as many iterations.
    """
    rng = np.random.default_rng(0)
    A = rng.normal(size=(400, 80))
    nearby = A.T @ A / 400
    changed = A[:5].T @ A[:5] / 400
    H = nearby - changed
    rhs = rng.normal(size=80)
    factor = _linalg.CholeskyFactor.of(nearby)
    x, iterations, solved = _preconditioned_newton._preconditioned_cg(
        lambda v: H @ v, rhs, factor, 1e-12, 50
    )
    assert solved and iterations <= 8
    assert_allclose(x, np.linalg.solve(H, rhs), rtol=1e-9, atol=1e-11)


def test_cholesky_factor_refuses_singular_matrices():
    """A rank-deficient Gram matrix has no factor; a regular one solves like numpy."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(50, 6))
    singular = np.column_stack([A, A[:, 0] + A[:, 1]])
    assert _linalg.CholeskyFactor.of(singular.T @ singular) is None
    factor = _linalg.CholeskyFactor.of(A.T @ A)
    rhs = rng.normal(size=6)
    assert_allclose(factor.solve(rhs), np.linalg.solve(A.T @ A, rhs), rtol=1e-12)


@pytest.mark.parametrize("collinear", [False, True])
def test_regularity_certificate_agrees_with_eigenvalues(collinear):
    """``_clearly_regular`` is True only when numpy's eigenvalues are all large."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(200, 40))
    if collinear:
        A[:, 5] = A[:, 3] - 2.0 * A[:, 4]
    gram = A.T @ A / 200
    eigenvalues = np.linalg.eigvalsh(gram)
    regular = bool(eigenvalues[0] > 1e-10 * eigenvalues[-1])
    assert _clearly_regular(gram) == regular == (not collinear)


def test_flat_directions_of_a_wide_collinear_design():
    """A wide design with a collinear column still has its one flat direction."""
    X, y = wide_data()
    X[:, 7] = 2.0 * X[:, 2] - X[:, 5]
    objective = LinearObjective(
        FixedScaleLoss(LogCoshRho(1.0)), X, y, np.ones(y.size), [(None, True)], [0.0]
    )
    flat = null_directions(objective)
    assert flat.shape == (objective.n_coef, 1)
    design = objective.dense_design()
    assert np.max(np.abs(design @ flat)) < 1e-10


@pytest.mark.parametrize("exact", [False, True])
def test_normal_equations_start_is_least_squares(exact):
    """The wide start is numpy's least squares; an exact fit is still found exactly.

    With noiseless targets (``exact``) the start falls back to ``lstsq``,
    whose residuals stay at rounding level (what the exact-fit shortcut of
    the M-estimators tests), and the robust fit is that interpolant.
    """
    X, y = wide_data(n_samples=200)
    if exact:
        y = X @ np.arange(X.shape[1]) / 10.0 + 3.0
    objective, _, coef = least_squares_start(
        X, y, np.ones(y.size), True, 0.0, normal_equations=True
    )
    ((w, b),) = objective.unstandardize(coef)
    design = np.column_stack([X, np.ones(y.size)])
    expected = np.linalg.lstsq(design, y, rcond=None)[0]
    assert_allclose(np.r_[w, b], expected, rtol=1e-8, atol=1e-8)
    if exact:
        residuals = objective.y - objective.raw_prediction(coef)[:, 0]
        assert np.max(np.abs(residuals)) < 1e-9
        model = HuberRegressor().fit(X, y)
        assert model.scale_ == 0.0
        assert_allclose(model.coef_, np.arange(X.shape[1]) / 10.0, atol=1e-9)


@pytest.mark.parametrize("estimator", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize("alpha", [0.0, 2.0])
def test_wide_joint_scale_fit_reaches_scipy_optimum(estimator, alpha):
    """Owen's objective at the fit is scipy's tight minimum, to 1e-10 relative."""
    X, y = wide_data()
    rho, psi = reference_rho(estimator)
    model = estimator(alpha=alpha).fit(X, y)
    assert model.n_iter_ <= model.max_iter
    weights = np.ones(y.size)
    theta = np.r_[model.coef_, model.intercept_, model.scale_]
    oracle = joint_scale_oracle(
        X, y, weights, alpha, True, rho, psi, [theta, np.r_[np.zeros(71), 1.0]]
    )
    ours = owen_objective(theta, X, y, weights, alpha, True, rho, psi)[0]
    assert ours <= oracle.fun * (1 + 1e-10)
    assert_allclose(theta, oracle.x, rtol=1e-5, atol=1e-5 * np.max(np.abs(theta)))


@pytest.mark.parametrize("estimator", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize("sample_weight", [False, True])
def test_wide_fixed_scale_fit_reaches_scipy_optimum(estimator, sample_weight):
    """The fixed-scale objective at the fit is scipy's tight minimum."""
    X, y = wide_data(seed=4)
    weights = (
        np.random.default_rng(5).uniform(0.2, 3.0, size=y.size)
        if sample_weight
        else np.ones(y.size)
    )
    rho, psi = reference_rho(estimator)
    model = estimator(scale=2.0).fit(X, y, sample_weight=weights)
    oracle = FixedScaleOracle(X, y, weights, 2.0, 0.0, rho, psi, True)
    w, b, best = oracle.solve([(model.coef_, model.intercept_), (0 * model.coef_, 0.0)])
    assert oracle.value(model.coef_, model.intercept_) <= best * (1 + 1e-11)
    assert_allclose(model.coef_, w, rtol=1e-6, atol=1e-6 * np.max(np.abs(w)))


def test_wide_mad_scale_fit_is_statsmodels_rlm():
    """``scale="mad"`` on a wide design is statsmodels' RLM fixed point."""
    X, y = wide_data(seed=6)
    model = HuberRegressor(scale="mad").fit(X, y)
    rlm = statsmodels_rlm(X, y, HuberT(1.35))
    assert_allclose(
        np.r_[model.intercept_, model.coef_], rlm.params, rtol=1e-6, atol=1e-7
    )
    assert model.scale_ == pytest.approx(rlm.scale, rel=1e-6)


def test_wide_fit_equals_repeated_rows():
    """Integer weights and repeated rows give the same wide fit."""
    X, y = wide_data(seed=8)
    counts = np.random.default_rng(9).integers(1, 3, size=y.size)
    weighted = HuberRegressor().fit(X, y, sample_weight=counts)
    repeated = HuberRegressor().fit(np.repeat(X, counts, axis=0), np.repeat(y, counts))
    assert_allclose(
        np.r_[weighted.coef_, weighted.intercept_, weighted.scale_],
        np.r_[repeated.coef_, repeated.intercept_, repeated.scale_],
        rtol=1e-7,
        atol=1e-8,
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("zero_share", [0.0, 0.5, 1.0])
def test_weighted_gram_skips_rows_without_curvature(dtype, zero_share):
    """``A' diag(d) A`` is numpy's product whatever share of ``d`` is zero.

    Rows of zero curvature (Huber's linear part) are left out of the
    product when they are many; in any dtype of ``X`` the result is the
    float64 product.
    """
    rng = np.random.default_rng(0)
    A = (10 * rng.normal(size=(60, 5))).astype(dtype)
    d = rng.uniform(0.1, 2.0, size=60)
    d[: round(zero_share * 60)] = 0.0
    expected = A.astype(np.float64).T @ (A.astype(np.float64) * d[:, None])
    gram = weighted_gram(A, A, d, False)
    assert gram.dtype == np.float64
    assert_allclose(gram, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
