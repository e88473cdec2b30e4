"""Estimator-level tests of HuberRegressor and LogCoshRegressor.

The properties the two share are tested here, parametrised over both
classes; log-cosh specific ones are in ``test_logcosh.py``. Every result is
checked against something independent of skrobust's code path:

* the objectives, written out in this file and minimised tightly with
  :func:`scipy.optimize.minimize` (Owen's concomitant-scale objective for
  ``scale="joint"``, the fixed-scale objective for a float ``scale``,
  smooth-L1 for Huber with ``scale=1.0``);
* scikit-learn's ``HuberRegressor`` (the same joint objective, less tightly
  solved) and ``LinearRegression``;
* statsmodels' ``RLM`` with ``HuberT`` for ``scale="mad"``;
* exact invariances (weights as repeated rows, equivariance in ``y`` and
  ``X``, permutations, sparse input) that hold for the true minimiser
  whatever the solver does, so they compare two fits to solver precision.
"""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import statsmodels.api as sm
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import minimize
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import HuberRegressor as SklearnHuberRegressor
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skrobust import HuberRegressor, LogCoshRegressor

ESTIMATORS = [HuberRegressor, LogCoshRegressor]
# "joint", "mad" and a fixed scale in the units of y (the noise has sd 1).
SCALES = ["joint", "mad", 1.5]
# Two fits of the same minimiser (solvers, sparse/dense, equivalent data)
# agree to the precision the solvers reach, well inside this.
SOLVER_RTOL = 1e-7
TRUE_COEF = np.array([1.5, -0.3, 8.0])
TRUE_INTERCEPT = 2.0
MAD_NORMAL_CONSTANT = 0.6744897501960817


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
    """``rho`` and ``psi = rho'`` of each estimator, written independently.

    Huber: ``z^2/2`` inside ``[-delta, delta]``, ``delta |z| - delta^2/2``
    outside. Log-cosh: ``delta^2 log cosh(z / delta)`` through
    ``logaddexp``, which cannot overflow.
    """
    if estimator_class is HuberRegressor:

        def rho(z):
            return np.where(
                np.abs(z) <= delta, 0.5 * z * z, delta * np.abs(z) - 0.5 * delta**2
            )

        def psi(z):
            return np.clip(z, -delta, delta)

    else:

        def rho(z):
            x = z / delta
            return delta**2 * (np.logaddexp(x, -x) - np.log(2.0))

        def psi(z):
            return delta * np.tanh(z / delta)

    return rho, psi


def tight_minimize(fun_and_grad, x0, bounds=None):
    """L-BFGS-B run to rounding level: the test-side oracle.

    BLAS is limited to one thread: L-BFGS-B's tiny matrix products are
    otherwise dominated by thread wake-ups on a busy machine.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        result = minimize(
            fun_and_grad,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={
                "gtol": 1e-12,
                "ftol": 0.0,
                "maxiter": 100_000,
                "maxfun": 100_000,
                "maxcor": 50,
                "maxls": 100,
            },
        )
    return result


def split_params(theta, n_features, fit_intercept):
    w = theta[:n_features]
    b = theta[n_features] if fit_intercept else 0.0
    return w, b


def owen_objective(theta, X, y, sample_weight, delta, alpha, fit_intercept, rho, psi):
    r"""Owen's concomitant objective and its gradient in ``(w, b, sigma)``.

    .. math::

        F = \sum_i s_i \sigma (1 + 2\rho(r_i / \sigma)) + \alpha \lVert w\rVert^2

    which for Huber's ``rho`` is scikit-learn's ``HuberRegressor`` objective
    ``sum_i (sigma + sigma H_eps(r_i / sigma)) + alpha ||w||^2`` with
    ``H_eps(z) = z^2`` for ``|z| <= eps`` and ``2 eps |z| - eps^2`` beyond
    (unit weights; scikit-learn writes the first term as ``n sigma`` also
    with weights).
    """
    n_features = X.shape[1]
    w, b = split_params(theta, n_features, fit_intercept)
    sigma = theta[-1]
    z = (y - X @ w - b) / sigma
    two_rho, two_psi = 2.0 * rho(z), 2.0 * psi(z)
    value = sample_weight @ (sigma + sigma * two_rho) + alpha * w @ w
    grad_w = -(sample_weight * two_psi) @ X + 2.0 * alpha * w
    grad_b = [-(sample_weight @ two_psi)] if fit_intercept else []
    grad_sigma = sample_weight @ (1.0 + two_rho - z * two_psi)
    return value, np.concatenate([grad_w, grad_b, [grad_sigma]])


def huber_H(z, eps):
    """scikit-learn's ``H_epsilon``, exactly as in its documentation."""
    a = np.abs(z)
    return np.where(a <= eps, z * z, 2.0 * eps * a - eps**2)


