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

Conditioning without copying ``X``: the objective works on standardised
columns ``(X - m) / d`` (``m`` the weighted column means when a predictor has
an intercept and ``X`` is dense, ``d`` the weighted standard deviations).
Dense ``X`` is read in row blocks of a few megabytes; each block is
standardised into a small buffer with a trailing column of ones, so neither
``X`` nor ``X`` with a column of ones is ever materialised. Sparse ``X`` is
never centred (that would densify it) and is multiplied as a whole.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.utils.sparsefuncs import mean_variance_axis

# Rows per dense block: about 2 MiB of float64 per block, which stays in
# cache and bounds the extra memory of a pass, whatever n is.
_BLOCK_ELEMENTS = 2**18


class _DenseBlock:
    """A row block of the standardised design, with a trailing column of ones."""

    def __init__(self, buffer, n_coef):
        self.B = buffer[:, :n_coef]

    def matvec(self, c):
        return self.B @ c

    def rmatvec(self, g):
        return self.B.T @ g

    def weighted_gram(self, d, other):
        return self.B.T @ (other.B * d[:, None])


class _SparseBlock:
    """All rows of a sparse design, scaled on the fly by ``1 / d``."""

    def __init__(self, X, inv_scale, fit_intercept):
        self.X = X
        self.inv_scale = inv_scale
        self.fit_intercept = fit_intercept
        self.p = X.shape[1]

    def matvec(self, c):
        eta = self.X @ (c[: self.p] * self.inv_scale)
        if self.fit_intercept:
            eta += c[self.p]
        return eta

    def rmatvec(self, g):
        out = (self.X.T @ g) * self.inv_scale
        if self.fit_intercept:
            out = np.append(out, g.sum())
        return out

    def weighted_gram(self, d, other):
        p, q = self.p, other.p
        G = np.empty((p + self.fit_intercept, q + other.fit_intercept))
        XtD = self.X.T @ sp.diags_array(d)
        G[:p, :q] = np.asarray((XtD @ other.X).todense()) * np.outer(
            self.inv_scale, other.inv_scale
        )
        if other.fit_intercept:
            G[:p, q] = (self.X.T @ d) * self.inv_scale
        if self.fit_intercept:
            G[p, :q] = (other.X.T @ d) * other.inv_scale
            if other.fit_intercept:
                G[p, q] = d.sum()
        return G


def _weighted_column_stats(X, sample_weight, center):
    """Weighted column means (zeros unless ``center``) and standard deviations.

    Computed in row blocks for dense ``X`` so that no copy of ``X`` is made.
    A constant column gets scale 1 so that it is left as it is.
    """
    S = sample_weight.sum()
    p = X.shape[1]
    if sp.issparse(X):
        _, var = mean_variance_axis(X, axis=0, weights=sample_weight)
        mean = np.zeros(p)
    else:
        mean = np.zeros(p)
        for rows in _row_blocks(X.shape[0], p):
            mean += sample_weight[rows] @ X[rows]
        mean /= S
        var = np.zeros(p)
        for rows in _row_blocks(X.shape[0], p):
            dev = X[rows] - mean
            var += sample_weight[rows] @ (dev * dev)
        var /= S
        if not center:
            mean = np.zeros(p)
    scale = np.sqrt(var)
    # Tiny but nonzero spreads are kept: scaling them up is the point.
    scale[~(scale > 0) | ~np.isfinite(scale)] = 1.0
    return mean, scale


