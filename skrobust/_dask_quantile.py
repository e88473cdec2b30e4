r"""Exact quantile regression on row-chunked ``dask.array`` data.

Minimises the objective of :class:`~skrobust.QuantileRegressor`,

.. math::

    F(w, b) = \frac{1}{S} \sum_i s_i \, \rho_q(y_i - x_i^\top w - b)
              + \alpha \lVert w \rVert_1,

exactly, by the preprocessing of Portnoy and Koenker that
:mod:`skrobust._quantile_exact` applies in memory, with each pass over ``X``
one task per chunk on the worker that holds it (:class:`~skrobust._dask.
ChunkedData`) and only ``O(sqrt(n p))`` rows ever on the client:

1. **Checks and a sample** (one round trip, shared with the M-estimators):
   :func:`skrobust._dask_statistics.data_statistics` checks every chunk and returns the
   weight sum; a strided sample of rows comes to the client: the in-memory
   preliminary fit's rows ``X[::k]``
   (:func:`skrobust._quantile_level.preliminary_step`) when the in-memory
   fit subsamples. ``y`` is standardised by its exact median and MAD
   (:func:`skrobust._dask.standardise_targets`), as in memory.
2. **Preliminary fit**, the in-memory one: the smoothed fit of
   :func:`skrobust._quantile_level.fit_smooth` on the sample, made on the
   client by that code; on all rows
   (:meth:`skrobust._dask_quantile_smooth.DaskSmooth.preliminary`) where
   memory makes it on all rows.
3. **The start** (:meth:`_DaskExact.centred`, :meth:`_DaskExact.band`,
   :meth:`_DaskExact.refined`), as :func:`skrobust._quantile_exact._start`:
   the fit's intercept moved to the weighted ``q``-quantile of its
   residuals and the ``m = sqrt(n p)`` rows nearest it, both exact
   distributed selections (:mod:`skrobust._dask_select`, usually a round
   trip each); one pass returns those rows, the side sums ``sum s x``,
   ``sum s``, ``sum s y`` over the others above and below the fit (the
   two pseudo-observations), the weight within the band and a strided
   sample's Gram matrix; the client takes the in-memory one-step
   estimator (:func:`skrobust._quantile_exact._one_step`) and, if it moves
   the residuals enough, centres and bands its point (three more round
   trips), kept if it lowers the objective; and again from the new band
   while a step would still move the residuals that much (at most
   ``_START_NEWTON_STEPS`` steps).
4. **The reduced linear programme** on the client:
   :func:`skrobust._quantile_lp._dual_lp` (the primal LP if its duality
   check fails) on the kept rows and the two pseudo-observations, exactly
   as :func:`skrobust._quantile_exact._reduced_lp`.
5. **The certificate** (one round trip): each chunk checks the residual
   signs of its replaced rows at the LP's solution and returns the sums of
   :func:`skrobust._quantile_lp.certify_signs` (the weighted size of the
   wrong signs and their rounding allowance), its pinball loss, and its
   wrong-signed rows when there are few. The repairs are the in-memory
   ones: a few wrong rows join the band (steps 4 and 5 again); more than
   ``0.1 m`` double ``m`` and rebuild the band around the best fit so far.
   After ``max_rounds`` reduced problems, or a band of half the rows, the
   full problem is solved on all rows of positive weight (which then come
   to the client: the one case in which ``X`` does); from a subsample's
   start, after two, the preliminary fit is redone on all rows, as in
   memory.

Every step being memory's, so are the programmes and ``n_iter_`` (the
preliminary fit's iterations and the programmes). A fit whose first
reduced problem is certified makes nine to twelve round trips. The
answer is the LP optimum, as in memory: the objectives agree to the
accuracy of HiGHS (the tests check ``1e-9`` relative). When the minimiser
is not unique (ties, a degenerate design), the vertex found can differ from
the in-memory one, which moves along the optimal face towards its smoothed
fit: the objective is the same, the coefficients need not be.

``solver="smooth"`` is :mod:`skrobust._dask_quantile_smooth`, which also
makes the exact solver's preliminary fit where memory makes it on all rows.

``cov_type`` (``"iid"``, ``"nid"``, ``"ker"``) is
:mod:`skrobust._dask_quantile_cov`, after either solver.
"""

import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from . import _dask, _progress, _quantile_level
from ._dask_chunks import _chunk_weights
from ._dask_median import plausible_warm
from ._dask_quantile_cov import column_covariance
from ._dask_quantile_smooth import DaskSmooth, fit_smooth_column
from ._dask_select import select, tie_allowances
from ._dask_strided import rows_of
from ._quantile_exact import (
    _FIXUP_FRACTION,
    _FULL_FRACTION,
    _NEWTON_MAX_COEF,
    _NEWTON_MIN_SHIFT,
    _START_NEWTON_STEPS,
    ReducedPathFailed,
    _interpolating_vertex,
    _one_step,
    far_target_limit,
    first_size,
    gram_sample_step,
)
from ._quantile_lp import (
    _GAP_RTOL,
    _dual_lp,
    _lmatmat,
    _matvec,
    _pinball,
    _primal_lp,
    _weighted_sum,
)

