"""Shared helpers of the estimators: medians and the least-squares starts."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose

import skrobust._base as base_module
from skrobust._base import _median, _solve_least_squares, weighted_median
from skrobust._objective import LinearObjective
from skrobust.losses import FixedScaleLoss, SquaredRho


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 10, 11, 1000, 1001])
def test_median_is_numpys_median(size):
    rng = np.random.default_rng(size)
    for trial in range(20):
        values = rng.standard_normal(size) * 10.0 ** rng.uniform(-5, 5)
        if trial % 3 == 0:
            values = np.round(values)  # ties
        assert _median(values) == np.median(values)


@pytest.mark.parametrize("extra", [0, 1, 2, 1001])
@pytest.mark.parametrize(
    "kind", ["normal", "ties", "sorted", "cauchy", "two values", "sample misled"]
)
def test_bracketed_median_is_numpys_median(monkeypatch, kind, extra):
    # From _BRACKET_MIN_SIZE values (here 2**15) the middle values are found
    # between two order statistics of a strided sample; whatever the sample
    # says (sorted values, ties, every sampled value huge so that the
    # bracket misses and the whole array is partitioned) the median must be
    # numpy's.
    monkeypatch.setattr(base_module, "_BRACKET_MIN_SIZE", 2**15)
    rng = np.random.default_rng(extra)
    n = 2**15 + extra
    values = {
        "normal": lambda: rng.standard_normal(n),
        "ties": lambda: np.round(rng.standard_normal(n), 1),
        "sorted": lambda: np.sort(rng.standard_normal(n)),
        "cauchy": lambda: np.abs(rng.standard_cauchy(n)),
        "two values": lambda: (np.arange(n) < n // 3).astype(float),
        "sample misled": lambda: (
            np.where(np.arange(n) % 64 == 0, 1e9, 1.0) * rng.standard_normal(n)
        ),
    }[kind]()
    assert _median(values) == np.median(values)
    assert _median(values[:-1]) == np.median(values[:-1])


def test_median_of_values_near_the_largest_double_does_not_overflow():
    values = np.array([1.5e308, 1.7e308, -1.0, 1.6e308])
    assert _median(values) == pytest.approx(1.55e308, rel=1e-15)


def test_weighted_median_with_integer_weights_is_the_median_of_repeats():
    rng = np.random.default_rng(0)
    values = rng.normal(size=31)
    weights = rng.integers(0, 4, size=31).astype(float)
    weights[0] = 1.0
    expected = np.median(np.repeat(values, weights.astype(int)))
    assert weighted_median(values, weights) == pytest.approx(expected, rel=1e-15)


def least_squares_objective(X, y, sample_weight, fit_intercept, l2):
    return LinearObjective(
        FixedScaleLoss(SquaredRho()),
        X,
        y,
        sample_weight,
        [(None, fit_intercept)],
        [l2],
    )


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", ["equal", "varied", "some zero"])
@pytest.mark.parametrize("l2", [0.0, 0.5])
def test_dense_normal_equations_equal_the_blocked_pass(
    sparse, fit_intercept, weights, l2
):
    """The start from a copied design solves the same normal equations."""
    rng = np.random.default_rng(1)
    n, p = 3000, 6
    X = rng.normal(size=(n, p)) * np.logspace(-2, 2, p) + np.arange(p)
    y = X @ rng.normal(size=p) + rng.standard_t(3, size=n)
    sample_weight = {
        "equal": np.full(n, 2.5),
        "varied": rng.uniform(0.1, 3.0, size=n),
        "some zero": np.where(rng.random(n) < 0.2, 0.0, 1.0),
    }[weights]
    if weights == "some zero":
        # Weightless rows may hold anything finite.
        X[sample_weight == 0] *= 1e150
        y[sample_weight == 0] = 1e300
    X_in = sp.csr_array(X) if sparse else X
    objective = least_squares_objective(X_in, y, sample_weight, fit_intercept, l2)
    blocked = _solve_least_squares(objective)
    dense = _solve_least_squares(
        objective, budget=objective.n_samples * objective.n_coef
    )
    assert np.all(np.isfinite(dense))
    assert_allclose(dense, blocked, rtol=1e-9, atol=1e-12)
