"""QuantileRegressor: the smoothed loss, the exact optimum, equivariance, API.

Oracles: finite differences and the closed form for the smoothed loss;
``scipy.optimize.linprog(method="highs")`` on a linear programme written
here (not the package's) for the exact optimum; Koenker's theorems for
equivariance and calibration; scikit-learn's own QuantileRegressor for the
objective convention.
"""

import functools
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _oracles import quantile_linprog, quantile_objective
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.integrate import quad
from scipy.optimize import linprog
from scipy.special import ndtr
from sklearn.datasets import make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import QuantileRegressor as SklearnQuantileRegressor
from sklearn.metrics import make_scorer, mean_pinball_loss
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skrobust import MultiQuantileRegressor, QuantileRegressor
from skrobust._objective import LinearObjective
from skrobust._quantile_smooth import default_bandwidth
from skrobust.losses import FixedScaleLoss, SmoothedPinballRho

KERNELS = ["gaussian", "logistic"]


# -- helpers: the objective and an independent LP ------------------------------


def pinball(r, q):
    return np.where(r < 0, (q - 1.0) * r, q * r)


def objective(X, y, coef, intercept, q, sample_weight=None, alpha=0.0):
    """(1/S) sum s_i rho_q(r_i) + alpha ||w||_1, scikit-learn's objective."""
    s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight)
    r = y - X @ coef - intercept
    return float(s @ pinball(r, q)) / s.sum() + alpha * np.abs(coef).sum()


def linprog_optimum(X, y, q, sample_weight=None, alpha=0.0, fit_intercept=True):
    """Optimal value of the penalised pinball objective, by one HiGHS LP.

    Variables (w+, w-, b+, b-, u, v) >= 0 with X (w+ - w-) + b+ - b- + u - v
    = y; cost alpha on w+-, s_i q / S on u_i, s_i (1 - q) / S on v_i.
    """
    n, p = X.shape
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
    S = s.sum()
    X = np.asarray(X, dtype=float)
    ones = np.ones((n, 1))
    blocks = (
        [X, -X]
        + ([ones, -ones] if fit_intercept else [])
        + [
            np.eye(n),
            -np.eye(n),
        ]
    )
    A = np.hstack(blocks)
    n_b = 2 if fit_intercept else 0
    c = np.concatenate(
        [np.full(2 * p, alpha), np.zeros(n_b), q * s / S, (1.0 - q) * s / S]
    )
    res = linprog(c, A_eq=A, b_eq=y, method="highs")
    assert res.status == 0, res.message
    return res.fun


def assert_lp_optimal(model, X, y, q, sample_weight=None, alpha=0.0):
    Xd = X.toarray() if sp.issparse(X) else np.asarray(X)
    f_model = objective(Xd, y, model.coef_, model.intercept_, q, sample_weight, alpha)
    f_lp = linprog_optimum(Xd, y, q, sample_weight, alpha, model.fit_intercept)
    # 1e-9 relative; the absolute floor only matters for interpolating fits
    # (optimum 0), where it is rounding of the residuals.
    floor = 1e-12 * (1.0 + np.abs(y).max())
    assert abs(f_model - f_lp) <= 1e-9 * abs(f_lp) + floor, (f_model, f_lp)


