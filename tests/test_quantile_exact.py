"""Tests of the exact quantile regression solvers in ``skrobust._quantile_exact``.

Every optimum is checked through its objective value: quantile regression
often has a whole face of minimisers (ties, duplicated rows, p >= n), so
coefficients are only compared where the data make the minimiser unique.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from _oracles import quantile_linprog
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

import skrobust._quantile_exact as qe
import skrobust._quantile_face as quantile_face
import skrobust._quantile_level as ql
from skrobust import MultiQuantileRegressor, QuantileRegressor
from skrobust._quantile_exact import pinball_objective, solve_exact, solve_lp

RTOL = 1e-9


def oracle(X, y, quantile, sample_weight, alpha, fit_intercept):
    """Minimum of the objective by a dense LP written independently.

    Unlike the module, it keeps the rows of zero weight (with zero cost), does
    not rescale the costs and uses a free intercept variable.
    """
    n, p = X.shape
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
    S = s.sum()
    ones = np.ones((n, 1)) if fit_intercept else np.zeros((n, 0))
    A = np.hstack([X, -X, ones, np.eye(n), -np.eye(n)])
    c = np.concatenate(
        [
            np.full(2 * p, alpha * S),
            np.zeros(ones.shape[1]),
            quantile * s,
            (1 - quantile) * s,
        ]
    )
    bounds = [(0, None)] * (2 * p) + [(None, None)] * ones.shape[1]
    bounds += [(0, None)] * (2 * n)
    res = linprog(c, A_eq=A, b_eq=y, bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return res.fun / S


def objective_scale(y, sample_weight):
    """Floor of the relative comparisons: 1e-12 mean |y| for objectives near 0."""
    s = np.ones(len(y)) if sample_weight is None else sample_weight
    return 1e-3 * float(s @ np.abs(y)) / float(s.sum()) + 1e-300


def assert_same_objective(f, f_ref, scale):
    assert abs(f - f_ref) <= RTOL * max(abs(f_ref), scale), (f, f_ref)


@st.composite
def problems(draw):
    p = draw(st.integers(1, 8))
    if draw(st.booleans()):
        n = draw(st.integers(max(5, p - 2), p + 4))  # p close to (or above) n
    else:
        n = draw(st.integers(5, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    design = draw(st.sampled_from(["gauss", "integer", "heavy"]))
    if design == "gauss":
        X = rng.standard_normal((n, p))
    elif design == "integer":
        X = rng.integers(-2, 3, size=(n, p)).astype(float)
    else:
        X = rng.standard_t(2, size=(n, p))
    fit_intercept = draw(st.booleans())
    y = X @ rng.standard_normal(p) + 3.0 * fit_intercept + rng.standard_t(2, n)
    if draw(st.booleans()):
        y = np.round(y)  # ties
    if draw(st.booleans()):
        # duplicated rows, some with the same response
        k = int(rng.integers(1, n // 2 + 2))
        src, dst = rng.integers(0, n, k), rng.integers(0, n, k)
        X[dst] = X[src]
        same = rng.random(k) < 0.5
        y[dst[same]] = y[src[same]]
    weights = draw(st.sampled_from(["none", "int", "float"]))
    if weights == "none":
        s = None
    elif weights == "int":
        s = rng.integers(0, 4, n).astype(float)
    else:
        s = rng.uniform(0, 2, n) * (rng.random(n) < 0.8)
    if s is not None and s.sum() == 0:
        s[0] = 1.0
    quantile = draw(
        st.one_of(st.sampled_from([0.01, 0.5, 0.99]), st.floats(0.01, 0.99))
    )
    alpha = draw(st.sampled_from([0.0, 0.0, 1e-3, 0.05]))
    start = draw(st.sampled_from(["zeros", "ls", "wild"]))
    if start == "zeros":
        coef0, b0 = np.zeros(p), 0.0
    elif start == "ls":
        Xt = np.hstack([X, np.ones((n, 1))])
        sol = np.linalg.lstsq(Xt, y, rcond=None)[0]
        coef0, b0 = sol[:p], sol[p]
    else:
        coef0, b0 = 10 * rng.standard_normal(p), -5.0
    initial_size = draw(st.one_of(st.none(), st.integers(1, n)))
    return dict(
        X=X,
        y=y,
        quantile=quantile,
        sample_weight=s,
        alpha=alpha,
        fit_intercept=fit_intercept,
        coef0=coef0,
        b0=b0,
        initial_size=initial_size,
    )


@settings(max_examples=80, deadline=None)
@given(problems())
def test_exact_matches_full_lp_and_oracle(prob):
    X, y, s, q = prob["X"], prob["y"], prob["sample_weight"], prob["quantile"]
    alpha, fit = prob["alpha"], prob["fit_intercept"]
    coef, b, info = solve_exact(
        X,
        y,
        q,
        s,
        alpha,
        fit,
        prob["coef0"],
        prob["b0"],
        initial_size=prob["initial_size"],
    )
    assert info["solver"] in ("reduced", "full", "full-primal", "interpolation")
    assert coef.shape == (X.shape[1],)
    if not fit:
        assert b == 0.0
    f = pinball_objective(X, y, coef, b, q, s, alpha)
    coef_lp, b_lp = solve_lp(X, y, q, s, alpha, fit)
    f_lp = pinball_objective(X, y, coef_lp, b_lp, q, s, alpha)
    f_oracle = oracle(X, y, q, s, alpha, fit)
    scale = objective_scale(y, s)
    assert_same_objective(f, f_oracle, scale)
    assert_same_objective(f_lp, f_oracle, scale)
    assert_same_objective(f, f_lp, scale)


def test_pinball_objective_formula():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    y = rng.standard_normal(50)
    s = rng.uniform(0, 2, 50)
    coef, b, q, alpha = np.array([0.5, -1.0, 2.0]), 0.3, 0.3, 0.1
    r = y - X @ coef - b
    expected = np.sum(s * np.where(r >= 0, q * r, (q - 1) * r)) / s.sum()
    expected += alpha * np.abs(coef).sum()
    assert pinball_objective(X, y, coef, b, q, s, alpha) == pytest.approx(
        expected, rel=1e-14
    )


@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_matches_scikit_learn(alpha):
    from sklearn.linear_model import QuantileRegressor

    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 4))
    y = X @ [1.0, 0.0, -1.0, 2.0] + rng.standard_t(2, 300)
    s = rng.uniform(0.5, 2.0, 300)
    reg = QuantileRegressor(quantile=0.7, alpha=alpha, solver="highs")
    reg.fit(X, y, sample_weight=s)
    f_sk = pinball_objective(X, y, reg.coef_, reg.intercept_, 0.7, s, alpha)
    coef, b, _ = solve_exact(
        X, y, 0.7, s, alpha, True, np.zeros(4), 0.0, initial_size=60
    )
    f = pinball_objective(X, y, coef, b, 0.7, s, alpha)
    assert_same_objective(f, f_sk, objective_scale(y, s))


def _count_design(n, p, rng):
    """Small non-negative integers, mostly zero: sparse, exact in any dtype."""
    return rng.poisson(0.4, size=(n, p)).astype(np.int64)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_and_dtypes_equal_dense(fit_intercept):
    rng = np.random.default_rng(2)
    n, p = 3000, 5
    X64 = _count_design(n, p, rng).astype(np.float64)
    y = X64 @ rng.standard_normal(p) + 1.0 + rng.standard_t(2, n)
    s = rng.integers(0, 3, n).astype(float)
    y_before, s_before = y.copy(), s.copy()
    start = np.zeros(p), 0.0
    ref_coef, ref_b, ref_info = solve_exact(X64, y, 0.3, s, 0.0, fit_intercept, *start)
    assert ref_info["solver"] == "reduced"
    f_ref = pinball_objective(X64, y, ref_coef, ref_b, 0.3, s, 0.0)

    variants = {
        "csr": sp.csr_matrix(X64),
        "csc": sp.csc_matrix(X64),
        "csr_int": sp.csr_matrix(X64.astype(np.int32)),
        "csc_array": sp.csc_array(X64),
        "float32": X64.astype(np.float32),
        "int64": X64.astype(np.int64),
        "fortran": np.asfortranarray(X64),
    }
    for name, X in variants.items():
        if not sp.issparse(X):
            X.flags.writeable = False  # any write to X would raise
        coef, b, info = solve_exact(X, y, 0.3, s, 0.0, fit_intercept, *start)
        f = pinball_objective(X, y, coef, b, 0.3, s, 0.0)
        assert_same_objective(f, f_ref, objective_scale(y, s))
        assert info["solver"] == "reduced", name
        coef_lp, b_lp = solve_lp(X, y, 0.3, s, 0.0, fit_intercept)
        f_lp = pinball_objective(X, y, coef_lp, b_lp, 0.3, s, 0.0)
        assert_same_objective(f_lp, f_ref, objective_scale(y, s))
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_array_equal(s, s_before)


def test_sparse_equals_dense_coefficients():
    # Continuous data: the minimiser is unique, so coefficients must agree.
    rng = np.random.default_rng(3)
    n, p = 2000, 6
    X = rng.standard_normal((n, p)) * (rng.random((n, p)) < 0.3)
    y = X @ rng.standard_normal(p) + rng.standard_t(2, n)
    dense = solve_exact(X, y, 0.6, None, 1e-3, True, np.zeros(p), 0.0)
    for Xs in (sp.csr_matrix(X), sp.csc_matrix(X)):
        sparse = solve_exact(Xs, y, 0.6, None, 1e-3, True, np.zeros(p), 0.0)
        np.testing.assert_allclose(sparse[0], dense[0], rtol=1e-7, atol=1e-9)
        assert sparse[1] == pytest.approx(dense[1], rel=1e-7, abs=1e-9)


def test_bool_design():
    rng = np.random.default_rng(4)
    X = rng.random((1500, 4)) < 0.5
    y = X @ [1.0, -1.0, 0.5, 2.0] + rng.standard_t(2, 1500)
    coef, b, info = solve_exact(X, y, 0.9, None, 0.0, True, None, None)
    f = pinball_objective(X, y, coef, b, 0.9, None, 0.0)
    coef_lp, b_lp = solve_lp(X.astype(float), y, 0.9, None, 0.0, True)
    f_lp = pinball_objective(X, y, coef_lp, b_lp, 0.9, None, 0.0)
    assert_same_objective(f, f_lp, objective_scale(y, None))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("quantile", [0.01, 0.3, 0.99])
def test_calibration_at_optimum(weighted, quantile):
    # With an intercept and no penalty, the subgradient in the intercept
    # direction contains 0: the weight strictly below the fit is at most
    # q S and the weight at or below it is at least q S.
    rng = np.random.default_rng(5)
    n, p = 2500, 3
    X = rng.standard_normal((n, p))
    y = X @ [1.0, 2.0, -1.0] + rng.standard_t(2, n)
    s = rng.uniform(0, 3, n) if weighted else np.ones(n)
    coef, b, info = solve_exact(X, y, quantile, s, 0.0, True, np.zeros(p), 0.0)
    assert info["solver"] == "reduced"
    r = y - X @ coef - b
    tol = 1e-9 * np.abs(y).max()
    S = s.sum()
    assert s[r < -tol].sum() <= quantile * S * (1 + 1e-12)
    assert quantile * S <= s[r <= tol].sum() * (1 + 1e-12)


@pytest.mark.parametrize("scale", [1e-8, 1e8])
def test_scale_equivariance(scale):
    # HiGHS's tolerances are absolute: the solvers must rescale the LPs.
    # Scaling y by c scales the minimum by c (w and b scale by c, so does
    # the penalty); rescaling the columns of X leaves it unchanged at alpha=0.
    rng = np.random.default_rng(9)
    n, p = 1500, 3
    X = rng.standard_normal((n, p))
    y = X @ [1.0, -2.0, 0.5] + 1.0 + rng.standard_t(2, n)
    s = rng.uniform(0, 2, n)
    col = np.array([1e-6, 1.0, 1e5]) if scale < 1 else np.array([1e6, 1.0, 1e-5])
    for alpha, Xc in [(0.01, X), (0.0, X * col)]:
        ref = solve_exact(X, y, 0.7, s, alpha, True, None, None)
        f_ref = pinball_objective(X, y, ref[0], ref[1], 0.7, s, alpha)
        coef, b, info = solve_exact(Xc, scale * y, 0.7, s, alpha, True, None, None)
        assert info["solver"] == "reduced"
        f = pinball_objective(Xc, scale * y, coef, b, 0.7, s, alpha) / scale
        assert f == pytest.approx(f_ref, rel=RTOL)
        coef_lp, b_lp = solve_lp(Xc, scale * y, 0.7, s, alpha, True)
        f_lp = pinball_objective(Xc, scale * y, coef_lp, b_lp, 0.7, s, alpha)
        assert f_lp / scale == pytest.approx(f_ref, rel=RTOL)


def test_zero_weight_rows_are_ignored():
    rng = np.random.default_rng(6)
    n, p = 800, 3
    X = rng.standard_normal((n, p))
    y = X @ [1.0, 2.0, -1.0] + rng.standard_t(2, n)
    s = np.ones(n)
    s[::4] = 0.0
    y_wild = y.copy()
    y_wild[::4] = 1e6 * rng.standard_normal(y[::4].size)
    keep = s > 0
    f_sub = oracle(X[keep], y[keep], 0.4, None, 0.01, True)
    for solver in ("exact", "lp"):
        if solver == "exact":
            coef, b, _ = solve_exact(X, y_wild, 0.4, s, 0.01, True, None, None)
        else:
            coef, b = solve_lp(X, y_wild, 0.4, s, 0.01, True)
        f = pinball_objective(X[keep], y[keep], coef, b, 0.4, None, 0.01)
        assert_same_objective(f, f_sub, objective_scale(y, None))


def test_fallback_paths_are_exact(monkeypatch):
    rng = np.random.default_rng(7)
    n, p = 400, 4
    X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + 2.0 + rng.standard_t(2, n)
    f_ref = oracle(X, y, 0.25, None, 0.0, True)
    scale = objective_scale(y, None)
    # A wild start, a tiny band and one round: the reduced path gives up.
    coef, b, info = solve_exact(
        X,
        y,
        0.25,
        None,
        0.0,
        True,
        50 * np.ones(p),
        -40.0,
        initial_size=5,
        max_rounds=1,
    )
    assert info["fallback"] and info["solver"] == "full"
    assert_same_objective(
        pinball_objective(X, y, coef, b, 0.25, None, 0.0), f_ref, scale
    )
    # If the dual LP cannot be certified, the primal LP of solve_lp is used.
    monkeypatch.setattr(qe, "_dual_lp", lambda *args: (None, None, False))
    coef, b, info = solve_exact(X, y, 0.25, None, 0.0, True, None, None)
    assert info["solver"] == "full-primal"
    assert_same_objective(
        pinball_objective(X, y, coef, b, 0.25, None, 0.0), f_ref, scale
    )


def test_invalid_inputs():
    X = np.ones((5, 2))
    y = np.arange(5.0)
    with pytest.raises(ValueError, match="positive sum"):
        solve_exact(X, y, 0.5, np.zeros(5), 0.0, True, None, None)
    with pytest.raises(ValueError, match="non-negative"):
        solve_lp(X, y, 0.5, -np.ones(5), 0.0, True)
    with pytest.raises(ValueError, match="quantile"):
        solve_lp(X, y, 1.0, None, 0.0, True)
    with pytest.raises(ValueError, match="alpha"):
        pinball_objective(X, y, np.zeros(2), 0.0, 0.5, None, -1.0)


def test_large_problem_uses_reduced_path():
    rng = np.random.default_rng(8)
    n, p, q = 20000, 20, 0.3
    X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + 1.0 + rng.standard_t(2, n)
    Xt = np.hstack([X, np.ones((n, 1))])
    ls = np.linalg.lstsq(Xt, y, rcond=None)[0]
    coef, b, info = solve_exact(X, y, q, None, 0.0, True, ls[:p], ls[p])
    assert not info["fallback"]
    assert info["solver"] == "reduced"
    assert info["reduced_size"] < n // 5
    f = pinball_objective(X, y, coef, b, q, None, 0.0)
    # The default dual simplex takes about 20 s on this LP, HiGHS's interior
    # point method (with crossover to a vertex) about 5.
    coef_lp, b_lp = solve_lp(X, y, q, None, 0.0, True, method="highs-ipm")
    f_lp = pinball_objective(X, y, coef_lp, b_lp, q, None, 0.0)
    assert_same_objective(f, f_lp, objective_scale(y, None))


def test_clipping_far_targets_never_changes_the_optimum():
    """A moved target that ends on the fit (a basic row) sends the LP back unclipped.

    Found by hypothesis: from a smoothed start two targets lie beyond 50 MADs
    and are moved in; the clipped LP puts one of them exactly on the fit, where
    the clipped and true problems differ, so its answer must not be kept.
    """
    X = np.array(
        [
            [0.12573022, -0.13210486, 0.64042265, 0.10490012, -0.53566937],
            [0.36159505, 1.30400005, 0.94708096, -0.70373524, -1.26542147],
            [-0.62327446, 0.04132598, -2.32503077, -0.21879166, -1.24591095],
            [-0.73226735, -0.54425898, -0.31630016, 0.41163054, 1.04251337],
            [-0.12853466, 1.36646347, -0.66519467, 0.35151007, 0.90347018],
            [0.0940123, -0.74349925, -0.92172538, -0.45772583, 0.22019512],
            [-1.00961818, -0.20917557, -0.15922501, 0.54084558, 0.21465912],
        ]
    )
    y = np.array([-1.857, -1.549, -1.687, 3.705, 2.176, 1.090, 0.530])
    best = pinball_objective(
        X, y, *solve_lp(X, y, 0.01, None, 0.0, False), 0.01, None, 0.0
    )
    rng = np.random.default_rng(0)
    for _ in range(20):
        start = rng.normal(size=5)
        coef, intercept, _ = solve_exact(X, y, 0.01, None, 0.0, False, start, 0.0)
        value = pinball_objective(X, y, coef, intercept, 0.01, None, 0.0)
        assert value <= best * (1 + 1e-9) + 1e-15


@pytest.mark.parametrize("clipped_lp_kept", [True, False])
def test_far_targets_moved_in_place_are_restored(clipped_lp_kept, monkeypatch):
    """``write_and_restore`` moves far targets in ``y`` and the residuals in
    place instead of copying them: the answer is the copying one's, and both
    arrays are as given afterwards, also when the clipped LP is refused (the
    unclipped refit needs the true ``y``) and when the solver raises."""
    import skrobust._quantile_exact as exact

    rng = np.random.default_rng(5)
    n = 4000
    X = rng.standard_normal((n, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.standard_t(1, size=n)
    y[:30] += 1e8 * rng.choice([-1.0, 1.0], size=30)
    start = np.array([0.9, -1.9, 0.6])
    residuals = y - X @ start
    if not clipped_lp_kept:
        # Every far target "ends on the fit": the clipped answer is refused.
        monkeypatch.setattr(exact, "_kept_their_side", lambda *args: False)
    given_y, given_r = y.copy(), residuals.copy()
    answers = []
    for write in (False, True):
        coef, b, info = solve_exact(
            X, y, 0.7, None, 0.0, True, start, 0.0,
            residuals=residuals, write_and_restore=write,
        )  # fmt: skip
        np.testing.assert_array_equal(y, given_y)
        np.testing.assert_array_equal(residuals, given_r)
        assert ("clipped" in info) is clipped_lp_kept
        answers.append((coef, b))
    np.testing.assert_array_equal(answers[0][0], answers[1][0])
    assert answers[0][1] == answers[1][1]
    f = pinball_objective(X, y, *answers[1], 0.7, None, 0.0)
    assert_same_objective(
        f, oracle(X, y, 0.7, None, 0.0, True), objective_scale(y, None)
    )

    def fail(*args, **kwargs):
        raise RuntimeError("solver failed")

    monkeypatch.setattr(exact, "_solve_exact_unclipped", fail)
    with pytest.raises(RuntimeError, match="solver failed"):
        solve_exact(
            X, y, 0.7, None, 0.0, True, start, 0.0,
            residuals=residuals, write_and_restore=True,
        )  # fmt: skip
    np.testing.assert_array_equal(y, given_y)
    np.testing.assert_array_equal(residuals, given_r)


def test_highs_direct_and_through_linprog_agree(monkeypatch):
    # _solve_dual calls HiGHS directly when scipy ships its interface; the
    # linprog path (other scipy versions) must give the same optimum.
    import skrobust._quantile_lp as lp

    rng = np.random.default_rng(12)
    X = rng.standard_normal((3000, 5))
    y = X @ rng.standard_normal(5) + rng.standard_t(2, 3000)
    f_ref = oracle(X, y, 0.3, None, 0.02, True)
    scale = objective_scale(y, None)
    for highs in (lp._highs, None):
        monkeypatch.setattr(lp, "_highs", highs)
        coef, b, info = solve_exact(X, y, 0.3, None, 0.02, True, None, None)
        assert info["solver"] == "reduced"
        f = pinball_objective(X, y, coef, b, 0.3, None, 0.02)
        assert_same_objective(f, f_ref, scale)


@settings(max_examples=60, deadline=None)
@given(problems(), st.booleans())
def test_dual_lp_started_at_an_origin_reaches_the_optimum(prob, sparse):
    # The reduced problems of a level started from its neighbour are solved
    # for the change from a start (coef0, b0 here: zeros, least squares or
    # far off); the optimum must not depend on it, with HiGHS or linprog.
    import skrobust._quantile_lp as lp

    X, y, s, q = prob["X"], prob["y"], prob["sample_weight"], prob["quantile"]
    alpha, fit = prob["alpha"], prob["fit_intercept"]
    w = np.ones(y.size) if s is None else s
    Z = sp.csr_matrix(X) if sparse else X
    origin = (prob["coef0"], prob["b0"])
    coef, b, ok = lp._dual_lp(Z, y, w, q, alpha * w.sum(), fit, origin=origin)
    assert ok
    if not fit:
        assert b == 0.0
    f = pinball_objective(X, y, coef, b, q, s, alpha)
    assert_same_objective(f, oracle(X, y, q, s, alpha, fit), objective_scale(y, s))


def test_dual_lp_from_an_origin_keeps_exact_zeros(monkeypatch):
    # Most targets 0 and q = 0.2: the zero fit is the unique optimum, and a
    # vertex through rows of target 0 must give exact zeros, not the origin
    # plus its negative (the fit through the basic rows is re-solved).
    import skrobust._quantile_lp as lp

    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 4))
    y = np.where(rng.random(400) < 0.6, 0.0, rng.exponential(size=400))
    origin = (rng.standard_normal(4) / 3, 0.1)
    coef, b, ok = lp._dual_lp(X, y, np.ones(400), 0.2, 0.0, True, origin=origin)
    assert ok
    assert np.all(coef == 0.0) and b == 0.0
    # Through linprog (no basis reported) the optimum is the same up to
    # rounding.
    monkeypatch.setattr(lp, "_highs", None)
    coef, b, ok = lp._dual_lp(X, y, np.ones(400), 0.2, 0.0, True, origin=origin)
    assert ok
    np.testing.assert_allclose(np.r_[coef, b], 0.0, atol=1e-12)


def test_checked_inputs_give_the_same_optimum():
    # The levels of a multi-level fit skip the copies and checks of y and the
    # weights (validated once); the answer is that of the checked call.
    rng = np.random.default_rng(4)
    X = rng.standard_normal((5000, 3))
    y = X @ [1.0, 2.0, -1.0] + rng.standard_t(2, 5000)
    weights = rng.uniform(0.5, 4.0, 5000)
    args = (X, y, 0.3, weights, 0.0, True, np.zeros(3), 0.0)
    coef, b, _ = solve_exact(*args)
    coef_c, b_c, _ = solve_exact(*args, checked_inputs=True)
    f = pinball_objective(X, y, coef, b, 0.3, weights, 0.0)
    f_c = pinball_objective(X, y, coef_c, b_c, 0.3, weights, 0.0)
    assert abs(f - f_c) <= 1e-12 * f
    assert np.all(weights >= 0.5)  # not scaled in place


@pytest.mark.parametrize("sparse", ["dense", "sparse", "sparse, dense LU"], ids=str)
def test_regular_vertex_rows_are_told_from_singular_ones(sparse, monkeypatch):
    """The LU test that spares the face selection its SVD agrees with the SVD.

    A random square matrix is regular; one with a repeated row, or a row
    that is a combination of two others up to 1e-14, is not (numpy's SVD
    rank says so), and the test must not call it regular. Sparse squares
    are factored by SuperLU, or densely up to ``_DENSE_LU_ELEMENTS``.
    """
    dense_lu = sparse == "sparse, dense LU"
    monkeypatch.setattr(quantile_face, "_DENSE_LU_ELEMENTS", 3600 if dense_lu else 0)
    sparse = sparse != "dense"
    rng = np.random.default_rng(5)
    regular = rng.normal(size=(60, 60)) * (rng.random((60, 60)) < 0.1)
    regular += 3.0 * np.eye(60)
    repeated = regular.copy()
    repeated[7] = repeated[3]
    combined = regular.copy()
    combined[9] = regular[1] - 2.0 * regular[2] + 1e-14 * rng.normal(size=60)
    for matrix, expected in [(regular, True), (repeated, False), (combined, False)]:
        assert (np.linalg.matrix_rank(matrix) == 60) == expected
        given = sp.csr_matrix(matrix) if sparse else matrix.copy()
        assert quantile_face._clearly_regular(given) == expected


def test_sparse_vertex_stays_the_dense_one():
    """A sparse wide design's exact fit equals the dense one's, and stays sparse.

    (The face selection used to densify the vertex's rows for an SVD.)
    """
    rng = np.random.default_rng(6)
    X = sp.random_array((600, 120), density=0.05, format="csr", rng=rng)
    X = sp.csr_matrix(X)
    y = X @ rng.normal(size=120) + rng.standard_t(2, size=600)
    dense = QuantileRegressor(quantile=0.3, solver="exact").fit(X.toarray(), y)
    sparse = QuantileRegressor(quantile=0.3, solver="exact").fit(X, y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, atol=1e-9)
    np.testing.assert_allclose(sparse.intercept_, dense.intercept_, atol=1e-9)


# (From offset 0.05 the second step lands in its band with the Gram sample
# of every 4th row, not with every 11th's nor with all rows': 2 rounds
# against 5 with one step. 0.045 lands there: 1 against 4.)
@pytest.mark.parametrize(
    ("quantile", "offset"), [(0.75, 0.03), (0.75, 0.045), (0.9, 0.03)]
)
def test_start_takes_newton_steps_until_one_lands_in_its_band(
    monkeypatch, quantile, offset
):
    """With strongly heteroscedastic errors one Newton step from a distant
    start (its density a single number) lands outside the band of sqrt(n p)
    rows, and the reduced problems take repairs; a second step from the new
    band's sums (no pass to decide it) lands inside, and the first reduced
    problem is certified. The same optimum either way."""
    from skrobust import _quantile_exact

    rng = np.random.default_rng(1)
    n, p = 200_000, 5
    X = rng.standard_normal((n, p))
    noise = (0.2 + X[:, 0] ** 2) * rng.standard_t(3, size=n)
    y = X @ np.ones(p) + 1.0 + noise
    coef, intercept, _ = solve_exact(X, y, quantile, None, 0.0, True, np.zeros(p), 0.0)
    start = coef + offset * rng.standard_normal(p)

    def from_start(steps):
        monkeypatch.setattr(_quantile_exact, "_START_NEWTON_STEPS", steps)
        return solve_exact(X, y, quantile, None, 0.0, True, start, intercept)

    several = from_start(_quantile_exact._START_NEWTON_STEPS)
    one = from_start(1)
    assert several[2]["rounds"] == 1 < one[2]["rounds"]
    for fit in (one, several):
        np.testing.assert_allclose(fit[0], coef, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("n_samples", "n_features"),
    [(60, 300), (40, 39), (30, 60), (500, 20), (900, 300)],
)
@pytest.mark.parametrize("quantile", [0.5, 0.9])
def test_whole_programmes_take_no_preliminary_fit(
    n_samples, n_features, quantile, monkeypatch
):
    # The exact solver solves the whole programme of fewer than 600 rows or
    # 4 rows per coefficient, which does not start from a preliminary fit:
    # a smoothed one cost 11 s of 11.2 at 200 x 1000 (singular Hessian),
    # 3.0 s of 7.3 at 3000 x 1500.
    def no_smoothed_fit(*args, **kwargs):
        raise AssertionError("a preliminary smoothed fit was made")

    monkeypatch.setattr(ql, "fit_smooth", no_smoothed_fit)
    rng = np.random.default_rng(n_samples)
    X = rng.standard_normal((n_samples, n_features))
    # Duplicated rows with other targets: no plane interpolates them all,
    # so the optimum is not zero.
    X[1::2] = X[::2][: X[1::2].shape[0]]
    y = X[:, 0] + rng.standard_t(2, n_samples)
    weight = rng.uniform(0.5, 2.0, n_samples)
    exact = QuantileRegressor(quantile=quantile, solver="exact")
    exact.fit(X, y, sample_weight=weight)
    oracle = quantile_linprog(X, y, quantile, weight)
    assert oracle.objective > 1e-3
    value = pinball_objective(
        X, y, exact.coef_, exact.intercept_, quantile, weight, 0.0
    )
    assert value == pytest.approx(oracle.objective, rel=1e-10)
    assert exact.n_iter_ == 1


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize(("n_samples", "n_features"), [(80, 300), (60, 59), (45, 90)])
def test_rows_no_more_than_coefficients_are_interpolated_at_a_vertex(
    n_samples, n_features, sparse
):
    # Their LP optimum is 0, reached at a basic solution with at most n
    # non-zero coefficients; HiGHS took 25 s on the dual LP at 1000 x 1000.
    rng = np.random.default_rng(n_features)
    X = rng.standard_normal((n_samples, n_features))
    y = X[:, :3] @ [1.0, -2.0, 0.5] + rng.standard_t(2, n_samples)
    weight = rng.uniform(0.5, 2.0, n_samples)
    design = sp.csr_matrix(X) if sparse else X
    coef, intercept, info = solve_exact(design, y, 0.7, weight, 0.0, True, None, None)
    assert info["solver"] == "interpolation"
    np.testing.assert_allclose(X @ coef + intercept, y, rtol=0, atol=1e-10)
    assert np.count_nonzero(coef) + (intercept != 0) <= n_samples
    model = QuantileRegressor(quantile=0.7, solver="exact")
    model.fit(design, y, sample_weight=weight)
    value = pinball_objective(X, y, model.coef_, model.intercept_, 0.7, weight, 0.0)
    oracle = quantile_linprog(X, y, 0.7, weight)
    assert value <= oracle.objective + 1e-12 and value < 1e-12


@pytest.mark.parametrize("estimator", ["single", "levels"])
def test_auto_takes_the_exact_solver_on_wide_designs(estimator):
    # "auto" was the smoothed solver beyond 200 coefficients: with no more
    # rows than coefficients its Hessian is singular (200 x 1000: 11 s),
    # and with a few rows per coefficient it ran out of max_iter above the
    # optimum (5000 x 300 at q = 0.9: 3.4e-4, warning).
    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, 400))
    y = X[:, 0] + rng.standard_t(2, 120)
    if estimator == "single":
        model = QuantileRegressor(quantile=0.3).fit(X, y)
        fits = [(model.coef_, model.intercept_)]
    else:
        model = MultiQuantileRegressor(quantiles=[0.3, 0.8]).fit(X, y)
        fits = list(zip(model.coef_, model.intercept_, strict=True))
    assert model.solver_ == "exact"
    for coef, intercept in fits:
        # The optimum: every row fitted (the face selection then takes the
        # point of that face nearest the start, not necessarily a vertex).
        np.testing.assert_allclose(X @ coef + intercept, y, rtol=0, atol=1e-10)
    X = rng.standard_normal((700, 205))
    y = X[:, 0] + rng.standard_t(2, 700)
    y[::10] += 30.0
    if estimator == "single":
        model = QuantileRegressor(quantile=0.9).fit(X, y)
        fits = [(0.9, model.coef_, model.intercept_)]
    else:
        model = MultiQuantileRegressor(quantiles=[0.5, 0.9]).fit(X, y)
        fits = list(zip([0.5, 0.9], model.coef_, model.intercept_, strict=True))
    assert model.solver_ == "exact"
    for quantile, coef, intercept in fits:
        value = pinball_objective(X, y, coef, intercept, quantile, None, 0.0)
        oracle = quantile_linprog(X, y, quantile)
        assert value == pytest.approx(oracle.objective, rel=1e-10)
