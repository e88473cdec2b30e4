r"""One quantile level's fit in standardised units: the guard, the stages, the LP.

:func:`fit_level` is what :class:`skrobust.QuantileRegressor` fits for each
target column and :class:`skrobust.MultiQuantileRegressor` for each level:

1. targets further than ``_Y_CLIP`` MADs of ``y`` are pulled in for the
   fit, and the fit is redone unclipped if a pulled row changed side;
2. without a start, the smoothed fits (:func:`fit_smooth`: least squares
   moved to the ``q``-quantile, then two smoothed stages, then, for
   ``solver="smooth"``, the bandwidth continuation of
   :func:`skrobust._quantile_smooth.refine_smoothed`); for
   ``solver="exact"`` on a strided subsample of large data;
3. for ``solver="exact"``, the reduced linear programmes of
   :func:`skrobust._quantile_exact.solve_exact` around that fit (or around
   the start given), and the point of the optimal face nearest to it.

The functions read the estimator's parameters (``quantile``, ``alpha``,
``fit_intercept``, ``bandwidth``, ``kernel``, ``max_iter``, ``tol``).
"""

import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.extmath import safe_sparse_dot

from ._base import least_squares_start
from ._objective import LinearObjective
from ._quantile_exact import (
    MAX_ROUNDS,
    ReducedPathFailed,
    first_size,
    solve_exact,
)
from ._quantile_face import select_on_face
from ._quantile_smooth import (
    _MIN_RELATIVE_SCALE,
    NEWTON_MAX_COEF,
    _residual_scale,
    _weighted_quantile,
    default_bandwidth,
    effective_rows,
    minimize_smoothed,
    refine_smoothed,
    smoothed_objective,
    subsample_bandwidth,
    warn_uncertified,
)
from ._strides import aperiodic_step
from .losses import FixedScaleLoss, SmoothedPinballRho

# Iterations of the exact solver's preliminary smoothed fits with an L1
# penalty, at most (see fit_smooth).
_PRELIMINARY_MAX_ITER = 50

# The exact solver's preliminary smoothed fit is made on a strided subsample
# of about PRELIMINARY_ROWS_PER_COEF rows per coefficient, at most
# EXACT_PRELIMINARY_ROWS (up to NEWTON_MAX_COEF coefficients): the exact
# solver's Newton step from the full data's side sums then moves it within
# the statistical error, and the reduced linear programme is accepted at
# the first round about as often as from a larger subsample. Measured (CPU,
# one BLAS thread), against a fixed 50 000 rows: n = 1e5, p = 20: 100 ->
# 70 ms; p = 5: 44 -> 29 ms; n = 3e4: 44 -> 37 ms; n = 1e6 about the same.
# Where the quantile lies in a gap of the targets, a subsample's start can
# be too far for the reduced problems: the preliminary fit is then made on
# all rows (see _fit_standard_units). With many coefficients the Newton
# step is skipped and a subsample start costs extra rounds (n = 1e5, p =
# 200: 13 s against 5.7 s from the full data).
PRELIMINARY_ROWS_PER_COEF = 1000
EXACT_PRELIMINARY_ROWS = 50_000
# Reduced problems tried from a subsample's start before the preliminary
# fit is redone on all rows.
_SUBSAMPLE_START_ROUNDS = 2
# max_iter counts the exact solver's linear programmes with the smoothed
# iterations: its preliminary fit leaves it this many (a reduced programme
# and the whole one), and below _EXACT_MIN_BUDGET there is no preliminary
# fit, only the whole programme.
EXACT_LP_RESERVE = 2
_EXACT_MIN_BUDGET = EXACT_LP_RESERVE + 1
# Up to this many coefficients (intercept included) the exact solver first
# tries its reduced programmes from the zero fit, which it centres and
# refines by its own Newton steps (from a sampled Gram matrix), with no
# preliminary smoothed fit: _ZERO_START_ROUNDS of them, and if none is
# certified, the preliminary fit as before. Measured (CPU, one BLAS thread,
# best of 3-5; bench_shapes' dense data, whose 10% of targets shifted up
# put q = 0.9 in a gap, and Gaussian designs with t(2) noise; n = 600 to
# 1e5, p = 1 to 50, q = 0.1, 0.5, 0.9) with the solver's six rounds, the
# zero start took 0.1 to 0.9 of the time in all but 6 of 186 cases: 1000 x
# 20 at q = 0.5 15 -> 7 ms, 1e5 x 20 80 -> 63 ms, 1e5 x 30 at q = 0.9 865
# -> 94 ms (the smoothed fit's Newton steps are short in the gap). Where
# its rounds fail, in the gap, six rounds and the whole programme took up
# to 3.5 times the old time (2e4 x 5: 126 -> 436 ms); three rounds and then
# the preliminary fit 1.3 to 2 times (132 -> 167 ms; 5e4 x 10: 45 -> 93
# ms), while keeping the gains (1000 x 20 at q = 0.9: 31 -> 15 ms; two
# rounds: 41 ms). With more coefficients the
# two were about even (p = 80: 0.6 to 1.8 times), and so beyond 1e5 rows,
# where the zero start's Newton steps on all rows cost more than the
# preliminary fit on a subsample (1e6 x 20: 0.8 to 1.1 times; 3e5 x 50 at
# q = 0.5: 1.8 times).
ZERO_START_MAX_COEF = 51
ZERO_START_MAX_ROWS = 100_000
_ZERO_START_ROUNDS = 3

