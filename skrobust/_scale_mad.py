"""The MAD scale: the fixed point ``sigma = median(|r|) / 0.6745``.

``coef`` minimises ``sum_i s_i sigma^2 rho(r_i / sigma) + alpha ||w||^2`` at
that scale: what iteratively reweighted least squares converges to in R's
``MASS::rlm`` and statsmodels' ``RLM`` (default ``scale_est="mad"``). One
option of ``scale=`` (see :mod:`skrobust._scale`): :class:`MADScale`, its
secant loop :func:`mad_fixed_point` (shared with the Dask fit,
:mod:`skrobust._dask_mad_scale`), the rough fits that steer it
(:func:`rough_step`), its start by Newton's method on small data
(:func:`_mad_newton_start`) and its boundary ``sigma = 0``
(:func:`_collapsed_mad_fit`).
"""

import numpy as np
from sklearn.utils.extmath import safe_sparse_dot

from . import _linalg, _preconditioned_newton, _solver_result, _solvers
from ._base import least_squares_start_step, mad_scale, weighted_median
from ._scale import (
    _POLISHED_GRADIENT,
    EXACT_FIT_TOL,
    MIN_RELATIVE_SCALE,
    ScaleFit,
    ScaleSecant,
    _newton_polish,
    _positive_scale,
    fixed_scale_tol,
    initial_scale,
)
from ._scale_newton import scale_fixed_point_newton
from .losses import FixedScaleLoss

# scale="mad": fixed-scale fits whose residuals' MAD is within this relative
# distance of their scale (those that may settle the fixed point) take one
# Newton step past the gradient test (skrobust._scale._newton_polish); earlier
# ones only steer the secant, and their 2 passes over X would be wasted there.
# (At 1e-4, three fits polished near a fixed point the secant reaches in gaps
# of about 1e-4, 1e-7, 1e-12; at 1e-6 the first is spared: full passes of a
# log-cosh MAD fit at 1e5 x 20, 14 -> 11, Huber's 11 -> 10.)
_POLISH_GAP = 1e-6
# The MAD fixed point is settled to this absolute change of the scale too
# (standardised units, y's robust spread 1): the residuals' MAD is known to
# their rounding, a few ulps of y, only. A fixed point far below the spread
# of y (three rows of weight 1e10 among rows of 1e-10, a scale of 1.6e-10)
# has MADs 1.3e-15 apart whatever the fit, and the secant's relative tol
# of 1e-10 spent max_iter on them.
_MAD_RESOLUTION = 64 * np.finfo(float).eps
# The MAD secant starts each fit on the line through the last two fits'
# coefficients when the scale's step is at most this many times the last.
_EXTRAPOLATION_MAX_RATIO = 4.0
# scale="mad" on all rows after a subsample's fixed point: a fit whose only
# use is the next secant step is solved to this multiple of the change of
# the scale it predicts (the first: the subsample's sampling error, 1 /
# sqrt(its rows) of the scale; then the last change times the last ratio of
# changes), in standardised gradient units, where a gradient g moves the
# residuals' MAD by a few g; and to a tenth of the previous fit's tolerance
# at least, so that the fits tighten; from within 10x of the exact
# tolerance, exactly. Its MAD is then off by about 1% of the step it steers,
# and its scale does not enter the secant's bracket (see mad_fixed_point).
# Measured, log-cosh at 1e5 x 20: the first two fits on all rows took 3
# Newton steps each to the exact tolerance, 1 each to this one.
# A rough fit's one unchecked step (rough_step) on a subsample's Hessian
# needs this many of its rows per coefficient: the step errs by about the
# Hessian's sampling error, sqrt(coefficients / rows), 5% at 433 rows per
# coefficient (1e5 x 20); at 45 (1e5 x 200, 15%) a rough MAD was off by a
# third of the scale's step, and Huber's secant took one exact fit more.
_ROUGH_MIN_ROWS_PER_COEF = 200
# The message of a rough fit that is one unchecked step (rough_step).
ROUGH_STEP = "rough step"
_MAD_INEXACT_FIT = 1e-3
# scale="mad": a subsample's fixed point only starts the secant on all
# rows, off by its sampling error (1 / sqrt(rows), 1% at 9091 rows): its
# secant settles to this relative change, a tenth of that error, and
# its fits to _SUBSAMPLE_FIT_TOL (through fixed_scale_tol), where a
# gradient g moves the MAD by a few g: not to the fit's tol. (At 1e-4 a
# fit more on the subsample settled what the first fit on all rows moves
# by 0.4%: passes over the 9091-row subsample of 1e5 x 20, Huber and
# log-cosh at four seeds, 106 -> 100, the passes over all rows the same;
# on bench_shapes' dense 1e5 x 20, log-cosh's 11 -> 9, 9.4-10.1 -> 7.4-7.9
# ms, Huber's unchanged.)
SUBSAMPLE_SCALE_RTOL = 1e-3
_SUBSAMPLE_FIT_TOL = 1e-6
# scale="mad" by L-BFGS (many coefficients) without a subsample's fixed
# point: the fits before the last are solved roughly too, as if the first
# change of the scale were this fraction of it. Each exact L-BFGS fit runs
# to the rounding of the objective and on by truncated Newton steps (22
# passes over a 2e4 x 1000 design), a rough one stops after 6 to 8; the
# secant's first changes there were 63% and 17%, its later ones below 1%.
_LBFGS_FIRST_GAP = 0.1


