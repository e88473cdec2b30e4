r"""Linear programmes of penalised quantile regression, and their certificate.

The objective is the one of :class:`sklearn.linear_model.QuantileRegressor`
(whose code uses ``alpha_eff = sum(sample_weight) * alpha``):

.. math::

    F(w, b) = \frac{1}{S} \sum_i s_i \, \rho_q(y_i - x_i^\top w - b)
              + \alpha \lVert w \rVert_1,
    \qquad S = \sum_i s_i,
    \qquad \rho_q(r) = \max(q r, (q - 1) r).

The intercept ``b`` (only with ``fit_intercept``) is not penalised.

This module holds what any exact solver of ``F`` needs, whatever rows it
solves on:

- validation and row-block linear algebra on ``X`` (never copied densely
  as a whole, never modified: dense ``X`` of a dtype other than float64 is
  converted in row blocks of a few megabytes);
- the two LP formulations, :func:`_primal_lp` (scikit-learn's, ``n``
  equality rows) and :func:`_dual_lp` (``p + 1`` equality rows and box
  bounds, with a duality-gap certificate of the recovered primal point);
- :func:`solve_lp`, the whole problem as one LP, the reference;
- :func:`certify_signs`, the certificate of the reduced problems of
  :mod:`skrobust._quantile_exact`: when the residual signs assumed for the
  rows it replaced by pseudo-observations hold, up to rounding, the reduced
  problem's minimiser is the full problem's.
"""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

try:  # HiGHS's own interface, as scipy ships it (see _solve_dual)
    from scipy.optimize._highspy import _core as _highs
except ImportError:  # pragma: no cover - other scipy versions
    _highs = None

from ._quantile_ipm import solve_dual_ipm

__all__ = ["certify_signs", "pinball_objective", "solve_lp"]

# Rows per dense block: about 2 MiB of float64 per converted block.
_BLOCK_ELEMENTS = 2**18
# A replaced observation of the wrong sign costs at most s_i |r_i| / S in
# objective (see certify_signs). Violations whose total is below this
# fraction of the objective are accepted: far below the accuracy of the LP
# solver.
_GAP_RTOL = 1e-12
# The primal point recovered from HiGHS's dual solution is accepted when its
# duality gap is below this fraction of the objective; in tests the gap was
# below 2e-12 relative (median 3e-16), so this only rejects a broken recovery.
_DUALITY_RTOL = 1e-9
# Dual LPs with more columns (kept rows) than this, or more constraint
# entries (rows times coefficients, or nonzeros) than the next, go to
# HiGHS's interior point solver first, smaller ones to its dual simplex
# (measured crossovers: on wide designs the simplex's cost grows with the
# p equality rows too; 1500 x 500: 10.7 s against 3.3 s, 1000 x 300: 1.7
# against 1.5 s, 600 x 200: 0.5 against 0.9 s).
_IPM_MIN_COLUMNS = 3000
_IPM_MIN_ENTRIES = 250_000
_PRESOLVE = False
# Dual LPs with at least this many coefficients and constraint entries
# (rows times coefficients) go to the Frisch-Newton interior point method
# of skrobust._quantile_ipm first (see _frisch_newton_wins). Cold reduced
# LPs, HiGHS against it: 2261 x 50 0.10 against 0.03 s, 7144 x 50 0.35
# against 0.05 s, 1007 x 100 0.16 against 0.04 s, 1420 x 200 0.51 against
# 0.07 s, 6335 x 400 7.0 against 1.0 s, 4477 x 1000 36 against 3.6 s; 19
# levels of MultiQuantileRegressor at 1e5 x 50, whose HiGHS LPs start from
# the neighbouring level's fit, 2.8 against 1.4 s. Narrower LPs (1452 x 20:
# 0.020 against 0.013 s cold) stay with HiGHS, whose warm starts at
# neighbouring levels take about a millisecond.
_FN_MIN_COEF = 50
_FN_MIN_ENTRIES = 100_000
# ... and, for sparse Z, a normal matrix of its sparse rows with at least
# this fraction of nonzeros. Reduced LPs of 2e4 rows at 0.5% density,
# HiGHS against the interior point method: p = 200 (6% full) 0.01 against
# 0.04 s, p = 500 (9%) 0.07 against 0.11 s, p = 1000 (11%) 1.0 against
# 0.47 s, p = 2000 (15%) 23 against 3.6 s; one-hot 1e5 x 1005 (1%): 0.13 s
# by HiGHS.
_FN_MIN_FILL = 0.1


