r"""Sparse Hessians of sparse designs whose columns rarely meet (one-hot levels).

For predictors ``a, b = 1..k`` on columns of a sparse ``X`` (one for the
fixed-scale objectives, such as the smoothed quantile fit; the mean and the
log-variance of the heteroscedastic likelihood), the Hessian in the raw
coordinates of the rows has the blocks

.. math::

    H_{ab,raw} = \frac1S \begin{pmatrix} X_a^\top D_{ab} X_b & X_a^\top d_{ab} \\
                                         d_{ab}^\top X_b & \sum_i d_{ab,i}
                         \end{pmatrix},
    \qquad d_{ab,i} = s_i \, \partial^2 \ell_i / \partial \eta_a \partial \eta_b,

``X_a`` the columns of predictor ``a``, and in the solver's standardised
coordinates :math:`H_{ab} = T_a^\top H_{ab,raw} T_b` (``T`` the coefficient
map of :class:`skrobust._predictors._Predictor`: a column scaling and, with
an intercept, the implicit centring, whose rank-one terms would make
:math:`H` dense). Each ``X' D_ab X`` is as sparse as the pattern of ``X' X``:
a design of numeric columns and one-hot levels has a dense numeric block, a
numeric-by-level block and a diagonal level block, 1.1e4 entries at 5
numeric columns and 1000 levels, where the dense matrix has 1e6 and costs
``n p^2`` flops to form. :class:`SparseHessian` keeps the raw blocks
(:class:`_RawGram`, one per pair ``a <= b``: ``D_ab = D_ba``, and each is
symmetric), formed from the rows of non-zero curvature only (the smoothed
pinball loss has none beyond ten bandwidths), and applies ``T' H_raw T`` to
vectors: a conjugate-gradient Newton direction
(:func:`skrobust._sparse_newton.sparse_newton`) then costs sparse products
with a few thousand entries per iteration, not a pass over ``X``.

**Dense columns apart.** A sparse-times-sparse product ``X' (D X)`` costs
the sum over rows of their squared counts of entries: 3.6e6 multiply-adds
and 30 ms at 1e5 rows of 5 numeric columns and one level, most of it on the
5 x 5 numeric block. Columns stored on more than ``1 / _DENSE_COLUMN_SHARE``
of the rows are therefore kept as a dense copy ``X_H`` (:class:`SplitDesign`,
made once per design), whose blocks ``X_H' D X_H`` and ``X_L' D X_H`` are
dense products (BLAS, and one pass over the sparse rest ``X_L``), and only
``X_L' D X_L`` is a sparse product (a diagonal, for one one-hot feature):
the three blocks of a heteroscedastic Hessian then cost some 8 ms at 1e5
rows, a pass and a half over ``X``.
"""

import numpy as np
import scipy.linalg
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
# Columns stored on more than this share of the rows are kept dense (see
# the module docstring): their dense copy holds at most 1 / share times
# their stored entries.
_DENSE_COLUMN_SHARE = 0.25
# A Hessian is formed on all the rows when more than this share of them
# have curvature (see SparseHessian._form).
_ALL_ROWS_SHARE = 0.5


def sparse_hessian_affordable(objective):
    """Whether ``objective``'s Newton systems are solved on a :class:`SparseHessian`.

    For a :class:`~skrobust._objective.LinearObjective` on a sparse ``X``
    (any number of predictors, each on a subset of its columns, with any
    intercepts) whose Hessian pattern is sparse (see
    ``_MAX_PATTERN_FRACTION``) and cheap to form (``_MAX_ROW_WORK``).
    """
    X = getattr(objective, "X", None)
    if not (getattr(objective, "sparse", False) and sp.issparse(X)):
        return False
    predictors = getattr(objective, "predictors", ())
    if not predictors or not any(pred.p for pred in predictors):
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


