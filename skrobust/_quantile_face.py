r"""Among equally optimal exact quantile fits, the one nearest a target.

When the minimiser of the pinball objective is not unique (fewer
observations than coefficients, collinear columns such as a full one-hot
encoding with an intercept, or a degenerate design), the simplex method
returns an arbitrary vertex of the optimal face, which can change with the
order or the repetition of the rows. :func:`select_on_face` moves it along
the face towards a target (the smoothed fit), so that the answer does not
depend on them. Split from :mod:`skrobust._quantile_exact`, whose solution
it takes.
"""

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg
from sklearn.utils.extmath import safe_sparse_dot

from ._quantile_lp import pinball_objective

__all__ = ["select_on_face"]

# Reciprocal condition number beyond which the zero-residual rows of a
# vertex certainly determine it (see _clearly_regular).
_REGULAR_RCOND = 1e-8


def select_on_face(
    X,
    y,
    sample_weight,
    quantile,
    alpha,
    fit_intercept,
    coef,
    intercept,
    target,
    stats,
    residuals=None,
):
    r"""Among equally optimal exact solutions, move towards a target.

    When the minimiser is not unique (fewer observations than
    coefficients, or a degenerate design), the simplex method returns an
    arbitrary vertex of the optimal face, which can change with the order or
    the repetition of the rows. Let ``Z`` be the observations with zero
    residual at the exact solution ``theta*`` (and, with ``alpha > 0``, fix
    its zero coefficients at zero). The objective is constant along every
    direction ``v`` with ``x_i^T v = 0`` for ``i in Z`` until some other
    residual (or coefficient) changes sign: its directional derivative there
    is ``-sum_{i not in Z} s_i psi_i x_i^T v + alpha sign(w*)^T v``, which
    the optimality condition ``sum_{i not in Z} s_i psi_i x_i + sum_{i in Z}
    s_i a_i x_i = alpha sign(w*)`` makes zero. So ``theta*`` moves towards
    ``theta'``, the point of ``{x_i^T theta = y_i, i in Z}`` nearest to the
    target (in standardised coordinates), up to the first sign change. If
    the solution is unique, ``theta' = theta*`` and nothing moves; the move
    is kept only if the objective did not grow beyond rounding.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Targets of order one (standardised).
    sample_weight : ndarray of shape (n_samples,)
    quantile, alpha : float
    fit_intercept : bool
    coef : ndarray of shape (n_features,)
    intercept : float
        The exact solution ``theta*``.
    target : tuple of (ndarray, float)
        Coefficients and intercept to move towards (a smoothed fit).
    stats : tuple of ndarray
        Column means and scales of the standardised coordinates ``c_w = w *
        scale``, ``c_b = b + mean @ w`` (means zero for sparse ``X``).
    residuals : ndarray of shape (n_samples,), default=None
        ``y - X coef - intercept`` if at hand (saves a pass over ``X``).

    Returns
    -------
    coef : ndarray of shape (n_features,)
    intercept : float
    """
    q, alpha = float(quantile), float(alpha)
    w, b = coef, intercept
    w_target, b_target = target
    if residuals is None:
        fitted = safe_sparse_dot(X, w) + b
        r = y - fitted
    else:
        r = residuals
        fitted = y - r
    positive = sample_weight > 0
    eps = np.finfo(np.float64).eps
    # Rounding of r_i = y_i - x_i^T w - b (y is standardised, so 1 is its
    # typical size): residuals this small are zeros. The per-row bound is
    # evaluated only on the rows within its largest value (|fitted| <=
    # |y| + |r|), which a vertex has about p + 1 of: at many levels, the
    # n-vector arithmetic of the bound cost more than the rest.
    zero_factor = 1e3 * (X.shape[1] + 2) * eps
    abs_r = np.abs(r)
    loose = zero_factor * (2.0 * float(np.max(np.abs(y), initial=0.0)) + 1.0)
    candidates = np.flatnonzero(abs_r <= loose / (1.0 - zero_factor))
    tol_c = zero_factor * (np.abs(y[candidates]) + np.abs(fitted[candidates]) + 1.0)
    in_z = np.zeros(r.size, dtype=bool)
    in_z[candidates[positive[candidates] & (abs_r[candidates] <= tol_c)]] = True
    if not np.any(in_z):
        return w, b
    free = np.ones(X.shape[1], dtype=bool) if alpha == 0 else w != 0
    point = _nearest_on_face(
        X, y, np.flatnonzero(in_z), free, fit_intercept, w_target, b_target, stats
    )
    if point is None:
        return w, b  # the affine set is the point theta* itself
    w_target, b_target = point
    # Largest step t in [0, 1] towards the target with no sign change.
    r_target = y - safe_sparse_dot(X, w_target) - b_target
    t = 1.0
    flips = positive & ~in_z & (r * r_target < 0)
    if np.any(flips):
        t = min(t, float(np.min(r[flips] / (r[flips] - r_target[flips]))))
    coef_flips = (w != 0) & (w * w_target < 0)
    if alpha > 0 and np.any(coef_flips):
        ratios = w[coef_flips] / (w[coef_flips] - w_target[coef_flips])
        t = min(t, float(np.min(ratios)))
    if not t > 0:
        return w, b
    w_new = w + t * (w_target - w)
    b_new = b + t * (b_target - b)
    before = pinball_objective(X, y, w, b, q, sample_weight, alpha)
    after = pinball_objective(X, y, w_new, b_new, q, sample_weight, alpha)
    # Rounding allowance: relative, plus the residuals counted as zeros.
    zero_tol = zero_factor * (np.abs(y) + np.abs(fitted) + 1.0)
    allowance = 1e-12 * before + sample_weight @ zero_tol / sample_weight.sum()
    if after <= before + allowance:
        return w_new, b_new
    return w, b