# ----------------------------------------------------------------------------
# Input handling and row-block linear algebra on X
# ----------------------------------------------------------------------------


def _check_X(X):
    if sp.issparse(X):
        if X.format not in ("csr", "csc"):
            # Other formats cannot be indexed by rows; this is a sparse copy.
            X = X.tocsr()
        return X
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"X must have a real dtype, got {X.dtype}")
    return X


# Targets further than this many median absolute deviations from the


def _check_inputs(X, y, quantile, sample_weight, alpha):
    """Validated ``(X, y, s, S)``; ``y`` and ``s`` float64 vectors (not copies of
    float64 inputs: neither is ever written to)."""
    X = _check_X(X)
    n = X.shape[0]
    y = np.asarray(y, dtype=np.float64).ravel()
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} entries, X has {n} rows")
    if not np.all(np.isfinite(y)):
        raise ValueError("y must be finite")
    if sample_weight is None:
        s = np.ones(n)
    else:
        s = np.asarray(sample_weight, dtype=np.float64).ravel()
        if s.shape[0] != n:
            raise ValueError(f"sample_weight has {s.shape[0]} entries, X has {n}")
        if not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ValueError("sample_weight must be finite and non-negative")
        # F is a weighted mean: scaling the weights to a largest of 1 changes
        # nothing but keeps their sum from overflowing.
        top = s.max(initial=0.0)
        if top > 0 and top != 1:
            s = s / top
    S = float(s.sum())
    if not S > 0:
        raise ValueError("sample_weight must have a positive sum")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be finite and non-negative, got {alpha}")
    return X, y, s, S


