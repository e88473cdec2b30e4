"""The MAD scale on a wide design (L-BFGS): fewer passes, the same fixed point.

Two costs of ``scale="mad"`` beyond 300 coefficients (the 2e4 x 1000 shape
of the benchmark took 1.7-1.9 times scikit-learn's ``HuberRegressor``) were
cut, each checked here against the answer it must keep:

* L-BFGS's gradient tests and restarts look up the points it has evaluated
  instead of passing over ``X`` again, and a rounding-level stop near the
  optimum goes straight to the truncated Newton steps that follow rather
  than to restarts;
* the secant's fixed-scale fits before the last are solved only roughly
  (``_LBFGS_FIRST_GAP``), as after a subsample's fixed point.
"""

import functools

import _data
import numpy as np
import pytest
from _oracles import MAD_NORMAL_CONSTANT, FixedScaleOracle, huber_psi, huber_rho
from numpy.testing import assert_allclose
from sklearn.base import clone

from skrobust import (
    HuberRegressor,
    LogCoshRegressor,
    _lbfgs,
    _objective,
    _scale,
    _scale_mad,
    _solvers,
)

N_FEATURES = 320  # (above NEWTON_MAX_COEF: the L-BFGS path)


def wide_data(n_samples=2000, n_features=N_FEATURES, seed=0):
    return _data.wide_data(n_samples, n_features, seed)


def _record_passes(monkeypatch):
    """Every pass of ``loss_gradient`` over ``X``: (objective, point).

    (The objectives themselves, kept alive: an id could be reused by a later
    objective, which starts where the last one ended.)
    """
    passes = []
    loss_gradient = _objective.LinearObjective.loss_gradient

    def recorded(self, coef):
        passes.append((self, np.array(coef, dtype=float)))
        return loss_gradient(self, coef)

    monkeypatch.setattr(_objective.LinearObjective, "loss_gradient", recorded)
    return passes


@pytest.mark.parametrize(
    "estimator",
    [HuberRegressor(scale="mad"), LogCoshRegressor(scale="mad"), HuberRegressor()],
    ids=repr,
)
def test_lbfgs_never_passes_over_the_same_point_twice(monkeypatch, estimator):
    X, y = wide_data()
    passes = _record_passes(monkeypatch)
    clone(estimator).fit(X, y)
    assert passes
    repeated = [
        i
        for i in range(1, len(passes))
        if passes[i][0] is passes[i - 1][0]
        and np.array_equal(passes[i][1], passes[i - 1][1])
    ]
    assert repeated == []


def test_lbfgs_rounding_stop_is_finished_by_newton_steps_not_restarts(monkeypatch):
    X, y = wide_data()
    solves, runs = [], []
    finished, minimize = _solvers._lbfgs_finished, _lbfgs.scipy.optimize.minimize

    def recorded_solve(*args, **kwargs):
        solves.append(1)
        return finished(*args, **kwargs)

    def recorded_run(*args, **kwargs):
        if kwargs.get("method") == "L-BFGS-B":
            runs.append(1)
        return minimize(*args, **kwargs)

    monkeypatch.setattr(_solvers, "_lbfgs_finished", recorded_solve)
    monkeypatch.setattr(_lbfgs.scipy.optimize, "minimize", recorded_run)
    model = HuberRegressor(scale="mad").fit(X, y)
    # One L-BFGS run per solve (before, most exact fits restarted it one to
    # three times from its rounding-level stop), and the fit still lands.
    assert solves and len(runs) == len(solves)
    rho = functools.partial(huber_rho, delta=model.delta)
    psi = functools.partial(huber_psi, delta=model.delta)
    oracle = FixedScaleOracle(X, y, np.ones(y.size), model.scale_, 0.0, rho, psi, True)
    _, _, best = oracle.solve([(model.coef_, model.intercept_)])
    assert oracle.value(model.coef_, model.intercept_) <= best * (1 + 1e-11)


