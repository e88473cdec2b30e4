r"""Hessian-vector products of a sparse design's objective, without per-call set-up.

:func:`skrobust._curvature.loss_gradient_curvature` returns ``v -> H v``
from the rows' weighted loss Hessians ``C_i``:

.. math::

    H v = \sum_j T_j^\top \tilde X_j^\top h_j / S + \Lambda v, \qquad
    h_{ij} = \sum_k c_{i,jk} (\tilde X_k T_k v_k)_i,

with ``T_j`` predictor ``j``'s map to raw coefficients and ``\tilde X_j`` its
raw columns with the intercept's. Its general path (any columns, row
blocks, a BLAS thread limit per call) took 3.3 ms a product on the
benchmarks' sparse 2e4 x 2000 (2e5 entries), whose four sparse
matrix-vector products take about 1 ms, and truncated Newton
(:mod:`skrobust._sketched_newton`) calls it some 2000 times a fit; this
one took about half as long (13 -> 7 ms on a loaded machine).
:func:`sparse_product` takes the predictors' columns and ``X'`` once per
point and the rows' Hessians as contiguous columns.
"""

import numpy as np
import scipy.sparse as sp


class SparseProducts:
    """A sparse ``X``'s predictor columns and their transposes, once a fit."""

    def __init__(self, objective):
        X = sp.csr_array(objective.X)
        self.objective = objective
        self.columns = [pred.take(X).tocsr() for pred in objective.predictors]
        self.columns_t = [A.T.tocsr() for A in self.columns]

    def product(self, curvature):
        """``v -> H v`` for the rows' weighted loss Hessians ``curvature``."""
        objective = self.objective
        predictors = objective.predictors
        k = len(predictors)
        # (n, k, k) -> k * k contiguous columns, divided by the weights' sum.
        c = [
            [
                np.ascontiguousarray(curvature[:, a, b]) / objective.sum_weight
                for b in range(k)
            ]
            for a in range(k)
        ]
        penalty = objective.penalty

        def product(vector):
            u = []
            for A, pred in zip(self.columns, predictors, strict=True):
                w, b = pred.to_raw(vector[pred.slice])
                u.append(A @ w + b if pred.p else np.full(A.shape[0], float(b)))
            out = penalty * vector
            for a, (At, pred) in enumerate(
                zip(self.columns_t, predictors, strict=True)
            ):
                h = c[a][0] * u[0]
                for b in range(1, k):
                    h += c[a][b] * u[b]
                gw = At @ h if pred.p else np.zeros(0)
                out[pred.slice] += pred.grad_from_raw(gw, h.sum())
            return out

        product.curvature = curvature
        return product
