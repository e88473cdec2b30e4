"""
================================================================
The quantile regression process, and bands that do not cross
================================================================

Engel's 1857 data relate the food expenditure of 235 Belgian working-class
households to their income. One quantile regression describes one level of
the conditional distribution; fitted at many levels ``tau`` at once, the
coefficients as functions of ``tau`` (the *quantile regression process*)
show how the whole distribution moves with income, as R's
``plot(summary(rq(foodexp ~ income, tau = 1:19 / 20, data = engel)))``
does.

:class:`~skrobust.MultiQuantileRegressor` fits all 19 levels in about the
time of a few single fits (each level starts from its neighbour's exact
solution), with standard errors per level (``cov_type``).
"""

# %%
# The process: coefficients against tau
# -------------------------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.datasets import engel

from skrobust._multiquantile import MultiQuantileRegressor

data = engel.load_pandas().data
X, y = data[["income"]], data["foodexp"]
levels = np.arange(1, 20) / 20
process = MultiQuantileRegressor(levels, cov_type="ker").fit(X, y)

# Least squares with its usual (iid) standard errors, for comparison.
design = np.column_stack([np.ones(len(y)), X["income"]])
ols, residual_ss = np.linalg.lstsq(design, y, rcond=None)[:2]
ols_cov = residual_ss[0] / (len(y) - 2) * np.linalg.inv(design.T @ design)

t_90 = stats.t.ppf(0.95, len(y) - 2)
estimates = np.column_stack([process.intercept_, process.coef_[:, 0]])
errors = np.column_stack([process.intercept_se_, process.coef_se_[:, 0]])
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for j, (ax, name) in enumerate(zip(axes, ["intercept", "income"], strict=True)):
    ax.fill_between(
        levels,
        estimates[:, j] - t_90 * errors[:, j],
        estimates[:, j] + t_90 * errors[:, j],
        color="0.8",
        label="90% pointwise band",
    )
    ax.plot(levels, estimates[:, j], "o-", color="k", ms=3, label="quantile fit")
    ax.axhline(ols[j], color="tab:red", label="least squares")
    for bound in (-1, 1):
        ax.axhline(
            ols[j] + bound * t_90 * np.sqrt(ols_cov[j, j]), color="tab:red", ls="--"
        )
    ax.set_xlabel("tau")
    ax.set_title(name)
axes[0].legend(loc="upper left")
fig.tight_layout()

# %%
# The slope of income rises with tau: an extra franc of income raises the
# upper quantiles of food expenditure more than the lower ones (the
# spread grows with income), which least squares, one number, cannot say.
print(np.round(process.coef_[[0, 9, 18], 0], 3), "slopes at tau = 0.05, 0.5, 0.95")

# %%
# Crossing and rearranged quantile curves
# ---------------------------------------
# Fitted lines of different slopes must cross somewhere. Engel's lowest
# income is 377 francs; neighbouring fitted lines already cross below about
# 490, and all of them around 200, where the predicted 0.05 quantile
# exceeds the 0.95 one. Sorting the predictions of each row (the
# rearrangement of Chernozhukov, Fernandez-Val and Galichon) makes them
# monotone in tau without changing them where they do not cross: the k-th
# rearranged curve is the k-th lowest of the fitted lines at each income.
grid = pd.DataFrame({"income": np.linspace(0.0, 800.0, 200)})
raw = process.set_params(non_crossing=False).predict_quantiles(grid)
rearranged = process.set_params(non_crossing="rearrange").predict_quantiles(grid)
crossing = np.any(np.diff(raw, axis=1) < 0, axis=1)
print(f"raw curves cross below income {grid['income'][crossing].max():.0f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
colors = plt.cm.viridis(levels)
for ax, predictions, title in zip(
    axes, [raw, rearranged], ["raw: crossing", "rearranged"], strict=True
):
    ax.scatter(X["income"], y, s=5, c="0.6")
    for column, color in zip(predictions.T, colors, strict=True):
        ax.plot(grid["income"], column, color=color, lw=1)
    ax.set_xlim(0, 800)
    ax.set_ylim(0, 700)
    ax.set_xlabel("income")
    ax.set_title(title)
axes[0].set_ylabel("food expenditure")
fig.tight_layout()
plt.show()
