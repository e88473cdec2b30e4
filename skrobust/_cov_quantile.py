r"""Covariance of linear quantile regression coefficients, as R's ``quantreg``.

:func:`quantile_covariance` reproduces ``quantreg::summary.rq(fit, se=...,
hs=...)`` (quantreg 5.94 to 6.1, ``method="br"``) for ``se`` in ``"iid"``,
``"nid"`` and ``"ker"``. Each is the asymptotic covariance of the regression
quantile :math:`\hat\beta(q)` (Koenker and Bassett 1978),

.. math::

    \sqrt{n}\,(\hat\beta - \beta) \to N\!\left(0,\;
    q(1-q)\, H^{-1} J H^{-1}\right), \qquad
    J = \tfrac1n \textstyle\sum_i x_i x_i^\top, \qquad
    H = \tfrac1n \textstyle\sum_i f_i(\xi_i)\, x_i x_i^\top,

with :math:`f_i` the conditional density of :math:`y_i` at its
:math:`q`-quantile :math:`\xi_i = x_i^\top \beta`; the three estimators
differ in how they estimate the densities. The algorithm, in sections (one
function each):

1. *Bandwidth* (:func:`quantile_bandwidth`): ``h`` on the quantile scale,
   Hall and Sheather's :math:`O(n^{-1/3})` or Bofinger's
   :math:`O(n^{-1/5})` rule; for ``"nid"`` and ``"ker"`` it is halved until
   :math:`0 \le q - h` and :math:`q + h \le 1` (:func:`_bandwidth_inside`).
2. *iid* (:func:`_iid_sparsity`): one density for every row, estimated as
   its reciprocal, the sparsity :math:`s = 1/f(F^{-1}(q))`, by the slope of
   the order statistics of the residuals nearest zero against their ranks
   (a median regression solved as R solves it,
   :func:`_barrodale_roberts`); covariance :math:`s^2 q (1-q) (X^\top X)^{-1}`.
3. *nid* (:func:`_nid_densities`): Hendricks and Koenker's local densities
   :math:`f_i = 2h / x_i^\top(\hat\beta(q+h) - \hat\beta(q-h))`, from two
   refits; covariance :math:`q(1-q) H^{-1} J H^{-1}` (the sums, not means).
4. *ker* (:func:`_powell_densities`): Powell's kernel densities
   :math:`f_i = \phi(\hat u_i / \kappa) / \kappa` of the residuals, with a
   bandwidth :math:`\kappa` on the scale of the residuals; same sandwich.

Weights are R's: ``summary.rq`` multiplies each row of ``x``, ``y`` and the
residuals by its weight, and the steps above run on the weighted rows.
"""

import heapq
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.special import ndtri
from scipy.stats import norm
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_params,
)
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
)

from . import _progress
from ._inference import design_center, finite_covariance, uncentre, weighted_grams

# summary.rq's eps (``.Machine$double.eps^(1/2)``): residuals below it in
# absolute value count as zero for "iid", and it is subtracted from the
# fitted-value differences of "nid".
R_SQRT_EPS = float(np.finfo(float).eps ** 0.5)
# rq.fit.br's tolerance (``.Machine$double.eps^(2/3)``).
_BR_TOLERANCE = float(np.finfo(float).eps ** (2 / 3))

_ACCEPT_SPARSE = ("csr", "csc")
# Largest weights outside this range are divided out before R's formulas
# (see quantile_covariance).
_WEIGHT_RANGE = (1e-100, 1e100)
_SQRT_2PI = float(np.sqrt(2 * np.pi))
# Rows per block in passes over a dense X (a few MB at tens of columns).
_ROW_BLOCK = 8192
# The band of a refit at a nearby level (ExactLevelRefit), as a fraction of
# the sqrt(n p) rows of a cold exact fit, and at least this many rows: as
# MultiQuantileRegressor's neighbouring levels, which are as near.
_LEVEL_BAND_FRACTION = 0.25
_LEVEL_MIN_BAND = 200
# A cold exact fit keeps at least this many rows (and solves the whole
# problem when that is more than half of them).
_LEVEL_COLD_MIN_BAND = 300
# Rows of the strided samples from which a refit's standardisation of y and
# clipping distance are set.
_CLIP_SAMPLE_ROWS = 20000


