"""Step 1 of every dask fit: checks, column statistics and samples in one pass.

One task per chunk checks that its values are finite and its weights
non-negative, and returns its weight sum, largest weight and centred
column moments (merged on the client by Chan, Golub and LeVeque's rule into
the ``column_stats`` of every objective of the fit), its rows of a strided
sample of ``X`` (the rows an in-memory start uses; :class:`Sample`) and a
quantile sketch of a denser strided sample of ``y``
(:func:`quantile_sketch`). See :mod:`skrobust._dask`.
"""

import numpy as np
from sklearn.utils.validation import _assert_all_finite

from ._column_stats import _centred_moments, merge_moments
from ._dask_chunks import _chunk_weights, _unit_weights
from ._strides import aperiodic_step

# Rows of the default strided sample fetched to the client (the smoothed
# quantile fit's start and the selection pivots): at most SAMPLE_ROWS (1.6 MB
# for 20 features), and about 1 / SAMPLE_FRACTION of the rows (at least
# MIN_SAMPLE_ROWS), so that the sample stays a small fraction of X.
SAMPLE_ROWS = 10_000
MIN_SAMPLE_ROWS = 2_000
SAMPLE_FRACTION = 100

# Quantiles per chunk in the sketch of the dense sample of y (see
# statistics_and_sample): 16 KiB per chunk, a resolution of 1 / 1024.
_SKETCH_POINTS = 1024


def _statistics_kernel(X_c, y_c, w_c):
    """Checks and weighted column moments of one chunk (see step 1)."""
    _assert_all_finite(X_c, input_name="X")
    _assert_all_finite(y_c, input_name="y")
    p = X_c.shape[1]
    if w_c is None:  # (no scans of, or masks by, an array of ones)
        w = _unit_weights(np.shape(y_c)[0])
        negative, top, y_weighted = False, 1.0 if w.size else 0.0, np.asarray(y_c)
    else:
        w = _chunk_weights(y_c, w_c)
        _assert_all_finite(w, input_name="sample_weight")
        negative = bool(np.any(w < 0))
        top = float(w.max(initial=0.0))
        # (Over the rows with weight: the others enter no fit, whatever their y.)
        y_weighted = np.asarray(y_c)[w > 0]
    y_range = (
        float(np.min(y_weighted, initial=np.inf)),
        float(np.max(y_weighted, initial=-np.inf)),
    )
    if negative or not top > 0:
        return negative, top, 0.0, np.zeros(p), np.zeros(p), y_range, (0.0, 1.0, 0)
    scaled = w if top == 1.0 else w / top
    total = float(scaled.sum())
    # (For the quantile fit's default bandwidth: see _quantile_smooth.effective_rows.)
    if w_c is None:
        squares, smallest, rows = total, 1.0, int(scaled.size)
    else:
        squares, smallest = float(scaled @ scaled), float(np.min(scaled[scaled > 0]))
        rows = int(np.count_nonzero(scaled > 0))
    mean, var = _centred_moments(X_c, scaled, total)
    return negative, top, total, mean, var, y_range, (squares, smallest, rows)


def _statistics_sample_kernel(X_c, y_c, w_c, start, step, y_step):
    """:func:`_statistics_kernel`, and the chunk's rows of two strided samples.

    The rows whose index in all of ``X`` is a multiple of ``step`` (``X``,
    ``y`` and the weights, or None for unit weights), and the ``y`` and
    weights of the rows with weight among the multiples of ``y_step``.
    """
    statistics = _statistics_kernel(X_c, y_c, w_c)
    first = (-start) % y_step
    y_dense = np.asarray(y_c[first::y_step], dtype=np.float64)
    if w_c is None:
        w_dense = _unit_weights(y_dense.size)
    else:
        w_dense = np.asarray(w_c[first::y_step], dtype=np.float64)
        keep = w_dense > 0
        y_dense, w_dense = y_dense[keep], w_dense[keep]
    sketch = quantile_sketch(y_dense, w_dense, _SKETCH_POINTS)
    first = (-start) % step
    X_rows = np.array(X_c[first::step], dtype=np.float64)
    y_rows = np.array(y_c[first::step], dtype=np.float64)
    w_rows = None if w_c is None else np.array(w_c[first::step], dtype=np.float64)
    return (statistics, sketch), (X_rows, y_rows, w_rows)


def _stack_sample(parts):
    """The sample rows of every chunk, stacked (on a worker): ``(X, y, weights)``."""
    X = np.concatenate([part[0] for part in parts])
    y = np.concatenate([part[1] for part in parts])
    if any(part[2] is None for part in parts):
        return X, y, np.ones(y.size)
    return X, y, np.concatenate([part[2] for part in parts])


def quantile_sketch(values, weights, points):
    """``points`` weighted quantiles of ``values``, each standing for ``1 / points``.

    Returns ``(values, weights, sum_weight, sum_squared_weight)``: the
    quantiles at the levels ``(k + 1/2) / points`` with the weight each
    stands for (all the values, with theirs, when there are at most
    ``points``), and the sums that give the effective size of the rows
    they summarise. Its weighted distribution function is within
    ``1 / points`` of theirs (as a fraction of the weight).
    """
    total = float(weights.sum())
    squares = float(weights @ weights)
    if values.size <= points:
        return values.copy(), weights.copy(), total, squares
    levels = (np.arange(points) + 0.5) / points
    if weights.min() == weights.max():
        # (Equal weights: a sort, twice as fast as argsort and cumsum.)
        positions = np.ceil(levels * values.size).astype(np.intp) - 1
        quantiles = np.sort(values)[np.clip(positions, 0, values.size - 1)]
    else:
        order = np.argsort(values, kind="stable")
        cum = np.cumsum(weights[order])
        positions = np.minimum(np.searchsorted(cum, levels * cum[-1]), values.size - 1)
        quantiles = values[order[positions]]
    return quantiles, np.full(points, total / points), total, squares


