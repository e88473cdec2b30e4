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
   (:func:`skrobust._proximal.minimize_l1`); L-BFGS(-B) replaces Newton for
   many coefficients. With the default bandwidth the fit is finished by
   continuation in the bandwidth, stopped by a duality-gap bound on its
   distance to the unsmoothed optimum (:mod:`skrobust._quantile_smooth`).
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
from sklearn.base import clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot

from ._base import (
    OUTLIER_THRESHOLD,
    RobustLinearRegressor,
    StandardisedFit,
    mad_scale,
    weighted_median,
)
from ._cov_quantile import (
    ExactLevelRefit,
    quantile_bootstrap_covariance,
    quantile_covariance,
)
from ._inference import InferenceMixin, set_inference_attributes
from ._quantile_exact import _side_sums, far_target_limit, solve_exact
from ._quantile_face import select_on_face
from ._quantile_level import LevelStart, _column_stats, fit_level
from ._quantile_smooth import default_bandwidth, robust_offset_scale


def auto_solver(n_samples, n_coef):
    """The solver of ``solver="auto"``: ``"exact"`` on data of any shape.

    Up to 200 coefficients it costs 1 to 3 times the smoothed fit. Beyond,
    where the exact solver's linear programmes go to the Frisch-Newton
    interior point method (:mod:`skrobust._quantile_ipm`), it took 0.1 to
    4.6 times the smoothed fit (CPU, one thread, 10% gross errors, q = 0.5
    and 0.9, up to 1e5 x 2000 sparse and 5e4 x 1000 dense;
    ``docs/benchmarks.rst``), which ran out of ``max_iter`` and warned,
    1e-4 to 3e-2 of the optimum above it, at q = 0.9 with up to 50 rows
    per coefficient, and at q = 0.5 with up to 5.
    ``n_samples`` and ``n_coef`` are kept for a rule that would depend on
    them.
    """
    return "exact"


# The bootstrap's exact refits start from the full-data fit: their band of
# kept rows is this many times narrower than a fit from scratch, but not
# narrower than _REWEIGHTED_MIN_SIZE rows.
_REWEIGHTED_BAND = 4.0
_REWEIGHTED_MIN_SIZE = 200
_REWEIGHTED_STEPS = 3

# Covariance estimators of the fitted coefficients (cov_type).
COV_TYPES = ("iid", "nid", "ker", "bootstrap")


