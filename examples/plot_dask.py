"""
Fit on a Dask array
===================

The M-estimators fit a row-chunked ``dask.array`` without gathering ``X``:
each evaluation of the objective is one task per chunk, summed on the
client. This example uses dask's synchronous scheduler (a cluster works the
same way, see the user guide's "Scaling out" page) and shows that the fit
equals the in-memory fit of the same data, for each scale option, and how
many round trips to the chunks each fit took.
"""

import dask
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

from skrobust import HuberRegressor, LogCoshRegressor

rng = np.random.default_rng(0)
n, p = 40_000, 5
X = rng.normal(size=(n, p)) * [1.0, 10.0, 0.1, 3.0, 1.0]
y = X @ rng.normal(size=p) + 2.0 + rng.standard_t(3, size=n)
y[rng.random(n) < 0.1] += 50.0  # 10% gross errors

# Eight chunks of rows; y stays a numpy array (a dask array works too).
X_dask = da.from_array(X, chunks=(5_000, p))

estimators = {
    "Huber joint": HuberRegressor(),
    "Huber mad": HuberRegressor(scale="mad"),
    "Huber scale=1": HuberRegressor(scale=1.0),
    "LogCosh joint": LogCoshRegressor(),
}
differences, round_trips = [], []
with dask.config.set(scheduler="synchronous"):
    for name, estimator in estimators.items():
        in_memory = HuberRegressor(**estimator.get_params())
        if isinstance(estimator, LogCoshRegressor):
            in_memory = LogCoshRegressor(**estimator.get_params())
        in_memory.fit(X, y)
        on_dask = estimator.fit(X_dask, y)
        both = np.append(on_dask.coef_, on_dask.intercept_)
        reference = np.append(in_memory.coef_, in_memory.intercept_)
        differences.append(np.max(np.abs(both - reference) / np.abs(reference)))
        round_trips.append(on_dask._dask_round_trips)
        print(
            f"{name:14s} largest relative difference {differences[-1]:.1e}, "
            f"{round_trips[-1]} round trips, n_iter_ {on_dask.n_iter_}"
        )
    # predict on a dask array is lazy, with X's chunks.
    prediction = on_dask.predict(X_dask)
    print(type(prediction).__name__, prediction.chunks[0][:3], "...")

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
left.bar(list(estimators), differences, color="tab:blue")
left.set_yscale("log")
left.set_ylabel("largest relative difference\nfrom the in-memory fit")
left.axhline(1e-8, color="grey", ls="--", lw=1)
right.bar(list(estimators), round_trips, color="tab:orange")
right.set_ylabel("round trips to the chunks")
for axis in (left, right):
    axis.tick_params(axis="x", rotation=30)
fig.suptitle(f"HuberRegressor and LogCoshRegressor on a dask array, n = {n:.0e}")
plt.show()
