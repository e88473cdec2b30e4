r"""The MAD scale's fixed point on dask data, for the LAD scale's last resort.

When the exact LAD fit of ``scale="lad"`` interpolates every row of
positive weight, its residuals carry no scale and the in-memory fit turns to
:meth:`skrobust._scale_mad.MADScale.solve`: safeguarded secant steps on
``g(sigma) = MAD(r(sigma)) / 0.6745 - sigma`` whose every step is a
fixed-scale fit, first on every 11th row for large problems, with the
boundary ``sigma = 0`` solved directly when the secant heads for it
(:func:`skrobust._scale_mad._collapsed_mad_fit`). This module takes those steps
on a :class:`skrobust._dask_staged.StagedFit`: each fixed-scale fit is its
distributed objective on the same rows (every 11th by global index, or
all), each ``MAD`` (with its RMS fallback) a distributed selection
(:func:`skrobust._dask_median.robust_scale`), the secant, polish and stopping
rules are :mod:`skrobust._scale_mad`'s; the boundary is the weighted median of
``y`` (with a penalty) or the dask exact LAD fit (without), its MAD one
more selection.
"""

import dataclasses

import numpy as np

from . import _solvers
from ._dask_median import RowValues, robust_scale, weighted_median
from ._dask_strided import rows_of
from ._scale import EXACT_FIT_TOL, MProblem, _newton_polish, fixed_scale_tol
from ._scale_mad import (
    _POLISH_GAP,
    _mad_newton_start,
    hessian_at_start,
    mad_fixed_point,
    rough_step,
    rough_tol_applies,
    secant_first_gap,
    subsample_secant_tols,
)
from .losses import FixedScaleLoss, SquaredRho


def _unstandardize(problem, coef):
    """``(w, b)`` of standardised ``coef`` in ``problem``'s coordinates."""
    ls = problem.client_objective(FixedScaleLoss(SquaredRho()), problem.l2)
    ((w, b),) = ls.unstandardize(coef)
    return w, b


class _FittedValues:
    """``|r|`` at ``(w, b)``, 0 where the row is fitted exactly (``EXACT_FIT_TOL``)."""

    def __init__(self, offset, spread, w, b):
        self.values = RowValues(offset, spread, w, b)

    def __call__(self, X_c, y_c):
        values = self.values(X_c, y_c)
        values[values <= EXACT_FIT_TOL] = 0.0
        return values


def collapsed_mad_fit(problem, coef):
    """:func:`skrobust._scale_mad._collapsed_mad_fit`: ``(w, b)`` at ``sigma = 0``.

    Or None when the MAD there stays positive (``sigma = 0`` is no fixed
    point).
    """
    from ._dask_joint_boundary import exact_lad_fit

    data, stats, hint = problem.data, problem.stats, problem.start_rows.hint
    offset, spread = problem.offset, problem.spread
    w, b = _unstandardize(problem, coef)
    if problem.l2 == 0:
        w, b = exact_lad_fit(data, (offset, spread), problem.fit_intercept, w, b)
    else:
        w = np.zeros_like(w)
        b = 0.0
        if problem.fit_intercept:
            values = RowValues(offset, spread, absolute=False)
            b = weighted_median(data, values, stats[0], stats[1], hint(values))
    values = _FittedValues(offset, spread, w, b)
    if weighted_median(data, values, stats[0], stats[1], hint(values)) > 0:
        return None
    return w, b


def _residual_scale(problem, rows, objective, coef):
    """``initial_scale`` of the residuals at ``coef`` of ``rows`` (data, weight).

    The median comes from the fit's last pass on all rows when it bracketed
    it there (``problem.residual_medians``, where the problem keeps them), else
    from a selection.
    """
    ((w, b),) = objective.unstandardize(coef)
    values = RowValues(problem.offset, problem.spread, w, b)
    stats = (rows[1], problem.stats[1])
    medians = problem.residual_medians
    median = None
    if medians is not None and rows[0] is problem.data:
        median = medians.median(w, b)
    return robust_scale(rows[0], stats, problem.start_rows, values, median=median)


