"""The linear objective: gradient, Hessian and Hessian-vector product checked."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from scipy.optimize import approx_fprime

from skrobust._objective import LinearObjective
from skrobust.losses import (
    ConcomitantScaleLoss,
    FixedScaleLoss,
    GaussianNLLLoss,
    HuberRho,
    LogCoshRho,
    SquaredRho,
)


def make_problem(loss_name, sparse, weighted, fit_intercept, seed=0):
    rng = np.random.default_rng(seed)
    n, p = 120, 4
    X = rng.normal(size=(n, p)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, -2.0, 0.0]
    X[rng.random((n, p)) < 0.3] = 0.0
    y = X @ rng.normal(size=p) + rng.standard_t(3, size=n)
    sw = rng.uniform(0.2, 3.0, size=n) if weighted else np.ones(n)
    if loss_name == "huber":
        loss, predictors = FixedScaleLoss(HuberRho(1.35), 1.3), [(None, fit_intercept)]
    elif loss_name == "logcosh":
        loss, predictors = FixedScaleLoss(LogCoshRho(1.0), 0.8), [(None, fit_intercept)]
    elif loss_name == "concomitant":
        loss = ConcomitantScaleLoss(LogCoshRho(1.0))
        predictors = [(None, fit_intercept), ((), True)]
    else:  # two linear predictors, the second on a column subset
        loss = GaussianNLLLoss()
        predictors = [(None, fit_intercept), ([0, 2], fit_intercept)]
    l2 = [0.3] + [0.1] * (len(predictors) - 1)
    Xin = sp.csr_array(X) if sparse else X
    objective = LinearObjective(loss, Xin, y, sw, predictors, l2)
    coef = 0.1 * rng.normal(size=objective.n_coef)
    return objective, coef, X, y, sw


CASES = [
    (loss, sparse, weighted, fit)
    for loss in ["huber", "logcosh", "concomitant", "gaussian"]
    for sparse in [False, True]
    for weighted in [False, True]
    for fit in [False, True]
]


@pytest.mark.parametrize("loss_name, sparse, weighted, fit_intercept", CASES)
def test_gradient_hessian_and_hessp_match_finite_differences(
    loss_name, sparse, weighted, fit_intercept
):
    objective, coef, *_ = make_problem(loss_name, sparse, weighted, fit_intercept)
    value, grad, hess = objective.loss_gradient_hessian(coef)
    value2, grad2 = objective.loss_gradient(coef)
    assert value == pytest.approx(value2, rel=1e-14)
    assert_allclose(grad, grad2, rtol=1e-13, atol=1e-15)

    eps = 1e-7
    fd_grad = approx_fprime(coef, lambda c: objective.loss_gradient(c)[0], eps)
    assert_allclose(grad, fd_grad, rtol=1e-5, atol=1e-6)
    fd_hess = np.array(
        [
            approx_fprime(coef, lambda c, i=i: objective.loss_gradient(c)[1][i], eps)
            for i in range(objective.n_coef)
        ]
    )
    assert_allclose(hess, fd_hess, rtol=1e-5, atol=1e-5)
    assert_allclose(hess, hess.T, rtol=1e-12, atol=1e-14)

    v = np.random.default_rng(5).normal(size=objective.n_coef)
    assert_allclose(objective.hessp(coef, v), hess @ v, rtol=1e-10, atol=1e-12)


def test_value_is_the_documented_formula():
    """F = sum_i s_i L_i / sum_i s_i + penalty, in the original column units."""
    objective, coef, X, y, sw = make_problem("huber", False, True, True)
    ((w, b),) = objective.unstandardize(coef)
    r = y - X @ w - b
    expected = (
        sw @ (1.3**2 * HuberRho(1.35).value(r / 1.3)) / sw.sum() + 0.5 * 0.3 * w @ w
    )
    assert objective.loss_gradient(coef)[0] == pytest.approx(expected, rel=1e-12)


def test_sparse_equals_dense():
    dense, coef, *_ = make_problem("gaussian", False, True, True)
    sparse, *_ = make_problem("gaussian", True, True, True)
    # Sparse X is not centred, so compare in the original coefficients.
    coef_sparse = sparse.standardize(dense.unstandardize(coef))
    vd, gd, _ = dense.loss_gradient_hessian(coef)
    vs, _, _ = sparse.loss_gradient_hessian(coef_sparse)
    assert vd == pytest.approx(vs, rel=1e-12)
    assert_allclose(
        dense.raw_prediction(coef), sparse.raw_prediction(coef_sparse), rtol=1e-10
    )
    assert gd.shape == (dense.n_coef,)


def test_standardize_roundtrip_and_raw_prediction():
    objective, coef, X, y, sw = make_problem("gaussian", False, False, True)
    params = objective.unstandardize(coef)
    assert_allclose(objective.standardize(params), coef, rtol=1e-12, atol=1e-14)
    (w0, b0), (w1, b1) = params
    raw = objective.raw_prediction(coef)
    assert_allclose(raw[:, 0], X @ w0 + b0, rtol=1e-10, atol=1e-12)
    assert_allclose(raw[:, 1], X[:, [0, 2]] @ w1 + b1, rtol=1e-10, atol=1e-12)


def test_an_objective_with_a_small_design_is_freed_without_the_collector():
    """The small design's copy must not refer back to its objective: the
    cycle kept every fixed-scale objective of a MAD fit (and its copy of the
    design) alive until the garbage collector ran, doubling the fit's peak
    memory."""
    import gc
    import weakref

    objective, coef, *_ = make_problem("huber", False, False, True)
    objective.loss_gradient_hessian(coef)
    assert objective._small_design() is not None
    alive = weakref.ref(objective)
    gc.disable()
    try:
        del objective
        assert alive() is None
    finally:
        gc.enable()


def test_remembered_prediction_is_the_last_pass_and_only_at_its_point(monkeypatch):
    """``remember_prediction`` (the MAD scale's residuals after each solve)
    returns the latest pass's predictions, as a copy, at its point only."""
    rng = np.random.default_rng(3)
    n, p = 20_000, 4  # beyond the small-design copy: passes in row blocks
    X = rng.normal(size=(n, p)) + [0.0, 5.0, -2.0, 0.0]
    y = X @ rng.normal(size=p) + rng.standard_t(3, size=n)
    objective = LinearObjective(
        FixedScaleLoss(HuberRho(1.35), 1.3), X, y, np.ones(n), [(None, True)], [0.0]
    )
    objective.remember_prediction = True
    assert objective._small_design() is None
    coef, other = rng.normal(size=p + 1), rng.normal(size=p + 1)
    objective.loss_gradient(coef)
    ((w, b),) = objective.unstandardize(coef)

    def no_pass():
        raise AssertionError("a pass over X")

    with monkeypatch.context() as patch:
        patch.setattr(objective, "_row_blocks", no_pass)
        first = objective.raw_prediction(coef)
        assert_allclose(first[:, 0], X @ w + b, rtol=1e-10, atol=1e-10)
        first[:] = 0.0  # a copy: the next call is unaffected
        assert_allclose(objective.raw_prediction(coef)[:, 0], X @ w + b, rtol=1e-10)
    ((w2, b2),) = objective.unstandardize(other)
    assert_allclose(objective.raw_prediction(other)[:, 0], X @ w2 + b2, rtol=1e-10)


def test_blocks_cover_all_rows_without_copying_x(monkeypatch):
    """Small blocks give the same answer as one block; X is never written."""
    import skrobust._passes as module

    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 3))
    X.setflags(write=False)
    y = rng.normal(size=1000)
    args = (FixedScaleLoss(SquaredRho()), X, y, np.ones(1000), [(None, True)], [0.0])
    coef = rng.normal(size=4)
    reference = LinearObjective(*args).loss_gradient_hessian(coef)
    monkeypatch.setattr(module, "_BLOCK_ELEMENTS", 256)
    blocked = LinearObjective(*args).loss_gradient_hessian(coef)
    for a, b in zip(reference, blocked, strict=True):
        assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("offset", [0.0, 1e9])
