"""HeteroscedasticRegressor on one-hot designs: Newton's method on sparse Hessians.

Beyond 300 coefficients the likelihood of a sparse design whose Hessian
blocks ``X' D_ab X`` are sparse (numeric columns and one-hot levels) is
solved by Newton's method on those blocks (``skrobust._sparse_hessian``),
where it took L-BFGS. Oracles: the dense Hessian of the same objective, and
scipy's trust-exact on the documented objective written out with its
Hessian (``test_heteroscedastic_wide.documented_objective``).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from test_heteroscedastic_floor import sparse_wide_data
from test_heteroscedastic_wide import (
    documented_objective,
    theta_of,
    trust_exact_minimum,
)
from test_mestimator import _one_hot_design

from skrobust import HeteroscedasticRegressor, _solvers
from skrobust._base import least_squares_start
from skrobust._heteroscedastic import likelihood_objective


def _two_one_hot_features(n=2000, levels=(40, 60), seed=0):
    """Two one-hot features and no numeric column: rows of two sparse entries."""
    rng = np.random.default_rng(seed)
    blocks = []
    for size in levels:
        codes = rng.integers(0, size, n)
        blocks.append(sp.csr_matrix((np.ones(n), (np.arange(n), codes)), (n, size)))
    X = sp.hstack(blocks).tocsr()
    y = X @ rng.normal(size=X.shape[1]) + rng.standard_t(3, size=n)
    return X, y


def weighted_likelihood_at_random_point(X, y, var_cols, fit_intercept):
    """The likelihood objective of ``X, y`` with integer weights (some zero),
    ``var_cols`` in the log-variance (None: all) and its penalty, and a
    random point of it: ``(objective, coef)``."""
    weights = np.random.default_rng(1).integers(0, 4, X.shape[0]).astype(float)
    estimator = HeteroscedasticRegressor(fit_intercept=fit_intercept)
    ls_objective, _, _ = least_squares_start(X, y, weights, fit_intercept, 0.0)
    columns = None if var_cols is None else np.array(var_cols, dtype=np.intp)
    objective = likelihood_objective(
        estimator, X, y, weights, columns, 1e-3, ls_objective.column_stats
    )
    coef = np.random.default_rng(2).normal(scale=0.1, size=objective.n_coef)
    return objective, coef


@pytest.mark.parametrize("design", ["numeric and one-hot", "two one-hot"])
@pytest.mark.parametrize("var_cols", [None, [0, 1], []])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_hessian_blocks_are_the_dense_hessian(design, var_cols, fit_intercept):
    """Products and diagonal of the sparse Hessian of the two-predictor
    likelihood against its dense Hessian, with weights (some zero), the
    implicit centring of both predictors, a subset of the columns in the
    log-variance and its penalty; numeric columns (kept dense) with one-hot
    levels (a diagonal block), or two one-hot features (a sparse block)."""
    if design == "two one-hot":
        X, y = _two_one_hot_features()
    else:
        X, y = _one_hot_design(n=3000, levels=150)
    objective, coef = weighted_likelihood_at_random_point(X, y, var_cols, fit_intercept)
    value, grad, sparse = objective.loss_gradient_sparse_hessian(coef)
    dense_value, dense_grad, dense = objective.loss_gradient_hessian(coef)
    assert value == pytest.approx(dense_value, rel=1e-12)
    assert_allclose(grad, dense_grad, rtol=1e-10, atol=1e-14)
    top = np.max(np.abs(dense))
    assert_allclose(sparse.diagonal(), np.diag(dense), rtol=1e-10, atol=1e-12 * top)
    columns = np.column_stack([sparse.matvec(e) for e in np.eye(objective.n_coef)])
    assert_allclose(columns, dense, rtol=1e-10, atol=1e-12 * top)


@pytest.fixture(scope="module")
def weighted_one_hot():
    # 2 x (2 + 150 + 1) = 306 coefficients: beyond the dense Newton's limit;
    # 30 rows per level, so that the level variances are estimated.
    X, y = _one_hot_design(n=4500, levels=150)
    weights = np.random.default_rng(1).integers(1, 4, X.shape[0]).astype(float)
    return X, y, weights


def test_one_hot_fit_reaches_the_trust_exact_optimum(weighted_one_hot):
    """A few Newton iterations on the sparse Hessian (L-BFGS took 102), no
    warning, and the optimum of trust-exact on the documented objective
    (from least squares and a constant variance) to 1e-10 in its value;
    the dense fit's predictions and likelihood."""
    X, y, weights = weighted_one_hot
    model = HeteroscedasticRegressor().fit(X, y, sample_weight=weights)
    assert model.n_iter_ <= 20

    dense = X.toarray()
    fun, hess = documented_objective(dense, y, weights, alpha=1e-4, floor=1e-8)
    total = weights.sum()  # (a mean over rows, whose gradient it can resolve)
    mean, *_ = np.linalg.lstsq(np.c_[dense, np.ones(len(y))], y, rcond=None)
    residuals = y - np.c_[dense, np.ones(len(y))] @ mean
    variance = weights @ residuals**2 / total
    start = np.r_[mean, np.zeros(dense.shape[1]), np.log(variance)]
    res = trust_exact_minimum(fun, hess, start, total, maxiter=500)
    ours = fun(theta_of(model))[0] / total
    assert abs(ours - res.fun) <= 1e-10 * abs(res.fun)

    dense_model = HeteroscedasticRegressor().fit(dense, y, sample_weight=weights)
    mean_sparse, std_sparse = model.predict(X, return_std=True)
    mean_dense, std_dense = dense_model.predict(dense, return_std=True)
    assert_allclose(mean_sparse, mean_dense, rtol=1e-8, atol=1e-8)
    assert_allclose(std_sparse, std_dense, rtol=1e-8)
    assert model.log_likelihood(X, y, weights) == pytest.approx(
        dense_model.log_likelihood(dense, y, weights), rel=1e-10
    )


def test_sparse_wide_fit_converges_by_sketched_newton(monkeypatch):
    """A sparse 2000 x 200 design with 0.5% of its entries, solved as if its
    Hessian were too dear (the path of the benchmarks' 2e4 x 2000): truncated
    Newton preconditioned by the heaviest rows now takes sparse designs,
    where L-BFGS stopped at its 200 iterations with a gradient of 0.5 and a
    ConvergenceWarning (an error here). The dense fit's likelihood, and the
    optimum of trust-exact on the documented objective to 1e-10 in value."""
    monkeypatch.setattr(_solvers, "_NEWTON_FALLBACK_WORK", 0.0)
    # (0.5% of entries: one a row.)
    X, y = sparse_wide_data(per_row=1)
    model = HeteroscedasticRegressor().fit(X, y)  # (warnings are errors)
    assert model.n_iter_ < 200
    dense = X.toarray()
    dense_model = HeteroscedasticRegressor().fit(dense, y)
    assert model.log_likelihood(X, y) == pytest.approx(
        dense_model.log_likelihood(dense, y), rel=1e-10
    )

    sw = np.ones(len(y))
    fun, hess = documented_objective(dense, y, sw, alpha=1e-4, floor=1e-8)
    n = len(y)
    start = theta_of(model) + 1e-3 * np.random.default_rng(5).standard_normal(402)
    res = trust_exact_minimum(fun, hess, start, n, maxiter=200)
    ours = fun(theta_of(model))[0] / n
    assert abs(ours - res.fun) <= 1e-10 * abs(res.fun)
