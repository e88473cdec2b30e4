"""Scores of Gaussian predictive distributions: negative log-likelihood, CRPS.

Both take the mean and standard deviation a model predicts, as
:meth:`skrobust.HeteroscedasticRegressor.predict` returns them with
``return_std=True``, and are proper scoring rules: their expectation is
smallest when the predicted distribution is the true one.
"""

import numpy as np
from scipy.special import ndtr

from ._common import (
    as_columns,
    check_array_1d_or_2d,
    check_positive,
    check_same_shape,
    fill_doc,
    reduce_losses,
)

_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
_INV_SQRT_PI = 1.0 / np.sqrt(np.pi)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
# Beyond |z| = 40 the normal density is below the smallest double: capping z
# there keeps z**2 from overflowing and changes no value.
_Z_MAX = 40.0


def _check_distribution(y_true, mean, std, *, allow_zero_std):
    """``y_true``, ``mean`` and ``std`` as (n, k) columns, and whether 1-d."""
    y_true = check_array_1d_or_2d(y_true, "y_true")
    mean, std = check_same_shape(y_true, "y_true", mean=mean, std=std)
    check_positive(std, "std", allow_zero=allow_zero_std)
    return as_columns(y_true), as_columns(mean), as_columns(std), y_true.ndim == 1


@fill_doc
def gaussian_nll(
    y_true,
    mean,
    std,
    *,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
):
    r"""Mean negative log-likelihood of ``y`` under Gaussian predictions.

    .. math::

        L(y; \mu, \sigma) = \tfrac12 \log(2\pi\sigma^2)
                            + \frac{(y - \mu)^2}{2\sigma^2},

    the negative log-density of :math:`N(\mu, \sigma^2)` at :math:`y`,
    constant :math:`\tfrac12 \log 2\pi \approx 0.919` included (PyTorch's
    ``GaussianNLLLoss`` leaves it out unless ``full=True``, and takes the
    variance, not the standard deviation; :class:`skrobust.losses.GaussianNLLLoss`
    leaves it out too). Its weighted mean is minus
    :meth:`skrobust.HeteroscedasticRegressor.log_likelihood`.

    A standardised residual :math:`|y - \mu| / \sigma` beyond about
    ``1e154`` gives ``inf``: the value itself exceeds the largest double.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Observed targets.
    mean : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Predicted means :math:`\mu`.
    std : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Predicted standard deviations :math:`\sigma`, positive.
    {weights_parameters}

    Returns
    -------
    {returns}

    See Also
    --------
    crps_gaussian : A proper score that grows linearly, not quadratically,
        with the residual.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.stats import norm
    >>> from skrobust.metrics import gaussian_nll
    >>> value = gaussian_nll([1.0], [0.0], [2.0])
    >>> bool(np.isclose(value, -norm.logpdf(1.0, loc=0.0, scale=2.0)))
    True
    """
    y_true, mean, std, one_output = _check_distribution(
        y_true, mean, std, allow_zero_std=False
    )
    with np.errstate(over="ignore"):
        z = (y_true - mean) / std
        losses = _HALF_LOG_2PI + np.log(std) + 0.5 * z * z
    return reduce_losses(
        losses,
        one_output=one_output,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
    )


@fill_doc
def crps_gaussian(
    y_true,
    mean,
    std,
    *,
    sample_weight=None,
    multioutput="uniform_average",
    reduction="mean",
):
    r"""Mean continuous ranked probability score of Gaussian predictions.

    .. math::

        \mathrm{CRPS}(N(\mu, \sigma^2), y) = \int (F(x) - 1_{x \ge y})^2 dx
        = \sigma \left[ z (2\Phi(z) - 1) + 2\varphi(z)
          - \tfrac{1}{\sqrt\pi} \right], \quad z = \frac{y - \mu}{\sigma},

    the closed form of Gneiting and Raftery (2007). It is in the units of
    ``y``, reduces to the absolute error when :math:`\sigma = 0`, and grows
    like :math:`|y - \mu|` for outliers (where the negative log-likelihood
    grows like its square). Evaluated as
    :math:`r (2\Phi(z) - 1) + \sigma (2\varphi(z) - 1/\sqrt\pi)` with
    :math:`r = y - \mu`, finite for residuals up to ``1e300``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Observed targets.
    mean : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Predicted means :math:`\mu`.
    std : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Predicted standard deviations :math:`\sigma`, non-negative.
    {weights_parameters}

    Returns
    -------
    {returns}

    See Also
    --------
    gaussian_nll : The logarithmic score of the same predictions.

    References
    ----------
    .. [1] T. Gneiting and A. E. Raftery, "Strictly proper scoring rules,
       prediction, and estimation", Journal of the American Statistical
       Association 102(477), 359-378, 2007.

    Examples
    --------
    >>> from skrobust.metrics import crps_gaussian
    >>> round(crps_gaussian([0.0], [0.0], [1.0]), 6)  # (sqrt(2) - 1) / sqrt(pi)
    0.233695
    >>> crps_gaussian([3.0], [1.0], [0.0])  # a point forecast: |y - mu|
    2.0
    """
    y_true, mean, std, one_output = _check_distribution(
        y_true, mean, std, allow_zero_std=True
    )
    with np.errstate(over="ignore"):
        residual = y_true - mean
    # z = r / sigma; a zero sigma gives +-inf (0 for r = 0), the limits in
    # which the formula reduces to |r|.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        z = np.where(std > 0, residual / std, np.sign(residual) * np.inf)
    z = np.nan_to_num(z, nan=0.0, posinf=np.inf, neginf=-np.inf)
    capped = np.clip(z, -_Z_MAX, _Z_MAX)
    density = _INV_SQRT_2PI * np.exp(-0.5 * capped * capped)
    with np.errstate(over="ignore"):
        losses = residual * (2.0 * ndtr(z) - 1.0) + std * (2.0 * density - _INV_SQRT_PI)
    return reduce_losses(
        losses,
        one_output=one_output,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
    )
