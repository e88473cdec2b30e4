"""Robust linear regressors with a scikit-learn API."""

from ._heteroscedastic import HeteroscedasticRegressor
from ._huber import HuberRegressor
from ._logcosh import LogCoshRegressor

__all__ = ["HuberRegressor", "LogCoshRegressor", "HeteroscedasticRegressor"]
__version__ = "0.1.0.dev0"