# Targets further than this many MADs of y from its median are clipped for
# the fit (see fit_level); ~1e6 keeps HiGHS's cost
# coefficients within the range where its tolerances (1e-7 relative) hold.
_Y_CLIP = 1e6
# A clipped row's fit must stay this fraction of _Y_CLIP inside the clip for
# the clipped fit to stand (see fit_level).
_CLIP_SLACK = 1e-3


class LevelStart(NamedTuple):
    """A start in standardised ``y`` units.

    ``scale`` is the robust scale of its residuals and ``residuals`` the
    residuals themselves, when known (they save passes over ``X``);
    ``exact_options`` are passed on to
    :func:`~skrobust._quantile_exact.solve_exact` (a smaller band, no
    Newton step, a known clipping distance for a start close to the
    solution).
    """

    coef: np.ndarray
    intercept: float
    scale: float | None = None
    residuals: np.ndarray | None = None
    exact_options: dict | None = None


class LevelFit(NamedTuple):
    """One level's fit in standardised ``y`` units.

    ``bandwidth`` of its (last) smoothed fit (None if it made none),
    ``stats`` the column statistics of its coordinates, ``scale`` the
    residual scale its bandwidth is relative to, ``residuals`` of the fit
    when at hand (else None), ``state`` the exact solver's state of the
    solution for a start at a nearby level (see
    :func:`~skrobust._quantile_exact._solve_exact_unclipped`).
    """

    coef: np.ndarray
    intercept: float
    bandwidth: float | None
    n_iter: int
    stats: tuple
    scale: float | None
    residuals: np.ndarray | None
    state: dict | None = None


def _column_stats(X, y, sample_weight, fit_intercept):
    """Column means and scales, as the smoothed fits' objectives use them."""
    loss = FixedScaleLoss(SmoothedPinballRho(0.5, 1.0), 1.0)
    objective = LinearObjective(
        loss, X, y, sample_weight, [(None, fit_intercept)], [0.0]
    )
    return objective.column_stats


def _standardize(start, stats, fit_intercept):
    """``c = (w * scale, b + mean @ w)``: a start in the objectives' coordinates."""
    mean, scale = stats
    coef = np.asarray(start.coef, dtype=float)
    c_w = coef * scale
    if not fit_intercept:
        return c_w
    return np.append(c_w, start.intercept + mean @ coef)


