"""Validation, target standardisation and prediction shared by every estimator."""

import functools
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from . import _dask, _lockstep, _preconditioned_newton, _progress
from ._linalg import CholeskyFactor, cholesky_solve, min_norm_solve, regular_solve
from ._null_directions import remember_design_gram
from ._objective import LinearObjective
from ._passes import single_threaded_blas
from ._preconditioned_newton import uses_products
from ._strides import aperiodic_step
from .losses import FixedScaleLoss, SquaredRho

# The MAD of a standard normal sample: MAD / 0.6745 estimates its standard
# deviation (the constant of R's mad() and statsmodels.robust.scale.mad).
MAD_NORMAL_CONSTANT = 0.6744897501960817

# Residuals beyond this many noise scales are flagged in outliers_: 1.2% of
# Gaussian noise, and every error beyond 10 noise standard deviations.
OUTLIER_THRESHOLD = 2.5

_ACCEPT_SPARSE = ("csr", "csc")

# Rows of the strided subsample that the least-squares start is computed on.
LEAST_SQUARES_START_ROWS = 10_000

# Reweighting steps, and rows, of the least-absolute-deviation start.
_LAD_START_STEPS = 4
_LAD_START_ROWS = 2_000
# The starts copy a subsample's design when it has at most this many
# elements (8 MiB) and at most 1 / _COPY_FRACTION of X's (see copy_budget).
_DENSE_START_ELEMENTS = 2**20
_COPY_FRACTION = 8
_SMALL_COPY_ELEMENTS = 2**16

# Up to this many design elements, or rows per coefficient, the start
# materialises the weighted, standardised design and calls lstsq on it (a
# copy of a small problem; its SVD costs more than the normal equations).
_DIRECT_LSTSQ_ELEMENTS = 10_000
_DIRECT_LSTSQ_ROWS_PER_COEF = 5


def copy_budget(X):
    """Design elements a start may copy: a small fraction of ``X``, at most 8 MiB.

    At least ``_SMALL_COPY_ELEMENTS`` (512 KiB): for small ``X`` a copy costs
    less than building an objective and a pass for each reweighting step,
    and its memory is negligible.
    """
    fraction = X.shape[0] * X.shape[1] // _COPY_FRACTION
    return max(min(_DENSE_START_ELEMENTS, fraction), _SMALL_COPY_ELEMENTS)


# Above this many coefficients a Gram matrix (and its eigendecomposition)
# costs more than iterative least squares on the design: starts use LSQR.
ITERATIVE_MIN_COEF = 300
# LSQR's tolerances and iterations for a start (a start need not be exact;
# an exactly consistent system still converges to its minimum-norm solution).
_LSQR_TOL = 1e-10
# A least-squares start by LSQR is solved to this tolerance first, and to
# _LSQR_TOL only where its residuals' root mean square is within
# _NEAR_EXACT_RESIDUAL (where whether it fits exactly decides the fit; see
# _lsqr_start). On a 2e4 x 1000 design: 15 iterations (0.3 s, a fifth of a
# fit) to _LSQR_TOL.
_LSQR_START_TOL = 1e-6
# ... and near an exact fit to this one: at _LSQR_TOL the residuals of an
# exact wide fit stayed at 2e-9 to 5e-9 (2000 or 200 rows of 320 columns),
# above EXACT_FIT_TOL, so that the fit was not seen to be exact (a scale of
# 1.8e-11 instead of 0; an LP's interpolant instead of least squares'
# minimum-norm one). 28-33 iterations more than _LSQR_TOL's, there only.
_LSQR_EXACT_TOL = 1e-14
_LSQR_STEP_TOL = 1e-4
_LSQR_MAX_ITER = 500
# A reweighting step of the L1 start stops after this many iterations: its
# weights 1 / |r| make the system ill-conditioned (64-101 iterations to
# _LSQR_STEP_TOL on a 2e4 x 1000 design, 1.3 s, half the fit), and the
# start needs a direction towards the L1 fit, not its digits (the L-BFGS
# fit after it took as many iterations).
_LSQR_STEP_MAX_ITER = 20
# ... and after this many where the steps reweight all of the start's rows
# (no stride leaves more rows than coefficients, or its rows carry no
# weight): each iteration is then a pass over them. On a sparse 2e4 x 2000
# design (0.5% filled) the 80 iterations of the four steps were 0.1 s of a
# 0.2 s fit; capped at 5, Huber's joint fit took 0.12-0.15 s instead of
# 0.20-0.24, its MAD fit 0.10-0.13 instead of 0.15-0.18 (LAD's unchanged).
_LSQR_ALL_ROWS_STEP_MAX_ITER = 5


