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
a positive float
    fixed: ``sum_i s_i sigma^2 rho(r_i / sigma) + alpha ||w||^2``.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from . import _solvers
from ._base import RobustLinearRegressor, mad_scale, target_offset_scale
from ._objective import LinearObjective
from .losses import ConcomitantScaleLoss, FixedScaleLoss

# Below this (relative to the spread of y) a scale counts as a perfect fit.
_MIN_RELATIVE_SCALE = 1e-12


class ScaledMEstimator(RobustLinearRegressor):
    """Fit template of the M-estimators; subclasses only name their ``rho``."""

    _parameter_constraints: dict = {
        "delta": [Interval(Real, 0, None, closed="neither")],
        "scale": [
            StrOptions({"joint", "mad"}),
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
        S = sample_weight.sum()
        rho = self._rho()
        solver = _solvers.choose_solver(self.solver, X.shape[1] + 2)
        # The public objective is a sum over samples plus alpha ||w||^2; in
        # standardised units it is (a multiple of) a weighted mean plus
        # l2 / 2 ||w||^2, with the multiple depending on how the loss scales.
        loss_units = y_scale if self.scale == "joint" else y_scale**2
        l2 = 2.0 * self.alpha * y_scale**2 / (loss_units * S)

        ls_objective, coef = self._least_squares_start(
            X, y_std, sample_weight, self.fit_intercept, l2
        )
        stats = ls_objective.column_stats
        warm = self._warm_params(X, y_offset, y_scale)
        if warm is not None:
            coef = ls_objective.standardize([warm[:2]])
        residuals = y_std - ls_objective.raw_prediction(coef)[:, 0]

        if self.scale == "joint":
            scale = (
                warm[2]
                if warm is not None
                else self._initial_scale(residuals, sample_weight)
            )
            objective = LinearObjective(
                ConcomitantScaleLoss(rho),
                X,
                y_std,
                sample_weight,
                [(None, self.fit_intercept), ((), True)],
                [l2, 0.0],
                column_stats=stats,
            )
            result = _solvers.minimize(
                objective,
                np.append(coef, np.log(scale)),
                solver,
                self.max_iter,
                self.tol,
            )
            (w, b), (_, log_scale) = objective.unstandardize(result.coef)
            scale = float(np.exp(log_scale))
            n_iter = result.n_iter
        elif self.scale == "mad":
            w, b, scale, n_iter = self._fit_mad_scale(
                X, y_std, sample_weight, rho, l2, coef, residuals, stats, solver
            )
        else:
            scale = float(self.scale) / y_scale
            objective = LinearObjective(
                FixedScaleLoss(rho, scale),
                X,
                y_std,
                sample_weight,
                [(None, self.fit_intercept)],
                [l2],
                column_stats=stats,
            )
            result = _solvers.minimize(objective, coef, solver, self.max_iter, self.tol)
            ((w, b),) = objective.unstandardize(result.coef)
            n_iter = result.n_iter

        self._set_linear_coef(w * y_scale, b * y_scale + y_offset)
        self.scale_ = scale * y_scale
        # The least-squares start counts as the first iteration.
        self.n_iter_ = n_iter + 1
        abs_residuals = np.abs(y - self.predict(X))
        self.outliers_ = abs_residuals > self.delta * self.scale_
        return self

    @staticmethod
    def _initial_scale(residuals, sample_weight):
        scale = mad_scale(residuals, sample_weight)
        if not scale > _MIN_RELATIVE_SCALE:
            # More than half the residuals are zero: use their root mean
            # square, or a tiny scale for a perfect fit.
            rms = np.sqrt(sample_weight @ residuals**2 / sample_weight.sum())
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

    def _fit_mad_scale(
        self, X, y, sample_weight, rho, l2, coef, residuals, stats, solver
    ):
        """Alternate an exact fixed-scale fit and ``sigma = MAD(r) / 0.6745``.

        Each fit is warm-started from the previous one, so after the first
        only a few Newton steps are needed. Stops when the scale changes by
        less than ``tol`` relative and the last fit converged.
        """
        scale = self._initial_scale(residuals, sample_weight)
        n_iter = 0
        result = None
        for _ in range(self.max_iter):
            objective = LinearObjective(
                FixedScaleLoss(rho, scale),
                X,
                y,
                sample_weight,
                [(None, self.fit_intercept)],
                [l2],
                column_stats=stats,
            )
            result = _solvers.minimize(
                objective, coef, solver, self.max_iter, self.tol, warn=False
            )
            coef = result.coef
            n_iter += result.n_iter
            residuals = y - objective.raw_prediction(coef)[:, 0]
            new_scale = self._initial_scale(residuals, sample_weight)
            converged = abs(new_scale - scale) <= self.tol * scale
            scale = new_scale
            if converged and result.converged:
                break
        else:
            _solvers.warn_not_converged(
                "mad", n_iter, self.tol, "the MAD scale fixed point did not settle"
            )
        # scale is the MAD of the final residuals, as statsmodels reports it.
        ((w, b),) = objective.unstandardize(coef)
        return w, b, scale, n_iter
