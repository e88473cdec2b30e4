"""Validation, target standardisation and prediction shared by every estimator."""

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._objective import LinearObjective
from .losses import FixedScaleLoss, SquaredRho

# The MAD of a standard normal sample: MAD / 0.6745 estimates its standard
# deviation (the constant of R's mad() and statsmodels.robust.scale.mad).
MAD_NORMAL_CONSTANT = 0.6744897501960817

_ACCEPT_SPARSE = ("csr", "csc")


def weighted_median(values, weights=None):
    """Median of ``values`` with non-negative ``weights``.

    With integer weights it equals ``np.median`` of the values repeated
    that many times (the mean of the two middle values when the total weight
    is even), so weights and repeated rows give the same fit.
    """
    if weights is None or np.all(weights == weights[0]):
        return float(np.median(values))
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    half = 0.5 * cum[-1]
    i = int(np.searchsorted(cum, half))
    if cum[i] == half:
        # Exactly half the weight is at or below v[i]: average with the next
        # value that carries weight.
        following = np.flatnonzero(w[i + 1 :] > 0)
        if following.size:
            return 0.5 * (v[i] + v[i + 1 + following[0]])
    return float(v[i])


def mad_scale(residuals, weights=None):
    """``median(|r|) / 0.6745``: the normalised MAD about zero, as in ``MASS::rlm``."""
    return weighted_median(np.abs(residuals), weights) / MAD_NORMAL_CONSTANT


def target_offset_scale(y, sample_weight, fit_intercept):
    """An offset and a positive scale that standardise ``y`` for the solver.

    Minimisers are equivariant, so this changes nothing but the conditioning;
    it is computed without squaring ``y`` so that ``|y|`` up to ``1e300``
    does not overflow.
    """
    S = sample_weight.sum()
    offset = float(sample_weight @ y / S) if fit_intercept else 0.0
    if not np.isfinite(offset):  # sum overflowed: average scaled values
        ymax = np.max(np.abs(y))
        offset = float(sample_weight @ (y / ymax) / S) * ymax
    dev = y - offset
    dmax = float(np.max(np.abs(dev)))
    if not dmax > 0:
        return offset, 1.0 if offset == 0 else abs(offset)
    scaled = dev / dmax
    scale = dmax * float(np.sqrt(sample_weight @ (scaled * scaled) / S))
    return offset, scale if scale > 0 else dmax


class RobustLinearRegressor(RegressorMixin, BaseEstimator):
    """Shared machinery of skrobust's linear estimators.

    Subclasses implement ``fit`` from the pieces here: ``_validate_fit_data``,
    ``_least_squares_start`` and ``_set_linear_coef``; ``predict`` is
    ``X @ coef_ + intercept_``.
    """

    def _validate_fit_data(self, X, y, sample_weight):
        """Check parameters and data; never copies a valid X."""
        self._validate_params()
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=_ACCEPT_SPARSE,
            dtype="numeric",
            y_numeric=True,
        )
        if X.dtype.kind not in "biuf":
            # dtype="numeric" keeps e.g. float16; complex never reaches here.
            raise ValueError(f"X has unsupported dtype {X.dtype}")
        y = np.asarray(y, dtype=np.float64)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if not sample_weight.sum() > 0:
            raise ValueError("sample_weight must have a positive sum.")
        return X, y, sample_weight

    @staticmethod
    def _least_squares_start(X, y, sample_weight, fit_intercept, l2, column_stats=None):
        """Weighted (ridge) least squares in the objective's standardised coordinates.

        One pass over ``X`` forms the normal equations; ``lstsq`` handles
        collinear columns.
        """
        objective = LinearObjective(
            FixedScaleLoss(SquaredRho()),
            X,
            y,
            sample_weight,
            [(None, fit_intercept)],
            [l2],
            column_stats=column_stats,
        )
        n_coef = objective.n_coef
        _, grad, hess = objective.loss_gradient_hessian(np.zeros(n_coef))
        coef = np.linalg.lstsq(hess, -grad, rcond=None)[0]
        return objective, coef

    def _set_linear_coef(self, w, b):
        self.coef_ = np.asarray(w, dtype=np.float64)
        self.intercept_ = float(b)

    def predict(self, X):
        """Predict with the fitted linear model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``X @ coef_ + intercept_``.
        """
        check_is_fitted(self)
        X = validate_data(
            self, X, accept_sparse=_ACCEPT_SPARSE, dtype="numeric", reset=False
        )
        return safe_sparse_dot(X, self.coef_) + self.intercept_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
