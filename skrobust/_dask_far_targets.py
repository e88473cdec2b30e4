"""The M-estimators' far-target guard on dask data (issue #15).

In memory (``skrobust._mestimator._clip_far_targets``), when some
standardised target lies beyond ``_CLIP_SCALES / 2`` robust scales and the
loss saturates well within that distance, every target more than
``_CLIP_SCALES`` from the start's fitted value is moved to that distance:
far beyond saturation a residual enters the fit only through its sign, so
the minimiser does not change, while the objective's value, no longer a
sum dominated by ``1e50``-sized terms, keeps the digits that trust regions
and line searches compare. The clipped fit is kept if every moved row is
still beyond saturation on the same side; otherwise the fit is made again
unclipped.

Here each chunk's task moves its own targets (:class:`FarClippedSetup`,
from the start's coefficients), and one pass checks the moved rows at the
fit (:func:`moved_rows_keep_sides`).
"""

import numpy as np

from ._dask_chunks import _chunk_weights
from ._dask_objective import _ChunkSetup
from ._mestimator import _CLIP_SCALES


def guard_applies(rho, stats, offset, spread):
    """Whether some target may be far enough to clip: the in-memory test.

    ``stats[3]`` is the smallest and largest target (of rows with weight),
    ``offset`` and ``spread`` the standardisation of ``y``.
    """
    low, high = stats[3]
    farthest = max(abs(low - offset), abs(high - offset)) / spread
    return farthest > 0.5 * _CLIP_SCALES and rho.saturation < 0.5 * _CLIP_SCALES


class Start:
    """The start's fitted values, and the rows it puts beyond ``_CLIP_SCALES``.

    ``coef`` and ``intercept`` in standardised ``y`` units and the columns'
    own units; targets are standardised by ``offset`` and ``spread``, 0 on
    rows without weight (as the in-memory template sets them).
    """

    def __init__(self, coef, intercept, offset, spread):
        self.coef, self.intercept = np.asarray(coef, float), float(intercept)
        self.offset, self.spread = float(offset), float(spread)

    def targets(self, X_c, y_c, w_c):
        """``(y, fitted, far, sign)`` of the chunk, ``y`` standardised."""
        with np.errstate(over="ignore"):
            y = (np.asarray(y_c, dtype=np.float64) - self.offset) / self.spread
        y[~(_chunk_weights(y_c, w_c) > 0)] = 0.0
        fitted = np.asarray(X_c @ self.coef).ravel() + self.intercept
        residuals = y - fitted
        far = np.abs(residuals) > _CLIP_SCALES
        return y, fitted, far, np.sign(residuals[far])

    def clipped(self, X_c, y_c, w_c):
        """The chunk's standardised targets with the far ones moved in."""
        y, fitted, far, sign = self.targets(X_c, y_c, w_c)
        # From the fitted value, not y - shift, which would cancel for 1e50.
        y[far] = fitted[far] + sign * _CLIP_SCALES
        return y


class FarClippedSetup(_ChunkSetup):
    """A chunk setup whose standardised targets are :meth:`Start.clipped`."""

    def __init__(self, setup, start):
        vars(self).update(vars(setup))
        self.start = start

    def targets(self, X_c, y_c, weights):
        return self.start.clipped(X_c, y_c, weights)


def _sides_kernel(X_c, y_c, w_c, start, coef, intercept, margin):
    """Whether the chunk's moved rows are beyond ``margin`` on their side at the fit."""
    y, fitted, far, sign = start.targets(X_c, y_c, w_c)
    if not far.any():
        return True
    moved = fitted[far] + sign * _CLIP_SCALES
    residuals = moved - (np.asarray(X_c[far] @ coef).ravel() + intercept)
    return bool(np.all(sign * residuals > margin))


def moved_rows_keep_sides(data, start, coef, intercept, margin):
    """One pass: every moved row's residual at ``(coef, intercept)`` beyond ``margin``.

    ``margin`` is the loss's saturation times the fit's scale, in
    standardised units: then the clipped fit is the fit (see the module).
    """
    coef = np.asarray(coef, float)
    return all(data.map_chunks(_sides_kernel, start, coef, intercept, margin))
