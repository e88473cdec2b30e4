r"""MultiQuantileRegressor: many regression quantiles in one fit, non-crossing.

For each level :math:`\tau_1 < \dots < \tau_k` the fit minimises the
objective of :class:`~skrobust.QuantileRegressor`,

.. math::

    F_\tau(w, b) = \frac{1}{S} \sum_i s_i \, \rho_\tau(y_i - x_i^\top w - b)
                   + \alpha \lVert w \rVert_1,

and the levels share the work that does not depend on :math:`\tau`:

1. validation, the robust standardisation of ``y`` and the column
   statistics of ``X`` are done once;
2. the level nearest 0.5 is fitted as a single :class:`QuantileRegressor`
   would be (a smoothed preliminary fit, then the exact linear programme);
3. the other levels are fitted outwards from it, each started from its
   neighbour's solution: the exact solver's reduced problem (Portnoy and
   Koenker's preprocessing) is built around the neighbour's residuals,
   moved to the new level by a shift and a Newton step, and its dual
   simplex starts from that fit rather than from zero, so that a level
   costs two passes over ``X`` and one small LP instead of a whole fit;
   the smoothed solver starts Newton's method from the neighbour with the
   bandwidth of the middle level, on the rows near it first (the others
   enter as an exact linear term while they keep their side).

Predictions at several levels can cross (a lower quantile predicted above a
higher one). With ``non_crossing="rearrange"`` they are sorted in each row,
the rearrangement of Chernozhukov, Fernandez-Val and Galichon (2010): the
sorted predictions are monotone in :math:`\tau`, equal to the raw ones where
those do not cross, and never further from the true conditional quantile
function (in any :math:`L^p` norm over the levels).
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _dask, _dask_multiquantile, _progress
from ._base import RobustLinearRegressor, StandardisedFit
from ._passes import single_threaded_blas
from ._quantile import (
    COV_TYPES,
    LevelStart,
    QuantileRegressor,
    auto_solver,
    robust_offset_scale,
)
from ._quantile_exact import far_target_limit

# The band (first kept set) of a level started from its neighbour, as a
# fraction of the default sqrt(n p) of a cold start: the neighbour's
# solution, shifted and refined by a Newton step (_quantile_exact's
# _NEIGHBOUR_STEPS), is several times closer to the new level's than a
# smoothed preliminary fit is. A level whose first reduced problem fails its
# sign check doubles the band for the next. At n = 1e5, p = 20 with t(2)
# noise, 0.25 took 99 levels from 16x to 12x one exact fit (0.5: 124 LPs,
# 0.25: 124 too); with one Newton step 0.25 is still the best of 0.18
# (148 LPs), 0.25 (127) and 0.35 (124).
_NEIGHBOUR_BAND_FRACTION = 0.25
# ... and at least this many rows.
_NEIGHBOUR_MIN_BAND = 200
# Reduced problems from a neighbour's solution before the level is fitted
# cold (its own start, the zero fit included): levels took 1 or 2 of them;
# at a level in a gap of the targets the six of the solver's default all
# failed (1e5 x 20, q = 0.9 next to 0.8, 10% of targets shifted up: 1.1 s,
# the cold fit after them 0.05 s).
_NEIGHBOUR_ROUNDS = 3


def _check_levels(quantiles):
    """Sorted array of distinct levels in (0, 1) from a sequence or a count."""
    if isinstance(quantiles, Integral):
        return np.arange(1, quantiles + 1) / (quantiles + 1.0)
    levels = np.asarray(quantiles, dtype=np.float64).ravel()
    if levels.size == 0:
        raise ValueError("quantiles must contain at least one level.")
    if not np.all((levels > 0) & (levels < 1)):
        raise ValueError(f"quantiles must be in (0, 1), got {levels.tolist()}.")
    levels = np.sort(levels)
    if np.any(np.diff(levels) == 0):
        raise ValueError(f"quantiles must be distinct, got {levels.tolist()}.")
    return levels


def _adapted_band(size, first_size, n_lp):
    """Band of the next level, after a level that solved ``n_lp`` LPs.

    Doubled when more than one was needed (the band was too narrow for the
    step between levels), else halved back towards the first size.
    """
    if n_lp > 1:
        return 2 * size
    return max(size // 2, first_size)


def _visiting_order(levels):
    """``[(j, neighbour), ...]``: the level nearest 0.5 first, then outwards."""
    centre = int(np.argmin(np.abs(levels - 0.5)))
    order = [(centre, None)]
    order += [(j, j - 1) for j in range(centre + 1, levels.size)]
    order += [(j, j + 1) for j in range(centre - 1, -1, -1)]
    return order


def _neighbour_options(fit_intercept, X, y, sample_weight, first):
    """Exact-solver options of a level started from its neighbour.

    A band of ``_NEIGHBOUR_BAND_FRACTION`` of the cold default (at least
    ``_NEIGHBOUR_MIN_BAND`` rows), the clipping distance of far
    targets from the first level, computed once, and
    ``checked_inputs`` (``y`` and the weights are validated float64),
    ``write_and_restore`` (``y`` and the residuals are the fit's own) and
    ``full_fallback=False`` with ``_NEIGHBOUR_ROUNDS`` rounds: if the
    reduced problems from the neighbour fail (a level in a gap of the
    targets), the level's cold fit follows rather than more rounds and the
    whole programme.
    The solver adds its sampled Gram matrix of the Newton step
    (``newton_gram``) after its first use, and each start adds its
    neighbour's state, from which
    :func:`~skrobust._quantile_exact._neighbour_start` takes the Newton
    step to the new level without a pass over ``X``.
    """
    n_pos = int(np.count_nonzero(sample_weight > 0))
    n_coef = X.shape[1] + bool(fit_intercept)
    size = int(np.ceil(_NEIGHBOUR_BAND_FRACTION * np.sqrt(n_pos * n_coef)))
    residuals = first.residuals
    if residuals is None:
        residuals = y - safe_sparse_dot(X, first.coef) - first.intercept
    return {
        "initial_size": max(size, _NEIGHBOUR_MIN_BAND),
        "refine": True,
        "clip_limit": far_target_limit(y, residuals, sample_weight),
        # y and the weights passed fit's validation once: no copies and
        # checks of n-vectors per level.
        "checked_inputs": True,
        # y (standardised) and the neighbours' residuals are the fit's own:
        # far targets are moved in place and restored, not copied.
        "write_and_restore": True,
        "full_fallback": False,
        "max_rounds": _NEIGHBOUR_ROUNDS,
    }


def _check_one_target(y):
    """A clear error for a ``y`` of several columns (numpy or dask)."""
    shape = getattr(y, "shape", ())
    if len(shape) == 2 and shape[1] > 1:
        raise ValueError(
            "MultiQuantileRegressor fits several quantiles of one target: "
            f"y must be 1-dimensional, got shape {shape}. Fit one "
            "estimator per column of y."
        )


def store_level_covariances(estimator, covs):
    """``cov_``, ``coef_se_`` and ``intercept_se_`` from the levels' ``covs``.

    Without ``cov_type`` the attributes of an earlier fit are removed.
    """
    for name in ("cov_", "coef_se_", "intercept_se_"):
        if hasattr(estimator, name):
            delattr(estimator, name)
    if estimator.cov_type is None:
        return
    estimator.cov_ = np.array(covs)
    se = np.sqrt(np.maximum(np.diagonal(estimator.cov_, axis1=1, axis2=2), 0.0))
    offset = int(bool(estimator.fit_intercept))
    estimator.coef_se_ = se[:, offset:]
    if estimator.fit_intercept:
        estimator.intercept_se_ = se[:, 0]


class MultiQuantileRegressor(RobustLinearRegressor):
    r"""Linear quantile regression at several levels, fitted together.

    Fits one linear model per level ``tau`` of ``quantiles``, each
    minimising the weighted mean pinball loss plus an L1 penalty, the
    objective of :class:`QuantileRegressor`,

    .. math::

        \frac{1}{S} \sum_i s_i \, \rho_\tau(y_i - x_i^\top w_\tau - b_\tau)
        + \alpha \lVert w_\tau \rVert_1,
        \qquad \rho_\tau(u) = u \, (\tau - 1_{u < 0}),

    in a fraction of the time of separate fits: each level starts from its
    neighbour's solution. Predictions at the levels are made monotone in
    ``tau`` by rearrangement.

    Parameters
    ----------
    quantiles : array-like of float or int, default=(0.05, 0.5, 0.95)
        Distinct levels in (0, 1), in any order (stored sorted in
        ``quantiles_``), or an int ``k`` for the ``k`` levels
        ``1 / (k + 1), ..., k / (k + 1)``.
    alpha : float, default=0.0
        Strength of the L1 penalty on the coefficients of every level;
        non-negative.
    fit_intercept : bool, default=True
        Whether to fit an (unpenalised) intercept per level.
    solver : {"auto", "exact", "smooth"}, default="auto"
        ``"exact"``: every level at its linear-programming optimum (the
        same minimiser a separate ``QuantileRegressor(solver="exact")``
        finds), the reduced problem of each built around its neighbour's
        solution. ``"smooth"``: the convolution-smoothed fits, each started
        from its neighbour's. ``"auto"`` is ``"exact"``, as in
        :class:`QuantileRegressor`.
    non_crossing : {"rearrange", False}, default="rearrange"
        ``"rearrange"``: :meth:`predict_quantiles` sorts the predictions of
        each row, so that they increase with the level. False returns the
        raw linear predictions, which may cross.
    cov_type : {"iid", "nid", "ker", "bootstrap"} or None, default=None
        Covariance of each level's estimates, as
        :class:`QuantileRegressor`'s ``cov_type`` (refits warm-started from
        the level's fit). Sets ``cov_``, ``coef_se_`` and ``intercept_se_``.
    bandwidth_rule : {"hall-sheather", "bofinger"}, default="hall-sheather"
        Bandwidth rule of the ``"iid"``, ``"nid"`` and ``"ker"``
        covariances.
    n_bootstrap : int, default=200
        Bootstrap replicates per level for ``cov_type="bootstrap"``.
    random_state : int, RandomState instance or None, default=None
        Seed of the bootstrap resampling (the same draws at every level).
    bandwidth : "auto" or float, default="auto"
        Smoothing bandwidth in units of a robust residual scale, as in
        :class:`QuantileRegressor` (the scale of the middle level's
        residuals for every level).
    kernel : {"gaussian", "logistic"}, default="gaussian"
        Smoothing kernel.
    max_iter : int, default=500
        Maximum number of iterations of each smoothed fit.
    tol : float, default=1e-10
        Convergence tolerance of the smoothed fits.
    warm_start : bool, default=False
        Start each level from its previous fit when ``fit`` is called
        again with the same levels and number of features.
    verbose : int, default=0
        0 prints nothing; 1 a line per solve (rows, iterations, largest gradient
        entry, elapsed time), the levels done and the time left; 2 also a line
        per solver iteration.

    Attributes
    ----------
    quantiles_ : ndarray of shape (n_quantiles,)
        The levels, sorted.
    coef_ : ndarray of shape (n_quantiles, n_features)
        Coefficients, one row per level.
    intercept_ : ndarray of shape (n_quantiles,)
        Intercepts (zeros if ``fit_intercept=False``).
    n_iter_ : ndarray of shape (n_quantiles,)
        Iterations per level: smoothed-fit iterations plus, for the exact
        solver, linear programmes solved.

    Unlike :class:`QuantileRegressor`, it keeps no per-row attributes
    (``noise_scale_``, ``outliers_``, ``weights_``): with ``k`` levels they
    would hold ``k`` times ``n_samples`` values. Fit
    :class:`QuantileRegressor` at a level for them.
    bandwidth_ : ndarray of shape (n_quantiles,)
        Bandwidth of each level's last smoothed fit in ``y`` units (the
        middle level's for exact levels started from a neighbour; NaN where
        the exact solver made none: with ``max_iter < 3``, or where it
        solves the whole linear programme at once, with fewer than about
        600 rows or 4 rows per coefficient).
    solver_ : str
        The solver used, ``"exact"`` or ``"smooth"``.
    cov_ : ndarray of shape (n_quantiles, n_params, n_params)
        Covariance of ``[intercept, *coef]`` per level; only with
        ``cov_type``.
    coef_se_ : ndarray of shape (n_quantiles, n_features)
        Standard errors of ``coef_``; only with ``cov_type``.
    intercept_se_ : ndarray of shape (n_quantiles,)
        Standard errors of ``intercept_``; only with ``cov_type`` and
        ``fit_intercept``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column
        names.

    See Also
    --------
    QuantileRegressor : One level.

    Notes
    -----
    The exact levels are exact whatever their start: the reduced linear
    programme of a level is certified by the signs of the residuals it
    assumed, and repaired (or the full programme solved) when they do not
    hold. The neighbour's start only makes it fast.

    Rearrangement (sorting each row's predictions) gives the quantiles of
    the distribution of the raw predicted quantile function
    ``tau -> x^T w_tau + b_tau`` over the levels; where the raw
    predictions do not cross it changes nothing, and otherwise it brings
    them closer to any monotone target (Chernozhukov, Fernandez-Val and
    Galichon 2010), so that the average pinball loss over the levels does
    not grow in practice.

    References
    ----------
    R. Koenker, "Quantile Regression", Cambridge University Press, 2005.

    V. Chernozhukov, I. Fernandez-Val and A. Galichon, "Quantile and
    probability curves without crossing", Econometrica 78, 2010.

    S. Portnoy and R. Koenker, "The Gaussian hare and the Laplacian
    tortoise", Statistical Science 12, 1997.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust._multiquantile import MultiQuantileRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 2, size=(5000, 1))
    >>> y = 1.0 + 2.0 * X[:, 0] + (0.5 + X[:, 0]) * rng.standard_normal(5000)
    >>> model = MultiQuantileRegressor(quantiles=[0.1, 0.5, 0.9]).fit(X, y)
    >>> model.coef_.shape
    (3, 1)
    >>> np.round(model.coef_[:, 0], 1)  # true slopes 2 + 1.28 * (-1, 0, 1)
    array([0.7, 2. , 3.2])
    >>> model.predict_interval([[1.0]], coverage=0.8).round(1)
    array([[1.1, 4.9]])
    """

    _parameter_constraints: dict = {
        "quantiles": ["array-like", Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "solver": [StrOptions({"auto", "exact", "smooth"})],
        "non_crossing": [StrOptions({"rearrange"}), Options(bool, {False})],
        "cov_type": [StrOptions(set(COV_TYPES)), None],
        "verbose": ["verbose"],
        "bandwidth_rule": [StrOptions({"hall-sheather", "bofinger"})],
        "n_bootstrap": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
        "bandwidth": [
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "kernel": [StrOptions({"gaussian", "logistic"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "warm_start": ["boolean"],
    }

    def __init__(
        self,
        quantiles=(0.05, 0.5, 0.95),
        *,
        alpha=0.0,
        fit_intercept=True,
        solver="auto",
        non_crossing="rearrange",
        cov_type=None,
        bandwidth_rule="hall-sheather",
        n_bootstrap=200,
        random_state=None,
        bandwidth="auto",
        kernel="gaussian",
        max_iter=500,
        tol=1e-10,
        warm_start=False,
        verbose=0,
    ):
        self.quantiles = quantiles
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.non_crossing = non_crossing
        self.cov_type = cov_type
        self.bandwidth_rule = bandwidth_rule
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.verbose = verbose

    def fit(self, X, y, sample_weight=None):
        """Fit one linear quantile model per level.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data; not copied.
        y : array-like of shape (n_samples,)
            Target values (one target: a 2-D ``y`` is an error).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; integer weights are equivalent to repeated
            rows.

        Returns
        -------
        object
            The fitted estimator.
        """
        _check_one_target(y)
        if _dask.is_dask_array(X):
            return _dask_multiquantile.fit(self, X, y, sample_weight)
        X, y, sample_weight = self._validate_fit_data(X, y, sample_weight)
        levels = _check_levels(self.quantiles)
        n_coef = X.shape[1] + bool(self.fit_intercept)
        solver = self.solver
        if solver == "auto":
            solver = auto_solver(X.shape[0], n_coef)
        y_offset, y_scale = robust_offset_scale(y, sample_weight, self.fit_intercept)
        previous = self._previous_fits(levels, X.shape[1], y_offset, y_scale)
        with (
            _progress.reporting(self.verbose, type(self).__name__),
            single_threaded_blas(X),
        ):
            fits = self._fit_levels(
                X, (y - y_offset) / y_scale, sample_weight, levels, solver, previous
            )
        self.quantiles_ = levels
        self.coef_ = np.array([fit.coef for fit in fits]) * y_scale
        intercepts = np.array([fit.intercept for fit in fits]) * y_scale
        self.intercept_ = intercepts + y_offset if self.fit_intercept else intercepts
        self.n_iter_ = np.array([fit.n_iter for fit in fits], dtype=int)
        # Exact levels warm-started from a previous fit make no smoothed fit:
        # they keep the bandwidth of that fit. Cold, with max_iter < 3,
        # none makes one: NaN.
        before = (
            self.bandwidth_ if previous is not None else np.full(levels.size, np.nan)
        )
        self.bandwidth_ = np.array(
            [
                before[j] if fit.bandwidth is None else fit.bandwidth * y_scale
                for j, fit in enumerate(fits)
            ]
        )
        self.solver_ = solver
        with _progress.reporting(self.verbose, type(self).__name__):
            self._set_covariances(X, y, sample_weight)
        return self

    def _level_model(self, quantile, **params):
        """The single-level estimator whose parts fit one level."""
        return QuantileRegressor(
            quantile=float(quantile),
            alpha=self.alpha,
            fit_intercept=self.fit_intercept,
            solver=self.solver,
            bandwidth=self.bandwidth,
            kernel=self.kernel,
            max_iter=self.max_iter,
            tol=self.tol,
            **params,
        )

    def _previous_fits(self, levels, n_features, y_offset, y_scale):
        """Warm starts per level in standardised units, or None."""
        if not (self.warm_start and hasattr(self, "coef_")):
            return None
        if self.coef_.shape != (levels.size, n_features) or not np.array_equal(
            self.quantiles_, levels
        ):
            return None
        intercepts = self.intercept_ - y_offset if self.fit_intercept else 0.0
        intercepts = np.broadcast_to(intercepts, levels.shape) / y_scale
        return [
            LevelStart(coef / y_scale, float(b))
            for coef, b in zip(self.coef_, intercepts, strict=True)
        ]

    def _fit_levels(self, X, y, sample_weight, levels, solver, previous):
        """Every level in standardised ``y``, the middle one first.

        Returns the :class:`~skrobust._quantile_level.LevelFit` of each level in
        the order of ``levels``. The middle level's column statistics and
        residual scale serve every other level; an exact level is started
        from its neighbour's solution, residuals and solver state
        (:meth:`_neighbour_options`, :func:`_adapted_band`); each level's
        residuals are dropped once the next level has used them.
        """
        fits = [None] * levels.size
        stats, scale, bandwidth, options = None, None, None, None
        order = _visiting_order(levels)
        centre = order[0][0]
        for j, neighbour in _progress.loop(order, len(order), "level"):
            model = self._level_model(levels[j])
            if previous is not None:
                start = previous[j]._replace(scale=scale)
            elif neighbour is None:
                start = None
            else:
                near = fits[neighbour]
                start = LevelStart(
                    near.coef,
                    near.intercept,
                    scale,
                    near.residuals,
                    options
                    if near.state is None
                    # A copy: the state is this neighbour's alone.
                    else {**options, "neighbour_state": near.state},
                )
            # (Levels keep the exact solver's preliminary fit: the first
            # level's residual scale serves the others' starts.)
            fit = model._fit_level(
                X, y, sample_weight, solver, start, stats, zero_start=False
            )
            if start is not None and start.exact_options is not None:
                # The solver's sampled Gram matrix, kept for the next levels.
                gram = start.exact_options.get("newton_gram")
                if gram is not None:
                    options["newton_gram"] = gram
            if stats is None:
                stats, scale, bandwidth = fit.stats, fit.scale, fit.bandwidth
                options = _neighbour_options(
                    self.fit_intercept, X, y, sample_weight, fit
                )
                first_size = options["initial_size"]
            elif solver == "exact" and start is not None:
                options["initial_size"] = _adapted_band(
                    options["initial_size"], first_size, fit.n_iter
                )
            if fit.bandwidth is None:
                fit = fit._replace(bandwidth=bandwidth)
            fits[j] = fit
            if neighbour is not None:
                # Each level's residuals serve only the next one, so that
                # two n-vectors are alive. The middle level's state serves
                # both directions, but its residuals are recomputed for the
                # second (one pass over X) rather than held through the
                # first.
                keep_state = neighbour == centre and j > centre and centre > 0
                fits[neighbour] = fits[neighbour]._replace(
                    residuals=None, state=fits[neighbour].state if keep_state else None
                )
        return [fit._replace(residuals=None, state=None) for fit in fits]

    def _set_covariances(self, X, y, sample_weight):
        """Per-level ``cov_``, ``coef_se_`` and ``intercept_se_``."""
        covs = []
        if self.cov_type is not None:
            for level, coef, intercept in zip(
                self.quantiles_, self.coef_, self.intercept_, strict=True
            ):
                model = self._level_model(
                    level,
                    cov_type=self.cov_type,
                    bandwidth_rule=self.bandwidth_rule,
                    n_bootstrap=self.n_bootstrap,
                    random_state=self.random_state,
                )
                level_fit = StandardisedFit(coef, float(intercept), 0)
                covs.append(model._covariance(X, y, sample_weight, level_fit))
        store_level_covariances(self, covs)

    # -- prediction --------------------------------------------------------------
    def _raw_predictions(self, X):
        check_is_fitted(self)
        if _dask.is_dask_array(X):
            return _dask.predict(self, X)
        X = validate_data(
            self, X, accept_sparse=("csr", "csc"), dtype="numeric", reset=False
        )
        return np.asarray(safe_sparse_dot(X, self.coef_.T)) + self.intercept_

    def predict_quantiles(self, X):
        """Predicted conditional quantiles at every fitted level.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray of shape (n_samples, n_quantiles)
            Column ``j`` predicts the ``quantiles_[j]``-quantile. With
            ``non_crossing="rearrange"`` each row is sorted (non-decreasing
            in the level); with False, the raw ``X @ coef_.T +
            intercept_``.
        """
        raw = self._raw_predictions(X)
        if self.non_crossing == "rearrange":
            return _dask_multiquantile.sort_rows(raw)
        return raw

    def predict(self, X):
        """Predict the conditional quantile at the level nearest 0.5.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray of shape (n_samples,)
            The column of :meth:`predict_quantiles` at the level of
            ``quantiles_`` nearest 0.5 (the lower one on a tie).
        """
        check_is_fitted(self)
        middle = int(np.argmin(np.abs(self.quantiles_ - 0.5)))
        return self.predict_quantiles(X)[:, middle]

    def predict_interval(self, X, coverage=0.9):
        """Central prediction interval from the fitted quantiles.

        The bounds are the conditional quantiles at ``(1 - coverage) / 2``
        and ``(1 + coverage) / 2``, interpolated linearly in the level
        between the rearranged (monotone) predictions at the two fitted
        levels around each, which keeps them monotone too.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.
        coverage : float, default=0.9
            Probability that the interval holds the target, in (0, 1).

        Returns
        -------
        ndarray of shape (n_samples, 2)
            Lower and upper bounds.

        Raises
        ------
        ValueError
            If a bound's level lies outside ``[quantiles_[0],
            quantiles_[-1]]``: the fit says nothing about it.
        """
        if not (isinstance(coverage, Real) and 0 < coverage < 1):
            raise ValueError(f"coverage must be in (0, 1), got {coverage!r}.")
        bounds = np.array([(1.0 - coverage) / 2.0, (1.0 + coverage) / 2.0])
        check_is_fitted(self)
        levels = self.quantiles_
        # Levels given as fractions such as 0.05 or 1/20 may differ from the
        # computed bounds by rounding.
        slack = 1e-12
        if bounds[0] < levels[0] - slack or bounds[1] > levels[-1] + slack:
            raise ValueError(
                f"coverage={coverage} needs the quantiles {bounds[0]:.6g} and "
                f"{bounds[1]:.6g}, outside the fitted range [{levels[0]:.6g}, "
                f"{levels[-1]:.6g}]; refit with quantiles covering them."
            )
        predictions = _dask_multiquantile.sort_rows(self._raw_predictions(X))
        if levels.size == 1:
            return np.repeat(predictions, 2, axis=1)
        bounds = np.clip(bounds, levels[0], levels[-1])
        upper = np.clip(np.searchsorted(levels, bounds), 1, levels.size - 1)
        lower = upper - 1
        weight = (bounds - levels[lower]) / (levels[upper] - levels[lower])
        return (1.0 - weight) * predictions[:, lower] + weight * predictions[:, upper]
