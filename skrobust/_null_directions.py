"""Flat directions of an objective, and the design Gram matrices that find them.

Constant, all-zero and collinear columns leave coefficient directions along
which no row's prediction changes; solvers keep to the minimum-norm
minimiser along them (:func:`null_directions`). The search costs a design
Gram matrix and its eigendecomposition, so both are cached per row set
(:func:`_cached_null_directions`, :func:`remember_design_gram`), and a
Cholesky certificate (:func:`_clearly_regular`) skips the
eigendecomposition when no direction can be flat.
"""

import numpy as np
import scipy.linalg.lapack

from . import _lockstep
from ._passes import _THREADPOOLS
from ._predictors import _gram_from_raw
from ._small_design import shared_key
from ._small_design import weighted_gram as _weighted_gram
from ._strides import aperiodic_step

# Rows of the strided sample on which null_directions looks for candidates.
_NULL_SPACE_SAMPLE_ROWS = 5_000


def design_gram(objective, j, directions=None):
    """Weighted Gram matrix of predictor ``j``'s standardised design.

    With ``directions`` (columns ``V``), instead the weighted Gram matrix
    of ``design @ V``: how far their span is from flat.
    """
    if directions is None:
        known = _known_design_gram(objective, j)
        if known is not None:
            return known
    small = objective._small_design()
    if small is not None:
        return small.gram(objective, j, directions)
    pred = objective.predictors[j]
    size = pred.slice.stop - pred.slice.start
    if directions is not None:
        size = directions.shape[1]
    gram = np.zeros((size, size))
    with _THREADPOOLS.limit(limits=1, user_api="blas"):
        for rows, A in objective._row_blocks():
            part = pred.take(A)
            sw = objective.sample_weight[rows]
            if directions is not None:
                moved = np.empty((part.shape[0], directions.shape[1]))
                for k in range(directions.shape[1]):
                    w, b = pred.to_raw(directions[:, k])
                    moved[:, k] = part @ w + b
                gram += moved.T @ (moved * sw[:, None])
                continue
            G = _weighted_gram(part, part, sw, objective.sparse)
            xd = np.asarray(part.T @ sw).ravel()
            gram += _gram_from_raw(pred, pred, G, xd, xd, sw.sum())
    return gram / objective.sum_weight


def _design_gram_key(objective, j):
    """Key of predictor ``j``'s design Gram matrix in ``objective.null_cache``."""
    return shared_key("design gram", objective, objective.predictors[j])


def remember_design_gram(objective, j, gram):
    """Keep predictor ``j``'s weighted design Gram matrix for the flat-direction search.

    For a least-squares start that formed it anyway (the Hessian of the
    unpenalised squared loss): every objective sharing ``null_cache``,
    ``X``, the weights and the coordinates then skips that pass.
    """
    if objective.null_cache is not None:
        key = _design_gram_key(objective, j)
        objective.null_cache[key] = (objective.X, objective.sample_weight, gram)


def _known_design_gram(objective, j):
    """The design Gram matrix :func:`remember_design_gram` kept, or None."""
    cache = getattr(objective, "null_cache", None)
    if cache is None:
        return None
    known = cache.get(_design_gram_key(objective, j))
    # (Identity, not only ids: an id can be reused once its array is gone.)
    if (
        known is None
        or known[0] is not objective.X
        or known[1] is not objective.sample_weight
    ):
        return None
    return known[2]


def _cached_null_directions(objective):
    """:func:`null_directions`, from and into ``objective.null_cache`` if set.

    With a ``null_cache`` (a dict shared by objectives on the same rows,
    weights and coordinates, such as a fit's successive fixed-scale
    objectives), the search runs once per predictor layout and penalty:
    it costs a Gram matrix and its eigendecomposition, which on a wide
    design is a large part of a fit.
    """
    cache = objective.null_cache
    if cache is None:
        return null_directions(objective)
    layout = [
        (None if c is None else c.tobytes(), f) for c, f in objective.predictor_spec
    ]
    key = (
        id(objective.X),
        id(objective.sample_weight),
        objective.mean.tobytes() + objective.scale.tobytes(),  # the coordinates
        tuple(layout),
        objective.penalty.tobytes(),
    )
    cached = cache.get(key)
    # (Identity, not only ids: an id can be reused once its array is gone.)
    if (
        cached is None
        or cached[0] is not objective.X
        or cached[1] is not objective.sample_weight
    ):
        # (The lanes of a lock-step fit on the same rows search once.)
        directions = _lockstep.shared(
            ("null directions", _lockstep.rows_key(objective.X)) + key[2:],
            objective.sample_weight,
            lambda: null_directions(objective),
            objective.X,
        )
        cached = (objective.X, objective.sample_weight, directions)
        cache[key] = cached
    return cached[2]


