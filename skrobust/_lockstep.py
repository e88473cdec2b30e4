r"""Lock-step fits of several outputs: each pass over ``X`` serves all of them.

A 2-D ``y`` is fitted column by column, each column its own robust fit
(its own start, scale, solver path and ``n_iter_``). Run one after the
other, ten columns cost ten fits, and much of a fit is passes over ``X``:
``X w`` and ``X^T g`` (a matrix-vector product each, reading all of ``X``
from memory), and Gram matrices ``X^T D X``.

Here the columns' fits run as *lanes* that advance together. Each lane is
the unchanged single-column fit, run in a thread of its own; only one lane
runs at a time (a baton handed from lane to lane by semaphores, so that
nothing runs concurrently and the order is deterministic). When a lane
needs a pass over ``X`` (:meth:`skrobust._objective.LinearObjective._pass`,
``raw_prediction``, or the fitted values ``X w`` of :func:`design_dot`), it
posts the request and hands the baton on. When every lane waits, the
scheduler serves the requests: those on the same rows of the same ``X``
(:func:`_batch_key`) by one pass (:func:`_batched_pass`), in the row
blocks of a single pass, with

- the predictors of all lanes as one product ``W^T A^T`` per block ``A``
  (``W`` of shape ``(p, k)``: one contiguous row per lane),
- each lane's loss on its own row of predictors,
- the gradients as one product ``G A`` (``G`` of shape ``(k, rows)``), and
  the Hessians' column sums ``X^T d`` as another,
- the Gram matrices ``A^T D_k A`` from the block's Gram matrix ``A^T A``,
  formed once, where a lane's curvature is constant (least squares) or
  takes one non-zero value and is zero on at most half the rows (Huber's
  loss: ``c (A^T A - A_0^T A_0)`` over the rows ``A_0`` of zero
  curvature), else as in a single pass.

What depends on ``X`` and the weights alone (the column statistics that
fix every objective's coordinates, the search for flat directions) is
computed once for all lanes (:func:`shared`). Every lane therefore takes
the decisions of its column's fit alone, on values equal to rounding (the
batched products sum in another order): the same iterations, the same
optimum to well within the solvers' tolerance.

Lanes make passes of their own, one lane at a time, for what is not
batched: Hessian-vector products and per-row curvature, column subsets,
sparse row subsamples (each lane's own copy), small designs (their copies
are evaluated in the lane) and scipy's trust region (within
:class:`alone`: it changes the process's warning filters). Fits that print
progress (``verbose``), small dense designs (:func:`passes_over`) and fits
on dask run column by column.

What stays per lane is the rest of each fit: its loss on every row, its
medians (scaling, starts, scales, ``outliers_``), its Gram matrices where
the curvature varies (log-cosh), and the solver's own work. With ten
columns at ``1e5 x 20`` these are most of the time (``docs/benchmarks.rst``,
"Several targets").
"""

import contextvars
import threading

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.utils.extmath import safe_sparse_dot

_state = threading.local()


class _Cancelled(BaseException):
    """Raised in a waiting lane when another lane's fit failed."""


def active():
    """Whether the caller is a lane whose passes are batched."""
    lane = getattr(_state, "lane", None)
    return lane is not None and lane.alone == 0


class alone:
    """Within this context a lane's passes run on their own, without yielding.

    For code that changes process-wide state across a pass (warning
    filters), which another lane must not see.
    """

    def __enter__(self):
        lane = getattr(_state, "lane", None)
        if lane is not None:
            lane.alone += 1
        self._lane = lane
        return self

    def __exit__(self, *exc):
        if self._lane is not None:
            self._lane.alone -= 1
        return False


def request(kind, objective, args):
    """Post a pass of ``objective`` and wait for the scheduler's answer."""
    lane = _state.lane
    lane.request = (kind, objective, args)
    # (Served in the scheduler's thread, under the lane's floating-point
    # error handling, which callers of a pass may have set.)
    lane.errstate = np.geterr()
    lane.scheduler.hand_on(lane)
    lane.go.acquire()
    if lane.cancelled:
        raise _Cancelled
    result, error = lane.result
    lane.request = lane.result = None
    if error is not None:
        raise error
    return result


