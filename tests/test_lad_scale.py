"""``scale="lad"``: the MAD fixed point of the smoothed least-absolute-deviation fit.

The definition (``skrobust._scale_lad.LADScale``): ``sigma`` solves
``sigma = MAD(r - median(r)) / 0.6745`` where ``r`` are the residuals of the
median regression with the absolute loss smoothed by a Gaussian kernel of
bandwidth ``h = 0.5 sigma``. The oracle here minimises that smoothed
objective with scipy's ``trust-exact`` from its own closed form
(``u (1/2 - Phi(-u/h)) + h phi(u/h)``) and recomputes the MAD with numpy;
the exact LAD fit is scipy's ``linprog`` (HiGHS). At most two rows per
coefficient, or when more than half the rows lie on one hyperplane, the
exact LAD fit's residuals give the scale, as before.
"""

import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from numpy.testing import assert_allclose
from scipy.special import ndtr
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning

from skrobust import (
    HuberRegressor,
    LogCoshRegressor,
    MEstimatorRegressor,
    QuantileRegressor,
    _scale_lad,
)
from skrobust._solvers import SUBSAMPLE_STEP

MAD_NORMAL_CONSTANT = 0.6744897501960817
BANDWIDTH = 0.5  # in units of the scale, as documented


def make_data(n=400, p=4, seed=0, outlier_share=0.1, noise="t"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * np.linspace(0.5, 3.0, p)
    if noise == "t":
        e = rng.standard_t(3, size=n)
    else:
        e = rng.normal(size=n)
    y = X @ np.linspace(-2.0, 2.0, p) + 3.0 + e
    bad = rng.random(n) < outlier_share
    y[bad] += rng.uniform(20.0, 100.0, size=bad.sum())
    return X, y


def smoothed_lad_oracle(X, y, bandwidth, fit_intercept=True, weights=None):
    """Minimiser of ``sum_i s_i ell_h(y_i - x_i'w - b)`` by scipy's trust-exact."""
    n, p = X.shape
    s = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    design = np.hstack([X, np.ones((n, 1))]) if fit_intercept else X

    def fun(params):
        u = y - design @ params
        t = u / bandwidth
        value = s @ (u * (0.5 - ndtr(-t)) + bandwidth * norm.pdf(t))
        return value / s.sum(), -design.T @ (s * (0.5 - ndtr(-t))) / s.sum()

    def hess(params):
        t = (y - design @ params) / bandwidth
        curvature = s * norm.pdf(t) / bandwidth
        return design.T @ (design * curvature[:, None]) / s.sum()

    start = np.linalg.lstsq(design, y, rcond=None)[0]
    res = scipy.optimize.minimize(
        fun,
        start,
        jac=True,
        hess=hess,
        method="trust-exact",
        options={"gtol": 1e-13, "maxiter": 2000},
    )
    return y - design @ res.x


def centred_mad(residuals, weights=None):
    """``median |r - median r| / 0.6745``; integer weights repeat rows."""
    if weights is not None:
        residuals = np.repeat(residuals, weights.astype(int))
    return np.median(np.abs(residuals - np.median(residuals))) / MAD_NORMAL_CONSTANT


def exact_lad_residuals(X, y, fit_intercept=True):
    """Residuals of the least-absolute-deviation fit by linear programming."""
    n = X.shape[0]
    design = np.hstack([X, np.ones((n, 1))]) if fit_intercept else X
    k = design.shape[1]
    A = np.hstack([design, -design, np.eye(n), -np.eye(n)])
    c = np.r_[np.zeros(2 * k), np.ones(2 * n)]
    res = scipy.optimize.linprog(c, A_eq=A, b_eq=y, bounds=(0, None), method="highs")
    beta = res.x[:k] - res.x[k : 2 * k]
    return y - design @ beta


def assert_is_fixed_point(model, X, y, fit_intercept=True, weights=None):
    """``scale_`` is the centred MAD of the smoothed fit at ``h = 0.5 scale_``."""
    r = smoothed_lad_oracle(X, y, BANDWIDTH * model.scale_, fit_intercept, weights)
    # The fixed point is settled to a relative 1e-6 in the bandwidth; the MAD
    # moves far less than the bandwidth does.
    assert_allclose(model.scale_, centred_mad(r, weights), rtol=1e-6)


@pytest.mark.parametrize("Estimator", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_scale_is_the_smoothed_lad_fixed_point(Estimator, fit_intercept):
    X, y = make_data()
    model = Estimator(scale="lad", fit_intercept=fit_intercept).fit(X, y)
    assert_is_fixed_point(model, X, y, fit_intercept)


def oracle_fixed_point(X, y, scale, fit_intercept=True):
    """The fixed point by plain iteration of the oracle, from ``scale``."""
    for _ in range(100):
        r = smoothed_lad_oracle(X, y, BANDWIDTH * scale, fit_intercept)
        scale, previous = centred_mad(r), scale
        if abs(scale - previous) <= 1e-12 * scale:
            return scale
    raise AssertionError("the oracle's fixed point did not settle")


def test_large_problem_takes_the_bandwidth_from_the_solvers_subsample():
    # 8000 rows and 6 coefficients (at least 5000 rows and 275 per
    # coefficient): the fixed point is settled on every SUBSAMPLE_STEP-th
    # row (to 1e-3), and the scale is the centred MAD of all rows'
    # residuals of the smoothed fit on all of them at that bandwidth.
    X, y = make_data(n=8000, p=5, noise="normal")
    model = HuberRegressor(scale="lad").fit(X, y)
    step = SUBSAMPLE_STEP
    on_subsample = oracle_fixed_point(X[::step], y[::step], model.scale_)
    r = smoothed_lad_oracle(X, y, BANDWIDTH * on_subsample)
    # The full rows' MAD moves about a hundredth as much as the bandwidth,
    # so a subsample fixed point settled to 1e-3 leaves 1e-5 (4e-5 here).
    assert_allclose(model.scale_, centred_mad(r), rtol=1e-4)
    # And the full rows' own fixed point is within the subsample's sampling
    # error (4% for the MAD of 728 rows) times that hundredth (4e-4).
    assert_allclose(model.scale_, oracle_fixed_point(X, y, model.scale_), rtol=1e-3)


def test_all_rows_fit_stops_at_the_subsample_fixed_points_precision(monkeypatch):
    """The one smoothed fit on all rows is solved to a millionth of the scale.

    Its bandwidth, the subsample's fixed point settled to 1e-3, leaves the
    scale uncertain by about 1e-5 of itself; solved to the problem's tol
    (1e-10), the fit's last Newton step took the gradient from ~1e-7 to
    ~1e-11, a pass over all rows that moved the scale by ~1e-6 of itself.
    On these four problems (1e4 x 20, the benchmark's shape) that pass is
    saved in each fit (52 -> 48 passes over all rows), and the scale is
    still the centred MAD of the exact smoothed fit at the subsample's
    bandwidth, to 1e-4 as in the test above.
    """
    from skrobust._objective import LinearObjective

    n = 10_000
    passes = [0]
    for name in ("loss_gradient", "loss_gradient_hessian", "hessian"):
        method = getattr(LinearObjective, name)

        def counted(self, *args, _method=method, **kwargs):
            passes[0] += self.n_samples == n
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(LinearObjective, name, counted)
    for seed in range(4):
        X, y = make_data(n=n, p=20, seed=seed, noise="normal")
        model = HuberRegressor(scale="lad").fit(X, y)
        if seed == 0:
            on_subsample = oracle_fixed_point(
                X[::SUBSAMPLE_STEP], y[::SUBSAMPLE_STEP], model.scale_
            )
            r = smoothed_lad_oracle(X, y, BANDWIDTH * on_subsample)
            assert_allclose(model.scale_, centred_mad(r), rtol=1e-4)
    assert passes[0] <= 48


def test_fixed_point_with_integer_weights_is_that_of_repeated_rows():
    X, y = make_data(n=300)
    weights = np.random.default_rng(1).integers(0, 4, size=300)
    model = HuberRegressor(scale="lad").fit(X, y, sample_weight=weights)
    assert_is_fixed_point(model, X, y, weights=weights)
    repeated = HuberRegressor(scale="lad").fit(
        np.repeat(X, weights, axis=0), np.repeat(y, weights)
    )
    assert_allclose(model.scale_, repeated.scale_, rtol=1e-8)
    assert_allclose(model.coef_, repeated.coef_, rtol=1e-7, atol=1e-9)
    assert_allclose(model.intercept_, repeated.intercept_, rtol=1e-7)


@pytest.mark.parametrize("noise", ["normal", "t"])
def test_scale_is_within_one_percent_of_the_exact_lad_scale(noise):
    # The smoothed fit is a median regression too: the scale it gives is
    # that of the exact LAD residuals to within 1% here (0.2% and 0.55%).
    X, y = make_data(n=2000, p=5, noise=noise)
    model = HuberRegressor(scale="lad").fit(X, y)
    exact = centred_mad(exact_lad_residuals(X, y))
    assert_allclose(model.scale_, exact, rtol=0.01)


def test_scale_and_fit_are_equivariant():
    X, y = make_data()
    base = HuberRegressor(scale="lad").fit(X, y)
    shift = np.array([0.5, -1.0, 2.0, 0.25])
    moved = HuberRegressor(scale="lad").fit(X, -3.0 * y + X @ shift + 7.0)
    # Different standardisations take different paths to the same fixed
    # point (settled to 1e-6 relative in the bandwidth).
    assert_allclose(moved.scale_, 3.0 * base.scale_, rtol=1e-6)
    assert_allclose(moved.coef_, -3.0 * base.coef_ + shift, rtol=1e-5, atol=1e-5)
    assert_allclose(moved.intercept_, -3.0 * base.intercept_ + 7.0, rtol=1e-5)
    # Rescaled columns: the same fit in the new units.
    column_scale = np.array([10.0, 0.1, 1.0, 1e3])
    rescaled = HuberRegressor(scale="lad").fit(X * column_scale, y)
    assert_allclose(rescaled.scale_, base.scale_, rtol=1e-6)
    assert_allclose(rescaled.coef_ * column_scale, base.coef_, rtol=1e-5, atol=1e-6)


def test_sparse_equals_dense():
    rng = np.random.default_rng(3)
    X = sp.random_array((600, 40), density=0.2, format="csr", rng=rng)
    X.data = rng.normal(size=X.nnz)
    X = sp.csr_matrix(X)
    y = X @ rng.normal(size=40) + rng.normal(size=600)
    y[rng.random(600) < 0.1] += 50.0
    dense = HuberRegressor(scale="lad").fit(X.toarray(), y)
    sparse = HuberRegressor(scale="lad").fit(X, y)
    assert_allclose(sparse.scale_, dense.scale_, rtol=1e-8)
    assert_allclose(sparse.coef_, dense.coef_, rtol=1e-8, atol=1e-10)
    assert_allclose(sparse.intercept_, dense.intercept_, rtol=1e-8, atol=1e-10)


def test_deterministic_and_independent_of_row_order():
    X, y = make_data()
    first = HuberRegressor(scale="lad").fit(X, y)
    again = HuberRegressor(scale="lad").fit(X, y)
    assert first.scale_ == again.scale_
    assert np.array_equal(first.coef_, again.coef_)
    order = np.random.default_rng(5).permutation(len(y))
    shuffled = HuberRegressor(scale="lad").fit(X[order], y[order])
    assert_allclose(shuffled.scale_, first.scale_, rtol=1e-8)
    assert_allclose(shuffled.coef_, first.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("magnitude", [1e3, 1e6, 1e12, 1e300])
def test_scale_stays_bounded_at_45_percent_one_sided_outliers(magnitude):
    # Far outliers enter the smoothed fit only through the sign of their
    # residual and the centred MAD only through their count, so the scale is
    # the same for every magnitude, and near the exact LAD one (5.4 and 4.2
    # noise units here; the clean noise has standard deviation 1).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = X @ [1.0, -2.0, 0.5] + 1.0 + rng.normal(size=400)
    y[rng.permutation(400)[:180]] += magnitude
    model = HuberRegressor(scale="lad").fit(X, y)
    reference = HuberRegressor(scale="lad").fit(X, np.minimum(y, 1e3 + 10))
    assert_allclose(model.scale_, reference.scale_, rtol=1e-6)
    assert model.scale_ < 6.0
    assert np.max(np.abs(model.coef_ - [1.0, -2.0, 0.5])) < 1.0


def test_few_rows_per_coefficient_use_the_exact_lad_residuals():
    # 10 rows, 5 coefficients: at most two rows per coefficient, where the
    # exact LAD fit (5 rows on it) is cheap and a smoothed fixed point would
    # be near collapse. The median |r| is half the smallest non-zero one.
    rng = np.random.default_rng(2)
    X = rng.normal(size=(10, 4))
    y = X @ [1.0, 2.0, -1.0, 0.5] + rng.normal(size=10)
    model = HuberRegressor(scale="lad").fit(X, y)
    r = exact_lad_residuals(X, y)
    assert np.sum(np.abs(r) < 1e-9) == 5
    expected = np.median(np.abs(r)) / MAD_NORMAL_CONSTANT
    assert expected > 0
    assert_allclose(model.scale_, expected, rtol=1e-6)


def test_interpolating_lad_fit_falls_back_to_the_mad_fixed_point():
    # As many rows as coefficients: every LAD residual is zero.
    rng = np.random.default_rng(4)
    X = rng.normal(size=(5, 4))
    y = X @ [1.0, 2.0, -1.0, 0.5] + rng.normal(size=5)
    lad = HuberRegressor(scale="lad", alpha=0.1).fit(X, y)
    mad = HuberRegressor(scale="mad", alpha=0.1).fit(X, y)
    assert_allclose(lad.scale_, mad.scale_, rtol=1e-10)
    assert_allclose(lad.coef_, mad.coef_, rtol=1e-10)


def test_tied_targets_fall_back_to_the_exact_lad_residuals():
    # 70% of the targets are 0 and unrelated to X: the LAD fit puts them all
    # on one hyperplane and the smoothed fixed point would shrink to zero;
    # the scale is then the RMS of the exact LAD residuals, as before.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 3))
    y = X @ [1.0, 2.0, 3.0] + rng.normal(size=1000)
    y[:700] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = HuberRegressor(scale="lad").fit(X, y)
    r = exact_lad_residuals(X, y)
    assert np.mean(np.abs(r) < 1e-9) > 0.5
    assert_allclose(model.scale_, np.sqrt(np.mean(r**2)), rtol=1e-6)


@pytest.mark.parametrize("max_iter", [1, 2, 5])
def test_iterations_within_max_iter(max_iter):
    X, y = make_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = HuberRegressor(scale="lad", max_iter=max_iter).fit(X, y)
    assert model.n_iter_ <= max_iter


def test_warm_start_from_the_solution_stays_there():
    X, y = make_data()
    model = MEstimatorRegressor(scale="lad", warm_start=True).fit(X, y)
    scale, coef = model.scale_, model.coef_.copy()
    model.fit(X, y)
    assert_allclose(model.scale_, scale, rtol=1e-6)
    assert_allclose(model.coef_, coef, rtol=1e-6, atol=1e-8)


def test_lad_scale_settling_near_zero_takes_the_exact_lad_fit_in_any_row_order():
    # Two thirds of the targets exactly on a plane: the exact LAD fit has
    # those residuals at zero, so the scale is its residuals' RMS (the
    # documented collapse). The smoothed fixed point heads for zero and in
    # one order of the rows settled at 1e-4 instead; a scale that small now
    # goes to the exact LAD fit, in every order.
    rng = np.random.default_rng(0)
    n = 45_001
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, 0.0, 100.0]
    y = X @ [1.0, -0.2, 3.0, 0.5] + 2.0 + rng.standard_t(3, size=n)
    y[rng.random(n) < 0.1] += 30.0
    y[:30_000] = X[:30_000] @ [1.0, -0.2, 3.0, 0.5]
    perm = np.random.default_rng(0).permutation(n)
    fits = [
        HuberRegressor(scale="lad").fit(X, y),
        HuberRegressor(scale="lad").fit(X[perm], y[perm]),
    ]
    lad = QuantileRegressor(solver="exact").fit(X, y)
    residuals = y - lad.predict(X)
    rms = np.sqrt(np.mean(residuals**2))
    for fit in fits:
        np.testing.assert_allclose(fit.scale_, rms, rtol=1e-9)
    np.testing.assert_allclose(fits[1].coef_, fits[0].coef_, rtol=1e-9)
    np.testing.assert_allclose(fits[1].intercept_, fits[0].intercept_, rtol=1e-9)


def test_start_drawn_to_wild_targets_does_not_send_the_scale_to_the_lp(monkeypatch):
    # Every 10th target times 1e4, and the starts' strided rows (every 10th
    # row at n = 1e5) are all among them: the start's residual scale is
    # thousands of spreads of y. The smoothed fixed point (started at the
    # spread of y) settles at an ordinary value, which used to count as
    # "below 1e-3 of the start's scale", a possible collapse, and cost an
    # LP on all rows (4.7 s instead of 0.1 s at 1e5 x 20). It must not.
    rng = np.random.default_rng(3)
    n = 100_000
    X = rng.normal(size=(n, 5))
    y = X @ [1.0, -2.0, 0.5, 3.0, 1.5] + rng.normal(size=n)
    y[::10] *= 1e4
    perm = rng.permutation(n)
    shuffled = HuberRegressor(scale="lad").fit(X[perm], y[perm])

    def no_lp(*args, **kwargs):
        raise AssertionError("the exact LAD fit was not needed")

    monkeypatch.setattr(_scale_lad, "exact_lad_scale_fit", no_lp)
    periodic = HuberRegressor(scale="lad").fit(X, y)
    # The same estimate as from the shuffled rows (whose starts see 10%
    # of wild targets), to the LAD scale's sampling accuracy.
    np.testing.assert_allclose(periodic.scale_, shuffled.scale_, rtol=1e-3)
    np.testing.assert_allclose(periodic.coef_, shuffled.coef_, rtol=1e-3)


def test_inexact_fits_do_not_close_the_bracket_short_of_the_fixed_point():
    """Only fits solved to ``tol`` bracket the fixed point (as the MAD secant's).

    Here the second smoothed fit, solved only as tightly as the next scale
    needs, put its MAD above its scale, though the exact fits' fixed point
    lies below it: that end of the bracket kept the root out, bisection
    crawled to it, and the bracket closed there, 2.6e-5 from the fixed
    point (documented: 1e-6).
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1_000, 20))
    y = X @ rng.normal(size=20) + 1.0 + rng.standard_t(3, size=1_000)
    gross = rng.random(1_000) < 0.1
    y[gross] += rng.uniform(20, 100, size=gross.sum())
    model = HuberRegressor(scale="lad").fit(X, y)
    assert_is_fixed_point(model, X, y)


def one_hot_data(n=4_000, levels=100, seed=10):
    """A one-hot design (a level a row): normal effects, 10% gross errors."""
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, levels, n)
    X = sp.csr_matrix((np.ones(n), (np.arange(n), cats)), shape=(n, levels))
    y = X @ rng.normal(size=levels) + rng.standard_t(3, size=n)
    bad = rng.random(n) < 0.1
    y[bad] += rng.uniform(20.0, 100.0, size=bad.sum())
    return X, y


def count_smoothed_fits(monkeypatch):
    """Count the calls of ``_scale_lad._smoothed_lad_fit`` from now on."""
    calls = []
    fit = _scale_lad._smoothed_lad_fit

    def counted(*args):
        calls.append(args[-1])  # (its tolerance)
        return fit(*args)

    monkeypatch.setattr(_scale_lad, "_smoothed_lad_fit", counted)
    return calls


# Designs whose fixed point took more smoothed fits than it needed.
FIXED_POINT_DESIGNS = [
    ("dense", 1_000, 20, 3),
    ("dense", 1_000, 20, 6),
    ("dense", 2_000, 10, 0),
    ("dense", 3_000, 30, 3),
    ("one-hot", 4_000, 100, 10),
    ("one-hot", 4_000, 100, 14),
    ("one-hot", 4_000, 100, 20),
]


def count_smoothed_passes(
    monkeypatch,
    within="_smoothed_lad_fit",
    methods=("loss_gradient", "loss_gradient_hessian", "hessian"),
):
    """Count the passes over the data (value, gradient, Hessian) made
    inside ``_scale_lad.<within>`` (default: the smoothed fits)."""
    from skrobust._objective import LinearObjective

    passes, inside = [0], [False]
    for name in methods:
        method = getattr(LinearObjective, name)

        def counted_pass(self, *args, _method=method, **kwargs):
            passes[0] += inside[0]
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(LinearObjective, name, counted_pass)
    function = getattr(_scale_lad, within)

    def counted_call(*args):
        inside[0] = True
        try:
            return function(*args)
        finally:
            inside[0] = False

    monkeypatch.setattr(_scale_lad, within, counted_call)
    return passes


def benchmark_shaped_problems():
    """16 problems of the benchmark's shapes: ``(seed, X, y)``.

    Standard normal design, normal noise, 10% of the targets off by 20 to
    100, at four shapes from ``1000 x 10`` to ``1000 x 40``.
    """
    for n, p in [(1000, 20), (1000, 10), (2000, 20), (1000, 40)]:
        for seed in range(4):
            rng = np.random.default_rng(seed)
            X = rng.standard_normal((n, p))
            y = X @ rng.standard_normal(p) + 1.0 + rng.standard_normal(n)
            bad = rng.random(n) < 0.1
            y[bad] += rng.uniform(20.0, 100.0, size=bad.sum())
            yield seed, X, y


def test_smoothed_fits_update_their_hessian_and_start_on_the_last_two(monkeypatch):
    """Each smoothed fit starts on the last one's Hessian, updated by its
    steps, at the point where the last two fits' line meets its scale.

    The benchmark's shapes (standard normal design, normal noise, 10% of
    targets off by 20 to 100): on the previous fit's Hessian (another
    bandwidth) plain chord steps shrank the gradient ~13x each; with
    secant updates the same fits take fewer passes (258 -> 230 over these
    16 problems). The coefficients move smoothly with the scale and the
    secant's steps shrink, so the line through the last two fits'
    coefficients starts the next fit 10-100x closer (in gradient) than the
    last fit's own: 230 -> 213 passes. The fixed point is checked against
    the oracle.
    """
    passes = count_smoothed_passes(monkeypatch)
    for seed, X, y in benchmark_shaped_problems():
        model = HuberRegressor(scale="lad").fit(X, y)
        if seed < 2:
            assert_is_fixed_point(model, X, y)
    assert passes[0] <= 220


@pytest.mark.parametrize("design", FIXED_POINT_DESIGNS)
def test_newton_steps_on_the_scale_settle_in_three_smoothed_fits(monkeypatch, design):
    """At most three smoothed fits to the same fixed point.

    On the dense designs, one inexact fit, then Newton's steps on the fixed
    point: after each fit the next scale is the fixed point of the MAD
    along the fits' tangent in the scale (``dcoef / dsigma`` from the fit's
    Hessian), not the plain or secant update, whose error is the MAD's
    slope (about a tenth) times the gap: the gap goes 1e-1 -> 1e-4 -> 1e-9
    instead of 1e-1 -> 1e-2 -> 1e-4 -> 1e-7 (four fits before). On the
    one-hot designs (sparse Newton, no dense Hessian for a tangent) the
    secant steps: each inexact fit is solved to a thousandth of the gap it
    is expected to measure (the last gap times the last ratio of gaps), and
    the first exact fit's step is the plain update, not a secant through
    the inexact fit before it, which is noise at that distance; the fits
    after the first start on sparse Newton's full steps. These took five
    fits before either (three or four exact).
    """
    kind, n, p, seed = design
    if kind == "dense":
        X, y = make_data(n=n, p=p, seed=seed)
    else:
        X, y = one_hot_data(n, p, seed)
    calls = count_smoothed_fits(monkeypatch)
    model = HuberRegressor(scale="lad").fit(X, y)
    assert len(calls) <= 3
    X_dense = X.toarray() if sp.issparse(X) else X
    assert_is_fixed_point(model, X_dense, y)


def test_fixed_point_passes_with_the_tangent_steps(monkeypatch):
    """Every pass over the rows of the fixed point, the tangent's included.

    The benchmark's shapes of the test above (16 problems): 213 passes in
    74 smoothed fits with secant steps on the scale; Newton's steps on it
    take 48 fits and 152 passes, counting the tangent's own (a product
    ``D' v`` for the derivative of the gradient in the scale, and the
    Hessian where the solver's last one is not the objective's).
    """
    passes = count_smoothed_passes(
        monkeypatch,
        within="smoothed_lad_scale",
        methods=("loss_gradient", "loss_gradient_hessian", "hessian", "design_rmatvec"),
    )
    calls = count_smoothed_fits(monkeypatch)
    for seed, X, y in benchmark_shaped_problems():
        model = HuberRegressor(scale="lad").fit(X, y)
        if seed == 0:
            assert_is_fixed_point(model, X, y)
    assert len(calls) <= 50
    assert passes[0] <= 160


def test_scale_derivative_of_the_gradient_is_its_finite_difference():
    """``_ScaleDerivativeLoss``'s gradient is d(gradient)/dsigma of the smoothed fit."""
    from skrobust._objective import LinearObjective
    from skrobust.losses import FixedScaleLoss, SmoothedPinballRho

    X, y = make_data(n=300, p=3)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=300)
    coef = np.array([0.3, -0.2, 0.1, 4.0])

    def objective(loss):
        return LinearObjective(loss, X, y, weights, [(None, True)], [0.0])

    def gradient(scale):
        rho = SmoothedPinballRho(0.5, BANDWIDTH)
        return objective(FixedScaleLoss(rho, scale)).loss_gradient(coef)[1]

    scale, step = 2.0, 1e-5
    expected = (gradient(scale + step) - gradient(scale - step)) / (2 * step)
    derivative = objective(_scale_lad._ScaleDerivativeLoss(scale)).loss_gradient(coef)
    assert_allclose(derivative[1], expected, rtol=1e-6, atol=1e-9)
