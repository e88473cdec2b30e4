r"""Regression M-estimators with a residual scale, for any loss.

:class:`MEstimatorRegressor` wires declared parts together and computes
nothing itself: a residual function ``rho`` (:mod:`skrobust.losses`), a
scale strategy (:mod:`skrobust._scale`, :mod:`skrobust._scale_lad`), the starts
of :mod:`skrobust._base` and the solvers of :mod:`skrobust._solvers`.
:class:`HuberRegressor` and :class:`LogCoshRegressor` are this estimator
with their ``rho``.

The fit of one target column, in units standardised by the fit template
(:meth:`skrobust._base.RobustLinearRegressor.fit`):

1. least squares on (a subsample of) the rows; if it fits every weighted row
   exactly and there is no penalty, that is the robust fit too;
2. a few reweighted steps towards least absolute deviation, and the MAD of
   their residuals as the starting scale;
3. targets beyond ``_CLIP_SCALES`` scales of the start are moved to that
   distance when ``rho`` is linear there (the far-target guard);
4. the scale strategy's solve; the guard is undone if a moved row did not
   stay beyond the loss's saturation.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot

from . import _lockstep, _solvers
from ._base import (
    OUTLIER_THRESHOLD,
    RobustLinearRegressor,
    StandardisedFit,
    copy_budget,
    least_absolute_deviation_start,
    least_squares_start,
    mad_scale,
    total_weight,
)
from ._cov_mestimator import (
    COV_TYPES,
    FitResiduals,
    joint_fit_curvature,
    mestimator_covariance,
)
from ._inference import InferenceMixin, set_inference_attributes
from ._scale import (
    EXACT_FIT_TOL,
    FixedScale,
    JointScale,
    MProblem,
    initial_scale,
)
from ._scale_lad import LADScale
from ._scale_mad import MADScale
from .losses import FixedScaleLoss, HuberRho, SquaredRho, check_residual_function

# Targets further than this (in robust scales of y) from the start are moved
# to that distance for the solve (_clip_far_targets), and checked after it.
_CLIP_SCALES = 1e4

_SCALE_RULES = {"joint": JointScale, "mad": MADScale, "lad": LADScale}


def _is_exact_fit(residuals, sample_weight):
    return bool(np.all(np.abs(residuals[sample_weight > 0]) <= EXACT_FIT_TOL))


class MEstimatorRegressor(InferenceMixin, RobustLinearRegressor):
    r"""Linear regression M-estimator for any convex loss, with a residual scale.

    Minimises, over the coefficients ``w``, the intercept ``b`` and (with
    ``scale="joint"``) the residual scale :math:`\sigma > 0`,

    .. math::

        \sum_i s_i \, \sigma \left(1 + 2\rho\!\left(
            \frac{y_i - x_i^\top w - b}{\sigma}\right)\right)
        + \alpha \lVert w \rVert_2^2

    (Huber's jointly convex "proposal 2" in Owen's form), or with a fixed,
    MAD or LAD scale
    :math:`\sum_i s_i \sigma^2 \rho(r_i / \sigma) + \alpha \lVert w \rVert^2`.

    Parameters
    ----------
    rho : ResidualFunction or None, default=None
        The loss of a standardised residual: an instance of a
        :class:`skrobust.losses.ResidualFunction` subclass, which needs only
        ``value``, ``derivative`` and ``second_derivative``. ``None`` is
        Huber's with ``delta=1.35``.
    scale : {"joint", "mad", "lad"} or float, default="joint"
        How the residual scale is obtained: ``"joint"`` estimates it with the
        coefficients as one convex problem (defined when
        ``sup (z psi(z) - rho(z)) > 1/2``); ``"mad"`` is the fixed point of
        ``sigma = median(|r|) / 0.6745`` (R's ``MASS::rlm``, statsmodels
        ``RLM``); ``"lad"`` fixes it at the normalised MAD, about their
        median, of the residuals of a smoothed least-absolute-deviation fit
        (the absolute loss smoothed with a Gaussian kernel of bandwidth
        ``sigma / 2``: a fixed point in ``sigma``; the exact LAD fit's
        residuals with at most two rows per coefficient; see the user
        guide), which keeps the fit bounded up to half the targets wrong; a
        positive float fixes it, in the units of ``y``.
    alpha : float, default=0.0
        Strength of the squared L2 penalty on ``coef_``; must be
        non-negative. The default is no penalty, so that the fit is
        scale-equivariant.
    fit_intercept : bool, default=True
        Whether to fit an intercept.
    solver : {"auto", "newton", "lbfgs"}, default="auto"
        ``"newton"`` is scipy's trust-region Newton method on the analytic
        Hessian; ``"lbfgs"`` is scipy's L-BFGS-B on the analytic gradient,
        finished by Newton's method where it has not converged after 100
        iterations and a Hessian is affordable (rows times squared
        coefficients at most 4e9). ``"auto"`` uses Newton for up to 298
        features (300 coefficients) and L-BFGS beyond.
    max_iter : int, default=200
        Maximum number of solver iterations of the whole fit (subsample
        levels and, with ``scale="mad"``, every fixed-scale fit included);
        ``n_iter_ <= max_iter`` always. With ``scale="lad"`` the smoothed
        LAD fits that give the scale have a budget of ``max_iter``
        iterations of their own and are not counted, like the starts.
    tol : float, default=1e-10
        Convergence tolerance on the largest gradient entry of the objective
        divided by the sum of the weights, in standardised units.
    warm_start : bool, default=False
        Start from the previous solution (coefficients, intercept and scale)
        when refitting.
    cov_type : {"H1", "H2", "H3", "mass", "sandwich"} or None, default=None
        Standard errors to compute with the fit (``None``: none, and no
        extra cost). ``"H1"``, ``"H2"``, ``"H3"``: Huber's (1981) estimates
        for homoscedastic errors, as statsmodels ``RLM.fit(cov=...)``;
        ``"mass"``: R's ``MASS::summary.rlm``; ``"sandwich"``: the
        heteroscedasticity-robust sandwich (with ``scale="joint"`` from the
        joint estimating equations of coefficients and scale). Needs
        ``alpha=0``. See the user guide's Inference page.
    verbose : int, default=0
        0 prints nothing; 1 a line per output and per solve (rows,
        iterations, largest gradient entry, elapsed time); 2 also a line per
        solver iteration.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Coefficients.
    intercept_ : float or ndarray of shape (n_targets,)
        Intercept (0.0 if ``fit_intercept=False``).
    scale_ : float or ndarray of shape (n_targets,)
        The residual scale ``sigma`` the threshold is measured in, in the
        units of ``y``. With ``scale="mad"`` or ``"lad"`` it estimates the
        noise standard deviation at Gaussian noise; the joint scale does
        not (it settles near 0.68 standard deviations for Huber's loss
        with ``delta=1.35``): see ``noise_scale_``.
    noise_scale_ : float or ndarray of shape (n_targets,)
        A robust estimate of the noise standard deviation: the normalised
        MAD (about zero) of the weighted training residuals,
        ``median |r| / 0.6745``.
    outliers_ : ndarray of shape (n_samples,) or (n_samples, n_targets) of bool
        Training samples whose residual exceeds 2.5 ``noise_scale_`` (about
        1.2% of Gaussian noise, and every error beyond 10 noise standard
        deviations). scikit-learn's ``HuberRegressor`` flags
        ``|r| > epsilon * scale_`` instead, about a third of clean
        Gaussian rows at its defaults.
    weights_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        The IRLS weights ``psi(z) / z`` at the solution (``z = r /
        scale_``; 1 at ``z = 0``): the weights of the weighted least-squares
        problem the fit solves, as statsmodels' ``RLM.weights``.
    n_iter_ : int or ndarray of shape (n_targets,)
        Number of solver iterations (starts are not iterations; a warm start
        from the solution takes 0).
    cov_ : ndarray of shape (n_params, n_params) or (n_targets, n_params, n_params)
        Covariance of ``[intercept, coef...]`` (intercept first, as in R and
        statsmodels; only with ``cov_type``).
    coef_se_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Standard errors of ``coef_`` (only with ``cov_type``).
    intercept_se_ : float or ndarray of shape (n_targets,)
        Standard error of ``intercept_`` (only with ``cov_type`` and
        ``fit_intercept``).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column
        names.

    See Also
    --------
    HuberRegressor : This estimator with Huber's loss and its ``delta``.
    LogCoshRegressor : This estimator with the log-cosh loss.
    skrobust.losses.ResidualFunction : The protocol a loss follows.

    Notes
    -----
    These are M-estimators: robust to gross errors in ``y`` but not to
    high-leverage outliers in ``X``. A loss needs only its value and two
    derivatives; everything else a fit calls has a generic default on
    :class:`~skrobust.losses.ResidualFunction`.

    References
    ----------
    P. J. Huber and E. M. Ronchetti, *Robust Statistics*, 2nd ed., Wiley, 2009.

    A. B. Owen, "A robust hybrid of lasso and ridge regression", Contemporary
    Mathematics 443, 2007.

    Examples
    --------
    Fair's loss, written with its value and two derivatives:

    >>> import numpy as np
    >>> from skrobust import MEstimatorRegressor
    >>> from skrobust.losses import ResidualFunction
    >>> class FairRho(ResidualFunction):
    ...     def __init__(self, c=1.4):
    ...         self.c = c
    ...     def value(self, z):
    ...         a = np.abs(z) / self.c
    ...         return self.c**2 * (a - np.log1p(a))
    ...     def derivative(self, z):
    ...         return z / (1.0 + np.abs(z) / self.c)
    ...     def second_derivative(self, z):
    ...         return 1.0 / (1.0 + np.abs(z) / self.c) ** 2
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2))
    >>> y = X @ [1.0, -2.0] + 0.5 + 0.1 * rng.normal(size=200)
    >>> y[:20] += 50.0  # gross outliers
    >>> model = MEstimatorRegressor(FairRho(), scale="mad").fit(X, y)
    >>> np.round(model.coef_, 1)
    array([ 1., -2.])
    """

    _parameter_constraints: dict = {
        "rho": [HasMethods(["value", "derivative", "second_derivative"]), None],
        "scale": [
            StrOptions({"joint", "mad", "lad"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "solver": [StrOptions({"auto", "lbfgs", "newton"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "warm_start": ["boolean"],
        "cov_type": [None, StrOptions(set(COV_TYPES))],
        "verbose": ["verbose"],
    }

    _cov_types = COV_TYPES
    _per_sample_attributes = ("outliers_", "weights_")
    _lockstep_outputs = True

    def __init__(
        self,
        rho=None,
        *,
        scale="joint",
        alpha=0.0,
        fit_intercept=True,
        solver="auto",
        max_iter=200,
        tol=1e-10,
        warm_start=False,
        cov_type=None,
        verbose=0,
    ):
        self.rho = rho
        self.scale = scale
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.cov_type = cov_type
        self.verbose = verbose

    def _rho(self):
        """The residual function of this fit (subclasses build it from delta)."""
        return HuberRho(1.35) if self.rho is None else self.rho

    def _scale_rule(self):
        if isinstance(self.scale, str):
            return _SCALE_RULES[self.scale]()
        return FixedScale(self.scale)

    def _check_fit_parameters(self):
        """The loss follows the protocol and the scale option is defined for it."""
        rho = self._rho()
        if getattr(self, "rho", None) is not None:  # (built-ins: by their tests)
            check_residual_function(rho)
        self._scale_rule().check(rho)
        if self.cov_type is not None and self.alpha > 0:
            raise ValueError(
                f"cov_type={self.cov_type!r} needs alpha=0: the standard errors "
                "are those of the unpenalised M-estimator."
            )

    def _fit_standardised(self, X, y, sample_weight, y_scale, warm):
        """One target column's fit in standardised units (see the module)."""
        rho, scale_rule = self._rho(), self._scale_rule()
        # The public objective is a sum over samples plus alpha ||w||^2; in
        # standardised units it is (a multiple of) a weighted mean plus
        # l2 / 2 ||w||^2, with the multiple depending on how the loss scales.
        # (Written without y_scale**2, which overflows for |y| ~ 1e155.)
        l2 = 2.0 * self.alpha / total_weight(sample_weight)
        if scale_rule.l2_in_y_units:
            l2 *= y_scale
        ls_objective, start_objective, coef = least_squares_start(
            X,
            y,
            sample_weight,
            self.fit_intercept,
            l2,
            normal_equations=True,
            loose=True,
        )
        options = _solvers.SolverOptions(
            _solvers.choose_solver(self.solver, X.shape[1] + 2),
            self.max_iter,
            self.tol,
            convex=True,
        )
        problem = MProblem(
            ls_objective, rho, l2, self.fit_intercept, options, self.alpha, y_scale
        )
        if ls_objective.null_cache is not None:  # (what the start learnt)
            problem.null_cache = ls_objective.null_cache
        if warm is not None:
            coef = ls_objective.standardize([(warm.coef, warm.intercept)])
            scale = warm.extras["scale_"]
        else:
            if l2 == 0 and self._least_squares_is_exact(
                ls_objective, start_objective, coef
            ):
                return self._exact_fit(ls_objective, coef, scale_rule)
            coef = least_absolute_deviation_start(
                start_objective, coef, self.fit_intercept, l2, copy_budget(X)
            )
            residuals = start_objective.y - start_objective.raw_prediction(coef)[:, 0]
            scale = initial_scale(residuals, start_objective.sample_weight)
        fit = self._solve_guarded(problem, scale_rule, coef, scale, warm is None)
        if not fit.converged:
            _solvers.warn_not_converged(
                options.solver, problem.used[0], self.tol, fit.message
            )
        extras = {"scale_": fit.scale}
        fitted = (
            None if self.cov_type is not None else problem.fitted_rows(fit.w, fit.b)
        )
        if fitted is not None:
            # (Popped by _finish_output: never an attribute.)
            extras["_fitted"] = fitted
        if self.cov_type is not None and fit.curvature is not None:
            # The solver's last Hessian, for the standard errors (popped by
            # _finish_output: never an attribute).
            extras["_curvature"] = fit.curvature
        return StandardisedFit(fit.w, fit.b, problem.used[0], extras, converged=True)

    @staticmethod
    def _least_squares_is_exact(ls_objective, start_objective, coef):
        """Whether least squares fits every weighted row (on all rows)."""
        residuals = start_objective.y - start_objective.raw_prediction(coef)[:, 0]
        if not _is_exact_fit(residuals, start_objective.sample_weight):
            return False
        if start_objective is ls_objective:
            return True
        residuals = ls_objective.y - ls_objective.raw_prediction(coef)[:, 0]
        return _is_exact_fit(residuals, ls_objective.sample_weight)

    @staticmethod
    def _exact_fit(ls_objective, coef, scale_rule):
        """Least squares fits every weighted row: that is the robust fit too.

        Zero residuals minimise every ``rho`` term; the joint objective's
        infimum is then at ``sigma -> 0``, where its Hessian blows up and
        rounding would pick an arbitrary interpolant. The least-squares
        (minimum-norm) fit is the canonical answer, with ``scale_ = 0``
        (or the given scale). Only without a penalty: with one, the
        interpolant does not minimise the penalised objective.
        """
        ((w, b),) = ls_objective.unstandardize(coef)
        return StandardisedFit(w, b, 0, {"scale_": 0.0}, converged=True)

    def _solve_guarded(self, problem, scale_rule, coef, scale, guard):
        """The scale rule's solve, with far targets moved in when that is exact."""
        ls = problem.ls_objective
        clip = _clip_far_targets(ls, coef, problem.rho) if guard else None
        if clip is None:
            return scale_rule.solve(problem, coef, scale)
        y_clipped, far, sign = clip
        clipped = MProblem(
            problem.objective(
                FixedScaleLoss(SquaredRho()),
                [(None, self.fit_intercept)],
                [problem.l2],
                y=y_clipped,
            ),
            problem.rho,
            problem.l2,
            problem.fit_intercept,
            problem.options,
            problem.alpha,
            problem.y_scale,
            problem.used,
        )
        used = problem.used[0]
        fit = scale_rule.solve(clipped, coef, scale)
        residuals = y_clipped[far] - safe_sparse_dot(ls.X[far], fit.w) - fit.b
        if np.all(sign * residuals > problem.rho.saturation * fit.scale):
            return fit
        problem.used[0] = used  # the clipped solve does not count
        return scale_rule.solve(problem, coef, scale)

    def _unstandardise(self, fit, y_offset, y_scale):
        scale = self._scale_rule().report(fit.extras["scale_"], y_scale)
        fit.extras["scale_"] = float(scale)
        if "_curvature" in fit.extras:
            fit.extras["_curvature"] = (fit.extras["_curvature"], y_offset, y_scale)
        if "_fitted" in fit.extras:
            # (A new array: the objective's own is reused by its passes.)
            fit.extras["_fitted"] = fit.extras["_fitted"] * y_scale + y_offset
        return fit

    def _finish_output(self, fit, X, y, sample_weight):
        """Residual-based attributes of one output: noise scale, outliers, weights.

        With ``cov_type`` the residuals are formed in the covariance's pass
        over ``X`` (:class:`~skrobust._cov_mestimator.FitResiduals`).
        """
        scale = fit.extras["scale_"]
        solver_curvature = fit.extras.pop("_curvature", None)
        fitted = fit.extras.pop("_fitted", None)
        if fitted is not None:
            # The solver's last pass was at the fit (see MProblem.fitted_rows).
            residuals = y - fitted
        elif self.cov_type is not None:
            fitted = FitResiduals(X, y, fit.coef, fit.intercept)
            fit.extras["cov_"] = self._covariance(
                X, fitted, sample_weight, fit, solver_curvature
            )
            residuals = fitted.formed()
        else:
            residuals = y - _lockstep.design_dot(X, fit.coef) - fit.intercept
        noise = mad_scale(residuals, sample_weight)
        fit.extras["noise_scale_"] = noise
        fit.extras["outliers_"] = np.abs(residuals) > OUTLIER_THRESHOLD * noise
        fit.extras["weights_"] = _irls_weights(self._rho(), residuals, scale)
        return fit

    def _covariance(self, X, residuals, sample_weight, fit, solver_curvature):
        """``cov_`` of one output, from the solver's last Hessian where it can."""
        curvature = None
        if solver_curvature is not None:
            hessian, y_offset, y_scale = solver_curvature
            total = residuals.size if sample_weight is None else sample_weight.sum()
            curvature = joint_fit_curvature(
                hessian, fit.coef, fit.intercept, y_offset, y_scale, float(total)
            )
        return mestimator_covariance(
            X,
            residuals,
            sample_weight,
            self._rho(),
            fit.extras["scale_"],
            fit_intercept=self.fit_intercept,
            cov_type=self.cov_type,
            joint=self.scale == "joint",
            curvature=curvature,
        )

    def _set_fitted(self, fits, y_ndim):
        super()._set_fitted(fits, y_ndim)
        cov = self.cov_ if self.cov_type is not None else None
        set_inference_attributes(self, cov)

    def _warm_extras(self, k):
        return {"scale_": float(np.ravel(self.scale_)[k])}


