"""Dense linear algebra of Newton's systems ``H d = -g``.

The matrices are Hessians and Gram matrices: symmetric, often badly scaled
across blocks of unknowns (a collapsing scale has curvature ``1e-14`` of
the coefficients'), sometimes singular (constant or collinear columns,
fewer rows on Huber's quadratic part than coefficients). Matrices and
vectors only: no objective, no loss, no ``X``.

Solves
    :class:`CholeskyFactor` factors the matrix scaled to a unit diagonal,
    so that its test of definiteness does not depend on how the unknowns
    are scaled, and refuses one that is not clearly definite
    (:func:`cholesky_solve`). :func:`min_norm_solve` gives the
    minimum-norm solution from an eigendecomposition whose cut-off suits a
    Gram matrix; :func:`regular_solve` takes Cholesky's where it can.
Regularised Newton directions
    Where the Hessian is singular or nearly so, :func:`_newton_direction`
    raises its small eigenvalues to a floor (:func:`_regularised_direction`,
    in the units of :func:`_curvature_units` under a ridge), a floor that
    :class:`_DirectionFloor` adapts to the steps taken.
Secant updates
    :func:`secant_update` corrects an older Hessian by BFGS's update along
    a step, for the chord steps of :func:`skrobust._newton._newton_steps`.
"""

import numpy as np
import scipy.linalg.lapack

# Relative eigenvalue cut-off of min_norm_solve (squared singular values):
# far above its rounding errors, so that a rank deficiency is seen as one;
# it ignores only columns collinear to 1e-6 after standardisation.
_GRAM_RCOND = 1e-12

# Newton directions come from a Cholesky factorisation of the Hessian scaled
# to a unit diagonal, unless a pivot falls below this (squared, relative):
# then from its eigenvalues, the small ones raised (see _newton_direction).
_CHOLESKY_MIN_PIVOT = 1e-10


def cholesky_solve(matrix, rhs):
    """``matrix^-1 rhs`` for a symmetric ``matrix``; None unless clearly definite.

    By the Cholesky factor of ``D matrix D``, ``D = diag(matrix)^-1/2``, so
    that the test of its pivots (each squared above
    ``_CHOLESKY_MIN_PIVOT``) does not depend on how the unknowns are scaled
    (see :class:`CholeskyFactor`).
    """
    factor = CholeskyFactor.of(matrix)
    return None if factor is None else factor.solve(rhs)


class CholeskyFactor:
    """The Cholesky factor of a symmetric matrix scaled to a unit diagonal.

    ``matrix = D^-1 L L' D^-1`` with ``D = diag(matrix)^-1/2``; built by
    :meth:`of`, which refuses matrices that are not clearly positive
    definite (a squared pivot of ``L`` at or below ``_CHOLESKY_MIN_PIVOT``).
    """

    def __init__(self, lower, d):
        self.lower, self.d = lower, d

    @classmethod
    def of(cls, matrix):
        """The factor of ``matrix``, or None unless it is clearly definite."""
        # (ndarray methods and a diagonal view: numpy's functions np.diag,
        # np.all and np.min cost more than the factorisation at 20 unknowns,
        # and a Newton fit factors a Hessian per step.)
        matrix = np.asarray(matrix)
        diag = matrix.diagonal()
        if not (diag.min(initial=np.inf) > 0 and np.isfinite(matrix).all()):
            return None
        d = 1.0 / np.sqrt(diag)
        # (matrix * d[:, None] * d[None, :], one temporary fewer.)
        scaled = matrix * d[:, None]
        scaled *= d
        # LAPACK's potrf/potrs directly: scipy.linalg's wrappers cost more
        # than the factorisation of a few dozen unknowns.
        lower, info = scipy.linalg.lapack.dpotrf(scaled, lower=1, clean=0)
        if info != 0 or not lower.diagonal().min() ** 2 > _CHOLESKY_MIN_PIVOT:
            return None
        return cls(lower, d)

    def solve(self, rhs):
        """``matrix^-1 rhs``."""
        u, _ = scipy.linalg.lapack.dpotrs(self.lower, rhs * self.d, lower=1)
        return u * self.d


