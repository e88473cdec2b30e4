"""Standard errors from the solver's last Hessian equal those formed directly.

The joint-scale M-estimators hand the covariance the Hessian of their solve's
last Newton pass and where it was formed (:class:`SolverCurvature`); for
Huber's 0/1-valued ``psi'`` the covariance corrects it by the rows that
crossed the threshold since. Each test compares with the covariance formed
from its own Grams (``curvature=None``), with ``W`` formed directly at the
iterate, or with the objective's Hessian evaluated again.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from skrobust import HuberRegressor, LogCoshRegressor, _mestimator, _solvers
from skrobust._cov_mestimator import (
    FitResiduals,
    SolverCurvature,
    _BreadPlan,
    _residual_source,
    mestimator_covariance,
)
from skrobust._inference import design_center, weighted_grams
from skrobust._objective import LinearObjective
from skrobust.losses import ConcomitantScaleLoss, HuberRho

RTOL = 1e-12


def gross_error_data(n=20_000, p=4, seed=0, offset=0.0):
    """Gaussian design (shifted by ``offset``), 10% gross errors in y."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) + offset
    y = X @ rng.normal(size=p) + 1.0 + rng.normal(size=n)
    gross = rng.random(n) < 0.1
    y[gross] += rng.uniform(10, 30, size=gross.sum())
    return X, y


def assert_same_covariance(actual, expected):
    """Entrywise, relative to the standard errors' products."""
    unit = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))
    np.testing.assert_allclose(actual / unit, expected / unit, rtol=0, atol=RTOL)


def crossed_rows(X, residuals, scale, curvature, delta):
    """Rows on different sides of the threshold at the fit and at the iterate."""
    then = residuals + X @ curvature.coef_change + curvature.intercept_change
    inside_then = np.abs(then / curvature.scale) <= delta
    return inside_then != (np.abs(residuals / scale) <= delta)


@pytest.fixture
def captured(monkeypatch):
    """The curvature every covariance of a fit is handed, in order."""
    calls = []
    original = _mestimator.mestimator_covariance

    def spy(*args, **kwargs):
        calls.append(kwargs.get("curvature"))
        return original(*args, **kwargs)

    monkeypatch.setattr(_mestimator, "mestimator_covariance", spy)
    return calls


def test_solver_remembers_where_its_last_hessian_was_formed():
    X, y = gross_error_data()
    weights = np.ones(y.size)
    objective = LinearObjective(
        ConcomitantScaleLoss(HuberRho(1.35)),
        X,
        (y - np.median(y)) / y.std(),
        weights,
        [(None, True), ((), True)],
        [0.0, 0.0],
    )
    options = _solvers.SolverOptions("newton", 200, 1e-10, convex=True)
    start = np.zeros(objective.n_coef)
    result = _solvers.solve(objective, start, options, remember_hessian_point=True)
    assert result.converged and result.hessian_coef is not None
    # Formed on all rows at an iterate before the last (chord steps follow).
    assert not np.array_equal(result.hessian_coef, result.coef)
    np.testing.assert_array_equal(
        objective.hessian(result.hessian_coef), result.hessian
    )
    # Not asked: not remembered.
    assert _solvers.solve(objective, start, options).hessian_coef is None


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("cov_type", ["H1", "H2", "H3", "mass", "sandwich"])
def test_huber_joint_fit_covariance_equals_the_directly_formed_one(
    captured, cov_type, weighted, fit_intercept
):
    X, y = gross_error_data()
    rng = np.random.default_rng(1)
    weights = rng.integers(1, 4, size=y.size).astype(float) if weighted else None
    model = HuberRegressor(cov_type=cov_type, fit_intercept=fit_intercept)
    model.fit(X, y, sample_weight=weights)
    residuals = y - model.predict(X)
    expected = mestimator_covariance(
        X,
        residuals,
        weights,
        HuberRho(model.delta),
        model.scale_,
        fit_intercept=fit_intercept,
        cov_type=cov_type,
        joint=True,
    )
    (curvature,) = captured
    # The reuse happened, and rows crossed the threshold in between.
    assert curvature is not None
    assert crossed_rows(X, residuals, model.scale_, curvature, model.delta).any()
    assert_same_covariance(model.cov_, expected)


