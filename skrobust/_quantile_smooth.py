r"""The smoothed quantile fit: convolution-smoothed pinball loss and its solvers.

The pinball loss is replaced by its convolution with a kernel of bandwidth
``h`` (:class:`skrobust.losses.SmoothedPinballRho`; He, Pan, Tan and Zhou
2023, R's ``conquer``), minimised by Newton's method, proximal Newton with
an L1 penalty, or L-BFGS for many coefficients (:func:`minimize_smoothed`).
:func:`refine_smoothed` finishes ``solver="smooth"`` by continuation in the
bandwidth, stopped by the duality-gap bound of :func:`pinball_gap`.
:class:`skrobust.QuantileRegressor` wires these into its fit; the exact
solver uses the smoothed fit as its preliminary estimate.
"""

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from . import _proximal, _solvers
from ._base import mad_scale, target_offset_scale, weighted_median
from ._objective import LinearObjective
from ._sparse_hessian import sparse_hessian_affordable
from .losses import FixedScaleLoss, SmoothedPinballRho

# The smoothed fits use Newton's method up to NEWTON_MAX_COEF coefficients,
# and up to NEWTON_MAX_COEF_MANY_ROWS where there are at least
# NEWTON_MIN_ROWS_PER_COEF rows per coefficient; L-BFGS beyond (see
# smoothed_solver). A Newton iteration forms X^T D X on the rows within ten
# bandwidths of zero (the others have no curvature): a fraction of n p^2.
# L-BFGS needs many more iterations on the ill-conditioned objectives of
# small bandwidths, and often stops short of the continuation's targets.
# Measured (CPU, one BLAS thread, 10% gross outliers), L-BFGS -> Newton:
# n = 1e5, p = 200: q = 0.5 1.63 -> 0.92 s, q = 0.9 5.1 -> 3.2 s with a
# pinball loss 1.3e-5 lower (the exact solver, whose preliminary fit this
# is: 2.5 -> 1.9 s and 5.5 -> 3.7 s); with 100 rows per coefficient
# (2e4 x 200) as fast at q = 0.5 and 0.9 but twice as slow at q = 0.1;
# with fewer rows L-BFGS is up to 20 times faster, though its pinball loss
# is 1e-4 to 4e-2 higher.
NEWTON_MAX_COEF = 100
NEWTON_MAX_COEF_MANY_ROWS = 300
NEWTON_MIN_ROWS_PER_COEF = 200

# Below this (relative to the standardised spread of y) a residual scale
# counts as zero.
_MIN_RELATIVE_SCALE = 1e-12

# The default bandwidth is this fraction of conquer's rate
# ((log n + p) / n)^(2/5), in units of the residual scale.
_BANDWIDTH_CONSTANT = 0.25
# The default bandwidth's floor, relative to the residual scale (see
# default_bandwidth).
_MIN_BANDWIDTH = 1e-6
# The default bandwidth's rows, counted in units of the smallest weight, are
# at most this many times Kish's effective sample size (see effective_rows).
_COUNT_MAX_KISH = 10.0

# The finishing continuation of solver="smooth" (refine_smoothed): the
# bandwidth is divided by _CONTINUATION_FACTOR, warm-started, until the
# duality gap of the fit is at most _CONTINUATION_GAP of its objective, for
# at most _CONTINUATION_MAX_STEPS steps (h / 8^8 ~ 6e-8 h). With a continuous
# residual density the gap is about f(0) h^2 / 2 (1e-5 to 5e-5 relative at
# n = 1e5, p = 20) and one step (the gap falls as h^2) meets the target;
# with an atom of residuals at zero (tied or discrete targets) it is
# proportional to h, and each step divides it by 8.
_CONTINUATION_GAP = 1e-6
_CONTINUATION_FACTOR = 8.0
_CONTINUATION_MAX_STEPS = 8
# Iterations allowed to each step: from an extrapolated start Newton needs
# 0 to 25; a step that needs more (many coefficients for the few rows near
# zero at a small bandwidth) ends the continuation, unless the fit it
# started from is not yet within _GUARANTEED_GAP (below), and so does the
# step after one that needed more, once within it (continuation_ends).
_CONTINUATION_MAX_ITER = 50
# The accuracy solver="smooth" documents: a training pinball loss within
# this fraction of the optimum, certified by the duality gap. A step that
# stops on its budget while the gap of the fit it started from is above
# this fraction goes on with the rest of max_iter (continuation_budgets).
# Issue #11: beyond 100 coefficients L-BFGS's first step often needs more
# than 50 iterations (8000 x 110 integer targets: 51-55 with Newton
# finishing, 1.8e-4 to 5.2e-4 above the optimum when it ended there;
# 2e4 x 1000 Gaussian: 88-153, gaps 5e-4 to 3e-3 left).
_GUARANTEED_GAP = 1e-4
# Beyond |u| = t h the smoothed loss is the pinball loss to double precision
# (the kernel's tail F(-t) below 1e-17): such rows contribute a linear term.
_LINEAR_BEYOND = {"gaussian": 8.5, "logistic": 40.0}
# A final smoothed fit on at least this many rows is first made on the rows
# nearest its start (_minimize_near_start): the rows whose |residual| is
# within the first of these quantiles of them (or within twice the kernel's
# reach), then, if some other row moved in, within the next around that
# solution. From a neighbouring level's fit the others keep their side, and
# Newton's iterations cost a tenth of a pass over X; from a fit on a
# subsample the second choice usually holds. At n = 1e5, p = 20: a single
# smoothed fit 97 -> 73 ms, 19 levels 1.6 -> 0.6 s; at n = 1e4, 19 levels
# 0.48 -> 0.28 s.
_NEAR_START_MIN_ROWS = 5_000
_NEAR_START_FRACTIONS = (0.1, 0.25)


