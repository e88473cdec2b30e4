"""HeteroscedasticRegressor with a 2-D y, and its weights_.

Each target of a 2-D ``y`` is its own Gaussian mean-and-log-variance model:
the multi-output fit must equal the column-by-column fits (to 1e-10), the
joint likelihood minimised directly by scipy over every target's parameters
at once (the docs' separation argument), and the shapes of
``LinearRegression``. ``weights_`` is checked against the weighted least
squares it claims the mean solves.
"""

import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from numpy.testing import assert_allclose
from scipy.stats import norm
from sklearn.linear_model import LinearRegression
from sklearn.utils import get_tags
from test_heteroscedastic import make_data, nll_oracle

from skrobust import HeteroscedasticRegressor

PER_OUTPUT_ATTRIBUTES = ("coef_", "intercept_", "var_coef_", "var_intercept_")
COV_ATTRIBUTES = (
    "cov_",
    "coef_se_",
    "intercept_se_",
    "var_coef_se_",
    "var_intercept_se_",
)


def make_targets(n, seed=0):
    """Three targets with different means, variance models and units."""
    X, y0, _ = make_data(n, seed=seed)
    rng = np.random.default_rng(seed + 100)
    sigma1 = np.exp(0.5 * (-0.7 * X[:, 1] + 1.0))
    y1 = 1e4 * (X @ [0.0, 2.0, -1.0] - 4.0 + sigma1 * rng.normal(size=n))
    y2 = 1e-3 * (0.5 * X[:, 2] + rng.normal(size=n))  # constant variance
    return X, np.column_stack([y0, y1, y2])


def assert_equals_columnwise(model, X, Y, sample_weight=None, rtol=1e-10):
    """Every per-output attribute of ``model`` equals that of a 1-D fit."""
    attributes = PER_OUTPUT_ATTRIBUTES + ("weights_", "n_iter_")
    if model.cov_type is not None:
        attributes += COV_ATTRIBUTES
    for k in range(Y.shape[1]):
        single = HeteroscedasticRegressor(**model.get_params())
        single.fit(X, Y[:, k], sample_weight=sample_weight)
        for name in attributes:
            assert hasattr(model, name) == hasattr(single, name), name
            if not hasattr(single, name):  # intercept_se_ without an intercept
                continue
            stacked = getattr(model, name)
            column = stacked[:, k] if name == "weights_" else stacked[k]
            expected = getattr(single, name)
            assert np.shape(column) == np.shape(expected), name
            assert_allclose(column, expected, rtol=rtol, atol=0, err_msg=name)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"cov_type": "expected", "variance_features": [0, 2]},
        {"cov_type": "sandwich", "fit_intercept": False, "alpha": 0.0},
        {"cov_type": "observed", "solver": "lbfgs"},
    ],
    ids=["defaults", "expected-subset", "sandwich-no-intercept", "observed-lbfgs"],
)
def test_each_target_equals_its_own_fit(params):
    X, Y = make_targets(600, seed=1)
    model = HeteroscedasticRegressor(**params).fit(X, Y)
    assert model.coef_.shape == (3, 3) and model.intercept_.shape == (3,)
    assert model.var_coef_.shape == (3, 3) and model.var_intercept_.shape == (3,)
    assert model.weights_.shape == (600, 3) and model.n_iter_.shape == (3,)
    if "cov_type" in params:
        n_params = 3 + params.get("fit_intercept", True) + 1
        n_params += len(params.get("variance_features", range(3)))
        assert model.cov_.shape == (3, n_params, n_params)
    assert_equals_columnwise(model, X, Y)


def test_weighted_and_sparse_targets_equal_their_own_fits():
    X, Y = make_targets(500, seed=2)
    sw = np.random.default_rng(3).integers(0, 4, size=500).astype(float)
    model = HeteroscedasticRegressor(cov_type="expected")
    model.fit(sp.csr_matrix(X), Y, sample_weight=sw)
    assert_equals_columnwise(model, sp.csr_matrix(X), Y, sample_weight=sw)
    dense = HeteroscedasticRegressor(cov_type="expected").fit(X, Y, sample_weight=sw)
    for name in PER_OUTPUT_ATTRIBUTES + ("cov_",):
        assert_allclose(getattr(model, name), getattr(dense, name), rtol=1e-8)


