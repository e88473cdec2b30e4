"""The truncated Newton finish after L-BFGS: it stops when it stalls, and warns never.

``_newton_cg_line_search`` takes over where L-BFGS stopped at the rounding
level of the objective's value; each of its directions costs up to
``_CG_MAX_ITER`` Hessian-vector products, so directions that do not bring
the gradient down must end it (``_descend(..., stall=True)``), and a
direction of zero curvature must not leak scipy's division by zero.
"""

import numpy as np
import pytest

from skrobust import _solvers


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


def steepest_descent(coef, grad):
    return -grad


def test_stalled_steps_end_the_descent():
    # Steepest descent with exact steps on a quadratic of condition 1e4
    # shrinks the gradient by about 1 - 2e-4 per step: stalled.
    objective = Quadratic([1.0, 1e4])
    start = _solvers.SolverResult(np.array([1.0, 1e-4]), 0, False, "")
    _, grad, n_iter = _solvers._descend(
        objective, start, 50, 1e-12, steepest_descent, stall=True
    )
    assert n_iter == _solvers._STALLED_STEPS
    _, _, n_iter = _solvers._descend(objective, start, 50, 1e-12, steepest_descent)
    assert n_iter == 50


def test_steps_that_converge_are_not_stalled():
    # Newton directions reach the minimum of a quadratic in one step.
    objective = Quadratic([1.0, 1e4])
    start = _solvers.SolverResult(np.array([1.0, 1.0]), 0, False, "")
    coef, grad, n_iter = _solvers._descend(
        objective, start, 50, 1e-12, lambda c, g: -g / objective.a, stall=True
    )
    assert n_iter == 1
    assert np.max(np.abs(grad)) <= 1e-12


@pytest.mark.parametrize("n_coef", [1, 5])
def test_zero_curvature_direction_warns_not(n_coef):
    # At a point where every coordinate is in the linear zone, H v = 0:
    # conjugate gradients divide by zero. (pytest turns warnings into errors.)
    objective = FlatHuber(n_coef)
    start = _solvers.SolverResult(np.linspace(1.0, 2.0, n_coef), 0, True, "")
    result = _solvers._newton_cg_line_search(objective, start, 20, 1e-20)
    value_before = objective.loss_gradient(start.coef)[0]
    assert objective.loss_gradient(result.coef)[0] < value_before
    assert np.all(np.isfinite(result.coef))
