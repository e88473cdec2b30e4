"""MEstimatorRegressor with a loss written by a user, and the fit pipeline's contracts.

The loss protocol promises that a convex loss written with only ``value``,
``derivative`` and ``second_derivative`` fits with every scale option; the
oracle for each is a direct scipy minimisation of the documented objective.
"""

import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.datasets import make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks
from test_lad_scale import centred_mad, smoothed_lad_oracle

from skrobust import HuberRegressor, LogCoshRegressor, MEstimatorRegressor
from skrobust.losses import HuberRho, LogCoshRho, ResidualFunction

MAD_NORMAL_CONSTANT = 0.6744897501960817


class FairRho(ResidualFunction):
    """Fair's loss ``c^2 (|z|/c - log(1 + |z|/c))``: the docs' example, verbatim."""

    def __init__(self, c=1.4):
        self.c = c

    def value(self, z):
        a = np.abs(z) / self.c
        return self.c**2 * (a - np.log1p(a))

    def derivative(self, z):
        return z / (1.0 + np.abs(z) / self.c)

    def second_derivative(self, z):
        return 1.0 / (1.0 + np.abs(z) / self.c) ** 2


SCALES = ["joint", "mad", "lad", 2.0]


def make_data(n=300, seed=0, outliers=30, magnitude=50.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 3.0, 0.5]
    y = X @ [1.0, -2.0, 0.5] + 3.0 + rng.standard_t(4, size=n)
    y[:outliers] += magnitude
    return X, y


def fixed_scale_oracle(rho, X, y, scale, start):
    """Direct minimisation of ``sum sigma^2 rho(r / sigma)`` over ``(w, b)``."""

    def fun(params):
        r = (y - X @ params[:-1] - params[-1]) / scale
        grad_r = -scale * rho.derivative(r)
        return scale**2 * rho.value(r).sum(), np.r_[X.T @ grad_r, grad_r.sum()]

    res = scipy.optimize.minimize(
        fun, start, jac=True, method="BFGS", options={"gtol": 1e-11, "maxiter": 10000}
    )
    return res.x


def joint_oracle(rho, X, y, start):
    """Direct minimisation of ``sum sigma (1 + 2 rho(r / sigma))`` over all three."""

    def fun(params):
        sigma = np.exp(params[-1])
        z = (y - X @ params[:-2] - params[-2]) / sigma
        psi = rho.derivative(z)
        value = np.sum(sigma * (1.0 + 2.0 * rho.value(z)))
        grad_eta = -2.0 * psi
        grad_t = np.sum(sigma * (1.0 + 2.0 * rho.value(z)) - 2.0 * sigma * z * psi)
        return value, np.r_[X.T @ grad_eta, grad_eta.sum(), grad_t]

    res = scipy.optimize.minimize(
        fun, start, jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 10000}
    )
    return res.x