def fit_level(
    estimator, X, y, sample_weight, solver, start=None, stats=None, zero_start=True
):
    """The fit on standardised ``y``, guarded against wild targets.

    Gross outliers in y are pulled in to +-_Y_CLIP (in units of the MAD
    of y), which keeps the least-squares start and the linear programmes
    well scaled. This changes nothing if every clipped row keeps the
    sign of its residual: the objective then changes by a constant on a
    convex neighbourhood of the solution (the pinball loss is linear on
    each side of zero, and the smoothed loss exactly so a few dozen
    bandwidths away from it), so the solution is a minimiser of the
    original objective too. Otherwise refit unclipped, with the
    iterations left of ``max_iter`` (none left: the clipped fit, with a
    ``ConvergenceWarning``). Returns a :class:`LevelFit`. ``zero_start``
    allows the exact solver's start from the zero fit
    (:func:`zero_start_first`); the levels of a multi-quantile fit, which
    start from their neighbours, keep the preliminary fit.
    """
    clipped = np.flatnonzero(np.abs(y) > _Y_CLIP)
    # (A copy only when a target is that far.)
    y_fit = np.clip(y, -_Y_CLIP, _Y_CLIP) if clipped.size else y
    budget = int(estimator.max_iter)
    level = _fit_standard_units(
        estimator,
        X,
        y_fit,
        sample_weight,
        solver,
        start,
        stats,
        budget=budget,
        zero_start=zero_start,
    )
    if clipped.size:
        # Residuals of y_fit would not be those of y.
        level = level._replace(residuals=None)
        fitted = safe_sparse_dot(X[clipped], level.coef) + level.intercept
        linear_t = SmoothedPinballRho._T_MAX[estimator.kernel]
        # Strictly inside, not by rounding: an exact fit that interpolates a
        # clipped row (its residual zero, a basic row of the LP) leaves its
        # fitted value within rounding of the clip, on either side; it did
        # not keep its side (the slack of _quantile_exact's _kept_their_side).
        margin = (1.0 - _CLIP_SLACK) * _Y_CLIP - linear_t * (level.bandwidth or 0.0)
        if np.all(np.abs(fitted) < margin):
            return level
        left = budget - level.n_iter
        if left < 1:
            warnings.warn(
                f"max_iter={budget} was used up before a target clipped at "
                f"{_Y_CLIP:g} MADs of y could be fitted unclipped; increase "
                "max_iter.",
                ConvergenceWarning,
                stacklevel=4,
            )
            return level
        more = _fit_standard_units(
            estimator,
            X,
            y,
            sample_weight,
            solver,
            start,
            stats,
            budget=left,
            zero_start=zero_start,
        )
        # A refit left too few iterations for a smoothed fit of its own
        # reports the clipped fit's (the bandwidth of its last smoothed fit).
        bandwidth = level.bandwidth if more.bandwidth is None else more.bandwidth
        level = more._replace(n_iter=level.n_iter + more.n_iter, bandwidth=bandwidth)
    return level