def sklearn_huber_objective(w, b, sigma, X, y, eps, alpha):
    """``sum_i (sigma + sigma H_eps((y_i - x_i w - b) / sigma)) + alpha ||w||^2``."""
    z = (y - X @ w - b) / sigma
    return np.sum(sigma + sigma * huber_H(z, eps)) + alpha * w @ w


def joint_params(model, fit_intercept):
    return np.r_[model.coef_, [model.intercept_] if fit_intercept else [], model.scale_]


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("alpha", [0.0, 0.5, 50.0])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_joint_scale_minimises_owen_objective(
    estimator_class, alpha, fit_intercept, weighted
):
    X, y, _ = make_data()
    rng = np.random.default_rng(1)
    sample_weight = rng.uniform(0.2, 3.0, size=len(y)) if weighted else np.ones(len(y))
    model = estimator_class(alpha=alpha, fit_intercept=fit_intercept)
    model.fit(X, y, sample_weight=sample_weight)
    rho, psi = reference_rho(estimator_class, model.delta)
    args = (X, y, sample_weight, model.delta, alpha, fit_intercept, rho, psi)
    theta = joint_params(model, fit_intercept)
    value = owen_objective(theta, X, y, *args[2:])[0]

    # Oracle starts: skrobust's solution perturbed, and scikit-learn's
    # Huber solution (a different solver's answer to a nearby problem).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SklearnHuberRegressor(
            epsilon=1.35, alpha=alpha, fit_intercept=fit_intercept, max_iter=10_000
        ).fit(X, y, sample_weight=sample_weight)
    starts = [
        theta * (1.0 + 0.05 * rng.normal(size=theta.size)),
        joint_params(sk, fit_intercept),
    ]
    bounds = [(None, None)] * (theta.size - 1) + [(1e-12, None)]
    oracles = [
        tight_minimize(lambda t: owen_objective(t, *args), start, bounds)
        for start in starts
    ]
    best = min(oracles, key=lambda result: result.fun)
    # No oracle finds a lower objective (to rounding), and the minimiser is
    # the same (the objective is strictly convex here).
    assert value <= best.fun * (1.0 + 1e-12)
    assert_allclose(theta, best.x, rtol=1e-6, atol=1e-6 * np.max(np.abs(theta)))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 50.0])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_joint_huber_objective_not_above_sklearn(alpha, fit_intercept):
    """Same objective as scikit-learn's HuberRegressor, at least as well solved."""
    X, y, _ = make_data()
    eps = 1.35
    model = HuberRegressor(eps, alpha=alpha, fit_intercept=fit_intercept).fit(X, y)
    with warnings.catch_warnings():
        # scikit-learn's lbfgs may stop at max_iter; its point is still valid.
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SklearnHuberRegressor(
            epsilon=eps,
            alpha=alpha,
            fit_intercept=fit_intercept,
            max_iter=10_000,
            tol=1e-12,
        ).fit(X, y)
    ours = sklearn_huber_objective(
        model.coef_, model.intercept_, model.scale_, X, y, eps, alpha
    )
    theirs = sklearn_huber_objective(
        sk.coef_, sk.intercept_, sk.scale_, X, y, eps, alpha
    )
    assert ours <= theirs * (1.0 + 1e-12)
    # And it is the same problem: scikit-learn's answer is close.
    assert_allclose(model.coef_, sk.coef_, rtol=1e-3)
    assert model.scale_ == pytest.approx(sk.scale_, rel=1e-3)


def mad_about_zero(residuals):
    return np.median(np.abs(residuals)) / MAD_NORMAL_CONSTANT


@pytest.mark.parametrize("outlier_fraction", [0.1, 0.2])
def test_mad_scale_matches_statsmodels_rlm_huber(outlier_fraction):
    X, y, _ = make_data(outlier_fraction=outlier_fraction)
    delta = 1.35
    model = HuberRegressor(delta, scale="mad").fit(X, y)
    rlm = sm.RLM(
        y, np.column_stack([np.ones(len(y)), X]), M=sm.robust.norms.HuberT(t=delta)
    ).fit(tol=1e-12, maxiter=1000, conv="coefs")
    assert_allclose(np.r_[model.intercept_, model.coef_], rlm.params, rtol=1e-6)
    assert model.scale_ == pytest.approx(rlm.scale, rel=1e-6)