def _irls_weights(rho, residuals, scale):
    """``psi(z) / z`` at ``z = r / scale`` (``rho''(0)`` at zero or scale 0)."""
    if not scale > 0:
        return np.ones_like(residuals)
    with np.errstate(over="ignore"):  # (a zero-weight row's residual can be huge)
        z = residuals / scale
    return rho.irls_weight(z)


def _clip_far_targets(ls_objective, coef, rho):
    """Targets beyond ``_CLIP_SCALES`` from the start, moved to that distance.

    Far beyond the loss's saturation a residual enters every scale option
    only through its sign (``psi`` and ``z psi - rho`` are constant there,
    to the last bit), so moving such a target changes neither the minimiser
    nor the scale equations. But the objective's value, a sum dominated by
    ``1e50``-sized outliers, would lose every digit that a trust region and
    a line search compare. Returns ``(y_clipped, rows, signs)``, or None if
    no target is that far, or if ``rho`` does not saturate within a
    thousandth of that distance (moving a target would then change the
    fit).

    With every ``|y|`` within half that distance (``y`` is standardised by
    robust statistics), only a start extrapolating thousands of scales could
    leave a residual that far, which would cost the objective a few digits,
    not all: the pass over ``X`` is skipped.
    """
    y = ls_objective.y
    if not np.max(np.abs(y), initial=0.0) > 0.5 * _CLIP_SCALES:
        return None
    if not rho.saturation < 0.5 * _CLIP_SCALES:
        return None
    fitted = ls_objective.raw_prediction(coef)[:, 0]
    residuals = y - fitted
    far = np.abs(residuals) > _CLIP_SCALES
    if not np.any(far):
        return None
    sign = np.sign(residuals[far])
    y_clipped = y.copy()
    # From the fitted value, not y - shift, which would cancel for 1e50.
    y_clipped[far] = fitted[far] + sign * _CLIP_SCALES
    return y_clipped, far, sign