def _fit_standard_units(
    estimator,
    X,
    y,
    sample_weight,
    solver,
    start,
    stats,
    subsample=True,
    budget=None,
    zero_start=True,
):
    """The fit on standardised ``y``, from ``start`` if given (:class:`LevelFit`).

    Without a start, a smoothed fit (for ``solver="exact"`` the
    preliminary one, on a strided subsample of large data if
    ``subsample``) is computed first. With one, ``"smooth"`` makes only
    the final smoothed fit from it and ``"exact"`` seeds the reduced
    linear programmes with it.

    ``budget`` (default ``max_iter``) bounds the iterations, each linear
    programme counting as one: the exact solver's preliminary fit leaves
    two of them to the programmes (a reduced one, and the whole problem
    if no reduced one is certified), and with fewer than
    ``_EXACT_MIN_BUDGET`` it solves the whole problem at once, as it does
    for data with no more rows than coefficients
    (:func:`whole_programme_at_once`). Up to ``ZERO_START_MAX_COEF``
    coefficients (and if ``zero_start``) the exact solver first tries its
    reduced problems from the zero fit (:func:`zero_start_first`).
    """
    if budget is None:
        budget = int(estimator.max_iter)
    n_coef = X.shape[1] + bool(estimator.fit_intercept)
    if solver == "exact" and (
        start is not None or whole_programme_at_once(X.shape[0], n_coef, budget)
    ):
        if stats is None:
            stats = _column_stats(X, y, sample_weight, estimator.fit_intercept)
        if start is None:
            # Too few iterations for a preliminary fit: the whole programme.
            start = LevelStart(np.zeros(X.shape[1]), 0.0, None, None, {})
        try:
            w, b, n_lp, residuals, state = _fit_exact(
                estimator, X, y, sample_weight, start, stats, budget
            )
        except ReducedPathFailed as failed:
            # A neighbouring level's solution too far for the reduced
            # problems (a level in a gap of the targets): this level's cold
            # fit, the zero start included, rather than the whole programme
            # (1e5 x 20, q = 0.9 next to 0.8 with 10% of targets shifted
            # up: 11 s of HiGHS).
            used = failed.args[0]
            return _fit_again(
                estimator, X, y, sample_weight, stats, budget, used, True, True
            )
        return LevelFit(w, b, None, n_lp, stats, start.scale, residuals, state)
    if (
        solver == "exact"
        and zero_start
        and zero_start_first(X.shape[0], n_coef, budget)
    ):
        if stats is None:
            stats = _column_stats(X, y, sample_weight, estimator.fit_intercept)
        options = {"full_fallback": False, "max_rounds": _ZERO_START_ROUNDS}
        zero = LevelStart(np.zeros(X.shape[1]), 0.0, None, None, options)
        try:
            w, b, n_lp, residuals, state = _fit_exact(
                estimator, X, y, sample_weight, zero, stats, budget
            )
        except ReducedPathFailed as failed:
            # The preliminary fit, as without the zero start.
            return _fit_again(
                estimator, X, y, sample_weight, stats, budget, failed.args[0], subsample
            )
        return LevelFit(w, b, None, n_lp, stats, None, residuals, state)
    X_smooth, y_smooth, weight_smooth = X, y, sample_weight
    if solver == "exact" and subsample:
        # The preliminary fit need only be about as good as the
        # statistical error: on large data it is made on a strided
        # subsample, and the exact solver refines it.
        step = preliminary_step(X.shape[0], n_coef)
        if step > 1 and sample_weight[::step].sum() > 0:
            X_smooth = X[::step]
            y_smooth, weight_smooth = y[::step], sample_weight[::step]
    smooth = fit_smooth(
        estimator,
        X_smooth,
        y_smooth,
        weight_smooth,
        warn=solver == "smooth",
        start=start,
        stats=stats if X_smooth is X else None,
        # The answer of the smoothed solver, not the exact one's start.
        refine=solver == "smooth",
        max_iter=budget if solver == "smooth" else budget - EXACT_LP_RESERVE,
    )
    if solver == "smooth":
        return smooth
    # The face selection standardises with the preliminary fit's column
    # statistics (any fixed ones would do). From a subsample's fit the
    # reduced problems may fail (a quantile in a gap of the targets, where
    # any plane in the gap is optimal and the subsample's gap is elsewhere):
    # then the preliminary fit is redone on all rows rather than the whole
    # linear programme solved.
    options = None
    if X_smooth is not X:
        # Two rounds, so that giving up stays cheap (a round's band doubles).
        options = {"full_fallback": False, "max_rounds": _SUBSAMPLE_START_ROUNDS}
    start = LevelStart(smooth.coef, smooth.intercept, smooth.scale, None, options)
    left = budget - smooth.n_iter
    try:
        w, b, n_lp, residuals, state = _fit_exact(
            estimator, X, y, sample_weight, start, smooth.stats, left
        )
    except ReducedPathFailed as failed:
        used = smooth.n_iter + failed.args[0]
        return _fit_again(estimator, X, y, sample_weight, stats, budget, used, False)
    n_iter = smooth.n_iter + n_lp
    return LevelFit(
        w, b, smooth.bandwidth, n_iter, smooth.stats, smooth.scale, residuals, state
    )


