"""Residual-scale strategies of the M-estimators: one small object per option.

An M-estimator measures its threshold in units of a residual scale
``sigma``, which makes the fit equivariant (``y * c`` gives ``coef_ * c``).
Each option of ``scale=`` is an object with the same two methods, so the
estimator never branches on the option:

``check(rho)``
    raise a ``ValueError`` if the option is undefined for this loss;
``solve(problem, coef, scale)``
    the coefficients and the scale from a start, in standardised units.

:class:`JointScale`
    minimises the jointly convex concomitant objective ``sum_i s_i sigma
    (1 + 2 rho(r_i / sigma)) + alpha ||w||^2`` (Huber's proposal 2 in Owen's
    form; with Huber's ``rho`` exactly scikit-learn's ``HuberRegressor``
    objective).
:class:`~skrobust._scale_mad.MADScale`
    the fixed point of ``sigma = median(|r|) / 0.6745`` with ``coef``
    minimising ``sum_i s_i sigma^2 rho(r_i / sigma) + alpha ||w||^2``: what
    iteratively reweighted least squares converges to in R's ``MASS::rlm``
    and statsmodels' ``RLM`` (default ``scale_est="mad"``); in its own
    module, :mod:`skrobust._scale_mad`, with its secant loop.
:class:`~skrobust._scale_lad.LADScale` (:mod:`skrobust._scale_lad`)
    the fixed point ``sigma = MAD(r - median r) / 0.6745`` with ``r`` the
    residuals of the least-absolute-deviation fit smoothed at bandwidth
    ``sigma / 2`` (its bandwidth from every 11th row on large problems), then
    held fixed: bounded up to half the targets wrong. (The exact LAD fit's
    residuals with at most two rows per coefficient.)
:class:`FixedScale`
    a given positive scale, in the units of ``y``.
"""

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
from sklearn.utils.extmath import safe_sparse_dot

from . import _linalg, _preconditioned_newton, _solvers
from ._base import mad_scale
from ._objective import LinearObjective
from .losses import ConcomitantScaleLoss, FixedScaleLoss

# Below this (relative to the spread of y) a scale counts as a perfect fit.
MIN_RELATIVE_SCALE = 1e-12

# A joint scale below this (relative to the spread of y) may be collapsing to
# zero: JointScale checks, and solves the boundary problem.
_COLLAPSED_SCALE = 1e-5

# Up to this many rows per coefficient the joint fit checks the boundary
# sigma = 0 (least absolute deviation) before Newton's method.
_FEW_ROWS_PER_COEF = 2

# A smoothed LAD scale below this, relative to the scale its fixed point
# started from (the start's residual scale, at most the robust spread of y),
# may be a collapse to zero that settled short of it: the exact LAD fit
# decides (see skrobust._scale_lad.LADScale.solve). Relative to the start's
# residual scale alone, a start drawn to wild targets (every 10th target times 1e4, the
# start's strided rows all among them: a residual scale of 2500 spreads of
# y) sent an ordinary fixed point (0.28) to an LP on all rows (4.7 s
# instead of 0.1 s at 1e5 x 20).
LAD_SMALL_SCALE = 1e-3

# Residuals below this (relative to the spread of y) count as fitted exactly.
EXACT_FIT_TOL = 1e-9

# A secant step to below this fraction of the MAD is replaced by the MAD.
_LAD_SMALLEST_STEP = 0.1
# A polishing step on an older Hessian shrinks the gradient by the change of
# the curvature since, ~1e-3 near a fixed point: a second such step (while
# the first shrank it by _CHORD_RATIO) brings it to rounding, as one step on
# a fresh Hessian would, for a pass without Gram matrices.
_POLISH_CHORD_STEPS = 2
_CHORD_RATIO = 0.1
# A fit whose gradient is already this fraction of tol is at rounding: a
# polishing step would move it by rounding only.
_POLISHED_GRADIENT = 1e-5
# A gradient entry (in standardised units) this small is at the rounding of
# the residuals: the fixed-scale tolerance stops shrinking there.
_GRADIENT_ROUNDING = 1e-15


