"""skrobust.metrics scorers inside scikit-learn's model selection tools.

The oracle is the same computation written out: a loop over the folds that
fits, predicts and calls the metric directly.
"""

import pickle

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.metrics import get_scorer as sklearn_get_scorer
from sklearn.metrics import mean_pinball_loss as sklearn_mean_pinball_loss
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.fixes import parse_version

from skrobust import HeteroscedasticRegressor, HuberRegressor, QuantileRegressor
from skrobust.metrics import (
    crps_gaussian,
    gaussian_nll,
    get_scorer,
    get_scorer_names,
    interval_score,
    make_huber_scorer,
    make_interval_scorer,
    make_log_cosh_scorer,
    make_pinball_scorer,
    mean_huber_loss,
    mean_log_cosh_error,
    mean_pinball_loss,
    mean_smooth_l1_loss,
    root_mean_squared_error,
)

CV = KFold(3, shuffle=True, random_state=0)


def contaminated(n=150, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = X @ [1.5, -1.0] + 0.3 + rng.normal(scale=0.5, size=n)
    y[: n // 10] += 20.0  # gross outliers in y
    return X, y, rng.uniform(0.5, 2.0, size=n)


def heteroscedastic(n=200, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    y = X @ [2.0, -1.0] + np.exp(0.7 * X[:, 0]) * rng.standard_normal(n)
    return X, y, rng.uniform(0.5, 2.0, size=n)


def fold_scores(estimator, X, y, score, sample_weight=None, fit_weighted=True):
    """``score(fitted, X_test, y_test, w_test)`` on each fold of CV."""
    scores = []
    for train, test in CV.split(X):
        model = clone(estimator)
        if sample_weight is not None and fit_weighted:
            model.fit(X[train], y[train], sample_weight=sample_weight[train])
        else:
            model.fit(X[train], y[train])
        w_test = None if sample_weight is None else sample_weight[test]
        scores.append(score(model, X[test], y[test], w_test))
    return np.array(scores)


def test_point_scorers_are_minus_their_metrics():
    X, y, w = contaminated()
    model = HuberRegressor().fit(X, y)
    y_pred = model.predict(X)
    cases = [
        (get_scorer("neg_mean_huber_loss"), mean_huber_loss, {}),
        (get_scorer("neg_mean_smooth_l1_loss"), mean_smooth_l1_loss, {}),
        (get_scorer("neg_mean_log_cosh_error"), mean_log_cosh_error, {}),
        (get_scorer("neg_mean_pinball_loss"), mean_pinball_loss, {}),
        (get_scorer("neg_root_mean_squared_error"), root_mean_squared_error, {}),
        (make_huber_scorer(0.3), mean_huber_loss, {"delta": 0.3}),
        (make_log_cosh_scorer(2.0), mean_log_cosh_error, {"delta": 2.0}),
        (make_pinball_scorer(0.9), mean_pinball_loss, {"quantile": 0.9}),
    ]
    for scorer, metric, kwargs in cases:
        assert scorer(model, X, y) == -metric(y, y_pred, **kwargs)
        assert scorer(model, X, y, sample_weight=w) == -metric(
            y, y_pred, sample_weight=w, **kwargs
        )


def test_distribution_and_interval_scorers_call_the_right_methods():
    X, y, w = heteroscedastic()
    model = HeteroscedasticRegressor().fit(X, y)
    mean, std = model.predict(X, return_std=True)
    intervals = model.predict_interval(X, coverage=0.8)
    nll, crps = get_scorer("neg_gaussian_nll"), get_scorer("neg_crps_gaussian")
    assert nll(model, X, y, sample_weight=w) == -gaussian_nll(
        y, mean, std, sample_weight=w
    )
    assert crps(model, X, y) == -crps_gaussian(y, mean, std)
    assert make_interval_scorer(0.8)(model, X, y) == -interval_score(y, intervals, 0.8)
    assert get_scorer("neg_interval_score")(model, X, y) == -interval_score(
        y, model.predict_interval(X, coverage=0.9), 0.9
    )


def test_grid_search_selects_by_the_robust_score_with_sample_weight():
    # GridSearchCV forwards fit's sample_weight to a scorer whose metric
    # takes it (scikit-learn >= 1.7, PR #30743; older versions pass none); without
    # routing, fit gets the weights as well.
    X, y, w = contaminated()
    scorer = make_huber_scorer(delta=0.5)
    grid = [1.1, 1.35, 2.0, 5.0]
    search = GridSearchCV(HuberRegressor(), {"delta": grid}, scoring=scorer, cv=CV)
    search.fit(X, y, sample_weight=w)
    forwards = parse_version(sklearn.__version__) >= parse_version("1.7")
    expected = [
        fold_scores(
            HuberRegressor(delta=delta),
            X,
            y,
            lambda m, X_, y_, w_: (
                -mean_huber_loss(
                    y_, m.predict(X_), delta=0.5, sample_weight=w_ if forwards else None
                )
            ),
            sample_weight=w,
        ).mean()
        for delta in grid
    ]
    assert_allclose(search.cv_results_["mean_test_score"], expected, rtol=1e-10)
    assert search.best_params_["delta"] == grid[int(np.argmax(expected))]


def test_cross_validate_with_several_skrobust_scorers():
    X, y, _ = heteroscedastic()
    scoring = {
        "nll": get_scorer("neg_gaussian_nll"),
        "crps": get_scorer("neg_crps_gaussian"),
        "interval": make_interval_scorer(0.8),
        "huber": get_scorer("neg_mean_huber_loss"),
        "r2": "r2",
    }
    # A pipeline passes return_std=True on to its final step, but has no
    # predict_interval: the interval score is taken on the estimator itself.
    interval_scoring = {"interval": scoring.pop("interval")}
    model = make_pipeline(StandardScaler(), HeteroscedasticRegressor())
    interval_model = HeteroscedasticRegressor()
    result = cross_validate(model, X, y, cv=CV, scoring=scoring)
    interval_result = cross_validate(
        interval_model, X, y, cv=CV, scoring=interval_scoring
    )

    def nll(m, X_, y_, w_):
        return -gaussian_nll(y_, *m.predict(X_, return_std=True))

    def crps(m, X_, y_, w_):
        return -crps_gaussian(y_, *m.predict(X_, return_std=True))

    def interval(m, X_, y_, w_):
        bounds = m.predict_interval(X_, coverage=0.8)
        return -interval_score(y_, bounds, 0.8)

    assert_allclose(result["test_nll"], fold_scores(model, X, y, nll), rtol=1e-10)
    assert_allclose(result["test_crps"], fold_scores(model, X, y, crps), rtol=1e-10)
    assert_allclose(
        interval_result["test_interval"],
        fold_scores(interval_model, X, y, interval),
        rtol=1e-10,
    )
    assert np.all(np.isfinite(result["test_huber"]))


def test_cross_validate_routes_sample_weight_to_the_scorers():
    X, y, w = heteroscedastic()
    with sklearn.config_context(enable_metadata_routing=True):
        # What a scorer can be routed is what its metric takes besides the
        # predictions, as for scikit-learn's own scorers.
        for name in ("neg_gaussian_nll", "neg_interval_score"):
            requests = get_scorer(name).get_metadata_routing().score.requests
            assert set(requests) == {"sample_weight", "multioutput", "reduction"}
        scoring = {
            "nll": get_scorer("neg_gaussian_nll").set_score_request(sample_weight=True),
            "interval": make_interval_scorer(0.9).set_score_request(sample_weight=True),
        }
        model = HeteroscedasticRegressor().set_fit_request(sample_weight=False)
        result = cross_validate(
            model, X, y, cv=CV, scoring=scoring, params={"sample_weight": w}
        )

    def nll(m, X_, y_, w_):
        return -gaussian_nll(y_, *m.predict(X_, return_std=True), sample_weight=w_)

    def interval(m, X_, y_, w_):
        bounds = m.predict_interval(X_, coverage=0.9)
        return -interval_score(y_, bounds, 0.9, sample_weight=w_)

    model = HeteroscedasticRegressor()
    expected_nll = fold_scores(model, X, y, nll, sample_weight=w, fit_weighted=False)
    assert_allclose(result["test_nll"], expected_nll, rtol=1e-10)
    expected_interval = fold_scores(
        model, X, y, interval, sample_weight=w, fit_weighted=False
    )
    assert_allclose(result["test_interval"], expected_interval, rtol=1e-10)
    # The weights made a difference (the oracle without them differs).
    unweighted = fold_scores(model, X, y, nll)
    assert not np.allclose(result["test_nll"], unweighted, rtol=1e-6)


def test_pinball_scorer_in_a_quantile_grid_search():
    X, y, _ = contaminated()
    search = GridSearchCV(
        QuantileRegressor(quantile=0.8),
        {"alpha": [0.0, 0.1]},
        scoring=make_pinball_scorer(0.8),
        cv=CV,
    )
    search.fit(X, y)
    expected = [
        fold_scores(
            QuantileRegressor(quantile=0.8, alpha=alpha),
            X,
            y,
            lambda m, X_, y_, w_: (
                -sklearn_mean_pinball_loss(y_, m.predict(X_), alpha=0.8)
            ),
        ).mean()
        for alpha in (0.0, 0.1)
    ]
    assert_allclose(search.cv_results_["mean_test_score"], expected, rtol=1e-10)


def test_get_scorer_falls_back_to_scikit_learn_and_copies():
    assert repr(get_scorer("r2")) == repr(sklearn_get_scorer("r2"))
    assert "neg_mean_huber_loss" in get_scorer_names()
    assert "r2" in get_scorer_names()
    with pytest.raises(ValueError, match="get_scorer_names"):
        get_scorer("neg_mean_hubber_loss")
    assert get_scorer("neg_gaussian_nll") is not get_scorer("neg_gaussian_nll")
    scorer = make_huber_scorer(0.5)
    assert get_scorer(scorer) is scorer
    # Scorers travel to joblib workers by pickling.
    for name in ("neg_mean_huber_loss", "neg_gaussian_nll", "neg_interval_score"):
        restored = pickle.loads(pickle.dumps(get_scorer(name)))
        assert repr(restored) == repr(get_scorer(name))


def test_scorer_needing_a_method_the_estimator_lacks_says_so():
    X, y, _ = contaminated()
    model = HuberRegressor().fit(X, y)
    with pytest.raises(AttributeError, match="predict_interval"):
        get_scorer("neg_interval_score")(model, X, y)


@pytest.mark.parametrize(
    "factory, bad",
    [
        (make_huber_scorer, 0.0),
        (make_log_cosh_scorer, -1.0),
        (make_pinball_scorer, 1.2),
        (make_interval_scorer, 1.0),
    ],
)
def test_scorer_factories_validate_their_parameter(factory, bad):
    with pytest.raises(ValueError):
        factory(bad)


def test_robust_score_selects_a_smaller_delta_and_better_coefficients_than_r2():
    # The claim of the user guide and of examples/plot_robust_scoring.py: on
    # targets with one-sided gross errors, R^2 rewards the largest delta and
    # the mean Huber loss a small one, with the smaller coefficient error.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    true_coef = 2.0 * rng.normal(size=5)
    y = X @ true_coef + 1.0 + rng.normal(size=300)
    outlier = rng.random(300) < 0.15
    y[outlier] += rng.normal(8.0, 4.0, size=outlier.sum())
    deltas = [1.1, 2.0, 5.0]
    search = GridSearchCV(
        HuberRegressor(),
        {"delta": deltas},
        scoring={"r2": "r2", "huber": make_huber_scorer(1.35)},
        refit=False,
        cv=KFold(5, shuffle=True, random_state=0),
    ).fit(X, y)
    chosen = {
        name: deltas[int(np.argmax(search.cv_results_[f"mean_test_{name}"]))]
        for name in ("r2", "huber")
    }
    assert chosen == {"r2": 5.0, "huber": 1.1}
    error = {
        name: np.linalg.norm(HuberRegressor(delta=d).fit(X, y).coef_ - true_coef)
        for name, d in chosen.items()
    }
    assert error["huber"] < 0.5 * error["r2"]
