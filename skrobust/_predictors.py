"""Linear predictors: each one's columns, intercept and coefficient map.

:class:`skrobust._objective.LinearObjective` stacks the coefficients of one
or more linear predictors; :func:`_build_predictors` lays them out and
pins the columns that a penalty holds at zero, and each
:class:`_Predictor` maps its standardised coefficients to those of the
rows as they are read. :func:`_gram_from_raw` maps a Gram block of raw rows
into the same coordinates.
"""

import numpy as np

# A standardised penalty weight above this (1 / eps, 4.5e15; and inf, for a
# column of spread below ~1e-154) pins its coefficient at 0. In the Hessian's
# entry ``penalty + curvature`` the data's share (of order one on a unit
# column) is then below the weight's rounding, and the exact coefficient,
# ``-gradient / penalty``, moves the fitted values by less than eps of the
# gradient: the column cannot be resolved, and held in the solve it would
# only feed overflows (inf * 0) and condition numbers beyond 1e15 to it.
PINNED_PENALTY = 1.0 / np.finfo(float).eps


class _Predictor:
    """One linear predictor: its columns, intercept and coefficient map ``T``.

    ``T`` maps standardised coefficients ``(w, b)`` to the coefficients of
    the rows as they are read (raw ``X``, or blocks already standardised):
    ``w_raw = w * inv_scale`` and ``b_raw = b - shift @ w_raw``; a pinned
    column (see :func:`_build_predictors`) has ``inv_scale`` 0, so that its
    raw coefficient is 0 and its gradient and Hessian entries are too.
    """

    def __init__(self, columns, fit_intercept, inv_scale, shift, coef_slice, pinned):
        self.columns = columns  # None for all columns
        self.fit_intercept = fit_intercept
        self.inv_scale = inv_scale  # 0 where pinned: those columns read as 0
        self.shift = shift
        self.slice = coef_slice
        self.pinned = pinned  # (boolean, one per column)
        self.p = inv_scale.size

    def to_raw(self, c):
        w = c[: self.p] * self.inv_scale
        b = c[self.p] - self.shift @ w if self.fit_intercept else 0.0
        return w, b

    def grad_from_raw(self, gw, gb):
        """``T^T`` applied to a raw gradient ``(X^T g, sum g)``."""
        out = np.empty(self.p + self.fit_intercept)
        if self.fit_intercept:
            out[: self.p] = (gw - self.shift * gb) * self.inv_scale
            out[self.p] = gb
        else:
            out[:] = gw * self.inv_scale
        return out

    def take(self, A):
        if self.columns is None:
            return A
        if self.columns.size == 0:  # intercept only: a view, not a copy
            return A[:, :0]
        return A[:, self.columns]


def _gram_from_raw(a, b, G, xa_d, xb_d, d_sum):
    """``T_a^T [[G, X_a^T d], [d^T X_b, sum d]] T_b`` for predictors a and b."""
    # Rows: apply T_a^T to each column of the raw block, then T_b on the right.
    top = G - np.outer(a.shift, xb_d) - np.outer(xa_d, b.shift)
    top += d_sum * np.outer(a.shift, b.shift)
    out = np.empty((a.p + a.fit_intercept, b.p + b.fit_intercept))
    out[: a.p, : b.p] = top * np.outer(a.inv_scale, b.inv_scale)
    if b.fit_intercept:
        out[: a.p, b.p] = (xa_d - a.shift * d_sum) * a.inv_scale
    if a.fit_intercept:
        out[a.p, : b.p] = (xb_d - b.shift * d_sum) * b.inv_scale
        if b.fit_intercept:
            out[a.p, b.p] = d_sum
    return out


def _build_predictors(
    spec, l2, n_features, mean, inv_scale, explicit_centering, pinned=None
):
    """Each predictor's column map and coefficient slice, and the penalty.

    Returns ``(predictors, n_coef, penalty)``; the penalty is on the
    coefficients of the original columns (``lambda / scale^2`` on the
    standardised ones).

    The one place where columns are taken out of the solve: a column whose
    standardised weight ``lambda / scale^2`` exceeds ``PINNED_PENALTY``
    (spreads below ``sqrt(lambda eps)``; inf below ~1e-154) is *pinned*:
    its coefficient is held at exactly 0, which is the exact minimiser to
    within rounding. The map reads it as a column of zeros (``inv_scale``
    0) and its weight is replaced by 1, so that solvers see a decoupled
    coordinate ``c^2 / 2``, minimal at 0, and never an infinite or
    unresolvable weight; the fit is that without the column. ``pinned``
    (one boolean array per predictor) imposes the pins of another
    objective instead, for the unpenalised parts of a penalised sum (a
    Dask chunk's objective).
    """
    predictors, penalty = [], []
    start = 0
    for j, ((cols, fit), lam) in enumerate(zip(spec, l2, strict=True)):
        idx = np.arange(n_features) if cols is None else cols
        size = idx.size + fit
        pen = np.zeros(size)
        if lam:
            # (Columns of size 1e-200 have coefficients of 1e200: their
            # squared penalty weight may overflow to inf; they are pinned.)
            with np.errstate(over="ignore"):
                pen[: idx.size] = lam * inv_scale[idx] ** 2
        if pinned is None:
            pins = pen[: idx.size] > PINNED_PENALTY
        else:
            pins = np.asarray(pinned[j], dtype=bool)
        pen[: idx.size][pins & (pen[: idx.size] > 0)] = 1.0
        if explicit_centering:  # blocks arrive standardised
            col_inv_scale, shift = np.ones(idx.size), np.zeros(idx.size)
        else:
            col_inv_scale, shift = inv_scale[idx].copy(), mean[idx]
        col_inv_scale[pins] = 0.0
        predictors.append(
            _Predictor(
                cols, fit, col_inv_scale, shift, slice(start, start + size), pins
            )
        )
        penalty.append(pen)
        start += size
    return predictors, start, np.concatenate(penalty)


def _column_indices(pred, n_features):
    return np.arange(n_features) if pred.columns is None else pred.columns


def unstandardize(predictors, mean, inv_scale, coef):
    """Per predictor ``(w_j, b_j)`` in the units of the original columns.

    The inverse of the standardisation ``(X - mean) / scale``:
    ``w_j = c_j * inv_scale`` and ``b_j = c_b - mean @ w_j`` (0.0 without an
    intercept, whose columns are not centred either). Pinned columns have
    ``w`` exactly 0.
    """
    out = []
    for pred in predictors:
        c = coef[pred.slice]
        idx = _column_indices(pred, mean.size)
        w = c[: pred.p] * inv_scale[idx]
        w[pred.pinned] = 0.0
        b = float(c[pred.p] - mean[idx] @ w) if pred.fit_intercept else 0.0
        out.append((w, b))
    return out


def standardize(predictors, mean, scale, n_coef, params):
    """Inverse of :func:`unstandardize`: a flat coefficient vector."""
    coef = np.zeros(n_coef)
    for (w, b), pred in zip(params, predictors, strict=True):
        c = coef[pred.slice]
        idx = _column_indices(pred, mean.size)
        c[: pred.p] = w * scale[idx]
        c[: pred.p][pred.pinned] = 0.0  # (their minimiser)
        if pred.fit_intercept:
            c[pred.p] = b + mean[idx] @ w
    return coef
