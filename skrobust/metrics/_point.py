"""Losses of point predictions: Huber, smooth L1, log-cosh, pinball, RMSE.

The per-sample values of the Huber, smooth-L1 and log-cosh losses are
evaluated by the residual functions of :mod:`skrobust.losses`, the ones the
estimators minimise: one implementation, so that a metric and its
estimator agree to the last bit, and the metrics inherit their stability
(finite and warning-free for residuals up to ``1e300``).
"""

import numpy as np

from ..losses import HuberRho, LogCoshRho
from ._common import (
    as_columns,
    check_array_1d_or_2d,
    check_positive,
    check_targets,
    fill_doc,
    reduce_losses,
)


def _residuals(y_true, y_pred):
    """``y_true - y_pred`` as (n, k) columns, and whether ``y`` was 1-d."""
    y_true, y_pred = check_targets(y_true, y_pred)
    # A difference beyond the largest double is an infinite residual, whose
    # loss is legitimately infinite.
    with np.errstate(over="ignore"):
        residual = y_true - y_pred
    return as_columns(residual), y_true.ndim == 1


def _check_threshold(value, name, n_outputs, *, allow_zero=False):
    """A positive threshold: a float, or one per output of shape (n_outputs,)."""
    value = check_positive(value, name, allow_zero=allow_zero)
    if np.ndim(value) == 0:
        return value
    if value.shape != (n_outputs,):
        raise ValueError(
            f"{name} must be a float or of shape ({n_outputs},), one per "
            f"output, got shape {value.shape}."
        )
    return value


@fill_doc
def mean_huber_loss(
    y_true,
    y_pred,
    *,
    delta=1.0,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
):
    r"""Mean Huber loss with threshold ``delta``, in the units of ``y``.

    With the residual :math:`r = y - \hat y`,

    .. math::

        L_\delta(r) = \begin{cases} r^2 / 2 & |r| \le \delta \\
                      \delta |r| - \delta^2 / 2 & |r| > \delta, \end{cases}

    which is :class:`skrobust.losses.HuberRho` ``(delta).value(r)`` and
    PyTorch's ``HuberLoss(delta=delta)``: quadratic for small residuals,
    linear (with slope ``delta``) for large ones.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Observed targets.
    y_pred : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Predicted targets.
    delta : float or array-like of shape (n_outputs,), default=1.0
        Threshold, positive, in the units of ``y`` (one per output if an
        array). :class:`skrobust.HuberRegressor`'s ``delta`` is in units of
        a residual scale instead: with a fixed or MAD scale it minimises
        this loss with threshold ``delta * scale_``.
    {weights_parameters}

    Returns
    -------
    {returns}

    See Also
    --------
    mean_smooth_l1_loss : The same loss divided by its threshold.
    mean_log_cosh_error : A twice-differentiable loss of the same shape.

    Examples
    --------
    >>> from skrobust.metrics import mean_huber_loss
    >>> mean_huber_loss([0.0, 0.0, 0.0], [0.5, -1.0, 3.0])
    1.0416...
    >>> mean_huber_loss([0.0, 0.0, 0.0], [0.5, -1.0, 3.0], reduction="none")
    array([0.125, 0.5  , 2.5  ])
    """
    residual, one_output = _residuals(y_true, y_pred)
    delta = _check_threshold(delta, "delta", residual.shape[1])
    losses = HuberRho(delta).value(residual)
    return reduce_losses(
        losses,
        one_output=one_output,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
    )