def _fit_again(
    estimator, X, y, sample_weight, stats, budget, used, subsample, zero_start=False
):
    """The exact fit again after a start whose reduced problems failed.

    With the preliminary smoothed fit (on a subsample if ``subsample``),
    preceded by the zero start only if ``zero_start`` (after a neighbouring
    level's start), and the ``budget`` left after the ``used`` iterations,
    which the returned :class:`LevelFit` counts.
    """
    level = _fit_standard_units(
        estimator,
        X,
        y,
        sample_weight,
        "exact",
        None,
        stats,
        subsample=subsample,
        budget=budget - used,
        zero_start=zero_start,
    )
    return level._replace(n_iter=used + level.n_iter)


def whole_programme_at_once(n_samples, n_coef, budget):
    """Whether the exact solver skips its preliminary fit for the whole programme.

    With fewer than ``_EXACT_MIN_BUDGET`` iterations, and wherever the
    exact solver would solve the whole programme anyway
    (:func:`~skrobust._quantile_exact.first_size`: fewer than about 600
    rows, or fewer than 4 per coefficient). The whole programme does not
    start from a preliminary fit, which then only cost time: 3000 x 1500
    dense at q = 0.9, a smoothed fit of 3.0 s before a linear programme of
    4.1 s; 200 x 1000, whose smoothed fit's Hessian is singular, 11 s
    against 0.2 s. ``n_samples`` counts every row: rows of zero weight
    only make the whole programme likelier. The fit on dask data decides
    alike.
    """
    return budget < _EXACT_MIN_BUDGET or first_size(n_samples, n_coef)[1]


def zero_start_first(n_samples, n_coef, budget):
    """Whether the exact solver first tries its reduced problems from the zero fit.

    Up to ``ZERO_START_MAX_ROWS`` rows (all of them counted) and
    ``ZERO_START_MAX_COEF`` coefficients, where that was faster than a
    preliminary smoothed fit, and with the iterations for its
    ``_ZERO_START_ROUNDS`` reduced problems and the preliminary path after
    them. Such a fit sets no ``bandwidth_`` unless its rounds fail. The
    fit on dask data decides alike.
    """
    small = n_samples <= ZERO_START_MAX_ROWS and n_coef <= ZERO_START_MAX_COEF
    return small and budget >= (_ZERO_START_ROUNDS + _EXACT_MIN_BUDGET)


