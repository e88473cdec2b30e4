r"""HeteroscedasticRegressor: a linear mean and a linear log-variance, fitted jointly.

The model is Gaussian with ``mu = X b + b0`` and ``log sigma**2 = X_V g + g0``
(``X_V`` a chosen subset of the columns). It is a :class:`LinearObjective`
with two linear predictors on a Gaussian negative log-likelihood, minimised
by :func:`skrobust._solvers.minimize`; this module only adds that loss in a
bounded, overflow-safe form (:class:`~skrobust.losses.GaussianNLLLoss`), the start,
and the bookkeeping between the units of ``y`` and the solver's.

The fit is the template of :class:`skrobust._base.RobustLinearRegressor`:
validation, one target column at a time in robust standardised units
(a 2-D ``y`` is one such model per column), then the attributes. Its step
``_fit_standardised`` re-centres the column on its weighted mean and
divides by its root mean square deviation ``s_y`` before solving: ``s_y``
is the unit of the variance floor, and a Gaussian likelihood must not see
a target ``1e300`` robust spreads away, squared.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from . import _dask, _solvers
from ._base import (
    _ACCEPT_SPARSE,
    OUTLIER_THRESHOLD,
    RobustLinearRegressor,
    StandardisedFit,
    _solve_least_squares,
    least_squares_start,
    mad_scale,
)
from ._cov_gaussian import COV_TYPES, gaussian_covariance
from ._inference import InferenceMixin, set_inference_attributes
from ._likelihood_pass import LikelihoodObjective
from ._objective import LinearObjective
from ._sparse_hessian import sparse_hessian_affordable
from .losses import FixedScaleLoss, GaussianNLLLoss, SquaredRho

# -E[log chi^2_1] = Euler's gamma + log 2: log r^2 underestimates log sigma^2
# by this much on average for Gaussian residuals (Harvey 1976).
HARVEY_OFFSET = float(np.euler_gamma + np.log(2.0))

# exp(v / 2) of a log-variance above this overflows float64.
_MAX_LOG_VARIANCE = 2.0 * float(np.log(np.finfo(np.float64).max)) - 1.0
# exp(w) of a log-weight above this overflows float64.
_MAX_LOG_WEIGHT = 0.5 * _MAX_LOG_VARIANCE
_LOG_2PI = float(np.log(2.0 * np.pi))

# Least squares fits a row exactly when its residual is below this fraction
# of tau, the square root of the floor: far below any noise the likelihood
# can resolve, far above the rounding error of a residual (~1e-16 s_y).
_EXACT_FIT_RELATIVE = 1e-3

# A row is at the floor (rows_at_floor) when its variance is within this
# factor of tau^2 and its squared residual too: sigma within 10 tau, far
# below any noise level the data resolve once the floor is 1e-8 var(y).
_FLOOR_FACTOR = 100.0


def _mean_and_spread(y, sample_weight, fit_intercept):
    """Weighted mean (0 without intercept) and root mean square deviation of ``y``.

    The spread ``s_y`` is the unit of the variance floor. Computed on ``y /
    max|y|`` with weights scaled to a largest weight of 1, so that neither
    ``|y|`` up to ``1e300`` nor weights up to ``1e308`` overflow; the
    maximum is over rows of positive weight, so that a huge ``y`` on a row
    without weight cannot make the others underflow when squared. A
    constant ``y`` gets ``s_y = |y|`` (1 if ``y`` is 0), so that the floor
    stays positive.
    """
    weighted = sample_weight > 0
    if weighted.all():  # (no gathered copies of y and the weights)
        y_w, w = y, sample_weight
    else:
        y_w, w = y[weighted], sample_weight[weighted]
    y_max = max(float(np.max(y_w)), -float(np.min(y_w)))
    if not y_max > 0:
        return 0.0, 1.0
    top = float(w.max())
    if top != 1.0:  # (dividing by 1 changes nothing)
        w = w / top
    u = y_w / y_max
    S = w.sum()
    offset = float(w @ u / S) if fit_intercept else 0.0
    u -= offset
    spread = float(np.sqrt(w @ np.square(u, out=u) / S))
    if not spread > 0:
        spread = abs(offset)
    return offset * y_max, spread * y_max


def _predictors_in_units(predictors, offset, spread):
    """The rows' ``(mean, log-variance)`` of ``(y - offset) / spread`` in ``y``'s units.

    In place; returns ``predictors``.
    """
    predictors[:, 0] *= spread
    predictors[:, 0] += offset
    predictors[:, 1] += 2.0 * float(np.log(spread))
    return predictors


def variance_columns(selection, n_features, feature_names=None):
    """``variance_features`` as sorted column indices, or None for all.

    ``selection`` is column indices, a boolean mask or column names (then
    looked up in ``feature_names``, the estimator's ``feature_names_in_``).
    """
    if selection is None:
        return None
    selection = np.asarray(selection)
    if selection.ndim != 1:
        raise ValueError("variance_features must be one-dimensional.")
    if selection.dtype.kind == "b":
        if selection.size != n_features:
            raise ValueError(
                f"variance_features is a boolean mask of length "
                f"{selection.size}, but X has {n_features} features."
            )
        return np.flatnonzero(selection)
    if selection.size == 0:
        return np.zeros(0, dtype=np.intp)
    if selection.dtype.kind in "OUS":
        names = feature_names
        if names is None:
            raise ValueError(
                "variance_features holds column names, but X has no "
                "string column names."
            )
        position = {name: i for i, name in enumerate(names)}
        missing = [name for name in selection if name not in position]
        if missing:
            raise ValueError(f"variance_features {missing} are not in X.")
        selection = np.array([position[name] for name in selection])
    elif selection.dtype.kind not in "iu":
        raise ValueError(
            "variance_features must hold column indices, a boolean mask "
            f"or column names, got dtype {selection.dtype}."
        )
    if np.any((selection < 0) | (selection >= n_features)):
        raise ValueError(f"variance_features indices must be in [0, {n_features}).")
    columns = np.unique(selection).astype(np.intp)
    if columns.size != selection.size:
        raise ValueError("variance_features has repeated columns.")
    return columns


def harvey_start(X, residuals, sample_weight, var_cols, l2, stats, variance_floor):
    """Harvey's two-step log-variance: least squares of log(r^2 + tau^2).

    ``E[log r^2] = log sigma^2 - 1.2704`` for Gaussian residuals, hence
    the shift of the intercept. ``tau^2`` keeps the logarithm finite for
    rows fitted exactly, where the jittered likelihood is smallest at
    ``log tau^2``; with no floor, the smallest positive float does that.
    """
    floor = variance_floor if variance_floor > 0 else 1e-300
    # log(r^2 + floor) through hypot, which cannot overflow.
    log_r2 = 2.0 * np.log(np.hypot(residuals, np.sqrt(floor)))
    objective = LinearObjective(
        FixedScaleLoss(SquaredRho()),
        X,
        log_r2,
        sample_weight,
        [(var_cols, True)],
        [l2],
        column_stats=stats,
    )
    # The minimum-norm least-squares solution: from the normal equations
    # formed in one pass, or by LSQR beyond a few hundred coefficients,
    # where a dense Gram matrix of a wide (sparse) design and its
    # eigendecomposition would cost seconds and many times X's memory.
    coef = _solve_least_squares(objective)
    coef[-1] += HARVEY_OFFSET
    return coef


def exact_fit_variance(
    ls_objective, mean_coef, residuals, start_weight, variance_floor
):
    """``tau^2 + mean r^2`` if least squares fits every row exactly, else None.

    Exactly means within ``1e-3 tau`` on every row of positive weight,
    checked on the start's rows and then on all rows. ``residuals`` are
    those of the start's rows, 0 where the weight is 0.
    """
    if not variance_floor > 0:  # no floor: the minimum may not exist
        return None
    tolerance = _EXACT_FIT_RELATIVE * np.sqrt(variance_floor)
    if not np.all(np.abs(residuals) <= tolerance):
        return None
    if ls_objective.y.size != residuals.size:  # the start was a subsample
        start_weight = ls_objective.sample_weight
        residuals = ls_objective.y - ls_objective.raw_prediction(mean_coef)[:, 0]
        residuals[~(start_weight > 0)] = 0.0
        if not np.all(np.abs(residuals) <= tolerance):
            return None
    mean_square = start_weight @ residuals**2 / start_weight.sum()
    return variance_floor + mean_square


class HeteroscedasticRegressor(InferenceMixin, RobustLinearRegressor):
    r"""Linear regression with a linear model for the log of the noise variance.

    Fits the Gaussian model :math:`y_i \sim N(\mu_i, \sigma_i^2)` with

    .. math::

        \mu_i = x_i^\top b + b_0, \qquad \log \sigma_i^2 = z_i^\top g + g_0,

    where :math:`z_i` are the columns of :math:`x_i` chosen by
    ``variance_features`` (all of them by default), by minimising the
    penalised negative log-likelihood

    .. math::

        \sum_i s_i \left[\frac{(y_i - \mu_i)^2 + \tau^2}{2\sigma_i^2}
        + \frac12 \log \sigma_i^2\right]
        + \alpha \lVert g \rVert_2^2,
        \qquad \tau^2 = \texttt{variance\_floor} \cdot s_y^2,

    with sample weights :math:`s_i` and :math:`s_y^2` the weighted variance
    of ``y`` (its weighted mean square when ``fit_intercept=False``; for a
    constant ``y``, :math:`y^2`, or 1 if ``y`` is 0).
    ``predict`` returns the mean :math:`\mu`; ``predict(X,
    return_std=True)`` also returns :math:`\sigma`, as
    :class:`~sklearn.linear_model.BayesianRidge` and
    :class:`~sklearn.gaussian_process.GaussianProcessRegressor` do, and
    :meth:`predict_interval` gives central prediction intervals.

    Parameters
    ----------
    variance_features : array-like of int, bool or str, default=None
        Columns of ``X`` that enter the log-variance: ``None`` for all of
        them, or column indices, a boolean mask of length ``n_features``, or
        column names when ``X`` is a pandas DataFrame. An empty selection
        gives a constant variance (least squares with its maximum-likelihood
        variance).
    alpha : float, default=1e-4
        Strength of the squared L2 penalty on the log-variance slopes
        ``var_coef_``; the mean and both intercepts are not penalised. Must
        be non-negative. The default is a negligible prior that makes the
        log-variance unique when variance features are collinear or
        outnumber the samples (with ``n_samples`` rows of unit-variance
        columns it moves the estimates by a fraction of order ``alpha /
        n_samples``). As in :class:`~sklearn.linear_model.Ridge`, the
        penalty is added to a *sum* over rows: multiplying every sample
        weight by ``c`` is the same as dividing ``alpha`` by ``c``. Also as
        there, it acts on coefficients in the units of the columns of
        ``X``: standardise them (for example with
        :class:`~sklearn.preprocessing.StandardScaler` in a pipeline) for
        one ``alpha`` to suit all of them.
    variance_floor : float, default=1e-8
        :math:`\tau^2` as a fraction of :math:`s_y^2`; must be non-negative.
        It keeps the likelihood bounded when rows can be fitted exactly: see
        Notes. ``0.0`` (with ``alpha=0.0``) gives the plain maximum-likelihood
        estimate, which may not exist.
    fit_intercept : bool, default=True
        Whether to fit the intercept :math:`b_0` of the mean. The
        log-variance always has its intercept :math:`g_0`: without it the
        model would not be scale-equivariant.
    solver : {"auto", "newton", "lbfgs"}, default="auto"
        ``"newton"`` is scipy's trust-region Newton method (``trust-exact``)
        on the analytic Hessian; ``"lbfgs"`` is scipy's L-BFGS-B on the
        analytic gradient, finished by Newton's method where it has not
        converged after 100 iterations and a Hessian is affordable (rows
        times squared coefficients at most 4e9). Beyond that
        ``"lbfgs"`` is replaced by truncated Newton (conjugate
        gradients on Hessian-vector products, preconditioned by the Gram
        matrices of the rows of largest weight), which L-BFGS continues
        where it stops short: the weights ``1 / sigma^2`` of a wide fit can
        span ten orders of magnitude, and L-BFGS then needs thousands of
        iterations. ``"auto"`` uses Newton for up to 300 coefficients (mean
        and log-variance together) and L-BFGS beyond, except on a sparse
        ``X`` whose Hessian blocks ``X' D X`` are sparse (numeric columns
        and one-hot levels), where it takes Newton steps on those sparse
        blocks, solved by conjugate gradients.
    max_iter : int, default=200
        Maximum number of solver iterations.
    tol : float, default=1e-10
        Convergence tolerance on the largest gradient entry of the objective
        divided by the sum of the weights, in standardised units.
    warm_start : bool, default=False
        Start from the previous solution when refitting, instead of the
        two-step start.
    cov_type : {"expected", "observed", "sandwich"} or None, default=None
        Covariance of the estimates that ``fit`` computes, for
        :meth:`conf_int` and :meth:`summary`: ``"expected"``, the inverse
        Fisher information (its mean block times ``N / (N - p)`` is what R's
        ``nlme::gls(..., method = "ML")`` reports); ``"observed"``, the
        inverse Hessian of the negative log-likelihood; ``"sandwich"``,
        robust to a wrong variance model. ``None`` computes none. See
        :doc:`/user_guide/inference`.
    verbose : int, default=0
        0 prints nothing; 1 a line per solve (rows, iterations, largest gradient
        entry, elapsed time); 2 also a line per solver iteration.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Coefficients :math:`b` of the mean; one row per target of a 2-D
        ``y``.
    intercept_ : float or ndarray of shape (n_targets,)
        Intercept :math:`b_0` of the mean (0.0 if ``fit_intercept=False``).
    var_coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Coefficients :math:`g` of the log-variance, exactly 0.0 for columns
        not in ``variance_features``.
    var_intercept_ : float or ndarray of shape (n_targets,)
        Intercept :math:`g_0` of the log-variance.
    weights_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        :math:`1 / \sigma_i^2` at the fit, for every training row: the
        weights of the weighted least-squares problem the mean solves. At
        the maximum of the likelihood the mean's score equations are
        :math:`\sum_i s_i (y_i - \mu_i) / \sigma_i^2 \, (1, x_i) = 0`, so
        ``LinearRegression().fit(X, y, sample_weight=sample_weight *
        weights_)`` gives ``coef_`` and ``intercept_`` again. In units of
        ``1 / y**2``; capped near ``1e308`` where it would overflow.
    outliers_ : ndarray of shape (n_samples,) or (n_samples, n_targets) of bool
        Training samples whose standardised residual :math:`z_i = (y_i -
        \mu_i) / \sigma_i` exceeds 2.5 times the normalised MAD of the
        :math:`z_i` (``median |z| / 0.6745``, about 1 when the model holds):
        about 1.2% of rows under the model. The MAD, rather than 1, keeps
        the threshold near 2.5 noise standard deviations when gross errors
        have inflated the fitted variances (the Gaussian likelihood is not
        robust).
    cov_ : ndarray of shape (n_params, n_params) or (n_targets, n_params, n_params)
        Covariance of the mean intercept (with ``fit_intercept``), ``coef_``,
        ``var_intercept_`` and the entries of ``var_coef_`` in
        ``variance_features``, in that order; one per target of a 2-D ``y``;
        only with ``cov_type``. Its rows are those of :meth:`conf_int` and
        :meth:`summary` (which describe a fit to a 1-D ``y``).
    coef_se_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Standard errors of ``coef_``; only with ``cov_type``.
    intercept_se_ : float or ndarray of shape (n_targets,)
        Standard error of ``intercept_``; only with ``cov_type`` and
        ``fit_intercept``.
    var_coef_se_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Standard errors of ``var_coef_``, NaN for columns not in
        ``variance_features`` (fixed at 0, not estimated); only with
        ``cov_type``.
    var_intercept_se_ : float or ndarray of shape (n_targets,)
        Standard error of ``var_intercept_``; only with ``cov_type``.
    n_iter_ : int or ndarray of shape (n_targets,)
        Number of solver iterations, at most ``max_iter`` (the start is
        not one: a warm start from the optimum takes 0).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column
        names.

    See Also
    --------
    sklearn.linear_model.LinearRegression : The same mean with a constant
        variance, fitted by least squares.
    sklearn.linear_model.BayesianRidge : Predictive standard deviations from
        a Bayesian linear model with a constant noise variance.
    HuberRegressor : A linear mean that is robust to outliers in ``y``.

    Notes
    -----
    **Bounded likelihood.** The Gaussian likelihood is unbounded whenever
    some rows can be fitted exactly (``n_features >= n_samples``, repeated
    points): their residual is zero and their variance can shrink to zero.
    The term :math:`\tau^2 / (2\sigma_i^2)` is the expected negative
    log-likelihood when ``y`` is jittered by independent :math:`N(0,
    \tau^2)` noise. It is a soft floor on the variance: for each row, the
    best log-variance is :math:`\log(r_i^2 + \tau^2) \ge \log \tau^2`, so
    each row's term is at least :math:`(1 + \log \tau^2) / 2` and the
    objective has a finite minimum, while the loss stays smooth with exact
    derivatives. The default :math:`\tau^2 = 10^{-8} s_y^2` floors
    :math:`\sigma` at :math:`10^{-4}` standard deviations of ``y`` and
    raises fitted variances by about :math:`\tau^2`: invisible unless the
    noise is that small. Because :math:`\tau^2` scales with :math:`s_y^2`,
    multiplying ``y`` by :math:`c` multiplies ``coef_`` and ``intercept_``
    by :math:`c`, adds :math:`2 \log |c|` to ``var_intercept_`` and leaves
    ``var_coef_`` unchanged.

    **Rows at the floor.** With many variance features for the rows (a
    wide or sparse design, where a column is non-zero on a few rows), the
    likelihood can fit some rows almost exactly and shrink their variances
    until :math:`\tau^2` and ``alpha`` stop them: the minimum exists, but
    those rows' variances are set by ``variance_floor``, not by the data,
    and its curvature :math:`1 / \tau^2` along the mean slows the solver.
    If the solver stops there before ``tol`` (with rows within
    :math:`10\,\tau` of their mean and variances within :math:`100\,\tau^2`),
    the ``ConvergenceWarning`` says so and counts them: more iterations move
    more rows to the floor, while fewer ``variance_features`` or a larger
    ``alpha`` give a fit that the data determine. (A dense wide design
    need not reach the floor, but is slow to solve: see
    :doc:`/user_guide/heteroscedastic`.)

    **Minimum-norm mean.** The mean is not penalised, so where it is not
    unique (collinear, constant or all-zero columns, ``n_features >=
    n_samples``) the objective has a family of minimisers. The fit is the
    one whose coefficients have the smallest Euclidean norm in
    standardised units (``coef_`` times the weighted standard deviation of
    each column, the intercept free): duplicated columns share their
    coefficient, and constant or zero columns get 0.

    When least squares fits every row to within :math:`10^{-3} \tau`
    (noiseless data, or ``n_features >= n_samples``), the minimum is known
    and returned without iterating: that minimum-norm least-squares mean,
    ``var_coef_ = 0`` and a variance of :math:`\tau^2` plus the mean
    squared residual.

    **Several targets.** A 2-D ``y`` of shape (n_samples, n_targets) gets
    a mean and a log-variance per target, each fitted as if alone (its own
    :math:`s_y` and floor): the joint likelihood of independent Gaussian
    targets is the sum of theirs, and no parameter is shared. Attributes
    gain a leading axis of length ``n_targets`` (``weights_`` a trailing
    one), predictions a column per target, :meth:`predict_interval` an array
    of shape (n_samples, n_targets, 2) and :meth:`log_likelihood`
    sums over targets. See :doc:`/user_guide/heteroscedastic` for why
    learned per-target variances do not re-weight the targets here.

    **Sample weights.** Rows of zero weight are ignored, whatever their
    ``X`` and ``y``; only relative weights enter the likelihood, and sums of
    weights are formed so that weights from ``1e-300`` to ``1e308`` do not
    underflow or overflow. The penalty, though, is set against their sum
    (see ``alpha``).

    **Solving.** The objective is evaluated on ``y`` and the columns of
    ``X`` standardised internally (so ``|y|`` up to ``1e300`` and columns of
    size ``1e+-200`` work), with the derivatives of the Gaussian loss with
    respect to :math:`(\mu, \log \sigma^2)` chained through the two designs:
    per row, a 2x2 block :math:`s_i [[1, r_i], [r_i, (r_i^2 + \tau^2) / 2]]
    / \sigma_i^2`, so :math:`H_{bb} = X^\top \operatorname{diag}(s /
    \sigma^2) X`, :math:`H_{bg} = X^\top \operatorname{diag}(s r / \sigma^2)
    Z` and :math:`H_{gg} = \frac12 Z^\top \operatorname{diag}(s (r^2 +
    \tau^2) / \sigma^2) Z`, with a column of ones appended to :math:`X` and
    :math:`Z` for the intercepts, plus the penalty on :math:`g`. The problem
    is not convex; it is started where it is well behaved: least squares for
    the mean, then Harvey's (1976) two-step estimate of the log-variance
    (least squares of :math:`\log(r_i^2 + \tau^2)` on :math:`z_i`, plus
    :math:`1.2704 = -E[\log \chi^2_1]` on the intercept), from which a
    trust-region Newton method, safe with an indefinite Hessian, reaches the
    joint maximum of the likelihood. A trial point where some row's :math:`1
    / \sigma_i^2` or :math:`(r_i^2 + \tau^2) / \sigma_i^2` exceeds
    :math:`e^{300}` (in units of :math:`s_y`) is rejected as infinitely bad,
    without overflow.

    References
    ----------
    A. C. Harvey, "Estimating regression models with multiplicative
    heteroscedasticity", Econometrica 44(3), 461-465, 1976.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust import HeteroscedasticRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 2, size=(2000, 1))
    >>> sigma = np.exp(0.5 * (1.5 * X[:, 0] - 2.0))  # log sigma^2 = 1.5 x - 2
    >>> y = 3.0 * X[:, 0] + 1.0 + sigma * rng.normal(size=2000)
    >>> model = HeteroscedasticRegressor().fit(X, y)
    >>> np.round(model.coef_, 1), round(model.intercept_, 1)
    (array([3.]), 1.0)
    >>> np.round(model.var_coef_, 1), round(model.var_intercept_, 1)
    (array([1.5]), -2.0)
    >>> mean, std = model.predict([[0.0], [2.0]], return_std=True)
    >>> np.round(std, 2)
    array([0.36, 1.68])
    >>> model.predict_interval([[1.0]], coverage=0.9).round(2)
    array([[2.72, 5.28]])
    """

    _parameter_constraints: dict = {
        "variance_features": [None, "array-like"],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "variance_floor": [Interval(Real, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "solver": [StrOptions({"auto", "lbfgs", "newton"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "warm_start": ["boolean"],
        "cov_type": [None, StrOptions(set(COV_TYPES))],
        "verbose": ["verbose"],
    }
    _cov_types = COV_TYPES
    _per_sample_attributes = ("outliers_", "weights_")

    def __init__(
        self,
        *,
        variance_features=None,
        alpha=1e-4,
        variance_floor=1e-8,
        fit_intercept=True,
        solver="auto",
        max_iter=200,
        tol=1e-10,
        warm_start=False,
        cov_type=None,
        verbose=0,
    ):
        self.variance_features = variance_features
        self.alpha = alpha
        self.variance_floor = variance_floor
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.cov_type = cov_type
        self.verbose = verbose

    def _check_fit_parameters(self):
        """``variance_features`` names columns of this ``X`` (raises if not)."""
        variance_columns(
            self.variance_features,
            self.n_features_in_,
            getattr(self, "feature_names_in_", None),
        )

    def _fit_standardised(self, X, y, sample_weight, y_scale, warm):
        """One output's maximum-likelihood fit, in the template's units of ``y``.

        The likelihood is solved in units of ``s_y``, the unit of the
        variance floor: ``y`` is re-centred on its weighted mean and divided
        by its root mean square deviation (:func:`_mean_and_spread`), which
        also keeps every ``|y|`` below ``sqrt(sum s / s_i)``, so squared
        residuals cannot overflow however wild the targets (the template's
        robust units would leave a gross outlier ``1e300`` spreads away).
        The mean coefficients scale with the unit and the log-variance
        intercept shifts by twice its logarithm; nothing else changes.
        """
        var_cols = variance_columns(
            self.variance_features, X.shape[1], getattr(self, "feature_names_in_", None)
        )
        offset, spread = _mean_and_spread(y, sample_weight, self.fit_intercept)
        positive = sample_weight > 0
        # A zero-weight row enters nothing, but its y could be any finite
        # number; 0 keeps its residuals finite (and its X is the loss's
        # concern, see losses.GaussianNLLLoss).
        y_unit = np.zeros_like(y)
        y_unit[positive] = (y[positive] - offset) / spread
        start = None
        if warm is not None:
            start = self._warm_params(warm, var_cols, offset, spread, y_scale)
        (w, b), (g, g0), n_iter, predictors = maximise_likelihood(
            self, X, y_unit, sample_weight, var_cols, start
        )
        var_coef = np.zeros(X.shape[1])
        var_coef[slice(None) if var_cols is None else var_cols] = g
        extras = {
            "var_coef_": var_coef,
            "var_intercept_": float(g0 + 2.0 * np.log(spread)),
        }
        if predictors is not None:
            # (Popped by _finish_output: never an attribute.)
            extras["_predictors"] = _predictors_in_units(predictors, offset, spread)
        return StandardisedFit(
            np.asarray(w) * spread, float(b * spread + offset), n_iter, extras
        )

    def _unstandardise(self, fit, y_offset, y_scale):
        """The log-variance intercept in ``y`` units; its slopes have none."""
        fit.extras["var_intercept_"] += 2.0 * float(np.log(y_scale))
        if "_predictors" in fit.extras:
            _predictors_in_units(fit.extras["_predictors"], y_offset, y_scale)
        return fit

    def _finish_output(self, fit, X, y, sample_weight):
        """``weights_`` and, with ``cov_type``, the covariance of one output.

        The rows' means and log-variances are the solver's last pass's, at
        the solution (``_predictors``, see :func:`maximise_likelihood`), or
        with ``cov_type`` formed in the covariance's pass over ``X``; else
        (an exact fit) computed here.
        """
        predictors = fit.extras.pop("_predictors", None)
        if self.cov_type is not None:
            predictors = np.empty((X.shape[0], 2))
            fit.extras.update(self._covariance(X, y, fit, sample_weight, predictors))
            log_variance = predictors[:, 1]
            residuals = y - predictors[:, 0]
            if not self.fit_intercept:
                residuals -= fit.intercept
        elif predictors is not None:
            log_variance = predictors[:, 1]
            residuals = y - predictors[:, 0]
        else:
            log_variance = safe_sparse_dot(X, fit.extras["var_coef_"])
            log_variance += fit.extras["var_intercept_"]
            residuals = y - safe_sparse_dot(X, fit.coef) - fit.intercept
        # exp(-v) is capped where it would overflow (a zero-weight row's X
        # can be anything): such a weight is inf in all but name.
        fit.extras["weights_"] = np.exp(-np.maximum(log_variance, -_MAX_LOG_WEIGHT))
        # Standardised residuals r / sigma are N(0, 1) under the model; their
        # robust scale (about 1 then) keeps the flag at 2.5 noise standard
        # deviations where gross errors have inflated the fitted variances.
        # A zero-weight row's may overflow to inf: flagged, and not counted.
        with np.errstate(over="ignore"):
            standardised = residuals * np.sqrt(fit.extras["weights_"])
        noise = mad_scale(standardised, sample_weight)
        fit.extras["outliers_"] = np.abs(standardised) > OUTLIER_THRESHOLD * noise
        return fit

    def _covariance(self, X, y, fit, sample_weight, predictors):
        """:func:`covariance_attributes` of one output; fills ``predictors``."""
        var_cols = variance_columns(
            self.variance_features,
            X.shape[1],
            getattr(self, "feature_names_in_", None),
        )
        options = {
            "cov_type": self.cov_type,
            "fit_intercept": self.fit_intercept,
            "variance_columns": var_cols,
            "alpha": self.alpha,
            "predictors_out": predictors,
        }
        return covariance_attributes(X, y, fit, sample_weight, options)

    def _set_fitted(self, fits, y_ndim):
        """The template's attributes, then ``coef_se_`` and ``intercept_se_``.

        Without ``cov_type`` the standard errors of an earlier fit are
        removed.
        """
        super()._set_fitted(fits, y_ndim)
        set_inference_attributes(self, self.cov_ if self.cov_type else None)
        if self.cov_type is None:
            for name in ("var_coef_se_", "var_intercept_se_"):
                if hasattr(self, name):
                    delattr(self, name)

    def _warm_extras(self, k):
        """The log-variance of output ``k``, for :meth:`_warm_params`."""
        return {
            "var_coef_": np.atleast_2d(self.var_coef_)[k],
            "var_intercept_": float(np.ravel(self.var_intercept_)[k]),
        }

    def _inference_parameters(self):
        """The mean's ``[intercept, coef...]``, then the log-variance's."""
        names, estimates = super()._inference_parameters()
        var_cols = variance_columns(
            self.variance_features,
            self.n_features_in_,
            getattr(self, "feature_names_in_", None),
        )
        columns = np.arange(self.n_features_in_) if var_cols is None else var_cols
        features = names[len(names) - self.n_features_in_ :]
        var_names = ["log_var:intercept"]
        var_names += [f"log_var:{features[j]}" for j in columns]
        var_estimates = np.r_[self.var_intercept_, self.var_coef_[columns]]
        return names + var_names, np.r_[estimates, var_estimates]

    def _at_rounding_level(self, objective, result):
        """Polish a fit the solver did not call converged; True if it is now.

        A row at the variance floor has curvature ``1 / tau^2`` (``1e8`` in
        units of ``s_y``) along the mean: one rounding error in a
        coefficient then moves the gradient by ~1e-8, so the gradient test
        ``tol`` can be out of reach of every representable point, and the
        L-BFGS fallback of :func:`~skrobust._solvers.minimize` can end at
        a point whose gradient is rounding noise amplified by that
        curvature. Newton steps from there recover the best point, accepted
        when the Newton step from it is at most ``tol``
        (:func:`~skrobust._solvers.polish`). Updates ``result.coef`` and
        ``result.n_iter`` in place.
        """
        result.coef, result.n_iter, converged = _solvers.polish(
            objective, result.coef, self.tol, self.max_iter, result.n_iter
        )
        return converged

    def _standardise_extras(self, extras, y_offset, y_scale):
        """The log-variance in the template's units: slopes have no units,
        the intercept shifts by ``-2 log y_scale``."""
        return {
            "var_coef_": extras["var_coef_"],
            "var_intercept_": extras["var_intercept_"] - 2.0 * np.log(y_scale),
        }

    def _warm_params(self, warm, var_cols, offset, spread, y_scale):
        """The previous fit as ``[(b, b0), (g, g0)]`` in units of ``s_y``.

        ``warm`` is in the template's standardised units
        (:meth:`_standardise_extras`).
        """
        g = warm.extras["var_coef_"]
        g0 = warm.extras["var_intercept_"]
        b0 = (warm.intercept - offset) / spread if self.fit_intercept else 0.0
        g = g if var_cols is None else g[var_cols]
        return [(warm.coef / spread, b0), (g, g0 - 2.0 * np.log(spread))]

    def _mean_log_variance(self, X):
        """Mean and log-variance at ``X``: (n_samples,) or (n_samples, n_targets)."""
        check_is_fitted(self)
        if _dask.is_dask_array(X):
            from ._dask_heteroscedastic import mean_log_variance

            return mean_log_variance(self, X)
        X = validate_data(
            self, X, accept_sparse=_ACCEPT_SPARSE, dtype="numeric", reset=False
        )
        mean = safe_sparse_dot(X, self.coef_.T) + self.intercept_
        log_variance = safe_sparse_dot(X, self.var_coef_.T) + self.var_intercept_
        return mean, log_variance

    def predict(self, X, return_std=False):
        """Predict the mean and, optionally, the standard deviation of ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.
        return_std : bool, default=False
            Whether to return the standard deviation of the predictive
            distribution as well, as ``BayesianRidge`` and
            ``GaussianProcessRegressor`` do.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
            ``X @ coef_.T + intercept_``; one column per target of a 2-D
            ``y`` (also of a ``y`` with one column).
        y_std : ndarray of shape (n_samples,) or (n_samples, n_targets)
            ``exp((X @ var_coef_.T + var_intercept_) / 2)``; only returned
            when ``return_std`` is True.
        """
        mean, log_variance = self._mean_log_variance(X)
        if not return_std:
            return mean
        # Capped where exp would overflow: such a std is inf in all but name.
        return mean, np.exp(0.5 * np.minimum(log_variance, _MAX_LOG_VARIANCE))

    def predict_interval(self, X, coverage=0.9):
        """Central prediction intervals of the fitted Gaussian model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.
        coverage : float, default=0.9
            Probability that a new ``y`` falls in its interval under the
            model, in (0, 1).

        Returns
        -------
        ndarray of shape (n_samples, 2) or (n_samples, n_targets, 2)
            ``(lower, upper)`` on the last axis: ``mean -+ q * std`` with
            ``q`` the ``(1 + coverage) / 2`` quantile of the standard
            normal. This is the layout of
            :meth:`MultiQuantileRegressor.predict_interval` and of the
            interval metrics of :mod:`skrobust.metrics`; for a 1-D ``y``,
            ``lower, upper = model.predict_interval(X).T`` unpacks it.
        """
        if not (isinstance(coverage, Real) and 0 < coverage < 1):
            raise ValueError(f"coverage must be in (0, 1), got {coverage!r}.")
        mean, std = self.predict(X, return_std=True)
        half_width = norm.ppf(0.5 + 0.5 * coverage) * std
        return np.stack([mean - half_width, mean + half_width], axis=-1)

    def log_likelihood(self, X, y, sample_weight=None):
        r"""Mean Gaussian log-likelihood of ``y`` under the fitted model.

        :math:`\sum_i s_i \sum_k \log \phi(y_{ik}; \mu_{ik}, \sigma_{ik}^2) /
        \sum_i s_i`: per sample, the log-density of all its targets (summed
        over the outputs of a 2-D ``y``, whose noises the model takes as
        independent), averaged over samples. It includes the constant
        :math:`-\frac12 \log 2\pi` per target, and not the
        ``variance_floor`` term, which is part of fitting, not of the model.
        ``score`` remains the :math:`R^2` of the mean.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Observed targets, of the shape the model was fitted to.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        float
            Weighted mean log-likelihood per sample.
        """
        mean, log_variance = self._mean_log_variance(X)
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if mean.ndim == 1:
            y = column_or_1d(y)
        check_consistent_length(mean, y)
        if y.shape != mean.shape:
            raise ValueError(
                f"y has shape {y.shape}; the model predicts {mean.shape[1]} targets."
            )
        sample_weight = _check_sample_weight(
            sample_weight, mean, dtype=np.float64, ensure_non_negative=True
        )
        # r / sigma first, so that |r| up to 1e300 does not overflow r**2.
        z = (y - mean) * np.exp(-0.5 * np.clip(log_variance, -_MAX_LOG_VARIANCE, None))
        with np.errstate(over="ignore"):
            per_target = -0.5 * (z * z + log_variance + _LOG_2PI)
        per_sample = per_target if per_target.ndim == 1 else per_target.sum(axis=1)
        return float(np.average(per_sample, weights=sample_weight))


def maximise_likelihood(estimator, X, y, sample_weight, var_cols, start):
    """``[(b, b0), (g, g0)]``, solver iterations and the rows' predictors.

    Least squares, then (unless it fits every row exactly) Harvey's
    log-variance or the warm ``start``, then the solver. In units of
    ``s_y``; the predictors, the rows' means and log-variances at the
    solution (n_samples, 2), are those of the solver's last pass, which
    was there (None for an exact fit): ``_finish_output`` needs them, and
    two products with ``X`` (1.8 ms of a 65 ms fit at ``1e5 x 20``) need
    not be repeated.
    """
    # Public objective = S * (mean loss + l2 / 2 ||g||^2) + constant, S
    # the sum of the weights: l2 = 2 alpha / S, with S divided by the
    # largest weight first so that weights near 1e308 do not overflow it.
    top = float(sample_weight.max())
    l2 = 2.0 * (estimator.alpha / top) / float(np.sum(sample_weight / top))
    # The mean is not penalised: where it is not unique (collinear or
    # constant columns, n_features >= n_samples) the solvers keep to the
    # minimum-norm member in standardised coordinates, and so does this
    # least-squares start.
    ls_objective, start_objective, mean_coef = least_squares_start(
        X, y, sample_weight, estimator.fit_intercept, 0.0
    )
    stats = ls_objective.column_stats
    objective = likelihood_objective(
        estimator, X, y, sample_weight, var_cols, l2, stats
    )
    # Least-squares residuals on the rows the start used (a subsample for
    # large n): a start need not be exact. Rows without weight are set
    # to 0: nothing depends on them, and squared they could overflow.
    start_weight = start_objective.sample_weight
    residuals = start_objective.y - start_objective.raw_prediction(mean_coef)[:, 0]
    residuals[~(start_weight > 0)] = 0.0
    exact_variance = exact_fit_variance(
        ls_objective, mean_coef, residuals, start_weight, estimator.variance_floor
    )
    if exact_variance is not None:
        # Every row is fitted exactly: the optimum is known (see Notes),
        # and a Newton method on curvatures of order 1 / tau^2 could only
        # blur it.
        mean = ls_objective.unstandardize(mean_coef)[0]
        n_var = X.shape[1] if var_cols is None else var_cols.size
        return mean, (np.zeros(n_var), float(np.log(exact_variance))), 0, None
    start_rows = start_objective.X, residuals, start_weight
    objective.remember_prediction = True
    result = likelihood_solution(
        estimator, objective, start, mean_coef, start_rows, var_cols, l2, stats
    )
    mean, log_variance = objective.unstandardize(result.coef)
    return mean, log_variance, result.n_iter, objective.raw_prediction(result.coef)


def solve_likelihood(
    estimator, objective, start, mean_coef, start_rows, var_cols, l2, stats
):
    """The likelihood maximised from a warm ``start`` or Harvey's start.

    The last steps of :func:`maximise_likelihood`, shared with the dask fit
    (:mod:`skrobust._dask_heteroscedastic`): :func:`likelihood_solution`,
    in the estimator's parameters.

    Returns
    -------
    mean, log_variance : tuple
        ``(b, b0)`` and ``(g, g0)`` in units of ``s_y``.
    n_iter : int
    """
    result = likelihood_solution(
        estimator, objective, start, mean_coef, start_rows, var_cols, l2, stats
    )
    mean, log_variance = objective.unstandardize(result.coef)
    return mean, log_variance, result.n_iter


def likelihood_solution(
    estimator, objective, start, mean_coef, start_rows, var_cols, l2, stats
):
    """The solver's result (standardised coefficients) from the start.

    The start (the warm ``start`` in the estimator's parameters, else the
    least-squares ``mean_coef`` with :func:`harvey_start`'s log-variance on
    ``start_rows``, the least-squares start's ``(X, residuals,
    sample_weight)``), the solver and its convergence warning.
    """
    if start is not None:
        coef0 = objective.standardize(start)
    else:
        var_coef = harvey_start(
            *start_rows, var_cols, l2, stats, estimator.variance_floor
        )
        coef0 = np.concatenate([mean_coef, var_coef])
    solver = likelihood_solver(estimator.solver, objective)
    result = _solvers.minimize(
        objective, coef0, solver, estimator.max_iter, estimator.tol, warn=False
    )
    if not (result.converged or estimator._at_rounding_level(objective, result)):
        floored = rows_at_floor(objective, result.coef, estimator.variance_floor)
        if floored:
            warn_floor_bound(solver, result.n_iter, estimator.tol, floored)
        else:
            _solvers.warn_not_converged(
                solver, result.n_iter, estimator.tol, result.message
            )
    return result


def likelihood_solver(solver, objective):
    """``solver`` resolved for ``objective``: ``"auto"`` may be sparse Newton.

    Where ``"auto"`` means L-BFGS (more than 300 coefficients) on a sparse
    design whose Hessian blocks ``X' D_ab X`` are sparse (one-hot levels:
    :func:`~skrobust._sparse_hessian.sparse_hessian_affordable`), Newton's
    method on those blocks (:func:`skrobust._sparse_newton.minimize`).
    Measured on the 1e5 x 1005 one-hot design (5 numeric columns, 1000
    levels, 2012 coefficients; CPU, one BLAS thread): L-BFGS took 107
    iterations and 0.82-0.87 s, sparse Newton 22 iterations and 0.52 s
    (scikit-learn's ``HuberRegressor`` on the same data: 0.52-0.55 s), to
    the same likelihood.
    """
    chosen = _solvers.choose_solver(solver, objective.n_coef)
    if solver == "auto" and chosen == "lbfgs" and sparse_hessian_affordable(objective):
        return "sparse-newton"
    return chosen


def rows_at_floor(objective, coef, variance_floor):
    r"""Rows of positive weight that sit at the variance floor at ``coef``.

    A row is at the floor when its fitted variance is at most
    ``_FLOOR_FACTOR`` times :math:`\tau^2` and so is its squared residual:
    a row fitted (nearly) exactly whose variance the floor alone holds up.
    One pass over the rows (a dask objective counts chunk by chunk, see
    :mod:`skrobust._dask_heteroscedastic`); 0 without a floor.
    """
    if not variance_floor > 0:
        return 0
    count = getattr(objective, "rows_at_floor", None)
    if count is not None:  # (a distributed objective counts where the rows are)
        return count(coef, variance_floor)
    raw = objective.raw_prediction(coef)
    residuals = objective.y - raw[:, 0]
    limit = np.log(_FLOOR_FACTOR * variance_floor)
    with np.errstate(over="ignore", invalid="ignore"):
        near = (raw[:, 1] <= limit) & (residuals**2 <= _FLOOR_FACTOR * variance_floor)
    return int(np.count_nonzero(near & (objective.sample_weight > 0)))


def warn_floor_bound(solver, n_iter, tol, n_rows):
    """The ConvergenceWarning of a fit that stopped with rows at the floor.

    The generic advice (more iterations) does not apply there: see the
    Notes of :class:`HeteroscedasticRegressor` (**Rows at the floor**).
    """
    warnings.warn(
        f"The {solver} solver stopped after {n_iter} iterations without "
        f"reaching tol={tol:g}, with {n_rows} rows fitted to within "
        f"{_FLOOR_FACTOR**0.5:g} tau at variances within {_FLOOR_FACTOR:g} "
        "tau^2 (tau^2 = variance_floor * var(y)). The likelihood rises as such "
        "rows are fitted more exactly and their variances shrink, until "
        "variance_floor and alpha stop it: the optimum is set by them rather "
        "than by the data, and more iterations move more rows to the floor. "
        "Use fewer variance_features or a larger alpha; the coefficients are "
        "the best point found.",
        ConvergenceWarning,
        stacklevel=4,
    )


def likelihood_objective(estimator, X, y_std, sample_weight, var_cols, l2, stats):
    """The penalised, jittered Gaussian NLL of ``y_std`` as a LinearObjective.

    Two predictors, the mean on all columns (not penalised) and the
    log-variance on ``var_cols`` (always with an intercept) with its slopes
    penalised by ``l2``, in the standardised coordinates ``stats``; the
    jitter and the mean's intercept are ``estimator``'s.
    """
    return LikelihoodObjective(
        GaussianNLLLoss(estimator.variance_floor),
        X,
        y_std,
        sample_weight,
        [(None, estimator.fit_intercept), (var_cols, True)],
        [0.0, l2],
        column_stats=stats,
    )


def covariance_attributes(X, y, fit, sample_weight, options):
    """``cov_``, ``var_intercept_se_`` and ``var_coef_se_`` of one output's fit.

    ``options`` are :func:`gaussian_covariance`'s keywords; the standard
    errors of columns outside the variance features are NaN.
    """
    cov = gaussian_covariance(
        X,
        y,
        fit.coef,
        fit.intercept,
        fit.extras["var_coef_"],
        fit.extras["var_intercept_"],
        sample_weight,
        **options,
    )
    n_mean = X.shape[1] + (1 if options["fit_intercept"] else 0)
    se = np.sqrt(np.maximum(np.diag(cov)[n_mean:], 0.0))
    var_coef_se = np.full(X.shape[1], np.nan)
    var_cols = options["variance_columns"]
    var_coef_se[slice(None) if var_cols is None else var_cols] = se[1:]
    return {"cov_": cov, "var_intercept_se_": float(se[0]), "var_coef_se_": var_coef_se}
