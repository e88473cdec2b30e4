"""Hard inputs for HuberRegressor and LogCoshRegressor.

Regression tests for inputs that once went wrong: a joint scale that
collapses to 0, leverage rows far out, duplicated columns beside a rare
indicator, extended-precision ``X``, and weightless rows on the multilevel
subsample.
"""

import warnings

import numpy as np
import pytest
from _huber_logcosh import (
    ESTIMATORS,
    make_data,
)
from numpy.testing import assert_allclose, assert_array_equal

from skrobust._solvers import SUBSAMPLE_STEP


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
    """Every ``SUBSAMPLE_STEP``-th row (the multilevel subsample) without
    weight: the solve starts on all rows instead, and equals the fit
    without those rows."""
    rng = np.random.default_rng(6)
    n = 8000
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.standard_t(3, size=n)
    weights = np.ones(n)
    weights[::SUBSAMPLE_STEP] = 0.0
    model = estimator_class(scale=scale).fit(X, y, sample_weight=weights)
    kept = weights > 0
    reference = estimator_class(scale=scale).fit(X[kept], y[kept])
    assert_allclose(model.coef_, reference.coef_, rtol=1e-7)
    assert model.intercept_ == pytest.approx(reference.intercept_, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", ["mad", "lad"])
def test_flat_directions_are_searched_once_per_row_set(
    monkeypatch, estimator_class, scale
):
    """The MAD and LAD scales solve a sequence of fixed-scale problems on the
    same rows: their flat directions (a Gram matrix and its
    eigendecomposition each, most of a fit on a wide design) are found once
    per row set, and the duplicated columns still split evenly."""
    from skrobust import _null_directions

    calls = []
    search = _null_directions.null_directions

    def counted(objective):
        calls.append(objective.n_samples)
        return search(objective)

    monkeypatch.setattr(_null_directions, "null_directions", counted)
    rng = np.random.default_rng(2)
    n = 600
    X = rng.normal(size=(n, 3))
    X[:, 1] = X[:, 0]
    y = 2 * X[:, 0] + X[:, 2] + rng.standard_t(3, size=n)
    model = estimator_class(scale=scale).fit(X, y)
    assert model.coef_[0] == pytest.approx(model.coef_[1], rel=1e-9)
    assert model.coef_[0] + model.coef_[1] == pytest.approx(2.0, abs=0.1)
    # Once per (row set, penalty layout): here all rows, one or two layouts
    # (LAD's smoothed fits are unpenalised like these; no subsample at n=600).
    # (Without the cache: 4 searches for mad, 5 for lad.)
    assert len(calls) <= 2, calls


def _fixed_scale_objective(rho, X, y, coef, intercept, threshold, alpha):
    """``sum_i c^2 rho(r_i / c) + alpha ||w||^2``: the documented fixed-scale
    objective with ``c = sigma`` (``rho`` of threshold ``delta``)."""
    r = y - X @ coef - intercept
    return float(np.sum(threshold**2 * rho(r / threshold))) + alpha * coef @ coef


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize(
    ("n", "y_unit", "noise", "scale"),
    [(30, 1.0, 1.0, 1e-8), (30, 1e8, 0.3, 0.7), (200, 1.0, 1.0, 1e-6)],
)
def test_a_fixed_scale_far_below_the_residuals_is_solved(
    estimator_class, n, y_unit, noise, scale
):
    """``scale`` given far below the residuals (``scale=0.7`` with ``y`` in
    units of 1e8): the loss is the absolute one but within ``delta sigma``
    of zero, and the fit lies that close to the exact LAD fit. Its
    gradient is ``delta sigma`` small, so a tolerance absolute in
    standardised units let a start pass (0 iterations), and from elsewhere
    no row was on the quadratic part, leaving Newton's method without
    curvature: objectives 0.2% to 1.5% above the optimum, without a
    warning. Oracle: the objective at the exact LAD fit (``linprog``), which
    the optimum cannot exceed, and L-BFGS from the fit, which must not
    lower it."""
    from _oracles import (
        FixedScaleOracle,
        huber_psi,
        huber_rho,
        logcosh_psi,
        logcosh_rho,
        quantile_linprog,
    )

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    y = y_unit * (X @ [1.0, -2.0, 0.5] + noise * rng.standard_t(3, size=n))
    model = estimator_class(scale=scale).fit(X, y)
    pair = (
        (huber_rho, huber_psi)
        if estimator_class.__name__ == "HuberRegressor"
        else (logcosh_rho, logcosh_psi)
    )
    delta = model.delta
    rho = lambda z: pair[0](z, delta)  # noqa: E731
    psi = lambda z: pair[1](z, delta)  # noqa: E731
    value = _fixed_scale_objective(rho, X, y, model.coef_, model.intercept_, scale, 0.0)
    lad = quantile_linprog(X, y / y_unit)
    at_lad = _fixed_scale_objective(
        rho, X, y, lad.coef * y_unit, lad.intercept * y_unit, scale, 0.0
    )
    assert value <= at_lad * (1 + 1e-12)
    oracle = FixedScaleOracle(X, y, np.ones(n), scale, 0.0, rho, psi, True)
    *_, best = oracle.solve([(model.coef_, model.intercept_)])
    assert oracle.value(model.coef_, model.intercept_) <= best * (1 + 1e-10)


def _columns_of_every_size(n, seed):
    """Columns of spreads 1e-8, 1, 1e4 and 1e8, each with a unit effect on ``y``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * np.array([1e-8, 1.0, 1e4, 1e8])
    y = X @ np.array([1e8, 1.0, 1e-4, 1e-8]) + rng.standard_t(3, size=n)
    return X, y


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize(
    ("n", "scale", "seed"),
    [(30, 1e-3, 0), (30, 1e-5, 1), (200, 1e-5, 0), (200, 1e-8, 1)],
)
def test_a_small_fixed_scale_with_a_ridge_on_columns_of_every_size(
    estimator_class, n, scale, seed
):
    """``scale`` far below the residuals, ``alpha=0.5`` on columns of spreads
    1e-8 to 1e8: standardised ridge weights from 5e-19 to 4e14.

    With most rows beyond the threshold the Hessian is the ridge's diagonal
    and few rows' curvature; the regularised Newton directions raised every
    eigenvalue below 1e-8 of the largest, the weight 4e14, to 4e6, and
    crept for max_iter iterations (ConvergenceWarning, objectives 0.2% to
    1e5 times above the optimum). Oracle: L-BFGS on the documented
    objective ``sum_i sigma^2 rho(r_i / sigma) + alpha ||w||^2`` in its own
    standardised coordinates, from the fit and from zero, must not lower
    it; no warning.
    """
    from _oracles import (
        FixedScaleOracle,
        huber_psi,
        huber_rho,
        logcosh_psi,
        logcosh_rho,
    )

    X, y = _columns_of_every_size(n, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = estimator_class(scale=scale, alpha=0.5).fit(X, y)
    rho, psi = (
        (huber_rho, huber_psi)
        if estimator_class.__name__ == "HuberRegressor"
        else (logcosh_rho, logcosh_psi)
    )
    delta = model.delta
    oracle = FixedScaleOracle(
        X,
        y,
        np.ones(n),
        scale,
        0.5,
        lambda z: rho(z, delta),
        lambda z: psi(z, delta),
        True,
    )
    with np.errstate(over="ignore"):
        *_, best = oracle.solve(
            [(model.coef_, model.intercept_), (np.zeros(4), np.median(y))]
        )
    assert oracle.value(model.coef_, model.intercept_) <= best * (1 + 1e-10)
