r"""M-estimators with ``scale="lad"`` on row-chunked ``dask.array`` data.

In memory (:class:`skrobust._scale_lad.LADScale`) the scale is the fixed point
``sigma = MAD(r - median r) / 0.6745`` of the residuals of the
least-absolute-deviation fit smoothed at bandwidth ``sigma / 2``, settled
on every 8th row for large problems and finished by one smoothed fit on
all rows; the coefficients then minimise the fixed-scale objective at that
``sigma``. The fixed point is settled to a relative ``1e-6`` only, so its
value depends on the path to it: to give the in-memory scale (and so the
in-memory coefficients) to rounding, this module follows the same path
from the same start.

1. **Checks, statistics, start rows**: the statistics pass of
   :func:`skrobust._dask_statistics.data_statistics`; the rows of the in-memory
   least-squares start (every ``n // LEAST_SQUARES_START_ROWS``-th, all for
   small ``n``) are fetched once; the exact distributed median and MAD of
   ``y`` standardise it (:func:`skrobust._dask.standardise_targets`).
2. **The start on the client**: least squares on the start rows (its
   exact-fit shortcut checked on all rows by one pass), the reweighted L1
   start and the MAD of its residuals, by the in-memory functions. When
   the start rows carry no weight, as in memory from all rows
   (:meth:`skrobust._dask_staged.StagedFit.start_from_all_rows`): least
   squares from one pass of normal equations (the in-memory LSQR beyond
   ``ITERATIVE_MIN_COEF`` coefficients), the L1 start on its own strided
   rows of all rows (fetched once) or on all rows
   (:mod:`skrobust._dask_lad_start`), the scale by a distributed selection.
3. **The fixed point on the workers**: each smoothed fit is a
   :class:`~skrobust._dask_strided.StridedObjective` on every 8th row (by
   global index, as in memory) or on all rows, solved by the in-memory
   solver; each centred MAD is two exact distributed medians
   (:func:`skrobust._dask_median.weighted_median`); the secant steps and the
   stopping rules are :mod:`skrobust._scale_lad`'s.
4. **The fixed-scale fit** on all rows from the smoothed fit's
   coefficients, with the Hessian of the 8th-row subsample, then the
   in-memory Newton polish; attributes as for the other scales.

Boundary cases the in-memory fit solves by an exact LAD linear programme on
all rows (at most two rows of positive weight per coefficient, or a fixed
point collapsing to zero: :func:`skrobust._scale_lad.exact_lad_scale_fit`)
take the same steps on dask (:meth:`_LadFit.exact_lad_scale_fit`): the
exact LAD fit is a dask exact quantile fit from the start, the scale is
:func:`skrobust._scale.initial_scale` of its residuals by a distributed
selection (and their RMS by two passes when more than half are zero), and
the fixed-scale fit on all rows is the in-memory multilevel solve (every
8th row first on large problems), then the Newton polish. A LAD fit that
interpolates every row of positive weight (with ``alpha > 0``) hands over
to the MAD scale's fixed point, as in memory
(:mod:`skrobust._dask_mad_scale`).
"""

from functools import partial

import numpy as np

from . import _solvers
from ._base import MAD_NORMAL_CONSTANT
from ._dask_chunks import _chunk_weights
from ._dask_mad_scale import mad_scale_fit
from ._dask_median import RowValues, robust_scale, weighted_median
from ._dask_staged import StagedFit
from ._scale import (
    _FEW_ROWS_PER_COEF,
    EXACT_FIT_TOL,
    LAD_SMALL_SCALE,
    MIN_RELATIVE_SCALE,
    fixed_scale_tol,
)
from ._scale_lad import (
    LAD_BANDWIDTH,
    LAD_SCALE_RTOL,
    LAD_SECANT_UPDATES,
    ScaleTangent,
    _lad_fixed_point,
    all_rows_fit_tol,
    fixed_scale_start,
)
from .losses import FixedScaleLoss, SmoothedPinballRho, SquaredRho