_MAX_ROUNDS = 6


class _Standardised:
    """Standardised targets and scaled weights of a chunk (travels with tasks).

    ``y`` is ``(y - offset) / spread`` (0 on rows without weight, whose
    targets may be any finite number) and ``s`` the weights divided by the
    largest one, as :func:`skrobust._quantile_lp._check_inputs` scales them.
    With ``clip = (coef, intercept, limit)`` (standardised units), targets
    further than ``limit`` from that fit are moved to that distance on the
    same side, as :func:`skrobust._quantile_exact.solve_exact` does in
    memory: exact as long as each moved row stays clearly on its side at
    the solution (checked by the certificate pass).
    """

    def __init__(self, offset, spread, top, quantile, clip=None):
        self.offset, self.spread = float(offset), float(spread)
        self.top, self.quantile = float(top), float(quantile)
        self.clip = clip

    def unclipped(self):
        return _Standardised(self.offset, self.spread, self.top, self.quantile)

    def chunk(self, X_c, y_c, w_c):
        """``(y, s, positive, side)``: ``side`` is +-1 on moved rows, else 0."""
        s = _chunk_weights(y_c, w_c) / self.top
        positive = s > 0
        with np.errstate(over="ignore"):
            y = (np.asarray(y_c, dtype=np.float64) - self.offset) / self.spread
        y[~positive] = 0.0
        side = None
        if self.clip is not None:
            coef, intercept, limit = self.clip
            fitted = _matvec(X_c, coef) + intercept
            r = y - fitted
            moved = positive & (np.abs(r) > limit)
            side = np.where(moved, np.sign(r), 0.0)
            # From the fitted value, not y - shift, which would cancel for
            # y ~ 1e20.
            y[moved] = fitted[moved] + limit * side[moved]
        return y, s, positive, side

    def crossed(self, r, side):
        """Moved rows not clearly on their side at residuals ``r`` (a count)."""
        if side is None:
            return 0
        moved = side != 0
        return int(np.sum(r[moved] * side[moved] <= 1e-3 * self.clip[2]))

    def residuals(self, X_c, y, coef, intercept):
        return y - _matvec(X_c, coef) - intercept

    def loss(self, s, r):
        return _weighted_sum(s, _pinball(r, self.quantile))


def _side_sums(X_c, y, s, above, below):
    """``(sum s x, sum s, sum s y)`` over ``above`` (row 0) and ``below`` (row 1)."""
    Vt = np.empty((2, s.size))
    np.multiply(s, above, out=Vt[0])
    np.multiply(s, below, out=Vt[1])
    return _lmatmat(Vt, X_c), Vt.sum(axis=1), (Vt * y).sum(axis=1)


class _Residuals:
    """The rows of a selection (:mod:`skrobust._dask_select`): residuals at a fit.

    The rows of positive weight, with their residuals ``r`` and weights
    (the centring), or ``|r|`` each counting one (the band). Computed as
    the passes compute them (:meth:`_Standardised.residuals`), so that a
    selected threshold compares with the band's distances bit for bit.
    """

    def __init__(self, std, coef, intercept, absolute):
        self.std, self.coef, self.intercept = std, coef, float(intercept)
        self.absolute = absolute

    def __call__(self, X_c, y_c, w_c):
        y, s, positive, _ = self.std.chunk(X_c, y_c, w_c)
        r = self.std.residuals(X_c, y, self.coef, self.intercept)[positive]
        if self.absolute:
            return np.abs(r), np.ones(r.size)
        return r, s[positive]

    def hint(self, sample):
        """The values of the client's sample rows, its rows of positive weight."""
        return self(sample.X, sample.y, sample.weights)[0]


def _gram_kernel(X_c, y_c, w_c, std, fit_intercept):
    """The chunk's ``sum s_i z_i z_i^T`` (``z_i = (x_i, [1])``, intercept last)."""
    from ._inference import weighted_grams

    _, s, _, _ = std.chunk(X_c, y_c, w_c)
    # weighted_grams puts the intercept first; _one_step wants it last.
    (gram,) = weighted_grams(X_c, [s], fit_intercept)
    return np.roll(gram, -1, axis=(0, 1)) if fit_intercept else gram


def _side_sums_kernel(X_c, y_c, w_c, std, coef, intercept):
    """The chunk's side sums about the fit: rows with ``r >= 0``, and the others."""
    y, s, _, _ = std.chunk(X_c, y_c, w_c)
    above = std.residuals(X_c, y, coef, intercept) >= 0
    return _side_sums(X_c, y, s, above, ~above)


