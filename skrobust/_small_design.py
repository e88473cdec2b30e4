"""The pass of a small dense objective, on a copy of its standardised design.

On small data the bookkeeping of :class:`skrobust._objective.LinearObjective`'s
row blocks and coefficient maps would cost several times the arithmetic. Up
to ``SMALL_DESIGN_ELEMENTS`` design elements (512 KiB), an objective whose
rows all carry weight holds each predictor's standardised design
``(X[:, C_j] - m) / d``, with a column of ones for an intercept, as an
array: the coefficient map is applied once to the data rather than at every
pass, and a pass is a few products with that copy. BLAS threads do not pay
at this size, and are left alone.

:func:`weighted_gram`, the Hessian's kernel, is shared with the pass in row
blocks.
"""

import numpy as np
import scipy.sparse as sp

from ._predictors import _column_indices

# Up to this many elements (512 KiB) of its standardised design, a dense
# objective whose rows all carry weight passes over a copy of that design.
SMALL_DESIGN_ELEMENTS = 2**16


class SmallDesign:
    """Each predictor's standardised design as an array, and the pass over them.

    ``designs[j] @ coef[pred_j.slice]`` is predictor ``j``'s value (an
    intercept-only predictor's design is the column of ones alone). The
    objective is passed to each method, not held: the objective holds this
    copy, and a reference back would make a cycle that keeps both (and the
    copy's memory) alive until the garbage collector runs.
    """

    def __init__(self, designs):
        self.designs = designs
        # Whether each design is the column of ones (an intercept-only
        # predictor, as the joint scale's): its Hessian blocks are sums.
        self.ones = [D.shape[1] == 1 and bool((D == 1.0).all()) for D in designs]

    @classmethod
    def build(cls, objective):
        """The small design of ``objective``, or None where it does not apply.

        Only for dense ``X`` of at most ``SMALL_DESIGN_ELEMENTS`` design
        elements whose rows all carry weight (a weightless row may hold
        values whose standardisation overflows) and whose standardised
        design is finite.
        """
        n = objective.X.shape[0]
        width = sum(
            (objective.X.shape[1] if cols is None else cols.size) + fit
            for cols, fit in objective.predictor_spec
        )
        if not (
            n * width <= SMALL_DESIGN_ELEMENTS
            and not objective.sparse
            and objective.sample_weight.min(initial=1.0) > 0
        ):
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            shared = [_shared_design(objective, pred) for pred in objective.predictors]
        if not all(finite for _, finite in shared):
            return None
        return cls([design for design, _ in shared])

    def raw_prediction(self, objective, coef):
        """Linear predictors ``eta`` of shape (n_samples, k) at ``coef``."""
        if len(self.designs) == 1:  # (column_stack's overhead is most of it)
            (pred,) = objective.predictors
            return (self.designs[0] @ coef[pred.slice])[:, None]
        return np.column_stack(
            [
                D @ coef[pred.slice]
                for D, pred in zip(self.designs, objective.predictors, strict=True)
            ]
        )

    def gram(self, objective, j, directions=None):
        """Weighted Gram matrix of predictor ``j``'s design (or of ``design @ V``)."""
        design = self.designs[j]
        if directions is not None:
            design = design @ directions
        gram = weighted_gram(design, design, objective.sample_weight, False)
        return gram / objective.sum_weight

    def evaluate(self, objective, coef, gradient, hessian, direction):
        """What :meth:`~skrobust._objective.LinearObjective._pass` returns.

        ``(value, grad, H, hv)``.
        """
        designs = self.designs
        predictors = objective.predictors
        raw = np.empty((len(designs), designs[0].shape[0])).T
        for j, (D, pred) in enumerate(zip(designs, predictors, strict=True)):
            np.dot(D, coef[pred.slice], out=raw[:, j])
        unit, sw = objective.unit_weights, objective.sample_weight
        S, penalty = objective.sum_weight, objective.penalty
        if hessian or direction is not None:
            loss, g, h = objective.loss.loss_gradient_hessian(objective.y, raw)
        else:
            loss, g = objective.loss.loss_gradient(objective.y, raw)
        with np.errstate(over="ignore", invalid="ignore"):
            value = (loss.sum() if unit else sw @ loss) / S
            value += 0.5 * coef @ (penalty * coef)
        if not np.isfinite(value):
            value = np.inf
        grad = H = hv = None
        if gradient:
            if not unit:
                g = g * sw[:, None]
            grad = np.concatenate([D.T @ g[:, j] for j, D in enumerate(designs)])
            grad = grad / S + penalty * coef
        if direction is not None:
            u = np.column_stack(
                [
                    D @ direction[pred.slice]
                    for D, pred in zip(designs, predictors, strict=True)
                ]
            )
            hu = np.einsum("nab,nb->na", h, u) * sw[:, None]
            hv = np.concatenate([D.T @ hu[:, j] for j, D in enumerate(designs)])
            hv = hv / S + penalty * direction
        if hessian:
            n_coef = objective.n_coef
            k = len(designs)
            if k == 1:  # (the block is the matrix: no copy into one)
                d = h[:, 0, 0] if unit else sw * h[:, 0, 0]
                H = weighted_gram(designs[0], designs[0], d, False)
                if H.base is not None or not H.flags.writeable:
                    H = H.copy()
            else:
                H = np.empty((n_coef, n_coef))
                for a in range(k):
                    for b in range(a, k):
                        d = h[:, a, b] if unit else sw * h[:, a, b]
                        block = self._block(a, b, d)
                        sa, sb = predictors[a].slice, predictors[b].slice
                        H[sa, sb] = block
                        H[sb, sa] = block.T
            H /= S
            H.flat[:: n_coef + 1] += penalty
        return value, grad, H, hv

    def _block(self, a, b, d):
        """``designs[a].T @ diag(d) @ designs[b]``; sums against a column of ones."""
        A, B = self.designs[a], self.designs[b]
        if self.ones[b]:
            # (A gemv, or a sum: weighted_gram's scaled copy of the ones
            # costs more than the product at this size.)
            column = d.sum() if self.ones[a] else A.T @ d
            return np.reshape(column, (A.shape[1], 1))
        return weighted_gram(A, B, d, False)


