"""The least-squares start by LSQR (beyond 300 coefficients): few digits, unless exact.

A start needs no more digits than the fit after it recovers in a step, so
LSQR stops at ``_LSQR_START_TOL`` (15 iterations became 9 on a 2e4 x 1000
design); only where the residuals are nearly zero, where whether least
squares fits exactly decides the robust fit, is it solved again from zero
(the minimum-norm solution of an underdetermined system), to
``_LSQR_EXACT_TOL``. (At the former 1e-10 an exact wide fit kept residuals
of 2e-9 to 5e-9, above ``EXACT_FIT_TOL``: it was not seen to be exact, and
the robust fit was an LP's interpolant, or had a scale of 1.8e-11.)
"""

import numpy as np
import pytest
import scipy.sparse.linalg
from numpy.testing import assert_allclose

import skrobust._base as base_module
from skrobust import HuberRegressor, LogCoshRegressor


def _record_lsqr(monkeypatch):
    calls = []
    lsqr = scipy.sparse.linalg.lsqr

    def recorded(*args, **kwargs):
        result = lsqr(*args, **kwargs)
        calls.append((kwargs.get("x0") is not None, kwargs["atol"], result[2]))
        return result

    monkeypatch.setattr(base_module.scipy.sparse.linalg, "lsqr", recorded)
    return calls


def _wide(n_samples, n_features=320, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = X @ rng.normal(size=n_features) + 1.5 + noise * rng.normal(size=n_samples)
    return X, y


@pytest.mark.parametrize(
    "estimator", [HuberRegressor(), HuberRegressor(scale="mad"), LogCoshRegressor()]
)
def test_noisy_start_stops_at_the_start_tolerance_and_lands_all_the_same(
    monkeypatch, estimator
):
    X, y = _wide(3000)
    y[::10] += 40.0
    calls = _record_lsqr(monkeypatch)
    fitted = estimator.fit(X, y)
    starts = [atol for warm, atol, _ in calls if not warm]
    # One LSQR from zero, to the start's tolerance (before: to 1e-10).
    assert starts == [base_module._LSQR_START_TOL]
    assert base_module._LSQR_START_TOL >= 1e-6
    # The fit the fully solved start leads to.
    monkeypatch.setattr(base_module, "_LSQR_START_TOL", base_module._LSQR_TOL)
    reference = estimator.__class__(**estimator.get_params()).fit(X, y)
    fit = np.r_[fitted.coef_, fitted.intercept_, fitted.scale_]
    expected = np.r_[reference.coef_, reference.intercept_, reference.scale_]
    assert_allclose(fit, expected, rtol=1e-8, atol=1e-8 * np.max(np.abs(expected)))


@pytest.mark.parametrize("n_samples", [2000, 200])
def test_exact_fits_are_still_found_and_minimum_norm(monkeypatch, n_samples):
    """Targets exactly linear (2000 rows), or fewer rows than columns (200).

    The least-squares fit is exact, so it is the robust fit with scale 0:
    ``numpy.linalg.lstsq``'s minimum-norm solution of the centred system.
    """
    X, y = _wide(n_samples, noise=0.0)
    calls = _record_lsqr(monkeypatch)
    model = HuberRegressor(scale="mad").fit(X, y)
    assert model.scale_ == 0.0
    # The oracle: minimum-norm least squares on standardised columns (the
    # fit's coordinates) with an unpenalised intercept, by numpy's SVD.
    mean, sd = X.mean(axis=0), X.std(axis=0)
    design = np.c_[(X - mean) / sd, np.ones(n_samples)]
    u = np.linalg.lstsq(design, y, rcond=None)[0]
    w = u[:-1] / sd
    assert_allclose(model.coef_, w, rtol=1e-6, atol=1e-8 * np.max(np.abs(w)))
    assert_allclose(X @ model.coef_ + model.intercept_, y, atol=1e-8)
    # (The start's LSQR: loose, then again from zero to its exact tolerance.)
    atols = [atol for warm, atol, _ in calls if not warm]
    assert atols == [base_module._LSQR_START_TOL, base_module._LSQR_EXACT_TOL]


@pytest.mark.parametrize("n_samples", [200, 2000])
def test_exact_wide_fits_are_seen_by_the_smoothed_quantile_fit(n_samples):
    """The quantile and heteroscedastic starts solve LSQR to ``_LSQR_TOL``
    (they must be least squares), and near an exact fit again to
    ``_LSQR_EXACT_TOL``: exactly linear wide data are then fitted by least
    squares with a zero bandwidth and no iteration. (At ``_LSQR_TOL``
    alone residuals of a few 1e-9 hid the exact fit: 24-50 iterations and a
    bandwidth of 3e-6 to 8e-6.)"""
    from skrobust import QuantileRegressor

    X, y = _wide(n_samples, noise=0.0)
    model = QuantileRegressor(solver="smooth").fit(X, y)
    assert model.bandwidth_ == 0.0 and model.n_iter_ == 0
    assert_allclose(model.predict(X), y, rtol=0, atol=1e-9 * np.abs(y).max())
