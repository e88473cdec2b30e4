"""The shortcuts of the quantile machinery give the exact optima.

The bootstrap's refits (:class:`skrobust._quantile._ReweightedExact`) share
the standardisation, the start's residuals, the clipping distance and the
Newton step's Gram sample across replicates and use a narrower band; each
replicate must still be the LP optimum for its weights, checked here
against a separate exact fit with the multiplicities as weights and against
HiGHS on the whole problem (``solve_lp``).
"""

import numpy as np
import pytest
import scipy.sparse as sp

from skrobust import QuantileRegressor
from skrobust._quantile import _WarmRefit
from skrobust._quantile_exact import pinball_objective, solve_lp


def _data(n, p, seed, gross=0.1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    noise = rng.standard_t(3, size=n)
    outliers = rng.random(n) < gross
    noise[outliers] += rng.uniform(20, 50, size=outliers.sum())
    return X, X @ rng.normal(size=p) + 2.0 + noise


def _multiplicities(n, rng):
    return rng.multinomial(n, np.full(n, 1.0 / n)).astype(float)


@pytest.mark.parametrize(
    "quantile, alpha, fit_intercept, sparse",
    [
        (0.5, 0.0, True, False),
        (0.2, 0.0, True, False),
        (0.9, 0.0, False, False),
        (0.5, 1e-3, True, False),
        (0.7, 0.0, True, True),
    ],
)
def test_bootstrap_replicates_are_exact_optima(quantile, alpha, fit_intercept, sparse):
    X, y = _data(20_000, 8, seed=int(quantile * 10))
    if sparse:
        X = sp.random(20_000, 8, density=0.4, random_state=0, format="csr")
        y = X @ np.arange(1.0, 9.0) + np.random.default_rng(0).standard_t(3, 20_000)
    params = dict(quantile=quantile, alpha=alpha, fit_intercept=fit_intercept)
    full = QuantileRegressor(solver="exact", **params).fit(X, y)
    base_weight = np.ones(X.shape[0])
    refit = _WarmRefit(full, X, y, base_weight, full.coef_, full.intercept_)
    rng = np.random.default_rng(1)
    for _ in range(3):
        weights = _multiplicities(X.shape[0], rng)
        got = refit.params_with_weights(weights)
        coef, b = (got[1:], got[0]) if fit_intercept else (got, 0.0)
        separate = QuantileRegressor(solver="exact", **params).fit(
            X, y, sample_weight=weights
        )
        f_got = pinball_objective(X, y, coef, b, quantile, weights, alpha)
        f_sep = pinball_objective(
            X, y, separate.coef_, separate.intercept_, quantile, weights, alpha
        )
        assert abs(f_got - f_sep) <= 1e-9 * f_sep
        if not sparse:
            # The parameters themselves (the optimum is unique here).
            np.testing.assert_allclose(coef, separate.coef_, rtol=0, atol=1e-6)


def test_bootstrap_replicate_against_whole_lp():
    """Against HiGHS on the whole weighted problem, with far targets clipped."""
    X, y = _data(3_000, 4, seed=5, gross=0.2)
    y[:5] = 1e9  # far beyond the clipping distance
    full = QuantileRegressor(solver="exact", quantile=0.3).fit(X, y)
    refit = _WarmRefit(full, X, y, np.ones(3_000), full.coef_, full.intercept_)
    rng = np.random.default_rng(2)
    for _ in range(3):
        weights = _multiplicities(3_000, rng)
        got = refit.params_with_weights(weights)
        coef_lp, b_lp = solve_lp(X, y, 0.3, weights, 0.0, True)
        f_got = pinball_objective(X, y, got[1:], got[0], 0.3, weights, 0.0)
        f_lp = pinball_objective(X, y, coef_lp, b_lp, 0.3, weights, 0.0)
        assert abs(f_got - f_lp) <= 1e-9 * f_lp


def test_bootstrap_covariance_matches_separate_fits():
    """``cov_type="bootstrap"`` is the covariance of separately fitted replicates."""
    X, y = _data(2_000, 3, seed=7)
    model = QuantileRegressor(
        solver="exact", cov_type="bootstrap", n_bootstrap=30, random_state=0
    ).fit(X, y)
    rng = np.random.RandomState(0)
    replicates = []
    for _ in range(30):
        weights = np.bincount(rng.randint(2_000, size=2_000), minlength=2_000)
        fit = QuantileRegressor(solver="exact").fit(X, y, sample_weight=weights)
        replicates.append(np.r_[fit.intercept_, fit.coef_])
    np.testing.assert_allclose(
        model.cov_, np.cov(np.array(replicates), rowvar=False), rtol=1e-6, atol=1e-12
    )


@pytest.mark.parametrize("kind", ["normal", "cauchy", "ties"])
def test_pilot_selection_matches_sorting(kind):
    """The bracketed selections equal those of a full sort."""
    from skrobust._base import kth_smallest
    from skrobust._quantile_exact import _smallest

    rng = np.random.default_rng(3)
    n = 60_001
    values = {
        "normal": rng.standard_normal(n),
        "cauchy": rng.standard_cauchy(n),
        "ties": rng.integers(0, 7, n).astype(float),
    }[kind]
    ordered = np.sort(values)
    for k in (0, 1, 600, n // 2, n - 2, n - 1):
        assert kth_smallest(values, k) == ordered[k]
        if k:
            assert kth_smallest(values, k, previous=True) == tuple(
                ordered[k - 1 : k + 1]
            )
    for m in (1, 300, 725, n // 5):
        idx = _smallest(values, m)
        assert np.unique(idx).size == m
        np.testing.assert_array_equal(np.sort(values[idx]), ordered[:m])


def test_many_levels_on_large_data_are_exact():
    """Levels 0.01 apart (narrow bands, gathered side sums) on 30000 rows."""
    from skrobust._multiquantile import MultiQuantileRegressor

    X, y = _data(30_000, 6, seed=11)
    levels = np.arange(40, 61) / 100
    multi = MultiQuantileRegressor(levels, solver="exact").fit(X, y)
    for j in (0, 7, 10, 20):
        single = QuantileRegressor(quantile=levels[j], solver="exact").fit(X, y)
        f_multi = pinball_objective(
            X, y, multi.coef_[j], multi.intercept_[j], levels[j], None, 0.0
        )
        f_single = pinball_objective(
            X, y, single.coef_, single.intercept_, levels[j], None, 0.0
        )
        assert abs(f_multi - f_single) <= 1e-9 * f_single


@pytest.mark.parametrize(
    "alpha, weighted, levels",
    [(0.0, False, None), (1e-3, True, None), (0.0, False, (0.2, 0.35, 0.5, 0.65))],
)
def test_smoothed_fits_from_near_rows_are_the_full_minimisers(
    monkeypatch, alpha, weighted, levels
):
    """The near-rows solve (far rows as an exact linear term) changes nothing.

    Against the same fits with it disabled, Newton's method on every row;
    the path must have been taken and certified at least once.
    """
    import skrobust._quantile_smooth as smooth
    from skrobust._multiquantile import MultiQuantileRegressor

    X, y = _data(30_000, 5, seed=13)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, y.size) if weighted else None

    def fit():
        if levels is None:
            model = QuantileRegressor(quantile=0.3, alpha=alpha, solver="smooth")
        else:
            model = MultiQuantileRegressor(levels, alpha=alpha, solver="smooth")
        model.fit(X, y, sample_weight=weights)
        return np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_), model

    certified = []
    near_start = smooth._minimize_near_start

    def counting(*args):
        outcome = near_start(*args)
        certified.append(outcome[0] is not None)
        return outcome

    monkeypatch.setattr(smooth, "_minimize_near_start", counting)
    coef, intercept, model = fit()
    assert any(certified)
    monkeypatch.setattr(smooth, "_NEAR_START_MIN_ROWS", 10**9)
    coef_all, intercept_all, model_all = fit()
    np.testing.assert_array_equal(model.bandwidth_, model_all.bandwidth_)
    np.testing.assert_allclose(coef, coef_all, rtol=0, atol=1e-6)
    np.testing.assert_allclose(intercept, intercept_all, rtol=0, atol=1e-6)


@pytest.mark.parametrize("start", ["zeros", "shifted"])
def test_near_rows_solve_is_checked(start):
    """From a start whose near rows are the wrong ones, the answer still holds.

    The rows near a poor start are not those near the minimiser: the
    certificate (far rows kept their side, beyond the kernel's reach) must
    reject the near-rows solution, and the problem be solved again (near
    rows around it, or all rows; from zeros the near rows' problem does not
    even converge). Against Newton's method on every row from the start.
    """
    from skrobust._quantile_smooth import (
        _minimize_all_rows,
        minimize_smoothed,
        smoothed_objective,
    )
    from skrobust.losses import SmoothedPinballRho

    X, y = _data(30_000, 4, seed=17)
    rho = SmoothedPinballRho(0.7, 0.05)
    objective = smoothed_objective(rho, X, y, np.ones(y.size), True, None, True)
    stats = objective.column_stats
    if start == "zeros":
        coef0 = np.zeros(5)
    else:
        reference = _minimize_all_rows(
            objective, np.zeros(5), stats, 0.0, 100, 1e-10, True, True, False
        ).coef
        # Near enough for the near rows' problem to converge, too far for
        # its answer to stand (checked when this test was written).
        coef0 = reference + np.r_[0.2, -0.2, 0.2, -0.2, 0.0]
    got = minimize_smoothed(objective, coef0, stats, 0.0, 100, 1e-10, True, True)
    full = _minimize_all_rows(
        objective, coef0, stats, 0.0, 100, 1e-10, True, True, False
    )
    assert got.converged and full.converged
    np.testing.assert_allclose(got.coef, full.coef, rtol=0, atol=1e-7)


def test_a_quantile_in_a_gap_of_the_targets_is_solved_on_the_reduced_problem(
    monkeypatch,
):
    """q = 0.9 with 10% of the targets shifted up by 20-100: the quantile
    lies in the gap between the clean and the shifted targets, where the
    smoothed preliminary fit's Newton steps are short. Capped at 50
    iterations (a cap meant for penalised fits) its start made every reduced
    programme fail its certificate until the whole LP was solved: 12 s at
    1e5 rows instead of 0.4 s. The fit must reach its optimum on the reduced
    problem."""
    from skrobust import _quantile_exact

    def whole_lp(*args, **kwargs):
        raise AssertionError("fell back to the whole linear programme")

    monkeypatch.setattr(_quantile_exact, "_solve_full", whole_lp)
    rng = np.random.default_rng(0)
    n, p = 100_000, 20
    X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + 1.0 + rng.standard_normal(n)
    shifted = rng.random(n) < 0.1
    y[shifted] += rng.uniform(20.0, 100.0, size=shifted.sum())
    QuantileRegressor(quantile=0.9, solver="exact").fit(X, y)


@pytest.mark.parametrize("quantile", [0.3, 0.9])
def test_exact_fits_of_few_features_start_from_the_zero_fit(monkeypatch, quantile):
    """Up to 50 features the exact solver first tries its reduced problems
    from the zero fit, with no preliminary smoothed fit (so no
    ``bandwidth_``); where they fail, the preliminary fit takes over (here
    made to fail: no rounds allowed). Both reach the optimum of one linear
    programme on all rows."""
    from _oracles import quantile_linprog

    from skrobust import _quantile_level

    rng = np.random.default_rng(8)
    n, p = 5000, 10
    X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + 1.0 + rng.standard_t(2, size=n)
    oracle = quantile_linprog(X, y, quantile)
    f_lp = pinball_objective(X, y, oracle.coef, oracle.intercept, quantile, None, 0)
    model = QuantileRegressor(quantile=quantile).fit(X, y)
    assert not hasattr(model, "bandwidth_")
    assert model.n_iter_ <= _quantile_level._ZERO_START_ROUNDS
    monkeypatch.setattr(_quantile_level, "_ZERO_START_ROUNDS", 0)
    failed = QuantileRegressor(quantile=quantile).fit(X, y)
    assert failed.bandwidth_ > 0 and failed.n_iter_ > model.n_iter_
    for fit in (model, failed):
        f = pinball_objective(X, y, fit.coef_, fit.intercept_, quantile, None, 0)
        assert abs(f - f_lp) <= 1e-9 * f_lp


def test_failed_starts_go_zero_then_subsample_then_all_rows(monkeypatch):
    """Each start whose reduced problems fail hands over to the next: the
    zero fit, the preliminary fit on a subsample, then on all rows (here
    every start but the last is made to fail), each tried once."""
    from skrobust import _quantile_level

    rng = np.random.default_rng(9)
    n, p = 30_000, 5
    X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + rng.standard_t(2, size=n)
    monkeypatch.setattr(_quantile_level, "_ZERO_START_ROUNDS", 0)
    monkeypatch.setattr(_quantile_level, "_SUBSAMPLE_START_ROUNDS", 0)
    starts = []
    fit_exact = _quantile_level._fit_exact

    def recording(estimator, X, y, sample_weight, start, *args):
        zero = not np.any(start.coef) and start.intercept == 0
        starts.append("zero" if zero else ("sample" if start.exact_options else "all"))
        return fit_exact(estimator, X, y, sample_weight, start, *args)

    monkeypatch.setattr(_quantile_level, "_fit_exact", recording)
    model = QuantileRegressor(quantile=0.4).fit(X, y)
    assert starts == ["zero", "sample", "all"]
    assert model.bandwidth_ > 0


def test_a_failed_subsample_start_is_redone_on_all_rows(monkeypatch):
    """The exact solver's preliminary fit on a subsample may leave reduced
    problems that fail (a quantile in a gap of the targets); the fit then
    redoes the preliminary fit on all rows instead of solving the whole LP,
    and still reaches the optimum (here every subsample start is made to
    fail: no rounds are allowed from it)."""
    from skrobust import _quantile_exact, _quantile_level

    rng = np.random.default_rng(4)
    n, p = 60_000, 5
    X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + 1.0 + rng.standard_t(2, size=n)
    reference = QuantileRegressor(quantile=0.3, solver="exact").fit(X, y)

    def whole_lp(*args, **kwargs):
        raise AssertionError("fell back to the whole linear programme")

    monkeypatch.setattr(_quantile_exact, "_solve_full", whole_lp)
    monkeypatch.setattr(_quantile_level, "_SUBSAMPLE_START_ROUNDS", 0)
    # (And no start from the zero fit, whose rounds would be certified.)
    monkeypatch.setattr(_quantile_level, "ZERO_START_MAX_COEF", 0)
    redone = QuantileRegressor(quantile=0.3, solver="exact").fit(X, y)
    f_ref = pinball_objective(X, y, reference.coef_, reference.intercept_, 0.3, None, 0)
    f = pinball_objective(X, y, redone.coef_, redone.intercept_, 0.3, None, 0)
    assert abs(f - f_ref) <= 1e-9 * f_ref
    assert redone.n_iter_ > reference.n_iter_


def test_one_exact_fit_holds_less_than_half_of_x_at_once():
    """Issue 13's memory bound for one level: peak extra memory below 0.5
    X.nbytes at 1e5 x 20, where every n-vector is 5% of X (it was 1.0:
    copies of float64 y and weights, the clipped residuals' copies, the Gram
    sample and the pinball loss's temporaries)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n, p = 100_000, 20
    X = rng.standard_normal((n, p))
    noise = (1.0 + 0.5 * np.abs(X[:, 0])) * rng.standard_t(2, size=n)
    y = X @ rng.standard_normal(p) + 1.0 + noise
    QuantileRegressor(solver="exact").fit(X, y)
    tracemalloc.start()
    try:
        QuantileRegressor(solver="exact").fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * X.nbytes, peak / X.nbytes


@pytest.mark.parametrize("levels", [19, 99])
def test_many_exact_levels_hold_less_than_half_of_x_at_once(levels):
    """Issue 13's memory bound for a multi-level fit: below 0.5 X.nbytes plus
    the (k, p) outputs at 1e5 x 20 (it was 0.66: the middle level's residuals
    held through the upward pass, each level's copies of the moved targets
    and residuals, and the side sums' two weight rows)."""
    import tracemalloc

    from skrobust import MultiQuantileRegressor

    rng = np.random.default_rng(0)
    n, p = 100_000, 20
    X = rng.standard_normal((n, p))
    noise = (1.0 + 0.5 * np.abs(X[:, 0])) * rng.standard_t(2, size=n)
    y = X @ rng.standard_normal(p) + 1.0 + noise
    model = MultiQuantileRegressor(quantiles=levels, solver="exact")
    model.fit(X, y)
    tracemalloc.start()
    try:
        model.fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    outputs = model.coef_.nbytes + model.intercept_.nbytes
    assert peak < 0.5 * X.nbytes + outputs, peak / X.nbytes


def test_smoothed_solver_rule():
    from skrobust._quantile_smooth import smoothed_solver

    assert smoothed_solver(101, 10**9) == "newton"
    assert smoothed_solver(101, 200 * 101 - 1) == "lbfgs"
    assert smoothed_solver(100, 1) == "newton"
    assert smoothed_solver(301, 10**9) == "lbfgs"


def test_smoothed_fit_with_many_rows_per_coefficient_reaches_the_optimum():
    # 101 coefficients and 208 rows each: Newton's method (on the rows within
    # ten bandwidths of zero) takes two steps of the continuation in the
    # bandwidth, to a duality gap of 1.3e-6 of the loss. L-BFGS could not
    # finish the first step: its fit was 7e-5 above the optimum.
    from skrobust._quantile_smooth import smoothed_solver

    X, y = _data(21_000, 100, seed=0, gross=0.0)
    assert smoothed_solver(101, X.shape[0]) == "newton"
    q = 0.9
    smooth = QuantileRegressor(solver="smooth", quantile=q).fit(X, y)
    exact = QuantileRegressor(solver="exact", quantile=q).fit(X, y)

    def loss(model):
        return pinball_objective(X, y, model.coef_, model.intercept_, q, None, 0.0)

    optimum = loss(exact)
    assert optimum <= loss(smooth) <= optimum * (1 + 2e-6)


@pytest.mark.parametrize("sparse", [False, True])
def test_near_rows_that_miss_a_column_are_refused_without_a_null_space_search(
    monkeypatch, sparse
):
    """One-hot levels that no row near zero has leave a flat direction.

    The null-space search (a Gram matrix and its eigendecomposition) would
    find it and refuse the near rows' problem; the empty column says so
    first, at the cost of a count. The same decision: with the count
    switched off, the search refuses them too. Near rows that have every
    level still go to the search.
    """
    import skrobust._quantile_smooth as smooth
    from skrobust.losses import SmoothedPinballRho

    rng = np.random.default_rng(3)
    n, levels = 4000, 40
    level = rng.integers(levels, size=n)
    X = np.zeros((n, levels + 1))
    X[np.arange(n), level] = 1.0
    X[:, -1] = rng.standard_normal(n)
    y = X @ rng.standard_normal(levels + 1) + rng.standard_normal(n)
    design = sp.csr_matrix(X) if sparse else X
    rho = SmoothedPinballRho(0.5, 0.1)
    objective = smooth.smoothed_objective(rho, design, y, np.ones(n), False, None, True)
    coef = np.zeros(objective.n_coef)
    residuals = objective.y - objective.raw_prediction(coef)[:, 0]
    missing = (level != 7) & (rng.random(n) < 0.3)  # no row of level 7
    complete = rng.random(n) < 0.3

    searched = []
    search = smooth.LinearObjective.null_directions

    def counted(self):
        searched.append(self.n_samples)
        return search(self)

    monkeypatch.setattr(smooth.LinearObjective, "null_directions", counted)
    assert smooth._near_rows_objective(objective, coef, missing, residuals) is None
    assert searched == []
    assert smooth._near_rows_objective(objective, coef, complete, residuals)
    assert searched == [np.count_nonzero(complete)]
    monkeypatch.setattr(smooth, "_has_empty_column", lambda X: False)
    assert smooth._near_rows_objective(objective, coef, missing, residuals) is None
    assert len(searched) == 2


def test_empty_columns_are_found_dense_and_sparse():
    from skrobust._quantile_smooth import _has_empty_column

    X = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    assert _has_empty_column(X)
    assert _has_empty_column(sp.csr_matrix(X))
    X[1, 1] = -1.0
    assert not _has_empty_column(X)
    assert not _has_empty_column(sp.csr_matrix(X))
    # An explicitly stored zero is still an empty column.
    stored_zero = sp.csr_matrix((np.array([1.0, 0.0]), ([0, 1], [0, 1])), shape=(2, 2))
    assert _has_empty_column(stored_zero)


def test_empty_columns_are_found_beyond_the_first_rows():
    from skrobust._quantile_smooth import _has_empty_column

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    X[:, 1] = 0.0
    assert _has_empty_column(X)
    X[250, 1] = 0.5  # the column's only entry, after the rows read first
    assert not _has_empty_column(X)


@pytest.mark.parametrize("quantile", [0.5, 0.9])
def test_a_start_on_a_subsample_takes_the_bandwidth_of_its_size(monkeypatch, quantile):
    """The first smoothed fit, on every 11th row, uses the rule at that size.

    Its bandwidth is the default bandwidth of the subsample's rows times the
    start's residual scale; the last fit's is the rule at all the rows.
    """
    import skrobust._quantile_level as level
    from skrobust._quantile_smooth import default_bandwidth

    scales, bandwidths = [], []
    start = level._smooth_start

    def recorded_start(*args):
        prepared = start(*args)
        scales.append(prepared[1])
        return prepared

    minimize = level.minimize_smoothed

    def recorded_minimize(objective, *args):
        bandwidths.append((objective.n_samples, objective.loss.rho.bandwidth))
        return minimize(objective, *args)

    monkeypatch.setattr(level, "_smooth_start", recorded_start)
    monkeypatch.setattr(level, "minimize_smoothed", recorded_minimize)
    n, p = 20_000, 5
    X, y = _data(n, p, seed=4)
    QuantileRegressor(quantile=quantile, solver="smooth").fit(X, y)
    (n_sub, first), (n_all, _) = bandwidths[:2]
    assert n_sub == len(range(0, n, 11)) and n_all == n
    assert first == pytest.approx(default_bandwidth(n_sub, p) * scales[0], rel=1e-12)