def quantile_bandwidth(quantile, n_samples, rule="hall-sheather", alpha=0.05):
    r"""Compute R's ``quantreg::bandwidth.rq``, a bandwidth on the quantile scale.

    With :math:`x_0 = \Phi^{-1}(q)` and :math:`f_0 = \phi(x_0)`,

    .. math::

        h_{HS} = n^{-1/3}\, \Phi^{-1}(1 - \alpha/2)^{2/3}
                 \left(\frac{1.5 f_0^2}{2 x_0^2 + 1}\right)^{1/3},
        \qquad
        h_{B} = n^{-1/5}
                \left(\frac{4.5 f_0^4}{(2 x_0^2 + 1)^2}\right)^{1/5}.

    Parameters
    ----------
    quantile : float
        The quantile ``q``, in (0, 1).
    n_samples : int
        Number of rows ``n``.
    rule : {"hall-sheather", "bofinger"}, default="hall-sheather"
        Hall and Sheather (1988), R's ``hs=TRUE``, or Bofinger (1975),
        R's ``hs=FALSE``.
    alpha : float, default=0.05
        Hall-Sheather's level (the constant of the intervals the rule is
        tuned for).

    Returns
    -------
    float
        The bandwidth ``h`` (not halved).

    See Also
    --------
    quantile_covariance : Uses it for every ``se``.

    Notes
    -----
    statsmodels' ``QuantReg`` writes Bofinger's rule with
    :math:`\phi(2\Phi^{-1}(q))` in place of :math:`\phi(\Phi^{-1}(q))`; this
    is R's formula (Koenker 2005, section 3.4.4).

    Examples
    --------
    R's ``bandwidth.rq(0.5, 235)`` and ``bandwidth.rq(0.5, 235, hs = FALSE)``
    print 0.157439 and 0.217349:

    >>> from skrobust._cov_quantile import quantile_bandwidth
    >>> round(quantile_bandwidth(0.5, 235), 6)
    0.157439
    >>> round(quantile_bandwidth(0.5, 235, rule="bofinger"), 6)
    0.217349
    """
    x0 = ndtri(quantile)
    f0 = norm.pdf(x0)
    if rule == "hall-sheather":
        return float(
            n_samples ** (-1 / 3)
            * ndtri(1 - alpha / 2) ** (2 / 3)
            * ((1.5 * f0**2) / (2 * x0**2 + 1)) ** (1 / 3)
        )
    return float(n_samples**-0.2 * ((4.5 * f0**4) / (2 * x0**2 + 1) ** 2) ** 0.2)


def _bandwidth_inside(quantile, n_samples, rule):
    """summary.rq's bandwidth for "nid" and "ker": halved until q +- h is in [0, 1].

    R then calls its solver at ``q - h = 0`` or ``q + h = 1``, levels with
    no regression quantile to speak of; skrobust raises there instead.
    """
    h = quantile_bandwidth(quantile, n_samples, rule)
    while quantile - h < 0 or quantile + h > 1:
        h /= 2
    if quantile - h <= 0 or quantile + h >= 1:
        raise ValueError(
            f"The bandwidth {h!r} puts quantile {quantile!r} - h or + h on 0 "
            "or 1, where summary.rq would fit a degenerate regression quantile."
        )
    return h


def _linear_predictor(X, coef, intercept):
    """``X coef + intercept``, summed in R's order for dense ``X``.

    R's ``x %*% coef`` (reference BLAS ``dgemv``) adds the columns one at a
    time, intercept first; doing the same gives the same rounding, so that
    residuals that tie in exact arithmetic tie (or not) as they do in R,
    which matters to the order statistics of ``"iid"``.
    """
    if sp.issparse(X):
        return safe_sparse_dot(X, coef) + intercept
    predictor = np.full(X.shape[0], float(intercept))
    # Row blocks that stay in cache while their columns are read in turn.
    for start in range(0, X.shape[0], _ROW_BLOCK):
        block, out = (
            X[start : start + _ROW_BLOCK],
            predictor[start : start + _ROW_BLOCK],
        )
        for column, value in enumerate(coef):
            out += block[:, column] * value
    return predictor


def _inverse_gram(gram, what):
    """Inverse of a symmetric positive definite matrix, after equilibration.

    Scaling rows and columns to a unit diagonal first keeps the Cholesky
    factorisation accurate when the columns of ``X`` have very different
    scales (incomes in thousands next to an intercept).
    """
    diagonal = np.diag(gram)
    if not np.all(diagonal > 0):
        raise np.linalg.LinAlgError(f"{what} is singular (a zero column).")
    with np.errstate(over="ignore", invalid="ignore"):
        # (A column of spread below ~1e-154: 1 / diagonal overflows.)
        outer = finite_covariance(
            np.outer(1.0 / np.sqrt(diagonal), 1.0 / np.sqrt(diagonal))
        )
    try:
        factor = scipy.linalg.cho_factor(gram * outer)
    except np.linalg.LinAlgError as error:
        raise np.linalg.LinAlgError(f"{what} is not positive definite.") from error
    inverse = scipy.linalg.cho_solve(factor, np.eye(gram.shape[0]))
    with np.errstate(over="ignore", invalid="ignore"):
        return finite_covariance(inverse * outer)