@dataclass
class MProblem:
    """What every scale strategy needs to fit: data, loss, penalty and options.

    ``ls_objective`` is the least-squares objective of the fit: it carries
    ``X``, the standardised ``y``, the weights (scaled to a largest of 1)
    and the standardised coordinates (``column_stats``) every objective of
    the fit shares.
    """

    ls_objective: LinearObjective
    rho: object
    l2: float
    fit_intercept: bool
    options: _solvers.SolverOptions
    alpha: float = 0.0
    y_scale: float = 1.0
    # Iterations spent so far; every solve takes from max_iter - used.
    used: list = field(default_factory=lambda: [0])
    # Flat directions of its objectives (LinearObjective.null_directions).
    null_cache: dict = field(default_factory=dict)
    # The latest objective on all of ls_objective's rows (see fitted_rows).
    latest_objective: object = field(default=None, repr=False)

    @property
    def budget(self):
        return max(self.options.max_iter - self.used[0], 0)

    def objective(self, loss, predictors, penalties, ls_objective=None, y=None):
        """A :class:`LinearObjective` on this problem's data and coordinates.

        On ``ls_objective``'s rows (a subsample's) if given, with targets
        ``y`` in place of its own if given.
        """
        base = self.ls_objective if ls_objective is None else ls_objective
        loss = fast_for_newton(loss, self.options.solver)
        objective = LinearObjective(
            loss,
            base.X,
            base.y if y is None else y,
            base.sample_weight,
            predictors,
            penalties,
            column_stats=base.column_stats,
        )
        # The problem's objectives share their rows' flat directions, and
        # the split of a sparse X for its sparse Hessians.
        objective.null_cache = self.null_cache
        objective.split_owner = base
        if base is self.ls_objective:
            self.latest_objective = objective
        return objective

    def fitted_rows(self, w, b):
        """The rows' standardised predictions at the fit ``(w, b)``, or None.

        Those the latest objective on all rows remembered
        (``remember_prediction``) if its last pass was at the coefficients
        that ``unstandardize`` to ``(w, b)`` exactly: the fit's residuals
        without another product with ``X`` (0.4 ms of a 1e5 x 20 fit).
        """
        objective = self.latest_objective
        remembered = getattr(objective, "_remembered", None)
        if remembered is None or remembered[1].shape[1] != 1:
            return None
        coef, predictions = remembered
        if coef.size != self.ls_objective.n_coef:
            return None
        ((w_at, b_at),) = self.ls_objective.unstandardize(coef)
        if not (np.array_equal(w_at, w) and b_at == b):
            return None
        return predictions[:, 0]

    def minimize(self, objective, coef, tol=None, **kwargs):
        """Run the solver within the remaining iteration budget.

        ``tol`` replaces the options' (the fixed-scale fits pass
        :func:`fixed_scale_tol`'s).
        """
        options = self.options.with_max_iter(self.budget)
        if tol is not None:
            options = dataclasses.replace(options, tol=tol)
        result = _solvers.solve(objective, coef, options, **kwargs)
        self.used[0] += result.n_iter
        return result


def fast_for_newton(loss, solver):
    """``loss``, a :class:`FixedScaleLoss` with its fast terms for Newton's method.

    (See :class:`~skrobust.losses.FixedScaleLoss`: L-BFGS keeps the precise
    ones.) Memory's and Dask's fits take their fixed-scale objectives
    through this.
    """
    if isinstance(loss, FixedScaleLoss) and solver == "newton" and not loss.fast:
        return FixedScaleLoss(loss.rho, loss.scale, fast=True)
    return loss


@dataclass
class ScaleFit:
    """Coefficients ``(w, b)`` and scale, in standardised units."""

    w: np.ndarray
    b: float
    scale: float
    converged: bool
    message: str = ""
    # The joint fit's last Hessian, of objective at point (see
    # _solvers.solve's remember_hessian_point), for the standard errors:
    # (objective, hessian, point), or None.
    curvature: tuple | None = None


def initial_scale(residuals, sample_weight):
    """Normalised MAD of residuals, or their RMS if more than half are zero."""
    scale = mad_scale(residuals, sample_weight)
    if not scale > MIN_RELATIVE_SCALE:
        top = float(np.max(np.abs(residuals)))
        if top > 0:
            rel = residuals / top
            rms = top * np.sqrt(np.average(rel * rel, weights=sample_weight))
        else:
            rms = 0.0
        scale = max(float(rms), MIN_RELATIVE_SCALE)
    return scale


