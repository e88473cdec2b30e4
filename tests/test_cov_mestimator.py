"""Standard errors of the M-estimators against statsmodels, R and finite differences."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import statsmodels.api as sm
from scipy.optimize import approx_fprime
from scipy.stats import norm
from sklearn.datasets import load_diabetes

from skrobust import HuberRegressor, _cov_mestimator
from skrobust._cov_mestimator import COV_TYPES, mestimator_covariance
from skrobust._inference import block_grams
from skrobust.losses import HuberRho, LogCoshRho

R_RLM = Path(__file__).parent / "data" / "r" / "rlm_se.json"


def stackloss():
    data = sm.datasets.stackloss.load_pandas().data
    return data.iloc[:, 1:].to_numpy(float), data.iloc[:, 0].to_numpy(float)


DATA_SETS = {"stackloss": stackloss, "diabetes": lambda: load_diabetes(return_X_y=True)}


def statsmodels_rlm(X, y, cov):
    """statsmodels' Huber fit with a MAD scale, iterated to its fixed point."""
    model = sm.RLM(y, sm.add_constant(X), M=sm.robust.norms.HuberT(1.345))
    return model.fit(scale_est="mad", cov=cov, conv="coefs", tol=1e-13, maxiter=500)


@pytest.mark.parametrize("data", DATA_SETS)
@pytest.mark.parametrize("cov_type", ["H1", "H2", "H3"])
def test_huber_1981_equals_statsmodels_rlm(data, cov_type):
    X, y = DATA_SETS[data]()
    rlm = statsmodels_rlm(X, y, cov_type)
    # At statsmodels' own coefficients and scale: only the formula differs.
    residuals = y - sm.add_constant(X) @ rlm.params
    cov = mestimator_covariance(
        X, residuals, None, HuberRho(1.345), rlm.scale, cov_type=cov_type
    )
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), rlm.bse, rtol=1e-9)
    # Off-diagonal entries relative to the standard errors (diabetes' centred
    # columns make some of them rounding-level).
    unit = np.outer(rlm.bse, rlm.bse)
    np.testing.assert_allclose(cov / unit, rlm.cov_params() / unit, atol=1e-9)

    # At skrobust's fit of the same estimator: the same numbers.
    model = HuberRegressor(1.345, scale="mad", tol=1e-12).fit(X, y)
    np.testing.assert_allclose(
        np.r_[model.intercept_, model.coef_], rlm.params, rtol=1e-9
    )
    cov = mestimator_covariance(
        X, y - model.predict(X), None, HuberRho(1.345), model.scale_, cov_type=cov_type
    )
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), rlm.bse, rtol=1e-6)


def test_huber_1981_intervals_equal_statsmodels_conf_int():
    X, y = stackloss()
    rlm = statsmodels_rlm(X, y, "H1")
    cov = mestimator_covariance(
        X, y - sm.add_constant(X) @ rlm.params, None, HuberRho(1.345), rlm.scale
    )
    half = norm.ppf(0.975) * np.sqrt(np.diag(cov))
    bounds = np.column_stack([rlm.params - half, rlm.params + half])
    np.testing.assert_allclose(bounds, rlm.conf_int(0.05), rtol=1e-9)


@pytest.mark.parametrize("case", ["unweighted", "case_weighted"])
def test_mass_equals_r_summary_rlm(case):
    """``cov_type="mass"`` is R's ``MASS::summary.rlm`` (with case weights too)."""
    reference = json.loads(R_RLM.read_text())
    values = np.array(reference["data"]["values"])
    X, y = values[:, :3], values[:, 3]
    fit = reference[case]
    coef = np.array(list(fit["coefficients"].values()))
    weights = None if fit["weights"] is None else np.array(fit["weights"], float)
    residuals = y - coef[0] - X @ coef[1:]
    cov = mestimator_covariance(
        X, residuals, weights, HuberRho(1.345), fit["scale"], cov_type="mass"
    )
    expected = np.array(list(fit["summary_rlm_se"].values()))
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), expected, rtol=1e-9)
    # And it differs from statsmodels' H1 only through var()'s n - 1.
    h1 = mestimator_covariance(X, residuals, weights, HuberRho(1.345), fit["scale"])
    assert not np.allclose(h1, cov, rtol=1e-6)


