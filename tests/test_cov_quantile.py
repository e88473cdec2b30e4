"""Quantile regression standard errors against R's quantreg::summary.rq.

The reference numbers are in tests/data/r_quantreg_se.json, written by
tests/data/r/quantreg_se.R (R 4.2, quantreg 5.94): summary.rq(se = "iid",
"nid", "ker"; hs = TRUE, FALSE) on engel and stackloss, weighted and
unweighted, and a coverage simulation.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import statsmodels.api as sm
from _oracles import quantile_linprog, quantile_objective
from numpy.testing import assert_allclose, assert_array_equal

from skrobust import QuantileRegressor
from skrobust._cov_quantile import (
    R_SQRT_EPS,
    ExactLevelRefit,
    _barrodale_roberts,
    _smallest_after_zeros,
    quantile_bandwidth,
    quantile_bootstrap_covariance,
    quantile_covariance,
)

R = json.loads((Path(__file__).parent / "data" / "r_quantreg_se.json").read_text())
RULES = {True: "hall-sheather", False: "bofinger"}
SE_RTOL = 1e-6


def _load_statsmodels(dataset):
    """``(X, y)`` of a statsmodels dataset, columns in R's order."""
    if dataset == "engel":
        frame = sm.datasets.engel.load_pandas().data
        return frame[["income"]].to_numpy(), frame["foodexp"].to_numpy()
    frame = sm.datasets.stackloss.load_pandas().data
    columns = ["AIRFLOW", "WATERTEMP", "ACIDCONC"]
    return frame[columns].to_numpy(), frame["STACKLOSS"].to_numpy()


DATA = {name: _load_statsmodels(name) for name in ("engel", "stackloss")}


def _case_id(case):
    weights = np.array(case["weights"] or [1.0])
    return "{dataset}-{w}q{tau}-{se}-{hs}{i}".format(
        w=""
        if not case["weighted"]
        else "zero-weights-"
        if np.any(weights == 0)
        else "weighted-",
        i="" if case["intercept"] else "-nointercept",
        hs="hs" if case["hs"] else "bofinger",
        **{k: case[k] for k in ("dataset", "tau", "se")},
    )


def _params(values):
    """A parameter vector from R's named list (or plain list)."""
    if isinstance(values, dict):
        values = list(values.values())
    return np.atleast_1d(np.array(values, dtype=float))


def _problem(case):
    """``X, y, weights, R's [intercept, coef...]`` of a reference case."""
    X, y = DATA[case["dataset"]]
    weights = np.array(case["weights"], dtype=float) if case["weighted"] else None
    return X, y, weights, _params(case["coef"])


def _split(params, fit_intercept):
    """``(coef, intercept)`` from R's coefficient vector."""
    return (params[1:], params[0]) if fit_intercept else (params, 0.0)


def _r_covariance(case):
    p = len(case["coef"])
    return np.array(case["cov"], dtype=float).reshape(p, p)


def _covariance_checking_warnings(case, *args, **kwargs):
    """quantile_covariance, asserting that it warns when and as R warned."""
    r_warnings = [w for w in case["warnings"] if "non-positive fis" in w]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cov = quantile_covariance(*args, **kwargs)
    messages = [str(w.message) for w in caught]
    assert [m.split(":")[0] for m in messages] == r_warnings
    return cov


def _assert_covariance_equal(cov, case):
    r_cov = _r_covariance(case)
    assert_allclose(np.sqrt(np.diag(cov)), _params(case["std_error"]), rtol=SE_RTOL)
    # Entries relative to the scale sqrt(var_i var_j) of their row and column.
    scale = np.sqrt(np.outer(np.diag(r_cov), np.diag(r_cov)))
    assert np.max(np.abs(cov - r_cov) / scale) < SE_RTOL


def test_statsmodels_datasets_equal_r():
    for name, (X, y) in DATA.items():
        r_values = np.array(R["data"][name]["values"], dtype=float)
        if name == "engel":  # R's columns: income, foodexp
            assert R["data"][name]["columns"] == ["income", "foodexp"]
            assert_array_equal(np.column_stack([X, y]), r_values)
        else:  # Air.Flow, Water.Temp, Acid.Conc., stack.loss
            assert R["data"][name]["columns"][-1] == "stack.loss"
            assert_array_equal(np.column_stack([X, y]), r_values)