@pytest.mark.parametrize("scale", SCALES)
def test_user_loss_matches_direct_minimisation(scale):
    X, y = make_data()
    rho = FairRho()
    model = MEstimatorRegressor(rho, scale=scale).fit(X, y)
    fitted = np.r_[model.coef_, model.intercept_]
    if scale == "joint":
        start = np.r_[fitted, np.log(model.scale_)] + 0.05
        oracle = joint_oracle(rho, X, y, start)
        assert_allclose(fitted, oracle[:-1], rtol=1e-6, atol=1e-6)
        assert_allclose(model.scale_, np.exp(oracle[-1]), rtol=1e-6)
        return
    # Fixed, MAD and LAD scales: at the reported scale the coefficients
    # minimise the fixed-scale objective ...
    oracle = fixed_scale_oracle(rho, X, y, model.scale_, fitted + 0.05)
    assert_allclose(fitted, oracle, rtol=1e-6, atol=1e-6)
    # ... and the scale is what the option says.
    if scale == "mad":
        r = y - model.predict(X)
        assert_allclose(model.scale_, np.median(np.abs(r)) / MAD_NORMAL_CONSTANT)
    elif scale == "lad":
        # The smoothed LAD fixed point (tests/test_lad_scale.py): the centred
        # MAD of the smoothed median fit at bandwidth scale_ / 2.
        r = smoothed_lad_oracle(X, y, 0.5 * model.scale_)
        assert_allclose(model.scale_, centred_mad(r), rtol=1e-6)
    else:
        assert model.scale_ == scale


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("magnitude", [1e8, 1e300])
def test_user_loss_survives_far_targets(scale, magnitude):
    X, y = make_data(outliers=10, magnitude=magnitude)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if scale == "joint" and magnitude == 1e300:
            # Fair's joint scale breaks down to ~1e296 here (see below): the
            # scale equation's gradient, sigma mean(1 - 2 chi), is then far
            # above any absolute tolerance, and saying so is honest.
            warnings.simplefilter("ignore", ConvergenceWarning)
        model = MEstimatorRegressor(FairRho(), scale=scale).fit(X, y)
    assert np.all(np.isfinite(model.coef_)) and np.isfinite(model.intercept_)
    assert np.isfinite(model.scale_) and model.scale_ > 0
    assert model.outliers_[:10].all()
    if scale != "joint":
        # Fair's psi is bounded: ten far targets move a fit at a fixed or
        # robust scale only a little from the true coefficients.
        assert np.max(np.abs(model.coef_ - [1.0, -2.0, 0.5])) < 0.3
    elif magnitude == 1e8:
        # Fair's z psi - rho grows like log |z|: the joint scale grows with
        # the far targets (it breaks down), and the fit is still the
        # minimiser of its objective.
        rho = FairRho()
        fitted = np.r_[model.coef_, model.intercept_, np.log(model.scale_)]
        oracle = joint_oracle(rho, X, y, np.r_[1.0, -2.0, 0.5, 3.0, 0.0])

        def value(params):
            sigma = np.exp(params[-1])
            z = (y - X @ params[:-2] - params[-2]) / sigma
            return np.sum(sigma * (1.0 + 2.0 * rho.value(z)))

        assert value(fitted) <= value(oracle) * (1 + 1e-12)
        assert_allclose(fitted, oracle, rtol=1e-4)


def test_huber_as_user_loss_equals_huber_regressor():
    X, y = make_data()
    for scale in SCALES:
        generic = MEstimatorRegressor(HuberRho(1.35), scale=scale).fit(X, y)
        huber = HuberRegressor(1.35, scale=scale).fit(X, y)
        assert_allclose(generic.coef_, huber.coef_, rtol=1e-12)
        assert_allclose(generic.scale_, huber.scale_, rtol=1e-12)


@parametrize_with_checks(
    [MEstimatorRegressor(FairRho(), scale=s) for s in SCALES],
    expected_failed_checks=None,
)
def test_user_loss_passes_check_estimator(estimator, check):
    check(estimator)


class NotConvex(ResidualFunction):
    """Welsch's loss, redescending (written to be finite for any z)."""

    def value(self, z):
        z = np.clip(z, -40.0, 40.0)
        return 1.0 - np.exp(-0.5 * z * z)

    def derivative(self, z):
        z = np.clip(z, -40.0, 40.0)
        return z * np.exp(-0.5 * z * z)

    def second_derivative(self, z):
        z = np.clip(z, -40.0, 40.0)
        return (1.0 - z * z) * np.exp(-0.5 * z * z)


class Overflowing(FairRho):
    def value(self, z):
        return np.cosh(z) - 1.0


class WrongShape(FairRho):
    def derivative(self, z):
        return np.ravel(z)


@pytest.mark.parametrize(
    "rho, match",
    [
        (NotConvex(), "convex"),
        (Overflowing(), "not finite"),
        (WrongShape(), "shape"),
        (object(), "rho"),
        (HuberRho(0.9), "joint"),
    ],
)
def test_loss_protocol_is_checked_before_fitting(rho, match):
    X, y = make_data(n=50)
    with pytest.raises(ValueError, match=match):
        MEstimatorRegressor(rho).fit(X, y)


