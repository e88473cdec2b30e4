"""
Write your own loss
===================

:class:`skrobust.MEstimatorRegressor` fits any convex loss written with its
value and two derivatives. Here Fair's loss, whose influence grows to a
bound without ever becoming constant, is fitted next to Huber's and least
squares on data with 15% gross errors, with every scale option.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression

from skrobust import HuberRegressor, MEstimatorRegressor
from skrobust.losses import ResidualFunction


class FairRho(ResidualFunction):
    """Fair's loss ``c^2 (|z|/c - log(1 + |z|/c))``."""

    def __init__(self, c=1.4):
        self.c = c

    def value(self, z):
        a = np.abs(z) / self.c
        return self.c**2 * (a - np.log1p(a))

    def derivative(self, z):
        return z / (1.0 + np.abs(z) / self.c)

    def second_derivative(self, z):
        return 1.0 / (1.0 + np.abs(z) / self.c) ** 2


rng = np.random.default_rng(0)
n = 400
x = rng.uniform(0, 10, n)
y = 2.0 + 0.8 * x + rng.normal(size=n)
bad = rng.random(n) < 0.15
y[bad] += rng.uniform(15, 30, bad.sum())
X = x[:, None]

models = {
    "least squares": LinearRegression(),
    "Huber, joint scale": HuberRegressor(),
    "Fair, joint scale": MEstimatorRegressor(FairRho()),
    "Fair, MAD scale": MEstimatorRegressor(FairRho(), scale="mad"),
    "Fair, LAD scale": MEstimatorRegressor(FairRho(), scale="lad"),
}
for name, model in models.items():
    model.fit(X, y)
    print(f"{name:20s} slope {model.coef_[0]:.3f}  intercept {model.intercept_:.3f}")

# %%
# The losses and their influence functions ``psi``: Fair's influence keeps
# growing slowly, Huber's is capped at ``delta``.
z = np.linspace(-6, 6, 400)
fig, (ax_fit, ax_psi) = plt.subplots(1, 2, figsize=(10, 4))
ax_fit.scatter(x[~bad], y[~bad], s=6, color="0.6", label="clean rows")
ax_fit.scatter(x[bad], y[bad], s=6, color="tab:red", label="gross errors")
grid = np.linspace(0, 10, 2)[:, None]
colors = ["black", "tab:blue", "tab:green", "tab:orange", "tab:purple"]
for (name, model), color in zip(models.items(), colors, strict=True):
    ax_fit.plot(grid, model.predict(grid), color=color, label=name)
ax_fit.set_xlabel("x")
ax_fit.set_ylabel("y")
ax_fit.legend(fontsize=7, loc="upper left")
ax_psi.plot(z, FairRho().derivative(z), label="Fair, c = 1.4")
ax_psi.plot(z, np.clip(z, -1.35, 1.35), label="Huber, delta = 1.35")
ax_psi.set_xlabel("standardised residual z")
ax_psi.set_ylabel("psi(z)")
ax_psi.legend(loc="upper left")
fig.tight_layout()
plt.show()

# %%
# Standard errors work for a user's loss too (here Huber's H1 formula with
# the MAD scale):
fair = MEstimatorRegressor(FairRho(), scale="mad", cov_type="H1").fit(X, y)
print(fair.summary())
