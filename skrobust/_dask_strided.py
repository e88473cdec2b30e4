"""Every ``step``-th row of dask data, and objectives on them (issue #15).

In memory, skrobust starts large problems on strided subsamples ``X[::step]``
(:func:`skrobust._solvers.subsample_for_start`, the least-squares start, the
null-space search). :class:`StridedData` selects the same rows of a
:class:`~skrobust._dask_chunks.ChunkedData` by their global index, on the workers,
and :class:`StridedObjective` is a :class:`~skrobust._dask_objective.DaskObjective`
whose ``subsample(step)`` is such a selection, so that the solvers' levels
see the rows they see in memory and take the same iterations. A level of
at most ``FETCHED_LEVEL_ROWS`` rows comes to the client in one round trip
and is solved there (:func:`fetched_objective`): the same rows and the same
sums as in memory, without a round trip per evaluation.
"""

import numpy as np

from ._dask_chunks import _chunk_weights
from ._dask_objective import DaskObjective
from ._solvers import SUBSAMPLE_MIN_ROWS

# Strided levels of at most this many rows are fetched and solved on the
# client: the coarsest level (the solvers subsample no further), half the
# in-memory least-squares start's rows that the M-estimators' fits hold
# there already (0.9 MB at p = 20). Up to the start's rows (10 000), a
# 1e6 x 20 fit also fetched its 8265-row level once its strides were 11
# (1e6 / 121), and the client's peak rose from 2.6% to 3.4% of X; with the
# coarsest level only it is 2.5%, in 16 round trips instead of 12.
FETCHED_LEVEL_ROWS = SUBSAMPLE_MIN_ROWS


class StridedData:
    """Every ``step``-th row of a ``_dask_chunks.ChunkedData``, by global index.

    Rows ``0, step, 2 step, ...`` of all the data, as ``X[::step]`` selects
    them in memory: each chunk's task gets the index of its first such row
    (``each=``) and applies the kernel to its strided rows on the worker, so
    nothing is copied or fetched. Has what the selections and
    :class:`~skrobust._dask_objective.DaskObjective` use: ``map_chunks``,
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
    the weight sum costs one round trip the first time it is asked of
    ``data`` (it is kept on ``data``).
    """
    if step <= 1:
        return data, None
    rows = StridedData(data, step)
    known = vars(data).setdefault("_strided_weights", {})
    if (step, top) not in known:
        known[step, top] = float(sum(rows.map_chunks(weight_kernel, top)))
    return rows, known[step, top]


def rows_kernel(X_c, y_c, w_c):
    """The chunk's rows: ``X``, ``y`` and the weights, as arrays."""
    weights = _chunk_weights(y_c, w_c)
    return np.asarray(X_c, dtype=np.float64), np.asarray(y_c, dtype=np.float64), weights


def fetched_objective(data, step, top, template, setup):
    """The objective of every ``step``-th row, fetched: of ``template``'s class.

    One round trip brings the rows (as ``X[::step]`` selects them in
    memory); their targets are the chunk setup's (standardised, clipped
    where it clips, 0 without weight) and their weights divided by
    ``top``, so the objective is the in-memory subsample's, with
    ``template``'s loss, predictors, penalty and coordinates.
    """
    parts = StridedData(data, step).map_chunks(rows_kernel)
    X, y, weights = (np.concatenate([part[k] for part in parts]) for k in range(3))
    weights = weights / top
    return type(template)(
        setup.loss,
        X,
        setup.targets(X, y, weights),
        weights,
        template.predictor_spec,
        template.l2,
        column_stats=template.column_stats,
        pinned=template.pinned,
    )


class StridedObjective(DaskObjective):
    """A ``_dask_objective.DaskObjective`` on every ``step``-th row of ``data``.

    ``setup`` is the chunk setup (a :class:`~skrobust._dask_objective._ChunkSetup`)
    each task builds its chunk's objective from, ``template`` the same
    objective on the client's sample rows. ``sum_weight`` is the rows'
    weight divided by ``top`` (the data's largest weight).
    :meth:`subsample` strides all the data by global index, as
    ``LinearObjective.subsample`` strides ``X`` in memory (composed:
    ``X[::a][::b]`` is ``X[::a*b]``). With ``fetch``, a subsample of at
    most ``FETCHED_LEVEL_ROWS`` rows is a :func:`fetched_objective`.
    """

    def __init__(self, data, sum_weight, top, template, setup, step=1, fetch=False):
        rows = data if step <= 1 else StridedData(data, step)
        super().__init__(rows, (sum_weight, top), template, 0.0, 1.0)
        self.setup = setup
        self.root, self.top, self.step = data, top, int(step)
        self.fetch = fetch
        # The same rows' objective on the client, when it has them all (the
        # start rows of a small problem): its Gram matrices cost no pass.
        self.local = None

    def null_directions(self):
        """The flat directions, as in memory, found once per fit for each layout.

        They depend on the design, the weights, the coordinates, the
        predictors and the penalty, not on the loss or the targets: the
        fit's solves share them (kept on the data, as the in-memory
        objectives share theirs through ``null_cache``), so the search and
        its strided sample cost round trips once.
        """
        template = self.template
        layout = [
            (None if c is None else c.tobytes(), f) for c, f in template.predictor_spec
        ]
        key = (
            self.step,
            tuple(layout),
            template.mean.tobytes() + template.scale.tobytes(),
            self.penalty.tobytes(),
        )
        known = vars(self.root).setdefault("_null_directions", {})
        if key not in known:
            known[key] = super().null_directions()
        return known[key]

    def _design_grams(self, j, directions=None):
        if self.local is not None:
            return self.local._design_grams(j, directions)
        return super()._design_grams(j, directions)

    @property
    def secant_updates(self):
        """Whether Newton's chord steps update their Hessian: as the template's.

        (The in-memory objective's class decides, see
        :func:`skrobust._linalg.secant_update`; the same steps here.)
        """
        return getattr(self.template, "secant_updates", False)

    @property
    def subsample_hessian_steps(self):
        """Steps on a subsample's Hessian before one of these rows: the template's."""
        return getattr(self.template, "subsample_hessian_steps", 1)

    def subsample(self, step):
        step = self.step * int(step)
        if self.fetch and len(range(0, self.root.n_samples, step)) <= (
            FETCHED_LEVEL_ROWS
        ):
            return fetched_objective(
                self.root, step, self.top, self.template, self.setup
            )
        rows, weight = rows_of(self.root, step, self.top)
        return StridedObjective(
            self.root, weight, self.top, self.template, self.setup, step, self.fetch
        )
