"""Property-based tests of every public estimator (issue 5), with hypothesis.

Random problems (shapes, column scales and offsets, the scale of ``y``,
heavy-tailed noise, one-sided gross errors, integer or continuous weights)
are drawn by :func:`problems`; each property holds for the exact minimiser of
the documented objective, so a fit that violates it is wrong whatever the
solver did:

* the first-order optimality conditions at the returned point, written from
  the documented objective in ``tests/_reliability.py::SPECS``;
* finite outputs and untouched inputs;
* equivariance: ``y -> a y + X g + c`` gives ``coef -> a coef + g``,
  ``intercept -> a intercept + c``; ``X -> X A + t`` gives ``coef ->
  A^-1 coef``;
* integer weights are repeated rows (zero weights dropped rows), and only
  relative weights matter;
* permuting rows changes nothing, permuting columns permutes ``coef_``.

The examples are derandomised, so a run is reproducible; hypothesis shrinks a
failing example to a small one, printed with the failure.
"""

import numpy as np
import pytest
from _reliability import (
    OPTIMALITY_RTOL,
    VARIANTS,
    fit,
    snapshot,
    spec_for,
    unpenalised,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from sklearn.base import clone

# Two fits of the same minimiser on equivalent problems agree to the solvers'
# precision; these problems span six orders of magnitude in column and y
# scales, hence a little more room than _reliability.SAME_FIT_RTOL (1e-7).
EQUIVALENT_RTOL = 1e-6

# No shrinking: a problem is described by a handful of numbers (printed with
# a failure, and enough to rebuild it), and shrinking would refit dozens of
# times per failure, which the time budget of the suite does not allow.
PROPERTY_SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)

variant_params = pytest.mark.parametrize("estimator", VARIANTS, ids=repr)


class Problem:
    """``X, y, sample_weight`` with the seed-level description that made them."""

    def __init__(self, X, y, sample_weight, description):
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.description = description

    def weights_or_ones(self):
        if self.sample_weight is None:
            return np.ones(len(self.y))
        return self.sample_weight

    def __repr__(self):
        return f"make_problem({self.description})"


def make_problem(
    n_samples,
    n_features,
    seed,
    log_x_scale=0.0,
    log_y_scale=0.0,
    contamination=0.0,
    weights="none",
):
    """A regression problem with heavy-tailed noise and one-sided gross errors.

    Columns get scales ``10^(log_x_scale +- 1)`` and offsets of ten times
    their scale, ``y`` the scale ``10^log_y_scale`` and Student-t(3) noise;
    the first ``contamination`` fraction of the rows get errors of 10 to 100
    times the noise scale. ``weights`` is ``"none"``, ``"integer"`` (1 to 3,
    and 0 on a fifth of the rows after the first ``4 (p + 1)``) or
    ``"continuous"`` (uniform on [0.1, 10]).
    """
    rng = np.random.default_rng(seed)
    scales = 10.0 ** (log_x_scale + rng.uniform(-1.0, 1.0, n_features))
    X = rng.normal(size=(n_samples, n_features)) * scales
    X += 10.0 * scales * rng.normal(size=n_features)
    coef = rng.normal(size=n_features) / scales
    y_unit = 10.0**log_y_scale
    y = y_unit * (X @ coef + rng.normal() + rng.standard_t(3, size=n_samples))
    n_outliers = int(contamination * n_samples)
    y[:n_outliers] += y_unit * rng.uniform(10.0, 100.0, n_outliers)
    if weights == "integer":
        sample_weight = rng.integers(1, 4, n_samples).astype(float)
        zero = rng.random(n_samples) < 0.2
        zero[: 4 * (n_features + 1)] = False
        sample_weight[zero] = 0.0
    elif weights == "continuous":
        sample_weight = rng.uniform(0.1, 10.0, n_samples)
    else:
        sample_weight = None
    description = (
        f"n_samples={n_samples}, n_features={n_features}, seed={seed}, "
        f"log_x_scale={log_x_scale!r}, log_y_scale={log_y_scale!r}, "
        f"contamination={contamination}, weights={weights!r}"
    )
    return Problem(X, y, sample_weight, description)


@st.composite
def problems(draw, weights=("none", "integer", "continuous")):
    """A :func:`make_problem` with at least four rows per coefficient."""
    n_features = draw(st.integers(1, 4))
    return make_problem(
        n_samples=draw(st.integers(4 * (n_features + 1), 80)),
        n_features=n_features,
        seed=draw(st.integers(0, 2**32 - 1)),
        log_x_scale=draw(st.floats(-3.0, 3.0)),
        log_y_scale=draw(st.floats(-3.0, 3.0)),
        contamination=draw(st.sampled_from([0.0, 0.1, 0.3])),
        weights=draw(st.sampled_from(weights)),
    )


def coef_size(model):
    return max(np.max(np.abs(model.coef_)), abs(model.intercept_))


@variant_params
@PROPERTY_SETTINGS
@given(problem=problems(), penalised=st.booleans())
def test_first_order_optimality(estimator, problem, penalised):
    """The returned point satisfies the optimality conditions of its objective.

    With ``penalised`` the estimator's own default penalty (if it has one),
    otherwise no penalty; inputs are unchanged and every output finite.
    """
    spec = spec_for(estimator)
    params = {} if penalised else unpenalised(estimator)
    X, y, w = problem.X, problem.y, problem.sample_weight
    before = [snapshot(a) for a in (X, y, problem.weights_or_ones())]
    model = fit(estimator, X, y, w, **params)
    assert [snapshot(a) for a in (X, y, problem.weights_or_ones())] == before
    violation = spec.optimality_violation(model, X, y, problem.weights_or_ones())
    assert violation < OPTIMALITY_RTOL