def _lsqr_least_squares(
    objective, x0=None, tol=_LSQR_TOL, max_iter=_LSQR_MAX_ITER, residual=False
):
    """Weighted ridge least squares by LSQR on the design, without a Gram matrix.

    Minimises ``sum_i s_i (y_i - d_i c)^2 / S + sum_j pen_j c_j^2`` (twice
    the objective) as the least-squares problem of the design stacked on
    ``diag(sqrt(pen))``, from ``x0`` (default zero: then a consistent
    system gives its minimum-norm solution, like ``lstsq``). With
    ``residual``, also the square root of that minimum at the solution.
    """
    n, m = objective.n_samples, objective.n_coef
    root = np.sqrt(objective.sample_weight / objective.sum_weight)
    root_pen = np.sqrt(objective.penalty)

    def matvec(c):
        return np.concatenate([root * objective.design_matvec(c), root_pen * c])

    def rmatvec(v):
        return objective.design_rmatvec(root * v[:n]) + root_pen * v[n:]

    operator = scipy.sparse.linalg.LinearOperator(
        (n + m, m), matvec=matvec, rmatvec=rmatvec, dtype=float
    )
    rhs = np.concatenate([root * objective.y, np.zeros(m)])
    found = scipy.sparse.linalg.lsqr(
        operator,
        rhs,
        atol=tol,
        btol=tol,
        iter_lim=max_iter,
        x0=x0,
    )
    return (found[0], float(found[3])) if residual else found[0]


def lsqr_start(objective, solve=None, tol=_LSQR_START_TOL):
    """The least-squares start by LSQR from zero: to its digits only near an exact fit.

    Solved to ``tol`` (``_LSQR_TOL`` for a start that must be least squares
    itself); where the residuals' weighted root mean
    square (with the ridge term) is then within ``_NEAR_EXACT_RESIDUAL``,
    solved again from zero to ``_LSQR_EXACT_TOL``: only there can the fit be
    exact (every weighted residual within ``EXACT_FIT_TOL``, which decides
    the robust fit), and a start from zero keeps LSQR's minimum-norm
    solution.
    Elsewhere some residual exceeds ``_NEAR_EXACT_RESIDUAL``, and the start
    needs no more digits. ``solve`` is :func:`_lsqr_least_squares` (the dask
    fit passes its own reference, which its tests follow).
    """
    solve = _lsqr_least_squares if solve is None else solve
    coef, residual = solve(objective, tol=tol, residual=True)
    if residual <= _NEAR_EXACT_RESIDUAL:
        coef = solve(objective, tol=_LSQR_EXACT_TOL)
    return coef


def _solve_least_squares(objective, direct=False, budget=0, regular=False, loose=False):
    """Weighted least squares of a squared-loss objective, from zero coefficients.

    ``direct`` solves small problems with ``lstsq`` on the design itself:
    stable minimum-norm solutions where the normal equations would square
    the condition number (``p`` close to ``n``), at the price of an SVD.
    The normal equations come from a copy of the design (of its rows with
    weight) when that has at most ``budget`` elements (see
    :func:`copy_budget`): one product with a contiguous matrix beats a pass
    in blocks. Otherwise they are formed in one pass of the objective.
    ``regular`` solves the normal equations by Cholesky when they are well
    conditioned (see :func:`_weighted_normal_solve`). ``loose`` solves by
    LSQR (beyond ``ITERATIVE_MIN_COEF`` coefficients) to the digits of a
    start only, unless the fit is nearly exact (:func:`lsqr_start`).
    """
    if objective.n_coef > ITERATIVE_MIN_COEF:
        # (Near an exact fit both solve again to _LSQR_EXACT_TOL: at _LSQR_TOL
        # an exactly linear wide design kept residuals of a few 1e-9, and the
        # smoothed quantile fit did not see that least squares fits it.)
        return lsqr_start(objective, tol=_LSQR_START_TOL if loose else _LSQR_TOL)
    if direct and (
        objective.n_samples * objective.n_coef <= _DIRECT_LSTSQ_ELEMENTS
        or objective.n_samples <= _DIRECT_LSTSQ_ROWS_PER_COEF * objective.n_coef
    ):
        return _direct_least_squares(objective)
    if objective.n_samples * objective.n_coef <= budget:
        return _weighted_normal_solve(
            *_rows_with_weight(objective), objective.penalty, regular
        )
    _, grad, hess = objective.loss_gradient_hessian(np.zeros(objective.n_coef))
    return regular_solve(hess, -grad) if regular else min_norm_solve(hess, -grad)


def _rows_with_weight(objective):
    """Standardised design, targets and weights of the rows with weight.

    The design is read, never written: where every row has weight and the
    objective is small enough to hold its standardised design
    (:class:`~skrobust._small_design.SmallDesign`, which its passes and
    predictions build anyway), that copy itself, not another.
    """
    rows = objective.sample_weight > 0
    if rows.all():
        small = objective._small_design()
        if small is not None:
            return small.designs[0], objective.y, objective.sample_weight
        rows = slice(None)  # a view, not a gathered copy
    return (
        objective.dense_design(rows),
        objective.y[rows],
        objective.sample_weight[rows],
    )