def _band_kernel(X_c, y_c, w_c, own, std, coef, intercept, threshold, gram):
    """The chunk's rows with ``|r| <= threshold`` and the sums over the others.

    ``own`` is ``(ties, first)``: of the rows at exactly ``threshold`` only
    the first ``ties`` are kept (all if None). Returns ``(rows, sums,
    counts, loss, within, sampled)``: ``rows`` are ``(index, X, y, s)`` of
    the kept rows, ``sums`` the side sums over the replaced rows above and
    below the fit, ``counts`` their numbers, ``loss`` the chunk's pinball
    loss and ``within`` the weight of all its rows with ``|r| <=
    threshold`` (for the density estimate). With ``gram = (step,
    fit_intercept)``, ``sampled`` is the :func:`_gram_kernel` of the
    chunk's rows from ``first`` on, every ``step``-th (those whose global
    index is a multiple of ``step``), and their weight; else None.
    """
    ties, first = own
    sampled = None
    if gram is not None:
        step, fit_intercept = gram
        rows = slice(first, None, step)
        w_rows = None if w_c is None else w_c[rows]
        sampled = (
            _gram_kernel(X_c[rows], y_c[rows], w_rows, std, fit_intercept),
            float(_chunk_weights(y_c[rows], w_rows).sum()) / std.top,
        )
    y, s, positive, side = std.chunk(X_c, y_c, w_c)
    r = std.residuals(X_c, y, coef, intercept)
    distance = np.abs(r)
    kept = positive & (distance <= threshold)
    within = _weighted_sum(s, kept)
    if ties is not None:
        kept[np.flatnonzero(kept & (distance == threshold))[ties:]] = False
    outside = positive & ~kept
    above, below = outside & (r >= 0), outside & (r < 0)
    sums = _side_sums(X_c, y, s, above, below)
    counts = np.array([above.sum(), below.sum()])
    index = np.flatnonzero(kept)
    rows = (index, np.asarray(X_c[index], dtype=np.float64), y[index], s[index])
    return rows, sums, counts, std.loss(s, r), within, sampled


def _certify_kernel(X_c, y_c, w_c, kept, std, fit, band_fit, n_coef, wrong_cap):
    """:func:`skrobust._quantile_lp.certify_signs`'s sums over one chunk.

    The replaced rows are those of positive weight not in ``kept`` (indices
    into the chunk), on the side of the band's fit ``band_fit``. Returns
    ``(gap, allowance, n_wrong, wrong_rows, loss, crossed)``: ``sum s_i
    |r_i|`` and ``sum s_i gamma_i`` over the rows of the wrong sign at
    ``fit``, how many are wrong beyond rounding, those rows as ``(index, X,
    y, s, above)`` (None if more than ``wrong_cap``), the chunk's pinball
    loss and the number of its clipped rows that left their side.
    """
    y, s, positive, side = std.chunk(X_c, y_c, w_c)
    r = std.residuals(X_c, y, *fit)
    band_r = std.residuals(X_c, y, *band_fit)
    replaced = positive.copy()
    replaced[kept] = False
    above, below = replaced & (band_r >= 0), replaced & (band_r < 0)
    violations = np.flatnonzero((above & (r < 0)) | (below & (r > 0)))
    r_v, y_v = r[violations], y[violations]
    # certify_signs' rounding bound of r_i = y_i - x_i w - b.
    eps = np.finfo(np.float64).eps
    gamma = 4.0 * (n_coef + 2) * eps * (np.abs(y_v) + np.abs(y_v - r_v))
    s_v = s[violations]
    gap, allowance = float(s_v @ np.abs(r_v)), float(s_v @ gamma)
    wrong = violations[np.abs(r_v) > gamma]
    rows = None
    if wrong.size <= wrong_cap:
        rows = (
            wrong,
            np.asarray(X_c[wrong], dtype=np.float64),
            y[wrong],
            s[wrong],
            above[wrong],
        )
    return gap, allowance, wrong.size, rows, std.loss(s, r), std.crossed(r, side)