class SplitDesign:
    """The columns of a sparse ``X``: a dense copy of the heavy ones, the rest sparse.

    Heavy columns are those stored on more than ``_DENSE_COLUMN_SHARE`` of
    the rows (see the module docstring). Made once per design
    (:func:`split_design`) and shared by every Hessian formed on it. When
    no row holds two light entries (one one-hot feature), ``X_L' D X_L``
    is diagonal, ``(X_L o X_L)' d``, and ``squared`` holds ``X_L o X_L``.
    """

    def __init__(self, X):
        X = sp.csr_array(X)
        n, p = X.shape
        counts = np.bincount(X.indices, minlength=p)
        self.heavy = np.flatnonzero(counts > _DENSE_COLUMN_SHARE * n)
        self.light = np.flatnonzero(counts <= _DENSE_COLUMN_SHARE * n)
        self.p = p
        self.dense = X[:, self.heavy].toarray() if self.heavy.size else None
        self.sparse = sp.csr_array(X[:, self.light] if self.heavy.size else X)
        self.squared = None
        if np.max(np.diff(self.sparse.indptr), initial=0) <= 1:
            self.squared = self.sparse.copy()
            self.squared.data **= 2

    def rows(self, rows):
        """``(dense, sparse, squared)`` restricted to ``rows`` (None for all)."""
        if rows is None:
            return self.dense, self.sparse, self.squared
        dense = None if self.dense is None else self.dense[rows]
        squared = None if self.squared is None else self.squared[rows]
        return dense, self.sparse[rows], squared


def split_design(objective):
    """``objective``'s :class:`SplitDesign`, made on first use and kept on it.

    Kept on its ``split_owner`` instead if it has one: an objective on the
    same ``X`` (the fits of one problem share it: the four smoothed LAD
    fits of ``scale="lad"`` and the fixed-scale fit made it five times, 6
    ms each at 1e5 x 1005 one-hot).
    """
    owner = getattr(objective, "split_owner", None) or objective
    split = getattr(owner, "_split_design", None)
    if split is None:
        split = SplitDesign(owner.X)
        owner._split_design = split
    return split


def raw_grams(split, rows, curvatures):
    """A :class:`_RawGram` per column of ``curvatures`` (rows ``rows`` of ``X``).

    The blocks of all of them in a few products with ``X``: one dense
    ``X_H' [d_1 X_H, d_2 X_H, ...]`` and one pass over ``X_L`` for its
    products with the same matrix and with ``curvatures``.
    """
    dense, sparse, squared = split.rows(rows)
    n, m = curvatures.shape
    xd = np.empty((m, split.p))
    xd[:, split.light] = np.asarray(sparse.T @ curvatures).T
    d_sums = curvatures.sum(axis=0)
    hh = lh = [None] * m
    if dense is not None:
        h = dense.shape[1]
        scaled = (curvatures[:, :, None] * dense[:, None, :]).reshape(n, m * h)
        hh = (dense.T @ scaled).reshape(h, m, h).transpose(1, 0, 2)
        lh = np.asarray(sparse.T @ scaled).reshape(-1, m, h).transpose(1, 0, 2)
        xd[:, split.heavy] = curvatures.T @ dense
    if squared is not None:
        ll = np.asarray(squared.T @ curvatures).T  # (diagonals)
    else:
        ll = []
        for j in range(m):
            scaled_rows = sparse.copy()
            scaled_rows.data *= np.repeat(curvatures[:, j], np.diff(sparse.indptr))
            ll.append(sp.csr_array(sparse.T @ scaled_rows))
    return [
        _RawGram(split, hh[j], lh[j], ll[j], xd[j], float(d_sums[j])) for j in range(m)
    ]