def default_bandwidth(n_samples, n_features):
    r"""The default bandwidth, in units of the residual scale.

    .. math::

        h_n = \frac14 \left(\frac{\log n + p}{n}\right)^{2/5},

    a quarter of the rate of He, Pan, Tan and Zhou (2023) (``conquer``'s
    default without its floor of 0.05), capped at 1 and at least ``1e-6``.
    ``n`` is :func:`effective_rows` of the sample weights for the fit of
    ``solver="smooth"``, and the number of rows with weight for the exact
    solver's preliminary fit (whose bandwidth only decides its speed: with
    weights uniform on (0, 1), ``effective_rows`` made it 3 times smaller
    and the exact fit at 1e5 x 20 took 77 iterations instead of 22), at
    least 1. The floor only matters beyond about ``1e15`` rows: a smaller bandwidth
    gains nothing a float64 fit can show, and the Newton steps of a kernel
    narrower than the rounding of the residuals stall.

    Parameters
    ----------
    n_samples : float
        Effective number of rows.
    n_features : int
        Number of columns of ``X``.

    Returns
    -------
    float
    """
    # Clipped so that any size gives a finite bandwidth.
    n = min(max(float(n_samples), 1.0), 1e300)
    rate = ((np.log(n) + n_features) / n) ** 0.4
    return float(min(max(_BANDWIDTH_CONSTANT * rate, _MIN_BANDWIDTH), 1.0))


def effective_rows(sample_weight):
    r"""The ``n`` of :func:`default_bandwidth`: rows in units of the smallest weight.

    .. math::

        n = \min\left(\frac{\sum_i w_i}{\min_{w_i > 0} w_i},\;
        R\,\frac{(\sum_i w_i)^2}{\sum_i w_i^2}\right), \qquad R = 10.

    The first term counts integer weights whose smallest is 1 as the
    repeated rows they stand for, and both terms are unchanged when every
    weight is multiplied by a constant (scikit-learn's weights are
    relative). The second, ``R`` times Kish's effective sample size,
    bounds the count where the weights spread over orders of magnitude:
    5 rows of weight ``1e10`` beside 25 of ``1e-10`` counted as ``5e20``
    rows (``5e10`` as the sum of the weights, the rule before), whose
    bandwidth of ``1e-6`` residual scales took the fits 10-220 s of
    Newton iterations at 30 rows; they count as 50. It only binds where
    some weight exceeds ``R`` times the smallest (``sum w^2 <= R w_min sum
    w`` otherwise), so integer weights up to 10 still give the bandwidth
    of repeated rows. The bandwidth is a device of the solver: the exact
    fit does not depend on it, and ``solver="smooth"`` lowers it until its
    fit is certified. The count sums the weights divided by the smallest
    (exact for integer weights whose smallest is 1), Kish's size those
    divided by the largest, which cannot overflow.
    """
    sample_weight = np.asarray(sample_weight, dtype=float)
    positive = sample_weight[sample_weight > 0]
    if not positive.size:
        return 0.0
    scaled = positive / np.max(positive)
    with np.errstate(over="ignore"):  # (an infinite count leaves Kish's)
        count = float(np.sum(positive / np.min(positive)))
    return min(count, kish_bound(float(np.sum(scaled)), float(scaled @ scaled)))


def kish_bound(total, squares):
    """The bound of :func:`effective_rows`: ``10 total^2 / squares``, from the
    sums of the weights and of their squares (in any common unit)."""
    return _COUNT_MAX_KISH * total * total / squares if squares > 0 else 0.0


def _weighted_quantile(values, weights, quantile):
    """Smallest ``t`` with ``sum(weights[values <= t]) >= quantile * sum(weights)``."""
    if np.all(weights == weights[0]):
        return float(np.quantile(values, quantile, method="inverted_cdf"))
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    k = min(int(np.searchsorted(cum, quantile * cum[-1])), values.size - 1)
    return float(values[order[k]])