class _Band:
    """The kept rows on the client and the pseudo-observations of the others.

    ``kept`` holds each chunk's indices of kept rows (sent back with the
    certificate pass), ``X``, ``y``, ``s`` their values; ``sums`` and
    ``counts`` are the side sums and numbers of the replaced rows above
    (row 0) and below (row 1) the fit ``fit`` the band was built around.
    """

    def __init__(self, parts, fit, threshold):
        self.fit, self.threshold = fit, threshold
        self.kept = [part[0][0] for part in parts]
        self.X = np.vstack([part[0][1] for part in parts])
        self.y = np.concatenate([part[0][2] for part in parts])
        self.s = np.concatenate([part[0][3] for part in parts])
        self.sums = [sum(part[1][k] for part in parts) for k in range(3)]
        self.counts = sum(part[2] for part in parts)
        self.loss = sum(part[3] for part in parts)
        self.within = sum(part[4] for part in parts)

    def all_side_sums(self):
        """The side sums over all rows about :attr:`fit` (the kept ones too)."""
        r = self.y - _matvec(self.X, self.fit[0]) - self.fit[1]
        above = r >= 0
        kept = _side_sums(self.X, self.y, self.s, above, ~above)
        return [replaced + kept[k] for k, replaced in enumerate(self.sums)]

    @property
    def size(self):
        return self.y.size

    def add(self, wrong_parts):
        """Move the wrong-signed rows of the certificate into the band."""
        sx, ss, sy = self.sums
        for c, rows in enumerate(wrong_parts):
            index, X_w, y_w, s_w, above_w = rows
            if not index.size:
                continue
            self.kept[c] = np.concatenate([self.kept[c], index])
            self.X = np.vstack([self.X, X_w])
            self.y = np.concatenate([self.y, y_w])
            self.s = np.concatenate([self.s, s_w])
            for side, mask in enumerate([above_w, ~above_w]):
                sx[side] -= s_w[mask] @ X_w[mask]
                ss[side] -= s_w[mask].sum()
                sy[side] -= s_w[mask] @ y_w[mask]
                self.counts[side] -= int(mask.sum())
        # An emptied side is exactly empty, whatever the rounding of the sums.
        for side in range(2):
            if self.counts[side] == 0:
                sx[side], ss[side], sy[side] = 0.0, 0.0, 0.0

    def solve(self, problem):
        """Minimiser of the reduced objective, as ``_reduced_lp`` in memory."""
        sx, ss, sy = self.sums
        has = (np.asarray(self.counts) > 0) & (ss > 0)
        # Divided by their total weight, so that their rows are on the
        # scale of the others; their cost weight carries the total.
        pseudo = sx[has] / ss[has, None]
        Z = np.vstack([self.X, pseudo])
        targets = np.concatenate([self.y, sy[has] / ss[has]])
        weights = np.concatenate([self.s, ss[has]]) / problem.s_hat
        if problem.lam == 0 and not has.any() and Z.shape[0] <= problem.n_coef:
            # All rows kept, no more than the coefficients: as in memory
            # (skrobust._quantile_exact._solve_full).
            vertex = _interpolating_vertex(
                Z, targets, np.arange(Z.shape[0]), problem.fit_intercept
            )
            if vertex is not None:
                return np.asarray(vertex[0], dtype=np.float64), float(vertex[1])
        args = (Z, targets, weights, problem.q, problem.lam, problem.fit_intercept)
        coef, intercept, ok = _dual_lp(*args)
        if not ok:
            coef, intercept = _primal_lp(*args)
        return np.asarray(coef, dtype=np.float64), float(intercept)