def secant_first_gap(solver, sub_rows=None):
    """``first_gap`` of the MAD secant on all rows (see :func:`mad_fixed_point`).

    After a subsample's fixed point on ``sub_rows`` rows, its sampling error
    ``1 / sqrt(sub_rows)``; without one, ``_LBFGS_FIRST_GAP`` for L-BFGS,
    whose exact fits cost several times a rough one, and None (every fit
    exact) for Newton's method, whose exact fits converge quadratically
    once near. Written once for memory and Dask.
    """
    if sub_rows is not None:
        return 1.0 / np.sqrt(sub_rows)
    return _LBFGS_FIRST_GAP if solver == "lbfgs" else None


def _mirrored_on_dask(rows):
    """Whether the dask fit holds ``rows`` on its client: its start rows are all.

    The Newton start of the MAD scale runs where the dask fit can take the
    same steps on the same rows (see :func:`_mad_newton_start`): on data
    small enough that the least-squares start takes every row (fewer than
    twice ``LEAST_SQUARES_START_ROWS``). Larger data keep the secants, on a
    subsample first.
    """
    return least_squares_start_step(rows.n_samples) == 1


def _mad_newton_start(problem, rows, coef, scale):
    """``(coef, scale, hessian, mad)`` of the MAD fixed point on ``rows``, or None.

    By :func:`~skrobust._scale_newton.scale_fixed_point_newton`, to the
    secant's tolerances; None where that does not settle or does not
    apply, and the secant starts from ``(coef, scale)``; where it settles,
    the subsample's secant is skipped too. ``mad``, the normalised MAD of
    the point's residuals, where the point is final (its gradient at
    rounding, or confirmed one Newton step past the tests, as the secant's
    polish would take it); else None, and the secant's first fit confirms
    it. Measured (CPU time, one BLAS thread), passes over all rows and
    the fit's time: at 1000 x 20, 26 -> 8 and 6.3 -> 4.9 ms (Huber), 26 ->
    11 and 6.8 -> 5.6 ms (log-cosh: five fixed-scale fits, each with its
    set-up, against four to six Newton iterations and one confirming fit);
    at 1e4 x 20, 43 (two secants) -> 9 and 16.3 -> 15.3 ms (Huber), 19.3
    -> 15.4 ms (log-cosh). Without the confirming fit where the point is
    final (over scikit-learn's ``HuberRegressor`` at 1000 x 20): Huber
    1.06-1.08 -> 0.95-0.96, log-cosh 1.22-1.24 -> 1.01-1.06. Also the
    start (or the answer) of the dask fit on data this small
    (:mod:`skrobust._dask_mad_scale`), on its client copy of the rows.
    """
    if not _mirrored_on_dask(rows):
        return None
    tol = problem.options.tol
    found = scale_fixed_point_newton(
        problem,
        rows,
        problem.rho,
        problem.l2,
        coef,
        scale,
        tol,
        lambda sigma: fixed_scale_tol(problem.rho, sigma, tol),
        _POLISHED_GRADIENT * tol,
    )
    if found is None:
        return None
    coef, scale, hessian, _, mad = found
    if mad is not None and not mad > MIN_RELATIVE_SCALE:
        mad = None  # (the secant's residual scale is their RMS there)
    return coef, scale, hessian, mad


