"""The fitting machinery of HuberRegressor and LogCoshRegressor.

Reproducible refits, Newton and L-BFGS reaching the same point, warm starts
that carry nothing but the starting point, the fitted attributes and what
they estimate, convergence warnings, refused ``delta`` values, and
scikit-learn's tooling (grid search, cross-validation, clone, pickle,
pandas).
"""

import pickle

import numpy as np
import pandas as pd
import pytest
from _huber_logcosh import (
    ESTIMATORS,
    SCALES,
    assert_same_fit,
    fitted_vector,
    make_data,
)
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from skrobust import HuberRegressor

# --- reproducibility and warm starts -----------------------------------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_refit_is_identical(estimator_class, scale):
    X, y, _ = make_data()
    model = estimator_class(scale=scale)
    first = fitted_vector(model.fit(X, y)).copy()
    assert_array_equal(fitted_vector(model.fit(X, y)), first)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("alpha", [0.0, 2.0])
def test_newton_and_lbfgs_agree(estimator_class, scale, alpha):
    X, y, _ = make_data()
    newton = estimator_class(scale=scale, alpha=alpha, solver="newton").fit(X, y)
    lbfgs = estimator_class(scale=scale, alpha=alpha, solver="lbfgs").fit(X, y)
    assert_same_fit(lbfgs, newton)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_warm_start_on_same_data_is_immediate(estimator_class, scale):
    X, y, _ = make_data()
    model = estimator_class(scale=scale, warm_start=True).fit(X, y)
    cold = fitted_vector(model).copy()
    model.fit(X, y)
    assert_allclose(fitted_vector(model), cold, rtol=1e-12)
    # Starts are not iterations: a warm start at the solution takes none.
    assert model.n_iter_ == 0


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize(
    "first_intercept, second_intercept",
    [(False, False), (True, False), (False, True), (True, True)],
)
def test_warm_start_on_new_data_equals_cold_fit(
    estimator_class, scale, first_intercept, second_intercept
):
    """No state but the starting point carries over, with or without intercept.

    scikit-learn's HuberRegressor kept a stale intercept slot when warm
    starting with ``fit_intercept=False``.
    """
    X, y, _ = make_data(seed=0)
    X2, y2, _ = make_data(seed=7)
    y2 = 3.0 * y2 - 40.0
    warm = estimator_class(scale=scale, fit_intercept=first_intercept, warm_start=True)
    warm.fit(X, y)
    warm.set_params(fit_intercept=second_intercept).fit(X2, y2)
    cold = estimator_class(scale=scale, fit_intercept=second_intercept).fit(X2, y2)
    assert_same_fit(warm, cold)
    if not second_intercept:
        assert warm.intercept_ == 0.0


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_warm_start_with_new_number_of_features(estimator_class):
    X, y, _ = make_data()
    warm = estimator_class(warm_start=True).fit(X, y)
    warm.fit(X[:, :2], y)
    assert_same_fit(warm, estimator_class().fit(X[:, :2], y))