# Sparse squares up to this many entries (64 MiB dense) are factored densely.
_DENSE_LU_ELEMENTS = 2**23


def _clearly_regular(square):
    """Whether a square matrix is far from singular (an LU and its condition).

    A vertex of the optimal face has as many zero residuals as free
    coordinates, and their rows are regular: the face is that point. An LU
    factorisation with a condition estimate says so at a fraction of the
    cost of the SVD that ``lstsq`` makes to find the rank (p = 2000: about
    0.3 against 3 s), and a sparse ``square`` stays sparse (SuperLU, and
    the 1-norm of its inverse estimated from a few solves). A reciprocal
    condition number below ``_REGULAR_RCOND`` leaves the decision to the
    SVD. A dense ``square`` is overwritten. A sparse one of up to
    ``_DENSE_LU_ELEMENTS`` entries is factored densely: the rows of a
    vertex of a wide random sparse design fill their LU in almost fully
    (2001 square at 0.5%: SuperLU 1.3 s, LAPACK 0.2 s).
    """
    if sp.issparse(square) and square.shape[0] * square.shape[1] <= _DENSE_LU_ELEMENTS:
        square = square.toarray()
    if sp.issparse(square):
        square = sp.csc_matrix(square)
        try:
            lu = scipy.sparse.linalg.splu(square)
        except RuntimeError:  # exactly singular
            return False
        inverse = scipy.sparse.linalg.LinearOperator(
            square.shape,
            matvec=lu.solve,
            rmatvec=lambda v: lu.solve(v, trans="T"),
            dtype=np.float64,
        )
        norm = float(abs(square).sum(axis=0).max())
        with np.errstate(all="ignore"):
            inverse_norm = scipy.sparse.linalg.onenormest(inverse)
        return bool(np.isfinite(inverse_norm)) and (
            1.0 / (norm * inverse_norm) > _REGULAR_RCOND
        )
    norm = float(np.abs(square).sum(axis=0).max())
    lu, _, info = scipy.linalg.lapack.dgetrf(square, overwrite_a=True)
    if info != 0:
        return False
    rcond, info = scipy.linalg.lapack.dgecon(lu, norm)
    return info == 0 and rcond > _REGULAR_RCOND


def _nearest_on_face(X, y, idx, free, fit_intercept, w_target, b_target, stats):
    """Point of ``{x_i^T theta = y_i, i in idx}`` nearest to the target.

    In standardised coordinates, over the ``free`` coefficients (the others
    stay at zero) and the intercept. ``None`` when the rows determine every
    free coordinate (the set is one point).
    """
    mean, scale = stats
    rows = X[idx]
    keep = np.append(free, True) if fit_intercept else free
    if rows.shape[0] == np.count_nonzero(keep):
        # (Means are zero for sparse X: its rows stay sparse.)
        square = rows @ sp.diags(1.0 / scale) if sp.issparse(rows) else rows / scale
        if not sp.issparse(rows):
            square -= mean / scale
        if fit_intercept:
            ones = np.ones((idx.size, 1))
            if sp.issparse(rows):
                square = sp.hstack([square, ones], format="csc")
            else:
                square = np.hstack([square, ones])
        if _clearly_regular(square[:, keep]):
            return None  # (a vertex: as many zero residuals as coordinates)
    rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
    design = (rows - mean) / scale
    if fit_intercept:
        design = np.hstack([design, np.ones((idx.size, 1))])
        c_target = np.append(w_target * scale, b_target + mean @ w_target)
    else:
        c_target = w_target * scale
    c_target = np.where(keep, c_target, 0.0)
    design = design[:, keep]
    # The minimum-norm correction and the rank by a complete orthogonal
    # factorisation (QR with column pivoting, LAPACK's gelsy), with
    # numpy's cut-off (eps times the larger dimension, relative): the same
    # answer as the SVD of np.linalg.lstsq at half its cost (the 1005
    # zero-residual rows of a one-hot 1e5 x 1005 design: 0.23 -> 0.11 s).
    correction, _, rank, _ = scipy.linalg.lstsq(
        design,
        y[idx] - design @ c_target[keep],
        cond=np.finfo(np.float64).eps * max(design.shape),
        overwrite_a=True,
        check_finite=False,
        lapack_driver="gelsy",
    )
    if rank == design.shape[1]:
        return None
    c_target[keep] += correction
    w = c_target[: X.shape[1]] / scale
    b = float(c_target[-1] - mean @ w) if fit_intercept else 0.0
    return w, b