def _positive_scale(problem, coef, scale):
    """``scale`` if positive, else :func:`initial_scale` of the residuals at ``coef``.

    A warm start from a fit whose scale collapsed gives ``scale = 0``, where
    neither ``log sigma`` nor ``r / sigma`` is defined.
    """
    if scale > 0:
        return scale
    ls = problem.ls_objective
    residuals = ls.y - ls.raw_prediction(coef)[:, 0]
    return initial_scale(residuals, ls.sample_weight)


def _fixed_scale_fit(problem, coef, scale):
    """Coefficients minimising ``sum s sigma^2 rho(r / sigma) + l2 pen``.

    To the tolerance of :func:`fixed_scale_tol` at ``scale``.
    """
    objective = problem.objective(
        FixedScaleLoss(problem.rho, scale),
        [(None, problem.fit_intercept)],
        [problem.l2],
    )
    tol = fixed_scale_tol(problem.rho, scale, problem.options.tol)
    result = problem.minimize(objective, coef, tol=tol)
    coef = result.coef
    if result.converged:
        coef = _newton_polish(problem, objective, coef, result.hessian, result.gradient)
    ((w, b),) = objective.unstandardize(coef)
    return ScaleFit(w, b, scale, result.converged, result.message)


def _gradient_unit(rho, scale):
    """``min(1, sigma psi(1 / sigma))``: a unit residual's fixed-scale gradient term.

    ``sigma`` in standardised units, where the spread of ``y`` is 1; 1 where
    the loss is quadratic out to there (``psi(z) = z``).
    """
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        psi = rho.derivative(np.array([1.0 / scale]))
        unit = scale * float(np.asarray(psi, dtype=float).ravel()[0])
    return min(unit, 1.0) if unit > 0 else 1.0


def fixed_scale_tol(rho, scale, tol):
    """The gradient tolerance of the fixed-scale fit at ``scale`` (standardised).

    The gradient's terms ``sigma psi(r / sigma) x`` are of size
    :func:`_gradient_unit` at residuals of one spread of ``y``: ``delta
    sigma`` for Huber's loss. A scale given far below that spread makes the
    fit least absolute deviation in all but name, with a gradient that
    many times smaller; ``tol`` shrinks with it, so that it stays relative
    to the gradient's terms (absolute, it let a least-squares start pass
    1e4 times short). Not below ``_GRADIENT_ROUNDING`` (nor above ``tol``):
    the terms of rows on the quadratic part are residuals, known to
    rounding only.
    """
    return max(tol * _gradient_unit(rho, scale), min(tol, _GRADIENT_ROUNDING))


def starts_from_exact_lad(rho, scale, l2):
    """Whether the fixed-scale fit at ``scale`` starts from the exact LAD fit.

    Where the loss's threshold is far below the spread of ``y`` (below
    ``LAD_SMALL_SCALE``) and nothing is penalised, the fit lies within
    about that threshold of the LAD fit: a start whose interpolated rows
    are on the quadratic part, where Newton's method has curvature. From
    elsewhere no row may be there, and the Hessian is zero (Newton's method
    and the trust region then stopped at 0.25% above the optimum, as
    converged).
    """
    return l2 == 0 and _gradient_unit(rho, scale) < LAD_SMALL_SCALE


def _exact_lad_start(problem, coef):
    """The exact LAD fit from ``coef``, in the same (standardised) coordinates."""
    from ._quantile_exact import solve_exact

    ls = problem.ls_objective
    ((w, b),) = ls.unstandardize(coef)
    w, b, _ = solve_exact(
        ls.X, ls.y, 0.5, ls.sample_weight, 0.0, problem.fit_intercept, w, b
    )
    return ls.standardize([(w, b)])


class FixedScale:
    """A scale given in the units of ``y``."""

    name = "fixed"
    l2_in_y_units = False

    def __init__(self, value):
        self.value = float(value)

    def check(self, rho):
        """Every loss has a fixed-scale objective."""

    def solve(self, problem, coef, scale):
        """Fit at the given scale (in standardised units: value / y_scale).

        With the tolerance of :func:`fixed_scale_tol`, from the exact LAD
        fit where :func:`starts_from_exact_lad`.
        """
        scale = self.value / problem.y_scale
        if starts_from_exact_lad(problem.rho, scale, problem.l2):
            coef = _exact_lad_start(problem, coef)
        return _fixed_scale_fit(problem, coef, scale)

    def report(self, scale, y_scale):
        """``scale_`` as given, not as rounded through ``y_scale``."""
        return self.value


