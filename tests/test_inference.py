"""The shared inference API: conf_int, summary and the Summary table."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError

from skrobust import HeteroscedasticRegressor, HuberRegressor, QuantileRegressor
from skrobust._inference import (
    InferenceMixin,
    Summary,
    block_grams,
    inverse_symmetric,
    set_inference_attributes,
    weighted_grams,
)


class OrdinaryLeastSquares(InferenceMixin, RegressorMixin, BaseEstimator):
    """A minimal estimator using the mixin: least squares with its classical
    covariance, so that statsmodels' OLS is an oracle for every number."""

    _cov_types = ("classical",)

    def __init__(self, fit_intercept=True, cov_type=None, t_inference=True):
        self.fit_intercept = fit_intercept
        self.cov_type = cov_type
        self.t_inference = t_inference

    def fit(self, X, y):
        X = np.asarray(X, dtype=float) if not hasattr(X, "columns") else X
        if hasattr(X, "columns"):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
            X = X.to_numpy(float)
        design = np.column_stack([np.ones(len(y)), X]) if self.fit_intercept else X
        params, *_ = np.linalg.lstsq(design, y, rcond=None)
        self.coef_ = params[1:] if self.fit_intercept else params
        self.intercept_ = float(params[0]) if self.fit_intercept else 0.0
        residuals = y - design @ params
        self.dof_ = len(y) - design.shape[1]
        cov = None
        if self.cov_type is not None:
            sigma2 = residuals @ residuals / self.dof_
            cov = sigma2 * np.linalg.inv(design.T @ design)
        set_inference_attributes(self, cov)
        return self

    def _inference_dof(self):
        return self.dof_ if self.t_inference else None


def stackloss():
    data = sm.datasets.stackloss.load_pandas().data
    return data.iloc[:, 1:], data.iloc[:, 0].to_numpy(float)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_t_inference_equals_statsmodels_ols(fit_intercept):
    X, y = stackloss()
    model = OrdinaryLeastSquares(fit_intercept, cov_type="classical").fit(X, y)
    exog = sm.add_constant(X) if fit_intercept else X
    ols = sm.OLS(y, exog).fit()
    summary = model.summary(level=0.9)
    np.testing.assert_allclose(summary.estimates, ols.params, rtol=1e-10)
    np.testing.assert_allclose(summary.std_errors, ols.bse, rtol=1e-10)
    np.testing.assert_allclose(summary.statistic, ols.tvalues, rtol=1e-10)
    np.testing.assert_allclose(summary.p_values, ols.pvalues, rtol=1e-8)
    np.testing.assert_allclose(model.conf_int(0.9), ols.conf_int(0.1), rtol=1e-10)
    assert summary.statistic_name == "t"
    np.testing.assert_allclose(model.coef_se_, ols.bse[-3:], rtol=1e-10)
    if fit_intercept:
        assert summary.names == ["intercept", *X.columns]
        np.testing.assert_allclose(model.intercept_se_, ols.bse.iloc[0], rtol=1e-10)
    else:
        assert summary.names == list(X.columns)
        assert not hasattr(model, "intercept_se_")


def test_z_inference_uses_the_normal_distribution():
    X, y = stackloss()
    model = OrdinaryLeastSquares(cov_type="classical", t_inference=False)
    summary = model.fit(X.to_numpy(), y).summary(level=0.99)
    assert summary.names == ["intercept", "x0", "x1", "x2"]
    assert summary.statistic_name == "z"
    half = stats.norm.ppf(0.995) * summary.std_errors
    np.testing.assert_allclose(
        summary.conf_int, np.c_[summary.estimates - half, summary.estimates + half]
    )
    np.testing.assert_allclose(
        summary.p_values, 2 * stats.norm.sf(np.abs(summary.statistic))
    )


def test_errors_name_the_cov_types():
    X, y = stackloss()
    model = OrdinaryLeastSquares()
    with pytest.raises(NotFittedError):
        model.conf_int()
    model.fit(X, y)
    with pytest.raises(ValueError, match=r"cov_type=None.*\{'classical'\}"):
        model.conf_int()
    model.set_params(cov_type="classical")  # not refitted: still no covariance
    with pytest.raises(ValueError, match="refit with cov_type"):
        model.summary()
    model.fit(X, y)
    model.conf_int()
    with pytest.raises(ValueError, match="level must be in"):
        model.conf_int(level=95)
    model.set_params(cov_type=None).fit(X, y)
    assert not hasattr(model, "cov_")
    with pytest.raises(ValueError, match="computed no standard errors"):
        model.summary()


