"""``verbose``: silent by default, a line per solve at 1, per iteration at 2."""

import numpy as np
import pytest
from sklearn.base import clone

from skrobust import (
    HeteroscedasticRegressor,
    HuberRegressor,
    MultiQuantileRegressor,
    QuantileRegressor,
)


def make_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3))
    return X, X @ [1.0, 2.0, 3.0] + rng.normal(size=500)


@pytest.mark.parametrize(
    "estimator",
    [
        HuberRegressor(),
        QuantileRegressor(solver="smooth"),
        # (The exact solver solves 500 rows' whole programme at once: no
        # smoothed fit to report.)
        MultiQuantileRegressor(quantiles=3, solver="smooth"),
        HeteroscedasticRegressor(),
    ],
    ids=repr,
)
def test_verbose_levels(estimator, capsys):
    X, y = make_data()
    clone(estimator).fit(X, y)
    assert capsys.readouterr().out == ""
    clone(estimator).set_params(verbose=1).fit(X, y)
    out = capsys.readouterr().out
    name = type(estimator).__name__
    assert f"[{name}]" in out and "iterations, max |gradient|" in out
    clone(estimator).set_params(verbose=2).fit(X, y)
    out2 = capsys.readouterr().out
    # A line per iteration: scipy's, Newton's or Levenberg-Marquardt's.
    per_iteration = ("iteration: objective", "Newton step", "Levenberg-Marquardt step")
    assert any(line in out2 for line in per_iteration)


def test_progress_of_levels_and_bootstrap_replicates(capsys):
    X, y = make_data()
    MultiQuantileRegressor(quantiles=3, verbose=1).fit(X, y)
    assert "level 3/3 done, about" in capsys.readouterr().out
    model = QuantileRegressor(cov_type="bootstrap", n_bootstrap=4, verbose=1)
    model.fit(X, y)
    assert "bootstrap replicate 4/4 done" in capsys.readouterr().out


@pytest.mark.parametrize("scale", ["joint", "mad", 1.0])
def test_dask_fit_reports_its_stages_and_round_trips(scale, capsys):
    import dask
    import dask.array as da

    X, y = make_data()
    X_dask = da.from_array(X, chunks=(125, 3))
    with dask.config.set(scheduler="synchronous"):
        HuberRegressor(scale=scale).fit(X_dask, y)
        assert capsys.readouterr().out == ""
        HuberRegressor(scale=scale, verbose=1).fit(X_dask, y)
    out = capsys.readouterr().out
    assert "[HuberRegressor on dask]" in out
    assert "500 rows in 4 chunks" in out
    assert "scale solved" in out and "round trips in all" in out
    # The MAD scale of 500 rows is Newton's point on fit and scale, with no
    # fixed-scale solve after it (as in memory, test_mestimator.py).
    solved = "iterations, max |gradient|"
    if scale == "mad":
        solved = "newton on fit and scale"
    assert solved in out