class _RawGram:
    r"""``X' D X``, ``X' d`` and ``sum d`` of one curvature ``d``, blockwise.

    With ``X = [X_H, X_L]`` (:class:`SplitDesign`), ``X' D X`` is kept as
    the dense ``X_H' D X_H`` (``hh``) and ``X_L' D X_H`` (``lh``) and
    ``X_L' D X_L`` (``ll``: sparse, or a 1-D array where it is diagonal).
    """

    def __init__(self, split, hh, lh, ll, xd, d_sum):
        self.split, self.hh, self.lh, self.ll = split, hh, lh, ll
        self.xd, self.d_sum = xd, d_sum

    def matvec(self, w, b):
        """``(X' D X w + X' d b, d' X w + sum d b)`` for raw ``w`` on all columns."""
        split = self.split
        out = np.empty(split.p)
        w_light = w[split.light]
        light = self.ll * w_light if self.ll.ndim == 1 else self.ll @ w_light
        if split.heavy.size:
            w_heavy = w[split.heavy]
            light += self.lh @ w_heavy
            out[split.heavy] = self.hh @ w_heavy + self.lh.T @ w_light
        out[split.light] = light
        gb = float(self.xd @ w)
        if b:
            out += self.xd * b
            gb += self.d_sum * b
        return out, gb

    def diagonal(self):
        """The diagonal of ``X' D X`` on all columns."""
        out = np.empty(self.split.p)
        out[self.split.light] = self.ll if self.ll.ndim == 1 else self.ll.diagonal()
        if self.split.heavy.size:
            out[self.split.heavy] = np.diag(self.hh)
        return out


class SparseHessian:
    r"""``v -> H v`` and ``diag(H)`` of an objective on sparse ``X``.

    ``H_ab = T_a' H_ab,raw T_b / S`` plus the penalty on the diagonal (see
    the module docstring), the raw blocks formed on first use from the rows
    where some curvature is non-zero.

    Parameters
    ----------
    objective : LinearObjective
        On a sparse ``X``.
    curvature : ndarray of shape (n_samples, k, k)
        Each row's weighted loss Hessian ``s_i d^2 l_i / d eta_a d eta_b``
        (``k`` the number of predictors).
    """

    def __init__(self, objective, curvature):
        self.predictors, self.penalty = objective.predictors, objective.penalty
        self.sum_weight = objective.sum_weight
        self.n_coef = objective.n_coef
        self._split = split_design(objective)
        self._curvature = curvature
        self._grams = None

    def _form(self):
        """The raw blocks ``{(a, b): _RawGram}`` for ``a <= b``, on first use.

        A damped Newton step evaluates trial points that its line search
        may reject: their Hessians are never formed.
        """
        if self._grams is None:
            curvature = self._curvature
            n, k = curvature.shape[:2]
            # Rows of non-zero curvature: by the diagonal, then (where that
            # is 0 on some rows) by the whole of it.
            curved = np.einsum("njj->nj", curvature).any(axis=1)
            if not curved.all():
                rest = np.flatnonzero(~curved)
                curved[rest] = curvature[rest].reshape(rest.size, -1).any(axis=1)
            # The rows without curvature add nothing: they are left out
            # unless they are few: taking the others' rows of X (indexing a
            # sparse matrix by rows) then costs more than the products it
            # saves (1e5 x 1005 one-hot: with 90% of the rows curved, 6.6 ->
            # 3.7 ms per Hessian; even at 38%).
            most = np.count_nonzero(curved) > _ALL_ROWS_SHARE * curved.size
            rows = None if most else np.flatnonzero(curved)
            if rows is not None:
                curvature = curvature[rows]
            pairs = [
                (a, b)
                for a in range(k)
                for b in range(a, k)
                if self.predictors[a].p + self.predictors[a].fit_intercept
                and self.predictors[b].p + self.predictors[b].fit_intercept
            ]
            columns = np.stack([curvature[:, a, b] for a, b in pairs], axis=1)
            grams = raw_grams(self._split, rows, columns)
            self._grams = dict(zip(pairs, grams, strict=True))
            self._curvature = None
        return self._grams

    def _gram(self, a, b):
        return self._form().get((min(a, b), max(a, b)))

    def _full_columns(self, pred, w):
        """Raw coefficients ``w`` of ``pred`` on all the columns of ``X``."""
        if pred.columns is None:
            return w
        out = np.zeros(self._split.p)
        out[pred.columns] = w
        return out

    def matvec(self, vector):
        """``H @ vector``."""
        raw = [
            (self._full_columns(pred, w), b)
            for pred in self.predictors
            for w, b in [pred.to_raw(vector[pred.slice])]
        ]
        out = self.penalty * vector
        for a, pred in enumerate(self.predictors):
            if pred.p + pred.fit_intercept == 0:
                continue
            gw, gb = np.zeros(self._split.p), 0.0
            for b, (w, intercept) in enumerate(raw):
                gram = self._gram(a, b)
                if gram is None:
                    continue
                part_w, part_b = gram.matvec(w, intercept)
                gw += part_w
                gb += part_b
            if pred.columns is not None:
                gw = gw[pred.columns]
            out[pred.slice] += pred.grad_from_raw(gw, gb) / self.sum_weight
        return out

    def diagonal(self):
        """``diag(H)``: the raw blocks' diagonals and the centring's terms."""
        out = np.empty(self.n_coef)
        for a, pred in enumerate(self.predictors):
            gram = self._gram(a, a)
            diagonal = np.zeros(pred.p + pred.fit_intercept)
            if gram is not None:
                g, xd = gram.diagonal(), gram.xd
                if pred.columns is not None:
                    g, xd = g[pred.columns], xd[pred.columns]
                if pred.fit_intercept:
                    s = pred.shift
                    g = g - 2.0 * s * xd + gram.d_sum * s * s
                    diagonal[pred.p] = gram.d_sum
                diagonal[: pred.p] = g * pred.inv_scale**2
            out[pred.slice] = diagonal
        return out / self.sum_weight + self.penalty