class MADScale:
    """The fixed point ``sigma = MAD(r(sigma)) / 0.6745``, ``r`` from an exact fit."""

    name = "mad"
    l2_in_y_units = False

    def check(self, rho):
        """Every loss has a fixed-scale objective."""

    def report(self, scale, y_scale):
        return scale * y_scale

    def solve(self, problem, coef, scale):
        """Safeguarded secant steps on the scale equation.

        Each fixed-scale fit is exact and warm-started from the previous one.
        The scale equation ``g(sigma) = MAD(r(sigma)) / 0.6745 - sigma = 0``
        is one-dimensional and continuous, so safeguarded secant steps
        settle it in a few fits where the fixed-point iteration of IRLS
        needs dozens, and a bracket keeps them from bouncing where ``g`` is
        flat. Small problems start it from the fixed point that Newton's
        method on fit and scale together finds (:func:`_mad_newton_start`);
        large ones first solve it on a strided subsample. The
        reported scale is the MAD of the final residuals, as statsmodels
        reports it.

        When the secant heads for ``sigma = 0``
        (:attr:`~skrobust._scale.ScaleSecant.collapsing`: more than half the
        weight fitted exactly in the limit, as with fair's targets, 68% of them
        0), the boundary is solved directly (:func:`_collapsed_mad_fit`; the
        joint scale's :meth:`~skrobust._scale.JointScale._collapsed_scale_fit`
        likewise) rather than approached by fits whose tiny scale overflows
        their curvature.
        """
        if not scale > 0:
            # A warm start from sigma = 0: still the fixed point, or a start.
            boundary = _collapsed_mad_fit(problem, coef)
            if boundary is not None:
                return boundary
            scale = _positive_scale(problem, coef, scale)
        coef, scale, converged, boundary = self._fixed_point(
            problem, problem.ls_objective, coef, scale
        )
        if boundary is not None:
            return boundary
        ((w, b),) = problem.ls_objective.unstandardize(coef)
        message = "" if converged else "the MAD scale fixed point did not settle"
        return ScaleFit(w, b, scale, converged, message)

    def _fixed_point(self, problem, ls_objective, coef, scale):
        """``(coef, scale, converged, boundary)``: the secant, subsample first.

        ``boundary`` is the :class:`~skrobust._scale.ScaleFit` at ``sigma =
        0`` when the scale collapses there (:func:`_collapsed_mad_fit`), else None.
        """
        # Each fit starts Newton's method from the previous fit's Hessian
        # (the first from the subsample's): the scale changes little.
        hessian, origin = None, "stale"
        check_collapse = True
        # On small data Newton's method on fit and scale together finds the
        # fixed point: final where it settles past the polish's test (mad),
        # else the secant's start, which its first fit confirms; no
        # subsample's secant is needed then.
        newton = _mad_newton_start(problem, ls_objective, coef, scale)
        sub = None
        if newton is not None:
            coef, scale, hessian, mad = newton
            if mad is not None:
                # Settled past the polish's test: the secant's confirming
                # fit would take it as it is.
                return coef, mad, True, None
        else:
            sub = _solvers.subsample_for_start(ls_objective)
        if sub is not None:
            coef, scale, hessian, _, collapsing = self._secant(
                problem, sub, coef, scale, None, collapse=True, subsample=True
            )
            origin = "subsample"
            if collapsing:
                boundary = _collapsed_mad_fit(problem, coef)
                if boundary is not None:
                    return coef, 0.0, True, boundary
                check_collapse = False
        # The subsample's fixed point is off by its sampling error; L-BFGS
        # solves the fits before the last roughly in any case.
        first_gap = None
        if newton is None:
            sub_rows = None if sub is None else sub.n_samples
            first_gap = secant_first_gap(problem.options.solver, sub_rows)
        coef, scale, _, converged, collapsing = self._secant(
            problem,
            ls_objective,
            coef,
            scale,
            hessian,
            origin,
            check_collapse,
            first_gap,
        )
        if collapsing:
            boundary = _collapsed_mad_fit(problem, coef)
            if boundary is not None:
                return coef, 0.0, True, boundary
            coef, scale, _, converged, _ = self._secant(
                problem, ls_objective, coef, scale, hessian, "stale", False
            )
        return coef, scale, converged, None

    @staticmethod
    def _secant(
        problem,
        rows,
        coef,
        scale,
        hessian,
        origin="stale",
        collapse=False,
        first_gap=None,
        subsample=False,
    ):
        """Fixed-scale fits on the rows of ``rows`` until the scale settles.

        Returns ``(coef, scale, hessian, converged, collapsing)``; with
        ``collapse``, it stops early (``collapsing``) when the scale
        heads for zero (:attr:`~skrobust._scale.ScaleSecant.collapsing`),
        before the fits'
        scale reaches the tiny values where their curvature overflows.
        ``first_gap``: see :func:`mad_fixed_point`. With ``subsample``
        (``rows`` only start the secant on all rows) the secant settles to
        ``SUBSAMPLE_SCALE_RTOL`` and the fits to ``_SUBSAMPLE_FIT_TOL``
        (:func:`subsample_secant_tols`).
        """
        tol, base_tol = subsample_secant_tols(problem.options.tol, subsample)
        # (scale, coef, predictions) of the last two fits: see known_prediction.
        seen = []

        def fit(scale, start, hessian, origin, rough_tol=None):
            objective = problem.objective(
                FixedScaleLoss(problem.rho, scale),
                [(None, problem.fit_intercept)],
                [problem.l2],
                ls_objective=rows,
            )
            known = known_prediction(seen, scale, start)
            if known is not None:
                objective.known_prediction = (start, known)
            # The MAD of the solution's residuals needs its predictions,
            # which the solver's last pass computed.
            objective.remember_prediction = True
            # Newton's chord steps on the previous fit's Hessian (another
            # scale) update it by BFGS to the gradients they see
            # (skrobust._linalg.secant_update), as the heteroscedastic and
            # scale="lad" fits do: over four seeds of contaminated 1e5 x 20
            # (Huber and log-cosh), passes over the subsample 100 -> 93.
            objective.secant_updates = True
            # The tolerance relative to the gradient's terms at this scale
            # (fixed_scale_tol): a fixed point far below the spread of y (a
            # few heavy rows fitted almost exactly) has a gradient that
            # small, and an absolute tol let its start pass.
            fit_tol = fixed_scale_tol(problem.rho, scale, base_tol)
            exact = not rough_tol_applies(rough_tol, fit_tol)
            result = None
            if not exact and problem.budget > 0:
                result = rough_step(
                    objective,
                    start,
                    hessian,
                    rough_tol,
                    problem.options.solver,
                    origin,
                )
            if result is not None:
                problem.used[0] += result.n_iter
            else:
                if exact and origin == "subsample" and rows is problem.ls_objective:
                    # (The first exact fit on all rows: see hessian_at_start.)
                    formed = hessian_at_start(objective, start, problem.options.solver)
                    if formed is not None:
                        hessian, origin = formed, "current"
                result = problem.minimize(
                    objective,
                    start,
                    multilevel=False,
                    hessian=hessian,
                    hessian_origin=origin,
                    tol=fit_tol if exact else rough_tol,
                )
            if not exact and result.gradient is not None:
                # (A rough fit that met the exact tolerance is an exact one.)
                gnorm = float(np.abs(result.gradient).max(initial=0.0))
                exact = gnorm <= fit_tol
            coef = result.coef
            raw = objective.raw_prediction(coef)
            mad = initial_scale(rows.y - raw[:, 0], rows.sample_weight)
            if (
                exact
                and result.converged
                and rows is problem.ls_objective
                and abs(mad - scale) <= _POLISH_GAP * scale
            ):
                # Near the fixed point, one Newton step past the gradient test
                # settles the coefficients too (see
                # skrobust._scale._newton_polish): the MAD of their residuals
                # is then that of the fit, not of its tolerance. (Not on a
                # subsample, which only gives a start.)
                latest = hessian if result.hessian is None else result.hessian
                coef = _newton_polish(problem, objective, coef, latest, result.gradient)
                raw = objective.raw_prediction(coef)
                mad = initial_scale(rows.y - raw[:, 0], rows.sample_weight)
            seen[:] = [(scale, coef, raw)] + seen[:1]
            return result, coef, mad, exact

        def exhausted():
            return problem.budget == 0

        return mad_fixed_point(
            fit,
            exhausted,
            (coef, scale, hessian, origin),
            tol,
            problem.options.max_iter,
            collapse,
            first_gap,
        )


