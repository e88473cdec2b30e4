"""
=============================================
Breakdown: error as the contamination grows
=============================================

How much contamination can each estimator take? We corrupt a growing
fraction of the targets with large one-sided errors and measure how far the
fitted coefficients move from the truth. Least squares moves with the very
first outlier, in proportion to its size; the robust fits move by a bounded
amount that grows slowly with the fraction, until, somewhere between a
quarter and a half of the data, the corrupted rows take over the fit.

The outliers here are in ``y`` only. Against outliers in ``X`` (leverage
points) every one of these estimators breaks down at the first one, see
:ref:`sphx_glr_auto_examples_plot_leverage.py`.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression

from skrobust import HuberRegressor, LogCoshRegressor, QuantileRegressor

n_samples, n_features = 300, 3
fractions = np.linspace(0.0, 0.45, 10)
n_repeats = 3
rng = np.random.default_rng(0)
true_coef = np.array([1.0, -2.0, 0.5])

estimators = {
    "least squares": LinearRegression(),
    "Huber (joint scale)": HuberRegressor(),
    "Huber (MAD scale)": HuberRegressor(scale="mad"),
    "log-cosh": LogCoshRegressor(),
    "median (quantile 0.5)": QuantileRegressor(quantile=0.5),
}


def coefficient_error(estimator, X, y):
    """Distance of the fitted coefficients and intercept from the truth."""
    estimator.fit(X, y)
    fitted = np.append(estimator.coef_, estimator.intercept_)
    return np.linalg.norm(fitted - np.append(true_coef, 0.0))


errors = {name: np.zeros(len(fractions)) for name in estimators}
for i, fraction in enumerate(fractions):
    for _ in range(n_repeats):
        X = rng.normal(size=(n_samples, n_features))
        y = X @ true_coef + rng.normal(size=n_samples)
        n_bad = int(round(fraction * n_samples))
        # Gross errors of 20 to 50 noise standard deviations, all upwards.
        y[:n_bad] += rng.uniform(20.0, 50.0, size=n_bad)
        for name, estimator in estimators.items():
            errors[name][i] += coefficient_error(estimator, X, y) / n_repeats

# %%
# Least squares' error grows linearly with the fraction (its intercept
# absorbs the mean of the errors). The robust fits stay within a fraction of
# the noise level up to substantial contamination and then break down. Where
# they break depends on the scale: a scale estimate inflated by the outliers
# widens the quadratic zone until it lets them in (one-sided errors push
# the median of the absolute residuals up, and the joint scale with it), and
# a smaller threshold in units of the noise resists longer: in this run the
# log-cosh default, whose effective threshold is the lowest of the three
# (see the user guide on choosing ``delta``), holds out longest of the
# M-estimators with a scale. Median regression needs no scale and counts
# only the signs of the residuals: it moves only as far as the median of
# the contaminated targets moves, and holds out longest of all.
fig, ax = plt.subplots(figsize=(7, 4.5))
for name, error in errors.items():
    ax.plot(100 * fractions, error, "o-", label=name)
ax.set_yscale("log")
ax.set_xlabel("corrupted targets [%]")
ax.set_ylabel("coefficient error (incl. intercept)")
ax.set_title(f"n_samples={n_samples}, mean of {n_repeats} data sets")
ax.legend()
fig.tight_layout()
plt.show()

for name, error in errors.items():
    print(f"{name:>21}: " + " ".join(f"{e:6.2f}" for e in error))