def _barrodale_roberts(design, target, quantile):
    """R's ``rq.fit.br(design, target, quantile)$coefficients``, step for step.

    A port of the single-quantile path of quantreg's ``rqbr`` (Barrodale
    and Roberts' simplex as modified by Koenker and d'Orey, algorithm AS
    229), with its pivoting rules, tie-breaking (first index of a strict
    minimum or maximum) and tolerance, so that when the optimum is not
    unique it returns the same vertex as R. It serves the two-column median
    regression of ``"iid"``, where that happens (stackloss).
    """
    m, n = design.shape
    big = np.finfo(float).max
    toler = _BR_TOLERANCE
    m1, m2, m3, m4 = m + 1, m + 2, m + 3, m + 4
    n1, n2, n3, n4 = n + 1, n + 2, n + 3, n + 4
    # The tableau with Fortran's 1-based indices (row and column 0 unused).
    wa = np.zeros((m + 5, n + 5))
    rows = slice(1, m + 1)
    wa[rows, 1 : n + 1] = design
    wa[rows, n4] = n + np.arange(1, m + 1)
    wa[rows, n2] = target
    wa[rows, n1] = wa[rows, n2] - wa[rows, n3]
    negative = np.flatnonzero(wa[rows, n1] < 0) + 1
    wa[negative, 1 : n4 + 1] = -wa[negative, 1 : n4 + 1]
    row_sign = np.where(wa[rows, n4] >= 0, 1.0, -1.0)
    for j in range(1, n + 1):
        wa[m4, j] = j
        # Sequential sums (cumsum), as the Fortran loop rounds them.
        wa[m2, j] = np.cumsum(wa[rows, j] * (1.0 - row_sign))[-1]
        wa[m3, j] = 2.0 * np.cumsum(wa[rows, j] * row_sign)[-1]
    wa[m1, 1 : n + 1] = wa[m2, 1 : n + 1] + wa[m3, 1 : n + 1] * quantile
    kount, kr, kl = 0, 1, 1
    stage, step, enter = True, "choose-stage-1", 0
    while True:
        if step == "choose-stage-2":
            stage = False
            costs = wa[m1, kr : n + 1]
            # Stage 2 prices a column at d, or at -d - 2 if d <= -2.
            priced = np.where(
                costs < 0, np.where(costs > -2.0, -big, -costs - 2.0), costs
            )
            best = int(np.argmax(priced))
            if priced[best] <= toler:
                break
            enter = kr + best
            if wa[m1, enter] <= 0:
                wa[1 : m4 + 1, enter] = -wa[1 : m4 + 1, enter]
                wa[m1, enter] -= 2.0
                wa[m2, enter] -= 2.0
        elif step == "choose-stage-1":
            labels = np.abs(wa[m4, kr : n + 1]) <= n
            priced = np.where(labels, np.abs(wa[m1, kr : n + 1]), -np.inf)
            enter = kr + int(np.argmax(priced))
            if wa[m1, enter] < 0:
                wa[1 : m4 + 1, enter] = -wa[1 : m4 + 1, enter]
        out = _br_ratio_test(wa, kl, kr, m, n, enter, stage, toler)
        if out is None:
            raise RuntimeError("Premature end in the Barrodale-Roberts simplex.")
        if out == 0:
            # Stage 1 found a column linearly dependent on the basis.
            wa[1 : m4 + 1, [kr, enter]] = wa[1 : m4 + 1, [enter, kr]]
            kr += 1
        else:
            _br_pivot(wa, out, enter, kr, m, n)
            kount += 1
            if not stage:
                step = "choose-stage-2"
                continue
            kl += 1
            wa[[out, kount], kr : n4 + 1] = wa[[kount, out], kr : n4 + 1]
        step = "choose-stage-2" if kount + kr == n1 else "choose-stage-1"
    coef = np.zeros(n)
    for i in range(1, kl):
        sign = 1.0 if wa[i, n4] >= 0 else -1.0
        coef[int(round(wa[i, n4] * sign)) - 1] = wa[i, n1] * sign
    return coef


def _br_ratio_test(wa, kl, kr, m, n, enter, stage, toler):
    """The row leaving the basis (0: none in stage 1; None: premature end).

    ``rqbr`` takes the candidate rows in increasing order of their ratios
    and "passes through" each (a kink of the piecewise-linear objective:
    the row is reflected, the marginal costs drop by twice its entries)
    until the marginal cost of the entering column would fall below the
    tolerance; that row leaves. The costs are updated here in the same
    sequence of floating-point operations, the reflections all at once.
    """
    m1, m2, n1, n3, n4 = m + 1, m + 2, n + 1, n + 3, n + 4
    column = wa[kl : m + 1, enter]
    candidates = np.flatnonzero(column > toler)
    ratios = wa[kl + candidates, n1] / column[candidates]
    pivots = column[candidates].tolist()
    cost = float(wa[m1, enter])
    passed, out = [], None
    for index in _extraction_order(ratios):
        pivot = pivots[index]
        if cost - pivot - pivot <= toler:
            out = kl + int(candidates[index])
            break
        cost = cost - pivot - pivot
        passed.append(kl + int(candidates[index]))
    if passed:
        reflected = wa[passed, kr : n3 + 1]
        for row in (m1, m2):
            # ((c - d1) - d1) - d2 ..., left to right as in the Fortran loop.
            steps = np.vstack([wa[row, kr : n3 + 1], np.repeat(reflected, 2, axis=0)])
            wa[row, kr : n3 + 1] = np.subtract.accumulate(steps, axis=0)[-1]
        wa[passed, kr : n3 + 1] = -reflected
        wa[passed, n4] = -wa[passed, n4]
    if out is not None:
        return out
    return 0 if stage else None


def _extraction_order(ratios):
    """Indices in the order ``rqbr`` picks them from its candidate list.

    It takes the first position of the smallest ratio and moves the last
    candidate into that position. With distinct ratios that is increasing
    order; with ties the positions decide, tracked here with a heap.
    """
    count = ratios.size
    if np.unique(ratios).size == count:
        yield from np.argsort(ratios).tolist()
        return
    values = ratios.tolist()
    position = list(range(count))  # candidate -> current position
    at_position = list(range(count))  # position -> candidate
    heap = [(value, index, index) for index, value in enumerate(values)]
    heapq.heapify(heap)
    while count:
        _, where, index = heapq.heappop(heap)
        if position[index] != where:
            continue  # an entry from before the candidate moved
        yield index
        last = at_position[count - 1]
        if last != index:
            at_position[where], position[last] = last, where
            heapq.heappush(heap, (values[last], where, last))
        position[index] = -1
        count -= 1


