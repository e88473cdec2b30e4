"""``solver="smooth"`` keeps its documented accuracy where L-BFGS solves (issue #11).

The smoothed fit is finished by continuation in the bandwidth, each step
certified by the duality gap of :func:`skrobust._quantile_smooth.pinball_gap`;
the documented claim is a training pinball loss within ``1e-4`` relative of
the optimum. Beyond 100 coefficients (with fewer than 200 rows per
coefficient) the steps are L-BFGS's, and a first step that could not
converge in its 50 iterations used to end the continuation where the first
fit had left it: 1.8e-4 to 5.2e-4 above the optimum on integer targets at
8000 x 110, 1.9e-4 on Gaussian ones with gross errors at q = 0.9. A step
that stops on its budget before the gap certifies ``1e-4`` now goes on
(Newton's method where its Hessian is affordable).

The optimum is that of the dual linear programme solved by scipy's HiGHS
(:func:`test_quantile_smooth_ties.dual_optimum`, which shares nothing with
skrobust). The fits are also held to ``n_iter_ <= max_iter`` (the
continuation's steps used to get 50 iterations each whatever was left) and,
on dask arrays, to the in-memory coefficients and iterations.
"""

import warnings

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from test_quantile_smooth_ties import dual_optimum, excess

from skrobust import QuantileRegressor, _quantile_smooth

N_SAMPLES, N_FEATURES = 8000, 110
# The accuracy the user guide and QuantileRegressor's docstring promise.
DOCUMENTED_EXCESS = 1e-4


def integer_targets(seed):
    """Rounded ``X @ beta + noise``: about 9 distinct values, an atom at zero."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_SAMPLES, N_FEATURES))
    coef = rng.standard_normal(N_FEATURES) / 5
    y = np.round(X @ coef + rng.standard_normal(N_SAMPLES))
    return X, y


def gross_errors(seed):
    """Gaussian noise, and 10% of the targets shifted up by 20 to 100."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_SAMPLES, N_FEATURES))
    y = X @ rng.standard_normal(N_FEATURES) + 1.0 + rng.standard_normal(N_SAMPLES)
    bad = rng.random(N_SAMPLES) < 0.1
    y[bad] += rng.uniform(20.0, 100.0, size=bad.sum())
    return X, y


def smooth(quantile, **params):
    return QuantileRegressor(quantile=quantile, solver="smooth", **params)


def test_the_data_take_lbfgs_steps():
    """111 coefficients on 8000 rows: the case the issue is about."""
    assert _quantile_smooth.smoothed_solver(N_FEATURES + 1, N_SAMPLES) == "lbfgs"


@pytest.mark.parametrize("quantile", [0.1, 0.5, 0.9])
def test_integer_targets_are_within_the_documented_accuracy(quantile):
    """Seed 2: the first continuation step needs 55 L-BFGS iterations."""
    X, y = integer_targets(seed=2)
    model = smooth(quantile).fit(X, y)
    optimum = dual_optimum(X, y, quantile)
    assert 0 <= excess(model, X, y, optimum) < DOCUMENTED_EXCESS


def test_gross_errors_at_an_upper_quantile_are_within_the_documented_accuracy():
    """Not only ties: a continuous target whose first step L-BFGS could not end."""
    X, y = gross_errors(seed=0)
    model = smooth(0.9).fit(X, y)
    optimum = dual_optimum(X, y, 0.9)
    assert 0 <= excess(model, X, y, optimum) < DOCUMENTED_EXCESS


def test_steps_within_their_budget_are_as_before(monkeypatch):
    """Where no step stops on its budget before the gap is within 1e-4, no change.

    q = 0.5 on the Gaussian data: the first step converges in 41 iterations
    (gap 4.8e-6 of the objective), the second stops on its 50 and ends the
    continuation, as it did. The reference has no accuracy target at all
    (every step that stops on its budget ends the continuation): the same
    coefficients to the bit and the same ``n_iter_``.
    """
    X, y = gross_errors(seed=0)
    model = smooth(0.5).fit(X, y)
    with monkeypatch.context() as patch:
        patch.setattr(_quantile_smooth, "_GUARANTEED_GAP", np.inf)
        reference = smooth(0.5).fit(X, y)
    np.testing.assert_array_equal(model.coef_, reference.coef_)
    assert model.intercept_ == reference.intercept_
    assert model.n_iter_ == reference.n_iter_


