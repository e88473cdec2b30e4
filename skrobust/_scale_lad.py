r"""``scale="lad"``: the MAD fixed point of the smoothed LAD fit, held fixed.

The scale option :class:`LADScale` of the M-estimators (the other options
are in :mod:`skrobust._scale`): ``sigma`` is the fixed point ``sigma =
MAD(r - median r) / 0.6745`` of the residuals ``r`` of the
least-absolute-deviation fit smoothed at bandwidth ``sigma / 2``, then held
fixed for the fixed-scale fit.

1. **The fixed point** (:func:`smoothed_lad_scale`, :func:`_lad_fixed_point`):
   one smoothed LAD fit (:func:`_smoothed_lad_fit`) per step on the scale,
   Newton's steps along each fit's tangent in the scale
   (:class:`ScaleTangent`: three fits where secant steps took four), or on
   the solvers' strided subsample for large problems safeguarded secant
   steps, finished by one smoothed fit on all rows.
2. **The fixed-scale fit** from the last smoothed fit (:func:`_fit_from_lad`).
3. **Boundary cases**: at most two rows per coefficient, or a fixed point
   collapsing to zero (:func:`_collapsing`): the exact LAD fit's residuals
   give the scale (:func:`exact_lad_scale_fit`).

Dask mirrors each step in :mod:`skrobust._dask_lad`.
"""

import dataclasses
from functools import partial

import numpy as np
from sklearn.utils.extmath import safe_sparse_dot

from . import _solvers, _sparse_newton
from ._base import mad_scale, weighted_median
from ._linalg import CholeskyFactor
from ._scale import (
    _FEW_ROWS_PER_COEF,
    _LAD_SMALLEST_STEP,
    EXACT_FIT_TOL,
    LAD_SMALL_SCALE,
    MIN_RELATIVE_SCALE,
    ScaleFit,
    ScaleSecant,
    _fixed_scale_fit,
    _newton_polish,
    fixed_scale_tol,
    initial_scale,
)
from ._scale_mad import MADScale, extrapolated_start
from .losses import FixedScaleLoss, SmoothedPinballRho

# scale="lad": the smoothed LAD fit's bandwidth, in units of the scale it
# defines. Small enough that the scale stays within a percent of the exact
# LAD fit's; large enough that Newton's method and L-BFGS solve the smoothed
# fit in a few passes. Measured (n = 1e5 x 200, sparse 2e4 x 2000): 0.25
# takes 1.4-1.9 times as long as 0.5; 1.0 saves under 10% and moves the
# scale 1% further from the exact LAD one.
LAD_BANDWIDTH = 0.5
# The fixed point of the LAD scale is settled to this relative change.
LAD_SCALE_RTOL = 1e-6
# Each smoothed fit before the last is solved to this fraction of the change
# of the scale it is expected to measure (the first to this fraction of the
# scale): its only use is the next scale, whose error it sets.
_LAD_INEXACT_FIT = 1e-3
# Newton's chord steps in the smoothed fits update their Hessian to the
# gradients they see (skrobust._linalg.secant_update): each fit starts on
# the previous fit's Hessian, at another bandwidth, where plain chord steps
# shrank the gradient only ~13x each. Measured at 1e3 x 20 (10% gross
# errors): the four fits' passes 3, 3, 4, 5 -> 3, 3, 3, 4.
LAD_SECANT_UPDATES = True
# On problems the solvers subsample, the one smoothed fit on all rows (the
# scale is its residuals' MAD) is solved to this multiple of the scale, in
# standardised gradient units, where a gradient g moves the MAD by a few g.
# The bandwidth it is fitted at is the subsample's fixed point, settled to
# SUBSAMPLE_TOL (1e-3), which moves the all-rows MAD by about 1e-5 of the
# scale (a hundredth); this fit's own error adds about a tenth of that. To
# the fit's tol instead, its last Newton step (one pass over all rows of a
# dense 1e5 x 20, 1e4 x 20 or 3e5 x 20) took the gradient from ~1e-7 to
# ~1e-11 and moved the scale by 1e-7 to 2e-6 of itself.
_ALL_ROWS_FIT = 1e-6
# The scale collapses when MAD / sigma stays below 1 - _COLLAPSE_MIN_GAP for
# _COLLAPSE_STEPS + 1 fits, its gap to 1 shrinking by less than
# _COLLAPSE_KEEP each time (see _collapsing).
_COLLAPSE_STEPS = 2
_COLLAPSE_MIN_GAP = 1e-3
_COLLAPSE_KEEP = 0.5
# A fit this far (relatively) from the last one's scale re-forms its Hessian
# after its first step: at 1e3 x 20 the first Newton step on the scale moved
# it 10%, where chord steps on the last fit's Hessian shrank the gradient
# only 12-100x each (four steps to 1e-10, now two).
_TANGENT_FAR = 0.01
# Within this many times LAD_SCALE_RTOL of the fixed point, after two exact
# fits, the secant through them takes the tangent's place: its slope is off
# by about the distance between them, so the next gap is the square of
# that, as the tangent's is, without the tangent's cost (about a pass and
# two MADs: at 3e3 x 20 one fit landed 1.06e-6 from the fixed point).
_SECANT_NEAR = 10.0