def _secant(
    problem, step, coef, scale, hessian, origin="stale", collapse=False, first_gap=None
):
    """:meth:`skrobust._scale_mad.MADScale._secant` on every ``step``-th row.

    Returns ``(coef, scale, hessian, converged, collapsing)``. As in memory,
    a subsample's secant (``step > 1``) settles to the looser tolerances of
    :func:`~skrobust._scale_mad.subsample_secant_tols`.
    """
    options = problem.options
    secant_tol, base_tol = subsample_secant_tols(options.tol, step > 1)
    data, weight = rows_of(problem.data, step, problem.stats[1])
    rows = (data, problem.stats[0] if step <= 1 else weight)

    def fit(scale, start, hessian, origin, rough_tol=None):
        objective = problem.objective(
            FixedScaleLoss(problem.rho, scale), problem.l2, step
        )
        # As in memory: chord steps update their Hessian by BFGS steps (a
        # strided objective takes them from its template, as scale="lad").
        getattr(objective, "template", objective).secant_updates = True
        budget = max(options.max_iter - problem.used, 0)
        # As in memory: the tolerance relative to the gradient's terms, or
        # the rough one of a fit that only steers the secant.
        tol = fixed_scale_tol(problem.rho, scale, base_tol)
        exact = not rough_tol_applies(rough_tol, tol)
        result = None
        if not exact and budget > 0:
            result = rough_step(
                objective, start, hessian, rough_tol, options.solver, origin
            )
        if result is None:
            if exact and origin == "subsample" and step <= 1:
                # As in memory: the first exact fit on all rows forms its
                # Hessian at its start (hessian_at_start).
                formed = hessian_at_start(objective, start, options.solver)
                if formed is not None:
                    hessian, origin = formed, "current"
            result = _solvers.solve(
                objective,
                start,
                dataclasses.replace(
                    options.with_max_iter(budget), tol=tol if exact else rough_tol
                ),
                multilevel=False,
                hessian=hessian,
                hessian_origin=origin,
            )
        problem.used += result.n_iter
        if not exact and result.gradient is not None:
            # (A rough fit that met the exact tolerance is an exact one.)
            exact = float(np.max(np.abs(result.gradient), initial=0.0)) <= tol
        coef = result.coef
        mad = _residual_scale(problem, rows, objective, coef)
        if (
            exact
            and result.converged
            and step <= 1
            and abs(mad - scale) <= _POLISH_GAP * scale
        ):
            latest = hessian if result.hessian is None else result.hessian
            coef = _newton_polish(problem, objective, coef, latest, result.gradient)
            mad = _residual_scale(problem, rows, objective, coef)
        return result, coef, mad, exact

    def exhausted():
        return problem.used >= options.max_iter

    start = (coef, scale, hessian, origin)
    return mad_fixed_point(
        fit,
        exhausted,
        start,
        secant_tol,
        options.max_iter,
        collapse,
        first_gap,
    )


def _subsample_step(problem):
    """``SUBSAMPLE_STEP`` where the solvers subsample (and its rows have weight)."""
    n = problem.data.n_samples
    n_coef = problem.data.n_features + problem.fit_intercept
    if n < _solvers.SUBSAMPLE_MIN_ROWS:
        return None
    if n < _solvers.SUBSAMPLE_MIN_ROWS_PER_COEF * n_coef:
        return None
    step = _solvers.SUBSAMPLE_STEP
    return step if problem.rows_weight(step) > 0 else None


def mad_scale_fit(problem, coef, scale):
    """:meth:`~skrobust._scale_mad.MADScale.solve`: ``(w, b, scale, converged, msg)``.

    ``problem`` is a :class:`skrobust._dask_staged.StagedFit`; ``coef`` and
    ``scale`` the start, in its standardised units.
    """
    if not scale > 0:
        boundary = collapsed_mad_fit(problem, coef)
        if boundary is not None:
            return (*boundary, 0.0, True, "")
        values = RowValues(
            problem.offset, problem.spread, *_unstandardize(problem, coef)
        )
        scale = robust_scale(problem.data, problem.stats, problem.start_rows, values)
    hessian, origin, check_collapse = None, "stale", True
    step = None
    if problem.start_rows.y.size == problem.data.n_samples:
        # As in memory: Newton's method on fit and scale together starts the
        # secant where the start rows are all the rows (small data), on the
        # client's copy of them; no subsample's secant then.
        client = MProblem(
            problem.client_objective(FixedScaleLoss(SquaredRho()), problem.l2),
            problem.rho,
            problem.l2,
            problem.fit_intercept,
            problem.options,
            used=[problem.used],
        )
        newton = _mad_newton_start(client, client.ls_objective, coef, scale)
        problem.used = client.used[0]
        if newton is not None:
            coef, scale, hessian, mad = newton
            if mad is not None:
                # As in memory: final where it settled past the polish's test.
                w, b = _unstandardize(problem, coef)
                return w, b, mad, True, ""
    if hessian is None:
        step = _subsample_step(problem)
    if step is not None:
        coef, scale, hessian, _, collapsing = _secant(
            problem, step, coef, scale, None, collapse=True
        )
        origin = "subsample"
        if collapsing:
            boundary = collapsed_mad_fit(problem, coef)
            if boundary is not None:
                return (*boundary, 0.0, True, "")
            check_collapse = False
    # As in memory: the subsample's fixed point is off by its sampling error;
    # L-BFGS solves the fits before the last roughly in any case.
    first_gap = None
    if hessian is None or step is not None:
        sub_rows = None
        if step is not None:
            sub_rows = len(range(0, problem.data.n_samples, step))
        first_gap = secant_first_gap(problem.options.solver, sub_rows)
    coef, scale, _, converged, collapsing = _secant(
        problem, 1, coef, scale, hessian, origin, check_collapse, first_gap
    )
    if collapsing:
        boundary = collapsed_mad_fit(problem, coef)
        if boundary is not None:
            return (*boundary, 0.0, True, "")
        coef, scale, _, converged, _ = _secant(
            problem, 1, coef, scale, hessian, "stale", False
        )
    w, b = _unstandardize(problem, coef)
    message = "" if converged else "the MAD scale fixed point did not settle"
    return w, b, scale, converged, message