def test_bandwidth_equals_r():
    for case in R["cases"]:
        n = DATA[case["dataset"]][0].shape[0]
        rule = RULES[case["hs"]]
        assert_allclose(
            quantile_bandwidth(case["tau"], n, rule), case["bandwidth"], rtol=1e-14
        )


@pytest.mark.parametrize("case", R["simplex_cases"], ids=lambda c: str(c["tau"]))
def test_barrodale_roberts_port_returns_r_vertex(case):
    # Many of these optima are not unique (R warned "Solution may be
    # nonunique" for the flagged ones): the port must pick R's vertex.
    design = np.array(case["x"], dtype=float)
    target = np.atleast_1d(np.array(case["y"], dtype=float))
    coef = _barrodale_roberts(design, target, case["tau"])
    assert_allclose(coef, _params(case["coef"]), rtol=1e-12, atol=1e-12)


def test_reference_has_non_unique_simplex_optima():
    # Otherwise the test above would not exercise the tie-breaking.
    assert sum(case["nonunique"] for case in R["simplex_cases"]) >= 10


FIT_CASES = {
    (c["dataset"], str(c["weights"]), c["intercept"], c["tau"]): c for c in R["cases"]
}


@pytest.mark.parametrize("case", FIT_CASES.values(), ids=_case_id)
def test_exact_fit_equals_r_coefficients(case):
    X, y, weights, r_params = _problem(case)
    model = QuantileRegressor(
        quantile=case["tau"], solver="exact", fit_intercept=case["intercept"]
    ).fit(X, y, sample_weight=weights)
    params = np.r_[model.intercept_, model.coef_] if case["intercept"] else model.coef_
    # Relative to the largest coefficient: some are zero up to rounding.
    assert_allclose(params, r_params, rtol=1e-8, atol=1e-8 * np.abs(r_params).max())


@pytest.mark.parametrize("case", R["cases"], ids=_case_id)
def test_covariance_equals_r_at_r_fits(case):
    # The formulas alone: R's coefficients, and for "nid" R's own refits
    # at q +- h (rq.fit.br), passed through `fit`.
    X, y, weights, r_params = _problem(case)
    coef, intercept = _split(r_params, case["intercept"])
    calls = []

    def r_refit(quantile):
        calls.append(quantile)
        side = "coef_hi" if quantile > case["tau"] else "coef_lo"
        return _split(_params(case[side]), case["intercept"])

    cov = _covariance_checking_warnings(
        case,
        X,
        y,
        coef,
        intercept,
        case["tau"],
        sample_weight=weights,
        fit_intercept=case["intercept"],
        se=case["se"],
        bandwidth_rule=RULES[case["hs"]],
        fit=r_refit,
    )
    _assert_covariance_equal(cov, case)
    if case["se"] == "nid":
        h = case["nid_h"]
        assert_allclose(calls, [case["tau"] + h, case["tau"] - h], rtol=1e-14)
    else:
        assert calls == []


@pytest.mark.parametrize("case", R["cases"], ids=_case_id)
def test_covariance_equals_r_at_skrobust_fits(case):
    # What a user gets: skrobust's exact fit and, for "nid", its default
    # refits. The linear programmes here have unique optima up to rounding
    # (see test_exact_fit_equals_r_coefficients), so R's numbers follow.
    # R's warning counts rows where the two refits give exactly equal fitted
    # values (both interpolate the row); with other rounding some of those
    # differences are +1e-15 instead of 0, so the count is not compared here
    # (their densities are 0 either way: f = max(0, 2h / (d - 2^-26))).
    X, y, weights, _ = _problem(case)
    model = QuantileRegressor(
        quantile=case["tau"], solver="exact", fit_intercept=case["intercept"]
    ).fit(X, y, sample_weight=weights)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ non-positive fis", UserWarning)
        cov = quantile_covariance(
            X,
            y,
            model.coef_,
            model.intercept_,
            case["tau"],
            sample_weight=weights,
            fit_intercept=case["intercept"],
            se=case["se"],
            bandwidth_rule=RULES[case["hs"]],
        )
    _assert_covariance_equal(cov, case)


