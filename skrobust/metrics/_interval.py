"""Metrics of prediction intervals: coverage, width and the interval score.

Intervals are arrays whose last axis holds ``(lower, upper)``: shape
(n_samples, 2) for one output and (n_samples, n_outputs, 2) for several.
:meth:`skrobust.HeteroscedasticRegressor.predict_interval` and
:meth:`skrobust.MultiQuantileRegressor.predict_interval` return this layout.
"""

import numpy as np
from sklearn.utils.validation import check_array, check_consistent_length

from ._common import (
    as_columns,
    check_array_1d_or_2d,
    check_probability,
    fill_doc,
    reduce_losses,
)


def _check_intervals(intervals):
    """``(lower, upper)`` as (n, k) columns each, and whether one output."""
    intervals = check_array(
        intervals, ensure_2d=False, allow_nd=True, dtype=float, input_name="intervals"
    )
    if intervals.ndim not in (2, 3) or intervals.shape[-1] != 2:
        raise ValueError(
            "intervals must be of shape (n_samples, 2) or (n_samples, "
            f"n_outputs, 2), (lower, upper) on the last axis; got shape "
            f"{intervals.shape}."
        )
    lower, upper = intervals[..., 0], intervals[..., 1]
    if np.any(lower > upper):
        first = np.argwhere(lower > upper)[0]
        raise ValueError(
            f"Every interval needs lower <= upper; at index {tuple(first)} "
            f"lower={lower[tuple(first)]!r} > upper={upper[tuple(first)]!r}."
        )
    return as_columns(lower), as_columns(upper), intervals.ndim == 2


def _check_intervals_and_targets(y_true, intervals):
    lower, upper, one_output = _check_intervals(intervals)
    y_true = check_array_1d_or_2d(y_true, "y_true")
    check_consistent_length(y_true, lower)
    expected = lower.shape[:1] if one_output else lower.shape
    if y_true.shape != expected:
        raise ValueError(
            f"y_true of shape {y_true.shape} does not match the intervals: "
            f"expected shape {expected} (intervals of shape (n_samples, 2) go "
            "with y_true (n_samples,), (n_samples, n_outputs, 2) with "
            "(n_samples, n_outputs))."
        )
    return as_columns(y_true), lower, upper, one_output


@fill_doc
def interval_coverage(
    y_true,
    intervals,
    *,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
):
    r"""Fraction of targets inside their prediction intervals.

    The mean of :math:`1_{l_i \le y_i \le u_i}`: the empirical coverage, to
    compare with the nominal coverage the intervals were made for. It is not
    a score to maximise (an infinitely wide interval covers everything); use
    :func:`interval_score` to rank interval forecasts.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Observed targets.
    intervals : array-like of shape (n_samples, 2) or (n_samples, n_outputs, 2)
        Lower and upper bounds on the last axis, ``lower <= upper``.
    {weights_parameters}

    Returns
    -------
    {returns}

    See Also
    --------
    interval_score : The score that ranks interval forecasts.
    mean_interval_width : The price paid for coverage.

    Examples
    --------
    >>> from skrobust.metrics import interval_coverage
    >>> interval_coverage([0.0, 1.0, 5.0], [[-1, 1], [0, 2], [0, 2]])
    0.666...
    """
    y_true, lower, upper, one_output = _check_intervals_and_targets(y_true, intervals)
    inside = ((lower <= y_true) & (y_true <= upper)).astype(float)
    return reduce_losses(
        inside,
        one_output=one_output,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
    )


@fill_doc
def mean_interval_width(
    intervals,
    *,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
):
    r"""Mean width :math:`u_i - l_i` of prediction intervals.

    With :func:`interval_coverage` it shows the trade-off between covering
    and being informative that :func:`interval_score` weighs in one number.

    Parameters
    ----------
    intervals : array-like of shape (n_samples, 2) or (n_samples, n_outputs, 2)
        Lower and upper bounds on the last axis, ``lower <= upper``.
    {weights_parameters}

    Returns
    -------
    {returns}

    See Also
    --------
    interval_coverage : The fraction of targets the intervals cover.
    interval_score : Width plus a penalty for every miss.

    Examples
    --------
    >>> from skrobust.metrics import mean_interval_width
    >>> mean_interval_width([[-1.0, 1.0], [0.0, 4.0]])
    3.0
    """
    lower, upper, one_output = _check_intervals(intervals)
    # Bounds of +-1e308 are finite but their difference is not.
    with np.errstate(over="ignore"):
        width = upper - lower
    return reduce_losses(
        width,
        one_output=one_output,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
    )


@fill_doc
def interval_score(
    y_true,
    intervals,
    coverage,
    *,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
):
    r"""Mean interval (Winkler) score of central prediction intervals.

    For an interval :math:`[l, u]` meant to cover :math:`y` with probability
    ``coverage`` :math:`= 1 - \alpha`,

    .. math::

        S_\alpha(l, u; y) = (u - l) + \frac{2}{\alpha} (l - y)\, 1_{y < l}
                            + \frac{2}{\alpha} (y - u)\, 1_{y > u},

    the width plus a penalty for every miss, in proportion to its distance
    (Winkler 1972; Gneiting and Raftery 2007, eq. 43). It is a proper score
    for the :math:`\alpha/2` and :math:`1 - \alpha/2` quantiles: its
    expectation is smallest when :math:`l` and :math:`u` are those
    quantiles of :math:`y`. Equivalently, :math:`S_\alpha = \frac{2}{\alpha}
    (\rho_{\alpha/2}(y - l) + \rho_{1-\alpha/2}(y - u))` with the pinball
    loss :math:`\rho_q` of :func:`mean_pinball_loss`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Observed targets.
    intervals : array-like of shape (n_samples, 2) or (n_samples, n_outputs, 2)
        Lower and upper bounds on the last axis, ``lower <= upper``.
    coverage : float
        Nominal coverage :math:`1 - \alpha` of the intervals, in (0, 1).
    {weights_parameters}

    Returns
    -------
    {returns}

    See Also
    --------
    interval_coverage : The empirical coverage of the same intervals.

    References
    ----------
    .. [1] R. L. Winkler, "A decision-theoretic approach to interval
       estimation", Journal of the American Statistical Association
       67(337), 187-191, 1972.
    .. [2] T. Gneiting and A. E. Raftery, "Strictly proper scoring rules,
       prediction, and estimation", Journal of the American Statistical
       Association 102(477), 359-378, 2007.

    Examples
    --------
    >>> from skrobust.metrics import interval_score
    >>> # Width 2, and y = 3 misses the upper bound by 2: 2 + (2 / 0.5) * 2.
    >>> interval_score([3.0], [[-1.0, 1.0]], coverage=0.5)
    10.0
    """
    alpha = 1.0 - check_probability(coverage, "coverage")
    y_true, lower, upper, one_output = _check_intervals_and_targets(y_true, intervals)
    with np.errstate(over="ignore"):
        below = np.maximum(lower - y_true, 0.0)
        above = np.maximum(y_true - upper, 0.0)
        scores = (upper - lower) + (2.0 / alpha) * (below + above)
    return reduce_losses(
        scores,
        one_output=one_output,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
    )
