r"""The inverse of a diagonal plus a few sparse rows' Gram matrix, by Woodbury.

For a block of :func:`skrobust._sketched_preconditioner.sketched_block_factor`
on a sparse ``X``,

.. math::

    P = D + Z^\top W Z, \qquad Z = \tilde A T,

with ``D`` diagonal and positive, ``W = diag(d)`` the ``m`` chosen rows'
weights, ``\tilde A = [A, 1]`` their raw sparse rows with the intercept's
column, and ``T`` the map from standardised to raw coefficients (``w_raw =
u w``, ``b_raw = b - s' w_raw``; see :class:`skrobust._predictors._Predictor`).
Woodbury's identity with :math:`B = W^{1/2} Z`,

.. math::

    P^{-1} = D^{-1} - D^{-1} B^\top (I + B D^{-1} B^\top)^{-1} B D^{-1},

needs the Cholesky factorisation of an ``m x m`` matrix, :math:`I + B
D^{-1} B^\top`, whose eigenvalues are at least 1. Its sparse part :math:`A
\operatorname{diag}(u^2 / D) A^\top` has few entries (rows share few
columns), the centring adds a rank-two term. Where ``P`` is formed and
factored as a ``p x p`` matrix, as for a dense ``X``, this costs ``m^3 / 3``
flops instead of ``p^3 / 3`` and a solve ``2 m^2`` plus two sparse products
instead of ``2 p^2``: with ``m = p / 2`` an eighth and a quarter.
"""

import numpy as np
import scipy.linalg
import scipy.sparse as sp

_trsv = scipy.linalg.blas.dtrsv
_syr2 = scipy.linalg.blas.dsyr2


class WoodburyFactor:
    """``P^-1`` for ``P = D + T' A~' W A~ T`` (module docstring).

    Parameters
    ----------
    rows : sparse matrix of shape (m, p)
        The chosen rows of the predictor's raw columns.
    pred : skrobust._predictors._Predictor
        The predictor (its ``inv_scale``, ``shift`` and intercept).
    weights : ndarray of shape (m,)
        The rows' positive weights ``d``.
    diagonal : ndarray of shape (p + fit_intercept,)
        ``D``, positive.
    """

    def __init__(self, rows, pred, weights, diagonal):
        self.pred = pred
        self.rows = sp.csr_array(rows)
        self.rows_t = self.rows.T.tocsr()
        self.root = np.sqrt(weights)
        self.inverse = 1.0 / diagonal
        p = pred.p
        e = pred.inv_scale**2 * self.inverse[:p]
        # W^1/2 A~ diag(e) A~' W^1/2 from the sparse rows scaled first, and
        # Fortran-ordered for LAPACK: the dense m x m passes of scaling it
        # afterwards (five, 8 MB each at m = 1001) cost a quarter as much
        # as its factorisation.
        scaled = self.rows.multiply(self.root[:, None]).tocsr()
        core = (scaled.multiply(e[None, :]) @ scaled.T).toarray(order="F")
        if pred.fit_intercept:
            # T D^-1 T' = [[diag(e), -e s], [-(e s)', s'(e s) + 1 / D_b]],
            # and the intercept's column of A~ is ones: the rank-two update
            # r_i r_j (c - a_i - a_j) = (r y' + y r')_ij, y = r (c / 2 - a),
            # on the lower triangle (BLAS syr2; potrf reads no other).
            es = e * pred.shift
            c = float(pred.shift @ es) + self.inverse[p]
            y = self.root * (0.5 * c - self.rows @ es)
            core = _syr2(1.0, self.root, y, lower=1, a=core, overwrite_a=1)
        core.flat[:: core.shape[0] + 1] += 1.0
        self.lower, info = scipy.linalg.lapack.dpotrf(
            core, lower=1, clean=0, overwrite_a=1
        )
        self.ok = info == 0

    def _b(self, t):
        """``B t = W^1/2 A~ T t``."""
        w, b = self.pred.to_raw(t)
        return self.root * (self.rows @ w + b)

    def _b_transpose(self, q):
        """``B' q = T' A~' W^1/2 q``."""
        q = self.root * q
        return self.pred.grad_from_raw(self.rows_t @ q, q.sum())

    def solve(self, rhs):
        """``P^-1 rhs``."""
        t = rhs * self.inverse
        # Two triangular solves (BLAS trsv) rather than LAPACK's potrs, whose
        # trsm on one right-hand side packs the triangle first: 0.19 ms
        # against 0.53 ms at m = 1001, where a conjugate-gradient iteration
        # of the benchmarks' sparse 2e4 x 2000 fit took two such solves and
        # 3.7 ms in all.
        q = _trsv(self.lower, self._b(t), lower=1, overwrite_x=1)
        q = _trsv(self.lower, q, lower=1, trans=1, overwrite_x=1)
        return t - self._b_transpose(q) * self.inverse
