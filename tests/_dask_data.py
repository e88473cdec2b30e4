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
