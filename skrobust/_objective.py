r"""The chain rule through ``X``: a loss of linear predictors, its gradient and Hessian.

:class:`LinearObjective` turns a prediction loss from :mod:`skrobust.losses`
(``L(y, eta)`` with ``eta`` of shape ``(n_samples, k)``) into a function of
one flat coefficient vector,

.. math::

    F(c) = \frac{1}{S} \sum_i s_i \, L(y_i, \eta_i)
           + \frac12 \sum_j \lambda_j \lVert w_j \rVert^2,
    \qquad \eta_{ij} = x_{i, C_j}^\top w_j + b_j,
    \qquad S = \sum_i s_i,

where predictor ``j`` uses the columns ``C_j`` of ``X`` (all of them, a
subset, or none for an intercept-only predictor such as a concomitant scale)
and, optionally, an intercept ``b_j`` that is not penalised. ``c`` stacks
``(w_0, b_0, w_1, b_1, ...)``.

Why a weighted *mean*: dividing by ``S`` keeps gradients of order one whatever
``n`` and the weights are, so one solver tolerance means the same thing on
every data set. It is still a *sum over rows*, accumulated block by block
(``_row_blocks``), so it can be evaluated out of core or on a cluster by
summing the per-block pieces; the estimators state their public objectives
as sums and convert the penalty accordingly.

Conditioning without copying ``X``: the coefficients ``c`` the solver sees
belong to standardised columns ``(X - m) / d`` (``m`` the weighted column
means when every predictor with columns has an intercept and ``X`` is dense,
``d`` the weighted standard deviations), so that one tolerance fits every
data set. The standardisation is never applied to ``X``: it is a linear map
``T`` of each predictor's coefficients (``w_raw = w / d``, ``b_raw = b - m @
w_raw``), applied to ``p``-vectors and ``p x p`` blocks, while ``X`` is read
as it is, in row blocks of a few hundred kilobytes that stay in cache
between the product with ``X`` and the one with ``X.T`` (one pass over ``X``
per evaluation). Only when a column's mean exceeds ``1e3`` times its spread
(Unix timestamps, say) would folding the centring into ``T`` lose digits to
cancellation; each block is then centred and scaled into a small buffer
instead. Sparse ``X`` is never centred (that would densify it) and is
multiplied as a whole.
"""

import numpy as np
import scipy.sparse as sp

from . import _lockstep
from ._column_stats import _weighted_column_stats, needs_explicit_centering
from ._null_directions import _cached_null_directions, design_gram
from ._pass_memory import PassMemory
from ._passes import _THREADPOOLS, _WHOLE_PASS_ELEMENTS, _row_blocks
from ._predictors import (
    _build_predictors,
    _gram_from_raw,
    standardize,
    unstandardize,
)
from ._small_design import SmallDesign, standardised_design
from ._small_design import weighted_gram as _weighted_gram


