"""LogCoshRegressor: a twice-differentiable Huber."""

from numbers import Real

from sklearn.utils._param_validation import Interval

from ._mestimator import MEstimatorRegressor
from .losses import LogCoshRho


class LogCoshRegressor(MEstimatorRegressor):
    r"""Linear regression with the log-cosh loss, robust to outliers in ``y``.

    Minimises, over the coefficients ``w``, the intercept ``b`` and (with
    ``scale="joint"``) the residual scale :math:`\sigma > 0`,

    .. math::

        \sum_i s_i \, \sigma \left(1 + 2\rho_\delta\!\left(
            \frac{y_i - x_i^\top w - b}{\sigma}\right)\right)
        + \alpha \lVert w \rVert_2^2,
        \qquad \rho_\delta(z) = \delta^2 \log\cosh(z / \delta),

    Huber's jointly convex concomitant-scale objective with the log-cosh
    function in place of Huber's. With a fixed or MAD scale the objective is
    :math:`\sum_i s_i \sigma^2 \rho_\delta(r_i / \sigma) + \alpha
    \lVert w \rVert^2 = \sum_i s_i \delta^2\sigma^2 \log\cosh(r_i /
    (\delta\sigma)) + \alpha \lVert w \rVert^2`; ``scale=1.0`` therefore
    minimises :math:`\sum_i s_i \log\cosh(r_i/\delta)` when ``alpha=0``.

    :math:`\rho_\delta` behaves like :math:`z^2/2` for :math:`|z| \ll
    \delta` and like :math:`\delta |z|` for :math:`|z| \gg \delta`, like
    Huber's function, but is infinitely differentiable
    (:math:`\rho' = \delta\tanh(z/\delta)`, :math:`\rho'' =
    \operatorname{sech}^2(z/\delta)`), which suits second-order solvers. It is
    evaluated in a form that cannot overflow for residuals up to ``1e300``.

    Parameters
    ----------
    delta : float, default=1.0
        Transition point, in units of the residual scale, between the
        quadratic and linear regimes; in ``(0, 1e100]``, and above
        ``1 / sqrt(2 log 2) ~ 0.849`` with ``scale="joint"``. Larger values
        approach least squares.
    scale : {"joint", "mad", "lad"} or float, default="joint"
        How the residual scale is obtained: ``"joint"`` estimates it with the
        coefficients as one convex problem; ``"mad"`` is the fixed point of
        ``sigma = median(|r|) / 0.6745``; ``"lad"`` fixes it at the
        normalised MAD, about their median, of the residuals of a smoothed
        least-absolute-deviation fit (the absolute loss smoothed with a
        Gaussian kernel of bandwidth ``sigma / 2``: a fixed point in
        ``sigma``; the exact LAD fit's residuals with at most two rows per
        coefficient; see the user guide), for a fit bounded up to half the
        targets wrong; a positive float fixes it, in the units of ``y``.
    alpha : float, default=0.0
        Strength of the squared L2 penalty on ``coef_``; must be
        non-negative. The default is no penalty, so that the fit is
        scale-equivariant.
    fit_intercept : bool, default=True
        Whether to fit an intercept.
    solver : {"auto", "newton", "lbfgs"}, default="auto"
        ``"newton"`` is scipy's trust-region Newton method on the analytic
        Hessian; ``"lbfgs"`` is scipy's L-BFGS-B on the analytic gradient,
        finished by Newton's method where it has not converged after 100
        iterations and a Hessian is affordable (rows times squared
        coefficients at most 4e9). ``"auto"`` uses Newton for up to 298
        features (300 coefficients) and L-BFGS beyond.
    max_iter : int, default=200
        Maximum number of solver iterations of the whole fit (every
        fixed-scale fit of ``scale="mad"`` included; the smoothed LAD fits
        of ``scale="lad"`` have a budget of their own): ``n_iter_ <=
        max_iter``.
    tol : float, default=1e-10
        Convergence tolerance on the largest gradient entry of the objective
        divided by the sum of the weights, in standardised units.
    warm_start : bool, default=False
        Start from the previous solution when refitting.
    cov_type : {"H1", "H2", "H3", "mass", "sandwich"} or None, default=None
        Standard errors to compute with the fit; see
        :class:`MEstimatorRegressor` and the user guide's Inference page.
    verbose : int, default=0
        0 prints nothing; 1 a line per output and per solve (rows,
        iterations, largest gradient entry, elapsed time); 2 also a line per
        solver iteration.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Coefficients (one row per column of a 2-D ``y``).
    intercept_ : float or ndarray of shape (n_targets,)
        Intercept (0.0 if ``fit_intercept=False``).
    scale_ : float or ndarray of shape (n_targets,)
        The residual scale ``sigma`` that ``delta`` is measured in, in the
        units of ``y``. With ``scale="mad"`` or ``"lad"`` it estimates the
        noise standard deviation at Gaussian noise; the joint scale is
        smaller (about 0.68 standard deviations at Huber's default delta):
        see ``noise_scale_``.
    noise_scale_ : float or ndarray of shape (n_targets,)
        A robust estimate of the noise standard deviation for every scale
        option: ``median |r| / 0.6745`` of the weighted training residuals.
    outliers_ : ndarray of shape (n_samples,) or (n_samples, n_targets) of bool
        Training samples whose residual exceeds ``2.5 * noise_scale_``:
        about 1.2% of Gaussian noise, and every error beyond 10 noise
        standard deviations. (scikit-learn's ``HuberRegressor`` flags
        ``|r| > epsilon * scale_``, about a third of clean Gaussian rows.)
    weights_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        IRLS weights ``psi(z) / z`` at the solution, ``z = r / scale_``
        (statsmodels' ``RLM.weights``).
    n_iter_ : int or ndarray of shape (n_targets,)
        Number of solver iterations, at most ``max_iter`` (starts are not
        iterations; a warm start at the solution takes 0).
    cov_ : ndarray of shape (n_params, n_params)
        Covariance of ``[intercept, coef...]`` (only with ``cov_type``).
    coef_se_ : ndarray of shape (n_features,)
        Standard errors of ``coef_`` (only with ``cov_type``).
    intercept_se_ : float
        Standard error of ``intercept_`` (only with ``cov_type`` and
        ``fit_intercept``).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column
        names.

    See Also
    --------
    HuberRegressor : The piecewise quadratic-linear loss.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust import LogCoshRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2))
    >>> y = X @ [1.0, -2.0] + 0.5 + 0.1 * rng.normal(size=200)
    >>> y[:20] += 50.0  # gross outliers
    >>> np.round(LogCoshRegressor().fit(X, y).coef_, 1)
    array([ 1., -2.])
    """

    # delta**2 multiplies the loss: beyond 1e100 it would overflow, and the
    # fit is least squares long before.
    _parameter_constraints: dict = {
        **MEstimatorRegressor._parameter_constraints,
        "delta": [Interval(Real, 0, 1e100, closed="right")],
    }

    def __init__(
        self,
        delta=1.0,
        *,
        scale="joint",
        alpha=0.0,
        fit_intercept=True,
        solver="auto",
        max_iter=200,
        tol=1e-10,
        warm_start=False,
        cov_type=None,
        verbose=0,
    ):
        self.delta = delta
        self.scale = scale
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.cov_type = cov_type
        self.verbose = verbose

    def _rho(self):
        return LogCoshRho(self.delta)
