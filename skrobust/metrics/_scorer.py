"""Scorers: the metrics as ``scoring=`` objects for model selection.

A scorer is called as ``scorer(estimator, X, y, sample_weight=None)`` and
returns a number where greater is better, so every loss is negated
(``"neg_..."``). Point losses are made by ``sklearn.metrics.make_scorer``
from ``estimator.predict``. The scores of predictive distributions and of
intervals need a prediction ``predict`` does not give by default:
:class:`_CallingScorer` calls ``predict(X, return_std=True)`` or
``predict_interval(X, coverage=...)`` instead. It subclasses
scikit-learn's private ``_BaseScorer``, the base of ``make_scorer``'s
scorers, so that it takes part in everything a scorer does in
scikit-learn's search and validation tools: ``sample_weight`` forwarding
(``GridSearchCV.fit(X, y, sample_weight=...)`` passes it to scorers whose
metric accepts it), metadata routing (``set_score_request``) and
multi-metric scoring. Its constructor and ``_score`` hook are the same in
the scikit-learn versions ``pyproject.toml`` admits.
"""

import copy
from functools import partial

import numpy as np
from sklearn.metrics import get_scorer as _sklearn_get_scorer
from sklearn.metrics import get_scorer_names as _sklearn_get_scorer_names
from sklearn.metrics import make_scorer
from sklearn.metrics._scorer import _BaseScorer

from ._common import check_positive, check_probability
from ._distribution import crps_gaussian, gaussian_nll
from ._interval import interval_score
from ._point import (
    _check_quantiles,
    mean_huber_loss,
    mean_log_cosh_error,
    mean_pinball_loss,
    mean_smooth_l1_loss,
    root_mean_squared_error,
)


def _score_prediction(
    metric,
    y_true,
    y_pred,
    *,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
    **kwargs,
):
    """``metric(y_true, *y_pred, ...)``: a metric of several predicted arrays.

    Bound to a metric with ``functools.partial``, this has the signature of
    a scikit-learn metric, ``(y_true, y_pred, *, sample_weight, ...)``,
    which is what scikit-learn's scorers read to decide which metadata
    (``sample_weight``) a scorer accepts and routes.
    """
    return metric(
        y_true,
        *y_pred,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
        **kwargs,
    )


class _CallingScorer(_BaseScorer):
    """Scores ``metric(y, *prediction)`` with ``prediction = method(X, **kw)``.

    Parameters
    ----------
    metric : callable
        The metric, ``metric(y_true, *prediction, **kwargs)``.
    sign : {1, -1}
        -1 for a loss, so that greater is better.
    kwargs : dict
        Keyword arguments of ``metric``.
    response_method : str
        Name of the estimator's method to call.
    method_kwargs : dict
        Keyword arguments of that method.
    prediction : {"mean_std", "interval"}
        How the method's result becomes the metric's arguments: a
        ``(mean, std)`` pair as is, or ``(lower, upper)`` stacked into
        intervals with the bounds on the last axis.
    name : str
        What ``repr`` shows.
    """

    def __init__(
        self, metric, sign, kwargs, response_method, method_kwargs, prediction, name
    ):
        super().__init__(
            partial(_score_prediction, metric), sign, kwargs, response_method
        )
        self._method_kwargs = method_kwargs
        self._prediction = prediction
        self._name = name

    def __repr__(self):
        return self._name

    def _score(self, method_caller, estimator, X, y_true, **kwargs):
        # The method is called directly, not through method_caller: its
        # cache is keyed by method name only, and this call has arguments.
        method = getattr(estimator, self._response_method, None)
        if method is None:
            raise AttributeError(
                f"{self._name} needs {type(estimator).__name__}."
                f"{self._response_method}({self._describe_method_kwargs()}), "
                "which it does not have; use an estimator with a predictive "
                "distribution, such as skrobust.HeteroscedasticRegressor."
            )
        result = method(X, **self._method_kwargs)
        if self._prediction == "interval":
            prediction = (_as_intervals(result),)
        else:
            prediction = tuple(result)
        return self._sign * self._score_func(
            y_true, prediction, **{**self._kwargs, **kwargs}
        )

    def _describe_method_kwargs(self):
        return ", ".join(f"{k}={v!r}" for k, v in self._method_kwargs.items())


def _as_intervals(result):
    """``(lower, upper)`` as one array with the bounds on the last axis."""
    if isinstance(result, tuple) and len(result) == 2:
        return np.stack([np.asarray(bound) for bound in result], axis=-1)
    return np.asarray(result)


