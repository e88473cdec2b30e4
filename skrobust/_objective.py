r"""The chain rule through ``X``: a loss of linear predictors, its gradient and Hessian.

:class:`LinearObjective` turns a prediction loss from :mod:`skrobust.losses`
(``L(y, eta)`` with ``eta`` of shape ``(n_samples, k)``) into a function of
one flat coefficient vector,

.. math::

    F(c) = \frac{1}{S} \sum_i s_i \, L(y_i, \eta_i)
           + \frac12 \sum_j \lambda_j \lVert w_j \rVert^2,
    \qquad \eta_{ij} = x_{i, C_j}^\top w_j + b_j,
    \qquad S = \sum_i s_i,

where predictor ``j`` uses the columns ``C_j`` of ``X`` (all of them, a
subset, or none for an intercept-only predictor such as a concomitant scale)
and, optionally, an intercept ``b_j`` that is not penalised. ``c`` stacks
``(w_0, b_0, w_1, b_1, ...)``.

Why a weighted *mean*: dividing by ``S`` keeps gradients of order one whatever
``n`` and the weights are, so one solver tolerance means the same thing on
every data set. It is still a *sum over rows*, accumulated block by block
(``_row_blocks``), so it can be evaluated out of core or on a cluster by
summing the per-block pieces; the estimators state their public objectives
as sums and convert the penalty accordingly.

Conditioning without copying ``X``: the coefficients ``c`` the solver sees
belong to standardised columns ``(X - m) / d`` (``m`` the weighted column
means when every predictor with columns has an intercept and ``X`` is dense,
``d`` the weighted standard deviations), so that one tolerance fits every
data set. The standardisation is never applied to ``X``: it is a linear map
``T`` of each predictor's coefficients (``w_raw = w / d``, ``b_raw = b - m @
w_raw``), applied to ``p``-vectors and ``p x p`` blocks, while ``X`` is read
as it is, in row blocks of a few hundred kilobytes that stay in cache
between the product with ``X`` and the one with ``X.T`` (one pass over ``X``
per evaluation). Only when a column's mean exceeds ``1e3`` times its spread
(Unix timestamps, say) would folding the centring into ``T`` lose digits to
cancellation; each block is then centred and scaled into a small buffer
instead. Sparse ``X`` is never centred (that would densify it) and is
multiplied as a whole.
"""

import contextlib

import numpy as np
import scipy.linalg.lapack
import scipy.sparse as sp
from sklearn.utils.sparsefuncs import mean_variance_axis
from threadpoolctl import ThreadpoolController

from . import _lockstep
from ._small_design import SmallDesign, shared_key, standardised_design
from ._small_design import weighted_gram as _weighted_gram
from ._strides import aperiodic_step

# Elements per dense row block: 2 MiB of float64 (at most an eighth of X, see
# _MIN_BLOCKS), which bounds the extra memory of a pass and is large enough
# that the per-block costs (numpy's and the loss's calls, the sums, BLAS's
# start on a block read from memory) do not dominate. Blocks of 512 KiB, sized
# for an L2 cache that the loss's temporaries fill anyway, made passes slower:
# fits at 1e5 x 20 took 1.05-1.25 times as long (every M-estimator, smoothed
# quantile, heteroscedastic), at 1e6 x 20 1.1-1.4 and at 1e5 x 200 1.05-1.3.
_BLOCK_ELEMENTS = 2**18

# Passes split X into at least this many row blocks (see _row_blocks).
_MIN_BLOCKS = 8

# Row blocks of wide designs keep at least this many rows, within this many
# elements (8 MiB of float64). Measured on a 2e4 x 1000 design: a pass for
# the gradient took 30 ms in blocks of 65 rows, 16 ms in blocks of 512; a
# Hessian-vector product 45 and 22 ms; at 300 columns 9.9 and 5.9 ms.
_MIN_BLOCK_ROWS = 512
_MAX_BLOCK_ELEMENTS = 2**20

# Passes without a Hessian read dense X of up to this many elements (4 MiB,
# in cache between the two products) in one block (see _reads_whole).
_WHOLE_PASS_ELEMENTS = 2**19


# A standardised penalty weight above this (1 / eps, 4.5e15; and inf, for a
# column of spread below ~1e-154) pins its coefficient at 0. In the Hessian's
# entry ``penalty + curvature`` the data's share (of order one on a unit
# column) is then below the weight's rounding, and the exact coefficient,
# ``-gradient / penalty``, moves the fitted values by less than eps of the
# gradient: the column cannot be resolved, and held in the solve it would
# only feed overflows (inf * 0) and condition numbers beyond 1e15 to it.
PINNED_PENALTY = 1.0 / np.finfo(float).eps

