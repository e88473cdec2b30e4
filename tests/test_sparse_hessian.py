"""Newton's method on sparse Hessians: one-hot designs beyond 300 coefficients.

The smoothed quantile fit of a sparse design whose Hessian ``X' D X`` is
sparse (numeric columns and one-hot levels) takes Newton iterations on that
sparse matrix where it took L-BFGS (see ``skrobust._sparse_hessian``).
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import QuantileRegressor as SklearnQuantileRegressor
from test_lad_scale import assert_is_fixed_point
from test_mestimator import _one_hot_design

import skrobust._objective as objective_module
import skrobust._preconditioned_newton as preconditioned_newton
import skrobust._sparse_newton as sparse_newton
from skrobust import HuberRegressor, QuantileRegressor
from skrobust._quantile_smooth import smoothed_objective
from skrobust._sparse_hessian import ArrowPreconditioner
from skrobust.losses import SmoothedPinballRho


@pytest.fixture(scope="module")
def weighted_one_hot():
    # 353 coefficients: beyond the dense Newton's limit.
    X, y = _one_hot_design(n=10_000, levels=350)
    weights = np.random.default_rng(1).integers(1, 4, X.shape[0]).astype(float)
    return X, y, weights


def count_passes(monkeypatch):
    """The passes over X from now on (``LinearObjective._pass`` calls)."""
    passes = []
    original = objective_module.LinearObjective._pass

    def counted(self, *args, **kwargs):
        passes.append(self.n_samples)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(objective_module.LinearObjective, "_pass", counted)
    return passes


def test_sparse_hessian_is_the_dense_one(weighted_one_hot):
    """Products and diagonal of the sparse Hessian against the dense matrix
    of the same objective, with an intercept (the implicit centring's
    rank-one terms), weights and rows of zero curvature."""
    X, y, weights = weighted_one_hot
    rho = SmoothedPinballRho(0.3, 0.05)
    objective = smoothed_objective(rho, X, y, weights, True, None, True)
    coef = np.random.default_rng(2).normal(scale=0.1, size=objective.n_coef)
    coef[-1] = np.median(y)
    value, grad, sparse = objective.loss_gradient_sparse_hessian(coef)
    dense_value, dense_grad, dense = objective.loss_gradient_hessian(coef)
    assert value == pytest.approx(dense_value, rel=1e-12)
    assert_allclose(grad, dense_grad, rtol=1e-10, atol=1e-14)
    top = np.max(np.abs(dense))
    assert_allclose(sparse.diagonal(), np.diag(dense), rtol=1e-10, atol=1e-12 * top)
    identity = np.eye(objective.n_coef)
    columns = np.column_stack([sparse.matvec(e) for e in identity])
    assert_allclose(columns, dense, rtol=1e-10, atol=1e-12 * top)


def test_one_hot_smoothed_fit_reaches_the_optimum_in_fewer_passes(
    weighted_one_hot, monkeypatch
):
    """Where L-BFGS took 286 passes over X and stopped 1.4e-5 above the
    linear programme's optimum, Newton's iterations on the sparse Hessian
    take 155 and end 2e-7 above it."""
    X, y, weights = weighted_one_hot
    passes = count_passes(monkeypatch)
    fit = QuantileRegressor(solver="smooth").fit(X, y, sample_weight=weights)
    monkeypatch.undo()
    oracle = SklearnQuantileRegressor(quantile=0.5, alpha=0.0, solver="highs")
    oracle.fit(X, y, sample_weight=weights)

    def pinball(model):
        r = y - model.predict(X)
        return weights @ np.maximum(0.5 * r, -0.5 * r) / weights.sum()

    optimum = pinball(oracle)
    assert optimum * (1 - 1e-9) <= pinball(fit) <= optimum * (1 + 1e-6)
    assert len(passes) < 200


@pytest.mark.parametrize("bandwidth", [0.3, 0.002])
def test_arrow_preconditioner_is_the_raised_hessians_inverse(
    weighted_one_hot, bandwidth
):
    """The direct solve of the arrow structure against the dense matrix:
    ``(H + E + floor on the levels)^{-1}``, where the levels sum to the
    intercept's column (``H`` singular) and, at the small bandwidth, many
    levels have no curved row."""
    X, y, weights = weighted_one_hot
    objective = smoothed_objective(
        SmoothedPinballRho(0.5, bandwidth), X, y, weights, True, None, True
    )
    rng = np.random.default_rng(3)
    coef = rng.normal(scale=0.1, size=objective.n_coef)
    coef[-1] = np.median(y)
    _, _, sparse = objective.loss_gradient_sparse_hessian(coef)
    dense = objective.loss_gradient_hessian(coef)[2]
    floor = 1e-8 * np.max(np.diag(dense))
    extra = np.zeros(objective.n_coef)
    extra[: X.shape[1] : 7] = 1e-3  # (a raised floor on some columns)
    preconditioner = ArrowPreconditioner.of(sparse, extra, floor)
    assert preconditioner is not None
    levels = np.zeros(objective.n_coef)
    levels[2 : X.shape[1]] = floor  # (the two numeric columns are dense)
    matrix = dense + np.diag(extra + levels)
    rhs = rng.normal(size=objective.n_coef)
    solved = preconditioner.solve(rhs)
    assert_allclose(matrix @ solved, rhs, rtol=0, atol=1e-7 * np.max(np.abs(rhs)))


def test_arrow_preconditioner_stays_positive_definite(weighted_one_hot):
    """A level of negative curvature (the rows of a likelihood that is not
    convex can curve down) makes the arrow solve's diagonal block negative
    there: the solve was an indefinite preconditioner, whose conjugate
    gradients step uphill or break down. Its curvature is floored at zero:
    the solve is positive definite, or there is none (the diagonal
    preconditioner takes over), as where a curvature is not finite."""
    X, y, weights = weighted_one_hot
    objective = smoothed_objective(
        SmoothedPinballRho(0.5, 0.3), X, y, weights, True, None, True
    )
    coef = np.zeros(objective.n_coef)
    coef[-1] = np.median(y)
    _, _, sparse = objective.loss_gradient_sparse_hessian(coef)
    gram = sparse._gram(0, 0)
    level = 7  # (a light column: the two numeric columns are heavy)
    assert level in sparse._split.light
    position = int(np.flatnonzero(sparse._split.light == level)[0])
    # (A one-hot level's column is one on its rows: its curvature is also
    # its coupling to the intercept.)
    gram.ll[position] = gram.xd[level] = -10.0 * np.max(gram.ll)
    floor = 1e-8 * np.max(sparse.diagonal())
    extra = np.zeros(objective.n_coef)
    preconditioner = ArrowPreconditioner.of(sparse, extra, floor)
    if preconditioner is not None:
        rng = np.random.default_rng(4)
        probes = np.vstack(
            [np.eye(objective.n_coef), rng.normal(size=(20, objective.n_coef))]
        )
        assert all(probe @ preconditioner.solve(probe) > 0 for probe in probes)
    gram.ll[position] = np.nan
    assert ArrowPreconditioner.of(sparse, extra, floor) is None


def test_one_hot_newton_directions_take_few_products(weighted_one_hot, monkeypatch):
    """Conjugate gradients preconditioned by the arrow solve reach the
    forcing term of every Newton direction of a smoothed fit in one to
    three products (mostly one); the diagonal preconditioner took 17 to
    81 on this design, 100 to 200 on 1e5 x 1005 (the standardised
    coordinates' centring couples each level to the intercept)."""
    X, y, weights = weighted_one_hot
    runs = []
    original = preconditioned_newton._preconditioned_cg

    def counted(product, rhs, factor, target, max_iter):
        x, used, solved = original(product, rhs, factor, target, max_iter)
        # (A probe's direction, capped, is only taken if solved.)
        if solved or max_iter != sparse_newton.PROBE_MAX_PRODUCTS:
            runs.append((used, solved))
        return x, used, solved

    monkeypatch.setattr(preconditioned_newton, "_preconditioned_cg", counted)
    QuantileRegressor(solver="smooth").fit(X, y, sample_weight=weights)
    assert runs
    assert all(solved and used <= 3 for used, solved in runs)


def test_one_hot_lad_scale_fits_take_sparse_newton(weighted_one_hot, monkeypatch):
    """The smoothed LAD fits of ``scale="lad"`` on a one-hot design take
    Newton's iterations on the sparse Hessian, each fit after the first
    warm-started from the last: 37 passes over X for the whole Huber fit,
    where L-BFGS and its Newton-CG finish took 56, to the same fixed
    point."""
    X, y, weights = weighted_one_hot
    passes = count_passes(monkeypatch)
    fit = HuberRegressor(scale="lad").fit(X, y, sample_weight=weights)
    monkeypatch.undo()
    assert len(passes) <= 45
    # The fixed point of the scale, to its tolerance (1e-6).
    assert_is_fixed_point(fit, X.toarray(), y, weights=weights)
    reference = HuberRegressor(scale=fit.scale_).fit(X, y, sample_weight=weights)
    assert_allclose(fit.predict(X), reference.predict(X), rtol=0, atol=1e-7)


def test_one_hot_level_steps_end_newtons_crawl(weighted_one_hot, monkeypatch):
    """At q = 0.9 levels whose rows all sit beyond the kernel's reach made
    Newton's steps crawl (gradient x0.36 a step) through every bandwidth of
    the continuation: 988 passes over X. The exact 1-D minimisation of each
    level's coefficient (``_LevelSteps``) after a slow step ends it: 225
    passes, to the linear programme's optimum."""
    X, y, weights = weighted_one_hot
    passes = count_passes(monkeypatch)
    fit = QuantileRegressor(quantile=0.9, solver="smooth").fit(
        X, y, sample_weight=weights
    )
    monkeypatch.undo()
    assert len(passes) <= 300
    oracle = SklearnQuantileRegressor(quantile=0.9, alpha=0.0, solver="highs")
    oracle.fit(X, y, sample_weight=weights)

    def loss(model):
        r = y - model.predict(X)
        return np.average(r * (0.9 - (r < 0)), weights=weights)

    assert loss(fit) <= loss(oracle) * (1 + 1e-6)