def known_prediction(seen, scale, start):
    """The linear predictors at ``start`` from the last fits' (``seen``), or None.

    ``seen`` holds ``(scale, coef, eta)`` of the last two fits, newest
    first. The secant starts each fit at the last fit's ``coef`` or on the
    line through the last two (:func:`extrapolated_start`), where the
    predictors are that combination of theirs (they are linear in
    ``coef``): the fit's first pass then reads them instead of forming
    ``X @ w`` (a product with ``X`` per fit, a quarter of a log-cosh
    pass at 1e5 x 20). None where ``start`` is neither.
    """
    if not seen:
        return None
    last_scale, last_coef, last_eta = seen[0]
    if np.array_equal(start, last_coef):
        return last_eta
    if len(seen) < 2:
        return None
    before_scale, before_coef, before_eta = seen[1]
    line = extrapolated_start(last_coef, last_scale, scale, (before_scale, before_coef))
    if not np.array_equal(start, line):
        return None
    ratio = (scale - last_scale) / (last_scale - before_scale)
    return last_eta + ratio * (last_eta - before_eta)


def hessian_at_start(objective, start, solver):
    """The Hessian of ``objective`` at ``start``, formed for Newton's steps on it.

    For a solve on all rows that would start on a subsample's Hessian: its
    first pass then forms the Hessian at the start, and the solve's own
    first pass (value and gradient at ``start``) is that pass's
    (``reuse_hessian_pass``). On a subsample's Hessian, off by its
    sampling error, the first step only brings the point near enough to
    form the Hessian there, a pass later: g, H, g where H, g do. Measured
    over the passes on all rows of four seeds of contaminated 40 000 x 5
    (MAD scale, Huber and log-cosh), 44 and 40 -> 40 and 38. None (the
    subsample's Hessian is used) for solvers other than Newton's and where
    Newton's directions come from Hessian products.
    """
    if solver != "newton" or _preconditioned_newton.uses_products(objective):
        return None
    objective.reuse_hessian_pass = True
    return objective.loss_gradient_hessian(start)[2]


