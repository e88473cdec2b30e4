"""Parameters and gross errors at the edges of their ranges (issue 5).

Every public estimator with a ``delta`` reaches its limits (least absolute
deviation, checked against the linear programme of ``tests/_oracles.py``, and
least squares) and survives absurd values; gross errors of 1e20 to 1e300 do
not move a bounded-influence fit; ``max_iter=1`` warns and returns a finite
point. Estimators and harness: ``tests/_reliability.py``.
"""

import warnings

import numpy as np
import pytest
from _oracles import least_squares, quantile_linprog
from _reliability import (
    OPTIMALITY_RTOL,
    VARIANTS,
    X_REF,
    Y_REF,
    MEstimatorSpec,
    assert_finite_fit,
    assert_refused,
    assert_same_fit,
    fit,
    make_data,
    spec_for,
    variant_params,
)
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning


@pytest.mark.parametrize(
    "estimator",
    [v for v in VARIANTS if "delta" in v.get_params()],
    ids=repr,
)
@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_extreme_delta_reaches_its_limits(estimator, solver):
    """Tiny ``delta`` is least absolute deviation, huge ``delta`` least squares.

    For a tiny ``delta`` the objective at the fit must be no larger than at
    the least-absolute-deviation solution (an upper bound of the minimum) at
    the same scale; for a huge one, the coefficients are least squares'.
    ("Tiny" is 1e-4 scales: at 1e-8 the quadratic zone is below the
    resolution of a gradient test, and the fit is LAD's to ~1e-4 only.)
    """
    spec = spec_for(estimator)
    X, y = X_REF, Y_REF
    weights = np.ones(len(y))
    tiny = clone(estimator).set_params(delta=1e-4, solver=solver)
    if estimator.scale == "joint" and not spec.joint_scale_exists(1e-4):
        # The joint objective decreases all the way to sigma = 0 when
        # 2 chi(z) < 1 for every z: there is no fit to return.
        assert_refused(tiny, X, y, match="delta")
    else:
        small = fit(tiny, X, y)
        # Least absolute deviation: the median (quantile 0.5) regression.
        lad_coef, lad_intercept, _ = quantile_linprog(X, y, quantile=0.5)
        sigma = spec.sigma(small)
        at_fit = spec.objective(
            small, X, y, weights, small.coef_, small.intercept_, sigma
        )
        at_lad = spec.objective(small, X, y, weights, lad_coef, lad_intercept, sigma)
        assert at_fit <= at_lad * (1 + 1e-9)
    large = fit(estimator, X, y, delta=1e8, solver=solver)
    ls_coef, ls_intercept = least_squares(X, y)
    assert_allclose(large.coef_, ls_coef, rtol=1e-6)
    assert large.intercept_ == pytest.approx(ls_intercept, rel=1e-6)
    if estimator.scale == "joint":
        # sigma (1 + r^2 / sigma^2) summed is smallest at the RMS residual.
        rms = np.sqrt(np.mean((y - X @ ls_coef - ls_intercept) ** 2))
        assert large.scale_ == pytest.approx(rms, rel=1e-6)


@pytest.mark.parametrize(
    "estimator",
    [v for v in VARIANTS if "delta" in v.get_params()],
    ids=repr,
)
@pytest.mark.parametrize("delta", [1e-300, 1e300])
def test_absurd_delta_fits_or_is_refused(estimator, delta):
    # A delta inside the documented range (0, inf) but at the edge of the
    # floating-point range: a finite fit, or a ValueError naming delta.
    try:
        fit(estimator, X_REF, Y_REF, delta=delta)
    except ValueError as error:
        assert "delta" in str(error)


# ---------------------------------------------------------------------------
# Gross errors of any size, and max_iter=1
# ---------------------------------------------------------------------------


@variant_params
@pytest.mark.parametrize("size", [1e20, 1e100, 1e300])
def test_size_of_gross_errors_does_not_matter(estimator, size):
    """Outliers of 1e20 to 1e300 give the same fit as outliers of 1e4.

    Past the threshold of a bounded-influence loss, an outlier only enters
    through the sign of its residual (Huber's clipped psi, log-cosh's tanh
    that is 1.0 in floating point beyond |z| ~ 20, the pinball loss), so the
    minimiser does not depend on its size at all.
    """
    X, y = make_data(n_samples=200, seed=3, outlier_fraction=0.0)
    outliers = np.arange(0, 200, 10)
    y_moderate, y_huge = y.copy(), y.copy()
    y_moderate[outliers] += 1e4
    y_huge[outliers] += size
    model = fit(estimator, X, y_huge)
    if spec_for(estimator).bounded_influence:
        assert_same_fit(model, fit(estimator, X, y_moderate), rtol=1e-6)


@variant_params
def test_early_stop_warns_and_returns_a_finite_point(estimator):
    """With ``max_iter=1``: a ConvergenceWarning and a finite point, or the optimum.

    Contaminated data are not solved in one iteration by an iterative
    solver, which must then say so; an exact solver (quantile regression's
    linear programme) may ignore ``max_iter`` but must then return a point
    that satisfies the optimality conditions. For a fixed scale, where the
    objective depends on the coefficients alone, the point returned early is
    no worse than least squares.
    """
    X, y = make_data(n_samples=200, seed=4, outlier_fraction=0.3)
    spec = spec_for(estimator)
    weights = np.ones(len(y))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = clone(estimator).set_params(max_iter=1).fit(X, y)
    assert_finite_fit(model, X)
    if not any(issubclass(w.category, ConvergenceWarning) for w in caught):
        assert spec.optimality_violation(model, X, y, weights) < OPTIMALITY_RTOL
    if isinstance(spec, MEstimatorSpec) and not isinstance(estimator.scale, str):
        ls_coef, ls_intercept = least_squares(X, y)
        sigma = float(estimator.scale)
        at_fit = spec.objective(
            model, X, y, weights, model.coef_, model.intercept_, sigma
        )
        at_ls = spec.objective(model, X, y, weights, ls_coef, ls_intercept, sigma)
        assert at_fit <= at_ls
