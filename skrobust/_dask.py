r"""Fits on row-chunked ``dask.array`` data without gathering ``X`` on the client.

Everything dask-specific lives here, and nothing here imports dask at module
level: :func:`is_dask_array` looks for ``dask.array`` in ``sys.modules``, so
skrobust imports dask only when the user already has (by passing a dask
array). The estimators' ``fit`` and ``predict`` dispatch here when ``X`` is
a dask array.

What every fit on a dask array shares, for each column of ``y`` (a 2-D
``y`` is a fit per column, as in memory, on ``X`` persisted once):

1. **Validation, column statistics and a sample, one pass.** ``X``,
   ``y`` and ``sample_weight`` are persisted with ``X``'s row chunks (``X``
   only if it is not persisted yet). One task per chunk checks that its
   values are finite and its weights non-negative and returns its weight
   sum, largest weight and centred column moments; the client merges them
   (Chan, Golub and LeVeque) into the ``column_stats`` that fix the
   standardised coordinates of every objective of the fit, as
   :class:`~skrobust._objective.LinearObjective` would on all rows. The same
   tasks return their rows of a strided sample (the rows an in-memory start
   uses, stacked on a worker; :func:`column_setup`) and a quantile sketch of
   a denser strided sample of ``y`` (:func:`quantile_sketch`).
2. **The median and MAD of ``y``, usually one pass.** The sketch brackets
   both, and one pass fetches the values inside the brackets and ranks them
   with the in-memory rule (:mod:`skrobust._dask_brackets`); when a bracket
   misses, the exact selection of :func:`weighted_median` (histogram passes
   over pivots, then at most ``_FETCH_VALUES`` values fetched and ranked on
   the client with :func:`skrobust._base.weighted_median`'s rule) decides.
   ``y`` is standardised by them exactly as in memory.
3. **The in-memory stages, each pass on the workers.** :class:`DaskObjective`
   has the interface the solvers use; each evaluation evaluates every chunk
   on the worker that holds it (a :class:`LinearObjective` on the chunk with
   the shared ``column_stats``, whose value, gradient and Hessian are
   returned as sums weighted by the chunk's weight sum) and sums them on the
   client in chunk order: one round trip per evaluation, and a task graph of
   one task per chunk (on a distributed cluster, one per worker thread over
   its chunks) that does not grow with the iterations. Its subclass
   :class:`~skrobust._dask_strided.StridedObjective` subsamples as
   ``X[::step]`` does in memory, so the solvers take memory's levels.
   Targets thousands of robust scales away are moved in by each chunk's
   task as the in-memory guard moves them (:mod:`skrobust._dask_far_targets`).
4. **Residual attributes.** ``noise_scale_`` is the median absolute
   residual at the fit: the passes near the optimum bracket it at their
   point (:class:`skrobust._dask_brackets.ResidualMedians`), so the last
   one usually has it; else one more selection. ``outliers_`` and
   ``weights_`` are lazy dask arrays with ``X``'s chunks. With
   ``cov_type``, one more pass forms each chunk's sums of
   :func:`skrobust._cov_mestimator.covariance_sums`, combined on the client.

The M-estimators (every scale rule) are fitted by
:mod:`skrobust._dask_mestimator` from the in-memory start's rows, stage by
stage as in memory, so their coefficients, scale and ``n_iter_`` are the
in-memory fit's. ``QuantileRegressor(solver="exact")`` is fitted by
:mod:`skrobust._dask_quantile`: Portnoy and Koenker's preprocessing with a
band of rows fetched to the client and a distributed sign certificate;
``solver="smooth"`` by :mod:`skrobust._dask_quantile_smooth`.
``HeteroscedasticRegressor`` is fitted by
:mod:`skrobust._dask_heteroscedastic`; a quantile ``cov_type`` by
:mod:`skrobust._dask_quantile_cov` (``"bootstrap"`` is refused) and
``MultiQuantileRegressor`` by :mod:`skrobust._dask_multiquantile`.
"""

import functools
import sys

import numpy as np
from sklearn.utils.validation import _assert_all_finite, check_is_fitted

from . import _progress
from ._objective import LinearObjective, _centred_moments, merge_moments
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

# Pivots of a histogram pass of the selection, and the largest number of
# values a bin may hold for them to be fetched and ranked on the client.
_PIVOTS = 1024
_FETCH_VALUES = 50_000
_SELECTION_PASSES = 20

# Values the later histogram passes sample from the current bin for the
# next pivots.
_PIVOT_SAMPLE = 20_000

# Up to this many pivots, binned_extremes counts the pivots below each value
# instead of a binary search.
_FEW_PIVOTS = 16


