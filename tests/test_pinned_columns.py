"""A ridge on a column of tiny spread: its coefficient is pinned at 0.

With ``alpha > 0`` the penalty on the original coefficients weighs
``alpha / spread^2`` in the standardised coordinates the solvers see: inf
for a spread below ~1e-154, and beyond 1 / eps (where the data's curvature
is lost to its rounding) for a spread below ``sqrt(alpha eps)``. The exact
minimiser then has that coefficient at ``~ spread / alpha`` (1e-160 here)
and the others those of the fit without the column, to rounding. The
oracle is that fit, with the column deleted: the coefficient must be 0
exactly, the rest and the intercept equal to it, and no warning raised.
(The fits used to raise "invalid value encountered in multiply", inf * 0,
then "array must not contain infs or NaNs"; a spread of 1e-150 overflowed
or did not converge on four rows.)
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.base import clone
from test_mestimator import FairRho  # (a loss that is not built in)

from skrobust import (
    HeteroscedasticRegressor,
    HuberRegressor,
    LogCoshRegressor,
    MEstimatorRegressor,
    MultiQuantileRegressor,
    QuantileRegressor,
)

PINNED = 2  # the column of tiny spread


ESTIMATORS = {
    "huber-joint": HuberRegressor(alpha=1.0),
    "huber-mad": HuberRegressor(alpha=1.0, scale="mad"),
    "huber-lad": HuberRegressor(alpha=1.0, scale="lad"),
    "huber-fixed": HuberRegressor(alpha=1.0, scale=1.0),
    "huber-lbfgs": HuberRegressor(alpha=1.0, solver="lbfgs"),
    "logcosh-joint": LogCoshRegressor(alpha=1.0),
    "logcosh-mad": LogCoshRegressor(alpha=1.0, scale="mad"),
    "fair-joint": MEstimatorRegressor(FairRho(), alpha=1.0),
    "fair-lad": MEstimatorRegressor(FairRho(), alpha=1.0, scale="lad"),
    # (The L1 penalty of the quantile fits never had the defect; they are
    # here to keep it so. The smoothed solver is not: its bandwidth depends
    # on n_features and on an unpenalised first fit, in which the column
    # takes part, so the fit without the column is not its oracle.)
    "quantile-exact": QuantileRegressor(alpha=0.1, solver="exact"),
    "multiquantile": MultiQuantileRegressor(quantiles=[0.25, 0.5, 0.75], alpha=0.1),
}


def make_data(n, p, spread, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, PINNED] = spread * rng.normal(size=n)
    y = X[:, 0] - 0.5 * X[:, 1] + rng.standard_t(3, size=n)
    y[: n // 10] += 20.0
    return X, y


def fit_quietly(estimator, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return clone(estimator).fit(X, y, **kwargs)


def oracle_for(estimator, fitted):
    """The estimator that must give the same fit on the design without the column.

    ``scale="lad"`` takes its scale from an unpenalised LAD fit, in which
    the column takes part: the oracle fixes the scale at the one found.
    """
    if getattr(estimator, "scale", None) == "lad":
        return clone(estimator).set_params(scale=float(fitted.scale_))
    return estimator


def assert_column_left_out(fitted, without, rtol=1e-8):
    coef = np.asarray(fitted.coef_)
    assert np.all(np.take(coef, PINNED, axis=-1) == 0.0)
    rest = np.delete(coef, PINNED, axis=-1)
    size = max(np.max(np.abs(without.coef_)), np.max(np.abs(without.intercept_)))
    assert_allclose(rest, without.coef_, rtol=rtol, atol=rtol * size)
    assert_allclose(fitted.intercept_, without.intercept_, rtol=rtol, atol=rtol * size)


@pytest.mark.parametrize("spread", [1e-160, 1e-150])
@pytest.mark.parametrize("n, p", [(4, 8), (200, 5)])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_a_pinned_column_is_the_fit_without_it(name, n, p, spread):
    """Coefficient 0, the others those of the fit on the other columns."""
    estimator = ESTIMATORS[name]
    X, y = make_data(n, p, spread)
    fitted = fit_quietly(estimator, X, y)
    without = fit_quietly(oracle_for(estimator, fitted), np.delete(X, PINNED, 1), y)
    assert_column_left_out(fitted, without)


@pytest.mark.parametrize("spread", [1e-160, 1e-12])
@pytest.mark.parametrize("name", ["huber-joint", "huber-mad", "logcosh-joint"])
@pytest.mark.parametrize("sparse", [False, True])
def test_sparse_designs_and_weights_pin_it_too(name, sparse, spread):
    """Sample weights (zeros among them) and a sparse ``X``: the same rule.

    Rows without weight take the passes in row blocks (not the small
    design's copy): standardised explicitly for a spread of 1e-160, by the
    coefficient map for 1e-12 (a weight of ~4e21, finite but pinned).
    """
    estimator = ESTIMATORS[name]
    X, y = make_data(300, 5, spread, seed=1)
    X[np.abs(X) < 0.5] = 0.0  # (sparse; the tiny column 0 but for 5 rows)
    X[:5, PINNED] = spread
    weights = np.random.default_rng(2).integers(0, 4, size=y.size).astype(float)
    design = sp.csr_array(X) if sparse else X
    kept = sp.csr_array(np.delete(X, PINNED, 1)) if sparse else np.delete(X, PINNED, 1)
    fitted = fit_quietly(estimator, design, y, sample_weight=weights)
    without = fit_quietly(estimator, kept, y, sample_weight=weights)
    assert_column_left_out(fitted, without)


@pytest.mark.parametrize("spread", [1e-160, 1e-150])
def test_heteroscedastic_pins_its_log_variance_slope(spread):
    """The penalised log-variance slope is 0; the mean is not penalised.

    The oracle is the same fit without the column among the variance
    features; the mean keeps it (an unpenalised coefficient of a column of
    spread 1e-160 is of order 1e160, in both fits).
    """
    X, y = make_data(200, 5, spread)
    y = y * np.exp(0.5 * X[:, 1])
    fitted = fit_quietly(HeteroscedasticRegressor(alpha=1.0), X, y)
    others = [j for j in range(X.shape[1]) if j != PINNED]
    without = fit_quietly(
        HeteroscedasticRegressor(alpha=1.0, variance_features=others), X, y
    )
    assert fitted.var_coef_[PINNED] == 0.0
    assert_allclose(fitted.var_coef_, without.var_coef_, rtol=1e-8, atol=1e-10)
    assert fitted.var_intercept_ == pytest.approx(without.var_intercept_, rel=1e-8)
    assert_allclose(fitted.coef_, without.coef_, rtol=1e-8)
    assert fitted.intercept_ == pytest.approx(without.intercept_, rel=1e-8, abs=1e-10)


def test_a_weight_beyond_one_over_eps_is_pinned_below_it_is_not():
    """The objective's rule: pinned above ``PINNED_PENALTY``, solved below it.

    Below it the coefficient is the ridge's own, ``-gradient / weight`` at
    the optimum, not 0.
    """
    from skrobust._objective import LinearObjective
    from skrobust._predictors import PINNED_PENALTY
    from skrobust.losses import FixedScaleLoss, SquaredRho

    X, y = make_data(50, 4, 1.0)
    lam = 0.5
    spreads = np.sqrt(lam / PINNED_PENALTY) * np.array([0.5, 2.0])
    for spread, pinned in zip(spreads, [True, False], strict=True):
        X[:, PINNED] = spread * np.random.default_rng(3).normal(size=50)
        objective = LinearObjective(
            FixedScaleLoss(SquaredRho()), X, y, np.ones(50), [(None, True)], [lam]
        )
        assert bool(objective.pinned[0][PINNED]) is pinned
        assert np.all(np.isfinite(objective.penalty))
        assert np.all(objective.penalty <= PINNED_PENALTY)
        _, grad = objective.loss_gradient(np.ones(objective.n_coef))
        assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(
    "name",
    ["huber-joint", "huber-mad", "huber-lad", "huber-fixed", "quantile-smooth"],
)
def test_dask_pins_the_column_as_memory_does(name, synchronous, small_dask_sample):
    """The chunks' objectives read the pinned column as zeros, as the template."""
    da = pytest.importorskip("dask.array")
    from _dask_data import CHUNKS

    estimator = ESTIMATORS.get(name, QuantileRegressor(alpha=0.1, solver="smooth"))
    estimator = clone(estimator).set_params(tol=1e-12)
    X, y = make_data(sum(CHUNKS), 5, 1e-160)
    memory = fit_quietly(estimator, X, y)
    fitted = fit_quietly(estimator, da.from_array(X, chunks=(CHUNKS, 5)), y)
    assert fitted.coef_[PINNED] == 0.0 == memory.coef_[PINNED]
    size = np.max(np.abs(memory.coef_))
    assert_allclose(fitted.coef_, memory.coef_, rtol=1e-8, atol=1e-8 * size)
    assert fitted.intercept_ == pytest.approx(memory.intercept_, rel=1e-8, abs=1e-8)


def test_dask_heteroscedastic_pins_the_log_variance_slope(
    synchronous, small_dask_sample
):
    """Its log-variance objective is penalised: the chunks pin as the template."""
    da = pytest.importorskip("dask.array")
    from _dask_data import CHUNKS

    X, y = make_data(sum(CHUNKS), 5, 1e-160)
    y = y * np.exp(0.5 * X[:, 1])
    estimator = HeteroscedasticRegressor(alpha=1.0, tol=1e-12)
    memory = fit_quietly(estimator, X, y)
    fitted = fit_quietly(estimator, da.from_array(X, chunks=(CHUNKS, 5)), y)
    assert fitted.var_coef_[PINNED] == 0.0 == memory.var_coef_[PINNED]
    assert_allclose(fitted.var_coef_, memory.var_coef_, rtol=1e-8, atol=1e-10)
    assert_allclose(fitted.coef_, memory.coef_, rtol=1e-8)


@pytest.mark.parametrize(
    "estimator",
    [
        HeteroscedasticRegressor(alpha=1.0, cov_type="observed"),
        QuantileRegressor(alpha=0.1, cov_type="nid"),
        QuantileRegressor(alpha=0.1, cov_type="iid"),
        HuberRegressor(cov_type="sandwich"),
    ],
    ids=repr,
)
def test_a_covariance_beyond_the_float_range_is_refused_clearly(estimator):
    """The variance of a 1e-160 column's coefficient is ~1e318: a clear ValueError.

    (It is beyond 1e308 whether the fit pins the coefficient or not: the
    formulas count that column's information, ~1e-318. The M-estimators
    refuse ``cov_type`` with ``alpha > 0`` anyway.) It used to overflow
    with a RuntimeWarning and return inf and NaN.
    """
    X, y = make_data(200, 5, 1e-160)
    with pytest.raises(ValueError, match="beyond the floating-point range"):
        fit_quietly(estimator, X, y)


@pytest.mark.parametrize("spread", [1e-5, 1e-6, 1e-7])
@pytest.mark.parametrize("name", ["huber-joint", "huber-lbfgs", "logcosh-joint"])
def test_a_heavily_penalised_column_below_the_pin_is_solved(name, spread):
    """Spreads of 1e-5 to 1e-7 on 4 rows: weights of 5e9 to 7e14, not pinned.

    With a ridge and fewer rows than coefficients, the joint fit's optimum is
    the interpolant of least penalty with ``sigma = 0``; in the raw units of
    the documented objective ``alpha ||w||^2`` that is the minimum-norm
    interpolant of the centred design (the intercept free), which the heavy
    column does not make hard to find. Its coordinates' system was solved
    with a cut-off relative to that weight: 3e-5 off at a spread of 1e-6,
    and at 1e-7 no interpolant, then 200 Newton iterations and a
    ConvergenceWarning. Oracle: numpy's SVD least squares
    (:func:`_oracles.least_squares`, minimum-norm with more columns than
    rows).
    """
    from _oracles import least_squares

    X, y = make_data(4, 8, spread)
    fitted = fit_quietly(ESTIMATORS[name], X, y)
    coef, intercept = least_squares(X, y)
    assert fitted.scale_ == 0.0
    size = max(np.max(np.abs(coef)), abs(intercept))
    assert_allclose(fitted.coef_, coef, rtol=1e-9, atol=1e-9 * size)
    assert fitted.intercept_ == pytest.approx(intercept, rel=1e-9, abs=1e-9 * size)


def test_dask_solves_a_heavily_penalised_column_as_memory_does(synchronous):
    """The dask fit takes the same interpolant (on the client's rows)."""
    da = pytest.importorskip("dask.array")
    from _oracles import least_squares

    X, y = make_data(4, 8, 1e-7)
    fitted = fit_quietly(ESTIMATORS["huber-joint"], da.from_array(X, chunks=(2, 8)), y)
    coef, intercept = least_squares(X, y)
    assert fitted.scale_ == 0.0
    size = max(np.max(np.abs(coef)), abs(intercept))
    assert_allclose(fitted.coef_, coef, rtol=1e-9, atol=1e-9 * size)
    assert fitted.intercept_ == pytest.approx(intercept, rel=1e-9, abs=1e-9 * size)