class QuantileRegressor(InferenceMixin, RobustLinearRegressor):
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
        L-BFGS(-B) beyond 100 coefficients, or beyond 300 where there are
        200 rows per coefficient). With ``bandwidth="auto"`` it
        then lowers the bandwidth (8 times per step, warm-started; each
        smaller problem on the rows within a few bandwidths of zero) while
        the fit's duality gap, a bound on the excess of its training
        pinball loss over the optimum, is above ``1e-6`` of that loss and
        the loss keeps decreasing. Its training pinball loss is then
        typically within ``1e-6`` relative of the optimum, and within
        ``1e-4`` (certified by the gap) unless ``max_iter`` runs out
        first, tied or discrete targets (counts with many zeros, rounded
        values) included: a step that cannot finish in 50 iterations ends
        the lowering only once the gap is below ``1e-4`` of the loss
        (until then it goes on with the rest of ``max_iter``, by Newton's
        method where its Hessian is affordable).
        ``"exact"`` finds the minimiser of the objective itself, the optimum
        a linear-programming solver reaches: a smoothed fit (on a strided
        subsample of about 50000 rows for large ``n``) is the preliminary
        estimate of Portnoy and Koenker's preprocessing, so that only about
        ``sqrt(n p)`` observations enter the linear programme, solved by
        HiGHS (as ``scipy.optimize.linprog(method="highs")``) or, on wide
        designs, by a Frisch-Newton interior point method (as R's
        ``rq(method="fn")``) whose optimum gives the vertex; the residual
        signs of the others are verified, and the full programme is solved
        if they do not hold. ``"auto"`` is ``"exact"`` (0.1 to 4.6 times the smoothed
        fit's time beyond 200 coefficients, where that is slowest and,
        with few rows per coefficient, often runs out of ``max_iter``
        short of its own accuracy).
    bandwidth : "auto" or float, default="auto"
        Smoothing bandwidth in units of a robust scale ``sigma`` of the
        residuals, so that the fit is scale-equivariant: the kernel's
        bandwidth is ``h = bandwidth * sigma``. ``sigma`` is the normalised
        MAD about the median (``median |r - median r| / 0.6745``) of the
        residuals of a first smoothed fit (on every 8th row when ``n`` is
        large), which itself used those of a least-squares fit. ``"auto"``
        is ``0.25 ((log n + p) / n) ** 0.4`` (within [1e-6, 1]), a quarter of
        ``conquer``'s rate, with ``n`` the sum of the weights over the
        smallest positive one (integer weights act as repeated rows), at
        most 10 times Kish's effective sample size ``(sum w)^2 / sum w^2``
        (multiplying every weight by a constant changes nothing). Smaller
        values bring the smoothed fit closer to the exact one but make it
        harder to solve; with ``solver="exact"`` it only affects speed,
        and ``n`` is the number of rows with positive weight.
        With ``"auto"``, ``solver="smooth"`` lowers it further (see
        ``solver``) and ``bandwidth_`` reports the last one; a number is
        kept as given (the smoothed estimator of that bandwidth, as R's
        ``conquer``).
    kernel : {"gaussian", "logistic"}, default="gaussian"
        Smoothing kernel (see :class:`skrobust.losses.SmoothedPinballRho`).
        At equal ``bandwidth`` the logistic kernel smooths about 1.8 times
        more (its standard deviation is ``pi / sqrt(3)``).
    max_iter : int, default=500
        Maximum number of iterations of the smoothed fits, together (the
        preliminary fits of the exact solver included).
    tol : float, default=1e-10
        Convergence tolerance of the smoothed fits, on the largest entry of
        the (minimum-norm sub)gradient of the smoothed objective (a weighted
        mean) in standardised units. The exact solution does not depend on
        it.
    warm_start : bool, default=False
        Start from the previous ``coef_`` and ``intercept_`` when ``fit`` is
        called again (with as many features): ``"smooth"`` then makes only
        its final smoothed fit, from there, and ``"exact"`` seeds its
        reduced linear programmes with the previous solution and makes no
        smoothed fit at all (``bandwidth_`` keeps its value). The solution
        is the same; only the time changes.
    cov_type : {"iid", "nid", "ker", "bootstrap"} or None, default=None
        Covariance of the estimates, computed after the fit as R's
        ``summary.rq(se=...)`` does: ``"iid"`` one sparsity for all rows
        (errors independent of ``x``), ``"nid"`` Hendricks-Koenker local
        densities from refits at ``q +- h`` (warm-started), ``"ker"``
        Powell's kernel estimate, ``"bootstrap"`` the xy-pairs bootstrap
        (``n_bootstrap`` warm-started refits). None computes nothing.
        Sets ``cov_``, ``coef_se_`` and ``intercept_se_`` and enables
        :meth:`conf_int` and :meth:`summary` (Student's t with ``n - p``
        degrees of freedom, as in R).
    bandwidth_rule : {"hall-sheather", "bofinger"}, default="hall-sheather"
        Bandwidth rule of the ``"iid"``, ``"nid"`` and ``"ker"``
        covariances (R's ``hs=TRUE`` / ``hs=FALSE``); unrelated to
        ``bandwidth``.
    n_bootstrap : int, default=200
        Number of bootstrap replicates for ``cov_type="bootstrap"``.
    random_state : int, RandomState instance or None, default=None
        Seed of the bootstrap resampling.
    verbose : int, default=0
        0 prints nothing; 1 a line per solve (rows, iterations, largest gradient
        entry, elapsed time), and with ``cov_type="bootstrap"`` the replicates
        done and the time left; 2 also a line per solver iteration.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Coefficients.
    intercept_ : float
        Intercept (0.0 if ``fit_intercept=False``).
    bandwidth_ : float
        Bandwidth ``h`` of the final smoothed fit, in the units of ``y``
        (for ``solver="exact"``, that of the preliminary fit; absent when
        the exact solver made none: warm-started, with ``max_iter < 3``,
        where it solves the whole linear programme at once, with fewer than
        about 600 rows or 4 rows per coefficient, and up to 50 features
        where its reduced programmes from the zero fit were certified).
    solver_ : str
        The solver used, ``"exact"`` or ``"smooth"``.
    noise_scale_ : float
        A robust estimate of the noise standard deviation: the normalised
        MAD of the weighted training residuals about their median,
        ``median |r - median r| / 0.6745`` (about their median, not zero:
        the residuals of a fit at ``q != 0.5`` are not centred on zero).
    outliers_ : ndarray of shape (n_samples,) of bool
        Training samples whose residual lies more than 2.5
        ``noise_scale_`` from the residuals' median: about 1.2% of
        Gaussian noise, and every error beyond 10 noise standard
        deviations (as the M-estimators' ``outliers_``).
    weights_ : ndarray of shape (n_samples,)
        The iteratively reweighted least-squares weights of the pinball
        loss, ``q / |r|`` above the fit and ``(1 - q) / |r|`` below it,
        with ``|r|`` floored at ``bandwidth_`` (statsmodels' ``QuantReg``
        floors it at ``1e-6``): weighted least squares with them has the
        fit's optimality conditions wherever ``|r| > bandwidth_``. An exact
        fit without ``bandwidth_`` floors at the bandwidth of the default
        rule (``default_bandwidth`` of the rows with weight and the
        features) times ``noise_scale_``.
    n_iter_ : int
        Iterations of the smoothed fits (Newton, proximal Newton or L-BFGS;
        the first fit is on every 8th row for large ``n``), those of the
        smaller bandwidths that finish the smoothed solver included, plus,
        for the exact solver, the number of linear programmes solved. At
        most ``max_iter`` in all: the exact solver's preliminary fit leaves
        two to the linear programmes (a reduced one and, if that is not
        certified, the whole one), and with ``max_iter < 3`` it solves the
        whole programme at once, which is exact too.
    cov_ : ndarray of shape (n_params, n_params)
        Covariance of ``[intercept_, *coef_]`` (without ``intercept_`` when
        ``fit_intercept=False``); only with ``cov_type``.
    coef_se_ : ndarray of shape (n_features,)
        Standard errors of ``coef_``; only with ``cov_type``.
    intercept_se_ : float
        Standard error of ``intercept_``; only with ``cov_type`` and
        ``fit_intercept``.
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
        "warm_start": ["boolean"],
        "cov_type": [StrOptions(set(COV_TYPES)), None],
        "verbose": ["verbose"],
        "bandwidth_rule": [StrOptions({"hall-sheather", "bofinger"})],
        "n_bootstrap": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    }
    _cov_types = COV_TYPES

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
        warm_start=False,
        cov_type=None,
        bandwidth_rule="hall-sheather",
        n_bootstrap=200,
        random_state=None,
        verbose=0,
    ):
        self.quantile = quantile
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.cov_type = cov_type
        self.bandwidth_rule = bandwidth_rule
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state
        self.verbose = verbose

    _per_sample_attributes = ("outliers_", "weights_")

    @property
    def _lockstep_outputs(self):
        # The smoothed fit's Newton passes are shared by the lanes; the
        # exact fit's time is its linear programmes, which are not.
        return self.solver == "smooth"

    def _target_offset_scale(self, y, sample_weight):
        """Median and MAD of ``y`` (see :func:`robust_offset_scale`).

        Minimisers are equivariant: the fit is of ``y`` standardised by
        statistics that the gross outliers quantile regression is used for
        cannot spoil, scaled back. The penalty ``alpha ||w||_1`` keeps its
        value because the pinball loss is positively homogeneous:
        ``F(w, b; y) = y_scale F(w / y_scale, ...)``.
        """
        return robust_offset_scale(y, sample_weight, self.fit_intercept)

    def _fit_standardised(self, X, y, sample_weight, y_scale, warm):
        """One target column's fit in standardised units."""
        solver = self._resolve_solver(X.shape)
        start = None if warm is None else LevelStart(warm.coef, warm.intercept)
        level = self._fit_level(X, y, sample_weight, solver, start=start)
        extras = {} if level.bandwidth is None else {"bandwidth_": level.bandwidth}
        return StandardisedFit(level.coef, level.intercept, level.n_iter, extras)

    def _unstandardise(self, fit, y_offset, y_scale):
        if "bandwidth_" in fit.extras:
            fit.extras["bandwidth_"] = float(fit.extras["bandwidth_"] * y_scale)
        return fit

    def _finish_output(self, fit, X, y, sample_weight):
        """Residual-based attributes and the covariance of one output's fit."""
        self._n_rows_fit = X.shape[0]
        residuals = y - safe_sparse_dot(X, fit.coef) - fit.intercept
        # About their median: at q != 0.5 the residuals are not centred on 0.
        centred = residuals - weighted_median(residuals, sample_weight)
        noise = mad_scale(centred, sample_weight)
        quantile = float(self.quantile)
        floor = fit.extras.get("bandwidth_", 0.0)
        if not floor:
            # An exact fit that made no smoothed fit: the bandwidth that the
            # preliminary fit's rule gives at the residuals' scale.
            rows = np.count_nonzero(sample_weight > 0)
            floor = default_bandwidth(rows, X.shape[1]) * noise
        floor = floor or np.finfo(float).tiny
        fit.extras.update(
            noise_scale_=noise,
            outliers_=np.abs(centred) > OUTLIER_THRESHOLD * noise,
            weights_=np.where(residuals > 0, quantile, 1.0 - quantile)
            / np.maximum(np.abs(residuals), floor),
        )
        if self.cov_type is not None:
            fit.extras["cov_"] = self._covariance(X, y, sample_weight, fit)
        return fit

    def _set_fitted(self, fits, y_ndim):
        super()._set_fitted(fits, y_ndim)
        self.solver_ = self._resolve_solver((self._n_rows_fit, self.n_features_in_))
        set_inference_attributes(self, self.cov_ if self.cov_type is not None else None)

    def _resolve_solver(self, shape):
        """The solver for ``shape`` (rows, features) of data (:func:`auto_solver`)."""
        if self.solver != "auto":
            return self.solver
        n_samples, n_features = shape
        return auto_solver(n_samples, n_features + bool(self.fit_intercept))

    def _fit_level(
        self, X, y, sample_weight, solver, start=None, stats=None, zero_start=True
    ):
        """One level's fit on standardised ``y``: :func:`fit_level`."""
        return fit_level(self, X, y, sample_weight, solver, start, stats, zero_start)

    # -- inference -------------------------------------------------------------
    def _inference_dof(self):
        """``n - p`` (rows minus parameters): Student's t, as R's ``summary.rq``."""
        n_params = np.shape(self.coef_)[-1] + bool(self.fit_intercept)
        return max(self._n_rows_fit - n_params, 1)

    def _covariance(self, X, y, sample_weight, fit):
        """Covariance of ``[intercept, coef...]`` of one output's fit."""
        refit = _WarmRefit(self, X, y, sample_weight, fit.coef, fit.intercept)
        if self.cov_type == "bootstrap":
            return quantile_bootstrap_covariance(
                refit.params_with_weights,
                X,
                y,
                sample_weight,
                n_bootstrap=self.n_bootstrap,
                random_state=self.random_state,
            )
        return quantile_covariance(
            X,
            y,
            fit.coef,
            fit.intercept,
            float(self.quantile),
            sample_weight=sample_weight,
            fit_intercept=self.fit_intercept,
            se=self.cov_type,
            bandwidth_rule=self.bandwidth_rule,
            fit=refit.at_quantile,
        )