def test_solver_w_equals_w_formed_at_its_iterate(captured):
    X, y = gross_error_data(seed=3)
    model = HuberRegressor(cov_type="H2").fit(X, y)
    (curvature,) = captured
    residuals = y - model.predict(X)
    then = residuals + X @ curvature.coef_change + curvature.intercept_change
    inside = (np.abs(then / curvature.scale) <= model.delta).astype(float)
    (direct,) = weighted_grams(X, [inside], center=curvature.center)
    np.testing.assert_allclose(curvature.w_gram, direct, rtol=RTOL, atol=0)


@pytest.mark.parametrize("offset", [10.0, 1e5])
def test_far_from_zero_columns(captured, offset):
    # The objective folds a centring of up to 1e3 standard deviations into
    # its Hessian: beyond 3 that cancellation would cost digits, so W is
    # formed anew (10); beyond 1e3 the objective centres its row blocks
    # first, and its Hessian is reused (1e5).
    X, y = gross_error_data(offset=offset)
    model = HuberRegressor(cov_type="sandwich").fit(X, y)
    (curvature,) = captured
    assert (curvature is None) == (offset == 10.0)
    expected = mestimator_covariance(
        X, y - model.predict(X), None, HuberRho(model.delta), model.scale_,
        cov_type="sandwich", joint=True,
    )  # fmt: skip
    assert_same_covariance(model.cov_, expected)


def test_log_cosh_is_not_corrected_row_by_row(captured):
    # Its psi' changes on every row between two iterates: no exact reuse.
    X, y = gross_error_data()
    model = LogCoshRegressor(cov_type="sandwich").fit(X, y)
    (curvature,) = captured
    residuals = y - model.predict(X)
    rho_args = (model._rho(), _residual_source(residuals), None, model.scale_)
    assert _BreadPlan.choose(rho_args, "WM", X, curvature).kind == "psi squared"
    assert _BreadPlan.choose(rho_args, "W", X, curvature).kind == "direct"


def iterate_curvature(X, residuals, scale, delta, shift, center):
    """A :class:`SolverCurvature` at the fit moved by ``shift``, W formed directly."""
    rng = np.random.default_rng(7)
    coef_change = shift * rng.normal(size=X.shape[1])
    intercept_change = shift * rng.normal()
    then = residuals + X @ coef_change + intercept_change
    iterate_scale = scale * (1.0 + shift)
    inside = (np.abs(then / iterate_scale) <= delta).astype(float)
    (w_gram,) = weighted_grams(X, [inside], center=center)
    return SolverCurvature(w_gram, center, coef_change, intercept_change, iterate_scale)


@pytest.mark.parametrize("shift", [1e-3, 3e-2, 0.3])
@pytest.mark.parametrize("cov_type", ["H2", "H3", "sandwich"])
def test_any_iterate_gives_the_covariance_at_the_fit(cov_type, shift):
    # Few rows crossed (corrected), many (more than MAX_CROSSED_SHARE: W
    # formed again in a second pass): the same covariance either way.
    X, y = gross_error_data(n=5000, seed=4)
    model = HuberRegressor().fit(X, y)
    residuals = y - model.predict(X)
    curvature = iterate_curvature(
        X, residuals, model.scale_, model.delta, shift, X[::7].mean(axis=0)
    )
    options = {"cov_type": cov_type, "joint": True}
    rho = HuberRho(model.delta)
    expected = mestimator_covariance(X, residuals, None, rho, model.scale_, **options)
    reused = mestimator_covariance(
        X, residuals, None, rho, model.scale_, curvature=curvature, **options
    )
    assert crossed_rows(X, residuals, model.scale_, curvature, model.delta).any()
    assert_same_covariance(reused, expected)


