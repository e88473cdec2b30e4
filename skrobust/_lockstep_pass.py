r"""One pass over ``X`` for the requests of several lanes (:mod:`skrobust._lockstep`).

A group of requests on the same rows (passes with or without a Hessian,
linear predictors, fitted values ``X w``) is served in the row blocks of a
single pass (:meth:`skrobust._objective.LinearObjective._pass_single_threaded`),
with its sums (:class:`skrobust._objective._PassSums`), and with

- every lane's coefficients as the columns of one ``W``: the predictors of
  a block ``A`` are one product ``W^T A^T``, one contiguous row per lane
  (the faster order for BLAS here, and unit stride for the losses);
- each lane's loss on its own row of predictors;
- the gradients as one product ``G A`` and the Hessians' column sums
  ``X^T d`` as another (``G``, ``D``: one row per lane);
- each lane's Gram matrix ``A^T D A`` from the block's ``A^T A``, formed
  once, where its curvature ``d`` is one value ``c`` on every row (least
  squares: ``c A^T A``) or ``c`` and 0 with at most half the rows at 0
  (Huber's loss: ``c (A^T A - A_0^T A_0)`` over the rows ``A_0`` of zero
  curvature), else as a single pass forms it.

Every sum is a single pass's up to rounding (products in another order).
"""

import numpy as np
import scipy.sparse as sp

from ._objective import _PassSums
from ._passes import _row_blocks
from ._small_design import weighted_gram


def batched_dot(requests):
    """``X w`` of every ``"dot"`` request on the same ``X``: one product."""
    X = requests[0][1]
    W = np.column_stack([w for _, _, (w,) in requests])
    return list(_product(X, W))


def _product(A, W):
    """``(A W)^T``: one row per column of ``W``, each contiguous.

    Each row is a lane's predictor, read at unit stride by its loss (and
    ``W^T A^T`` is the faster order of the product for BLAS here).
    """
    if sp.issparse(A):
        return np.ascontiguousarray(np.asarray(A @ W, dtype=np.float64).T)
    return np.asarray(W.T @ A.T, dtype=np.float64)


def _transposed_product(G, A):
    """``G A = (A^T G^T)^T``: each lane's gradient as a row (``G``: (m, rows))."""
    if sp.issparse(A):
        return np.asarray(A.T @ G.T).T
    return G @ A


def _lane_raw(objective, coefs, products, first):
    """One lane's predictors ``(rows, n_predictors)`` from the batched products."""
    n = products.shape[1]
    raw = np.empty((len(objective.predictors), n)).T
    column = first
    for j, (pred, (_, b)) in enumerate(zip(objective.predictors, coefs, strict=True)):
        if pred.columns is None:
            np.add(products[column], b, out=raw[:, j])
            column += 1
        else:
            raw[:, j] = b
    return raw


class _Entry:
    """One request of a batched pass: its columns of ``W`` and what it collects.

    ``kind`` is ``"pass"`` (value, gradient and/or Hessian of ``objective``
    at ``coef``: :class:`~skrobust._objective._PassSums`), ``"raw"`` (its
    linear predictors) or ``"dot"`` (``X w`` of the raw design).
    """

    def __init__(self, kind, objective, args, column, n_rows):
        self.kind, self.objective, self.column = kind, objective, column
        if kind == "dot":
            self.columns = [np.asarray(args[0], dtype=np.float64)]
            self.out = np.empty(n_rows)
            return
        self.coef = args[0]
        self.coefs = [p.to_raw(self.coef[p.slice]) for p in objective.predictors]
        self.columns = [
            w
            for pred, (w, _) in zip(objective.predictors, self.coefs, strict=True)
            if pred.columns is None
        ]
        if kind == "raw":
            self.out = np.empty((n_rows, len(objective.predictors)))
            return
        self.gradient, self.hessian = args[1], args[2]
        self.sums = _PassSums(objective.predictors, self.hessian)
        self.remembered = (
            np.empty((n_rows, len(objective.predictors)))
            if objective.remember_prediction
            else None
        )

    def result(self):
        if self.kind != "pass":
            return self.out
        objective = self.objective
        if self.remembered is not None:
            objective._remember(self.coef, self.remembered)
        return self.sums.finish(objective, self.coef, self.gradient, self.hessian, None)