def _residual_scale(residuals, weights):
    """``median |r - median(r)| / 0.6745``: the normalised MAD about the median.

    Centred, so that it measures the spread of the residuals whatever the
    quantile. When more than half the residuals are equal it is zero; their
    root mean square is used instead, and if that is zero too (every
    residual equal) 0.0 is returned.
    """
    centred = residuals - weighted_median(residuals, weights)
    scale = mad_scale(centred, weights)
    if not scale > _MIN_RELATIVE_SCALE:
        # Root mean square without squaring large residuals.
        largest = float(np.max(np.abs(centred), initial=0.0))
        if largest > 0:
            scaled = centred / largest
            scale = largest * float(np.sqrt(weights @ scaled**2 / weights.sum()))
    return scale if scale > _MIN_RELATIVE_SCALE else 0.0


def robust_offset_scale(y, sample_weight, fit_intercept):
    """Median and MAD of ``y``: a standardisation that outliers cannot spoil."""
    offset = weighted_median(y, sample_weight) if fit_intercept else 0.0
    scale = mad_scale(y - offset, sample_weight)
    if not (scale > 0 and np.isfinite(scale)):
        _, scale = target_offset_scale(y, sample_weight, fit_intercept)
    return offset, scale


def smoothed_objective(
    rho, X, y, sample_weight, fit_intercept, stats, last, subsample_rho=None
):
    """The smoothed objective of ``rho``; a strided subsample of it unless ``last``.

    Every fit but the last only provides a residual scale and a start: on
    large data it is made on the subsample of the solvers' one rule
    (:func:`skrobust._solvers.subsample_for_start`). The last one starts
    next to its solution, where a start from a subsample would be worse.
    ``subsample_rho``, if given, maps the subsample's share of the rows to
    the loss its fit takes instead of ``rho`` (:func:`subsample_bandwidth`).
    """
    objective = LinearObjective(
        FixedScaleLoss(rho, 1.0),
        X,
        y,
        sample_weight,
        [(None, fit_intercept)],
        [0.0],
        column_stats=stats,
    )
    sub = None if last else _solvers.subsample_for_start(objective)
    if sub is None:
        return objective
    if subsample_rho is not None:
        share = sub.n_samples / objective.n_samples
        sub.loss = FixedScaleLoss(subsample_rho(share), 1.0)
    return sub


def subsample_bandwidth(rows, share, n_features):
    """:func:`default_bandwidth` of a start's fit on a ``share`` of the ``rows``.

    The rule at the subsample's own size: its fit only gives the last one a
    start and a residual scale, and the bandwidth of all the rows would make
    it the harder problem of a larger sample on fewer rows (1e5 x 20 with
    10% gross outliers: 18 to 21 iterations on every 11th row, 12 to 13 at
    this bandwidth, 2.5 times wider; at q = 0.9, where the quantile falls
    between the clean rows and the outliers, 184 -> 98).
    """
    return default_bandwidth(rows * share, n_features)