def null_directions(objective):
    """Orthonormal coefficient directions along which no row changes.

    Constant (with an intercept), all-zero and collinear columns leave
    directions ``v`` with ``eta(c + v) = eta(c)`` for every row: the
    objective is flat along them and its minimisers form a family.
    Solvers then keep to the minimum-norm member
    (:func:`skrobust._solvers.minimize`). Candidates are the small
    eigenvalues (below ``1e-10`` of the largest) of each predictor's
    design Gram matrix on a strided sample of at most
    ``_NULL_SPACE_SAMPLE_ROWS`` rows (every true direction is among them);
    each is kept only if it is flat on all rows too, which costs a pass
    only when there are candidates. Returns an array of shape
    ``(n_coef, n_directions)``.

    Written for any objective with ``n_samples``, ``subsample``,
    ``predictors``, ``n_coef``, ``penalty`` and ``_design_grams`` (also
    the Dask objective).
    """
    step = aperiodic_step(objective.n_samples // _NULL_SPACE_SAMPLE_ROWS)
    sample = objective.subsample(step) if step > 1 else objective
    if step > 1 and not sample.sum_weight > 0:
        sample = objective
    directions = []
    for j, pred in enumerate(objective.predictors):
        if pred.p == 0:
            continue  # an intercept alone (weights have a positive sum)
        if np.all(objective.penalty[pred.slice][: pred.p] > 0):
            # A flat direction moves some slope (the intercept alone moves
            # every row), so a ridge on all of them curves it: no search
            # (the heteroscedastic log-variance's, 0.6 ms at 1e5 x 20).
            continue
        gram = sample._design_grams(j)
        if _clearly_regular(gram):
            continue
        eigenvalues, vectors = np.linalg.eigh(gram)
        small = eigenvalues <= 1e-10 * max(eigenvalues[-1], 0.0)
        if not np.any(small):
            continue
        candidates = vectors[:, small]
        if sample is not objective:
            # The flat directions on all rows, within the candidates'
            # span: eigh mixes near-zero eigenvectors of the sample (a
            # column constant on it, say) with each other, so each alone
            # need not be flat even when a combination of them is.
            on_all_rows, mixing = np.linalg.eigh(objective._design_grams(j, candidates))
            flat = on_all_rows <= 1e-10 * max(eigenvalues[-1], 0.0)
            candidates = candidates @ mixing[:, flat]
        block = np.zeros((objective.n_coef, candidates.shape[1]))
        block[pred.slice] = candidates
        directions.append(block)
    if not directions:
        return np.zeros((objective.n_coef, 0))
    directions = np.hstack(directions)
    # A penalised direction is curved by the ridge, hence not flat.
    curved = np.einsum("ik,i,ik->k", directions, objective.penalty, directions) > 0
    return directions[:, ~curved]


# A Gram matrix whose smallest eigenvalue is provably above this fraction of
# the largest (ten times null_directions' cut-off) has no flat direction.
_REGULAR_GRAM_RCOND = 1e-9


def _clearly_regular(gram):
    """Whether every eigenvalue of ``gram`` is above ``1e-10`` of the largest.

    A certificate in a Cholesky factorisation, a fifth of the cost of the
    eigendecomposition it spares: with ``G = L L'``, ``lambda_min >= 1 /
    trace(G^-1) = 1 / ||L^-1||_F^2`` and ``lambda_max <= trace(G)``. False
    (undecided) when the factorisation fails or the bounds are within
    ``_REGULAR_GRAM_RCOND`` of each other; eigenvalues computed by ``eigh``
    differ from these by rounding (``eps ||G||``), far below that margin.
    """
    if not (gram.size and np.all(np.isfinite(gram))):
        return False
    factor, info = scipy.linalg.lapack.dpotrf(gram, lower=1, clean=1)
    if info != 0:
        return False
    inverse, info = scipy.linalg.lapack.dtrtri(factor, lower=1)
    if info != 0:
        return False
    with np.errstate(over="ignore"):
        inverse_trace = float(np.sum(inverse * inverse))
    return bool(inverse_trace * _REGULAR_GRAM_RCOND * np.trace(gram) < 1.0)
