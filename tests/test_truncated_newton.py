"""The truncated Newton finish after L-BFGS: it stops when it stalls, and warns never.

``_newton_cg_line_search`` takes over where L-BFGS stopped at the rounding
level of the objective's value; each of its directions costs up to
``_CG_MAX_ITER`` Hessian-vector products, so directions that do not bring
the gradient down must end it (``_descend(..., stall=True)``), and a
direction of zero curvature must not leak scipy's division by zero.
"""

import numpy as np
import pytest
import scipy.sparse.linalg

from skrobust import _newton, _solver_result
from skrobust._objective import LinearObjective
from skrobust.losses import FixedScaleLoss, LogCoshRho


class Quadratic:
    """``0.5 c' A c`` with ``A = diag(eigenvalues)``."""

    def __init__(self, eigenvalues):
        self.a = np.asarray(eigenvalues, dtype=float)
        self.n_coef = self.a.size

    def loss_gradient(self, coef):
        return 0.5 * float(coef @ (self.a * coef)), self.a * coef


class FlatHuber:
    """``sum huber_delta(c_i)`` with a tiny ``delta``: no curvature away from 0."""

    delta = 1e-12

    def __init__(self, n_coef):
        self.n_coef = n_coef

    def loss_gradient(self, coef):
        inside = np.abs(coef) <= self.delta
        value = np.where(
            inside, 0.5 * coef**2, self.delta * np.abs(coef) - 0.5 * self.delta**2
        )
        return float(value.sum()), np.where(inside, coef, self.delta * np.sign(coef))

    def hessp(self, coef, vector):
        return np.where(np.abs(coef) <= self.delta, vector, 0.0)


def steepest_descent(coef, grad, extra):
    return -grad


def test_stalled_steps_end_the_descent():
    # Steepest descent with exact steps on a quadratic of condition 1e4
    # shrinks the gradient by about 1 - 2e-4 per step: stalled.
    objective = Quadratic([1.0, 1e4])
    start = _solver_result.SolverResult(np.array([1.0, 1e-4]), 0, False, "")
    _, grad, n_iter = _newton._descend(
        objective, start, 50, 1e-12, steepest_descent, stall=True
    )
    assert n_iter == _newton._STALLED_STEPS
    _, _, n_iter = _newton._descend(objective, start, 50, 1e-12, steepest_descent)
    assert n_iter == 50


def test_steps_that_converge_are_not_stalled():
    # Newton directions reach the minimum of a quadratic in one step.
    objective = Quadratic([1.0, 1e4])
    start = _solver_result.SolverResult(np.array([1.0, 1.0]), 0, False, "")
    coef, grad, n_iter = _newton._descend(
        objective, start, 50, 1e-12, lambda c, g, extra: -g / objective.a, stall=True
    )
    assert n_iter == 1
    assert np.max(np.abs(grad)) <= 1e-12


@pytest.mark.parametrize("n_coef", [1, 5])
def test_zero_curvature_direction_warns_not(n_coef):
    # At a point where every coordinate is in the linear zone, H v = 0:
    # conjugate gradients divide by zero. (pytest turns warnings into errors.)
    objective = FlatHuber(n_coef)
    start = _solver_result.SolverResult(np.linspace(1.0, 2.0, n_coef), 0, True, "")
    result = _newton._newton_cg_line_search(objective, start, 20, 1e-20)
    value_before = objective.loss_gradient(start.coef)[0]
    assert objective.loss_gradient(result.coef)[0] < value_before
    assert np.all(np.isfinite(result.coef))


def test_products_reuse_the_rows_curvature_of_their_point():
    # A LinearObjective keeps each row's loss Hessian from the pass at a
    # point: the conjugate-gradient products of a direction then evaluate
    # no loss. Re-evaluating it in each product (hessp) cost 2.1 of 4.4 s
    # of a smoothed quantile fit on a one-hot design. (700 x 150: above the
    # small-design copy, whose products are its own.)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 150)) * np.geomspace(1e-2, 1e2, 150)
    y = X @ rng.standard_normal(150) / 30 + rng.standard_normal(700)
    objective = LinearObjective(
        FixedScaleLoss(LogCoshRho(0.5)),
        X,
        (y - np.median(y)) / np.std(y),
        np.ones(len(y)),
        [(None, True)],
        [0.0],
    )
    evaluations = {"loss": 0}
    loss = objective.loss
    for name in ("loss_gradient", "loss_gradient_hessian"):
        method = getattr(loss, name)

        def counted(*args, _method=method, **kwargs):
            evaluations["loss"] += 1
            return _method(*args, **kwargs)

        setattr(loss, name, counted)
    products = {"n": 0, "loss": 0}
    cg = scipy.sparse.linalg.cg

    def counted_cg(A, b, **kwargs):
        def matvec(v):
            products["n"] += 1
            return A.matvec(v)

        operator = scipy.sparse.linalg.LinearOperator(A.shape, matvec=matvec)
        before = evaluations["loss"]
        solution = cg(operator, b, **kwargs)
        products["loss"] += evaluations["loss"] - before
        return solution

    start = _solver_result.SolverResult(np.zeros(objective.n_coef), 0, False, "")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scipy.sparse.linalg, "cg", counted_cg)
        result = _newton._newton_cg_line_search(objective, start, 5, 1e-10)
    assert result.n_iter >= 1 and products["n"] > 5 * result.n_iter
    # The loss is evaluated by the passes at the points and along the line
    # searches, never inside the conjugate gradients.
    assert evaluations["loss"] > 0 and products["loss"] == 0
    # The same step as the Hessian's own products (curvature from a pass).
    value, grad, product = objective.loss_gradient_curvature(result.coef)
    v = rng.standard_normal(objective.n_coef)
    np.testing.assert_allclose(
        product(v), objective.hessian(result.coef) @ v, rtol=1e-10, atol=1e-13
    )
