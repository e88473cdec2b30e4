"""A warm start from a fit to ``y`` on another scale: the cold fit, as if none.

``warm_start`` promises the same solution, faster. A previous fit to ``y``
1e6 times larger is 1e6 robust spreads of the new ``y`` away: Newton's
method and the smoothed quantile solver spent ``max_iter`` from it and
warned, and the heteroscedastic likelihood, its variance as far off, is
flat there and stopped after 6 iterations, 1e12 times off, without a
warning. Such a start is dropped (``skrobust._base.warm_start_is_plausible``,
on dask ``skrobust._dask_median.plausible_warm``). Oracle: the cold fit of the
same estimator (whose optimality the other modules check against scipy).
"""

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.base import clone

from skrobust import (
    HeteroscedasticRegressor,
    HuberRegressor,
    LogCoshRegressor,
    QuantileRegressor,
)

ESTIMATORS = [
    HuberRegressor(warm_start=True),
    HuberRegressor(scale=1.0, warm_start=True),
    LogCoshRegressor(scale="lad", warm_start=True),
    QuantileRegressor(solver="smooth", warm_start=True),
    QuantileRegressor(solver="exact", warm_start=True),
    HeteroscedasticRegressor(warm_start=True),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
@pytest.mark.parametrize("on_dask", [False, True])
def test_a_warm_start_from_y_a_million_times_larger_is_dropped(estimator, on_dask):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.standard_t(2, size=60)
    X_fit = da.from_array(X, chunks=(20, 3)) if on_dask else X
    model = clone(estimator)
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X_fit, 1e6 * y)
        model.fit(X_fit, 1e-6 * y)
    cold = clone(estimator).set_params(warm_start=False).fit(X, 1e-6 * y)
    np.testing.assert_allclose(model.coef_, cold.coef_, rtol=1e-7)
    assert model.intercept_ == pytest.approx(cold.intercept_, rel=1e-7, abs=1e-13)