class _DaskExact:
    """One exact fit on dask data, in standardised ``y`` units (module steps)."""

    def __init__(self, estimator, data, sample, std, sum_weight):
        self.data, self.sample, self.std = data, sample, std
        self.q = float(estimator.quantile)
        self.alpha = float(estimator.alpha)
        self.fit_intercept = bool(estimator.fit_intercept)
        self.p = data.n_features
        self.n_coef = self.p + int(self.fit_intercept)
        self.S = float(sum_weight)
        self.penalty = self.alpha * self.S
        self.n_pos = None
        self.gram = None
        self.crossed = 0
        self.n_lp = 0
        # The density estimate of the start's Newton step (None: none
        # taken), and that of a solution certified on the reduced path: the
        # state a neighbouring level starts from (memory's level_state).
        self.density = None
        self.level_density = None

    def set_rows_with_weight(self, n_pos):
        """LP units as :class:`skrobust._quantile_exact._Problem` sets them."""
        self.n_pos = int(n_pos)
        self.s_hat = self.S / self.n_pos
        self.lam = self.alpha * self.n_pos

    def objective(self, loss, coef):
        """``S F``: the weighted pinball sum plus ``alpha S ||w||_1``."""
        return loss + self.penalty * float(np.abs(coef).sum())

    def first_size(self, initial_size=None):
        """``(m, direct)`` of :func:`skrobust._quantile_exact.first_size`."""
        return first_size(self.n_pos, self.n_coef, initial_size)

    def centred(self, fit):
        """The fit moved to the weighted ``q``-quantile of its residuals.

        :meth:`skrobust._quantile_exact._Problem.centred` (one selection);
        it also counts the rows of positive weight.
        """
        if not self.fit_intercept and self.n_pos is not None:
            return fit
        rows = _Residuals(self.std, *fit, absolute=False)
        selected = select(
            self.data,
            rows,
            lambda total: self.q * total,
            rows.hint(self.sample),
            self.q,
        )
        self.set_rows_with_weight(selected.count)
        if not self.fit_intercept:
            return fit
        return fit[0], fit[1] + selected.value

    def band(self, fit, m):
        """The ``m`` rows of positive weight nearest ``fit`` and the others' sums.

        As :class:`skrobust._quantile_exact._Band`: the ``m`` smallest
        ``|r|`` exactly (one selection; ties at the ``m``-th value taken in
        row order), then the pass that brings them (all rows of positive
        weight for ``m >= n_pos``).
        """
        threshold, ties = np.inf, None
        if m < self.n_pos:
            rows = _Residuals(self.std, *fit, absolute=True)
            selected = select(
                self.data, rows, lambda n_pos: m, rows.hint(self.sample), m / self.n_pos
            )
            threshold = selected.value
            ties = tie_allowances(self.data, rows, selected, m)
        if ties is None:
            ties = [None] * self.data.X.numblocks[0]
        # The Newton step's sampled Gram matrix rides on the first band's
        # pass: every step-th row by global index (newton_gram).
        step = None
        if self.gram is None and self.n_coef <= _NEWTON_MAX_COEF and m < self.n_pos:
            step = gram_sample_step(self.n_pos, self.n_coef)
        starts = np.cumsum((0,) + tuple(self.data.X.chunks[0][:-1]))
        firsts = [0 if step is None else int(-start % step) for start in starts]
        parts = self.data.map_chunks(
            _band_kernel,
            self.std,
            *fit,
            threshold,
            None if step is None else (step, self.fit_intercept),
            each=list(zip(ties, firsts, strict=True)),
        )
        if step is not None:
            weight = sum(part[5][1] for part in parts)
            if weight > 0:
                self.gram = sum(part[5][0] for part in parts) * (self.S / weight)
        return _Band(parts, fit, threshold)

    def newton_gram(self):
        """:func:`skrobust._quantile_exact._gram_sample` on dask data.

        The rows whose global index is a multiple of the sample's stride,
        scaled to all, from the first band's pass (:meth:`band`); if those
        rows carry no weight, all rows of positive weight (one pass).
        """
        if self.gram is None:
            step = gram_sample_step(self.n_pos, self.n_coef)
            rows, weight = rows_of(self.data, step, self.std.top)
            if step > 1 and not weight > 0:
                rows, step = self.data, 1
            if step == 1:
                weight = self.S
            parts = rows.map_chunks(_gram_kernel, self.std, self.fit_intercept)
            self.gram = sum(parts) * (self.S / weight)
        return self.gram

    def neighbour_start(self, fit, m, density):
        """``(fit, band, S F)`` from a nearby level's solution, as in memory.

        :func:`skrobust._quantile_exact._neighbour_start`: from the
        solution centred at this level (``fit``), one Newton step from the
        side sums of its residuals' signs with the neighbour's ``density``,
        centred again, and its band; the density for the next level from
        the band.
        """
        parts = self.data.map_chunks(_side_sums_kernel, self.std, *fit)
        sums = [sum(part[k] for part in parts) for k in range(3)]
        step, _ = _one_step(
            self.newton_gram(),
            self.S,
            sums,
            fit[0],
            self.q,
            self.penalty,
            self.fit_intercept,
            density,
        )
        coef = fit[0] + step[: self.p]
        intercept = fit[1] + (step[self.p] if self.fit_intercept else 0.0)
        fit = self.centred((coef, float(intercept)))
        band = self.band(fit, m)
        h = band.threshold
        # The weight within +-h is that of the band (up to ties at h).
        within = float(band.s.sum()) / (2.0 * h * self.S) if 0 < h < np.inf else 0.0
        self.density = within if within > 0 else density
        return fit, band, self.objective(band.loss, fit[0])

    def refined(self, fit, band, obj, m):
        """``(fit, band, S F)`` after memory's Newton steps of the start.

        :func:`skrobust._quantile_exact._start`: the one-step estimator from
        the band's side sums, the density of the errors within the band's
        half-width and the sampled Gram matrix; applied (and the fit
        centred again: three round trips) if it moves the residuals by more
        than ``_NEWTON_MIN_SHIFT`` of that half-width, and kept if it lowers
        the objective; then again from the new band, at most
        ``_START_NEWTON_STEPS`` steps in all.
        """
        h = band.threshold
        if not (self.n_coef <= _NEWTON_MAX_COEF and 0 < h < np.inf):
            return fit, band, obj
        self.density = density = band.within / (2.0 * h * self.S)
        for _ in range(_START_NEWTON_STEPS):
            step, shift = _one_step(
                self.newton_gram(),
                self.S,
                band.all_side_sums(),
                fit[0],
                self.q,
                self.penalty,
                self.fit_intercept,
                density,
            )
            if shift <= _NEWTON_MIN_SHIFT * h:
                break
            coef = fit[0] + step[: self.p]
            intercept = fit[1] + (step[self.p] if self.fit_intercept else 0.0)
            moved = self.centred((coef, float(intercept)))
            moved_band = self.band(moved, m)
            moved_obj = self.objective(moved_band.loss, moved[0])
            if moved_obj >= obj:
                break
            fit, band, obj = moved, moved_band, moved_obj
            h = band.threshold
            if not 0 < h < np.inf:
                break
            # (The weight within +-h is that of the band, as in memory.)
            density = float(band.s.sum()) / (2.0 * h * self.S)
        return fit, band, obj

    def certify(self, band, fit, m):
        """Step 6: ``(accepted, S F at fit, wrong rows per chunk or None)``."""
        wrong_cap = int(_FIXUP_FRACTION * m) + 1
        parts = self.data.map_chunks(
            _certify_kernel,
            self.std,
            fit,
            band.fit,
            self.n_coef,
            wrong_cap,
            each=band.kept,
        )
        gap = sum(part[0] for part in parts)
        allowance = sum(part[1] for part in parts)
        n_wrong = sum(part[2] for part in parts)
        obj = self.objective(sum(part[4] for part in parts), fit[0])
        self.crossed = sum(part[5] for part in parts)
        if gap <= _GAP_RTOL * obj + allowance:
            return True, obj, None
        if n_wrong > _FIXUP_FRACTION * m:
            return False, obj, None
        return False, obj, [part[3] for part in parts]

    def solve(
        self,
        start,
        max_lp,
        max_rounds=None,
        full_fallback=True,
        initial_size=None,
        neighbour_density=None,
    ):
        """Steps 3 to 6 from the preliminary fit ``start``: ``(coef, intercept)``.

        The phases of
        :func:`skrobust._quantile_exact._solve_exact_unclipped`: the start
        centred, its band of ``m`` rows and Newton step, then the reduced
        problems with quantreg's repairs. At most ``max_lp`` linear
        programmes (at least one), the last the whole problem, as in
        memory. At most ``max_rounds`` reduced ones; if none is certified
        and not ``full_fallback``, raises
        :class:`~skrobust._quantile_exact.ReducedPathFailed` with the number
        solved (a caller with a better start to try, as in memory).
        ``initial_size`` is the first band's (as in memory, else its
        default) and ``neighbour_density`` the density estimate of a nearby
        level whose solution ``start`` is (then its start is
        :meth:`neighbour_start`).
        """
        if max_rounds is None:
            max_rounds = _MAX_ROUNDS
        # (Its selection also counts the rows of positive weight.)
        fit = self.centred(start)
        m, direct = self.first_size(initial_size)
        if direct:
            return self.whole(self.band(fit, self.n_pos))
        if neighbour_density is not None and self.n_coef <= _NEWTON_MAX_COEF:
            fit, band, obj = self.neighbour_start(fit, m, neighbour_density)
        else:
            band = self.band(fit, m)
            obj = self.objective(band.loss, fit[0])
            fit, band, obj = self.refined(fit, band, obj, m)
        best_obj, best_fit = obj, fit
        limit = max(_FULL_FRACTION * self.n_pos, m)
        for _ in range(min(max_rounds, max_lp - 1)):
            fit = band.solve(self)
            self.n_lp += 1
            accepted, obj, wrong = self.certify(band, fit, m)
            _progress.say(
                1,
                "reduced problem of {} rows: {}",
                band.size,
                "certified" if accepted else "signs do not hold",
            )
            if accepted:
                self.level_density = self.density
                return fit
            if wrong is None:
                # Rebuild around the best fit so far, with a band twice as wide.
                if obj < best_obj:
                    best_obj, best_fit = obj, fit
                m = min(2 * m, self.n_pos)
                band = self.band(best_fit, m)
            else:
                band.add(wrong)
            if band.size > limit:
                break
        if not full_fallback:
            raise ReducedPathFailed(self.n_lp)
        # The full problem: every row of positive weight comes to the client.
        return self.whole(self.band(best_fit, self.n_pos))

    def whole(self, band):
        """The linear programme on every row of positive weight (``band``)."""
        self.n_lp += 1
        fit = band.solve(self)
        if self.std.clip is not None:
            self.certify(band, fit, self.n_pos)  # (for the clipped rows' sides)
        return fit


