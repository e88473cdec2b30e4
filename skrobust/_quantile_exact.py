r"""Exact weighted, L1-penalised quantile regression by preprocessing and LP.

Minimises the objective of :class:`sklearn.linear_model.QuantileRegressor`,

.. math::

    F(w, b) = \frac{1}{S} \sum_i s_i \, \rho_q(y_i - x_i^\top w - b)
              + \alpha \lVert w \rVert_1,
    \qquad S = \sum_i s_i,
    \qquad \rho_q(r) = \max(q r, (q - 1) r),

exactly (to the accuracy of HiGHS, as the one linear programme of
:func:`~skrobust._quantile_lp.solve_lp`) and much faster, by the
preprocessing of Portnoy and Koenker ("The Gaussian hare and the Laplacian
tortoise", Statistical Science 12, 1997; ``quantreg::rq.fit.pfn``) around a
preliminary fit. The LP formulations and the certificate live in
:mod:`skrobust._quantile_lp`; this module is the algorithm, one function per
phase:

**Start** (:func:`_start`). Residuals ``r`` of the preliminary fit are
shifted by their weighted ``q``-quantile (with an intercept; without one the
fit cannot shift). Unless ``p + 1 > 200``, one Newton step
(:func:`_one_step`, with the error density estimated from the ``m`` rows
nearest the fit) refines the start; it is kept if it lowers ``F``. This
makes a least-squares start nearly as good as a quantile one. The gradient
comes with the pass that the pseudo-observations need anyway and the
Hessian from a row sample; only a step that moves the residuals by more
than a fifth of the band's half-width is applied, at the price of two more
passes over ``X``.

**Reduced problem** (:func:`_reduced_lp`). Keep the set ``K`` of the ``m``
rows with the smallest ``|r_i|`` (:class:`_Band`); call the other rows with
``r_i >= 0`` the set ``A`` (above) and those with ``r_i < 0`` the set ``B``
(below). With ``e_i = y_i - x_i^T w - b`` the residuals of a candidate
``(w, b)``, solve

.. math::

    G(w, b) = \frac{1}{S}\Big[\sum_{i \in K} s_i \rho_q(e_i)
              + \rho_q\Big(\sum_{i \in A} s_i e_i\Big)
              + \rho_q\Big(\sum_{i \in B} s_i e_i\Big)\Big]
              + \alpha \lVert w \rVert_1,

i.e. ``A`` and ``B`` each replaced by one pseudo-observation
``(sum s_i x_i, sum s_i y_i)`` whose intercept entry is ``sum s_i``. The
pseudo-observations keep ``G >= 0``; a linear cost term per set instead
would make ``G`` unbounded below whenever ``K`` leaves a direction of ``w``
free. The LP is solved through its dual, with ``p + 1`` equality rows and
box bounds.

**Certificate** (:func:`~skrobust._quantile_lp.certify_signs`). ``G <= F``
everywhere, with equality where the assumed signs hold; if they hold at
the minimiser of ``G`` (up to rounding), it minimises ``F``.

**Repairs** (:func:`_reduced_rounds`). If a few rows (at most ``0.1 m``)
have the wrong sign they join ``K`` and ``G`` is minimised again. If there
are more, the band was too narrow for the start (``G``'s minimiser is then
typically far off): ``m`` doubles and ``K`` is rebuilt around the best fit
so far by ``F`` (quantreg's rule). After ``max_rounds`` reduced problems, or
once ``K`` holds more than half of the rows, the full problem is solved
instead (:func:`_solve_full`: the dual LP, or the primal one if the dual's
certificate fails).

**Face selection** (:func:`~skrobust._quantile_face.select_on_face`, its
own module). When the minimiser is not unique, the vertex found moves along
the optimal face towards a target (the smoothed fit), so that the answer
does not depend on the order or the repetition of the rows.

**Wild targets** (:func:`solve_exact`). Targets far from the preliminary
fit are pulled in before all this, which is exact as long as they keep the
side of the fit they were on.

Only numpy and scipy are used. ``X`` is never copied densely as a whole and
never modified: dense ``X`` of a dtype other than float64 is converted in
row blocks of a few megabytes, and only row subsets are gathered.
"""

from functools import cached_property, partial

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ._base import kth_smallest
from ._quantile_face import select_on_face
from ._quantile_lp import (
    _BLOCK_ELEMENTS,
    _check_inputs,
    _check_X,
    _dual_lp,
    _gather_rows,
    _lmatmat,
    _matvec,
    _primal_lp,
    _row_blocks,
    _weighted_pinball,
    _weighted_sum,
    certify_signs,
    pinball_objective,
    solve_lp,
)
from ._strides import aperiodic_step

__all__ = ["pinball_objective", "select_on_face", "solve_exact", "solve_lp"]

