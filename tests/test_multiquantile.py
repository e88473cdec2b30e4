"""MultiQuantileRegressor: exact levels, Koenker's properties, rearrangement, API.

Oracles: separate ``QuantileRegressor(solver="exact")`` fits and one
``scipy.optimize.linprog`` LP written here for the optimum of each level;
Koenker's calibration and equivariance theorems; the rearrangement theorem
of Chernozhukov, Fernandez-Val and Galichon; the coverage of a known
heteroscedastic model.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _data import gap_data
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import linprog
from scipy.stats import norm
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from skrobust import QuantileRegressor
from skrobust._multiquantile import MultiQuantileRegressor
from skrobust._quantile_exact import pinball_objective


def objective(X, y, coef, intercept, q, sample_weight=None, alpha=0.0):
    s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight)
    r = y - X @ coef - intercept
    loss = np.where(r < 0, (q - 1.0) * r, q * r)
    return float(s @ loss) / s.sum() + alpha * np.abs(coef).sum()


def linprog_optimum(X, y, q, fit_intercept=True):
    """Optimal mean pinball loss by one HiGHS LP (scikit-learn's primal)."""
    n, p = X.shape
    ones = np.ones((n, 1))
    blocks = [X, -X] + ([ones, -ones] if fit_intercept else [])
    A = np.hstack(blocks + [np.eye(n), -np.eye(n)])
    n_free = 2 * p + (2 if fit_intercept else 0)
    c = np.concatenate([np.zeros(n_free), np.full(n, q / n), np.full(n, (1 - q) / n)])
    res = linprog(c, A_eq=A, b_eq=y, method="highs")
    assert res.status == 0
    return res.fun


def heteroscedastic(n, p, seed, df=None):
    """y = 1 + X b + (1 + |x_0|) e: the slope of x_0 varies with the level."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    noise = rng.standard_normal(n) if df is None else rng.standard_t(df, size=n)
    y = 1.0 + X @ rng.normal(size=p) + (1.0 + np.abs(X[:, 0])) * noise
    return X, y


# -- exactness -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weighted", "alpha", "fit_intercept"),
    [(False, 0.0, True), (True, 0.0, True), (False, 0.01, True), (True, 0.0, False)],
)
def test_exact_levels_equal_separate_exact_fits(weighted, alpha, fit_intercept):
    X, y = heteroscedastic(6000, 5, seed=1, df=3)
    weights = np.random.default_rng(2).uniform(0.2, 3.0, 6000) if weighted else None
    levels = np.arange(1, 20) / 20
    multi = MultiQuantileRegressor(
        levels, alpha=alpha, fit_intercept=fit_intercept, solver="exact"
    ).fit(X, y, sample_weight=weights)
    for j, q in enumerate(levels):
        single = QuantileRegressor(
            quantile=q, alpha=alpha, fit_intercept=fit_intercept, solver="exact"
        ).fit(X, y, sample_weight=weights)
        f_multi = objective(
            X, y, multi.coef_[j], multi.intercept_[j], q, weights, alpha
        )
        f_single = objective(X, y, single.coef_, single.intercept_, q, weights, alpha)
        assert abs(f_multi - f_single) <= 1e-9 * f_single, (q, f_multi, f_single)


def test_exact_levels_reach_the_linprog_optimum():
    X, y = heteroscedastic(400, 3, seed=3, df=2)
    levels = [0.1, 0.3, 0.5, 0.7, 0.9]
    multi = MultiQuantileRegressor(levels, solver="exact").fit(X, y)
    for j, q in enumerate(levels):
        f = objective(X, y, multi.coef_[j], multi.intercept_[j], q)
        f_lp = linprog_optimum(X, y, q)
        assert abs(f - f_lp) <= 1e-9 * f_lp


def test_a_level_that_interpolates_a_far_target_reaches_the_optimum():
    """One target of 1e12 among 30: at q = 0.95 the optimum tilts the plane
    through it (coefficients ~1e11), so the target clipped for the fit is
    interpolated, its residual zero. A level started from its neighbour is
    exact (no bandwidth): the fitted value within rounding of the clip must
    not count as having kept its side (it returned a plane 17% above the
    optimum)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3 * rng.standard_t(3, size=30)
    y[3] = 1e12
    levels = [0.05, 0.5, 0.95]
    multi = MultiQuantileRegressor(levels, solver="exact").fit(X, y)
    for j, q in enumerate(levels):
        f = objective(X, y, multi.coef_[j], multi.intercept_[j], q)
        f_lp = linprog_optimum(X, y, q)
        assert abs(f - f_lp) <= 1e-9 * f_lp, (q, f, f_lp)
    # A single level of 30 rows is their whole programme, without a
    # smoothed fit: no bandwidth.
    single = MultiQuantileRegressor([0.95], solver="exact").fit(X, y)
    assert np.isnan(single.bandwidth_).all()
    assert_allclose(single.coef_, multi.coef_[2:], rtol=1e-9)
    assert not hasattr(QuantileRegressor(quantile=0.95).fit(X, y), "bandwidth_")


@pytest.mark.parametrize("max_iter", [1, 2])
def test_too_few_iterations_for_a_smoothed_fit_still_fit(max_iter):
    """With max_iter < 3 the exact solver makes no smoothed fit (the whole
    programme at once): every level is still the LP optimum, and its
    bandwidth_ is NaN (it raised an AttributeError)."""
    X, y = heteroscedastic(200, 2, seed=5, df=3)
    levels = [0.2, 0.5, 0.8]
    multi = MultiQuantileRegressor(levels, solver="exact", max_iter=max_iter)
    multi.fit(X, y)
    for j, q in enumerate(levels):
        f = objective(X, y, multi.coef_[j], multi.intercept_[j], q)
        f_lp = linprog_optimum(X, y, q)
        assert abs(f - f_lp) <= 1e-9 * f_lp
    assert np.isnan(multi.bandwidth_).all()


def test_smooth_levels_are_near_the_optimum():
    X, y = heteroscedastic(10_000, 5, seed=4, df=3)
    levels = np.arange(1, 10) / 10
    smooth = MultiQuantileRegressor(levels, solver="smooth").fit(X, y)
    exact = MultiQuantileRegressor(levels, solver="exact").fit(X, y)
    assert smooth.solver_ == "smooth" and exact.solver_ == "exact"
    for j, q in enumerate(levels):
        f_smooth = objective(X, y, smooth.coef_[j], smooth.intercept_[j], q)
        f_exact = objective(X, y, exact.coef_[j], exact.intercept_[j], q)
        assert f_exact <= f_smooth <= f_exact * (1 + 1e-4)


# -- Koenker's properties --------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_calibration_per_level(weighted):
    # At an exact optimum with an intercept,
    # sum(s[r < 0]) <= q S <= sum(s[r <= 0]) at every level.
    X, y = heteroscedastic(3000, 4, seed=5, df=2)
    weights = np.random.default_rng(6).integers(1, 4, 3000) if weighted else None
    s = np.ones(3000) if weights is None else weights.astype(float)
    levels = np.arange(1, 20) / 20
    multi = MultiQuantileRegressor(levels, solver="exact").fit(X, y, weights)
    residuals = y[:, None] - X @ multi.coef_.T - multi.intercept_
    tol = 1e-9 * (1 + np.abs(y).max())
    below = s @ (residuals < -tol)
    at_or_below = s @ (residuals <= tol)
    assert np.all(below <= levels * s.sum() + 1e-9)
    assert np.all(levels * s.sum() <= at_or_below + 1e-9)


def test_equivariances():
    X, y = heteroscedastic(2000, 3, seed=7, df=3)
    levels = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    model = MultiQuantileRegressor(levels, solver="exact")
    base = model.fit(X, y)
    coef, intercept = base.coef_.copy(), base.intercept_.copy()
    # Scale: y -> 3 y scales every level; y -> -y maps level q to 1 - q.
    scaled = model.fit(X, 3.0 * y)
    assert_allclose(scaled.coef_, 3.0 * coef, rtol=1e-7, atol=1e-9)
    flipped = model.fit(X, -y)
    assert_allclose(flipped.coef_, -coef[::-1], rtol=1e-7, atol=1e-9)
    assert_allclose(flipped.intercept_, -intercept[::-1], rtol=1e-7, atol=1e-9)
    # Shift: y -> y + X g adds g to every level's coefficients.
    g = np.array([0.5, -1.0, 2.0])
    shifted = model.fit(X, y + X @ g)
    assert_allclose(shifted.coef_, coef + g, rtol=1e-7, atol=1e-9)
    # Reparametrisation: X -> X A gives A^{-1} coef.
    A = np.array([[2.0, 0.5, 0.0], [0.0, 1.0, -1.0], [0.3, 0.0, 1.5]])
    reparam = model.fit(X @ A, y)
    assert_allclose(reparam.coef_, np.linalg.solve(A, coef.T).T, rtol=1e-7, atol=1e-9)
    assert_allclose(reparam.intercept_, intercept, rtol=1e-7, atol=1e-9)


# -- rearrangement and intervals -------------------------------------------------


def crossing_problem():
    """Few rows, many levels and test points beyond the data: lines cross."""
    rng = np.random.default_rng(8)
    X = rng.uniform(0.0, 1.0, size=(60, 2))
    y = X @ [1.0, -1.0] + (0.2 + X[:, 0]) * rng.standard_t(3, size=60)
    X_test = rng.uniform(-1.5, 2.5, size=(4000, 2))
    y_test = X_test @ [1.0, -1.0] + (0.2 + np.abs(X_test[:, 0])) * rng.standard_t(
        3, size=4000
    )
    return X, y, X_test, y_test


def test_rearranged_predictions_are_sorted_and_equal_raw_ones_without_crossing():
    X, y, X_test, _ = crossing_problem()
    levels = np.arange(1, 20) / 20
    model = MultiQuantileRegressor(levels).fit(X, y)
    rearranged = model.predict_quantiles(X_test)
    raw = model.set_params(non_crossing=False).predict_quantiles(X_test)
    assert_allclose(raw, X_test @ model.coef_.T + model.intercept_)
    assert np.all(np.diff(rearranged, axis=1) >= 0)
    assert_allclose(np.sort(raw, axis=1), rearranged)
    crossing = np.any(np.diff(raw, axis=1) < 0, axis=1)
    assert 0 < crossing.sum() < crossing.size  # both kinds of rows occur
    assert_array_equal(rearranged[~crossing], raw[~crossing])


def test_rearrangement_does_not_increase_the_pinball_loss():
    # Held-out rows: the mean over levels of the pinball loss of the
    # rearranged predictions is no larger than that of the raw ones.
    X, y, X_test, y_test = crossing_problem()
    levels = np.arange(1, 20) / 20
    model = MultiQuantileRegressor(levels).fit(X, y)
    rearranged = model.predict_quantiles(X_test)
    raw = model.set_params(non_crossing=False).predict_quantiles(X_test)

    def mean_pinball(predictions):
        r = y_test[:, None] - predictions
        return float(np.mean(np.where(r < 0, (levels - 1) * r, levels * r)))

    assert mean_pinball(rearranged) < mean_pinball(raw)


def test_interval_coverage_on_fresh_heteroscedastic_data():
    rng = np.random.default_rng(9)
    n = 100_000

    def draw(n):
        X = rng.uniform(-2.0, 2.0, size=(n, 2))
        y = (
            1.0
            + X @ [2.0, -1.0]
            + (0.5 + 0.5 * np.abs(X[:, 0]) + X[:, 1] + 1.5) * (rng.standard_normal(n))
        )
        return X, y

    # The conditional quantiles are not linear in x (|x_0|), but the spread
    # is: a linear fit with |x_0| as a feature is correctly specified.
    X, y = draw(n)
    features = np.column_stack([X, np.abs(X[:, 0])])
    model = MultiQuantileRegressor([0.05, 0.5, 0.95]).fit(features, y)
    X_new, y_new = draw(n)
    new_features = np.column_stack([X_new, np.abs(X_new[:, 0])])
    lower, upper = model.predict_interval(new_features, coverage=0.9).T
    coverage = np.mean((lower <= y_new) & (y_new <= upper))
    assert abs(coverage - 0.9) <= 0.01
    # The 0.95 slope of x_1 is 1 (the mean slope) + 1.645 (its spread).
    assert_allclose(model.coef_[2, 1], -1.0 + norm.ppf(0.95), atol=0.05)


def test_interval_interpolates_between_levels_and_refuses_to_extrapolate():
    X, y = heteroscedastic(500, 2, seed=10)
    levels = [0.05, 0.1, 0.5, 0.9, 0.95]
    model = MultiQuantileRegressor(levels).fit(X, y)
    quantiles = model.predict_quantiles(X[:20])
    # Bounds at fitted levels are those levels' predictions.
    assert_allclose(model.predict_interval(X[:20], 0.9), quantiles[:, [0, 4]])
    assert_allclose(model.predict_interval(X[:20], 0.8), quantiles[:, [1, 3]])
    # 0.85: halfway between 0.05 and 0.1 (and between 0.9 and 0.95).
    expected = np.column_stack(
        [quantiles[:, :2].mean(axis=1), quantiles[:, 3:].mean(axis=1)]
    )
    assert_allclose(model.predict_interval(X[:20], 0.85), expected)
    # Wider intervals contain narrower ones.
    widths = [np.diff(model.predict_interval(X, c), axis=1) for c in (0.2, 0.5, 0.9)]
    assert np.all(widths[0] <= widths[1]) and np.all(widths[1] <= widths[2])
    with pytest.raises(ValueError, match="outside the fitted range"):
        model.predict_interval(X[:5], coverage=0.95)
    with pytest.raises(ValueError, match="coverage"):
        model.predict_interval(X[:5], coverage=1.0)


# -- API -------------------------------------------------------------------------


def test_levels_attributes_and_prediction_at_the_median_level():
    X, y = heteroscedastic(800, 3, seed=11)
    model = MultiQuantileRegressor([0.9, 0.1, 0.4, 0.7]).fit(X, y)
    assert_array_equal(model.quantiles_, [0.1, 0.4, 0.7, 0.9])
    assert model.coef_.shape == (4, 3) and model.intercept_.shape == (4,)
    assert model.n_iter_.shape == (4,) and np.all(model.n_iter_ >= 1)
    assert model.bandwidth_.shape == (4,)
    # 0.4 is nearest 0.5.
    assert_allclose(model.predict(X), model.predict_quantiles(X)[:, 1])
    single = QuantileRegressor(quantile=0.4).fit(X, y)
    assert_allclose(
        objective(X, y, model.coef_[1], model.intercept_[1], 0.4),
        objective(X, y, single.coef_, single.intercept_, 0.4),
        rtol=1e-9,
    )
    counted = MultiQuantileRegressor(4).fit(X, y)
    assert_allclose(counted.quantiles_, [0.2, 0.4, 0.6, 0.8])


@pytest.mark.parametrize(
    ("quantiles", "message"),
    [([0.2, 0.2], "distinct"), ([0.0, 0.5], r"\(0, 1\)"), ([], "at least one")],
)
def test_invalid_levels(quantiles, message):
    X, y = heteroscedastic(50, 2, seed=12)
    with pytest.raises(ValueError, match=message):
        MultiQuantileRegressor(quantiles).fit(X, y)


def test_two_dimensional_y_is_a_clear_error():
    X, y = heteroscedastic(50, 2, seed=13)
    with pytest.raises(ValueError, match="1-dimensional"):
        MultiQuantileRegressor().fit(X, np.column_stack([y, y]))


def test_integer_weights_are_repeated_rows():
    X, y = heteroscedastic(600, 3, seed=14, df=3)
    counts = np.random.default_rng(15).integers(0, 4, 600)
    levels = [0.2, 0.5, 0.8]
    weighted = MultiQuantileRegressor(levels).fit(X, y, sample_weight=counts)
    repeated = MultiQuantileRegressor(levels).fit(
        np.repeat(X, counts, axis=0), np.repeat(y, counts)
    )
    for j, q in enumerate(levels):
        f_w = objective(X, y, weighted.coef_[j], weighted.intercept_[j], q, counts)
        f_r = objective(X, y, repeated.coef_[j], repeated.intercept_[j], q, counts)
        assert abs(f_w - f_r) <= 1e-9 * f_r


@pytest.mark.parametrize("solver", ["exact", "smooth"])
def test_sparse_equals_dense(solver):
    rng = np.random.default_rng(16)
    X = sp.random(2000, 6, density=0.3, random_state=17, format="csr")
    y = X @ rng.normal(size=6) + rng.standard_t(3, size=2000)
    levels = [0.25, 0.5, 0.75]
    dense = MultiQuantileRegressor(levels, solver=solver).fit(X.toarray(), y)
    sparse = MultiQuantileRegressor(levels, solver=solver).fit(X, y)
    for j, q in enumerate(levels):
        f_d = objective(X.toarray(), y, dense.coef_[j], dense.intercept_[j], q)
        f_s = objective(X.toarray(), y, sparse.coef_[j], sparse.intercept_[j], q)
        assert abs(f_d - f_s) <= (1e-9 if solver == "exact" else 1e-7) * f_d
    assert_allclose(sparse.predict_quantiles(X), sparse.predict_quantiles(X.toarray()))


def test_pandas_pickle_and_grid_search_over_alpha():
    X, y = heteroscedastic(400, 3, seed=18)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = MultiQuantileRegressor([0.1, 0.5, 0.9]).fit(frame, y)
    assert_array_equal(model.feature_names_in_, ["a", "b", "c"])
    copy = pickle.loads(pickle.dumps(model))
    assert_allclose(
        copy.predict_interval(frame, 0.8), model.predict_interval(frame, 0.8)
    )
    search = GridSearchCV(
        MultiQuantileRegressor([0.25, 0.5, 0.75]), {"alpha": [0.0, 0.05, 5.0]}, cv=3
    ).fit(X, y)
    # alpha = 5 zeroes every slope, so it cannot score best on informative X.
    assert search.best_params_["alpha"] != 5.0
    assert search.best_estimator_.coef_.shape == (3, 3)


def test_warm_start_reaches_the_same_levels():
    X, y = heteroscedastic(3000, 3, seed=19, df=3)
    levels = [0.2, 0.5, 0.8]
    cold = MultiQuantileRegressor(levels, alpha=0.01).fit(X, y)
    warm = MultiQuantileRegressor(levels, warm_start=True).fit(X, y)
    warm.set_params(alpha=0.01).fit(X, y)
    for j, q in enumerate(levels):
        f_cold = objective(X, y, cold.coef_[j], cold.intercept_[j], q, alpha=0.01)
        f_warm = objective(X, y, warm.coef_[j], warm.intercept_[j], q, alpha=0.01)
        assert abs(f_warm - f_cold) <= 1e-9 * f_cold
    # Refitting from the optimum: one LP per level.
    assert_array_equal(warm.fit(X, y).n_iter_, 1)


@pytest.mark.parametrize("cov_type", ["iid", "nid"])
def test_covariance_per_level_is_that_of_the_single_level_fit(cov_type):
    X, y = heteroscedastic(500, 2, seed=20)
    levels = [0.25, 0.5, 0.75]
    multi = MultiQuantileRegressor(levels, cov_type=cov_type).fit(X, y)
    assert multi.cov_.shape == (3, 3, 3) and multi.coef_se_.shape == (3, 2)
    for j, q in enumerate(levels):
        single = QuantileRegressor(quantile=q, cov_type=cov_type).fit(X, y)
        assert_allclose(multi.coef_[j], single.coef_, rtol=1e-8, atol=1e-10)
        assert_allclose(multi.cov_[j], single.cov_, rtol=1e-6)
        assert_allclose(multi.coef_se_[j], single.coef_se_, rtol=1e-6)
        assert_allclose(multi.intercept_se_[j], single.intercept_se_, rtol=1e-6)
    multi.set_params(cov_type=None).fit(X, y)
    assert not hasattr(multi, "cov_")


@parametrize_with_checks(
    [
        MultiQuantileRegressor(),
        MultiQuantileRegressor(quantiles=5, solver="smooth", alpha=0.1),
        MultiQuantileRegressor(quantiles=[0.3, 0.6], non_crossing=False),
    ]
)
def test_sklearn_compatible(estimator, check):
    # Until skrobust.__all__ lists it (then tests/test_common.py checks it).
    check(estimator)


def test_a_level_in_a_gap_of_the_targets_is_fitted_cold_not_by_the_whole_lp(
    monkeypatch,
):
    """A level whose neighbour's solution is too far for the reduced problems
    (q = 0.9 at the edge of a tenth of the targets shifted far up, next to
    0.8) gets its own cold start after a few rounds, not the whole linear
    programme (at 1e5 x 20: 11 s of HiGHS, against 0.05 s). Every level is
    still the optimum of its quantile: that of a single-level exact fit
    (itself an LP optimum certified by its signs; HiGHS on this whole LP
    takes minutes)."""
    from skrobust import _quantile_exact, _quantile_level

    X, y = gap_data(20_000, 10)

    def whole_lp(*args, **kwargs):
        raise AssertionError("fell back to the whole linear programme")

    cold = []
    fit_again = _quantile_level._fit_again

    def recording(*args, **kwargs):
        cold.append(args)
        return fit_again(*args, **kwargs)

    monkeypatch.setattr(_quantile_exact, "_solve_full", whole_lp)
    monkeypatch.setattr(_quantile_level, "_fit_again", recording)
    model = MultiQuantileRegressor(quantiles=9).fit(X, y)
    assert cold, "no level's neighbour start failed: the test lost its subject"
    assert np.all(model.n_iter_ <= model.max_iter)
    monkeypatch.undo()
    for level, coef, intercept in zip(
        model.quantiles_, model.coef_, model.intercept_, strict=True
    ):
        single = QuantileRegressor(quantile=level).fit(X, y)
        f = pinball_objective(X, y, coef, intercept, level, None, 0.0)
        f_single = pinball_objective(
            X, y, single.coef_, single.intercept_, level, None, 0.0
        )
        assert abs(f - f_single) <= 1e-9 * f_single
