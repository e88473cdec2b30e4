"""The sketched preconditioner of a sparse design, factored by Woodbury's identity.

``skrobust._woodbury_factor`` inverts ``P = D + Z' W Z`` (a diagonal plus the
Gram matrix of a few standardised sparse rows) through an ``m x m``
factorisation. Oracles: ``P`` formed densely from the standardised rows and
solved by ``numpy.linalg.solve``; the preconditioner's formula (the module
docstring of ``skrobust._sketched_preconditioner``) written out densely; the
gradient of the documented objective at the fit.
"""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from numpy.testing import assert_allclose
from test_heteroscedastic_floor import sparse_wide_data
from test_heteroscedastic_wide import documented_objective, theta_of

from skrobust import HeteroscedasticRegressor, _sketched_preconditioner, _solvers
from skrobust._base import least_squares_start
from skrobust._heteroscedastic import likelihood_objective
from skrobust._sketched_preconditioner import (
    _diagonals_and_scores,
    sketched_block_factor,
)
from skrobust._woodbury_factor import WoodburyFactor


def _objective(X, y, fit_intercept=True, weights=None):
    weights = np.ones(X.shape[0]) if weights is None else weights
    estimator = HeteroscedasticRegressor(fit_intercept=fit_intercept)
    ls_objective, _, _ = least_squares_start(X, y, weights, fit_intercept, 0.0)
    return likelihood_objective(
        estimator, X, y, weights, None, 1e-3, ls_objective.column_stats
    )


def _standardised(X, pred):
    """Rows of ``pred``'s standardised design, its intercept's column of ones last."""
    Z = (X.toarray() - pred.shift) * pred.inv_scale
    return np.c_[Z, np.ones(X.shape[0])] if pred.fit_intercept else Z


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_woodbury_factor_inverts_the_formed_matrix(fit_intercept):
    """``P^-1 v`` against ``numpy.linalg.solve`` of ``P`` formed from the
    standardised rows (implicit centring, the intercept), with weights over
    six orders of magnitude and a diagonal over four."""
    X, y = sparse_wide_data(600, 150, per_row=4)
    objective = _objective(X, y, fit_intercept)
    pred = objective.predictors[0]
    rng = np.random.default_rng(3)
    rows = np.sort(rng.choice(600, 90, replace=False))
    d = 10.0 ** rng.uniform(-3, 3, rows.size)
    D = 10.0 ** rng.uniform(-2, 2, pred.p + fit_intercept)
    Z = _standardised(X[rows], pred)
    P = Z.T @ (d[:, None] * Z) + np.diag(D)
    factor = WoodburyFactor(X[rows], pred, d, D)
    assert factor.ok
    v = rng.standard_normal((pred.p + fit_intercept, 3))
    for column in v.T:
        assert_allclose(factor.solve(column), np.linalg.solve(P, column), rtol=1e-8)


def test_sparse_block_factor_is_the_documented_preconditioner(monkeypatch):
    """The sparse preconditioner of a block of more than
    ``_SPARSE_FEW_ROWS_MAX_COEF`` coefficients (1000; 500 here, so that a
    small design takes that path) keeps ``p / 2`` rows exactly (where the
    dense path keeps ``p``): ``P`` of the module docstring formed densely,
    with those rows, the others' diagonal and the penalty, at a point of
    the heteroscedastic likelihood."""
    monkeypatch.setattr(_sketched_preconditioner, "_SPARSE_FEW_ROWS_MAX_COEF", 500)
    X, y = sparse_wide_data(1500, 600, per_row=5)
    objective = _objective(X, y)
    coef = np.random.default_rng(4).normal(scale=0.05, size=objective.n_coef)
    _, _, product = objective.loss_gradient_curvature(coef)
    curvature = product.curvature
    factor = sketched_block_factor(objective, curvature)

    weights = np.maximum(np.einsum("njj->nj", curvature), 0.0)
    _, scores = _diagonals_and_scores(objective, weights)
    rng = np.random.default_rng(6)
    for j, pred in enumerate(objective.predictors):
        size = pred.p + pred.fit_intercept
        top = np.argsort(scores[:, j])[-int(np.ceil(0.5 * size)) :]
        d = weights[:, j] / objective.sum_weight
        Z = _standardised(X, pred)
        chosen = np.isin(np.arange(X.shape[0]), top)
        penalty = objective.penalty[pred.slice]
        P = Z[chosen].T @ (d[chosen, None] * Z[chosen])
        P += np.diag((d[~chosen, None] * Z[~chosen] ** 2).sum(axis=0) + penalty)
        v = rng.standard_normal(size)
        full = np.zeros(objective.n_coef)
        full[pred.slice] = v
        assert_allclose(
            factor.solve(full)[pred.slice], np.linalg.solve(P, v), rtol=1e-7
        )