# Size of the first kept set, m = _SIZE_FACTOR * sqrt(n_pos * (p + intercept)),
# clipped to [_MIN_SIZE, n_pos]. Portnoy & Koenker: if the preliminary fit is
# off by O(sqrt(p / n)), each residual moves by about that much, so about
# n * density * sqrt(p / n) = O(sqrt(n p)) observations can change sign. The
# factor was tuned on Gaussian designs with t(2) noise (homo- and
# heteroscedastic), q from 0.05 to 0.95, starting from least squares (then
# refined by one Newton step) or from a smoothed quantile fit: with 1, at
# n = 20000, p = 20 the first reduced problem was accepted in 36 of 40 cases
# from least squares and 30 of 30 from the smoothed fit, one fix-up round
# doing the rest; at n = 1e6 all 20 were accepted at once. A larger factor makes
# misses rarer but the LP, the dominant cost, slower (its time grows a bit
# faster than m), and each miss costs one pass over X plus one more LP.
_SIZE_FACTOR = 1.0
# Below a few hundred kept rows the LP takes a few milliseconds anyway, and a
# wider band makes a failed sign check (an extra round) less likely.
_MIN_SIZE = 300
# When the kept set would be more than this fraction of the rows, the reduced
# problem is hardly smaller than the full one: solve the full one instead.
_FULL_FRACTION = 0.5
# quantreg's rule: if more wrongly globbed rows turn up than this fraction of
# m, the band was too narrow; double m and rebuild the kept set around the
# best fit so far instead of only moving the wrong rows into it.
_FIXUP_FRACTION = 0.1
# The Newton refinement of the start costs a (p+1)^2 Gram matrix, n p^2
# flops; above this many coefficients that is no longer cheap next to the LP.
_NEWTON_MAX_COEF = 200
# ... and it is only applied if it moves the residuals (root mean square) by
# more than this fraction of the band's half-width.
_NEWTON_MIN_SHIFT = 0.2
# Newton steps of the start, at most: a further one is taken (a pass over
# X, the centring and the band) only while the last moved the residuals by
# more than that fraction of the new band's half-width, which its sums show
# without a pass. From a preliminary fit on 21 000 of 1e7 rows, 20 band
# half-widths off, one step landed well inside for q = 0.25 and 0.5 but
# not for q = 0.75, where two reduced problems failed and the preliminary
# fit was redone on all rows (10.6 s; with the second step 4.3 s).
_START_NEWTON_STEPS = 3
# Targets further than this many median absolute deviations from the
# preliminary fit are moved to that distance before the LP (solve_exact).
_CLIP_MADS = 50.0
# Side sums are updated by a gather of the rows that changed side while they
# are fewer than this fraction of the rows; else recomputed by a pass.
_GATHER_FRACTION = 0.2
# Newton steps of a start from a nearby exact solution (a neighbouring
# level). Each costs one pass over X (its side sums come by gathers) and
# shrinks the start's error, and so the band the LP needs. Since the simplex
# method starts at the start too, a second step costs more than it saves:
# 99 levels at n = 1e5, p = 20 took 1.46 s of CPU with two, 1.12-1.17 s
# with one (same band), 1.29 s with none (a band twice as wide).
_NEIGHBOUR_STEPS = 1
# The m smallest of more than _PILOT_MIN_ROWS values are those up to their
# m-th smallest, found by a bracketed selection (_base.kth_smallest).
_PILOT_MIN_ROWS = 20000


# Rows of the Newton step's Gram sample gathered at a time.
_GRAM_SAMPLE_BLOCK = 2048