def make_huber_scorer(delta=1.0):
    """Scorer of minus the mean Huber loss with threshold ``delta``.

    The scorer calls ``estimator.predict(X)`` and returns minus
    :func:`mean_huber_loss` (made by ``sklearn.metrics.make_scorer``), so
    that greater is better.

    Parameters
    ----------
    delta : float or array-like of shape (n_outputs,), default=1.0
        Threshold in the units of ``y``, as in :func:`mean_huber_loss`: a
        residual beyond it counts linearly, so an outlier cannot dominate
        the score. Pick it near the spread of the clean residuals (for
        example 1.35 times their standard deviation).

    Returns
    -------
    callable
        ``scorer(estimator, X, y, sample_weight=None)``, greater is better.

    See Also
    --------
    mean_huber_loss : The metric.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skrobust import HuberRegressor
    >>> from skrobust.metrics import make_huber_scorer
    >>> search = GridSearchCV(
    ...     HuberRegressor(), {"delta": [1.1, 1.35, 2.0]},
    ...     scoring=make_huber_scorer(delta=0.5),
    ... )
    """
    check_positive(delta, "delta")
    return make_scorer(mean_huber_loss, greater_is_better=False, delta=delta)


def make_log_cosh_scorer(delta=1.0):
    """Scorer of minus the mean log-cosh error with scale ``delta``.

    The scorer calls ``estimator.predict(X)`` and returns minus
    :func:`mean_log_cosh_error` (made by ``sklearn.metrics.make_scorer``),
    so that greater is better.

    Parameters
    ----------
    delta : float or array-like of shape (n_outputs,), default=1.0
        Scale in the units of ``y``, as in :func:`mean_log_cosh_error`.

    Returns
    -------
    callable
        ``scorer(estimator, X, y, sample_weight=None)``, greater is better.

    See Also
    --------
    mean_log_cosh_error : The metric.

    Examples
    --------
    >>> from skrobust.metrics import make_log_cosh_scorer
    >>> scorer = make_log_cosh_scorer(delta=2.0)
    """
    check_positive(delta, "delta")
    return make_scorer(mean_log_cosh_error, greater_is_better=False, delta=delta)


def make_pinball_scorer(quantile=0.5):
    """Scorer of minus the mean pinball loss of one or several quantile levels.

    The scorer calls ``estimator.predict(X)`` and returns minus
    :func:`mean_pinball_loss` (made by ``sklearn.metrics.make_scorer``), so
    that greater is better.

    Parameters
    ----------
    quantile : float or array-like of shape (n_levels,), default=0.5
        Quantile level(s) in [0, 1], as in :func:`mean_pinball_loss`; with
        several, the estimator's ``predict`` returns one column per level.

    Returns
    -------
    callable
        ``scorer(estimator, X, y, sample_weight=None)``, greater is better.

    See Also
    --------
    mean_pinball_loss : The metric.

    Examples
    --------
    >>> from sklearn.model_selection import cross_val_score
    >>> from skrobust import QuantileRegressor
    >>> from skrobust.metrics import make_pinball_scorer
    >>> X, y = [[0.0], [1.0], [2.0], [3.0]], [0.0, 1.0, 2.5, 3.0]
    >>> scores = cross_val_score(
    ...     QuantileRegressor(quantile=0.9, alpha=0.0), X, y, cv=2,
    ...     scoring=make_pinball_scorer(0.9),
    ... )
    """
    quantiles = _check_quantiles(quantile)
    quantile = float(quantiles) if quantiles.ndim == 0 else quantiles
    return make_scorer(mean_pinball_loss, greater_is_better=False, quantile=quantile)


def make_interval_scorer(coverage=0.9):
    """Scorer of minus the mean interval score of ``predict_interval``.

    Calls ``estimator.predict_interval(X, coverage=coverage)`` and scores
    the intervals with :func:`interval_score`: narrow intervals score
    well, and every miss costs ``2 / (1 - coverage)`` times its distance.

    Parameters
    ----------
    coverage : float, default=0.9
        Nominal coverage of the intervals, in (0, 1).

    Returns
    -------
    callable
        ``scorer(estimator, X, y, sample_weight=None)``, greater is better.

    See Also
    --------
    interval_score : The metric.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust import HeteroscedasticRegressor
    >>> from skrobust.metrics import make_interval_scorer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 1, size=(200, 1))
    >>> y = X[:, 0] + (0.1 + X[:, 0]) * rng.standard_normal(200)
    >>> model = HeteroscedasticRegressor().fit(X, y)
    >>> score = make_interval_scorer(coverage=0.8)(model, X, y)
    >>> bool(score < 0)
    True
    """
    coverage = check_probability(coverage, "coverage")
    return _CallingScorer(
        interval_score,
        -1,
        {"coverage": coverage},
        "predict_interval",
        {"coverage": coverage},
        "interval",
        f"make_interval_scorer(coverage={coverage!r})",
    )