def test_sparse_wide_fit_factors_matrices_of_half_the_order(monkeypatch):
    """A sparse 4000 x 600 design (5 entries a row), solved as if its
    Hessian were too dear and its blocks beyond ``_SPARSE_FEW_ROWS_MAX_COEF``:
    the preconditioner's factorisations are of order at most ``p / 2 + 1``
    (Woodbury's identity on half the rows), where they were ``p + 1`` (a
    dense Cholesky factorisation of each block, eight times the flops).
    The fit converges at the defaults (warnings are errors) and is
    stationary for the documented objective."""
    monkeypatch.setattr(_solvers, "_NEWTON_FALLBACK_WORK", 0.0)
    monkeypatch.setattr(_sketched_preconditioner, "_SPARSE_FEW_ROWS_MAX_COEF", 500)
    orders = []
    dpotrf = scipy.linalg.lapack.dpotrf

    def recording(a, *args, **kwargs):
        orders.append(a.shape[0])
        return dpotrf(a, *args, **kwargs)

    monkeypatch.setattr(scipy.linalg.lapack, "dpotrf", recording)
    X, y = sparse_wide_data(4000, 600, per_row=5)
    model = HeteroscedasticRegressor().fit(X, y)
    assert orders and max(orders) <= 301
    assert model.n_iter_ < 200

    sw = np.ones(len(y))
    fun, _ = documented_objective(X.toarray(), y, sw, alpha=1e-4, floor=1e-8)
    _, grad, _ = fun(theta_of(model))
    # The solver's test (tol = 1e-10 on the weighted-mean gradient in
    # standardised units) in the units of y, summed over rows.
    s_y = np.std(y)
    scale = len(y) * np.r_[np.full(601, 1.0 / s_y), np.ones(601)]
    assert np.max(np.abs(grad) / scale) <= 1e-8
    assert sp.issparse(X)


def test_woodbury_solve_uses_triangular_solves(monkeypatch):
    """The solve by two BLAS triangular solves, not LAPACK's potrs (whose
    trsm packs the triangle first: three times as long at m = 1001), with
    the same ``P^-1 v`` as ``numpy.linalg.solve`` of ``P`` formed densely."""

    def refused(*args, **kwargs):
        raise AssertionError("potrs")

    X, y = sparse_wide_data(600, 150, per_row=4)
    pred = _objective(X, y).predictors[0]
    rng = np.random.default_rng(6)
    rows = np.sort(rng.choice(600, 90, replace=False))
    d = 10.0 ** rng.uniform(-3, 3, rows.size)
    D = 10.0 ** rng.uniform(-2, 2, pred.p + 1)
    Z = _standardised(X[rows], pred)
    P = Z.T @ (d[:, None] * Z) + np.diag(D)
    factor = WoodburyFactor(X[rows], pred, d, D)
    monkeypatch.setattr(scipy.linalg.lapack, "dpotrs", refused)
    v = rng.standard_normal(pred.p + 1)
    assert_allclose(factor.solve(v), np.linalg.solve(P, v), rtol=1e-8)


def test_shortened_directions_evaluate_values_only(monkeypatch):
    """The trials of ``_sketched_newton._shortened`` evaluate the objective's
    value without its gradient (half a pass's products): no
    ``loss_gradient``, and the direction quartered until the value, the
    documented objective's, is no higher."""
    from skrobust._sketched_newton import _shortened

    X, y = sparse_wide_data(600, 150, per_row=4)
    objective = _objective(X, y)
    coef = np.random.default_rng(7).normal(scale=0.05, size=objective.n_coef)
    value, grad = objective.loss_gradient(coef)
    direction = -1e3 * grad

    def refused(*args, **kwargs):
        raise AssertionError("loss_gradient")

    monkeypatch.setattr(objective, "loss_gradient", refused)
    short, slope = _shortened(objective, coef, value, direction, grad @ direction)
    monkeypatch.undo()
    ratio = short[0] / direction[0]
    assert ratio in {0.25**k for k in range(1, 61)}
    assert objective.loss_gradient(coef + short)[0] <= value
    assert objective.loss_gradient(coef + 4 * short)[0] > value