def default_sample_rows(n_samples):
    """Rows of the default strided sample (see ``SAMPLE_ROWS``)."""
    return min(SAMPLE_ROWS, max(MIN_SAMPLE_ROWS, n_samples // SAMPLE_FRACTION))


def dense_sample_rows(n_samples):
    """Rows of the strided sample of ``y`` alone, sketched on the workers.

    A quarter of the rows (at most ``2**21``): each chunk sorts its own and
    sends ``_SKETCH_POINTS`` quantiles, so that only the sketch travels.
    """
    return min(n_samples, max(MIN_SAMPLE_ROWS, min(n_samples // 4, 2**21)))


def statistics_and_sample(data, center, rows, step=None):
    """:func:`data_statistics` and a :class:`Sample` of about ``rows`` rows, one pass.

    The sample's rows are every ``k``-th of all rows (``X[::k]``), ``k``
    the :func:`~skrobust._strides.aperiodic_step` of ``n // rows`` unless
    ``step`` gives it, and it carries the quantile sketch
    of a denser strided sample of ``y`` (:func:`dense_sample_rows`,
    :func:`quantile_sketch`).
    """
    if step is None:
        step = aperiodic_step(max(1, data.n_samples // rows))
    y_step = max(1, data.n_samples // dense_sample_rows(data.n_samples))
    # (The sample is stacked on a worker: on the client, each chunk's piece
    # and their stack would be 2% of X at once.)
    parts, (X, y, weights) = data.map_chunks(
        _statistics_sample_kernel,
        step,
        y_step,
        each=data.chunk_starts,
        combine=_stack_sample,
    )
    stats = _merge_statistics([part[0] for part in parts], data.n_features, center)
    sketches = [part[1] for part in parts]
    sketch = Sketch(
        np.concatenate([s[0] for s in sketches]),
        np.concatenate([s[1] for s in sketches]),
        sum(s[2] for s in sketches) ** 2 / max(sum(s[3] for s in sketches), 1e-300),
        1.0 / _SKETCH_POINTS,
    )
    return stats, Sample(X, y, weights, sketch)


class Sketch:
    """The merged quantile sketches of the dense sample of ``y``.

    ``values`` and ``weights`` summarise the dense sample (of effective size
    ``effective_size``) to within ``resolution`` of its weight.
    """

    def __init__(self, values, weights, effective_size, resolution):
        self.values, self.weights = values, weights
        self.effective_size, self.resolution = effective_size, resolution


def data_statistics(data, center):
    """Global weight sum, largest weight and ``column_stats`` (step 1).

    Returns ``(sum_weight, top, column_stats, y_range, (squares,
    smallest, rows))`` where ``sum_weight`` is the sum of the weights divided by
    the largest one ``top`` (the scaled sum :class:`LinearObjective`
    keeps), ``y_range`` the smallest and largest target, ``squares`` the
    sum of the squares of the scaled weights and ``smallest`` the smallest
    positive one, and ``rows`` the number of rows with weight (for the
    quantile fit's default bandwidth, :func:`skrobust._quantile_smooth.
    default_bandwidth`).
    """
    parts = data.map_chunks(_statistics_kernel)
    return _merge_statistics(parts, data.n_features, center)


def _merge_statistics(parts, p, center):
    """:func:`data_statistics` from each chunk's :func:`_statistics_kernel`."""
    if any(part[0] for part in parts):
        raise ValueError("Negative values in data passed to sample_weight")
    top = max(part[1] for part in parts)
    if not top > 0:
        raise ValueError("sample_weight must have a positive sum.")
    # Each chunk's weights are scaled by its own largest one: rescaled to
    # the global largest, its moments merge stably whatever the offsets.
    moments, squares, smallest, rows = [], 0.0, 1.0, 0
    for _, chunk_top, chunk_total, chunk_mean, chunk_var, _, sizes in parts:
        weight = chunk_total * (chunk_top / top)
        moments.append((weight, chunk_mean, weight * chunk_var))
        if chunk_total > 0:
            squares += sizes[0] * (chunk_top / top) ** 2
            smallest = min(smallest, sizes[1] * (chunk_top / top))
            rows += sizes[2]
    total, mean, m2 = merge_moments(moments)
    var = m2 / total
    # The constant-column rule of skrobust._column_stats._weighted_column_stats.
    scale = np.sqrt(var)
    size = np.abs(mean) if center else np.zeros(p)
    constant = ~(scale > 64 * np.finfo(float).eps * size) | ~np.isfinite(scale)
    scale[constant] = 1.0
    if not center:
        mean = np.zeros(p)
    y_range = (min(part[5][0] for part in parts), max(part[5][1] for part in parts))
    return total, top, (mean, scale), y_range, (squares, smallest, rows)


class Sample:
    """The strided sample of rows on the client, and its values for the hints.

    ``y_sketch``, when made, is the :class:`Sketch` of a denser strided
    sample of ``y`` alone (see :func:`statistics_and_sample`).
    """

    def __init__(self, X, y, weights, y_sketch=None):
        self.X, self.y, self.weights = X, y, weights
        self.y_sketch = y_sketch

    def hint(self, values):
        v = values(self.X, self.y)
        return v[self.weights > 0]
