"""Data sets shared by several test modules."""

import numpy as np


def gap_data(n, p, seed=0):
    """Gaussian design and noise, with a tenth of the targets shifted up by
    20 to 100 (``benchmarks/bench_shapes.py``'s dense data): the 0.9
    quantile lies at the edge of the gap between the two groups, where a
    neighbouring level's solution is too far for the exact solver's reduced
    problems."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + 1.0 + rng.standard_normal(n)
    shifted = rng.random(n) < 0.1
    y[shifted] += rng.uniform(20.0, 100.0, size=shifted.sum())
    return X, y


def wide_data(n_samples, n_features, seed=0):
    """Gaussian design, intercept 1.5 and Gaussian noise, with a tenth of the
    rows' targets shifted up by 20 to 60: the wide designs of the L-BFGS and
    MAD pass-count tests."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = X @ rng.normal(size=n_features) + 1.5 + rng.normal(size=n_samples)
    rows = rng.choice(n_samples, n_samples // 10, replace=False)
    y[rows] += rng.uniform(20.0, 60.0, size=rows.size)
    return X, y