class LinearObjective(PassMemory):
    """Value, gradient, Hessian and Hessian-vector product of a linear model loss.

    Parameters
    ----------
    loss : object
        A prediction loss with ``n_predictors``, ``loss_gradient(y, raw)``
        and ``loss_gradient_hessian(y, raw)``, see :mod:`skrobust.losses`.
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Never copied or modified. Any real dtype.
    y : ndarray of shape (n_samples,)
    sample_weight : ndarray of shape (n_samples,)
        Non-negative, with a positive sum.
    predictors : list of (columns, fit_intercept)
        One entry per linear predictor: ``columns`` is ``None`` for all
        columns of ``X``, or an integer array (possibly empty).
    l2 : sequence of float
        Penalty strength ``lambda_j`` per predictor, on the coefficients in
        the units of the original columns of ``X`` (intercepts unpenalised).
    column_stats : tuple of ndarray, default=None
        ``(mean, scale)`` of another objective on the same ``X`` and weights
        (its ``column_stats``), to skip the pass that computes them. Their
        coefficient vectors are then in the same coordinates.
    pinned : list of ndarray of bool, default=None
        Per predictor, the columns whose coefficient is held at 0 (another
        objective's ``pinned``, for an unpenalised part of its sum). By
        default those whose standardised penalty weight exceeds
        ``skrobust._predictors.PINNED_PENALTY`` (see
        :func:`~skrobust._predictors._build_predictors`).

    Attributes
    ----------
    pinned : list of ndarray of bool
        Per predictor, the columns held at 0; their coefficients in
        :meth:`unstandardize` are exactly 0.
    """

    def __init__(
        self,
        loss,
        X,
        y,
        sample_weight,
        predictors,
        l2,
        column_stats=None,
        pinned=None,
    ):
        if len(predictors) != loss.n_predictors:
            raise ValueError("one (columns, fit_intercept) entry per predictor")
        self.loss = loss
        self.X = X
        self.y = y
        # The objective is a weighted mean, unchanged by scaling the weights;
        # scaled to a largest weight of 1 they cannot overflow when summed.
        top = float(sample_weight.max(initial=0.0))
        # (Never written to, so weights already scaled are shared, not copied.)
        scaled = top > 0 and top != 1.0
        self.sample_weight = sample_weight / top if scaled else sample_weight
        self.sum_weight = float(self.sample_weight.sum())
        # Equal weights (the usual case) are all 1.0 now: passes skip them.
        self.unit_weights = self.sum_weight == self.sample_weight.size
        self.sparse = sp.issparse(X)
        self.predictor_spec = [
            (None if c is None else np.asarray(c, dtype=np.intp), bool(f))
            for c, f in predictors
        ]
        self.l2 = list(l2)
        self._set_column_stats(column_stats)
        self.predictors, self.n_coef, self.penalty = _build_predictors(
            self.predictor_spec,
            self.l2,
            X.shape[1],
            self.mean,
            self.inv_scale,
            self.explicit_centering,
            pinned,
        )
        self.pinned = [pred.pinned for pred in self.predictors]
        self._designs = None  # the small design's copy, once built
        self._init_pass_memory()  # (see skrobust._pass_memory)
        self.null_cache = None  # see null_directions

    def _set_column_stats(self, column_stats):
        """Mean and scale of the columns, and whether blocks are standardised first."""
        # Centring moves the offset m @ w into the intercept, so it is only
        # possible when every predictor that reads columns has an intercept.
        center = all(
            fit for cols, fit in self.predictor_spec if cols is None or cols.size
        )
        if column_stats is None:
            # (Computed once for the lanes of a lock-step fit on this X.)
            column_stats = _lockstep.shared(
                ("column_stats", _lockstep.rows_key(self.X), center),
                self.sample_weight,
                lambda: _weighted_column_stats(self.X, self.sample_weight, center),
                self.X,
            )
        self.mean, self.scale = column_stats
        if not center and np.any(self.mean):
            raise ValueError("column_stats are centred but this objective is not")
        self.inv_scale = 1.0 / self.scale
        # (Sparse blocks cannot be centred or scaled without densifying them.)
        self.explicit_centering = not self.sparse and needs_explicit_centering(
            self.mean, self.scale
        )

    @property
    def column_stats(self):
        return self.mean, self.scale

    @property
    def n_samples(self):
        return self.X.shape[0]

    def subsample(self, step):
        """The same objective on every ``step``-th row, in the same coordinates.

        A view of dense ``X`` (:meth:`_subsample_rows`); a start for the
        full problem that costs ``1 / step`` of a pass. Of this objective's
        class.
        """
        return type(self)(
            self.loss,
            self._subsample_rows(step),
            self.y[::step],
            self.sample_weight[::step],
            self.predictor_spec,
            self.l2,
            column_stats=self.column_stats,
            pinned=self.pinned,
        )

    def _subsample_rows(self, step):
        """``X[::step]``, the rows of :meth:`subsample`."""
        return self.X[::step]

    def dense_design(self, rows=None):
        """The standardised design of a one-predictor objective, as an array.

        Columns ``(X - mean) / scale`` of ``rows`` (default: all) and a
        column of ones with an intercept
        (:func:`~skrobust._small_design.standardised_design`).
        """
        (pred,) = self.predictors
        return standardised_design(self, pred, rows)

    def design_matvec(self, coef):
        """The standardised design times ``coef`` (one predictor): ``D c``."""
        return self.raw_prediction(coef)[:, 0]

    def design_rmatvec(self, v):
        """The standardised design's transpose times ``v`` (one predictor): ``D' v``.

        One pass in row blocks, never a copy of ``X``: with
        :meth:`design_matvec` the operator that iterative least squares
        (LSQR) needs for designs too wide for a Gram matrix.
        """
        (pred,) = self.predictors
        gw, gb = np.zeros(pred.p), 0.0
        for rows, A in self._row_blocks(vectors_only=True):
            part = pred.take(A)
            if part.shape[1]:
                gw += np.asarray(part.T @ v[rows]).ravel()
            gb += float(v[rows].sum())
        return pred.grad_from_raw(gw, gb)

    def null_directions(self):
        """Orthonormal directions along which no row changes, shape ``(n_coef, d)``.

        See :func:`skrobust._null_directions.null_directions`; cached in
        ``null_cache`` when it is set.
        """
        return _cached_null_directions(self)

    def _design_grams(self, j, directions=None):
        """Weighted Gram matrix of predictor ``j``'s design (:func:`design_gram`)."""
        return design_gram(self, j, directions)

    # -- the pass over X -----------------------------------------------------
    def _row_blocks(self, vectors_only=False):
        """Yield ``(rows, A)``: row slices and the rows as the map ``T`` expects.

        ``vectors_only``: the caller makes no temporaries of a block's size
        (no Hessian), so an ``X`` that :meth:`_reads_whole` comes as one
        block: per-block overheads (the loss's, the sums') are paid once.
        """
        if self.sparse or (vectors_only and self._reads_whole()):
            yield slice(None), self.X
            return
        for rows in _row_blocks(*self.X.shape):
            A = self.X[rows]
            if self.explicit_centering:
                A = (A - self.mean) * self.inv_scale
            yield rows, A

    def _reads_whole(self):
        """Whether products with all of ``X`` at once beat row blocks.

        For dense ``X`` read as it is (no explicit centring) of at most
        ``_WHOLE_PASS_ELEMENTS``, which stays in cache between ``X @ w``
        and ``X.T @ g``, and predictors that take all columns or none (a
        subset would be a copy).
        """
        return (
            not self.sparse
            and not self.explicit_centering
            and self.X.size <= _WHOLE_PASS_ELEMENTS
            and all(
                pred.columns is None or pred.columns.size == 0
                for pred in self.predictors
            )
        )

    def _raw_block(self, parts, raw_coefs, out=None):
        """Linear predictors of one block, one contiguous column each.

        Column-major, so that each column is written by ``np.dot`` in place
        and read by the loss and by ``A.T @ g`` at unit stride. An
        intercept-only predictor is its intercept, without a product.
        Written into ``out`` (such a column-major array) if given.
        """
        n = parts[0].shape[0]
        raw = np.empty((len(parts), n)).T if out is None else out
        for j, (Aj, (w, b)) in enumerate(zip(parts, raw_coefs, strict=True)):
            if Aj.shape[1] == 0:
                raw[:, j] = b
            else:
                column = raw[:, j]
                if self.sparse or np.result_type(Aj, w) != np.float64:
                    column[:] = Aj @ w  # (np.dot's out= must match exactly)
                else:
                    np.dot(Aj, w, out=column)
                column += b
        return raw

    def _pass(self, coef, gradient=True, hessian=False, direction=None, curvature=None):
        """Accumulate value, gradient, Hessian and/or H @ direction in one pass.

        ``curvature``, an array of shape (n_samples, k, k), receives each
        row's weighted loss Hessian (for :meth:`loss_gradient_curvature`).
        """
        small = self._small_design()
        if small is not None:
            return small.evaluate(self, coef, gradient, hessian, direction)
        if _lockstep.active():  # (one pass serves every lane: see _lockstep)
            return _lockstep.request(
                "pass", self, (coef, gradient, hessian, direction, curvature)
            )
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            return self._pass_single_threaded(
                coef, gradient, hessian, direction, curvature
            )

    def _small_design(self):
        """The :class:`~skrobust._small_design.SmallDesign` of small data, or None."""
        if self._designs is None:
            self._designs = SmallDesign.build(self) or False
        return self._designs or None

    def _pass_single_threaded(self, coef, gradient, hessian, direction, curvature):
        raw_coefs = [pred.to_raw(coef[pred.slice]) for pred in self.predictors]
        raw_dirs = None
        if direction is not None:
            raw_dirs = [pred.to_raw(direction[pred.slice]) for pred in self.predictors]
        sums = _PassSums(self.predictors, hessian)
        unit = self.unit_weights
        remembered = self._remembering() if self.remember_prediction else None
        # One block for the vectors when X is read whole; the Hessian's
        # Gram matrices are then added in row blocks of it (their
        # temporaries are a block's size).
        whole = self._reads_whole()
        known = self._known_at(coef)
        for rows, A in self._row_blocks(vectors_only=not hessian or whole):
            parts = [pred.take(A) for pred in self.predictors]
            raw = self._block_prediction(parts, raw_coefs, rows, remembered, known)
            sw = self.sample_weight[rows]
            if hessian or raw_dirs is not None or curvature is not None:
                loss, g, h = self.loss.loss_gradient_hessian(self.y[rows], raw)
                if curvature is not None:
                    np.multiply(h, sw[:, None, None], out=curvature[rows])
            else:
                loss, g = self.loss.loss_gradient(self.y[rows], raw)
            sums.add_value_gradient(parts, loss, g if gradient else None, sw, unit)
            if raw_dirs is not None:
                u = self._raw_block(parts, raw_dirs)
                sums.add_hessian_product(
                    parts, np.einsum("nab,nb->na", h, u) * sw[:, None]
                )
            if hessian and whole:
                for block in _row_blocks(*A.shape):
                    sums.add_hessian(
                        [part[block] for part in parts],
                        h[block],
                        None if unit else sw[block],
                        False,
                    )
            elif hessian:
                sums.add_hessian(parts, h, None if unit else sw, self.sparse)
        if remembered is not None:
            self._remember(coef, remembered)
        return sums.finish(self, coef, gradient, hessian, direction)

    # -- public evaluation ---------------------------------------------------
    def raw_prediction(self, coef):
        """Linear predictors ``eta`` of shape (n_samples, k) at ``coef``.

        With ``remember_prediction`` set, those of the latest pass are
        returned (a copy) when ``coef`` is its point, without another pass.
        """
        small = self._small_design()
        if small is not None:
            return small.raw_prediction(self, coef)
        remembered = self._remembered_at(coef)
        if remembered is not None:
            return remembered
        if _lockstep.active():
            return _lockstep.request("raw", self, (coef,))
        return self._raw_prediction_single(coef)

    def _raw_prediction_single(self, coef):
        raw_coefs = [pred.to_raw(coef[pred.slice]) for pred in self.predictors]
        out = np.empty((self.X.shape[0], len(self.predictors)))
        for rows, A in self._row_blocks(vectors_only=True):
            parts = [pred.take(A) for pred in self.predictors]
            out[rows] = self._raw_block(parts, raw_coefs)
        return out

    def loss_gradient(self, coef):
        """Objective value and gradient at ``coef``, in one pass over ``X``."""
        recalled = self._recalled_value_gradient(coef)
        if recalled is not None:
            return recalled
        value, grad, _, _ = self._pass(coef)
        return value, grad

    def hessian(self, coef):
        """Hessian matrix at ``coef``, in one pass over ``X``."""
        return self._pass(coef, gradient=False, hessian=True)[2]

    def loss_gradient_hessian(self, coef):
        """Objective value, gradient and Hessian matrix, in one pass over ``X``."""
        value, grad, H, _ = self._pass(coef, hessian=True)
        self._keep_hessian_pass(coef, value, grad)
        return value, grad, H

    def hessp(self, coef, vector):
        """Hessian-vector product ``H(coef) @ vector`` without forming ``H``."""
        return self._pass(coef, gradient=False, direction=vector)[3]

    def loss_gradient_curvature(self, coef):
        """Value, gradient and ``v -> H(coef) @ v``, in one pass over ``X``.

        See :func:`skrobust._curvature.loss_gradient_curvature`.
        """
        from ._curvature import loss_gradient_curvature  # (imports this module)

        return loss_gradient_curvature(self, coef)

    def loss_gradient_sparse_hessian(self, coef):
        """Value, gradient and a sparse Hessian operator, in one pass over ``X``.

        For sparse designs whose Hessian is sparse; see
        :mod:`skrobust._sparse_hessian`.
        """
        from ._sparse_hessian import loss_gradient_sparse_hessian  # (imports this)

        return loss_gradient_sparse_hessian(self, coef)

    # -- coefficients in the units of the original columns -------------------
    def unstandardize(self, coef):
        """Per predictor ``(w_j, b_j)`` in the units of the original columns.

        ``b_j`` is 0.0 for a predictor without an intercept (its columns are
        then not centred either, so none is lost). Pinned columns have
        ``w`` exactly 0 (:func:`~skrobust._predictors.unstandardize`).
        """
        return unstandardize(self.predictors, self.mean, self.inv_scale, coef)

    def standardize(self, params):
        """Inverse of :meth:`unstandardize`: a flat coefficient vector."""
        return standardize(self.predictors, self.mean, self.scale, self.n_coef, params)


