r"""A block-diagonal preconditioner from a few rows, for Newton on many coefficients.

The Hessian of a linear objective with predictors ``j = 1..k`` is
:math:`H = \sum_i Z_i^\top C_i Z_i`, ``C_i`` the ``k x k`` weighted loss
Hessian of row ``i`` and ``Z_i`` the block-diagonal of the row's
standardised designs. Forming it costs ``n (k p)^2``: on a 2e4 x 1000
heteroscedastic fit three Gram matrices, 3 s, about 150 Hessian-vector
products. This preconditioner keeps, per predictor, the diagonal block
:math:`H_{jj} = \sum_i c_{i,jj} z_{ij} z_{ij}^\top` only, and forms it from
the ``m`` rows of largest :math:`c_{i,jj} \lVert z_{ij} \rVert^2` exactly and
the other rows' share by its diagonal:

.. math::

    P_{jj} = \sum_{i \in T} c_{i,jj} z_{ij} z_{ij}^\top
    + \operatorname{diag}\Big(\sum_{i \notin T} c_{i,jj} z_{ij}^2\Big)
    + \Lambda_j.

Why this works where a diagonal does not: the weights of a weighted Gram
matrix such as the mean block of a Gaussian likelihood,
:math:`1 / \sigma_i^2`, can span ten orders of magnitude, so that a few
rows (18 effective rows of 4000 at the optimum of a 4000 x 200 fit) carry
its large eigenvalues, which a diagonal cannot represent; those rows are
``T``. The remaining rows have weights of comparable sizes, and for them
the diagonal is a fair summary. The blocks couple only through the cross
terms :math:`c_{i,ab}`, which at a regular optimum largely cancel over the
rows. Measured on that 4000 x 200 fit with ``m = p``: the condition number
of :math:`P^{-1} H` at the optimum was 21 (that of :math:`H`, 3.4e5; of its
diagonal scaling, 2100; of its exact block diagonal, 12).

Building ``P`` costs one pass over ``X`` (the diagonals and the rows'
scores), a Gram matrix of ``m`` rows (``m p^2``) and a Cholesky
factorisation (``p^3 / 3``) per block: with ``m = p``, a fraction of one
Hessian. On a sparse ``X`` with blocks of more than a thousand
coefficients, ``m = p / 2`` and ``P`` is factored by Woodbury's identity
(:mod:`skrobust._woodbury_factor`): ``m^3 / 3`` flops, where the ``p^3 /
3`` of two blocks of order 2001 were most of a sparse ``2e4 x 2000`` fit.
"""

import numpy as np
import scipy.sparse as sp

from ._linalg import CholeskyFactor
from ._passes import _THREADPOOLS
from ._small_design import standardised_design
from ._woodbury_factor import WoodburyFactor

# Rows kept exactly per block, as a multiple of the block's coefficients:
# at 4000 x 200, 0.5 gave a condition number of 41, 1 of 21, 2 of 13.
_ROWS_PER_COEF = 1.0
# ... on a sparse X, for blocks of more than _SPARSE_FEW_ROWS_MAX_COEF
# coefficients, whose P is then factored by Woodbury's identity in m^3 / 3
# flops (_woodbury_factor). On the benchmarks' sparse 2e4 x 2000 (one CPU,
# a loaded machine): 1 took 34 s (85 iterations, 1018 conjugate-gradient
# iterations), 0.5 14 s (98, 1760), 0.25 14 s (117, 4214). Smaller blocks
# keep the dense factorisation of order p with m = p: there it costs
# little (7 ms at 600), and on seven sparse 4000 x 600 fits 0.5 took more
# iterations (135-181 against 87-162), more time in four, and reached
# other local optima of the (non-convex) likelihood, lower in six.
_SPARSE_ROWS_PER_COEF = 0.5
_SPARSE_FEW_ROWS_MAX_COEF = 1000
# The smallest diagonal of the rows not chosen (sparse X), as a fraction of
# the whole diagonal: Woodbury's identity needs it invertible.
_DIAGONAL_FLOOR = 1e-8