def _br_pivot(wa, out, enter, kr, m, n):
    """Simplex pivot of ``rqbr`` on ``wa[out, enter]``."""
    m3, m4, n3, n4 = m + 3, m + 4, n + 3, n + 4
    pivot = wa[out, enter]
    columns = np.r_[kr:enter, enter + 1 : n3 + 1]
    wa[out, columns] = wa[out, columns] / pivot
    # Every row but the pivot row: update all, then restore that one.
    pivot_row = wa[out, kr : n3 + 1].copy()
    multipliers = wa[1 : m3 + 1, enter].copy()
    block = wa[1 : m3 + 1, columns]
    wa[1 : m3 + 1, columns] = block - multipliers[:, None] * wa[out, columns][None, :]
    wa[1 : m3 + 1, enter] = -wa[1 : m3 + 1, enter] / pivot
    wa[out, kr : n3 + 1] = pivot_row
    wa[out, enter] = 1.0 / pivot
    # The row's label and the column's label change places.
    wa[out, n4], wa[m4, enter] = wa[m4, enter], wa[out, n4]


def _iid_sparsity(weighted_residuals, n_params, quantile, rule):
    r"""summary.rq's sparsity :math:`s = 1 / f(F^{-1}(q))` for ``se="iid"``.

    The residuals are ordered by absolute value; the ``pz`` (numerically)
    zero ones, those of the rows the fit interpolates, are skipped, and the
    next :math:`h + 1` are sorted, :math:`h = \max(p + 1, \lceil n\,
    b(q, n) \rceil)` with ``b`` the bandwidth of
    :func:`quantile_bandwidth`. Their median-regression slope on
    :math:`i / (n - p)`, :math:`i = pz + 1, \dots, pz + h + 1`, is a
    difference quotient of the residual quantile function: the sparsity.
    """
    n = weighted_residuals.size
    n_zero = int(np.sum(np.abs(weighted_residuals) < R_SQRT_EPS))
    h, ranks = iid_ranks(n, n_zero, n_params, quantile, rule)
    ordered = np.sort(weighted_residuals[_smallest_after_zeros(weighted_residuals, h)])
    design = np.column_stack([np.ones(ranks.size), ranks / (n - n_params)])
    return float(_barrodale_roberts(design, ordered, 0.5)[1])


def _smallest_after_zeros(residuals, h):
    """Rows at ranks ``pz + 1 .. pz + h + 1`` of R's ``order(abs(resid))``.

    R's order is stable (ties in absolute value keep row order), and the
    ``pz`` residuals below ``2^-26`` come first. A partition finds the
    ``pz + h + 1`` smallest in linear time instead of sorting all ``n``;
    ties with the largest of them are taken in row order, as R does.
    """
    size = np.abs(residuals)
    nonzero = size >= R_SQRT_EPS
    count = int(np.sum(~nonzero)) + h + 1
    if count == size.size:
        return np.flatnonzero(nonzero)
    threshold = np.partition(size, count - 1)[count - 1]
    below = np.flatnonzero(nonzero & (size < threshold))
    tied = np.flatnonzero(size == threshold)[: h + 1 - below.size]
    return np.concatenate([below, tied])


def iid_ranks(n, n_zero, n_params, quantile, rule):
    """``(h, ranks)`` of :func:`_iid_sparsity`: the rows its slope is fitted on.

    ``h = max(p + 1, ceil(n b(q, n)))`` and the ranks ``n_zero + 1, ...,
    n_zero + h + 1`` of the absolute residuals after the ``n_zero`` zero
    ones; a ``ValueError`` if there are fewer than ``n_zero + h + 1`` rows.
    """
    h = max(n_params + 1, int(np.ceil(n * quantile_bandwidth(quantile, n, rule))))
    ranks = np.arange(n_zero + 1, n_zero + h + 2)
    if ranks[-1] > n:
        raise ValueError(
            f'se="iid" needs {ranks[-1]} rows (h + 1 = {h + 1} non-zero '
            f"residuals after {n_zero} zero ones); there are {n}."
        )
    return h, ranks


def _nid_densities(X, sample_weight, fit_intercept, quantile, h, fit):
    r"""Hendricks and Koenker's densities, as summary.rq's ``se="nid"``.

    .. math::

        f_i = \max\!\left(0, \frac{2h}{w_i x_i^\top(\hat\beta(q+h)
              - \hat\beta(q-h)) - \epsilon}\right),
        \qquad \epsilon = 2^{-26},

    a difference quotient of each row's fitted quantile function. Where the
    two fits cross (a non-positive difference) the density is 0, and R's
    warning says at how many rows.
    """
    coef_hi, intercept_hi = fit(quantile + h)
    coef_lo, intercept_lo = fit(quantile - h)
    coef_step = np.asarray(coef_hi, dtype=float) - np.asarray(coef_lo, dtype=float)
    intercept_step = float(intercept_hi) - float(intercept_lo) if fit_intercept else 0.0
    densities, crossing = nid_rows(X, sample_weight, coef_step, intercept_step, h)
    warn_crossing(crossing, quantile, h, stacklevel=4)
    return densities


def warn_crossing(crossing, quantile, h, stacklevel):
    """R's warning when the fits at ``q +- h`` cross at ``crossing`` rows (if any).

    ``stacklevel`` counts this function's frame: the caller's caller's is 3.
    """
    if crossing:
        warnings.warn(
            f"{crossing} non-positive fis: the fits at quantiles {quantile - h:.6g} "
            f"and {quantile + h:.6g} cross at {crossing} rows, whose densities "
            'are set to 0 (R\'s summary.rq(se="nid") warns the same).',
            UserWarning,
            stacklevel=stacklevel,
        )