def preliminary_step(n_samples, n_coef):
    """Stride of the exact solver's preliminary subsample ``X[::step]`` (1: all rows).

    About ``PRELIMINARY_ROWS_PER_COEF`` rows per coefficient, at most
    ``EXACT_PRELIMINARY_ROWS``, for up to ``NEWTON_MAX_COEF`` coefficients
    (beyond, the exact solver skips its Newton step and a subsample's start
    costs extra rounds). The fit on dask data strides its rows alike.
    """
    rows = min(EXACT_PRELIMINARY_ROWS, PRELIMINARY_ROWS_PER_COEF * n_coef)
    step = aperiodic_step(-(-int(n_samples) // rows))
    return step if step > 1 and n_coef <= NEWTON_MAX_COEF else 1


def fit_smooth(
    estimator,
    X,
    y,
    sample_weight,
    warn,
    start=None,
    stats=None,
    refine=False,
    max_iter=None,
):
    """Smoothed fits on standardised ``y``: a :class:`LevelFit`.

    Without a start, the first uses a bandwidth in units of the scale of
    least-squares residuals, the second (warm-started) one in units of
    the scale of the first one's residuals, which outliers in ``y`` do
    not inflate. From a start, only the second is made, with the scale
    of the start's residuals (or ``start.scale``). With ``refine`` (the
    answer of ``solver="smooth"``, not the exact solver's preliminary
    fit) and ``bandwidth="auto"``, the bandwidth is then lowered until
    the fit's duality gap is small (:func:`refine_smoothed`). ``max_iter``
    (default the estimator's) bounds the iterations of all of them.
    """
    if max_iter is None:
        max_iter = int(estimator.max_iter)
    if start is None:
        prepared = _smooth_start(estimator, X, y, sample_weight)
        if isinstance(prepared, LevelFit):
            return prepared
        coef, scale, stats = prepared
        stages = 2
    else:
        if stats is None:
            stats = _column_stats(X, y, sample_weight, estimator.fit_intercept)
        scale = start.scale
        if scale is None:
            residuals = y - safe_sparse_dot(X, start.coef) - start.intercept
            scale = _residual_scale(residuals, sample_weight) or 1.0
        coef = _standardize(start, stats, estimator.fit_intercept)
        stages = 1
    if estimator.bandwidth == "auto":
        # The exact fit does not depend on its preliminary fit's bandwidth,
        # only its speed does: there the count of rows with weight, the n
        # the rule was tuned on (see default_bandwidth).
        rows = (
            effective_rows(sample_weight)
            if refine
            else float(np.count_nonzero(sample_weight > 0))
        )
        factor = default_bandwidth(rows, X.shape[1])
    else:
        factor = float(estimator.bandwidth)
    n_iter = 0
    for stage in range(stages):
        last = stage + 1 == stages
        # max_iter bounds the iterations of all stages; the last (the
        # fit itself) keeps at least one. The exact solver's preliminary
        # fit is a start, which the LP's certificate makes exact. With an
        # L1 penalty a few dozen proximal Newton iterations do (on 300 rows
        # with weights summing to 3e5, the tiny default bandwidth made it
        # take 500 where the LP takes milliseconds). Without one the start
        # must be good: where the quantile falls in a gap of the targets
        # (q = 0.9 with 10% of them shifted up) Newton's steps are short,
        # and 50 of them left a start whose reduced programmes failed
        # their certificates until the whole LP was solved (1e5 rows:
        # 12 s, against 0.3 s with the full budget).
        limit = max_iter
        if not warn and estimator.alpha > 0:
            limit = min(limit, _PRELIMINARY_MAX_ITER)
        budget = limit - n_iter - (0 if last else 1)
        if budget < 1:
            continue
        rho = SmoothedPinballRho(
            float(estimator.quantile), factor * scale, estimator.kernel
        )
        subsample_rho = None
        if estimator.bandwidth == "auto":
            subsample_rho = _SubsampleRho(rho, rows, X.shape[1], scale)
        objective = smoothed_objective(
            rho,
            X,
            y,
            sample_weight,
            estimator.fit_intercept,
            stats,
            last,
            subsample_rho,
        )
        rho = objective.loss.rho
        result = minimize_smoothed(
            objective, coef, stats, estimator.alpha, budget, estimator.tol, warn, last
        )
        coef = result.coef
        n_iter += result.n_iter
        if not last:
            residuals = objective.y - objective.raw_prediction(coef)[:, 0]
            scale = _residual_scale(residuals, objective.sample_weight) or 1.0
    if refine and estimator.bandwidth == "auto" and n_iter < max_iter:
        # (A bandwidth given is the smoothed estimator's own, conquer's h.)
        coef, rho, more, short = refine_smoothed(
            objective,
            rho,
            coef,
            stats,
            estimator.alpha,
            max_iter - n_iter,
            estimator.tol,
        )
        n_iter += more
        if short and warn:
            warn_uncertified(estimator.max_iter)
    ((w, b),) = objective.unstandardize(coef)
    return LevelFit(w, b, rho.bandwidth, n_iter, stats, scale, None)


class _SubsampleRho(NamedTuple):
    """The smoothed loss of a start's fit on a share of the rows.

    Called with the share, it gives ``rho`` at :func:`subsample_bandwidth`
    of the ``rows`` the default bandwidth counted, times ``scale``.
    """

    rho: SmoothedPinballRho
    rows: float
    n_features: int
    scale: float

    def __call__(self, share):
        factor = subsample_bandwidth(self.rows, share, self.n_features)
        return SmoothedPinballRho(
            self.rho.quantile, factor * self.scale, self.rho.kernel
        )


def _smooth_start(estimator, X, y, sample_weight):
    """Least squares moved to the ``q``-quantile: ``(coef, scale, stats)``.

    ``coef`` is in the standardised coordinates of ``stats`` and
    ``scale`` the robust scale of its residuals. If least squares fits
    every row exactly (and ``alpha == 0``), that fit is returned as a
    :class:`LevelFit`: it attains the smallest possible pinball loss,
    0 (the limit of the smoothed fits as ``h -> 0``).
    """
    ls_objective, start_objective, coef = least_squares_start(
        X, y, sample_weight, estimator.fit_intercept, 0.0
    )
    stats = ls_objective.column_stats
    residuals = start_objective.y - start_objective.raw_prediction(coef)[:, 0]
    if estimator.fit_intercept:
        # conquer's start: move the least-squares plane to the q-quantile
        # of its residuals, which puts q of the weight below it.
        shift = _weighted_quantile(
            residuals, start_objective.sample_weight, float(estimator.quantile)
        )
        coef[-1] += shift  # c stacks (w, b): the intercept is last
        residuals -= shift
    scale = _residual_scale(residuals, start_objective.sample_weight)
    if scale == 0:
        # All residuals equal (the least-squares fit is perfect or
        # interpolates): they carry no scale. Unless the fit is perfect
        # on every row of positive weight, the bandwidth is relative to
        # y's own scale.
        if estimator.alpha == 0:
            residuals = y - ls_objective.raw_prediction(coef)[:, 0]
            residuals = residuals[sample_weight > 0]
            if not np.any(np.abs(residuals) > _MIN_RELATIVE_SCALE):
                ((w, b),) = ls_objective.unstandardize(coef)
                return LevelFit(w, b, 0.0, 0, stats, 0.0, None)
        scale = 1.0
    return coef, scale, stats


def _fit_exact(estimator, X, y, sample_weight, start, stats, max_lp):
    """The LP optimum by preprocessing around ``start``.

    At most ``max_lp`` linear programmes (at least one): reduced ones, the
    last of them the whole problem if none is certified before. Returns
    ``(w, b, n_lp, residuals, state)`` in standardised y units, with
    ``n_lp`` the number of linear programmes solved, ``residuals`` those
    of the solution and ``state`` the solver's ``info["level_state"]``
    when it has them (else None). Among
    equally optimal solutions, the one nearest ``start`` is taken
    (:func:`~skrobust._quantile_face.select_on_face`).
    """
    q = float(estimator.quantile)
    options = dict(start.exact_options or {})
    # The whole problem, if it comes to that, is one more.
    rounds = min(options.get("max_rounds", MAX_ROUNDS), max_lp - 1)
    options["max_rounds"] = max(rounds, 0)
    w, b, info = solve_exact(
        X,
        y,
        q,
        sample_weight,
        estimator.alpha,
        estimator.fit_intercept,
        start.coef,
        start.intercept,
        residuals=start.residuals,
        **options,
    )
    w_face, b_face = select_on_face(
        X,
        y,
        sample_weight,
        q,
        estimator.alpha,
        estimator.fit_intercept,
        w,
        b,
        (start.coef, start.intercept),
        stats,
        residuals=info.get("residuals"),
    )
    residuals = info.get("residuals")
    if w_face is not w:
        w, b, residuals = w_face, b_face, None
        info.pop("level_state", None)
    if start.exact_options is not None and info.get("newton_gram") is not None:
        # Shared by the levels of a multi-level fit: the same X and
        # weights have the same sampled Gram matrix.
        start.exact_options["newton_gram"] = info["newton_gram"]
    n_lp = max(int(info["rounds"]) + bool(info["solver"] != "reduced"), 1)
    return w, b, n_lp, residuals, info.get("level_state")