class BlockFactor:
    """``P^-1`` for a block-diagonal ``P``: one factor per coefficient slice."""

    def __init__(self, slices, factors):
        self.slices, self.factors = slices, factors

    def solve(self, rhs):
        """``P^-1 rhs``."""
        out = np.empty_like(rhs)
        for block, factor in zip(self.slices, self.factors, strict=True):
            out[block] = factor.solve(rhs[block])
        return out


class _Diagonal:
    """A diagonal block's inverse (where its Cholesky factorisation failed)."""

    def __init__(self, diagonal):
        self.inverse = 1.0 / diagonal

    def solve(self, rhs):
        return rhs * self.inverse


def uses_sketch(objective):
    """Whether :func:`sketched_block_factor` applies to ``objective``.

    Objectives with two or more predictors on columns of ``X`` (the
    heteroscedastic model's mean and log-variance), whose Hessians' blocks
    are weighted Gram matrices, on dense or sparse designs (a
    :class:`~skrobust._objective.LinearObjective`'s; the Dask objective has
    no rows' curvature), that keep their rows' curvature
    (``loss_gradient_curvature``). Objectives of one
    predictor on columns have their own solvers (a Hessian per few steps,
    :func:`skrobust._preconditioned_newton._preconditioned_newton`, or L-BFGS), which
    this one was not measured against.
    """
    predictors = getattr(objective, "predictors", ())
    return (
        hasattr(objective, "loss_gradient_curvature")
        and hasattr(objective, "sparse")
        and sum(pred.p > 0 for pred in predictors) >= 2
    )


def sketched_block_factor(objective, curvature):
    """The preconditioner ``P`` (module docstring) as a :class:`BlockFactor`.

    Parameters
    ----------
    objective : LinearObjective
    curvature : ndarray of shape (n_samples, k, k)
        The rows' weighted loss Hessians (as
        :func:`skrobust._curvature.loss_gradient_curvature` keeps them),
        not yet divided by the sum of the weights.

    Returns
    -------
    BlockFactor
    """
    predictors = objective.predictors
    # Each block's own curvature; a negative one (not of a convex loss
    # in that predictor) would make P indefinite and counts as none.
    weights = np.maximum(np.einsum("njj->nj", curvature), 0.0)
    diagonals, scores = _diagonals_and_scores(objective, weights)
    slices, factors = [], []
    for j, pred in enumerate(predictors):
        size = pred.slice.stop - pred.slice.start
        if size == 0:
            continue
        penalty = objective.penalty[pred.slice]
        diagonal = diagonals[j] / objective.sum_weight + penalty
        woodbury = objective.sparse and size > _SPARSE_FEW_ROWS_MAX_COEF
        ratio = _SPARSE_ROWS_PER_COEF if woodbury else _ROWS_PER_COEF
        m = min(int(np.ceil(ratio * size)), weights.shape[0])
        top = np.sort(np.argpartition(scores[:, j], -m)[-m:])
        if woodbury:
            rows = (top, weights[top, j])
            factors.append(
                _sparse_rows_factor(objective, pred, rows, diagonal, penalty)
            )
            slices.append(pred.slice)
            continue
        gram = _rows_gram(objective, pred, top, weights[top, j])
        # The other rows by their diagonal: the whole diagonal less the
        # chosen rows' (at least 0: rounding).
        rest = np.maximum(diagonal - penalty - np.diag(gram), 0.0)
        gram.flat[:: size + 1] += rest + penalty
        factor = CholeskyFactor.of(gram)
        if factor is None:  # (a block without curvature: the diagonal's)
            factor = _Diagonal(np.where(diagonal > 0, diagonal, 1.0))
        slices.append(pred.slice)
        factors.append(factor)
    return BlockFactor(slices, factors)


