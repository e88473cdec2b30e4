r"""Sparse Hessians of sparse designs whose columns rarely meet (one-hot levels).

For one predictor with all the columns of a sparse ``X`` (the fixed-scale
objectives: the smoothed quantile fit), the Hessian in the raw coordinates
of the rows is

.. math::

    H_{raw} = \frac1S \begin{pmatrix} X^\top D X & X^\top d \\
                                      d^\top X & \sum_i d_i \end{pmatrix},
    \qquad d_i = s_i \, \ell''(r_i),

and in the solver's standardised coordinates :math:`H = T^\top H_{raw} T`
(``T`` the coefficient map of :class:`skrobust._objective._Predictor`: a
column scaling and, with an intercept, the implicit centring, whose rank-one
terms would make :math:`H` dense). ``X' D X`` is as sparse as the pattern
of ``X' X``: a design of numeric columns and one-hot levels has a dense
numeric block, a numeric-by-level block and a diagonal level block, 1.1e4
entries at 5 numeric columns and 1000 levels, where the dense matrix has
1e6 and costs ``n p^2`` flops to form. :class:`SparseHessian` keeps
:math:`H_{raw}` sparse, formed from the rows of non-zero curvature only (the
smoothed pinball loss has none beyond ten bandwidths), and applies
:math:`T^\top H_{raw} T` to vectors: a conjugate-gradient Newton direction
(:func:`skrobust._sparse_newton.sparse_newton`) then costs a sparse product with
a few thousand entries per iteration, not a pass over ``X``.
"""

import numpy as np
import scipy.sparse as sp

# A design qualifies when the pattern of X' X on a strided sample of at
# most _SAMPLE_ROWS rows has at most 1 / _MAX_PATTERN_FRACTION of the stored
# entries of X: a product with the Hessian then costs a small part of a
# pass over X (a one-hot design of 5 numeric columns and 1000 levels:
# 1.1e4 entries against 6e5 at 1e5 rows; a random sparse 2e4 x 2000 design
# with 0.5% of its entries: 4.7e5 on 5000 rows against 2e5, refused).
_SAMPLE_ROWS = 5_000
_MAX_PATTERN_FRACTION = 16
# ... and when forming X' D X (sum over rows of the squared row counts) costs
# at most this many times the entries of X: rows of many entries each
# would make every Hessian cost more than the L-BFGS passes it saves.
_MAX_ROW_WORK = 64


def sparse_hessian_affordable(objective):
    """Whether ``objective``'s Newton systems are solved on a :class:`SparseHessian`.

    For a :class:`~skrobust._objective.LinearObjective` of one predictor
    with all the columns of a sparse ``X`` (and any intercept) whose
    Hessian pattern is sparse (see ``_MAX_PATTERN_FRACTION``).
    """
    X = getattr(objective, "X", None)
    if not (getattr(objective, "sparse", False) and sp.issparse(X)):
        return False
    predictors = getattr(objective, "predictors", ())
    if len(predictors) != 1 or predictors[0].columns is not None:
        return False
    X = sp.csr_array(X)
    entries = max(int(X.nnz), 1)
    row_counts = np.diff(X.indptr).astype(np.float64)
    if row_counts @ row_counts > _MAX_ROW_WORK * entries:
        return False
    step = max(1, X.shape[0] // _SAMPLE_ROWS)
    sample = X[::step]
    pattern = (abs(sample).T @ abs(sample)).nnz
    return pattern * _MAX_PATTERN_FRACTION <= entries


class SparseHessian:
    r"""``v -> H v`` and ``diag(H)`` of a one-predictor objective on sparse ``X``.

    ``H = T' H_raw T / S + diag(penalty)`` (see the module docstring), with
    ``H_raw`` held as ``G = X_c' D_c X_c`` (sparse), ``X_c' d_c`` and
    ``sum d_c`` over the rows ``c`` of non-zero curvature.

    Parameters
    ----------
    objective : LinearObjective
        Of one predictor with all the columns of a sparse ``X``.
    curvature : ndarray of shape (n_samples,)
        Each row's weighted loss curvature ``d_i = s_i l''(r_i)``.
    """

    def __init__(self, objective, curvature):
        (pred,) = objective.predictors
        self.pred, self.penalty = pred, objective.penalty
        self.sum_weight = objective.sum_weight
        self._X, self._curvature = objective.X, curvature
        self._gram = None

    def _form(self):
        """``G``, ``X_c' d_c`` and ``sum d_c``, on first use.

        A damped Newton step evaluates trial points that its line search
        may reject: their Hessians are never formed.
        """
        if self._gram is None:
            curved = np.flatnonzero(self._curvature)
            d = self._curvature[curved]
            X = sp.csr_array(self._X)[curved]
            scaled = X.copy()
            scaled.data *= np.repeat(d, np.diff(scaled.indptr))
            self._gram = X.T @ scaled
            self.xd = np.asarray(X.T @ d).ravel()
            self.d_sum = float(d.sum())
            self._X = self._curvature = None
        return self._gram

    def matvec(self, vector):
        """``H @ vector``."""
        pred = self.pred
        gram = self._form()
        w, b = pred.to_raw(vector)
        gw = gram @ w
        gb = float(self.xd @ w)
        if pred.fit_intercept:
            gw = gw + self.xd * b
            gb += self.d_sum * b
        out = pred.grad_from_raw(gw, gb)
        return out / self.sum_weight + self.penalty * vector

    def diagonal(self):
        """``diag(H)``, from the diagonal of ``G`` and the centring's terms."""
        pred = self.pred
        g = self._form().diagonal()
        if pred.fit_intercept:
            s = pred.shift
            g = g - 2.0 * s * self.xd + self.d_sum * s * s
        out = np.empty(pred.p + pred.fit_intercept)
        out[: pred.p] = g * pred.inv_scale**2
        if pred.fit_intercept:
            out[pred.p] = self.d_sum
        return out / self.sum_weight + self.penalty


def loss_gradient_sparse_hessian(objective, coef):
    """Value, gradient and :class:`SparseHessian` at ``coef``: one pass over ``X``."""
    curvature = np.empty((objective.X.shape[0], 1, 1))
    value, grad, _, _ = objective._pass(coef, curvature=curvature)
    return value, grad, SparseHessian(objective, curvature[:, 0, 0])
