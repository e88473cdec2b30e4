"""Robust linear regressors with a scikit-learn API."""

from ._heteroscedastic import HeteroscedasticRegressor
from ._huber import HuberRegressor
from ._logcosh import LogCoshRegressor
from ._mestimator import MEstimatorRegressor
from ._multiquantile import MultiQuantileRegressor
from ._quantile import QuantileRegressor

__all__ = [
    "HuberRegressor",
    "LogCoshRegressor",
    "MEstimatorRegressor",
    "MultiQuantileRegressor",
    "HeteroscedasticRegressor",
    "QuantileRegressor",
]
__version__ = "0.1.0.dev0"