def test_changed_cov_type_requires_a_refit():
    X, y = stackloss()
    model = HeteroscedasticRegressor(cov_type="expected").fit(X, y)
    model.set_params(cov_type="sandwich")
    with pytest.raises(ValueError, match="refit"):
        model.conf_int()


def test_printed_table_is_aligned_and_to_frame_holds_the_numbers():
    X, y = stackloss()
    summary = OrdinaryLeastSquares(cov_type="classical").fit(X, y).summary()
    lines = str(summary).splitlines()
    assert "cov_type='classical'" in lines[0] and "17 df" in lines[0]
    header, rows = lines[1], lines[2:]
    assert header.split() == [
        "Estimate",
        "Std.",
        "Error",
        "t",
        "value",
        "Pr(>|t|)",
        "2.5",
        "%",
        "97.5",
        "%",
    ]
    # Right-aligned columns: every row ends where the header does.
    assert {len(row) for row in rows} == {len(header)}
    assert [row.split()[0] for row in rows] == ["intercept", *X.columns]
    assert repr(summary) == str(summary)
    assert "<table>" in summary._repr_html_()
    frame = summary.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == summary.names
    np.testing.assert_array_equal(frame["Std. Error"], summary.std_errors)
    np.testing.assert_array_equal(frame[["2.5 %", "97.5 %"]], summary.conf_int)


def test_tiny_p_values_print_as_r_does():
    summary = Summary(["a", "b"], [10.0, 1.0], [0.1, 1.0])
    text = str(summary)
    assert "< 2e-16" in text.splitlines()[2]
    assert "0.317" in text.splitlines()[3]


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_weighted_grams_equal_dense_products(fit_intercept):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 4))  # several row blocks
    d = rng.normal(size=(2, 5000))
    design = np.column_stack([np.ones(5000), X]) if fit_intercept else X
    grams = weighted_grams(X, d, fit_intercept)
    for k in range(2):
        np.testing.assert_allclose(
            grams[k], design.T @ (design * d[k][:, None]), rtol=1e-10, atol=1e-10
        )
    grams_too, sums = weighted_grams(X, [d[0]], fit_intercept, sum_weights=d[::-1])
    np.testing.assert_array_equal(grams_too[0], grams[0])
    np.testing.assert_allclose(sums, d[::-1] @ design, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shift", [0.0, 1e6], ids=["near-zero", "far"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_centred_grams_equal_products_of_the_centred_design(shift, fit_intercept):
    # Columns near zero are centred after the products, columns far from it
    # (X + 1e6) before: either way the Grams and sums are those of
    # [1, X - c] to within the rounding of forming them directly, which
    # the transformation would miss by 12 digits for X + 1e6.
    rng = np.random.default_rng(2)
    n = 20_000  # several row blocks, and a strided sample
    X = rng.normal(size=(n, 3)) * [1.0, 1e3, 1e-3] + [0.5, -200.0, 0.0] + shift
    center = X.mean(axis=0) + [0.1, -50.0, 2e-4]  # any centre
    weights = [np.ones(n), rng.uniform(size=n), rng.normal(size=n)]
    weights[1][::7] = 0.0
    centred = X - center
    if fit_intercept:
        centred = np.column_stack([np.ones(n), centred])
    grams, sums = weighted_grams(
        X, weights, fit_intercept, sum_weights=weights[1:], center=center
    )
    for gram, d in zip(grams, weights, strict=True):
        expected = centred.T @ (centred * d[:, None])
        size = np.abs(centred).T @ (np.abs(centred) * np.abs(d)[:, None])
        assert np.all(np.abs(gram - expected) <= 1e-12 * size)
    for total, d in zip(sums, weights[1:], strict=True):
        size = np.abs(d) @ np.abs(centred)
        assert np.all(np.abs(total - d @ centred) <= 1e-12 * size)


def test_grams_of_a_float32_design_are_those_of_its_float64_values():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 4)).astype(np.float32)
    d = [np.ones(3000), rng.uniform(size=3000)]
    for center in (None, X.mean(axis=0) + 1e4):
        np.testing.assert_allclose(
            weighted_grams(X, d, center=center),
            weighted_grams(X.astype(np.float64), d, center=center),
            rtol=1e-12,
        )