def is_dask_array(obj):
    """Whether ``obj`` is a ``dask.array.Array`` (without importing dask)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(obj, da.Array)


# -- data on the cluster --------------------------------------------------------


def _is_persisted(array):
    """Whether every chunk of ``array`` is a value (in memory or a future)."""
    try:
        from dask._task_spec import DataNode, GraphNode
    except ImportError:  # pragma: no cover - dask < 2024.12
        DataNode = GraphNode = ()
    from dask.core import flatten, istask

    graph = dict(array.__dask_graph__())
    keys = set(flatten(array.__dask_keys__()))
    if set(graph) != keys:
        return False
    for value in graph.values():
        if isinstance(value, DataNode):
            continue
        if istask(value) or isinstance(value, GraphNode):
            return False
    return True


def _check_chunk_sizes(array, name):
    if any(np.isnan(c) for c in array.chunks[0]):
        raise ValueError(
            f"{name} has unknown chunk sizes (after a boolean mask, say). Call "
            f"{name}.compute_chunk_sizes() first (one pass over {name}); "
            "skrobust needs the row counts to align X, y and sample_weight."
        )


def _check_dense_chunks(X):
    """Refuse chunks that are not numpy arrays (scipy.sparse ones, say).

    Sparse chunks are not cheap to support: in memory a sparse ``X`` has
    coordinates of its own (its centring implicit, or none), and the
    kernels that move rows to the client (the sample, the exact quantile
    fit's reduced problem, the boundary certificates) are written for dense
    rows, so each would need a sparse twin to give the in-memory fit.
    """
    meta = getattr(X, "_meta", None)
    if meta is None or isinstance(meta, np.ndarray):
        return
    kind = f"{type(meta).__module__}.{type(meta).__name__}"
    raise TypeError(
        f"X's chunks are {kind}, and skrobust fits dask arrays of dense "
        "(numpy) chunks only: its chunk kernels and the rows it gathers are "
        "dense. Densify the chunks, e.g. X.map_blocks(lambda block: "
        "block.toarray(), dtype=X.dtype, meta=numpy.empty((0, 0))) (p floats "
        "per row on the workers), or fit in memory, where skrobust accepts "
        "scipy.sparse matrices. predict() takes sparse chunks."
    )


def _not_a_vector(values, X, name):
    """The in-memory error for ``y`` or ``sample_weight`` that is not 1-D."""
    ndim = np.ndim(values)
    if name == "sample_weight":
        # (sklearn's _check_sample_weight's words.)
        return ValueError(
            f"Sample weights must be 1D array or scalar, got {ndim}D array. "
            "Expected either a scalar value or a 1D array of length "
            f"{X.shape[0]}."
        )
    return ValueError(
        f"Found array with dim {ndim}, while dim <= 2 is required: y must be "
        "1-D, or 2-D with a column per target."
    )


def _column_vector(values, X, name):
    """A 1-D float64 dask array with ``X``'s row chunks, from numpy or dask.

    A scalar ``sample_weight`` weighs every row alike, as in memory.
    """
    import dask.array as da
    from sklearn.utils.validation import _check_sample_weight, check_array

    if is_dask_array(values):
        _check_chunk_sizes(values, name)
        if values.ndim != 1:
            raise _not_a_vector(values, X, name)
        if values.shape[0] != X.shape[0]:
            raise ValueError(
                "Found input variables with inconsistent numbers of samples: "
                f"[{X.shape[0]}, {values.shape[0]}]"
            )
        values = values.astype(np.float64)
        if values.chunks[0] != X.chunks[0]:
            # Only y's row boundaries differ: moving n floats is cheap.
            values = values.rechunk((X.chunks[0],))
        return values
    if name == "sample_weight" and np.ndim(values) == 0:
        values = _check_sample_weight(values, X, dtype=np.float64)
    values = check_array(
        values, ensure_2d=False, dtype=np.float64, ensure_all_finite=False
    )
    if values.ndim != 1:
        raise _not_a_vector(values, X, name)
    if values.shape[0] != X.shape[0]:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{X.shape[0]}, {values.shape[0]}]"
        )
    return da.from_array(values, chunks=(X.chunks[0],))


def _futures_of(X, y, sample_weight):
    """The distributed client and each chunk's futures, or ``(None, None)``.

    Only when ``X``, ``y`` and ``sample_weight`` are persisted on one
    distributed client (their graphs hold a future per chunk).
    """
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None, None
    from dask.core import flatten

    columns = []
    for array in (X, y, sample_weight):
        if array is None:
            columns.append([None] * X.numblocks[0])
            continue
        graph = dict(array.__dask_graph__())
        keys = list(flatten(array.__dask_keys__()))
        futures = [graph.get(key) for key in keys]
        if not all(isinstance(f, distributed.Future) for f in futures):
            return None, None
        columns.append(futures)
    clients = {f.client for column in columns for f in column if f is not None}
    if len(clients) != 1:
        return None, None
    return clients.pop(), list(zip(*columns, strict=True))


class ChunkedData:
    """``X``, ``y`` and ``sample_weight`` persisted with ``X``'s row chunks.

    :meth:`map_chunks` runs a kernel on every chunk and returns the list of
    their results to the client: one round trip, counted in
    ``round_trips``.
    ``sample_weight=None`` stays None (unit weights, nothing stored).
    """

    def __init__(self, X, y, sample_weight=None):
        import dask

        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D X, got {X.ndim} dimensions.")
        if X.dtype.kind not in "biuf":
            raise ValueError(f"X has unsupported dtype {X.dtype}")
        _check_dense_chunks(X)
        _check_chunk_sizes(X, "X")
        if len(X.chunks[1]) > 1:
            # The chain rule reads whole rows: one column chunk per row chunk.
            X = X.rechunk({1: -1})
        y = _column_vector(y, X, "y")
        if sample_weight is not None:
            sample_weight = _column_vector(sample_weight, X, "sample_weight")
        arrays = {"X": X, "y": y, "w": sample_weight}
        pending = {k: a for k, a in arrays.items() if a is not None}
        pending = {k: a for k, a in pending.items() if not _is_persisted(a)}
        if pending:
            persisted = dask.persist(*pending.values())
            arrays.update(zip(pending, persisted, strict=True))
        self.X, self.y, self.sample_weight = arrays["X"], arrays["y"], arrays["w"]
        self.n_samples, self.n_features = self.X.shape
        self._client, self._blocks = _futures_of(self.X, self.y, self.sample_weight)
        if self._client is None:
            self._blocks = list(
                zip(
                    self.X.to_delayed(optimize_graph=False).ravel(),
                    self.y.to_delayed(optimize_graph=False),
                    (
                        [None] * self.X.numblocks[0]
                        if self.sample_weight is None
                        else self.sample_weight.to_delayed(optimize_graph=False)
                    ),
                    strict=True,
                )
            )
        # Each chunk's first row in X, for the strided samples.
        self.chunk_starts = np.cumsum((0,) + self.X.chunks[0][:-1])
        self.round_trips = 0
        self._groups = None
        if self._client is not None:
            self._groups = _thread_groups(self._client, self._blocks)

    def map_chunks(self, kernel, *args, each=None, combine=None):
        """``[kernel(X_c, y_c, w_c, *args) for each chunk c]``, in one round trip.

        With ``each`` (a sequence with one item per chunk), chunk ``c``'s
        task is ``kernel(X_c, y_c, w_c, each[c], *args)``: each task carries
        only what concerns its own rows.

        With ``combine``, each task returns ``(summary, payload)``, and the
        round trip returns ``([summary_c], combine([payload_c]))`` with
        ``combine`` run on a worker: the client receives the combined
        payload only, not each chunk's piece and then their concatenation.

        On a distributed cluster each worker thread gets one task over the
        chunks its worker holds (:func:`_thread_groups`); a pass with
        ``combine`` sends a task per chunk in one message (``client.map``).
        On local schedulers one ``dask.compute`` of delayed calls, a task
        per chunk.
        """
        self.round_trips += 1
        own = [()] * len(self._blocks) if each is None else [(e,) for e in each]
        if self._client is not None:
            from ._dask_malloc import run_kernel

            client, count = self._client, len(self._blocks)
            if combine is None and self._groups is not None:
                return self._map_groups(kernel, args, own)
            # (run_kernel: glibc's heap kept through the task, see there.)
            columns = list(zip(*self._blocks, strict=True))
            if each is not None:
                columns.append(list(each))
            futures = client.map(
                run_kernel,
                [kernel] * count,
                *columns,
                *([arg] * count for arg in args),
                pure=False,
            )
            if combine is None:
                return client.gather(futures)
            summaries = client.map(_summary, futures, pure=False)
            combined = client.submit(_combine_payloads, combine, futures, pure=False)
            results = client.gather(summaries + [combined])
            return results[:-1], results[-1]
        import dask

        tasks = [
            dask.delayed(kernel, pure=False)(Xc, yc, wc, *mine, *args)
            for (Xc, yc, wc), mine in zip(self._blocks, own, strict=True)
        ]
        parts = dask.compute(*tasks)
        if combine is None:
            return parts
        return [part[0] for part in parts], combine([part[1] for part in parts])

    def _map_groups(self, kernel, args, own):
        """:meth:`map_chunks` as a task per worker thread (:func:`_thread_groups`)."""
        client = self._client
        futures = [
            client.submit(
                _run_chunks,
                kernel,
                [self._blocks[i] for i in indices],
                [own[i] for i in indices],
                args,
                workers=[worker],
                allow_other_workers=True,
                pure=False,
            )
            for worker, indices in self._groups
        ]
        results = [None] * len(self._blocks)
        for (_, indices), parts in zip(
            self._groups, client.gather(futures), strict=True
        ):
            for i, part in zip(indices, parts, strict=True):
                results[i] = part
        return results


def _thread_groups(client, blocks):
    """Chunks grouped by the worker thread that runs them: ``[(worker, [chunk])]``.

    Each pass then sends one task per thread of each worker, over the
    chunks of ``X`` that worker holds, instead of one per chunk: the
    scheduler's and the worker's cost per task (about 5 ms on the loaded
    two-core machine) is paid per thread, not per chunk. Each chunk still
    returns its own sums, added on the client in chunk order. None (a task
    per chunk) when a chunk's holder is unknown. Should a chunk move later
    (a worker lost), the scheduler still runs its group, elsewhere, with the
    chunk copied there: slower, the same sums.
    """
    from distributed import wait

    try:
        # (A freshly persisted X is still being computed: where each chunk
        # lives is known once it is; the first pass would wait for it too.)
        chunks = [Xc for Xc, _, _ in blocks]
        wait(chunks)
        holders = client.who_has(chunks)
        threads = {
            address: max(int(info.get("nthreads", 1)), 1)
            for address, info in client.scheduler_info()["workers"].items()
        }
    except Exception:  # pragma: no cover - a scheduler that cannot say
        return None
    by_worker = {}
    for i, (Xc, _, _) in enumerate(blocks):
        holding = [w for w in holders.get(Xc.key, ()) if w in threads]
        if not holding:
            return None
        by_worker.setdefault(holding[0], []).append(i)
    groups = []
    for worker, indices in by_worker.items():
        n_groups = min(threads[worker], len(indices))
        groups += [(worker, indices[k::n_groups]) for k in range(n_groups)]
    return groups


def _run_chunks(kernel, chunks, own, args):
    """``kernel`` on each chunk of a group, in one task (see :func:`_thread_groups`)."""
    from ._dask_malloc import run_kernel

    return [
        run_kernel(kernel, Xc, yc, wc, *mine, *args)
        for (Xc, yc, wc), mine in zip(chunks, own, strict=True)
    ]


def _summary(part):
    return part[0]


def _combine_payloads(combine, parts):
    return combine([part[1] for part in parts])


def _chunk_weights(y_c, w_c):
    return np.ones(y_c.shape[0]) if w_c is None else np.asarray(w_c, dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _unit_weights(n):
    """A read-only array of ``n`` ones, kept by the worker for every pass.

    Each pass over a chunk without weights builds its objective on unit
    weights: one array per chunk size instead of a new one (and the
    scan of its zeros) per chunk and pass, a tenth of a gradient pass.
    """
    ones = np.ones(n)
    ones.flags.writeable = False
    return ones


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
    # The constant-column rule of skrobust._objective._weighted_column_stats.
    scale = np.sqrt(var)
    size = np.abs(mean) if center else np.zeros(p)
    constant = ~(scale > 64 * np.finfo(float).eps * size) | ~np.isfinite(scale)
    scale[constant] = 1.0
    if not center:
        mean = np.zeros(p)
    y_range = (min(part[5][0] for part in parts), max(part[5][1] for part in parts))
    return total, top, (mean, scale), y_range, (squares, smallest, rows)


# -- distributed weighted median ------------------------------------------------


class RowValues:
    """The per-row values a selection ranks: ``|(y - offset) / spread - X w - b|``.

    ``coef=None`` leaves ``X`` out; ``absolute=False`` keeps the sign.
    Small and picklable: it travels with every selection task.
    """

    def __init__(self, offset=0.0, spread=1.0, coef=None, intercept=0.0, absolute=True):
        self.offset, self.spread = float(offset), float(spread)
        self.coef, self.intercept = coef, float(intercept)
        self.absolute = absolute

    def __call__(self, X_c, y_c):
        values = np.asarray(y_c, dtype=np.float64) - self.offset
        if self.spread != 1.0:
            values /= self.spread
        if self.coef is not None:
            values -= np.asarray(X_c @ self.coef).ravel() + self.intercept
        if self.absolute:
            np.abs(values, out=values)
        return values


def _select_rows(X_c, y_c, w_c, values, low, high, top):
    """Values in ``(low, high]`` of rows with weight, and their weights / top."""
    v = values(X_c, y_c)
    w = _chunk_weights(y_c, w_c) / top
    keep = (w > 0) & (v > low) & (v <= high)
    return v[keep], w[keep]


def binned_extremes(v, pivots):
    """Each value's bin ``(p[i-1], p[i]]`` and each bin's smallest and largest value.

    Bin 0 is ``(-inf, p[0]]`` and bin ``pivots.size`` is ``(p[-1], inf)``;
    an empty bin's smallest is ``inf`` and its largest ``-inf``. The values
    are not NaN (the statistics pass refuses them).
    """
    n_bins = pivots.size + 1
    if pivots.size <= _FEW_PIVOTS:
        # (A count of the pivots below each value: a few vectorised
        # comparisons cost half of searchsorted's branchy binary search.)
        bins = np.zeros(v.shape, dtype=np.intp)
        for pivot in pivots:
            bins += v > pivot
    else:
        bins = np.searchsorted(pivots, v, side="left")
    smallest = np.full(n_bins, np.inf)
    largest = np.full(n_bins, -np.inf)
    np.minimum.at(smallest, bins, v)
    np.maximum.at(largest, bins, v)
    return bins, smallest, largest


def histogram(v, w, pivots, stride):
    """Weight, count, smallest and largest value per bin ``(p[i-1], p[i]]``.

    And every ``stride``-th value, a sample for the next pivots.
    """
    n_bins = pivots.size + 1
    bins, smallest, largest = binned_extremes(v, pivots)
    return (
        np.bincount(bins, weights=w, minlength=n_bins),
        np.bincount(bins, minlength=n_bins),
        smallest,
        largest,
        v[::stride].copy(),
    )


def _histogram_kernel(X_c, y_c, w_c, values, low, high, top, pivots, stride):
    """:func:`histogram` of the chunk's values in ``(low, high]`` with weight."""
    v, w = _select_rows(X_c, y_c, w_c, values, low, high, top)
    return histogram(v, w, pivots, stride)


def _fetch_kernel(X_c, y_c, w_c, values, low, high, top):
    return _select_rows(X_c, y_c, w_c, values, low, high, top)


def _pivots(candidates, low_value, high_value, level=0.5):
    """Sorted distinct pivots, dense near the ``level`` quantile of ``candidates``.

    With few candidates, evenly spaced between the bin's smallest and
    largest values, or (before the first pass has found them) the
    candidates themselves.
    """
    if candidates.size >= 16:
        spread = 5.0 / np.sqrt(candidates.size)
        levels = np.concatenate(
            [
                np.linspace(0.0, 1.0, _PIVOTS // 4),
                np.linspace(level - spread, level + spread, _PIVOTS - _PIVOTS // 4),
            ]
        )
        pivots = np.quantile(candidates, np.clip(levels, 0.0, 1.0))
    elif np.isfinite(low_value) and np.isfinite(high_value):
        pivots = np.linspace(low_value, high_value, _PIVOTS)
    else:
        pivots = candidates
    pivots = pivots[np.isfinite(pivots)]
    # Each pivot also just below itself, so that a value with many copies
    # gets a bin of its own (which ends the search), and -inf values too.
    below = np.nextafter(pivots, -np.inf)
    lowest = -np.finfo(float).max
    return np.unique(np.concatenate([pivots, below, [lowest]]))


def weighted_median(data, values, sum_weight, top, hint):
    """The weighted median of ``values`` over all rows, as in memory, exactly.

    Equals :func:`skrobust._base.weighted_median` of the same values and
    weights: the first value (in sorted order) at which the cumulative
    weight reaches half the total (within ``1e-12`` of it), averaged with
    the next value carrying weight when the cumulative weight there is half
    the total. Rows without weight never count.

    Each histogram pass (one round trip) counts the rows with weight in
    bins between pivots and keeps the bin where half the weight is reached;
    its smallest and largest values, and the smallest value of the next
    bin with weight, come with it. A bin of one distinct value is the
    answer; a bin of at most ``_FETCH_VALUES`` values is fetched and ranked
    on the client. The first pivots are quantiles of ``hint`` (the values
    of the client's sample rows), later ones of a sample of the bin, so
    that a pass typically divides the candidates by several hundred.
    """
    half = 0.5 * sum_weight
    slack = 1e-12 * sum_weight
    low, high, below, next_above = -np.inf, np.inf, 0.0, np.inf
    candidates = np.asarray(hint, dtype=float)
    low_value, high_value, n_in_range = -np.inf, np.inf, data.n_samples
    for _ in range(_SELECTION_PASSES):
        pivots = _pivots(candidates, low_value, high_value)
        stride = max(1, n_in_range // _PIVOT_SAMPLE)
        parts = data.map_chunks(
            _histogram_kernel, values, low, high, top, pivots, stride
        )
        weight = np.sum([part[0] for part in parts], axis=0)
        count = np.sum([part[1] for part in parts], axis=0)
        smallest = np.min([part[2] for part in parts], axis=0)
        largest = np.max([part[3] for part in parts], axis=0)
        cum = below + np.cumsum(weight)
        positive = np.flatnonzero(weight > 0)
        b = int(np.searchsorted(cum, half - slack))
        # (Rounding of the sums may leave half the weight past the last bin.)
        b = min(max(b, int(positive[0])), int(positive[-1]))
        if weight[b] == 0:
            b = int(positive[np.searchsorted(positive, b)])
        after = positive[positive > b]
        following = float(smallest[after[0]]) if after.size else next_above
        bin_below = cum[b - 1] if b > 0 else below
        if smallest[b] == largest[b]:
            value = float(smallest[b])
            if cum[b] <= half + slack and np.isfinite(following):
                return 0.5 * (value + following)
            return value
        bin_low = pivots[b - 1] if b > 0 else low
        bin_high = pivots[b] if b < pivots.size else high
        if count[b] <= _FETCH_VALUES:
            parts = data.map_chunks(_fetch_kernel, values, bin_low, bin_high, top)
            return _rank(parts, bin_below, half, slack, following)
        samples = np.concatenate([part[4] for part in parts])
        candidates = samples[(samples > bin_low) & (samples <= bin_high)]
        low, high, below, next_above = bin_low, bin_high, bin_below, following
        low_value, high_value = float(smallest[b]), float(largest[b])
        n_in_range = int(count[b])
    # (Each pass divides the candidates by hundreds: unreachable in practice.)
    raise RuntimeError("the distributed selection did not narrow down")


def _rank(parts, below, half, slack, following):
    """The in-memory weighted-median rule on the fetched values of one bin."""
    v = np.concatenate([part[0] for part in parts])
    w = np.concatenate([part[1] for part in parts])
    order = np.argsort(v, kind="stable")
    v, cum = v[order], below + np.cumsum(w[order])
    i = min(int(np.searchsorted(cum, half - slack)), v.size - 1)
    if cum[i] <= half + slack:
        nxt = float(v[i + 1]) if i + 1 < v.size else following
        if np.isfinite(nxt):
            return 0.5 * (float(v[i]) + nxt)
    return float(v[i])


def _sum_of_squares_kernel(X_c, y_c, w_c, values, top, divisor):
    v = values(X_c, y_c) / divisor
    w = _chunk_weights(y_c, w_c) / top
    return float(np.abs(v).max(initial=0.0)), float(w @ (v * v))


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


def plausible_warm(estimator, output, n_outputs, data, stats, sample, offset, spread):
    """Output ``output``'s warm start (a previous fit, ``y`` units) if within reach.

    None without one (``estimator._warm_start_fit``) or when it is too far.

    :func:`skrobust._base.warm_start_is_plausible` on dask: the normalised
    MAD of its residuals in units of the robust ``spread`` of ``y``, by one
    distributed selection, at most ``WARM_START_MAX_SPREADS``.
    """
    from ._base import MAD_NORMAL_CONSTANT, WARM_START_MAX_SPREADS

    warm = estimator._warm_start_fit(output, n_outputs, data.n_features)
    if warm is None:
        return None
    intercept = warm.intercept - offset if estimator.fit_intercept else 0.0
    coef = np.asarray(warm.coef, dtype=np.float64) / spread
    values = RowValues(offset, spread, coef, intercept / spread)
    median = weighted_median(data, values, stats[0], stats[1], sample.hint(values))
    if median / MAD_NORMAL_CONSTANT <= WARM_START_MAX_SPREADS:
        return warm
    return None


def robust_scale(data, stats, sample, values, spread_if_zero=None, median=None):
    """``median |v| / 0.6745`` over all rows; the weighted RMS if that is 0.

    Follows :func:`skrobust._scale.initial_scale` (``spread_if_zero=None``,
    floored at ``MIN_RELATIVE_SCALE``) or, with ``spread_if_zero``, the
    fallbacks of :func:`skrobust._base.target_offset_scale`. ``median``,
    when known, is the weighted median of ``|v|`` (no selection then).
    """
    from ._base import MAD_NORMAL_CONSTANT
    from ._scale import MIN_RELATIVE_SCALE

    sum_weight, top = stats[0], stats[1]
    if median is None:
        median = weighted_median(data, values, sum_weight, top, sample.hint(values))
    mad = median / MAD_NORMAL_CONSTANT
    threshold = MIN_RELATIVE_SCALE if spread_if_zero is None else 0.0
    if mad > threshold:
        return mad
    parts = data.map_chunks(_sum_of_squares_kernel, values, top, 1.0)
    largest = max(part[0] for part in parts)
    if not largest > 0:
        if spread_if_zero is None:
            return MIN_RELATIVE_SCALE
        return spread_if_zero
    parts = data.map_chunks(_sum_of_squares_kernel, values, top, largest)
    rms = largest * np.sqrt(sum(part[1] for part in parts) / sum_weight)
    if spread_if_zero is None:
        return max(float(rms), MIN_RELATIVE_SCALE)
    return float(rms) if rms > 0 else largest


# -- the objective on all rows --------------------------------------------------


class _ChunkSetup:
    """What each chunk's task needs to build its :class:`LinearObjective`.

    ``limit``, when set, clips the standardised targets at ``+-limit`` (the
    smoothed quantile fit's guard against wild targets). Subclasses make the
    targets otherwise by overriding :meth:`targets`. ``pinned`` are the
    penalised template's pinned columns (its ``pinned``; None for none),
    which the chunks' unpenalised objectives read as zeros too.
    """

    limit = None

    def __init__(
        self, loss, predictors, column_stats, y_offset, y_spread, top, pinned=None
    ):
        self.loss, self.predictors = loss, predictors
        self.column_stats, self.pinned = column_stats, pinned
        self.y_offset, self.y_spread, self.top = y_offset, y_spread, top

    def targets(self, X_c, y_c, weights):
        """The chunk's standardised targets, 0 on the rows without weight."""
        y = np.subtract(y_c, self.y_offset, dtype=np.float64)
        y /= self.y_spread
        if self.limit is not None:
            np.clip(y, -self.limit, self.limit, out=y)
        if weights is not _unit_weights(weights.size):
            # As the fit template: a zero-weight row's target may be any
            # finite number, whose loss could overflow; it enters no sum.
            y[~(weights > 0)] = 0.0
        return y

    def objective(self, X_c, y_c, w_c):
        """The chunk's objective (unpenalised) and its weight sum, or None."""
        if w_c is None and self.top == 1.0:
            weights = _unit_weights(np.shape(y_c)[0])
        else:
            weights = _chunk_weights(y_c, w_c) / self.top
        chunk_weight = float(weights.sum())
        if not chunk_weight > 0:
            return None, 0.0
        objective = LinearObjective(
            self.loss,
            X_c,
            self.targets(X_c, y_c, weights),
            weights,
            self.predictors,
            [0.0] * len(self.predictors),
            column_stats=self.column_stats,
            pinned=self.pinned,
        )
        return objective, chunk_weight


def _pass_kernel(X_c, y_c, w_c, setup, coef, hessian):
    """Sums over the chunk's rows: ``sum s_i L_i``, its gradient and Hessian."""
    objective, chunk_weight = setup.objective(X_c, y_c, w_c)
    if objective is None:
        return None
    value, grad, hess, _ = objective._pass(coef, gradient=True, hessian=hessian)
    if hess is not None:
        hess *= chunk_weight
    return value * chunk_weight, grad * chunk_weight, hess


def _pass_residuals_kernel(X_c, y_c, w_c, cap, setup, coef, hessian, request):
    """:func:`_pass_kernel` and the chunk's share of a residual bracket."""
    from ._dask_brackets import _residual_kernel

    return (
        _pass_kernel(X_c, y_c, w_c, setup, coef, hessian),
        _residual_kernel(X_c, y_c, w_c, cap, request),
    )


def _hessp_kernel(X_c, y_c, w_c, setup, coef, vector):
    """``sum s_i H_i @ vector`` over the chunk's rows (unpenalised)."""
    objective, chunk_weight = setup.objective(X_c, y_c, w_c)
    if objective is None:
        return None
    return objective.hessp(coef, vector) * chunk_weight


def _grams_kernel(X_c, y_c, w_c, setup, j, directions):
    objective, chunk_weight = setup.objective(X_c, y_c, w_c)
    if objective is None:
        return None
    return objective._design_grams(j, directions) * chunk_weight


class DaskObjective:
    """A :class:`LinearObjective` on all rows of a :class:`ChunkedData`.

    Has what the solvers call (``loss_gradient``, ``hessian``,
    ``loss_gradient_hessian``, ``hessp``, ``null_directions``, ``subsample``,
    ``n_samples``, ``n_coef``, ``sum_weight``); each evaluation is one round
    trip, summed on the client in chunk order, then divided by the total
    weight and penalised as :class:`LinearObjective` does. ``template`` is
    the same objective on the client's sample rows: it holds the coordinate
    maps and the penalty, and is the subsample the null-space search starts
    from.
    """

    def __init__(self, data, stats, template, y_offset, y_spread):
        self.data, self.template = data, template
        self.sum_weight = stats[0]
        self.setup = _ChunkSetup(
            template.loss,
            template.predictor_spec,
            template.column_stats,
            y_offset,
            y_spread,
            stats[1],
            template.pinned,
        )
        self.predictors = template.predictors
        self.penalty = template.penalty
        self.n_coef = template.n_coef
        self.n_samples = data.n_samples
        # A _dask_brackets.ResidualMedians whose medians the passes also
        # bracket near the optimum (None: plain passes), and the largest
        # gradient entry of the latest evaluation (None before the first).
        self.residual_medians = None
        self._latest_gradient = None

    # LinearObjective's search, with this class's _design_grams on all rows.
    def null_directions(self):
        """The flat directions, as in memory, with this class's Grams on all rows."""
        from ._objective import null_directions

        return null_directions(self)

    def subsample(self, step):
        """The objective on the client's sample rows (whatever ``step``)."""
        return self.template

    def _design_grams(self, j, directions=None):
        parts = self.data.map_chunks(_grams_kernel, self.setup, j, directions)
        return sum(part for part in parts if part is not None) / self.sum_weight

    def _chunk_passes(self, coef, hessian):
        """Each chunk's :func:`_pass_kernel`, with a residual bracket when asked."""
        medians = self.residual_medians
        if medians is None or not medians.near_optimum(self._latest_gradient):
            return self.data.map_chunks(_pass_kernel, self.setup, coef, hessian)
        from ._dask_brackets import chunk_caps

        ((w, b), *_) = self.unstandardize(coef)
        request = medians.request(w, b)
        if request is None:
            return self.data.map_chunks(_pass_kernel, self.setup, coef, hessian)
        parts = self.data.map_chunks(
            _pass_residuals_kernel,
            self.setup,
            coef,
            hessian,
            request,
            each=chunk_caps(self.data),
        )
        results = [part[0] for part in parts]
        fetched = [part[1] for part in parts]
        del parts
        medians.record(w, b, fetched)
        return results

    def _evaluate(self, coef, hessian):
        passes = self._chunk_passes(coef, hessian)
        parts = [part for part in passes if part is not None]
        with np.errstate(over="ignore", invalid="ignore"):
            value = sum(part[0] for part in parts) / self.sum_weight
        value += 0.5 * coef @ (self.penalty * coef)
        if not np.isfinite(value):
            value = np.inf
        grad = sum(part[1] for part in parts) / self.sum_weight + self.penalty * coef
        self._latest_gradient = float(np.max(np.abs(grad), initial=0.0))
        hess = None
        if hessian:
            hess = sum(part[2] for part in parts) / self.sum_weight
            hess.flat[:: self.n_coef + 1] += self.penalty
        return value, grad, hess

    def loss_gradient(self, coef):
        value, grad, _ = self._evaluate(coef, False)
        return value, grad

    def hessian(self, coef):
        return self._evaluate(coef, True)[2]

    def loss_gradient_hessian(self, coef):
        return self._evaluate(coef, True)

    def hessp(self, coef, vector):
        """``H(coef) @ vector`` without forming ``H``: one round trip."""
        parts = self.data.map_chunks(_hessp_kernel, self.setup, coef, vector)
        product = sum(part for part in parts if part is not None) / self.sum_weight
        return product + self.penalty * vector

    def unstandardize(self, coef):
        return self.template.unstandardize(coef)

    def standardize(self, params):
        return self.template.standardize(params)


# -- the M-estimator fit ----------------------------------------------------------


def unsupported(estimator):
    """Raise for an estimator that cannot fit dask arrays yet."""
    raise NotImplementedError(
        f"{type(estimator).__name__} cannot fit dask arrays yet: on dask, "
        "skrobust fits HuberRegressor, LogCoshRegressor, MEstimatorRegressor, "
        "QuantileRegressor and "
        "HeteroscedasticRegressor. Call X.compute() to fit in memory."
    )


def _is_quantile(estimator):
    from ._quantile import QuantileRegressor

    return isinstance(estimator, QuantileRegressor)


def _is_heteroscedastic(estimator):
    from ._heteroscedastic import HeteroscedasticRegressor

    return isinstance(estimator, HeteroscedasticRegressor)


def _check_supported(estimator, n_features):
    from ._mestimator import MEstimatorRegressor

    if _is_quantile(estimator) or _is_heteroscedastic(estimator):
        return
    if not isinstance(estimator, MEstimatorRegressor):
        unsupported(estimator)


def fit(estimator, X, y, sample_weight=None):
    """Fit an estimator on a row-chunked dask array (see the module docstring).

    Each column of a 2-D ``y`` is its own fit, as in memory, on ``X``
    persisted once.

    Parameters
    ----------
    estimator : MEstimatorRegressor or QuantileRegressor
        Fitted in place.
    X : dask.array.Array of shape (n_samples, n_features)
    y : dask.array.Array or array-like of shape (n_samples,) or (n_samples, n_targets)
    sample_weight : dask.array.Array or array-like of shape (n_samples,), default=None

    Returns
    -------
    MEstimatorRegressor or QuantileRegressor
        ``estimator``, fitted; an M-estimator's ``outliers_`` and
        ``weights_`` are lazy dask arrays with ``X``'s row chunks.
    """
    estimator._validate_params()
    _check_supported(estimator, X.shape[1] if X.ndim == 2 else 0)
    if X.ndim == 2:
        # As validate_data in memory: _check_fit_parameters may read them.
        estimator.n_features_in_ = X.shape[1]
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    estimator._check_fit_parameters()
    fit_column = _column_fitter(estimator)
    columns = _target_columns(y)
    if columns.ndim == 2:
        X = _persisted_rows(X)
    name = f"{type(estimator).__name__} on dask"
    fits, round_trips = [], 0
    with _progress.reporting(getattr(estimator, "verbose", 0), name):
        n_outputs = 1 if columns.ndim == 1 else columns.shape[1]
        for k in _progress.loop(range(n_outputs), n_outputs, "output"):
            y_k = columns if columns.ndim == 1 else columns[:, k]
            fit, trips = fit_column(estimator, X, y_k, sample_weight, k, n_outputs)
            fits.append(fit)
            round_trips += trips
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    estimator.n_features_in_ = X.shape[1]
    estimator._set_fitted(fits, columns.ndim)
    estimator._dask_round_trips = round_trips
    return estimator


def _column_fitter(estimator):
    """The function fitting one target column of ``estimator`` on dask data."""
    if _is_quantile(estimator):
        from ._dask_quantile import fit_column

        return fit_column
    if _is_heteroscedastic(estimator):
        from ._dask_heteroscedastic import fit_column

        return fit_column
    from ._dask_mestimator import fit_column

    return fit_column


def _target_columns(y):
    """``y`` as a 1-D or 2-D array (dask or numpy), as in-memory ``fit`` reads it."""
    from sklearn.utils.validation import check_array

    if is_dask_array(y):
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got {y.ndim} dimensions.")
        return y
    return check_array(y, ensure_2d=False, dtype=np.float64, ensure_all_finite=False)


def _persisted_rows(X):
    """``X`` with whole rows per chunk, persisted (unless it already is)."""
    import dask

    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D X, got {X.ndim} dimensions.")
    _check_chunk_sizes(X, "X")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    if not _is_persisted(X):
        (X,) = dask.persist(X)
    return X


def standardise_targets(estimator, data, stats, sample):
    """Step 2: the in-memory ``target_offset_scale`` of ``y``, exactly.

    Returns ``(offset, spread)``.
    """
    from ._dask_brackets import bracketed_targets

    sum_weight, top = stats[0], stats[1]
    # One pass when the sample brackets both medians; else selections.
    medians = bracketed_targets(data, stats, sample, estimator.fit_intercept)
    if medians is not None:
        offset, deviation = medians
    else:
        offset, deviation = 0.0, None
        if estimator.fit_intercept:
            values = RowValues(absolute=False)
            hint = sample.hint(values)
            offset = weighted_median(data, values, sum_weight, top, hint)
    spread = robust_scale(
        data,
        stats,
        sample,
        RowValues(offset),
        spread_if_zero=1.0 if offset == 0 else abs(offset),
        median=deviation,
    )
    return offset, spread


def column_setup(X, y, sample_weight, fit_intercept, rows=None, step_for=None):
    """Step 1 of one target column: ``(data, stats, sample)``.

    The :class:`ChunkedData`, :func:`data_statistics` and a strided
    :class:`Sample` of about ``rows`` rows, in one round trip
    (:func:`statistics_and_sample`).
    ``rows=None`` is the default sample, ``SAMPLE_ROWS`` at most and
    ``1 / SAMPLE_FRACTION`` of the rows (at least ``MIN_SAMPLE_ROWS``).
    ``step_for``, if given, maps the number of rows to the sample's stride
    (``X[::step]``), or to None for the sample of ``rows``.
    """
    data = ChunkedData(X, y, sample_weight)
    if rows is None:
        rows = min(SAMPLE_ROWS, max(MIN_SAMPLE_ROWS, data.n_samples // SAMPLE_FRACTION))
    step = None if step_for is None else step_for(data.n_samples)
    stats, sample = statistics_and_sample(data, fit_intercept, rows, step)
    return data, stats, sample


def start_rows_setup(X, y, sample_weight, fit_intercept):
    """:func:`column_setup` whose sample is the in-memory least-squares start's rows.

    ``LEAST_SQUARES_START_ROWS`` strided rows (all for small ``n``), as the
    in-memory fits take them. When they carry no weight the in-memory fit
    starts from all rows, and so must the caller (with passes, not this
    sample).
    """
    from ._base import LEAST_SQUARES_START_ROWS, least_squares_start_step

    return column_setup(
        X,
        y,
        sample_weight,
        fit_intercept,
        LEAST_SQUARES_START_ROWS,
        step_for=least_squares_start_step,
    )


def residual_attributes(estimator, data, stats, sample, fit, median=None):
    """Step 4: an M-estimator's attributes beyond ``coef_`` and ``intercept_``.

    ``fit`` is ``(coef_, intercept_, scale_)`` in the units of ``y``.
    ``noise_scale_`` is one more selection unless ``median`` (of the
    absolute residuals at ``fit``) is known, ``outliers_`` and ``weights_``
    lazy dask arrays with ``X``'s row chunks; with ``cov_type``, ``cov_``
    costs one more round trip.
    """
    from ._base import MAD_NORMAL_CONSTANT, OUTLIER_THRESHOLD

    coef_, intercept_, scale_ = fit
    if median is None:
        values = RowValues(coef=coef_, intercept=intercept_)
        hint = sample.hint(values)
        median = weighted_median(data, values, stats[0], stats[1], hint)
    noise = median / MAD_NORMAL_CONSTANT
    residuals = data.y - data.X.dot(coef_) - intercept_
    extras = {
        "scale_": scale_,
        "noise_scale_": noise,
        "outliers_": abs(residuals) > OUTLIER_THRESHOLD * noise,
        "weights_": residuals.map_blocks(
            _irls_weights_block, estimator._rho(), scale_, dtype=np.float64
        ),
    }
    if estimator.cov_type is not None:
        extras["cov_"] = covariance(
            estimator, data, coef_, intercept_, scale_, stats[2][0]
        )
    return extras


def _covariance_kernel(X_c, y_c, w_c, rho, scale, coef, intercept, options):
    from sklearn.utils.extmath import safe_sparse_dot

    from ._cov_mestimator import covariance_sums

    residuals = np.asarray(y_c, dtype=np.float64) - safe_sparse_dot(X_c, coef)
    residuals -= intercept
    weights = _chunk_weights(y_c, w_c)
    return covariance_sums(X_c, residuals, weights, rho, scale, **options)


def covariance(estimator, data, coef, intercept, scale, column_means):
    """``cov_`` of an M-estimator's fit on dask data: one more round trip.

    Each chunk forms the sums of
    :func:`skrobust._cov_mestimator.covariance_sums` over its rows (at the
    residuals of the fit, in the units of ``y``, with the raw frequency
    weights), in the coordinates centred at ``column_means`` (the weighted
    column means of the statistics pass) when there is an intercept;
    :func:`~skrobust._cov_mestimator.combine_covariance_sums` and
    :func:`~skrobust._inference.uncentre` make the in-memory covariance of
    them.
    """
    from ._cov_mestimator import combine_covariance_sums
    from ._inference import uncentre

    joint = isinstance(estimator.scale, str) and estimator.scale == "joint"
    center = np.asarray(column_means, float) if estimator.fit_intercept else None
    options = {
        "fit_intercept": estimator.fit_intercept,
        "cov_type": estimator.cov_type,
        "joint": joint,
        "center": center,
    }
    parts = data.map_chunks(
        _covariance_kernel, estimator._rho(), scale, coef, intercept, options
    )
    cov = combine_covariance_sums(
        list(parts), scale, cov_type=estimator.cov_type, joint=joint
    )
    return uncentre(cov, center)


def _irls_weights_block(residuals, rho, scale):
    from ._mestimator import _irls_weights

    return _irls_weights(rho, residuals, scale)


def _predict_block(X_c, coef, intercept):
    from sklearn.utils.extmath import safe_sparse_dot

    return safe_sparse_dot(X_c, coef) + intercept


def predict(estimator, X):
    """``X @ coef_.T + intercept_`` as a lazy dask array with ``X``'s row chunks."""
    check_is_fitted(estimator)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D X, got {X.ndim} dimensions.")
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is "
            f"expecting {estimator.n_features_in_} features as input."
        )
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    intercept = estimator.intercept_
    if coef.ndim == 1:
        return X.map_blocks(
            _predict_block, coef, intercept, drop_axis=1, dtype=np.float64
        )
    return X.map_blocks(
        _predict_block,
        coef.T,
        intercept,
        chunks=(X.chunks[0], (coef.shape[0],)),
        dtype=np.float64,
    )