def _row_blocks(n_rows, n_cols):
    step = max(64, _BLOCK_ELEMENTS // max(n_cols + 1, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


class LinearObjective:
    """Value, gradient, Hessian and Hessian-vector product of a linear model loss.

    Parameters
    ----------
    loss : object
        A prediction loss with ``n_predictors`` and
        ``loss_gradient_hessian(y, raw)``, see :mod:`skrobust.losses`.
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Never copied or modified. Any real dtype; dense blocks are
        converted to float64 as they are read.
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
    """

    def __init__(self, loss, X, y, sample_weight, predictors, l2, column_stats=None):
        if len(predictors) != loss.n_predictors:
            raise ValueError("one (columns, fit_intercept) entry per predictor")
        self.loss = loss
        self.X = X
        self.y = y
        self.sample_weight = sample_weight
        self.sum_weight = float(sample_weight.sum())
        self.sparse = sp.issparse(X)
        n_features = X.shape[1]
        # Centring moves the offset m @ w into the intercept, so it is only
        # possible when every predictor that reads columns has an intercept.
        center = not self.sparse and all(
            fit for cols, fit in predictors if cols is None or len(cols)
        )
        if column_stats is None:
            column_stats = _weighted_column_stats(X, sample_weight, center)
        self.mean, self.scale = column_stats
        if not center and np.any(self.mean):
            raise ValueError("column_stats are centred but this objective is not")
        self.inv_scale = 1.0 / self.scale

        self.columns = []  # per predictor: index array into X's columns
        self.fit_intercept = []
        self.slices = []
        penalty = []
        start = 0
        for (columns, fit_intercept), lam in zip(predictors, l2, strict=True):
            cols = (
                np.arange(n_features)
                if columns is None
                else np.asarray(columns, dtype=np.intp)
            )
            size = cols.size + bool(fit_intercept)
            self.columns.append(cols)
            self.fit_intercept.append(bool(fit_intercept))
            self.slices.append(slice(start, start + size))
            pen = np.zeros(size)
            pen[: cols.size] = lam * self.inv_scale[cols] ** 2
            penalty.append(pen)
            start += size
        self.n_coef = start
        self.penalty = np.concatenate(penalty)
        # Predictors that read the same columns share one block buffer.
        self._keys = [
            "all" if c is None else tuple(np.asarray(c).tolist()) for c, _ in predictors
        ]
        if self.sparse:
            self._sparse_X = {}
            for key, cols in zip(self._keys, self.columns, strict=True):
                if key not in self._sparse_X:
                    self._sparse_X[key] = X if key == "all" else X[:, cols]

    @property
    def column_stats(self):
        return self.mean, self.scale

    # -- blocks of the standardised design ----------------------------------
    def _blocks(self):
        """Yield ``(rows, designs)``: a row slice and one design per predictor."""
        if self.sparse:
            designs = [
                _SparseBlock(self._sparse_X[key], self.inv_scale[cols], fit)
                for key, cols, fit in zip(
                    self._keys, self.columns, self.fit_intercept, strict=True
                )
            ]
            yield slice(None), designs
            return
        X = self.X
        for rows in _row_blocks(X.shape[0], X.shape[1]):
            Xr = X[rows]
            buffers = {}
            designs = []
            for key, cols, fit in zip(
                self._keys, self.columns, self.fit_intercept, strict=True
            ):
                if key not in buffers:
                    buf = np.empty((Xr.shape[0], cols.size + 1))
                    part = Xr if key == "all" else Xr[:, cols]
                    np.subtract(part, self.mean[cols], out=buf[:, : cols.size])
                    buf[:, : cols.size] *= self.inv_scale[cols]
                    buf[:, cols.size] = 1.0
                    buffers[key] = buf
                designs.append(_DenseBlock(buffers[key], cols.size + fit))
            yield rows, designs

    def _raw(self, designs, coef, n_rows):
        raw = np.empty((n_rows, len(designs)))
        for j, (design, sl) in enumerate(zip(designs, self.slices, strict=True)):
            raw[:, j] = design.matvec(coef[sl])
        return raw

    # -- public evaluation ---------------------------------------------------
    def raw_prediction(self, coef):
        """Linear predictors ``eta`` of shape (n_samples, k) at ``coef``."""
        n = self.X.shape[0]
        out = np.empty((n, len(self.slices)))
        for rows, designs in self._blocks():
            n_rows = n if self.sparse else rows.stop - rows.start
            out[rows] = self._raw(designs, coef, n_rows)
        return out

    def loss_gradient(self, coef):
        """Objective value and gradient at ``coef``, in one pass over ``X``."""
        value, grad, _ = self._evaluate(coef, hessian=False)
        return value, grad

    def loss_gradient_hessian(self, coef):
        """Objective value, gradient and Hessian matrix, in one pass over ``X``."""
        return self._evaluate(coef, hessian=True)

    def hessp(self, coef, vector):
        """Hessian-vector product ``H(coef) @ vector`` without forming ``H``."""
        n = self.X.shape[0]
        out = np.zeros(self.n_coef)
        for rows, designs in self._blocks():
            n_rows = n if self.sparse else rows.stop - rows.start
            raw = self._raw(designs, coef, n_rows)
            _, _, hess = self.loss.loss_gradient_hessian(self.y[rows], raw)
            direction = self._raw(designs, vector, n_rows)
            hess_dir = np.einsum("nab,nb->na", hess, direction)
            hess_dir *= self.sample_weight[rows][:, None]
            for j, (design, sl) in enumerate(zip(designs, self.slices, strict=True)):
                out[sl] += design.rmatvec(hess_dir[:, j])
        out /= self.sum_weight
        return out + self.penalty * vector

    def _evaluate(self, coef, hessian):
        n = self.X.shape[0]
        k = len(self.slices)
        value = 0.0
        grad = np.zeros(self.n_coef)
        H = np.zeros((self.n_coef, self.n_coef)) if hessian else None
        for rows, designs in self._blocks():
            n_rows = n if self.sparse else rows.stop - rows.start
            raw = self._raw(designs, coef, n_rows)
            sw = self.sample_weight[rows]
            loss, g, h = self.loss.loss_gradient_hessian(self.y[rows], raw)
            value += sw @ loss
            g *= sw[:, None]
            for j in range(k):
                grad[self.slices[j]] += designs[j].rmatvec(g[:, j])
            if hessian:
                for a in range(k):
                    for b in range(a, k):
                        H[self.slices[a], self.slices[b]] += designs[a].weighted_gram(
                            sw * h[:, a, b], designs[b]
                        )
        value /= self.sum_weight
        grad /= self.sum_weight
        value += 0.5 * coef @ (self.penalty * coef)
        grad += self.penalty * coef
        if hessian:
            H /= self.sum_weight
            # Only the upper blocks were accumulated; mirror them.
            for a in range(k):
                for b in range(a + 1, k):
                    H[self.slices[b], self.slices[a]] = H[
                        self.slices[a], self.slices[b]
                    ].T
            H[np.diag_indices_from(H)] += self.penalty
        return value, grad, H

    # -- coefficients in the units of the original columns -------------------
    def unstandardize(self, coef):
        """Per predictor ``(w_j, b_j)`` in the units of the original columns.

        ``b_j`` is 0.0 for a predictor without an intercept (its columns are
        then not centred either, so none is lost).
        """
        out = []
        for cols, fit, sl in zip(
            self.columns, self.fit_intercept, self.slices, strict=True
        ):
            c = coef[sl]
            w = c[: cols.size] * self.inv_scale[cols]
            b = float(c[cols.size] - self.mean[cols] @ w) if fit else 0.0
            out.append((w, b))
        return out

    def standardize(self, params):
        """Inverse of :meth:`unstandardize`: a flat coefficient vector."""
        coef = np.zeros(self.n_coef)
        for (w, b), cols, fit, sl in zip(
            params, self.columns, self.fit_intercept, self.slices, strict=True
        ):
            c = coef[sl]
            c[: cols.size] = w * self.scale[cols]
            if fit:
                c[cols.size] = b + self.mean[cols] @ w
        return coef