@fill_doc
def mean_smooth_l1_loss(
    y_true,
    y_pred,
    *,
    beta=1.0,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
):
    r"""Mean smooth-L1 loss, PyTorch's ``SmoothL1Loss(beta=beta)``.

    With the residual :math:`r = y - \hat y`,

    .. math::

        \ell_\beta(r) = \begin{cases} r^2 / (2\beta) & |r| < \beta \\
                        |r| - \beta / 2 & |r| \ge \beta, \end{cases}

    which is the Huber loss with threshold :math:`\beta` divided by
    :math:`\beta` (:class:`skrobust.losses.HuberRho` ``(beta).value(r) /
    beta``): the same minimiser, but slope 1 in the tails, so that it tends
    to the absolute error as :math:`\beta \to 0` (``beta=0`` is the absolute
    error itself).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Observed targets.
    y_pred : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Predicted targets.
    beta : float or array-like of shape (n_outputs,), default=1.0
        Threshold, non-negative, in the units of ``y`` (one per output if
        an array).
    {weights_parameters}

    Returns
    -------
    {returns}

    See Also
    --------
    mean_huber_loss : The same loss times its threshold.

    Examples
    --------
    >>> from skrobust.metrics import mean_smooth_l1_loss
    >>> mean_smooth_l1_loss([0.0, 0.0], [0.5, 3.0], beta=2.0, reduction="none")
    array([0.0625, 2.    ])
    """
    residual, one_output = _residuals(y_true, y_pred)
    beta = _check_threshold(beta, "beta", residual.shape[1], allow_zero=True)
    beta_columns = np.broadcast_to(beta, residual.shape)
    # HuberRho(beta).value / beta, and |r| where beta = 0 (its limit).
    losses = np.divide(
        HuberRho(beta).value(residual),
        beta_columns,
        out=np.abs(residual),
        where=beta_columns > 0,
    )
    return reduce_losses(
        losses,
        one_output=one_output,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
    )


@fill_doc
def mean_log_cosh_error(
    y_true,
    y_pred,
    *,
    delta=1.0,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
):
    r"""Mean scaled log-cosh error, :math:`\delta^2 \log\cosh(r / \delta)`.

    With the residual :math:`r = y - \hat y`, the loss
    :class:`skrobust.losses.LogCoshRho` ``(delta).value(r)`` is
    :math:`r^2 / 2` near zero and :math:`\delta |r| - \delta^2 \log 2` in
    the tails, like the Huber loss with threshold :math:`\delta`, but
    infinitely differentiable. With ``delta=1`` it is the usual log-cosh
    loss :math:`\log\cosh(r)`. Evaluated without ``cosh``, so that it stays
    finite for residuals up to ``1e300``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Observed targets.
    y_pred : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Predicted targets.
    delta : float or array-like of shape (n_outputs,), default=1.0
        Scale of the transition from quadratic to linear, positive, in the
        units of ``y`` (one per output if an array).
        :class:`skrobust.LogCoshRegressor`'s ``delta`` is in units of a
        residual scale instead: with a fixed or MAD scale it minimises this
        loss with ``delta * scale_``.
    {weights_parameters}

    Returns
    -------
    {returns}

    See Also
    --------
    mean_huber_loss : The piecewise loss of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.metrics import mean_log_cosh_error
    >>> value = mean_log_cosh_error([0.0], [2.0])
    >>> bool(np.isclose(value, np.log(np.cosh(2.0))))
    True
    """
    residual, one_output = _residuals(y_true, y_pred)
    delta = _check_threshold(delta, "delta", residual.shape[1])
    losses = LogCoshRho(delta).value(residual)
    return reduce_losses(
        losses,
        one_output=one_output,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
    )


def _check_quantiles(quantile):
    quantiles = np.asarray(quantile, dtype=float)
    if quantiles.ndim > 1 or quantiles.size == 0:
        raise ValueError(
            f"quantile must be a float or a sequence of floats, got {quantile!r}."
        )
    if not np.all((quantiles >= 0) & (quantiles <= 1)):
        raise ValueError(f"quantile must be in [0, 1], got {quantile!r}.")
    return quantiles