def _mad_fixed_point_fits(monkeypatch):
    """The tolerances of the MAD secant's fits on all rows, as they run."""
    tols = []
    minimize = _scale.MProblem.minimize

    def recorded(self, objective, coef, tol=None, **kwargs):
        tols.append(tol)
        return minimize(self, objective, coef, tol=tol, **kwargs)

    monkeypatch.setattr(_scale.MProblem, "minimize", recorded)
    return tols


def test_wide_mad_fits_before_the_last_are_rough_and_the_fixed_point_exact(
    monkeypatch,
):
    X, y = wide_data()
    tols = _mad_fixed_point_fits(monkeypatch)
    model = HuberRegressor(scale="mad").fit(X, y)
    exact_tol = min(tols)
    assert len(tols) >= 3
    assert tols[0] > 100 * exact_tol  # (rough: the old code's were all exact)
    assert tols[-1] == exact_tol

    # Every fit exact, the old way: the same fixed point.
    monkeypatch.setattr(
        _scale_mad, "secant_first_gap", lambda solver, sub_rows=None: None
    )
    reference = HuberRegressor(scale="mad").fit(X, y)
    fitted = np.r_[model.coef_, model.intercept_, model.scale_]
    expected = np.r_[reference.coef_, reference.intercept_, reference.scale_]
    assert_allclose(fitted, expected, rtol=1e-8, atol=1e-8 * np.max(np.abs(expected)))

    # And it is the MAD fixed point: its residuals' normalised MAD is its
    # scale, and it minimises Huber's fixed-scale objective there (scipy).
    residuals = y - X @ model.coef_ - model.intercept_
    mad = np.median(np.abs(residuals)) / MAD_NORMAL_CONSTANT
    assert mad == pytest.approx(model.scale_, rel=1e-9)
    rho = functools.partial(huber_rho, delta=model.delta)
    psi = functools.partial(huber_psi, delta=model.delta)
    oracle = FixedScaleOracle(X, y, np.ones(y.size), model.scale_, 0.0, rho, psi, True)
    _, _, best = oracle.solve([(model.coef_, model.intercept_)])
    assert oracle.value(model.coef_, model.intercept_) <= best * (1 + 1e-11)


def test_secant_first_gap_rule():
    assert _scale_mad.secant_first_gap("lbfgs") == _scale_mad._LBFGS_FIRST_GAP
    assert _scale_mad.secant_first_gap("newton") is None
    assert _scale_mad.secant_first_gap("newton", 10_000) == pytest.approx(0.01)
    assert _scale_mad.secant_first_gap("lbfgs", 10_000) == pytest.approx(0.01)


def test_dask_solves_the_wide_mad_fits_as_roughly_as_memory(synchronous, monkeypatch):
    """The dask fit's secant takes the same first gap, and lands on memory's fit."""
    da = pytest.importorskip("dask.array")
    import skrobust._dask_mad_scale as dask_mad_scale

    gaps = []
    rule = dask_mad_scale.secant_first_gap

    def recorded(solver, sub_rows=None):
        gaps.append(rule(solver, sub_rows))
        return gaps[-1]

    monkeypatch.setattr(dask_mad_scale, "secant_first_gap", recorded)
    X, y = wide_data(n_samples=3000)
    memory = HuberRegressor(scale="mad").fit(X, y)
    Xd = da.from_array(X, chunks=((700, 1, 999, 500, 800), N_FEATURES))
    fitted = HuberRegressor(scale="mad").fit(Xd, y)
    assert gaps == [_scale_mad._LBFGS_FIRST_GAP]
    fitted_all = np.r_[fitted.coef_, fitted.intercept_, fitted.scale_]
    expected = np.r_[memory.coef_, memory.intercept_, memory.scale_]
    assert_allclose(
        fitted_all, expected, rtol=1e-8, atol=1e-8 * np.max(np.abs(expected))
    )