def test_rows_leaving_w_that_would_lose_digits_give_a_second_pass(monkeypatch):
    # A column that lives almost only on rows beyond the threshold at the fit
    # but inside it at the iterate: W minus those rows would keep little but
    # rounding noise of that column, so _difference refuses and W is formed
    # directly.
    X, y = gross_error_data(n=5000, seed=5)
    model = HuberRegressor().fit(X, y)
    residuals = y - model.predict(X)
    scale, delta = model.scale_, model.delta
    beyond = np.abs(residuals / scale) > delta
    rng = np.random.default_rng(6)
    X = np.column_stack([X, np.where(beyond, 1.0, 1e-7) * rng.normal(size=y.size)])
    center = design_center(X, True)
    inside = np.ones(y.size)  # at the iterate every row was inside
    (w_gram,) = weighted_grams(X, [inside], center=center)
    curvature = SolverCurvature(w_gram, center, np.zeros(X.shape[1]), 0.0, 1e6 * scale)
    directs = []
    original = _BreadPlan._direct_w

    def spy(self, *args):
        directs.append(True)
        return original(self, *args)

    monkeypatch.setattr(_BreadPlan, "_direct_w", spy)
    # (Else the share of rows that left would send it there anyway.)
    monkeypatch.setattr(_BreadPlan, "MAX_CROSSED_SHARE", 1.0)
    rho = HuberRho(delta)
    options = {"cov_type": "H2", "joint": True}
    expected = mestimator_covariance(X, residuals, None, rho, scale, **options)
    assert directs == []
    reused = mestimator_covariance(
        X, residuals, None, rho, scale, curvature=curvature, **options
    )
    assert directs == [True]
    assert_same_covariance(reused, expected)


def test_unit_weights_take_the_unweighted_route():
    X, y = gross_error_data(n=3000)
    residuals = y - np.median(y)
    rho = HuberRho(1.35)
    for cov_type in ("H1", "H3", "sandwich"):
        none = mestimator_covariance(X, residuals, None, rho, 2.0, cov_type=cov_type)
        ones = mestimator_covariance(
            X, residuals, np.ones(y.size), rho, 2.0, cov_type=cov_type
        )
        np.testing.assert_array_equal(ones, none)


@pytest.mark.parametrize("layout", ["float64", "float32", "csr", "no pass"])
def test_residuals_formed_in_the_pass_equal_those_formed_first(layout):
    X, y = gross_error_data(n=3000, seed=8)
    if layout == "float32":
        X = X.astype(np.float32)
    if layout == "csr":
        X = sp.csr_matrix(np.where(np.abs(X) > 1.0, X, 0.0))
    coef, intercept = np.array([0.5, -1.0, 2.0, 0.0]), 1.5
    direct = y - X @ coef - intercept
    fitted = FitResiduals(X, y, coef, intercept)
    rho = HuberRho(1.35)
    # A scale of zero needs no pass: the residuals are formed on demand.
    scale = 0.0 if layout == "no pass" else 2.0
    cov = mestimator_covariance(X, fitted, None, rho, scale, cov_type="sandwich")
    expected = mestimator_covariance(X, direct, None, rho, scale, cov_type="sandwich")
    np.testing.assert_allclose(fitted.formed(), direct, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(cov, expected, rtol=1e-13, atol=0)


def test_residuals_and_their_change_along_a_direction_from_one_product():
    # FitResiduals.also_along: one product of each block with the
    # coefficients and the direction gives the residuals and the block's
    # product with the direction (the crossing check's), that block's only.
    X, y = gross_error_data(n=3000, seed=3)
    coef, intercept = np.array([0.5, -1.0, 2.0, 0.0]), 1.5
    direction = np.array([1e-3, -2e-4, 0.0, 5e-4])
    fitted = FitResiduals(X, y, coef, intercept)
    fitted.also_along(direction)
    rows = slice(100, 1100)
    residuals = fitted.of_block(rows, X[rows])
    np.testing.assert_allclose(
        residuals, y[rows] - X[rows] @ coef - intercept, rtol=1e-14, atol=1e-14
    )
    for block_rows in (rows, slice(0, 50)):
        np.testing.assert_allclose(
            fitted.along(block_rows, X[block_rows], direction),
            X[block_rows] @ direction,
            rtol=1e-14,
            atol=1e-17,
        )


@pytest.mark.parametrize("scale", ["joint", "mad"])
def test_attributes_from_the_residuals_do_not_depend_on_cov_type(scale):
    X, y = gross_error_data(n=8000, seed=9)
    plain = HuberRegressor(scale=scale).fit(X, y)
    with_cov = HuberRegressor(scale=scale, cov_type="H3").fit(X, y)
    for name in ("coef_", "intercept_", "scale_", "noise_scale_", "weights_"):
        np.testing.assert_allclose(
            getattr(with_cov, name), getattr(plain, name), rtol=1e-14, atol=0
        )
    np.testing.assert_array_equal(with_cov.outliers_, plain.outliers_)
