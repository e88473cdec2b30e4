"""The MAD scale's secant on large data: what it costs, and that it still lands.

Each fixed-scale fit of the secant used to end with a Newton polish on a
Hessian formed for it (a pass of Gram matrices over all rows), and each
started from the previous fit's coefficients. Now the polish steps on the
fit's latest Hessian (a fit a step or a nearby scale away; two such steps
reach rounding), and each fit starts on the line through the last two fits'
coefficients. These tests pin the cost (Hessians formed on all rows) and
check that the answer is the one a fresh-Hessian polish and plain warm
starts give, to rounding of the fixed point.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose

import skrobust._scale_mad as scale_module
from skrobust import HuberRegressor, LogCoshRegressor
from skrobust._objective import LinearObjective
from skrobust._scale import _newton_polish
from skrobust._solvers import (
    SUBSAMPLE_MIN_ROWS,
    SUBSAMPLE_STEP,
    SolverOptions,
    solve,
)
from skrobust.losses import FixedScaleLoss, LogCoshRho


def _contaminated(n_samples=40_000, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = X @ rng.normal(size=n_features) + 1.0 + rng.standard_t(3, size=n_samples)
    gross = rng.random(n_samples) < 0.1
    y[gross] += rng.uniform(10, 30, size=gross.sum())
    return X, y


def assert_same_mad_fixed_point(fast, reference, X, y):
    """``fast`` is ``reference``'s fit, and both are the MAD fixed point.

    The scale is the normalised MAD of the residuals (statsmodels' mad,
    about zero).
    """
    assert_allclose(fast.scale_, reference.scale_, rtol=1e-9)
    assert_allclose(fast.coef_, reference.coef_, rtol=1e-8, atol=1e-10)
    assert_allclose(fast.intercept_, reference.intercept_, rtol=1e-8)
    residuals = y - X @ fast.coef_ - fast.intercept_
    mad = np.median(np.abs(residuals)) / 0.6744897501960817
    assert_allclose(fast.scale_, mad, rtol=1e-9)


class _HessianCount:
    """Hessians formed by passes over all ``n_rows`` rows."""

    def __init__(self, monkeypatch, n_rows):
        self.n_rows, self.count = n_rows, 0
        original = LinearObjective._pass_single_threaded

        def counted(objective, coef, gradient, hessian, direction, curvature):
            if hessian and objective.X.shape[0] == self.n_rows:
                self.count += 1
            return original(objective, coef, gradient, hessian, direction, curvature)

        monkeypatch.setattr(LinearObjective, "_pass_single_threaded", counted)


def _fresh_polish(problem, objective, coef, hessian=None, gradient=None):
    """The polish as it was: a Newton step on a Hessian formed at ``coef``."""
    return _newton_polish(problem, objective, coef)


@pytest.mark.parametrize("estimator_class", [HuberRegressor, LogCoshRegressor])
def test_mad_secant_forms_at_most_two_hessians_on_all_rows(
    monkeypatch, estimator_class
):
    X, y = _contaminated(SUBSAMPLE_STEP * SUBSAMPLE_MIN_ROWS)
    assert X.shape[0] >= SUBSAMPLE_STEP * SUBSAMPLE_MIN_ROWS  # (two levels)
    hessians = _HessianCount(monkeypatch, X.shape[0])
    model = estimator_class(scale="mad").fit(X, y)
    # The first all-rows fit forms one (its start's Hessian is a
    # subsample's), and the second again when the subsample's scale was
    # far off (5% here); later fits and every polish reuse the latest.
    assert hessians.count <= 2
    assert model.n_iter_ <= model.max_iter
    fast = hessians.count
    hessians.count = 0
    polishes = []

    def counted_polish(*args, **kwargs):
        polishes.append(1)
        return _fresh_polish(*args, **kwargs)

    monkeypatch.setattr(scale_module, "_newton_polish", counted_polish)
    estimator_class(scale="mad").fit(X, y)
    # A polish per fit within _POLISH_GAP of the fixed point (one or two
    # here), each forming a Hessian where the fast fit forms none.
    assert len(polishes) >= 1
    assert hessians.count >= fast + len(polishes)


@pytest.mark.parametrize("estimator_class", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mad_fit_equals_fresh_hessian_polish_and_plain_starts(
    monkeypatch, estimator_class, seed
):
    X, y = _contaminated(seed=seed)
    fast = estimator_class(scale="mad").fit(X, y)

    # The reference: every polish on a Hessian formed at its point (the
    # solver's Hessian withheld), every fit from the last one's coefficients.
    monkeypatch.setattr(scale_module, "_newton_polish", _fresh_polish)
    monkeypatch.setattr(scale_module, "_EXTRAPOLATION_MAX_RATIO", 0.0)
    reference = estimator_class(scale="mad").fit(X, y)

    assert_same_mad_fixed_point(fast, reference, X, y)


def test_chord_polish_reaches_rounding_from_a_stale_hessian():
    """Two steps on the Hessian of a nearby scale settle a fit as fresh ones do."""
    X, y = _contaminated(n_samples=2_000)

    def objective_at(scale):
        loss = FixedScaleLoss(LogCoshRho(1.0), scale)
        return LinearObjective(loss, X, y, np.ones(len(y)), [(None, True)], [0.0])

    objective = objective_at(1.0)
    optimum = solve(
        objective, np.zeros(X.shape[1] + 1), SolverOptions(), multilevel=False
    ).coef
    # A fit a solve's tolerance away from its optimum.
    coef = optimum + 1e-7 * np.random.default_rng(0).normal(size=optimum.size)
    _, gradient = objective.loss_gradient(coef)
    assert 1e-10 < np.max(np.abs(gradient)) <= 1e-6
    # (Near the fixed point the secant steps by 1e-4 of the scale or less.)
    stale_hessian = objective_at(1.001).hessian(coef)
    problem = SimpleNamespace(options=SolverOptions(solver="newton", tol=1e-10))
    chord = _newton_polish(problem, objective, coef, stale_hessian, gradient)
    # The reference: Newton steps on Hessians formed at their points.
    fresh = _newton_polish(problem, objective, coef)
    fresh = _newton_polish(problem, objective, fresh)
    chord_gradient = np.max(np.abs(objective.loss_gradient(chord)[1]))
    assert chord_gradient < 1e-5 * np.max(np.abs(gradient))
    assert_allclose(chord, fresh, rtol=1e-10, atol=1e-12)


class _PassCount:
    """Passes over all ``n_rows`` rows (loss and gradient, with or without Hessian)."""

    def __init__(self, monkeypatch, n_rows):
        self.n_rows, self.count = n_rows, 0
        original = LinearObjective._pass_single_threaded

        def counted(objective, coef, gradient, hessian, direction, curvature):
            if objective.X.shape[0] == self.n_rows:
                self.count += 1
            return original(objective, coef, gradient, hessian, direction, curvature)

        monkeypatch.setattr(LinearObjective, "_pass_single_threaded", counted)


def test_mad_secant_steers_with_rough_fits(monkeypatch):
    """The fits before the secant's last are one unchecked Newton step each.

    Each fixed-scale fit on all rows used to be solved to the exact
    tolerance, two or three passes over all rows, though until the last it
    only steers the secant: 130 passes over these eight fits at 34df0f1
    (12 to 21 each), 84 with rough fits (9 to 13), 78 with the first exact
    fit's Hessian formed at its start (skrobust._scale_mad.hessian_at_start)
    and the plain update after the rough fits.
    """
    n_rows = SUBSAMPLE_STEP * SUBSAMPLE_MIN_ROWS
    passes = _PassCount(monkeypatch, n_rows)
    for seed in range(4):
        X, y = _contaminated(n_rows, seed=seed)
        for estimator_class in (HuberRegressor, LogCoshRegressor):
            estimator_class(scale="mad").fit(X, y)
    assert passes.count <= 80


@pytest.mark.parametrize("estimator_class", [HuberRegressor, LogCoshRegressor])
@pytest.mark.parametrize("seed", [0, 1])
def test_rough_fits_leave_the_fixed_point_unchanged(monkeypatch, estimator_class, seed):
    """The secant on rough fits lands on the fixed point of exact fits alone."""
    X, y = _contaminated(SUBSAMPLE_STEP * SUBSAMPLE_MIN_ROWS, seed=seed)
    fast = estimator_class(scale="mad").fit(X, y)
    # The reference: every fit on all rows solved to the exact tolerance.
    monkeypatch.setattr(scale_module, "rough_tol_applies", lambda rough, tol: False)
    reference = estimator_class(scale="mad").fit(X, y)
    assert_same_mad_fixed_point(fast, reference, X, y)


@pytest.mark.parametrize(
    "estimator_class, most", [(HuberRegressor, 20), (LogCoshRegressor, 15)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_subsample_secant_settles_to_its_sampling_error(
    monkeypatch, estimator_class, most, seed
):
    """The subsample's fixed point is settled to 1e-4, not to ``tol``.

    It only starts the secant on all rows, off by its sampling error (1.4%
    at 5000 rows): solved to ``tol``, its fits took 30 Newton iterations of
    the fit's (Huber, seed 0; log-cosh 17), against at most 16 (13) now.
    The fits on all rows, and their fixed point, are the same.
    """
    X, y = _contaminated(SUBSAMPLE_STEP * SUBSAMPLE_MIN_ROWS, seed=seed)
    fast = estimator_class(scale="mad").fit(X, y)
    assert fast.n_iter_ <= most
    # The reference: the subsample's secant and fits to the fit's tol.
    monkeypatch.setattr(scale_module, "SUBSAMPLE_SCALE_RTOL", 0.0, raising=False)
    monkeypatch.setattr(scale_module, "_SUBSAMPLE_FIT_TOL", 0.0, raising=False)
    reference = estimator_class(scale="mad").fit(X, y)
    assert_same_mad_fixed_point(fast, reference, X, y)


def test_subsample_secant_stops_at_a_tenth_of_its_sampling_error(monkeypatch):
    """The subsample's secant settles to 1e-3 of the scale, not 1e-4.

    Its fixed point is off the one on all rows by its sampling error (1% at
    9091 rows; the first fit on all rows moved the scale by 0.4-0.5%): a
    fit more to settle it to 1e-4 cost passes over the subsample (106 over
    these eight fits at 1e-4, 100 now) and saved none over all rows (85).
    """
    n_rows = 100_000
    sub_rows = len(range(0, n_rows, SUBSAMPLE_STEP))
    counts = {"sub": 0, "all": 0}
    original = LinearObjective._pass_single_threaded

    def counted(objective, *args):
        rows = objective.X.shape[0]
        if rows in (n_rows, sub_rows):
            counts["all" if rows == n_rows else "sub"] += 1
        return original(objective, *args)

    monkeypatch.setattr(LinearObjective, "_pass_single_threaded", counted)
    for seed in range(4):
        X, y = _contaminated(n_rows, 20, seed=seed)
        for estimator_class in (HuberRegressor, LogCoshRegressor):
            model = estimator_class(scale="mad").fit(X, y)
            residuals = y - X @ model.coef_ - model.intercept_
            mad = np.median(np.abs(residuals)) / 0.6744897501960817
            assert_allclose(model.scale_, mad, rtol=1e-9)
    assert counts["sub"] <= 102
    assert counts["all"] <= 85


def test_mad_fits_update_their_chord_hessians(monkeypatch):
    """Chord steps of the MAD fits update their Hessian by BFGS steps.

    Each fit starts Newton's method on the previous fit's Hessian (another
    scale), whose chord steps converge linearly; the secant updates
    (``skrobust._linalg.secant_update``) correct it along the steps taken:
    passes over the subsample of these eight fits 100 -> 93. The fits are
    those of plain chord steps, at the MAD fixed point.
    """
    n_rows = 100_000
    sub_rows = len(range(0, n_rows, SUBSAMPLE_STEP))
    counts = {"sub": 0}
    original = LinearObjective._pass_single_threaded

    def counted(objective, *args):
        if objective.X.shape[0] == sub_rows:
            counts["sub"] += 1
        return original(objective, *args)

    monkeypatch.setattr(LinearObjective, "_pass_single_threaded", counted)
    fits = {}
    for seed in range(4):
        X, y = _contaminated(n_rows, 20, seed=seed)
        for estimator_class in (HuberRegressor, LogCoshRegressor):
            fits[seed, estimator_class] = estimator_class(scale="mad").fit(X, y)
    assert counts["sub"] <= 95

    # The reference: chord steps on the Hessian as it was given.
    monkeypatch.setattr(
        "skrobust._newton.secant_update", lambda hess, step, change: hess
    )
    X, y = _contaminated(n_rows, 20, seed=0)
    for estimator_class in (HuberRegressor, LogCoshRegressor):
        reference = estimator_class(scale="mad").fit(X, y)
        assert_same_mad_fixed_point(fits[0, estimator_class], reference, X, y)


@pytest.mark.parametrize("estimator_class", [HuberRegressor, LogCoshRegressor])
def test_first_exact_fit_after_rough_ones_takes_the_plain_update(
    monkeypatch, estimator_class
):
    """A secant through a rough step's MAD is not taken by the exact fit after it.

    The rough fits here are unchecked steps on the subsample's Hessian
    (skrobust._scale_mad.rough_step): their MADs are off by far more than
    the MAD moves with the scale near the fixed point: the secant through one
    overshot (log-cosh on bench_shapes' dense 1e5 x 20: a gap of 5e-6
    became -3e-6, one exact fit more), where the plain update ``sigma =
    MAD`` of the exact fit lands within 1e-7 of the fixed point.
    """
    steps = []
    original = scale_module.ScaleSecant.step

    def recorded(secant, scale, mad, fit_converged, bracket=True, proposal=None):
        new_scale = original(secant, scale, mad, fit_converged, bracket, proposal)
        steps.append((scale, mad, bracket, new_scale))
        return new_scale

    monkeypatch.setattr(scale_module.ScaleSecant, "step", recorded)
    X, y = _contaminated(SUBSAMPLE_STEP * SUBSAMPLE_MIN_ROWS)
    fast = estimator_class(scale="mad").fit(X, y)
    exact = [step[2] for step in steps]
    after_rough = [i for i in range(1, len(steps)) if exact[i] and not exact[i - 1]]
    assert after_rough  # (rough fits, then an exact one)
    for i in after_rough:
        scale, mad, _, new_scale = steps[i]
        assert new_scale is None or new_scale == mad
    # Still the fixed point that exact fits alone reach.
    monkeypatch.setattr(scale_module.ScaleSecant, "step", original)
    monkeypatch.setattr(scale_module, "rough_tol_applies", lambda rough, tol: False)
    reference = estimator_class(scale="mad").fit(X, y)
    assert_same_mad_fixed_point(fast, reference, X, y)


def test_hessian_pass_serves_the_gradient_at_its_point(monkeypatch):
    """``reuse_hessian_pass``: the solve's first gradient is the Hessian pass's."""
    X, y = _contaminated()
    objective = LinearObjective(
        FixedScaleLoss(LogCoshRho(), 0.5), X, y, np.ones(y.size), [(None, True)], [0.0]
    )
    objective.reuse_hessian_pass = True
    coef = np.full(objective.n_coef, 0.1)
    value, grad, _ = objective.loss_gradient_hessian(coef)
    passes = _PassCount(monkeypatch, y.size)
    again = objective.loss_gradient(coef)
    assert passes.count == 0
    assert again[0] == value
    assert np.array_equal(again[1], grad)
    objective.loss_gradient(coef + 1e-3)  # (another point: a pass)
    objective.loss = FixedScaleLoss(LogCoshRho(), 0.6)
    objective.loss_gradient(coef)  # (another loss: a pass)
    assert passes.count == 2


def test_mad_fits_start_from_known_predictions(monkeypatch):
    """Each fit on all rows after the first reads its start's predictions.

    The secant starts a fit at the last fit's coefficients or on the line
    through the last two, where the linear predictors are the same
    combination of theirs (skrobust._scale_mad.known_prediction): no
    product with ``X`` at the start.
    """
    n_rows = SUBSAMPLE_STEP * SUBSAMPLE_MIN_ROWS
    X, y = _contaminated(n_rows)
    read, fits = [], []
    original = LinearObjective._pass_single_threaded

    def recorded(objective, coef, gradient, hessian, direction, curvature):
        if objective.X.shape[0] == n_rows:
            known = objective.known_prediction
            if known is not None and np.array_equal(known[0], coef):
                eta = objective._raw_prediction_single(coef)
                assert_allclose(known[1], eta, rtol=1e-12, atol=1e-12)
                read.append(objective)
            fits.append(objective)  # (kept alive: distinct objects)
        return original(objective, coef, gradient, hessian, direction, curvature)

    monkeypatch.setattr(LinearObjective, "_pass_single_threaded", recorded)
    LogCoshRegressor(scale="mad").fit(X, y)
    distinct = list({id(objective): objective for objective in fits}.values())
    assert len(distinct) >= 3
    assert [any(o is objective for o in read) for objective in distinct] == [False] + [
        True
    ] * (len(distinct) - 1)
