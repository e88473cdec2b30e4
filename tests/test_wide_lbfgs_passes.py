"""Beyond 300 coefficients: the L-BFGS path's passes, and that they still land.

Three costs of a fit on a wide dense design (2e4 x 1000 in the shapes
benchmark) were cut, each checked here against the slower form it replaces:

* row blocks of at least ``_MIN_BLOCK_ROWS`` rows (65 rows at 1000 columns
  before: per-call overheads doubled a pass);
* the L1 start's reweighting steps stop after ``_LSQR_STEP_MAX_ITER`` LSQR
  iterations (64-101 each before);
* the truncated Newton step after L-BFGS searches its line to the
  direction's own accuracy (``_CG_RTOL``) rather than to rounding (26
  passes for one step before).
"""

import functools

import _data
import numpy as np
import pytest
import scipy.sparse.linalg
from _oracles import FixedScaleOracle, huber_psi, huber_rho
from numpy.testing import assert_allclose
from sklearn.base import clone

import skrobust._base as base_module
from skrobust import HuberRegressor, LogCoshRegressor, _newton, _passes, _solvers
from skrobust._objective import LinearObjective
from skrobust.losses import FixedScaleLoss, SquaredRho

N_FEATURES = 320  # (above NEWTON_MAX_COEF and ITERATIVE_MIN_COEF)


def wide_data(n_samples=1300, n_features=N_FEATURES, seed=0):
    return _data.wide_data(n_samples, n_features, seed)


@pytest.mark.parametrize(
    "shape", [(20_000, 1000), (20_000, 20), (1_000, 200), (100, 100_000), (5, 3)]
)
def test_row_blocks_cover_the_rows_in_bounded_blocks(shape):
    n_rows, n_cols = shape
    blocks = list(_passes._row_blocks(n_rows, n_cols))
    starts = [block.start for block in blocks]
    assert starts == sorted(starts) and starts[0] == 0
    assert blocks[-1].stop == n_rows
    assert all(a.stop == b.start for a, b in zip(blocks[:-1], blocks[1:], strict=True))
    sizes = np.array([block.stop - block.start for block in blocks])
    # Wide designs keep _MIN_BLOCK_ROWS rows a block (within the element
    # cap); no block exceeds the larger of the two budgets.
    cap = max(_passes._MAX_BLOCK_ELEMENTS, 64 * n_cols)
    assert np.all(sizes * n_cols <= cap)
    if n_cols * _passes._MIN_BLOCK_ROWS <= _passes._MAX_BLOCK_ELEMENTS:
        assert np.all(sizes[:-1] >= min(_passes._MIN_BLOCK_ROWS, n_rows))


def test_wide_blocks_give_the_whole_matrix_products():
    X, y = wide_data(n_samples=3000, n_features=1000)
    objective = LinearObjective(
        FixedScaleLoss(SquaredRho()),
        X,
        (y - np.median(y)) / np.std(y),
        np.ones(len(y)),
        [(None, True)],
        [0.0],
    )
    coef = np.random.default_rng(1).normal(size=objective.n_coef) / 30
    value, grad = objective.loss_gradient(coef)
    # The same objective in one product, written out: the mean of half the
    # squared residuals in the objective's standardised coordinates.
    design = np.c_[(X - objective.mean) * objective.inv_scale, np.ones(len(y))]
    residuals = objective.y - design @ coef
    assert value == pytest.approx(0.5 * np.mean(residuals**2), rel=1e-12)
    assert_allclose(grad, -design.T @ residuals / len(y), rtol=1e-10, atol=1e-13)


def test_l1_start_steps_are_capped_and_the_fit_still_lands(monkeypatch):
    X, y = wide_data()
    calls = []
    lsqr = scipy.sparse.linalg.lsqr

    def recorded(*args, **kwargs):
        result = lsqr(*args, **kwargs)
        calls.append((kwargs.get("x0") is not None, kwargs["iter_lim"], result[2]))
        return result

    monkeypatch.setattr(base_module.scipy.sparse.linalg, "lsqr", recorded)
    model = HuberRegressor(scale=2.0).fit(X, y)
    steps = [(limit, iterations) for warm, limit, iterations in calls if warm]
    assert steps  # (the reweighting steps of the L1 start ran LSQR)
    # 1300 rows of 321 coefficients: no stride leaves more rows than
    # coefficients, so the steps reweight all rows, each LSQR iteration a
    # pass over X: at most 5 of them a step (20 before, as on a subsample).
    assert all(limit == base_module._LSQR_ALL_ROWS_STEP_MAX_ITER for limit, _ in steps)
    assert all(iterations <= min(limit, 5) for limit, iterations in steps)
    # The fit is the fixed-scale optimum all the same (scipy's L-BFGS-B on
    # the objective written out).
    rho = functools.partial(huber_rho, delta=model.delta)
    psi = functools.partial(huber_psi, delta=model.delta)
    weights = np.ones(y.size)
    oracle = FixedScaleOracle(X, y, weights, 2.0, 0.0, rho, psi, True)
    _, _, best = oracle.solve([(model.coef_, model.intercept_)])
    assert oracle.value(model.coef_, model.intercept_) <= best * (1 + 1e-11)