class LADScale:
    r"""The MAD fixed point of the smoothed least-absolute-deviation fit, held fixed.

    ``sigma`` solves

    .. math::

        \sigma = \operatorname{med}_i |r_i - \operatorname{med}_j r_j| / 0.6745,
        \qquad r = y - X w_\sigma - b_\sigma, \qquad
        (w_\sigma, b_\sigma) = \arg\min \sum_i s_i\,
        \ell_{h}(y_i - x_i^\top w - b), \quad h = 0.5\,\sigma,

    with ``ell_h`` the absolute loss smoothed with a Gaussian kernel of
    bandwidth ``h`` (:class:`~skrobust.losses.SmoothedPinballRho` at
    ``q = 0.5``; no penalty) and the medians weighted by ``s``: the
    normalised MAD of a median regression whose smoothing is measured in
    its own residual scale. Both that fit (convex, with a bounded score) and
    the MAD of its residuals resist up to half the targets being
    arbitrarily wrong, so the fixed-scale fit that follows stays bounded up
    to that fraction too. Centring matters there: one-sided outliers shift
    the fit by a multiple of the bandwidth, and a MAD about zero would widen
    the bandwidth with that shift until the two run away together (at 45%
    outliers with ``h = 0.5 sigma``); about the median, the good rows alone
    set it. The fixed point is settled to a relative ``LAD_SCALE_RTOL``.

    On problems the solvers subsample (at least 5000 rows and 275 rows per
    coefficient) the fixed point is settled, to 1e-3, on every 11th row, and
    ``sigma`` is the centred MAD of all the rows' residuals of the smoothed
    fit on all of them at that bandwidth (:func:`smoothed_lad_scale`): the
    all-rows fixed point to about a hundredth of the subsample's sampling
    error (3.5e-4 at 8000 rows), and as dependent on the order of the rows.

    With at most two rows (of positive weight) per coefficient, or when the
    fixed point collapses to zero (more than half the rows on one
    hyperplane, as with many tied targets) or settles below
    ``LAD_SMALL_SCALE`` of the start's residual scale (where it may be such
    a collapse), the exact LAD fit gives the scale instead
    (:func:`exact_lad_scale_fit`).
    """

    name = "lad"
    l2_in_y_units = False

    def check(self, rho):
        """Every loss has a fixed-scale objective."""

    def solve(self, problem, coef, scale):
        ls = problem.ls_objective
        rows = np.count_nonzero(ls.sample_weight > 0)
        if rows <= _FEW_ROWS_PER_COEF * ls.n_coef:
            return exact_lad_scale_fit(problem, coef, scale)
        # The smoothed LAD fits are a preliminary estimate, like the L1
        # start (and the exact linear programme before them): a budget of
        # max_iter iterations of their own, not counted in n_iter_, so that
        # a warm start from the optimum takes no iteration. Standardised y
        # has a MAD of 1: a larger start scale (a poor L1 start on a wide
        # design) only costs fits.
        preliminary = dataclasses.replace(problem, used=[0])
        first = min(scale, 1.0)
        lad = smoothed_lad_scale(preliminary, coef, first)
        if lad is None or not lad[1] > LAD_SMALL_SCALE * first:
            # Collapsing, or settled at a tiny scale, which with two thirds
            # of 45 001 targets on a plane depended on the order of the rows
            # (1e-4 in one, a collapse in another): the exact LAD fit decides.
            return exact_lad_scale_fit(problem, coef, scale)
        lad_coef, lad_scale, settled = lad
        other = None
        if abs(lad_scale - scale) <= LAD_SCALE_RTOL * lad_scale:
            # The given scale (a warm start's) is the fixed point to the same
            # tolerance: keeping it, and the given coefficients if they fit
            # better, lets a warm start from the optimum stay there.
            lad_scale, other = scale, coef
        fit = _fit_from_lad(problem, lad_coef, lad_scale, other)
        if not settled:
            fit.converged = False
            fit.message = "the LAD scale's fixed point did not settle"
        return fit

    def report(self, scale, y_scale):
        return scale * y_scale