def gram_sample_step(n_pos, n_coef):
    """Stride of :func:`_gram_sample`'s rows, for ``n_pos`` rows of positive weight.

    About ``max(20 n_coef, 2**18 / n_coef)`` rows, by a stride that does
    not alias with periodically ordered rows (:func:`aperiodic_step`): every
    6th of monthly rows (1e5 x 17) held 2 of the 12 months, a Gram matrix
    singular along the 10 others' dummies.
    """
    n_sub = min(n_pos, max(20 * n_coef, _BLOCK_ELEMENTS // max(n_coef, 1)))
    return aperiodic_step(n_pos // max(n_sub, 1))


def _gram_sample(X, s, pos, fit_intercept):
    """Approximate ``sum_i s_i z_i z_i^T``, ``z_i = (x_i, [1])``, from a row sample.

    Only used to scale a Newton step whose density factor is far cruder
    than the few per cent of error of a sample of ``max(20 (p+1), 2**18 /
    (p+1))`` rows; a strided sample stays representative when the rows are
    sorted, and costs nothing next to a pass over ``X``. ``pos`` are the
    indices of the rows of positive weight.
    """
    p = X.shape[1]
    p1 = p + int(fit_intercept)
    # Every k-th of all the rows (those of zero weight add nothing), as a
    # fit on dask data takes them by their global index; all the rows of
    # positive weight if those carry none.
    sub = np.arange(0, s.size, gram_sample_step(pos.size, p1))
    if not s[sub].sum() > 0:
        sub = pos
    # The sampled rows gathered a block at a time and scaled in place (a
    # copy of all of them would be an eighth of X at p = 20); the
    # intercept's row and column are their weighted column sums.
    gram = np.zeros((p1, p1))
    for start in range(0, sub.size, _GRAM_SAMPLE_BLOCK):
        block = sub[start : start + _GRAM_SAMPLE_BLOCK]
        Z = X[block].toarray() if sp.issparse(X) else X[block]
        # (X[block] is a copy: block is an index array. Integer X: a float one.)
        Z = np.asarray(Z, dtype=float)
        root = np.sqrt(s[block])
        Z *= root[:, None]
        gram[:p, :p] += Z.T @ Z
        if fit_intercept:
            gram[p, :p] += root @ Z
    if fit_intercept:
        gram[:p, p] = gram[p, :p]
        gram[p, p] = s[sub].sum()
    # (Rows of zero weight add nothing to the total.)
    return gram * (s.sum() / s[sub].sum())


def _solve_full(X, y, s, pos, quantile, alpha, fit_intercept):
    """The full problem: dual LP, with the primal LP if its certificate fails.

    Without a penalty, rows no more than the coefficients that some
    vertex interpolates take that vertex (:func:`_interpolating_vertex`).
    """
    if alpha == 0 and pos.size <= X.shape[1] + int(fit_intercept):
        vertex = _interpolating_vertex(X, y, pos, fit_intercept)
        if vertex is not None:
            return (*vertex, "interpolation")
    s_hat = s[pos].sum() / pos.size
    Z = _gather_rows(X, pos)
    w = s[pos] / s_hat
    lam = alpha * pos.size
    coef, intercept, ok = _dual_lp(Z, y[pos], w, quantile, lam, fit_intercept)
    if ok:
        return coef, intercept, "full"
    coef, intercept = _primal_lp(Z, y[pos], w, quantile, lam, fit_intercept)
    return coef, intercept, "full-primal"


# Interpolating vertices are sought by a dense factorisation of the rows up to
# this many elements (256 MiB): beyond, the linear programmes decide.
_INTERPOLATION_MAX_ELEMENTS = 2**25


def _interpolating_vertex(X, y, pos, fit_intercept):
    """``(coef, intercept)`` of a vertex that fits rows ``pos`` exactly, or None.

    With no more rows ``n`` than coefficients, a design ``A = [X_pos, 1]``
    of full row rank is interpolated by a basic solution: ``n`` columns
    chosen by QR with column pivoting (``A P = Q R``), the system on them
    solved and the other coefficients zero. Every residual is then zero,
    the least pinball loss there is, and the point is a vertex of the
    linear programme, as a simplex method would end at. The dual LP of
    these problems has the single feasible point ``a = 0``; HiGHS took
    25 s to solve it at 1000 x 1000 (dense), this 0.1 s. None where ``A``
    is rank deficient (duplicated rows with other targets: then no plane
    fits every row), or too large to factorise densely.
    """
    n, p = pos.size, X.shape[1]
    k = p + int(fit_intercept)
    if n == 0 or n * k > _INTERPOLATION_MAX_ELEMENTS:
        return None
    rows = X[pos]
    A = np.empty((n, k))
    A[:, :p] = rows.toarray() if sp.issparse(rows) else rows
    if fit_intercept:
        A[:, p] = 1.0
    target = np.asarray(y[pos], dtype=np.float64)
    _, R, perm = scipy.linalg.qr(A, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(R))
    if not diagonal[-1] > k * np.finfo(np.float64).eps * diagonal[0]:
        return None
    basis = perm[:n]
    theta = np.zeros(k)
    try:
        theta[basis] = scipy.linalg.solve(A[:, basis], target, check_finite=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgWarning):
        return None
    # Exact up to the rounding of the residuals (as solve_exact's sign check).
    residuals = target - A @ theta
    scale = np.abs(target) + np.abs(A) @ np.abs(theta)
    if not np.all(np.abs(residuals) <= 4.0 * (k + 3) * np.finfo(float).eps * scale):
        return None
    return theta[:p], (float(theta[p]) if fit_intercept else 0.0)


# ----------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------


def _weighted_quantile(r, s, quantile, equal_weights=False):
    """Smallest ``t`` with ``sum(s[r <= t]) >= quantile * sum(s)``, in O(n).

    A strided pilot sample brackets ``t``; only the values inside the bracket
    are sorted. Sorting all of ``r`` costs more than the rest of the
    preprocessing at ``n = 1e6``. ``equal_weights`` True skips the check
    that the weights are equal (the caller knows).
    """
    n = r.size
    if n > 0 and (equal_weights or s[0] == s.min() == s.max()):
        # Equal weights: the ceil(q n)-th smallest value, by selection.
        k = min(max(int(np.ceil(quantile * n)) - 1, 0), n - 1)
        return kth_smallest(r, k)
    target = quantile * float(s.sum())

    def exact(values, weights, below):
        order = np.argsort(values, kind="stable")
        cum = below + np.cumsum(weights[order])
        k = min(int(np.searchsorted(cum, target)), values.size - 1)
        return float(values[order[k]])

    if n <= 20000:
        return exact(r, s, 0.0)
    step = aperiodic_step(n // 10000)
    pilot_r, pilot_s = r[::step], s[::step]
    order = np.argsort(pilot_r)
    pilot_r, cum = pilot_r[order], np.cumsum(pilot_s[order])
    cum /= cum[-1]
    last = pilot_r.size - 1
    # Kish's effective sample size of the pilot: unequal weights make its
    # quantile noisier.
    n_eff = float(pilot_s.sum()) ** 2 / float(pilot_s @ pilot_s)
    half = 5.0 * np.sqrt(quantile * (1 - quantile) / n_eff) + 2.0 / pilot_r.size
    for _ in range(3):
        lo_k = int(np.searchsorted(cum, quantile - half))
        hi_k = int(np.searchsorted(cum, quantile + half))
        lo = pilot_r[lo_k] if lo_k > 0 else -np.inf
        hi = pilot_r[hi_k] if hi_k < last else np.inf
        below = float(s[r < lo].sum())
        # The answer is in [lo, hi] iff less than the target weight lies
        # strictly below lo and at least the target at or below hi.
        if below < target <= float(s[r <= hi].sum()):
            inside = (r >= lo) & (r <= hi)
            return exact(r[inside], s[inside], below)
        half *= 4.0
    return exact(r, s, 0.0)


def _smallest(d, m):
    """Indices of the ``m`` smallest entries of ``d`` (ties broken by position)."""
    if m >= d.size:
        return np.arange(d.size)
    if d.size <= _PILOT_MIN_ROWS or m > d.size // 4:
        return np.argpartition(d, m - 1)[:m]
    threshold = kth_smallest(d, m - 1)
    below = np.flatnonzero(d < threshold)
    ties = np.flatnonzero(d == threshold)[: m - below.size]
    return np.concatenate([below, ties])


def _nearest(d, pos, m):
    """Indices of the ``m`` positive-weight rows with the smallest ``d``."""
    cand = d if pos is None else d[pos]
    sel = _smallest(cand, m)
    return sel if pos is None else pos[sel]


def _side_sums(X, y, s, above):
    """Weighted sums of ``x``, ``1`` and ``y`` over the rows above / below the fit.

    Returns ``(sx, ss, sy)`` of shapes ``(2, p)``, ``(2,)``, ``(2,)``: row 0
    sums over ``above``, row 1 over the rest (rows of zero weight add 0).
    One pass over ``X``. They give both the subgradient of the pinball loss
    (for the Newton step) and, minus the kept rows, the two
    pseudo-observations. Dense ``X`` is read a block of rows at a time, so
    that the two weight rows are never whole n-vectors.
    """
    sparse = sp.issparse(X)  # (whole: slices of a sparse matrix are copies)
    blocks = [slice(None)] if sparse else _row_blocks(*X.shape)
    sx, ss, sy = np.zeros((2, X.shape[1])), np.zeros(2), np.zeros(2)
    for rows in blocks:
        s_rows = s[rows]
        Vt = np.empty((2, s_rows.size))
        np.multiply(s_rows, above[rows], out=Vt[0])
        np.subtract(s_rows, Vt[0], out=Vt[1])
        sx += _lmatmat(Vt, X if sparse else X[rows])
        ss += Vt.sum(axis=1)
        sy += Vt @ y[rows]
    return sx, ss, sy


def _one_step(
    gram, total_weight, sums, coef, quantile, penalty, fit_intercept, density
):
    r"""Newton step of ``sum_i s_i rho_q(r_i) + penalty ||w||_1`` at the fit.

    The expected pinball loss has gradient ``-sum_i s_i psi(r_i) z_i`` with
    ``psi(r) = q - 1{r < 0}``, ``z_i = (x_i, [1])``, and Hessian
    ``sum_i s_i f_i z_i z_i^T`` where ``f_i`` is the density of the error at
    the ``q``-quantile; with one common density estimate this is the
    classical one-step estimator. From a root-n consistent start its error is
    the start's error times the relative error of the density estimate, plus
    a remainder of order ``n^(-3/4)`` (Bahadur representation). The L1 term
    only enters through its gradient ``penalty * sign(w)``: the step just
    centres the band, it need not land on the penalised optimum.

    ``sums`` are the :func:`_side_sums` of the residuals ``r >= 0``, so that
    ``sum_i s_i psi(r_i) z_i = q sums[0] - (1 - q) sums[1]``, and
    ``total_weight`` is ``S``: only these and ``gram`` enter, so that a fit
    whose rows are elsewhere (on a Dask cluster) takes the same step.

    Returns the step ``(dw, [db])`` (``lstsq`` copes with a singular Gram
    matrix: duplicated or constant columns, ``p`` close to ``n``) and the
    root mean square ``sqrt(step' G step / S)`` by which it would move the
    residuals, computed without a pass over ``X``.
    """
    sx, ss, _ = sums
    grad = quantile * sx[0] - (1.0 - quantile) * sx[1]
    grad -= penalty * np.sign(coef)
    if fit_intercept:
        grad = np.append(grad, quantile * ss[0] - (1.0 - quantile) * ss[1])
    # Jacobi scaling first: lstsq's cut-off is relative to the largest
    # singular value, and columns of X on scales far from that of the
    # intercept would otherwise look like a null space.
    root = np.sqrt(np.diag(gram))
    root[~(root > 0)] = 1.0
    step = np.linalg.lstsq(gram / np.outer(root, root), grad / root, rcond=None)[0]
    step /= root * density
    shift = np.sqrt(max(float(step @ gram @ step), 0.0) / float(total_weight))
    return step, shift


# Reduced problems before the whole one is solved (solve_exact's default).
MAX_ROUNDS = 6


class ReducedPathFailed(Exception):
    """The reduced problems were given up (``full_fallback=False``)."""


class _Problem:
    """The validated data of one exact fit and what every phase derives from it.

    ``X``, ``y`` and the weights ``s`` (scaled to a largest of 1) come from
    :func:`~skrobust._quantile_lp._check_inputs`. LP costs are in units of
    the mean positive weight ``s_hat`` (of order one for HiGHS), so the L1
    weight there is ``lam = alpha * n_pos``; in the units of
    ``sum_i s_i rho_q(r_i)`` it is ``penalty = alpha * S``.
    """

    def __init__(self, X, y, s, S, quantile, alpha, fit_intercept):
        self.X, self.y, self.s, self.S = X, y, s, S
        self.q = float(quantile)
        self.alpha = float(alpha)
        self.fit_intercept = bool(fit_intercept)
        self.p = X.shape[1]
        self.n_coef = self.p + int(self.fit_intercept)
        self.pos_mask = s > 0
        self.n_pos = int(np.count_nonzero(self.pos_mask))
        self.pos_or_none = None if self.n_pos == X.shape[0] else self.pos
        self.s_hat = S / self.n_pos
        self.lam = self.alpha * self.n_pos
        self.penalty = self.alpha * S
        self.gram = None
        self.full_fallback = True
        self.equal_weights = bool(s.size and s[0] == s.min() == s.max())

    @cached_property
    def pos(self):
        """Indices of the rows of positive weight (an n-vector: when needed)."""
        return np.flatnonzero(self.pos_mask)

    def newton_gram(self):
        """The :func:`_gram_sample` of the Newton step, computed once."""
        if self.gram is None:
            self.gram = _gram_sample(self.X, self.s, self.pos, self.fit_intercept)
        return self.gram

    def residuals(self, coef, b):
        """``y - X coef - b``: one pass over ``X``."""
        return self.y - _matvec(self.X, coef) - b

    def centred(self, r, b):
        """Residuals and intercept shifted by the weighted ``q``-quantile.

        With an intercept the best shift of a fit puts ``q`` of the weight
        below it: the band is centred there.
        """
        if not self.fit_intercept:
            return r, b
        if self.pos_or_none is None:
            t = _weighted_quantile(r, self.s, self.q, self.equal_weights)
        else:
            t = _weighted_quantile(r[self.pos], self.s[self.pos], self.q)
        return r - t, b + t

    def objective(self, r, coef):
        """``S F``; rows of zero weight contribute 0."""
        loss = _weighted_pinball(self.s, r, self.q)
        return loss + self.penalty * float(np.abs(coef).sum())

    def full(self):
        """``(coef, intercept, solver)`` of the full problem."""
        return _solve_full(
            self.X, self.y, self.s, self.pos, self.q, self.alpha, self.fit_intercept
        )


class _Band:
    """The kept rows ``K`` around a fit, and the side of every other row.

    ``kept`` marks the ``m`` rows of positive weight with the smallest
    ``|r_i|`` (``first`` their indices); ``above`` is ``r_i >= 0``, the
    side assumed for the rows outside ``K``; ``sums`` are their
    :func:`_side_sums` (one pass over ``X``, unless known: a start from a
    neighbouring level updates its neighbour's by gathers).
    ``origin`` is the fit ``(coef, intercept)`` where the simplex method of
    its reduced problem starts (:func:`~skrobust._quantile_lp._dual_lp`),
    None for the zero fit.
    """

    def __init__(self, problem, r, m, sums=None, origin=None):
        self.origin = origin
        self.first = _nearest(np.abs(r), problem.pos_or_none, m)
        self.kept = np.zeros(r.size, dtype=bool)
        self.kept[self.first] = True
        self.above = r >= 0
        if sums is None:
            sums = _side_sums(problem.X, problem.y, problem.s, self.above)
        self.sums = sums

    def replaced(self, problem):
        """The rows of positive weight outside ``K``, above and below."""
        outside = problem.pos_mask & ~self.kept
        return outside & self.above, outside & ~self.above

    def half_width(self, r):
        """Largest ``|r_i|`` in ``K`` as first chosen."""
        return float(np.abs(r[self.first]).max(initial=0.0))


def first_size(n_pos, n_coef, initial_size=None):
    """``(m, direct)``: the first kept set's size, and whether to solve the whole LP.

    By default ``m = sqrt(n_pos n_coef)`` clipped to ``[_MIN_SIZE, n_pos]``,
    and the full problem directly when ``m`` exceeds ``_FULL_FRACTION`` of
    the ``n_pos`` rows of positive weight (fewer than about 600 rows, or
    fewer than 4 per coefficient). An explicit ``initial_size`` is only
    clipped to ``[1, n_pos]``. Shared by the fit on dask data.
    """
    if initial_size is None:
        m = int(np.ceil(_SIZE_FACTOR * np.sqrt(n_pos * max(n_coef, 1))))
        m = min(max(m, _MIN_SIZE), n_pos)
        return m, m > _FULL_FRACTION * n_pos
    m = min(max(int(initial_size), 1), n_pos)
    return m, m >= n_pos


def _start(problem, coef, b, r, m, refine, info):
    """The start of the reduced problems: ``(coef, b, r, S F, band)``.

    ``r`` are the residuals of ``(coef, b)``. They are centred
    (:meth:`_Problem.centred`) and, if ``refine`` and the Newton step of
    :func:`_one_step` moves them by more than ``_NEWTON_MIN_SHIFT`` times
    the band's half-width, the step is tried and kept when it lowers ``F``;
    then again from the new band, at most ``_START_NEWTON_STEPS`` steps.
    """
    r, b = problem.centred(r, b)
    obj = problem.objective(r, coef)
    band = _Band(problem, r, m)
    h = band.half_width(r)
    if not (refine and problem.n_coef <= _NEWTON_MAX_COEF and h > 0):
        return coef, b, r, obj, band
    p = problem.p
    density = info["density"] = _density(problem, r, h)
    for _ in range(_START_NEWTON_STEPS):
        step, shift = _one_step(
            problem.newton_gram(),
            problem.S,
            band.sums,
            coef,
            problem.q,
            problem.penalty,
            problem.fit_intercept,
            density,
        )
        # A step that moves the residuals by a small fraction of the band's
        # half-width cannot change the band much (a quantile-type start):
        # skip the passes that apply it. (So the step after the first, from
        # the new band's sums, costs a pass only if the last one did not
        # land well inside the band.)
        if shift <= _NEWTON_MIN_SHIFT * h:
            break
        coef1 = coef + step[:p]
        b1 = b + (step[p] if problem.fit_intercept else 0.0)
        r1, b1 = problem.centred(problem.residuals(coef1, b1), b1)
        obj1 = problem.objective(r1, coef1)
        if obj1 >= obj:
            break
        info["refined"] = True
        # (Freed before the new band's pass: n-vectors are what a fit holds.)
        del r, band
        coef, b, r, obj, band = coef1, b1, r1, obj1, _Band(problem, r1, m)
        h = band.half_width(r)
        if not h > 0:
            break
        # The weight within +-h is that of the band (up to ties at h).
        density = float(problem.s[band.first].sum()) / (2.0 * h * problem.S)
    return coef, b, r, obj, band


def _density(problem, r, h):
    """Density of the errors at the fit: weight within ``+-h`` over ``2 h S``."""
    return float(problem.s[np.abs(r) <= h].sum()) / (2.0 * h * problem.S)


def _neighbour_start(problem, coef, b, r, m, state, info):
    """The start from an exact solution at a nearby level: as :func:`_start`.

    Returns ``(coef, b, r, None, band)``: the objective of the start is
    left to :func:`_reduced_rounds`, which needs it rarely.

    ``r`` are the residuals of that solution and ``state`` its
    ``info["level_state"]``: the side sums of the signs of ``r`` and its
    density estimate. As in :func:`_start` the residuals are centred at
    this level and one Newton step moves the fit; but the side sums come
    from those of ``r`` and gathers of the rows whose side changed (with
    the centring, then with the step), not from passes over ``X``, and the
    band is built once, after the step. The step is always taken: the
    certificate makes the answer exact whatever the start. With
    ``state["centre"]`` False (a start at the same level, with other
    weights: the bootstrap) the residuals are not centred; the step's
    intercept moves them.
    """
    p = problem.p
    centre = state.get("centre", True)
    # The signs the side sums are of: carried, because a residual at a
    # rounding-level zero can change sign when recomputed from another y.
    # Without them the band's sums are recomputed by a pass over X.
    signs = state.get("above")
    exact_sums = signs is not None
    if not exact_sums:
        signs = r >= 0
    r, b = problem.centred(r, b) if centre else (r, b)
    sums = state["side_sums"]
    n_steps = state.get("steps", _NEIGHBOUR_STEPS)
    for n_taken in range(n_steps + 1):
        # The side sums of the current residuals, then a Newton step.
        moved = np.flatnonzero((r >= 0) != signs)
        if moved.size > _GATHER_FRACTION * r.size:
            sums = _side_sums(problem.X, problem.y, problem.s, r >= 0)
        else:
            sums = _moved_side_sums(problem, sums, moved, r[moved] >= 0)
        signs = r >= 0
        if n_taken == n_steps:
            break
        step, _ = _one_step(
            problem.newton_gram(),
            problem.S,
            sums,
            coef,
            problem.q,
            problem.penalty,
            problem.fit_intercept,
            state["density"],
        )
        coef = coef + step[:p]
        b = b + (step[p] if problem.fit_intercept else 0.0)
        r = problem.residuals(coef, b)
        if centre:
            r, b = problem.centred(r, b)
    band = _Band(problem, r, m, sums if exact_sums else None)
    h = band.half_width(r)
    # The weight within +-h is that of K (up to ties at h): no pass.
    density = float(problem.s[band.first].sum()) / (2.0 * h * problem.S) if h else 0.0
    info["density"] = density if density > 0 else state["density"]
    info["refined"] = True
    # S F of the start only matters if the first reduced problem misses
    # widely (_reduced_rounds): a pass over the residuals saved per level.
    return coef, b, r, None, band


def _moved_side_sums(problem, sums, rows, now_above):
    """:func:`_side_sums` after ``rows`` changed side (to above where ``now_above``).

    A gather of those rows instead of a pass over ``X``.
    """
    sx, ss, sy = (np.array(part, dtype=np.float64) for part in sums)
    if rows.size:
        # +1 for a row that moved from below to above, -1 the other way.
        signed = problem.s[rows] * np.where(now_above, 1.0, -1.0)
        delta = np.asarray(_gather_rows(problem.X, rows).T @ signed).ravel()
        sx[0] += delta
        sx[1] -= delta
        ss += [signed.sum(), -signed.sum()]
        delta_y = float(signed @ problem.y[rows])
        sy += [delta_y, -delta_y]
    return sx, ss, sy


def _signs_side_sums(problem, band, r):
    """:func:`_side_sums` of the signs of ``r``, from those of ``band``.

    At a certified solution mostly kept rows have changed side, but a
    replaced row of the wrong sign (a rounding-level zero) counts too: the
    next level's band takes its sums from these by gathers only, and the
    pseudo-observations of its reduced problem must be exact sums.
    """
    moved = np.flatnonzero((r >= 0) != band.above)
    return _moved_side_sums(problem, band.sums, moved, r[moved] >= 0)


def _reduced_lp(problem, band, replaced):
    """Minimiser of ``G`` (the kept rows and two pseudo-observations).

    The pseudo-observations' sums are the side sums over all rows minus
    those over the kept rows, which are at hand (no pass over ``X``); their
    weights are summed directly, so that an empty side is exactly 0.
    The simplex method starts at ``band.origin``, the fit the band was
    built around (or the last round's solution). Returns ``(coef,
    intercept, ok)`` of :func:`_dual_lp`.
    """
    X, y, s = problem.X, problem.y, problem.s
    K = np.flatnonzero(band.kept)
    above = band.above
    rows_k = _gather_rows(X, K)
    side_weights_k = np.vstack([s[K] * above[K], s[K] * ~above[K]])
    sx = band.sums[0] - np.asarray((rows_k.T @ side_weights_k.T).T)
    sy = band.sums[2] - side_weights_k @ y[K]
    ss = np.array([_weighted_sum(s, side) for side in replaced])
    has = ss > 0
    # Divided by their total weight, so that their rows are on the scale of
    # the others; their cost weight carries the total instead (rho_q is
    # positively homogeneous).
    pseudo = sx[has] / ss[has, None]
    if sp.issparse(rows_k):
        Z = sp.vstack([rows_k, sp.csr_matrix(pseudo)], format="csr")
    else:
        Z = np.vstack([rows_k, pseudo])
    targets = np.concatenate([y[K], sy[has] / ss[has]])
    weights = np.concatenate([s[K], ss[has]]) / problem.s_hat
    return _dual_lp(
        Z,
        targets,
        weights,
        problem.q,
        problem.lam,
        problem.fit_intercept,
        origin=band.origin,
    )


def _reduced_rounds(problem, r, obj, band, m, max_rounds, info):
    """Reduced problems until one is certified, with quantreg's repairs.

    ``r`` and ``obj`` are the residuals and ``S F`` of the start around
    which ``band`` was built (``obj`` None: not computed yet, the start
    being ``band.origin``). Returns ``(coef, intercept, info)``; the full
    problem is solved after ``max_rounds`` or once ``K`` holds more than
    half of the rows.
    """
    best_obj, best_r, best_fit = obj, r, band.origin
    # The LPs of a warm start start from the last fit; a cold one's from 0.
    warm = band.origin is not None
    limit = max(_FULL_FRACTION * problem.n_pos, m)
    for rnd in range(1, max_rounds + 1):
        info["rounds"] = rnd
        info["reduced_size"] = int(band.kept.sum())
        replaced = band.replaced(problem)
        coef, b, ok = _reduced_lp(problem, band, replaced)
        if not ok:
            break
        r = problem.residuals(coef, b)
        accepted, wrong = certify_signs(
            r,
            problem.y,
            problem.s,
            *replaced,
            partial(problem.objective, r, coef),
            problem.n_coef,
        )
        if accepted:
            info["solver"] = "reduced"
            info["residuals"] = r
            if "density" in info:
                info["level_state"] = {
                    "side_sums": _signs_side_sums(problem, band, r),
                    "above": r >= 0,
                    "density": info["density"],
                }
            return coef, b, info
        if wrong.size > _FIXUP_FRACTION * m:
            # Restart around the best fit so far, with a band twice as wide.
            obj = problem.objective(r, coef)
            if best_obj is None:
                best_obj = problem.objective(best_r, best_fit[0])
            if obj < best_obj:
                best_obj, best_r, best_fit = obj, r, (coef, b) if warm else None
            m = min(2 * m, problem.n_pos)
            band = _Band(problem, best_r, m, origin=best_fit)
        else:
            band.kept[wrong] = True
            band.origin = (coef, b) if warm else None
        if band.kept.sum() > limit:
            break
    info["fallback"] = True
    if not problem.full_fallback:
        raise ReducedPathFailed(info["rounds"])
    info["reduced_size"] = problem.n_pos
    coef, b, info["solver"] = problem.full()
    return coef, b, info


def far_target_limit(y, residuals, sample_weight):
    """Distance from a fit beyond which :func:`solve_exact` moves targets.

    ``_CLIP_MADS`` times the median absolute deviation of the residuals,
    but never fewer than MADs of ``y``, or than the median size of ``y``: a
    start that nearly interpolates, or ``y`` with more than half its values
    tied, must not make ordinary rows "far". Rows of zero weight are left
    out of the medians. A fit of several levels computes it once (its
    value only decides which rows are moved, never the answer).
    """
    keep = slice(None) if sample_weight is None else sample_weight > 0

    def mad(v):
        return float(np.median(np.abs(v - np.median(v)))) if v.size else 0.0

    y_keep = y[keep]
    size = float(np.median(np.abs(y_keep))) if y_keep.size else 0.0
    return _CLIP_MADS * max(mad(residuals[keep]), mad(y_keep), size)


def _kept_their_side(residuals, sign, limit):
    """Whether moved rows' residuals at the clipped solution kept their ``sign``.

    Clearly on their side: a moved row left at a zero residual is basic,
    and the argument of :func:`solve_exact` needs a neighbourhood (and
    HiGHS's tolerances).
    """
    return bool(np.all(residuals * sign > 1e-3 * limit))


def solve_exact(
    X,
    y,
    quantile,
    sample_weight,
    alpha,
    fit_intercept,
    coef_init,
    intercept_init,
    **kwargs,
):
    """Exact minimiser of the penalised pinball objective, robust to wild targets.

    :func:`_solve_exact_unclipped` on a better-posed but equivalent
    problem: the weights are scaled to a largest of 1 (``F`` does not
    change), and targets further than ``_CLIP_MADS`` robust scales from the
    preliminary fit are moved to that distance, on the same side. HiGHS's
    tolerances are absolute, so one target of ``1e20`` among ones would
    otherwise cost the rest of the problem all its digits. The pinball
    loss is linear on each side of zero, so where every moved row keeps a
    residual of strictly the same sign, the true objective and the clipped
    one differ by a constant: the clipped problem's minimiser is a local,
    hence (by convexity) global, minimiser of the true one. That is checked
    at the solution; if a moved row crossed or reached zero, the problem is
    solved again unclipped. Parameters and returns are those of
    :func:`_solve_exact_unclipped` (``info["residuals"]``, when present,
    are those of the returned fit on the true ``y``), plus ``clip_limit``,
    the distance of :func:`far_target_limit` if already known, and
    ``write_and_restore`` (default False): True lets the moved targets be
    written into ``y`` and ``residuals`` in place, and restored before
    returning, instead of copying both (a caller that holds them
    privately: a multi-level fit).
    """
    X = _check_X(X)
    checked = kwargs.get("checked_inputs", False)
    # (Views, not copies, of float64 inputs: neither is written to, but
    # for write_and_restore's moved rows, restored before returning.)
    if not checked:
        y = np.asarray(y, dtype=np.float64).ravel()
    if sample_weight is not None:
        if not checked:
            sample_weight = np.asarray(sample_weight, dtype=np.float64).ravel()
        top = sample_weight.max(initial=0.0)
        if top > 0 and top != 1:
            sample_weight = sample_weight / top
    args = (quantile, sample_weight, alpha, fit_intercept)
    residuals = kwargs.pop("residuals", None)
    limit = kwargs.pop("clip_limit", None)
    write_and_restore = kwargs.pop("write_and_restore", False)
    if not (checked or np.all(np.isfinite(y))):
        return _solve_exact_unclipped(X, y, *args, coef_init, intercept_init, **kwargs)
    owned = residuals is None  # (then the clipped residuals may reuse it)
    if owned:
        w0 = np.zeros(X.shape[1]) if coef_init is None else np.asarray(coef_init, float)
        b0 = float(intercept_init or 0.0) if fit_intercept else 0.0
        residuals = y - (_matvec(X, w0) + b0)
    if limit is None:
        limit = far_target_limit(y, residuals, sample_weight)
    moved = np.flatnonzero(np.abs(residuals) > limit)
    if not (limit > 0 and moved.size):
        return _solve_exact_unclipped(
            X, y, *args, coef_init, intercept_init, residuals=residuals, **kwargs
        )
    # From the fitted value, not y - shift, which would cancel for y ~ 1e20;
    # the other rows keep their targets and residuals.
    moved_sign = np.sign(residuals[moved])
    fitted = y[moved] - residuals[moved]
    y_moved, residuals_moved = y[moved], residuals[moved]
    clipped_y = fitted + limit * moved_sign
    if write_and_restore:
        # Written in place and restored below: no copies of n-vectors.
        y_clipped, clipped_residuals = y, residuals
    else:
        y_clipped = y.copy()
        clipped_residuals = residuals if owned else residuals.copy()
    try:
        y_clipped[moved] = clipped_y
        clipped_residuals[moved] = clipped_y - fitted
        coef, intercept, info = _solve_exact_unclipped(
            X,
            y_clipped,
            *args,
            coef_init,
            intercept_init,
            residuals=clipped_residuals,
            **kwargs,
        )
    finally:
        if write_and_restore:
            y[moved] = y_moved
            residuals[moved] = residuals_moved
    if "residuals" in info:
        # The solver's own vector: only the moved rows' residuals differ.
        at_moved = info["residuals"][moved].copy()
        info["residuals"][moved] += y_moved - clipped_y
    else:
        at_moved = clipped_y - _matvec(_gather_rows(X, moved), coef) - intercept
    if _kept_their_side(at_moved, moved_sign, limit):
        info["clipped"] = int(moved.size)
        return coef, intercept, info
    return _solve_exact_unclipped(X, y, *args, coef, intercept, **kwargs)


def _solve_exact_unclipped(
    X,
    y,
    quantile,
    sample_weight,
    alpha,
    fit_intercept,
    coef_init,
    intercept_init,
    *,
    initial_size=None,
    max_rounds=MAX_ROUNDS,
    residuals=None,
    refine=True,
    newton_gram=None,
    neighbour_state=None,
    checked_inputs=False,
    full_fallback=True,
):
    r"""Exact minimiser of the penalised pinball objective, by preprocessing.

    Minimises

    .. math::

        F(w, b) = \frac{1}{S} \sum_i s_i \, \rho_q(y_i - x_i^\top w - b)
                  + \alpha \lVert w \rVert_1

    exactly (to the accuracy of the HiGHS LP solver, as :func:`solve_lp`),
    with the preprocessing of Portnoy & Koenker (1997) around a preliminary
    fit ``(coef_init, intercept_init)``, e.g. a smoothed quantile fit: the
    phases of the module docstring (start, reduced problems with their
    certificate and repairs, and the full problem as the last resort).
    ``F(theta) - min F`` is at most ``1e-12 F(theta)`` plus the rounding
    error of the residuals.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Any real dtype, C or Fortran order, CSR or CSC; never modified and
        never copied densely as a whole.
    y : array-like of shape (n_samples,)
    quantile : float
        ``q`` in (0, 1).
    sample_weight : array-like of shape (n_samples,) or None
        Non-negative weights with a positive sum; None for ones. Rows of zero
        weight are ignored.
    alpha : float
        Non-negative L1 penalty strength.
    fit_intercept : bool
        Whether to fit the unpenalised intercept ``b``.
    coef_init : array-like of shape (n_features,) or None
        Preliminary coefficients (None for zeros). Any value gives the exact
        answer; a good one makes it fast.
    intercept_init : float or None
        Preliminary intercept, ignored without ``fit_intercept``.
    initial_size : int, default=None
        Size ``m`` of the first kept set. The default is
        ``sqrt(n_pos (p + fit_intercept))`` clipped to ``[300, n_pos]``
        (``n_pos`` rows of positive weight), and the full problem is solved
        directly when it exceeds ``n_pos / 2`` (small ``n``, or ``p`` close to
        ``n``). An explicit value is only clipped to ``[1, n_pos]``.
    max_rounds : int, default=6
        Maximum number of reduced problems before the full one is solved.
    residuals : ndarray of shape (n_samples,), default=None
        ``y - X coef_init - intercept_init`` if already at hand (saves a
        pass over ``X``).
    refine : bool, default=True
        Whether to try the Newton step of the start.
    newton_gram : ndarray, default=None
        ``info["newton_gram"]`` of an earlier call on the same ``X`` and
        weights: the sampled Gram matrix of the Newton step, reused.
    neighbour_state : dict, default=None
        ``info["level_state"]`` of the exact solution ``(coef_init,
        intercept_init)`` at a nearby quantile, on the same data: the
        start is then :func:`_neighbour_start` (``refine`` is ignored).
    checked_inputs : bool, default=False
        True when ``y`` is a finite float64 vector and ``sample_weight``
        None or a finite non-negative float64 vector (validated by the
        caller, e.g. once for all the levels of a multi-level fit): they
        are then used without copies or checks. ``X`` is checked anyway.
    full_fallback : bool, default=True
        Whether to solve the full problem when the reduced ones fail;
        False raises :class:`ReducedPathFailed` instead (a caller with a
        better start to try first). A full problem chosen from the start
        (small ``n``) is solved either way.

    Returns
    -------
    coef : ndarray of shape (n_features,)
    intercept : float
        0.0 when ``fit_intercept`` is False.
    info : dict
        ``rounds`` (reduced problems solved), ``reduced_size`` (rows of the
        last kept set, without the two pseudo-observations; ``n_pos`` for the
        full problem), ``refined`` (whether the Newton step was kept),
        ``fallback`` (True if the reduced path was given up for the full
        problem), ``solver`` (``"reduced"``, ``"full"``, ``"full-primal"``
        or ``"interpolation"``) and, for ``"reduced"``, ``residuals`` of the
        solution, ``newton_gram`` (None if no Newton step was tried) and,
        after a Newton step, ``level_state`` (for ``neighbour_state``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((2000, 3))
    >>> y = X @ [1.0, -2.0, 0.5] + rng.standard_t(2, size=2000)
    >>> coef, b, info = solve_exact(
    ...     X, y, 0.8, None, 0.0, True, np.zeros(3), 0.0, initial_size=200
    ... )
    >>> info["solver"]
    'reduced'
    >>> coef_lp, b_lp = solve_lp(X, y, 0.8, None, 0.0, True)
    >>> f = pinball_objective(X, y, coef, b, 0.8, None, 0.0)
    >>> f_lp = pinball_objective(X, y, coef_lp, b_lp, 0.8, None, 0.0)
    >>> bool(abs(f - f_lp) <= 1e-9 * f_lp)
    True
    """
    if checked_inputs:
        s = np.ones(X.shape[0]) if sample_weight is None else sample_weight
        s = s / s.max() if s.max() != 1 else s
        S = float(s.sum())
    else:
        X, y, s, S = _check_inputs(X, y, quantile, sample_weight, alpha)
    problem = _Problem(X, y, s, S, quantile, alpha, fit_intercept)
    problem.gram = newton_gram
    problem.full_fallback = full_fallback
    info = {"rounds": 0, "reduced_size": problem.n_pos, "refined": False}
    info["fallback"] = False
    m, direct = first_size(problem.n_pos, problem.n_coef, initial_size)
    if direct:
        coef, intercept, info["solver"] = problem.full()
        return coef, intercept, info
    p = problem.p
    coef = np.zeros(p) if coef_init is None else np.asarray(coef_init, float).ravel()
    if coef.shape != (p,):
        raise ValueError(f"coef_init must have shape ({p},), got {coef.shape}")
    coef = coef.copy()
    b = float(intercept_init) if fit_intercept and intercept_init is not None else 0.0
    if residuals is None:
        r = problem.residuals(coef, b)
    else:
        r = np.asarray(residuals, dtype=np.float64)  # (read only)
    if neighbour_state is not None and problem.n_coef <= _NEWTON_MAX_COEF:
        coef, b, r, obj, band = _neighbour_start(
            problem, coef, b, r, m, neighbour_state, info
        )
        # The simplex method starts there too. (Not from a cold start: its
        # LP is solved once per fit, and on some tied data sets where R's
        # rq reports a unique vertex that vertex is only one end of an
        # optimal edge, which the path from the zero fit finds.)
        band.origin = (coef, b)
    else:
        coef, b, r, obj, band = _start(problem, coef, b, r, m, refine, info)
    info["newton_gram"] = problem.gram
    return _reduced_rounds(problem, r, obj, band, m, max_rounds, info)