def test_mad_scale_fixed_point_precision_follows_tol():
    """With a tight ``tol`` the MAD fixed point is reached tightly.

    statsmodels' IRLS at ``tol=1e-14`` (criterion on the coefficients) is
    the reference; on this data it agrees with an exact active-set Huber
    solve alternated with the MAD update to ~1e-14. 30% outliers make the
    fixed-point iteration contract slowly (factor ~0.7), the case where
    stopping on a small scale change, or an inner solve that ends at the
    rounding level of the objective without reaching ``tol``, leaves the
    estimate short of the fixed point (it was ~7e-8 short before the Newton
    polish steps and the secant update).
    """
    X, y, _ = make_data(outlier_fraction=0.3)
    delta = 1.35
    model = HuberRegressor(delta, scale="mad", tol=1e-12).fit(X, y)
    rlm = sm.RLM(
        y, np.column_stack([np.ones(len(y)), X]), M=sm.robust.norms.HuberT(t=delta)
    ).fit(tol=1e-14, maxiter=5000, conv="coefs")
    assert_allclose(np.r_[model.intercept_, model.coef_], rlm.params, rtol=1e-9)
    assert model.scale_ == pytest.approx(rlm.scale, rel=1e-9)


class FixedScaleOracle:
    r"""The fixed-scale objective, minimised tightly by scipy.

    .. math::

        F(w, b) = \frac{1}{S}\Big(\sum_i s_i \sigma^2 \rho(r_i / \sigma)
                  + \alpha \lVert w \rVert^2\Big), \qquad S = \sum_i s_i,

    optimised over coefficients ``u`` of the test's own standardised columns
    (``(X - mean) / sd``, centred only with an intercept), which keeps
    L-BFGS well conditioned; :meth:`value` takes ``(w, b)`` in original units.
    """

    def __init__(self, X, y, sample_weight, sigma, alpha, rho, psi, fit_intercept):
        self.y, self.sample_weight = y, sample_weight
        self.sigma, self.alpha, self.rho, self.psi = sigma, alpha, rho, psi
        self.fit_intercept = fit_intercept
        self.mean = X.mean(axis=0) if fit_intercept else np.zeros(X.shape[1])
        self.sd = X.std(axis=0)
        self.design = (X - self.mean) / self.sd
        if fit_intercept:
            self.design = np.column_stack([self.design, np.ones(len(y))])
        self.penalised = np.r_[1.0 / self.sd, [0.0] if fit_intercept else []]

    def fun(self, theta):
        r = self.y - self.design @ theta
        z = r / self.sigma
        penalty_coef = theta * self.penalised  # w, and 0 for the intercept
        total = self.sample_weight.sum()
        value = self.sample_weight @ (self.sigma**2 * self.rho(z))
        value += self.alpha * penalty_coef @ penalty_coef
        grad = -(self.sample_weight * self.sigma * self.psi(z)) @ self.design
        grad += 2.0 * self.alpha * penalty_coef * self.penalised
        return value / total, grad / total

    def to_theta(self, w, b):
        u = w * self.sd
        return np.r_[u, b + self.mean @ w] if self.fit_intercept else u

    def to_original(self, theta):
        w = theta[: self.sd.size] / self.sd
        b = theta[-1] - self.mean @ w if self.fit_intercept else 0.0
        return w, b

    def value(self, w, b):
        return self.fun(self.to_theta(w, b))[0]

    def solve(self, starts):
        """Best ``(w, b, value)`` over tight L-BFGS runs from ``(w, b)`` starts."""
        results = [tight_minimize(self.fun, self.to_theta(w, b)) for w, b in starts]
        best = min(results, key=lambda result: result.fun)
        return (*self.to_original(best.x), best.fun)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("alpha", [0.0, 3.0])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_fixed_scale_minimises_fixed_scale_objective(
    estimator_class, alpha, fit_intercept, weighted
):
    X, y, _ = make_data()
    rng = np.random.default_rng(2)
    sample_weight = rng.uniform(0.2, 3.0, size=len(y)) if weighted else np.ones(len(y))
    sigma = 1.5
    model = estimator_class(scale=sigma, alpha=alpha, fit_intercept=fit_intercept)
    model.fit(X, y, sample_weight=sample_weight)
    assert model.scale_ == sigma
    rho, psi = reference_rho(estimator_class, model.delta)
    ols = LinearRegression(fit_intercept=fit_intercept).fit(X, y)
    starts = [
        (model.coef_ * (1.0 + 0.05 * rng.normal(size=3)), model.intercept_ + 0.1),
        (ols.coef_, ols.intercept_),
    ]
    oracle = FixedScaleOracle(
        X, y, sample_weight, sigma, alpha, rho, psi, fit_intercept
    )
    w, b, best_value = oracle.solve(starts)
    ours = oracle.value(model.coef_, model.intercept_)
    assert ours <= best_value * (1.0 + 1e-12)
    assert_allclose(model.coef_, w, rtol=1e-6, atol=1e-6 * np.max(np.abs(w)))
    assert model.intercept_ == pytest.approx(b, rel=1e-6, abs=1e-6 * np.max(np.abs(w)))