def minimize_smoothed(
    objective, coef, stats, alpha, max_iter, tol, warn, last, nested=False, solver=None
):
    """Newton or L-BFGS; proximal with ``alpha > 0`` (the L1 penalty exact).

    Newton's method takes Levenberg-Marquardt steps (without ``alpha``; see
    :func:`skrobust._solvers.minimize`'s ``levenberg``): scipy's trust
    region, whose bookkeeping dominates small problems, only takes what
    they leave. A final fit (``last``) on many
    rows is first made on the rows near its start
    (:func:`_minimize_near_start`), and on all of them only if that does
    not give their minimiser; a ``nested`` one (a continuation step, or the
    near rows' problem itself) is not.
    """
    if (
        last
        and not nested
        and isinstance(objective, LinearObjective)
        and objective.n_samples >= _NEAR_START_MIN_ROWS
        and max_iter >= 4
    ):
        # At most half of the iterations (and _CONTINUATION_MAX_ITER): a
        # problem the near rows do not settle (ties at zero) keeps the rest.
        near_budget = min(max_iter // 2, _CONTINUATION_MAX_ITER)
        near, coef, used = _minimize_near_start(
            objective, coef, stats, alpha, near_budget, tol
        )
        if near is not None:
            return near
        result = _minimize_all_rows(
            objective, coef, stats, alpha, max_iter - used, tol, warn, last
        )
        result.n_iter += used
        return result
    return _minimize_all_rows(
        objective, coef, stats, alpha, max_iter, tol, warn, last, solver
    )


def _minimize_near_start(objective, coef, stats, alpha, max_iter, tol):
    """The minimiser of ``objective`` from the rows near the start, or not.

    The start is centred (its intercept moved to the ``q``-quantile of its
    residuals: a neighbouring level's fit, or one on a subsample), and the
    problem solved on the rows whose residuals are within the larger of a
    quantile of ``|r|`` (``_NEAR_START_FRACTIONS``) and ``2 t h`` (``t h``
    the reach of the kernel), the others entering as the exact linear term
    of :class:`_NearRowsObjective`. If at its solution every other row kept
    its side and stayed beyond ``t h`` from zero, the full objective has
    the same value and gradient near it, so the solution is the full
    problem's minimiser (convexity). Otherwise the rows are chosen again
    around that solution, with the next, larger fraction.

    Returns ``(result, start, n_iter)``: the certified
    :class:`~skrobust._solver_result.SolverResult` (``n_iter`` counting every
    attempt) and None, or None and the start for the full problem (the last
    near solution, or ``coef`` itself if the near rows did not settle:
    ties at zero can leave them a poor problem) with the iterations spent.
    """
    rho = objective.loss.rho
    weight = objective.sample_weight
    start = np.array(coef, dtype=np.float64)
    coef = start.copy()
    residuals = objective.y - objective.raw_prediction(coef)[:, 0]
    if objective.predictor_spec[0][1]:
        shift = _weighted_quantile(residuals, weight, rho.quantile)
        coef[-1] += shift  # the intercept is the last coordinate
        residuals -= shift
    reach = _LINEAR_BEYOND[rho.kernel] * rho.bandwidth
    n_iter = 0
    for fraction in _NEAR_START_FRACTIONS:
        distance = np.abs(residuals)
        k = int(fraction * distance.size)
        radius = max(float(np.partition(distance, k)[k]), 2.0 * reach)
        near = distance < radius
        del distance  # (n-vectors are what a fit holds)
        reduced = _near_rows_objective(objective, coef, near, residuals)
        if reduced is None or n_iter >= max_iter:
            break
        result = minimize_smoothed(
            reduced, coef, stats, alpha, max_iter - n_iter, tol, False, True, True
        )
        del reduced  # its copy of the near rows, before the next one's
        n_iter += result.n_iter
        if not result.converged:
            break
        fine = objective.y - objective.raw_prediction(result.coef)[:, 0]
        far = ~near & (weight > 0)
        kept = (residuals[far] > 0) == (fine[far] > 0)
        if np.all(kept & (np.abs(fine[far]) >= reach)):
            result.n_iter = n_iter
            return result, None, n_iter
        start = coef = result.coef
        residuals = fine
    return None, start, n_iter


def smoothed_solver(n_coef, n_samples):
    """``"newton"`` or ``"lbfgs"`` for a smoothed fit of this size.

    Newton's method up to ``NEWTON_MAX_COEF`` coefficients, and up to
    ``NEWTON_MAX_COEF_MANY_ROWS`` with ``NEWTON_MIN_ROWS_PER_COEF`` rows per
    coefficient; L-BFGS beyond.
    """
    if n_coef <= NEWTON_MAX_COEF:
        return "newton"
    many_rows = n_samples >= NEWTON_MIN_ROWS_PER_COEF * n_coef
    return "newton" if many_rows and n_coef <= NEWTON_MAX_COEF_MANY_ROWS else "lbfgs"


def sparse_newton(objective):
    """Whether ``objective`` is minimised by Newton's method on sparse Hessians.

    Where :func:`smoothed_solver` would take L-BFGS (too many coefficients
    for a dense Hessian) and the design's Hessian is sparse
    (:func:`~skrobust._sparse_hessian.sparse_hessian_affordable`: one-hot
    levels); the caller leaves out L1 penalties. Measured on the 1e5 x
    1005 one-hot design (5 numeric columns, 1000 levels; CPU, one BLAS
    thread): 2.3 -> 1.0 s, from 236 iterations, mostly L-BFGS's, to 104
    (80 of them L-BFGS's before Newton's), and a pinball loss 7e-7 lower
    (the continuation took its second step, which the 176 iterations of
    L-BFGS's first had ruled out).
    """
    n_samples = getattr(objective, "fit_n_samples", objective.n_samples)
    if smoothed_solver(objective.n_coef, n_samples) != "lbfgs":
        return False
    return sparse_hessian_affordable(objective)


def _minimize_all_rows(
    objective, coef, stats, alpha, max_iter, tol, warn, last, solver=None
):
    """:func:`minimize_smoothed` on the objective as given."""
    # A problem on the rows near a fit is solved as the fit's own would be.
    n_samples = getattr(objective, "fit_n_samples", objective.n_samples)
    newton_or_lbfgs = solver or smoothed_solver(objective.n_coef, n_samples)
    if solver is None and not alpha and sparse_newton(objective):
        newton_or_lbfgs = "sparse-newton"
    options = {"warn": warn and last, "multilevel": not last}
    if alpha > 0:
        l1 = _l1_weights(objective, stats, alpha)
        return _proximal.minimize_l1(
            objective, coef, l1, newton_or_lbfgs, max_iter, tol, **options
        )
    # The smoothed pinball loss is convex, and nearly piecewise linear at
    # small bandwidths: Levenberg-Marquardt steps.
    return _solvers.minimize(
        objective,
        coef,
        newton_or_lbfgs,
        max_iter,
        tol,
        convex=True,
        levenberg=True,
        **options,
    )


def _l1_weights(objective, stats, alpha):
    """The L1 weight of each coefficient in the objective's coordinates.

    ``alpha / column_scale`` for the columns (``w = c / column_scale``), 0
    for the intercept.
    """
    l1 = np.zeros(objective.n_coef)
    l1[: objective.X.shape[1]] = alpha / stats[1]
    return l1


def pinball_gap(objective, coef, rho, l1):
    r"""Objective, duality gap and residuals of a smoothed fit.

    At a minimiser of the smoothed objective the loss derivatives
    :math:`d_i = \ell_h'(r_i) = q - K(-r_i / h)` (:math:`K` the kernel's
    distribution function, :math:`\Phi` for the Gaussian), all in
    :math:`(q - 1, q)`,
    are a feasible point of the dual linear programme (the smoothed
    gradient vanishes: :math:`\sum_i s_i d_i = 0` with an intercept and
    :math:`|\sum_i s_i d_i x_{ij}| / S \le \lambda_j`), so
    :math:`\frac1S \sum_i s_i d_i y_i` bounds the unsmoothed optimum
    :math:`F^*` from below, and

    .. math::

        F(c) - F^* \le \frac1S \sum_i s_i \bigl(\rho_q(r_i) - d_i r_i\bigr)
                   = \frac1S \sum_i s_i \, |r_i| \, K(-|r_i| / h)

    (the L1 terms cancel by complementary slackness). Rows further than a
    few bandwidths from zero contribute nothing; with a continuous residual
    density :math:`f` the gap is about :math:`f(0) h^2 / 2`, with an atom of
    mass :math:`m` at zero about :math:`m h` times a constant.

    Parameters
    ----------
    objective : LinearObjective
        The smoothed objective (its rows, targets and weights are used).
    coef : ndarray of shape (n_coef,)
        A minimiser of the smoothed objective, in its coordinates.
    rho : SmoothedPinballRho
        Its loss.
    l1 : ndarray of shape (n_coef,)
        L1 weights :math:`\lambda_j` in the same coordinates.

    Returns
    -------
    value : float
        The unsmoothed objective :math:`F(c)` (weighted mean pinball loss
        plus the L1 penalty).
    gap : float
        The bound on :math:`F(c) - F^*` above.
    residuals : ndarray of shape (n_samples,)
    """
    residuals = objective.y - objective.raw_prediction(coef)[:, 0]
    weight, total = objective.sample_weight, objective.sum_weight
    # (Sums of products, not BLAS dot products: BLAS threads that wait for
    # busy cores can cost more than the pass.)
    pinball = rho.quantile * residuals - np.minimum(residuals, 0.0)
    value = float((weight * pinball).sum()) / total + float((l1 * np.abs(coef)).sum())
    # Rows in the linear zone have tails below 1e-17: they add nothing.
    reach = _LINEAR_BEYOND[rho.kernel] * rho.bandwidth
    close = np.flatnonzero(np.abs(residuals) < reach)
    tail, _, _ = rho._tail_density_g(rho._t(residuals[close]))
    gap = float((weight[close] * np.abs(residuals[close]) * tail).sum()) / total
    return value, gap, residuals


class _NearRowsObjective:
    """The smoothed objective when the far rows are in the loss's linear zone.

    ``near`` is the objective on the rows near zero; every other row lies
    where the smoothed loss equals the pinball loss, linear in the
    coefficients while its residual keeps its sign, so it adds the first
    order term ``far_value + far_gradient @ (c - coef0)`` exactly. Values
    are means over all rows: ``near`` is weighted by its share of the weight.
    """

    def __init__(self, near, near_share, far_value, far_gradient, coef0, full):
        self.near, self.near_share = near, near_share
        self.far_value, self.far_gradient = far_value, far_gradient
        self.coef0 = coef0
        self.X, self.n_coef = near.X, near.n_coef
        self.n_samples, self.sum_weight = near.n_samples, near.sum_weight
        # The rows of the whole problem, which choose the solver.
        self.fit_n_samples = getattr(full, "fit_n_samples", full.n_samples)

    def null_directions(self):
        return self.near.null_directions()

    def _far(self, coef):
        return self.far_value + self.far_gradient @ (coef - self.coef0)

    def loss_gradient(self, coef):
        value, grad = self.near.loss_gradient(coef)
        share = self.near_share
        return share * value + self._far(coef), share * grad + self.far_gradient

    def hessian(self, coef):
        return self.near_share * self.near.hessian(coef)

    def loss_gradient_hessian(self, coef):
        value, grad, hess = self.near.loss_gradient_hessian(coef)
        share = self.near_share
        return (
            share * value + self._far(coef),
            share * grad + self.far_gradient,
            share * hess,
        )

    def hessp(self, coef, vector):
        return self.near_share * self.near.hessp(coef, vector)


def _near_rows_objective(full, coef, near, residuals):
    """:class:`_NearRowsObjective` of ``full`` at ``coef``, or None if not worth it.

    The far rows' loss is ``(q - 1_{r < 0}) r`` with ``r`` the
    ``residuals`` at ``coef``: their value is a sum, their gradient one
    product with the design's transpose. None when the near rows are more
    than half of them (the full objective is as cheap), carry no weight, or
    leave a direction that only far rows determine (a flat direction of the
    near rows alone).
    """
    if sparse_newton(full):
        # Its Newton iterations on all the rows cost a pass each, and the
        # search for flat directions of the near rows would cost a dense
        # Gram matrix and its eigendecomposition (0.9 s of a 2 s fit at
        # 1e5 x 1005 one-hot, whose intercept leaves one flat direction).
        return None
    weight = full.sample_weight
    # Row indices, not the mask: taking a dense X's rows by index is 3x
    # cheaper than by a boolean mask (1e5 x 20: 0.9 vs 3.2 ms).
    rows = np.flatnonzero(near)
    near_weight = float(weight[rows].sum())
    if not 0 < near_weight or 2 * rows.size > near.size:
        return None
    total = full.sum_weight
    # d rho_q(r) / dr of each far row, times its weight (0 for near rows),
    # formed in place and freed before the near rows are copied: one
    # n-vector at a time.
    slope = np.subtract(full.loss.rho.quantile, residuals < 0, dtype=np.float64)
    slope *= weight
    slope[near] = 0.0
    far_value = float(slope @ residuals) / total
    far_gradient = -full.design_rmatvec(slope) / total
    del slope
    near_objective = LinearObjective(
        full.loss,
        full.X[rows] if sp.issparse(full.X) else full.X.take(rows, axis=0),
        full.y[rows],
        weight[rows],
        full.predictor_spec,
        [0.0],
        column_stats=full.column_stats,
    )
    # A column with no non-zero entry on the near rows is a flat direction
    # of theirs, which the search below would find: seen without its Gram
    # matrix and eigendecomposition (one-hot designs, whose rare levels the
    # rows near zero miss: 0.15 s of a 0.9 s fit at 1e5 x 1005).
    if _has_empty_column(near_objective.X):
        return None
    # The solver searches it again (through _NearRowsObjective): once.
    near_objective.null_cache = {}
    if near_objective.null_directions().shape[1]:
        return None
    return _NearRowsObjective(
        near_objective, near_weight / total, far_value, far_gradient, coef, full
    )


_EMPTY_COLUMN_HEAD = 64


def _has_empty_column(X):
    """Whether some column of ``X`` (dense or sparse) is zero on every row."""
    if sp.issparse(X):
        X = sp.csc_array(X) if X.format != "csc" else X
        if np.all(np.diff(X.indptr) > 0) and np.all(X.data != 0):
            return False
        return bool(np.any(abs(X).sum(axis=0) == 0))
    # Most designs have every column non-zero within their first rows: the
    # rest is read only for the columns those rows leave empty.
    head = np.any(X[:_EMPTY_COLUMN_HEAD] != 0, axis=0)
    if head.all():
        return False
    return not np.all(np.any(X[_EMPTY_COLUMN_HEAD:, ~head] != 0, axis=0))


def continuation_budgets(value, gap, left):
    """``(budget, extra)`` of a continuation step from a fit of this value and gap.

    ``budget`` iterations (at most ``_CONTINUATION_MAX_ITER`` of the
    ``left``), and, while the gap is above ``_GUARANTEED_GAP`` of the value
    (the documented accuracy not yet certified), the rest of them as
    ``extra`` for a solve that stops on its budget (:func:`_step_minimize`).
    """
    budget = min(left, _CONTINUATION_MAX_ITER)
    extra = left - budget if gap > _GUARANTEED_GAP * value else 0
    return budget, extra


def retry_solver(problem):
    """The solver that goes on with a continuation step stopped on its budget.

    Newton's method where its Hessian is affordable (at most
    ``NEWTON_MAX_COEF`` coefficients, and rows times their square within the
    solvers' ``_NEWTON_FALLBACK_WORK``): from where L-BFGS stopped it
    converges in a few iterations (1 to 4 on 8000 x 110 data, where
    L-BFGS went on for 4 to 102). Otherwise None: the problem's own
    solver (L-BFGS, finished by Newton's method if its Hessian is
    affordable after all).
    """
    n_coef = problem.n_coef
    work = problem.n_samples * n_coef**2
    if n_coef <= _solvers.NEWTON_MAX_COEF and work <= _solvers._NEWTON_FALLBACK_WORK:
        return "newton"
    return None


def _step_minimize(problem, start, stats, alpha, tol, budgets):
    """:func:`minimize_smoothed` for a continuation step, past its budget if allowed.

    ``budgets`` is ``(budget, extra)`` (:func:`continuation_budgets`): a
    solve that stops on its ``budget`` of iterations without converging
    goes on from where it stopped for at most ``extra`` more
    (:func:`_go_on`).
    """
    budget, extra = budgets
    result = minimize_smoothed(
        problem, start, stats, alpha, budget, tol, False, True, nested=True
    )
    if result.converged or result.n_iter < budget or extra < 1:
        return result
    return _go_on(problem, result, stats, alpha, extra, tol)


def _go_on(problem, result, stats, alpha, extra, tol):
    """``problem`` minimised from ``result.coef`` in ``extra`` more iterations.

    With :func:`retry_solver`'s solver; ``n_iter`` counts ``result``'s too.
    """
    more = minimize_smoothed(
        problem,
        result.coef,
        stats,
        alpha,
        extra,
        tol,
        False,
        True,
        nested=True,
        solver=retry_solver(problem),
    )
    more.n_iter += result.n_iter
    return more


def _continuation_step(full, rho, coef, coarse, stats, options, start):
    """Minimise ``full`` (loss ``rho``) from a minimiser for a coarser bandwidth.

    Rows further than ``_LINEAR_BEYOND`` coarse bandwidths from zero stay in
    the loss's linear zone unless the solution moves that far, so the
    problem is first solved on the rows near zero, the others entering as
    an exact linear term (:class:`_NearRowsObjective`): a fraction of a
    pass per iteration. The result stands if every far row kept its side
    and stayed in the linear zone of the finer bandwidth (its gradient is
    then the full one); otherwise ``full`` is minimised from it. A solve
    that stops on its budget goes on with ``budgets`` (``(budget,
    extra)``, see :func:`_step_minimize`): the near rows' problem with half
    of ``extra``, then, if it still has not converged (it may have too few
    rows for the coefficients), ``full`` with the rest. The minimisations
    start from ``start`` (``coef`` extrapolated along the path).
    ``coarse`` holds the unsmoothed objective, residuals and bandwidth of
    ``coef``; ``options`` is ``(alpha, budgets, tol)``. Returns
    ``(SolverResult, value, gap, residuals)``, the last three as
    :func:`pinball_gap` gives them.
    """
    _, residuals, coarse_bandwidth = coarse
    alpha, budgets, tol = options
    l1 = _l1_weights(full, stats, alpha)
    reach = _LINEAR_BEYOND[rho.kernel]
    near = np.abs(residuals) < reach * coarse_bandwidth
    reduced = _near_rows_objective(full, coef, near, residuals)
    if reduced is not None:
        budget, extra = budgets
        near_budgets = (budget, extra // 2)
        result = _step_minimize(reduced, start, stats, alpha, tol, near_budgets)
        if not result.converged:
            if not extra or result.n_iter < sum(near_budgets):
                # Too few rows near zero for the coefficients (a problem
                # close to a vertex of the linear programme), and no
                # accuracy target left: the continuation ends, with this
                # fit if its gap certifies the target (takes_step).
                return (result, *pinball_gap(full, result.coef, rho, l1))
            result = _go_on(full, result, stats, alpha, extra - extra // 2, tol)
            return (result, *pinball_gap(full, result.coef, rho, l1))
        value, gap, fine_residuals = pinball_gap(full, result.coef, rho, l1)
        far = ~near & (full.sample_weight > 0)
        kept = (residuals[far] > 0) == (fine_residuals[far] > 0)
        linear = np.abs(fine_residuals[far]) >= reach * rho.bandwidth
        if np.all(kept & linear):
            return result, value, gap, fine_residuals
        start = result.coef  # some far rows moved in: a close start
    result = _step_minimize(full, start, stats, alpha, tol, budgets)
    return (result, *pinball_gap(full, result.coef, rho, l1))


def continuation_ends(value, gap, left, hard):
    """Whether the continuation stops at a fit of this value and gap.

    When the gap is within ``_CONTINUATION_GAP`` of the value, when no
    iteration is ``left``, or when the last step was ``hard`` (it needed
    more than its budget: the next, at a bandwidth 8 times smaller, would be
    harder still) and the gap certifies the documented accuracy
    (``_GUARANTEED_GAP``).
    """
    if not gap > _CONTINUATION_GAP * value or left < 1:
        return True
    return hard and not gap > _GUARANTEED_GAP * value


def takes_step(result, value, gap, new_value, new_gap):
    """Whether the continuation takes a step's fit (``value, gap``: the current one's).

    When it does not raise the pinball loss and either converged or, cut
    short, certifies the continuation's target: a duality gap within
    ``_CONTINUATION_GAP`` of its loss bounds its excess over the optimum
    whether or not the smoothed objective was minimised. (5 rows of weight
    ``1e6`` beside 25 of ``1e-6``, ``alpha=0.01``: a step at ``h = 5e-8``
    ended on its 50 iterations near a vertex 2.6e-7 above the optimum, and
    the fit kept the previous one, 2.0e-6 above.) A step cut short is also
    taken when its gap certifies the documented accuracy
    (``_GUARANTEED_GAP``) and the current fit's does not: on a sparse
    2e4 x 2000 design at q = 0.2 the last step ended on ``max_iter`` with a
    gap of 1.4e-5 of its loss, and keeping the previous fit (1.3e-4) had
    the estimator warn.
    """
    if not new_value <= value:
        return False
    if result.converged or not new_gap > _CONTINUATION_GAP * new_value:
        return True
    return gap > _GUARANTEED_GAP * value and not new_gap > _GUARANTEED_GAP * new_value


def refine_smoothed(objective, rho, coef, stats, alpha, max_iter, tol):
    """Continuation in the bandwidth: the finishing step of ``solver="smooth"``.

    The smoothed minimiser's training pinball loss exceeds the optimum by at
    most the duality gap of :func:`pinball_gap`. While that gap is above
    ``_CONTINUATION_GAP`` of the objective, the bandwidth is divided by
    ``_CONTINUATION_FACTOR`` and the smoothed objective minimised again from
    the previous solution (:func:`_continuation_step`), as long as the
    unsmoothed objective keeps decreasing. With a continuous residual
    density the first fit usually meets the target (the gap is of order
    ``h^2``) or one step does; targets with ties (counts, rounded values,
    a floor of zeros) put an atom of residuals at zero, which makes the gap
    of order ``h``, and each step divides it by the factor. A step that
    does not converge in ``_CONTINUATION_MAX_ITER`` iterations ends the
    continuation once the gap is within ``_GUARANTEED_GAP`` of the
    objective (:func:`continuation_ends`); until then it goes on with the
    rest of ``max_iter`` (:func:`continuation_budgets`), so that the
    documented accuracy holds unless ``max_iter`` runs out.

    Parameters
    ----------
    objective : LinearObjective
        The smoothed objective on all the rows, with loss ``rho``.
    rho : SmoothedPinballRho
    coef : ndarray of shape (n_coef,)
        Its minimiser.
    stats : tuple of ndarray
        The objective's column statistics.
    alpha, max_iter, tol
        As :func:`minimize_smoothed` takes them.

    Returns
    -------
    coef : ndarray of shape (n_coef,)
    rho : SmoothedPinballRho
        The loss (bandwidth) ``coef`` minimises.
    n_iter : int
        Iterations of the continuation steps, at most ``max_iter``.
    short : bool
        Whether ``max_iter`` ran out with the gap of ``coef`` still above
        ``_GUARANTEED_GAP`` of its objective: the caller warns
        (:func:`warn_uncertified`). (The continuation's other stops, after
        ``_CONTINUATION_MAX_STEPS`` steps or where the loss stops
        decreasing, end where the smoothed path cannot improve the fit.)
    """
    l1 = _l1_weights(objective, stats, alpha)
    value, gap, residuals = pinball_gap(objective, coef, rho, l1)
    factor = _CONTINUATION_FACTOR
    fit_intercept = objective.predictor_spec[0][1]
    n_iter, previous, hard = 0, None, False
    for _ in range(_CONTINUATION_MAX_STEPS):
        if continuation_ends(value, gap, max_iter - n_iter, hard):
            break
        budget, extra = continuation_budgets(value, gap, max_iter - n_iter)
        finer = SmoothedPinballRho(rho.quantile, rho.bandwidth / factor, rho.kernel)
        full = smoothed_objective(
            finer,
            objective.X,
            objective.y,
            objective.sample_weight,
            fit_intercept,
            stats,
            last=True,
        )
        result, new_value, new_gap, new_residuals = _continuation_step(
            full,
            finer,
            coef,
            (value, residuals, rho.bandwidth),
            stats,
            (alpha, (budget, extra), tol),
            start=coef if previous is None else coef + (coef - previous) / factor,
        )
        n_iter += result.n_iter
        if not takes_step(result, value, gap, new_value, new_gap):
            break
        hard = result.n_iter > budget
        previous, coef, rho, value, gap, residuals = (
            coef,
            result.coef,
            finer,
            new_value,
            new_gap,
            new_residuals,
        )
    return coef, rho, n_iter, bool(n_iter >= max_iter and gap > _GUARANTEED_GAP * value)


def warn_uncertified(max_iter):
    """The ``ConvergenceWarning`` of a smoothed fit whose gap misses ``1e-4``.

    Raised in memory and on dask alike, when ``max_iter`` runs out with the
    duality gap above ``_GUARANTEED_GAP`` of the objective: the fit's pinball
    loss may then exceed the optimum by more than the documented accuracy.
    """
    warnings.warn(
        f"The smoothed quantile fit ended with its duality gap above "
        f"{_GUARANTEED_GAP:g} of the objective (max_iter={max_iter}): its "
        "pinball loss may exceed the optimum by more than that. Increase "
        "max_iter, or use solver='exact'.",
        ConvergenceWarning,
        stacklevel=4,
    )