class _WarmRefit:
    """Refits of a fitted QuantileRegressor for its covariance, warm-started.

    ``at_quantile(q)`` refits at another level (the ``"nid"`` densities),
    ``params_with_weights(w)`` with other weights (the bootstrap); each
    starts from the full-data fit, so that the exact solver's reduced
    problems are seeded with it. With the exact solver, the refits at other
    levels start as MultiQuantileRegressor's neighbouring levels do
    (:class:`~skrobust._cov_quantile.ExactLevelRefit`), and the refits with
    other weights share what does not depend on the weights
    (:class:`_ReweightedExact`).
    """

    def __init__(self, estimator, X, y, sample_weight, coef, intercept):
        self.estimator = estimator
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.coef, self.intercept = coef, intercept
        self._reweighted = None
        self._levels = None

    def _refit(self, weights, **params):
        model = clone(self.estimator).set_params(
            cov_type=None, warm_start=True, **params
        )
        model.coef_, model.intercept_ = self.coef, self.intercept
        return model.fit(self.X, self.y, weights)

    def at_quantile(self, quantile):
        estimator = self.estimator
        if estimator._resolve_solver(self.X.shape) == "exact":
            if self._levels is None:
                self._levels = ExactLevelRefit(
                    self.X,
                    self.y,
                    self.sample_weight,
                    self.coef,
                    self.intercept,
                    alpha=estimator.alpha,
                    fit_intercept=estimator.fit_intercept,
                )
            return self._levels(quantile)
        model = self._refit(self.sample_weight, quantile=quantile)
        return model.coef_, model.intercept_

    def params_with_weights(self, weights):
        estimator = self.estimator
        if estimator._resolve_solver(self.X.shape) == "exact":
            if self._reweighted is None:
                self._reweighted = _ReweightedExact(
                    estimator,
                    self.X,
                    self.y,
                    self.sample_weight,
                    self.coef,
                    self.intercept,
                )
            coef, intercept = self._reweighted.fit(weights)
        else:
            model = self._refit(weights)
            coef, intercept = model.coef_, model.intercept_
        if estimator.fit_intercept:
            return np.r_[intercept, coef]
        return coef


