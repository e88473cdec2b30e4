"""Exact invariances of HuberRegressor and LogCoshRegressor, and robustness.

The invariances (weights as repeated rows, equivariance in ``y`` and ``X``,
permutations, sparse input) hold for the true minimiser whatever the solver
does, so they compare two fits to solver precision (``SOLVER_RTOL``). Then
robustness: one-sided outliers barely move the fit, and once saturated their
size does not matter at all.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from _huber_logcosh import (
    ESTIMATORS,
    SCALES,
    SOLVER_RTOL,
    TRUE_COEF,
    assert_same_fit,
    fitted_vector,
    make_data,
    make_outlier_data,
)
from numpy.testing import assert_allclose
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# --- properties shared by both estimators and every scale option -------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("sparse_format", [None, "csr"])
def test_integer_weights_equal_repeated_rows(estimator_class, scale, sparse_format):
    X, y, _ = make_data()
    repeats = np.random.default_rng(3).integers(0, 4, size=len(y))
    X_fit = sp.csr_array(X) if sparse_format else X
    weighted = estimator_class(scale=scale).fit(X_fit, y, sample_weight=repeats)
    X_rep = np.repeat(X, repeats, axis=0)
    X_rep = sp.csr_array(X_rep) if sparse_format else X_rep
    repeated = estimator_class(scale=scale).fit(X_rep, np.repeat(y, repeats))
    assert_same_fit(weighted, repeated)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_zero_weights_equal_removed_rows(estimator_class, scale):
    X, y, _ = make_data()
    keep = np.random.default_rng(4).random(len(y)) < 0.7
    weighted = estimator_class(scale=scale).fit(X, y, sample_weight=keep.astype(float))
    removed = estimator_class(scale=scale).fit(X[keep], y[keep])
    assert_same_fit(weighted, removed)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize(
    "sparse_container", [sp.csr_array, sp.csc_array, sp.csr_matrix]
)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_equals_dense(estimator_class, scale, sparse_container, fit_intercept):
    X, y, _ = make_data()
    X[np.random.default_rng(5).random(X.shape) < 0.4] = 0.0
    dense = estimator_class(scale=scale, fit_intercept=fit_intercept).fit(X, y)
    sparse = estimator_class(scale=scale, fit_intercept=fit_intercept)
    sparse.fit(sparse_container(X), y)
    assert_same_fit(sparse, dense)
    assert_allclose(sparse.predict(sparse_container(X)), dense.predict(X), rtol=1e-7)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("factor", [1e-6, 3.0, 1e6, -2.0])
def test_y_scale_equivariance(estimator_class, scale, factor):
    """``y * c`` gives ``coef * c``, ``intercept * c``, ``scale_ * |c|``.

    A fixed scale is in the units of ``y``, so it is scaled along.
    """
    X, y, _ = make_data()
    model = estimator_class(scale=scale).fit(X, y)
    scaled_param = scale if isinstance(scale, str) else scale * abs(factor)
    scaled = estimator_class(scale=scaled_param).fit(X, y * factor)
    expected = np.r_[model.coef_ * factor, model.intercept_ * factor]
    assert_allclose(
        np.r_[scaled.coef_, scaled.intercept_],
        expected,
        rtol=SOLVER_RTOL,
        atol=SOLVER_RTOL * np.max(np.abs(expected)),
    )
    assert scaled.scale_ == pytest.approx(model.scale_ * abs(factor), rel=SOLVER_RTOL)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_shift_equivariance(estimator_class, scale):
    """``y + X g + a`` gives ``coef + g`` and ``intercept + a``, same scale."""
    X, y, _ = make_data()
    g, a = np.array([-4.0, 0.7, 30.0]), -25.0
    model = estimator_class(scale=scale).fit(X, y)
    shifted = estimator_class(scale=scale).fit(X, y + X @ g + a)
    expected = np.r_[model.coef_ + g, model.intercept_ + a, model.scale_]
    assert_allclose(
        fitted_vector(shifted),
        expected,
        rtol=SOLVER_RTOL,
        atol=SOLVER_RTOL * np.max(np.abs(expected)),
    )


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_row_and_column_permutations(estimator_class, scale):
    X, y, _ = make_data()
    rng = np.random.default_rng(6)
    model = estimator_class(scale=scale).fit(X, y)
    rows = rng.permutation(len(y))
    assert_same_fit(estimator_class(scale=scale).fit(X[rows], y[rows]), model)
    cols = np.array([2, 0, 1])
    permuted = estimator_class(scale=scale).fit(X[:, cols], y)
    assert_allclose(permuted.coef_, model.coef_[cols], rtol=SOLVER_RTOL)
    assert permuted.intercept_ == pytest.approx(model.intercept_, rel=SOLVER_RTOL)
    assert permuted.scale_ == pytest.approx(model.scale_, rel=SOLVER_RTOL)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_periodic_wild_targets_fit_as_shuffled(estimator_class):
    # Every 10th target times 1e4 at n = 1e5: the least-squares start's
    # strided rows (every 10th) are all wild, its start fits them. The fit
    # must still reach the optimum the shuffled rows give (it is only
    # slower: docs/user_guide/solvers.rst).
    rng = np.random.default_rng(7)
    n = 100_000
    X = rng.normal(size=(n, 5))
    y = X @ [1.0, -2.0, 0.5, 3.0, 1.5] + rng.standard_t(3, size=n)
    y[::10] *= 1e4
    rows = rng.permutation(n)
    periodic = estimator_class().fit(X, y)
    assert_same_fit(periodic, estimator_class().fit(X[rows], y[rows]), rtol=1e-9)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
def test_pipeline_with_standard_scaler_equals_direct_fit(estimator_class, scale):
    """Affine equivariance in ``X``: scaling columns first changes nothing."""
    X, y, _ = make_data()
    direct = estimator_class(scale=scale).fit(X, y)
    pipeline = make_pipeline(StandardScaler(), estimator_class(scale=scale)).fit(X, y)
    assert_allclose(pipeline.predict(X), direct.predict(X), rtol=1e-8)
    fitted = pipeline[-1]
    assert_allclose(fitted.coef_ / pipeline[0].scale_, direct.coef_, rtol=SOLVER_RTOL)
    assert fitted.scale_ == pytest.approx(direct.scale_, rel=SOLVER_RTOL)


# --- robustness -------------------------------------------------------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize(
    "scale, outlier_fraction",
    [
        (scale, fraction)
        for scale in [*SCALES, 1.0]
        for fraction in [0.1, 0.2, 0.3]
        # Not "mad" at 30%: see test_mad_scale_at_30_percent_matches_statsmodels.
        if not (scale == "mad" and fraction == 0.3)
    ],
)
def test_robust_to_one_sided_outliers(estimator_class, scale, outlier_fraction):
    """Coefficient error (in units of each column's spread) 10x below OLS's."""
    X, y, outlier_rows = make_outlier_data(outlier_fraction)
    model = estimator_class(scale=scale).fit(X, y)
    ols = LinearRegression().fit(X, y)
    spread = X.std(axis=0)
    robust_error = np.linalg.norm((model.coef_ - TRUE_COEF) * spread)
    ols_error = np.linalg.norm((ols.coef_ - TRUE_COEF) * spread)
    assert robust_error < 0.1 * ols_error
    # Every planted outlier is flagged.
    assert model.outliers_[outlier_rows].all()


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("magnitude", [1e12, 1e200])
def test_outlier_magnitude_does_not_matter_once_saturated(
    estimator_class, scale, magnitude
):
    """Moving gross outliers further out leaves the estimate unchanged.

    For residuals beyond the threshold (Huber) or a few dozen ``delta``
    scales (log-cosh, where ``tanh`` is 1 in floating point), ``psi``, the
    scale equation and the MAD do not depend on how large the residual is,
    so the minimiser is exactly the same for outliers at ``+1e3`` and at
    ``+magnitude`` (``1e200`` also checks that nothing overflows).

    """
    X, y, outlier_rows = make_data(outlier_fraction=0.05)
    fits = []
    for shift in [1e3, magnitude]:
        y_out = y.copy()
        y_out[outlier_rows] = X[outlier_rows] @ TRUE_COEF + shift
        fits.append(estimator_class(scale=scale).fit(X, y_out))
    assert_same_fit(fits[1], fits[0])