def _clip(sample, std, coef, intercept):
    """``(coef, intercept, limit)`` of the clipping of far targets, or None.

    ``limit`` is :func:`skrobust._quantile_exact.far_target_limit` on the
    sample's rows: 50 robust scales of the residuals of the preliminary fit
    (or of ``y``). Targets of ``1e20`` among ones would otherwise cost the
    linear programmes all their digits (HiGHS's tolerances are absolute),
    here through the pseudo-observations' sums too.
    """
    positive = sample.weights > 0
    if not positive.any():
        return None
    y = (sample.y[positive] - std.offset) / std.spread
    residuals = y - _matvec(sample.X[positive], coef) - intercept
    limit = far_target_limit(y, residuals, sample.weights[positive])
    return (coef, intercept, limit) if limit > 0 and np.isfinite(limit) else None


class ColumnData:
    """What every level's fit of one target column shares (steps 1 and 2).

    The chunked data, :func:`skrobust._dask_statistics.data_statistics` (a pass over
    ``X``), the strided sample and the standardisation of ``y`` by its exact
    median and MAD (:func:`skrobust._dask.standardise_targets`, the
    in-memory one). For the exact solver on data the in-memory fit
    subsamples, the sample is the in-memory preliminary fit's rows
    (``X[::preliminary_step]``,
    :func:`skrobust._quantile_level.preliminary_step`): that fit is then made
    on the client exactly as in memory. None of them depends on the
    quantile, so the levels of a :class:`~skrobust.MultiQuantileRegressor`
    make them once.

    Attributes
    ----------
    data : ChunkedData
    stats : tuple
        :func:`skrobust._dask_statistics.data_statistics`'s ``(sum_weight, top,
        column_stats, y_range)``.
    sample : Sample
    offset, spread : float
        ``y`` is fitted as ``(y - offset) / spread``.
    preliminary_step : int
        The sample's stride if it is the in-memory preliminary fit's rows,
        else 1 (that fit is made on all rows).
    """

    def __init__(self, estimator, X, y, sample_weight):
        self.preliminary_step = 1
        step_for = None
        if estimator._resolve_solver(X.shape) == "exact":
            n_coef = X.shape[1] + bool(estimator.fit_intercept)

            def step_for(n_samples):
                step = _quantile_level.preliminary_step(n_samples, n_coef)
                self.preliminary_step = step
                return step if step > 1 else None

        # Otherwise the sample rows of the M-estimators' fits (_dask's constants).
        self.data, self.stats, self.sample = _dask.column_setup(
            X, y, sample_weight, estimator.fit_intercept, step_for=step_for
        )
        self.offset, self.spread = _dask.standardise_targets(
            estimator, self.data, self.stats, self.sample
        )


