r"""Covariance of the maximum-likelihood fit of a Gaussian heteroscedastic model.

The model of :class:`~skrobust.HeteroscedasticRegressor`:
:math:`y_i \sim N(\mu_i, \sigma_i^2)` with :math:`\mu_i = \tilde x_i^\top
\beta` and :math:`v_i = \log\sigma_i^2 = \tilde z_i^\top \gamma`, where
:math:`\tilde x_i = (1, x_i)` (the 1 only with an intercept) and
:math:`\tilde z_i = (1, x_{i, V})` for the variance columns :math:`V`. Per
row, with :math:`r_i = y_i - \mu_i` and :math:`e_i = 1 / \sigma_i^2`, the
negative log-likelihood :math:`\ell_i = r_i^2 e_i / 2 + v_i / 2` has

.. math::

    \partial_\mu \ell_i = -r_i e_i, \quad
    \partial_v \ell_i = \tfrac12 (1 - r_i^2 e_i), \quad
    \partial^2_\mu \ell_i = e_i, \quad
    \partial_\mu \partial_v \ell_i = r_i e_i, \quad
    \partial^2_v \ell_i = \tfrac12 r_i^2 e_i,

whose expectations are :math:`e_i`, 0 and :math:`1/2`. With frequency
weights :math:`s_i`, the covariance of :math:`\theta = (\beta, \gamma)` is

``"expected"``
    the inverse Fisher information, block diagonal:
    :math:`(\sum_i s_i e_i \tilde x_i \tilde x_i^\top)^{-1}` for
    :math:`\beta` and :math:`2 (\sum_i s_i \tilde z_i \tilde z_i^\top)^{-1}`
    for :math:`\gamma`. R's ``nlme::gls(..., method = "ML")`` reports the
    :math:`\beta` block times :math:`N / (N - p)` in ``vcov``;
``"observed"``
    :math:`H^{-1}`, the inverse of the Hessian :math:`H = \sum_i s_i
    \nabla^2 \ell_i` at the fit (the negative Hessian of the
    log-likelihood);
``"sandwich"``
    :math:`H^{-1} B H^{-1}` with :math:`B = \sum_i s_i \nabla\ell_i
    \nabla\ell_i^\top`, valid when the variance model is wrong (HC0: no
    small-sample factor, so that under the model all three agree to first
    order).

A ridge penalty :math:`\alpha \lVert \gamma_{\text{slopes}} \rVert^2` (the
estimator's ``alpha``) adds :math:`2\alpha` to the diagonal of the
information or Hessian for the log-variance slopes: the inverse is then the
covariance of the Laplace approximation to the posterior with that
Gaussian prior. The estimator's ``variance_floor`` term (of order
``1e-8`` of the variance of ``y``) is left out.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import safe_sparse_dot

from ._inference import (
    block_grams,
    design_center,
    inverse_symmetric,
    single_threaded_blas,
    uncentre,
)

COV_TYPES = ("expected", "observed", "sandwich")
# The Grams of each covariance: the information's, then the sandwich's meat.
N_GRAMS = {"expected": 2, "observed": 3, "sandwich": 6}


@single_threaded_blas
def gaussian_covariance(
    X,
    y,
    mean_coef,
    mean_intercept,
    var_coef,
    var_intercept,
    sample_weight,
    *,
    cov_type="expected",
    fit_intercept=True,
    variance_columns=None,
    alpha=0.0,
    predictors_out=None,
):
    r"""Covariance of ``[mean intercept, mean coef..., var intercept, var coef...]``.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Design (not copied).
    y : ndarray of shape (n_samples,)
        Targets.
    mean_coef : ndarray of shape (n_features,)
        Mean coefficients :math:`b`.
    mean_intercept : float
        Mean intercept :math:`b_0` (ignored without ``fit_intercept``).
    var_coef : ndarray of shape (n_features,)
        Log-variance coefficients :math:`g`, zero outside
        ``variance_columns``.
    var_intercept : float
        Log-variance intercept :math:`g_0`.
    sample_weight : ndarray of shape (n_samples,) or None
        Frequency weights: a weight of 2 counts as a repeated row.
    cov_type : {"expected", "observed", "sandwich"}, default="expected"
        See the module docstring.
    fit_intercept : bool, default=True
        Whether the mean has an intercept (the log-variance always has).
    variance_columns : array-like of int or None, default=None
        Columns in the log-variance; None for all.
    alpha : float, default=0.0
        Ridge penalty on the log-variance slopes, in the units of a sum over
        rows (the estimator's ``alpha``).
    predictors_out : ndarray of shape (n_samples, 2), default=None
        Receives each row's mean and log-variance, formed in the pass over
        ``X`` (for the estimator's other attributes: one read of ``X``
        fewer than forming them apart).

    Returns
    -------
    ndarray of shape (n_params, n_params)
        Rows and columns: the mean intercept (with ``fit_intercept``), the
        ``n_features`` mean coefficients, the log-variance intercept and the
        log-variance coefficients of ``variance_columns``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 1))
    >>> y = 1.0 + 2.0 * X[:, 0] + rng.normal(size=400)
    >>> cov = gaussian_covariance(X, y, [2.0], 1.0, [0.0], 0.0, None)
    >>> np.round(np.sqrt(np.diag(cov)), 3)  # 1 / sqrt(n), twice for log-variance
    array([0.05 , 0.05 , 0.071, 0.071])
    """
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {COV_TYPES}, got {cov_type!r}.")
    y = np.asarray(y, dtype=float)
    if sample_weight is None:
        sample_weight = np.ones_like(y)
    coefs = np.column_stack(
        [np.asarray(mean_coef, dtype=float), np.asarray(var_coef, dtype=float)]
    )
    offsets = np.array([mean_intercept if fit_intercept else 0.0, var_intercept])
    # Centred coordinates (see design_center): both blocks then need an
    # intercept, which the log-variance always has.
    center = design_center(X, fit_intercept)
    weights_of_block = gram_weights(
        y, coefs, offsets, sample_weight, cov_type, predictors_out
    )
    grams, _ = block_grams(
        X, weights_of_block, N_GRAMS[cov_type], 0, True, center=center
    )
    return covariance_from_grams(
        grams,
        X.shape[1],
        cov_type=cov_type,
        fit_intercept=fit_intercept,
        variance_columns=variance_columns,
        alpha=alpha,
        center=center,
    )


def gram_weights(y, coefs, offsets, sample_weight, cov_type, predictors_out=None):
    r"""The per-row weights of the Grams, as :func:`block_grams` takes them.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
    coefs : ndarray of shape (n_features, 2)
        The mean's and the log-variance's coefficients, in columns.
    offsets : ndarray of shape (2,)
        The mean's intercept (0 without one) and the log-variance's.
    sample_weight : ndarray of shape (n_samples,)
    cov_type : {"expected", "observed", "sandwich"}
    predictors_out : ndarray of shape (n_samples, 2), default=None
        Receives the linear predictors of each block's rows.

    Returns
    -------
    callable
        ``weights_of_block(rows, block) -> (gram_weights, [])``, the
        ``N_GRAMS[cov_type]`` weightings of the rows ``rows`` whose values
        are ``block``: the information's Grams of ``[1, X]`` (mean-mean,
        mean-variance, variance-variance; the expected one has no
        mean-variance block) and, for ``"sandwich"``, the meat's, from the
        per-row derivatives of the module docstring.
    """

    # Weights of 1 (the estimator's without sample weights) multiply nothing.
    unit = bool(np.all(sample_weight == 1.0))
    coefs = np.ascontiguousarray(coefs, dtype=float)

    def weights_of_block(rows, block):
        # Every weight from the block's linear predictors, in the pass over X
        # that forms the Grams: the information (expected or observed) and,
        # for the sandwich, the outer products of the per-row gradients.
        predictors = _block_predictors(block, rows, coefs, predictors_out)
        predictors += offsets
        weight = None if unit else sample_weight[rows]
        # Each Gram as a pair of row scalings (block_grams): with root =
        # sqrt(s / sigma^2) the information's are root root, root (r root)
        # and (r root)^2 / 2, two scaled copies of the rows for three Grams.
        root = np.multiply(predictors[:, 1], -0.5)
        np.exp(root, out=root)
        if cov_type == "expected":
            half = np.full(predictors.shape[0], 0.5)
            if weight is not None:
                root *= np.sqrt(weight)
                half *= weight
            return [(root, root, 1.0), half], []
        r_root = np.subtract(y[rows], predictors[:, 0])
        r_root *= root
        # The gradients -r / sigma^2 and (1 - r^2 / sigma^2) / 2.
        if cov_type == "sandwich":
            grad_mean = np.multiply(r_root, root)
            np.negative(grad_mean, out=grad_mean)
            grad_var = np.multiply(r_root, r_root)
            grad_var *= -0.5
            grad_var += 0.5
        if weight is not None:
            weight_root = np.sqrt(weight)
            root *= weight_root
            r_root *= weight_root
            if cov_type == "sandwich":
                grad_mean *= weight_root
                grad_var *= weight_root
        weights = [(root, root, 1.0), (root, r_root, 1.0), (r_root, r_root, 0.5)]
        if cov_type == "sandwich":
            weights += [
                (grad_mean, grad_mean, 1.0),
                (grad_mean, grad_var, 1.0),
                (grad_var, grad_var, 1.0),
            ]
        return weights, []

    return weights_of_block


def _block_predictors(block, rows, coefs, predictors_out):
    """``block @ coefs``, written into ``predictors_out[rows]`` when given.

    In place, by one product of the block with the two columns (no
    temporaries of the block's length to copy).
    """
    n_rows = block.shape[0]
    out = np.empty((n_rows, 2)) if predictors_out is None else predictors_out[rows]
    if sp.issparse(block) or block.dtype != np.float64 or not out.flags.c_contiguous:
        out[:] = safe_sparse_dot(block, coefs)
    else:
        np.dot(block, coefs, out=out)
    return out


def covariance_from_grams(
    grams, n_features, *, cov_type, fit_intercept, variance_columns, alpha, center
):
    """The covariance from the Grams of :func:`gram_weights` summed over rows.

    The information's blocks, the ridge on the log-variance slopes, its
    inverse and, for ``"sandwich"``, the product with the meat, mapped back
    from the coordinates centred at ``center`` (:func:`uncentre`).

    Parameters
    ----------
    grams : ndarray of shape (N_GRAMS[cov_type], n_features + 1, n_features + 1)
        The Grams of ``[1, X - center]`` (or ``[1, X]``, ``center=None``).
    n_features : int
    cov_type, fit_intercept, variance_columns, alpha
        As :func:`gaussian_covariance`.
    center : ndarray of shape (n_features,) or None

    Returns
    -------
    ndarray of shape (n_params, n_params)
        As :func:`gaussian_covariance`.
    """
    mean_index = np.arange(0 if fit_intercept else 1, n_features + 1)
    var_columns = (
        np.arange(n_features) if variance_columns is None else variance_columns
    )
    var_index = np.r_[0, 1 + np.asarray(var_columns, dtype=np.intp)]
    if cov_type == "expected":
        mean_mean, var_var = grams
        mean_var = np.zeros_like(mean_mean)
    else:
        mean_mean, mean_var, var_var = grams[:3]
    information = _two_blocks(mean_mean, mean_var, var_var, mean_index, var_index)
    slopes = mean_index.size + np.arange(1, var_index.size)
    if alpha:
        information[slopes, slopes] += 2.0 * alpha
    inverse = inverse_symmetric(information)
    if cov_type == "sandwich":
        meat = _two_blocks(*grams[3:], mean_index, var_index)
        inverse = inverse @ meat @ inverse
    blocks = [
        (0, np.arange(1, n_features + 1), np.arange(n_features)),
        (mean_index.size, slopes, np.asarray(var_columns, dtype=np.intp)),
    ]
    return uncentre(inverse, center, blocks)


def _two_blocks(mean_mean, mean_var, var_var, mean_index, var_index):
    """``[[A, C], [C.T, B]]`` from Grams of ``[1, X]`` and each block's columns."""
    return np.block(
        [
            [
                mean_mean[np.ix_(mean_index, mean_index)],
                mean_var[np.ix_(mean_index, var_index)],
            ],
            [
                mean_var[np.ix_(var_index, mean_index)],
                var_var[np.ix_(var_index, var_index)],
            ],
        ]
    )
