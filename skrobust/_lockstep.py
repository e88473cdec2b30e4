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
(:func:`_batch_key`) by one pass (:mod:`skrobust._lockstep_pass`: one
product with all their coefficients per row block, each lane's loss on its
own predictors, one product for all their gradients, Huber's Gram matrices
from the block's ``X^T X``), under the lane's floating-point error
handling.

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
progress (``verbose``), smaller designs (:func:`pays_off`) and fits
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
    """One column's fit in its thread: its request, its answer, its baton."""

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
    """Runs the lanes in rounds, each to its next request, and serves them."""

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
        """Answer every waiting lane's request, one pass per group of rows."""
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
    from ._passes import _THREADPOOLS

    if kind == "dot":
        return safe_sparse_dot(objective, args[0])
    if kind == "pass":
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            return objective._pass_single_threaded(*args)
    return objective._raw_prediction_single(*args)


def _batched(requests):
    """Serve a group of requests (see :func:`_batch_key`) by one pass."""
    from ._lockstep_pass import batched_dot, batched_pass
    from ._passes import _THREADPOOLS

    with _THREADPOOLS.limit(limits=1, user_api="blas"):
        if all(kind == "dot" for kind, _, _ in requests):
            return batched_dot(requests)
        return batched_pass(requests)


# Lanes pay from about this many design elements (rows times columns plus
# one; stored entries of a sparse X). Below, their thread switches and the
# small designs every lane holds at once cost more than the passes they
# share: ten Huber columns at 1e4 x 20 took 0.117 s in lanes and 0.099 s
# column by column (and 5.8 times X's memory, against 1.5), at 3e4 x 20
# 0.19 s and 0.24 s of CPU time.
LANES_MIN_ELEMENTS = 2**19


def pays_off(X):
    """Whether the columns of fits on ``X`` gain from lanes (see above).

    Small dense designs are also copied by each objective
    (:class:`~skrobust._small_design.SmallDesign`) and evaluated in its
    lane, without a pass to share.
    """
    if sp.issparse(X):
        return X.nnz >= LANES_MIN_ELEMENTS
    return X.shape[0] * (X.shape[1] + 1) >= LANES_MIN_ELEMENTS
