"""The residual attributes of a fit come from the solver's last pass.

A MAD-scale fit's last pass is at the solution and remembers its
predictions: ``noise_scale_``, ``outliers_`` and ``weights_`` need no
other product with ``X`` (0.4 ms of a 1e5 x 20 fit), and are those of the
residuals to rounding.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import skrobust._lockstep as lockstep_module
from skrobust import HuberRegressor, LogCoshRegressor
from skrobust._base import mad_scale
from skrobust._mestimator import _irls_weights


def _contaminated(n_samples=50_000, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    y = X @ rng.standard_normal(n_features) + 0.5 * rng.standard_normal(n_samples)
    y[::10] += 20.0
    return X, y


@pytest.mark.parametrize("estimator_class", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize("weighted", [False, True])
def test_mad_fit_residual_attributes_without_another_product_with_x(
    monkeypatch, estimator_class, weighted
):
    X, y = _contaminated()
    sample_weight = None
    if weighted:
        sample_weight = np.random.default_rng(1).uniform(0.0, 2.0, y.size)
        sample_weight[::7] = 0.0

    def no_product(*args, **kwargs):
        raise AssertionError("the fitted values were formed again")

    monkeypatch.setattr(lockstep_module, "design_dot", no_product)
    est = estimator_class(scale="mad")
    est.fit(X, y, sample_weight=sample_weight)

    residuals = y - X @ est.coef_ - est.intercept_
    noise = mad_scale(residuals, sample_weight)
    assert_allclose(est.noise_scale_, noise, rtol=1e-12)
    assert_allclose(
        est.weights_, _irls_weights(est._rho(), residuals, est.scale_), rtol=1e-10
    )
    assert_array_equal(est.outliers_, np.abs(residuals) > 2.5 * noise)