# Rows of the strided sample on which null_directions looks for candidates.
_NULL_SPACE_SAMPLE_ROWS = 5_000

# Fold the centring into the coefficient map while |mean| / spread stays
# below this; the cancellation then costs at most ~1e-13 in the gradient and
# ~1e-10 (relative) in the Hessian. Beyond it, blocks are centred explicitly.
_MAX_IMPLICIT_OFFSET = 1e3

# Column statistics come from raw moments while every column's mean is
# within this many standard deviations of zero (else from centred ones).
_RAW_MOMENT_OFFSET = 100.0


class _ThreadCounts(ThreadpoolController):
    """threadpoolctl's controller, whose ``limit`` to a number only sets counts.

    ``ThreadpoolController.limit`` reads every library's whole description
    (version, architecture, path) on entry, to restore it on exit: 45 us,
    1% of a 1000 x 20 fit and of each pass in row blocks at 1e4 x 20, which
    limits BLAS too. The thread counts are all that it restores; they are
    read and set directly here (the same counts; other limits as before).
    """

    def limit(self, *, limits=None, user_api=None):
        if not isinstance(limits, int) or user_api not in ("blas", "openmp"):
            return super().limit(limits=limits, user_api=user_api)
        chosen = [lib for lib in self.lib_controllers if lib.user_api == user_api]
        return _counts_limited(chosen, limits)


@contextlib.contextmanager
def _counts_limited(libraries, limit):
    """Each of ``libraries`` at ``limit`` threads, its own count restored after."""
    counts = [(lib, lib.num_threads) for lib in libraries]
    changed = [(lib, n) for lib, n in counts if n != limit]
    for lib, _ in changed:
        lib.set_num_threads(limit)
    try:
        yield
    finally:
        for lib, n in changed:
            lib.set_num_threads(n)


# BLAS calls on cache-sized blocks are too small for threads to pay: with two
# threads a Hessian pass was 1.5x slower on an idle machine and 10x slower
# with another process on the second core. Passes run single-threaded.
_THREADPOOLS = _ThreadCounts()
# Fits of designs up to this many stored entries run with one BLAS thread
# throughout (single_threaded_blas): their BLAS calls (starts, L-BFGS-B's
# own, the linear programmes) are too small for threads, which with another
# process on the second core made a 1000 x 20 exact quantile fit 120 ms
# instead of 15 ms (median of 30).
_SINGLE_THREAD_MAX_ENTRIES = 2**20


def single_threaded_blas(X):
    """A context in which a fit on ``X`` uses one BLAS thread if ``X`` is small.

    Up to ``_SINGLE_THREAD_MAX_ENTRIES`` stored entries; a larger ``X``
    keeps the caller's threads (its starts' Gram matrices and wide
    linear programmes gain from them).
    """
    entries = X.nnz if hasattr(X, "nnz") else np.prod(X.shape)
    if entries > _SINGLE_THREAD_MAX_ENTRIES:
        return contextlib.nullcontext()
    return _THREADPOOLS.limit(limits=1, user_api="blas")