@pytest.mark.parametrize("max_iter", [60, 80, 100])
def test_continuation_steps_share_max_iter(max_iter):
    """``n_iter_ <= max_iter``: each step gets what the others left.

    Seed 0 takes 118 iterations (a first fit, a step of 41 iterations and
    one that stops on its 50); each step used to get 50 whatever was left,
    so ``max_iter=80`` reported 118. Where ``max_iter`` runs out before the
    gap certifies ``1e-4`` the fit says so with a ``ConvergenceWarning``;
    without one, the excess over the LP optimum is within ``1e-4``.
    """
    X, y = integer_targets(seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = smooth(0.5, max_iter=max_iter).fit(X, y)
    assert model.n_iter_ <= max_iter
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if not warned:
        assert excess(model, X, y, dual_optimum(X, y, 0.5)) <= DOCUMENTED_EXCESS


def test_running_out_of_max_iter_short_of_the_accuracy_warns(synchronous):
    """200 iterations leave a sparse wide fit's gap above 1e-4: a warning, in
    memory and on dask.

    The gap bounds the excess; here the fit is also measurably short of
    the optimum by more than the documented ``1e-4``. (The integer targets
    at ``max_iter=60`` did this until a last step cut short that certifies
    the accuracy was kept: they are within it from 25 iterations on.)
    """
    X, y = sparse_wide(seed=0)
    X = X.toarray()
    with pytest.warns(ConvergenceWarning, match="duality gap above 0.0001"):
        memory = smooth(0.1, max_iter=200).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="duality gap above 0.0001"):
        smooth(0.1, max_iter=200).fit(da.from_array(X, chunks=(1000, 500)), y)
    assert memory.n_iter_ == 200
    assert excess(memory, X, y, dual_optimum(X, y, 0.1)) > DOCUMENTED_EXCESS


def test_dask_continuation_goes_on_as_in_memory(synchronous):
    """The distributed steps go on past their budget alike: same fit, same n_iter_."""
    X, y = integer_targets(seed=2)
    memory = smooth(0.5).fit(X, y)
    fitted = smooth(0.5).fit(
        da.from_array(X, chunks=(2000, N_FEATURES)), da.from_array(y, chunks=2000)
    )
    scale = np.abs(memory.coef_).max()
    np.testing.assert_allclose(fitted.coef_, memory.coef_, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(fitted.bandwidth_, memory.bandwidth_, rtol=1e-10)
    assert fitted.n_iter_ == memory.n_iter_


def test_penalised_fit_keeps_within_max_iter_or_warns():
    """Five rows of weight 1e6 and 25 of 1e-6, q = 0.1, alpha = 0.01: the
    bandwidth, in units of the sum of the weights as repeated rows, is tiny
    and proximal Newton does not converge in 100 iterations. Its L-BFGS
    fallback was given max_iter again: n_iter_ 101 of max_iter=100 (with
    weights 1e10: 127, and a fit 19.5% above the optimum, taken as
    converged by its relative-reduction stop, without a warning). It gets
    what is left; a fit that did not converge says so. Oracle: linprog."""
    from _oracles import quantile_linprog, quantile_objective

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3 * rng.standard_t(3, size=30)
    weights = np.full(30, 1e-6)
    weights[:5] = 1e6
    model = QuantileRegressor(quantile=0.1, solver="smooth", alpha=0.01, max_iter=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y, sample_weight=weights)
    assert model.n_iter_ <= 100
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    optimum = quantile_linprog(X, y, 0.1, weights, 0.01).objective
    value = quantile_objective(X, y, model.coef_, model.intercept_, 0.1, weights, 0.01)
    assert warned or value <= optimum * (1 + 1e-6)


def sparse_wide(seed, n=5000, p=500):
    """A CSR design with 0.5% of its entries, 10 rows per coefficient, gross errors."""
    rng = np.random.default_rng(seed)
    X = sp.random_array((n, p), density=0.005, format="csr", rng=rng)
    X.data = rng.standard_normal(X.data.shape[0])
    y = X @ rng.standard_normal(p) + 1.0 + rng.standard_normal(n)
    bad = rng.random(n) < 0.1
    y[bad] += rng.uniform(20.0, 100.0, size=bad.sum())
    return sp.csr_matrix(X), y


@pytest.mark.parametrize("quantile", [0.1, 0.2])
def test_a_last_step_cut_short_by_max_iter_is_kept_when_it_certifies(quantile):
    """The continuation's last step ran out of ``max_iter`` with a gap of 1.4e-5.

    Cut short, it was not taken because its gap missed the continuation's
    target (1e-6); the previous fit's gap (1.3e-4) then missed the
    documented accuracy and the fit warned. The step is taken when it
    certifies the documented accuracy that the previous fit does not: no
    warning, and an excess over HiGHS's optimum within ``1e-4``.
    """
    X, y = sparse_wide(seed=0)
    model = smooth(quantile).fit(X, y)  # (a warning fails: filterwarnings=error)
    assert model.n_iter_ == model.max_iter  # (the case: max_iter ran out)
    optimum = dual_optimum(X.toarray(), y, quantile)
    assert 0 <= excess(model, X, y, optimum) < DOCUMENTED_EXCESS