class _ReweightedExact:
    """Exact refits of a fitted QuantileRegressor with other sample weights.

    Each call of :meth:`fit` returns the exact minimiser for its weights
    (the certificate of :func:`~skrobust._quantile_exact.solve_exact`
    decides), but everything that does not depend on the weights is
    computed once: the standardisation of ``y`` (any fixed one gives the
    same minimiser, the pinball loss being positively homogeneous), the
    residuals of the full-data fit (the start of every refit), the distance
    beyond which targets are clipped (it only decides which rows are moved,
    never the answer), the column statistics of the face selection and the
    sampled Gram matrix of the Newton step (it only scales a step). The
    estimator's own ``fit`` would recompute them, plus a weighted median of
    ``y`` and the residual-based attributes, for every replicate.

    A replicate's solution differs from the full-data fit by
    ``O(n^{-1/2})``; ``_REWEIGHTED_STEPS`` Newton steps from the latter
    (with the density of the full-data fit and side sums updated by
    gathers, :func:`~skrobust._quantile_exact._neighbour_start`) leave an
    error several times smaller, so that the band of kept rows is
    ``_REWEIGHTED_BAND`` times narrower than that of a fit from scratch. At
    ``n = 1e5, p = 20`` a replicate costs about a seventh of one exact fit
    (a sixth of it is HiGHS on about 360 rows), against a whole fit when
    each replicate was a warm-started ``fit``.
    """

    def __init__(self, estimator, X, y, sample_weight, coef, intercept):
        self.q, self.alpha = float(estimator.quantile), float(estimator.alpha)
        self.fit_intercept = bool(estimator.fit_intercept)
        self.X = X
        if sample_weight is None:
            sample_weight = np.ones(X.shape[0])
        self.offset, self.scale = estimator._target_offset_scale(y, sample_weight)
        self.y = (np.asarray(y, dtype=np.float64) - self.offset) / self.scale
        self.coef = np.asarray(coef, dtype=np.float64) / self.scale
        self.intercept = (
            (float(intercept) - self.offset) / self.scale if self.fit_intercept else 0.0
        )
        self.residuals = self.y - safe_sparse_dot(X, self.coef) - self.intercept
        self.stats = _column_stats(X, self.y, sample_weight, self.fit_intercept)
        self.clip_limit = far_target_limit(self.y, self.residuals, sample_weight)
        n_coef = X.shape[1] + int(self.fit_intercept)
        n_pos = int(np.count_nonzero(sample_weight))
        self.size = int(np.ceil(np.sqrt(n_pos * n_coef) / _REWEIGHTED_BAND))
        self.size = max(self.size, min(_REWEIGHTED_MIN_SIZE, n_pos))
        self.newton_gram = None
        # The error density at the fit, from the rows within the band: with
        # the side sums of the signs of the start's residuals, all the
        # Newton step from the start needs (it is taken before the band is
        # built, :func:`~skrobust._quantile_exact._neighbour_start`).
        weight = sample_weight
        distance = np.abs(self.residuals[weight > 0])
        half_width = float(np.partition(distance, self.size - 1)[self.size - 1])
        inside = np.abs(self.residuals) <= half_width
        self.density = float(weight[inside].sum()) / (2.0 * half_width * weight.sum())
        if not (np.isfinite(self.density) and self.density > 0):
            self.density = None

    def fit(self, weights):
        """``(coef, intercept)``: the exact fit with these weights, in ``y`` units."""
        weights = np.asarray(weights, dtype=np.float64)
        # Scaled as the solver scales them, for the side sums to be its own.
        weights = weights / weights.max()
        state = None
        if self.density is not None:
            above = self.residuals >= 0
            state = {
                "side_sums": _side_sums(self.X, self.y, weights, above),
                "above": above,
                "density": self.density,
                "centre": False,
                "steps": _REWEIGHTED_STEPS,
            }
        w, b, info = solve_exact(
            self.X,
            self.y,
            self.q,
            weights,
            self.alpha,
            self.fit_intercept,
            self.coef,
            self.intercept,
            residuals=self.residuals,
            clip_limit=self.clip_limit,
            initial_size=self.size,
            newton_gram=self.newton_gram,
            neighbour_state=state,
        )
        if self.newton_gram is None and info.get("newton_gram") is not None:
            # Sampled with the first replicate's weights: their expectation
            # is the original weights, and it only scales a Newton step.
            self.newton_gram = info["newton_gram"]
        w, b = select_on_face(
            self.X,
            self.y,
            weights,
            self.q,
            self.alpha,
            self.fit_intercept,
            w,
            b,
            (self.coef, self.intercept),
            self.stats,
            residuals=info.get("residuals"),
        )
        intercept = self.offset + self.scale * b if self.fit_intercept else 0.0
        return w * self.scale, intercept
