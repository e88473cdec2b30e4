"""Strided subsamples of periodically ordered rows hold every phase (issue #11).

Rows sorted by time with month dummies: every 8th row of them (the solvers'
subsample levels were ``X[::8]``) holds 3 of the 12 months, so the start
left 9 months' coefficients at zero and the fits on sorted rows took up to
4 times the iterations of the same rows shuffled. The oracle is the data
itself: which months a subsample's rows hold, and the iterations of the
same estimator on the same rows in random order.
"""

import math
import warnings

import numpy as np
import pytest

from skrobust import (
    HeteroscedasticRegressor,
    HuberRegressor,
    QuantileRegressor,
    _quantile_level,
)
from skrobust._objective import LinearObjective
from skrobust._strides import aperiodic_step

N_NUMERIC = 5


def periodic_data(n=30_000, period=12, seed=0):
    """Numeric columns and dummies of a period (the first level dropped), t(2) noise.

    Rows in time order: row ``i`` is in phase ``i % period``; the noise's
    spread depends on the phase too.
    """
    rng = np.random.default_rng(seed)
    phase = np.arange(n) % period
    X = np.hstack([rng.normal(size=(n, N_NUMERIC)), np.eye(period)[phase][:, 1:]])
    y = X @ rng.normal(size=X.shape[1]) + rng.standard_t(2, n) * (1 + phase % 3)
    return X, y


def phases(X):
    """The distinct phases of the rows of :func:`periodic_data`'s ``X``."""
    return np.unique(X[:, N_NUMERIC:], axis=0).shape[0]


def test_aperiodic_step_meets_every_phase_near_the_rows_asked_for():
    """Every phase of the calendar's periods (weeks of a year: 52; days: 365;
    hours: 8760), and the rows within the documented factors."""
    periods = (2, 3, 4, 5, 6, 7, 12, 13, 24, 26, 52, 60, 168, 365, 1440, 8760)
    for step in range(-1, 3000):
        s = aperiodic_step(step)
        assert s == 1 or math.gcd(s, 2 * 3 * 5 * 7) == 1
        for period in periods:
            assert len({i % period for i in range(0, s * period, s)}) == period
        if step <= 3:
            assert s == 1
        else:
            # At most 2.75 times fewer rows (4 -> 11), 30% from 11 on
            # (12 -> 17), 18% from 14 on (14 -> 17).
            bound = 11 / 4 if step < 11 else 17 / 12 if step < 14 else 17 / 14
            assert step <= s <= bound * step


ESTIMATORS = {
    "huber": HuberRegressor(),
    "huber-mad": HuberRegressor(scale="mad"),
    "huber-lad": HuberRegressor(scale="lad"),
    "quantile-smooth": QuantileRegressor(solver="smooth"),
    "quantile-exact": QuantileRegressor(),
    "heteroscedastic": HeteroscedasticRegressor(),
}


@pytest.mark.parametrize("period, n", [(12, 30_000), (24, 30_000), (52, 26_000)])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_strided_subsamples_of_sorted_rows_hold_every_phase(
    monkeypatch, name, period, n
):
    """Every strided subsample a fit takes of time-ordered rows holds all phases.

    (The solvers' levels, the starts and the search for flat directions
    subsample a :class:`LinearObjective`; subsamples of subsamples too.)
    Weekly rows with week-of-year dummies: the L1 start of 26 000 rows took
    every 13th, 4 of the 52 weeks.
    """
    X, y = periodic_data(n=n, period=period)
    held = []
    subsample = LinearObjective.subsample

    def spy(objective, step):
        sub = subsample(objective, step)
        held.append((int(step), phases(sub.X)))
        return sub

    monkeypatch.setattr(LinearObjective, "subsample", spy)
    # (The exact quantile fit's preliminary fit, not its start from the zero
    # fit, which takes no subsample of LinearObjective.)
    monkeypatch.setattr(_quantile_level, "ZERO_START_MAX_COEF", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ESTIMATORS[name].fit(X, y)
    assert held
    assert all(count == period for _, count in held), held


@pytest.mark.parametrize(
    "estimator",
    [QuantileRegressor(solver="smooth"), HeteroscedasticRegressor()],
    ids=["quantile-smooth", "heteroscedastic"],
)
def test_sorted_rows_take_the_iterations_of_shuffled_ones(estimator):
    """Time-ordered monthly rows: about the iterations of the same rows shuffled.

    With strides of 8 the smoothed quantile fit took 80 iterations on the
    sorted rows against 24 shuffled, the heteroscedastic fit 63 against 14
    (30 000 rows); now 33 against 28-31, 15 against 12-13.
    """
    X, y = periodic_data()
    order = np.random.default_rng(1).permutation(y.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_sorted = estimator.fit(X, y).n_iter_
        on_shuffled = estimator.fit(X[order], y[order]).n_iter_
    assert on_sorted <= 1.25 * on_shuffled, (on_sorted, on_shuffled)


def test_exact_solvers_gram_sample_of_sorted_rows_holds_every_month():
    """The exact quantile solver's Newton step scales by a sampled Gram matrix.

    At 1e5 rows of 17 coefficients its sample was every 6th row: 2 of 12
    months, a matrix singular along the other 10 months' dummies (and the
    exact fit on the sorted rows took 53 iterations against 18 shuffled;
    now 22). The oracle: the Gram matrix of all rows, which the sample
    estimates to within its sampling error.
    """
    from skrobust._quantile_exact import _gram_sample

    X, _ = periodic_data(n=100_000)
    s = np.ones(X.shape[0])
    sampled = _gram_sample(X, s, np.arange(X.shape[0]), True)
    Z = np.hstack([X, np.ones((X.shape[0], 1))])
    full = Z.T @ Z
    assert np.linalg.eigvalsh(sampled)[0] > 0.5 * np.linalg.eigvalsh(full)[0]
    np.testing.assert_allclose(sampled, full, atol=0.05 * np.abs(full).max())


@pytest.mark.parametrize("n_coef", [2, 21, 201, 1006, 2001])
def test_lad_start_keeps_at_least_a_row_per_coefficient(monkeypatch, n_coef):
    """Rounding the L1 start's stride up to an aperiodic one never leaves
    fewer rows than coefficients where the stride asked for did not: a step
    of 5 rounded to 11 left 826 of 9091 rows for 1006 coefficients, an
    underdetermined start from which one-hot fits at 1e5 x 1005 took 35
    Newton iterations instead of 16, and 4 times as long."""
    import skrobust._base as base

    def steps(n_samples, budget):
        return base.lad_start_step(n_samples, n_coef, budget)

    cases = [
        (int(n), budget)
        for n in np.unique(np.geomspace(n_coef, 10**7, 200).astype(int))
        for budget in (2**16, 250_000, 2**20)
    ]
    aperiodic = [steps(n, budget) for n, budget in cases]
    monkeypatch.setattr(base, "aperiodic_step", lambda step: max(int(step), 1))
    asked = [steps(n, budget) for n, budget in cases]
    for (n, budget), step, wanted in zip(cases, aperiodic, asked, strict=True):
        assert step == 1 or math.gcd(step, 210) == 1
        if -(-n // wanted) >= n_coef:
            assert -(-n // step) >= n_coef, (n, budget, wanted, step)