def smooth_l1(r, beta):
    """PyTorch's ``smooth_l1_loss`` elementwise, and its derivative in ``r``."""
    a = np.abs(r)
    value = np.where(a < beta, 0.5 * r * r / beta, a - 0.5 * beta)
    return value, np.where(a < beta, r / beta, np.sign(r))


@pytest.mark.parametrize("delta", [0.5, 1.35, 4.0])
def test_huber_unit_scale_is_smooth_l1_minimiser(delta):
    """``scale=1.0``: the Huber loss with threshold ``delta`` in units of ``y``.

    Smooth-L1 with ``beta = delta`` is that loss divided by ``beta``, so it
    has the same minimiser.
    """
    X, y, _ = make_data()
    model = HuberRegressor(delta, scale=1.0).fit(X, y)
    A = np.column_stack([X - X.mean(axis=0), np.ones(len(y))]) / np.r_[X.std(0), 1]

    def fun(theta):
        value, d = smooth_l1(y - A @ theta, delta)
        return value.mean(), -(d @ A) / len(y)

    ols = LinearRegression().fit(X, y)
    start = np.r_[ols.coef_ * X.std(0), ols.intercept_ + X.mean(0) @ ols.coef_]
    result = tight_minimize(fun, start)
    w = result.x[:3] / X.std(0)
    b = result.x[3] - X.mean(0) @ w
    assert_allclose(model.coef_, w, rtol=1e-6)
    assert model.intercept_ == pytest.approx(b, rel=1e-6)
    ours = np.r_[model.coef_ * X.std(0), model.intercept_ + X.mean(0) @ model.coef_]
    assert fun(ours)[0] <= result.fun * (1.0 + 1e-12)


# --- properties shared by both estimators and every scale option -------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_huge_delta_is_least_squares(estimator_class, scale):
    X, y, _ = make_data()
    model = estimator_class(1e6, scale=scale).fit(X, y)
    ols = LinearRegression().fit(X, y)
    assert_allclose(model.coef_, ols.coef_, rtol=1e-8)
    assert model.intercept_ == pytest.approx(ols.intercept_, rel=1e-8)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("sparse_format", [None, "csr"])
def test_integer_weights_equal_repeated_rows(estimator_class, scale, sparse_format):
    X, y, _ = make_data()
    repeats = np.random.default_rng(3).integers(0, 4, size=len(y))
    X_fit = sp.csr_array(X) if sparse_format else X
    weighted = estimator_class(scale=scale).fit(X_fit, y, sample_weight=repeats)
    X_rep = np.repeat(X, repeats, axis=0)
    X_rep = sp.csr_array(X_rep) if sparse_format else X_rep
    repeated = estimator_class(scale=scale).fit(X_rep, np.repeat(y, repeats))
    assert_same_fit(weighted, repeated)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_zero_weights_equal_removed_rows(estimator_class, scale):
    X, y, _ = make_data()
    keep = np.random.default_rng(4).random(len(y)) < 0.7
    weighted = estimator_class(scale=scale).fit(X, y, sample_weight=keep.astype(float))
    removed = estimator_class(scale=scale).fit(X[keep], y[keep])
    assert_same_fit(weighted, removed)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize(
    "sparse_container", [sp.csr_array, sp.csc_array, sp.csr_matrix]
)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_equals_dense(estimator_class, scale, sparse_container, fit_intercept):
    X, y, _ = make_data()
    X[np.random.default_rng(5).random(X.shape) < 0.4] = 0.0
    dense = estimator_class(scale=scale, fit_intercept=fit_intercept).fit(X, y)
    sparse = estimator_class(scale=scale, fit_intercept=fit_intercept)
    sparse.fit(sparse_container(X), y)
    assert_same_fit(sparse, dense)
    assert_allclose(sparse.predict(sparse_container(X)), dense.predict(X), rtol=1e-7)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("factor", [1e-6, 3.0, 1e6, -2.0])