def _fit_from_lad(problem, coef, scale, other=None):
    """The fixed-scale fit from the smoothed LAD fit's coefficients.

    Or from ``other`` if given and of a lower objective. Newton's steps
    start on the fixed-scale objective's Hessian on the solvers' subsample
    at that point (one pass over an eighth of the rows): measured, fewer
    passes than a multilevel solve, whose subsample solution is a worse
    start than the LAD fit on all rows.
    """
    objective = problem.objective(
        FixedScaleLoss(problem.rho, scale),
        [(None, problem.fit_intercept)],
        [problem.l2],
    )
    coef, hessian, origin = fixed_scale_start(
        objective, coef, other, problem.options.solver
    )
    result = problem.minimize(
        objective,
        coef,
        tol=fixed_scale_tol(problem.rho, scale, problem.options.tol),
        multilevel=False,
        hessian=hessian,
        hessian_origin=origin,
    )
    coef = result.coef
    if result.converged:
        coef = _newton_polish(problem, objective, coef, result.hessian, result.gradient)
    ((w, b),) = objective.unstandardize(coef)
    return ScaleFit(w, b, scale, result.converged, result.message)


def fixed_scale_start(objective, coef, other, solver):
    """``(coef, hessian, origin)`` of :func:`_fit_from_lad`'s fixed-scale solve.

    The start of lower objective of ``coef`` and ``other`` (if given), and,
    for Newton's method, the Hessian there on the solvers' subsample (also
    used on Dask, where ``objective`` is distributed).
    """
    if other is not None:
        values = [objective.loss_gradient(c)[0] for c in (coef, other)]
        coef = other if values[1] <= values[0] else coef
    hessian, origin = None, "stale"
    sub = _solvers.subsample_for_start(objective)
    if sub is not None and solver == "newton":
        hessian, origin = sub.hessian(coef), "subsample"
    return coef, hessian, origin