class _PassSums:
    """What one pass over ``X`` accumulates, block by block, and its finish.

    Per predictor ``j``: ``X_j' g_j`` and ``sum g_j`` (gradient), the same
    for ``H u`` (Hessian-vector product) and, per pair ``(a, b)`` of
    predictors, the weighted Gram matrix ``X_a' D_ab X_b``, the column sums
    ``X_a' d_ab``, ``X_b' d_ab`` and ``sum d_ab`` (Hessian), all in the raw
    coordinates of the blocks; :meth:`finish` maps them to the standardised
    coefficients.
    """

    def __init__(self, predictors, hessian):
        k = len(predictors)
        self.value = 0.0
        self.gw = [np.zeros(pred.p) for pred in predictors]
        self.gb = np.zeros(k)
        self.hv_w = [np.zeros(pred.p) for pred in predictors]
        self.hv_b = np.zeros(k)
        self.pairs = [(a, b) for a in range(k) for b in range(a, k)]
        self.G = {
            (a, b): np.zeros((predictors[a].p, predictors[b].p))
            for a, b in (self.pairs if hessian else [])
        }
        self.xd = {
            (a, b): (np.zeros(predictors[a].p), np.zeros(predictors[b].p))
            for a, b in self.pairs
        }
        self.d_sum = dict.fromkeys(self.pairs, 0.0)

    def add_value_gradient(self, parts, loss, g, sw, unit):
        """A block's weighted loss, and its gradient unless ``g`` is None.

        ``sw`` the block's weights (all 1 where ``unit``); ``g`` is scaled
        by them in place.
        """
        # A loss that overflowed (squared residuals of 1e200, say) makes
        # the value infinite, which solvers reject, even where a zero
        # weight meets it; the derivatives are what least squares uses.
        with np.errstate(over="ignore", invalid="ignore"):
            self.value += loss.sum() if unit else sw @ loss
        if g is not None:
            if not unit:
                g *= sw[:, None]
            self.add_gradient(parts, g)

    def add_gradient(self, parts, g):
        for j, Aj in enumerate(parts):
            if Aj.shape[1]:
                self.gw[j] += Aj.T @ g[:, j]
            self.gb[j] += g[:, j].sum()

    def add_hessian_product(self, parts, hu):
        for j, Aj in enumerate(parts):
            self.hv_w[j] += Aj.T @ hu[:, j]
            self.hv_b[j] += hu[:, j].sum()

    def add_hessian(self, parts, h, sw, sparse):
        """Add a block's Hessian terms; ``sw`` None for unit weights."""
        for a, b in self.pairs:
            d = h[:, a, b] if sw is None else sw * h[:, a, b]
            # (Intercept-only predictors have no columns to multiply.)
            if parts[a].shape[1] and parts[b].shape[1]:
                self.G[a, b] += _weighted_gram(parts[a], parts[b], d, sparse)
            if parts[a].shape[1]:
                self.xd[a, b][0][:] += parts[a].T @ d
            if a != b and parts[b].shape[1]:
                self.xd[a, b][1][:] += parts[b].T @ d
            self.d_sum[a, b] += d.sum()

    def finish(self, objective, coef, gradient, hessian, direction):
        """``(value, grad, H, hv)`` of the weighted-mean objective plus its penalty."""
        predictors, S, penalty = (
            objective.predictors,
            objective.sum_weight,
            objective.penalty,
        )
        value = self.value / S + 0.5 * coef @ (penalty * coef)
        if not np.isfinite(value):
            value = np.inf
        grad = H = hv = None
        if gradient:
            grad = np.concatenate(
                [
                    pred.grad_from_raw(self.gw[j], self.gb[j])
                    for j, pred in enumerate(predictors)
                ]
            )
            grad = grad / S + penalty * coef
        if direction is not None:
            hv = np.concatenate(
                [
                    pred.grad_from_raw(self.hv_w[j], self.hv_b[j])
                    for j, pred in enumerate(predictors)
                ]
            )
            hv = hv / S + penalty * direction
        if hessian:
            H = np.zeros((objective.n_coef, objective.n_coef))
            for a, b in self.pairs:
                pa, pb = predictors[a], predictors[b]
                xa_d, xb_d = self.xd[a, b]
                block = _gram_from_raw(
                    pa,
                    pb,
                    self.G[a, b],
                    xa_d,
                    xa_d if a == b else xb_d,
                    self.d_sum[a, b],
                )
                H[pa.slice, pb.slice] = block
                H[pb.slice, pa.slice] = block.T
            H /= S
            H.flat[:: objective.n_coef + 1] += penalty
        return value, grad, H, hv
