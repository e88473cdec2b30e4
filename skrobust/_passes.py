"""How passes over ``X`` are cut and threaded: row blocks and BLAS thread counts.

A pass of :class:`skrobust._objective.LinearObjective` (and of the other
objectives that read ``X`` block by block) reads dense ``X`` in row blocks
(:func:`_row_blocks`) small enough for their temporaries to stay in cache,
with one BLAS thread (:data:`_THREADPOOLS`): threads do not pay on blocks
of that size. Small fits run single-threaded throughout
(:func:`single_threaded_blas`).
"""

import contextlib

import numpy as np
from threadpoolctl import ThreadpoolController

# Elements per dense row block: 2 MiB of float64 (at most an eighth of X, see
# _MIN_BLOCKS), which bounds the extra memory of a pass and is large enough
# that the per-block costs (numpy's and the loss's calls, the sums, BLAS's
# start on a block read from memory) do not dominate. Blocks of 512 KiB, sized
# for an L2 cache that the loss's temporaries fill anyway, made passes slower:
# fits at 1e5 x 20 took 1.05-1.25 times as long (every M-estimator, smoothed
# quantile, heteroscedastic), at 1e6 x 20 1.1-1.4 and at 1e5 x 200 1.05-1.3.
_BLOCK_ELEMENTS = 2**18

# Passes split X into at least this many row blocks (see _row_blocks).
_MIN_BLOCKS = 8

# Row blocks of wide designs keep at least this many rows, within this many
# elements (8 MiB of float64). Measured on a 2e4 x 1000 design: a pass for
# the gradient took 30 ms in blocks of 65 rows, 16 ms in blocks of 512; a
# Hessian-vector product 45 and 22 ms; at 300 columns 9.9 and 5.9 ms.
_MIN_BLOCK_ROWS = 512
_MAX_BLOCK_ELEMENTS = 2**20

# Passes without a Hessian read dense X of up to this many elements (4 MiB,
# in cache between the two products) in one block (see
# LinearObjective._reads_whole).
_WHOLE_PASS_ELEMENTS = 2**19


class _ThreadCounts(ThreadpoolController):
    """threadpoolctl's controller, whose ``limit`` to a number only sets counts.

    ``ThreadpoolController.limit`` reads every library's whole description
    (version, architecture, path) on entry, to restore it on exit: 45 us,
    1% of a 1000 x 20 fit and of each pass in row blocks at 1e4 x 20, which
    limits BLAS too. The thread counts are all that it restores; they are
    read and set directly here (the same counts; other limits as before).
    """

    def limit(self, *, limits=None, user_api=None):
        if not isinstance(limits, int) or user_api not in ("blas", "openmp"):
            return super().limit(limits=limits, user_api=user_api)
        chosen = [lib for lib in self.lib_controllers if lib.user_api == user_api]
        return _counts_limited(chosen, limits)


@contextlib.contextmanager
def _counts_limited(libraries, limit):
    """Each of ``libraries`` at ``limit`` threads, its own count restored after."""
    counts = [(lib, lib.num_threads) for lib in libraries]
    changed = [(lib, n) for lib, n in counts if n != limit]
    for lib, _ in changed:
        lib.set_num_threads(limit)
    try:
        yield
    finally:
        for lib, n in changed:
            lib.set_num_threads(n)


# BLAS calls on cache-sized blocks are too small for threads to pay: with two
# threads a Hessian pass was 1.5x slower on an idle machine and 10x slower
# with another process on the second core. Passes run single-threaded.
_THREADPOOLS = _ThreadCounts()
# Fits of designs up to this many stored entries run with one BLAS thread
# throughout (single_threaded_blas): their BLAS calls (starts, L-BFGS-B's
# own, the linear programmes) are too small for threads, which with another
# process on the second core made a 1000 x 20 exact quantile fit 120 ms
# instead of 15 ms (median of 30).
_SINGLE_THREAD_MAX_ENTRIES = 2**20


def single_threaded_blas(X):
    """A context in which a fit on ``X`` uses one BLAS thread if ``X`` is small.

    Up to ``_SINGLE_THREAD_MAX_ENTRIES`` stored entries; a larger ``X``
    keeps the caller's threads (its starts' Gram matrices and wide
    linear programmes gain from them).
    """
    entries = X.nnz if hasattr(X, "nnz") else np.prod(X.shape)
    if entries > _SINGLE_THREAD_MAX_ENTRIES:
        return contextlib.nullcontext()
    return _THREADPOOLS.limit(limits=1, user_api="blas")


def _row_blocks(n_rows, n_cols):
    # At least _MIN_BLOCKS blocks, so that a block's temporaries stay a small
    # fraction of X also when all of X would fit in one block; but not below
    # 1024 rows (within the element budget), where per-block overheads grow.
    # On wide designs the element budget alone would leave blocks of a few
    # dozen rows, whose per-call overheads (numpy's, the loss's, the sums')
    # outweigh the cache: _MIN_BLOCK_ROWS rows are kept there, up to
    # _MAX_BLOCK_ELEMENTS.
    rows = max(1024, -(-n_rows // _MIN_BLOCKS))
    floor = max(64, min(_MIN_BLOCK_ROWS, _MAX_BLOCK_ELEMENTS // max(n_cols, 1)))
    step = max(floor, min(_BLOCK_ELEMENTS // max(n_cols, 1), rows))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))