@fill_doc
def mean_pinball_loss(
    y_true,
    y_pred,
    *,
    quantile=0.5,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
):
    r"""Mean pinball (check) loss of one or several quantile levels.

    With the residual :math:`r = y - \hat y` and level :math:`q`,

    .. math::

        \rho_q(r) = \max(q\, r, (q - 1)\, r),

    whose expectation is minimised by the :math:`q`-quantile of :math:`y`;
    :class:`skrobust.QuantileRegressor` minimises its mean. With one level
    this is ``sklearn.metrics.mean_pinball_loss`` with ``alpha=quantile``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Observed targets.
    y_pred : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Predicted quantiles. With several levels, of shape
        (n_samples, n_levels), one column per level; ``y_true`` is then 1-d
        (compared with every column) or of the same shape.
    quantile : float or array-like of shape (n_levels,), default=0.5
        Quantile level(s) in [0, 1]. A sequence makes every level an output
        for ``multioutput``.
    {weights_parameters}

    Returns
    -------
    {returns}

    See Also
    --------
    interval_score : Two pinball losses make the score of an interval.
    make_pinball_scorer : The scorer of this metric.

    Examples
    --------
    >>> from skrobust.metrics import mean_pinball_loss
    >>> mean_pinball_loss([1.0, 2.0], [0.0, 3.0], quantile=0.9)
    0.5
    >>> y_pred = [[0.0, 1.0], [1.5, 3.0]]
    >>> mean_pinball_loss([1.0, 2.0], y_pred, quantile=[0.1, 0.9],
    ...                   multioutput="raw_values")
    array([0.075, 0.05 ])
    """
    quantiles = _check_quantiles(quantile)
    if quantiles.ndim == 0:
        residual, one_output = _residuals(y_true, y_pred)
    else:
        residual = _level_residuals(y_true, y_pred, quantiles.size)
        one_output = False
    losses = np.maximum(quantiles * residual, (quantiles - 1.0) * residual)
    return reduce_losses(
        losses,
        one_output=one_output,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
    )


def _level_residuals(y_true, y_pred, n_levels):
    """Residuals (n, n_levels) of predictions of several quantile levels."""
    y_pred = check_array_1d_or_2d(y_pred, "y_pred")
    if y_pred.ndim != 2 or y_pred.shape[1] != n_levels:
        raise ValueError(
            f"With {n_levels} quantile levels, y_pred must be of shape "
            f"(n_samples, {n_levels}), got shape {y_pred.shape}."
        )
    y_true = check_array_1d_or_2d(y_true, "y_true")
    if y_true.ndim == 1:
        y_true = np.repeat(y_true[:, None], n_levels, axis=1)
    y_true, y_pred = check_targets(y_true, y_pred)
    with np.errstate(over="ignore"):
        return y_true - y_pred


@fill_doc
def root_mean_squared_error(
    y_true,
    y_pred,
    *,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
):
    r"""Root mean squared error, per output, then combined over outputs.

    :math:`\sqrt{\sum_i s_i r_{ik}^2 / \sum_i s_i}` for each output
    :math:`k`, then averaged over outputs as ``multioutput`` says, like
    ``sklearn.metrics.root_mean_squared_error``. ``reduction`` acts on the
    squared errors before the root: ``"sum"`` gives
    :math:`\sqrt{\sum_i s_i r_{ik}^2}` and ``"none"``
    :math:`\sqrt{s_i}\,|r_{ik}|`. Computed from residuals divided by the
    largest one, so that residuals up to ``1e300`` give a finite value.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Observed targets.
    y_pred : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Predicted targets.
    {weights_parameters}

    Returns
    -------
    {returns}

    See Also
    --------
    mean_huber_loss : A loss that a few outliers cannot dominate.

    Examples
    --------
    >>> from skrobust.metrics import root_mean_squared_error
    >>> root_mean_squared_error([0.0, 0.0], [3.0, 4.0], reduction="sum")
    5.0
    >>> root_mean_squared_error([0.0, 0.0], [1e300, 1e300])
    1e+300
    """
    residual, one_output = _residuals(y_true, y_pred)
    # sqrt(mean(r^2)) = m sqrt(mean((r / m)^2)) with m the largest |r| of
    # each output: the squares cannot overflow.
    magnitude = np.abs(residual)
    largest = np.max(magnitude, axis=0, where=np.isfinite(magnitude), initial=0.0)
    largest = np.where(largest > 0, largest, 1.0)
    relative = magnitude / largest

    def root(reduced_squares):
        with np.errstate(over="ignore"):
            return np.sqrt(reduced_squares) * largest

    return reduce_losses(
        relative * relative,
        one_output=one_output,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
        finish=root,
    )
