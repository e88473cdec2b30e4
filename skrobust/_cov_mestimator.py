r"""Covariance of a regression M-estimator's coefficients.

For coefficients :math:`\hat\beta` (intercept first) that solve
:math:`\sum_i s_i \psi(r_i / \sigma) \tilde x_i = 0`, with
:math:`\tilde x_i = (1, x_i)`, residual scale :math:`\sigma`,
:math:`z_i = r_i / \sigma`, frequency weights :math:`s_i`,
:math:`n = \sum_i s_i` and :math:`p` the number of coefficients, write

.. math::

    m = \frac1n \sum_i s_i \psi'(z_i), \quad
    v = \frac1n \sum_i s_i (\psi'(z_i) - m)^2, \quad
    \kappa = 1 + \frac{p}{n} \frac{v}{m^2}, \quad
    \hat\tau^2 = \frac{\sigma^2}{n - p} \sum_i s_i \psi(z_i)^2,

.. math::

    G = \sum_i s_i \tilde x_i \tilde x_i^\top, \quad
    W = \sum_i s_i \psi'(z_i) \tilde x_i \tilde x_i^\top, \quad
    M = \sum_i s_i \psi(z_i)^2 \tilde x_i \tilde x_i^\top.

Huber's (1981, section 7.6) three estimates of the covariance, exactly as
statsmodels ``RLM(...).fit(cov=...)`` computes them, are

.. math::

    H1 = \kappa^2 \frac{\hat\tau^2}{m^2} G^{-1}, \quad
    H2 = \kappa \frac{\hat\tau^2}{m} W^{-1}, \quad
    H3 = \kappa^{-1} \hat\tau^2 W^{-1} G W^{-1}.

They assume errors independent of :math:`x` (the same distribution in every
row). R's ``MASS::summary.rlm`` (its default ``method="XtX"``) reports
:math:`H1` with :math:`v` divided by :math:`n - 1` instead of :math:`n`
(``var()`` in R); that is ``cov_type="mass"``. With frequency weights R
(``wt.method="case"``) and this module agree.

The heteroscedasticity-robust ``"sandwich"`` is

.. math::

    \frac{n}{n - p} \, \sigma^2 \, W^{-1} M W^{-1},

the HC1-type small-sample factor :math:`n / (n - p)` times the sandwich of
the estimating equations (HC0, what R's ``sandwich::sandwich`` gives for an
``rlm`` fit). It treats :math:`\sigma` as fixed, which is exact for a fixed
scale and asymptotically valid for the MAD scale when the errors are
symmetric. For the jointly estimated scale (``joint=True``, the concomitant
objective :math:`\sum_i s_i \sigma (1 + 2\rho(z_i))`) it is the sandwich
:math:`A^{-1} B A^{-1}` of the full M-estimator in :math:`\theta = (\beta,
\log\sigma)`, with :math:`A` the Hessian of the objective and :math:`B =
\sum_i s_i g_i g_i^\top` the outer products of the per-row gradients
:math:`g_i = (-2\psi(z_i) \tilde x_i, \sigma (1 - 2 (z_i \psi(z_i) -
\rho(z_i))))`, restricted to :math:`\beta` and multiplied by
:math:`n / (n - p)`.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import safe_sparse_dot

from ._column_stats import merge_moments
from ._inference import (
    _ALGEBRAIC_CENTRING_MAX_RATIO,
    block_grams,
    design_center,
    inverse_symmetric,
    single_threaded_blas,
    uncentre,
)
from .losses import LogCoshRho

COV_TYPES = ("H1", "H2", "H3", "mass", "sandwich")


@single_threaded_blas
def mestimator_covariance(
    X,
    residuals,
    sample_weight,
    rho,
    scale,
    *,
    fit_intercept=True,
    cov_type="H1",
    joint=False,
    curvature=None,
):
    r"""Covariance of ``[intercept, coef...]`` of a regression M-estimator.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Design (not copied; sparse stays sparse).
    residuals : ndarray of shape (n_samples,) or FitResiduals
        ``y - X @ coef - intercept`` at the fit; as :class:`FitResiduals`
        they are formed in the covariance's pass over ``X``.
    sample_weight : ndarray of shape (n_samples,) or None
        Frequency weights: a weight of 2 counts as a repeated row.
    rho : skrobust.losses.ResidualFunction
        The residual function: an object with ``value``, ``derivative``
        and ``second_derivative`` of ``z`` (fused ``value_derivatives`` and
        ``concomitant_terms`` are used when present).
    scale : float
        Residual scale :math:`\sigma` (``scale_``), in the units of ``y``.
    fit_intercept : bool, default=True
        Whether the first parameter is an intercept.
    cov_type : {"H1", "H2", "H3", "mass", "sandwich"}, default="H1"
        See the module docstring: Huber's H1-H3 as statsmodels ``RLM``,
        ``"mass"`` as R's ``MASS::summary.rlm``, ``"sandwich"``
        heteroscedasticity-robust.
    joint : bool, default=False
        Whether the scale was estimated jointly with the coefficients
        (``scale="joint"``): the sandwich then comes from the joint
        estimating equations of coefficients and ``log sigma``. Has no
        effect on H1-H3 and ``"mass"``, which treat the scale as given.
    curvature : SolverCurvature, default=None
        :math:`W` at an iterate of the fit's solve (its last Hessian, see
        :func:`joint_fit_curvature`): where :math:`\psi'` is 0 or 1
        (Huber's), :math:`W` at the fit is that one corrected by the few
        rows that crossed the threshold since, which saves a Gram matrix.

    Returns
    -------
    ndarray of shape (n_params, n_params)
        Covariance in the units of ``y``, intercept first. A scale of zero
        (an exact fit) gives zeros when every weighted residual is zero, NaN
        otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.losses import HuberRho
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(5000, 1))
    >>> residuals = rng.normal(size=5000)  # scale 1, Huber's 95% efficiency:
    >>> cov = mestimator_covariance(X, residuals, None, HuberRho(1.345), 1.0)
    >>> np.round(np.sqrt(np.diag(cov)), 4)  # about 1 / sqrt(0.95 * 5000)
    array([0.0143, 0.0144])
    """
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {COV_TYPES}, got {cov_type!r}.")
    # Centred coordinates: see skrobust._inference.design_center (those of
    # the solver's Hessian when it is reused).
    if curvature is not None:
        center = curvature.center
    else:
        center = design_center(X, fit_intercept)
    options = {"fit_intercept": fit_intercept, "cov_type": cov_type, "joint": joint}
    sums = covariance_sums(
        X,
        residuals,
        sample_weight,
        rho,
        scale,
        center=center,
        curvature=curvature,
        **options,
    )
    cov = combine_covariance_sums([sums], scale, cov_type=cov_type, joint=joint)
    return uncentre(cov, center)


def covariance_sums(
    X,
    residuals,
    sample_weight,
    rho,
    scale,
    *,
    fit_intercept,
    cov_type,
    joint,
    center=None,
    curvature=None,
):
    r"""The sums over rows that :func:`mestimator_covariance` is made of.

    Every estimate of the module is a function of sums over the rows:
    Gram matrices such as :math:`G` and :math:`W`, and scalars such as
    :math:`n` and :math:`\sum_i s_i \psi(z_i)^2`. Summed over any partition
    of the rows (chunks of a Dask array, say) and combined by
    :func:`combine_covariance_sums`, they give the covariance of all rows;
    over all rows at once, exactly :func:`mestimator_covariance`. The
    spread of :math:`\psi'` enters as the chunk's weighted mean and sum of
    squared deviations, which combine stably (Chan, Golub and LeVeque).

    Parameters are those of :func:`mestimator_covariance` (``cov_type`` and
    ``joint`` decide which sums are formed), and ``center``: the sums are
    those of ``[1, X - center]`` (see
    :func:`skrobust._inference.design_center`), whose combined covariance
    :func:`skrobust._inference.uncentre` maps back, and ``curvature`` (a
    :class:`SolverCurvature` in the coordinates of ``center``; only over
    all rows at once).

    Returns
    -------
    dict
        ``n`` (the weight sum) and the sums of ``cov_type``: ``grams``
        (ndarray of Gram matrices, intercept first), and for H1-H3 and
        ``"mass"`` ``dpsi_mean``, ``dpsi_squares`` and ``psi_squares``; for
        the joint sandwich ``cross`` (its two bordering columns) and
        ``corners``. With a scale that is not positive, only ``n``,
        ``n_params`` and ``exact`` (whether every weighted residual is zero).
    """
    residuals = _residual_source(residuals)
    sample_weight = _unit_weights_as_none(sample_weight)
    n = float(residuals.size if sample_weight is None else sample_weight.sum())
    if not scale > 0:
        values = residuals.formed()
        fitted = values if sample_weight is None else values[sample_weight > 0]
        n_params = X.shape[1] + (1 if fit_intercept else 0)
        return {"n": n, "exact": bool(np.all(fitted == 0)), "n_params": n_params}
    if cov_type == "sandwich" and joint:
        return _joint_sandwich_sums(
            X, residuals, sample_weight, rho, scale, fit_intercept, center, curvature
        )
    needed = {"H1": "G", "mass": "G", "H2": "W", "H3": "GW", "sandwich": "WM"}
    rho_args = (rho, residuals, sample_weight, scale)
    plan = _BreadPlan.choose(rho_args, needed[cov_type], X, curvature)
    moments, psi_squares = [], [0.0]

    def weights_of_block(rows, block):
        r = residuals.of_block(rows, block)
        z = r / scale
        weight = None if sample_weight is None else sample_weight[rows]
        psi = np.asarray(rho.derivative(z), dtype=float)
        psi_squared = np.square(psi)
        dpsi = np.asarray(rho.second_derivative(z), dtype=float)
        plan.observe(rows, block, r, dpsi)
        psi_squares[0] += _weighted_sum(psi_squared, weight)
        if cov_type != "sandwich":
            total = z.size if weight is None else float(weight.sum())
            mean = _weighted_sum(dpsi, weight) / total if total > 0 else 0.0
            deviation = dpsi - mean
            squares = _weighted_sum(deviation * deviation, weight)
            moments.append({"n": total, "dpsi_mean": mean, "dpsi_squares": squares})
        return plan.weightings(weight, dpsi, psi), []

    grams, _ = block_grams(
        X, weights_of_block, plan.n_grams, 0, fit_intercept, center=center
    )
    residuals.passed()
    sums = {"n": n, "grams": plan.assemble(grams, X, fit_intercept, center)}
    if cov_type != "sandwich":
        sums["dpsi_mean"], sums["dpsi_squares"] = _combined_moments(moments)
        sums["psi_squares"] = psi_squares[0]
    return sums


def combine_covariance_sums(parts, scale, *, cov_type, joint):
    """The covariance from the :func:`covariance_sums` of a partition of the rows.

    Parameters
    ----------
    parts : list of dict
        :func:`covariance_sums` of each part (with the same ``scale``,
        ``cov_type`` and ``joint``).
    scale : float
        Residual scale in the units of ``y``.
    cov_type : str
    joint : bool

    Returns
    -------
    ndarray of shape (n_params, n_params)
        As :func:`mestimator_covariance`.
    """
    n = sum(part["n"] for part in parts)
    if not scale > 0:
        n_params = parts[0]["n_params"]
        exact = all(part["exact"] for part in parts)
        return np.full((n_params, n_params), 0.0 if exact else np.nan)
    grams = sum(part["grams"] for part in parts)
    n_params = grams.shape[-1]
    if not n > n_params:
        # No residual degrees of freedom (frequency weights summing to at
        # most the number of parameters, however many rows): no estimate.
        return np.full((n_params, n_params), np.nan)
    if cov_type == "sandwich" and joint:
        cross = sum(part["cross"] for part in parts)
        corners = sum(part["corners"] for part in parts)
        return _joint_sandwich(grams, cross, corners, n)
    if cov_type == "sandwich":
        w_gram, meat = grams
        w_inv = inverse_symmetric(w_gram)
        return n / (n - n_params) * scale**2 * (w_inv @ meat @ w_inv)
    mean, squares = _combined_moments(parts)
    psi_squares = sum(part["psi_squares"] for part in parts)
    return _huber_1981(grams, mean, squares, psi_squares, n, scale, cov_type)


def _combined_moments(parts):
    """Weighted mean and sum of squared deviations of ``psi'`` over all parts.

    :func:`skrobust._column_stats.merge_moments`; for one part its own values,
    unchanged.
    """
    moments = ((p["n"], p["dpsi_mean"], p["dpsi_squares"]) for p in parts)
    _, mean, squares = merge_moments(moments)
    return mean, squares


def _huber_1981(grams, m, dpsi_squares, psi_squares, n, scale, cov_type):
    """Huber's H1, H2, H3 (statsmodels ``RLMResults.bcov_scaled``), and MASS's H1."""
    n_params = grams.shape[-1]
    # statsmodels uses np.var (divisor n), R's summary.rlm var() (n - 1).
    divisor = n - 1.0 if cov_type == "mass" else n
    v = dpsi_squares / divisor
    kappa = 1.0 + n_params / n * v / m**2
    tau2 = scale**2 * psi_squares / (n - n_params)
    if cov_type in ("H1", "mass"):
        (gram,) = grams
        return kappa**2 * tau2 / m**2 * inverse_symmetric(gram)
    if cov_type == "H2":
        (w_gram,) = grams
        return kappa * tau2 / m * inverse_symmetric(w_gram)
    gram, w_gram = grams
    w_inv = inverse_symmetric(w_gram)
    return tau2 / kappa * (w_inv @ gram @ w_inv)


def _joint_sandwich_sums(
    X, residuals, sample_weight, rho, scale, fit_intercept, center, curvature=None
):
    r"""Sums of the sandwich of the concomitant objective in ``(beta, log sigma)``.

    Per row, with :math:`\chi = z\psi - \rho` (:class:`ConcomitantScaleLoss`):
    gradient :math:`(-2\psi \tilde x, \sigma(1 - 2\chi))` and Hessian
    blocks :math:`2\psi' / \sigma \, \tilde x \tilde x^\top`,
    :math:`2 z \psi' \tilde x` and :math:`\sigma (1 - 2\chi) + 2\sigma z^2
    \psi'`. Formed row block by row block in the pass over ``X`` of the two
    mean-mean blocks (:math:`W` and :math:`M`, see :class:`_BreadPlan`) and
    the two cross terms.
    """
    rho_args = (rho, residuals, sample_weight, scale)
    plan = _BreadPlan.choose(rho_args, "WM", X, curvature)
    corners = np.zeros(2)

    def weights_of_block(rows, block):
        r = residuals.of_block(rows, block)
        z = r / scale
        weight = None if sample_weight is None else sample_weight[rows]
        _, psi, dpsi, chi = _concomitant_terms(rho, z)
        plan.observe(rows, block, r, dpsi)
        grad_scale = np.multiply(chi, -2.0 * scale)
        grad_scale += scale
        z_dpsi, z2_dpsi = _curved_z(z, dpsi, weight)
        weighted_grad_scale = grad_scale if weight is None else weight * grad_scale
        corners[0] += _weighted_sum(grad_scale, weight) + 2.0 * scale * z2_dpsi
        corners[1] += float(weighted_grad_scale @ grad_scale)
        cross = [
            z_dpsi if weight is None else weight * z_dpsi,
            psi * weighted_grad_scale,
        ]
        return plan.weightings(weight, dpsi, psi), cross

    grams, cross = block_grams(
        X, weights_of_block, plan.n_grams, 2, fit_intercept, center=center
    )
    residuals.passed()
    grams = plan.assemble(grams, X, fit_intercept, center)
    grams[0] *= 2.0 / scale
    grams[1] *= 4.0
    cross[0] *= 2.0
    cross[1] *= -2.0
    n = float(residuals.size if sample_weight is None else sample_weight.sum())
    return {"n": n, "grams": grams, "cross": cross, "corners": corners}


@dataclass
class SolverCurvature:
    r""":math:`W` at an iterate of a fit's solve, for the covariance at the fit.

    ``w_gram`` is :math:`W_0 = \sum_i s_i \psi'(z_{0i}) \tilde x_i
    \tilde x_i^\top` of the design ``[1, X - center]`` (``center`` None:
    ``[1, X]``; without intercept ``X - center``), at the iterate's
    residuals :math:`r_0 = r + X \Delta w + \Delta b` (``r`` those of the
    fit, ``coef_change`` and ``intercept_change`` the fit's coefficients
    minus the iterate's) and scale ``scale``, in the units of ``y``.
    """

    w_gram: np.ndarray
    center: np.ndarray | None
    coef_change: np.ndarray
    intercept_change: float
    scale: float


def joint_fit_curvature(curvature, coef, intercept, y_offset, y_scale, total):
    r"""The :class:`SolverCurvature` of a joint-scale solve's last Hessian, or None.

    Parameters
    ----------
    curvature : tuple
        ``(objective, hessian, point)``: the concomitant objective of
        :class:`skrobust._scale.JointScale` (standardised units), its
        Hessian and the point where it was formed.
    coef, intercept : ndarray of shape (n_features,), float
        The fit, in the units of ``y``.
    y_offset, y_scale : float
        How ``y`` was standardised: ``y = y_offset + y_scale * y_std``.
    total : float
        The sum of the frequency weights (the number of rows without).

    Returns
    -------
    SolverCurvature or None
        None where reusing the Hessian could cost digits: a sparse design,
        or columns centred implicitly (``skrobust._objective``) with a
        mean beyond ``_ALGEBRAIC_CENTRING_MAX_RATIO`` standard deviations,
        whose cancellation the covariance's own Grams avoid.

    Notes
    -----
    In the objective's coordinates :math:`u_i = ((x_i - m) / d, 1)` the
    Hessian's coefficient block is :math:`\frac1S \sum_i \frac{s_i}{t}
    \frac{2\psi'(z_i)}{\sigma_0} u_i u_i^\top` (weights scaled to a
    largest :math:`t`, :math:`S t` the total weight, :math:`\sigma_0` the
    standardised scale), so :math:`W_0` of ``[1, X - m]`` is that block,
    intercept first, times :math:`S t \sigma_0 / 2` and by :math:`d` on
    both sides.
    """
    objective, hessian, point = curvature
    if objective.sparse or not np.all(np.isfinite(hessian)):
        return None
    ratio = np.abs(objective.mean) * objective.inv_scale
    if not objective.explicit_centering and np.any(
        ratio > _ALGEBRAIC_CENTRING_MAX_RATIO
    ):
        return None
    (w_std, b_std), (_, log_scale) = objective.unstandardize(point)
    scale_std = float(np.exp(log_scale))
    fit_intercept = objective.predictors[0].fit_intercept
    n_features = objective.X.shape[1]
    size = n_features + fit_intercept
    block = hessian[:size, :size]
    # Intercept first, as the covariances order the parameters.
    order = np.r_[n_features, :n_features] if fit_intercept else np.arange(size)
    spread = np.r_[1.0, objective.scale] if fit_intercept else objective.scale
    w_gram = block[np.ix_(order, order)] * np.outer(spread, spread)
    w_gram *= total * scale_std / 2.0
    center = objective.mean if fit_intercept else None
    iterate_intercept = y_offset + y_scale * b_std if fit_intercept else 0.0
    return SolverCurvature(
        w_gram,
        center,
        coef - y_scale * w_std,
        intercept - iterate_intercept,
        y_scale * scale_std,
    )


class _BreadPlan:
    r"""Which Grams one pass forms for :math:`W`, and how they give it.

    ``needed`` is ``"G"``, ``"W"``, ``"GW"`` (H3) or ``"WM"`` (the
    sandwiches). :math:`W = \sum_i s_i \psi'_i \tilde x_i \tilde x_i^\top`
    comes from one of

    ``"direct"``
        its own weighting (the rows it selects where :math:`\psi'` is 0 or
        1 without sample weights, see :func:`_curvature_weights`);
    ``"complement"``
        for H3 with such a :math:`\psi'` (Huber's), where at most half the
        rows have :math:`\psi' = 0`: :math:`W = G - C`, :math:`C` the Gram
        of those rows, gathered, and :math:`G` a plain product (no copy of
        ``X``): both for about the cost of :math:`W` alone;
    ``"psi squared"``
        for the sandwiches of log-cosh, whose :math:`\psi' = 1 - \psi^2 /
        \delta^2`: :math:`W = G - M / \delta^2`, from the :math:`M` they
        need and a plain :math:`G` (no weighted copy of ``X``), instead of
        two weighted Grams;
    ``"solver"``
        given the :class:`SolverCurvature` of the fit's solve and a
        :math:`\psi'` that is 0 or 1 (Huber's): :math:`W` at the fit is the
        solver's :math:`W_0` (formed at a nearby iterate) plus
        :math:`\sum_i s_i (\psi'_i - \psi'_{0i}) \tilde x_i \tilde
        x_i^\top` over the few rows that crossed the threshold since, found
        in the pass by one product of each block with the change of the
        coefficients; :math:`G = W + C` with :math:`C` the Gram of
        :math:`s_i (1 - \psi'_i)` (the rows beyond the threshold). So H2
        needs no Gram in the pass, H1 and H3 only :math:`C`, the sandwiches
        only :math:`M`.

    Such a difference errs by about :math:`\epsilon
    \sqrt{G_{jj} G_{kk}}` per entry, where :math:`W` formed directly errs by
    :math:`\epsilon \sqrt{W_{jj} W_{kk}}` at most; in the equilibrated
    units in which :func:`skrobust._inference.inverse_symmetric` inverts
    :math:`W` (divided by :math:`\sqrt{W_{jj} W_{kk}}`) that is a matrix of
    norm :math:`\epsilon \sum_j G_{jj} / W_{jj}`, which moves the inverse
    by that times the inverse's norm relative. The difference is kept when
    that bound, with a factor ``ROUNDING_GROWTH`` for sums of many terms,
    is below ``MAX_RELATIVE_ERROR``; else (most of a column's weight on
    rows in the tails, or an ill-conditioned :math:`W`) :math:`W` is formed
    directly, in a second pass. The solver's :math:`W_0` minus the rows
    that left it is held to the same test (and more than
    ``MAX_CROSSED_SHARE`` of the rows crossing means a second pass too).
    """

    SAMPLE_ROWS = 2048
    ROUNDING_GROWTH = 16.0
    MAX_RELATIVE_ERROR = 1e-12
    MAX_CROSSED_SHARE = 0.05
    N_GRAMS = {
        "direct": {"G": 1, "W": 1, "GW": 2, "WM": 2},
        "complement": {"GW": 2},
        "psi squared": {"WM": 2},
        "solver": {"G": 1, "W": 0, "GW": 1, "WM": 1},
    }

    def __init__(self, needed, kind, rho_args, psi_squared_coef=None, solver=None):
        self.needed = needed
        self.kind = kind
        self.rho_args = rho_args
        self.psi_squared_coef = psi_squared_coef
        self.n_grams = self.N_GRAMS[kind][needed]
        # The solver's curvature and the rows that crossed since: (rows,
        # change of s psi') per block.
        self.solver = solver
        self.crossed = []

    @classmethod
    def choose(cls, rho_args, needed, X=None, curvature=None):
        """The cheapest exact plan for ``rho`` at these residuals."""
        rho, residuals, sample_weight, scale = rho_args
        # (Exactly the class: a subclass may change psi.)
        if needed == "WM" and type(rho) is LogCoshRho:
            return cls(needed, "psi squared", rho_args, 1.0 / rho.delta**2)
        step = max(1, residuals.size // cls.SAMPLE_ROWS)
        dpsi = np.asarray(rho.second_derivative(residuals.strided(step) / scale))
        flat = dpsi == 0.0
        zero_one = bool(np.all(flat | (dpsi == 1.0)))
        # (H1's plain G is one product of the rows as they are, no cheaper
        # as W + C.)
        reuse = curvature is not None and needed != "G" and not sp.issparse(X)
        if zero_one and reuse:
            # The rows' products with the change of the coefficients, which
            # observe needs, formed with their residuals: one read of a
            # block for both.
            residuals.also_along(curvature.coef_change)
            return cls(needed, "solver", rho_args, solver=curvature)
        if needed == "GW" and sample_weight is None:
            if zero_one and flat.mean() <= 0.5:
                return cls(needed, "complement", rho_args)
        return cls(needed, "direct", rho_args)

    def observe(self, rows, block, residuals, dpsi):
        r"""Note the rows of a block whose ``psi'`` changed since the solver's iterate.

        ``block`` holds the rows ``rows`` of ``X`` (float64, not centred),
        ``residuals`` and ``dpsi`` their residuals and :math:`\psi'` at the
        fit.
        """
        if self.kind != "solver":
            return
        rho, source, sample_weight, _ = self.rho_args
        solver = self.solver
        # Residuals at the iterate, from the fit's: a small change added.
        then = source.along(rows, block, solver.coef_change)
        then += residuals
        if solver.intercept_change:
            then += solver.intercept_change
        then *= 1.0 / solver.scale
        dpsi_then = np.asarray(rho.second_derivative(then), dtype=float)
        differs = dpsi_then != dpsi
        if differs.any():
            crossed = np.flatnonzero(differs)
            change = dpsi[crossed] - dpsi_then[crossed]
            if sample_weight is not None:
                change = change * sample_weight[rows][crossed]
            self.crossed.append((crossed + rows.start, change))

    def weightings(self, weight, dpsi, psi):
        r"""The Gram weightings of a block of rows (``weight`` None: unit).

        The meat's, :math:`s \psi^2`, as the pair of scalings ``sqrt(s)
        psi`` (see :func:`skrobust._inference.block_grams`): no squares and
        square roots per row.
        """
        root = psi if weight is None else np.sqrt(weight) * psi
        meat = (root, root, 1.0)
        if self.kind == "psi squared":
            return [weight, meat]
        if self.kind == "solver":
            if self.needed == "WM":
                return [meat]
            beyond = _curvature_weights(1.0 - dpsi, weight)
            return [] if self.needed == "W" else [beyond]
        curvature = _curvature_weights(dpsi, weight)
        if self.kind == "complement":
            # (A block where psi' is not 0 or 1 gives G - C = W all the same.)
            return [None, ~curvature if curvature.dtype == bool else 1.0 - dpsi]
        layouts = {
            "G": [weight],
            "W": [curvature],
            "GW": [weight, curvature],
            "WM": [curvature, meat],
        }
        return layouts[self.needed]

    def assemble(self, grams, X, fit_intercept, center):
        """The Grams ``needed`` asks for, in its order."""
        if self.kind == "direct":
            return grams
        if self.kind == "solver":
            return self._assemble_from_solver(grams, X, fit_intercept, center)
        gram, other = grams
        subtrahend = (
            other if self.kind == "complement" else self.psi_squared_coef * other
        )
        w_gram = self._difference(gram, subtrahend)
        if w_gram is None:
            w_gram = self._direct_w(X, fit_intercept, center)
        if self.kind == "complement":
            return np.stack([gram, w_gram])
        return np.stack([w_gram, other])

    def _assemble_from_solver(self, grams, X, fit_intercept, center):
        """``needed`` from the solver's ``W``, corrected, and the pass's Gram."""
        w_gram = self._corrected_solver_w(X, fit_intercept, center)
        if w_gram is None:
            w_gram = self._direct_w(X, fit_intercept, center)
        if self.needed == "W":
            return w_gram[None]
        if self.needed == "WM":
            return np.stack([w_gram, grams[0]])
        # G = W + C, both positive semi-definite: no cancellation.
        gram = w_gram + grams[0]
        return gram[None] if self.needed == "G" else np.stack([gram, w_gram])

    def _corrected_solver_w(self, X, fit_intercept, center):
        """The solver's ``W`` plus the rows that crossed, or None if inexact."""
        crossed = [(np.empty(0, dtype=np.intp), np.empty(0)), *self.crossed]
        rows = np.concatenate([r for r, _ in crossed])
        change = np.concatenate([c for _, c in crossed])
        if rows.size > self.MAX_CROSSED_SHARE * X.shape[0]:
            return None
        design = np.asarray(X[rows], dtype=float)
        if center is not None:
            design = design - center
        if fit_intercept:
            design = np.hstack([np.ones((rows.size, 1)), design])
        entered, left = change > 0, change < 0
        added = (
            self.solver.w_gram
            + (design[entered].T * change[entered]) @ (design[entered])
        )
        if not np.any(left):
            return added
        removed = (design[left].T * -change[left]) @ design[left]
        return self._difference(added, removed)

    def _difference(self, gram, subtrahend):
        """``gram - subtrahend``, or None where that would lose digits."""
        difference = gram - subtrahend
        diagonal = np.diag(difference)
        if not np.all(diagonal > 0):
            return None
        size = np.sqrt(diagonal)
        smallest = np.linalg.eigvalsh(difference / np.outer(size, size))[0]
        bound = (
            self.ROUNDING_GROWTH
            * np.finfo(float).eps
            * np.sum(np.diag(gram) / diagonal)
            / smallest
        )
        if smallest > 0 and bound <= self.MAX_RELATIVE_ERROR:
            return difference
        return None

    def _direct_w(self, X, fit_intercept, center):
        """``W`` from its own weighting, in a pass of its own."""
        rho, residuals, sample_weight, scale = self.rho_args
        values = residuals.formed()

        def weights_of_block(rows, block):
            z = values[rows] / scale
            dpsi = np.asarray(rho.second_derivative(z), dtype=float)
            weight = None if sample_weight is None else sample_weight[rows]
            return [_curvature_weights(dpsi, weight)], []

        grams, _ = block_grams(X, weights_of_block, 1, 0, fit_intercept, center)
        return grams[0]


def _curvature_weights(dpsi, sample_weight):
    """Weights of ``W``: ``s psi'``, a boolean mask when that is 0 or 1.

    Huber's ``psi'`` is 1 on the rows within the threshold and 0 beyond:
    without sample weights its Gram is that of the rows it selects
    (:func:`skrobust._inference.block_grams`), for no weighted copy of
    ``X`` and no flops on the others.
    """
    if sample_weight is not None:
        return sample_weight * dpsi
    selected = dpsi == 1.0
    if np.all(selected | (dpsi == 0.0)):
        return selected
    return dpsi


class FitResiduals:
    """``y - X @ coef - intercept``, formed block by block in a covariance's pass.

    The residuals of a fit are what its covariance is made of, and what the
    estimator's other attributes (noise scale, outlier flags) need too:
    given to :func:`mestimator_covariance` as this object they are formed
    in its pass over ``X``, one read of ``X`` fewer than forming them
    first, and are :meth:`formed` afterwards.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    coef : ndarray of shape (n_features,)
    intercept : float
    """

    def __init__(self, X, y, coef, intercept):
        self.X, self.y = X, np.asarray(y, dtype=float)
        self.coef, self.intercept = np.asarray(coef, dtype=float), intercept
        self.size = self.y.size
        self._values = np.empty(self.size)
        self._complete = False
        # also_along's direction (and the coefficients beside it), and the
        # latest block's product with it.
        self._direction = self._pair = None
        self._along = None

    def also_along(self, direction):
        """Form each block's product with ``direction`` too, in the same product.

        :meth:`along` then returns it for the block just formed: one
        product of the block with two columns, which reads the block once
        (at 1e6 x 20 one matrix-vector product fewer, 4 ms).
        """
        self._direction = direction
        self._pair = np.column_stack([self.coef, np.asarray(direction, dtype=float)])

    def of_block(self, rows, block):
        """The residuals of rows ``rows`` (a slice), whose values are ``block``."""
        out = self._values[rows]
        self._along = None
        if sp.issparse(block) or block.dtype != np.float64:
            out[:] = safe_sparse_dot(block, self.coef)
        elif self._direction is not None:
            both = np.dot(block, self._pair)
            self._along = (rows, both[:, 1])
            np.subtract(self.y[rows], both[:, 0], out=out)
            out -= self.intercept
            return out
        else:
            np.dot(block, self.coef, out=out)
        np.subtract(self.y[rows], out, out=out)
        out -= self.intercept
        return out

    def along(self, rows, block, direction):
        """``block @ direction``, from :meth:`of_block`'s product if it formed it."""
        if (
            self._along is not None
            and self._along[0] == rows
            and direction is self._direction
        ):
            return self._along[1].copy()
        return safe_sparse_dot(block, direction)

    def strided(self, step):
        """The residuals of every ``step``-th row, without a pass."""
        fitted = safe_sparse_dot(self.X[::step], self.coef)
        return self.y[::step] - fitted - self.intercept

    def passed(self):
        """Mark every row formed (a pass of :func:`block_grams` went over all)."""
        self._complete = True

    def formed(self):
        """All residuals, formed now if no pass has."""
        if not self._complete:
            self.of_block(slice(None), self.X)
            self._complete = True
        return self._values


class _GivenResiduals:
    """Residuals given as an array, read as :class:`FitResiduals` forms them."""

    def __init__(self, values):
        self._values = np.asarray(values, dtype=float)
        self.size = self._values.size

    def of_block(self, rows, block):
        return self._values[rows]

    def also_along(self, direction):
        pass

    def along(self, rows, block, direction):
        return block @ direction

    def strided(self, step):
        return self._values[::step]

    def passed(self):
        pass

    def formed(self):
        return self._values


def _residual_source(residuals):
    """``residuals`` as :class:`FitResiduals` or :class:`_GivenResiduals`."""
    if isinstance(residuals, FitResiduals | _GivenResiduals):
        return residuals
    return _GivenResiduals(residuals)


def _unit_weights_as_none(sample_weight):
    """None for weights that are all 1 (what the estimators pass without any).

    Unweighted, Huber's ``W`` is the Gram of the rows it selects, gathered,
    and its complement that of the others (see :class:`_BreadPlan`): as
    weights they would be a weighted copy of every row.
    """
    if sample_weight is None or not np.all(sample_weight == 1.0):
        return sample_weight
    return None


def _weighted_sum(values, sample_weight):
    """``sum(s * values)``, the plain sum for unit weights."""
    return float(values.sum() if sample_weight is None else sample_weight @ values)


def _joint_sandwich(grams, cross, corners, n):
    """The beta block of ``n / (n - p) A^-1 B A^-1`` from the summed blocks."""
    (bread_mean, meat_mean), (cross_bread, cross_meat) = grams, cross
    bread = _bordered(bread_mean, cross_bread, float(corners[0]))
    meat = _bordered(meat_mean, cross_meat, float(corners[1]))
    bread_inv = inverse_symmetric(bread)
    n_params = bread_mean.shape[0]
    cov = n / (n - n_params) * (bread_inv @ meat @ bread_inv)
    return cov[:n_params, :n_params]


def _curved_z(z, dpsi, weight):
    r"""``z psi'`` and ``sum s z^2 psi'`` of a block (``weight`` None: unit).

    A row beyond the threshold has :math:`\psi' = 0` and no curvature,
    also where its ``z`` overflowed to infinity (``0 * inf`` would be NaN):
    only then, which the sum shows, are such rows masked (a masked copy of
    every block cost 4 ms at 1e6 rows).
    """
    with np.errstate(invalid="ignore"):
        z_dpsi = z * dpsi
        z2_dpsi = z_dpsi @ (z if weight is None else weight * z)
    if not np.isfinite(z2_dpsi):
        z_curved = np.where(dpsi > 0, z, 0.0)
        z_dpsi = z_curved * dpsi
        z2_dpsi = z_dpsi @ (z_curved if weight is None else weight * z_curved)
    return z_dpsi, z2_dpsi


def _value_derivatives(rho, z):
    """``(rho, psi, psi')`` at ``z``; fused when ``rho`` offers it."""
    if hasattr(rho, "value_derivatives"):
        return rho.value_derivatives(z)
    return rho.value(z), rho.derivative(z), rho.second_derivative(z)


def _concomitant_terms(rho, z):
    """``(rho, psi, psi', z psi - rho)``, from the three methods if need be."""
    if hasattr(rho, "concomitant_terms"):
        return rho.concomitant_terms(z)
    value, psi, dpsi = _value_derivatives(rho, z)
    return value, psi, dpsi, z * psi - value


def _bordered(block, column, corner):
    """``[[block, column], [column.T, corner]]``."""
    size = block.shape[0]
    out = np.empty((size + 1, size + 1))
    out[:size, :size] = block
    out[:size, size] = out[size, :size] = column
    out[size, size] = corner
    return out
