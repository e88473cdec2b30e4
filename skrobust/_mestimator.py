"""Regression M-estimators with a residual scale: the fit Huber and log-cosh share.

Given a residual function ``rho`` (:mod:`skrobust.losses`), the threshold
``delta`` is measured in units of a residual scale ``sigma``, which makes
the fit equivariant: ``y * c`` gives ``coef_ * c``. The scale is

``"joint"``
    estimated together with the coefficients by minimising the jointly convex
    concomitant objective ``sum_i s_i sigma (1 + 2 rho(r_i / sigma)) +
    alpha ||w||^2`` (Huber's proposal 2 in Owen's form; with Huber's ``rho``
    exactly scikit-learn's ``HuberRegressor`` objective);
``"mad"``
    the fixed point of ``sigma = median(|r|) / 0.6745`` with ``coef``
    minimising ``sum_i s_i sigma^2 rho(r_i / sigma) + alpha ||w||^2``: the
    estimate that iteratively reweighted least squares converges to in R's
    ``MASS::rlm`` and statsmodels' ``RLM`` (default ``scale_est="mad"``);
``"lad"``
    the normalised MAD of the exact least-absolute-deviation fit's
    residuals, then held fixed (an M-estimate with a preliminary
    high-breakdown scale: bounded up to half the targets wrong, where the
    ``"mad"`` fixed point moves with one-sided outliers beyond ~30%);
a positive float
    fixed: ``sum_i s_i sigma^2 rho(r_i / sigma) + alpha ||w||^2``.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot

from . import _solvers
from ._base import (
    RobustLinearRegressor,
    copy_budget,
    mad_scale,
    target_offset_scale,
    total_weight,
)
from ._objective import LinearObjective
from ._quantile_exact import solve_exact
from .losses import ConcomitantScaleLoss, FixedScaleLoss, SquaredRho

# Below this (relative to the spread of y) a scale counts as a perfect fit.
_MIN_RELATIVE_SCALE = 1e-12

# Targets further than this (in robust scales of y) from the start are moved
# to that distance for the solve (_clip_far_targets), and checked after it.
_CLIP_SCALES = 1e4

# A joint scale below this (relative to the spread of y) may be collapsing to
# zero: _collapsed_scale_fit checks, and solves the boundary problem.
_COLLAPSED_SCALE = 1e-5

# Least-squares residuals below this (relative to the spread of y) on every
# weighted row make the fit exact; normal equations leave ~1e-13 of rounding.
_EXACT_FIT_TOL = 1e-9


def _is_exact_fit(residuals, sample_weight):
    return bool(np.all(np.abs(residuals[sample_weight > 0]) <= _EXACT_FIT_TOL))


class ScaledMEstimator(RobustLinearRegressor):
    """Fit template of the M-estimators; subclasses only name their ``rho``."""

    _parameter_constraints: dict = {
        "delta": [Interval(Real, 0, None, closed="neither")],
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
    }

    def _rho(self):
        raise NotImplementedError

    def _check_joint_scale_exists(self):
        """The joint objective has a positive scale only if ``sup 2(z psi - rho) > 1``.

        Its derivative in ``sigma`` is ``sum_i s_i (1 - 2 (z_i psi(z_i) -
        rho(z_i)))``, and ``z psi - rho`` is at most ``delta**2 / 2`` for
        Huber and ``delta**2 log 2`` for log-cosh: for smaller ``delta`` the
        objective decreases all the way to ``sigma = 0`` (why scikit-learn
        requires ``epsilon >= 1``). Subclasses give the bound in
        ``_min_joint_delta``.
        """
        if not self.delta > self._min_joint_delta():
            raise ValueError(
                f"delta={self.delta!r} is too small for scale='joint': the joint "
                f"objective then has no positive scale (it needs delta > "
                f"{self._min_joint_delta():.4g}). Use a larger delta, or "
                "scale='mad' or a fixed scale."
            )

    def fit(self, X, y, sample_weight=None):
        """Fit the model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Not copied: any real dtype, dense or sparse
            (CSR, CSC), is read as it is.
        y : array-like of shape (n_samples,)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; integer weights are equivalent to repeated
            rows.

        Returns
        -------
        object
            The fitted estimator.
        """
        X, y, sample_weight = self._validate_fit_data(X, y, sample_weight)
        y_offset, y_scale = target_offset_scale(y, sample_weight, self.fit_intercept)
        y_std = (y - y_offset) / y_scale
        S = total_weight(sample_weight)
        rho = self._rho()
        if self.scale == "joint":
            self._check_joint_scale_exists()
        solver = _solvers.choose_solver(self.solver, X.shape[1] + 2)
        # The public objective is a sum over samples plus alpha ||w||^2; in
        # standardised units it is (a multiple of) a weighted mean plus
        # l2 / 2 ||w||^2, with the multiple depending on how the loss scales.
        # (Written without y_scale**2, which overflows for |y| ~ 1e155.)
        l2 = 2.0 * self.alpha / S * (y_scale if self.scale == "joint" else 1.0)

        ls_objective, start_objective, coef = self._least_squares_start(
            X, y_std, sample_weight, self.fit_intercept, l2
        )
        warm = self._warm_params(X, y_offset, y_scale)
        if warm is not None:
            coef = ls_objective.standardize([warm[:2]])
            scale = warm[2]
        else:
            residuals = start_objective.y - start_objective.raw_prediction(coef)[:, 0]
            if _is_exact_fit(residuals, start_objective.sample_weight) and (
                start_objective is ls_objective
                or _is_exact_fit(
                    y_std - ls_objective.raw_prediction(coef)[:, 0], sample_weight
                )
            ):
                return self._set_exact_fit(ls_objective, coef, y_offset, y_scale, X)
            coef = self._least_absolute_deviation_start(
                start_objective, coef, self.fit_intercept, l2, copy_budget(X)
            )
            residuals = start_objective.y - start_objective.raw_prediction(coef)[:, 0]
            scale = self._initial_scale(residuals, start_objective.sample_weight)

        clip = (
            None
            if warm is not None
            else self._clip_far_targets(ls_objective, y_std, coef)
        )

        def solve(objective):
            return self._solve(objective, rho, l2, coef, scale, solver, y_scale)

        if clip is not None:
            y_clipped, far, sign = clip
            clipped_objective = LinearObjective(
                FixedScaleLoss(SquaredRho()),
                X,
                y_clipped,
                sample_weight,
                [(None, self.fit_intercept)],
                [l2],
                column_stats=ls_objective.column_stats,
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                w, b, fitted_scale, n_iter = solve(clipped_objective)
            if self._still_saturated(X, y_clipped, far, sign, w, b, fitted_scale, rho):
                for warning in caught:
                    warnings.warn_explicit(
                        warning.message,
                        warning.category,
                        warning.filename,
                        warning.lineno,
                    )
            else:
                clip = None
        if clip is None:
            w, b, fitted_scale, n_iter = solve(ls_objective)
        scale = fitted_scale

        self._set_linear_coef(w * y_scale, b * y_scale + y_offset)
        # A fixed scale is reported as given, not as rounded through y_scale.
        self.scale_ = (
            scale * y_scale if isinstance(self.scale, str) else float(self.scale)
        )
        # The least-squares start counts as the first iteration.
        self.n_iter_ = n_iter + 1
        abs_residuals = np.abs(y - safe_sparse_dot(X, self.coef_) - self.intercept_)
        self.outliers_ = abs_residuals > self.delta * self.scale_
        return self

    def _collapsed_scale_fit(self, X, y, sample_weight, rho, w, b, scale, converged):
        """The joint fit when its scale tends to zero: least absolute deviation.

        As ``sigma -> 0``, ``sigma (1 + 2 rho(r / sigma)) -> 2 delta |r|``
        for Huber and log-cosh alike, so on that boundary the coefficients
        minimise the weighted L1 loss, solved exactly by linear programming.
        ``sigma = 0`` is the optimum when the objective does not decrease as
        ``sigma`` leaves it: ``sum_i s_i (1 - c [r_i != 0]) >= 0`` with
        ``c = 2 sup (z psi - rho)`` (``delta^2`` for Huber), i.e. when enough
        rows are fitted exactly. Newton's method only approaches this
        boundary (one unit of ``log sigma`` per step, in a stiffening
        problem), so it is solved here instead; if the boundary is not
        optimal, Newton's point and convergence stand. Returns ``(w, b,
        scale, converged)``.
        """
        w_lad, b_lad, _ = solve_exact(
            X, y, 0.5, sample_weight, 0.0, self.fit_intercept, w, b
        )
        residuals = y - safe_sparse_dot(X, w_lad) - b_lad
        exact = np.abs(residuals) <= _EXACT_FIT_TOL
        c = 2.0 * float(rho.z_psi_minus_rho(np.array([1e300]))[0])
        boundary_optimal = sample_weight @ np.where(exact, 1.0, 1.0 - c) >= 0
        if boundary_optimal:
            return w_lad, b_lad, 0.0, True
        return w, b, scale, converged

    def _lad_scale(self, ls_objective, X, y, sample_weight, coef):
        """The exact least-absolute-deviation fit and its residuals' MAD scale.

        Both resist up to half the targets being arbitrarily wrong, so the
        fixed-scale fit that follows (a convex problem with bounded
        influence) stays bounded up to that fraction too. Returns the LAD
        coefficients in ``ls_objective``'s coordinates (the start) and the
        scale.
        """
        ((w, b),) = ls_objective.unstandardize(coef)
        w, b, _ = solve_exact(X, y, 0.5, sample_weight, 0.0, self.fit_intercept, w, b)
        residuals = y - safe_sparse_dot(X, w) - b
        return ls_objective.standardize([(w, b)]), self._initial_scale(
            residuals, sample_weight
        )

    def _set_exact_fit(self, ls_objective, coef, y_offset, y_scale, X):
        """Least squares fits every weighted row: that is the robust fit too.

        Zero residuals minimise every ``rho`` term; the joint objective's
        infimum is then at ``sigma -> 0``, where its Hessian blows up and
        rounding would pick an arbitrary interpolant. The least-squares
        (minimum-norm) fit is the canonical answer, with ``scale_ = 0``.
        """
        ((w, b),) = ls_objective.unstandardize(coef)
        self._set_linear_coef(w * y_scale, b * y_scale + y_offset)
        self.scale_ = 0.0 if isinstance(self.scale, str) else float(self.scale)
        self.n_iter_ = 1
        self.outliers_ = np.zeros(X.shape[0], dtype=bool)
        return self

    def _solve(self, ls_objective, rho, l2, coef, scale, solver, y_scale):
        """Coefficients and scale from a start, in standardised units.

        ``ls_objective`` carries the data (``X``, the standardised ``y`` and
        the weights, scaled to a largest of 1, which changes none of the fits
        below). Returns ``(w, b, scale, n_iter)``.
        """
        X, y_std = ls_objective.X, ls_objective.y
        sample_weight = ls_objective.sample_weight
        if self.scale == "mad":
            coef, scale, n_iter, _ = self._fit_mad_scale(
                ls_objective, rho, l2, coef, scale, solver
            )
            ((w, b),) = ls_objective.unstandardize(coef)
        else:
            if self.scale == "joint":
                loss = ConcomitantScaleLoss(rho)
                predictors, penalties = (
                    [(None, self.fit_intercept), ((), True)],
                    [l2, 0.0],
                )
                coef = np.append(coef, np.log(scale))
            else:
                if self.scale == "lad":
                    coef, scale = self._lad_scale(
                        ls_objective, X, y_std, sample_weight, coef
                    )
                else:
                    scale = float(self.scale) / y_scale
                loss = FixedScaleLoss(rho, scale)
                predictors, penalties = [(None, self.fit_intercept)], [l2]
            objective = LinearObjective(
                loss,
                X,
                y_std,
                sample_weight,
                predictors,
                penalties,
                column_stats=ls_objective.column_stats,
            )
            result = _solvers.minimize(
                objective, coef, solver, self.max_iter, self.tol, warn=False
            )
            (w, b), *concomitant = objective.unstandardize(result.coef)
            n_iter = result.n_iter
            converged = result.converged
            if concomitant:
                scale = float(np.exp(concomitant[0][1]))
                if scale < _COLLAPSED_SCALE and self.alpha == 0:
                    w, b, scale, converged = self._collapsed_scale_fit(
                        X, y_std, sample_weight, rho, w, b, scale, converged
                    )
            if not converged:
                _solvers.warn_not_converged(solver, n_iter, self.tol, result.message)

        return w, b, scale, n_iter

    def _clip_far_targets(self, ls_objective, y, coef):
        """Targets beyond ``_CLIP_SCALES`` from the start, moved to that distance.

        Far beyond the threshold a residual enters every scale option only
        through its sign (``psi`` and ``z psi - rho`` are constant there, to
        the last bit), so moving such a target changes neither the
        minimiser nor the scale equations. But the objective's value, a sum
        dominated by ``1e50``-sized outliers, would lose every digit that a
        trust region and a line search compare. Returns ``(y_clipped, rows,
        signs)``, or None if no target is that far.

        With every ``|y|`` within half that distance (``y`` is standardised
        by robust statistics), only a start extrapolating thousands of
        scales could leave a residual that far, which would cost the
        objective a few digits, not all: the pass over ``X`` is skipped.
        """
        if not np.max(np.abs(y), initial=0.0) > 0.5 * _CLIP_SCALES:
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

    @staticmethod
    def _still_saturated(X, y, far, sign, w, b, scale, rho):
        """Whether every moved row stayed on its side, beyond rho's saturation."""
        residuals = y[far] - safe_sparse_dot(X[far], w) - b
        return bool(np.all(sign * residuals > rho.saturation * scale))

    @staticmethod
    def _initial_scale(residuals, sample_weight):
        scale = mad_scale(residuals, sample_weight)
        if not scale > _MIN_RELATIVE_SCALE:
            # More than half the residuals are zero: use their root mean
            # square, or a tiny scale for a perfect fit.
            top = float(np.max(np.abs(residuals)))
            if top > 0:
                rel = residuals / top
                rms = top * np.sqrt(np.average(rel * rel, weights=sample_weight))
            else:
                rms = 0.0
            scale = max(float(rms), _MIN_RELATIVE_SCALE)
        return scale

    def _warm_params(self, X, y_offset, y_scale):
        """``(w, b, scale)`` of the previous fit in standardised y units, or None."""
        if not (self.warm_start and hasattr(self, "coef_")):
            return None
        if self.coef_.shape != (X.shape[1],):
            return None
        b = (self.intercept_ - y_offset) / y_scale if self.fit_intercept else 0.0
        return self.coef_ / y_scale, b, self.scale_ / y_scale

    def _fit_mad_scale(self, ls_objective, rho, l2, coef, scale, solver):
        """The fixed point ``sigma = MAD(r(sigma)) / 0.6745``, ``r`` from an exact fit.

        Each fixed-scale fit is exact and warm-started from the previous one.
        The scale equation ``g(sigma) = MAD(r(sigma)) / 0.6745 - sigma = 0``
        is one-dimensional and continuous, so safeguarded secant steps
        settle it in a few fits where the fixed-point iteration of IRLS
        needs dozens, and a bracket keeps them from bouncing where ``g`` is
        flat. Large problems first solve it on a strided subsample. Stops
        when the scale changes by less than ``tol`` relative and the last fit
        converged; returns ``(coef, scale, n_iter, hessian)``, ``scale`` the
        MAD of the final residuals as statsmodels reports it, ``hessian`` the
        last fit's (None if it formed none).
        """
        n_iter = 0
        # Each fit starts Newton's method from the previous fit's Hessian
        # (the first from the subsample's): the scale changes little.
        hessian, origin = None, "stale"
        if (
            ls_objective.n_samples >= _solvers.SUBSAMPLE_MIN_ROWS
            and ls_objective.n_samples
            >= _solvers.SUBSAMPLE_MIN_ROWS_PER_COEF * ls_objective.n_coef
        ):
            sub = ls_objective.subsample(_solvers.SUBSAMPLE_STEP)
            if sub.sum_weight > 0:
                coef, scale, _, hessian = self._fit_mad_scale(
                    sub, rho, l2, coef, scale, solver
                )
                origin = "subsample"
        X, y, sample_weight = ls_objective.X, ls_objective.y, ls_objective.sample_weight
        previous = None  # (scale, g(scale)) of the last fit, for the secant
        low = high = None  # the latest scales with g > 0 and with g < 0
        for _ in range(self.max_iter):
            objective = LinearObjective(
                FixedScaleLoss(rho, scale),
                X,
                y,
                sample_weight,
                [(None, self.fit_intercept)],
                [l2],
                column_stats=ls_objective.column_stats,
            )
            result = _solvers.minimize(
                objective,
                coef,
                solver,
                self.max_iter,
                self.tol,
                warn=False,
                multilevel=False,
                hessian=hessian,
                hessian_origin=origin,
            )
            coef = result.coef
            if result.hessian is not None:
                hessian, origin = result.hessian, "stale"
            n_iter += result.n_iter
            residuals = y - objective.raw_prediction(coef)[:, 0]
            mad = self._initial_scale(residuals, sample_weight)
            if abs(mad - scale) <= self.tol * scale and result.converged:
                return coef, mad, n_iter, hessian
            gap = mad - scale
            # Safeguarded secant on g(sigma) = MAD(r(sigma)) / 0.6745 - sigma:
            # once g has changed sign, keep the root bracketed and bisect
            # (geometrically) whenever the secant step leaves the bracket;
            # before that, the plain fixed-point update of IRLS.
            # Replace the end of the same sign (not min/max: g need not be
            # monotone, and the bracket must keep a sign change inside).
            if gap > 0:
                low = scale
            else:
                high = scale
            new_scale = mad
            if previous is not None and gap != previous[1]:
                new_scale = scale - gap * (scale - previous[0]) / (gap - previous[1])
            if low is not None and high is not None:
                if abs(high - low) <= self.tol * max(high, low) and result.converged:
                    # The MAD jumps across sigma here (g has no zero, only a
                    # sign change, where a residual crosses the median):
                    # the bracket has closed on it.
                    return coef, mad, n_iter, hessian
                if not min(low, high) < new_scale < max(low, high):
                    new_scale = float(np.sqrt(low * high))
            elif not (new_scale - scale) * gap > 0:
                # No bracket yet: the root lies on the side g points to (g > 0
                # at small scales, < 0 at large ones); a secant step the other
                # way is noise from a non-monotone g.
                new_scale = mad
            previous = (scale, gap)
            scale = new_scale
        _solvers.warn_not_converged(
            "mad", n_iter, self.tol, "the MAD scale fixed point did not settle"
        )
        return coef, mad, n_iter, hessian