def shared(key, inputs, compute, X):
    """``compute()`` once per key and equal ``inputs`` among a fit's lanes.

    Outside lanes it is ``compute()``. ``inputs`` is an array compared by
    value (the objective's weights); ``key`` names the rows of ``X`` by
    :func:`rows_key`, which is only shared for rows of the fit's own ``X``
    (alive for the whole fit: a copy freed by one lane could leave its
    address to another lane's copy of other rows).
    """
    lane = getattr(_state, "lane", None)
    if lane is None or not lane.scheduler.reads_design(X):
        return compute()
    memo = lane.scheduler.memo.setdefault(key, [])
    for known, value in memo:
        if known.shape == inputs.shape and np.array_equal(known, inputs):
            return value
    value = compute()
    memo.append((inputs, value))
    return value


class _Lane:
    def __init__(self, scheduler, index, task):
        self.scheduler, self.index, self.task = scheduler, index, task
        # The caller's context (numpy's error state) and scikit-learn's
        # configuration (thread-local), as a fit column by column has them.
        self.context = contextvars.copy_context()
        self.config = sklearn.get_config()
        self.go = threading.Semaphore(0)
        self.request = self.result = self.errstate = None
        self.value = self.error = None
        self.done = self.cancelled = False
        self.alone = 0

    def main(self):
        _state.lane = self
        self.go.acquire()
        try:
            if not self.cancelled:
                self.value = self.context.run(self._configured_task)
        except _Cancelled:
            pass
        except BaseException as error:  # re-raised by the scheduler
            self.error = error
        finally:
            self.done = True
            _state.lane = None
            self.scheduler.hand_on(self)

    def _configured_task(self):
        with sklearn.config_context(**self.config):
            return self.task()


def _root(X):
    """The array that owns ``X``'s memory (``X`` itself if it owns it)."""
    while isinstance(getattr(X, "base", None), np.ndarray):
        X = X.base
    return X


class _Scheduler:
    def __init__(self, tasks, design):
        self.baton = threading.Semaphore(0)
        self.memo = {}
        self.lanes = [_Lane(self, i, task) for i, task in enumerate(tasks)]
        # The lanes of the current round, each run in turn to its next pass.
        self.round = []
        self.design = design
        self.design_root = _root(design)

    def reads_design(self, X):
        """Whether ``X`` is the fit's design or a view of its memory."""
        if sp.issparse(X) or sp.issparse(self.design):
            return X is self.design
        return _root(X) is self.design_root

    def hand_on(self, lane):
        """Pass the baton from ``lane`` to the next lane of the round, or back.

        (Lane to lane: one thread switch per lane and round, not two.)
        """
        position = self.round.index(lane) + 1
        if position < len(self.round):
            self.round[position].go.release()
        else:
            self.baton.release()

    def run(self):
        threads = [
            threading.Thread(target=lane.main, daemon=True) for lane in self.lanes
        ]
        for thread in threads:
            thread.start()
        try:
            while True:
                waiting = [lane for lane in self.lanes if not lane.done]
                if not waiting:
                    break
                # Each runs to its next pass, or its end, and hands on.
                self.round = waiting
                waiting[0].go.release()
                self.baton.acquire()
                if any(lane.error is not None for lane in self.lanes):
                    break
                self._serve([lane for lane in waiting if not lane.done])
        finally:
            for lane in self.lanes:
                if not lane.done:
                    lane.cancelled = True
                    self.round = [lane]
                    lane.go.release()
                    self.baton.acquire()
            for thread in threads:
                thread.join()
        for lane in self.lanes:
            if lane.error is not None:
                raise lane.error
        return [lane.value for lane in self.lanes]

    def _serve(self, lanes):
        groups = {}
        for lane in lanes:
            kind, objective, args = lane.request
            key = _batch_key(kind, objective, args)
            errstate = tuple(sorted(lane.errstate.items()))
            key = (errstate, key if key is not None else id(lane))
            groups.setdefault(key, []).append(lane)
        for members in groups.values():
            try:
                with np.errstate(**members[0].errstate):
                    if len(members) == 1:
                        ((kind, objective, args),) = [m.request for m in members]
                        results = [_single(kind, objective, args)]
                    else:
                        results = _batched([m.request for m in members])
                for lane, result in zip(members, results, strict=True):
                    lane.result = (result, None)
            except Exception as error:
                # The fit stops, as column by column it would at the first
                # lane (the others stop too, without raising it again).
                members[0].result = (None, error)
                for lane in members[1:]:
                    lane.cancelled = True