def _weighted_normal_solve(design, y, weights, penalty, regular=False):
    """Minimum-norm minimiser of ``sum_i w_i (y_i - d_i c)^2 / (2 sum w) + pen``.

    ``pen = sum_j penalty_j c_j^2 / 2``: the normal equations of the
    weighted-mean objective :class:`LinearObjective` forms, from a design
    held in memory. With ``regular``, by a Cholesky factorisation when the
    normal equations are well conditioned (:func:`regular_solve`): the same
    solution then, at a fraction of the eigendecomposition's cost.
    """
    if (weights == weights[0]).all():
        hessian = design.T @ design
        hessian /= design.shape[0]
        rhs = design.T @ y / design.shape[0]
    else:
        share = weights / weights.sum()
        root_share = np.sqrt(share)
        # In chunks of rows unless the design is small: a weighted copy of
        # the whole design would be another fifth of X when X is small.
        chunk = design.shape[0] if design.size <= _SMALL_COPY_ELEMENTS else 512
        hessian = np.zeros((design.shape[1], design.shape[1]))
        for start in range(0, design.shape[0], chunk):
            rows = slice(start, start + chunk)
            root = design[rows] * root_share[rows, None]
            hessian += root.T @ root
        rhs = design.T @ (share * y)
    hessian.flat[:: hessian.shape[0] + 1] += penalty
    return regular_solve(hessian, rhs) if regular else min_norm_solve(hessian, rhs)


def _direct_least_squares(objective):
    """Minimum-norm weighted least squares in ``objective``'s coordinates."""
    design = objective.dense_design()
    root_w = np.sqrt(objective.sample_weight)
    design *= root_w[:, None]
    # A complete orthogonal factorisation (QR with column pivoting, LAPACK
    # gelsy) gives the same minimum-norm solution as the SVD (gelsd) in a
    # third to a half of its time, at numpy's rank cut-off.
    return scipy.linalg.lstsq(
        design,
        objective.y * root_w,
        cond=np.finfo(float).eps * max(design.shape),
        lapack_driver="gelsy",
        check_finite=False,
        overwrite_a=True,
    )[0]


# Order statistics of at least this many values are found by bracketing
# (see kth_smallest); of fewer by one partition, which was faster up to
# about 5e5 values (1e5: 0.34 ms against the bracket's 0.41, one BLAS
# thread; 1e6: 2.3 against 1.8).
_BRACKET_MIN_SIZE = 2**19
# The bracket's bounds are order statistics of every _BRACKET_STEP-th value,
# this many standard deviations of their rank either side of the middle
# (about 1.6% of the values each side for a million).
_BRACKET_STEP = 64
_BRACKET_WIDTH = 4.0


def _median(values):
    """``np.median`` of finite values, from one partition (of a bracket).

    ``np.median`` partitions around both middle positions and checks for
    NaN; one partition and the largest value below it give the same
    number several times faster (the targets of every fit go through two
    medians), and for large arrays one partition of the values between two
    bounds does (:func:`kth_smallest`).
    """
    if not values.size:
        return float("nan")  # as np.median, without its warning
    odd = bool(values.size % 2)
    lower, upper = _middle_values(values, lower=not odd)
    if odd:
        return upper
    middle = (lower + upper) / 2
    # (The sum of two values near the largest double overflows.)
    return middle if np.isfinite(middle) else 0.5 * lower + 0.5 * upper


def _middle_values(values, lower=True):
    """The ``(k-1)``-th and ``k``-th smallest of ``values``, ``k = size // 2``.

    Without ``lower`` the first is None (see :func:`kth_smallest`).
    """
    k = values.size // 2
    if lower and k:
        return kth_smallest(values, k, previous=True)
    return None, kth_smallest(values, k)


def kth_smallest(values, k, previous=False):
    """The ``k``-th smallest of ``values`` (from 0); with ``previous`` the (k-1)-th too.

    A partition of a million values takes a few ms, and a MAD scale's
    fixed point takes two dozen medians. From ``_BRACKET_MIN_SIZE`` values
    the answer is first sought among the values between two order
    statistics of every ``_BRACKET_STEP``-th value that bracket its rank
    with high probability: two comparisons over all values count those
    below and gather those between (a few percent), and a partition of
    those gives it exactly when the counts show that the rank fell inside;
    otherwise (an unlucky sample: values in an adversarial order) the whole
    array is partitioned. Returns a float, or with ``previous`` (``k >= 1``)
    the pair ``(k-1-th, k-th)``.
    """
    n = values.size
    first = k - 1 if previous else k
    if n >= _BRACKET_MIN_SIZE:
        sample = values[::_BRACKET_STEP].copy()
        rank = k * sample.size / n
        reach = _BRACKET_WIDTH * np.sqrt(sample.size / 4.0) + 2.0
        low, high = int(rank - reach), int(rank + reach)
        ends = [i for i in (low, high) if 0 <= i < sample.size]
        if ends:
            sample.partition(ends)
        # Beyond the sample's ends the bracket is open.
        lo = sample[low] if low >= 0 else -np.inf
        hi = sample[high] if high < sample.size else np.inf
        outside = values < lo
        n_below = int(np.count_nonzero(outside))
        inside = np.logical_not(outside, out=outside)
        inside &= values <= hi
        between = values[inside]
        if n_below <= first and k < n_below + between.size:
            return _selected(between, k - n_below, previous)
    return _selected(values, k, previous)