def _row_blocks(n_rows, n_cols):
    step = max(256, _BLOCK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _matvec(X, w):
    """``X @ w`` in float64, converting dense non-float64 ``X`` block by block.

    numpy would otherwise cast the whole of ``X`` to float64 before the
    product (a full dense copy), and multiplying in float32 would lose the
    digits that the sign checks need.
    """
    if sp.issparse(X):
        return np.asarray(X @ w, dtype=np.float64).ravel()
    if X.dtype == np.float64:
        return X @ w
    out = np.empty(X.shape[0])
    for rows in _row_blocks(*X.shape):
        out[rows] = X[rows].astype(np.float64) @ w
    return out


def _lmatmat(Vt, X):
    """``Vt @ X`` in float64 for ``Vt`` of shape ``(k, n)``, without copying X.

    Written as ``Vt @ X`` rather than ``X.T @ V``: for a tall float64 ``X``
    OpenBLAS is several times faster in this orientation.
    """
    if sp.issparse(X):
        return np.asarray((X.T @ Vt.T).T, dtype=np.float64)
    if X.dtype == np.float64:
        return Vt @ X
    out = np.zeros((Vt.shape[0], X.shape[1]))
    for rows in _row_blocks(*X.shape):
        out += Vt[:, rows] @ X[rows].astype(np.float64)
    return out


def _sparse_rows(X, idx):
    """Rows ``idx`` of ``X`` as a float64 CSR matrix (dense X gathered in blocks)."""
    if sp.issparse(X):
        return sp.csr_matrix(X[idx], dtype=np.float64)
    p = X.shape[1]
    if idx.size == 0:
        return sp.csr_matrix((0, p))
    parts = [
        sp.csr_matrix(X[idx[rows]].astype(np.float64, copy=False))
        for rows in _row_blocks(idx.size, p)
    ]
    return parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")


def _pinball(r, quantile):
    # (Into one of its two terms: a temporary fewer on vectors of n rows.)
    loss = np.multiply(r, quantile)
    return np.maximum(loss, (quantile - 1.0) * r, out=loss)


# Rows per block of _weighted_pinball (its temporaries stay in cache).
_PINBALL_BLOCK = 2**14


def _weighted_pinball(s, r, quantile):
    """``sum_i s_i rho_q(r_i)``, in blocks: a fit holds few n-vectors at once.

    Each block's sum is numpy's pairwise one, as :func:`_weighted_sum`.
    """
    total = 0.0
    for start in range(0, r.size, _PINBALL_BLOCK):
        rows = slice(start, start + _PINBALL_BLOCK)
        loss = _pinball(r[rows], quantile)
        loss *= s[rows]
        total += float(np.sum(loss))
    return total


def _weighted_sum(s, v):
    """``sum_i s_i v_i`` by numpy's pairwise summation.

    Unlike ``s @ v`` this does not go through BLAS, whose threads cost more
    than the sum itself for vectors of this kind on a busy machine, and the
    pairwise sum is also the more accurate one.
    """
    return float(np.sum(s * v))


def pinball_objective(X, y, coef, intercept, quantile, sample_weight, alpha):
    r"""Weighted mean pinball loss plus L1 penalty.

    .. math::

        F(w, b) = \frac{1}{S} \sum_i s_i \, \rho_q(y_i - x_i^\top w - b)
                  + \alpha \lVert w \rVert_1,
        \qquad \rho_q(r) = \max(q r, (q - 1) r), \qquad S = \sum_i s_i.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Any real dtype; not copied.
    y : array-like of shape (n_samples,)
    coef : array-like of shape (n_features,)
        ``w``.
    intercept : float
        ``b`` (pass 0 for a model without intercept).
    quantile : float
        ``q`` in (0, 1).
    sample_weight : array-like of shape (n_samples,) or None
        Non-negative weights ``s_i`` with a positive sum; None for ones.
    alpha : float
        Non-negative L1 penalty strength.

    Returns
    -------
    float
        ``F(w, b)``.
    """
    X, y, s, S = _check_inputs(X, y, quantile, sample_weight, alpha)
    coef = np.asarray(coef, dtype=np.float64).ravel()
    r = y - _matvec(X, coef) - float(intercept)
    loss = _weighted_pinball(s, r, quantile)
    return loss / S + alpha * float(np.abs(coef).sum())


# ----------------------------------------------------------------------------
# Linear programmes
# ----------------------------------------------------------------------------


def _lp_scaling(Z, y, w):
    """Powers of two ``d`` (per column of ``Z``) and ``sigma`` (for ``y``).

    HiGHS's feasibility and optimality tolerances are absolute (1e-7), so
    the LPs are solved for ``Z / d`` and ``y / sigma``, whose entries are of
    order one: with ``w = sigma * w' / d`` and ``b = sigma * b'`` the
    objective is ``sigma`` times the scaled one when the L1 weight of
    ``w'_j`` is ``lam / d_j``. Powers of two make the scaling exact.
    """
    if sp.issparse(Z):
        d = np.asarray(abs(Z).max(axis=0).todense(), dtype=np.float64).ravel()
    else:
        d = np.abs(Z).max(axis=0, initial=0.0)
    sigma = _weighted_sum(w, np.abs(y)) / float(w.sum())

    def power_of_two(v):
        v = np.where(np.isfinite(v) & (v > 0), v, 1.0)
        return np.exp2(np.round(np.log2(v)))

    return power_of_two(d), float(power_of_two(np.array(sigma)))


def _primal_lp(Z, y, w, quantile, lam, fit_intercept, method="highs"):
    r"""``min sum_i w_i rho_q(y_i - z_i w - b) + lam ||w||_1``, sklearn's primal LP.

    Variables ``(w+, w-, [b+, b-], u, v) >= 0`` with
    ``Z (w+ - w-) + (b+ - b-) + u - v = y`` and costs ``lam`` on ``w+-``,
    ``0`` on ``b+-``, ``w_i q`` on ``u_i`` and ``w_i (1 - q)`` on ``v_i``: at
    an optimum ``u`` and ``v`` are the positive and negative parts of the
    residuals. Solved in the units of :func:`_lp_scaling`.
    """
    m, p = Z.shape
    d, sigma = _lp_scaling(Z, y, w)
    Zs = Z @ sp.diags(1.0 / d, format="csr")
    ones = sp.csr_matrix(np.ones((m, 1)))
    eye = sp.eye(m, format="csr")
    blocks = [Zs, -Zs] + ([ones, -ones] if fit_intercept else []) + [eye, -eye]
    A = sp.hstack(blocks, format="csc")
    n_b = 2 if fit_intercept else 0
    c = np.concatenate(
        [lam / d, lam / d, np.zeros(n_b), quantile * w, (1.0 - quantile) * w]
    )
    res = linprog(c, A_eq=A, b_eq=y / sigma, method=method)
    if res.status != 0:
        raise RuntimeError(
            f"scipy.optimize.linprog(method={method!r}) failed on the quantile "
            f"regression LP (status {res.status}): {res.message}"
        )
    x = res.x
    coef = sigma * (x[:p] - x[p : 2 * p]) / d
    intercept = sigma * float(x[2 * p] - x[2 * p + 1]) if fit_intercept else 0.0
    return coef, intercept


def _dual_lp(Z, y, w, quantile, lam, fit_intercept, origin=None):
    r"""The same problem as :func:`_primal_lp`, solved through its dual.

    Writing ``rho_q(r) = max_{a in [q - 1, q]} a r`` and minimising the
    Lagrangian over ``(w, b)`` gives the dual

    .. math::

        \max_a \; y^\top a \quad\text{s.t.}\quad
        Z^\top a = t,\; t \in [-\lambda, \lambda]^p,\;
        1^\top a = 0 \text{ (intercept)},\;
        (q - 1) w_i \le a_i \le q w_i,

    with ``p + 1`` equality rows instead of ``n``; the primal ``(w, b)`` are
    minus the equality marginals that HiGHS returns. The slack ``t`` exists
    only when ``lam > 0``. Solved in the units of :func:`_lp_scaling`.

    ``origin``, a fit ``(coef, intercept)`` near the solution if known,
    is where the dual simplex starts: the LP is solved for the change from
    it. On the feasible set ``y^T a = (y - Z w_0 - b_0)^T a + w_0^T t``, so
    the targets become the residuals of the origin and the slacks ``t``
    get the cost ``-w_0``; HiGHS's first basis (the equality rows' own
    logical variables, every ``a_i`` at the bound its reduced cost asks
    for) then corresponds to the origin instead of to the zero fit. From
    the Newton-refined start of a neighbouring level this saves about half
    of the simplex iterations.

    Returns ``(coef, intercept, ok)``: ``ok`` is False if HiGHS failed or the
    recovered primal point does not close the duality gap, in which case the
    caller must use another method.
    """
    m, p = Z.shape
    n_slack = p if lam > 0 else 0
    n_rows = p + int(fit_intercept)
    if n_rows == 0:
        return np.zeros(0), 0.0, True
    d, sigma = _lp_scaling(Z, y, w)
    y = y / sigma
    if origin is None:
        shift_w, shift_b = np.zeros(p), 0.0
    else:
        shift_w = np.asarray(origin[0], dtype=np.float64) * d / sigma
        shift_b = float(origin[1]) / sigma if fit_intercept else 0.0
    if sp.issparse(Z):
        Z = Z @ sp.diags(1.0 / d, format="csr")
        A = _dual_constraints_sparse(Z, n_slack, fit_intercept)
    else:
        Z = Z / d
        A = _dual_constraints_dense(Z, n_slack, fit_intercept)
    bounds = np.column_stack(
        [
            np.concatenate([(quantile - 1.0) * w, -lam / d[:n_slack]]),
            np.concatenate([quantile * w, lam / d[:n_slack]]),
        ]
    )
    start_residuals = y - Z @ shift_w - shift_b if origin is not None else y
    shift = None if origin is None else (shift_w, shift_b)
    c = np.concatenate([-start_residuals, -shift_w[:n_slack]])
    # The dual simplex is fastest on small problems; its cost per iteration
    # grows with the number of columns and HiGHS's interior point method
    # (with crossover to a vertex) wins beyond a few thousand. The other one
    # is the second try.
    methods = ["highs-ds", "highs-ipm"]
    entries = Z.nnz if sp.issparse(Z) else m * p
    if m > _IPM_MIN_COLUMNS or entries > _IPM_MIN_ENTRIES:
        methods.reverse()
    if _frisch_newton_wins(Z):
        methods.insert(0, "frisch-newton")
    for method in methods:
        if method == "frisch-newton":
            # Not shifted to the origin: the interior point method does not
            # walk from vertex to vertex, and its vertex is solved from the
            # original targets.
            solution, start = solve_dual_ipm(
                Z,
                np.concatenate([y, np.zeros(n_slack)]),
                bounds[:, 0],
                bounds[:, 1],
                n_slack,
                fit_intercept,
            )
            if solution is None and start is not None:
                # The dual simplex from the basis next to the interior
                # point's optimum: a few pivots.
                solution = _solve_dual(
                    c, A, bounds, n_rows, "highs-ds", origin is None, start
                )
                if solution is not None:
                    solution = _from_origin(solution, Z, y, fit_intercept, shift)
        else:
            solution = _solve_dual(c, A, bounds, n_rows, method, origin is None)
            if solution is not None:
                solution = _from_origin(solution, Z, y, fit_intercept, shift)
        if solution is None:
            continue
        x, theta, fun, basic = solution
        coef = theta[:p]
        if n_slack:
            # Complementary slackness: w_j can differ from 0 only where its
            # slack t_j sits at a bound +-lam / d_j. A slack strictly inside
            # is basic, its reduced cost -w_j is zero at the vertex, and
            # what HiGHS reports (~1e-14) is rounding: make it an exact zero.
            slack = np.abs(x[m:])
            coef = np.where(slack < lam / d, 0.0, coef)
        intercept = float(theta[p]) if fit_intercept else 0.0
        # Certificate: the primal value at the recovered point against the
        # dual value. Degenerate or rank-deficient problems (duplicated
        # columns, p > m) have many dual solutions; any optimal one is a
        # primal minimiser, and this check catches a recovery gone wrong.
        r = y - Z @ coef - intercept
        primal = _weighted_pinball(w, r, quantile)
        primal += lam * float(np.abs(coef / d).sum())
        dual = -float(fun)
        # Absolute floor for objectives near 0 (interpolation, p >= m): the
        # rounding error of the residuals, as in solve_exact's sign check.
        floor = 4.0 * (p + 3) * np.finfo(np.float64).eps
        floor *= _weighted_sum(w, np.abs(y) + np.abs(y - r))
        if abs(primal - dual) <= _DUALITY_RTOL * max(abs(primal), abs(dual)) + floor:
            return sigma * coef / d, sigma * intercept, True
    return None, None, False


def _frisch_newton_wins(Z):
    """Whether :mod:`skrobust._quantile_ipm` is faster than HiGHS on this LP.

    Its cost is about 20 factorisations of the ``p + 1`` square normal
    matrix, whatever the sparsity of ``Z`` (the pseudo-observations are
    dense rows); HiGHS's dual simplex wins on narrow problems, and on
    sparse ones whose basis factorises with little fill. The normal
    matrix of the sparse rows says which: one-hot rows (disjoint levels)
    give a nearly diagonal one and an LU of little fill (1e5 x 1005:
    HiGHS 0.14 s), random sparse rows a dense one (2e4 x 2000 at 0.5%:
    HiGHS 23 s, this method 3.9 s). Measured crossovers in
    ``docs/benchmarks.rst``.
    """
    m, p = Z.shape
    if p < _FN_MIN_COEF or m * p < _FN_MIN_ENTRIES:
        return False
    if not sp.issparse(Z):
        # Dense storage of sparse rows (dummies): the same test on their
        # pattern. (A dense one-hot 3000 x 200 LP: HiGHS 0.04 s, this
        # method 0.16 s.)
        if np.count_nonzero(Z) > _FN_MIN_FILL * Z.size:
            return True
        Z = sp.csr_matrix(Z)
    counts = np.diff(Z.indptr)
    dense = counts >= p // 2
    if np.count_nonzero(dense) > _FN_MIN_FILL * m:
        # Mostly dense rows in sparse storage: a dense basis for HiGHS
        # (dense 1500 x 750 gathered as CSR: HiGHS 11 s, this method 0.6 s).
        return True
    # Else the few dense rows, the pseudo-observations, are left out: they
    # fill the normal matrix, but not HiGHS's basis of sparse rows.
    rows = Z[~dense]
    pattern = sp.csr_matrix(
        (np.ones(rows.nnz), rows.indices, rows.indptr), shape=rows.shape
    )
    return (pattern.T @ pattern).nnz >= _FN_MIN_FILL * p * p


def _from_origin(solution, Z, y, fit_intercept, origin):
    """A HiGHS solution of the LP shifted to ``origin``, in absolute terms.

    ``origin`` is ``(w, b)`` in the LP's units, or None (no shift). The
    multipliers are those of the change from it; a warm start's are
    recomputed from the basic columns (:func:`_vertex_coefficients`).
    """
    x, theta, fun, basic = solution
    if origin is not None:
        shift_w, shift_b = origin
        p = shift_w.size
        theta[:p] += shift_w
        if fit_intercept:
            theta[p] += shift_b
        theta = _vertex_coefficients(Z, y, fit_intercept, basic, theta)
    return x, theta, fun, basic


def _vertex_coefficients(Z, y, fit_intercept, basic, theta):
    """The primal coefficients of a dual vertex, from its basic columns.

    At a vertex of the dual LP the reduced costs of the ``p + 1`` basic
    columns vanish: ``A_B^T theta = (y_B, 0)`` (a target for a kept row,
    zero for a slack ``t_j``), the fit through the basic rows. Solved from
    the original targets, not recovered as multipliers of the problem
    shifted to an origin, whose sum with the origin would turn exact zeros
    (a vertex through rows of target 0) into rounding noise. ``theta`` (the
    shifted multipliers plus the origin) is returned when ``basic`` is not
    a full set of columns (a logical variable left basic on a degenerate
    or rank-deficient problem) or ``A_B`` is singular.
    """
    if basic is None or basic.size != theta.size or np.any(basic < 0):
        return theta
    m, p = Z.shape
    rows, slacks = basic[basic < m], basic[basic >= m] - m
    # A_B^T: a row (z_i, [1]) per basic kept row, -e_j per basic slack t_j.
    system = np.zeros((basic.size, theta.size))
    kept = Z[rows]
    system[: rows.size, :p] = kept.toarray() if sp.issparse(kept) else kept
    if fit_intercept:
        system[: rows.size, p] = 1.0
    system[rows.size + np.arange(slacks.size), slacks] = -1.0
    rhs = np.concatenate([y[rows], np.zeros(slacks.size)])
    try:
        vertex = np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:
        return theta
    return vertex if np.all(np.isfinite(vertex)) else theta


def _solve_dual(c, A, bounds, n_rows, method, highs_scaling=True, start=None):
    """``min c x`` s.t. ``A x = 0``, ``bounds``: ``(x, theta, value, basic)``.

    None if it fails. ``theta`` are minus the equality multipliers (the
    primal coefficients of :func:`_dual_lp`), ``basic`` the indices of the
    basic columns (negative for a row's logical variable; None when not
    known). ``highs_scaling`` False turns HiGHS's own scaling off (for
    problems started at an origin). HiGHS is called directly when scipy
    ships it as ``scipy.optimize._highspy._core``: ``linprog``'s wrapper
    costs about 3 ms of Python per call (option checks, a loop over the
    columns for the bound multipliers), more than the small LPs a
    multi-level fit solves by the hundred. Otherwise, or if that fails, through
    :func:`scipy.optimize.linprog`; either way :func:`_dual_lp` checks the
    result by its duality gap. ``start``, ``(basic, at_upper)`` of
    :func:`~skrobust._quantile_ipm.solve_dual_ipm`, is a basis for the
    simplex method to start from (only through HiGHS's own interface).
    """
    if _highs is not None:
        try:
            solution = _solve_dual_highs(
                c, A, bounds, n_rows, method, highs_scaling, start
            )
        except Exception:  # a changed private API: use the public one
            solution = None
        if solution is not None:
            return solution
    if start is not None:
        return None
    res = linprog(
        c,
        A_eq=A,
        b_eq=np.zeros(n_rows),
        bounds=bounds,
        method=method,
        options={"presolve": _PRESOLVE},
    )
    if res.status != 0 or res.eqlin is None:
        return None
    theta = -np.asarray(res.eqlin.marginals, dtype=np.float64)
    return res.x, theta, res.fun, None


def _solve_dual_highs(c, A, bounds, n_rows, method, highs_scaling=True, start=None):
    """:func:`_solve_dual` by HiGHS's own interface, as ``linprog`` sets it up.

    The model is passed as arrays (``Highs::passModel`` of pointers), not
    as a ``HighsLp`` whose vectors pybind11 fills element by element: that
    cost about 1 ms for the 8000 nonzeros of a reduced problem at ``p =
    20``, more than the dual simplex takes from a neighbouring level's fit.
    """
    if A.format != "csc":
        A = sp.csc_matrix(A)
    n_cols = c.size
    zeros = np.zeros(n_rows)
    highs = _highs._Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("presolve", "on" if _PRESOLVE else "off")
    # linprog's "highs-ds" is the dual simplex, "highs-ipm" the interior
    # point method with crossover to a vertex.
    highs.setOptionValue("solver", "simplex" if method == "highs-ds" else "ipm")
    highs.setOptionValue("simplex_strategy", 1)  # dual simplex
    if not highs_scaling:
        # The LP is in the units of _lp_scaling already. HiGHS's own
        # scaling made the reduced problems of levels started from their
        # neighbour take 59 dual simplex iterations instead of 51 (n = 1e5,
        # p = 20; 1.42 against 1.13 ms). Cold fits keep it: their path
        # through the vertices is the one tested against R's rq.
        highs.setOptionValue("simplex_scale_strategy", 0)
    status = highs.passModel(
        n_cols,
        n_rows,
        A.nnz,
        int(_highs.MatrixFormat.kColwise),
        int(_highs.ObjSense.kMinimize),
        0.0,  # objective offset
        np.ascontiguousarray(c, dtype=np.float64),
        np.ascontiguousarray(bounds[:, 0], dtype=np.float64),
        np.ascontiguousarray(bounds[:, 1], dtype=np.float64),
        zeros,
        zeros,
        np.ascontiguousarray(A.indptr, dtype=np.int32),
        np.ascontiguousarray(A.indices, dtype=np.int32),
        np.ascontiguousarray(A.data, dtype=np.float64),
        # Every column continuous (an array of num_col entries is read).
        np.zeros(n_cols, dtype=np.int32),
    )
    if status == _highs.HighsStatus.kError:
        return None
    if start is not None and not _set_basis(highs, n_cols, n_rows, start):
        return None
    if highs.run() == _highs.HighsStatus.kError:
        return None
    if highs.getModelStatus() != _highs.HighsModelStatus.kOptimal:
        return None
    solution = highs.getSolution()
    x = np.asarray(solution.col_value, dtype=np.float64)
    # c^T x (HiGHS's objective value, whose getInfo copies every statistic).
    value = float(c @ x)
    theta = -np.asarray(solution.row_dual, dtype=np.float64)
    basic = None
    if method == "highs-ds":
        # Only after the simplex method: HiGHS crashed asking for the
        # basic variables of an interior point solve. It numbers a row's
        # logical variable -1 - row.
        status, indices = highs.getBasicVariables()
        if status == _highs.HighsStatus.kOk:
            basic = np.asarray(indices, dtype=np.intp)
    return x, theta, value, basic


def _set_basis(highs, n_cols, n_rows, start):
    """Give HiGHS the basis ``start = (basic, at_upper)`` to start from.

    The basic columns, the others at the bound ``at_upper`` says, and
    every equality row's logical variable nonbasic. HiGHS replaces the
    dependent columns of a singular basis by logical ones.
    """
    basic, at_upper = start
    status = _highs.HighsBasisStatus
    col_status = np.where(at_upper, 2, 0)  # kUpper, kLower
    col_status[basic] = 1  # kBasic
    names = {0: status.kLower, 1: status.kBasic, 2: status.kUpper}
    basis = _highs.HighsBasis()
    basis.col_status = [names[k] for k in col_status.tolist()]
    basis.row_status = [status.kLower] * n_rows
    basis.valid = True
    return highs.setBasis(basis) != _highs.HighsStatus.kError


def _dual_constraints_dense(Z, n_slack, fit_intercept):
    """``[Z^T, -I; 1^T, 0]`` of dense rows ``Z``, CSC, built column by column.

    A column ``(z_i, [1])`` per row of ``Z``, then ``-e_j`` per slack: the
    arrays of the CSC format are written directly, without the sparse
    intermediates of a conversion (a millisecond per reduced problem).
    Rows with exact zeros go through the conversion, which drops them.
    """
    m, p = Z.shape
    n_rows = p + int(fit_intercept)
    if not np.all(Z):
        dense = np.zeros((n_rows, m + n_slack))
        dense[:p, :m] = Z.T
        dense[np.arange(n_slack), m + np.arange(n_slack)] = -1.0
        if fit_intercept:
            dense[p, :m] = 1.0
        return sp.csc_matrix(dense)
    columns = np.empty((m, n_rows))
    columns[:, :p] = Z
    if fit_intercept:
        columns[:, p] = 1.0
    data = np.concatenate([columns.ravel(), np.full(n_slack, -1.0)])
    indices = np.concatenate(
        [
            np.tile(np.arange(n_rows, dtype=np.int32), m),
            np.arange(n_slack, dtype=np.int32),
        ]
    )
    indptr = np.concatenate(
        [
            np.arange(0, m * n_rows, n_rows, dtype=np.int32),
            m * n_rows + np.arange(n_slack + 1, dtype=np.int32),
        ]
    )
    return sp.csc_matrix((data, indices, indptr), shape=(n_rows, m + n_slack))


def _dual_constraints_sparse(Z, n_slack, fit_intercept):
    """``[Z^T, -I; 1^T, 0]`` (the ones row only with an intercept), CSC."""
    m, p = Z.shape
    Zc = Z.tocoo()
    rows = [Zc.col, np.arange(n_slack)]
    cols = [Zc.row, m + np.arange(n_slack)]
    data = [Zc.data, np.full(n_slack, -1.0)]
    if fit_intercept:
        rows.append(np.full(m, p))
        cols.append(np.arange(m))
        data.append(np.ones(m))
    return sp.csc_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(p + int(fit_intercept), m + n_slack),
    )