def run(tasks, X):
    """Run the callables ``tasks`` (fits on ``X``) as lanes; their values, in order.

    The first lane's exception (in lane order) is raised once every lane
    has stopped; lanes still running are then cancelled.
    """
    if len(tasks) == 1:
        return [tasks[0]()]
    return _Scheduler(tasks, X).run()


def rows_key(X):
    """Identity of the rows a design reads: the same buffer, shape and strides."""
    if sp.issparse(X):
        return ("sparse", id(X))
    interface = X.__array_interface__
    return (interface["data"][0], X.shape, X.strides, X.dtype.str)


def design_dot(X, w):
    """``X @ w`` (the fitted values of a column's fit), batched among lanes."""
    if active():
        return request("dot", X, (w,))
    return safe_sparse_dot(X, w)


def _batch_key(kind, objective, args):
    """Requests with equal keys are served by one batched pass (None: alone).

    Passes (with or without a Hessian), predictions and products ``X w``
    on the same rows share their pass, whatever the losses; blocks
    standardised explicitly only with the same coordinates.
    """
    if kind == "dot":
        return (rows_key(objective), None)
    if kind == "pass" and (args[3] is not None or args[4] is not None):
        return None  # (Hessian-vector products, per-row curvature)
    if any(p.columns is not None and p.columns.size for p in objective.predictors):
        return None  # a column subset would be copied per lane
    centring = (
        (id(objective.mean), id(objective.scale))
        if objective.explicit_centering
        else None
    )
    return (rows_key(objective.X), centring)


def _single(kind, objective, args):
    """A lane's request served alone, as outside lanes."""
    from ._objective import _THREADPOOLS

    if kind == "dot":
        return safe_sparse_dot(objective, args[0])
    if kind == "pass":
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            return objective._pass_single_threaded(*args)
    return objective._raw_prediction_single(*args)


def _batched(requests):
    from ._objective import _THREADPOOLS

    with _THREADPOOLS.limit(limits=1, user_api="blas"):
        if all(kind == "dot" for kind, _, _ in requests):
            X = requests[0][1]
            W = np.column_stack([w for _, _, (w,) in requests])
            return list(_product(X, W))
        return _batched_pass(requests)


def _product(A, W):
    """``(A W)^T``: one row per column of ``W``, each contiguous.

    Each row is a lane's predictor, read at unit stride by its loss (and
    ``W^T A^T`` is the faster order of the product for BLAS here).
    """
    if sp.issparse(A):
        return np.ascontiguousarray(np.asarray(A @ W, dtype=np.float64).T)
    return np.asarray(W.T @ A.T, dtype=np.float64)


def _transposed_product(G, A):
    """``G A = (A^T G^T)^T``: each lane's gradient as a row (``G``: (m, rows))."""
    if sp.issparse(A):
        return np.asarray(A.T @ G.T).T
    return G @ A


def _lane_raw(objective, coefs, products, first):
    """One lane's predictors ``(rows, n_predictors)`` from the batched products."""
    n = products.shape[1]
    raw = np.empty((len(objective.predictors), n)).T
    column = first
    for j, (pred, (_, b)) in enumerate(zip(objective.predictors, coefs, strict=True)):
        if pred.columns is None:
            np.add(products[column], b, out=raw[:, j])
            column += 1
        else:
            raw[:, j] = b
    return raw