def exact_lad_scale_fit(problem, coef, scale):
    """The fixed-scale fit at the normalised MAD of the exact LAD residuals.

    Their root mean square if more than half of them are zero
    (:func:`initial_scale`); the MAD fixed point (:class:`MADScale`) if all
    are, where the LAD fit interpolates.
    """
    from ._quantile_exact import solve_exact

    ls = problem.ls_objective
    ((w, b),) = ls.unstandardize(coef)
    w, b, _ = solve_exact(
        ls.X, ls.y, 0.5, ls.sample_weight, 0.0, problem.fit_intercept, w, b
    )
    residuals = ls.y - safe_sparse_dot(ls.X, w) - b
    if not np.any(np.abs(residuals[ls.sample_weight > 0]) > EXACT_FIT_TOL):
        # The LAD fit interpolates (no more rows than coefficients): its
        # residuals carry no scale, so the MAD fixed point provides it.
        return MADScale().solve(problem, coef, scale)
    scale = initial_scale(residuals, ls.sample_weight)
    # From the given start (a warm start's optimum, or the reweighted L1
    # start), which is as close as the LAD fit.
    return _fixed_scale_fit(problem, coef, scale)


def smoothed_lad_scale(problem, coef, scale):
    """``(coef, scale, settled)`` of the smoothed LAD scale, or None.

    ``coef`` in the problem's standardised coordinates. None when the fixed
    point collapses towards zero (:func:`_collapsing`). On problems the
    solvers subsample (:func:`skrobust._solvers.subsample_for_start`: at
    least 5000 rows and 200 rows per coefficient) the fixed point is
    settled on the strided subsample, and ``scale`` is the centred MAD of
    all the rows' residuals of one smoothed fit on all of them at that
    bandwidth: the MAD moves about a hundredth as much as the bandwidth, so
    this is the full rows' fixed point to about 1e-4 (the subsample's
    sampling error, 1e-2 at most, times that), for the price of one fit on
    all rows instead of three. Every iteration counts against the
    problem's budget.
    """
    ls = problem.ls_objective
    tol = problem.options.tol
    sub = _solvers.subsample_for_start(ls)
    max_iter = problem.options.max_iter

    def exhausted():
        return problem.budget == 0

    if sub is None:
        fit = partial(_smoothed_lad_fit, problem, ls)
        tangent = _memory_tangent(problem, ls)
        found = _lad_fixed_point(fit, exhausted, coef, scale, tol, max_iter, tangent)
        if found is None:
            return None
        coef, scale, _, settled = found
        return coef, scale, settled
    fit = partial(_smoothed_lad_fit, problem, sub)
    # Secant steps: to SUBSAMPLE_TOL they settle in two fits (the second
    # one's start is the first one's optimum to that tolerance), where a
    # tangent would only add its cost (2% at 1e5 x 20).
    found = _lad_fixed_point(
        fit, exhausted, coef, scale, _solvers.SUBSAMPLE_TOL, max_iter
    )
    if found is None:
        return None
    coef, scale, hessian, settled = found
    result, mad = _smoothed_lad_fit(
        problem, ls, coef, scale, hessian, "subsample", all_rows_fit_tol(tol, scale)
    )
    if not mad > MIN_RELATIVE_SCALE:
        return None
    return result.coef, mad, settled and result.converged


def all_rows_fit_tol(tol, scale):
    """The tolerance of the smoothed fit on all rows after a subsample's fixed point.

    ``tol`` (the problem's), loosened to ``_ALL_ROWS_FIT`` times ``scale``:
    the subsample's fixed point leaves the scale uncertain by more than
    the rest of that fit's passes would settle. Shared by memory and Dask.
    """
    return max(tol, _ALL_ROWS_FIT * scale)


def _smoothed_lad_fit(problem, rows, coef, scale, hessian, origin, tol):
    """The smoothed LAD fit on ``rows`` at ``scale`` and its residuals' centred MAD.

    Solved to ``tol`` without a subsample level (a start is given) from
    ``hessian``. Returns the :class:`~skrobust._solver_result.SolverResult` and the
    MAD.
    """
    objective = _smoothed_lad_objective(problem, rows, scale)
    objective.remember_prediction = True  # for the residuals' MAD below
    # Convex (a smoothed absolute loss): Newton's own damped loop, on a
    # sparse Hessian where L-BFGS would be the choice (one-hot designs).
    solver = _sparse_newton.solver_for(objective, problem.options.solver)
    options = _solvers.SolverOptions(
        solver=solver, max_iter=problem.budget, tol=tol, convex=True
    )
    result = _solvers.solve(
        objective,
        coef,
        options,
        multilevel=False,
        hessian=hessian,
        hessian_origin=origin,
        remember_hessian_point=True,  # (for ScaleTangent.step)
    )
    problem.used[0] += result.n_iter
    residuals = rows.y - objective.raw_prediction(result.coef)[:, 0]
    return result, centred_mad_scale(residuals, rows.sample_weight)


