"""
===========================================================
Scoring by a robust loss: tuning ``delta`` without outliers
===========================================================

``GridSearchCV`` scores by :math:`R^2` unless told otherwise. On data with
outliers in ``y`` that is the wrong yardstick for a robust model: the
held-out folds contain outliers too, their squared errors dominate the
score, and the threshold that follows them furthest (the largest
``delta``) wins. Scoring by the mean Huber loss of
:mod:`skrobust.metrics` instead counts every large residual linearly, so
the score measures how well the model predicts the clean majority.

Here both scores select ``delta`` for the same pipeline, from the same
cross-validation fits, and we compare the coefficient error of what each
selects.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skrobust import HuberRegressor
from skrobust.metrics import make_huber_scorer, mean_huber_loss

rng = np.random.default_rng(0)
n_samples, n_features = 300, 5
X = rng.normal(size=(n_samples, n_features))
true_coef = 2.0 * rng.normal(size=n_features)
y = X @ true_coef + 1.0 + rng.normal(size=n_samples)  # clean noise: std 1
# 15% of the targets shifted upwards by about 8 noise standard deviations.
outlier = rng.random(n_samples) < 0.15
y[outlier] += rng.normal(8.0, 4.0, size=outlier.sum())

# %%
# The robust scorer's threshold is in the units of ``y``: residuals beyond
# it count linearly. Near the spread of the clean residuals is the natural
# choice (here their standard deviation is 1; in practice take, say, 1.35
# times a robust scale such as the MAD of a robust fit's residuals).
scoring = {"r2": "r2", "huber": make_huber_scorer(delta=1.35)}
deltas = [1.1, 1.35, 2.0, 3.0, 5.0]
search = GridSearchCV(
    make_pipeline(StandardScaler(), HuberRegressor()),
    {"huberregressor__delta": deltas},
    scoring=scoring,
    refit=False,
    cv=KFold(n_splits=5, shuffle=True, random_state=0),
).fit(X, y)


def coefficient_error(delta):
    """Distance of the coefficients fitted on all data from the true ones."""
    model = make_pipeline(StandardScaler(), HuberRegressor(delta=delta)).fit(X, y)
    coef = model[-1].coef_ / model[0].scale_  # back to the units of X
    return np.linalg.norm(coef - true_coef)


errors = {delta: coefficient_error(delta) for delta in deltas}
selected = {}
for name in scoring:
    scores = search.cv_results_[f"mean_test_{name}"]
    selected[name] = deltas[int(np.argmax(scores))]
    print(
        f"scoring={name!r:8}: selects delta={selected[name]}, "
        f"coefficient error {errors[selected[name]]:.3f}"
    )

# %%
# :math:`R^2` keeps improving as ``delta`` grows, because a larger threshold
# lets the fit move towards the outliers, which shrinks their squared
# held-out errors; the coefficients pay for it. The mean Huber loss is best
# at a small threshold, where the coefficients are closest to the truth.
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
for ax, name in zip(axes[:2], scoring, strict=True):
    ax.errorbar(
        deltas,
        search.cv_results_[f"mean_test_{name}"],
        yerr=search.cv_results_[f"std_test_{name}"],
        fmt="o-",
        capsize=3,
    )
    ax.axvline(selected[name], color="0.6", ls="--")
    ax.set_xlabel("HuberRegressor delta")
    ax.set_title(f"cross-validated {name} score")
axes[2].plot(deltas, list(errors.values()), "o-", color="C3")
for name, marker in [("r2", "s"), ("huber", "^")]:
    axes[2].plot(
        selected[name],
        errors[selected[name]],
        marker,
        ms=12,
        mfc="none",
        label=f"selected by {name}",
    )
axes[2].set_xlabel("HuberRegressor delta")
axes[2].set_title("coefficient error")
axes[0].set_ylabel("mean over folds (higher is better)")
axes[2].legend()
fig.tight_layout()
plt.show()

# %%
# Which rows drive a loss
# -----------------------
# ``reduction="none"`` returns the per-sample losses, to see which rows
# drive a score. For the model :math:`R^2` selects, the outliers make up
# most of the squared error; under the Huber loss each of them counts only
# linearly in its residual, so their share is smaller, and the clean rows
# decide more of the score.
model = make_pipeline(StandardScaler(), HuberRegressor(delta=selected["r2"]))
y_pred = model.fit(X, y).predict(X)
per_sample = {
    "squared error": 0.5 * (y - y_pred) ** 2,
    "Huber loss": mean_huber_loss(y, y_pred, delta=1.35, reduction="none"),
}
for name, losses in per_sample.items():
    share = losses[outlier].sum() / losses.sum()
    print(f"{name:>13}: outliers ({outlier.mean():.0%} of rows) give {share:.0%}")