def batched_pass(requests):
    """Every request of one group (:func:`skrobust._lockstep._batch_key`) in one pass.

    The rows, blocks and sums of
    :meth:`~skrobust._objective.LinearObjective._pass_single_threaded`,
    with the products with ``X`` shared (see the module).
    """
    first = next(objective for kind, objective, _ in requests if kind != "dot")
    n_rows = first.X.shape[0]
    entries, column = [], 0
    for kind, objective, args in requests:
        entry = _Entry(kind, objective, args, column, n_rows)
        entries.append(entry)
        column += len(entry.columns)
    W = np.column_stack([w for entry in entries for w in entry.columns])
    passes = [entry for entry in entries if entry.kind == "pass"]
    hessian = any(entry.hessian for entry in passes)
    gradient = any(entry.gradient for entry in passes)
    whole = first._reads_whole()
    for rows, A in first._row_blocks(vectors_only=not hessian or whole):
        products = _product(A, W)
        # (One row per lane's predictor: contiguous for the loss's columns.)
        G = np.zeros_like(products) if gradient else None
        blocks = []
        if hessian:
            inner = _row_blocks(*A.shape) if whole else [slice(None)]
            blocks = [(block, _BlockGram(A[block], first.sparse)) for block in inner]
        # Each lane's Hessian column sums X^T d, as rows for one product
        # per block: (target, d) pairs.
        column_sums = [[] for _ in blocks]
        for entry in entries:
            if entry.kind == "dot":
                entry.out[rows] = products[entry.column]
                continue
            objective = entry.objective
            raw = _lane_raw(objective, entry.coefs, products, entry.column)
            if entry.kind == "raw":
                entry.out[rows] = raw
                continue
            _lane_block(entry, rows, raw, G, blocks, column_sums)
        for (_, shared_gram), targets in zip(blocks, column_sums, strict=True):
            if targets:
                D = np.array([d for _, d in targets])
                for (target, _), row in zip(
                    targets, _transposed_product(D, shared_gram.A), strict=True
                ):
                    target += row
        if gradient:
            GtA = _transposed_product(G, A)
            for entry in passes:
                if entry.gradient:
                    column = entry.column
                    for j, pred in enumerate(entry.objective.predictors):
                        if pred.columns is None:
                            entry.sums.gw[j] += GtA[column]
                            column += 1
    return [entry.result() for entry in entries]


def _lane_block(entry, rows, raw, G, blocks, column_sums):
    """One lane's loss on a row block, and its sums (those of a single pass)."""
    objective, sums = entry.objective, entry.sums
    if entry.remembered is not None:
        entry.remembered[rows] = raw
    sw = objective.sample_weight[rows]
    unit = objective.unit_weights
    y = objective.y[rows]
    if entry.hessian:
        loss, g, h = objective.loss.loss_gradient_hessian(y, raw)
    else:
        loss, g = objective.loss.loss_gradient(y, raw)
    with np.errstate(over="ignore", invalid="ignore"):
        sums.value += loss.sum() if unit else sw @ loss
    if entry.gradient:
        if not unit:
            g *= sw[:, None]
        column = entry.column
        for j, pred in enumerate(objective.predictors):
            if pred.columns is None:
                G[column] = g[:, j]
                column += 1
            sums.gb[j] += g[:, j].sum()
    if not entry.hessian:
        return
    for (block, shared_gram), targets in zip(blocks, column_sums, strict=True):
        _add_hessian(
            sums,
            objective.predictors,
            shared_gram.A,
            h[block],
            None if unit else sw[block],
            shared_gram,
            targets,
        )


class _BlockGram:
    """A row block's Gram matrix ``A^T A``, formed when a lane first needs it."""

    def __init__(self, A, sparse):
        self.A, self.sparse, self._gram = A, sparse, None

    def gram(self):
        if self._gram is None:
            A = self.A
            self._gram = (
                np.asarray((A.T @ A).todense())
                if self.sparse
                else np.asarray(A.T @ A, dtype=np.float64)
            )
        return self._gram


# A lane's Gram matrix is the block's minus its rows of zero curvature when
# these are at most this fraction of the block (else its curved rows are
# gathered, as a single pass does).
_MAX_ZERO_FRACTION = 0.5


def _lane_gram(block, d):
    """``A^T diag(d) A`` from the shared block Gram matrix, or None.

    Where ``d`` is one value ``c`` on every row, ``c A^T A``; where it is
    ``c`` or 0, ``c (A^T A - A_0^T A_0)`` over the rows ``A_0`` of zero
    curvature (Huber's loss), if they are few enough that this gathers
    fewer rows than the single pass's gather of the others.
    """
    if block.sparse or not d.size:
        return None
    top = float(d.max())
    if not top > 0:
        return None
    zero = d == 0
    if not np.all(zero | (d == top)):
        return None
    n_zero = int(np.count_nonzero(zero))
    if n_zero > _MAX_ZERO_FRACTION * d.size:
        return None
    gram = block.gram()
    if n_zero:
        # (np.compress gathers rows several times faster than A[zero].)
        C = np.asarray(np.compress(zero, block.A, axis=0), dtype=np.float64)
        gram = gram - C.T @ C
    return top * gram


def _add_hessian(sums, predictors, A, h, sw, block, column_sums):
    """:meth:`_PassSums.add_hessian` with Gram matrices from the shared block's.

    The column sums ``A^T d`` are left to the caller's one product for all
    lanes: ``(target, d)`` is appended to ``column_sums``.
    """
    for a, b in sums.pairs:
        d = h[:, a, b] if sw is None else sw * h[:, a, b]
        has_a = predictors[a].columns is None
        has_b = predictors[b].columns is None
        if has_a and has_b:
            gram = _lane_gram(block, d) if a == b else None
            if gram is None:
                gram = weighted_gram(A, A, d, block.sparse)
            sums.G[a, b] += gram
        if has_a:
            column_sums.append((sums.xd[a, b][0], d))
        if a != b and has_b:
            column_sums.append((sums.xd[a, b][1], d))
        sums.d_sum[a, b] += d.sum()