def centred_mad_scale(residuals, sample_weight):
    """``median |r - median(r)| / 0.6745``: the normalised MAD about the median.

    Centred, so that a shift of the fit towards one-sided outliers does not
    widen the bandwidth that the shift came from (see :class:`LADScale`).
    """
    centre = weighted_median(residuals, sample_weight)
    return mad_scale(residuals - centre, sample_weight)


def _smoothed_lad_objective(problem, rows, scale):
    """``sum_i s_i sigma^2 ell(r_i / sigma)``, ``ell`` smoothed at ``LAD_BANDWIDTH``.

    That is ``sigma`` times the absolute loss smoothed at ``h = 0.5 sigma``
    in the units of ``y``, without a penalty.
    """
    objective = problem.objective(
        FixedScaleLoss(SmoothedPinballRho(0.5, LAD_BANDWIDTH), scale),
        [(None, problem.fit_intercept)],
        [0.0],
        ls_objective=rows,
    )
    objective.secant_updates = LAD_SECANT_UPDATES
    return objective


class _ScaleDerivativeLoss:
    """The derivative in ``sigma`` of the smoothed LAD loss's gradient, as a loss.

    The fixed-scale loss ``sigma^2 ell(r / sigma)`` has derivative ``-sigma
    psi(z)`` in the prediction (``z = r / sigma``), and that has derivative
    ``z psi'(z) - psi(z)`` in ``sigma``: the gradient of a
    :class:`~skrobust._objective.LinearObjective` of this loss (whose values
    are 0) is the derivative in ``sigma`` of the smoothed objective's
    gradient, in one pass over the rows, in memory or on Dask.
    """

    n_predictors = 1

    def __init__(self, scale):
        self.rho = SmoothedPinballRho(0.5, LAD_BANDWIDTH)
        self.scale = scale

    def loss_gradient(self, y, raw):
        z = (y - raw[:, 0]) / self.scale
        _, psi, dpsi = self.rho.value_derivatives(z)
        return np.zeros_like(z), (z * dpsi - psi)[:, None]