def _selected(values, k, previous):
    """``values``' ``k``-th smallest (and the one before) by partition."""
    part = np.partition(values, k)
    if not previous:
        return float(part[k])
    # The largest of the k below: introselect for two positions took three
    # times one's (1e5 values: 1.07 -> 0.26 ms with this maximum).
    return float(part[:k].max()), float(part[k])


def weighted_median(values, weights=None):
    """Median of ``values`` with non-negative ``weights``.

    With integer weights it equals ``np.median`` of the values repeated
    that many times (the mean of the two middle values when the total weight
    is even), so weights and repeated rows give the same fit.
    """
    if weights is None or (weights == weights[0]).all():
        return _median(values)
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order] / weights.max()
    cum = np.cumsum(w)
    half = 0.5 * cum[-1]
    # Cumulative sums of non-integer weights carry rounding: "exactly half"
    # means within it, so that scaling all weights cannot change the answer.
    slack = 1e-12 * cum[-1]
    i = int(np.searchsorted(cum, half - slack))
    if cum[i] <= half + slack:
        # Half the weight is at or below v[i]: average with the next value
        # that carries weight.
        following = np.flatnonzero(w[i + 1 :] > 0)
        if following.size:
            return 0.5 * (v[i] + v[i + 1 + following[0]])
    return float(v[i])


def total_weight(sample_weight):
    """``sum(sample_weight)``, infinite rather than a RuntimeWarning on overflow."""
    top = float(sample_weight.max())
    return float((sample_weight / top).sum()) * top if top > 0 else 0.0


def mad_scale(residuals, weights=None):
    """``median(|r|) / 0.6745``: the normalised MAD about zero, as in ``MASS::rlm``."""
    return weighted_median(np.abs(residuals), weights) / MAD_NORMAL_CONSTANT


def target_offset_scale(y, sample_weight, fit_intercept):
    """A robust offset and a positive scale that standardise ``y`` for the solver.

    The weighted median (with an intercept; else 0) and the normalised MAD
    about it (the root mean square deviation if more than half of ``y`` sits
    on the median; 1 if ``y`` is all zeros). Minimisers are equivariant, so
    this changes nothing but the conditioning and what the solver tolerance
    is relative to: robust statistics keep that the spread of the good data,
    whatever size the outliers are. Nothing is squared, so ``|y|`` up to
    ``1e300`` does not overflow.
    """
    offset = weighted_median(y, sample_weight) if fit_intercept else 0.0
    dev = np.abs(y - offset)
    scale = weighted_median(dev, sample_weight) / MAD_NORMAL_CONSTANT
    if scale > 0:
        return offset, scale
    dmax = float(np.max(dev))
    if not dmax > 0:
        return offset, 1.0 if offset == 0 else abs(offset)
    scaled = dev / dmax
    rms = dmax * float(
        np.sqrt(
            np.average(scaled * scaled, weights=sample_weight / sample_weight.max())
        )
    )
    return offset, rms if rms > 0 else dmax


@dataclass
class StandardisedFit:
    """One target column's fit, in standardised units until the template maps it.

    ``extras`` holds the estimator's other per-output attributes (by their
    public names); each estimator's ``_unstandardise`` maps those that
    carry units.
    """

    coef: np.ndarray
    intercept: float
    n_iter: int
    extras: dict = field(default_factory=dict)
    converged: bool = True


# A warm start whose residuals' robust scale is more than this many robust
# spreads of y (those of a start at the median) is no start: y was rescaled
# or replaced since the previous fit.
WARM_START_MAX_SPREADS = 1e3


def warm_start_is_plausible(X, y_std, sample_weight, warm):
    """Whether a warm start (standardised units) is within reach of the new fit.

    Its residuals' normalised MAD (rows of positive weight) at most
    ``WARM_START_MAX_SPREADS`` spreads of ``y``. A start from a fit to ``y``
    1e6 times larger is 1e6 spreads away: Newton's method and the smoothed
    quantile solver spent ``max_iter`` and warned, and the heteroscedastic
    likelihood, its variance as far off, is flat there and stopped
    "converged" after 6 iterations, 1e12 times off, without a warning.
    """
    rows = sample_weight > 0
    with np.errstate(over="ignore", invalid="ignore"):
        # (All rows' predictions, then the rows with weight: X[rows] would
        # be a copy of X.)
        fitted = np.asarray(safe_sparse_dot(X, warm.coef)).ravel()
        residuals = y_std[rows] - fitted[rows] - warm.intercept
        scale = mad_scale(residuals, sample_weight[rows])
    return bool(scale <= WARM_START_MAX_SPREADS)