class JointScale:
    """Coefficients and ``log sigma`` minimising Owen's concomitant objective."""

    name = "joint"
    # The concomitant objective is in the units of y, not y^2.
    l2_in_y_units = True

    def check(self, rho):
        """The joint objective has a positive scale only if ``sup 2(z psi - rho) > 1``.

        Its derivative in ``sigma`` is ``sum_i s_i (1 - 2 (z_i psi(z_i) -
        rho(z_i)))``: for a loss whose ``z psi - rho`` stays at or below
        1/2 (Huber with ``delta <= 1``, log-cosh with ``delta <= 0.849``) the
        objective decreases all the way to ``sigma = 0`` (why scikit-learn
        requires ``epsilon >= 1``).
        """
        limit = rho.z_psi_minus_rho_limit
        if not 2.0 * limit > 1.0:
            raise ValueError(
                f"scale='joint' is undefined for {rho!r}: the joint objective "
                "has a positive scale only if sup (z psi(z) - rho(z)) > 1/2, "
                f"and here it is {limit:.4g}. Use a larger delta, or "
                "scale='mad' or a fixed scale."
            )

    def solve(self, problem, coef, scale):
        ls = problem.ls_objective
        few_rows = ls.n_samples <= _FEW_ROWS_PER_COEF * ls.n_coef
        collapsed_start = not scale > 0  # a warm start from sigma = 0
        scale = penalised_start_scale(_positive_scale(problem, coef, scale), problem.l2)
        if problem.alpha > 0 and few_rows:
            # With a ridge, an interpolant may be the boundary's optimum,
            # which Newton would approach for max_iter iterations.
            boundary = interpolating_boundary(problem.ls_objective, problem.rho)
            if boundary is not None:
                return boundary
        if problem.alpha == 0 and (
            few_rows or collapsed_start or _boundary_may_be_optimal(problem)
        ):
            # The scale may collapse (enough rows fitted exactly), which
            # Newton only approaches, one unit of log sigma per step. Check
            # the boundary first, at the price of one small linear programme.
            ((w, b),) = ls.unstandardize(coef)
            boundary = self._collapsed_scale_fit(problem, ScaleFit(w, b, scale, False))
            if boundary.converged:
                return boundary
        objective = problem.objective(
            ConcomitantScaleLoss(problem.rho),
            [(None, problem.fit_intercept), ((), True)],
            [problem.l2, 0.0],
        )
        result = problem.minimize(
            objective, np.append(coef, np.log(scale)), remember_hessian_point=True
        )
        (w, b), (_, log_scale) = objective.unstandardize(result.coef)
        fit = ScaleFit(w, b, float(np.exp(log_scale)), result.converged)
        fit.message = result.message
        if result.hessian_coef is not None:
            fit.curvature = (objective, result.hessian, result.hessian_coef)
        if problem.alpha == 0 and (fit.scale < _COLLAPSED_SCALE or not fit.converged):
            fit = self._collapsed_scale_fit(problem, fit)
        elif fit.scale < _COLLAPSED_SCALE and not fit.converged:
            if self._boundary_optimal(problem, objective, result.coef, fit.scale):
                fit = ScaleFit(w, b, 0.0, True)
        return fit

    @staticmethod
    def _boundary_optimal(problem, objective, coef, scale):
        """Whether a penalised fit whose scale collapses has reached ``sigma = 0``.

        On the boundary the objective is ``sum_i s_i 2 c |r_i| + alpha
        ||w||^2`` (``c = psi(inf)``), an L1 loss plus a ridge, which Newton's
        steps approach while ``log sigma`` falls by about one per step. The
        coefficients minimise it when some ``u_i`` in ``[-c, c]`` in place
        of ``psi(z_i)`` on the rows fitted exactly (its subgradient there)
        makes the gradient in the coefficients vanish: a bounded least-squares
        problem on those rows, whose residual is the certificate.
        """
        ls = problem.ls_objective
        grad = objective.loss_gradient(coef)[1][:-1]
        residuals = ls.y - objective.raw_prediction(coef)[:, 0]
        rows = (np.abs(residuals) <= EXACT_FIT_TOL) & (ls.sample_weight > 0)
        tol = problem.options.tol
        if not rows.any():
            return bool(np.max(np.abs(grad), initial=0.0) <= tol)
        rho = problem.rho
        c = float(np.asarray(rho.derivative(np.array([min(rho.saturation, 1e300)])))[0])
        share = ls.sample_weight[rows] / ls.sum_weight
        # d(mean loss)/d(raw prediction) = -2 psi(z) on each row.
        A = (ls.dense_design(rows) * (-2.0 * share)[:, None]).T
        fixed = grad - A @ np.asarray(rho.derivative(residuals[rows] / scale))
        u = scipy.optimize.lsq_linear(A, -fixed, bounds=(-c, c)).x
        return bool(np.max(np.abs(A @ u + fixed), initial=0.0) <= tol)

    @staticmethod
    def _collapsed_scale_fit(problem, fit):
        """The joint fit when its scale tends to zero: least absolute deviation.

        As ``sigma -> 0``, ``sigma (1 + 2 rho(r / sigma)) -> 2 c |r|`` with
        ``c = psi(inf)``, so on that boundary the coefficients minimise the
        weighted L1 loss, solved exactly by linear programming. ``sigma = 0``
        is the optimum when no direction leaving the boundary descends
        (:func:`_boundary_is_optimal`), i.e. when enough rows are fitted
        exactly. Newton's
        method only approaches this boundary (one unit of ``log sigma`` per
        step, in a stiffening problem), so it is solved here instead; if the
        boundary is not optimal, Newton's point and convergence stand.
        """
        from ._quantile_exact import solve_exact

        ls = problem.ls_objective
        w_lad, b_lad, _ = solve_exact(
            ls.X, ls.y, 0.5, ls.sample_weight, 0.0, problem.fit_intercept, fit.w, fit.b
        )
        residuals = ls.y - safe_sparse_dot(ls.X, w_lad) - b_lad
        if _boundary_is_optimal(problem, residuals):
            return ScaleFit(w_lad, b_lad, 0.0, True)
        return fit

    def report(self, scale, y_scale):
        return scale * y_scale