class _Entry:
    """One request of a batched pass: its columns of ``W`` and what it collects.

    ``kind`` is ``"pass"`` (value, gradient and/or Hessian of ``objective``
    at ``coef``: :class:`~skrobust._objective._PassSums`), ``"raw"`` (its
    linear predictors) or ``"dot"`` (``X w`` of the raw design).
    """

    def __init__(self, kind, objective, args, column, n_rows):
        from ._objective import _PassSums

        self.kind, self.objective, self.column = kind, objective, column
        if kind == "dot":
            self.columns = [np.asarray(args[0], dtype=np.float64)]
            self.out = np.empty(n_rows)
            return
        self.coef = args[0]
        self.coefs = [p.to_raw(self.coef[p.slice]) for p in objective.predictors]
        self.columns = [
            w
            for pred, (w, _) in zip(objective.predictors, self.coefs, strict=True)
            if pred.columns is None
        ]
        if kind == "raw":
            self.out = np.empty((n_rows, len(objective.predictors)))
            return
        self.gradient, self.hessian = args[1], args[2]
        self.sums = _PassSums(objective.predictors, self.hessian)
        self.remembered = (
            np.empty((n_rows, len(objective.predictors)))
            if objective.remember_prediction
            else None
        )

    def result(self):
        if self.kind != "pass":
            return self.out
        objective = self.objective
        if self.remembered is not None:
            objective._remembered = (self.coef.copy(), self.remembered)
        return self.sums.finish(objective, self.coef, self.gradient, self.hessian, None)


def _batched_pass(requests):
    """Every request of one group (see :func:`_batch_key`) in one pass over the rows.

    The rows, blocks and sums of
    :meth:`~skrobust._objective.LinearObjective._pass_single_threaded`,
    with the products with ``X`` shared (see the module docstring).
    """
    from ._objective import _row_blocks
    from ._small_design import weighted_gram

    first = next(objective for kind, objective, _ in requests if kind != "dot")
    n_rows = first.X.shape[0]
    entries, column = [], 0
    for kind, objective, args in requests:
        entry = _Entry(kind, objective, args, column, n_rows)
        entries.append(entry)
        column += len(entry.columns)
    W = np.column_stack([w for entry in entries for w in entry.columns])
    passes = [entry for entry in entries if entry.kind == "pass"]
    hessian = any(entry.hessian for entry in passes)
    gradient = any(entry.gradient for entry in passes)
    whole = first._reads_whole()
    for rows, A in first._row_blocks(vectors_only=not hessian or whole):
        products = _product(A, W)
        # (One row per lane's predictor: contiguous for the loss's columns.)
        G = np.zeros_like(products) if gradient else None
        blocks = []
        if hessian:
            inner = _row_blocks(*A.shape) if whole else [slice(None)]
            blocks = [(block, _BlockGram(A[block], first.sparse)) for block in inner]
        # Each lane's Hessian column sums X^T d, as rows for one product
        # per block: (target, d) pairs.
        column_sums = [[] for _ in blocks]
        for entry in entries:
            if entry.kind == "dot":
                entry.out[rows] = products[entry.column]
                continue
            objective = entry.objective
            raw = _lane_raw(objective, entry.coefs, products, entry.column)
            if entry.kind == "raw":
                entry.out[rows] = raw
                continue
            _lane_block(entry, rows, raw, G, blocks, column_sums, weighted_gram)
        for (_, shared_gram), targets in zip(blocks, column_sums, strict=True):
            if targets:
                D = np.array([d for _, d in targets])
                for (target, _), row in zip(
                    targets, _transposed_product(D, shared_gram.A), strict=True
                ):
                    target += row
        if gradient:
            GtA = _transposed_product(G, A)
            for entry in passes:
                if entry.gradient:
                    column = entry.column
                    for j, pred in enumerate(entry.objective.predictors):
                        if pred.columns is None:
                            entry.sums.gw[j] += GtA[column]
                            column += 1
    return [entry.result() for entry in entries]