class ScaleTangent:
    """Newton's steps on the LAD scale's fixed point, from a smoothed fit's tangent.

    ``objective_at(loss)`` is a :class:`~skrobust._objective.LinearObjective`
    of ``loss`` (unpenalised) on the fits' rows, and ``mad_at(coef)`` the
    centred MAD of those rows' residuals at ``coef`` (in memory, or as
    :class:`skrobust._dask_lad._LadFit` makes them on Dask).
    """

    def __init__(self, objective_at, mad_at, scale_derivative=None):
        self.objective_at = objective_at
        self.mad_at = mad_at
        if scale_derivative is not None:
            self.scale_derivative = scale_derivative

    def scale_derivative(self, coef, scale):
        """The smoothed objective's gradient's derivative in ``sigma`` at ``coef``."""
        return self.objective_at(_ScaleDerivativeLoss(scale)).loss_gradient(coef)[1]

    def step(self, result, scale, near=False):
        """``(next scale, coef, dcoef, hessian)`` from the fit ``result``, or None.

        ``coef`` is the fit's coefficients after one more Newton step on
        ``hessian``, the smoothed objective's (the solver's latest if it
        formed one, or with ``near`` the one it was given, of a fit within
        ``_TANGENT_FAR`` of ``scale``, whose error, about that distance,
        the last step, only adds a term like the square of the gap; else
        formed now at the fit's coefficients): the fits
        before the last stop early, and that step makes their MAD nearly the
        optimum's. By the implicit function theorem ``dcoef / dsigma =
        -H^-1 d(gradient) / dsigma`` (:class:`_ScaleDerivativeLoss`). The next
        scale is the fixed point of the MAD along that line
        (:meth:`fixed_point`). None without a dense Hessian (L-BFGS, sparse
        Newton) or where the steps fail.
        """
        coef, hessian, gradient = result.coef, result.hessian, result.gradient
        n = coef.size
        if not (isinstance(hessian, np.ndarray) and hessian.shape == (n, n)):
            return None
        if gradient is None or (result.hessian_coef is None and not near):
            # (An earlier fit's Hessian, a tenth of the scale away, left a
            # hundredth of the gap; one formed on the way to coef, only the
            # gradient's change since.)
            loss = FixedScaleLoss(SmoothedPinballRho(0.5, LAD_BANDWIDTH), scale)
            _, gradient, hessian = self.objective_at(loss).loss_gradient_hessian(coef)
        factor = CholeskyFactor.of(hessian)

        def solve(rhs):
            if factor is None:
                return np.linalg.lstsq(hessian, rhs, rcond=None)[0]
            return factor.solve(rhs)

        coef = coef - solve(gradient)
        dcoef = -solve(self.scale_derivative(coef, scale))
        if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(dcoef))):
            return None
        proposal = self.fixed_point(scale, coef, dcoef)
        return None if proposal is None else (proposal, coef, dcoef, hessian)

    def fixed_point(self, scale, coef, dcoef):
        """The fixed point of the MAD of the fits on the tangent line.

        Newton's step on ``g(sigma) = MAD(r(sigma)) / 0.6745 - sigma`` from
        the fit at ``scale``, with its coefficients linearised, ``coef +
        (sigma - scale) dcoef``: the secant of that ``g`` through ``scale``
        and the plain update (two MADs). That ``g`` is piecewise linear with
        a slope of about a tenth, which changes by a row's share where a
        residual crosses the median or the MAD, so the secant misses its
        root by a small fraction of the gap; the error of the step is the
        coefficients' curvature in the scale (the square of the gap) and
        the Hessian's. None if it gives no positive scale.
        """

        def gap(sigma):
            return self.mad_at(coef + (sigma - scale) * dcoef) - sigma

        ga = gap(scale)
        b = scale + ga
        gb = gap(b)
        if gb == ga or not np.isfinite(gb):
            return None
        c = b - gb * (b - scale) / (gb - ga)
        return c if c > 0 else None


def _memory_tangent(problem, rows):
    """The :class:`ScaleTangent` of the smoothed fits on ``rows`` in memory."""

    def objective_at(loss):
        return problem.objective(
            loss, [(None, problem.fit_intercept)], [0.0], ls_objective=rows
        )

    def mad_at(coef):
        residuals = rows.y - rows.raw_prediction(coef)[:, 0]
        return centred_mad_scale(residuals, rows.sample_weight)

    def scale_derivative(coef, scale):
        # (_ScaleDerivativeLoss's objective's gradient without building one.)
        loss = _ScaleDerivativeLoss(scale)
        terms = loss.loss_gradient(rows.y, rows.raw_prediction(coef))[1][:, 0]
        if not rows.unit_weights:
            terms *= rows.sample_weight
        return rows.design_rmatvec(terms) / rows.sum_weight

    return ScaleTangent(objective_at, mad_at, scale_derivative)