def penalised_start_scale(scale, l2):
    """The joint fit's start scale: 1 (the spread of ``y``) for a ridge's at the floor.

    A start that interpolates (as many coefficients as rows) has no residual
    scale, and :func:`initial_scale` floors it at ``MIN_RELATIVE_SCALE``.
    There the gradient in ``log sigma`` (``sigma`` times that in ``sigma``)
    is below ``tol`` whatever its sign, and Newton's method "converged" on
    the boundary ``sigma = 0`` (the penalised LAD fit, 22% above the
    optimum, whose scale was 0.4). Without a penalty the boundary is
    checked exactly; with one, an interpolant that is its optimum is found
    before (:func:`interpolating_boundary`), and otherwise the ridge keeps
    the residuals, and the scale, of the order of the spread of ``y``.
    """
    return 1.0 if l2 > 0 and not scale > MIN_RELATIVE_SCALE else scale


def _boundary_may_be_optimal(problem):
    r"""Whether ``sigma = 0`` can minimise the joint objective: a necessary condition.

    In :func:`_boundary_is_optimal`'s test each row fitted exactly adds
    ``s_i (1 - 2 chi) <= s_i`` (``chi >= 0``) and every other row ``s_i (1 -
    2L) < 0``. At an LP vertex at most ``n_coef`` rows are fitted exactly
    (with rows in general position; tied targets can fit more, which the
    check after Newton's method still catches), so the boundary can be
    optimal only if ``(S - T)(2L - 1) <= T``, ``S`` the sum of the weights
    and ``T`` that of the ``n_coef`` largest: up to ``1 + 1 / (2L - 1)``
    rows per coefficient with unit weights (3.6 for log-cosh at ``delta =
    1``, 2.2 for Huber at 1.35).
    """
    ls = problem.ls_objective
    weights = np.sort(ls.sample_weight[ls.sample_weight > 0])
    top = weights[-ls.n_coef :].sum()
    excess = 2.0 * problem.rho.z_psi_minus_rho_limit - 1.0
    return bool((weights.sum() - top) * excess <= top)


