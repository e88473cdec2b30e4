"""Every ``step``-th row of dask data, and objectives on them (issue #15).

In memory, skrobust starts large problems on strided subsamples ``X[::step]``
(:func:`skrobust._solvers.subsample_for_start`, the least-squares start, the
null-space search). :class:`StridedData` selects the same rows of a
:class:`~skrobust._dask.ChunkedData` by their global index, on the workers,
and :class:`StridedObjective` is a :class:`~skrobust._dask.DaskObjective`
whose ``subsample(step)`` is such a selection, so that the solvers' levels
see the rows they see in memory and take the same iterations.
"""

import numpy as np

from ._dask import DaskObjective, _chunk_weights


class StridedData:
    """Every ``step``-th row of a :class:`~skrobust._dask.ChunkedData`, by global index.

    Rows ``0, step, 2 step, ...`` of all the data, as ``X[::step]`` selects
    them in memory: each chunk's task gets the index of its first such row
    (``each=``) and applies the kernel to its strided rows on the worker, so
    nothing is copied or fetched. Has what the selections and
    :class:`~skrobust._dask.DaskObjective` use: ``map_chunks``,
    ``n_samples``, ``n_features`` and ``round_trips``.
    """

    def __init__(self, data, step):
        self.data, self.step = data, int(step)
        starts = np.cumsum((0,) + tuple(data.X.chunks[0][:-1]))
        self.first = [int(-start % self.step) for start in starts]
        self.n_samples = len(range(0, data.n_samples, self.step))
        self.n_features = data.n_features

    @property
    def round_trips(self):
        return self.data.round_trips

    def map_chunks(self, kernel, *args):
        """``kernel`` on each chunk's strided rows, in one round trip."""
        return self.data.map_chunks(
            _strided_kernel, self.step, kernel, *args, each=self.first
        )


def _strided_kernel(X_c, y_c, w_c, first, step, kernel, *args):
    rows = slice(first, None, step)
    return kernel(X_c[rows], y_c[rows], None if w_c is None else w_c[rows], *args)


def weight_kernel(X_c, y_c, w_c, top):
    """The chunk's sum of weights divided by ``top``."""
    return float((_chunk_weights(y_c, w_c) / top).sum())


def rows_of(data, step, top):
    """``(rows, sum of weight / top)`` of every ``step``-th row (all if 1).

    ``rows`` is ``data`` itself for ``step <= 1``, else a :class:`StridedData`;
    the weight sum costs one round trip then.
    """
    if step <= 1:
        return data, None
    rows = StridedData(data, step)
    return rows, float(sum(rows.map_chunks(weight_kernel, top)))


class StridedObjective(DaskObjective):
    """A :class:`~skrobust._dask.DaskObjective` on every ``step``-th row of ``data``.

    ``setup`` is the chunk setup (a :class:`~skrobust._dask._ChunkSetup`)
    each task builds its chunk's objective from, ``template`` the same
    objective on the client's sample rows. ``sum_weight`` is the rows'
    weight divided by ``top`` (the data's largest weight).
    :meth:`subsample` strides all the data by global index, as
    ``LinearObjective.subsample`` strides ``X`` in memory (composed:
    ``X[::a][::b]`` is ``X[::a*b]``).
    """

    def __init__(self, data, sum_weight, top, template, setup, step=1):
        rows = data if step <= 1 else StridedData(data, step)
        super().__init__(rows, (sum_weight, top), template, 0.0, 1.0)
        self.setup = setup
        self.root, self.top, self.step = data, top, int(step)

    def subsample(self, step):
        step = self.step * int(step)
        rows, weight = rows_of(self.root, step, self.top)
        return StridedObjective(
            self.root, weight, self.top, self.template, self.setup, step
        )