def iid_covariance(gram, sparsity, quantile, center):
    """``s^2 q (1 - q) (X~'X~)^-1`` from the Gram of ``[1, X - center]``, uncentred."""
    cov = sparsity**2 * quantile * (1 - quantile) * _inverse_gram(gram, "X'X")
    return uncentre(cov, center)


def density_covariance(gram, density_gram, quantile, center):
    """The sandwich ``q (1 - q) (X~'FX~)^-1 X~'X~ (X~'FX~)^-1``, uncentred.

    From the Grams of ``[1, X - center]`` (weighted by ``w^2`` and ``f w^2``).
    """
    bread = _inverse_gram(density_gram, "X'FX")
    return uncentre(quantile * (1 - quantile) * bread @ gram @ bread, center)


def nid_rows(X, sample_weight, coef_step, intercept_step, h):
    r"""The densities of :func:`_nid_densities` on the rows ``X``, and their crossings.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    sample_weight : ndarray of shape (n_samples,)
        The rows' weights :math:`w_i` (summary.rq's).
    coef_step, intercept_step : ndarray, float
        :math:`\hat\beta(q+h) - \hat\beta(q-h)`: the coefficients' and the
        intercept's (0 without one).
    h : float
        The bandwidth.

    Returns
    -------
    densities : ndarray of shape (n_samples,)
    crossing : int
        The number of rows where the two fits cross (density 0).
    """
    step = np.asarray(safe_sparse_dot(X, coef_step)).ravel()
    fitted_step = sample_weight * (step + intercept_step)
    crossing = int(np.sum(fitted_step <= 0))
    with np.errstate(divide="ignore"):
        return np.maximum(0.0, 2 * h / (fitted_step - R_SQRT_EPS)), crossing


def powell_kappa(quantile, h, spread):
    r"""Powell's kernel width :math:`\kappa` of :func:`_powell_densities`."""
    return (ndtri(quantile + h) - ndtri(quantile - h)) * spread


def powell_rows(weighted_residuals, kappa):
    r""":math:`\phi(\hat u_i / \kappa) / \kappa`: :func:`_powell_densities`' rows."""
    # phi(u / kappa) / kappa, phi written as scipy's norm.pdf computes it
    # (calling norm.pdf costs several times more).
    z = weighted_residuals / kappa
    return np.exp(-(z**2) / 2.0) / _SQRT_2PI / kappa


def _powell_densities(weighted_residuals, quantile, h):
    r"""Powell's kernel densities, as summary.rq's ``se="ker"``.

    .. math::

        f_i = \phi(\hat u_i / \kappa) / \kappa, \qquad
        \kappa = \left(\Phi^{-1}(q + h) - \Phi^{-1}(q - h)\right)
                 \min\!\left(\mathrm{sd}(\hat u),
                 \frac{Q_{0.75}(\hat u) - Q_{0.25}(\hat u)}{1.34}\right),

    ``sd`` with divisor ``n - 1`` and the quantiles of R's default type 7
    (numpy's ``"linear"``), on the (weighted) residuals :math:`\hat u`.
    """
    spread = min(
        float(np.std(weighted_residuals, ddof=1)),
        float(np.subtract(*np.quantile(weighted_residuals, [0.75, 0.25]))) / 1.34,
    )
    return powell_rows(weighted_residuals, powell_kappa(quantile, h, spread))


def _default_refit(X, y, sample_weight, fit_intercept, coef, intercept):
    """``fit(quantile) -> (coef, intercept)``: :class:`ExactLevelRefit`, no penalty."""
    return ExactLevelRefit(
        X, y, sample_weight, coef, intercept, fit_intercept=fit_intercept
    )


