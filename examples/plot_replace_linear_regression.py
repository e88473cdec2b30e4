"""
===================================================
Replacing LinearRegression in an existing pipeline
===================================================

A typical scikit-learn pipeline one-hot encodes categorical columns, scales
numerical ones and fits :class:`~sklearn.linear_model.LinearRegression`.
Making it robust to gross errors in the target is a one-line change: swap
the final step for :class:`skrobust.HuberRegressor`. Everything else (pandas
input, the column transformer, cross-validation) stays as it is.
"""

# %%
# A pandas data set with a categorical column and corrupted targets
# ------------------------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skrobust import HuberRegressor

rng = np.random.default_rng(0)
n_samples = 500
data = pd.DataFrame(
    {
        "area": rng.uniform(30.0, 150.0, size=n_samples),
        "age": rng.uniform(0.0, 80.0, size=n_samples),
        "district": rng.choice(["north", "south", "east", "west"], size=n_samples),
    }
)
district_effect = data["district"].map(
    {"north": 40.0, "south": 0.0, "east": 15.0, "west": -10.0}
)
price = (
    50.0
    + 3.0 * data["area"]
    - 0.8 * data["age"]
    + district_effect
    + rng.normal(scale=15.0, size=n_samples)
)
# 5% of the prices were entered in the wrong unit (ten times too large).
typo = rng.random(n_samples) < 0.05
price[typo] *= 10.0

# %%
# The existing pipeline, and the one-line change
# ----------------------------------------------
preprocess = make_column_transformer(
    (StandardScaler(), ["area", "age"]),
    (OneHotEncoder(), ["district"]),
)
pipeline = make_pipeline(preprocess, LinearRegression())
robust_pipeline = make_pipeline(preprocess, HuberRegressor())
# On a pipeline object you already have, set_params replaces the step (which
# keeps its old name): pipeline.set_params(linearregression=HuberRegressor())

# %%
# Cross-validated errors, measured on the clean rows
# --------------------------------------------------
# Both pipelines are trained on the corrupted prices; they are scored against
# the correct prices of the held-out rows, since scoring against corrupted
# ones would measure how well a model predicts typos.
clean_price = price.where(~typo, price / 10.0)


def clean_mae(estimator, X, y):
    """Mean absolute error against the uncorrupted prices of the rows of X."""
    return -np.mean(np.abs(estimator.predict(X) - clean_price.loc[X.index]))


results = {}
models = {"LinearRegression": pipeline, "HuberRegressor": robust_pipeline}
for name, model in models.items():
    cv = cross_validate(model, data, price, cv=5, scoring=clean_mae)
    results[name] = -cv["test_score"]
    print(f"{name:>16}: mean absolute error {results[name].mean():6.1f}")

# %%
# The robust pipeline's coefficients are close to the ones that generated the
# data: 3 per square metre, -0.8 per year of age.
robust_pipeline.fit(data, price)
scale = robust_pipeline[0].named_transformers_["standardscaler"].scale_
area, age = robust_pipeline[-1].coef_[:2] / scale
print(f"Huber: {area:.2f} per m^2, {age:.2f} per year")
pipeline.fit(data, price)
area, age = pipeline[-1].coef_[:2] / scale
print(f"least squares: {area:.2f} per m^2, {age:.2f} per year")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.boxplot(list(results.values()))
ax.set_xticks([1, 2], labels=list(results))
ax.set_ylabel("held-out mean absolute error\n(against the correct prices)")
ax.set_title("5-fold cross-validation, 5% of prices ten times too large")
fig.tight_layout()
plt.show()