def _lane_block(entry, rows, raw, G, blocks, column_sums, weighted_gram):
    """One lane's loss on a row block, and its sums (those of a single pass)."""
    objective, sums = entry.objective, entry.sums
    if entry.remembered is not None:
        entry.remembered[rows] = raw
    sw = objective.sample_weight[rows]
    unit = objective.unit_weights
    y = objective.y[rows]
    if entry.hessian:
        loss, g, h = objective.loss.loss_gradient_hessian(y, raw)
    else:
        loss, g = objective.loss.loss_gradient(y, raw)
    with np.errstate(over="ignore", invalid="ignore"):
        sums.value += loss.sum() if unit else sw @ loss
    if entry.gradient:
        if not unit:
            g *= sw[:, None]
        column = entry.column
        for j, pred in enumerate(objective.predictors):
            if pred.columns is None:
                G[column] = g[:, j]
                column += 1
            sums.gb[j] += g[:, j].sum()
    if not entry.hessian:
        return
    for (block, shared_gram), targets in zip(blocks, column_sums, strict=True):
        _add_hessian(
            sums,
            objective.predictors,
            shared_gram.A,
            h[block],
            None if unit else sw[block],
            shared_gram,
            weighted_gram,
            targets,
        )


class _BlockGram:
    """A row block's Gram matrix ``A^T A``, formed when a lane first needs it."""

    def __init__(self, A, sparse):
        self.A, self.sparse, self._gram = A, sparse, None

    def gram(self):
        if self._gram is None:
            A = self.A
            self._gram = (
                np.asarray((A.T @ A).todense())
                if self.sparse
                else np.asarray(A.T @ A, dtype=np.float64)
            )
        return self._gram


# A lane's Gram matrix is the block's minus its rows of zero curvature when
# these are at most this fraction of the block (else its curved rows are
# gathered, as a single pass does).
_MAX_ZERO_FRACTION = 0.5


def _lane_gram(block, d):
    """``A^T diag(d) A`` from the shared block Gram matrix, or None.

    Where ``d`` is one value ``c`` on every row, ``c A^T A``; where it is
    ``c`` or 0, ``c (A^T A - A_0^T A_0)`` over the rows ``A_0`` of zero
    curvature (Huber's loss), if they are few enough that this gathers
    fewer rows than the single pass's gather of the others.
    """
    if block.sparse or not d.size:
        return None
    top = float(d.max())
    if not top > 0:
        return None
    zero = d == 0
    if not np.all(zero | (d == top)):
        return None
    n_zero = int(np.count_nonzero(zero))
    if n_zero > _MAX_ZERO_FRACTION * d.size:
        return None
    gram = block.gram()
    if n_zero:
        # (np.compress gathers rows several times faster than A[zero].)
        C = np.asarray(np.compress(zero, block.A, axis=0), dtype=np.float64)
        gram = gram - C.T @ C
    return top * gram


def _add_hessian(sums, predictors, A, h, sw, block, weighted_gram, column_sums):
    """:meth:`_PassSums.add_hessian` with Gram matrices from the shared block's.

    The column sums ``A^T d`` are left to the caller's one product for all
    lanes: ``(target, d)`` is appended to ``column_sums``.
    """
    for a, b in sums.pairs:
        d = h[:, a, b] if sw is None else sw * h[:, a, b]
        has_a = predictors[a].columns is None
        has_b = predictors[b].columns is None
        if has_a and has_b:
            gram = _lane_gram(block, d) if a == b else None
            if gram is None:
                gram = weighted_gram(A, A, d, block.sparse)
            sums.G[a, b] += gram
        if has_a:
            column_sums.append((sums.xd[a, b][0], d))
        if a != b and has_b:
            column_sums.append((sums.xd[a, b][1], d))
        sums.d_sum[a, b] += d.sum()


def passes_over(X):
    """Whether fits on ``X`` make passes over it (beyond a small design's copy).

    Only those gain from lanes: a small dense design is copied by each
    objective (:class:`~skrobust._small_design.SmallDesign`) and evaluated
    in its lane, where lanes would only add their thread switches.
    """
    from ._small_design import SMALL_DESIGN_ELEMENTS

    return sp.issparse(X) or X.shape[0] * (X.shape[1] + 1) > SMALL_DESIGN_ELEMENTS
