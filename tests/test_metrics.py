"""skrobust.metrics: values, combination rules, stability and validation.

Oracles: hand-written formulas evaluated naively where that is safe,
scikit-learn's own metrics where they overlap, scipy's normal distribution
and numerical integration, finite differences against the derivatives of
skrobust.losses, and scipy.optimize minimising a metric to recover what an
estimator fits. The scorers are tested in test_metrics_scorers.py.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from numpydoc.validate import validate as numpydoc_validate
from scipy import integrate, optimize
from scipy.stats import norm
from sklearn import metrics as sk_metrics

import skrobust.metrics
from skrobust import HeteroscedasticRegressor, HuberRegressor, LogCoshRegressor
from skrobust.losses import HuberRho, LogCoshRho
from skrobust.metrics import (
    crps_gaussian,
    gaussian_nll,
    interval_coverage,
    interval_score,
    mean_huber_loss,
    mean_interval_width,
    mean_log_cosh_error,
    mean_pinball_loss,
    mean_smooth_l1_loss,
    root_mean_squared_error,
)

RNG = np.random.default_rng(20261206)


def naive_huber(r, delta):
    return np.where(np.abs(r) <= delta, 0.5 * r**2, delta * np.abs(r) - 0.5 * delta**2)


def naive_smooth_l1(r, beta):
    # PyTorch's documented formula, strict inequality included.
    return np.where(np.abs(r) < beta, 0.5 * r**2 / beta, np.abs(r) - 0.5 * beta)


def naive_log_cosh(r, delta):
    return delta**2 * np.log(np.cosh(r / delta))


def naive_pinball(r, q):
    return np.where(r >= 0, q * r, (q - 1) * r)


# Each point metric with its keyword arguments and the naive per-sample
# formula of the residual y_true - y_pred.
POINT_METRICS = {
    "huber": (mean_huber_loss, {"delta": 0.7}, lambda r: naive_huber(r, 0.7)),
    "smooth_l1": (
        mean_smooth_l1_loss,
        {"beta": 1.5},
        lambda r: naive_smooth_l1(r, 1.5),
    ),
    "log_cosh": (mean_log_cosh_error, {"delta": 2.0}, lambda r: naive_log_cosh(r, 2.0)),
    "pinball": (mean_pinball_loss, {"quantile": 0.8}, lambda r: naive_pinball(r, 0.8)),
}


def targets(n=40, k=None):
    shape = (n,) if k is None else (n, k)
    y_true = RNG.normal(size=shape)
    y_pred = y_true + RNG.normal(scale=2.0, size=shape)
    return y_true, y_pred


# -- values -------------------------------------------------------------------


@pytest.mark.parametrize("name", POINT_METRICS)
def test_point_metrics_equal_their_formula(name):
    metric, kwargs, formula = POINT_METRICS[name]
    y_true, y_pred = targets()
    per_sample = metric(y_true, y_pred, reduction="none", **kwargs)
    assert_allclose(per_sample, formula(y_true - y_pred), rtol=1e-13, atol=1e-15)
    assert_allclose(metric(y_true, y_pred, **kwargs), np.mean(per_sample), rtol=1e-13)


def test_huber_and_log_cosh_values_are_those_of_skrobust_losses():
    y_true, y_pred = targets()
    r = y_true - y_pred
    # Bit for bit: one implementation, not two that agree to rounding.
    np.testing.assert_array_equal(
        mean_huber_loss(y_true, y_pred, delta=1.3, reduction="none"),
        HuberRho(1.3).value(r),
    )
    np.testing.assert_array_equal(
        mean_log_cosh_error(y_true, y_pred, delta=0.4, reduction="none"),
        LogCoshRho(0.4).value(r),
    )


def test_smooth_l1_is_huber_over_beta_and_tends_to_absolute_error():
    y_true, y_pred = targets()
    assert_allclose(
        mean_smooth_l1_loss(y_true, y_pred, beta=0.3),
        mean_huber_loss(y_true, y_pred, delta=0.3) / 0.3,
        rtol=1e-14,
    )
    assert_allclose(
        mean_smooth_l1_loss(y_true, y_pred, beta=0.0),
        sk_metrics.mean_absolute_error(y_true, y_pred),
        rtol=1e-14,
    )


@pytest.mark.parametrize("multioutput", ["raw_values", "uniform_average", [0.2, 0.8]])
@pytest.mark.parametrize("weighted", [False, True])
def test_pinball_and_rmse_equal_scikit_learns(multioutput, weighted):
    y_true, y_pred = targets(k=2)
    sample_weight = RNG.uniform(0.1, 2.0, size=len(y_true)) if weighted else None
    for q in (0.1, 0.5, 0.93):
        assert_allclose(
            mean_pinball_loss(
                y_true,
                y_pred,
                quantile=q,
                sample_weight=sample_weight,
                multioutput=multioutput,
            ),
            sk_metrics.mean_pinball_loss(
                y_true,
                y_pred,
                alpha=q,
                sample_weight=sample_weight,
                multioutput=multioutput,
            ),
            rtol=1e-13,
        )
    ours = root_mean_squared_error(
        y_true, y_pred, sample_weight=sample_weight, multioutput=multioutput
    )
    assert_allclose(
        ours,
        sk_metrics.root_mean_squared_error(
            y_true, y_pred, sample_weight=sample_weight, multioutput=multioutput
        ),
        rtol=1e-13,
    )
    squared = root_mean_squared_error(
        y_true, y_pred, sample_weight=sample_weight, multioutput="raw_values"
    )
    assert_allclose(
        squared**2,
        sk_metrics.mean_squared_error(
            y_true, y_pred, sample_weight=sample_weight, multioutput="raw_values"
        ),
        rtol=1e-13,
    )


def test_pinball_of_several_levels_is_each_level_on_its_column():
    y_true = RNG.normal(size=30)
    levels = [0.1, 0.5, 0.9]
    y_pred = norm.ppf(levels) + RNG.normal(scale=0.3, size=(30, 3))
    raw = mean_pinball_loss(y_true, y_pred, quantile=levels, multioutput="raw_values")
    expected = [
        sk_metrics.mean_pinball_loss(y_true, y_pred[:, j], alpha=q)
        for j, q in enumerate(levels)
    ]
    assert_allclose(raw, expected, rtol=1e-13)
    assert_allclose(mean_pinball_loss(y_true, y_pred, quantile=levels), np.mean(raw))
    # A 2-d y_true of the same shape gives the same values.
    y_wide = np.repeat(y_true[:, None], 3, axis=1)
    assert_allclose(
        mean_pinball_loss(y_wide, y_pred, quantile=levels, multioutput="raw_values"),
        raw,
    )
    per_sample = mean_pinball_loss(
        y_true, y_pred, quantile=levels, multioutput="raw_values", reduction="none"
    )
    assert per_sample.shape == (30, 3)


def test_rmse_reductions_act_on_squared_errors():
    y_true, y_pred = targets()
    w = RNG.uniform(0.5, 3.0, size=len(y_true))
    r = y_true - y_pred
    assert_allclose(
        root_mean_squared_error(y_true, y_pred, sample_weight=w, reduction="sum"),
        np.sqrt(np.sum(w * r**2)),
    )
    assert_allclose(
        root_mean_squared_error(y_true, y_pred, sample_weight=w, reduction="none"),
        np.sqrt(w) * np.abs(r),
    )


# -- derivatives --------------------------------------------------------------

# Each loss as a function of the residual, from the metric's per-sample
# values, with the first two derivatives skrobust.losses gives.
DERIVATIVE_CASES = {
    "huber": (
        lambda r: mean_huber_loss(r, np.zeros_like(r), delta=0.8, reduction="none"),
        HuberRho(0.8).derivative,
        HuberRho(0.8).second_derivative,
        0.8,
    ),
    "smooth_l1": (
        lambda r: mean_smooth_l1_loss(r, np.zeros_like(r), beta=1.7, reduction="none"),
        lambda r: HuberRho(1.7).derivative(r) / 1.7,
        lambda r: HuberRho(1.7).second_derivative(r) / 1.7,
        1.7,
    ),
    "log_cosh": (
        lambda r: mean_log_cosh_error(r, np.zeros_like(r), delta=2.5, reduction="none"),
        LogCoshRho(2.5).derivative,
        LogCoshRho(2.5).second_derivative,
        None,
    ),
}


@pytest.mark.parametrize("name", DERIVATIVE_CASES)
def test_first_two_derivatives_match_finite_differences(name):
    loss, first, second, kink = DERIVATIVE_CASES[name]
    r = np.linspace(-6, 6, 301)
    if kink is not None:  # keep the stencils off the kinks of the second derivative
        r = r[np.abs(np.abs(r) - kink) > 1e-3]
    h = 1e-5
    assert_allclose((loss(r + h) - loss(r - h)) / (2 * h), first(r), atol=1e-8)
    # The second difference of the values (not of a derivative method).
    h = 1e-4
    second_difference = (loss(r + h) - 2 * loss(r) + loss(r - h)) / h**2
    assert_allclose(second_difference, second(r), atol=1e-5)


@pytest.mark.parametrize(
    "estimator, metric",
    [
        (HuberRegressor(delta=1.2, scale=0.5), mean_huber_loss),
        (LogCoshRegressor(delta=1.5, scale=0.5), mean_log_cosh_error),
    ],
    ids=["huber", "log_cosh"],
)
def test_metric_is_what_the_estimator_minimises(estimator, metric):
    # With a fixed scale sigma, the estimators minimise the weighted sum of
    # the metric's loss with threshold delta * sigma: scipy.optimize on the
    # metric must find the same coefficients.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 2))
    y = X @ [1.0, -2.0] + 0.5 + rng.standard_t(2, size=120)
    w = rng.uniform(0.5, 2.0, size=120)
    estimator.fit(X, y, sample_weight=w)
    threshold = estimator.delta * estimator.scale

    def objective(theta):
        return metric(y, X @ theta[:2] + theta[2], delta=threshold, sample_weight=w)

    found = optimize.minimize(objective, np.zeros(3), method="BFGS", tol=1e-12).x
    assert_allclose(found[:2], estimator.coef_, atol=1e-5)
    assert_allclose(found[2], estimator.intercept_, atol=1e-5)


# -- combination rules ----------------------------------------------------------


def combine(losses, sample_weight, multioutput, reduction, one_output):
    """The documented rules, written with np.average on the loss matrix."""
    s = np.ones(len(losses)) if sample_weight is None else sample_weight
    if reduction == "none":
        reduced = losses * s[:, None]
    elif reduction == "sum":
        reduced = np.sum(losses * s[:, None], axis=0)
    else:
        reduced = np.average(losses, axis=0, weights=s)
    if isinstance(multioutput, str) and multioutput == "raw_values":
        return reduced[:, 0] if reduction == "none" and one_output else reduced
    weights = None if isinstance(multioutput, str) else multioutput
    return np.average(reduced, axis=-1, weights=weights)


@pytest.mark.parametrize("name", POINT_METRICS)
@pytest.mark.parametrize("k", [None, 1, 3])
@pytest.mark.parametrize("multioutput", ["raw_values", "uniform_average", "weights"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_multioutput_sample_weight_reduction(name, k, multioutput, weighted, reduction):
    metric, kwargs, formula = POINT_METRICS[name]
    y_true, y_pred = targets(n=25, k=k)
    losses = formula(y_true - y_pred).reshape(25, -1)
    sample_weight = RNG.uniform(0.0, 2.0, size=25) if weighted else None
    if multioutput == "weights":
        multioutput = RNG.uniform(0.1, 1.0, size=losses.shape[1])
    result = metric(
        y_true,
        y_pred,
        sample_weight=sample_weight,
        multioutput=multioutput,
        reduction=reduction,
        **kwargs,
    )
    expected = combine(losses, sample_weight, multioutput, reduction, k is None)
    assert np.shape(result) == np.shape(expected)
    if np.ndim(expected) == 0:
        assert isinstance(result, float)
    assert_allclose(result, expected, rtol=1e-12, atol=1e-15)
    if reduction == "none":  # the weighted per-sample values sum to "sum"
        total = metric(
            y_true,
            y_pred,
            sample_weight=sample_weight,
            multioutput=multioutput,
            reduction="sum",
            **kwargs,
        )
        assert_allclose(np.sum(result, axis=0), total, rtol=1e-12)


def test_output_weights_one_over_variance_standardise_the_outputs():
    # Weights w_k = 1 / s_k^2 (normalised by their sum) with thresholds
    # delta s_k give the loss of the outputs divided by s_k, with threshold
    # delta: the docs' rule for putting outputs of different units on one
    # scale. For the squared error no threshold is involved.
    n, s = 50, np.array([0.01, 1.0, 300.0])
    y_true = RNG.normal(size=(n, 3)) * s
    y_pred = y_true + RNG.standard_t(2, size=(n, 3)) * s
    w = 1.0 / s**2
    normalisation = np.sum(w) / len(s)
    assert_allclose(
        mean_huber_loss(y_true / s, y_pred / s, delta=1.1),
        mean_huber_loss(y_true, y_pred, delta=1.1 * s, multioutput=w) * normalisation,
        rtol=1e-12,
    )
    assert_allclose(
        mean_log_cosh_error(y_true / s, y_pred / s, delta=0.7),
        mean_log_cosh_error(y_true, y_pred, delta=0.7 * s, multioutput=w)
        * normalisation,
        rtol=1e-12,
    )
    mse = root_mean_squared_error(y_true, y_pred, multioutput="raw_values") ** 2
    assert_allclose(
        sk_metrics.mean_squared_error(y_true / s, y_pred / s),
        np.average(mse, weights=w) * normalisation,
        rtol=1e-12,
    )
    # With uniform weights, the output in the largest units dominates.
    raw = mean_huber_loss(y_true, y_pred, delta=1.1, multioutput="raw_values")
    assert raw[2] > 0.99 * np.sum(raw)


def test_zero_weight_rows_do_not_count():
    y_true, y_pred = targets()
    w = np.where(np.arange(len(y_true)) % 3 == 0, 0.0, 1.0)
    keep = w > 0
    for metric, kwargs, _ in POINT_METRICS.values():
        assert_allclose(
            metric(y_true, y_pred, sample_weight=w, **kwargs),
            metric(y_true[keep], y_pred[keep], **kwargs),
            rtol=1e-13,
        )


# -- stability -------------------------------------------------------------------


@pytest.mark.parametrize("name", POINT_METRICS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_residuals_up_to_1e300_are_finite_and_warning_free(name, reduction):
    # Warnings are errors in this test suite: an overflow would fail here.
    metric, kwargs, _ = POINT_METRICS[name]
    y_true = np.array([1e300, -1e300, 3.0] * 100)
    y_pred = np.zeros_like(y_true)
    value = metric(y_true, y_pred, reduction=reduction, **kwargs)
    assert np.all(np.isfinite(value)) or reduction == "sum"
    if reduction == "mean":
        slope = {"huber": 0.7, "smooth_l1": 1.0, "log_cosh": 2.0, "pinball": 0.5}[name]
        # Two thirds of the rows have |r| = 1e300 (pinball: mean of q and 1-q).
        assert_allclose(value, 2 / 3 * slope * 1e300, rtol=1e-12)


def test_rmse_and_crps_of_huge_residuals_are_finite():
    y_true = np.array([[1e300, 2.0], [-1e300, -2.0]])
    zeros = np.zeros_like(y_true)
    assert_allclose(
        root_mean_squared_error(y_true, zeros, multioutput="raw_values"), [1e300, 2.0]
    )
    crps = crps_gaussian(y_true, zeros, np.ones_like(y_true), multioutput="raw_values")
    assert_allclose(crps[0], 1e300, rtol=1e-12)
    assert np.isfinite(crps_gaussian([1e300], [0.0], [1e-300]))
    # The Gaussian NLL of a residual of 1e300 standard deviations exceeds the
    # largest double: infinite, without a warning.
    assert gaussian_nll([1e300], [0.0], [1.0]) == np.inf


# -- predictive distributions -------------------------------------------------------


def test_gaussian_nll_is_minus_the_normal_log_density():
    y_true, mean = targets(k=2)
    std = RNG.uniform(0.1, 3.0, size=y_true.shape)
    assert_allclose(
        gaussian_nll(y_true, mean, std, reduction="none", multioutput="raw_values"),
        -norm.logpdf(y_true, loc=mean, scale=std),
        rtol=1e-13,
    )


def test_gaussian_nll_is_minus_the_heteroscedastic_log_likelihood():
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, size=(150, 2))
    y = X @ [1.0, 2.0] + np.exp(X[:, 0]) * rng.standard_normal(150)
    w = rng.uniform(0.5, 2.0, size=150)
    model = HeteroscedasticRegressor().fit(X, y)
    mean, std = model.predict(X, return_std=True)
    assert_allclose(
        gaussian_nll(y, mean, std, sample_weight=w),
        -model.log_likelihood(X, y, sample_weight=w),
        rtol=1e-12,
    )


@pytest.mark.parametrize("y, mu, sigma", [(0.3, 0.0, 1.0), (4.0, 1.0, 0.5), (-2, 1, 3)])
def test_crps_closed_form_equals_its_integral(y, mu, sigma):
    def squared_gap(x):
        return (norm.cdf(x, mu, sigma) - (x >= y)) ** 2

    below, _ = integrate.quad(squared_gap, -np.inf, y, epsabs=1e-13)
    above, _ = integrate.quad(squared_gap, y, np.inf, epsabs=1e-13)
    assert_allclose(crps_gaussian([y], [mu], [sigma]), below + above, rtol=1e-9)


def test_crps_of_a_point_forecast_is_the_absolute_error():
    y_true, mean = targets()
    assert_allclose(
        crps_gaussian(y_true, mean, np.zeros_like(mean)),
        sk_metrics.mean_absolute_error(y_true, mean),
        rtol=1e-14,
    )
    # And it tends to it continuously.
    assert_allclose(
        crps_gaussian(y_true, mean, np.full_like(mean, 1e-9)),
        sk_metrics.mean_absolute_error(y_true, mean),
        rtol=1e-8,
    )


# -- intervals ------------------------------------------------------------------------


def random_intervals(n=60, k=None):
    shape = (n,) if k is None else (n, k)
    centre = RNG.normal(size=shape)
    half = RNG.uniform(0.1, 2.0, size=shape)
    intervals = np.stack([centre - half, centre + half], axis=-1)
    return RNG.normal(size=shape), intervals


def test_coverage_and_width_count_and_measure():
    y_true, intervals = random_intervals()
    lower, upper = intervals[:, 0], intervals[:, 1]
    assert_allclose(
        interval_coverage(y_true, intervals),
        np.mean((lower <= y_true) & (y_true <= upper)),
    )
    assert_allclose(mean_interval_width(intervals), np.mean(upper - lower))
    # The bounds themselves count as covered.
    assert interval_coverage([1.0, 2.0], [[1.0, 2.0], [1.0, 2.0]]) == 1.0


@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.95])
def test_interval_score_is_width_plus_scaled_misses_and_twice_the_pinball(coverage):
    y_true, intervals = random_intervals()
    lower, upper = intervals[:, 0], intervals[:, 1]
    alpha = 1 - coverage
    by_hand = (
        (upper - lower)
        + 2 / alpha * (lower - y_true) * (y_true < lower)
        + 2 / alpha * (y_true - upper) * (y_true > upper)
    )
    assert_allclose(
        interval_score(y_true, intervals, coverage, reduction="none"),
        by_hand,
        rtol=1e-13,
    )
    # Gneiting and Raftery's identity with scikit-learn's pinball loss.
    pinball = sk_metrics.mean_pinball_loss(
        y_true, lower, alpha=alpha / 2
    ) + sk_metrics.mean_pinball_loss(y_true, upper, alpha=1 - alpha / 2)
    assert_allclose(interval_score(y_true, intervals, coverage), 2 / alpha * pinball)


def test_interval_score_is_smallest_at_the_true_quantiles():
    # Proper for the alpha/2 and 1 - alpha/2 quantiles: on a large normal
    # sample, moving either bound from them raises the mean score.
    y = np.random.default_rng(0).standard_normal(200_000)
    q = norm.ppf(0.95)

    def score(lower, upper):
        return interval_score(y, np.tile([lower, upper], (len(y), 1)), 0.9)

    best = score(-q, q)
    for lower, upper in [(-q - 0.1, q), (-q + 0.1, q), (-q, q - 0.1), (-q, q + 0.1)]:
        assert score(lower, upper) > best


def test_interval_metrics_of_several_outputs():
    y_true, intervals = random_intervals(k=3)
    raw = interval_score(y_true, intervals, 0.9, multioutput="raw_values")
    for j in range(3):
        assert_allclose(raw[j], interval_score(y_true[:, j], intervals[:, j], 0.9))
    assert interval_coverage(
        y_true, intervals, multioutput="raw_values", reduction="none"
    ).shape == (60, 3)
    assert mean_interval_width(intervals, multioutput="raw_values").shape == (3,)


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mean_huber_loss([1.0, 2.0], [1.0]), "inconsistent numbers"),
        (lambda: mean_huber_loss([[1.0, 2.0]], [[1.0]]), "does not match"),
        (lambda: mean_huber_loss([1.0], [1.0], delta=0.0), "delta must be"),
        (lambda: mean_huber_loss([1.0], [1.0], delta=[1.0, 2.0]), "one per output"),
        (lambda: mean_smooth_l1_loss([1.0], [1.0], beta=-1.0), "beta must be"),
        (lambda: mean_log_cosh_error([1.0], [np.nan]), "NaN"),
        (lambda: mean_pinball_loss([1.0], [1.0], quantile=1.5), r"\[0, 1\]"),
        (lambda: mean_pinball_loss([1.0], [[1.0]], quantile=[0.1, 0.9]), "2\\)"),
        (lambda: mean_huber_loss([1.0], [1.0], reduction="max"), "reduction"),
        (lambda: mean_huber_loss([1.0], [1.0], multioutput="average"), "multioutput"),
        (lambda: mean_huber_loss([[1.0, 2]], [[1.0, 2]], multioutput=[1]), "outputs"),
        (lambda: mean_huber_loss([1.0], [1.0], multioutput=[-1.0]), "non-negative"),
        (lambda: mean_huber_loss([1.0], [1.0], sample_weight=[-1.0]), "(?i)negative"),
        (lambda: mean_huber_loss([1.0], [1.0], sample_weight=[0.0]), "non-zero"),
        (lambda: gaussian_nll([1.0], [1.0], [0.0]), "std must be finite and pos"),
        (lambda: crps_gaussian([1.0], [1.0], [-1.0]), "std must be finite and non"),
        (lambda: crps_gaussian([1.0], [1.0], [1.0, 2.0]), "inconsistent numbers"),
        (lambda: interval_coverage([1.0], [[2.0, 1.0]]), "lower <= upper"),
        (lambda: interval_coverage([1.0], [[1.0, 2.0, 3.0]]), "shape"),
        (lambda: interval_coverage([[1.0]], [[1.0, 2.0]]), "does not match"),
        (lambda: interval_score([1.0], [[0.0, 2.0]], coverage=1.0), "coverage"),
        (lambda: interval_score([1.0], [[0.0, 2.0]], coverage=0), "coverage"),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name", skrobust.metrics.__all__)
def test_docstring_is_valid_numpydoc(name):
    # Every check, as test_common.py applies to the estimator classes.
    assert numpydoc_validate(f"skrobust.metrics.{name}")["errors"] == []
