"""
=======================================================
Least squares against robust regression on gross errors
=======================================================

A tenth of the targets of a simple linear relation carry large one-sided
errors (a sensor that saturates, a unit mix-up). Least squares bends towards
them; Huber and log-cosh regression cap the pull of each residual, and
median (quantile 0.5) regression counts only the sign of each residual, so
all three recover the line the clean data follow.
"""

# %%
# Contaminated data
# -----------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression

from skrobust import HuberRegressor, LogCoshRegressor, QuantileRegressor

rng = np.random.default_rng(0)
n_samples = 200
x = rng.uniform(0.0, 10.0, size=n_samples)
true_slope, true_intercept = 2.0, 1.0
y = true_slope * x + true_intercept + rng.normal(scale=1.0, size=n_samples)
# 10% gross errors in y, all upwards, at random x.
bad = rng.random(n_samples) < 0.1
y[bad] += rng.uniform(20.0, 40.0, size=bad.sum())
X = x[:, None]

# %%
# Fit and compare
# ---------------
estimators = {
    "least squares": LinearRegression(),
    "Huber": HuberRegressor(),
    "log-cosh": LogCoshRegressor(),
    "median (quantile 0.5)": QuantileRegressor(quantile=0.5),
}
for name, estimator in estimators.items():
    estimator.fit(X, y)
    print(
        f"{name:>21}: slope {estimator.coef_[0]:5.2f} (true {true_slope}), "
        f"intercept {estimator.intercept_:5.2f} (true {true_intercept})"
    )

# %%
# The least-squares line is lifted by the outliers (its intercept absorbs
# about their mean contribution); the robust fits follow the bulk of the data.
#
# ``outliers_`` marks the rows in the linear zone of Huber's loss,
# :math:`|r_i| > \delta \cdot` ``scale_``. It contains every corrupted row,
# and also clean rows in the tails of the noise: with the default joint scale
# the threshold is about 0.9 noise standard deviations (see the user guide
# on choosing ``delta``), so it is a list of rows whose pull was capped, not
# a verdict that they are wrong.
huber = estimators["Huber"]
print(
    f"{bad.sum()} corrupted rows, {huber.outliers_[bad].sum()} of them flagged; "
    f"{huber.outliers_[~bad].sum()} of {(~bad).sum()} clean rows flagged"
)

grid = np.linspace(0.0, 10.0, 2)[:, None]
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.scatter(x[~bad], y[~bad], s=12, c="0.6", label="clean data")
ax.scatter(x[bad], y[bad], s=16, c="tab:red", marker="x", label="gross errors")
ax.plot(grid, true_slope * grid + true_intercept, "k:", label="true line")
styles = ["-", "--", "-.", ":"]
for (name, estimator), style in zip(estimators.items(), styles, strict=True):
    ax.plot(grid, estimator.predict(grid), style, lw=2, label=name)
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.set_title("10% gross errors in y")
ax.legend(loc="upper left")
fig.tight_layout()
plt.show()