# --- fitted attributes ---------------------------------------------------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_fitted_attributes(estimator_class, scale):
    X, y, _ = make_data()
    model = estimator_class(scale=scale).fit(X, y)
    assert model.coef_.shape == (3,)
    assert isinstance(model.intercept_, float)
    assert model.scale_ > 0
    assert model.n_iter_ >= 1
    assert model.n_features_in_ == 3
    residuals = y - model.predict(X)
    noise_scale = np.median(np.abs(residuals)) / 0.6744897501960817
    assert_allclose(model.noise_scale_, noise_scale, rtol=1e-12)
    assert_array_equal(model.outliers_, np.abs(residuals) > 2.5 * noise_scale)
    # IRLS weights psi(z) / z, as statsmodels' RLM.weights.
    z = residuals / model.scale_
    assert_allclose(model.weights_ * z, model._rho().derivative(z), rtol=1e-12)
    assert_allclose(model.predict(X), X @ model.coef_ + model.intercept_, rtol=1e-14)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_max_iter_one_warns_and_stays_finite(estimator_class, scale):
    X, y, _ = make_data(outlier_fraction=0.3)
    with pytest.warns(ConvergenceWarning):
        model = estimator_class(scale=scale, max_iter=1).fit(X, y)
    assert np.all(np.isfinite(fitted_vector(model)))


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_joint_scale_below_existence_threshold_is_rejected(estimator_class):
    """Owen's objective has no minimiser with ``sigma > 0`` for small ``delta``.

    ``d/dsigma [sigma (1 + 2 rho(r/sigma))] = 1 - 2 (z psi - rho)``, and
    ``z psi - rho`` is at most ``delta^2 / 2`` (Huber) or ``delta^2 log 2``
    (log-cosh). Below ``delta = 1`` (Huber; scikit-learn requires
    ``epsilon >= 1`` for this reason) or ``1 / sqrt(2 log 2)`` (log-cosh)
    the objective decreases all the way to ``sigma = 0``.

    """
    X, y, _ = make_data()
    small_delta = 0.5 if estimator_class is HuberRegressor else 0.8
    with pytest.raises(ValueError):
        estimator_class(small_delta).fit(X, y)
    for scale in ["mad", 1.5]:
        model = estimator_class(small_delta, scale=scale).fit(X, y)
        assert model.scale_ > 0.1


# --- scikit-learn tooling -------------------------------------------------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_grid_search_and_cross_val_score(estimator_class):
    X, y, _ = make_data()
    deltas = [1.1, 1.5, 3.0]
    cv = KFold(n_splits=3, shuffle=True, random_state=0)
    search = GridSearchCV(estimator_class(), {"delta": deltas}, cv=cv).fit(X, y)
    for delta, score in zip(deltas, search.cv_results_["mean_test_score"], strict=True):
        manual = [
            r2_score(
                y[test], estimator_class(delta).fit(X[train], y[train]).predict(X[test])
            )
            for train, test in cv.split(X)
        ]
        assert score == pytest.approx(np.mean(manual), rel=1e-10)
        scores = cross_val_score(estimator_class(delta), X, y, cv=cv)
        assert_allclose(scores, manual, rtol=1e-10)
    best_delta = deltas[int(np.argmax(search.cv_results_["mean_test_score"]))]
    assert search.best_params_ == {"delta": best_delta}
    assert_same_fit(search.best_estimator_, estimator_class(best_delta).fit(X, y), 0)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_clone_and_pickle(estimator_class):
    X, y, _ = make_data()
    model = estimator_class(2.0, scale="mad", alpha=0.1).fit(X, y)
    cloned = clone(model)
    assert cloned.get_params() == model.get_params()
    assert not hasattr(cloned, "coef_")
    assert_array_equal(fitted_vector(cloned.fit(X, y)), fitted_vector(model))
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(restored.predict(X), model.predict(X))
    assert_array_equal(restored.outliers_, model.outliers_)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_pandas_input_and_feature_names(estimator_class):
    X, y, _ = make_data()
    names = ["age", "income", "ratio"]
    frame = pd.DataFrame(X, columns=names)
    # No "X does not have valid feature names" warning may escape fit.
    model = estimator_class().fit(frame, pd.Series(y, name="target"))
    assert_array_equal(model.feature_names_in_, names)
    # A DataFrame arrives column-major, so sums run in another order: the
    # same fit up to rounding.
    from_array = estimator_class().fit(X, y)
    assert_same_fit(model, from_array, 1e-10)
    assert_allclose(model.predict(frame), from_array.predict(X), rtol=1e-10)
    # scikit-learn's own behaviour, as for any estimator: renamed columns are
    # an error and an unnamed array is a warning.
    renamed = frame.rename(columns={"age": "years"})
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(renamed)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        model.predict(X)
