"""Passes over X of the dense heteroscedastic fit: its Hessian and its Newton steps.

The likelihood's Hessian on dense ``X`` is one Gram matrix of the rows scaled
by ``a = exp(-v / 2)`` and ``b = r a`` per row block (skrobust._likelihood_pass),
checked here against the issue's formulas; the Newton steps on all rows update
their Hessian by BFGS (skrobust._linalg.secant_update), so that the fit
at 1e5 x 20 reads all rows fewer times.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import skrobust._objective as objective_module
from skrobust import HeteroscedasticRegressor
from skrobust._heteroscedastic import likelihood_objective
from skrobust._likelihood_pass import LikelihoodObjective
from skrobust._objective import LinearObjective


def issue_formulas(objective, coef, X, y, sw, var_cols, tau2, l2, fit_intercept):
    """Value, gradient and Hessian in the solver's coordinates, from the formulas.

    In the original coordinates ``(b, b0, g, g0)``: ``H_bb = A' diag(s /
    sigma^2) A``, ``H_bg = A' diag(s r / sigma^2) Z``, ``H_gg = Z' diag(s
    (r^2 + tau^2) / (2 sigma^2)) Z`` over ``sum(s)``, ``A = [X, 1]`` (``X``
    without an intercept), ``Z = [X_var, 1]``, plus the ridge on ``g``;
    mapped by the linear map ``T`` of the standardised coordinates.
    """
    (b, b0), (g, g0) = objective.unstandardize(coef)
    n = len(y)
    r = y - X @ b - b0
    inv_var = np.exp(-(X[:, var_cols] @ g + g0))
    A = np.c_[X, np.ones(n)] if fit_intercept else X
    Z = np.c_[X[:, var_cols], np.ones(n)]
    S = sw.sum()
    H = np.block(
        [
            [
                A.T @ (A * (sw * inv_var)[:, None]),
                A.T @ (Z * (sw * r * inv_var)[:, None]),
            ],
            [
                Z.T @ (A * (sw * r * inv_var)[:, None]),
                Z.T @ (Z * (0.5 * sw * (r * r + tau2) * inv_var)[:, None]),
            ],
        ]
    ) / S + np.diag(l2 * np.r_[np.zeros(A.shape[1]), np.ones(len(var_cols)), 0.0])
    grad = np.r_[
        -A.T @ (sw * r * inv_var) / S,
        Z.T @ (0.5 * sw * (1 - (r * r + tau2) * inv_var)) / S + l2 * np.r_[g, 0.0],
    ]
    value = sw @ (0.5 * (r * r + tau2) * inv_var - 0.5 * np.log(inv_var)) / S
    value += 0.5 * l2 * (g @ g)

    def flat(c):
        (w0, c0), (w1, c1) = objective.unstandardize(c)
        return np.r_[w0, [c0] if fit_intercept else [], w1, c1]

    T = np.column_stack([flat(e) for e in np.eye(objective.n_coef)])
    return value, T.T @ grad, T.T @ H @ T


@pytest.mark.parametrize(
    "var_cols, weighted, fit_intercept, offset",
    [
        (None, False, True, 0.0),
        (np.array([0, 3]), True, True, 0.0),
        (np.array([], dtype=np.intp), True, False, 0.0),
        # (An offset of 1e5 spreads: the blocks are standardised explicitly.)
        (np.array([1, 2, 4]), True, True, 1e5),
    ],
)
def test_dense_hessian_is_the_issue_formulas_without_weighted_gram_matrices(
    monkeypatch, var_cols, weighted, fit_intercept, offset
):
    """The Hessian of dense rows (beyond the small-design copy) from one Gram matrix.

    Value, gradient and Hessian are the issue's formulas to rounding, and the
    pass forms none of the generic pass's weighted Gram matrices
    (``X' diag(d) X``, three per row block).
    """
    rng = np.random.default_rng(3)
    n, p = 30_000, 5
    X = rng.normal(size=(n, p)) * [1.0, 5.0, 0.2, 1.0, 2.0] + [0.0, 3.0, -1.0, 0, 0]
    X[:, 2] += offset
    y = X[:, 0] - 0.5 * X[:, 1] + np.exp(0.3 * X[:, 3]) * rng.normal(size=n)
    y = (y - y.mean()) / y.std()
    sw = rng.uniform(0.2, 3.0, size=n) if weighted else np.ones(n)
    if weighted:
        sw[::7] = 0.0
    tau2, l2 = 0.3, 0.15
    estimator = HeteroscedasticRegressor(
        variance_floor=tau2, fit_intercept=fit_intercept
    )
    objective = likelihood_objective(estimator, X, y, sw, var_cols, l2, None)
    assert objective.explicit_centering == (offset > 0)
    coef = 0.2 * rng.normal(size=objective.n_coef)
    grams = []
    weighted_gram = objective_module._weighted_gram

    def spy(*args):
        grams.append(args[0].shape)
        return weighted_gram(*args)

    monkeypatch.setattr(objective_module, "_weighted_gram", spy)
    value, grad, hess = objective.loss_gradient_hessian(coef)
    assert grams == []
    scale = np.abs(hess).max()
    # The generic pass (three weighted Gram matrices per block), on the same
    # blocks: the same sums to rounding.
    generic = LinearObjective(
        objective.loss,
        X,
        y,
        sw,
        objective.predictor_spec,
        objective.l2,
        column_stats=objective.column_stats,
    ).loss_gradient_hessian(coef)
    expected = [generic]
    if not offset:
        # (With the offset, the formulas in the original coordinates lose
        # digits to cancellation: the standardised blocks are the remedy.)
        columns = np.arange(p) if var_cols is None else var_cols
        expected.append(
            issue_formulas(objective, coef, X, y, sw, columns, tau2, l2, fit_intercept)
        )
    for expected_value, expected_grad, expected_hess in expected:
        assert value == pytest.approx(expected_value, rel=1e-12)
        assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-12 * scale)
        assert_allclose(hess, expected_hess, rtol=1e-9, atol=1e-13 * scale)
    assert_allclose(hess, hess.T, rtol=0, atol=1e-15 * scale)
    # The Hessian alone, and value and gradient alone: the same numbers.
    grams.clear()  # (of the generic pass)
    assert_allclose(objective.hessian(coef), hess, rtol=1e-14, atol=1e-16 * scale)
    assert grams == []
    alone = objective.loss_gradient(coef)
    assert alone[0] == pytest.approx(value, rel=1e-14)
    assert_allclose(alone[1], grad, rtol=1e-12, atol=1e-15 * scale)


def test_secant_update_meets_the_secant_equation_and_stays_positive_definite():
    """BFGS: ``H_+ s = y``, symmetric, positive definite; unchanged if ``y's <= 0``."""
    from skrobust._linalg import secant_update

    rng = np.random.default_rng(0)
    root = rng.normal(size=(6, 6))
    hess = root @ root.T + np.eye(6)
    step, change = rng.normal(size=6), rng.normal(size=6)
    if change @ step < 0:
        change = -change
    updated = secant_update(hess, step, change)
    assert_allclose(updated @ step, change, rtol=1e-12, atol=1e-12)
    assert_allclose(updated, updated.T, rtol=0, atol=1e-12)
    assert np.linalg.eigvalsh(updated).min() > 0
    # Directions H-conjugate to the step keep their curvature.
    other = np.linalg.solve(hess, rng.normal(size=6))
    other -= (other @ hess @ step) / (step @ hess @ step) * step
    if abs(other @ change) < 1e-12:
        assert_allclose(updated @ other, hess @ other, rtol=1e-10)
    assert secant_update(hess, step, -change) is hess


def outlier_data(n, p, seed=0):
    """Standard normal features, unit noise and 10% of targets shifted up 20-100."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = X @ rng.normal(size=p) + rng.normal(size=n)
    bad = rng.random(n) < 0.1
    y[bad] += rng.uniform(20, 100, size=bad.sum())
    return X, y


def test_fit_at_1e5_x_20_reads_all_rows_seven_times(monkeypatch):
    """Passes over all rows of a 1e5 x 20 fit with 10% gross errors: at most 7.

    After the subsample's solution, one pass with the Hessian and Newton
    steps on it: 10 passes (9 chord steps, each shrinking the gradient
    ~12x) before the Hessian's secant updates, 8 with them, 7 since that
    Hessian is formed after a second step on the subsample's (the first
    leaves 1.4e-2, the second 2.7e-3, where the Hessian then serves four
    chord steps to tol instead of six). The solution is the likelihood's
    maximum to tol.
    """
    X, y = outlier_data(100_000, 20)
    passes = []
    run_pass = LinearObjective._pass

    def spy(objective, coef, gradient=True, hessian=False, direction=None, **kw):
        if objective.n_samples == X.shape[0]:
            passes.append("hessian" if hessian else "gradient")
        return run_pass(objective, coef, gradient, hessian, direction, **kw)

    monkeypatch.setattr(LinearObjective, "_pass", spy)
    model = HeteroscedasticRegressor().fit(X, y)
    assert passes.count("hessian") <= 1
    assert len(passes) <= 7, passes
    # The likelihood's maximum: its gradient at the fit is within tol.
    mean, spread = y.mean(), y.std()
    l2 = 2 * model.alpha / len(y)
    objective = likelihood_objective(
        model, X, (y - mean) / spread, np.ones(len(y)), None, l2, None
    )
    coef = objective.standardize(
        [
            (model.coef_ / spread, (model.intercept_ - mean) / spread),
            (model.var_coef_, model.var_intercept_ - 2 * np.log(spread)),
        ]
    )
    assert np.abs(objective.loss_gradient(coef)[1]).max() <= 1e-9


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_attributes_come_from_the_solvers_last_pass(monkeypatch, fit_intercept):
    """``weights_`` and ``outliers_`` need no product with ``X`` after the solve.

    The solver's last pass was at the solution; its rows' means and
    log-variances (kept in blocks, ``remember_prediction``) give the
    residuals and weights, in ``y``'s units, of the fitted coefficients.
    """
    import skrobust._heteroscedastic as module

    X, y = outlier_data(30_000, 4)
    y = 1e3 * y + 5e3  # (units: the predictors are mapped back to them)
    reference = HeteroscedasticRegressor(fit_intercept=fit_intercept).fit(X, y)

    def no_product(*args, **kwargs):
        raise AssertionError("a product with X after the solve")

    predict = LinearObjective._raw_prediction_single

    def no_likelihood_prediction(objective, coef):
        if isinstance(objective, LikelihoodObjective):
            no_product()
        return predict(objective, coef)

    monkeypatch.setattr(module, "safe_sparse_dot", no_product)
    monkeypatch.setattr(
        LinearObjective, "_raw_prediction_single", no_likelihood_prediction
    )
    model = HeteroscedasticRegressor(fit_intercept=fit_intercept).fit(X, y)
    assert_allclose(model.coef_, reference.coef_, rtol=0, atol=0)
    log_variance = X @ model.var_coef_ + model.var_intercept_
    assert_allclose(model.weights_, np.exp(-log_variance), rtol=1e-12)
    residuals = y - X @ model.coef_ - model.intercept_
    z = np.abs(residuals) * np.sqrt(model.weights_)
    # The flagged rows are the largest standardised residuals.
    assert model.outliers_.sum() > 0
    assert z[model.outliers_].min() > z[~model.outliers_].max()