def test_l1_start_steps_on_a_strided_subsample_keep_their_longer_cap(monkeypatch):
    """8000 rows of 301 coefficients: the steps run on every 11th row.

    There an LSQR iteration costs a pass over a subsample only, and the
    start keeps ``_LSQR_STEP_MAX_ITER`` iterations a step.
    """
    X, y = wide_data(n_samples=8000, n_features=300, seed=2)
    _, start_objective, coef = base_module.least_squares_start(
        X, (y - np.median(y)) / 10.0, np.ones(y.size), True, 0.0
    )
    # (A budget for copies below the subsample's elements: its steps by LSQR.)
    budget = 2**16
    step = base_module.lad_start_step(start_objective.n_samples, 301, budget)
    assert step > 1 and start_objective.n_samples // step > 301
    calls = []
    lsqr = scipy.sparse.linalg.lsqr

    def recorded(*args, **kwargs):
        result = lsqr(*args, **kwargs)
        calls.append((kwargs.get("x0") is not None, kwargs["iter_lim"]))
        return result

    monkeypatch.setattr(base_module.scipy.sparse.linalg, "lsqr", recorded)
    base_module.least_absolute_deviation_start(start_objective, coef, True, 0.0, budget)
    limits = [limit for warm, limit in calls if warm]
    assert limits and set(limits) == {base_module._LSQR_STEP_MAX_ITER}


@pytest.mark.parametrize(
    "estimator",
    [HuberRegressor(), LogCoshRegressor(scale=2.0), HuberRegressor(scale="mad")],
    ids=repr,
)
def test_truncated_newton_searches_its_line_to_the_direction_accuracy(
    monkeypatch, estimator
):
    """As few passes as the line search needs, and the exact search's fit."""
    X, y = wide_data(n_samples=2000, n_features=400, seed=3)
    descents, exact = [], [False]
    descend, zero_of_slope = _newton._descend, _newton._zero_of_slope

    def recorded(objective, *args, **kwargs):
        descents.append(kwargs.get("rtol", 0.0))
        return descend(objective, *args, **kwargs)

    def zero(objective, coef, direction, slope0, rtol=0.0):
        return zero_of_slope(
            objective, coef, direction, slope0, 0.0 if exact[0] else rtol
        )

    monkeypatch.setattr(_newton, "_descend", recorded)
    monkeypatch.setattr(_newton, "_zero_of_slope", zero)
    fast = clone(estimator).fit(X, y)
    # (L-BFGS ended at rounding here, once per fixed-scale fit of the MAD.)
    assert descents and set(descents) == {_newton._CG_RTOL}
    exact[0] = True
    reference = clone(estimator).fit(X, y)
    fitted = np.r_[fast.coef_, fast.intercept_, fast.scale_]
    expected = np.r_[reference.coef_, reference.intercept_, reference.scale_]
    assert_allclose(fitted, expected, rtol=1e-8, atol=1e-8 * np.max(np.abs(expected)))


def test_newton_finishes_what_lbfgs_leaves_on_an_ill_conditioned_wide_fit(
    monkeypatch,
):
    """Log-cosh's joint scale at three rows per coefficient: L-BFGS crawls.

    At 1500 x 500 L-BFGS alone ended 200 iterations with a gradient of 1e-5
    (a ConvergenceWarning, which pytest turns into an error here); after
    ``_LBFGS_BEFORE_NEWTON`` of them Newton's method converges. Checked on
    a smaller design of the same shape against the Newton solver forced
    from the start.
    """
    X, y = wide_data(n_samples=900, n_features=N_FEATURES, seed=3)
    n_coef = N_FEATURES + 2
    assert X.shape[0] * n_coef**2 <= _solvers._NEWTON_FALLBACK_WORK
    monkeypatch.setattr(_solvers, "_LBFGS_BEFORE_NEWTON", 20)
    handed_over = []
    lbfgs = _solvers._lbfgs

    def recorded(objective, coef0, max_iter, tol, **kwargs):
        result = lbfgs(objective, coef0, max_iter, tol, **kwargs)
        handed_over.append(not result.converged)
        return result

    monkeypatch.setattr(_solvers, "_lbfgs", recorded)
    model = LogCoshRegressor().fit(X, y)
    assert any(handed_over)  # (20 L-BFGS iterations were not enough)
    assert model.n_iter_ <= model.max_iter
    reference = LogCoshRegressor(solver="newton").fit(X, y)
    fitted = np.r_[model.coef_, model.intercept_, model.scale_]
    expected = np.r_[reference.coef_, reference.intercept_, reference.scale_]
    assert_allclose(fitted, expected, rtol=1e-7, atol=1e-8 * np.max(np.abs(expected)))
