"""Odd but valid input gives every public estimator's correct fit (issue 5).

``ODD_INPUTS``: unusual but valid input (constant or collinear columns,
p >= n, integer, boolean, float16 and sparse X, memory layouts, pandas, y and
X at 1e-300 to 1e300, timestamps, extreme or zero weights, no intercept) that
must give the *correct* fit, checked against a closed form, an exact
transformation of a reference fit or an independent solver
(``tests/_oracles.py``: minimum-norm least squares by ``numpy.linalg.lstsq``).
Estimators and harness: ``tests/_reliability.py``.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _oracles import least_squares
from _reliability import (
    SAME_FIT_RTOL,
    TRUE_COEF,
    VARIANTS,
    X_REF,
    Y_REF,
    as_float_fit,
    assert_same_fit,
    fit,
    reference_fit,
    spec_for,
    unpenalised,
    variant_params,
)
from numpy.testing import assert_allclose


def check_constant_y(estimator, tmp_path):
    for value in (3.7, 0.0, -1e-3):
        y = np.full(len(Y_REF), value)
        model = fit(estimator, X_REF, y)
        # A zero y has no scale of its own: 1e-12 is relative to |X| ~ 1.
        unit = abs(value) if value else 1.0
        assert_allclose(model.coef_, 0.0, atol=1e-12 * unit)
        assert model.intercept_ == pytest.approx(value, rel=1e-12, abs=1e-12 * unit)


def _check_extra_column(estimator, column):
    """An uninformative extra column gets coefficient 0 and changes nothing."""
    reference = reference_fit(estimator)
    model = fit(estimator, np.c_[X_REF, column], Y_REF)
    size = np.max(np.abs(reference.coef_))
    assert np.max(np.abs(model.coef_[..., -1])) <= SAME_FIT_RTOL * size, model.coef_
    model.coef_ = model.coef_[..., :-1]
    assert_same_fit(model, reference)


def check_constant_column(estimator, tmp_path):
    # 0.1 has no exact binary mean: its computed spread is rounding noise,
    # which must not be standardised up to a unit-variance column.
    for value in (7.0, 0.1, -1e9):
        _check_extra_column(estimator, np.full(len(Y_REF), value))


def check_zero_column(estimator, tmp_path):
    _check_extra_column(estimator, np.zeros(len(Y_REF)))


def check_duplicated_column(estimator, tmp_path):
    reference = reference_fit(estimator, **unpenalised(estimator))
    X = np.c_[X_REF, X_REF[:, 0]]
    model = fit(estimator, X, Y_REF, **unpenalised(estimator))
    assert_allclose(
        model.predict(X),
        reference.predict(X_REF),
        rtol=SAME_FIT_RTOL,
        atol=SAME_FIT_RTOL * np.ptp(Y_REF),
    )
    # Swapping two identical columns leaves the input unchanged, so a
    # deterministic, permutation-equivariant fit gives them equal coefficients.
    assert model.coef_[0] == pytest.approx(model.coef_[-1], rel=SAME_FIT_RTOL)


def check_collinear_column(estimator, tmp_path):
    reference = reference_fit(estimator, **unpenalised(estimator))
    X = np.c_[X_REF, X_REF[:, 0] - 2.0 * X_REF[:, 1]]
    model = fit(estimator, X, Y_REF, **unpenalised(estimator))
    assert_allclose(
        model.predict(X),
        reference.predict(X_REF),
        rtol=SAME_FIT_RTOL,
        atol=SAME_FIT_RTOL * np.ptp(Y_REF),
    )
    assert np.linalg.norm(model.coef_) < 1e3 * np.linalg.norm(reference.coef_)


def check_more_features_than_samples(estimator, tmp_path):
    rng = np.random.default_rng(1)
    for n, p in ((4, 3), (5, 8)):
        X, y = rng.normal(size=(n, p)), rng.normal(size=n)
        model = fit(estimator, X, y)
        if spec_for(estimator).p_ge_n == "interpolate":
            assert_allclose(model.predict(X), y, rtol=0, atol=1e-8 * np.ptp(y))
        if n == p + 1:
            # Square with the intercept: the interpolant is unique.
            coef, intercept = least_squares(X, y)
            assert_allclose(model.coef_, coef, rtol=1e-6, atol=1e-8)
            assert model.intercept_ == pytest.approx(intercept, rel=1e-6, abs=1e-8)


def check_integer_boolean_float32_X(estimator, tmp_path):
    rounded = np.round(X_REF * 3)
    for X in (
        rounded.astype(np.int64),
        rounded.astype(np.int32),
        (rounded - rounded.min(axis=0)).astype(np.uint8),
        X_REF > np.median(X_REF, axis=0),
        X_REF.astype(np.float32),
        X_REF.astype(np.float16),
    ):
        assert_same_fit(fit(estimator, X, Y_REF), as_float_fit(estimator, X, Y_REF))


def check_memory_layouts(estimator, tmp_path):
    reference = reference_fit(estimator)
    read_only = X_REF.copy()
    read_only.setflags(write=False)
    y_read_only = Y_REF.copy()
    y_read_only.setflags(write=False)
    wide = np.zeros((len(Y_REF), 2 * X_REF.shape[1]))
    wide[:, ::2] = X_REF
    np.save(tmp_path / "X.npy", X_REF)
    np.save(tmp_path / "y.npy", Y_REF)
    memmapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    y_memmapped = np.load(tmp_path / "y.npy", mmap_mode="r")
    for X, y in (
        (np.asfortranarray(X_REF), Y_REF),
        (wide[:, ::2], Y_REF),  # non-contiguous columns
        (np.repeat(X_REF, 2, axis=0)[::2], np.repeat(Y_REF, 2)[::2]),  # row stride
        (read_only, y_read_only),
        (memmapped, y_memmapped),
        (X_REF.tolist(), Y_REF.tolist()),
    ):
        assert_same_fit(fit(estimator, X, y), reference)
    weights = np.arange(1.0, len(Y_REF) + 1)
    weights.setflags(write=False)
    assert_same_fit(
        fit(estimator, read_only, y_read_only, weights),
        fit(estimator, X_REF, Y_REF, weights.copy()),
    )


def check_sparse_X(estimator, tmp_path):
    reference = reference_fit(estimator)
    for X in (sp.csr_matrix(X_REF), sp.csc_matrix(X_REF), sp.csr_array(X_REF)):
        assert_same_fit(fit(estimator, X, Y_REF), reference)
    rounded = np.round(X_REF * 3)
    assert_same_fit(
        fit(estimator, sp.csr_matrix(rounded.astype(np.int64)), Y_REF),
        fit(estimator, rounded, Y_REF),
    )


def check_pandas(estimator, tmp_path):
    reference = reference_fit(estimator)
    columns = ["a", "b", "c"]
    frame = pd.DataFrame(X_REF, columns=columns)
    for X, y in (
        (frame, pd.Series(Y_REF)),
        (frame.astype("Float64"), pd.Series(Y_REF, dtype="Float64")),
        (frame, pd.Series(Y_REF, index=np.arange(len(Y_REF))[::-1])),
    ):
        model = fit(estimator, X, y)
        assert_same_fit(model, reference)
        assert list(model.feature_names_in_) == columns
        # Predicting on the same kind of frame must not warn about names.
        assert_allclose(model.predict(X), reference.predict(X_REF), rtol=1e-6)
    rounded = np.round(X_REF * 3).astype(np.int64)
    ints = pd.DataFrame(rounded, columns=columns)
    expected = fit(estimator, rounded, Y_REF)
    assert_same_fit(fit(estimator, ints.astype("Int64"), Y_REF), expected)
    mixed = pd.DataFrame(
        {"a": rounded[:, 0], "b": X_REF[:, 1], "c": X_REF[:, 2] > 2.0}
    ).astype({"a": "Int64", "c": "boolean"})
    assert_same_fit(
        fit(estimator, mixed, Y_REF),
        fit(estimator, np.c_[rounded[:, 0], X_REF[:, 1], X_REF[:, 2] > 2.0], Y_REF),
    )


def check_integer_and_float32_y(estimator, tmp_path):
    y = np.round(Y_REF)
    expected = fit(estimator, X_REF, y)
    for y_variant in (
        y.astype(np.int64),
        y.astype(np.float32),
        pd.Series(y, dtype="Int64"),
    ):
        assert_same_fit(fit(estimator, X_REF, y_variant), expected)


def _check_y_scaled(estimator, factor):
    spec = spec_for(estimator)
    reference = reference_fit(estimator)
    params = spec.y_scaled_params(estimator, factor)
    model = fit(estimator, X_REF, Y_REF * factor, **params)
    assert_allclose(model.coef_ / factor, reference.coef_, rtol=1e-6)
    assert model.intercept_ / factor == pytest.approx(reference.intercept_, rel=1e-6)


def check_y_around_1e150(estimator, tmp_path):
    _check_y_scaled(estimator, 1e150)


def check_y_around_1e_minus_150(estimator, tmp_path):
    _check_y_scaled(estimator, 1e-150)


def check_y_around_1e300(estimator, tmp_path):
    # The target standardisation documents |y| up to 1e300.
    _check_y_scaled(estimator, 1e300)


def check_y_around_1e_minus_300(estimator, tmp_path):
    _check_y_scaled(estimator, 1e-300)


def _check_X_scaled(estimator, column_factors):
    reference = reference_fit(estimator, **unpenalised(estimator))
    model = fit(estimator, X_REF * column_factors, Y_REF, **unpenalised(estimator))
    assert_allclose(model.coef_ * column_factors, reference.coef_, rtol=1e-6)
    assert model.intercept_ == pytest.approx(reference.intercept_, rel=1e-6)


def check_column_scales_differing_by_1e12(estimator, tmp_path):
    _check_X_scaled(estimator, np.array([1e-6, 1.0, 1e6]))


def check_X_around_1e150(estimator, tmp_path):
    _check_X_scaled(estimator, np.array([1e150, 1e-150, 1.0]))


def check_X_around_1e200(estimator, tmp_path):
    # Coefficients of 1e-200 and 1e200 are representable; squaring a column
    # to get its variance is not.
    _check_X_scaled(estimator, np.array([1e200, 1e-200, 1.0]))


def check_timestamp_feature(estimator, tmp_path):
    # Unix timestamps in milliseconds: an offset 1e5 times the spread.
    # scikit-learn's HuberRegressor returns R^2 near 0 on this line.
    rng = np.random.default_rng(2)
    t = 1.7e12 + np.sort(rng.uniform(0.0, 3.15e10, size=200))
    y = 1.0 + 1e-10 * (t - 1.7e12) + 0.3 * rng.normal(size=200)
    X = t[:, None]
    coef, intercept = least_squares(X, y)
    r2_least_squares = 1 - np.sum((y - X @ coef - intercept) ** 2) / np.sum(
        (y - y.mean()) ** 2
    )
    model = fit(estimator, X, y)
    assert r2_least_squares > 0.8
    assert model.score(X, y) > r2_least_squares - 0.01
    # The same fit as on the centred feature (an exact reparametrisation).
    centred = fit(estimator, X - 1.7e12, y)
    assert model.coef_[0] == pytest.approx(centred.coef_[0], rel=1e-5)


def check_uniform_weights_of_any_size(estimator, tmp_path):
    # Only relative weights matter; a sum that overflows is still a valid
    # input (each weight is finite).
    params = unpenalised(estimator)
    reference = reference_fit(estimator, **params)
    for value in (1e-300, 1e-10, 7.0, 1e300, 1e308):
        weights = np.full(len(Y_REF), value)
        assert_same_fit(fit(estimator, X_REF, Y_REF, weights, **params), reference)


def check_zero_weights_drop_rows(estimator, tmp_path):
    keep = np.arange(len(Y_REF)) % 3 != 0
    weights = keep.astype(float)
    assert_same_fit(
        fit(estimator, X_REF, Y_REF, weights), fit(estimator, X_REF[keep], Y_REF[keep])
    )
    # Other values on zero-weight rows change nothing.
    X_garbage, y_garbage = X_REF.copy(), Y_REF.copy()
    X_garbage[~keep] = 1e6
    y_garbage[~keep] = -1e8
    assert_same_fit(
        fit(estimator, X_garbage, y_garbage, weights),
        fit(estimator, X_REF[keep], Y_REF[keep]),
    )


def check_single_positive_weight(estimator, tmp_path):
    weights = np.zeros(len(Y_REF))
    weights[5] = 2.0
    model = fit(estimator, X_REF, Y_REF, weights)
    assert model.predict(X_REF[5:6])[0] == pytest.approx(Y_REF[5], rel=1e-10)


def check_no_intercept(estimator, tmp_path):
    # Without an intercept, y = X w exactly gives w back (every loss here is
    # minimal at zero residuals), whatever the column offsets.
    y = X_REF @ TRUE_COEF
    model = fit(estimator, X_REF, y, fit_intercept=False)
    assert_allclose(model.coef_, TRUE_COEF, rtol=1e-7)
    assert model.intercept_ == 0.0


ODD_INPUTS = [
    check_constant_y,
    check_constant_column,
    check_zero_column,
    check_duplicated_column,
    check_collinear_column,
    check_more_features_than_samples,
    check_integer_boolean_float32_X,
    check_memory_layouts,
    check_sparse_X,
    check_pandas,
    check_integer_and_float32_y,
    check_y_around_1e150,
    check_y_around_1e_minus_150,
    check_y_around_1e300,
    check_y_around_1e_minus_300,
    check_column_scales_differing_by_1e12,
    check_X_around_1e150,
    check_X_around_1e200,
    check_timestamp_feature,
    check_uniform_weights_of_any_size,
    check_zero_weights_drop_rows,
    check_single_positive_weight,
    check_no_intercept,
]


@variant_params
@pytest.mark.parametrize(
    "check", ODD_INPUTS, ids=[c.__name__.removeprefix("check_") for c in ODD_INPUTS]
)
def test_odd_input_gives_correct_fit(estimator, check, tmp_path):
    check(estimator, tmp_path)


@pytest.mark.parametrize(
    "estimator",
    [v for v in VARIANTS if not isinstance(v.get_params().get("scale", "-"), str)],
    ids=repr,
)
def test_fixed_scale_is_reported_as_given(estimator):
    # "a positive float fixes it, in the units of y": scale_ is that float,
    # also when the data are fitted exactly (constant y, p >= n).
    for X, y in (
        (X_REF, Y_REF),
        (X_REF, np.full(len(Y_REF), 2.0)),
        (X_REF[:2], Y_REF[:2]),
    ):
        assert fit(estimator, X, y).scale_ == float(estimator.scale)


def test_finite_data_whose_sum_overflows_fits_without_a_floating_point_error():
    """Finiteness is judged from sums first (as scikit-learn does); a sum that
    overflows on finite data must neither warn nor, under ``np.errstate(
    over="raise")``, raise: it takes the full checks. (The shortcut once
    summed without ``errstate`` and raised FloatingPointError here.)"""
    from skrobust import HuberRegressor

    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3))
    X[:, 2] = np.abs(X[:, 2]) * 1e307 + 1e307  # finite; its sum is inf
    y = X[:, 0] + rng.normal(size=200)
    reference = HuberRegressor().fit(X, y)
    with np.errstate(over="raise", invalid="raise"):
        fitted = HuberRegressor().fit(X, y)
    np.testing.assert_array_equal(fitted.coef_, reference.coef_)
    assert np.all(np.isfinite(fitted.coef_))
