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
(``sum s (1 - 2L)``), of ``D' (s sign r)`` over them, and the count and
``sum s^2 d d'`` of its exactly fitted rows. An LP vertex fits about
``n_coef`` rows exactly, and then (up to ``EXACT_ROWS_FETCHED`` rows) one
more pass fetches them for the in-memory least squares; with many tied
targets most rows may be fitted exactly, and then the minimum-norm
solution that ``lstsq`` returns is ``u = A' (A A')^+ b`` from those
``p x p`` sums, and one pass sums its terms over the rows: the client
holds ``O(p^2)``, never the rows.

With a ridge penalty (``alpha > 0``) the in-memory fit
(``JointScale._boundary_optimal``) keeps Newton's point with ``sigma = 0``
when its scale collapsed without converging and the L1-plus-ridge
objective of the boundary is minimal there: some ``u_i`` in ``[-c, c]``
on the rows fitted exactly makes the gradient vanish, a bounded least
squares problem on those rows. Here one pass returns the gradient and one
the exact rows' count and sums; up to ``EXACT_ROWS_FETCHED`` rows come to
the client for the in-memory bounded least squares, beyond that the
minimum-norm solution settles it when it is within the bounds (one pass
for its largest entry), and only when the bounds bind do the rows come to
the client all the same (``n_coef + 2`` floats each).
"""

import numpy as np
import scipy.optimize

from ._dask_chunks import _chunk_weights
from ._objective import LinearObjective
from ._scale import EXACT_FIT_TOL, _chi_at_psi_fraction
from .losses import FixedScaleLoss, SquaredRho


def _chunk_objective(X_c, y_c, w_c, y_map, top, stats, fit_intercept):
    """The chunk's least-squares objective in the fit's standardised coordinates.

    Returns ``(objective, weights)``: the weights divided by the largest of
    all rows, as in memory (the objective's own ``sample_weight`` is scaled
    to the chunk's largest, which differs between chunks).
    """
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
    return objective, weights


# The rows fitted exactly that may come to the client for a certificate
# computed as in memory (their standardised design, weight and residual);
# beyond this many, the certificate is computed from p x p sums instead.
EXACT_ROWS_FETCHED = 10_000


def _exact_rows(objective, fit):
    """The residuals at ``fit`` and the mask of rows with weight fitted exactly."""
    residuals = objective.y - objective.raw_prediction(fit)[:, 0]
    exact = (np.abs(residuals) <= EXACT_FIT_TOL) & (objective.sample_weight > 0)
    return residuals, exact


def _gram(design, factor):
    """``sum_i factor_i^2 d_i d_i'`` over the rows of ``design``."""
    scaled = design * factor[:, None]
    return scaled.T @ scaled


def _fetch_kernel(X_c, y_c, w_c, setup, fit):
    """The chunk's rows fitted exactly: ``(design, weights / top, residuals)``."""
    objective, weights = _chunk_objective(X_c, y_c, w_c, *setup)
    residuals, exact = _exact_rows(objective, fit)
    if not exact.any():
        return None
    return objective.dense_design(exact), weights[exact], residuals[exact]


def _fetch_exact_rows(problem, setup, fit):
    """All rows fitted exactly, stacked: ``(design, weights, residuals)``."""
    parts = problem.data.map_chunks(_fetch_kernel, setup, fit)
    parts = [part for part in parts if part is not None]
    return tuple(np.concatenate([part[k] for part in parts]) for k in range(3))


def _setup(problem):
    """What each chunk needs for its objective in the fit's coordinates."""
    return problem.y_map, problem.stats[1], problem.stats[2], problem.fit_intercept


def _penalised_sums_kernel(X_c, y_c, w_c, setup, fit, rho, scale):
    """Count, ``sum s^2 d d'`` and ``sum s psi(r / sigma) d`` of the exact rows."""
    objective, weights = _chunk_objective(X_c, y_c, w_c, *setup)
    residuals, exact = _exact_rows(objective, fit)
    count = int(np.count_nonzero(exact))
    if not count:
        return 0, 0.0, 0.0
    design = objective.dense_design(exact)
    weights = weights[exact]
    psi = np.asarray(rho.derivative(residuals[exact] / scale))
    return count, _gram(design, weights), design.T @ (weights * psi)


def _largest_kernel(X_c, y_c, w_c, setup, fit, direction):
    """``max |s_i d_i' z|`` over the chunk's rows fitted exactly (0 if none)."""
    objective, weights = _chunk_objective(X_c, y_c, w_c, *setup)
    _, exact = _exact_rows(objective, fit)
    if not exact.any():
        return 0.0
    design = objective.dense_design(exact)
    return float(np.abs(weights[exact] * (design @ direction)).max())


def penalised_boundary_optimal(problem, objective, coef, scale):
    """``JointScale._boundary_optimal`` over all rows of ``problem.data``.

    ``objective`` is the distributed joint objective, ``coef`` Newton's
    point in its standardised coordinates (the last entry ``log sigma``)
    and ``scale`` its ``sigma``. One pass for the gradient and one for the
    sums of the rows fitted exactly; then, up to ``EXACT_ROWS_FETCHED`` of
    them, one fetching them for the in-memory bounded least squares
    (:func:`_bounded_certificate`), else :func:`_minimum_norm_certificate`.
    """
    rho, stats = problem.rho, problem.stats
    grad = objective.loss_gradient(coef)[1][:-1]
    (w, b), _ = objective.unstandardize(coef)
    fit = problem.template_for_maps().standardize([(w, b)])
    setup = _setup(problem)
    parts = problem.data.map_chunks(_penalised_sums_kernel, setup, fit, rho, scale)
    count = sum(part[0] for part in parts)
    tol = problem.options.tol
    if not count:
        return bool(np.max(np.abs(grad), initial=0.0) <= tol)
    # A = (D_Z (-2 s / S))' as in memory: A A' and A psi from the sums.
    factor = -2.0 / stats[0]
    gram = factor**2 * sum(part[1] for part in parts)
    fixed = grad - factor * sum(part[2] for part in parts)
    c = float(np.asarray(rho.derivative(np.array([min(rho.saturation, 1e300)])))[0])
    if count > EXACT_ROWS_FETCHED:
        found = _minimum_norm_certificate(problem, setup, fit, gram, fixed, c, tol)
        if found is not None:
            return found
    return _bounded_certificate(problem, setup, fit, fixed, c, tol)


def _minimum_norm_certificate(problem, setup, fit, gram, fixed, c, tol):
    r"""The certificate from ``p x p`` sums, when the minimum-norm ``u`` is in bounds.

    ``u = A' z`` with ``z = (A A')^+ (-fixed)`` is the minimum-norm
    solution of ``A u = -fixed`` (``A^+ = A' (A A')^+``); if every
    ``|u_i| <= c`` (one pass for the largest) it is feasible for the bounded
    problem, whose residual is then that of ``A u + fixed``: the certificate
    without the rows. None when some ``|u_i| > c`` (the bounds bind).
    """
    z = np.linalg.pinv(gram) @ -fixed
    factor = -2.0 / problem.stats[0]
    direction = factor * z
    largest = max(problem.data.map_chunks(_largest_kernel, setup, fit, direction))
    if largest > c:
        return None
    return bool(np.max(np.abs(gram @ z + fixed), initial=0.0) <= tol)


def _bounded_certificate(problem, setup, fit, fixed, c, tol):
    """The in-memory bounded least squares on the fetched rows fitted exactly."""
    design, weights, _ = _fetch_exact_rows(problem, setup, fit)
    share = weights / problem.stats[0]
    # As in memory: d(mean loss)/d(raw prediction) = -2 psi(z) on each row;
    # ``fixed`` already holds the gradient less A psi.
    A = (design * (-2.0 * share)[:, None]).T
    u = scipy.optimize.lsq_linear(A, -fixed, bounds=(-c, c)).x
    return bool(np.max(np.abs(A @ u + fixed), initial=0.0) <= tol)


def _boundary_kernel(X_c, y_c, w_c, setup, fit, limit):
    """The chunk's sums of ``_boundary_is_optimal`` at the LAD fit ``fit``.

    ``sum s (1 - 2L)`` over the rows not fitted exactly, ``D' (s sign r)``
    over them, and the count and ``sum s^2 d d'`` of the exact rows.
    """
    objective, weights = _chunk_objective(X_c, y_c, w_c, *setup)
    residuals, exact = _exact_rows(objective, fit)
    outside = float(weights @ np.where(exact | ~(weights > 0), 0.0, 1.0 - 2.0 * limit))
    signs = np.where(exact, 0.0, np.sign(residuals)) * weights
    rmatvec = objective.design_rmatvec(signs)
    count = int(np.count_nonzero(exact))
    gram = _gram(objective.dense_design(exact), weights[exact]) if count else 0.0
    return outside, rmatvec, count, gram


def _chi_sum_kernel(X_c, y_c, w_c, setup, fit, z, rho):
    """``sum s (1 - 2 chi(|u|))`` over the exact rows, ``u = clip(s d' z)``."""
    objective, weights = _chunk_objective(X_c, y_c, w_c, *setup)
    _, exact = _exact_rows(objective, fit)
    if not exact.any():
        return 0.0
    weights = weights[exact]
    u = np.clip(weights * (objective.dense_design(exact) @ z), -1.0, 1.0)
    chi = _chi_at_psi_fraction(rho, np.abs(u))
    return float(weights @ (1.0 - 2.0 * chi))


def boundary_is_optimal(problem, lad_coef):
    """``_scale._boundary_is_optimal`` over all rows of ``problem.data``.

    ``lad_coef`` is the LAD fit in the standardised coordinates of
    ``problem.stats``. One pass for the sums; then, up to
    ``EXACT_ROWS_FETCHED`` rows fitted exactly, one fetching them for the
    in-memory least squares, else one for the sum over them of
    ``s (1 - 2 chi)`` at the minimum-norm ``u = A' (A A')^+ b`` (what
    ``lstsq`` returns, ``A^+ = A' (A A')^+``) from ``p x p`` sums.
    """
    rho = problem.rho
    setup = _setup(problem)
    parts = problem.data.map_chunks(
        _boundary_kernel, setup, lad_coef, rho.z_psi_minus_rho_limit
    )
    outside = sum(part[0] for part in parts)
    rmatvec = sum(part[1] for part in parts)
    count = sum(part[2] for part in parts)
    if not count:
        return bool(outside >= 0)
    if count > EXACT_ROWS_FETCHED:
        z = np.linalg.pinv(sum(part[3] for part in parts)) @ -rmatvec
        inside = sum(problem.data.map_chunks(_chi_sum_kernel, setup, lad_coef, z, rho))
        return bool(outside + inside >= 0)
    design, weight, _ = _fetch_exact_rows(problem, setup, lad_coef)
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