def _sparse_rows_factor(objective, pred, rows, diagonal, penalty):
    r"""``P^-1`` of a sparse ``X``'s block by Woodbury's identity.

    ``rows`` are the chosen rows and their weights, ``diagonal`` the
    block's whole diagonal (penalty included). Those of positive weight
    enter as
    :class:`~skrobust._woodbury_factor.WoodburyFactor`'s low-rank term; the
    others by their diagonal, the whole diagonal less the chosen rows'
    (:math:`u_j^2 \sum_i d_i (x_{ij} - s_j)^2`, expanded as in
    :func:`_sparse_diagonals_and_scores`), at least ``_DIAGONAL_FLOOR``
    times the whole so that ``D`` is invertible.
    """
    rows, weights = rows
    keep = weights > 0
    rows, d = rows[keep], weights[keep] / objective.sum_weight
    A = pred.take(sp.csr_array(objective.X)[rows])
    squared = A.copy()
    squared.data **= 2
    shift, u2 = pred.shift, pred.inv_scale**2
    chosen = np.empty(pred.p + pred.fit_intercept)
    d_sum = float(d.sum())
    chosen[: pred.p] = u2 * (squared.T @ d - 2.0 * shift * (A.T @ d) + shift**2 * d_sum)
    if pred.fit_intercept:
        chosen[pred.p] = d_sum
    rest = np.maximum(diagonal - penalty - chosen, 0.0) + penalty
    rest = np.maximum(rest, _DIAGONAL_FLOOR * diagonal)
    rest = np.where(rest > 0, rest, 1.0)
    if not d.size:  # (no chosen row has weight: the diagonal is all of P)
        return _Diagonal(rest)
    woodbury = WoodburyFactor(A, pred, d, rest)
    return woodbury if woodbury.ok else _Diagonal(rest)


def _rows_gram(objective, pred, rows, weights):
    """``Z' diag(weights) Z / S`` of predictor ``pred``'s standardised ``rows``.

    Dense ``X``: from the rows' standardised copy (BLAS syrk). Sparse ``X``:
    from the sparse product of the raw rows and the centring's rank-one
    terms (as :func:`skrobust._predictors._gram_from_raw`), ``p^2`` flops where
    the dense copy of as many rows as columns would cost ``p^3`` (1 s a
    block at 2000 columns).
    """
    d = weights / objective.sum_weight
    if not objective.sparse:
        design = standardised_design(objective, pred, rows)
        design *= np.sqrt(d)[:, None]
        return design.T @ design  # (BLAS syrk)
    A = pred.take(sp.csr_array(objective.X)[rows])
    scaled = A.multiply(d[:, None]).tocsr()
    xd = np.asarray(A.T @ d).ravel()
    d_sum = float(d.sum())
    p, shift, inv_scale = pred.p, pred.shift, pred.inv_scale
    gram = np.empty((p + pred.fit_intercept,) * 2)
    top = gram[:p, :p]
    top[...] = (A.T @ scaled).toarray()
    if pred.fit_intercept:
        # T' [[G, X'd], [d'X, sum d]] T (_gram_from_raw) as one rank-2
        # update and in place: its outer products were 0.16 s a block at
        # 2000 columns, twice the Cholesky factorisation.
        half = xd - 0.5 * d_sum * shift
        top -= np.column_stack([shift, half]) @ np.vstack([half, shift])
        gram[:p, p] = gram[p, :p] = (xd - shift * d_sum) * inv_scale
        gram[p, p] = d_sum
    top *= inv_scale[:, None]
    top *= inv_scale
    return gram