def fit_column(
    estimator,
    X,
    y,
    sample_weight,
    output,
    n_outputs,
    start=None,
    column=None,
    exact_options=None,
    zero_start=True,
):
    """One target column's exact fit on a dask array (module steps).

    Parameters
    ----------
    estimator : QuantileRegressor
        Its parameters; its attributes are not set here.
    X : dask.array.Array of shape (n_samples, n_features)
    y : dask.array.Array or array-like of shape (n_samples,)
    sample_weight : dask.array.Array or array-like of shape (n_samples,) or None
    output, n_outputs : int
        This column's index and the number of columns (for ``warm_start``).
    start : tuple, default=None
        ``(coef, intercept, scale)``: a start in the units of ``y`` in place
        of the estimator's warm start or the preliminary fit (a neighbouring
        level's fit); ``scale`` is for the smoothed solver (its residual
        scale in standardised units, or None).
    column : ColumnData, default=None
        The column's setup, made by an earlier level's fit (then ``X``,
        ``y`` and ``sample_weight`` are not read); None makes it.
    exact_options : dict, default=None
        For the exact solver from a ``start``, as a multi-level fit passes
        them in memory: ``initial_size`` (the first band's rows),
        ``neighbour_density`` (the start is a nearby level's solution, of
        that density estimate) and ``gram`` (the sampled Gram matrix of an
        earlier level). The fit's own are left in
        ``estimator._dask_exact_state``: ``(density, gram, n_pos)``, its
        density None unless it was certified on the reduced path.
    zero_start : bool, default=True
        Whether the reduced problems may first start from the zero fit
        (:func:`skrobust._quantile_level.zero_start_first`), as in memory;
        a multi-quantile fit's levels keep the preliminary fit.

    Returns
    -------
    fit : StandardisedFit
        Coefficients and intercept in the units of ``y``; ``n_iter`` counts
        the preliminary fit's iterations and the linear programmes.
    round_trips : int
        All of ``column.data``'s round trips so far, its setup's included.
    """
    from ._base import StandardisedFit

    if column is None:
        column = ColumnData(estimator, X, y, sample_weight)
    shape = (column.data.n_samples, column.data.n_features)
    if estimator._resolve_solver(shape) == "smooth":
        return fit_smooth_column(estimator, column, output, n_outputs, start)
    data, stats, sample = column.data, column.stats, column.sample
    sum_weight, top = stats[0], stats[1]
    offset, spread = column.offset, column.spread
    std = _Standardised(offset, spread, top, estimator.quantile)
    warm = plausible_warm(
        estimator,
        output,
        n_outputs,
        data,
        stats,
        sample,
        offset,
        spread,
    )
    preliminary = _exact_start(estimator, column, start, warm, output, zero_start)
    extras, n_iter = preliminary.extras, preliminary.n_iter
    options = dict(exact_options or {})
    gram = options.pop("gram", None)
    if start is not None:
        preliminary.options.update(options)
    while True:
        try:
            problem, (coef, intercept) = _solve_from(
                estimator, column, std, preliminary, estimator.max_iter - n_iter, gram
            )
            break
        except ReducedPathFailed as failed:
            # As in memory: the reduced problems from the zero fit or a
            # neighbouring level's solution failed (the level's preliminary
            # fit then), or from a subsample's start (a quantile in a gap
            # of the targets, where the subsample's gap is elsewhere: the
            # preliminary fit again, on all rows).
            n_iter += failed.args[0]
            left = estimator.max_iter - n_iter
            if preliminary.retry:
                # (The zero start again only after a neighbour's start.)
                zero = preliminary.retry == "cold"
                preliminary = _exact_start(
                    estimator, column, None, None, output, zero, left
                )
            else:
                preliminary = _all_rows_preliminary(estimator, column, left)
            extras, n_iter = preliminary.extras, n_iter + preliminary.n_iter
            gram = None
    if problem.crossed:
        # A clipped target crossed the fit: solve again unclipped, from here.
        n_lp = problem.n_lp
        left = estimator.max_iter - n_iter - n_lp
        if left < 1:
            warnings.warn(
                f"max_iter={estimator.max_iter} was used up before a clipped "
                "target could be fitted unclipped; increase max_iter.",
                ConvergenceWarning,
                stacklevel=5,
            )
        else:
            problem = _DaskExact(estimator, data, sample, std.unclipped(), sum_weight)
            problem.n_lp = n_lp
            coef, intercept = problem.solve((coef, intercept), left)
    _progress.say(
        1,
        "{} rows in {} chunks: {} linear programmes, {} round trips",
        data.n_samples,
        data.X.numblocks[0],
        problem.n_lp,
        data.round_trips,
    )
    coef_ = coef * spread
    intercept_ = float(intercept * spread + offset) if estimator.fit_intercept else 0.0
    estimator._n_rows_fit = data.n_samples
    estimator._dask_linear_programmes = problem.n_lp
    estimator._dask_exact_state = problem.level_density, problem.gram, problem.n_pos
    if estimator.cov_type is not None:
        extras["cov_"] = column_covariance(
            estimator, data, sample, stats, coef_, intercept_
        )
    fitted = StandardisedFit(coef_, intercept_, n_iter + problem.n_lp, extras)
    return fitted, data.round_trips