def _gather_rows(X, idx):
    """Rows ``idx`` of ``X`` in float64: dense for dense ``X``, else CSR."""
    if sp.issparse(X):
        return _sparse_rows(X, idx)
    return np.asarray(X[idx], dtype=np.float64)


def solve_lp(X, y, quantile, sample_weight, alpha, fit_intercept, *, method="highs"):
    r"""Minimise the penalised pinball objective by one linear programme.

    Solves

    .. math::

        \min_{w, b} \frac{1}{S} \sum_i s_i \, \rho_q(y_i - x_i^\top w - b)
        + \alpha \lVert w \rVert_1

    as scikit-learn's ``QuantileRegressor`` does: with variables
    ``w+, w-, [b+, b-], u, v >= 0``, the constraints
    ``X (w+ - w-) + (b+ - b-) + u - v = y`` and the cost
    ``alpha S (w+ + w-) + sum_i s_i (q u_i + (1 - q) v_i)``, all costs being
    divided by the mean positive weight for scaling. Rows of zero weight are
    dropped first: they do not enter the objective. The constraint matrix is
    sparse, so memory is linear in ``n``, but the simplex method is slow for
    large ``n`` (see :func:`solve_exact`).

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Any real dtype, C or Fortran order, CSR or CSC; never modified.
    y : array-like of shape (n_samples,)
    quantile : float
        ``q`` in (0, 1).
    sample_weight : array-like of shape (n_samples,) or None
        Non-negative weights with a positive sum; None for ones.
    alpha : float
        Non-negative L1 penalty strength.
    fit_intercept : bool
        Whether to fit the unpenalised intercept ``b``.
    method : str, default="highs"
        Passed to :func:`scipy.optimize.linprog` (``"highs-ipm"`` is several
        times faster on large problems).

    Returns
    -------
    coef : ndarray of shape (n_features,)
    intercept : float
        0.0 when ``fit_intercept`` is False.

    Raises
    ------
    RuntimeError
        If HiGHS does not report an optimal solution.
    """
    X, y, s, S = _check_inputs(X, y, quantile, sample_weight, alpha)
    pos = np.flatnonzero(s > 0)
    s_hat = S / pos.size
    Z = _sparse_rows(X, pos)
    return _primal_lp(
        Z, y[pos], s[pos] / s_hat, quantile, alpha * pos.size, fit_intercept, method
    )