def test_generic_defaults_equal_the_overrides():
    """The base class's generic methods agree with Huber's and log-cosh's own."""
    z = np.linspace(-30.0, 30.0, 601)
    for rho in (HuberRho(1.35), LogCoshRho(1.0)):
        generic = [
            ResidualFunction.z_psi_minus_rho(rho, z),
            *ResidualFunction.concomitant_terms(rho, z),
        ]
        own = [rho.z_psi_minus_rho(z), *rho.concomitant_terms(z)]
        for a, b in zip(generic, own, strict=True):
            assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        # Saturation: psi constant beyond it, to the last bit.
        beyond = np.array([1.0, 2.0, 1e10]) * ResidualFunction.saturation.fget(rho)
        assert np.ptp(rho.derivative(beyond)) == 0
    assert HuberRho(1.35).z_psi_minus_rho_limit == pytest.approx(1.35**2 / 2)
    assert LogCoshRho(1.0).z_psi_minus_rho_limit == pytest.approx(np.log(2.0))
    assert FairRho().saturation == np.inf
    assert FairRho().z_psi_minus_rho_limit == np.inf


# --- contracts of the fit pipeline (issue: defects found by scikit-learn's tests)


ESTIMATORS = [HuberRegressor, LogCoshRegressor, MEstimatorRegressor]


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_penalty_applies_when_least_squares_interpolates(estimator_class, scale):
    """With alpha > 0 an interpolating least-squares start is not the answer.

    scikit-learn's HuberRegressor(alpha=1) finds [1, 10] / 101 here; the
    oracle below is the fixed-scale or joint objective with its penalty.
    """
    X = np.array([[0.0, 0.0], [1.0, 10.0]])
    y = np.array([0.0, 1.0])
    model = estimator_class(alpha=1.0, scale=scale).fit(X, y)
    sparse = estimator_class(alpha=1.0, scale=scale).fit(sp.csr_matrix(X), y)
    assert_allclose(sparse.coef_, model.coef_, rtol=1e-7, atol=1e-9)
    rho = model._rho()
    if scale == "joint":
        # The joint scale collapses: the L1 boundary problem's minimiser is
        # the minimum-norm interpolant through the origin row.
        assert_allclose(model.coef_, np.array([1.0, 10.0]) / 101, rtol=1e-7)
        return

    def objective(params):
        r = (y - X @ params[:2] - params[2]) / model.scale_
        return model.scale_**2 * rho.value(r).sum() + params[:2] @ params[:2]

    fitted = np.r_[model.coef_, model.intercept_]
    res = scipy.optimize.minimize(
        objective,
        fitted + 0.01,
        method="Nelder-Mead",
        options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 20000},
    )
    assert objective(fitted) <= res.fun + 1e-12
    assert_allclose(fitted, res.x, atol=1e-5)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("max_iter", [1, 2, 5])