class RobustLinearRegressor(RegressorMixin, BaseEstimator):
    """Shared machinery of skrobust's linear estimators, and the fit template.

    :meth:`fit` is the one fit path: validate, then for each target column
    standardise it (:func:`target_offset_scale`), take a warm start,
    ``_fit_standardised``, map back (``_unstandardise``), add the attributes
    that need the residuals (``_finish_output``), and set the attributes,
    stacked over the columns of a 2-D ``y``. A subclass supplies
    ``_fit_standardised`` and, if it has them, its hooks;
    ``predict`` is ``X @ coef_.T + intercept_``.
    """

    # Per-output attributes of shape (n_samples,), stacked as columns.
    _per_sample_attributes = ()
    # Whether the columns of a 2-D y are fitted in lock step (_lockstep).
    _lockstep_outputs = False

    def fit(self, X, y, sample_weight=None):
        """Fit the model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Not copied: any real dtype, dense or sparse
            (CSR, CSC), is read as it is.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values; each column of a 2-D ``y`` is its own fit.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; integer weights are equivalent to repeated
            rows.

        Returns
        -------
        object
            The fitted estimator.
        """
        if _dask.is_dask_array(X):
            return _dask.fit(self, X, y, sample_weight)
        X, Y, sample_weight = self._validate_fit_data(
            X, y, sample_weight, multi_output=True
        )
        self._check_fit_parameters()
        with (
            _progress.reporting(getattr(self, "verbose", 0), type(self).__name__),
            single_threaded_blas(X),
        ):
            fits = self._fit_columns(X, Y, sample_weight)
        self._set_fitted(fits, Y.ndim)
        return self

    def _fit_columns(self, X, Y, sample_weight):
        """The template's per-column steps, for each column of ``Y``.

        Estimators with ``_lockstep_outputs`` fit several columns in lock
        step (:mod:`skrobust._lockstep`: one pass over ``X`` serves every
        column's fit, each the same as alone) where that pays
        (:func:`skrobust._lockstep.pays_off`); others, smaller designs and
        fits that print progress, one column after the other.
        """
        columns = Y[:, None] if Y.ndim == 1 else Y
        n_outputs = columns.shape[1]

        def fit_column(k):
            return self._fit_column(X, columns, k, sample_weight)

        if (
            n_outputs > 1
            and self._lockstep_outputs
            and not getattr(self, "verbose", 0)
            and _lockstep.pays_off(X)
        ):
            return _lockstep.run(
                [functools.partial(fit_column, k) for k in range(n_outputs)], X
            )
        loop = _progress.loop(range(n_outputs), n_outputs, "output")
        return [fit_column(k) for k in loop]

    def _fit_column(self, X, columns, k, sample_weight):
        """Column ``k`` of ``columns``: standardise, fit, map back, finish."""
        y_k = columns[:, k]
        offset, spread = self._target_offset_scale(y_k, sample_weight)
        # A zero-weight row enters no fit, but its y can be any finite
        # number: divided by a small spread it would overflow.
        with np.errstate(over="ignore"):
            y_std = (y_k - offset) / spread
        y_std[~(sample_weight > 0)] = 0.0
        warm = self._warm_start_fit(k, columns.shape[1], X.shape[1])
        if warm is not None:
            intercept = warm.intercept - offset if self.fit_intercept else 0.0
            warm = StandardisedFit(
                warm.coef / spread,
                intercept / spread,
                0,
                self._standardise_extras(warm.extras, offset, spread),
            )
            if not warm_start_is_plausible(X, y_std, sample_weight, warm):
                warm = None
        fit = self._fit_standardised(X, y_std, sample_weight, spread, warm)
        fit.coef = np.asarray(fit.coef, dtype=np.float64) * spread
        fit.intercept = float(fit.intercept * spread + offset)
        fit = self._unstandardise(fit, offset, spread)
        return self._finish_output(fit, X, y_k, sample_weight)

    def _target_offset_scale(self, y, sample_weight):
        """The offset and positive scale ``y`` is standardised by."""
        return target_offset_scale(y, sample_weight, self.fit_intercept)

    def _check_fit_parameters(self):
        """Checks of the parameters beyond ``_parameter_constraints``."""

    def _standardise_extras(self, extras, y_offset, y_scale):
        """A warm start's ``extras`` in standardised units (inverse of the next)."""
        return {name: value / y_scale for name, value in extras.items()}

    def _unstandardise(self, fit, y_offset, y_scale):
        """Map ``fit.extras`` back to the units of ``y``."""
        return fit

    def _finish_output(self, fit, X, y, sample_weight):
        """Attributes computed from the residuals of the fit in ``y`` units."""
        return fit

    def _warm_extras(self, k):
        """Warm-start values of ``extras`` for output ``k``, in ``y`` units."""
        return {}

    def _warm_start_fit(self, k, n_outputs, n_features):
        """The previous fit of output ``k`` in ``y`` units, or None."""
        if not (self.warm_start and hasattr(self, "coef_")):
            return None
        coef = np.atleast_2d(self.coef_)
        if coef.shape != (n_outputs, n_features):
            return None
        intercept = float(np.ravel(self.intercept_)[k])
        return StandardisedFit(coef[k], intercept, 0, self._warm_extras(k))

    def _set_fitted(self, fits, y_ndim):
        """Set the attributes: scalars for a 1-D ``y``, stacked for a 2-D one."""
        if y_ndim == 1:
            (fit,) = fits
            self.coef_, self.intercept_ = fit.coef, fit.intercept
            self.n_iter_ = int(fit.n_iter)
            for name, value in fit.extras.items():
                setattr(self, name, value)
            return
        self.coef_ = np.stack([fit.coef for fit in fits])
        self.intercept_ = np.array([fit.intercept for fit in fits])
        self.n_iter_ = np.array([fit.n_iter for fit in fits], dtype=int)
        for name in fits[0].extras:
            axis = 1 if name in self._per_sample_attributes else 0
            setattr(self, name, np.stack([fit.extras[name] for fit in fits], axis))

    def _validate_fit_data(self, X, y, sample_weight, multi_output=False):
        """Check parameters and data; never copies a valid X."""
        if _dask.is_dask_array(X):
            _dask.unsupported(self)
        self._validate_params()
        if _checked_arrays(X, y, multi_output):
            # check_X_y would return them as they are: only the feature
            # names and n_features_in_ (a tenth of its time on 1000 x 20).
            X, y = validate_data(self, X, y, skip_check_array=True)
        else:
            X, y = validate_data(
                self,
                X,
                y,
                accept_sparse=_ACCEPT_SPARSE,
                dtype="numeric",
                y_numeric=True,
                multi_output=multi_output,
            )
        if X.dtype.kind not in "biuf":
            # dtype="numeric" keeps e.g. float16; complex never reaches here.
            raise ValueError(f"X has unsupported dtype {X.dtype}")
        y = np.asarray(y, dtype=np.float64)
        if sample_weight is None:
            # (What _check_sample_weight makes of None, without its checks
            # of the ones it makes: a tenth of a small fit's validation.)
            sample_weight = np.ones(X.shape[0])
        else:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        if not sample_weight.max(initial=0.0) > 0:
            raise ValueError("sample_weight must have a positive sum.")
        return X, y, sample_weight

    @classmethod
    def _get_param_names(cls):
        """The constructor's parameter names (sklearn's), read once per class.

        ``inspect.signature`` of ``__init__`` at every ``get_params`` was a
        tenth of the validation of a small fit.
        """
        return list(_param_names(cls))

    def predict(self, X):
        """Predict with the fitted linear model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets)
            ``X @ coef_.T + intercept_``.
        """
        check_is_fitted(self)
        if _dask.is_dask_array(X):
            return _dask.predict(self, X)
        X = validate_data(
            self, X, accept_sparse=_ACCEPT_SPARSE, dtype="numeric", reset=False
        )
        return safe_sparse_dot(X, self.coef_.T) + self.intercept_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        # Estimators on the fit template fit each column of a 2-D y.
        # (hasattr on the class: dir(self) costs a fit of 50 rows.)
        tags.target_tags.multi_output = hasattr(type(self), "_fit_standardised")
        return tags