# ----------------------------------------------------------------------------
# The certificate of a reduced problem
# ----------------------------------------------------------------------------


def certify_signs(r, y, s, above, below, objective, n_coef):
    r"""Whether a reduced problem's minimiser minimises the full objective.

    A reduced problem replaces the rows ``A`` assumed above the fit, and
    ``B`` assumed below, by one pseudo-observation each. ``rho_q`` is
    positively homogeneous and subadditive, so the reduced objective ``G``
    is at most ``F`` everywhere, with equality wherever ``r_i >= 0`` on
    ``A`` and ``r_i <= 0`` on ``B``; at the minimiser ``theta`` of ``G``,

    .. math::

        F(\theta) - \min F \le F(\theta) - G(\theta)
        \le \frac1S \sum_{i\ \text{of the wrong sign}} s_i |r_i|.

    ``theta`` is accepted when that bound is below ``1e-12 S F(theta)``
    plus the rounding error ``gamma_i`` of the residuals of the offending
    rows (exact zeros, from ties or duplicated rows, are never wrong).

    Parameters
    ----------
    r : ndarray of shape (n_samples,)
        Residuals ``y - X w - b`` at the reduced problem's minimiser.
    y : ndarray of shape (n_samples,)
    s : ndarray of shape (n_samples,)
        Weights.
    above, below : ndarray of bool, shape (n_samples,)
        The rows replaced by the pseudo-observation above / below the fit.
    objective : callable
        ``objective()`` is ``S F(theta)``, the weighted sum of pinball
        losses plus penalty (only evaluated when some sign is wrong).
    n_coef : int
        Number of coefficients, intercept included (for the rounding bound).

    Returns
    -------
    accepted : bool
        True if ``theta`` is a minimiser of ``F`` to within the bound.
    wrong : ndarray of int
        The rows of the wrong sign beyond rounding (empty when accepted).
    """
    violations = np.flatnonzero((above & (r < 0)) | (below & (r > 0)))
    if violations.size == 0:
        return True, violations
    # Rounding of r_i = y_i - x_i w - b is about (p + 2) eps times the
    # magnitudes involved: residuals that small are zeros (ties, duplicated
    # rows) and cost at most s_i * gamma_i in objective.
    eps = np.finfo(np.float64).eps
    r_v = np.abs(r[violations])
    y_v = y[violations]
    gamma = 4.0 * (n_coef + 2) * eps * (np.abs(y_v) + np.abs(y_v - r[violations]))
    s_v = s[violations]
    if float(s_v @ r_v) <= _GAP_RTOL * objective() + float(s_v @ gamma):
        return True, violations[:0]
    return False, violations[r_v > gamma]