def min_norm_solve(gram, rhs):
    """Minimum-norm solution of ``gram @ x = rhs`` for a symmetric PSD ``gram``.

    Eigenvalues below ``1e-12`` times the largest count as zero.
    ``np.linalg.lstsq``'s default cut-off (``eps * size``) suits a design
    matrix, not a Gram or Hessian matrix, whose rounding errors are of that
    order: it keeps rounding-level eigenvalues and amplifies rounding in
    ``rhs`` into an arbitrary null-space component.
    """
    eigenvalues, vectors = np.linalg.eigh(gram)
    keep = eigenvalues > _GRAM_RCOND * max(eigenvalues[-1], 0.0)
    vectors = vectors[:, keep]
    return vectors @ ((vectors.T @ rhs) / eigenvalues[keep])


def regular_solve(gram, rhs):
    """:func:`min_norm_solve`, by Cholesky when ``gram`` is well conditioned.

    The Cholesky factor of ``gram`` scaled to a unit diagonal (see
    :class:`CholeskyFactor`) solves a regular system at a fraction of
    an eigendecomposition's cost; a singular or nearly singular one (a
    pivot below ``_CHOLESKY_MIN_PIVOT``) gets the minimum-norm solution.
    """
    solution = cholesky_solve(gram, rhs)
    return min_norm_solve(gram, rhs) if solution is None else solution


# Eigenvalues of a Hessian below this fraction of the largest are raised to
# it for _newton_line_search's directions...
_DIRECTION_RCOND = 1e-8
# ... a fraction shrunk by _FLOOR_SHRINK after each step that went the full
# length of its regularised direction, down to _MIN_DIRECTION_RCOND, and
# raised by the inverse of a shorter step's length (at least back to
# _DIRECTION_RCOND), up to _MAX_DIRECTION_RCOND (see _DirectionFloor).
_FLOOR_SHRINK = 0.1
_MIN_DIRECTION_RCOND = 1e-14
_MAX_DIRECTION_RCOND = 1e-2
# The regularised directions measure curvature in units of the loss's
# largest (see _curvature_units), but not below this. (Swept over 144
# fixed-scale fits with a ridge on columns of spreads 1e-8 to 1e8: 1 ran to
# max_iter at 1e-4, 3 at 1e-8, 4 at 1.)
_MIN_CURVATURE_UNIT = 1e-4


def _newton_direction(hess, grad, floor):
    """``(-H^-1 g, regularised)``: by Cholesky, or with small eigenvalues raised.

    ``H`` is first scaled to a unit diagonal (``D H D``, ``D =
    diag(H)^-1/2``), which makes the test of its pivots independent of how
    differently the coefficients are scaled (a collapsing scale has
    curvature 1e-14 of the coefficients'). When the scaled Hessian is
    singular or nearly so (a Huber objective with fewer rows on its
    quadratic part than coefficients), the direction of
    :func:`skrobust._newton._newton_line_search`'s regularisation is used
    (``regularised``): eigenvalues below ``floor.rcond`` of the largest
    raised to it, in the units of :func:`_curvature_units`
    (:class:`_DirectionFloor`). The direction is None if there is no
    curvature.
    """
    direction = cholesky_solve(hess, -grad)
    if direction is not None:
        return direction, False
    return _regularised_direction(hess, grad, floor.penalty, floor.rcond), True


def _regularised_direction(hess, grad, penalty=None, rcond=None):
    """``-H^-1 g`` with eigenvalues below ``rcond`` of the largest raised.

    In the units of :func:`_curvature_units`: with ``penalty`` (the
    objective's ridge weights, the diagonal it adds to ``H``), a
    coordinate whose weight exceeds the loss's largest curvature counts in
    units of its own curvature, so that the floor is relative to the data's
    curvature, not to a weight of 1e14 on a column of tiny spread (which
    raised every other eigenvalue to 1e6 and left steps that made no
    progress in 200 iterations). ``rcond`` defaults to ``_DIRECTION_RCOND``.
    """
    rcond = _DIRECTION_RCOND if rcond is None else rcond
    units = _curvature_units(hess, penalty)
    eigenvalues, vectors = np.linalg.eigh(hess / np.outer(units, units))
    floor = rcond * max(eigenvalues[-1], np.finfo(float).tiny)
    with np.errstate(over="ignore", invalid="ignore"):
        d = vectors @ ((vectors.T @ (grad / units)) / np.maximum(eigenvalues, floor))
        d /= units
    if not (floor > 0 and np.all(np.isfinite(d))):
        return None  # no curvature to scale a direction by
    return -d