def _checked_arrays(X, y, multi_output):
    """Whether ``X`` and ``y`` are arrays that ``check_X_y`` passes unchanged.

    Finite float64 ndarrays (not subclasses) of matching lengths, ``X`` 2-D
    with a row and a column at least, ``y`` 1-D and contiguous (or 2-D with
    a column at least, with ``multi_output``): ``validate_data``'s checks of them
    (``check_array`` on each, most of a small fit's validation) would
    change nothing and raise nothing. Anything else is left to them, which
    raise their own messages.
    """
    if not (
        type(X) is np.ndarray
        and type(y) is np.ndarray
        and X.dtype == np.float64
        and y.dtype == np.float64
        and X.ndim == 2
        and X.shape[0] > 0
        and X.shape[1] > 0
        and y.shape[:1] == X.shape[:1]
        # (column_or_1d copies a strided 1-D y: contiguous, it would not.)
        and (
            (y.ndim == 1 and y.flags.c_contiguous)
            or (multi_output and y.ndim == 2 and y.shape[1] > 0)
        )
    ):
        return False
    # A finite sum means finite entries (scikit-learn's own first test): no
    # temporary of X's size. (A sum that overflows takes the full checks,
    # silently, as in scikit-learn: finite data must not warn or raise.)
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(X.sum()) and np.isfinite(y.sum()))


@functools.cache
def _param_names(cls):
    """``BaseEstimator._get_param_names`` of ``cls`` (its signature is fixed)."""
    return tuple(BaseEstimator._get_param_names.__func__(cls))


