"""Weighted column means and spreads of ``X``: the coordinates of the objectives.

:class:`skrobust._objective.LinearObjective` solves in standardised
coordinates ``(X - m) / d`` without copying ``X``; :func:`_weighted_column_stats`
computes ``m`` and ``d`` in one pass of row blocks, from raw moments where
the offsets allow and from merged centred moments
(:func:`merge_moments`) where they would cancel, with columns near
``1e+-200`` scaled by powers of two first.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.utils.sparsefuncs import mean_variance_axis

from ._passes import _row_blocks

# Fold the centring into the coefficient map while |mean| / spread stays
# below this; the cancellation then costs at most ~1e-13 in the gradient and
# ~1e-10 (relative) in the Hessian. Beyond it, blocks are centred explicitly.
_MAX_IMPLICIT_OFFSET = 1e3

# Column statistics come from raw moments while every column's mean is
# within this many standard deviations of zero (else from centred ones).
_RAW_MOMENT_OFFSET = 100.0


def needs_explicit_centering(mean, scale):
    """Whether dense blocks must be standardised before their products.

    Folding the centring into the coefficient map loses digits to
    cancellation once ``|mean| / scale`` exceeds ``_MAX_IMPLICIT_OFFSET``,
    and raw products of columns near ``1e+-200`` would overflow or
    underflow before the map could rescale them.
    """
    ratio = np.abs(mean) * (1.0 / scale)
    extreme = (scale > 1e100) | (scale < 1e-100)
    return bool(np.any(ratio > _MAX_IMPLICIT_OFFSET) or np.any(extreme))


def _weighted_column_stats(X, sample_weight, center):
    """Weighted column means (zeros unless ``center``) and standard deviations.

    Computed in row blocks for dense ``X`` so that no copy of ``X`` is made.
    A constant column gets scale 1 so that it is left as it is.
    """
    S = sample_weight.sum()
    p = X.shape[1]
    if sp.issparse(X):
        mean, var = mean_variance_axis(X, axis=0, weights=sample_weight)
        # Sparse blocks cannot be centred explicitly: centring is implicit
        # (in the coefficient map) or none, when an offset is too large for
        # the map's cancellation. The same coordinates as a dense X then give
        # the same minimum-norm fit where the minimiser is not unique.
        spread = np.sqrt(var)
        if not center or np.any(np.abs(mean) > _MAX_IMPLICIT_OFFSET * spread):
            mean = np.zeros(p)
    else:
        # A strided sample of the rows with weight (rows without weight do
        # not count, however large they are).
        step = max(1, X.shape[0] // 1000)
        pilot = np.asarray(X[::step], dtype=float)
        if not sample_weight[::step].min(initial=1.0) > 0:
            pilot = pilot[sample_weight[::step] > 0]
        # Columns near 1e+-200 would overflow or underflow when squared:
        # scale each by a power of two (exact) near its size. (From the
        # extremes: |pilot| would be a copy of all of a small X.)
        size = _column_extremes(pilot)
        size[~(size > 0)] = 1.0
        unit = np.exp2(np.round(np.log2(size)))
        if np.any((unit > 2.0**100) | (unit < 2.0**-100)):
            mean, scale = _weighted_column_stats(
                _ScaledColumns(X, unit), sample_weight, center
            )
            return mean * unit, scale * unit
        if step == 1:
            # The pilot is all of X (under 2000 rows): centred moments
            # directly, one pass, rather than judging offsets on it first.
            mean, var = _centred_moments(X, sample_weight, S)
            return _finish_column_stats(mean, var, center)
        # Raw moments lose digits to cancellation under large offsets
        # (judged with the weights), and weightless rows may hold values
        # whose squares overflow.
        moderate = pilot.shape[0] > 1 and sample_weight.min() > 0
        if moderate:
            # (Weighted means as products: np.average's checks and
            # broadcasting cost 0.13 of its 0.18 ms on a 1000 x 20 pilot.)
            pilot_weight = sample_weight[::step]
            pilot_total = pilot_weight.sum()
            pilot_mean = (pilot_weight @ pilot) / pilot_total
            deviation = pilot - pilot_mean
            deviation *= deviation
            pilot_var = (pilot_weight @ deviation) / pilot_total
            moderate = bool(
                np.all(np.abs(pilot_mean) <= _RAW_MOMENT_OFFSET * np.sqrt(pilot_var))
            )
        if moderate:
            mean, var = _raw_moments(X, sample_weight, S)
            # The pilot can miss the rows that carry the weight: offsets
            # beyond 1e3 spreads on all rows are computed again, centred.
            moderate = bool(np.all(mean * mean <= 1e6 * var))
        if not moderate:
            mean, var = _centred_moments(X, sample_weight, S)
    return _finish_column_stats(mean, var, center)


# Up to this many columns, the extremes of a row-major pilot are taken from
# its transposed copy (see _column_extremes).
_TRANSPOSED_EXTREMES_MAX_COLS = 64


def _column_extremes(pilot):
    """``max(max_i x_ij, -min_i x_ij)`` per column ``j`` of a dense array.

    numpy reduces a row-major array over its rows one row at a time, at a
    fixed cost per row: at 1000 x 20 the two reductions took 75 us, a
    tenth of the start of a fit, and 25 us on a column-major copy. The
    same numbers (a maximum is exact; only the sign of a zero could
    differ, and zero sizes count as 1).
    """
    row_major = pilot.strides[1] == pilot.itemsize  # (strided rows too)
    if row_major and pilot.shape[1] <= _TRANSPOSED_EXTREMES_MAX_COLS:
        rows = pilot.T.copy()  # (each column contiguous)
        return np.maximum(
            rows.max(axis=1, initial=-np.inf), -rows.min(axis=1, initial=np.inf)
        )
    return np.maximum(
        pilot.max(axis=0, initial=-np.inf), -pilot.min(axis=0, initial=np.inf)
    )


def _finish_column_stats(mean, var, center):
    """Means (zeros unless ``center``) and spreads, constant columns at scale 1."""
    if not center:
        mean = np.zeros(mean.size)
    scale = np.sqrt(var)
    # Tiny but real spreads are kept: scaling them up is the point. A spread
    # at the rounding level of the column's own size is a constant column
    # (its computed variance is rounding noise, which scaling would blow up
    # into a random column); it is left unscaled, so that centred it is ~0.
    size = np.abs(mean) if center else np.zeros(mean.size)
    constant = ~(scale > 64 * np.finfo(float).eps * size) | ~np.isfinite(scale)
    scale[constant] = 1.0
    return mean, scale


def _raw_moments(X, sample_weight, S):
    """Weighted means and variances from sums of ``x`` and ``x**2``.

    Two matrix-vector products and one square per block. Only tried when
    every column's offset is within ``_RAW_MOMENT_OFFSET`` spreads on a
    sample of rows, and kept when it is within 1e3 on all of them, where
    ``E x^2 - (E x)^2`` loses at most ~1e-10 of the variance to
    cancellation: the statistics only condition the problem.
    """
    p = X.shape[1]
    first, second = np.zeros(p), np.zeros(p)
    for rows in _row_blocks(X.shape[0], p):
        A = np.asarray(X[rows], dtype=np.float64)
        sw = sample_weight[rows]
        first += sw @ A
        second += sw @ (A * A)
    mean = first / S
    return mean, np.maximum(second / S - mean * mean, 0.0)


def merge_moments(parts):
    r"""Total weight, mean and sum of squared deviations of several parts.

    Chan, Golub and LeVeque's pairwise update: merging a part of weight
    :math:`w_b`, mean :math:`\bar x_b` and squared deviations :math:`M_b`
    into the running :math:`(W, \bar x, M)`, with
    :math:`\delta = \bar x_b - \bar x`,

    .. math::

        \bar x \leftarrow \bar x + \delta \frac{w_b}{W + w_b}, \quad
        M \leftarrow M + \Big(M_b + \delta^2 \frac{W w_b}{W + w_b}\Big),
        \quad W \leftarrow W + w_b,

    stable whatever the offset of the values (no sum of squares about 0).

    Parameters
    ----------
    parts : iterable of tuple
        ``(weight, mean, m2)`` per part: its total weight, its weighted mean
        and its weighted sum of squared deviations about that mean (floats,
        or arrays of one shape for several columns). Parts of no weight are
        skipped.

    Returns
    -------
    total : float
        The sum of the weights (0 if no part has weight).
    mean, m2 : float or ndarray
        Over all parts; 0.0 if no part has weight. One part's are its own.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1e9 + 1.0, 1e9 + 2.0, 1e9 + 4.0, 1e9 + 5.0])
    >>> parts = [(2.0, x[:2].mean(), 0.5), (2.0, x[2:].mean(), 0.5)]
    >>> total, mean, m2 = merge_moments(parts)
    >>> float(total), float(mean - 1e9), float(m2), float(np.var(x) * 4)
    (4.0, 3.0, 10.0, 10.0)
    """
    total, mean, m2 = 0.0, 0.0, 0.0
    for weight, part_mean, part_m2 in parts:
        if not weight > 0:
            continue
        delta = part_mean - mean
        new_total = total + weight
        mean = mean + delta * (weight / new_total)
        m2 = m2 + (part_m2 + delta * delta * (total * weight / new_total))
        total = new_total
    return total, mean, m2


def _centred_moments(X, sample_weight, S):
    """Weighted means and variances, stable whatever the offsets.

    One pass, merging per-block means and sums of squared deviations
    (:func:`merge_moments`); each block is read twice while it is in cache.
    """
    p = X.shape[1]

    def block_moments():
        for rows in _row_blocks(X.shape[0], p):
            sw = sample_weight[rows]
            w_block = sw.sum()
            if not w_block > 0:
                continue
            block_mean = (sw @ X[rows]) / w_block
            dev = X[rows] - block_mean
            if not sw.min() > 0:
                dev[sw == 0] = 0.0  # weightless rows may hold anything finite
            dev *= dev
            yield w_block, block_mean, sw @ dev

    _, mean, m2 = merge_moments(block_moments())
    # (Columns of zeros when no row has weight.)
    return mean + np.zeros(p), (m2 + np.zeros(p)) / S


class _ScaledColumns:
    """A read-only view of ``X / unit`` row block by row block (for the stats)."""

    def __init__(self, X, unit):
        self.X, self.unit, self.shape = X, unit, X.shape

    def __getitem__(self, rows):
        return self.X[rows] / self.unit