def test_y_scale_equivariance(estimator_class, scale, factor):
    """``y * c`` gives ``coef * c``, ``intercept * c``, ``scale_ * |c|``.

    A fixed scale is in the units of ``y``, so it is scaled along.
    """
    X, y, _ = make_data()
    model = estimator_class(scale=scale).fit(X, y)
    scaled_param = scale if isinstance(scale, str) else scale * abs(factor)
    scaled = estimator_class(scale=scaled_param).fit(X, y * factor)
    expected = np.r_[model.coef_ * factor, model.intercept_ * factor]
    assert_allclose(
        np.r_[scaled.coef_, scaled.intercept_],
        expected,
        rtol=SOLVER_RTOL,
        atol=SOLVER_RTOL * np.max(np.abs(expected)),
    )
    assert scaled.scale_ == pytest.approx(model.scale_ * abs(factor), rel=SOLVER_RTOL)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_shift_equivariance(estimator_class, scale):
    """``y + X g + a`` gives ``coef + g`` and ``intercept + a``, same scale."""
    X, y, _ = make_data()
    g, a = np.array([-4.0, 0.7, 30.0]), -25.0
    model = estimator_class(scale=scale).fit(X, y)
    shifted = estimator_class(scale=scale).fit(X, y + X @ g + a)
    expected = np.r_[model.coef_ + g, model.intercept_ + a, model.scale_]
    assert_allclose(
        fitted_vector(shifted),
        expected,
        rtol=SOLVER_RTOL,
        atol=SOLVER_RTOL * np.max(np.abs(expected)),
    )


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_row_and_column_permutations(estimator_class, scale):
    X, y, _ = make_data()
    rng = np.random.default_rng(6)
    model = estimator_class(scale=scale).fit(X, y)
    rows = rng.permutation(len(y))
    assert_same_fit(estimator_class(scale=scale).fit(X[rows], y[rows]), model)
    cols = np.array([2, 0, 1])
    permuted = estimator_class(scale=scale).fit(X[:, cols], y)
    assert_allclose(permuted.coef_, model.coef_[cols], rtol=SOLVER_RTOL)
    assert permuted.intercept_ == pytest.approx(model.intercept_, rel=SOLVER_RTOL)
    assert permuted.scale_ == pytest.approx(model.scale_, rel=SOLVER_RTOL)


def make_outlier_data(outlier_fraction):
    """400 samples, a fraction of them shifted up by 50 to 100 noise sds."""
    return make_data(
        n_samples=400, outlier_fraction=outlier_fraction, outlier_size=(50.0, 100.0)
    )


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize(
    "scale, outlier_fraction",
    [
        (scale, fraction)
        for scale in [*SCALES, 1.0]
        for fraction in [0.1, 0.2, 0.3]
        # Not "mad" at 30%: see test_mad_scale_at_30_percent_matches_statsmodels.
        if not (scale == "mad" and fraction == 0.3)
    ],
)
def test_robust_to_one_sided_outliers(estimator_class, scale, outlier_fraction):
    """Coefficient error (in units of each column's spread) 10x below OLS's."""
    X, y, outlier_rows = make_outlier_data(outlier_fraction)
    model = estimator_class(scale=scale).fit(X, y)
    ols = LinearRegression().fit(X, y)
    spread = X.std(axis=0)
    robust_error = np.linalg.norm((model.coef_ - TRUE_COEF) * spread)
    ols_error = np.linalg.norm((ols.coef_ - TRUE_COEF) * spread)
    assert robust_error < 0.1 * ols_error
    # Every planted outlier is flagged.
    assert model.outliers_[outlier_rows].all()


