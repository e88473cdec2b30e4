"""
=====================================================================
Tuning ``delta`` and ``quantile`` with GridSearchCV inside a Pipeline
=====================================================================

skrobust's estimators are ordinary scikit-learn regressors, so their
hyper-parameters are tuned with :class:`~sklearn.model_selection.GridSearchCV`
inside a :class:`~sklearn.pipeline.Pipeline`, addressed as
``<step name>__<parameter>``.

One point needs care: the validation folds contain the outliers too. A
squared-error score (the default :math:`R^2`) is dominated by them and
rewards the threshold that fits them best, that is a large ``delta``. A
robust score, such as the median absolute error, measures how well the
model predicts the clean majority.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import make_scorer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skrobust import HuberRegressor, QuantileRegressor

rng = np.random.default_rng(0)
n_samples, n_features = 400, 5
X = rng.normal(size=(n_samples, n_features)) * [1.0, 10.0, 0.1, 1.0, 5.0]
true_coef = rng.normal(size=n_features) / X.std(axis=0)
y = X @ true_coef + rng.standard_t(df=3, size=n_samples)
bad = rng.random(n_samples) < 0.1
y[bad] += rng.uniform(10.0, 30.0, size=bad.sum())

pipeline = make_pipeline(StandardScaler(), HuberRegressor())
deltas = [1.1, 1.2, 1.35, 1.6, 2.0, 3.0, 5.0, 10.0, 100.0]
cv = KFold(n_splits=5, shuffle=True, random_state=0)
# Both scores from the same fits; the robust one chooses the refitted model.
scorings = ["neg_median_absolute_error", "r2"]
search = GridSearchCV(
    pipeline,
    {"huberregressor__delta": deltas},
    scoring=scorings,
    refit="neg_median_absolute_error",
    cv=cv,
).fit(X, y)
results = search.cv_results_
for scoring in scorings:
    best = deltas[np.argmax(results[f"mean_test_{scoring}"])]
    print(f"{scoring:>26}: best delta = {best}")

# %%
# The two criteria pull in opposite directions. The median absolute error
# of the held-out predictions is about the same for every threshold between
# 1 and 2 (the differences are within the fold-to-fold spread) and much worse
# from 3 on, where the outliers enter the quadratic zone. The :math:`R^2`
# instead keeps improving towards least squares (``delta=100`` puts every
# residual in the quadratic zone), because on the validation folds the
# outliers dominate a squared error, and least squares chases them.
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, scoring in zip(axes, scorings, strict=True):
    mean = results[f"mean_test_{scoring}"]
    std = results[f"std_test_{scoring}"]
    ax.errorbar(deltas, mean, yerr=std, fmt="o-", capsize=3)
    ax.axvline(deltas[np.argmax(mean)], color="0.7", ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("delta")
    ax.set_title(f"scoring={scoring!r}")
axes[0].set_ylabel("mean cross-validated score (higher is better)")
fig.tight_layout()
plt.show()

# %%
# The tuned pipeline is refitted on all the data and used like any other
# estimator.
best = search.best_estimator_
coef = best[-1].coef_ / best[0].scale_  # back to the units of X
error = np.linalg.norm(coef - true_coef)
print(f"coefficient error of the tuned pipeline: {error:.3f}")

# %%
# Choosing ``quantile`` for an asymmetric cost
# ---------------------------------------------
# Suppose under-predicting costs 4 per unit (stock runs out) and
# over-predicting costs 1 (stock left over). The prediction that minimises
# the expected cost is then the ``4 / (4 + 1) = 0.8`` quantile of ``y``
# given ``x``, not its mean or median. Cross-validating ``quantile`` against
# this cost finds it from the data.
under_cost, over_cost = 4.0, 1.0


def asymmetric_cost(y_true, y_pred):
    """Mean cost of the errors: ``under_cost`` per unit short, ``over_cost`` over."""
    error = y_true - y_pred
    return np.mean(np.where(error > 0, under_cost * error, -over_cost * error))


# Skewed noise, so that the quantiles of y given x are far apart.
y_skewed = X @ true_coef + rng.gamma(shape=1.5, scale=2.0, size=n_samples)
quantiles = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
quantile_search = GridSearchCV(
    make_pipeline(StandardScaler(), QuantileRegressor()),
    {"quantileregressor__quantile": quantiles},
    scoring=make_scorer(asymmetric_cost, greater_is_better=False),
    cv=cv,
).fit(X, y_skewed)
best_quantile = quantile_search.best_params_["quantileregressor__quantile"]
optimal_quantile = under_cost / (under_cost + over_cost)
print(f"best quantile: {best_quantile} (theory: {optimal_quantile})")

fig, ax = plt.subplots(figsize=(6, 3.8))
ax.errorbar(
    quantiles,
    -quantile_search.cv_results_["mean_test_score"],
    yerr=quantile_search.cv_results_["std_test_score"],
    fmt="o-",
    capsize=3,
)
ax.axvline(optimal_quantile, color="0.7", ls="--")
ax.set_xlabel("quantile")
ax.set_ylabel("mean held-out cost (lower is better)")
ax.set_title("GridSearchCV over quantile, cost 4 short / 1 over")
fig.tight_layout()
plt.show()

# %%
# The cost is lowest around the 0.8 quantile, as the theory says: the
# asymmetric cost is, up to the factor 5, the pinball loss of the 0.8
# quantile, which the 0.8-quantile regression minimises.