def _boundary_is_optimal(problem, residuals):
    r"""Whether the LAD fit with ``sigma = 0`` minimises the joint objective.

    ``F(w, sigma)`` is jointly convex, so the boundary point is optimal when
    its directional derivative is non-negative along every ``(d, s)`` with
    ``s > 0``. Scaling ``s = 1``, with ``Z`` the rows fitted exactly and
    ``L = sup (z psi - rho)``, ``c = psi(inf)``, the derivative is

    .. math::

        g(d) = \sum_{i \notin Z} s_i (1 - 2L - 2c\,\mathrm{sign}(r_i) x_i^\top d)
             + \sum_{i \in Z} s_i (1 + 2\rho(-x_i^\top d)).

    The LAD fit's optimality gives ``u_i`` in ``[-1, 1]`` with ``sum_{not
    Z} s_i sign(r_i) x_i + sum_Z s_i u_i x_i = 0``; with the ``x_i`` of ``Z``
    independent (an LP vertex), ``t_i = x_i' d`` are free and the minimum
    over each is ``-2 rho*(c u_i) = -2 chi(psi^{-1}(c u_i))`` (the convex
    conjugate of ``rho`` at ``psi(z)`` is ``z psi(z) - rho(z)``). So the
    boundary is optimal iff ``sum_{not Z} s_i (1 - 2L) + sum_Z s_i (1 - 2
    chi(psi^{-1}(c u_i))) >= 0``.
    """
    ls, rho = problem.ls_objective, problem.rho
    weight = ls.sample_weight
    exact = (np.abs(residuals) <= EXACT_FIT_TOL) & (weight > 0)
    limit = rho.z_psi_minus_rho_limit
    outside = weight @ np.where(exact | ~(weight > 0), 0.0, 1.0 - 2.0 * limit)
    if not exact.any():
        return bool(outside >= 0)
    signs = np.where(exact, 0.0, np.sign(residuals)) * weight
    design = ls.dense_design(exact)
    u = np.linalg.lstsq(
        design.T * weight[exact], -ls.design_rmatvec(signs), rcond=None
    )[0]
    u = np.clip(u, -1.0, 1.0)
    chi = _chi_at_psi_fraction(rho, np.abs(u))
    return bool(outside + weight[exact] @ (1.0 - 2.0 * chi) >= 0)


def interpolating_boundary(ls, rho):
    r"""The penalised joint fit at ``sigma = 0`` when it interpolates, or None.

    With a ridge ``P`` on the standardised coefficients ``c`` and at most as
    many rows (of positive weight) as coefficients, the joint objective's
    infimum can lie at ``sigma = 0`` with every row fitted exactly: the
    boundary objective is then ``c' P c / 2`` alone, minimal over the
    interpolants ``D c = y`` at the solution of

    .. math::

        egin{pmatrix} P & D^	op \ D & 0 \end{pmatrix}
        egin{pmatrix} c \ \lambda \end{pmatrix} =
        egin{pmatrix} 0 \ y \end{pmatrix}.

    It minimises the boundary's ``(2 / S) sum_i s_i c_rho |r_i| + c' P c / 2``
    (``c_rho = psi(inf)``) when the multipliers ``u_i = -lambda_i S / (2
    s_i)``, which make ``P c = (2 / S) D' (s u)``, stay in ``[-c_rho,
    c_rho]``; and leaving the boundary along ``(d, sigma)`` does not descend
    when ``sum_i s_i (1 - 2 chi(psi^{-1}(|u_i|))) >= 0``, the test of
    :func:`_boundary_is_optimal` with every row fitted exactly (the convex
    conjugate of ``rho`` at ``u_i`` bounds each row's change). Then the fit
    is that interpolant with ``sigma = 0``, which Newton's method only
    approaches, one unit of ``log sigma`` per step, for ``max_iter``
    iterations. ``ls`` is the least-squares objective of the fit's rows
    (standardised ``y`` and coordinates, its penalty the fit's).
    """
    rows = ls.sample_weight > 0
    design = ls.dense_design(rows)
    n_rows, n_coef = design.shape
    if n_rows > n_coef:
        return None
    # Solved for c = E e, E = P^-1/2 (1 where unpenalised), whose block P
    # is then the identity: a column of tiny spread weighs 1e12 or more in
    # P, and least squares on the system as it was dropped the other
    # columns' singular values with its cut-off, relative to that weight
    # (1e-5 off at a spread of 1e-6, no interpolant found at 1e-7).
    penalty = ls.penalty
    equilibrate = np.ones(n_coef)
    penalised = penalty > 0
    equilibrate[penalised] = 1.0 / np.sqrt(penalty[penalised])
    kkt = np.zeros((n_coef + n_rows, n_coef + n_rows))
    kkt[:n_coef, :n_coef] = np.diag(penalised.astype(float))
    kkt[:n_coef, n_coef:] = (design * equilibrate).T
    kkt[n_coef:, :n_coef] = design * equilibrate
    rhs = np.concatenate([np.zeros(n_coef), ls.y[rows]])
    solution = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
    coef, multipliers = solution[:n_coef] * equilibrate, solution[n_coef:]
    if not np.all(np.abs(design @ coef - ls.y[rows]) <= EXACT_FIT_TOL):
        return None  # no interpolant (the rows are not independent)
    weights = ls.sample_weight[rows]
    c = float(np.asarray(rho.derivative(np.array([min(rho.saturation, 1e300)])))[0])
    u = np.abs(multipliers) * ls.sum_weight / (2.0 * weights)
    if not np.all(u <= c):
        return None
    if not weights @ (1.0 - 2.0 * _chi_at_psi_fraction(rho, u / c)) >= 0:
        return None
    ((w, b),) = ls.unstandardize(coef)
    return ScaleFit(w, b, 0.0, True)