def _distribution_scorer(metric, name):
    return _CallingScorer(
        metric, -1, {}, "predict", {"return_std": True}, "mean_std", name
    )


_SCORERS = {
    "neg_mean_huber_loss": make_huber_scorer(),
    "neg_mean_smooth_l1_loss": make_scorer(
        mean_smooth_l1_loss, greater_is_better=False
    ),
    "neg_mean_log_cosh_error": make_log_cosh_scorer(),
    "neg_mean_pinball_loss": make_pinball_scorer(),
    "neg_root_mean_squared_error": make_scorer(
        root_mean_squared_error, greater_is_better=False
    ),
    "neg_gaussian_nll": _distribution_scorer(gaussian_nll, "neg_gaussian_nll"),
    "neg_crps_gaussian": _distribution_scorer(crps_gaussian, "neg_crps_gaussian"),
    "neg_interval_score": make_interval_scorer(),
}


def get_scorer_names():
    """List the names :func:`get_scorer` accepts, skrobust's and scikit-learn's.

    scikit-learn's own ``get_scorer`` and ``GridSearchCV(scoring="...")``
    know only scikit-learn's names; pass skrobust's through
    :func:`get_scorer`.

    Returns
    -------
    list of str
        Sorted scorer names.

    See Also
    --------
    get_scorer : The scorer of a name.

    Examples
    --------
    >>> from skrobust.metrics import get_scorer_names
    >>> "neg_mean_huber_loss" in get_scorer_names()
    True
    """
    return sorted(set(_SCORERS) | set(_sklearn_get_scorer_names()))


def get_scorer(scoring):
    """A scorer from its name, skrobust's or scikit-learn's.

    skrobust's scorers (all losses, negated so that greater is better):

    - ``"neg_mean_huber_loss"``, ``"neg_mean_smooth_l1_loss"``,
      ``"neg_mean_log_cosh_error"``, ``"neg_mean_pinball_loss"`` and
      ``"neg_root_mean_squared_error"``: the point losses with their default
      parameters (``delta=1``, ``beta=1``, ``quantile=0.5``), of
      ``estimator.predict(X)``; the ``make_*_scorer`` factories take other
      parameters.
    - ``"neg_gaussian_nll"`` and ``"neg_crps_gaussian"``: scores of
      ``estimator.predict(X, return_std=True)``.
    - ``"neg_interval_score"``: the interval score of
      ``estimator.predict_interval(X, coverage=0.9)``.

    Other names and callables are passed to ``sklearn.metrics.get_scorer``.
    Pass the returned object as ``scoring=`` to ``GridSearchCV``,
    ``cross_validate`` and the like: scikit-learn does not know skrobust's
    names.

    Parameters
    ----------
    scoring : str or callable
        Name of a scorer, or a scorer (returned as is).

    Returns
    -------
    callable
        ``scorer(estimator, X, y, sample_weight=None)``, greater is better; a
        fresh copy for a name, so that ``set_score_request`` on it changes
        no other.

    See Also
    --------
    get_scorer_names : The names this function accepts.
    make_huber_scorer : A Huber scorer with another threshold.

    Examples
    --------
    >>> from sklearn.model_selection import cross_val_score
    >>> from skrobust import HuberRegressor
    >>> from skrobust.metrics import get_scorer
    >>> X, y = [[0.0], [1.0], [2.0], [3.0]], [0.0, 1.1, 1.9, 3.0]
    >>> scores = cross_val_score(
    ...     HuberRegressor(), X, y, cv=2, scoring=get_scorer("neg_mean_huber_loss")
    ... )
    """
    if isinstance(scoring, str) and scoring in _SCORERS:
        return copy.deepcopy(_SCORERS[scoring])
    if isinstance(scoring, str) and scoring not in _sklearn_get_scorer_names():
        raise ValueError(
            f"{scoring!r} is not a scorer name of skrobust or scikit-learn; "
            "skrobust.metrics.get_scorer_names() lists them."
        )
    return _sklearn_get_scorer(scoring)