def mad_fixed_point(
    fit, exhausted, start, tol, max_iter, collapse=False, first_gap=None
):
    """Fixed-scale fits until ``sigma = MAD(r(sigma)) / 0.6745``, by secant steps.

    The loop of the MAD scale, in memory (:meth:`MADScale._secant`) and on Dask
    (``skrobust._dask_mad_scale``): safeguarded secant steps on the scale
    (:class:`~skrobust._scale.ScaleSecant`), each fit started from the line
    through the last two (:func:`extrapolated_start`) and from the latest
    Hessian. Given ``first_gap``, the fits until the last are solved only as
    tightly as the next secant step needs (``_MAD_INEXACT_FIT``,
    :func:`_next_rough_tol`): their one use is the next scale, and each Newton
    step to the exact tolerance costs a pass over all rows. A rough fit's scale
    does not enter the secant's bracket, and the fixed point settles on exact
    fits only, so the answer is the exact fits' fixed point. The first exact
    fit after rough ones takes the plain update ``sigma = MAD``, started from
    its own coefficients, where the last was an unchecked rough step on a
    subsample's Hessian (:func:`rough_step`): a secant or a line through it
    carries that step's error (its MAD off by far more than the MAD moves with the scale
    there; log-cosh on dense 1e5 x 20: a gap of 5e-6 became -3e-6 by the
    secant, 2e-8 by the plain update, and one fit on all rows was saved).

    Parameters
    ----------
    fit : callable
        ``fit(scale, coef, hessian, origin, rough_tol) -> (result, coef,
        mad, exact)``: the fixed-scale fit at ``scale`` from ``coef`` (a
        :class:`~skrobust._solver_result.SolverResult`), its coefficients (after a
        polish, if any), their residuals' scale and whether it was solved
        to the exact tolerance: it is unless ``rough_tol`` (a gradient
        tolerance, or None) exceeds 10 times that
        (:func:`rough_tol_applies`).
    exhausted : callable
        ``exhausted() -> bool``: whether the iteration budget is spent.
    start : tuple
        ``(coef, scale, hessian, origin)`` of the first fit.
    tol : float
        The secant's relative tolerance on the scale.
    max_iter : int
        At most this many fits.
    collapse : bool, default=False
        Stop early when the scale heads for zero
        (:attr:`~skrobust._scale.ScaleSecant.collapsing`).
    first_gap : float, default=None
        The expected first change of the scale, relative to it: the
        sampling error of the subsample whose fixed point starts a secant
        on all rows. Then the fits before the last are solved roughly (a
        subsample's fits are cheap, and an unknown start may be far off:
        None, every fit exact).

    Returns
    -------
    tuple
        ``(coef, scale, hessian, converged, collapsing)``.
    """
    coef, scale, hessian, origin = start
    secant = ScaleSecant(tol, _MAD_RESOLUTION)
    mad, converged = scale, False
    start, last = coef, None  # last: (scale, coef) of the fit before
    rough_tol = None
    if first_gap is not None:
        rough_tol = _MAD_INEXACT_FIT * first_gap * scale
    gaps = []
    # Whether the fit before was an unchecked rough step on a subsample's
    # Hessian (see the first exact fit below).
    unchecked = False
    for _ in range(max_iter):
        result, coef, mad, exact = fit(scale, start, hessian, origin, rough_tol)
        sampled = origin == "subsample"
        if result.hessian is not None:
            hessian, origin = result.hessian, "stale"
        after_rough = exact and unchecked
        if after_rough:
            # The first exact fit after an unchecked rough step on a
            # subsample's Hessian takes the plain update: a secant through
            # that step's MAD (off by the Hessian's sampling error times the
            # step) overshoots where the MAD hardly moves with the scale.
            # (After a rough fit solved to its tolerance, or a step on a
            # Hessian of all rows, the secant: on the one-hot 1e5 x 20
            # design, L-BFGS's fits, and on dense 1e5 x 200, the plain update
            # took one fit more.)
            secant.forget()
        unchecked = not exact and sampled and result.message == ROUGH_STEP
        next_scale = secant.step(scale, mad, result.converged and exact, exact)
        if next_scale is None:
            converged = True
            break
        if collapse and secant.collapsing:
            return coef, mad, hessian, False, True
        gaps.append(abs(mad - scale))
        rough_tol = None if exact else _next_rough_tol(rough_tol, gaps)
        start = extrapolated_start(
            coef, scale, next_scale, None if after_rough else last
        )
        last = (scale, coef)
        scale = next_scale
        if exhausted():
            break
    return coef, mad, hessian, converged, False