@variant_params
@PROPERTY_SETTINGS
@given(
    problem=problems(),
    y_factor=st.floats(1e-3, 1e3),
    y_shift=st.floats(-1e3, 1e3),
    seed=st.integers(0, 2**32 - 1),
)
def test_regression_and_scale_equivariance(estimator, problem, y_factor, y_shift, seed):
    """``a y + X g + c`` gives ``a coef + g`` and ``a intercept + c``."""
    spec = spec_for(estimator)
    X, y, w = problem.X, problem.y, problem.sample_weight
    params = unpenalised(estimator)
    rng = np.random.default_rng(seed)
    y_unit = np.std(y)
    g = rng.normal(size=X.shape[1]) * y_unit / np.std(X, axis=0)
    if not spec.regression_equivariant:
        g[:] = 0.0
    c = y_shift * y_unit
    model = fit(estimator, X, y, w, **params)
    unpenalised_estimator = clone(estimator).set_params(**params)
    transformed = fit(
        unpenalised_estimator,
        X,
        y_factor * y + X @ g + c,
        w,
        **spec.y_scaled_params(unpenalised_estimator, y_factor),
    )
    size = y_factor * coef_size(model) + np.max(np.abs(g)) + abs(c)
    assert_allclose(
        transformed.coef_,
        y_factor * model.coef_ + g,
        rtol=EQUIVALENT_RTOL,
        atol=EQUIVALENT_RTOL * size,
    )
    assert transformed.intercept_ == pytest.approx(
        y_factor * model.intercept_ + c, rel=EQUIVALENT_RTOL, abs=EQUIVALENT_RTOL * size
    )


@variant_params
@PROPERTY_SETTINGS
@given(problem=problems(), seed=st.integers(0, 2**32 - 1))
def test_affine_equivariance_in_X(estimator, problem, seed):
    """``X A + t`` (``A`` invertible) gives ``A^-1 coef`` and the same predictions."""
    X, y, w = problem.X, problem.y, problem.sample_weight
    params = unpenalised(estimator)
    rng = np.random.default_rng(seed)
    p = X.shape[1]
    # A well-conditioned mixing of the columns (condition number <= 10),
    # with a spread of column scales of its own, and a shift.
    Q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    A = Q * np.geomspace(1.0, 10.0, p) * 10.0 ** rng.uniform(-2, 2)
    t = rng.normal(size=p) * 10.0 * np.std(X @ A, axis=0)
    model = fit(estimator, X, y, w, **params)
    transformed = fit(estimator, X @ A + t, y, w, **params)
    assert_allclose(
        A @ transformed.coef_,
        model.coef_,
        rtol=EQUIVALENT_RTOL,
        atol=EQUIVALENT_RTOL * coef_size(model),
    )
    assert_allclose(
        transformed.predict(X @ A + t),
        model.predict(X),
        rtol=EQUIVALENT_RTOL,
        atol=EQUIVALENT_RTOL * np.ptp(y),
    )


@variant_params
@PROPERTY_SETTINGS
@given(problem=problems(weights=("integer",)), factor=st.floats(1e-5, 1e5))
def test_weights_are_repetitions(estimator, problem, factor):
    """Integer weights equal repeated rows (zero: dropped); a common factor is moot."""
    X, y, w = problem.X, problem.y, problem.sample_weight
    params = unpenalised(estimator)
    repeats = w.astype(int)
    weighted = fit(estimator, X, y, w, **params)
    repeated = fit(
        estimator, np.repeat(X, repeats, axis=0), np.repeat(y, repeats), **params
    )
    size = coef_size(weighted)
    for other in (repeated, fit(estimator, X, y, w * factor, **params)):
        assert_allclose(
            other.coef_,
            weighted.coef_,
            rtol=EQUIVALENT_RTOL,
            atol=EQUIVALENT_RTOL * size,
        )
        assert other.intercept_ == pytest.approx(
            weighted.intercept_, rel=EQUIVALENT_RTOL, abs=EQUIVALENT_RTOL * size
        )


@variant_params
@PROPERTY_SETTINGS
@given(problem=problems(), seed=st.integers(0, 2**32 - 1))
def test_permutation_invariance(estimator, problem, seed):
    """Permuted rows give the same fit; permuted columns the permuted ``coef_``."""
    X, y, w = problem.X, problem.y, problem.sample_weight
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(y))
    columns = rng.permutation(X.shape[1])
    model = fit(estimator, X, y, w)
    shuffled = fit(
        estimator, X[rows][:, columns], y[rows], None if w is None else w[rows]
    )
    size = coef_size(model)
    assert_allclose(
        shuffled.coef_,
        model.coef_[columns],
        rtol=EQUIVALENT_RTOL,
        atol=EQUIVALENT_RTOL * size,
    )
    assert shuffled.intercept_ == pytest.approx(
        model.intercept_, rel=EQUIVALENT_RTOL, abs=EQUIVALENT_RTOL * size
    )