def test_mad_scale_at_30_percent_matches_statsmodels():
    """The MAD-scale estimate itself breaks down at 30% one-sided outliers.

    With 30% of ``y`` shifted up by 50-100 noise sds, the MAD about zero of
    the residuals includes the upward bias of the fit, and the only fixed
    point of ``sigma = MAD(r(sigma))`` has ``sigma`` ~25 (noise sd 1), close
    to least squares: statsmodels' RLM reaches the same point even when
    started from the true coefficients. So test_robust_to_one_sided_outliers
    leaves this case out; what is checked here is that skrobust computes
    that same estimate.
    """
    X, y, _ = make_outlier_data(0.3)
    design = np.column_stack([np.ones(len(y)), X])
    model = HuberRegressor(scale="mad").fit(X, y)
    for start in [None, np.r_[TRUE_INTERCEPT, TRUE_COEF]]:
        rlm = sm.RLM(y, design, M=sm.robust.norms.HuberT(t=1.35)).fit(
            tol=1e-12, maxiter=1000, conv="coefs", start_params=start
        )
        assert_allclose(np.r_[model.intercept_, model.coef_], rlm.params, rtol=1e-6)
        assert model.scale_ == pytest.approx(rlm.scale, rel=1e-6)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("magnitude", [1e12, 1e200])
def test_outlier_magnitude_does_not_matter_once_saturated(
    estimator_class, scale, magnitude
):
    """Moving gross outliers further out leaves the estimate unchanged.

    For residuals beyond the threshold (Huber) or a few dozen ``delta``
    scales (log-cosh, where ``tanh`` is 1 in floating point), ``psi``, the
    scale equation and the MAD do not depend on how large the residual is,
    so the minimiser is exactly the same for outliers at ``+1e3`` and at
    ``+magnitude`` (``1e200`` also checks that nothing overflows).

    """
    X, y, outlier_rows = make_data(outlier_fraction=0.05)
    fits = []
    for shift in [1e3, magnitude]:
        y_out = y.copy()
        y_out[outlier_rows] = X[outlier_rows] @ TRUE_COEF + shift
        fits.append(estimator_class(scale=scale).fit(X, y_out))
    assert_same_fit(fits[1], fits[0])


# --- reproducibility and warm starts -----------------------------------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_refit_is_identical(estimator_class, scale):
    X, y, _ = make_data()
    model = estimator_class(scale=scale)
    first = fitted_vector(model.fit(X, y)).copy()
    assert_array_equal(fitted_vector(model.fit(X, y)), first)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("alpha", [0.0, 2.0])
def test_newton_and_lbfgs_agree(estimator_class, scale, alpha):
    X, y, _ = make_data()
    newton = estimator_class(scale=scale, alpha=alpha, solver="newton").fit(X, y)
    lbfgs = estimator_class(scale=scale, alpha=alpha, solver="lbfgs").fit(X, y)
    assert_same_fit(lbfgs, newton)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_warm_start_on_same_data_is_immediate(estimator_class, scale):
    X, y, _ = make_data()
    model = estimator_class(scale=scale, warm_start=True).fit(X, y)
    cold = fitted_vector(model).copy()
    model.fit(X, y)
    assert_allclose(fitted_vector(model), cold, rtol=1e-12)
    # Starts are not iterations: a warm start at the solution takes none.
    assert model.n_iter_ == 0


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize(
    "first_intercept, second_intercept",
    [(False, False), (True, False), (False, True), (True, True)],
)
def test_warm_start_on_new_data_equals_cold_fit(
    estimator_class, scale, first_intercept, second_intercept
):
    """No state but the starting point carries over, with or without intercept.

    scikit-learn's HuberRegressor kept a stale intercept slot when warm
    starting with ``fit_intercept=False``.
    """
    X, y, _ = make_data(seed=0)
    X2, y2, _ = make_data(seed=7)
    y2 = 3.0 * y2 - 40.0
    warm = estimator_class(scale=scale, fit_intercept=first_intercept, warm_start=True)
    warm.fit(X, y)
    warm.set_params(fit_intercept=second_intercept).fit(X2, y2)
    cold = estimator_class(scale=scale, fit_intercept=second_intercept).fit(X2, y2)
    assert_same_fit(warm, cold)
    if not second_intercept:
        assert warm.intercept_ == 0.0


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_warm_start_with_new_number_of_features(estimator_class):
    X, y, _ = make_data()
    warm = estimator_class(warm_start=True).fit(X, y)
    warm.fit(X[:, :2], y)
    assert_same_fit(warm, estimator_class().fit(X[:, :2], y))


