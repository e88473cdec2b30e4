"""The subsample that starts a large fit is a contiguous copy of dense rows.

Its solve (the MAD scale's secant on it: a dozen passes) read one row in
``SUBSAMPLE_STEP`` of ``X`` through a strided view; a copy within
:func:`~skrobust._base.copy_budget` reads contiguous rows, a third faster
per pass. The rows, and so every fit, are the same.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from skrobust import HuberRegressor, LogCoshRegressor
from skrobust._base import copy_budget
from skrobust._objective import LinearObjective
from skrobust._solvers import SUBSAMPLE_MIN_ROWS, SUBSAMPLE_STEP
from skrobust.losses import FixedScaleLoss, HuberRho


def _objective(X, y):
    loss = FixedScaleLoss(HuberRho(1.345), 1.0)
    return LinearObjective(loss, X, y, np.ones(len(y)), [(None, True)], [0.0])


def _data(n_samples, n_features=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = X @ rng.normal(size=n_features) + rng.standard_t(3, size=n_samples)
    gross = rng.random(n_samples) < 0.1
    y[gross] += rng.uniform(10, 30, size=gross.sum())
    return X, y


def test_dense_subsample_is_a_contiguous_copy_of_the_strided_rows():
    X, y = _data(SUBSAMPLE_STEP * SUBSAMPLE_MIN_ROWS)
    assert X[::SUBSAMPLE_STEP].size <= copy_budget(X)
    sub = _objective(X, y).subsample(SUBSAMPLE_STEP)
    assert sub.X.flags.c_contiguous
    assert not np.shares_memory(sub.X, X)
    assert_array_equal(sub.X, X[::SUBSAMPLE_STEP])
    assert_array_equal(sub.y, y[::SUBSAMPLE_STEP])


def test_subsample_beyond_the_copy_budget_and_sparse_stay_views(monkeypatch):
    X, y = _data(2_000)
    monkeypatch.setattr("skrobust._base.copy_budget", lambda X: 0)
    sub = _objective(X, y).subsample(SUBSAMPLE_STEP)
    assert np.shares_memory(sub.X, X)
    monkeypatch.undo()
    Xs = sp.csr_array(X)
    sub = _objective(Xs, y).subsample(SUBSAMPLE_STEP)
    assert sp.issparse(sub.X)
    assert_array_equal(sub.X.toarray(), X[::SUBSAMPLE_STEP])


@pytest.mark.parametrize("estimator_class", [HuberRegressor, LogCoshRegressor])
def test_mad_fit_on_the_copy_is_the_fit_on_the_view(monkeypatch, estimator_class):
    X, y = _data(SUBSAMPLE_STEP * SUBSAMPLE_MIN_ROWS, n_features=5)
    fast = estimator_class(scale="mad").fit(X, y)
    monkeypatch.setattr(
        LinearObjective, "_subsample_rows", lambda self, step: self.X[::step]
    )
    reference = estimator_class(scale="mad").fit(X, y)
    assert_allclose(fast.scale_, reference.scale_, rtol=1e-9)
    assert_allclose(fast.coef_, reference.coef_, rtol=1e-8, atol=1e-10)
    assert_allclose(fast.intercept_, reference.intercept_, rtol=1e-8)
    # The MAD fixed point: the scale is the normalised MAD of the residuals.
    residuals = y - X @ fast.coef_ - fast.intercept_
    mad = np.median(np.abs(residuals)) / 0.6744897501960817
    assert_allclose(fast.scale_, mad, rtol=1e-9)
