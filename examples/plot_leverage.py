"""
===================================================
Outliers in y versus leverage points in X
===================================================

Robust M-estimators such as Huber, log-cosh and median (quantile)
regression bound the pull of a large *residual*. That protects the fit
against gross errors in ``y`` at ordinary values of ``x`` (left). It does
not protect it against a few rows far out in ``x`` with wrong targets,
*leverage points* (right): such a row can drag the line towards itself until
its own residual is small, and then nothing downweights it. Against
contaminated features every M-estimator, like least squares, breaks down at
the first bad row; a high-breakdown method such as RANSAC is needed there.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression, RANSACRegressor

from skrobust import HuberRegressor, LogCoshRegressor, QuantileRegressor

rng = np.random.default_rng(0)
n_samples = 100
x = rng.uniform(0.0, 5.0, size=n_samples)
y = 1.0 + 2.0 * x + rng.normal(scale=0.5, size=n_samples)

# Left: 10 targets off by -15 at ordinary x.
y_outliers = y.copy()
y_outliers[:10] -= 15.0
x_outliers = x

# Right: 10 rows moved far out in x, with targets that follow a wrong value.
x_leverage = x.copy()
y_leverage = y.copy()
x_leverage[:10] = rng.normal(20.0, 0.5, size=10)
y_leverage[:10] = rng.normal(0.0, 0.5, size=10)

estimators = {
    "least squares": LinearRegression(),
    "Huber": HuberRegressor(),
    "log-cosh": LogCoshRegressor(),
    "median": QuantileRegressor(quantile=0.5),
    "RANSAC": RANSACRegressor(random_state=0),
}

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
cases = [
    ("outliers in y", x_outliers, y_outliers),
    ("leverage points", x_leverage, y_leverage),
]
for ax, (title, xs, ys) in zip(axes, cases, strict=True):
    ax.scatter(xs[10:], ys[10:], s=12, c="0.6", label="clean data")
    ax.scatter(xs[:10], ys[:10], s=25, c="tab:red", marker="x", label="bad rows")
    grid = np.linspace(0.0, xs.max(), 2)[:, None]
    ax.plot(grid, 1.0 + 2.0 * grid, "k:", label="true line")
    print(title)
    for name, estimator in estimators.items():
        estimator.fit(xs[:, None], ys)
        ax.plot(grid, estimator.predict(grid), lw=2, label=name)
        slope = (estimator.predict([[1.0]]) - estimator.predict([[0.0]]))[0]
        print(f"  {name:>14}: slope {slope:5.2f} (true 2.00)")
    ax.set_title(title)
    ax.set_xlabel("x")
axes[0].set_ylabel("y")
axes[0].legend(loc="upper left", fontsize=9)
fig.tight_layout()
plt.show()

# %%
# On the left, the robust fits ignore the bad rows and only least squares is
# pulled down. On the right the robust M-estimators tilt, like least squares,
# towards the leverage points: with the line passing close to them, their
# residuals are no longer large, so a bounded :math:`\psi` has nothing to cap.
# RANSAC, which fits random subsets and keeps the one most rows agree with,
# recovers the line in both cases, at the cost of a random, non-smooth
# estimate with much lower efficiency on clean data.