def _positive_rows_kernel(X_c, y_c, w_c):
    return int(np.count_nonzero(_chunk_weights(y_c, w_c) > 0))


def _inexact_rows_kernel(X_c, y_c, w_c, values):
    """How many rows of positive weight ``values`` (``|r|``) does not fit exactly."""
    fitted = values(X_c, y_c)[_chunk_weights(y_c, w_c) > 0]
    return int(np.count_nonzero(fitted > EXACT_FIT_TOL))


class _LadFit(StagedFit):
    """One output's ``scale="lad"`` fit on dask data, in standardised units.

    The in-memory start and objectives of :class:`~skrobust._dask_staged.StagedFit`,
    then :meth:`LADScale.solve` stage by stage (see the module docstring).
    ``used`` counts the iterations of ``n_iter_`` (the fixed-scale fit's);
    ``preliminary`` those of the smoothed LAD fits, which have a budget of
    their own, as in memory.
    """

    # Whether the solvers' small strided levels are fetched to the client
    # (:class:`~skrobust._dask_strided.StridedObjective`).
    fetch_levels = False

    def centred_mad(self, objective, coef):
        """:func:`skrobust._scale_lad.centred_mad_scale` of ``objective``'s rows."""
        ((w, b),) = objective.unstandardize(coef)
        rows, sum_weight, top = objective.data, objective.sum_weight, self.stats[1]
        hint = self.start_rows.hint
        values = RowValues(self.offset, self.spread, w, b, absolute=False)
        centre = weighted_median(rows, values, sum_weight, top, hint(values))
        values = RowValues(self.offset, self.spread, w, b + centre)
        mad = weighted_median(rows, values, sum_weight, top, hint(values))
        return mad / MAD_NORMAL_CONSTANT

    def smoothed_fit(self, step, coef, scale, hessian, origin, tol):
        """:func:`skrobust._scale_lad._smoothed_lad_fit` on every ``step``-th row."""
        loss = FixedScaleLoss(SmoothedPinballRho(0.5, LAD_BANDWIDTH), scale)
        objective = self.objective(loss, 0.0, step)
        # Chord steps with secant updates, as in memory (a StridedObjective
        # takes its template's setting).
        objective.template.secant_updates = LAD_SECANT_UPDATES
        # Convex (a smoothed absolute loss), as in memory: Newton's own
        # damped loop, not scipy's trust region.
        options = _solvers.SolverOptions(
            solver=self.options.solver,
            max_iter=max(self.options.max_iter - self.preliminary, 0),
            tol=tol,
            convex=True,
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
        self.preliminary += result.n_iter
        return result, self.centred_mad(objective, result.coef)

    def tangent(self, step):
        """The :class:`~skrobust._scale_lad.ScaleTangent` on every ``step``-th row."""

        def objective_at(loss):
            return self.objective(loss, 0.0, step)

        rows = objective_at(FixedScaleLoss(SmoothedPinballRho(0.5, LAD_BANDWIDTH)))
        return ScaleTangent(objective_at, partial(self.centred_mad, rows))

    def fixed_point(self, step, coef, scale, tol):
        """:func:`skrobust._scale_lad._lad_fixed_point` on every ``step``-th row."""

        def exhausted():
            return self.preliminary >= self.options.max_iter

        fit = partial(self.smoothed_fit, step)
        # (On the subsample, as in memory, the secant settles 1e-3 in two fits.)
        tangent = self.tangent(step) if step == 1 else None
        return _lad_fixed_point(
            fit, exhausted, coef, scale, tol, self.options.max_iter, tangent
        )

    def smoothed_lad_scale(self, coef, scale):
        """:func:`skrobust._scale_lad.smoothed_lad_scale`.

        Returns ``(coef, scale, settled)``.
        """
        tol = self.options.tol
        n, n_coef = self.data.n_samples, self.data.n_features + self.fit_intercept
        step = _solvers.SUBSAMPLE_STEP
        if (
            n < _solvers.SUBSAMPLE_MIN_ROWS
            or n < _solvers.SUBSAMPLE_MIN_ROWS_PER_COEF * n_coef
            or not self.rows_weight(step) > 0
        ):
            found = self.fixed_point(1, coef, scale, tol)
            return None if found is None else (found[0], found[1], found[3])
        found = self.fixed_point(step, coef, scale, _solvers.SUBSAMPLE_TOL)
        if found is None:
            return None
        coef, scale, hessian, settled = found
        all_rows_tol = all_rows_fit_tol(tol, scale)
        result, mad = self.smoothed_fit(
            1, coef, scale, hessian, "subsample", all_rows_tol
        )
        if not mad > MIN_RELATIVE_SCALE:
            return None
        return result.coef, mad, settled and result.converged

    def fit_from_lad(self, coef, scale, other=None):
        """:func:`skrobust._scale_lad._fit_from_lad`: ``(w, b, converged, message)``."""
        objective = self.objective(FixedScaleLoss(self.rho, scale), self.l2)
        coef, hessian, origin = fixed_scale_start(
            objective, coef, other, self.options.solver
        )
        return self.solve_and_polish(
            objective,
            coef,
            fixed_scale_tol(self.rho, scale, self.options.tol),
            multilevel=False,
            hessian=hessian,
            hessian_origin=origin,
        )

    def exact_lad_scale_fit(self, coef, scale):
        """:func:`skrobust._scale_lad.exact_lad_scale_fit`, on dask.

        Returns ``(w, b, scale, converged, message)``, as :meth:`solve`.

        ``coef`` and ``scale`` are the start (standardised).
        """
        from ._dask_joint_boundary import exact_lad_fit

        ls = self.client_objective(FixedScaleLoss(SquaredRho()), self.l2)
        ((w, b),) = ls.unstandardize(coef)
        w, b = exact_lad_fit(
            self.data, (self.offset, self.spread), self.fit_intercept, w, b
        )
        values = RowValues(self.offset, self.spread, w, b)
        if not sum(self.data.map_chunks(_inexact_rows_kernel, values)) > 0:
            # The LAD fit interpolates: its residuals carry no scale, so the
            # MAD fixed point provides it, from the start, as in memory.
            return mad_scale_fit(self, coef, scale)
        scale = robust_scale(self.data, self.stats, self.start_rows, values)
        # As _fixed_scale_fit: from the given start, a multilevel solve.
        objective = self.objective(FixedScaleLoss(self.rho, scale), self.l2)
        tol = fixed_scale_tol(self.rho, scale, self.options.tol)
        w, b, converged, message = self.solve_and_polish(objective, coef, tol)
        return w, b, scale, converged, message

    def solve(self, coef, scale):
        """:meth:`LADScale.solve`: ``(w, b, scale, converged, message)``."""
        positive = sum(self.data.map_chunks(_positive_rows_kernel))
        n_coef = self.data.n_features + self.fit_intercept
        if positive <= _FEW_ROWS_PER_COEF * n_coef:
            return self.exact_lad_scale_fit(coef, scale)
        first = min(scale, 1.0)
        found = self.smoothed_lad_scale(coef, first)
        if found is None or not found[1] > LAD_SMALL_SCALE * first:
            return self.exact_lad_scale_fit(coef, scale)
        lad_coef, lad_scale, settled = found
        other = None
        if abs(lad_scale - scale) <= LAD_SCALE_RTOL * lad_scale:
            # A warm start's scale is the fixed point to the same tolerance.
            lad_scale, other = scale, coef
        w, b, converged, message = self.fit_from_lad(lad_coef, lad_scale, other)
        if not settled:
            converged, message = False, "the LAD scale's fixed point did not settle"
        return w, b, lad_scale, converged, message
