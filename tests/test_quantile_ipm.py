"""The Frisch-Newton interior point method of the exact quantile fit's dual LP.

Wide dual LPs (``p`` in the hundreds or thousands) go to
:mod:`skrobust._quantile_ipm`, whose optimum is turned into the vertex the
simplex method would return (or, when that vertex is not feasible, HiGHS's
dual simplex starts from its basis). These tests send every dual LP there,
on designs small enough for an independent linear programme
(``tests/_oracles.py: quantile_linprog``, scipy's HiGHS on the primal LP
written from the objective) and check the optimum, the coefficients where
they are unique, and that the answer is a vertex: ``p + 1`` interpolated
rows.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from _oracles import quantile_linprog
from numpy.testing import assert_allclose
from scipy.optimize import linprog

import skrobust._quantile_ipm as quantile_ipm
import skrobust._quantile_lp as quantile_lp
from skrobust import QuantileRegressor
from skrobust._quantile_ipm import solve_dual_ipm


@pytest.fixture
def ipm_outcomes(monkeypatch):
    """Every dual LP to the interior point method; its outcomes, recorded.

    ``"vertex"`` when it returned an optimal vertex itself, ``"basis"``
    when HiGHS's dual simplex had to start from its basis.
    """
    monkeypatch.setattr(quantile_lp, "_FN_MIN_COEF", 0)
    monkeypatch.setattr(quantile_lp, "_FN_MIN_ENTRIES", 0)
    monkeypatch.setattr(quantile_lp, "_FN_MIN_FILL", 0.0)
    outcomes, solve = [], quantile_lp.solve_dual_ipm

    def recorded(*args):
        solution, start = solve(*args)
        outcomes.append("vertex" if solution is not None else "basis")
        return solution, start

    monkeypatch.setattr(quantile_lp, "solve_dual_ipm", recorded)
    return outcomes


def wide_data(n, p, seed=0, sparse=False):
    """Gaussian (or 5% dense sparse) design, t(2) noise, 10% of y shifted up."""
    rng = np.random.default_rng(seed)
    if sparse:
        X = sp.random_array((n, p), density=0.05, format="csr", rng=rng)
        X.data = rng.standard_normal(X.data.size)
        X = sp.csr_matrix(X)
    else:
        X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + rng.standard_t(2, size=n)
    bad = rng.random(n) < 0.1
    y[bad] += rng.uniform(20.0, 60.0, size=bad.sum())
    return X, y


def pinball(X, y, coef, intercept, q, s, alpha):
    r = y - X @ coef - intercept
    loss = np.maximum(q * r, (q - 1.0) * r)
    return float(s @ loss / s.sum()) + alpha * float(np.abs(coef).sum())


def interpolated_rows(X, y, coef, intercept):
    r = y - X @ coef - intercept
    scale = np.abs(y) + np.abs(y - r) + 1.0
    return int(np.sum(np.abs(r) <= 1e-9 * scale))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("quantile", [0.2, 0.5, 0.85])
def test_wide_fit_is_the_lp_vertex(
    ipm_outcomes, sparse, weighted, fit_intercept, quantile
):
    X, y = wide_data(500, 60, seed=int(quantile * 100), sparse=sparse)
    rng = np.random.default_rng(1)
    s = rng.uniform(0.2, 3.0, size=y.size) if weighted else np.ones(y.size)
    model = QuantileRegressor(
        quantile=quantile, alpha=0.0, fit_intercept=fit_intercept, solver="exact"
    ).fit(X, y, sample_weight=s if weighted else None)
    assert ipm_outcomes and "vertex" in ipm_outcomes
    Xd = X.toarray() if sparse else X
    oracle = quantile_linprog(Xd, y, quantile, s, 0.0, fit_intercept)
    value = pinball(Xd, y, model.coef_, model.intercept_, quantile, s, 0.0)
    assert value == pytest.approx(oracle.objective, rel=1e-9)
    # A continuous design: the minimiser is unique, a vertex through p + 1 rows.
    assert_allclose(model.coef_, oracle.coef, rtol=1e-7, atol=1e-8)
    assert model.intercept_ == pytest.approx(oracle.intercept, rel=1e-7, abs=1e-8)
    n_coef = X.shape[1] + int(fit_intercept)
    assert interpolated_rows(Xd, y, model.coef_, model.intercept_) >= n_coef


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("alpha", [0.002, 0.02])
def test_wide_penalised_fit_matches_linprog(ipm_outcomes, sparse, alpha):
    X, y = wide_data(400, 80, seed=3, sparse=sparse)
    model = QuantileRegressor(quantile=0.4, alpha=alpha, solver="exact").fit(X, y)
    assert ipm_outcomes
    Xd = X.toarray() if sparse else X
    s = np.ones(y.size)
    oracle = quantile_linprog(Xd, y, 0.4, s, alpha, True)
    value = pinball(Xd, y, model.coef_, model.intercept_, 0.4, s, alpha)
    assert value == pytest.approx(oracle.objective, rel=1e-9)
    assert_allclose(model.coef_, oracle.coef, rtol=1e-7, atol=1e-8)
    # Exact zeros where the LP has them.
    assert np.array_equal(model.coef_ == 0, np.abs(oracle.coef) < 1e-12)


def degenerate_cases():
    rng = np.random.default_rng(7)
    X, y = wide_data(400, 50, seed=5)
    yield "duplicated columns", np.hstack([X, X[:, :10]]), y
    yield "ties in y", X, np.round(y)
    Xi = rng.integers(-2, 3, size=(400, 50)).astype(float)
    yield "integer design, tied y", Xi, np.round(Xi @ rng.normal(size=50))
    Xn, yn = wide_data(90, 80, seed=6)
    yield "p close to n", Xn, yn
    # Dummies of every level next to the intercept: a singular design.
    levels = rng.integers(60, size=400)
    Xo = np.zeros((400, 63))
    Xo[np.arange(400), levels] = 1.0
    Xo[:, 60:] = rng.standard_normal((400, 3))
    yield (
        "all dummies and an intercept",
        Xo,
        Xo @ rng.normal(size=63) + rng.normal(size=400),
    )


@pytest.mark.parametrize(
    "name, X, y", list(degenerate_cases()), ids=[c[0] for c in degenerate_cases()]
)
@pytest.mark.parametrize("quantile", [0.3, 0.5])
def test_degenerate_wide_fits_reach_the_optimum(ipm_outcomes, name, X, y, quantile):
    model = QuantileRegressor(quantile=quantile, solver="exact").fit(X, y)
    oracle = quantile_linprog(X, y, quantile)
    s = np.ones(y.size)
    value = pinball(X, y, model.coef_, model.intercept_, quantile, s, 0.0)
    # An exact fit can reach 0: then the rounding of the residuals decides.
    assert value == pytest.approx(oracle.objective, rel=1e-9, abs=1e-12)


def test_warm_started_simplex_lands_when_the_vertex_is_rejected(
    ipm_outcomes, monkeypatch
):
    # A negative tolerance rejects every vertex: HiGHS's dual simplex then
    # starts from the basis found by the interior point method.
    monkeypatch.setattr(quantile_ipm, "_BOUND_RTOL", -1.0)
    X, y = wide_data(400, 60, seed=11)
    model = QuantileRegressor(quantile=0.7, solver="exact").fit(X, y)
    assert ipm_outcomes and set(ipm_outcomes) == {"basis"}
    oracle = quantile_linprog(X, y, 0.7)
    assert_allclose(model.coef_, oracle.coef, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("penalty", [0.0, 0.05])
def test_dual_vertex_matches_linprog_on_the_dual(fit_intercept, penalty):
    # The LP of solve_dual_ipm itself: max c'a s.t. A a = 0, lower <= a <= upper,
    # A = [Z^T, -I; 1^T, 0], solved by scipy's HiGHS as written here.
    rng = np.random.default_rng(2)
    m, p = 300, 40
    Z = rng.standard_normal((m, p))
    c_rows = Z @ rng.standard_normal(p) + rng.standard_t(3, size=m)
    w = rng.uniform(0.5, 2.0, size=m)
    q = 0.35
    n_slack = p if penalty else 0
    lower = np.concatenate([(q - 1.0) * w, -penalty * np.ones(n_slack)])
    upper = np.concatenate([q * w, penalty * np.ones(n_slack)])
    c = np.concatenate([c_rows, np.zeros(n_slack)])
    A = np.zeros((p + int(fit_intercept), m + n_slack))
    A[:p, :m] = Z.T
    A[np.arange(n_slack), m + np.arange(n_slack)] = -1.0
    if fit_intercept:
        A[p, :m] = 1.0
    oracle = linprog(
        -c, A_eq=A, b_eq=np.zeros(A.shape[0]), bounds=np.column_stack([lower, upper])
    )
    (a, theta, value, basic), start = solve_dual_ipm(
        Z, c, lower, upper, n_slack, fit_intercept
    )
    assert start is None
    assert value == pytest.approx(oracle.fun, rel=1e-10)
    assert_allclose(theta, -oracle.eqlin.marginals, rtol=1e-7, atol=1e-9)
    assert np.all(a >= lower - 1e-12) and np.all(a <= upper + 1e-12)
    assert_allclose(A @ a, 0.0, atol=1e-10)
    # Off the basis, every a_i is at a bound.
    off = np.setdiff1d(np.arange(a.size), basic)
    assert np.all((a[off] == lower[off]) | (a[off] == upper[off]))


def test_default_rule_keeps_narrow_and_one_hot_lps_on_highs():
    rng = np.random.default_rng(4)
    # Dense: from 50 coefficients and 1e5 entries (measured crossovers).
    assert quantile_lp._frisch_newton_wins(rng.standard_normal((2300, 50)))
    assert not quantile_lp._frisch_newton_wins(rng.standard_normal((1500, 20)))
    assert not quantile_lp._frisch_newton_wins(rng.standard_normal((1000, 60)))
    # Sparse: one-hot rows (a level each, and two dense pseudo-observations)
    # give a nearly diagonal normal matrix, whose LU HiGHS factors cheaply;
    # random sparse rows a dense one.
    m, p = 3000, 300
    one_hot = sp.csr_matrix(
        (np.ones(m), rng.integers(p, size=m), np.arange(m + 1)), shape=(m, p)
    )
    dense_rows = sp.csr_matrix(rng.standard_normal((2, p)))
    assert not quantile_lp._frisch_newton_wins(
        sp.vstack([one_hot, dense_rows], format="csr")
    )
    # The same rows stored densely.
    assert not quantile_lp._frisch_newton_wins(one_hot.toarray())
    scattered = sp.random_array((m, p), density=0.03, format="csr", rng=rng)
    assert quantile_lp._frisch_newton_wins(
        sp.vstack([sp.csr_matrix(scattered), dense_rows], format="csr")
    )
    # Dense rows in sparse storage (HiGHS 11 s at 1500 x 750, this 0.6 s).
    assert quantile_lp._frisch_newton_wins(sp.csr_matrix(rng.standard_normal((m, p))))


@pytest.mark.parametrize("sparse", [False, True])
def test_whole_dense_programme_goes_to_the_interior_point(sparse, monkeypatch):
    # The whole programme of dense rows (fewer than 4 rows per coefficient)
    # was gathered as CSR, which the rule read as sparse and gave to HiGHS:
    # 101 s at 3000 x 1500, against 4 s here.
    calls, solve = [], quantile_lp.solve_dual_ipm

    def recorded(*args):
        calls.append(args[0].shape)
        return solve(*args)

    monkeypatch.setattr(quantile_lp, "solve_dual_ipm", recorded)
    X, y = wide_data(500, 200, seed=5)
    weight = np.random.default_rng(5).uniform(0.5, 2.0, 500)
    design = sp.csr_matrix(X) if sparse else X
    model = QuantileRegressor(quantile=0.8, solver="exact")
    model.fit(design, y, sample_weight=weight)
    assert calls == [(500, 200)]
    oracle = quantile_linprog(X, y, 0.8, weight)
    value = pinball(X, y, model.coef_, model.intercept_, 0.8, weight, 0.0)
    assert value == pytest.approx(oracle.objective, rel=1e-9)
    assert interpolated_rows(X, y, model.coef_, model.intercept_) >= 201


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_slack", [0, 6])
def test_normal_matrix_of_every_iteration_is_a_d_a_transposed(sparse, n_slack):
    """``A diag(d) A^T`` from the buffers the iterations share: each call
    gives its own ``d``'s matrix, nothing of the last one's (BLAS updates
    the buffer in place), the sparse design's dense pseudo-observation rows
    included."""
    rng = np.random.default_rng(3)
    m, p = 300, 40
    Z = sp.random_array((m, p), density=0.05, format="csr", rng=rng).toarray()
    Z[:2] = rng.standard_normal((2, p))  # dense rows (pseudo-observations)
    columns = quantile_ipm._Columns(sp.csr_matrix(Z) if sparse else Z, n_slack, True)
    if sparse:
        assert columns.dense_rows.size == 2
    A = np.zeros((p + 1, m + n_slack))
    A[:p, :m] = Z.T
    A[p, :m] = 1.0
    A[np.arange(n_slack), m + np.arange(n_slack)] = -1.0
    for _ in range(3):
        d = rng.uniform(0.1, 10.0, size=m + n_slack)
        expected = (A * d) @ A.T
        got = columns.normal_matrix(d)
        assert_allclose(np.triu(got), np.triu(expected), rtol=1e-12, atol=1e-12)


@pytest.fixture
def factorisations(monkeypatch):
    """Every dual LP to the interior point method; its factorisations counted."""
    monkeypatch.setattr(quantile_lp, "_FN_MIN_COEF", 0)
    monkeypatch.setattr(quantile_lp, "_FN_MIN_ENTRIES", 0)
    monkeypatch.setattr(quantile_lp, "_FN_MIN_FILL", 0.0)
    count, factor = [0], quantile_ipm._factor

    def counted(*args):
        count[0] += 1
        return factor(*args)

    monkeypatch.setattr(quantile_ipm, "_factor", counted)
    return count


@pytest.mark.parametrize(
    "n, p, seed, quantile, most",
    [(1500, 150, 0, 0.5, 12), (1500, 150, 1, 0.8, 13), (1200, 120, 2, 0.7, 11)],
)
def test_sparse_wide_fit_takes_few_factorisations(
    factorisations, n, p, seed, quantile, most
):
    # Gondzio's centrality correctors (a solve each with the iteration's
    # factorisation) lengthen the steps: Mehrotra's predictor-corrector
    # alone took 14, 15 and 13 factorisations of the normal matrix here
    # (11, 12 and 10 with them).
    X, y = wide_data(n, p, seed=seed, sparse=True)
    model = QuantileRegressor(quantile=quantile, solver="exact").fit(X, y)
    assert 0 < factorisations[0] <= most
    Xd = X.toarray()
    oracle = quantile_linprog(Xd, y, quantile)
    s = np.ones(n)
    value = pinball(Xd, y, model.coef_, model.intercept_, quantile, s, 0.0)
    assert value == pytest.approx(oracle.objective, rel=1e-9)
    assert_allclose(model.coef_, oracle.coef, rtol=1e-7, atol=1e-8)
    assert interpolated_rows(Xd, y, model.coef_, model.intercept_) >= p + 1


@pytest.mark.parametrize("n_slack", [0, 30])
def test_centrality_correctors_keep_the_newton_equations(n_slack):
    """A corrected direction still solves the linear rows of the Newton
    system (``A dx = r_p``, ``A^T dtheta - dz + dv = r_d``) and reaches at
    least as far as Mehrotra's direction."""
    rng = np.random.default_rng(8)
    m, p = 400, 30
    Z = rng.standard_normal((m, p))
    columns = quantile_ipm._Columns(Z, n_slack, True)
    width = rng.uniform(0.5, 2.0, size=m + n_slack)
    x = width * rng.uniform(0.05, 0.95, size=width.size)
    z, v = rng.uniform(0.01, 3.0, size=(2, width.size))
    point = quantile_ipm._Point(x, width - x, z, v)
    point.r_p = rng.standard_normal(p + 1)
    point.r_d = rng.standard_normal(width.size)
    point.d = 1.0 / (z / x + v / point.s)
    point.factor = quantile_ipm._factor(columns, point.d)
    target = 0.1 * float(x @ z + point.s @ v) / (2 * width.size)
    mehrotra = point.direction(columns, target - x * z, target - point.s * v)
    (dx, dtheta, dz, dv), steps = quantile_ipm._centrality_correctors(
        point, columns, mehrotra, target
    )
    A = np.zeros((p + 1, m + n_slack))
    A[:p, :m] = Z.T
    A[p, :m] = 1.0
    A[np.arange(n_slack), m + np.arange(n_slack)] = -1.0
    assert_allclose(A @ dx, point.r_p, atol=1e-9)
    assert_allclose(A.T @ dtheta - dz + dv, point.r_d, atol=1e-9)
    before = point.steps(mehrotra[0], mehrotra[2], mehrotra[3])
    assert steps == point.steps(dx, dz, dv)
    assert sum(steps) > sum(before)