def least_squares_start(
    X, y, sample_weight, fit_intercept, l2, normal_equations=False, loose=False
):
    """Weighted (ridge) least squares, the start of every robust fit.

    Returns the squared-loss objective on all rows (it fixes the
    standardised coordinates every later objective shares through
    ``column_stats``), the one on the rows the start was computed from
    (a strided subsample of about ``LEAST_SQUARES_START_ROWS`` rows: a
    start need not be exact), and the coefficients. Small problems are
    solved by ``lstsq`` on the weighted design itself, which gives the
    minimum-norm solution stably when columns are collinear or
    ``p >= n`` (so that weights and repeated rows agree there too);
    larger ones from the normal equations, formed in one pass. With
    ``normal_equations``, wide designs (fewer than
    ``_DIRECT_LSTSQ_ROWS_PER_COEF`` rows per coefficient) are solved from
    the normal equations too when that is safe
    (:func:`_normal_equations_start`) and they have at most
    ``ITERATIVE_MIN_COEF`` coefficients: ``lstsq``'s factorisation of a
    1000 x 201 design costs five times the Gram matrix. With ``loose``,
    LSQR (beyond ``ITERATIVE_MIN_COEF``) stops at a start's digits unless
    the fit is nearly exact (:func:`lsqr_start`; the M-estimators' start).
    """
    objective = LinearObjective(
        FixedScaleLoss(SquaredRho()),
        X,
        y,
        sample_weight,
        [(None, fit_intercept)],
        [l2],
    )
    start_objective = objective
    step = least_squares_start_step(X.shape[0])
    if step > 1:
        sub = objective.subsample(step)
        if sub.sum_weight > 0:
            start_objective = sub
    coef = None
    if (
        normal_equations
        and start_objective.n_coef <= ITERATIVE_MIN_COEF
        and start_objective.n_samples * start_objective.n_coef > _DIRECT_LSTSQ_ELEMENTS
    ):
        # (Beyond ITERATIVE_MIN_COEF LSQR, not a dense n_coef^2 Gram matrix:
        # on a sparse 2e4 x 2000 design that matrix and its factor were 65
        # times the bytes of X.)
        # (The fit's objectives share this cache, and the Gram matrix.)
        objective.null_cache = start_objective.null_cache = {}
        coef = _normal_equations_start(start_objective)
    if coef is None:
        # A copy of the subsample's design is cheaper than a pass over it.
        coef = _solve_least_squares(
            start_objective, direct=True, budget=copy_budget(X), loose=loose
        )
    return objective, start_objective, coef


# A start from the normal equations is kept only where some weighted residual
# exceeds this (in units of the standardised y): near an exact fit, the
# digits the normal equations lose (cond(D) squared) would hide it.
_NEAR_EXACT_RESIDUAL = 1e-4


def _normal_equations_start(objective):
    """Least squares by Cholesky on the normal equations, or None.

    None (use ``lstsq`` on the design) where the Gram matrix is not clearly
    positive definite (collinear columns, ``p >= n``: the minimum-norm
    solution is wanted) or where every weighted residual is within
    ``_NEAR_EXACT_RESIDUAL``: whether least squares fits the data exactly
    decides the robust fit (see ``MEstimatorRegressor._exact_fit``), and
    only ``lstsq`` resolves residuals at ``EXACT_FIT_TOL``. Elsewhere a
    start need not be exact to the last digits.
    """
    if objective.n_samples <= objective.n_coef:
        return None
    _, grad, hessian = objective.loss_gradient_hessian(np.zeros(objective.n_coef))
    coef = cholesky_solve(hessian, -grad)
    if coef is None:
        return None
    if not np.any(objective.penalty):
        # The squared loss's Hessian is the design's Gram matrix, which the
        # search for flat directions would form again.
        remember_design_gram(objective, 0, hessian)
    prediction = objective.raw_prediction(coef)
    residuals = objective.y - prediction[:, 0]
    weighted = residuals[objective.sample_weight > 0]
    if not np.max(np.abs(weighted), initial=0.0) > _NEAR_EXACT_RESIDUAL:
        return None
    # Remembered as a pass's (LinearObjective.raw_prediction): the fit's
    # test for an exact fit asks for them again.
    objective._remember(coef, prediction)
    return coef


# Conjugate-gradient iterations of a reweighting step after the first, on a
# wide design (see _reweighted_step).
_LAD_CG_STEPS = 8


def _reweighted_step(objective, coef, factor):
    """A reweighting step towards LAD from ``coef``, by a few CG iterations.

    Conjugate gradients on the step's normal equations (products with the
    design, ``2 n p`` each), preconditioned by the first step's factor
    ``factor``: on a wide design a handful of them cost a fraction of the
    ``n p^2`` of forming the equations, and a start needs no more digits
    (the solve that follows decides the fit).
    """
    _, grad, product = objective.loss_gradient_curvature(coef)
    target = 1e-3 * float(np.abs(grad).max(initial=0.0))
    step, _, _ = _preconditioned_newton._preconditioned_cg(
        product, -grad, factor, target, _LAD_CG_STEPS
    )
    return coef + step


