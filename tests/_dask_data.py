"""What the dask test modules share: uneven row chunks and their weights.

Each module keeps its own ``make_data`` (their noises differ on purpose);
``plane_data`` (targets mostly on a plane) is shared. The small in-memory
sample is the ``small_dask_sample`` fixture of ``conftest.py``.
"""

import numpy as np

# Uneven row chunks with a chunk of one row: 3000 rows.
CHUNKS = (700, 1, 999, 500, 800)


def weights_with_empty_chunk(n, chunks=CHUNKS, seed=0):
    """Integer weights, zero on every row of the second-to-last chunk."""
    weights = np.random.default_rng(seed).integers(0, 4, size=n).astype(float)
    start = sum(chunks[:-2])
    weights[start : start + chunks[-2]] = 0.0
    return weights


def plane_data(noisy_share=0.3, n=3000, seed=0):
    """Targets on one plane but for a share of rows with heavy-tailed noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, 0.0, 100.0]
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0
    noisy = rng.random(n) < noisy_share
    y[noisy] += rng.standard_t(3, size=noisy.sum())
    return X, y


def reordered_fits(estimator, X, y, sample_weight=None, seeds=range(1, 17), rows=None):
    """In-memory fits of a clone of ``estimator`` on the rows in other orders.

    Reordering the rows changes nothing but the rounding of the fit's sums,
    as splitting them into a dask array's chunks does. Where a fit's path
    follows that rounding (a nearly singular Hessian, a tolerance at the
    rounding of the objective, L-BFGS's curvature pairs), these fits show
    how far the in-memory fit itself moves with it; elsewhere they are the
    same fit. ``rows`` (indices), if given, are reordered among themselves
    and the others kept in place: where the fit strides its rows, the
    strided rows then keep their weights.
    """
    from sklearn.base import clone

    fits = []
    for seed in seeds:
        if rows is None:
            order = np.random.default_rng(seed).permutation(len(y))
        else:
            order = np.arange(len(y))
            order[rows] = np.random.default_rng(seed).permutation(rows)
        weights = None if sample_weight is None else np.asarray(sample_weight)[order]
        fits.append(clone(estimator).fit(X[order], y[order], sample_weight=weights))
    return fits


def assert_n_iter_within_rounding(fitted, memory, X, y, sample_weight=None):
    """``fitted.n_iter_`` is memory's, or memory's on the rows in another order.

    Exactly memory's where the in-memory fit does not depend on the rounding
    of its sums; where it does (:func:`reordered_fits` gives other counts),
    the dask fit's count, whose sums are rounded chunk by chunk, must lie
    among those the in-memory fit takes on reordered rows.
    """
    if np.array_equal(fitted.n_iter_, memory.n_iter_):
        return
    counts = [memory.n_iter_] + [
        fit.n_iter_ for fit in reordered_fits(memory, X, y, sample_weight)
    ]
    assert min(counts) <= fitted.n_iter_ <= max(counts), (fitted.n_iter_, counts)


def assert_close_within_rounding(
    fitted,
    memory,
    X,
    y,
    sample_weight=None,
    names=("coef_", "intercept_"),
    rtol=1e-10,
    rows=None,
):
    """Attributes equal to memory's to ``rtol``, or as close as reordering moves memory.

    Where the in-memory fit depends on the rounding of its sums (see
    :func:`reordered_fits`), the dask fit may differ from it by as much as
    the in-memory fit on reordered rows does (twice that, for the two
    roundings), never more. ``rows`` as in :func:`reordered_fits`.
    """
    if all(
        np.allclose(getattr(fitted, n), getattr(memory, n), rtol=rtol, atol=0)
        for n in names
    ):
        return
    others = reordered_fits(memory, X, y, sample_weight, rows=rows)
    for name in names:
        ours, theirs = getattr(fitted, name), getattr(memory, name)
        spread = max(np.max(np.abs(getattr(o, name) - theirs)) for o in others)
        bound = 2 * spread + rtol * np.max(np.abs(theirs))
        assert np.max(np.abs(ours - theirs)) <= bound, (name, ours - theirs, spread)