class _Preliminary(NamedTuple):
    """The start of an exact fit: in standardised ``y`` units.

    ``n_iter`` are its iterations, ``extras`` the attributes it sets
    (``bandwidth_``, in the units of ``y``) and ``options`` those of
    :meth:`_DaskExact.solve`. ``retry`` says what follows if its reduced
    problems fail: ``"preliminary"`` (from the zero fit) the preliminary
    fit, ``"cold"`` (from a neighbouring level's solution) the level's cold
    fit, the zero start included; ``""`` (from a preliminary fit) the
    preliminary fit on all rows.
    """

    coef: np.ndarray
    intercept: float
    n_iter: int
    extras: dict
    options: dict
    retry: str = ""


def _solve_from(estimator, column, std, preliminary, max_lp, gram=None):
    """``(problem, (coef, intercept))``: steps 3 to 6 from a preliminary fit."""
    data, sample, sum_weight = column.data, column.sample, column.stats[0]
    problem = _DaskExact(estimator, data, sample, std, sum_weight)
    problem.gram = gram
    w0 = np.asarray(preliminary.coef, dtype=np.float64)
    b0 = float(preliminary.intercept) if estimator.fit_intercept else 0.0
    std.clip = _clip(sample, std, w0, b0)
    return problem, problem.solve((w0, b0), max_lp, **preliminary.options)


def _exact_start(estimator, column, start, warm, output, zero_start=True, budget=None):
    """The :class:`_Preliminary` of an exact fit, as in memory.

    The given ``start`` (a neighbouring level's fit, in the units of
    ``y``), else the warm start, else the in-memory preliminary fit
    (:func:`skrobust._quantile_level._fit_standard_units`): the smoothed
    fit on its strided subsample, which is the column's sample, made on the
    client by the in-memory code (the reduced problems from it get two
    rounds); on all rows
    (:meth:`skrobust._dask_quantile_smooth.DaskSmooth.preliminary`) for
    data it does not subsample; none where
    :func:`skrobust._quantile_level.whole_programme_at_once` (the whole
    programme from the median); the zero fit with a few reduced problems
    where :func:`skrobust._quantile_level.zero_start_first` (and
    ``zero_start``). ``budget`` (default ``max_iter``) bounds its
    iterations with the programmes'.
    """
    offset, spread = column.offset, column.spread
    extras = {}
    if start is None and warm is not None:
        start = warm.coef, warm.intercept
        previous = getattr(estimator, "bandwidth_", None)
        if previous is not None:
            extras["bandwidth_"] = np.ravel(previous)[output]
    if start is not None:
        b0 = (start[1] - offset) / spread if estimator.fit_intercept else 0.0
        w0 = np.asarray(start[0], dtype=np.float64) / spread
        # (A neighbouring level's start may fail: then the cold start.)
        return _Preliminary(w0, float(b0), 0, extras, {}, retry="cold")
    if budget is None:
        budget = int(estimator.max_iter)
    n_coef = column.data.n_features + bool(estimator.fit_intercept)
    zeros = np.zeros(column.data.n_features)
    if _quantile_level.whole_programme_at_once(column.data.n_samples, n_coef, budget):
        return _Preliminary(zeros, 0.0, 0, {}, {})
    n_samples = column.data.n_samples
    if zero_start and _quantile_level.zero_start_first(n_samples, n_coef, budget):
        options = {
            "full_fallback": False,
            "max_rounds": _quantile_level._ZERO_START_ROUNDS,
        }
        return _Preliminary(zeros, 0.0, 0, {}, options, retry="preliminary")
    sample = column.sample
    if column.preliminary_step > 1 and sample.weights.max(initial=0.0) > 0:
        with np.errstate(over="ignore"):
            y = (sample.y - offset) / spread
        y[~(sample.weights > 0)] = 0.0
        limit = _quantile_level._Y_CLIP
        level = _quantile_level.fit_smooth(
            estimator,
            sample.X,
            np.clip(y, -limit, limit),
            sample.weights,
            warn=False,
            max_iter=budget - _quantile_level.EXACT_LP_RESERVE,
        )
        return _Preliminary(
            level.coef,
            level.intercept,
            level.n_iter,
            {"bandwidth_": level.bandwidth * spread},
            {
                "max_rounds": _quantile_level._SUBSAMPLE_START_ROUNDS,
                "full_fallback": False,
            },
        )
    return _all_rows_preliminary(estimator, column, budget)


def _all_rows_preliminary(estimator, column, budget):
    """The exact solver's preliminary smoothed fit on all rows, as in memory."""
    problem = DaskSmooth(
        estimator,
        column.data,
        column.stats,
        column.sample,
        (column.offset, column.spread),
        _quantile_level._Y_CLIP,
    )
    w, b, bandwidth = problem.preliminary(budget - _quantile_level.EXACT_LP_RESERVE)
    extras = {"bandwidth_": bandwidth * column.spread}
    return _Preliminary(w, b, problem.n_iter, extras, {})