class ExactLevelRefit:
    r"""Exact refits at levels near that of a fit, each started from it.

    ``refit(level) -> (coef, intercept)`` is the minimiser of the
    objective of :class:`~skrobust.QuantileRegressor` at ``level`` (with
    ``solver="exact"``, the same ``alpha`` and weights), as its ``fit``
    returns it, but in a fraction of the time when ``level`` is near the
    level of the fit ``(coef, intercept)``: ``"nid"`` refits at
    :math:`q \pm h`, :math:`h = O(n^{-1/3})`. The start is that of
    :class:`~skrobust.MultiQuantileRegressor`'s neighbouring levels
    (:func:`~skrobust._quantile_exact._neighbour_start`): the fit's
    residuals, shifted to the new level and moved by its Newton steps
    (``_NEIGHBOUR_STEPS``) whose side sums come from those of the fit's
    residual signs (one pass over ``X``, shared by every refit) and
    gathers, then a reduced linear programme on a band of
    ``_LEVEL_BAND_FRACTION`` of the usual width, its simplex started from
    the moved fit.
    The certificate of :func:`~skrobust._quantile_exact.solve_exact` makes
    each refit exact whatever its start, and among equally optimal
    solutions the one nearest the fit is taken, as ``fit`` does
    (:func:`~skrobust._quantile_face.select_on_face`).

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        The design (not copied).
    y : ndarray of shape (n_samples,)
        The target.
    sample_weight : ndarray of shape (n_samples,) or None
        The weights of the fit.
    coef : ndarray of shape (n_features,)
        Coefficients of an exact fit.
    intercept : float
        Its intercept (ignored without one).
    alpha : float, default=0.0
        The L1 penalty of the fit.
    fit_intercept : bool, default=True
        Whether the fit has an intercept.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust import QuantileRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(5000, 2))
    >>> y = X @ [1.0, 2.0] + rng.standard_t(3, size=5000)
    >>> fit = QuantileRegressor(solver="exact").fit(X, y)
    >>> refit = ExactLevelRefit(X, y, None, fit.coef_, fit.intercept_)
    >>> coef, intercept = refit(0.52)
    >>> direct = QuantileRegressor(quantile=0.52, solver="exact").fit(X, y)
    >>> bool(np.allclose(coef, direct.coef_, rtol=0, atol=1e-9))
    True
    """

    def __init__(
        self, X, y, sample_weight, coef, intercept, *, alpha=0.0, fit_intercept=True
    ):
        from ._quantile_level import _column_stats
        from ._quantile_smooth import robust_offset_scale

        self.X, self.alpha = X, float(alpha)
        self.fit_intercept = bool(fit_intercept)
        n = X.shape[0]
        weight = (
            np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
        )
        self.weight = weight
        # Any fixed standardisation of y gives the same minimisers (the
        # pinball loss is positively homogeneous): the fit's, on a strided
        # sample of the rows when there are many.
        step = max(1, n // _CLIP_SAMPLE_ROWS)
        if not weight[::step].sum() > 0:
            step = 1
        self.offset, self.scale = robust_offset_scale(
            np.asarray(y, dtype=np.float64)[::step], weight[::step], self.fit_intercept
        )
        y_std = (np.asarray(y, dtype=np.float64) - self.offset) / self.scale
        y_std[~(weight > 0)] = 0.0  # as the fit: rows of zero weight enter no fit
        self.y = y_std
        self.coef = np.asarray(coef, dtype=np.float64) / self.scale
        self.intercept = (
            (float(intercept) - self.offset) / self.scale if self.fit_intercept else 0.0
        )
        self.residuals = self.y - safe_sparse_dot(X, self.coef) - self.intercept
        self.stats = _column_stats(X, self.y, weight, self.fit_intercept)
        self.options = self._solver_options()

    def _solver_options(self):
        """:func:`~skrobust._quantile_exact.solve_exact`'s options of every refit."""
        from ._quantile_exact import _side_sums, far_target_limit

        X, y, weight, residuals = self.X, self.y, self.weight, self.residuals
        n_pos = int(np.count_nonzero(weight > 0))
        n_coef = X.shape[1] + int(self.fit_intercept)
        # Where a cold exact fit would solve the whole problem at once
        # (fewer than about 600 rows), so does a refit: the same solver path
        # as QuantileRegressor(solver="exact").fit.
        if max(np.sqrt(n_pos * n_coef), _LEVEL_COLD_MIN_BAND) > 0.5 * n_pos:
            return {}
        size = int(np.ceil(_LEVEL_BAND_FRACTION * np.sqrt(n_pos * n_coef)))
        size = max(size, _LEVEL_MIN_BAND)
        # The clipping distance only decides which targets the solver moves,
        # never the answer: from a strided sample of the rows.
        step = max(1, n_pos // _CLIP_SAMPLE_ROWS)
        options = {
            "initial_size": size,
            "clip_limit": far_target_limit(
                y[::step], residuals[::step], weight[::step]
            ),
        }
        # The density at the fit from the rows of the band, and the side sums
        # of its residual signs with the solver's weights (scaled to a
        # largest of 1): the neighbour start of the solver.
        distance = np.abs(residuals[weight > 0])
        half_width = float(np.partition(distance, size - 1)[size - 1])
        if half_width > 0:
            inside = np.abs(residuals) <= half_width
            density = float(weight[inside].sum()) / (2.0 * half_width * weight.sum())
        else:  # the band holds only fitted rows: no density, a cold start
            density = 0.0
        if np.isfinite(density) and density > 0:
            above = residuals >= 0
            options["neighbour_state"] = {
                "side_sums": _side_sums(X, y, weight / weight.max(), above),
                "above": above,
                "density": density,
            }
        return options

    def __call__(self, level):
        """``(coef, intercept)`` of the exact fit at ``level``, in ``y`` units."""
        from ._quantile_exact import solve_exact
        from ._quantile_face import select_on_face

        options = dict(self.options)
        if "neighbour_state" in options:
            options["neighbour_state"] = dict(options["neighbour_state"])
        w, b, info = solve_exact(
            self.X,
            self.y,
            float(level),
            self.weight,
            self.alpha,
            self.fit_intercept,
            self.coef,
            self.intercept,
            residuals=self.residuals,
            **options,
        )
        if info.get("newton_gram") is not None:
            # The sampled Gram matrix of the Newton step, the same for every
            # level (the same X and weights).
            self.options["newton_gram"] = info["newton_gram"]
        w, b = select_on_face(
            self.X,
            self.y,
            self.weight,
            float(level),
            self.alpha,
            self.fit_intercept,
            w,
            b,
            (self.coef, self.intercept),
            self.stats,
            residuals=info.get("residuals"),
        )
        intercept = self.offset + self.scale * b if self.fit_intercept else 0.0
        return w * self.scale, intercept


@validate_params(
    {
        "X": ["array-like", "sparse matrix"],
        "y": ["array-like"],
        "coef": ["array-like"],
        "intercept": [Real],
        "quantile": [Interval(Real, 0, 1, closed="neither")],
        "sample_weight": ["array-like", None],
        "fit_intercept": ["boolean"],
        "se": [StrOptions({"iid", "nid", "ker"})],
        "bandwidth_rule": [StrOptions({"hall-sheather", "bofinger"})],
        "fit": [callable, None],
    },
    prefer_skip_nested_validation=True,
)
def quantile_covariance(
    X,
    y,
    coef,
    intercept,
    quantile,
    *,
    sample_weight=None,
    fit_intercept=True,
    se="nid",
    bandwidth_rule="hall-sheather",
    fit=None,
):
    r"""Covariance of a linear quantile regression fit, as R's ``summary.rq``.

    Equals ``quantreg::summary.rq(fit, se=se, hs=bandwidth_rule ==
    "hall-sheather", covariance=TRUE)$cov`` for a fit with the same
    coefficients (R's ``method="br"``, the default).

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        The design. Sparse (CSR, CSC) stays sparse: only ``p x p`` products
        are formed.
    y : array-like of shape (n_samples,)
        The target.
    coef : array-like of shape (n_features,)
        The fitted coefficients (an optimum of the pinball loss: the
        covariance is that of the regression quantile).
    intercept : float
        The fitted intercept (ignored without one).
    quantile : float
        The quantile ``q`` of the fit, in (0, 1).
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights of the fit. As in R's ``rq(..., weights=)``
        and ``summary.rq``, every row of ``[1 X]``, ``y`` and the residuals
        is multiplied by its weight, and ``n`` counts rows; integer weights
        are *not* equivalent to repeated rows here (they are in
        :func:`quantile_bootstrap_covariance`).
    fit_intercept : bool, default=True
        Whether the model has an intercept (then the first row and column of
        the result belong to it).
    se : {"iid", "nid", "ker"}, default="nid"
        ``"iid"``: one sparsity for all rows (valid for errors independent
        of ``x``); ``"nid"``: Hendricks-Koenker local densities from two
        refits at ``q +- h`` (valid when the conditional quantiles near
        ``q`` are linear in ``x``); ``"ker"``: Powell's kernel estimate of
        the densities at the residuals.
    bandwidth_rule : {"hall-sheather", "bofinger"}, default="hall-sheather"
        R's ``hs=TRUE`` or ``hs=FALSE``, see :func:`quantile_bandwidth`.
    fit : callable, default=None
        ``fit(quantile) -> (coef, intercept)``, the fit at another quantile
        on the same data and weights (``"nid"`` calls it at ``q + h`` and
        ``q - h``), so that a caller can warm start; by default
        ``QuantileRegressor(solver="exact", quantile=quantile,
        fit_intercept=fit_intercept, warm_start=True)`` started from
        ``coef`` and ``intercept``.

    Returns
    -------
    ndarray of shape (n_features + 1, n_features + 1)
        Covariance of ``[intercept, coef...]`` (``(n_features,
        n_features)`` of ``coef`` without an intercept).

    Raises
    ------
    ValueError
        If ``"iid"`` has too few rows for its order statistics (R stops
        too), or the bandwidth puts ``q +- h`` on 0 or 1.
    numpy.linalg.LinAlgError
        If :math:`X^\top X` or, for ``"nid"`` and ``"ker"``, the weighted
        Gram matrix :math:`X^\top F X` is singular (R returns infinities).

    Warns
    -----
    UserWarning
        ``"nid"``: when the fits at ``q - h`` and ``q + h`` cross at some
        rows, with their number, as R does.

    See Also
    --------
    quantile_bootstrap_covariance : The xy-pairs bootstrap covariance.
    quantile_bandwidth : The bandwidth rules.

    Notes
    -----
    With :math:`W` the diagonal of the weights, :math:`\tilde X = W [1\;X]`
    the design summary.rq works with and :math:`q(1 - q)` the variance of
    the score,

    .. math::

        \text{iid:}\quad s^2\, q(1-q)\, (\tilde X^\top \tilde X)^{-1},
        \qquad
        \text{nid, ker:}\quad q(1-q)\, (\tilde X^\top F \tilde X)^{-1}
        \tilde X^\top \tilde X\, (\tilde X^\top F \tilde X)^{-1},

    with the sparsity ``s`` and the densities ``F = diag(f_i)`` described in
    the module's sections. When the median regression of ``"iid"`` has
    several optima, the one of R's simplex is returned (a port of its
    pivoting rules). ``"nid"`` depends on the refits: if the linear
    programme at ``q +- h`` has several optima and ``fit`` returns another
    one than R's ``rq.fit.br``, the result differs from R's.

    References
    ----------
    R. Koenker, *Quantile Regression*, Cambridge University Press, 2005,
    section 3.4.

    W. Hendricks and R. Koenker, "Hierarchical spline models for
    conditional quantiles and the demand for electricity", JASA 87, 1992.

    J. Powell, "Estimation of monotonic regression models under quantile
    restrictions", in *Nonparametric and Semiparametric Methods in
    Econometrics*, Cambridge University Press, 1991.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust import QuantileRegressor
    >>> from skrobust._cov_quantile import quantile_covariance
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(500, 1))
    >>> y = 1.0 + 2.0 * X[:, 0] + rng.normal(size=500)
    >>> model = QuantileRegressor(solver="exact").fit(X, y)
    >>> cov = quantile_covariance(X, y, model.coef_, model.intercept_, 0.5, se="iid")
    >>> cov.shape
    (2, 2)
    >>> np.round(np.sqrt(np.diag(cov)), 2)
    array([0.1 , 0.17])

    The asymptotic standard errors are
    :math:`\sqrt{q(1-q)}/\phi(0) \cdot (2, \sqrt{12}) / \sqrt{n}
    = (0.11, 0.19)` here.
    """
    X = check_array(X, accept_sparse=_ACCEPT_SPARSE, dtype=(np.float64, np.float32))
    y = check_array(y, ensure_2d=False, dtype=np.float64)
    coef = check_array(coef, ensure_2d=False, dtype=np.float64)
    check_consistent_length(X, y)
    if coef.shape != (X.shape[1],):
        raise ValueError(f"coef has shape {coef.shape}; X has {X.shape[1]} columns.")
    intercept = float(intercept) if fit_intercept else 0.0
    weight = (
        None
        if sample_weight is None
        else _check_sample_weight(sample_weight, X, ensure_non_negative=True)
    )
    row_weight = np.ones(X.shape[0]) if weight is None else weight
    top = row_weight.max(initial=0.0)
    if top > 0 and not _WEIGHT_RANGE[0] <= top <= _WEIGHT_RANGE[1]:
        # R's formulas square the weights (overflow beyond 1e154) and call
        # weighted residuals below R_SQRT_EPS zero, an absolute threshold,
        # so that R's answer depends on the weights' common factor. Within
        # the range it is R's answer to the digit; beyond, the weights are
        # divided by the largest (the estimates themselves are invariant:
        # rows and residuals scale with the factor, the densities
        # inversely).
        row_weight = row_weight / top
    n_params = X.shape[1] + bool(fit_intercept)
    # X~'X~ = [1 X]' W^2 [1 X] and X~'F X~, in centred coordinates (see
    # design_center), from one pass over X.
    center = design_center(X, fit_intercept)
    if se == "iid":
        # The order statistics need the residuals as R rounds them.
        residuals = row_weight * (y - _linear_predictor(X, coef, intercept))
        sparsity = _iid_sparsity(residuals, n_params, quantile, bandwidth_rule)
        (gram,) = weighted_grams(X, row_weight**2, fit_intercept, center=center)
        return iid_covariance(gram, sparsity, quantile, center)
    h = _bandwidth_inside(quantile, X.shape[0], bandwidth_rule)
    if se == "nid":
        if fit is None:
            fit = _default_refit(X, y, weight, fit_intercept, coef, intercept)
        density = _nid_densities(X, row_weight, fit_intercept, quantile, h, fit)
    else:
        residuals = row_weight * (y - safe_sparse_dot(X, coef) - intercept)
        density = _powell_densities(residuals, quantile, h)
    gram, density_gram = weighted_grams(
        X, [row_weight**2, density * row_weight**2], fit_intercept, center=center
    )
    return density_covariance(gram, density_gram, quantile, center)


@validate_params(
    {
        "fit_one": [callable],
        "X": ["array-like", "sparse matrix"],
        "y": ["array-like"],
        "sample_weight": ["array-like", None],
        "n_bootstrap": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def quantile_bootstrap_covariance(
    fit_one, X, y, sample_weight, n_bootstrap=200, random_state=None
):
    r"""Covariance of the xy-pairs bootstrap replicates of a fit.

    Each replicate draws ``n`` rows with replacement (their multiplicities
    from a multinomial distribution), refits with the multiplicities as
    frequency weights (times ``sample_weight``) and records the parameters;
    the result is the sample covariance of the replicates (divisor
    ``n_bootstrap - 1``). This is R's ``boot.rq(bsmethod="xy")`` in spirit
    (``summary.rq(se="boot")`` returns ``cov`` of its replicates), not its
    random numbers.

    Parameters
    ----------
    fit_one : callable
        ``fit_one(weights) -> params``: the fit with these sample weights,
        returning the parameter vector (for example ``[intercept, coef...]``);
        callers can warm start it from the full-data fit.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        The design (only its rows are counted).
    y : array-like of shape (n_samples,)
        The target.
    sample_weight : array-like of shape (n_samples,) or None
        Weights of the original fit, multiplied by the multiplicities.
    n_bootstrap : int, default=200
        Number of replicates (R's ``R``).
    random_state : int, RandomState instance or None, default=None
        Seed of the resampling.

    Returns
    -------
    ndarray of shape (n_params, n_params)
        Sample covariance of the replicated parameter vectors.

    See Also
    --------
    quantile_covariance : The asymptotic covariances of ``summary.rq``.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust._cov_quantile import quantile_bootstrap_covariance
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=400)
    >>> def weighted_mean(weights):
    ...     return np.array([np.average(y, weights=weights)])
    >>> cov = quantile_bootstrap_covariance(
    ...     weighted_mean, np.ones((400, 1)), y, None, random_state=0
    ... )
    >>> bool(abs(np.sqrt(cov[0, 0]) - y.std() / 20) < 0.01)  # sd / sqrt(n)
    True
    """
    X = check_array(X, accept_sparse=_ACCEPT_SPARSE, dtype=None)
    check_consistent_length(X, y)
    n = X.shape[0]
    base_weight = (
        np.ones(n)
        if sample_weight is None
        else _check_sample_weight(sample_weight, X, ensure_non_negative=True)
    )
    rng = check_random_state(random_state)

    def multiplicities():
        # Multinomial(n, 1/n) counts, drawn as n indices: numpy's multinomial
        # with n categories costs several times more.
        return np.bincount(rng.randint(n, size=n), minlength=n)

    replicates = [
        np.ravel(fit_one(multiplicities() * base_weight))
        for _ in _progress.loop(range(n_bootstrap), n_bootstrap, "bootstrap replicate")
    ]
    return np.atleast_2d(np.cov(np.array(replicates), rowvar=False))