def test_joint_likelihood_minimised_by_scipy_gives_the_separate_fits():
    """One scipy minimisation of the summed NLL over all targets' parameters.

    The oracle does not know the objective separates: it optimises every
    target's mean and log-variance together, on the sum of their (weighted
    mean) negative log-likelihoods, and lands on each target's own fit.
    """
    X, Y = make_targets(400, seed=4)
    Y = Y / Y.std(axis=0)  # comparable gradients for one gtol
    sw = np.random.default_rng(5).uniform(0.5, 2.0, size=400)
    model = HeteroscedasticRegressor(alpha=0.0, variance_floor=0.0)
    model.fit(X, Y, sample_weight=sw)
    n_theta = 2 * X.shape[1] + 2

    def joint(theta):
        parts = [
            nll_oracle(theta_k, X, X, y_k, sw, 0.0, 0.0)
            for theta_k, y_k in zip(theta.reshape(3, n_theta), Y.T, strict=True)
        ]
        return sum(v for v, _ in parts), np.concatenate([g for _, g in parts])

    theta0 = np.concatenate(
        [np.r_[np.zeros(3), y.mean(), np.zeros(3), np.log(y.var())] for y in Y.T]
    )
    res = scipy.optimize.minimize(
        joint, theta0, jac=True, method="BFGS", options={"gtol": 1e-10}
    )
    theta = res.x.reshape(3, n_theta)
    assert_allclose(model.coef_, theta[:, :3], rtol=1e-5, atol=1e-7)
    assert_allclose(model.intercept_, theta[:, 3], rtol=1e-5, atol=1e-7)
    assert_allclose(model.var_coef_, theta[:, 4:7], rtol=1e-5, atol=1e-6)
    assert_allclose(model.var_intercept_, theta[:, 7], rtol=1e-5, atol=1e-6)
    ours = np.c_[model.coef_, model.intercept_, model.var_coef_, model.var_intercept_]
    assert joint(ours.ravel())[0] <= res.fun + 1e-10


def test_predictions_intervals_and_log_likelihood_have_one_column_per_target():
    X, Y = make_targets(300, seed=6)
    model = HeteroscedasticRegressor().fit(X, Y)
    X_new = make_data(7, seed=7)[0]
    mean, std = model.predict(X_new, return_std=True)
    assert model.predict(X_new).shape == mean.shape == std.shape == (7, 3)
    intervals = model.predict_interval(X_new, coverage=0.8)
    assert intervals.shape == (7, 3, 2)
    log_likelihoods = []
    for k in range(3):
        single = HeteroscedasticRegressor().fit(X, Y[:, k])
        mean_k, std_k = single.predict(X_new, return_std=True)
        assert_allclose(mean[:, k], mean_k, rtol=1e-10)
        assert_allclose(std[:, k], std_k, rtol=1e-10)
        assert_allclose(
            intervals[:, k], single.predict_interval(X_new, coverage=0.8), rtol=1e-10
        )
        log_likelihoods.append(single.log_likelihood(X, Y[:, k]))
    # Summed over targets (independent noises), as a scipy density.
    assert model.log_likelihood(X, Y) == pytest.approx(sum(log_likelihoods), 1e-10)
    train_mean, train_std = model.predict(X, return_std=True)
    by_scipy = norm.logpdf(Y, train_mean, train_std).sum(axis=1).mean()
    assert model.log_likelihood(X, Y) == pytest.approx(by_scipy, rel=1e-12)
    z = norm.ppf(0.9)
    assert_allclose(intervals[..., 1] - intervals[..., 0], 2 * z * std, rtol=1e-12)
    with pytest.raises(ValueError, match="3 targets"):
        model.log_likelihood(X, Y[:, :2])


def test_one_column_y_gives_one_column_predictions():
    X, y, _ = make_data(300, seed=8)
    column = HeteroscedasticRegressor(cov_type="expected").fit(X, y[:, None])
    flat = HeteroscedasticRegressor(cov_type="expected").fit(X, y)
    assert column.predict(X).shape == (300, 1)
    mean, std = column.predict(X, return_std=True)
    assert mean.shape == std.shape == (300, 1)
    assert column.predict_interval(X).shape == (300, 1, 2)
    assert column.coef_.shape == (1, 3) and column.cov_.shape[0] == 1
    assert_allclose(column.predict(X)[:, 0], flat.predict(X), rtol=1e-12)
    assert column.log_likelihood(X, y[:, None]) == pytest.approx(
        flat.log_likelihood(X, y), rel=1e-12
    )
    # A 1-D fit has the bounds on the last axis too, as MultiQuantileRegressor.
    assert flat.predict_interval(X).shape == (300, 2)
    assert_allclose(column.predict_interval(X)[:, 0], flat.predict_interval(X))