def test_n_iter_never_exceeds_max_iter(estimator_class, scale, max_iter):
    X, y = make_regression(50, 20, noise=0.05, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = estimator_class(max_iter=max_iter, scale=scale).fit(X, y)
    assert 0 <= model.n_iter_ <= max_iter


def test_max_iter_one_warns_with_newton_in_message():
    X, y = make_regression(50, 20, noise=0.05, random_state=0)
    with pytest.warns(ConvergenceWarning, match="newton solver stopped after 1 "):
        model = HuberRegressor(max_iter=1).fit(X, y)
    assert model.n_iter_ == 1


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_warm_start_from_the_optimum_takes_no_iteration(estimator_class, scale):
    X, y = make_data()
    model = estimator_class(scale=scale, warm_start=True).fit(X, y)
    coef = model.coef_.copy()
    model.fit(X, y)
    assert model.n_iter_ == 0
    assert_allclose(model.coef_, coef, rtol=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_small_samples_reach_the_optimum(seed):
    """make_regression(50, 20): no ConvergenceWarning, sklearn's objective minimised.

    The oracle is a BFGS minimisation of scikit-learn's Huber objective
    (epsilon = delta, alpha = 0) in (w, b, sigma) started from our fit, which
    must not find a lower value.
    """
    X, y = make_regression(50, 20, noise=0.05, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = HuberRegressor().fit(X, y)
    rho = HuberRho(1.35)
    start = np.r_[model.coef_, model.intercept_, np.log(model.scale_)]
    oracle = joint_oracle(rho, X, y, start)

    def value(params):
        sigma = np.exp(params[-1])
        z = (y - X @ params[:-2] - params[-2]) / sigma
        return np.sum(sigma * (1.0 + 2.0 * rho.value(z)))

    assert value(start) <= value(oracle) * (1 + 1e-9)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_verbose_levels(estimator_class, capsys):
    X, y = make_data()
    estimator_class(scale="mad").fit(X, y)
    assert capsys.readouterr().out == ""
    estimator_class(scale="mad", verbose=1).fit(X, np.c_[y, 2 * y])
    out = capsys.readouterr().out
    # (Small data: Newton's method on fit and scale reports the solve; its
    # point is final, with no fixed-scale fit after it to report one.)
    assert "output 2/2 done" in out and "newton on fit and scale" in out
    assert "Newton step" not in out
    estimator_class(scale="mad", verbose=2).fit(X, y)
    assert "Newton step" in capsys.readouterr().out


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_zero_weight_rows_can_hold_any_finite_target(estimator_class):
    X, y = make_data()
    keep = np.arange(len(y)) % 4 != 0
    y_garbage = 1e-3 * y
    y_garbage[~keep] = 1.5e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = estimator_class().fit(X, y_garbage, sample_weight=keep.astype(float))
    reference = estimator_class().fit(X[keep], 1e-3 * y[keep])
    assert_allclose(model.coef_, reference.coef_, rtol=1e-8)
    assert_allclose(model.scale_, reference.scale_, rtol=1e-8)


def _one_hot_design(n=3000, levels=400, seed=0):
    """Two numeric columns and a one-hot categorical of ``levels`` levels."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, levels, n)
    one_hot = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, levels))
    numeric = rng.normal(size=(n, 2))
    X = sp.hstack([sp.csr_matrix(numeric), one_hot]).tocsr()
    effects = rng.normal(size=levels)
    y = numeric @ [1.0, -2.0] + effects[codes] + rng.standard_t(3, size=n)
    y[: n // 10] += 30.0
    return X, y


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", ["joint", "mad", 1.0])
def test_wide_one_hot_design_sparse_equals_dense(estimator_class, scale):
    """A design wider than a Gram matrix pays for (LSQR starts, L-BFGS).

    About 20 rows per level, so that the minimiser is unique (with a few rows
    per level, all of them beyond Huber's threshold, a level's coefficient
    has a flat segment of minimisers, as in least absolute deviation).
    """
    X, y = _one_hot_design(n=6000, levels=310)
    sparse = estimator_class(scale=scale).fit(X, y)
    dense = estimator_class(scale=scale).fit(X.toarray(), y)
    assert_allclose(sparse.coef_, dense.coef_, rtol=1e-8, atol=1e-8)
    assert_allclose(sparse.intercept_, dense.intercept_, rtol=1e-8, atol=1e-8)
    assert_allclose(sparse.scale_, dense.scale_, rtol=1e-8)


def test_wide_design_reaches_sklearn_objective():
    """Huber's joint objective on a wide design is no higher than scikit-learn's.

    scikit-learn's HuberRegressor (alpha=0, tight tol) minimises the same
    objective with L-BFGS-B on its own code.
    """
    from sklearn.linear_model import HuberRegressor as SklearnHuber

    X, y = _one_hot_design(n=2000, levels=300)
    ours = HuberRegressor().fit(X, y)
    theirs = SklearnHuber(epsilon=1.35, alpha=0.0, max_iter=10000, tol=1e-12).fit(X, y)
    rho = HuberRho(1.35)

    def value(coef, intercept, sigma):
        z = (y - X @ coef - intercept) / sigma
        return np.sum(sigma * (1.0 + 2.0 * rho.value(z)))

    ours_value = value(ours.coef_, ours.intercept_, ours.scale_)
    theirs_value = value(theirs.coef_, theirs.intercept_, theirs.scale_)
    assert ours_value <= theirs_value * (1 + 1e-9)