def subsample_secant_tols(tol, subsample):
    """``(secant_tol, fit_tol)`` of a MAD secant: ``(tol, tol)`` on all rows.

    On a subsample, whose fixed point only starts the secant on all rows,
    ``SUBSAMPLE_SCALE_RTOL`` and ``_SUBSAMPLE_FIT_TOL`` (at least ``tol``).
    Written once for memory and Dask.
    """
    if not subsample:
        return tol, tol
    return max(tol, SUBSAMPLE_SCALE_RTOL), max(tol, _SUBSAMPLE_FIT_TOL)


def rough_step(objective, start, hessian, rough_tol, solver, origin="stale"):
    """A rough MAD fit: one Newton step on ``hessian`` from ``start``, or None.

    A rough fit only gives the next secant step its MAD, to about 1% of
    the step (``_MAD_INEXACT_FIT``). From ``start`` (on the line through
    the last fits, or the last fit) at the new scale, one step on the
    latest Hessian (the subsample's, or a fit's at a nearby scale) lands
    that close: its residuals' MAD then costs a product with ``X``, where a
    solve to ``rough_tol`` would check the step with a pass of the loss
    and its gradient. Returns a :class:`~skrobust._solver_result.SolverResult`
    with ``n_iter`` 0 (``start`` meets ``rough_tol``; its ``gradient`` is
    then the one at ``start``) or 1 (no gradient: the step is not checked),
    and no Hessian; None where the step does not apply (no Hessian, another
    solver, conjugate-gradient directions, a Hessian not clearly positive
    definite, a non-finite objective, or a subsample's Hessian (``origin``)
    of fewer than ``_ROUGH_MIN_ROWS_PER_COEF`` rows per coefficient): the
    fit is then a solve.
    """
    if (
        solver != "newton"
        or hessian is None
        or _preconditioned_newton.uses_products(objective)
    ):
        return None
    if origin == "subsample" and (
        objective.n_samples / _solvers.SUBSAMPLE_STEP
        < _ROUGH_MIN_ROWS_PER_COEF * objective.n_coef
    ):
        return None
    value, grad = objective.loss_gradient(start)
    if not np.isfinite(value):
        return None
    if float(np.abs(grad).max(initial=0.0)) <= rough_tol:
        return _solver_result.SolverResult(start, 0, True, "rough start", gradient=grad)
    factor = _linalg.CholeskyFactor.of(np.asarray(hessian))
    if factor is None:
        return None
    coef = start + factor.solve(-grad)
    return _solver_result.SolverResult(coef, 1, True, ROUGH_STEP)