# --- fitted attributes ---------------------------------------------------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_fitted_attributes(estimator_class, scale):
    X, y, _ = make_data()
    model = estimator_class(scale=scale).fit(X, y)
    assert model.coef_.shape == (3,)
    assert isinstance(model.intercept_, float)
    assert model.scale_ > 0
    assert model.n_iter_ >= 1
    assert model.n_features_in_ == 3
    residuals = y - model.predict(X)
    noise_scale = np.median(np.abs(residuals)) / 0.6744897501960817
    assert_allclose(model.noise_scale_, noise_scale, rtol=1e-12)
    assert_array_equal(model.outliers_, np.abs(residuals) > 2.5 * noise_scale)
    # IRLS weights psi(z) / z, as statsmodels' RLM.weights.
    z = residuals / model.scale_
    assert_allclose(model.weights_ * z, model._rho().derivative(z), rtol=1e-12)
    assert_allclose(model.predict(X), X @ model.coef_ + model.intercept_, rtol=1e-14)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_max_iter_one_warns_and_stays_finite(estimator_class, scale):
    X, y, _ = make_data(outlier_fraction=0.3)
    with pytest.warns(ConvergenceWarning):
        model = estimator_class(scale=scale, max_iter=1).fit(X, y)
    assert np.all(np.isfinite(fitted_vector(model)))


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_joint_scale_below_existence_threshold_is_rejected(estimator_class):
    """Owen's objective has no minimiser with ``sigma > 0`` for small ``delta``.

    ``d/dsigma [sigma (1 + 2 rho(r/sigma))] = 1 - 2 (z psi - rho)``, and
    ``z psi - rho`` is at most ``delta^2 / 2`` (Huber) or ``delta^2 log 2``
    (log-cosh). Below ``delta = 1`` (Huber; scikit-learn requires
    ``epsilon >= 1`` for this reason) or ``1 / sqrt(2 log 2)`` (log-cosh)
    the objective decreases all the way to ``sigma = 0``.

    """
    X, y, _ = make_data()
    small_delta = 0.5 if estimator_class is HuberRegressor else 0.8
    with pytest.raises(ValueError):
        estimator_class(small_delta).fit(X, y)
    for scale in ["mad", 1.5]:
        model = estimator_class(small_delta, scale=scale).fit(X, y)
        assert model.scale_ > 0.1


