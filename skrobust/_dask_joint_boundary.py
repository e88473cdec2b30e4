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

With a ridge penalty (``alpha > 0``) the in-memory fit
(``JointScale._boundary_optimal``) keeps Newton's point with ``sigma = 0``
when its scale collapsed without converging and the L1-plus-ridge
objective of the boundary is minimal there: some ``u_i`` in ``[-c, c]``
on the rows fitted exactly makes the gradient vanish, a bounded least
squares problem on those rows. Here one pass returns the gradient and one
the rows fitted exactly (their standardised design, weight and residual);
the bounded least squares problem is solved on the client as in memory.
The rows fitted exactly come to the client, ``n_coef + 2`` floats each.
"""

import numpy as np
import scipy.optimize

from ._dask import _chunk_weights
from ._objective import LinearObjective
from ._scale import EXACT_FIT_TOL, _chi_at_psi_fraction
from .losses import FixedScaleLoss, SquaredRho


def _chunk_objective(X_c, y_c, w_c, y_map, top, stats, fit_intercept):
    """The chunk's least-squares objective in the fit's standardised coordinates."""
    offset, spread = y_map
    weights = _chunk_weights(y_c, w_c) / top
    with np.errstate(over="ignore"):
        y = (np.asarray(y_c, dtype=np.float64) - offset) / spread
    y[~(weights > 0)] = 0.0
    return LinearObjective(
        FixedScaleLoss(SquaredRho()),
        X_c,
        y,
        weights,
        [(None, fit_intercept)],
        [0.0],
        column_stats=stats,
    )


def _exact_rows_kernel(X_c, y_c, w_c, y_map, top, stats, fit_intercept, fit):
    """The chunk's rows of positive weight fitted exactly at ``fit``.

    ``(design, weights / top, residuals)`` of those rows, or None.
    """
    objective = _chunk_objective(X_c, y_c, w_c, y_map, top, stats, fit_intercept)
    weights = objective.sample_weight
    residuals = objective.y - objective.raw_prediction(fit)[:, 0]
    exact = (np.abs(residuals) <= EXACT_FIT_TOL) & (weights > 0)
    if not exact.any():
        return None
    return objective.dense_design(exact), weights[exact], residuals[exact]


def penalised_boundary_optimal(problem, objective, coef, scale):
    """``JointScale._boundary_optimal`` over all rows of ``problem.data``.

    ``objective`` is the distributed joint objective, ``coef`` Newton's
    point in its standardised coordinates (the last entry ``log sigma``)
    and ``scale`` its ``sigma``. Two passes: the gradient, and the rows
    fitted exactly.
    """
    rho, stats = problem.rho, problem.stats
    grad = objective.loss_gradient(coef)[1][:-1]
    (w, b), _ = objective.unstandardize(coef)
    fit = problem.template_for_maps().standardize([(w, b)])
    parts = problem.data.map_chunks(
        _exact_rows_kernel,
        problem.y_map,
        stats[1],
        stats[2],
        problem.fit_intercept,
        fit,
    )
    parts = [part for part in parts if part is not None]
    tol = problem.options.tol
    if not parts:
        return bool(np.max(np.abs(grad), initial=0.0) <= tol)
    design = np.vstack([part[0] for part in parts])
    share = np.concatenate([part[1] for part in parts]) / stats[0]
    residuals = np.concatenate([part[2] for part in parts])
    c = float(np.asarray(rho.derivative(np.array([min(rho.saturation, 1e300)])))[0])
    # As in memory: d(mean loss)/d(raw prediction) = -2 psi(z) on each row.
    A = (design * (-2.0 * share)[:, None]).T
    fixed = grad - A @ np.asarray(rho.derivative(residuals / scale))
    u = scipy.optimize.lsq_linear(A, -fixed, bounds=(-c, c)).x
    return bool(np.max(np.abs(A @ u + fixed), initial=0.0) <= tol)


def _boundary_kernel(X_c, y_c, w_c, y_map, top, stats, fit_intercept, fit, limit):
    """The chunk's terms of ``_boundary_is_optimal`` at the LAD fit ``fit``."""
    objective = _chunk_objective(X_c, y_c, w_c, y_map, top, stats, fit_intercept)
    weights, y = objective.sample_weight, objective.y
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


def exact_lad_fit(data, y_map, fit_intercept, w, b):
    """The exact least-absolute-deviation fit on dask data, from ``(w, b)``.

    A dask ``QuantileRegressor(quantile=0.5, solver="exact")`` warm-started
    from ``(w, b)`` (standardised units, as the result): the linear
    programme's optimum, as ``solve_exact`` gives in memory. Its round trips
    are counted in ``data``'s.
    """
    from ._quantile import QuantileRegressor

    offset, spread = y_map
    model = QuantileRegressor(
        quantile=0.5,
        alpha=0.0,
        solver="exact",
        fit_intercept=fit_intercept,
        warm_start=True,
    )
    model.coef_ = np.asarray(w, float) * spread
    model.intercept_ = float(b * spread + offset) if fit_intercept else 0.0
    model.fit(data.X, data.y, data.sample_weight)
    data.round_trips += model._dask_round_trips
    w_lad = np.asarray(model.coef_) / spread
    b_lad = (model.intercept_ - offset) / spread if fit_intercept else 0.0
    return w_lad, b_lad


def collapsed_scale_fit(problem, w, b):
    """The boundary fit ``(w, b)`` (standardised units) if optimal, else None.

    ``(w, b)`` is Newton's point, the LAD fit's start.
    """
    w_lad, b_lad = exact_lad_fit(
        problem.data, problem.y_map, problem.fit_intercept, w, b
    )
    template = problem.template_for_maps()
    lad_coef = template.standardize([(w_lad, b_lad)])
    if boundary_is_optimal(problem, lad_coef):
        return w_lad, b_lad
    return None
