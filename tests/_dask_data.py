"""What the dask test modules share: uneven row chunks and their weights.

Each module keeps its own ``make_data`` (their noises differ on purpose);
the small in-memory sample is the ``small_dask_sample`` fixture of
``conftest.py``.
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