def _chi_at_psi_fraction(rho, fraction):
    """``chi(z)`` where ``psi(z) = fraction * psi(inf)``, by bisection on ``z >= 0``."""
    top = min(rho.saturation, 1e300)
    c = float(np.asarray(rho.derivative(np.array([top])))[0])
    limit = rho.z_psi_minus_rho_limit
    low, high = np.zeros_like(fraction), np.full_like(fraction, min(top, 1e6))
    target = fraction * c
    with np.errstate(over="ignore", under="ignore"):
        for _ in range(200):
            mid = 0.5 * (low + high)
            below = np.asarray(rho.derivative(mid)) < target
            low, high = np.where(below, mid, low), np.where(below, high, mid)
        chi = np.asarray(rho.z_psi_minus_rho(high), dtype=float)
    return np.where(fraction >= 1.0, limit, chi)


class ScaleSecant:
    """Safeguarded secant steps on ``g(sigma) = MAD(r(sigma)) / 0.6745 - sigma``.

    Once ``g`` has changed sign the root stays bracketed, and a secant step
    that leaves the bracket is replaced by a (geometric) bisection; before
    that, the plain fixed-point update of IRLS. The end of the bracket of
    the same sign is replaced (not min/max: ``g`` need not be monotone, and
    the bracket must keep a sign change inside). An unbracketed secant
    step must also stay positive: where ``g`` is steeper than ``-1`` (the
    scale collapsing, ``MAD ~ k sigma`` with ``k < 1``) it would cross zero,
    and the plain update is taken instead. Written once, for the MAD scale
    in memory and on Dask.
    """

    def __init__(self, tol, resolution=0.0):
        self.tol = tol
        # An absolute tolerance on the scale too: the MAD of residuals known
        # to their rounding only (see skrobust._scale_mad._MAD_RESOLUTION).
        self.resolution = resolution
        self.previous = None  # (scale, MAD) of the last fit
        self.low = self.high = None  # latest scales with g > 0 and g < 0
        # Whether the last secant step, unbracketed, went below a tenth of
        # the MAD: g(sigma) is then close to a line through the origin, as
        # when sigma -> 0 with more than half the rows fitted exactly.
        self.collapsing = False

    def step(self, scale, mad, fit_converged, bracket=True, proposal=None):
        """The next scale, or None when the fixed point has settled.

        ``mad`` is the normalised MAD of the residuals of the (converged,
        if ``fit_converged``) fixed-scale fit at ``scale``. Without
        ``bracket`` (a fit solved only roughly, whose ``g`` could have the
        wrong sign near the root) ``scale`` does not become an end of the
        bracket: a wrong end would keep the root out of it. ``proposal``,
        a better step than the secant's where the caller has one (the LAD
        scale's Newton step on ``g``), takes the secant's place under the
        same safeguards.
        """
        tol, gap = self.tol, mad - scale
        if abs(gap) <= max(tol * scale, self.resolution) and fit_converged:
            return None
        if not bracket:
            pass
        elif gap > 0:
            self.low = scale
        else:
            self.high = scale
        new_scale = self._secant_scale(scale, mad) if proposal is None else proposal
        low, high = self.low, self.high
        if low is not None and high is not None:
            width = max(tol * max(high, low), self.resolution)
            if abs(high - low) <= width and fit_converged:
                # The MAD jumps across sigma here (g has no zero, only a sign
                # change, where a residual crosses the median): the bracket
                # has closed on it.
                return None
            if not min(low, high) < new_scale < max(low, high):
                new_scale = float(np.sqrt(low * high))
        else:
            self.collapsing = not new_scale > _LAD_SMALLEST_STEP * mad
        if (low is None or high is None) and not (
            (new_scale - scale) * gap > 0 and new_scale > 0
        ):
            # No bracket yet: the root lies on the side g points to (g > 0
            # at small scales, < 0 at large ones); a secant step the other
            # way is noise from a non-monotone g, and one through zero
            # (g steeper than -1 while the scale collapses) is no scale.
            new_scale = mad
        self.previous = (scale, mad)
        return new_scale

    def forget(self):
        """Take the plain update next: the last fit is too rough for a secant."""
        self.previous = None

    def _secant_scale(self, scale, mad):
        """The secant step on ``g``; the plain update ``mad`` without a previous fit.

        (Measured: a secant on ``log MAD - log sigma`` in ``log sigma``,
        positive by construction, took 10% more fits over 50 problems.)
        """
        if self.previous is None:
            return mad
        previous_scale, previous_mad = self.previous
        gap, previous_gap = mad - scale, previous_mad - previous_scale
        if gap == previous_gap:
            return mad
        return scale - gap * (scale - previous_scale) / (gap - previous_gap)