def test_block_weights_give_the_grams_of_the_whole_weights():
    # Weights formed block by block from the block's own rows (a function of
    # x, as covariances form theirs from residuals) give the Grams of the
    # whole weight vectors; the blocks cover the rows once, in order.
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30_000, 3)) + [0.0, 5.0, 1e6]  # one column far off
    whole = [np.exp(X[:, 0]), X[:, 0] * X[:, 1]]
    center = X.mean(axis=0)
    seen = []

    def weights_of_block(rows, block):
        seen.append(rows)
        return [np.exp(block[:, 0]), block[:, 0] * block[:, 1]], [block[:, 1]]

    grams, sums = block_grams(X, weights_of_block, 2, 1, center=center)
    expected_grams, expected_sums = weighted_grams(
        X, whole, sum_weights=[X[:, 1]], center=center
    )
    np.testing.assert_allclose(grams, expected_grams, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(sums, expected_sums, rtol=1e-12, atol=1e-9)
    covered = np.concatenate([np.arange(30_000)[rows] for rows in seen])
    np.testing.assert_array_equal(covered, np.arange(30_000))


def test_inverse_symmetric_is_scale_free_and_pseudo_inverts_singular():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(50, 3)) * [1e-6, 1.0, 1e6]
    gram = A.T @ A
    # Columns 1e12 apart in size: compare in equilibrated units.
    size = np.sqrt(np.diag(gram))
    equilibrated_inverse = inverse_symmetric(gram) * np.outer(size, size)
    equilibrated = gram / np.outer(size, size)
    np.testing.assert_allclose(
        equilibrated_inverse @ equilibrated, np.eye(3), atol=1e-12, rtol=0
    )
    singular = np.column_stack([A[:, 1], A[:, 1]])
    gram = singular.T @ singular
    np.testing.assert_allclose(inverse_symmetric(gram), np.linalg.pinv(gram))


def test_stacked_covariances_of_several_outputs():
    class TwoOutputs(InferenceMixin, BaseEstimator):
        fit_intercept = True
        cov_type = "classical"
        _cov_types = ("classical",)

        def fit(self):  # check_is_fitted wants an estimator
            self.coef_ = np.zeros((2, 3))
            self.intercept_ = np.zeros(2)
            return self

    model = TwoOutputs().fit()
    cov = np.stack([np.diag([1.0, 4.0, 9.0, 16.0]), np.diag([4.0, 1.0, 1.0, 1.0])])
    set_inference_attributes(model, cov)
    np.testing.assert_array_equal(model.coef_se_, [[2.0, 3.0, 4.0], [1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(model.intercept_se_, [1.0, 2.0])
    with pytest.raises(ValueError, match="1-D y"):
        model.summary()


SHIFTED_FITS = [
    (HuberRegressor, {}, ("H1", "H2", "H3", "mass", "sandwich")),
    (HuberRegressor, {"scale": "mad"}, ("H1", "H3", "sandwich")),
    (QuantileRegressor, {"solver": "exact"}, ("iid", "nid", "ker")),
    (HeteroscedasticRegressor, {}, ("expected", "observed", "sandwich")),
]


@pytest.mark.parametrize(
    "estimator_class, params, cov_types",
    SHIFTED_FITS,
    ids=[f"{fit[0].__name__}-{fit[1]}" for fit in SHIFTED_FITS],
)
def test_slope_standard_errors_ignore_a_shift_of_the_columns(
    estimator_class, params, cov_types
):
    # X + 1e6 is the same model with other intercepts: the slopes and their
    # standard errors stay. A Gram of [1, X + 1e6] has a condition number of
    # about 1e24 after scaling; the covariances are formed in centred
    # coordinates, where it is about 1.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = X @ [1.0, -1.0] + (1 + 0.5 * np.abs(X[:, 0])) * rng.normal(size=400)
    for cov_type in cov_types:
        near = estimator_class(cov_type=cov_type, **params).fit(X, y)
        far = estimator_class(cov_type=cov_type, **params).fit(X + 1e6, y)
        np.testing.assert_allclose(far.coef_, near.coef_, rtol=1e-7)
        np.testing.assert_allclose(far.coef_se_, near.coef_se_, rtol=1e-7)