def _lad_fixed_point(fit, exhausted, coef, scale, tol, max_iter, tangent=None):
    """Smoothed LAD fits until ``sigma = MAD(r(sigma)) / 0.6745``.

    Safeguarded secant steps on the scale (:class:`ScaleSecant`; the MAD
    moves little with the bandwidth, so two or three fits settle it), each
    fit warm-started from the previous one and its Hessian, and solved only
    as tightly as the next scale needs (``_LAD_INEXACT_FIT``) until the last.
    The first exact fit steps by the plain update when the inexact fit
    before it is too rough to give the secant's slope (:func:`_rough_pair`).
    With a ``tangent``, Newton's steps (:meth:`ScaleTangent.step`) take
    the secant's place under the same safeguards: from the first scale
    (about 10% off at 1e3 x 20) the gap goes 1e-1, 1e-4, 1e-9 over three
    fits, the last of them one pass from its tangent start (secant steps:
    1e-1, 1e-2, 1e-4, 1e-7 over four fits of three passes).

    Parameters
    ----------
    fit : callable
        ``fit(coef, scale, hessian, origin, tol) -> (result, mad)``: the
        smoothed LAD fit on the rows and its residuals' centred MAD, as
        :func:`_smoothed_lad_fit` (in memory) or the dask fit's
        ``_LadFit.smoothed_fit`` make it.
    exhausted : callable
        ``exhausted() -> bool``: whether the iteration budget is spent.
    coef : ndarray
        The start, in the fit's standardised coordinates.
    scale : float
        The first bandwidth's scale.
    tol : float
        The last fit's tolerance.
    max_iter : int
        At most this many fits.
    tangent : ScaleTangent, optional
        On the fits' rows: each next scale is then Newton's step on the
        fixed point (:meth:`ScaleTangent.step`), each fit starts on the last
        one's tangent, and the fits after the first are solved to ``tol``.

    Returns
    -------
    tuple or None
        ``(coef, scale, hessian, settled)``, or None if the scale collapses
        (:func:`_collapsing`).
    """
    hessian, origin = None, "stale"
    rtol = max(tol, LAD_SCALE_RTOL)
    secant = ScaleSecant(rtol)
    mad, settled, ratios, last_exact, last_tol = scale, False, [], False, 0.0
    fit_tol = max(tol, _LAD_INEXACT_FIT * scale)
    # (scale, coef) of the last fit and of the one before: each fit starts
    # on the line through them (see extrapolated_start; the secant's steps
    # shrink, so the start's gradient is 10-100x smaller than at the last
    # fit's coefficients: 428 -> 382 passes over the Huber and log-cosh
    # LAD-scale fits of a dozen small data sets).
    last = before = moves = None
    for _ in range(max_iter):
        # (Whether the Hessian given to the fit is of one this close.)
        near = moves is not None and abs(scale - last[0]) <= _TANGENT_FAR * scale
        if moves is not None:
            start = coef + (scale - last[0]) * moves
        elif last is None:
            start = coef
        else:
            start = extrapolated_start(coef, last[0], scale, before)
        result, mad = fit(start, scale, hessian, origin, fit_tol)
        coef = result.coef
        last, before = (scale, coef), last
        if result.hessian is not None:
            hessian, origin = result.hessian, "stale"
        if not mad > MIN_RELATIVE_SCALE:
            return None  # more than half the residuals equal
        exact = result.converged and fit_tol == tol
        ratios.append(mad / scale)
        if _collapsing(ratios):
            return None
        # Only exact fits bracket the root (as the MAD secant's rough ones
        # do not): an inexact MAD on the wrong side of its scale kept the
        # root out of the bracket, which then closed 2.6e-5 from it.
        if exact and not last_exact and _rough_pair(secant, scale, last_tol):
            secant.forget()
        # Within _SECANT_NEAR rtol after two exact fits, the secant through
        # them is as close as the tangent, for nothing.
        close = exact and last_exact and abs(mad - scale) <= _SECANT_NEAR * rtol * scale
        last_exact, last_tol = exact, fit_tol
        proposal = moves = None
        settles = exact and abs(mad - scale) <= rtol * scale
        if tangent is not None and not (settles or close):
            newton = tangent.step(result, scale, near)
            if newton is not None:
                proposal, coef, moves, hessian = newton
        next_scale = secant.step(scale, mad, exact, exact, proposal)
        if next_scale is None:
            settled = True
            break
        if proposal is not None:
            # Newton's step on the scale leaves a gap about the square of
            # the last one's, too small for an inexact fit to measure.
            fit_tol = tol
        else:
            fit_tol = _next_fit_tol(fit_tol, tol, ratios, rtol, mad)
        # A secant step to a tiny scale would make the next fit needlessly hard.
        scale = next_scale if next_scale > _LAD_SMALLEST_STEP * mad else mad
        if moves is not None and abs(scale - last[0]) > _TANGENT_FAR * scale:
            # Far from the last fit's bandwidth its Hessian is a rough one:
            # Newton's first step forms the next (as from a subsample's).
            origin = "subsample"
        if exhausted():
            break
    return coef, mad, hessian, settled


