"""
=============================================
Quantile bands on heteroscedastic data
=============================================

Quantile regression fits one line per quantile of ``y`` given ``x``. When
the noise grows with ``x`` and is skewed, the lines fan out and are spaced
unevenly, and together they describe the conditional distribution without
assuming a shape for it: the band between the 0.05 and 0.95 quantiles is a
90% prediction interval.

The check that matters is calibration: on new data, the fraction of targets
below the fitted ``q``-quantile should be ``q``, at every ``x``.
"""

# %%
# Skewed noise whose spread grows with x
# --------------------------------------
import matplotlib.pyplot as plt
import numpy as np

from skrobust import QuantileRegressor

rng = np.random.default_rng(0)


def make_data(n_samples):
    """A line plus centred, right-skewed noise whose scale grows with x."""
    x = rng.uniform(0.0, 10.0, size=n_samples)
    noise = rng.gamma(shape=2.0, scale=1.0, size=n_samples) - 2.0
    y = 1.0 + 0.5 * x + (0.2 + 0.25 * x) * noise
    return x[:, None], y


X_train, y_train = make_data(1000)
X_test, y_test = make_data(20_000)

# %%
# One fit per quantile
# --------------------
quantiles = [0.05, 0.25, 0.5, 0.75, 0.95]
models = {q: QuantileRegressor(quantile=q).fit(X_train, y_train) for q in quantiles}
for q, model in models.items():
    below = np.mean(y_test <= model.predict(X_test))
    slope = model.coef_[0]
    print(f"q={q:.2f}: slope {slope:5.2f}, fraction of new y below {below:.3f}")

# %%
# The lines fan out with the noise, and the upper quantiles are further from
# the median than the lower ones: the noise is skewed to the right. The right
# panel measures, in bins of ``x``, the fraction of new targets below each
# fitted quantile; each should sit on its nominal level.
fig, (ax_fit, ax_cal) = plt.subplots(1, 2, figsize=(11, 4.5))
grid = np.linspace(0.0, 10.0, 2)[:, None]
ax_fit.scatter(X_train[:, 0], y_train, s=6, c="0.65", label="training data")
colors = plt.cm.viridis(np.linspace(0.1, 0.9, len(quantiles)))
for (q, model), color in zip(models.items(), colors, strict=True):
    ax_fit.plot(grid, model.predict(grid), color=color, lw=2, label=f"q={q}")
ax_fit.fill_between(
    grid[:, 0],
    models[0.05].predict(grid),
    models[0.95].predict(grid),
    color="tab:blue",
    alpha=0.12,
    label="90% band",
)
ax_fit.set_xlabel("x")
ax_fit.set_ylabel("y")
ax_fit.legend(loc="upper left", fontsize=9)

bins = np.linspace(0.0, 10.0, 6)
which = np.digitize(X_test[:, 0], bins[1:-1])
centres = 0.5 * (bins[1:] + bins[:-1])
for (q, model), color in zip(models.items(), colors, strict=True):
    below = y_test <= model.predict(X_test)
    measured = [below[which == k].mean() for k in range(len(centres))]
    ax_cal.plot(centres, measured, "o-", color=color)
    ax_cal.axhline(q, color=color, lw=1, ls=":")
ax_cal.set_ylim(0.0, 1.0)
ax_cal.set_xlabel("x")
ax_cal.set_ylabel("fraction of new targets below the fitted quantile")
ax_cal.set_title("calibration along x (dotted: nominal)")
fig.tight_layout()
plt.show()

# %%
# Coverage of the 90% band
# ------------------------
inside = (models[0.05].predict(X_test) <= y_test) & (
    y_test <= models[0.95].predict(X_test)
)
print(f"measured coverage of the 0.05-0.95 band: {inside.mean():.3f}")

# %%
# Each quantile is fitted on its own, so with few data or far from the
# training range two lines can cross; fit them on enough data, and do not
# extrapolate a band beyond the range of ``x`` it was fitted on.
