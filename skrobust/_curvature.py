r"""Hessian-vector products of a linear objective from its rows' curvature.

Conjugate-gradient Newton
(:func:`skrobust._preconditioned_newton._preconditioned_newton`)
needs :math:`H v` at one point for many :math:`v`. Forming :math:`H =
\sum_i Z_i^\top C_i Z_i` costs :math:`n p^2`; keeping each row's weighted
loss Hessian :math:`C_i` (``n k^2`` numbers for ``k`` predictors) from the
pass that evaluates the gradient makes each product two matrix-vector
products with ``X`` and no evaluation of the loss.
"""

import numpy as np

from ._objective import _PassSums
from ._passes import _THREADPOOLS


def loss_gradient_curvature(objective, coef):
    """Value, gradient and ``v -> H(coef) @ v``, in one pass over ``X``.

    Parameters
    ----------
    objective : LinearObjective
    coef : ndarray of shape (n_coef,)

    Returns
    -------
    value : float
    gradient : ndarray of shape (n_coef,)
    product : callable
        ``product(v)`` is ``H(coef) @ v`` (penalty included); its attribute
        ``curvature``, of shape (n_samples, k, k), holds the rows' weighted
        loss Hessians (not divided by the sum of the weights), except on
        small data (the small design's products).
    """
    if objective._small_design() is not None:
        value, grad = objective.loss_gradient(coef)
        return value, grad, lambda vector: objective.hessp(coef, vector)
    k = len(objective.predictors)
    curvature = np.empty((objective.X.shape[0], k, k))
    value, grad, _, _ = objective._pass(coef, curvature=curvature)
    if objective._reads_whole() and objective.predictors[0].columns is None:
        others = objective.predictors[1:]
        if all(pred.p == 0 and pred.fit_intercept for pred in others):
            product = _first_predictor_product(objective, curvature)
            product.curvature = curvature
            return value, grad, product

    def product(vector):
        return _curvature_product(objective, curvature, vector)

    # (For a preconditioner built from the same rows' curvature, see
    # skrobust._sketched_preconditioner.)
    product.curvature = curvature
    return value, grad, product


def _first_predictor_product(objective, curvature):
    """``v -> H v`` when only the first predictor has columns (all of them).

    :func:`_curvature_product` written out for the common cases (every
    fixed-scale fit, and the joint scale's intercept-only ``log sigma``),
    where its bookkeeping per call cost as much as its two matrix-vector
    products with ``X``.
    """
    first, others = objective.predictors[0], objective.predictors[1:]
    X, p, fit = objective.X, first.p, first.fit_intercept
    inv_scale, shift = first.inv_scale, first.shift
    curvature = curvature / objective.sum_weight
    k = curvature.shape[1]
    penalty = objective.penalty

    def product(vector):
        w = vector[:p] * inv_scale
        u = [X @ w]  # the predictors' values along vector
        if fit:
            u[0] += vector[p] - shift @ w
        u += [vector[pred.slice][0] for pred in others]
        out = penalty * vector
        for a in range(k):
            hu = curvature[:, a, 0] * u[0]
            for b in range(1, k):
                hu += curvature[:, a, b] * u[b]
            if a:
                out[others[a - 1].slice] += hu.sum()
                continue
            gw = X.T @ hu
            if fit:
                gb = hu.sum()
                out[:p] += (gw - shift * gb) * inv_scale
                out[p] += gb
            else:
                out[:p] += gw * inv_scale
        return out

    return product


def _curvature_product(objective, curvature, vector):
    """``H @ vector`` from the rows' weighted loss Hessians ``curvature``."""
    predictors = objective.predictors
    raw_dirs = [pred.to_raw(vector[pred.slice]) for pred in predictors]
    if not objective._reads_whole():
        return _blocked_curvature_product(objective, curvature, raw_dirs, vector)
    parts = [pred.take(objective.X) for pred in predictors]
    u = objective._raw_block(parts, raw_dirs)
    if u.shape[1] == 1:
        hu = u * curvature[:, 0]
    else:
        hu = np.einsum("nab,nb->na", curvature, u)
    out = np.empty(objective.n_coef)
    for j, (Aj, pred) in enumerate(zip(parts, predictors, strict=True)):
        gw = np.asarray(Aj.T @ hu[:, j]).ravel() if pred.p else np.zeros(0)
        out[pred.slice] = pred.grad_from_raw(gw, hu[:, j].sum())
    out /= objective.sum_weight
    return out + objective.penalty * vector


def _blocked_curvature_product(objective, curvature, raw_dirs, vector):
    """:func:`_curvature_product` in row blocks (standardised or column subsets)."""
    sums = _PassSums(objective.predictors, False)
    with _THREADPOOLS.limit(limits=1, user_api="blas"):
        for rows, A in objective._row_blocks():
            parts = [pred.take(A) for pred in objective.predictors]
            u = objective._raw_block(parts, raw_dirs)
            hu = np.einsum("nab,nb->na", curvature[rows], u)
            sums.add_hessian_product(parts, hu)
    return sums.finish(objective, vector, False, False, vector)[3]