def test_tags_and_summary_say_what_a_2d_fit_is():
    assert get_tags(HeteroscedasticRegressor()).target_tags.multi_output
    X, Y = make_targets(200, seed=9)
    model = HeteroscedasticRegressor(cov_type="expected").fit(X, Y)
    with pytest.raises(ValueError, match="1-D y"):
        model.summary()
    # Refitting without cov_type removes every standard error.
    model.set_params(cov_type=None).fit(X, Y)
    for name in COV_ATTRIBUTES:
        assert not hasattr(model, name), name


def test_warm_start_per_target():
    X, Y = make_targets(2000, seed=10)
    model = HeteroscedasticRegressor().fit(X, Y)
    cold = np.c_[model.coef_, model.intercept_, model.var_coef_, model.var_intercept_]
    model.set_params(warm_start=True).fit(X, Y)
    assert np.all(model.n_iter_ == 0)
    warm = np.c_[model.coef_, model.intercept_, model.var_coef_, model.var_intercept_]
    assert_allclose(warm, cold, rtol=1e-9, atol=1e-12)
    # From another problem's solutions, each target finds its own optimum.
    moved = Y * [3.0, -0.5, 2.0] + X[:, :1]
    model.fit(X, moved)
    fresh = HeteroscedasticRegressor().fit(X, moved)
    for name in PER_OUTPUT_ATTRIBUTES:
        assert_allclose(getattr(model, name), getattr(fresh, name), rtol=1e-7)


# -- weights_ ----------------------------------------------------------------------


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_weights_are_the_weighted_least_squares_weights_of_the_mean(fit_intercept):
    """Least squares with weights s_i / sigma_i^2 returns the fitted mean.

    At the maximum of the likelihood the mean's score equations are those of
    that weighted least squares; ``variance_floor`` does not enter them.
    """
    X, y, _ = make_data(1000, seed=11)
    y = 20.0 * y + 5.0
    sw = np.random.default_rng(12).uniform(0.5, 2.0, size=1000)
    model = HeteroscedasticRegressor(fit_intercept=fit_intercept, variance_floor=1e-2)
    model.fit(X, y, sample_weight=sw)
    _, std = model.predict(X, return_std=True)
    assert_allclose(model.weights_, 1.0 / std**2, rtol=1e-12)
    wls = LinearRegression(fit_intercept=fit_intercept)
    wls.fit(X, y, sample_weight=sw * model.weights_)
    assert_allclose(model.coef_, wls.coef_, rtol=1e-8)
    assert model.intercept_ == pytest.approx(wls.intercept_, rel=1e-8, abs=1e-12)
    # Not trivially so: ordinary least squares is elsewhere.
    ols = LinearRegression(fit_intercept=fit_intercept).fit(X, y, sample_weight=sw)
    assert np.max(np.abs(ols.coef_ - model.coef_)) > 1e-2


def test_weights_of_2d_y_are_columns_and_finite_on_wild_zero_weight_rows():
    X, Y = make_targets(400, seed=13)
    keep = np.arange(400) % 5 != 0
    X_garbage = X.copy()
    X_garbage[~keep] = -1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = HeteroscedasticRegressor().fit(
            X_garbage, Y, sample_weight=keep.astype(float)
        )
    assert model.weights_.shape == (400, 3)
    assert not np.any(np.isnan(model.weights_))
    assert np.all(np.isfinite(model.weights_))
    reference = HeteroscedasticRegressor().fit(X[keep], Y[keep])
    assert_allclose(model.weights_[keep], reference.weights_, rtol=1e-7)


def test_a_target_1e200_away_leaves_the_other_targets_alone():
    """Solved in units of each target's own spread: nothing overflows."""
    X, Y = make_targets(300, seed=14)
    clean = HeteroscedasticRegressor().fit(X, Y)
    Y[5, 1] = 1e200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = HeteroscedasticRegressor().fit(X, Y)
        log_likelihood = model.log_likelihood(X, Y)
    assert np.isfinite(log_likelihood)
    for name in PER_OUTPUT_ATTRIBUTES:
        assert np.all(np.isfinite(getattr(model, name))), name
        assert_allclose(getattr(model, name)[[0, 2]], getattr(clean, name)[[0, 2]])
    assert_equals_columnwise(model, X, Y)
