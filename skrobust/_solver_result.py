"""What every solver returns, and the gradient measure that judges it.

A solver of skrobust returns a :class:`SolverResult`: its point, the
iterations it took, whether it converged and, where it has them, the last
Hessian and the gradient at the point, which the next level of a
multilevel solve or a polishing step reuses. Convergence is judged by the
largest absolute gradient entry (:func:`_max_abs`, :func:`_gradient_norm`);
:func:`_report_iteration` is the per-iteration line of scipy's optimisers
at ``verbose=2``.

A module of its own so that the methods (:mod:`skrobust._lbfgs`,
:mod:`skrobust._newton`, ...) need not import the dispatch
(:mod:`skrobust._solvers`) that imports them.
"""

from dataclasses import dataclass

import numpy as np

from . import _progress


@dataclass
class SolverResult:
    coef: np.ndarray
    n_iter: int
    converged: bool
    message: str
    # The last Hessian Newton used (at or near coef), for the next level.
    hessian: np.ndarray | None = None
    # The gradient at coef where the solver has it (Newton's loops), so that
    # a polishing step needs no pass of its own to find it.
    gradient: np.ndarray | None = None
    # Where hessian was formed, when solve(remember_hessian_point=True) knows.
    hessian_coef: np.ndarray | None = None


def _gradient_norm(objective, coef):
    return float(np.max(np.abs(objective.loss_gradient(coef)[1]), initial=0.0))


def _report_iteration(intermediate_result):
    """scipy callback: a line per iteration at verbose 2."""
    _progress.say(2, lambda: f"  iteration: objective {intermediate_result.fun:.10g}")


def _max_abs(values):
    """``max |values|`` (0 for none), as a float: a gradient's norm.

    (The ndarray method: ``np.max`` costs several microseconds more a call,
    and Newton's loops take one per step.)
    """
    return float(np.abs(values).max(initial=0.0))