def test_sandwich_equals_r_sandwich_with_hc1_factor():
    reference = json.loads(R_RLM.read_text())
    values = np.array(reference["data"]["values"])
    X, y = values[:, :3], values[:, 3]
    fit = reference["unweighted"]
    coef = np.array(list(fit["coefficients"].values()))
    cov = mestimator_covariance(
        X,
        y - coef[0] - X @ coef[1:],
        None,
        HuberRho(1.345),
        fit["scale"],
        cov_type="sandwich",
    )
    n, p = X.shape[0], X.shape[1] + 1
    np.testing.assert_allclose(
        cov, n / (n - p) * np.array(fit["sandwich_hc0"]), rtol=1e-9, atol=1e-14
    )


def random_problem(n=300, p=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    residuals = rng.standard_t(3, size=n) * (0.5 + np.abs(X[:, 0]))
    return X, residuals


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("joint", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_weights_are_frequency_weights(cov_type, joint, fit_intercept):
    X, residuals = random_problem(n=60)
    weights = np.random.default_rng(1).integers(0, 4, size=60).astype(float)
    repeat = np.repeat(np.arange(60), weights.astype(int))
    rho = LogCoshRho(1.2)
    kwargs = dict(cov_type=cov_type, joint=joint, fit_intercept=fit_intercept)
    weighted = mestimator_covariance(X, residuals, weights, rho, 1.3, **kwargs)
    repeated = mestimator_covariance(
        X[repeat], residuals[repeat], None, rho, 1.3, **kwargs
    )
    np.testing.assert_allclose(weighted, repeated, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_design_equals_dense(cov_type, fmt):
    X, residuals = random_problem()
    X[np.abs(X) < 0.8] = 0.0
    dense = mestimator_covariance(
        X, residuals, None, HuberRho(1.345), 1.1, cov_type=cov_type, joint=True
    )
    sparse = mestimator_covariance(
        sp.csr_array(X).asformat(fmt),
        residuals,
        None,
        HuberRho(1.345),
        1.1,
        cov_type=cov_type,
        joint=True,
    )
    np.testing.assert_allclose(sparse, dense, rtol=1e-12)


def numerical_hessian(grad, theta, step=1e-6):
    """Central differences of an analytic-free gradient function."""
    columns = []
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = step
        columns.append((grad(theta + e) - grad(theta - e)) / (2 * step))
    hessian = np.array(columns)
    return 0.5 * (hessian + hessian.T)


def sandwich_by_finite_differences(per_row_loss, theta, weights):
    """``A^-1 B A^-1`` with A and the per-row gradients from finite differences."""

    def row_gradients(t):
        return np.array(
            [
                (per_row_loss(t + e) - per_row_loss(t - e)) / (2e-6)
                for e in 1e-6 * np.eye(t.size)
            ]
        ).T

    def gradient(t):
        return weights @ row_gradients(t)

    bread = numerical_hessian(gradient, theta, step=1e-5)
    g = row_gradients(theta)
    meat = (g * weights[:, None]).T @ g
    inverse = np.linalg.inv(bread)
    return inverse @ meat @ inverse


def assert_close_covariance(actual, expected, tolerance):
    """Entries within ``tolerance`` of the product of the standard errors."""
    unit = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))
    np.testing.assert_allclose(actual / unit, expected / unit, rtol=0, atol=tolerance)


def test_joint_sandwich_equals_finite_differences_of_the_concomitant_objective():
    # A smooth rho, and the coefficients and scale at the joint optimum (the
    # sandwich describes the root of the estimating equations).
    X, residuals = random_problem(n=200, p=2, seed=3)
    rng = np.random.default_rng(4)
    y = 1.0 + X @ [0.5, -1.0] + residuals
    weights = rng.integers(1, 4, size=200).astype(float)
    rho = LogCoshRho(1.5)
    design = np.column_stack([np.ones(200), X])

    def per_row_loss(theta):
        sigma = np.exp(theta[-1])
        return sigma * (1 + 2 * rho.value((y - design @ theta[:-1]) / sigma))

    theta = np.r_[np.linalg.lstsq(design, y, rcond=None)[0], 0.0]
    for _ in range(50):  # Newton's method on the convex objective
        grad = approx_fprime(theta, lambda t: weights @ per_row_loss(t), 1e-7)
        hess = numerical_hessian(
            lambda t: approx_fprime(t, lambda u: weights @ per_row_loss(u), 1e-7),
            theta,
            step=1e-4,
        )
        theta = theta - np.linalg.solve(hess, grad)
    scale = np.exp(theta[-1])
    residuals_at_fit = y - design @ theta[:-1]
    cov = mestimator_covariance(
        X, residuals_at_fit, weights, rho, scale, cov_type="sandwich", joint=True
    )
    n, p = weights.sum(), 3
    expected = (
        n
        / (n - p)
        * sandwich_by_finite_differences(per_row_loss, theta, weights)[:p, :p]
    )
    # Nested finite differences are good to a few 1e-6.
    assert_close_covariance(cov, expected, 1e-5)


def test_fixed_scale_sandwich_equals_finite_differences():
    X, residuals = random_problem(n=150, p=2, seed=5)
    weights = np.random.default_rng(6).integers(1, 3, size=150).astype(float)
    rho, scale = LogCoshRho(1.0), 0.9
    design = np.column_stack([np.ones(150), X])
    y = design @ [1.0, 2.0, 3.0] + residuals
    theta = np.array([1.0, 2.0, 3.0])  # the sandwich is a formula at any point

    def per_row_loss(t):
        return scale**2 * rho.value((y - design @ t) / scale)

    cov = mestimator_covariance(X, residuals, weights, rho, scale, cov_type="sandwich")
    n, p = weights.sum(), 3
    expected = (
        n / (n - p) * sandwich_by_finite_differences(per_row_loss, theta, weights)
    )
    assert_close_covariance(cov, expected, 1e-5)


def test_joint_sandwich_of_skrobust_joint_fit_is_close_to_fixed_scale_one():
    """Symmetric errors: the scale equation barely moves the coefficients' block."""
    X, residuals = random_problem(n=2000, p=2, seed=7)
    y = X @ [1.0, -1.0] + residuals
    model = HuberRegressor(scale="joint").fit(X, y)
    args = (X, y - model.predict(X), None, HuberRho(model.delta), model.scale_)
    joint = mestimator_covariance(*args, cov_type="sandwich", joint=True)
    fixed = mestimator_covariance(*args, cov_type="sandwich")
    np.testing.assert_allclose(np.diag(joint), np.diag(fixed), rtol=0.05)
    assert not np.allclose(joint, fixed, rtol=1e-6)


def test_zero_scale():
    X, _ = random_problem(n=20)
    zeros = np.zeros(20)
    cov = mestimator_covariance(X, zeros, None, HuberRho(), 0.0, cov_type="H2")
    np.testing.assert_array_equal(cov, np.zeros((4, 4)))
    cov = mestimator_covariance(X, zeros + 1.0, None, HuberRho(), 0.0)
    assert np.all(np.isnan(cov))


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("joint", [False, True])
@pytest.mark.parametrize("total", [4.0, 0.3, 1e-297])
def test_no_residual_degrees_of_freedom_gives_nan(cov_type, joint, total):
    """Frequency weights summing to at most the number of parameters leave
    no residual degrees of freedom: a NaN covariance, not an OverflowError
    (weights of 1e-300 made kappa**2 overflow), a division by zero (a sum
    of exactly n_params) or negative variances."""
    X, residuals = random_problem(n=20)
    weights = np.random.default_rng(2).uniform(0.5, 1.0, 20)
    weights *= total / weights.sum()
    cov = mestimator_covariance(
        X, residuals, weights, HuberRho(), 1.0, cov_type=cov_type, joint=joint
    )
    assert cov.shape == (4, 4) and np.all(np.isnan(cov))


def test_unknown_cov_type():
    X, residuals = random_problem(n=20)
    with pytest.raises(ValueError, match="'H1', 'H2', 'H3', 'mass', 'sandwich'"):
        mestimator_covariance(X, residuals, None, HuberRho(), 1.0, cov_type="HC0")


def coverage(heteroscedastic, replications, seed, n=200):
    """Share of 95% intervals that contain the truth, per coefficient and cov_type.

    ``y = 1 + 2 x1 - x2 + e`` with ``x`` uniform with unit variance and ``e``
    Student's t(5) times ``1`` or (heteroscedastic) ``0.2 + |x1|``.
    """
    rng = np.random.default_rng(seed)
    truth = np.array([1.0, 2.0, -1.0])
    covered = {"H1": np.zeros(3), "sandwich": np.zeros(3)}
    quantile = norm.ppf(0.975)
    for _ in range(replications):
        X = rng.uniform(-np.sqrt(3), np.sqrt(3), size=(n, 2))
        sd = 0.2 + np.abs(X[:, 0]) if heteroscedastic else 1.0
        y = truth[0] + X @ truth[1:] + sd * rng.standard_t(5, size=n)
        model = HuberRegressor(1.345, scale="mad").fit(X, y)
        estimate = np.r_[model.intercept_, model.coef_]
        for cov_type in covered:
            cov = mestimator_covariance(
                X,
                y - model.predict(X),
                None,
                HuberRho(1.345),
                model.scale_,
                cov_type=cov_type,
            )
            covered[cov_type] += np.abs(estimate - truth) <= quantile * np.sqrt(
                np.diag(cov)
            )
    return {cov_type: hits / replications for cov_type, hits in covered.items()}


# 500 replications: per coefficient the binomial standard error at 95% is
# 0.0097, so [0.93, 0.97] is about +-2 of them. The seeds are fixed; the
# measured coverages are in the comments.
REPLICATIONS = 500


def test_coverage_iid_errors():
    covered = coverage(False, REPLICATIONS, seed=0)
    # Measured: H1 [0.958, 0.952, 0.958], sandwich [0.956, 0.958, 0.958].
    for cov_type in ("H1", "sandwich"):
        assert np.all(covered[cov_type] >= 0.93), covered
        assert np.all(covered[cov_type] <= 0.97), covered


def test_coverage_heteroscedastic_errors():
    covered = coverage(True, REPLICATIONS, seed=1)
    # Measured: H1 [0.946, 0.806, 0.962], sandwich [0.948, 0.942, 0.962].
    assert np.all(covered["sandwich"] >= 0.93), covered
    assert np.all(covered["sandwich"] <= 0.97), covered
    # H1 assumes the same error distribution in every row: the slope of the
    # column the noise grows with is covered far less often (80.6%, more than
    # 6 binomial standard errors below 93%).
    assert covered["H1"][1] < 0.87, covered


class PlainHuber:
    """A user's rho with only the three required methods."""

    def __init__(self, delta):
        self.delta = delta

    def value(self, z):
        return HuberRho(self.delta).value(z)

    def derivative(self, z):
        return np.clip(z, -self.delta, self.delta)

    def second_derivative(self, z):
        return (np.abs(z) <= self.delta).astype(float)


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("joint", [False, True])
def test_rho_with_only_value_and_two_derivatives(cov_type, joint):
    X, residuals = random_problem(n=100)
    kwargs = dict(cov_type=cov_type, joint=joint)
    plain = mestimator_covariance(X, residuals, None, PlainHuber(1.3), 0.8, **kwargs)
    fused = mestimator_covariance(X, residuals, None, HuberRho(1.3), 0.8, **kwargs)
    np.testing.assert_allclose(plain, fused, rtol=1e-10)


def formulas_of_the_module_docstring(
    X, residuals, rho, scale, cov_type, joint, fit_intercept=True
):
    """The covariances written out with dense numpy products and inverses."""
    design = np.column_stack([np.ones(len(X)), X]) if fit_intercept else X
    n, p = design.shape
    z = residuals / scale
    psi, dpsi = rho.derivative(z), rho.second_derivative(z)
    gram = design.T @ design
    w_gram = design.T @ (design * dpsi[:, None])
    meat = design.T @ (design * (psi * psi)[:, None])
    if cov_type == "sandwich" and joint:
        chi = z * psi - rho.value(z)
        grad_scale = scale * (1 - 2 * chi)
        bread = np.block(
            [
                [2 / scale * w_gram, (2 * z * dpsi @ design)[:, None]],
                [2 * z * dpsi @ design, np.sum(grad_scale + 2 * scale * z * z * dpsi)],
            ]
        )
        cross = -2 * psi * grad_scale @ design
        outer = np.block(
            [[4 * meat, cross[:, None]], [cross, np.sum(grad_scale * grad_scale)]]
        )
        inverse = np.linalg.inv(bread)
        return (n / (n - p) * inverse @ outer @ inverse)[:p, :p]
    if cov_type == "sandwich":
        w_inv = np.linalg.inv(w_gram)
        return n / (n - p) * scale**2 * w_inv @ meat @ w_inv
    m, v = dpsi.mean(), dpsi.var()
    kappa = 1 + p / n * v / m**2
    tau2 = scale**2 * np.sum(psi * psi) / (n - p)
    if cov_type == "H1":
        return kappa**2 * tau2 / m**2 * np.linalg.inv(gram)
    w_inv = np.linalg.inv(w_gram)
    if cov_type == "H2":
        return kappa * tau2 / m * w_inv
    return tau2 / kappa * w_inv @ gram @ w_inv


def gross_error_problem(n=3000, seed=8):
    """Columns off zero, normal errors and 10% gross errors of 20 to 50."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 3.0, 0.1] + [2.0, -1.0, 0.5]
    residuals = rng.normal(size=n)
    gross = rng.random(n) < 0.1
    residuals[gross] += rng.uniform(20, 50, size=gross.sum())
    return X, residuals


@pytest.mark.parametrize("rho", [HuberRho(1.345), LogCoshRho(1.0)], ids=repr)
@pytest.mark.parametrize("cov_type", ["H1", "H2", "H3", "sandwich"])
@pytest.mark.parametrize("joint", [False, True])
def test_grams_by_rows_and_differences_equal_the_formulas(rho, cov_type, joint):
    # Huber's W is the Gram of the rows within the threshold (and H3's G
    # that plus the Gram of the others), log-cosh's in the sandwiches
    # G - M / delta^2: the covariances are those of the formulas, to
    # rounding.
    X, residuals = gross_error_problem()
    kwargs = dict(cov_type=cov_type, joint=joint)
    cov = mestimator_covariance(X, residuals, None, rho, 1.1, **kwargs)
    expected = formulas_of_the_module_docstring(X, residuals, rho, 1.1, **kwargs)
    assert_close_covariance(cov, expected, 1e-11)


@pytest.mark.parametrize(
    "rho, cov_type, joint",
    [
        (HuberRho(1.345), "H3", False),
        (LogCoshRho(1.0), "sandwich", False),
        (LogCoshRho(1.0), "sandwich", True),
    ],
    ids=["huber-H3", "logcosh-sandwich", "logcosh-joint-sandwich"],
)
def test_a_difference_that_would_lose_digits_is_not_taken(
    monkeypatch, rho, cov_type, joint
):
    # A column whose values on the rows of gross errors (no curvature for
    # Huber, ~1e-20 for log-cosh) are 1e4 times those elsewhere: W's entry
    # for it is 1e-7 times G's, and with G - C or G - M / delta^2 the
    # covariance would err by 1e-9 to 1e-8 (measured). W is then formed in
    # a pass of its own, and the covariance is the formulas'. (Without an
    # intercept, whose column the rows elsewhere, centred by the big ones'
    # mean, would be nearly collinear with.)
    X, residuals = gross_error_problem(seed=9)
    gross = np.abs(residuals) > 10
    noise = np.random.default_rng(10).normal(size=len(X))
    X[:, 2] = np.where(gross, 1e4, 1.0) * noise
    direct_passes = []
    original = _cov_mestimator._BreadPlan._direct_w

    def counted(self, *args):
        direct_passes.append(self.kind)
        return original(self, *args)

    monkeypatch.setattr(_cov_mestimator._BreadPlan, "_direct_w", counted)
    kwargs = dict(cov_type=cov_type, joint=joint, fit_intercept=False)
    cov = mestimator_covariance(X, residuals, None, rho, 1.1, **kwargs)
    assert len(direct_passes) == 1
    expected = formulas_of_the_module_docstring(X, residuals, rho, 1.1, **kwargs)
    assert_close_covariance(cov, expected, 1e-11)


@pytest.mark.parametrize("shift", [0.0, 1e6], ids=["near-zero", "far"])
def test_unit_weights_and_row_selections_give_the_grams_of_their_weights(shift):
    # block_grams' unit weights (None) and boolean selections, which the
    # covariances use for Huber's psi', are the Grams of ones and of 0/1
    # weights, with the design's columns centred before (far) or after the
    # products (near zero).
    rng = np.random.default_rng(11)
    n = 40_000  # several row blocks and sub-blocks
    X = rng.normal(size=(n, 3)) * [1.0, 1e3, 1e-3] + shift
    chosen = rng.random(n) < 0.8
    center = X.mean(axis=0)
    weightings = [None, chosen, ~chosen, rng.uniform(size=n)]

    def weights_of_block(rows, block):
        return [None if d is None else d[rows] for d in weightings], []

    grams, _ = block_grams(X, weights_of_block, 4, 0, center=center)
    as_floats = [np.ones(n), chosen * 1.0, ~chosen * 1.0, weightings[3]]
    centred = np.column_stack([np.ones(n), X - center])
    for gram, d in zip(grams, as_floats, strict=True):
        expected = centred.T @ (centred * d[:, None])
        size = np.abs(centred).T @ (np.abs(centred) * d[:, None])
        assert np.all(np.abs(gram - expected) <= 1e-12 * size)


@pytest.mark.parametrize("layout", ["dense", "far", "csr"])
def test_paired_scalings_give_the_grams_of_their_products(layout):
    # block_grams' (a, b, factor) weightings, which share each array's
    # scaled rows between Grams: the Grams of factor * a * b, next to a
    # selection and a plain weighting in the same pass.
    rng = np.random.default_rng(12)
    n = 40_000
    X = rng.normal(size=(n, 3)) * [1.0, 1e3, 1e-3]
    if layout == "far":
        X += 1e6
    a, b = rng.uniform(size=n), rng.normal(size=n)
    chosen = rng.random(n) < 0.5
    weightings = [(a, a, 1.0), (a, b, 1.0), chosen, (b, b, 0.5), b]
    as_floats = [a * a, a * b, chosen * 1.0, 0.5 * b * b, b]
    center = None if layout == "csr" else X.mean(axis=0)
    design = sp.csr_matrix(X) if layout == "csr" else X

    def weights_of_block(rows, block):
        return [
            tuple(w[rows] if isinstance(w, np.ndarray) else w for w in d)
            if isinstance(d, tuple)
            else d[rows]
            for d in weightings
        ], []

    grams, _ = block_grams(design, weights_of_block, 5, 0, center=center)
    full = np.column_stack([np.ones(n), X - (0.0 if center is None else center)])
    for gram, d in zip(grams, as_floats, strict=True):
        expected = full.T @ (full * d[:, None])
        size = np.abs(full).T @ (np.abs(full) * np.abs(d)[:, None])
        assert np.all(np.abs(gram - expected) <= 1e-12 * size)


def test_joint_sandwich_row_whose_z_overflows_adds_no_curvature():
    # A row beyond Huber's threshold has psi = +-delta, psi' = 0 and z psi -
    # rho = delta^2 / 2 however far it lies: one whose z overflows to
    # infinity (0 * inf would be NaN) counts as one at z = 1e6.
    X, residuals = random_problem(n=300)
    far, near = residuals.copy(), residuals.copy()
    far[0], near[0] = 1.7e308, 5e5
    kwargs = dict(cov_type="sandwich", joint=True)
    with np.errstate(over="ignore"):
        cov = mestimator_covariance(X, far, None, HuberRho(1.345), 0.5, **kwargs)
    expected = mestimator_covariance(X, near, None, HuberRho(1.345), 0.5, **kwargs)
    assert np.all(np.isfinite(cov))
    np.testing.assert_allclose(cov, expected, rtol=1e-14, atol=0)