def _curvature_units(hess, penalty):
    """Per coordinate, ``sqrt(max(H_jj, u) / u)``: 1 unless a ridge weight dominates.

    ``u`` is the loss's largest diagonal curvature (``H_jj`` less the
    penalty), and at least ``_MIN_CURVATURE_UNIT`` of the curvature of a
    standardised column's least squares (1): with every row beyond
    Huber's threshold or in log-cosh's tails the loss's own is 0 or
    1e-300, and floors relative to it sent steps beyond the float range.
    Only coordinates whose ridge weight lifts their curvature above ``u``
    are rescaled, each to ``u``: they are decoupled from the rest, and
    their weight is exact. All ones without a ``penalty``.
    """
    diagonal = np.diag(hess)
    if penalty is None or not np.all(np.isfinite(diagonal)):
        return np.ones(diagonal.size)
    unit = max(float(np.max(diagonal - penalty, initial=0.0)), _MIN_CURVATURE_UNIT)
    return np.sqrt(np.maximum(diagonal, unit) / unit)


class _DirectionFloor:
    """The eigenvalue floor of the regularised directions, adapted to the steps.

    The floor bounds the step along directions of no curvature, where the
    quadratic model would step without limit. A direction of small but
    real curvature (a ridge of weight 1e-11 on a coefficient the rows
    leave free) is raised to it too, and its step cut to a thousandth:
    such a fit gained 1e-3 of its distance per step, for max_iter steps.
    Where a step goes the full length of its direction (accepted as it is,
    or an exact line search reaching past it), the model was stiffer than
    the objective: the floor shrinks by ``_FLOOR_SHRINK`` (to
    ``_MIN_DIRECTION_RCOND``, the eigenvalues' rounding). Where the line
    search cut the step to a fraction ``t``, the raised directions (whose
    curvature the model does not know: rows beyond Huber's threshold, a
    linear loss with kinks) stepped too far: the floor is divided by ``t``
    (at least back to ``_DIRECTION_RCOND``, at most
    ``_MAX_DIRECTION_RCOND``), so that they no longer cut the steps of the
    directions the model knows (a ridge's) to ``t`` of theirs, step after
    step. Levenberg and Marquardt's damping, with no ratio test of values
    that rounding would decide. Only under a ridge (``penalty``), whose
    curvature is the small but real one: without, the floor stays at
    ``_DIRECTION_RCOND`` (adapted, it moved smoothed quantile fits on a
    one-hot design, whose flat directions are those of rounding, by 1e-6).
    """

    def __init__(self, penalty):
        self.penalty = penalty
        self.rcond = _DIRECTION_RCOND

    def update(self, step):
        """After a step of ``step`` times its direction (with a ridge only)."""
        if self.penalty is None:
            return
        if step >= 1.0:
            self.rcond = max(self.rcond * _FLOOR_SHRINK, _MIN_DIRECTION_RCOND)
        elif step > 0:
            raised = max(self.rcond, _DIRECTION_RCOND) / step
            self.rcond = min(raised, _MAX_DIRECTION_RCOND)


def secant_update(hess, step, change):
    r"""BFGS's update of ``hess`` to the secant equation ``H s = y``.

    .. math::

        H_+ = H - \frac{H s s^\top H}{s^\top H s} + \frac{y y^\top}{y^\top s},

    ``s`` the ``step``, ``y`` the ``change`` of the gradient along it:
    the curvature it measured replaces the model's along ``s``, and
    ``H_+`` stays positive definite. ``hess`` unchanged (the same array)
    where ``s' H s`` or ``y' s`` is not positive. Newton steps on an older
    Hessian converge linearly, their errors settling along the directions
    where that Hessian is most wrong: the update corrects those, and the
    chord steps of :func:`skrobust._newton._newton_steps` then converge
    superlinearly (Dennis and More 1974) at no extra pass.
    """
    moved = hess @ step
    curvature = float(step @ moved)
    measured = float(change @ step)
    if not (curvature > 0 and measured > 0):
        return hess
    # (np.multiply.outer is np.outer without its Python-level reshaping,
    # a third of this update's time at 20 unknowns; the same products.)
    updated = hess - np.multiply.outer(moved, moved / curvature)
    updated += np.multiply.outer(change, change / measured)
    return updated