def heavy_tailed_problem(n, p, seed, noise_df=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = X @ rng.normal(size=p) + 1.0 + rng.standard_t(noise_df, size=n)
    return X, y


# -- the smoothed loss ---------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("q", [0.01, 0.3, 0.5, 0.99])
@pytest.mark.parametrize("h", [0.05, 1.0, 7.0])
def test_smoothed_loss_derivatives_match_finite_differences(kernel, q, h):
    rho = SmoothedPinballRho(q, h, kernel)
    u = np.linspace(-12 * h, 12 * h, 241)
    step = 1e-6 * h
    d_value = (rho.value(u + step) - rho.value(u - step)) / (2 * step)
    d_deriv = (rho.derivative(u + step) - rho.derivative(u - step)) / (2 * step)
    assert_allclose(rho.derivative(u), d_value, atol=1e-7)
    assert_allclose(rho.second_derivative(u), d_deriv, atol=1e-6 / h)
    assert_allclose(
        rho.z_psi_minus_rho(u), u * rho.derivative(u) - rho.value(u), atol=1e-12 * h
    )
    fused = rho.value_derivatives(u)
    assert_allclose(fused[0], rho.value(u), rtol=0, atol=0)
    assert_allclose(fused[1], rho.derivative(u), rtol=0, atol=0)
    assert_allclose(fused[2], rho.second_derivative(u), rtol=0, atol=0)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("q", [0.01, 0.5, 0.99])
def test_smoothed_loss_far_rows_are_the_pinball_loss(kernel, q):
    # Where most residuals are many bandwidths from zero, value_derivatives
    # evaluates the kernel only on the others: the far ones must still give
    # the separate methods' values (to rounding; the kernel's terms there
    # are below 2e-22) and a NaN must reach every output.
    h = 0.01
    rng = np.random.default_rng(3)
    u = np.concatenate(
        [
            rng.normal(scale=h, size=20),
            rng.choice([-1.0, 1.0], 200) * h * np.exp(rng.uniform(2, 14, 200)),
            [-1e300, 1e300, -10.5 * h, 60 * h, np.nan],
        ]
    )
    rho = SmoothedPinballRho(q, h, kernel)
    value, derivative, density = rho_terms = rho.value_derivatives(u)
    assert all(np.isnan(term[-1]) for term in rho_terms)
    assert_allclose(value[:-1], rho.value(u[:-1]), rtol=1e-15, atol=0)
    assert_allclose(derivative[:-1], rho.derivative(u[:-1]), rtol=1e-15, atol=0)
    assert_allclose(
        density[:-1], rho.second_derivative(u[:-1]), rtol=1e-15, atol=1e-20 / h
    )
    far = np.abs(u[:-1]) > {"gaussian": 11, "logistic": 56}[kernel] * h
    assert np.all(density[:-1][far] == 0)
    assert np.all(derivative[:-1][far] == np.where(u[:-1][far] < 0, q - 1, q))


@pytest.mark.parametrize("kernel", KERNELS)
def test_smoothed_loss_is_the_convolution(kernel):
    # l_h(u) = E rho_q(u + h V), V with the kernel's density: by quadrature,
    # split at the kink v = -u / h.
    q, h = 0.3, 0.7
    rho = SmoothedPinballRho(q, h, kernel)

    def density(v):
        if kernel == "gaussian":
            return np.exp(-0.5 * v * v) / np.sqrt(2 * np.pi)
        e = np.exp(-abs(v))
        return e / (1 + e) ** 2

    for u in [-3.0, -0.4, 0.0, 0.2, 2.5]:
        kink = -u / h

        def integrand(v, u=u):
            return float(pinball(u + h * v, q)) * density(v)

        expected = sum(
            quad(integrand, lo, hi)[0] for lo, hi in [(-np.inf, kink), (kink, np.inf)]
        )
        assert_allclose(rho.value(np.array([u])), [expected], rtol=1e-10)


def test_gaussian_smoothed_loss_closed_form():
    q, h = 0.8, 0.3
    rho = SmoothedPinballRho(q, h)
    u = np.linspace(-4, 4, 81)
    phi = np.exp(-0.5 * (u / h) ** 2) / np.sqrt(2 * np.pi)
    assert_allclose(rho.value(u), u * (q - ndtr(-u / h)) + h * phi, atol=1e-15)
    assert_allclose(rho.derivative(u), q - ndtr(-u / h), atol=1e-15)
    # Relative precision within ten bandwidths; beyond, where the density is
    # below 2e-22 of its peak, the loss is the pinball loss exactly.
    within = np.abs(u) < 10 * h
    assert_allclose(rho.second_derivative(u)[within], phi[within] / h, rtol=1e-13)
    assert np.all(rho.second_derivative(u)[~within] == 0)
    assert np.all(phi[~within] / h < 2e-22 * phi.max() / h)


@pytest.mark.parametrize("kernel", KERNELS)
def test_smoothed_loss_bounds_and_convexity(kernel):
    q, h = 0.2, 0.5
    rho = SmoothedPinballRho(q, h, kernel)
    u = np.linspace(-10, 10, 2001)
    gap = rho.value(u) - pinball(u, q)
    g0 = 1 / np.sqrt(2 * np.pi) if kernel == "gaussian" else np.log(2.0)
    assert np.all(gap >= 0) and np.all(gap <= h * g0 + 1e-15)
    assert_allclose(gap.max(), h * g0)  # attained at u = 0
    assert np.all(rho.second_derivative(u) >= 0)
    assert np.all(np.diff(rho.derivative(u)) >= 0)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("h", [1e-300, 1e-3, 1.0, 1e300])
def test_smoothed_loss_is_finite_and_warning_free_up_to_1e300(kernel, h):
    q = 0.3
    rho = SmoothedPinballRho(q, h, kernel)
    u = np.array([-1e300, -1e200, -1.0, -1e-300, 0.0, 1e-300, 1.0, 1e200, 1e300])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        values, first, second = rho.value_derivatives(u)
        extra = rho.z_psi_minus_rho(u)
    for a in (values, first, second, extra):
        assert np.all(np.isfinite(a))
    if h < 1e200:
        # Exact linear tails far out.
        assert values[-1] == q * 1e300 and values[0] == (1 - q) * 1e300
        assert first[-1] == q and first[0] == q - 1


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("sparse", [False, True])
def test_smoothed_objective_gradient_and_hessian(kernel, sparse):
    # The chain rule through X (LinearObjective) with the smoothed loss.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    X[rng.random(X.shape) < 0.3] = 0.0
    y = rng.normal(size=60)
    s = rng.random(60)
    Xs = sp.csr_array(X) if sparse else X
    obj = LinearObjective(
        FixedScaleLoss(SmoothedPinballRho(0.7, 0.4, kernel), 1.0),
        Xs,
        y,
        s,
        [(None, True)],
        [0.0],
    )
    c = rng.normal(size=obj.n_coef) * 0.3
    value, grad, H = obj.loss_gradient_hessian(c)
    eps = 1e-6
    eye = np.eye(c.size)
    num_grad = [
        (obj.loss_gradient(c + eps * e)[0] - obj.loss_gradient(c - eps * e)[0])
        / (2 * eps)
        for e in eye
    ]
    num_hess = [
        (obj.loss_gradient(c + eps * e)[1] - obj.loss_gradient(c - eps * e)[1])
        / (2 * eps)
        for e in eye
    ]
    assert_allclose(grad, num_grad, atol=1e-8)
    assert_allclose(H, np.array(num_hess), atol=1e-7)
    # And the objective value is the weighted mean of l_h of the residuals.
    ((w, b),) = obj.unstandardize(c)
    rho = SmoothedPinballRho(0.7, 0.4, kernel)
    assert_allclose(value, s @ rho.value(y - X @ w - b) / s.sum(), rtol=1e-12)


# -- the exact solver reaches the LP optimum -----------------------------------


@st.composite
def quantile_problems(draw):
    p = draw(st.integers(1, 5))
    kind = draw(st.sampled_from(["tall", "p close to n", "duplicated rows"]))
    if kind == "p close to n":
        n = p + draw(st.integers(1, 3))
    else:
        n = draw(st.integers(p + 2, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = X @ rng.normal(size=p) + rng.standard_t(2, size=n)
    if kind == "duplicated rows":
        idx = rng.integers(0, n, size=n // 2)
        X = np.vstack([X, X[idx]])
        y = np.concatenate([y, y[idx]])
    if draw(st.booleans()):
        y = np.round(y)  # ties among the residuals
    q = draw(st.sampled_from([0.01, 0.99, 0.5]) | st.floats(0.05, 0.95))
    weights = draw(st.sampled_from([None, "integer", "continuous"]))
    if weights == "integer":
        sample_weight = rng.integers(0, 4, size=len(y)).astype(float)
        sample_weight[0] = 1.0
    elif weights == "continuous":
        sample_weight = rng.uniform(0.1, 3.0, size=len(y))
    else:
        sample_weight = None
    alpha = draw(st.sampled_from([0.0, 0.0, 1e-3, 0.05, 0.5]))
    fit_intercept = draw(st.booleans())
    return X, y, q, sample_weight, alpha, fit_intercept


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(quantile_problems())
def test_exact_solver_reaches_the_linprog_optimum(problem):
    X, y, q, sample_weight, alpha, fit_intercept = problem
    model = QuantileRegressor(
        quantile=q, alpha=alpha, fit_intercept=fit_intercept, solver="exact"
    ).fit(X, y, sample_weight=sample_weight)
    assert_lp_optimal(model, X, y, q, sample_weight, alpha)


@pytest.mark.parametrize(
    "q, weights, alpha, ties",
    [
        (0.5, None, 0.0, False),
        (0.01, None, 0.0, False),
        (0.99, "continuous", 0.0, False),
        (0.25, "integer", 0.0, True),
        (0.8, None, 0.02, False),
        (0.5, "continuous", 0.01, True),
    ],
)
def test_exact_solver_reduced_problem_reaches_the_linprog_optimum(
    q, weights, alpha, ties
):
    # n large enough that the exact solver works on a reduced problem
    # (about sqrt(n p) rows) rather than the full one.
    X, y = heavy_tailed_problem(2500, 4, seed=7)
    if ties:
        y = np.round(y)
    rng = np.random.default_rng(1)
    sample_weight = {
        None: None,
        "integer": rng.integers(0, 4, size=y.size).astype(float),
        "continuous": rng.uniform(0.1, 3.0, size=y.size),
    }[weights]
    model = QuantileRegressor(quantile=q, alpha=alpha, solver="exact")
    model.fit(X, y, sample_weight=sample_weight)
    assert_lp_optimal(model, X, y, q, sample_weight, alpha)


def test_exact_solver_is_exact_even_from_a_poor_preliminary_fit():
    # One Newton iteration and a huge bandwidth give a poor preliminary
    # estimate; the preprocessing must still end at the LP optimum (and no
    # ConvergenceWarning: the exact solution does not depend on it).
    X, y = heavy_tailed_problem(3000, 3, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = QuantileRegressor(
            quantile=0.3, solver="exact", max_iter=1, bandwidth=1.0
        ).fit(X, y)
    assert_lp_optimal(model, X, y, 0.3)


def test_objective_convention_matches_scikit_learn():
    # Same objective as sklearn's QuantileRegressor (alpha times the L1 norm
    # plus the weighted *mean* pinball loss): same optimal value.
    X, y = heavy_tailed_problem(150, 4, seed=11)
    sample_weight = np.random.default_rng(2).uniform(0.5, 2.0, size=150)
    for alpha in [0.0, 0.03]:
        ours = QuantileRegressor(quantile=0.7, alpha=alpha, solver="exact")
        ours.fit(X, y, sample_weight=sample_weight)
        theirs = SklearnQuantileRegressor(quantile=0.7, alpha=alpha, solver="highs")
        theirs.fit(X, y, sample_weight=sample_weight)
        f_ours = objective(X, y, ours.coef_, ours.intercept_, 0.7, sample_weight, alpha)
        f_theirs = objective(
            X, y, theirs.coef_, theirs.intercept_, 0.7, sample_weight, alpha
        )
        assert f_ours <= f_theirs * (1 + 1e-9)
        assert_allclose(f_ours, f_theirs, rtol=1e-7)


def test_large_l1_penalty_gives_exact_zeros():
    X, y = heavy_tailed_problem(400, 5, seed=4)
    for solver in ["smooth", "exact"]:
        model = QuantileRegressor(quantile=0.6, alpha=10.0, solver=solver).fit(X, y)
        assert np.all(model.coef_ == 0.0)
    # With w = 0 the optimal intercept is a 0.6-quantile of y.
    exact = QuantileRegressor(quantile=0.6, alpha=10.0, solver="exact").fit(X, y)
    below = np.mean(y < exact.intercept_ - 1e-12)
    at_or_below = np.mean(y <= exact.intercept_ + 1e-12)
    assert below <= 0.6 <= at_or_below


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("seed", [26, 3, 11])
def test_coefficients_zero_at_the_lp_vertex_are_exact_zeros(seed, fit_intercept):
    # Issue #11, defect 4: the dual LP's marginals carried rounding (2e-13)
    # where the LP vertex has an exact zero. Oracles: scikit-learn's HiGHS
    # fit (a primal vertex, zeros exact) and the objective of linprog's.
    from sklearn.datasets import make_regression

    X, y = make_regression(300, 20, n_informative=10, noise=1.0, random_state=seed)
    q, alpha = 0.6, 0.1
    ours = QuantileRegressor(quantile=q, alpha=alpha, fit_intercept=fit_intercept)
    ours.fit(X, y)
    theirs = SklearnQuantileRegressor(
        quantile=q, alpha=alpha, fit_intercept=fit_intercept, solver="highs"
    ).fit(X, y)
    assert_array_equal(ours.coef_ == 0.0, theirs.coef_ == 0.0)
    assert_lp_optimal(ours, X, y, q, alpha=alpha)


# -- Koenker's properties ------------------------------------------------------


@pytest.mark.parametrize("solver", ["exact", "smooth"])
@pytest.mark.parametrize("q", [0.2, 0.5, 0.9])
def test_equivariance(solver, q):
    X, y = heavy_tailed_problem(500, 3, seed=5)
    rng = np.random.default_rng(6)

    def fit(X_, y_, q_=q):
        return QuantileRegressor(quantile=q_, solver=solver).fit(X_, y_)

    base = fit(X, y)
    tol = dict(rtol=1e-6, atol=1e-6)
    # y scaled by a > 0.
    a = 37.5
    scaled = fit(X, a * y)
    assert_allclose(scaled.coef_, a * base.coef_, **tol)
    assert_allclose(scaled.intercept_, a * base.intercept_, **tol)
    # Quantile 1 - q of -y.
    mirrored = fit(X, -y, 1 - q)
    assert_allclose(mirrored.coef_, -base.coef_, **tol)
    assert_allclose(mirrored.intercept_, -base.intercept_, **tol)
    # y + X g (regression equivariance).
    g = rng.normal(size=3)
    shifted = fit(X, y + X @ g)
    assert_allclose(shifted.coef_, base.coef_ + g, **tol)
    assert_allclose(shifted.intercept_, base.intercept_, **tol)
    # X A for an invertible A (reparametrisation).
    A = rng.normal(size=(3, 3)) + 3 * np.eye(3)
    reparam = fit(X @ A, y)
    assert_allclose(reparam.coef_, np.linalg.solve(A, base.coef_), **tol)
    assert_allclose(reparam.intercept_, base.intercept_, **tol)
    if solver == "smooth":
        # The bandwidth is in units of y. (The exact solver solves the
        # whole programme of 500 rows at once, without a smoothed fit.)
        assert_allclose(scaled.bandwidth_, a * base.bandwidth_, rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    q=st.sampled_from([0.01, 0.99]) | st.floats(0.05, 0.95),
    weighted=st.booleans(),
    alpha=st.sampled_from([0.0, 0.02]),
    ties=st.booleans(),
)
def test_calibration_at_the_exact_optimum(seed, q, weighted, alpha, ties):
    # Koenker's theorem with an intercept: sum of s_i over r_i < 0 <= q S <=
    # sum of s_i over r_i <= 0 (the intercept is not penalised, so it holds
    # with L1 too). Residuals within rounding of 0 count as zeros.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, -1.0, 0.5] + rng.standard_t(3, size=n)
    if ties:
        y = np.round(y)
    s = rng.uniform(0.2, 3.0, size=n) if weighted else np.ones(n)
    model = QuantileRegressor(quantile=q, alpha=alpha, solver="exact")
    model.fit(X, y, sample_weight=s)
    r = y - model.predict(X)
    zero = 1e-9 * (1.0 + np.abs(y))
    S = s.sum()
    assert s[r < -zero].sum() <= q * S * (1 + 1e-12)
    assert q * S <= s[r <= zero].sum() * (1 + 1e-12)


# -- the smoothed solver -------------------------------------------------------


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_smoothed_fit_is_within_1e_4_of_the_optimum(q):
    X, y = heavy_tailed_problem(10_000, 20, seed=8)
    smooth = QuantileRegressor(quantile=q, solver="smooth").fit(X, y)
    exact = QuantileRegressor(quantile=q, solver="exact").fit(X, y)
    f_smooth = objective(X, y, smooth.coef_, smooth.intercept_, q)
    f_exact = objective(X, y, exact.coef_, exact.intercept_, q)
    assert f_exact <= f_smooth <= f_exact * (1 + 1e-4)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_smoothed_fit_solves_the_smoothed_problem(kernel, alpha):
    # Optimality conditions of (1/S) sum s_i l_h(r_i) + alpha ||w||_1,
    # evaluated here with the fitted bandwidth, independently of the solver.
    rng = np.random.default_rng(9)
    X = rng.normal(size=(800, 6))
    y = X @ [1.0, -1.0, 0.5, 0.0, 0.0, 0.0] + rng.standard_t(2, size=800)
    s = rng.uniform(0.5, 2.0, size=800)
    X[:, 0] *= 100.0  # badly scaled columns
    model = QuantileRegressor(quantile=0.35, alpha=alpha, kernel=kernel)
    model.set_params(solver="smooth").fit(X, y, sample_weight=s)
    rho = SmoothedPinballRho(0.35, model.bandwidth_, kernel)
    psi = rho.derivative(y - model.predict(X))
    grad_w = -(X.T @ (s * psi)) / s.sum()
    grad_b = -(s @ psi) / s.sum()
    assert abs(grad_b) < 1e-9
    # Per column, in units of its spread: |g_j + alpha sign(w_j)| for
    # nonzero w_j, and |g_j| <= alpha at zero.
    spread = X.std(axis=0)
    nonzero = model.coef_ != 0
    stationarity = grad_w + alpha * np.sign(model.coef_)
    assert np.all(np.abs(stationarity[nonzero]) / spread[nonzero] < 1e-9)
    assert np.all(np.abs(grad_w[~nonzero]) <= alpha + 1e-9 * spread[~nonzero])
    if alpha > 0:
        assert not np.all(nonzero)  # the penalty does set some to zero


def test_logistic_kernel_fit_is_close_to_the_optimum():
    X, y = heavy_tailed_problem(10_000, 5, seed=10)
    smooth = QuantileRegressor(quantile=0.7, solver="smooth", kernel="logistic")
    smooth.fit(X, y)
    exact = QuantileRegressor(quantile=0.7, solver="exact").fit(X, y)
    f_smooth = objective(X, y, smooth.coef_, smooth.intercept_, 0.7)
    f_exact = objective(X, y, exact.coef_, exact.intercept_, 0.7)
    assert f_exact <= f_smooth <= f_exact * (1 + 1e-3)


def test_default_bandwidth_rule():
    assert_allclose(
        default_bandwidth(1e4, 20), 0.25 * ((np.log(1e4) + 20) / 1e4) ** 0.4
    )
    sizes = [10, 100, 1e3, 1e4, 1e6]
    values = [default_bandwidth(n, 5) for n in sizes]
    assert np.all(np.diff(values) < 0)  # shrinks with n
    assert default_bandwidth(1, 1000) == 1.0  # capped


def test_bandwidth_parameter_is_in_units_of_the_residual_scale():
    X, y = heavy_tailed_problem(2000, 3, seed=12)
    narrow = QuantileRegressor(solver="smooth", bandwidth=0.01).fit(X, y)
    wide = QuantileRegressor(solver="smooth", bandwidth=0.5).fit(X, y)
    # sigma is the MAD of residuals of a first smoothed fit; both are near
    # the t(2) noise's normalised MAD (0.816 / 0.6745 = 1.21).
    assert 0.5 < narrow.bandwidth_ / 0.01 < 3.0
    assert 0.5 < wide.bandwidth_ / 0.5 < 3.0
    f = [objective(X, y, m.coef_, m.intercept_, 0.5) for m in (narrow, wide)]
    assert f[0] < f[1]  # less smoothing: closer to the pinball optimum


def test_convergence_warning_and_n_iter():
    X, y = heavy_tailed_problem(500, 3, seed=13)
    with pytest.warns(ConvergenceWarning):
        QuantileRegressor(solver="smooth", max_iter=1).fit(X, y)
    model = QuantileRegressor(solver="smooth").fit(X, y)
    assert model.n_iter_ >= 2 and model.solver_ == "smooth"
    exact = QuantileRegressor(solver="exact").fit(X, y)
    # 500 rows: the whole programme, one LP and no preliminary fit.
    assert exact.n_iter_ == 1 and exact.solver_ == "exact"
    X, y = heavy_tailed_problem(2000, 3, seed=13)
    exact = QuantileRegressor(solver="exact").fit(X, y)
    # Few coefficients: reduced programmes from the zero fit, no smoothed fit.
    assert exact.n_iter_ <= 3 and not hasattr(exact, "bandwidth_")
    X, y = heavy_tailed_problem(4000, 60, seed=13)
    exact = QuantileRegressor(solver="exact").fit(X, y)
    # The preliminary smoothed fit's iterations and at least one LP.
    assert exact.n_iter_ >= 2 and exact.solver_ == "exact"


# -- weights, sparse and dense, degenerate data --------------------------------


def test_default_bandwidth_counts_rows_in_units_of_the_smallest_weight():
    """``effective_rows``: the rows repeated integer weights stand for, at
    most 10 times Kish's effective size, and the same for weights of any
    common size."""
    from skrobust._quantile_smooth import effective_rows

    rng = np.random.default_rng(3)
    counts = rng.integers(0, 11, size=200).astype(float)
    counts[0] = 1.0
    assert effective_rows(np.ones(37)) == 37.0
    assert effective_rows(counts) == counts.sum()
    spread = np.r_[np.full(5, 1e10), np.full(25, 1e-10)]
    kish = spread.sum() ** 2 / (spread @ spread)
    assert effective_rows(spread) == pytest.approx(10 * kish, rel=1e-12)
    for weights in (counts, spread, rng.uniform(0.01, 1.0, size=50)):
        for factor in (1e-10, 1 / 3, 1e10):
            assert effective_rows(weights * factor) == pytest.approx(
                effective_rows(weights), rel=1e-12
            )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_fit_with_spread_weights_takes_the_iterations_of_unit_weights(seed):
    """The exact solver's preliminary smoothed fit counts the rows with
    weight for its bandwidth, not ``effective_rows``: with weights uniform
    on (0, 1) that counted up to 10 Kish sizes (7.5 n), a bandwidth 3 times
    smaller than the rows give, and the exact fit took 70-75 iterations
    where unit weights take 15-23 (5 000 x 10, q = 0.3). Its answer does
    not depend on the bandwidth; its speed does."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((5000, 10))
    y = X @ rng.standard_normal(10) + rng.standard_t(2, size=5000)
    y[rng.random(5000) < 0.1] += rng.uniform(20, 100)
    weights = rng.uniform(0, 1, 5000)
    unit = QuantileRegressor(quantile=0.3).fit(X, y)
    weighted = QuantileRegressor(quantile=0.3).fit(X, y, sample_weight=weights)
    assert weighted.n_iter_ <= 1.5 * unit.n_iter_ + 5, (weighted.n_iter_, unit.n_iter_)
    optimum = quantile_linprog(X, y, 0.3, sample_weight=weights).objective
    value = quantile_objective(
        X, y, weighted.coef_, weighted.intercept_, 0.3, sample_weight=weights
    )
    assert value == pytest.approx(optimum, rel=1e-12)


@pytest.mark.parametrize("solver", ["exact", "smooth"])
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_weights_of_1e10_against_1e_10_are_relative(solver, alpha):
    """Five rows of weight 1e10 beside 25 of 1e-10 (issue #11): the default
    bandwidth took the weights' sum, 5e10, as the number of rows, a
    bandwidth of 1e-6 residual scales on 30 rows, and fits of 10 to 220 s
    (q = 0.1), some warning and 22% above the optimum. Scikit-learn's weights
    are relative: the fit, its bandwidth included, must not change when
    every weight is multiplied by 1e10, and it must reach the LP optimum
    (``linprog``; the smoothed fit within its documented 1e-4)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3 * rng.standard_t(3, size=30)
    weights = np.full(30, 1e-10)
    weights[:5] = 1e10
    params = dict(quantile=0.5, solver=solver, alpha=alpha)
    model = QuantileRegressor(**params).fit(X, y, sample_weight=weights)
    scaled = QuantileRegressor(**params).fit(X, y, sample_weight=weights * 1e10)
    if solver == "smooth":
        # (The exact solver solves 30 rows' whole programme, unsmoothed.)
        assert scaled.bandwidth_ == pytest.approx(model.bandwidth_, rel=1e-12)
    assert_allclose(scaled.coef_, model.coef_, rtol=1e-9, atol=1e-12)
    assert scaled.intercept_ == pytest.approx(model.intercept_, rel=1e-9, abs=1e-12)
    optimum = quantile_linprog(X, y, 0.5, weights, alpha).objective
    value = quantile_objective(X, y, model.coef_, model.intercept_, 0.5, weights, alpha)
    assert value <= optimum * (1 + (1e-12 if solver == "exact" else 1e-4))


@pytest.mark.parametrize("solver", ["smooth", "exact"])
def test_integer_weights_are_repeated_rows(solver):
    X, y = heavy_tailed_problem(300, 3, seed=14)
    w = np.random.default_rng(4).integers(0, 4, size=300)
    weighted = QuantileRegressor(quantile=0.3, solver=solver)
    weighted.fit(X, y, sample_weight=w)
    repeated = QuantileRegressor(quantile=0.3, solver=solver)
    repeated.fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-7, atol=1e-9)
    assert_allclose(weighted.intercept_, repeated.intercept_, rtol=1e-7)


@pytest.mark.parametrize("solver", ["smooth", "exact"])
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_sparse_and_dense_give_the_same_fit(solver, alpha):
    X, y = heavy_tailed_problem(400, 6, seed=15)
    X[np.random.default_rng(5).random(X.shape) < 0.6] = 0.0
    dense = QuantileRegressor(quantile=0.4, alpha=alpha, solver=solver).fit(X, y)
    for fmt in (sp.csr_array, sp.csc_array):
        sparse = QuantileRegressor(quantile=0.4, alpha=alpha, solver=solver)
        sparse.fit(fmt(X), y)
        assert_allclose(sparse.coef_, dense.coef_, rtol=1e-6, atol=1e-8)
        assert_allclose(sparse.intercept_, dense.intercept_, rtol=1e-6, atol=1e-8)
    if solver == "exact":
        assert_lp_optimal(sparse, X, y, 0.4, alpha=alpha)


def test_gross_outliers_do_not_matter_beyond_their_sign():
    # Moving an observation further away on its side of the fit leaves the
    # exact fit unchanged (Koenker); here up to 1e250, with no overflow.
    X, y = heavy_tailed_problem(400, 3, seed=16)
    base = QuantileRegressor(quantile=0.3, solver="exact").fit(X, y)
    r = y - base.predict(X)
    far = y.copy()
    # The 10% largest residuals (all positive) become gross outliers.
    far[r > np.quantile(r, 0.9)] = 1e250
    far[np.argmin(r)] = -1e250  # and one negative one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for solver in ["exact", "smooth"]:
            moved = QuantileRegressor(quantile=0.3, solver=solver).fit(X, far)
            assert np.all(np.isfinite(moved.coef_))
            if solver == "exact":
                assert_allclose(moved.coef_, base.coef_, rtol=1e-9, atol=1e-9)
                assert_allclose(moved.intercept_, base.intercept_, rtol=1e-9)


def test_perfect_fit_and_constant_target():
    rng = np.random.default_rng(17)
    X = rng.normal(size=(50, 2))
    y = X @ [2.0, -1.0] + 4.0
    for solver in ["smooth", "exact"]:
        for q in [0.1, 0.5, 0.9]:
            model = QuantileRegressor(quantile=q, solver=solver).fit(X, y)
            assert_allclose(model.coef_, [2.0, -1.0], atol=1e-10)
            assert_allclose(model.intercept_, 4.0, atol=1e-10)
        const = QuantileRegressor(solver=solver).fit(X, np.full(50, 3.0))
        assert_allclose(const.coef_, 0.0, atol=1e-12)
        assert_allclose(const.intercept_, 3.0)


def test_more_features_than_samples_interpolates():
    rng = np.random.default_rng(18)
    X = rng.normal(size=(8, 20))
    y = rng.normal(size=8)
    for solver in ["smooth", "exact"]:
        model = QuantileRegressor(quantile=0.7, solver=solver).fit(X, y)
        assert_allclose(model.predict(X), y, atol=1e-9)


# -- scikit-learn integration ----------------------------------------------------


def test_pandas_input():
    X, y = heavy_tailed_problem(200, 3, seed=19)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = QuantileRegressor(quantile=0.6).fit(frame, pd.Series(y))
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    plain = QuantileRegressor(quantile=0.6).fit(X, y)
    assert_allclose(model.coef_, plain.coef_)
    assert_allclose(model.predict(frame), plain.predict(X))


def test_grid_search_over_quantile_and_alpha_in_a_pipeline():
    X, y = heavy_tailed_problem(600, 3, seed=20)
    # The 0.8-pinball loss is a proper score for the 0.8-quantile: the grid
    # search must pick quantile=0.8 over 0.5 and 0.2.
    scorer = make_scorer(mean_pinball_loss, alpha=0.8, greater_is_better=False)
    pipe = make_pipeline(StandardScaler(), QuantileRegressor())
    search = GridSearchCV(
        pipe,
        {
            "quantileregressor__quantile": [0.2, 0.5, 0.8],
            "quantileregressor__alpha": [0.0, 0.01],
        },
        scoring=scorer,
        cv=3,
    ).fit(X, y)
    assert search.best_params_["quantileregressor__quantile"] == 0.8
    best = search.best_estimator_[-1]
    assert best.quantile == 0.8 and hasattr(best, "coef_")
    refit = make_pipeline(
        StandardScaler(),
        QuantileRegressor(
            quantile=0.8, alpha=search.best_params_["quantileregressor__alpha"]
        ),
    ).fit(X, y)
    assert_allclose(search.predict(X), refit.predict(X))


def test_pickle_round_trip():
    X, y = heavy_tailed_problem(200, 3, seed=21)
    model = QuantileRegressor(quantile=0.25, solver="smooth").fit(X, y)
    clone = pickle.loads(pickle.dumps(model))
    assert_allclose(clone.predict(X), model.predict(X))
    assert clone.get_params() == model.get_params()


# -- warm start and covariances -------------------------------------------------


@pytest.mark.parametrize("solver", ["exact", "smooth"])
def test_warm_start_reaches_the_same_fit(solver):
    X, y = heavy_tailed_problem(3000, 4, seed=30)
    weights = np.random.default_rng(31).uniform(0.5, 2.0, size=3000)
    cold = QuantileRegressor(quantile=0.65, alpha=0.001, solver=solver)
    cold.fit(X, y, sample_weight=weights)
    warm = QuantileRegressor(quantile=0.5, solver=solver, warm_start=True)
    warm.fit(X, y)
    first_coef = warm.coef_.copy()
    warm.set_params(quantile=0.65, alpha=0.001).fit(X, y, sample_weight=weights)
    assert not np.allclose(warm.coef_, first_coef)
    if solver == "exact":
        assert_lp_optimal(warm, X, y, 0.65, weights, alpha=0.001)
        assert_allclose(warm.coef_, cold.coef_, rtol=1e-9, atol=1e-12)
    else:
        # The bandwidth is relative to the residual scale of the start (the
        # previous fit), not of a first smoothed fit: a slightly different
        # smoothed problem, as close to the optimum as the cold one.
        f_lp = linprog_optimum(X, y, 0.65, weights, alpha=0.001)
        for model in (warm, cold):
            f = objective(X, y, model.coef_, model.intercept_, 0.65, weights, 0.001)
            assert f_lp <= f <= f_lp * (1 + 1e-4)
    # A start at the optimum: the exact solver needs one LP, no smoothed fit.
    again = warm.fit(X, y, sample_weight=weights)
    if solver == "exact":
        assert again.n_iter_ == 1
    # A previous fit of another width is not a start.
    warm.fit(X[:, :3], y)
    assert warm.coef_.shape == (3,)
    if solver == "exact":
        assert_lp_optimal(warm, X[:, :3], y, 0.65, alpha=0.001)


def test_warm_start_false_ignores_the_previous_fit():
    # (60 features: beyond the exact solver's start from the zero fit.)
    X, y = heavy_tailed_problem(4000, 60, seed=32)
    model = QuantileRegressor(quantile=0.3).fit(X, y)
    assert model.fit(X, y).n_iter_ > 1  # the smoothed preliminary fit again


@pytest.mark.parametrize("cov_type", ["iid", "nid", "ker"])
def test_covariance_is_summary_rq_of_the_fit(cov_type):
    # The estimator's covariance is that of skrobust._cov_quantile (checked
    # against R's summary.rq in its own tests) at the estimator's solution,
    # with its default, cold, exact refits for "nid".
    from skrobust._cov_quantile import quantile_covariance

    X, y = heavy_tailed_problem(400, 3, seed=33)
    weights = np.random.default_rng(34).uniform(0.5, 2.0, size=400)
    model = QuantileRegressor(quantile=0.3, cov_type=cov_type)
    model.fit(X, y, sample_weight=weights)
    expected = quantile_covariance(
        X,
        y,
        model.coef_,
        model.intercept_,
        0.3,
        sample_weight=weights,
        se=cov_type,
    )
    assert_allclose(model.cov_, expected, rtol=1e-8)
    se = np.sqrt(np.diag(expected))
    assert_allclose(model.intercept_se_, se[0], rtol=1e-8)
    assert_allclose(model.coef_se_, se[1:], rtol=1e-8)
    # Student's t with n - p degrees of freedom (R's summary.rq).
    from scipy.stats import t as student_t

    half = student_t.ppf(0.95, 400 - 4) * se
    estimates = np.r_[model.intercept_, model.coef_]
    assert_allclose(model.conf_int(0.9), np.c_[estimates - half, estimates + half])


def test_bootstrap_covariance_is_that_of_weighted_refits():
    from skrobust._cov_quantile import quantile_bootstrap_covariance

    X, y = heavy_tailed_problem(300, 2, seed=35)
    model = QuantileRegressor(
        quantile=0.6, cov_type="bootstrap", n_bootstrap=20, random_state=3
    ).fit(X, y)

    def cold_fit(weights):
        fit = QuantileRegressor(quantile=0.6).fit(X, y, sample_weight=weights)
        return np.r_[fit.intercept_, fit.coef_]

    expected = quantile_bootstrap_covariance(
        cold_fit, X, y, None, n_bootstrap=20, random_state=3
    )
    assert_allclose(model.cov_, expected, rtol=1e-7)
    no_intercept = QuantileRegressor(
        fit_intercept=False, cov_type="bootstrap", n_bootstrap=5, random_state=0
    ).fit(X, y)
    assert no_intercept.cov_.shape == (2, 2)
    assert not hasattr(no_intercept, "intercept_se_")


def test_no_covariance_without_cov_type():
    X, y = heavy_tailed_problem(200, 2, seed=36)
    model = QuantileRegressor(cov_type="iid").fit(X, y)
    assert hasattr(model, "cov_")
    model.set_params(cov_type=None).fit(X, y)
    assert not hasattr(model, "cov_")
    with pytest.raises(ValueError, match="cov_type"):
        model.summary()


@parametrize_with_checks(
    [
        QuantileRegressor(solver="smooth"),
        QuantileRegressor(quantile=0.8),
        QuantileRegressor(alpha=0.1),
        QuantileRegressor(quantile=0.2, solver="smooth", alpha=0.1, kernel="logistic"),
        QuantileRegressor(warm_start=True),
    ]
)
def test_sklearn_compatible_variants(estimator, check):
    # tests/test_common.py checks the defaults; these are the other solver,
    # the L1 penalty, the logistic kernel and quantiles other than 0.5.
    check(estimator)


@pytest.mark.parametrize("max_iter", [1, 2, 5])
def test_n_iter_never_exceeds_max_iter(max_iter):
    X, y = make_regression(50, 20, noise=0.05, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        smooth = QuantileRegressor(solver="smooth", max_iter=max_iter).fit(X, y)
        levels = MultiQuantileRegressor(3, solver="smooth", max_iter=max_iter)
        levels.fit(X, y)
    assert 1 <= smooth.n_iter_ <= max_iter
    assert np.all(levels.n_iter_ <= max_iter)


@functools.cache
def _gapped_quantile_problem(n_samples, n_features, quantile):
    """Data whose upper quantiles sit in a gap, and their LP optimum."""
    X, y = make_regression(n_samples, n_features, noise=1.0, random_state=3)
    y[::7] += 30.0
    return X, y, quantile_linprog(X, y, quantile).objective


@pytest.mark.parametrize("max_iter", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize(
    # The last is large enough for a preliminary fit on a strided subsample.
    "n_samples, n_features, quantile",
    [(50, 5, 0.5), (3000, 5, 0.9), (8000, 1, 0.3)],
)
def test_exact_solver_counts_its_linear_programmes_within_max_iter(
    max_iter, n_samples, n_features, quantile
):
    """The smoothed iterations and the LPs together stay within max_iter.

    The answer stays the LP optimum (scipy's HiGHS on the whole programme),
    and no ConvergenceWarning is raised: the LP's certificate makes the fit
    exact however short its preliminary fit was. (It used to add its
    programmes on top of a preliminary fit given all of max_iter: n_iter_
    of 2 for max_iter=1.)
    """
    X, y, optimum = _gapped_quantile_problem(n_samples, n_features, quantile)
    model = QuantileRegressor(quantile=quantile, solver="exact", max_iter=max_iter)
    model.fit(X, y)
    assert 1 <= model.n_iter_ <= max_iter
    objective = quantile_objective(X, y, model.coef_, model.intercept_, quantile)
    assert objective <= optimum * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("solver", ["exact", "smooth"])
def test_noise_scale_outliers_and_weights(solver):
    rng = np.random.default_rng(21)
    n = 20_000
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, 2.0, 3.0] + rng.normal(size=n)
    gross = rng.random(n) < 0.1
    y[gross] += rng.uniform(10, 30, gross.sum()) * rng.choice([-1, 1], gross.sum())
    model = QuantileRegressor(quantile=0.3, solver=solver).fit(X, y)
    r = y - model.predict(X)
    centred = np.abs(r - np.median(r))
    noise = np.median(centred) / 0.6744897501960817
    assert model.noise_scale_ == pytest.approx(noise, rel=1e-9)
    assert np.array_equal(model.outliers_, centred > 2.5 * noise)
    assert model.outliers_[~gross].mean() <= 0.05
    assert model.outliers_[gross].mean() >= 0.99
    side = np.where(r > 0, 0.3, 0.7)
    if solver == "exact":
        # No smoothed fit (3 features: from the zero fit): the documented
        # floor, the default rule's bandwidth times the noise scale.
        assert not hasattr(model, "bandwidth_")
        rule = 0.25 * ((np.log(n) + 3) / n) ** 0.4
        floor = rule * model.noise_scale_
    else:
        floor = model.bandwidth_
    expected = side / np.maximum(np.abs(r), floor)
    # The rows an exact fit interpolates have residuals of rounding (0.0
    # here, 1e-15 in the fit's own units): their side is either.
    tied = np.abs(r) <= 1e-12 * np.abs(y).max()
    assert tied.sum() <= (X.shape[1] + 1 if solver == "exact" else 0)
    assert_allclose(model.weights_[~tied], expected[~tied], rtol=1e-9)
    either = np.array([0.3, 0.7]) / floor
    assert np.all(np.isclose(model.weights_[tied, None], either, rtol=1e-9).any(1))


@pytest.mark.parametrize("n_samples", [300, 30_000])
@pytest.mark.parametrize("factor", [1e20, 1e150, 1e300, 1e-300])
def test_weights_of_any_size_fit_without_warnings(n_samples, factor):
    """Weights summing to 1e150 made the default bandwidth 1e-40 of the
    residual scale: Newton's steps fell below rounding and the line search
    divided by zero (a ZeroDivisionError, also in the exact solver's
    preliminary fit), and from 1e20 the smoothed fit stopped with a
    ConvergenceWarning. The exact optimum does not depend on a common
    factor of the weights; the smoothed fit (whose bandwidth shrinks with
    the total weight, down to its floor of 1e-6) stays within its own
    approximation of it."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_samples, 3))
    y = X @ [1.0, 2.0, 3.0] + rng.standard_t(3, n_samples)
    w = rng.uniform(0.5, 2.0, n_samples)
    if n_samples <= 1000:
        f_ref = linprog_optimum(X, y, 0.3, sample_weight=w)
    else:  # (linprog's dense LP would not fit; exactness is tested above)
        reference = QuantileRegressor(solver="exact", quantile=0.3)
        reference.fit(X, y, sample_weight=w)
        f_ref = objective(X, y, reference.coef_, reference.intercept_, 0.3, w)
    for solver, rtol in (("exact", 1e-9), ("smooth", 1e-5)):
        model = QuantileRegressor(solver=solver, quantile=0.3)
        model.fit(X, y, sample_weight=w * factor)
        f = objective(X, y, model.coef_, model.intercept_, 0.3, w)
        assert f_ref * (1 - 1e-9) <= f <= f_ref * (1 + rtol)


@pytest.mark.parametrize("kernel", ["gaussian", "logistic"])
@pytest.mark.parametrize("far_share", [0.9, 0.1])
def test_smoothed_pinball_of_any_shape_is_its_flat_evaluation(kernel, far_share):
    """A 2-D (or 0-d) argument gives the 1-D evaluation's numbers, reshaped.

    Where most entries are far from zero the kernel's terms are added on the
    near ones only, by flat indices: on a 2-D array those once indexed its
    rows (an IndexError, or the terms on the wrong entries).
    """
    rng = np.random.default_rng(7)
    u = rng.normal(size=(40, 3)) * 0.05
    far = rng.random(u.shape) < far_share
    u[far] = rng.choice([-1.0, 1.0], size=far.sum()) * 1e3
    rho = SmoothedPinballRho(0.3, 0.1, kernel=kernel)
    flat = rho.value_derivatives(u.ravel())
    for got, want in zip(rho.value_derivatives(u), flat, strict=True):
        assert got.shape == u.shape
        np.testing.assert_array_equal(got, want.reshape(u.shape))
    for method, want in zip(
        (rho.value, rho.derivative, rho.second_derivative), flat, strict=True
    ):
        np.testing.assert_array_equal(method(u), want.reshape(u.shape))
    value, derivative, curvature = rho.value_derivatives(u[3, 1])
    assert value.shape == () and value == flat[0][10]
    assert derivative == flat[1][10] and curvature == flat[2][10]
    # A scalar too (its kernel terms were once formed in place on a numpy
    # scalar: TypeError).
    for point in (float(u[3, 1]), u[3, 1], np.asarray(u[3, 1])):
        assert rho.value(point) == flat[0][10]
        assert rho.derivative(point) == flat[1][10]
        assert rho.second_derivative(point) == flat[2][10]