def _rough_pair(secant, scale, last_tol):
    """Whether a secant through the last (inexact) fit and this exact one is noise.

    The inexact fit's MAD is off by about its tolerance, and the secant's
    slope by that over the step between the two fits: a slope from a step
    under ``1 / _LAD_INEXACT_FIT`` times that tolerance is dropped for the
    plain update (whose error is the MAD's slope, a few hundredths, times
    this fit's gap). At 1e5 x 1005 one-hot such a secant (a tolerance of
    2.7e-5, a step of 7e-5) sent the next exact fit 1.5e-6 from the fixed
    point and cost one exact fit more; a fit solved to 3e-9 before a step of
    1e-4 gave a slope of -0.37, which the plain update would have missed by
    6e-6.
    """
    if secant.previous is None:
        return False
    step = abs(scale - secant.previous[0])
    return last_tol > _LAD_INEXACT_FIT * step


def _next_fit_tol(fit_tol, tol, ratios, rtol, scale):
    """The tolerance of the next smoothed fit: just tight enough for its use.

    A fit before the last only gives the next scale, so it is solved to
    ``_LAD_INEXACT_FIT`` times the gap it is expected to measure, the last
    gap times the last ratio of gaps (the gradient is in units of the
    scale; and to a tenth of the previous tolerance at least, so that the
    fits tighten). Its MAD is off by up to several times its tolerance:
    solved to a thousandth of the last gap instead, its MAD was off by
    about the next gap, so the first exact fit landed that far from the
    fixed point and one more exact fit followed (sparse 2e4 x 2000: six
    smoothed fits, three exact, now five, two exact).
    The gap ``|MAD / sigma - 1|`` shrinks by a steady factor per fit; when
    that predicts the next gap within ``rtol`` (the last fit), the fit is
    solved to ``tol``, which lets it settle the fixed point.
    """
    gap = abs(1.0 - ratios[-1])
    predicted = gap * min(gap / abs(1.0 - ratios[-2]), 1.0) if len(ratios) > 1 else gap
    if predicted <= rtol:
        return tol
    inexact = min(0.1 * fit_tol, _LAD_INEXACT_FIT * predicted * scale)
    return tol if inexact <= 10.0 * tol else inexact


def _collapsing(ratios):
    """Whether ``MAD / sigma`` stays below one by a steady factor: ``sigma -> 0``.

    When more than half the rows lie on one hyperplane (tied targets, say),
    the smoothed fit's residuals on them are a fixed multiple of the
    bandwidth, so each fit shrinks the scale by about the same factor.
    Approaching a positive fixed point, the gap ``1 - MAD / sigma`` shrinks
    by a large factor each fit instead.
    """
    if len(ratios) < _COLLAPSE_STEPS + 1:
        return False
    gaps = [1.0 - r for r in ratios[-(_COLLAPSE_STEPS + 1) :]]
    return all(g >= _COLLAPSE_MIN_GAP for g in gaps) and all(
        b >= _COLLAPSE_KEEP * a for a, b in zip(gaps[:-1], gaps[1:], strict=True)
    )