def test_dense_design_predicts_what_the_pass_predicts(sparse, fit_intercept, offset):
    """dense_design() @ coef is the raw prediction, also for timestamp offsets."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 4)) * [1.0, 1e-3, 1e3, 5.0] + offset
    X[:, 0] = rng.normal(size=300)  # one column without the offset
    y = rng.normal(size=300)
    X_in = sp.csr_array(X) if sparse else X
    objective = LinearObjective(
        FixedScaleLoss(SquaredRho()),
        X_in,
        y,
        rng.uniform(0.5, 2.0, size=300),
        [(None, fit_intercept)],
        [0.0],
    )
    coef = rng.normal(size=objective.n_coef)
    rows = rng.random(300) < 0.5
    assert_allclose(
        objective.dense_design(rows) @ coef,
        objective.raw_prediction(coef)[rows, 0],
        rtol=1e-9,
        atol=1e-9,
    )


@pytest.mark.parametrize("offset", [0.0, 50.0, 1e3, 1e6])
@pytest.mark.parametrize("weighted", [False, True])
def test_column_statistics_are_the_weighted_mean_and_std(offset, weighted):
    """Raw moments (offsets up to 100 spreads) and centred ones agree with numpy.

    The reference is computed on the exactly centred columns (in extended
    precision where the platform has it), so that the offset cannot cost it
    digits.
    """
    from skrobust._objective import _weighted_column_stats

    rng = np.random.default_rng(5)
    n = 20_000
    spread = np.array([1.0, 0.01, 100.0])
    X = (rng.normal(size=(n, 3)) + offset) * spread
    sample_weight = rng.uniform(0.5, 2.0, size=n) if weighted else np.ones(n)
    mean, scale = _weighted_column_stats(X, sample_weight, center=True)
    Xl = X.astype(np.longdouble)
    expected_mean = np.average(Xl, axis=0, weights=sample_weight)
    expected_std = np.sqrt(
        np.average((Xl - expected_mean) ** 2, axis=0, weights=sample_weight)
    )
    assert_allclose(mean, expected_mean.astype(float), rtol=1e-12)
    # Only conditioning depends on the scale: 1e-8 is ample, and far below
    # what raw moments would leave at offsets of 1e6 spreads (~1e-4).
    assert_allclose(scale, expected_std.astype(float), rtol=1e-8)


def test_column_statistics_when_the_weight_sits_on_rows_the_pilot_skips():
    """Raw moments are checked on all rows: here the pilot (every 4th row)
    sees only near-weightless rows with a large spread, while the weighted
    column is 1e6 with a spread of 1e-4, where raw moments cancel."""
    from skrobust._objective import _weighted_column_stats

    rng = np.random.default_rng(0)
    n = 4000
    heavy = np.arange(n) % 2 == 1
    x = np.where(heavy, 1e6 + 1e-4 * rng.normal(size=n), 1e6 * rng.normal(size=n))
    w = np.where(heavy, 1.0, 1e-20)
    X = np.c_[x, rng.normal(size=n)]
    mean, scale = _weighted_column_stats(X, w, center=True)
    expected_mean = np.average(x, weights=w)
    expected_std = np.sqrt(np.average((x - expected_mean) ** 2, weights=w))
    assert mean[0] == pytest.approx(expected_mean, rel=1e-12)
    assert scale[0] == pytest.approx(expected_std, rel=1e-6)


def test_line_search_on_a_linear_stretch_does_not_divide_by_zero():
    """Where every slope along the line is the same (a step below the
    rounding of the iterate, seen with a bandwidth of 1e-40), the regula
    falsi of the exact line search divided by zero; it bisects instead and
    returns a step within its bracket."""
    from skrobust._newton import _zero_of_slope

    class Linear:
        def loss_gradient(self, coef):
            return -float(coef.sum()), -np.ones_like(coef)

    direction = np.array([1.0, 0.0])
    step = _zero_of_slope(Linear(), np.zeros(2), direction, -1.0)
    assert np.isfinite(step) and step > 0


def test_flat_directions_skip_a_predictor_whose_slopes_are_all_penalised(monkeypatch):
    """A flat direction moves some slope (the intercept alone moves every
    row), so a ridge on all of a predictor's slopes curves it: only the
    unpenalised predictor's design Gram matrix is formed, and the flat
    direction of a duplicated column is found there alone."""
    from skrobust.losses import GaussianNLLLoss

    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 3))
    X[:, 2] = X[:, 0]
    objective = LinearObjective(
        GaussianNLLLoss(1e-8),
        X,
        rng.normal(size=400),
        np.ones(400),
        [(None, True), (None, True)],
        [0.0, 1e-4],
    )
    grams = []
    design_grams = LinearObjective._design_grams

    def spy(self, j, directions=None):
        grams.append(j)
        return design_grams(self, j, directions)

    monkeypatch.setattr(LinearObjective, "_design_grams", spy)
    directions = objective.null_directions()
    assert set(grams) == {0}
    assert directions.shape == (objective.n_coef, 1)
    # Columns 0 and 2 in opposite ways (standardised equally), on the mean.
    assert_allclose(np.abs(directions[[0, 2], 0]), np.sqrt(0.5), rtol=1e-8)
    assert_allclose(directions[[1, 3], 0], 0.0, atol=1e-8)
    assert_allclose(directions[4:, 0], 0.0, atol=0)