@pytest.mark.parametrize("alpha, weighted", [(0.0, False), (0.0, True), (0.002, False)])
def test_level_refits_are_the_exact_fits_at_their_levels(alpha, weighted):
    # "nid"'s refits at q -+ h start from the fit at q (its residuals moved
    # by Newton steps, then a narrow band of rows): each must still be the
    # exact optimum at its level, that of one linear programme written
    # independently (scipy's HiGHS), and the fit a separate exact fit finds.
    rng = np.random.default_rng(3)
    n, q = 6000, 0.3
    X = np.column_stack([rng.uniform(0, 2, n), rng.normal(size=(n, 3))])
    y = X @ [1.0, -1.0, 0.5, 0.0] + (0.5 + 0.5 * X[:, 0]) * rng.standard_t(3, n)
    weights = rng.integers(1, 4, n).astype(float) if weighted else None
    fit = QuantileRegressor(quantile=q, solver="exact", alpha=alpha).fit(X, y, weights)
    refit = ExactLevelRefit(X, y, weights, fit.coef_, fit.intercept_, alpha=alpha)
    assert "neighbour_state" in refit.options  # not a cold start
    h = quantile_bandwidth(q, n)
    for level in (q - h, q + h):
        coef, intercept = refit(level)
        optimum = quantile_linprog(X, y, level, weights, alpha)
        objective = quantile_objective(X, y, coef, intercept, level, weights, alpha)
        assert objective <= optimum.objective * (1 + 1e-10)
        direct = QuantileRegressor(quantile=level, solver="exact", alpha=alpha).fit(
            X, y, weights
        )
        assert_allclose(coef, direct.coef_, rtol=0, atol=1e-9)
        assert_allclose(intercept, direct.intercept_, rtol=0, atol=1e-9)


def test_references_cover_the_special_paths():
    cases = R["cases"]
    # nid fits that cross (R's warning), a halved bandwidth (stackloss at
    # q = 0.1: h = 0.125 > q), and iid sparsity fits with several optima.
    assert any("non-positive fis" in " ".join(c["warnings"]) for c in cases)
    assert any(c["se"] == "nid" and c["nid_h"] < c["bandwidth"] for c in cases)
    assert any(
        c["se"] == "iid" and "Solution may be nonunique" in c["warnings"] for c in cases
    )


@pytest.mark.parametrize("se", ["iid", "nid", "ker"])
@pytest.mark.parametrize("sparse_format", [sp.csr_matrix, sp.csc_matrix])
def test_sparse_design_gives_dense_result(se, sparse_format):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)) * (rng.uniform(size=(300, 4)) < 0.5)
    y = X @ [1.0, -1.0, 0.5, 0.0] + 2 + rng.standard_t(3, size=300)
    weights = rng.uniform(0.5, 2, size=300)
    model = QuantileRegressor(quantile=0.3, solver="exact").fit(X, y, weights)
    args = (model.coef_, model.intercept_, 0.3)
    with warnings.catch_warnings():
        # Rows that both "nid" refits interpolate have fitted differences of
        # 0 or +-1e-16 depending on the order of the sums (R counts the
        # zeros); their densities are 0 either way.
        warnings.filterwarnings("ignore", "[0-9]+ non-positive fis", UserWarning)
        dense = quantile_covariance(X, y, *args, sample_weight=weights, se=se)
        sparse = quantile_covariance(
            sparse_format(X), y, *args, sample_weight=weights, se=se
        )
    assert_allclose(sparse, dense, rtol=1e-9)


def test_iid_order_statistics_are_those_of_a_stable_sort():
    # R's order(abs(resid)) is stable: with ties in absolute value (and
    # residuals of opposite signs) the window is that of a stable sort.
    rng = np.random.default_rng(4)
    for _ in range(500):
        n = int(rng.integers(5, 60))
        residuals = rng.integers(-4, 5, size=n) * rng.choice([1.0, 0.5])
        residuals[rng.uniform(size=n) < 0.2] = 1e-12 * rng.normal()
        n_zero = int(np.sum(np.abs(residuals) < R_SQRT_EPS))
        h = int(rng.integers(1, n - n_zero)) if n - n_zero > 1 else 0
        by_size = np.argsort(np.abs(residuals), kind="stable")
        expected = by_size[n_zero : n_zero + h + 1]
        got = _smallest_after_zeros(residuals, h)
        assert_array_equal(np.sort(got), np.sort(expected))