# --- scikit-learn tooling -------------------------------------------------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_pipeline_with_standard_scaler_equals_direct_fit(estimator_class, scale):
    """Affine equivariance in ``X``: scaling columns first changes nothing."""
    X, y, _ = make_data()
    direct = estimator_class(scale=scale).fit(X, y)
    pipeline = make_pipeline(StandardScaler(), estimator_class(scale=scale)).fit(X, y)
    assert_allclose(pipeline.predict(X), direct.predict(X), rtol=1e-8)
    fitted = pipeline[-1]
    assert_allclose(fitted.coef_ / pipeline[0].scale_, direct.coef_, rtol=SOLVER_RTOL)
    assert fitted.scale_ == pytest.approx(direct.scale_, rel=SOLVER_RTOL)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_grid_search_and_cross_val_score(estimator_class):
    X, y, _ = make_data()
    deltas = [1.1, 1.5, 3.0]
    cv = KFold(n_splits=3, shuffle=True, random_state=0)
    search = GridSearchCV(estimator_class(), {"delta": deltas}, cv=cv).fit(X, y)
    for delta, score in zip(deltas, search.cv_results_["mean_test_score"], strict=True):
        manual = [
            r2_score(
                y[test], estimator_class(delta).fit(X[train], y[train]).predict(X[test])
            )
            for train, test in cv.split(X)
        ]
        assert score == pytest.approx(np.mean(manual), rel=1e-10)
        scores = cross_val_score(estimator_class(delta), X, y, cv=cv)
        assert_allclose(scores, manual, rtol=1e-10)
    best_delta = deltas[int(np.argmax(search.cv_results_["mean_test_score"]))]
    assert search.best_params_ == {"delta": best_delta}
    assert_same_fit(search.best_estimator_, estimator_class(best_delta).fit(X, y), 0)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_clone_and_pickle(estimator_class):
    X, y, _ = make_data()
    model = estimator_class(2.0, scale="mad", alpha=0.1).fit(X, y)
    cloned = clone(model)
    assert cloned.get_params() == model.get_params()
    assert not hasattr(cloned, "coef_")
    assert_array_equal(fitted_vector(cloned.fit(X, y)), fitted_vector(model))
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(restored.predict(X), model.predict(X))
    assert_array_equal(restored.outliers_, model.outliers_)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_pandas_input_and_feature_names(estimator_class):
    X, y, _ = make_data()
    names = ["age", "income", "ratio"]
    frame = pd.DataFrame(X, columns=names)
    # No "X does not have valid feature names" warning may escape fit.
    model = estimator_class().fit(frame, pd.Series(y, name="target"))
    assert_array_equal(model.feature_names_in_, names)
    # A DataFrame arrives column-major, so sums run in another order: the
    # same fit up to rounding.
    from_array = estimator_class().fit(X, y)
    assert_same_fit(model, from_array, 1e-10)
    assert_allclose(model.predict(frame), from_array.predict(X), rtol=1e-10)
    # scikit-learn's own behaviour, as for any estimator: renamed columns are
    # an error and an unnamed array is a warning.
    renamed = frame.rename(columns={"age": "years"})
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(renamed)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        model.predict(X)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_joint_scale_collapses_to_the_l1_fit_when_most_rows_are_exact(
    estimator_class,
):
    """Two thirds of y on one value: the joint objective's infimum is at sigma = 0.

    There ``sigma (1 + 2 rho(r / sigma)) -> 2 delta |r|``, so the fit is the
    least-absolute-deviation fit (here the majority value, exactly), with
    ``scale_ = 0``, and the objective is below its value at any positive
    scale near Newton's path.
    """
    X = np.array([[a, b] for a in (1, 2, 3) for b in (1, 2, 3, 4)], dtype=float)
    y = np.where(X[:, 0] == 2, 2.0, 1.0)
    model = estimator_class().fit(X, y)
    assert model.scale_ == 0.0
    assert_allclose(model.coef_, 0.0, atol=1e-12)
    assert model.intercept_ == pytest.approx(1.0, abs=1e-12)
    assert_array_equal(model.outliers_, y == 2.0)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_leverage_rows_far_out_fit_without_warnings(estimator_class):
    """Rows with x = +-1e7 and ordinary targets: trial points of the first
    Newton steps can put the scale out of range, where the Hessian formed
    with the trial's gradient must stay finite (no RuntimeWarning)."""
    rng = np.random.default_rng(0)
    n = 50_000
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, 2.0, 3.0] + rng.standard_t(2, size=n)
    rows = np.arange(1, n, 997)[:20]
    X[rows, 0] = 1e7 * rng.choice([-1, 1], size=rows.size)
    y[rows] = rng.normal(size=rows.size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = estimator_class().fit(X, y)
    # The leverage rows pin the first slope near zero; the others are intact.
    assert abs(model.coef_[0]) < 1e-3
    assert_allclose(model.coef_[1:], [2.0, 3.0], atol=0.05)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_duplicated_columns_split_evenly_beside_a_rare_indicator(estimator_class):
    """A column that is constant on the flat-direction search's row sample
    (a rare indicator) must not hide the duplicate pair's flat direction:
    the minimum-norm fit splits the pair's slope evenly."""
    rng = np.random.default_rng(1)
    n = 12_000
    X = rng.normal(size=(n, 4))
    X[:, 1] = X[:, 0]
    X[:, 3] = 0.0
    X[np.arange(1, n, n // 20)[:20], 3] = 1.0
    y = 2 * X[:, 0] + X[:, 2] + 3 * X[:, 3] + rng.standard_t(3, size=n)
    model = estimator_class().fit(X, y)
    assert model.coef_[0] == pytest.approx(model.coef_[1], rel=1e-9)
    assert model.coef_[0] + model.coef_[1] == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_extended_precision_x_gives_the_float64_fit(estimator_class):
    X, y, _ = make_data()
    reference = estimator_class().fit(X, y)
    model = estimator_class().fit(X.astype(np.longdouble), y)
    assert_allclose(model.coef_, reference.coef_, rtol=1e-8)
    assert model.intercept_ == pytest.approx(reference.intercept_, rel=1e-8)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", ["joint", "mad"])
def test_weightless_subsample_rows_fall_back_to_all_rows(estimator_class, scale):
    """Every 8th row (the multilevel subsample) without weight: the solve
    starts on all rows instead, and equals the fit without those rows."""
    rng = np.random.default_rng(6)
    n = 8000
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.standard_t(3, size=n)
    weights = np.ones(n)
    weights[::8] = 0.0
    model = estimator_class(scale=scale).fit(X, y, sample_weight=weights)
    kept = weights > 0
    reference = estimator_class(scale=scale).fit(X[kept], y[kept])
    assert_allclose(model.coef_, reference.coef_, rtol=1e-7)
    assert model.intercept_ == pytest.approx(reference.intercept_, rel=1e-7, abs=1e-9)