def _row_blocks(n_rows, n_cols):
    # At least _MIN_BLOCKS blocks, so that a block's temporaries stay a small
    # fraction of X also when all of X would fit in one block; but not below
    # 1024 rows (within the element budget), where per-block overheads grow.
    # On wide designs the element budget alone would leave blocks of a few
    # dozen rows, whose per-call overheads (numpy's, the loss's, the sums')
    # outweigh the cache: _MIN_BLOCK_ROWS rows are kept there, up to
    # _MAX_BLOCK_ELEMENTS.
    rows = max(1024, -(-n_rows // _MIN_BLOCKS))
    floor = max(64, min(_MIN_BLOCK_ROWS, _MAX_BLOCK_ELEMENTS // max(n_cols, 1)))
    step = max(floor, min(_BLOCK_ELEMENTS // max(n_cols, 1), rows))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


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
            pilot_weight = sample_weight[::step]
            pilot_mean = np.average(pilot, axis=0, weights=pilot_weight)
            pilot_var = np.average(
                (pilot - pilot_mean) ** 2, axis=0, weights=pilot_weight
            )
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


class LinearObjective:
    """Value, gradient, Hessian and Hessian-vector product of a linear model loss.

    Parameters
    ----------
    loss : object
        A prediction loss with ``n_predictors``, ``loss_gradient(y, raw)``
        and ``loss_gradient_hessian(y, raw)``, see :mod:`skrobust.losses`.
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Never copied or modified. Any real dtype.
    y : ndarray of shape (n_samples,)
    sample_weight : ndarray of shape (n_samples,)
        Non-negative, with a positive sum.
    predictors : list of (columns, fit_intercept)
        One entry per linear predictor: ``columns`` is ``None`` for all
        columns of ``X``, or an integer array (possibly empty).
    l2 : sequence of float
        Penalty strength ``lambda_j`` per predictor, on the coefficients in
        the units of the original columns of ``X`` (intercepts unpenalised).
    column_stats : tuple of ndarray, default=None
        ``(mean, scale)`` of another objective on the same ``X`` and weights
        (its ``column_stats``), to skip the pass that computes them. Their
        coefficient vectors are then in the same coordinates.
    pinned : list of ndarray of bool, default=None
        Per predictor, the columns whose coefficient is held at 0 (another
        objective's ``pinned``, for an unpenalised part of its sum). By
        default those whose standardised penalty weight exceeds
        ``PINNED_PENALTY`` (see :func:`_build_predictors`).

    Attributes
    ----------
    pinned : list of ndarray of bool
        Per predictor, the columns held at 0; their coefficients in
        :meth:`unstandardize` are exactly 0.
    """

    def __init__(
        self,
        loss,
        X,
        y,
        sample_weight,
        predictors,
        l2,
        column_stats=None,
        pinned=None,
    ):
        if len(predictors) != loss.n_predictors:
            raise ValueError("one (columns, fit_intercept) entry per predictor")
        self.loss = loss
        self.X = X
        self.y = y
        # The objective is a weighted mean, unchanged by scaling the weights;
        # scaled to a largest weight of 1 they cannot overflow when summed.
        top = float(sample_weight.max(initial=0.0))
        # (Never written to, so weights already scaled are shared, not copied.)
        scaled = top > 0 and top != 1.0
        self.sample_weight = sample_weight / top if scaled else sample_weight
        self.sum_weight = float(self.sample_weight.sum())
        # Equal weights (the usual case) are all 1.0 now: passes skip them.
        self.unit_weights = self.sum_weight == self.sample_weight.size
        self.sparse = sp.issparse(X)
        self.predictor_spec = [
            (None if c is None else np.asarray(c, dtype=np.intp), bool(f))
            for c, f in predictors
        ]
        self.l2 = list(l2)
        self._set_column_stats(column_stats)
        self.predictors, self.n_coef, self.penalty = _build_predictors(
            self.predictor_spec,
            self.l2,
            X.shape[1],
            self.mean,
            self.inv_scale,
            self.explicit_centering,
            pinned,
        )
        self.pinned = [pred.pinned for pred in self.predictors]
        self._designs = None  # the small design's copy, once built
        # Whether passes keep their linear predictors for raw_prediction at
        # the same point (a fit that needs its residuals after each solve).
        self.remember_prediction = False
        self._remembered = None
        self.null_cache = None  # see null_directions

    def _set_column_stats(self, column_stats):
        """Mean and scale of the columns, and whether blocks are standardised first."""
        # Centring moves the offset m @ w into the intercept, so it is only
        # possible when every predictor that reads columns has an intercept.
        center = all(
            fit for cols, fit in self.predictor_spec if cols is None or cols.size
        )
        if column_stats is None:
            # (Computed once for the lanes of a lock-step fit on this X.)
            column_stats = _lockstep.shared(
                ("column_stats", _lockstep.rows_key(self.X), center),
                self.sample_weight,
                lambda: _weighted_column_stats(self.X, self.sample_weight, center),
                self.X,
            )
        self.mean, self.scale = column_stats
        if not center and np.any(self.mean):
            raise ValueError("column_stats are centred but this objective is not")
        self.inv_scale = 1.0 / self.scale
        ratio = np.abs(self.mean) * self.inv_scale
        # Raw products of columns near 1e+-200 would overflow or underflow
        # before the map could rescale them: such blocks are scaled first.
        extreme = (self.scale > 1e100) | (self.scale < 1e-100)
        self.explicit_centering = not self.sparse and bool(
            np.any(ratio > _MAX_IMPLICIT_OFFSET) or np.any(extreme)
        )

    @property
    def column_stats(self):
        return self.mean, self.scale

    @property
    def n_samples(self):
        return self.X.shape[0]

    def subsample(self, step):
        """The same objective on every ``step``-th row, in the same coordinates.

        A view of dense ``X`` (:meth:`_subsample_rows`); a start for the
        full problem that costs ``1 / step`` of a pass. Of this objective's
        class.
        """
        return type(self)(
            self.loss,
            self._subsample_rows(step),
            self.y[::step],
            self.sample_weight[::step],
            self.predictor_spec,
            self.l2,
            column_stats=self.column_stats,
            pinned=self.pinned,
        )

    def _subsample_rows(self, step):
        """``X[::step]``, the rows of :meth:`subsample`."""
        return self.X[::step]

    def dense_design(self, rows=None):
        """The standardised design of a one-predictor objective, as an array.

        Columns ``(X - mean) / scale`` of ``rows`` (default: all) and a
        column of ones with an intercept
        (:func:`~skrobust._small_design.standardised_design`).
        """
        (pred,) = self.predictors
        return standardised_design(self, pred, rows)

    def design_matvec(self, coef):
        """The standardised design times ``coef`` (one predictor): ``D c``."""
        return self.raw_prediction(coef)[:, 0]

    def design_rmatvec(self, v):
        """The standardised design's transpose times ``v`` (one predictor): ``D' v``.

        One pass in row blocks, never a copy of ``X``: with
        :meth:`design_matvec` the operator that iterative least squares
        (LSQR) needs for designs too wide for a Gram matrix.
        """
        (pred,) = self.predictors
        gw, gb = np.zeros(pred.p), 0.0
        for rows, A in self._row_blocks(vectors_only=True):
            part = pred.take(A)
            if part.shape[1]:
                gw += np.asarray(part.T @ v[rows]).ravel()
            gb += float(v[rows].sum())
        return pred.grad_from_raw(gw, gb)

    def null_directions(self):
        """Orthonormal coefficient directions along which no row changes.

        Constant (with an intercept), all-zero and collinear columns leave
        directions ``v`` with ``eta(c + v) = eta(c)`` for every row: the
        objective is flat along them and its minimisers form a family.
        Solvers then keep to the minimum-norm member
        (:func:`skrobust._solvers.minimize`). Candidates are the small
        eigenvalues (below ``1e-10`` of the largest) of each predictor's
        design Gram matrix on a strided sample of at most
        ``_NULL_SPACE_SAMPLE_ROWS`` rows (every true direction is among
        them); each is kept only if it is flat on all rows too, which costs
        a pass only when there are candidates. Returns an array of shape
        ``(n_coef, n_directions)``.

        With a ``null_cache`` (a dict shared by objectives on the same rows,
        weights and coordinates, such as a fit's successive fixed-scale
        objectives), the search runs once per predictor layout and penalty:
        it costs a Gram matrix and its eigendecomposition, which on a wide
        design is a large part of a fit.
        """
        return _cached_null_directions(self)

    def _design_grams(self, j, directions=None):
        """Weighted Gram matrix of predictor ``j``'s design (:func:`design_gram`)."""
        return design_gram(self, j, directions)

    # -- the pass over X -----------------------------------------------------
    def _row_blocks(self, vectors_only=False):
        """Yield ``(rows, A)``: row slices and the rows as the map ``T`` expects.

        ``vectors_only``: the caller makes no temporaries of a block's size
        (no Hessian), so an ``X`` that :meth:`_reads_whole` comes as one
        block: per-block overheads (the loss's, the sums') are paid once.
        """
        if self.sparse or (vectors_only and self._reads_whole()):
            yield slice(None), self.X
            return
        for rows in _row_blocks(*self.X.shape):
            A = self.X[rows]
            if self.explicit_centering:
                A = (A - self.mean) * self.inv_scale
            yield rows, A

    def _reads_whole(self):
        """Whether products with all of ``X`` at once beat row blocks.

        For dense ``X`` read as it is (no explicit centring) of at most
        ``_WHOLE_PASS_ELEMENTS``, which stays in cache between ``X @ w``
        and ``X.T @ g``, and predictors that take all columns or none (a
        subset would be a copy).
        """
        return (
            not self.sparse
            and not self.explicit_centering
            and self.X.size <= _WHOLE_PASS_ELEMENTS
            and all(
                pred.columns is None or pred.columns.size == 0
                for pred in self.predictors
            )
        )

    def _raw_block(self, parts, raw_coefs):
        """Linear predictors of one block, one contiguous column each.

        Column-major, so that each column is written by ``np.dot`` in place
        and read by the loss and by ``A.T @ g`` at unit stride. An
        intercept-only predictor is its intercept, without a product.
        """
        n = parts[0].shape[0]
        raw = np.empty((len(parts), n)).T
        for j, (Aj, (w, b)) in enumerate(zip(parts, raw_coefs, strict=True)):
            if Aj.shape[1] == 0:
                raw[:, j] = b
            else:
                column = raw[:, j]
                if self.sparse or np.result_type(Aj, w) != np.float64:
                    column[:] = Aj @ w  # (np.dot's out= must match exactly)
                else:
                    np.dot(Aj, w, out=column)
                column += b
        return raw

    def _pass(self, coef, gradient=True, hessian=False, direction=None, curvature=None):
        """Accumulate value, gradient, Hessian and/or H @ direction in one pass.

        ``curvature``, an array of shape (n_samples, k, k), receives each
        row's weighted loss Hessian (for :meth:`loss_gradient_curvature`).
        """
        small = self._small_design()
        if small is not None:
            return small.evaluate(self, coef, gradient, hessian, direction)
        if _lockstep.active():  # (one pass serves every lane: see _lockstep)
            return _lockstep.request(
                "pass", self, (coef, gradient, hessian, direction, curvature)
            )
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            return self._pass_single_threaded(
                coef, gradient, hessian, direction, curvature
            )

    def _small_design(self):
        """The :class:`~skrobust._small_design.SmallDesign` of small data, or None."""
        if self._designs is None:
            self._designs = SmallDesign.build(self) or False
        return self._designs or None

    def _pass_single_threaded(self, coef, gradient, hessian, direction, curvature):
        raw_coefs = [pred.to_raw(coef[pred.slice]) for pred in self.predictors]
        raw_dirs = None
        if direction is not None:
            raw_dirs = [pred.to_raw(direction[pred.slice]) for pred in self.predictors]
        sums = _PassSums(self.predictors, hessian)
        unit = self.unit_weights
        remembered = None
        if self.remember_prediction:
            remembered = np.empty((self.X.shape[0], len(self.predictors)))
        # One block for the vectors when X is read whole; the Hessian's
        # Gram matrices are then added in row blocks of it (their
        # temporaries are a block's size).
        whole = self._reads_whole()
        for rows, A in self._row_blocks(vectors_only=not hessian or whole):
            parts = [pred.take(A) for pred in self.predictors]
            raw = self._raw_block(parts, raw_coefs)
            if remembered is not None:
                remembered[rows] = raw
            sw = self.sample_weight[rows]
            if hessian or raw_dirs is not None or curvature is not None:
                loss, g, h = self.loss.loss_gradient_hessian(self.y[rows], raw)
                if curvature is not None:
                    np.multiply(h, sw[:, None, None], out=curvature[rows])
            else:
                loss, g = self.loss.loss_gradient(self.y[rows], raw)
            sums.add_value_gradient(parts, loss, g if gradient else None, sw, unit)
            if raw_dirs is not None:
                u = self._raw_block(parts, raw_dirs)
                sums.add_hessian_product(
                    parts, np.einsum("nab,nb->na", h, u) * sw[:, None]
                )
            if hessian and whole:
                for block in _row_blocks(*A.shape):
                    sums.add_hessian(
                        [part[block] for part in parts],
                        h[block],
                        None if unit else sw[block],
                        False,
                    )
            elif hessian:
                sums.add_hessian(parts, h, None if unit else sw, self.sparse)
        if remembered is not None:
            self._remembered = (coef.copy(), remembered)
        return sums.finish(self, coef, gradient, hessian, direction)

    # -- public evaluation ---------------------------------------------------
    def raw_prediction(self, coef):
        """Linear predictors ``eta`` of shape (n_samples, k) at ``coef``.

        With ``remember_prediction`` set, those of the latest pass are
        returned (a copy) when ``coef`` is its point, without another pass.
        """
        small = self._small_design()
        if small is not None:
            return small.raw_prediction(self, coef)
        if self._remembered is not None and np.array_equal(self._remembered[0], coef):
            return self._remembered[1].copy()
        if _lockstep.active():
            return _lockstep.request("raw", self, (coef,))
        return self._raw_prediction_single(coef)

    def _raw_prediction_single(self, coef):
        raw_coefs = [pred.to_raw(coef[pred.slice]) for pred in self.predictors]
        out = np.empty((self.X.shape[0], len(self.predictors)))
        for rows, A in self._row_blocks(vectors_only=True):
            parts = [pred.take(A) for pred in self.predictors]
            out[rows] = self._raw_block(parts, raw_coefs)
        return out

    def loss_gradient(self, coef):
        """Objective value and gradient at ``coef``, in one pass over ``X``."""
        value, grad, _, _ = self._pass(coef)
        return value, grad

    def hessian(self, coef):
        """Hessian matrix at ``coef``, in one pass over ``X``."""
        return self._pass(coef, gradient=False, hessian=True)[2]

    def loss_gradient_hessian(self, coef):
        """Objective value, gradient and Hessian matrix, in one pass over ``X``."""
        value, grad, H, _ = self._pass(coef, hessian=True)
        return value, grad, H

    def hessp(self, coef, vector):
        """Hessian-vector product ``H(coef) @ vector`` without forming ``H``."""
        return self._pass(coef, gradient=False, direction=vector)[3]

    def loss_gradient_curvature(self, coef):
        """Value, gradient and ``v -> H(coef) @ v``, in one pass over ``X``.

        See :func:`skrobust._curvature.loss_gradient_curvature`.
        """
        from ._curvature import loss_gradient_curvature  # (imports this module)

        return loss_gradient_curvature(self, coef)

    def loss_gradient_sparse_hessian(self, coef):
        """Value, gradient and a sparse Hessian operator, in one pass over ``X``.

        For sparse designs whose Hessian is sparse; see
        :mod:`skrobust._sparse_hessian`.
        """
        from ._sparse_hessian import loss_gradient_sparse_hessian  # (imports this)

        return loss_gradient_sparse_hessian(self, coef)

    # -- coefficients in the units of the original columns -------------------
    def unstandardize(self, coef):
        """Per predictor ``(w_j, b_j)`` in the units of the original columns.

        ``b_j`` is 0.0 for a predictor without an intercept (its columns are
        then not centred either, so none is lost). Pinned columns have
        ``w`` exactly 0.
        """
        out = []
        for pred in self.predictors:
            c = coef[pred.slice]
            idx = self._columns(pred)
            w = c[: pred.p] * self.inv_scale[idx]
            w[pred.pinned] = 0.0
            b = float(c[pred.p] - self.mean[idx] @ w) if pred.fit_intercept else 0.0
            out.append((w, b))
        return out

    def standardize(self, params):
        """Inverse of :meth:`unstandardize`: a flat coefficient vector."""
        coef = np.zeros(self.n_coef)
        for (w, b), pred in zip(params, self.predictors, strict=True):
            c = coef[pred.slice]
            idx = self._columns(pred)
            c[: pred.p] = w * self.scale[idx]
            c[: pred.p][pred.pinned] = 0.0  # (their minimiser)
            if pred.fit_intercept:
                c[pred.p] = b + self.mean[idx] @ w
        return coef

    def _columns(self, pred):
        return np.arange(self.X.shape[1]) if pred.columns is None else pred.columns


def design_gram(objective, j, directions=None):
    """Weighted Gram matrix of predictor ``j``'s standardised design.

    With ``directions`` (columns ``V``), instead the weighted Gram matrix
    of ``design @ V``: how far their span is from flat.
    """
    if directions is None:
        known = _known_design_gram(objective, j)
        if known is not None:
            return known
    small = objective._small_design()
    if small is not None:
        return small.gram(objective, j, directions)
    pred = objective.predictors[j]
    size = pred.slice.stop - pred.slice.start
    if directions is not None:
        size = directions.shape[1]
    gram = np.zeros((size, size))
    with _THREADPOOLS.limit(limits=1, user_api="blas"):
        for rows, A in objective._row_blocks():
            part = pred.take(A)
            sw = objective.sample_weight[rows]
            if directions is not None:
                moved = np.empty((part.shape[0], directions.shape[1]))
                for k in range(directions.shape[1]):
                    w, b = pred.to_raw(directions[:, k])
                    moved[:, k] = part @ w + b
                gram += moved.T @ (moved * sw[:, None])
                continue
            G = _weighted_gram(part, part, sw, objective.sparse)
            xd = np.asarray(part.T @ sw).ravel()
            gram += _gram_from_raw(pred, pred, G, xd, xd, sw.sum())
    return gram / objective.sum_weight


def _design_gram_key(objective, j):
    """Key of predictor ``j``'s design Gram matrix in ``objective.null_cache``."""
    return shared_key("design gram", objective, objective.predictors[j])


def remember_design_gram(objective, j, gram):
    """Keep predictor ``j``'s weighted design Gram matrix for the flat-direction search.

    For a least-squares start that formed it anyway (the Hessian of the
    unpenalised squared loss): every objective sharing ``null_cache``,
    ``X``, the weights and the coordinates then skips that pass.
    """
    if objective.null_cache is not None:
        key = _design_gram_key(objective, j)
        objective.null_cache[key] = (objective.X, objective.sample_weight, gram)


def _known_design_gram(objective, j):
    """The design Gram matrix :func:`remember_design_gram` kept, or None."""
    cache = getattr(objective, "null_cache", None)
    if cache is None:
        return None
    known = cache.get(_design_gram_key(objective, j))
    # (Identity, not only ids: an id can be reused once its array is gone.)
    if (
        known is None
        or known[0] is not objective.X
        or known[1] is not objective.sample_weight
    ):
        return None
    return known[2]


def _cached_null_directions(objective):
    """:func:`null_directions`, from and into ``objective.null_cache`` if set."""
    cache = objective.null_cache
    if cache is None:
        return null_directions(objective)
    layout = [
        (None if c is None else c.tobytes(), f) for c, f in objective.predictor_spec
    ]
    key = (
        id(objective.X),
        id(objective.sample_weight),
        objective.mean.tobytes() + objective.scale.tobytes(),  # the coordinates
        tuple(layout),
        objective.penalty.tobytes(),
    )
    cached = cache.get(key)
    # (Identity, not only ids: an id can be reused once its array is gone.)
    if (
        cached is None
        or cached[0] is not objective.X
        or cached[1] is not objective.sample_weight
    ):
        # (The lanes of a lock-step fit on the same rows search once.)
        directions = _lockstep.shared(
            ("null directions", _lockstep.rows_key(objective.X)) + key[2:],
            objective.sample_weight,
            lambda: null_directions(objective),
            objective.X,
        )
        cached = (objective.X, objective.sample_weight, directions)
        cache[key] = cached
    return cached[2]


def null_directions(objective):
    """Coefficient directions along which no row's prediction changes.

    See :meth:`LinearObjective.null_directions`; written for any objective
    with ``n_samples``, ``subsample``, ``predictors``, ``n_coef``,
    ``penalty`` and ``_design_grams`` (also the Dask objective).
    """
    step = aperiodic_step(objective.n_samples // _NULL_SPACE_SAMPLE_ROWS)
    sample = objective.subsample(step) if step > 1 else objective
    if step > 1 and not sample.sum_weight > 0:
        sample = objective
    directions = []
    for j, pred in enumerate(objective.predictors):
        if pred.p == 0:
            continue  # an intercept alone (weights have a positive sum)
        gram = sample._design_grams(j)
        if _clearly_regular(gram):
            continue
        eigenvalues, vectors = np.linalg.eigh(gram)
        small = eigenvalues <= 1e-10 * max(eigenvalues[-1], 0.0)
        if not np.any(small):
            continue
        candidates = vectors[:, small]
        if sample is not objective:
            # The flat directions on all rows, within the candidates'
            # span: eigh mixes near-zero eigenvectors of the sample (a
            # column constant on it, say) with each other, so each alone
            # need not be flat even when a combination of them is.
            on_all_rows, mixing = np.linalg.eigh(objective._design_grams(j, candidates))
            flat = on_all_rows <= 1e-10 * max(eigenvalues[-1], 0.0)
            candidates = candidates @ mixing[:, flat]
        block = np.zeros((objective.n_coef, candidates.shape[1]))
        block[pred.slice] = candidates
        directions.append(block)
    if not directions:
        return np.zeros((objective.n_coef, 0))
    directions = np.hstack(directions)
    # A penalised direction is curved by the ridge, hence not flat.
    curved = np.einsum("ik,i,ik->k", directions, objective.penalty, directions) > 0
    return directions[:, ~curved]


# A Gram matrix whose smallest eigenvalue is provably above this fraction of
# the largest (ten times null_directions' cut-off) has no flat direction.
_REGULAR_GRAM_RCOND = 1e-9


def _clearly_regular(gram):
    """Whether every eigenvalue of ``gram`` is above ``1e-10`` of the largest.

    A certificate in a Cholesky factorisation, a fifth of the cost of the
    eigendecomposition it spares: with ``G = L L'``, ``lambda_min >= 1 /
    trace(G^-1) = 1 / ||L^-1||_F^2`` and ``lambda_max <= trace(G)``. False
    (undecided) when the factorisation fails or the bounds are within
    ``_REGULAR_GRAM_RCOND`` of each other; eigenvalues computed by ``eigh``
    differ from these by rounding (``eps ||G||``), far below that margin.
    """
    if not (gram.size and np.all(np.isfinite(gram))):
        return False
    factor, info = scipy.linalg.lapack.dpotrf(gram, lower=1, clean=1)
    if info != 0:
        return False
    inverse, info = scipy.linalg.lapack.dtrtri(factor, lower=1)
    if info != 0:
        return False
    with np.errstate(over="ignore"):
        inverse_trace = float(np.sum(inverse * inverse))
    return bool(inverse_trace * _REGULAR_GRAM_RCOND * np.trace(gram) < 1.0)


class _PassSums:
    """What one pass over ``X`` accumulates, block by block, and its finish.

    Per predictor ``j``: ``X_j' g_j`` and ``sum g_j`` (gradient), the same
    for ``H u`` (Hessian-vector product) and, per pair ``(a, b)`` of
    predictors, the weighted Gram matrix ``X_a' D_ab X_b``, the column sums
    ``X_a' d_ab``, ``X_b' d_ab`` and ``sum d_ab`` (Hessian), all in the raw
    coordinates of the blocks; :meth:`finish` maps them to the standardised
    coefficients.
    """

    def __init__(self, predictors, hessian):
        k = len(predictors)
        self.value = 0.0
        self.gw = [np.zeros(pred.p) for pred in predictors]
        self.gb = np.zeros(k)
        self.hv_w = [np.zeros(pred.p) for pred in predictors]
        self.hv_b = np.zeros(k)
        self.pairs = [(a, b) for a in range(k) for b in range(a, k)]
        self.G = {
            (a, b): np.zeros((predictors[a].p, predictors[b].p))
            for a, b in (self.pairs if hessian else [])
        }
        self.xd = {
            (a, b): (np.zeros(predictors[a].p), np.zeros(predictors[b].p))
            for a, b in self.pairs
        }
        self.d_sum = dict.fromkeys(self.pairs, 0.0)

    def add_value_gradient(self, parts, loss, g, sw, unit):
        """A block's weighted loss, and its gradient unless ``g`` is None.

        ``sw`` the block's weights (all 1 where ``unit``); ``g`` is scaled
        by them in place.
        """
        # A loss that overflowed (squared residuals of 1e200, say) makes
        # the value infinite, which solvers reject, even where a zero
        # weight meets it; the derivatives are what least squares uses.
        with np.errstate(over="ignore", invalid="ignore"):
            self.value += loss.sum() if unit else sw @ loss
        if g is not None:
            if not unit:
                g *= sw[:, None]
            self.add_gradient(parts, g)

    def add_gradient(self, parts, g):
        for j, Aj in enumerate(parts):
            if Aj.shape[1]:
                self.gw[j] += Aj.T @ g[:, j]
            self.gb[j] += g[:, j].sum()

    def add_hessian_product(self, parts, hu):
        for j, Aj in enumerate(parts):
            self.hv_w[j] += Aj.T @ hu[:, j]
            self.hv_b[j] += hu[:, j].sum()

    def add_hessian(self, parts, h, sw, sparse):
        """Add a block's Hessian terms; ``sw`` None for unit weights."""
        for a, b in self.pairs:
            d = h[:, a, b] if sw is None else sw * h[:, a, b]
            # (Intercept-only predictors have no columns to multiply.)
            if parts[a].shape[1] and parts[b].shape[1]:
                self.G[a, b] += _weighted_gram(parts[a], parts[b], d, sparse)
            if parts[a].shape[1]:
                self.xd[a, b][0][:] += parts[a].T @ d
            if a != b and parts[b].shape[1]:
                self.xd[a, b][1][:] += parts[b].T @ d
            self.d_sum[a, b] += d.sum()

    def finish(self, objective, coef, gradient, hessian, direction):
        """``(value, grad, H, hv)`` of the weighted-mean objective plus its penalty."""
        predictors, S, penalty = (
            objective.predictors,
            objective.sum_weight,
            objective.penalty,
        )
        value = self.value / S + 0.5 * coef @ (penalty * coef)
        if not np.isfinite(value):
            value = np.inf
        grad = H = hv = None
        if gradient:
            grad = np.concatenate(
                [
                    pred.grad_from_raw(self.gw[j], self.gb[j])
                    for j, pred in enumerate(predictors)
                ]
            )
            grad = grad / S + penalty * coef
        if direction is not None:
            hv = np.concatenate(
                [
                    pred.grad_from_raw(self.hv_w[j], self.hv_b[j])
                    for j, pred in enumerate(predictors)
                ]
            )
            hv = hv / S + penalty * direction
        if hessian:
            H = np.zeros((objective.n_coef, objective.n_coef))
            for a, b in self.pairs:
                pa, pb = predictors[a], predictors[b]
                xa_d, xb_d = self.xd[a, b]
                block = _gram_from_raw(
                    pa,
                    pb,
                    self.G[a, b],
                    xa_d,
                    xa_d if a == b else xb_d,
                    self.d_sum[a, b],
                )
                H[pa.slice, pb.slice] = block
                H[pb.slice, pa.slice] = block.T
            H /= S
            H.flat[:: objective.n_coef + 1] += penalty
        return value, grad, H, hv