def shared_key(kind, objective, pred):
    """Key in ``objective.null_cache`` of what objectives on the same rows share.

    Of ``kind`` (a design's copy, its Gram matrix) for predictor ``pred``:
    the rows and weights (by id: the cache also holds them, to check
    identity), the coordinates, the predictor's columns and intercept, and
    its pinned columns (read as zeros; a ridge decides them).
    """
    return (
        kind,
        id(objective.X),
        id(objective.sample_weight),
        objective.mean.tobytes() + objective.scale.tobytes(),
        None if pred.columns is None else pred.columns.tobytes(),
        pred.fit_intercept,
        pred.pinned.tobytes(),
    )


def _shared_design(objective, pred):
    """Predictor ``pred``'s standardised design and whether it is finite.

    Shared through ``null_cache``: the objectives of one fit (a MAD
    secant's fixed-scale fits, the joint scale's, the far targets' clipped
    one) have the same rows, weights and coordinates: with a ``null_cache``
    (see :meth:`~skrobust._objective.LinearObjective.null_directions`) they
    share one copy of each design, and its check for overflows, instead of
    making one each. The copy is never written to.
    """
    cache = objective.null_cache
    if cache is None:
        design = standardised_design(objective, pred)
        return design, bool(np.isfinite(design).all())
    key = shared_key("small design", objective, pred)
    known = cache.get(key)
    # (Identity, not only ids: an id can be reused once its array is gone.)
    if (
        known is not None
        and known[0] is objective.X
        and known[1] is objective.sample_weight
    ):
        return known[2], known[3]
    design = standardised_design(objective, pred)
    finite = bool(np.isfinite(design).all())
    cache[key] = (objective.X, objective.sample_weight, design, finite)
    return design, finite


def standardised_design(objective, pred, rows=None):
    """``(X[rows, C] - m) / d`` and a column of ones for an intercept, as an array.

    Predictor ``pred``'s standardised design (columns ``C``; ``rows``
    default: all), so that ``design @ c`` is its raw prediction at ``c``. A
    copy: meant for small data and for the small subsamples that starts are
    computed on, where one product with a contiguous matrix beats a pass
    in blocks. Pinned columns are zeros.
    """
    idx = _column_indices(pred, objective.X.shape[1])
    X = objective.X if rows is None else objective.X[rows]
    if pred.columns is not None:
        X = X[:, idx]
    if sp.issparse(X):
        X = X.toarray()
    design = np.empty((X.shape[0], idx.size + pred.fit_intercept))
    body = design[:, : idx.size]
    # (Centred into a contiguous temporary, then scaled into the design:
    # numpy's loops over a body whose rows are not contiguous cost per row,
    # 60 of 70 us at 1000 x 20 when both steps wrote to it. The same
    # arithmetic, so the same numbers.)
    np.multiply(np.subtract(X, objective.mean[idx]), objective.inv_scale[idx], out=body)
    if pred.pinned.any():
        body[:, pred.pinned] = 0.0  # (their coefficients are held at 0)
    if pred.fit_intercept:
        design[:, idx.size] = 1.0
    return design


def weighted_gram(A, B, d, sparse):
    """``A.T @ diag(d) @ B`` for a dense row block or a whole sparse matrix."""
    if sparse:
        return np.asarray((A.T @ sp.diags_array(d) @ B).todense())
    if A is B and A.shape[1] > 1 and d.min(initial=0.0) >= 0:
        # C.T @ C with C = sqrt(d) A: numpy hands it to BLAS syrk, half the
        # flops of the general product (convex losses have d >= 0). Rows of
        # zero curvature (Huber's linear part) add nothing: when they are
        # many, C is gathered from the others, for as many fewer flops.
        curved = d > 0
        n_curved = int(np.count_nonzero(curved))
        if n_curved < 0.9 * d.size:
            # (A gathered copy, in float64, scaled in place. np.compress
            # gathers rows about 3x faster than a boolean index, the same
            # rows in the same order.)
            C = np.compress(curved, A, axis=0).astype(np.float64, copy=False)
            C *= np.sqrt(d[curved])[:, None]
        elif A.dtype == np.float64 and A.flags.c_contiguous and (d == 1.0).all():
            # (The squared loss's unit curvature: C is A itself, and
            # scaling a copy by sqrt(1) = 1 would only cost its time; the
            # same product of the same contiguous float64 numbers.)
            C = A
        else:
            C = A * np.sqrt(d)[:, None]
        return C.T @ C
    return A.T @ (B * d[:, None])
