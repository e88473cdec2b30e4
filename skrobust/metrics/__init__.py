"""Metrics and scorers for the losses skrobust fits.

Every metric follows scikit-learn's conventions, ``metric(y_true, y_pred,
*, sample_weight=None, multioutput="uniform_average")``, and also takes
``reduction="mean" | "sum" | "none"`` (PyTorch's convention) to combine
samples: ``"none"`` returns the per-sample values, to see which rows drive a
loss.

* Point losses: :func:`mean_huber_loss`, :func:`mean_smooth_l1_loss`,
  :func:`mean_log_cosh_error`, :func:`mean_pinball_loss`,
  :func:`root_mean_squared_error`. The Huber, smooth-L1 and log-cosh values
  come from the residual functions of :mod:`skrobust.losses` that the
  estimators minimise.
* Predictive distributions: :func:`gaussian_nll`, :func:`crps_gaussian`.
* Prediction intervals: :func:`interval_coverage`,
  :func:`mean_interval_width`, :func:`interval_score`.
* Scorers for ``GridSearchCV(scoring=...)`` and ``cross_validate``:
  :func:`get_scorer` (by name, e.g. ``"neg_mean_huber_loss"``,
  ``"neg_gaussian_nll"``, ``"neg_interval_score"``) and the factories
  :func:`make_huber_scorer`, :func:`make_log_cosh_scorer`,
  :func:`make_pinball_scorer`, :func:`make_interval_scorer`.
"""

from ._distribution import crps_gaussian, gaussian_nll
from ._interval import interval_coverage, interval_score, mean_interval_width
from ._point import (
    mean_huber_loss,
    mean_log_cosh_error,
    mean_pinball_loss,
    mean_smooth_l1_loss,
    root_mean_squared_error,
)
from ._scorer import (
    get_scorer,
    get_scorer_names,
    make_huber_scorer,
    make_interval_scorer,
    make_log_cosh_scorer,
    make_pinball_scorer,
)

__all__ = [
    "mean_huber_loss",
    "mean_smooth_l1_loss",
    "mean_log_cosh_error",
    "mean_pinball_loss",
    "root_mean_squared_error",
    "gaussian_nll",
    "crps_gaussian",
    "interval_coverage",
    "mean_interval_width",
    "interval_score",
    "get_scorer",
    "get_scorer_names",
    "make_huber_scorer",
    "make_log_cosh_scorer",
    "make_pinball_scorer",
    "make_interval_scorer",
]
