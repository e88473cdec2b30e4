r"""The joint scale's boundary ``sigma = 0`` on dask data (issue #15).

When the concomitant-scale fit's ``sigma`` collapses towards zero (enough
rows fitted exactly), Newton's method only approaches the boundary, one
unit of ``log sigma`` per step. In memory
(``skrobust._scale.JointScale._collapsed_scale_fit``) the boundary point is
computed instead: the exact least-absolute-deviation fit, kept when no
direction leaving the boundary descends (``_boundary_is_optimal``). Here the
LAD fit is a dask ``QuantileRegressor(quantile=0.5, solver="exact")`` fit
started from Newton's point, and the optimality test's sums are one pass:
each chunk returns its share of the rows not fitted exactly
(``sum s (1 - 2L)``), of ``D' (s sign r)`` over them, and its exactly
fitted rows' standardised design (an LP vertex fits at most about
``n_coef`` rows exactly).
"""

import numpy as np

from ._dask import _chunk_weights
from ._objective import LinearObjective
from ._scale import EXACT_FIT_TOL, _chi_at_psi_fraction
from .losses import FixedScaleLoss, SquaredRho


def _boundary_kernel(X_c, y_c, w_c, y_map, top, stats, fit_intercept, fit, limit):
    """The chunk's terms of ``_boundary_is_optimal`` at the LAD fit ``fit``."""
    offset, spread = y_map
    weights = _chunk_weights(y_c, w_c) / top
    with np.errstate(over="ignore"):
        y = (np.asarray(y_c, dtype=np.float64) - offset) / spread
    y[~(weights > 0)] = 0.0
    objective = LinearObjective(
        FixedScaleLoss(SquaredRho()),
        X_c,
        y,
        weights,
        [(None, fit_intercept)],
        [0.0],
        column_stats=stats,
    )
    residuals = y - objective.raw_prediction(fit)[:, 0]
    exact = (np.abs(residuals) <= EXACT_FIT_TOL) & (weights > 0)
    outside = float(weights @ np.where(exact | ~(weights > 0), 0.0, 1.0 - 2.0 * limit))
    signs = np.where(exact, 0.0, np.sign(residuals)) * weights
    rmatvec = objective.design_rmatvec(signs)
    design = objective.dense_design(exact) if exact.any() else None
    return outside, rmatvec, design, weights[exact]


def boundary_is_optimal(problem, lad_coef):
    """``_scale._boundary_is_optimal`` over all rows of ``problem.data``.

    ``lad_coef`` is the LAD fit in the standardised coordinates of
    ``problem.stats``.
    """
    rho, stats = problem.rho, problem.stats
    limit = rho.z_psi_minus_rho_limit
    parts = problem.data.map_chunks(
        _boundary_kernel,
        problem.y_map,
        stats[1],
        stats[2],
        problem.fit_intercept,
        lad_coef,
        limit,
    )
    outside = sum(part[0] for part in parts)
    rmatvec = sum(part[1] for part in parts)
    designs = [part[2] for part in parts if part[2] is not None]
    if not designs:
        return bool(outside >= 0)
    design = np.vstack(designs)
    weight = np.concatenate([part[3] for part in parts])
    u = np.linalg.lstsq(design.T * weight, -rmatvec, rcond=None)[0]
    chi = _chi_at_psi_fraction(rho, np.abs(np.clip(u, -1.0, 1.0)))
    return bool(outside + weight @ (1.0 - 2.0 * chi) >= 0)


def collapsed_scale_fit(problem, w, b):
    """The boundary fit ``(w, b)`` (standardised units) if optimal, else None.

    ``(w, b)`` is Newton's point, the LAD fit's start.
    """
    from ._quantile import QuantileRegressor

    offset, spread = problem.y_map
    model = QuantileRegressor(
        quantile=0.5,
        alpha=0.0,
        solver="exact",
        fit_intercept=problem.fit_intercept,
        warm_start=True,
    )
    model.coef_ = np.asarray(w, float) * spread
    model.intercept_ = float(b * spread + offset) if problem.fit_intercept else 0.0
    data = problem.data
    model.fit(data.X, data.y, data.sample_weight)
    data.round_trips += model._dask_round_trips
    w_lad = np.asarray(model.coef_) / spread
    b_lad = (model.intercept_ - offset) / spread if problem.fit_intercept else 0.0
    template = problem.template_for_maps()
    lad_coef = template.standardize([(w_lad, b_lad)])
    if boundary_is_optimal(problem, lad_coef):
        return w_lad, b_lad
    return None