def least_squares_start_step(n_samples):
    """Stride of the least-squares start's rows ``X[::step]`` (1: all rows).

    About ``LEAST_SQUARES_START_ROWS`` rows, by a stride that does not
    alias with periodically ordered rows (:func:`aperiodic_step`).
    """
    return aperiodic_step(int(n_samples) // LEAST_SQUARES_START_ROWS)


def lad_start_step(n_samples, n_coef, budget):
    """Stride of the L1 start's rows of ``n_samples`` (1: all of them).

    About ``_LAD_START_ROWS`` rows, fewer (down to 50 per coefficient) if
    that lets a copy of ``budget`` design elements hold them, by a stride
    that does not alias with periodically ordered rows
    (:func:`aperiodic_step`), or all of them where that stride would
    leave fewer rows than coefficients. The fit on dask data strides alike.
    """
    rows = min(_LAD_START_ROWS, max(budget // n_coef, 50 * n_coef))
    wanted = -(-int(n_samples) // rows)
    step = aperiodic_step(wanted)
    if step > wanted and -(-int(n_samples) // step) < n_coef:
        # Rounded up to fewer rows than coefficients, the reweighted steps
        # are underdetermined: a one-hot design of 1006 columns started
        # from 826 of 9091 rows took 35 Newton iterations instead of 16-18
        # (and 4 times as long) from all of them or from every 5th.
        step = 1
    return step


def least_absolute_deviation_start(start_objective, coef, fit_intercept, l2, budget):
    """A few reweighted least-squares steps towards the L1 (median) fit.

    ``y`` must be standardised about its median (``target_offset_scale``),
    so that zero coefficients predict the median.

    Weights ``s_i / max(|r_i|, floor)`` turn weighted least squares into
    iteratively reweighted L1 regression. Least squares can sit
    arbitrarily far from the bulk of the data when a few targets are
    wild; a handful of these steps on a strided subsample of
    ``start_objective``'s rows (about ``_LAD_START_ROWS``) brings the
    start back to it, so that Newton's method starts with curvature to
    work with and a non-convex scale equation starts on the side of the
    good data. A subsample of at most ``budget`` design elements (see
    :func:`copy_budget`) is copied into a standardised design (its rows
    with weight) and each step solves the normal equations on it
    directly; larger ones form them in a pass of a
    :class:`LinearObjective`.
    """
    n_coef = start_objective.n_coef
    step = lad_start_step(start_objective.n_samples, n_coef, budget)
    lsqr_max_iter = _LSQR_ALL_ROWS_STEP_MAX_ITER
    if step > 1 and start_objective.subsample(step).sum_weight > 0:
        start_objective = start_objective.subsample(step)
        lsqr_max_iter = _LSQR_STEP_MAX_ITER
    y, sample_weight = start_objective.y, start_objective.sample_weight
    if start_objective.n_samples * start_objective.n_coef <= budget:
        design, y, sample_weight = _rows_with_weight(start_objective)

        def predict(coef):
            return design @ coef

        def solve(weights, penalty_factor, coef=None):
            return _weighted_normal_solve(
                design, y, weights, start_objective.penalty * penalty_factor, True
            )

    else:
        # The first step's normal equations, factored: on a wide design
        # the preconditioner of the later steps' conjugate gradients.
        first = []

        def predict(coef):
            return start_objective.raw_prediction(coef)[:, 0]

        def solve(weights, penalty_factor, coef=None):
            objective = LinearObjective(
                FixedScaleLoss(SquaredRho()),
                start_objective.X,
                y,
                weights,
                [(None, fit_intercept)],
                [l2 * penalty_factor],
                column_stats=start_objective.column_stats,
                pinned=start_objective.pinned,
            )
            if objective.n_coef > ITERATIVE_MIN_COEF:
                # A reweighting step from the previous one needs few digits.
                return _lsqr_least_squares(
                    objective,
                    x0=coef,
                    tol=_LSQR_STEP_TOL,
                    max_iter=lsqr_max_iter,
                )
            if first and first[0] is not None:
                return _reweighted_step(objective, coef, first[0])
            _, grad, hessian = objective.loss_gradient_hessian(np.zeros(n_coef))
            if uses_products(objective):
                first.append(CholeskyFactor.of(hessian))
            return regular_solve(hessian, -grad)

    # Least squares, or the median of y (zero standardised coefficients)
    # if that is closer in L1: a few wild targets can drag least squares
    # so far that reweighting would need many steps to come back.
    if sample_weight @ np.abs(y) < sample_weight @ np.abs(y - predict(coef)):
        coef = np.zeros_like(coef)
    previous = None
    # (Equal weights give the plain median; the total is the same each step.)
    median_weights = (
        None if (sample_weight == sample_weight[0]).all() else sample_weight
    )
    start_total = total_weight(sample_weight)
    for _ in range(_LAD_START_STEPS):
        residuals = np.abs(y - predict(coef))
        spread = weighted_median(residuals, median_weights)
        if not spread > 0:
            break  # half the rows are fitted exactly: as good as it gets
        if previous is not None and abs(previous - spread) <= 1e-3 * spread:
            break
        previous = spread
        weights = sample_weight / np.maximum(residuals, 1e-6 * spread)
        # The ridge keeps its strength relative to the total weight.
        coef = solve(weights, total_weight(weights) / start_total, coef)
    return coef
