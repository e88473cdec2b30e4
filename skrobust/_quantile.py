r"""QuantileRegressor: linear quantile regression, smoothed or exact.

The fit minimises scikit-learn's objective (so that users can switch over),

.. math::

    F(w, b) = \frac{1}{S} \sum_i s_i \, \rho_q(y_i - x_i^\top w - b)
              + \alpha \lVert w \rVert_1,
    \qquad \rho_q(u) = u\,(q - 1_{u < 0}), \qquad S = \sum_i s_i,

in two steps:

1. *Smoothed* (``solver="smooth"``): the pinball loss is replaced by its
   convolution with a kernel of bandwidth ``h``,
   :class:`skrobust.losses.SmoothedPinballRho` (He, Pan, Tan and Zhou 2023,
   R's ``conquer``), which is convex and twice differentiable, and the
   result is minimised by Newton's method on the analytic Hessian
   (:func:`skrobust._solvers.minimize`) or, with ``alpha > 0``, by proximal
   Newton, which keeps the L1 norm exact
   (:func:`skrobust._solvers.minimize_l1`); L-BFGS(-B) replaces Newton for
   many coefficients.
2. *Exact* (``solver="exact"``): the smoothed fit is the preliminary
   estimate of Portnoy and Koenker's preprocessing
   (:func:`skrobust._quantile_exact.solve_exact`): only the observations whose
   residual sign is in doubt enter a small linear programme, solved by
   ``scipy.optimize.linprog(method="highs")``; the signs of all the others are
   checked afterwards, and the full problem is solved if they do not hold, so
   the answer is always the linear-programming optimum.
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot

from . import _solvers
from ._base import (
    RobustLinearRegressor,
    mad_scale,
    target_offset_scale,
    total_weight,
    weighted_median,
)
from ._objective import LinearObjective
from ._quantile_exact import select_on_face, solve_exact
from .losses import FixedScaleLoss, SmoothedPinballRho

# "auto" uses the exact solver up to this many coefficients: its reduced
# linear programmes have p + 1 dense equality rows and about sqrt(n p)
# columns, and their cost grows quickly with p. Measured at n = 1e5 (t(2)
# noise, q = 0.7), exact / smooth time: 2 at p = 50 and 100, 2.7 at p = 200,
# 23 at p = 400.
EXACT_MAX_COEF = 200

# The smoothed fits use Newton's method up to this many coefficients and
# L-BFGS beyond. Each Newton iteration forms X^T D X (n p^2 operations); with
# a small bandwidth the smoothed objective needs 10-20 of them, and at
# n = 1e5 L-BFGS is faster from about p = 100 on (p = 200: 2.1 s against
# 6.3 s; p = 50: 1.4 s against 0.6 s).
NEWTON_MAX_COEF = 100

# The exact solver's preliminary smoothed fit is made on a strided subsample
# of about this many rows (up to NEWTON_MAX_COEF coefficients): at n = 1e6,
# p = 20 that halves the time of the exact fit, and after the exact solver's
# own Newton refinement the preliminary is still close enough for the
# reduced linear programme to be accepted at the first round. With many
# coefficients the refinement is skipped and a subsample start costs extra
# rounds (n = 1e5, p = 200: 13 s against 5.7 s from the full data).
EXACT_PRELIMINARY_ROWS = 50_000

# Targets further than this many MADs of y from its median are clipped for
# the fit (see QuantileRegressor.fit); ~1e6 keeps HiGHS's cost
# coefficients within the range where its tolerances (1e-7 relative) hold.
_Y_CLIP = 1e6
# Below this (relative to the standardised spread of y) a residual scale
# counts as zero.
_MIN_RELATIVE_SCALE = 1e-12

# The default bandwidth is this fraction of conquer's rate
# ((log n + p) / n)^(2/5), in units of the residual scale.
_BANDWIDTH_CONSTANT = 0.25


def default_bandwidth(n_samples, n_features):
    r"""The default bandwidth, in units of the residual scale.

    .. math::

        h_n = \frac14 \left(\frac{\log n + p}{n}\right)^{2/5},

    a quarter of the rate of He, Pan, Tan and Zhou (2023) (``conquer``'s
    default without its floor of 0.05), capped at 1. ``n`` is the sum of the
    sample weights (frequency weights: integer weights give the same
    bandwidth as repeated rows), at least 1.

    Parameters
    ----------
    n_samples : float
        Sum of the sample weights.
    n_features : int
        Number of columns of ``X``.

    Returns
    -------
    float
    """
    # Clipped so that weights of any size give a finite bandwidth.
    n = min(max(float(n_samples), 1.0), 1e300)
    rate = ((np.log(n) + n_features) / n) ** 0.4
    return float(min(_BANDWIDTH_CONSTANT * rate, 1.0))


def _weighted_quantile(values, weights, quantile):
    """Smallest ``t`` with ``sum(weights[values <= t]) >= quantile * sum(weights)``."""
    if np.all(weights == weights[0]):
        return float(np.quantile(values, quantile, method="inverted_cdf"))
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    k = min(int(np.searchsorted(cum, quantile * cum[-1])), values.size - 1)
    return float(values[order[k]])


def _residual_scale(residuals, weights):
    """``median |r - median(r)| / 0.6745``: the normalised MAD about the median.

    Centred, so that it measures the spread of the residuals whatever the
    quantile. When more than half the residuals are equal it is zero; their
    root mean square is used instead, and if that is zero too (every
    residual equal) 0.0 is returned.
    """
    centred = residuals - weighted_median(residuals, weights)
    scale = mad_scale(centred, weights)
    if not scale > _MIN_RELATIVE_SCALE:
        # Root mean square without squaring large residuals.
        largest = float(np.max(np.abs(centred), initial=0.0))
        if largest > 0:
            scaled = centred / largest
            scale = largest * float(np.sqrt(weights @ scaled**2 / weights.sum()))
    return scale if scale > _MIN_RELATIVE_SCALE else 0.0


def _robust_offset_scale(y, sample_weight, fit_intercept):
    """Median and MAD of ``y``: a standardisation that outliers cannot spoil."""
    offset = weighted_median(y, sample_weight) if fit_intercept else 0.0
    scale = mad_scale(y - offset, sample_weight)
    if not (scale > 0 and np.isfinite(scale)):
        _, scale = target_offset_scale(y, sample_weight, fit_intercept)
    return offset, scale


class QuantileRegressor(RobustLinearRegressor):
    r"""Linear quantile regression, with a fast smoothed and an exact solver.

    Minimises the weighted mean pinball loss plus an L1 penalty on the
    coefficients (the intercept is not penalised), the objective of
    :class:`sklearn.linear_model.QuantileRegressor`:

    .. math::

        \frac{1}{S} \sum_i s_i \, \rho_q(y_i - x_i^\top w - b)
        + \alpha \lVert w \rVert_1,
        \qquad \rho_q(u) = u \, (q - 1_{u < 0}),
        \qquad S = \sum_i s_i.

    ``x^T w + b`` then estimates the conditional ``q``-quantile of ``y``.

    Parameters
    ----------
    quantile : float, default=0.5
        The quantile ``q`` to predict, in (0, 1); 0.5 is least absolute
        deviation (median) regression.
    alpha : float, default=0.0
        Strength of the L1 penalty on ``coef_``; must be non-negative. The
        default is no penalty (scikit-learn's default is 1.0), so that the
        fit is equivariant.
    fit_intercept : bool, default=True
        Whether to fit an (unpenalised) intercept.
    solver : {"auto", "exact", "smooth"}, default="auto"
        ``"smooth"`` minimises the convolution-smoothed objective (the
        pinball loss smoothed with bandwidth ``h``, see ``bandwidth``; the L1
        penalty exact), a twice-differentiable convex problem, by Newton's
        method on the analytic Hessian (proximal Newton with ``alpha > 0``;
        L-BFGS(-B) beyond 100 coefficients). Its training pinball loss is
        typically within ``1e-4`` relative of the optimum for ``n >= 1e4``.
        ``"exact"`` finds the minimiser of the objective itself, the optimum
        a linear-programming solver reaches: a smoothed fit (on a strided
        subsample of about 50000 rows for large ``n``) is the preliminary
        estimate of Portnoy and Koenker's preprocessing, so that only about
        ``sqrt(n p)`` observations enter the linear programme solved by
        ``scipy.optimize.linprog(method="highs")``; the residual signs of
        the others are verified, and the full programme is solved if they do
        not hold. ``"auto"`` is ``"exact"`` up to 200 coefficients
        (``n_features + fit_intercept``), where it costs 1 to 3 times the
        smoothed fit, and ``"smooth"`` beyond, where the linear programmes
        become slow (20 times the smoothed fit at 400 coefficients).
    bandwidth : "auto" or float, default="auto"
        Smoothing bandwidth in units of a robust scale ``sigma`` of the
        residuals, so that the fit is scale-equivariant: the kernel's
        bandwidth is ``h = bandwidth * sigma``. ``sigma`` is the normalised
        MAD about the median (``median |r - median r| / 0.6745``) of the
        residuals of a first smoothed fit (on every 8th row when ``n`` is
        large), which itself used those of a least-squares fit. ``"auto"``
        is ``0.25 ((log n + p) / n) ** 0.4`` (capped at 1), a quarter of
        ``conquer``'s rate, with ``n`` the sum of the sample weights
        (integer weights act as repeated rows). Smaller values bring the
        smoothed fit closer to the exact one but make it harder to solve;
        with ``solver="exact"`` it only affects speed.
    kernel : {"gaussian", "logistic"}, default="gaussian"
        Smoothing kernel (see :class:`skrobust.losses.SmoothedPinballRho`).
        At equal ``bandwidth`` the logistic kernel smooths about 1.8 times
        more (its standard deviation is ``pi / sqrt(3)``).
    max_iter : int, default=500
        Maximum number of iterations of each smoothed fit.
    tol : float, default=1e-10
        Convergence tolerance of the smoothed fits, on the largest entry of
        the (minimum-norm sub)gradient of the smoothed objective (a weighted
        mean) in standardised units. The exact solution does not depend on
        it.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Coefficients.
    intercept_ : float
        Intercept (0.0 if ``fit_intercept=False``).
    bandwidth_ : float
        Bandwidth ``h`` of the final smoothed fit, in the units of ``y``
        (for ``solver="exact"``, that of the preliminary fit).
    solver_ : str
        The solver used, ``"exact"`` or ``"smooth"``.
    n_iter_ : int
        Iterations of the two smoothed fits (Newton, proximal Newton or
        L-BFGS; the first fit is on every 8th row for large ``n``) plus, for
        the exact solver, the number of linear programmes solved.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column
        names.

    See Also
    --------
    sklearn.linear_model.QuantileRegressor : The same objective, solved by
        one linear programme on all the rows.
    HuberRegressor : A smooth robust loss for the conditional centre.

    Notes
    -----
    The convolution-smoothed pinball loss with a Gaussian kernel is

    .. math::

        \ell_h(u) = u \, (q - \Phi(-u / h)) + h \, \phi(u / h),
        \qquad \ell_h' = q - \Phi(-u/h), \qquad \ell_h'' = \phi(u/h) / h,

    convex, within ``h phi(0)`` of ``rho_q``, and the smoothed estimator has
    the same first-order asymptotics as the exact one.

    The exact solution satisfies Koenker's equivariance properties and, with
    an intercept, the calibration of its residuals:
    ``sum of s_i over r_i < 0 <= q S <= sum of s_i over r_i <= 0``. When the
    minimiser is not unique (for example more coefficients than
    observations), the exact solver moves the linear programme's vertex
    along the optimal face towards the smoothed fit, so that the answer does
    not depend on the order or the repetition of the rows.

    References
    ----------
    R. Koenker and G. Bassett, "Regression quantiles", Econometrica 46, 1978.

    S. Portnoy and R. Koenker, "The Gaussian hare and the Laplacian tortoise:
    computability of squared-error versus absolute-error estimators",
    Statistical Science 12, 1997.

    X. He, X. Pan, K. M. Tan and W.-X. Zhou, "Smoothed quantile regression
    with large-scale inference", Journal of Econometrics 232, 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust import QuantileRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 2))
    >>> y = X @ [1.0, -2.0] + 0.5 + rng.standard_t(2, size=2000)
    >>> model = QuantileRegressor(quantile=0.9).fit(X, y)
    >>> model.solver_
    'exact'
    >>> np.round(model.coef_, 1)
    array([ 1., -2.])

    At the exact optimum 90% of the observations lie on or below the fitted
    plane, and three (one per coefficient) lie on it, up to rounding:

    >>> residuals = y - model.predict(X)
    >>> int((residuals < -1e-9).sum()), int((residuals <= 1e-9).sum())
    (1798, 1801)
    """

    _parameter_constraints: dict = {
        "quantile": [Interval(Real, 0, 1, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "solver": [StrOptions({"auto", "exact", "smooth"})],
        "bandwidth": [
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "kernel": [StrOptions({"gaussian", "logistic"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        quantile=0.5,
        *,
        alpha=0.0,
        fit_intercept=True,
        solver="auto",
        bandwidth="auto",
        kernel="gaussian",
        max_iter=500,
        tol=1e-10,
    ):
        self.quantile = quantile
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y, sample_weight=None):
        """Fit the model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Not copied: any real dtype, dense or sparse
            (CSR, CSC), is read as it is.
        y : array-like of shape (n_samples,)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; integer weights are equivalent to repeated
            rows.

        Returns
        -------
        object
            The fitted estimator.
        """
        X, y, sample_weight = self._validate_fit_data(X, y, sample_weight)
        n_features = X.shape[1]
        n_coef = n_features + bool(self.fit_intercept)
        solver = self.solver
        if solver == "auto":
            solver = "exact" if n_coef <= EXACT_MAX_COEF else "smooth"

        # Minimisers are equivariant: fit y standardised by its median and
        # MAD (robust, unlike the mean and standard deviation, to the gross
        # outliers quantile regression is used for) and scale back. The
        # penalty alpha ||w||_1 keeps its value because the pinball loss is
        # positively homogeneous: F(w, b; y) = y_scale F(w / y_scale, ...).
        y_offset, y_scale = _robust_offset_scale(y, sample_weight, self.fit_intercept)
        y_std = (y - y_offset) / y_scale

        # Gross outliers in y are pulled in to +-_Y_CLIP (in units of the
        # MAD of y), which keeps the least-squares start and the linear
        # programmes well scaled. This changes nothing if every clipped row
        # keeps the sign of its residual: the objective then changes by a
        # constant on a convex neighbourhood of the solution (the pinball
        # loss is linear on each side of zero, and the smoothed loss exactly
        # so a few dozen bandwidths away from it), so the solution is a
        # minimiser of the original objective too. Otherwise refit unclipped.
        y_fit = np.clip(y_std, -_Y_CLIP, _Y_CLIP)
        clipped = np.flatnonzero(y_fit != y_std)
        w, b, bandwidth, n_iter = self._fit_standard_units(
            X, y_fit, sample_weight, solver, n_coef
        )
        if clipped.size:
            fitted = safe_sparse_dot(X[clipped], w) + b
            linear_t = SmoothedPinballRho._T_MAX[self.kernel]
            margin = _Y_CLIP - linear_t * bandwidth
            if not np.all(np.abs(fitted) < margin):
                w, b, bandwidth, more = self._fit_standard_units(
                    X, y_std, sample_weight, solver, n_coef
                )
                n_iter += more
        self.bandwidth_ = bandwidth * y_scale
        self._set_linear_coef(w * y_scale, b * y_scale + y_offset)
        self.solver_ = solver
        self.n_iter_ = n_iter
        return self

    def _fit_standard_units(self, X, y, sample_weight, solver, n_coef):
        """The fit on standardised ``y``: ``(w, b, bandwidth, n_iter)``."""
        X_smooth, y_smooth, weight_smooth = X, y, sample_weight
        if solver == "exact":
            # The preliminary fit need only be about as good as the
            # statistical error: on large data it is made on a strided
            # subsample, and the exact solver refines it.
            step = -(-X.shape[0] // EXACT_PRELIMINARY_ROWS)
            if (
                step > 1
                and n_coef <= NEWTON_MAX_COEF
                and sample_weight[::step].sum() > 0
            ):
                X_smooth = X[::step]
                y_smooth, weight_smooth = y[::step], sample_weight[::step]
        (w, b), bandwidth, n_iter, stats = self._fit_smooth(
            X_smooth, y_smooth, weight_smooth, warn=solver == "smooth"
        )
        if solver == "exact":
            w, b, n_lp = self._fit_exact(X, y, sample_weight, w, b, stats)
            n_iter += n_lp
        return w, b, bandwidth, n_iter

    # -- the smoothed fit -------------------------------------------------------
    def _fit_smooth(self, X, y, sample_weight, warn, stages=2):
        """Smoothed fits; ``((w, b), h, n_iter, column_stats)``, standardised y.

        The first uses a bandwidth in units of the scale of least-squares
        residuals, the second (warm-started) one in units of the scale of
        the first one's residuals, which outliers in ``y`` do not inflate.
        """
        q = float(self.quantile)
        ls_objective, start_objective, coef = self._least_squares_start(
            X, y, sample_weight, self.fit_intercept, 0.0
        )
        stats = ls_objective.column_stats
        residuals = start_objective.y - start_objective.raw_prediction(coef)[:, 0]
        if self.fit_intercept:
            # conquer's start: move the least-squares plane to the q-quantile
            # of its residuals, which puts q of the weight below it.
            shift = _weighted_quantile(residuals, start_objective.sample_weight, q)
            coef[-1] += shift  # c stacks (w, b): the intercept is last
            residuals -= shift
        scale = _residual_scale(residuals, start_objective.sample_weight)
        if scale == 0:
            # All residuals equal (the least-squares fit is perfect or
            # interpolates): they carry no scale. If they are all zero on
            # every row of positive weight, the fit attains the smallest
            # possible pinball loss, 0, and is returned as it is (the limit
            # of the smoothed fits as h -> 0); otherwise the bandwidth is
            # relative to y's own scale.
            if self.alpha == 0:
                residuals = y - ls_objective.raw_prediction(coef)[:, 0]
                residuals = residuals[sample_weight > 0]
                if not np.any(np.abs(residuals) > _MIN_RELATIVE_SCALE):
                    ((w, b),) = ls_objective.unstandardize(coef)
                    return (w, b), 0.0, 0, stats
            scale = 1.0

        if self.bandwidth == "auto":
            factor = default_bandwidth(total_weight(sample_weight), X.shape[1])
        else:
            factor = float(self.bandwidth)
        # L1 in the objective's coordinates: w = c / column_scale.
        l1 = np.zeros(ls_objective.n_coef)
        l1[: X.shape[1]] = self.alpha / stats[1]
        newton_or_lbfgs = (
            "newton" if ls_objective.n_coef <= NEWTON_MAX_COEF else "lbfgs"
        )

        n_iter = 0
        for stage in range(stages):
            bandwidth = factor * scale
            objective = LinearObjective(
                FixedScaleLoss(SmoothedPinballRho(q, bandwidth, self.kernel), 1.0),
                X,
                y,
                sample_weight,
                [(None, self.fit_intercept)],
                [0.0],
                column_stats=stats,
            )
            last = stage + 1 == stages
            # Every fit but the last only provides a residual scale and a
            # start: on large data it is made on a strided subsample of the
            # rows. The last one starts next to its solution, where a start
            # from a subsample would be worse.
            n_rows = objective.n_samples
            if (
                not last
                and n_rows >= _solvers.SUBSAMPLE_MIN_ROWS
                and n_rows >= _solvers.SUBSAMPLE_MIN_ROWS_PER_COEF * objective.n_coef
            ):
                sub = objective.subsample(_solvers.SUBSAMPLE_STEP)
                if sub.sum_weight > 0:
                    objective = sub
            if self.alpha > 0:
                result = _solvers.minimize_l1(
                    objective,
                    coef,
                    l1,
                    newton_or_lbfgs,
                    self.max_iter,
                    self.tol,
                    warn=warn and last,
                    multilevel=not last,
                )
            else:
                result = _solvers.minimize(
                    objective,
                    coef,
                    newton_or_lbfgs,
                    self.max_iter,
                    self.tol,
                    warn=warn and last,
                    multilevel=not last,
                )
            coef = result.coef
            n_iter += result.n_iter
            if not last:
                residuals = objective.y - objective.raw_prediction(coef)[:, 0]
                scale = _residual_scale(residuals, objective.sample_weight) or 1.0
        ((w, b),) = objective.unstandardize(coef)
        positive = sample_weight > 0
        if self.alpha == 0 and np.count_nonzero(positive) < ls_objective.n_coef:
            w, b = self._minimum_norm(X[positive], w, b, stats)
        return (w, b), bandwidth, n_iter, stats

    def _minimum_norm(self, X, w, b, stats):
        """The smallest (standardised) coefficients with the same predictions on X.

        With fewer observations than coefficients the smoothed objective is
        constant along the null space of the design, and where Newton's
        method ends up along it depends on rounding (and on how the rows are
        repeated or weighted). Its predictions on ``X`` are unique; the
        coefficients of minimum norm in the standardised coordinates
        ``c = (w * scale, b + mean @ w)`` are ``A^T (A A^T)^+ A c`` with
        ``A`` the standardised design, computed through the small
        ``n x n`` matrix ``A A^T``.
        """
        mean, scale = stats  # mean is zero for sparse X (never centred)
        if sp.issparse(X):
            design = X @ sp.diags_array(1.0 / scale)
            gram = np.asarray((design @ design.T).todense())
        else:
            design = (np.asarray(X, dtype=float) - mean) / scale
            gram = design @ design.T
        c_w = w * scale
        c_b = b + mean @ w if self.fit_intercept else 0.0
        if self.fit_intercept:
            gram = gram + 1.0  # the column of ones of the intercept
        prediction = np.asarray(design @ c_w).ravel() + c_b
        dual = np.linalg.lstsq(gram, prediction, rcond=None)[0]
        c_w = np.asarray(design.T @ dual).ravel()
        c_b = float(dual.sum()) if self.fit_intercept else 0.0
        w = c_w / scale
        b = c_b - mean @ w if self.fit_intercept else 0.0
        return w, float(b)

    # -- the exact fit ---------------------------------------------------------
    def _fit_exact(self, X, y, sample_weight, w_smooth, b_smooth, column_stats):
        """The LP optimum by preprocessing around the smoothed fit.

        Returns ``(w, b, n_lp)`` in standardised y units, ``n_lp`` the number
        of linear programmes solved.
        """
        q = float(self.quantile)
        w, b, info = solve_exact(
            X,
            y,
            q,
            sample_weight,
            self.alpha,
            self.fit_intercept,
            w_smooth,
            b_smooth,
        )
        w, b = select_on_face(
            X,
            y,
            sample_weight,
            q,
            self.alpha,
            self.fit_intercept,
            w,
            b,
            (w_smooth, b_smooth),
            column_stats,
        )
        return w, b, max(int(info["rounds"]) + bool(info["solver"] != "reduced"), 1)