def test_sparse_design_is_not_densified():
    # 3e5 x 300 at density 1e-3: dense, X would take 720 MB; the p x p
    # products take 0.7 MB and each vector of n values 2.4 MB.
    import tracemalloc

    n, p = 300_000, 300
    rng = np.random.default_rng(0)
    nnz = n * p // 1000
    X = sp.csr_matrix(
        (rng.normal(size=nnz), (rng.integers(0, n, nnz), rng.integers(0, p, nnz))),
        shape=(n, p),
    )
    y = rng.normal(size=n)
    coef = np.zeros(p)

    def shifted_fit(quantile):
        return coef, float(np.quantile(y, quantile))

    tracemalloc.start()
    try:
        for se in ("iid", "nid", "ker"):
            quantile_covariance(X, y, coef, 0.0, 0.5, se=se, fit=shifted_fit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6, peak


def test_iid_with_too_few_rows_raises_as_r():
    # n = 6, p = 4: the sparsity needs more order statistics than there are
    # non-zero residuals (R's rq stops on differing lengths).
    X, y = DATA["stackloss"][0][:6], DATA["stackloss"][1][:6]
    model = QuantileRegressor(solver="exact").fit(X, y)
    with pytest.raises(ValueError, match="needs"):
        quantile_covariance(X, y, model.coef_, model.intercept_, 0.5, se="iid")


def test_invalid_options_raise():
    X, y = DATA["engel"]
    with pytest.raises(ValueError, match="se"):
        quantile_covariance(X, y, [0.5], 80.0, 0.5, se="boot")
    with pytest.raises(ValueError, match="bandwidth_rule"):
        quantile_covariance(X, y, [0.5], 80.0, 0.5, bandwidth_rule="silverman")
    with pytest.raises(ValueError, match="coef"):
        quantile_covariance(X, y, [0.5, 1.0], 80.0, 0.5)


def test_bootstrap_matches_r_boot_rq_up_to_monte_carlo_error():
    # R's summary(se = "boot", bsmethod = "xy", R = 4000) on engel at the
    # median against 200 replicates here: relative standard errors of the
    # two estimates of a standard error are about 1/sqrt(2 B).
    X, y = DATA["engel"]
    reference = R["boot"]
    model = QuantileRegressor(quantile=0.5, solver="exact")

    def fit_one(weights):
        model.fit(X, y, sample_weight=weights)
        return np.r_[model.intercept_, model.coef_]

    n_bootstrap = 200
    cov = quantile_bootstrap_covariance(
        fit_one, X, y, None, n_bootstrap=n_bootstrap, random_state=0
    )
    relative_sd = np.sqrt(1 / (2 * n_bootstrap) + 1 / (2 * reference["R"]))
    assert_allclose(
        np.sqrt(np.diag(cov)), _params(reference["std_error"]), rtol=3 * relative_sd
    )


def test_bootstrap_weights_are_multiplicities_times_sample_weight():
    rng = np.random.default_rng(1)
    y = rng.normal(size=50)
    sample_weight = rng.uniform(1, 2, size=50)
    seen = []

    def fit_one(weights):
        seen.append(weights)
        return np.array([weights @ y, weights.sum()])

    cov = quantile_bootstrap_covariance(
        fit_one, np.ones((50, 1)), y, sample_weight, n_bootstrap=30, random_state=3
    )
    multiplicities = np.array(seen) / sample_weight
    assert_allclose(multiplicities, np.round(multiplicities), atol=1e-12)
    assert_allclose(multiplicities.sum(axis=1), 50)
    # The same seed draws the same replicates.
    again = quantile_bootstrap_covariance(
        fit_one, np.ones((50, 1)), y, sample_weight, n_bootstrap=30, random_state=3
    )
    assert_array_equal(again, cov)
    assert cov.shape == (2, 2)


# Coverage: the design of the R script's simulation, with our own draws.
COVERAGE = R["coverage"]
COVERAGE_REPS = 1000


def _simulate_coverage(reps, seed):
    """Coverage rates of 95% intervals, [intercept, slope] per method.

    The fits are those of R's rq (``_barrodale_roberts``, the port of its
    simplex: 3 ms a fit at n = 200, several times faster than the exact
    solver's preprocessing here); the first replications check that
    skrobust's exact solver finds the same optimum.
    """
    rng = np.random.default_rng(seed)
    n, q, truth = COVERAGE["n"], COVERAGE["tau"], np.array([1.0, 2.0])
    z = 1.959963984540054
    hits = {key: np.zeros(2) for key in COVERAGE["rates"]}
    for rep in range(reps):
        x = rng.uniform(0, 4, size=n)
        noise = rng.normal(size=n)
        X, design = x[:, None], np.column_stack([np.ones(n), x])
        for errors in ("iid", "heteroscedastic"):
            y = (
                truth[0]
                + truth[1] * x
                + (1.0 if errors == "iid" else 0.5 + 0.5 * x) * noise
            )

            def fit(quantile, y=y, design=design):
                params = _barrodale_roberts(design, y, quantile)
                return params[1:], params[0]

            coef, intercept = fit(q)
            if rep < 3:
                model = QuantileRegressor(quantile=q, solver="exact").fit(X, y)
                assert_allclose(
                    np.r_[model.intercept_, model.coef_], np.r_[intercept, coef]
                )
            methods = ("iid",) if errors == "iid" else ("iid", "nid", "ker")
            for se in methods:
                with warnings.catch_warnings():
                    # nid's crossing fits: counted by R as well.
                    warnings.simplefilter("ignore", UserWarning)
                    cov = quantile_covariance(X, y, coef, intercept, q, se=se, fit=fit)
                half_width = z * np.sqrt(np.diag(cov))
                hits[f"{errors}_{se}"] += (
                    np.abs(np.r_[intercept, coef] - truth) <= half_width
                )
    return {key: value / reps for key, value in hits.items()}


@pytest.fixture(scope="module")
def coverage():
    return _simulate_coverage(COVERAGE_REPS, seed=12)


def _binomial_sd(rate, reps):
    return np.sqrt(rate * (1 - rate) / reps)


def test_coverage_in_the_valid_regimes(coverage):
    # iid errors for "iid", heteroscedastic errors with linear conditional
    # quantiles for "nid": 0.95 within 3 binomial standard deviations
    # (0.929-0.971 at 1000 replications).
    band = 3 * _binomial_sd(0.95, COVERAGE_REPS)
    for key in ("iid_iid", "heteroscedastic_nid"):
        assert np.all(np.abs(coverage[key] - 0.95) <= band), (key, coverage[key])
    # "ker" with R's bandwidth is conservative by design (R: 0.99-1.0 here).
    assert np.all(coverage["heteroscedastic_ker"] >= 0.95 - band)


def test_iid_undercovers_under_heteroscedasticity(coverage):
    # The slope's iid interval is too narrow when the spread grows with x.
    slope = coverage["heteroscedastic_iid"][1]
    assert slope < 0.95 - 3 * _binomial_sd(0.95, COVERAGE_REPS), slope


def test_coverage_equals_r_up_to_simulation_error(coverage):
    # Same design, independent draws: the rates differ by sampling error.
    for key, r_rates in COVERAGE["rates"].items():
        r_rates = _params(r_rates)
        sd = np.sqrt(
            _binomial_sd(np.clip(r_rates, 0.001, 0.999), COVERAGE["reps"]) ** 2
            + _binomial_sd(np.clip(r_rates, 0.001, 0.999), COVERAGE_REPS) ** 2
        )
        assert np.all(np.abs(coverage[key] - r_rates) <= 3 * sd), (
            key,
            coverage[key],
            r_rates,
        )


@pytest.mark.parametrize("se", ["iid", "nid", "ker"])
def test_weights_beyond_r_range_give_the_scale_free_answer(se):
    """R's formulas square the weights (1e200 overflowed with a warning) and
    call weighted residuals below sqrt(eps) zero; weights beyond 1e100 or
    below 1e-100 are divided by the largest first, which gives the
    standard errors of the same weights with a largest of one."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = X @ [1.0, 2.0, 3.0] + rng.standard_t(3, 300)
    w = rng.uniform(0.5, 2.0, 300)
    w /= w.max()  # (R's answer depends on the weights' factor through sqrt(eps))
    expected = QuantileRegressor(cov_type=se).fit(X, y, sample_weight=w).coef_se_
    for factor in (1e200, 1e-200):
        model = QuantileRegressor(cov_type=se).fit(X, y, sample_weight=w * factor)
        np.testing.assert_allclose(model.coef_se_, expected, rtol=1e-12)
