"""Row-chunked data on a dask cluster, and one round trip per pass over it.

:class:`ChunkedData` validates ``X``, ``y`` and ``sample_weight`` as the
in-memory fit would (dense, numeric chunks of known sizes; 1-D targets and
weights aligned with ``X``'s rows), persists them with ``X``'s row chunks,
and runs a kernel on every chunk in one round trip
(:meth:`ChunkedData.map_chunks`): on a distributed cluster, one task per
worker thread over the chunks its worker holds (:func:`_thread_groups`).
Nothing here imports dask at module level: :func:`is_dask_array` looks for
``dask.array`` in ``sys.modules``.
"""

import functools
import sys

import numpy as np


def is_dask_array(obj):
    """Whether ``obj`` is a ``dask.array.Array`` (without importing dask)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(obj, da.Array)


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
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_array,
        check_consistent_length,
    )

    if is_dask_array(values):
        _check_chunk_sizes(values, name)
        if values.ndim != 1:
            raise _not_a_vector(values, X, name)
        check_consistent_length(X, values)
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
    check_consistent_length(X, values)
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