def _residual_scale(ls_objective, objective, coef):
    """:func:`initial_scale` of the residuals of ``objective`` at ``coef``."""
    residuals = ls_objective.y - objective.raw_prediction(coef)[:, 0]
    return initial_scale(residuals, ls_objective.sample_weight)


def _newton_polish(problem, objective, coef, hessian=None, gradient=None):
    """``coef`` after one more Newton step, if that lowers the gradient; else ``coef``.

    The solvers stop on the gradient, ``max |g| <= tol``, which leaves the
    coefficients ``H^-1 g`` off: ``cond(H) tol``, 6e-8 relative on longley's
    collinear columns with log-cosh's small curvature in the tails. Newton's
    convergence is quadratic there, so one step on the Hessian at ``coef``
    leaves about ``cond(H) tol^2``. Only for the Newton solver, whose
    Hessian is small enough to factor. Given ``hessian``, the solve's
    latest (at ``coef``, or a step or a nearby scale away), up to
    ``_POLISH_CHORD_STEPS`` steps are taken on it, each shrinking the
    gradient by the relative change of the curvature since (about 1e-3:
    two reach rounding, 1e-16, as one fresh step does), and ``gradient``
    (the solve's, at ``coef``) saves the pass that finds it: a pass
    without Gram matrices per step, where forming the Hessian costs a pass
    of them. On a wide design the step comes from conjugate gradients
    preconditioned by ``hessian``
    (:func:`skrobust._preconditioned_newton.polish_direction`).
    """
    if problem.options.solver != "newton":
        return coef
    polished = _preconditioned_newton.polish_direction(objective, coef, hessian)
    chord = polished is None and hessian is not None
    if polished is not None:
        grad, direction = polished
    elif chord and not _preconditioned_newton.uses_products(objective):
        # The solve's latest Hessian, at or near coef: its step shrinks the
        # gradient by the (small) relative change of the curvature since,
        # and forming a Hessian here would cost a pass of a few Gram matrices.
        grad = objective.loss_gradient(coef)[1] if gradient is None else gradient
        direction = _linalg.cholesky_solve(np.asarray(hessian), -grad)
    else:
        chord = False
        _, grad, hess = objective.loss_gradient_hessian(coef)
        direction = _linalg.cholesky_solve(np.asarray(hess), -grad)
    gnorm = float(np.abs(grad).max(initial=0.0))
    if gnorm <= _POLISHED_GRADIENT * problem.options.tol:
        return coef
    for step in range(_POLISH_CHORD_STEPS if chord else 1):
        if step:
            direction = _linalg.cholesky_solve(np.asarray(hessian), -grad)
        if not gnorm > 0 or direction is None:
            break
        trial = coef + direction
        _, trial_grad = objective.loss_gradient(trial)
        trial_gnorm = float(np.abs(trial_grad).max(initial=0.0))
        if not trial_gnorm < gnorm:
            break
        converging = trial_gnorm < _CHORD_RATIO * gnorm
        coef, grad, gnorm = trial, trial_grad, trial_gnorm
        if not converging or gnorm <= _POLISHED_GRADIENT * problem.options.tol:
            break
    return coef
