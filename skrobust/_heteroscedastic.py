r"""HeteroscedasticRegressor: a linear mean and a linear log-variance, fitted jointly.

The model is Gaussian with ``mu = X b + b0`` and ``log sigma**2 = X_V g + g0``
(``X_V`` a chosen subset of the columns). It is a :class:`LinearObjective`
with two linear predictors on :class:`~skrobust.losses.GaussianNLLLoss`,
minimised by :func:`skrobust._solvers.minimize`; this module only adds a
bounded version of the loss (:class:`_JitteredGaussianNLLLoss`), the start,
and the bookkeeping between the units of ``y`` and the solver's.
"""

from numbers import Integral, Real

import numpy as np
from scipy.stats import norm
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import (
    _check_sample_weight,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from . import _solvers
from ._base import _ACCEPT_SPARSE, RobustLinearRegressor
from ._objective import LinearObjective
from ._solvers import min_norm_solve
from .losses import FixedScaleLoss, GaussianNLLLoss, SquaredRho

# -E[log chi^2_1] = Euler's gamma + log 2: log r^2 underestimates log sigma^2
# by this much on average for Gaussian residuals (Harvey 1976).
HARVEY_OFFSET = float(np.euler_gamma + np.log(2.0))

# exp(v / 2) of a log-variance above this overflows float64.
_MAX_LOG_VARIANCE = 2.0 * float(np.log(np.finfo(np.float64).max)) - 1.0
_LOG_2PI = float(np.log(2.0 * np.pi))

# Least squares fits a row exactly when its residual is below this fraction
# of tau, the square root of the floor: far below any noise the likelihood
# can resolve, far above the rounding error of a residual (~1e-16 s_y).
_EXACT_FIT_RELATIVE = 1e-3


def _mean_and_spread(y, sample_weight, fit_intercept):
    """Weighted mean (0 without intercept) and root mean square deviation of ``y``.

    The spread ``s_y`` is the unit of the variance floor and of the penalty
    on the mean. Computed on ``y / max|y|``, so ``|y|`` up to ``1e300`` does
    not overflow. A constant ``y`` gets ``s_y = |y|`` (1 if ``y`` is 0), so
    that the floor stays positive.
    """
    y_max = float(np.max(np.abs(y)))
    if not y_max > 0:
        return 0.0, 1.0
    u = y / y_max
    S = sample_weight.sum()
    offset = float(sample_weight @ u / S) if fit_intercept else 0.0
    dev = u - offset
    spread = float(np.sqrt(sample_weight @ (dev * dev) / S))
    if not spread > 0:
        spread = abs(offset)
    return offset * y_max, spread * y_max


class _JitteredGaussianNLLLoss:
    r"""Gaussian NLL plus ``tau**2 / (2 sigma**2)``, which bounds it below.

    With ``eta = (mu, v)``, ``v = log sigma**2``, ``r = y - mu`` and ``j =
    tau**2 exp(-v) / 2``:

    .. math::

        L_\tau = \frac{r^2 + \tau^2}{2 e^{v}} + \frac{v}{2}
               = L_{\text{Gauss}} + j, \quad
        \partial_v L_\tau = \partial_v L_{\text{Gauss}} - j, \quad
        \partial^2_v L_\tau = \partial^2_v L_{\text{Gauss}} + j,

    the other derivatives being those of :class:`GaussianNLLLoss`. ``L_tau``
    is the expected Gaussian NLL when ``y`` is jittered by independent
    ``N(0, tau**2)`` noise; over ``v`` it is smallest at ``v = log(r**2 +
    tau**2) >= log tau**2``, where it equals ``(1 + log(r**2 + tau**2)) / 2``,
    so it is bounded below even for a residual of zero.
    """

    n_predictors = 2

    def __init__(self, jitter_variance):
        self.base = GaussianNLLLoss()
        self.jitter_variance = jitter_variance

    def _add_jitter(self, raw, loss, grad, hess=None):
        extra = 0.5 * self.jitter_variance * np.exp(-raw[:, 1])
        loss += extra
        grad[:, 1] -= extra
        if hess is not None:
            hess[:, 1, 1] += extra
        # exp(-v) overflows only at absurd trial points (v < -709 in units of
        # var(y)); 0 * inf there would make the value NaN, which line
        # searches and trust regions cannot compare, instead of +inf.
        loss[np.isnan(loss)] = np.inf

    def loss_gradient(self, y, raw):
        loss, grad = self.base.loss_gradient(y, raw)
        self._add_jitter(raw, loss, grad)
        return loss, grad

    def loss_gradient_hessian(self, y, raw):
        loss, grad, hess = self.base.loss_gradient_hessian(y, raw)
        self._add_jitter(raw, loss, grad, hess)
        return loss, grad, hess


class HeteroscedasticRegressor(RobustLinearRegressor):
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
        + \alpha \left(\frac{\lVert b \rVert_2^2}{s_y^2}
        + \lVert g \rVert_2^2\right),
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
        Strength of the squared L2 penalty on the slopes of both linear
        predictors: the log-variance coefficients ``var_coef_`` and the mean
        coefficients ``coef_`` in units of :math:`s_y` (so that the fit stays
        scale-equivariant); intercepts are not penalised. Must be
        non-negative. The default is a negligible prior that makes the
        estimate unique when columns are collinear or outnumber the samples
        (with ``n_samples`` rows of unit-variance columns it moves the
        estimates by a fraction of order ``alpha / n_samples``). Like
        :class:`~sklearn.linear_model.Ridge`'s, it acts on coefficients in
        the units of the columns of ``X``: standardise them (for example
        with :class:`~sklearn.preprocessing.StandardScaler` in a pipeline)
        for one ``alpha`` to suit all of them.
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
        analytic gradient. ``"auto"`` uses Newton for up to 300 coefficients
        (mean and log-variance together) and L-BFGS beyond.
    max_iter : int, default=200
        Maximum number of solver iterations.
    tol : float, default=1e-10
        Convergence tolerance on the largest gradient entry of the objective
        divided by the sum of the weights, in standardised units.
    warm_start : bool, default=False
        Start from the previous solution when refitting, instead of the
        two-step start.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Coefficients :math:`b` of the mean.
    intercept_ : float
        Intercept :math:`b_0` of the mean (0.0 if ``fit_intercept=False``).
    var_coef_ : ndarray of shape (n_features,)
        Coefficients :math:`g` of the log-variance, exactly 0.0 for columns
        not in ``variance_features``.
    var_intercept_ : float
        Intercept :math:`g_0` of the log-variance.
    n_iter_ : int
        Number of solver iterations, counting the start as one.
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
    noise is that small. Because :math:`\tau^2` and the penalty on
    :math:`b` scale with :math:`s_y^2`, multiplying ``y`` by :math:`c`
    multiplies ``coef_`` and ``intercept_`` by :math:`c`, adds :math:`2
    \log |c|` to ``var_intercept_`` and leaves ``var_coef_`` unchanged.

    When least squares fits every row to within :math:`10^{-3} \tau`
    (noiseless data, or ``n_features >= n_samples``), the minimum is known
    and returned without iterating: the least-squares mean (if it is not
    unique, the one with the smallest :math:`\lVert b \rVert`, which the
    penalty selects), ``var_coef_ = 0`` and a variance of :math:`\tau^2`
    plus the mean squared residual.

    **Solving.** The objective is evaluated on ``y`` and the columns of
    ``X`` standardised internally (so ``|y|`` up to ``1e300`` works), with
    the derivatives of the Gaussian loss with respect to :math:`(\mu, \log
    \sigma^2)` chained through the two designs: per row, a 2x2 block
    :math:`s_i [[1, r_i], [r_i, (r_i^2 + \tau^2) / 2]] / \sigma_i^2`, so
    :math:`H_{bb} = X^\top \operatorname{diag}(s / \sigma^2) X`,
    :math:`H_{bg} = X^\top \operatorname{diag}(s r / \sigma^2) Z` and
    :math:`H_{gg} = \frac12 Z^\top \operatorname{diag}(s (r^2 + \tau^2) /
    \sigma^2) Z`, with a column of ones appended to :math:`X` and :math:`Z`
    for the intercepts, plus the penalty. The problem is not convex; it is
    started where it is well behaved: least squares for the mean, then
    Harvey's (1976) two-step estimate of the log-variance (least squares of
    :math:`\log(r_i^2 + \tau^2)` on :math:`z_i`, plus :math:`1.2704 =
    -E[\log \chi^2_1]` on the intercept), from which a trust-region Newton
    method, safe with an indefinite Hessian, reaches the joint maximum of
    the likelihood.

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
    >>> lower, upper = model.predict_interval([[1.0]], coverage=0.9)
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
    }

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
    ):
        self.variance_features = variance_features
        self.alpha = alpha
        self.variance_floor = variance_floor
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start

    def fit(self, X, y, sample_weight=None):
        """Fit the mean and the log-variance by maximum likelihood.

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
        var_cols = self._variance_columns(n_features)
        # Solve for y_std = (y - y_offset) / y_scale: the mean coefficients
        # scale with y_scale, the log-variance intercept shifts by
        # 2 log y_scale, and nothing else changes. y_scale is s_y, the unit
        # of the floor and of the penalty on the mean.
        y_offset, y_scale = _mean_and_spread(y, sample_weight, self.fit_intercept)
        y_std = (y - y_offset) / y_scale
        # Public objective = S * (mean loss + l2 / 2 (||b_std||^2 + ||g||^2))
        # + constant, with b_std = b / y_scale the mean slopes for y_std.
        l2 = 2.0 * self.alpha / sample_weight.sum()

        ls_objective, start_objective, _ = self._least_squares_start(
            X, y_std, sample_weight, self.fit_intercept, l2
        )
        stats = ls_objective.column_stats
        objective = self._likelihood_objective(
            X, y_std, sample_weight, var_cols, l2, stats
        )
        mean_coef = self._min_norm_least_squares(start_objective, stats)
        # Least-squares residuals on the rows the start used (a subsample for
        # large n): a start need not be exact.
        residuals = start_objective.y - start_objective.raw_prediction(mean_coef)[:, 0]
        exact_variance = self._exact_fit_variance(
            ls_objective, mean_coef, residuals, start_objective.sample_weight
        )
        if exact_variance is not None:
            # Every row is fitted exactly: the optimum is known (see Notes),
            # and a Newton method on curvatures of order 1 / tau^2 could only
            # blur the minimum-norm direction that the penalty selects.
            ((w, b),) = ls_objective.unstandardize(mean_coef)
            g = np.zeros(n_features if var_cols is None else var_cols.size)
            g0 = float(np.log(exact_variance))
            n_iter = 0
        else:
            warm = self._warm_params(var_cols, y_offset, y_scale)
            if warm is not None:
                coef0 = objective.standardize(warm)
            else:
                var_coef = self._harvey_start(
                    start_objective.X,
                    residuals,
                    start_objective.sample_weight,
                    var_cols,
                    l2,
                    stats,
                )
                coef0 = np.concatenate([mean_coef, var_coef])
            solver = _solvers.choose_solver(self.solver, objective.n_coef)
            # A trial point far from the optimum can overflow exp(-v) on a
            # high-leverage row; its objective is then infinite (see the
            # loss) and the solver rejects it, so arithmetic warnings are
            # noise.
            with np.errstate(over="ignore", invalid="ignore"):
                result = _solvers.minimize(
                    objective, coef0, solver, self.max_iter, self.tol
                )
            (w, b), (g, g0) = objective.unstandardize(result.coef)
            n_iter = result.n_iter

        self._set_linear_coef(w * y_scale, b * y_scale + y_offset)
        self.var_coef_ = np.zeros(n_features)
        self.var_coef_[slice(None) if var_cols is None else var_cols] = g
        self.var_intercept_ = float(g0 + 2.0 * np.log(y_scale))
        # The start counts as the first iteration.
        self.n_iter_ = n_iter + 1
        return self

    def _min_norm_least_squares(self, start_objective, stats):
        """Weighted least squares on the start's rows, minimum-norm if not unique.

        Among all least-squares fits, the one with the smallest ``||w||`` in
        the units of the columns of ``X`` (the intercept free): the limit of
        ridge fits as the penalty vanishes, which is what the objective's
        ridge selects when the columns are collinear or outnumber the rows.
        Returned in the standardised coordinates ``stats``.
        """
        objective = LinearObjective(
            FixedScaleLoss(SquaredRho()),
            start_objective.X,
            start_objective.y,
            start_objective.sample_weight,
            [(None, self.fit_intercept)],
            [0.0],
            column_stats=stats,
        )
        _, grad, hess = objective.loss_gradient_hessian(np.zeros(objective.n_coef))
        scale = stats[1]
        p = scale.size
        # Normal equations M u = h in u = c / D, whose slopes are in the
        # units of X, solved for the minimum-norm u.
        D = np.append(scale, 1.0) if self.fit_intercept else scale
        M = hess * np.outer(D, D)
        h = -grad * D
        if self.fit_intercept:
            # Eliminate the (unpenalised) intercept: the Schur complement is
            # the weighted Gram matrix of the centred columns.
            a, m = M[:p, p], M[p, p]
            w = min_norm_solve(M[:p, :p] - np.outer(a, a) / m, h[:p] - a * (h[p] / m))
            u = np.append(w, (h[p] - a @ w) / m)
        else:
            u = min_norm_solve(M, h)
        return D * u

    def _exact_fit_variance(self, ls_objective, mean_coef, residuals, start_weight):
        """``tau^2 + mean r^2`` if least squares fits every row exactly, else None.

        Exactly means within ``1e-3 tau`` on every row of positive weight,
        checked on the start's rows and then on all rows.
        """
        if not self.variance_floor > 0:  # no floor: the minimum may not exist
            return None
        tolerance = _EXACT_FIT_RELATIVE * np.sqrt(self.variance_floor)
        if not np.all(np.abs(residuals[start_weight > 0]) <= tolerance):
            return None
        sample_weight = ls_objective.sample_weight
        if ls_objective.y.size != residuals.size:  # the start was a subsample
            residuals = ls_objective.y - ls_objective.raw_prediction(mean_coef)[:, 0]
            if not np.all(np.abs(residuals[sample_weight > 0]) <= tolerance):
                return None
            start_weight = sample_weight
        mean_square = start_weight @ residuals**2 / start_weight.sum()
        return self.variance_floor + mean_square

    def _likelihood_objective(self, X, y_std, sample_weight, var_cols, l2, stats):
        """The penalised, jittered Gaussian NLL of ``y_std`` as a LinearObjective.

        Two predictors, the mean on all columns and the log-variance on
        ``var_cols`` (always with an intercept), both slopes penalised by
        ``l2``, in the standardised coordinates ``stats``.
        """
        loss = (
            _JitteredGaussianNLLLoss(self.variance_floor)
            if self.variance_floor > 0
            else GaussianNLLLoss()
        )
        return LinearObjective(
            loss,
            X,
            y_std,
            sample_weight,
            [(None, self.fit_intercept), (var_cols, True)],
            [l2, l2],
            column_stats=stats,
        )

    def _variance_columns(self, n_features):
        """``variance_features`` as sorted column indices, or None for all."""
        selection = self.variance_features
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
            names = getattr(self, "feature_names_in_", None)
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

    def _harvey_start(self, X, residuals, sample_weight, var_cols, l2, stats):
        """Harvey's two-step log-variance: least squares of log(r^2 + tau^2).

        ``E[log r^2] = log sigma^2 - 1.2704`` for Gaussian residuals, hence
        the shift of the intercept. ``tau^2`` keeps the logarithm finite for
        rows fitted exactly, where the jittered likelihood is smallest at
        ``log tau^2``; with no floor, the smallest positive float does that.
        """
        floor = self.variance_floor if self.variance_floor > 0 else 1e-300
        log_r2 = np.log(residuals * residuals + floor)
        objective = LinearObjective(
            FixedScaleLoss(SquaredRho()),
            X,
            log_r2,
            sample_weight,
            [(var_cols, True)],
            [l2],
            column_stats=stats,
        )
        _, grad, hess = objective.loss_gradient_hessian(np.zeros(objective.n_coef))
        coef = min_norm_solve(hess, -grad)
        coef[-1] += HARVEY_OFFSET
        return coef

    def _warm_params(self, var_cols, y_offset, y_scale):
        """Previous ``[(b, b0), (g, g0)]`` in standardised y units, or None."""
        if not (self.warm_start and hasattr(self, "coef_")):
            return None
        if self.coef_.shape != (self.n_features_in_,):
            return None
        b0 = (self.intercept_ - y_offset) / y_scale if self.fit_intercept else 0.0
        g = self.var_coef_ if var_cols is None else self.var_coef_[var_cols]
        g0 = self.var_intercept_ - 2.0 * np.log(y_scale)
        return [(self.coef_ / y_scale, b0), (g, g0)]

    def _mean_log_variance(self, X):
        check_is_fitted(self)
        X = validate_data(
            self, X, accept_sparse=_ACCEPT_SPARSE, dtype="numeric", reset=False
        )
        mean = safe_sparse_dot(X, self.coef_) + self.intercept_
        log_variance = safe_sparse_dot(X, self.var_coef_) + self.var_intercept_
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
        y_mean : ndarray of shape (n_samples,)
            ``X @ coef_ + intercept_``.
        y_std : ndarray of shape (n_samples,)
            ``exp((X @ var_coef_ + var_intercept_) / 2)``; only returned
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
        lower : ndarray of shape (n_samples,)
            ``mean - q * std`` with ``q`` the ``(1 + coverage) / 2``
            quantile of the standard normal.
        upper : ndarray of shape (n_samples,)
            ``mean + q * std``.
        """
        if not (isinstance(coverage, Real) and 0 < coverage < 1):
            raise ValueError(f"coverage must be in (0, 1), got {coverage!r}.")
        mean, std = self.predict(X, return_std=True)
        half_width = norm.ppf(0.5 + 0.5 * coverage) * std
        return mean - half_width, mean + half_width

    def log_likelihood(self, X, y, sample_weight=None):
        r"""Mean Gaussian log-likelihood of ``y`` under the fitted model.

        :math:`\sum_i s_i \log \phi(y_i; \mu_i, \sigma_i^2) / \sum_i s_i`,
        including the constant :math:`-\frac12 \log 2\pi` (and without the
        ``variance_floor`` term, which is part of fitting, not of the model).
        ``score`` remains the :math:`R^2` of the mean.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.
        y : array-like of shape (n_samples,)
            Observed targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        float
            Weighted mean log-likelihood per sample.
        """
        mean, log_variance = self._mean_log_variance(X)
        y = column_or_1d(y).astype(np.float64)
        check_consistent_length(mean, y)
        sample_weight = _check_sample_weight(
            sample_weight, mean, dtype=np.float64, ensure_non_negative=True
        )
        # r / sigma first, so that |r| up to 1e300 does not overflow r**2.
        z = (y - mean) * np.exp(-0.5 * np.clip(log_variance, -_MAX_LOG_VARIANCE, None))
        with np.errstate(over="ignore"):
            per_sample = -0.5 * (z * z + log_variance + _LOG_2PI)
        return float(np.average(per_sample, weights=sample_weight))