def _diagonals_and_scores(objective, weights):
    r"""Per predictor, :math:`\sum_i w_{ij} z_{ij}^2` and each row's score.

    ``z_{ij}`` is row ``i`` of predictor ``j``'s standardised design (its
    intercept included), squared elementwise; the score is
    :math:`w_{ij} \lVert z_{ij} \rVert^2`, row ``i``'s share of the block's
    trace. One pass over ``X`` in row blocks; predictors on the same
    columns (the heteroscedastic model's, by default) share their squares.
    """
    predictors = objective.predictors
    n = weights.shape[0]
    diagonals = [np.zeros(pred.p + pred.fit_intercept) for pred in predictors]
    scores = np.zeros((n, len(predictors)))
    groups = _same_columns(predictors)
    if objective.sparse:
        return _sparse_diagonals_and_scores(objective, weights, groups)
    with _THREADPOOLS.limit(limits=1, user_api="blas"):
        for rows, A in objective._row_blocks():
            for group in groups:
                pred = predictors[group[0]]
                w = weights[rows][:, group]
                norms = np.zeros(w.shape[0])
                if pred.p:
                    z = pred.take(A) - pred.shift
                    z *= pred.inv_scale
                    z *= z
                    sums = z.T @ w
                    norms = z.sum(axis=1)
                for k, j in enumerate(group):
                    if pred.p:
                        diagonals[j][: pred.p] += sums[:, k]
                    if predictors[j].fit_intercept:
                        diagonals[j][pred.p] += w[:, k].sum()
                    scores[rows, j] = w[:, k] * (norms + predictors[j].fit_intercept)
    return diagonals, scores


def _sparse_diagonals_and_scores(objective, weights, groups):
    r""":func:`_diagonals_and_scores` of a sparse ``X``, without densifying it.

    With ``z_ij = (x_ij - m_j) u_j`` (``m`` the predictor's shift, ``u``
    its inverse scale), the squares expand into products with ``X o X``
    and ``X``: :math:`\sum_i w_i z_{ij}^2 = u_j^2 (\sum_i w_i x_{ij}^2 - 2
    m_j \sum_i w_i x_{ij} + m_j^2 \sum_i w_i)` and :math:`\lVert z_i
    \rVert^2 = \sum_j u_j^2 x_{ij}^2 - 2 \sum_j m_j u_j^2 x_{ij} + \sum_j
    m_j^2 u_j^2` (at least 0: rounding).
    """
    predictors = objective.predictors
    n = weights.shape[0]
    diagonals = [np.zeros(pred.p + pred.fit_intercept) for pred in predictors]
    scores = np.zeros((n, len(predictors)))
    X = sp.csr_array(objective.X)
    squared = X.copy()
    squared.data **= 2
    for group in groups:
        pred = predictors[group[0]]
        w = weights[:, group]
        norms = np.zeros(n)
        if pred.p:
            A = pred.take(X)
            A2 = pred.take(squared)
            m, u2 = pred.shift, pred.inv_scale**2
            sums = A2.T @ w - 2.0 * m[:, None] * (A.T @ w) + np.outer(m * m, w.sum(0))
            sums *= u2[:, None]
            norms = A2 @ u2 - 2.0 * (A @ (m * u2)) + float(m * m @ u2)
            norms = np.maximum(norms, 0.0)
            sums = np.maximum(sums, 0.0)
        for k, j in enumerate(group):
            if pred.p:
                diagonals[j][: pred.p] += sums[:, k]
            if predictors[j].fit_intercept:
                diagonals[j][pred.p] += w[:, k].sum()
            scores[:, j] = w[:, k] * (norms + predictors[j].fit_intercept)
    return diagonals, scores


def _same_columns(predictors):
    """Indices of ``predictors`` grouped by their standardised columns."""
    groups = []
    for j, pred in enumerate(predictors):
        for group in groups:
            other = predictors[group[0]]
            same = (
                (pred.columns is None) == (other.columns is None)
                and (
                    pred.columns is None or np.array_equal(pred.columns, other.columns)
                )
                and np.array_equal(pred.shift, other.shift)
                and np.array_equal(pred.inv_scale, other.inv_scale)
            )
            if same:
                group.append(j)
                break
        else:
            groups.append([j])
    return groups
