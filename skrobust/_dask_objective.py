"""The objective on all rows of row-chunked dask data (step 3 of :mod:`skrobust._dask`).

:class:`DaskObjective` has the interface the solvers use; each evaluation
evaluates every chunk on the worker that holds it (a
:class:`~skrobust._objective.LinearObjective` on the chunk, built by
:class:`_ChunkSetup` with the fit's shared ``column_stats``), whose value,
gradient and Hessian return as sums weighted by the chunk's weight sum, and
sums them on the client in chunk order: one round trip per evaluation.
"""

import numpy as np

from ._dask_chunks import _chunk_weights, _unit_weights
from ._objective import LinearObjective


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

    def weights(self, y_c, w_c):
        """The chunk's weights, divided by the largest weight of all rows."""
        if w_c is None and self.top == 1.0:
            return _unit_weights(np.shape(y_c)[0])
        return _chunk_weights(y_c, w_c) / self.top

    def objective_on(self, X_c, y_c, weights):
        """The chunk's objective (unpenalised) with the given ``weights``."""
        return LinearObjective(
            self.loss,
            X_c,
            self.targets(X_c, y_c, weights),
            weights,
            self.predictors,
            [0.0] * len(self.predictors),
            column_stats=self.column_stats,
            pinned=self.pinned,
        )

    def objective(self, X_c, y_c, w_c):
        """The chunk's objective (unpenalised) and its weight sum, or None."""
        weights = self.weights(y_c, w_c)
        chunk_weight = float(weights.sum())
        if not chunk_weight > 0:
            return None, 0.0
        return self.objective_on(X_c, y_c, weights), chunk_weight


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
        # As LinearObjective's: loss_gradient at the point of the latest
        # loss_gradient_hessian returns that round trip's value and gradient.
        self.reuse_hessian_pass = False
        self._hessian_pass = None

    # LinearObjective's search, with this class's _design_grams on all rows.
    def null_directions(self):
        """The flat directions, as in memory, with this class's Grams on all rows."""
        from ._null_directions import null_directions

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
        known = self._hessian_pass
        if known is not None and np.array_equal(known[0], coef):
            return known[1], known[2].copy()
        value, grad, _ = self._evaluate(coef, False)
        return value, grad

    def hessian(self, coef):
        return self._evaluate(coef, True)[2]

    def loss_gradient_hessian(self, coef):
        value, grad, hess = self._evaluate(coef, True)
        if self.reuse_hessian_pass:
            self._hessian_pass = (coef.copy(), value, grad.copy())
        return value, grad, hess

    def hessp(self, coef, vector):
        """``H(coef) @ vector`` without forming ``H``: one round trip."""
        parts = self.data.map_chunks(_hessp_kernel, self.setup, coef, vector)
        product = sum(part for part in parts if part is not None) / self.sum_weight
        return product + self.penalty * vector

    def unstandardize(self, coef):
        return self.template.unstandardize(coef)

    def standardize(self, params):
        return self.template.standardize(params)