def loss_gradient_sparse_hessian(objective, coef):
    """Value, gradient and :class:`SparseHessian` at ``coef``: one pass over ``X``."""
    k = len(objective.predictors)
    curvature = np.empty((objective.X.shape[0], k, k))
    value, grad, _, _ = objective._pass(coef, curvature=curvature)
    return value, grad, SparseHessian(objective, curvature)


class ArrowPreconditioner:
    r"""A direct solve with ``H + E`` (``E`` diagonal) for one one-hot feature.

    In raw coordinates (``w_raw = s w``, ``b_raw = b - shift' w_raw``: the
    map ``M`` of the predictor, see :class:`SparseHessian`) the Hessian
    ``H = M' K M / S`` of dense columns and one one-hot feature is an
    *arrow* matrix: the light (level) block of ``K`` is diagonal, the rest a
    small dense block of the heavy columns and the intercept. With ``E``
    zero on the intercept, ``M^{-T} E M^{-1}`` is the diagonal ``E_w / s^2``,
    so ``(H + E)^{-1} = M^{-1} (K / S + E_w / s^2)^{-1} M^{-T}``, solved by
    the Schur complement of the diagonal block: products of length ``p``
    and a Cholesky solve of the small block. Conjugate gradients
    preconditioned by the diagonal took 100 to 200 products per Newton
    direction at the continuation's bandwidths on the 1e5 x 1005 one-hot
    design (the standardised coordinates' centring couples every level to
    the intercept); with this, one to three.

    The levels sum to the intercept's column (``OneHotEncoder``'s output):
    ``K`` is singular along ``b_raw = 1``, levels ``-1``, a flat direction
    of the objective, and a level without curved rows has no curvature at
    all. Every level's curvature is therefore raised by ``floor`` (the
    floor of the standardised diagonal: ``floor / s^2`` in raw units is
    exactly ``floor`` on the level's standardised diagonal entry), which
    makes the Schur complement definite, as the floor keeps the
    Newton system's flat directions finite
    (:func:`skrobust._sparse_newton._sparse_direction`). Only the
    preconditioner changes: conjugate gradients solve the system ``H + E``
    as before, to the same forcing term. (Dropping the intercept's
    equation instead, a generalised inverse, annihilated the residuals
    along that direction once the floor raised some level of ``E``, and
    conjugate gradients broke down.)
    """

    def __init__(self, hessian, extra, floor):
        (pred,) = hessian.predictors
        gram = hessian._gram(0, 0)
        split = hessian._split
        S = hessian.sum_weight
        s = pred.inv_scale
        self.pred, self.split = pred, split
        light, heavy = split.light, split.heavy
        extra_w = extra[: pred.p] / (s * s)
        h = heavy.size
        k = h + int(pred.fit_intercept)
        small = np.zeros((k, k))
        coupling = np.zeros((light.size, k))
        if h:
            small[:h, :h] = gram.hh / S
            small[np.arange(h), np.arange(h)] += extra_w[heavy]
            coupling[:, :h] = gram.lh / S
        if pred.fit_intercept:
            small[:h, h] = small[h, :h] = gram.xd[heavy] / S
            small[h, h] = gram.d_sum / S
            coupling[:, h] = gram.xd[light] / S
        # A level's curvature is that of its rows, negative where a
        # likelihood that is not convex curves down there: floored at zero
        # before the floor is added, so that the diagonal block stays
        # positive and the solve a positive definite preconditioner (with a
        # negative entry, conjugate gradients took an ascent direction or
        # broke down).
        curvature = np.maximum(gram.ll / S + extra_w[light], 0.0)
        self.diagonal = curvature + floor / s[light] ** 2
        if not np.all(np.isfinite(self.diagonal)):
            raise np.linalg.LinAlgError("curvature not finite")
        self.coupling = coupling
        self.factor = None
        if k:
            schur = small - coupling.T @ (coupling / self.diagonal[:, None])
            factor = scipy.linalg.cho_factor(schur, lower=True, check_finite=False)
            if not np.all(np.diag(factor[0]) > 0):
                raise np.linalg.LinAlgError("not positive definite")
            self.factor = factor

    @classmethod
    def of(cls, hessian, extra, floor):
        """The preconditioner of ``hessian + diag(extra)``, or None.

        None unless ``hessian`` (a :class:`SparseHessian`) has one predictor
        on all the columns, none of them pinned, a diagonal light block (one
        one-hot feature) of finite curvature, ``extra`` zero on the
        intercept and ``floor > 0``, and the Schur complement is positive
        definite. A level of negative curvature counts as one of none.
        """
        predictors = hessian.predictors
        if len(predictors) != 1 or predictors[0].columns is not None:
            return None
        pred = predictors[0]
        if not (pred.p and np.all(pred.inv_scale > 0) and floor > 0):
            return None
        if pred.fit_intercept and extra[pred.p] != 0:
            return None
        gram = hessian._gram(0, 0)
        if gram is None or gram.ll.ndim != 1:
            return None
        try:
            return cls(hessian, extra, floor)
        except (np.linalg.LinAlgError, ValueError):
            return None

    def solve(self, rhs):
        """``(H + E)^{-1} rhs``, with the levels' curvature raised by the floor."""
        pred, split = self.pred, self.split
        s = pred.inv_scale
        # b = M^{-T} rhs: b_w = rhs_w / s + shift rhs_b, b_b = rhs_b.
        b_w = rhs[: pred.p] / s
        if pred.fit_intercept:
            b_w += pred.shift * rhs[pred.p]
        u_light = b_w[split.light] / self.diagonal
        u_small = np.empty(0)
        if self.factor is not None:
            b_small = b_w[split.heavy]
            if pred.fit_intercept:
                b_small = np.append(b_small, rhs[pred.p])
            u_small = scipy.linalg.cho_solve(
                self.factor, b_small - self.coupling.T @ u_light, check_finite=False
            )
            u_light -= (self.coupling @ u_small) / self.diagonal
        u_w = np.empty(pred.p)
        u_w[split.light] = u_light
        u_w[split.heavy] = u_small[: split.heavy.size]
        # M^{-1} u: c_w = u_w / s, c_b = u_b + shift' u_w.
        out = np.empty_like(rhs)
        out[: pred.p] = u_w / s
        if pred.fit_intercept:
            out[pred.p] = u_small[-1] + pred.shift @ u_w
        return out