def rough_tol_applies(rough_tol, tol):
    """Whether a rough fit's tolerance ``rough_tol`` is worth more than ``tol``.

    Within 10 times the exact tolerance ``tol`` a rough fit would save no
    Newton step (they converge quadratically), and its MAD would keep the
    secant from settling: the fit is then exact.
    """
    return rough_tol is not None and rough_tol > 10.0 * tol


def _next_rough_tol(rough_tol, gaps):
    """The next rough MAD fit's gradient tolerance (see ``_MAD_INEXACT_FIT``).

    ``gaps`` are the changes ``|MAD - sigma|`` of the fits so far; the next
    is predicted as the last times the last ratio (at most 1). None (exact)
    once a fit was exact: the secant is then within its last steps.
    """
    if rough_tol is None:
        return None
    predicted = gaps[-1] * min(gaps[-1] / gaps[-2], 1.0) if len(gaps) > 1 else gaps[-1]
    return min(0.1 * rough_tol, _MAD_INEXACT_FIT * predicted)


def extrapolated_start(coef, scale, next_scale, last):
    """The start of the fit at ``next_scale`` after the fit ``coef`` at ``scale``.

    The coefficients move smoothly with the scale: the line through the
    last two fits (``last = (scale, coef)`` of the one before, or None)
    starts the next one closer than the last fit alone (gradients of 1e-11
    rather than 1e-7 where the secant's steps are 1e-8 of the scale), unless
    it reaches more than ``_EXTRAPOLATION_MAX_RATIO`` times their distance.
    Written once for the MAD fixed point in memory and on Dask.
    """
    if last is None or last[0] == scale:
        return coef
    ratio = (next_scale - scale) / (scale - last[0])
    if not abs(ratio) <= _EXTRAPOLATION_MAX_RATIO:
        return coef
    return coef + ratio * (coef - last[1])


def _collapsed_mad_fit(problem, coef):
    """The MAD fixed point at ``sigma = 0``, if the scale collapses there; else None.

    As ``sigma -> 0``, ``sigma^2 rho(r / sigma) -> sigma c |r|`` (``c =
    psi(inf)``), so the fixed-scale fits tend to the least-absolute-deviation
    fit without a penalty (solved exactly by linear programming, as
    :meth:`~skrobust._scale.JointScale._collapsed_scale_fit` does), and to ``w
    = 0`` with the median for intercept with one (the ridge term then
    dominates). Their residuals' MAD tends to that fit's: if more than half the
    weight is fitted exactly it is 0, ``sigma = 0`` is the fixed point, and the
    fit is returned with scale 0; otherwise the MAD stays positive and so does
    the fixed point (None).
    """
    from ._quantile_exact import solve_exact

    ls = problem.ls_objective
    ((w, b),) = ls.unstandardize(coef)
    if problem.l2 == 0:
        w, b, _ = solve_exact(
            ls.X, ls.y, 0.5, ls.sample_weight, 0.0, problem.fit_intercept, w, b
        )
    else:
        w = np.zeros_like(w)
        b = weighted_median(ls.y, ls.sample_weight) if problem.fit_intercept else 0.0
    residuals = ls.y - safe_sparse_dot(ls.X, w) - b
    fitted = np.where(np.abs(residuals) <= EXACT_FIT_TOL, 0.0, residuals)
    if mad_scale(fitted, ls.sample_weight) > 0:
        return None
    return ScaleFit(w, b, 0.0, True)
