r"""Exact weighted, L1-penalised quantile regression by preprocessing and LP.

The objective is the one of :class:`sklearn.linear_model.QuantileRegressor`
(whose code uses ``alpha_eff = sum(sample_weight) * alpha``):

.. math::

    F(w, b) = \frac{1}{S} \sum_i s_i \, \rho_q(y_i - x_i^\top w - b)
              + \alpha \lVert w \rVert_1,
    \qquad S = \sum_i s_i,
    \qquad \rho_q(r) = \max(q r, (q - 1) r).

The intercept ``b`` (only with ``fit_intercept``) is not penalised.

:func:`solve_lp` solves the whole linear programme, formulated like
scikit-learn's ``_quantile.py``. It is the reference, but the simplex method
on ``n`` equality rows scales badly (about 20 s at ``n = 20000``, ``p = 20``).

:func:`solve_exact` gets the same minimiser much faster with the
preprocessing of Portnoy and Koenker ("The Gaussian hare and the Laplacian
tortoise", Statistical Science 12, 1997; ``quantreg::rq.fit.pfn``): starting
from a good preliminary fit it keeps the ``m ~ sqrt(n p)`` observations whose
residual sign is uncertain, replaces all observations confidently above the
fit by one pseudo-observation and all those confidently below by another,
solves that small problem exactly, and checks the signs it assumed. The small
problem is solved through its dual, which has only ``p + 1`` equality rows and
box-bounded variables (ten times faster with HiGHS than the primal form).

Only numpy and scipy are used. ``X`` is never copied densely as a whole and
never modified: dense ``X`` of a dtype other than float64 is converted in row
blocks of a few megabytes, and only row subsets are gathered.
"""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

__all__ = ["pinball_objective", "solve_exact", "solve_lp"]

# Rows per dense block: about 2 MiB of float64 per converted block.
_BLOCK_ELEMENTS = 2**18

# Size of the first kept set, m = _SIZE_FACTOR * sqrt(n_pos * (p + intercept)),
# clipped to [_MIN_SIZE, n_pos]. Portnoy & Koenker: if the preliminary fit is
# off by O(sqrt(p / n)), each residual moves by about that much, so about
# n * density * sqrt(p / n) = O(sqrt(n p)) observations can change sign. The
# factor was tuned on Gaussian designs with t(2) noise (homo- and
# heteroscedastic), q from 0.05 to 0.95, starting from least squares (then
# refined by one Newton step) or from a smoothed quantile fit: with 1, at
# n = 20000, p = 20 the first reduced problem was accepted in 36 of 40 cases
# from least squares and 30 of 30 from the smoothed fit, one fix-up round
# doing the rest; at n = 1e6 all 20 were accepted at once. A larger factor makes
# misses rarer but the LP, the dominant cost, slower (its time grows a bit
# faster than m), and each miss costs one pass over X plus one more LP.
_SIZE_FACTOR = 1.0
# Below a few hundred kept rows the LP takes a few milliseconds anyway, and a
# wider band makes a failed sign check (an extra round) less likely.
_MIN_SIZE = 300
# When the kept set would be more than this fraction of the rows, the reduced
# problem is hardly smaller than the full one: solve the full one instead.
_FULL_FRACTION = 0.5
# quantreg's rule: if more wrongly globbed rows turn up than this fraction of
# m, the band was too narrow; double m and rebuild the kept set around the
# best fit so far instead of only moving the wrong rows into it.
_FIXUP_FRACTION = 0.1
# A globbed observation of the wrong sign costs at most s_i |r_i| / S in
# objective (see solve_exact). Violations whose total is below this fraction
# of the objective are accepted: far below the accuracy of the LP solver.
_GAP_RTOL = 1e-12
# The primal point recovered from HiGHS's dual solution is accepted when its
# duality gap is below this fraction of the objective; in tests the gap was
# below 2e-12 relative (median 3e-16), so this only rejects a broken recovery.
_DUALITY_RTOL = 1e-9
# The Newton refinement of the start costs a (p+1)^2 Gram matrix, n p^2
# flops; above this many coefficients that is no longer cheap next to the LP.
_NEWTON_MAX_COEF = 200
# ... and it is only applied if it moves the residuals (root mean square) by
# more than this fraction of the band's half-width.
_NEWTON_MIN_SHIFT = 0.2
# Dual LPs with more columns (kept rows) than this go to HiGHS's interior
# point solver first, smaller ones to its dual simplex (measured crossover).
_IPM_MIN_COLUMNS = 3000


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
# preliminary fit are moved to that distance before the LP (solve_exact).
_CLIP_MADS = 50.0


def _check_inputs(X, y, quantile, sample_weight, alpha):
    """Validated ``(X, y, s, S)``; ``y`` and ``s`` as new float64 vectors."""
    X = _check_X(X)
    n = X.shape[0]
    y = np.array(y, dtype=np.float64).ravel()
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} entries, X has {n} rows")
    if not np.all(np.isfinite(y)):
        raise ValueError("y must be finite")
    if sample_weight is None:
        s = np.ones(n)
    else:
        s = np.array(sample_weight, dtype=np.float64).ravel()
        if s.shape[0] != n:
            raise ValueError(f"sample_weight has {s.shape[0]} entries, X has {n}")
        if not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ValueError("sample_weight must be finite and non-negative")
        # F is a weighted mean: scaling the weights to a largest of 1 changes
        # nothing but keeps their sum from overflowing.
        top = s.max(initial=0.0)
        if top > 0:
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


def _gram_sample(X, s, pos, fit_intercept):
    """Approximate ``sum_i s_i z_i z_i^T``, ``z_i = (x_i, [1])``, from a row sample.

    Only used to scale a Newton step whose density factor is far cruder
    than the few per cent of error of a sample of ``max(20 (p+1), 2**18 /
    (p+1))`` rows; a strided sample stays representative when the rows are
    sorted, and costs nothing next to a pass over ``X``.
    """
    p = X.shape[1]
    p1 = p + int(fit_intercept)
    n_sub = min(pos.size, max(20 * p1, _BLOCK_ELEMENTS // max(p1, 1)))
    sub = pos[:: max(1, pos.size // n_sub)]
    Zs = np.empty((sub.size, p1))
    Zs[:, :p] = X[sub].toarray() if sp.issparse(X) else X[sub]
    if fit_intercept:
        Zs[:, p] = 1.0
    Zs *= np.sqrt(s[sub])[:, None]
    return (Zs.T @ Zs) * (s[pos].sum() / s[sub].sum())


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
    return np.maximum(quantile * r, (quantile - 1.0) * r)


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
    loss = _weighted_sum(s, _pinball(r, quantile))
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
    d = np.asarray(abs(Z).max(axis=0).todense(), dtype=np.float64).ravel()
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


def _dual_lp(Z, y, w, quantile, lam, fit_intercept):
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
    Z = Z @ sp.diags(1.0 / d, format="csr")
    y = y / sigma
    Zc = Z.tocoo()
    rows = [Zc.col, np.arange(n_slack)]
    cols = [Zc.row, m + np.arange(n_slack)]
    data = [Zc.data, np.full(n_slack, -1.0)]
    if fit_intercept:
        rows.append(np.full(m, p))
        cols.append(np.arange(m))
        data.append(np.ones(m))
    A = sp.csc_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, m + n_slack),
    )
    bounds = np.column_stack(
        [
            np.concatenate([(quantile - 1.0) * w, -lam / d[:n_slack]]),
            np.concatenate([quantile * w, lam / d[:n_slack]]),
        ]
    )
    c = np.concatenate([-y, np.zeros(n_slack)])
    # The dual simplex is fastest on small problems; its cost per iteration
    # grows with the number of columns and HiGHS's interior point method
    # (with crossover to a vertex) wins beyond a few thousand. The other one
    # is the second try.
    methods = ["highs-ds", "highs-ipm"]
    if m > _IPM_MIN_COLUMNS:
        methods.reverse()
    for method in methods:
        res = linprog(c, A_eq=A, b_eq=np.zeros(n_rows), bounds=bounds, method=method)
        if res.status != 0 or res.eqlin is None:
            continue
        theta = -np.asarray(res.eqlin.marginals, dtype=np.float64)
        coef = theta[:p]
        if n_slack:
            # Complementary slackness: w_j can differ from 0 only where its
            # slack t_j sits at a bound +-lam / d_j. A slack strictly inside
            # is basic, its reduced cost -w_j is zero at the vertex, and
            # what HiGHS reports (~1e-14) is rounding: make it an exact zero.
            slack = np.abs(res.x[m:])
            coef = np.where(slack < lam / d, 0.0, coef)
        intercept = float(theta[p]) if fit_intercept else 0.0
        # Certificate: the primal value at the recovered point against the
        # dual value. Degenerate or rank-deficient problems (duplicated
        # columns, p > m) have many dual solutions; any optimal one is a
        # primal minimiser, and this check catches a recovery gone wrong.
        r = y - Z @ coef - intercept
        primal = _weighted_sum(w, _pinball(r, quantile))
        primal += lam * float(np.abs(coef / d).sum())
        dual = -float(res.fun)
        # Absolute floor for objectives near 0 (interpolation, p >= m): the
        # rounding error of the residuals, as in solve_exact's sign check.
        floor = 4.0 * (p + 3) * np.finfo(np.float64).eps
        floor *= _weighted_sum(w, np.abs(y) + np.abs(y - r))
        if abs(primal - dual) <= _DUALITY_RTOL * max(abs(primal), abs(dual)) + floor:
            return sigma * coef / d, sigma * intercept, True
    return None, None, False


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


def _solve_full(X, y, s, pos, quantile, alpha, fit_intercept):
    """The full problem: dual LP, with the primal LP if its certificate fails."""
    s_hat = s[pos].sum() / pos.size
    Z = _sparse_rows(X, pos)
    w = s[pos] / s_hat
    lam = alpha * pos.size
    coef, intercept, ok = _dual_lp(Z, y[pos], w, quantile, lam, fit_intercept)
    if ok:
        return coef, intercept, "full"
    coef, intercept = _primal_lp(Z, y[pos], w, quantile, lam, fit_intercept)
    return coef, intercept, "full-primal"


# ----------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------


def _weighted_quantile(r, s, quantile):
    """Smallest ``t`` with ``sum(s[r <= t]) >= quantile * sum(s)``, in O(n).

    A strided pilot sample brackets ``t``; only the values inside the bracket
    are sorted. Sorting all of ``r`` costs more than the rest of the
    preprocessing at ``n = 1e6``.
    """
    n = r.size
    if n > 0 and s[0] == s.min() == s.max():
        # Equal weights: the ceil(q n)-th smallest value, by selection.
        k = min(max(int(np.ceil(quantile * n)) - 1, 0), n - 1)
        return float(np.partition(r, k)[k])
    target = quantile * float(s.sum())

    def exact(values, weights, below):
        order = np.argsort(values, kind="stable")
        cum = below + np.cumsum(weights[order])
        k = min(int(np.searchsorted(cum, target)), values.size - 1)
        return float(values[order[k]])

    if n <= 20000:
        return exact(r, s, 0.0)
    step = n // 10000
    pilot_r, pilot_s = r[::step], s[::step]
    order = np.argsort(pilot_r)
    pilot_r, cum = pilot_r[order], np.cumsum(pilot_s[order])
    cum /= cum[-1]
    last = pilot_r.size - 1
    # Kish's effective sample size of the pilot: unequal weights make its
    # quantile noisier.
    n_eff = float(pilot_s.sum()) ** 2 / float(pilot_s @ pilot_s)
    half = 5.0 * np.sqrt(quantile * (1 - quantile) / n_eff) + 2.0 / pilot_r.size
    for _ in range(3):
        lo_k = int(np.searchsorted(cum, quantile - half))
        hi_k = int(np.searchsorted(cum, quantile + half))
        lo = pilot_r[lo_k] if lo_k > 0 else -np.inf
        hi = pilot_r[hi_k] if hi_k < last else np.inf
        below = float(s[r < lo].sum())
        # The answer is in [lo, hi] iff less than the target weight lies
        # strictly below lo and at least the target at or below hi.
        if below < target <= float(s[r <= hi].sum()):
            inside = (r >= lo) & (r <= hi)
            return exact(r[inside], s[inside], below)
        half *= 4.0
    return exact(r, s, 0.0)


def _nearest(d, pos, m):
    """Indices of the ``m`` positive-weight rows with the smallest ``d``."""
    cand = d if pos is None else d[pos]
    if m >= cand.size:
        sel = np.arange(cand.size)
    else:
        sel = np.argpartition(cand, m - 1)[:m]
    return sel if pos is None else pos[sel]


def _side_sums(X, y, s, above):
    """Weighted sums of ``x``, ``1`` and ``y`` over the rows above / below the fit.

    Returns ``(sx, ss, sy)`` of shapes ``(2, p)``, ``(2,)``, ``(2,)``: row 0
    sums over ``above``, row 1 over the rest (rows of zero weight add 0).
    One pass over ``X``. They give both the subgradient of the pinball loss
    (for the Newton step) and, minus the kept rows, the two
    pseudo-observations.
    """
    Vt = np.empty((2, s.size))
    np.multiply(s, above, out=Vt[0])
    np.multiply(s, ~above, out=Vt[1])
    return _lmatmat(Vt, X), Vt.sum(axis=1), (Vt * y).sum(axis=1)


def _one_step(X, s, pos, sums, coef, quantile, penalty, fit_intercept, density):
    r"""Newton step of ``sum_i s_i rho_q(r_i) + penalty ||w||_1`` at the fit.

    The expected pinball loss has gradient ``-sum_i s_i psi(r_i) z_i`` with
    ``psi(r) = q - 1{r < 0}``, ``z_i = (x_i, [1])``, and Hessian
    ``sum_i s_i f_i z_i z_i^T`` where ``f_i`` is the density of the error at
    the ``q``-quantile; with one common density estimate this is the
    classical one-step estimator. From a root-n consistent start its error is
    the start's error times the relative error of the density estimate, plus
    a remainder of order ``n^(-3/4)`` (Bahadur representation). The L1 term
    only enters through its gradient ``penalty * sign(w)``: the step just
    centres the band, it need not land on the penalised optimum.

    ``sums`` are the :func:`_side_sums` of the residuals ``r >= 0``, so that
    ``sum_i s_i psi(r_i) z_i = q sums[0] - (1 - q) sums[1]``.

    Returns the step ``(dw, [db])`` (``lstsq`` copes with a singular Gram
    matrix: duplicated or constant columns, ``p`` close to ``n``) and the
    root mean square ``sqrt(step' G step / S)`` by which it would move the
    residuals, computed without a pass over ``X``.
    """
    sx, ss, _ = sums
    grad = quantile * sx[0] - (1.0 - quantile) * sx[1]
    grad -= penalty * np.sign(coef)
    if fit_intercept:
        grad = np.append(grad, quantile * ss[0] - (1.0 - quantile) * ss[1])
    gram = _gram_sample(X, s, pos, fit_intercept)
    # Jacobi scaling first: lstsq's cut-off is relative to the largest
    # singular value, and columns of X on scales far from that of the
    # intercept would otherwise look like a null space.
    root = np.sqrt(np.diag(gram))
    root[~(root > 0)] = 1.0
    step = np.linalg.lstsq(gram / np.outer(root, root), grad / root, rcond=None)[0]
    step /= root * density
    shift = np.sqrt(max(float(step @ gram @ step), 0.0) / float(s[pos].sum()))
    return step, shift


def solve_exact(
    X,
    y,
    quantile,
    sample_weight,
    alpha,
    fit_intercept,
    coef_init,
    intercept_init,
    **kwargs,
):
    """Exact minimiser of the penalised pinball objective, robust to wild targets.

    :func:`_solve_exact_unclipped` on a better-posed but equivalent
    problem: the weights are scaled to a largest of 1 (``F`` does not
    change), and targets further than ``_CLIP_MADS`` robust scales from the
    preliminary fit are moved to that distance, on the same side. HiGHS's
    tolerances are absolute, so one target of ``1e20`` among ones would
    otherwise cost the rest of the problem all its digits. The pinball
    loss is linear on each side of zero, so where every moved row keeps a
    residual of strictly the same sign, the true objective and the clipped
    one differ by a constant: the clipped problem's minimiser is a local,
    hence (by convexity) global, minimiser of the true one. That is checked
    at the solution; if a moved row crossed or reached zero, the problem is
    solved again unclipped. Parameters and returns are those of
    :func:`_solve_exact_unclipped`.
    """
    X = _check_X(X)
    y = np.array(y, dtype=np.float64).ravel()
    if sample_weight is not None:
        sample_weight = np.array(sample_weight, dtype=np.float64).ravel()
        top = sample_weight.max(initial=0.0)
        if top > 0:
            sample_weight = sample_weight / top
    args = (quantile, sample_weight, alpha, fit_intercept)
    p = X.shape[1]
    w0 = np.zeros(p) if coef_init is None else np.asarray(coef_init, dtype=float)
    b0 = float(intercept_init or 0.0) if fit_intercept else 0.0
    if not np.all(np.isfinite(y)):
        return _solve_exact_unclipped(X, y, *args, coef_init, intercept_init, **kwargs)
    fitted = _matvec(X, w0) + b0
    residuals = y - fitted
    keep = slice(None) if sample_weight is None else sample_weight > 0

    def mad(v):
        return float(np.median(np.abs(v - np.median(v)))) if v.size else 0.0

    # In MADs of the residuals, but never fewer than MADs of y, or than the
    # median size of y: a start that nearly interpolates, or y with more than
    # half its values tied, must not make ordinary rows "far".
    y_keep = y[keep]
    size = float(np.median(np.abs(y_keep))) if y_keep.size else 0.0
    limit = _CLIP_MADS * max(mad(residuals[keep]), mad(y_keep), size)
    moved = np.abs(residuals) > limit
    if not (limit > 0 and np.any(moved)):
        return _solve_exact_unclipped(X, y, *args, coef_init, intercept_init, **kwargs)
    # From the fitted value, not y - shift, which would cancel for y ~ 1e20.
    y_clipped = y.copy()
    y_clipped[moved] = fitted[moved] + np.copysign(limit, residuals[moved])
    coef, intercept, info = _solve_exact_unclipped(
        X, y_clipped, *args, coef_init, intercept_init, **kwargs
    )
    at_solution = y_clipped - _matvec(X, coef) - intercept
    # Clearly on their side: a moved row left at a zero residual is basic,
    # and the argument needs a neighbourhood (and HiGHS's tolerances).
    if np.all(at_solution[moved] * np.sign(residuals[moved]) > 1e-3 * limit):
        info["clipped"] = int(moved.sum())
        return coef, intercept, info
    return _solve_exact_unclipped(X, y, *args, coef, intercept, **kwargs)


def _solve_exact_unclipped(
    X,
    y,
    quantile,
    sample_weight,
    alpha,
    fit_intercept,
    coef_init,
    intercept_init,
    *,
    initial_size=None,
    max_rounds=6,
):
    r"""Exact minimiser of the penalised pinball objective, by preprocessing.

    Minimises

    .. math::

        F(w, b) = \frac{1}{S} \sum_i s_i \, \rho_q(y_i - x_i^\top w - b)
                  + \alpha \lVert w \rVert_1

    exactly (to the accuracy of the HiGHS LP solver, as :func:`solve_lp`),
    with the preprocessing of Portnoy & Koenker (1997) around a preliminary
    fit ``(coef_init, intercept_init)``, e.g. a smoothed quantile fit.

    **Start.** Residuals ``r`` of the preliminary fit are shifted by their
    weighted ``q``-quantile (with an intercept; without one the fit cannot
    shift). Unless ``p + 1 > 200``, one Newton step (:func:`_one_step`, with
    the error density estimated from the ``m`` rows nearest the fit) refines
    the start; it is kept if it lowers ``F``. This makes a least-squares
    start nearly as good as a quantile one. The gradient comes with the pass
    that the pseudo-observations need anyway and the Hessian from a row
    sample; only a step that moves the residuals by more than a fifth of the
    band's half-width is applied, at the price of two more passes over ``X``.

    **Reduced problem.** Keep the set ``K`` of the ``m`` rows with the
    smallest ``|r_i|``; call the other rows with ``r_i >= 0`` the set ``A``
    (above) and those with ``r_i < 0`` the set ``B`` (below). With
    ``e_i = y_i - x_i^T w - b`` the residuals of a candidate ``(w, b)``, solve

    .. math::

        G(w, b) = \frac{1}{S}\Big[\sum_{i \in K} s_i \rho_q(e_i)
                  + \rho_q\Big(\sum_{i \in A} s_i e_i\Big)
                  + \rho_q\Big(\sum_{i \in B} s_i e_i\Big)\Big]
                  + \alpha \lVert w \rVert_1,

    i.e. ``A`` and ``B`` each replaced by one pseudo-observation
    ``(sum s_i x_i, sum s_i y_i)`` whose intercept entry is ``sum s_i``.

    **Why the answer is exact.** ``rho_q`` is positively homogeneous and
    subadditive, so ``rho_q(sum s_i e_i) <= sum s_i rho_q(e_i)``: ``G <= F``
    everywhere, with equality wherever ``e_i >= 0`` on ``A`` and
    ``e_i <= 0`` on ``B`` (``rho_q`` is linear on each half-line). Hence if
    the minimiser ``theta`` of ``G`` satisfies these signs,
    ``F(theta) = G(theta) <= G(theta') <= F(theta')`` for every
    ``theta'``: ``theta`` minimises ``F`` globally. More generally
    ``F(theta) - min F <= F(theta) - G(theta) <= (1 / S) sum_{wrong sign}
    s_i |e_i|`` (as ``G(theta) = min G <= min F``), and
    ``theta`` is accepted when that bound is below ``1e-12 F(theta)`` plus
    the rounding error of the residuals of the offending rows (exact zeros,
    from ties or duplicated rows, are never wrong). The pseudo-observations
    keep ``G >= 0``; a linear cost term per set instead would make ``G``
    unbounded below whenever ``K`` leaves a direction of ``w`` free.

    **Repairs.** If a few rows (at most ``0.1 m``) have the wrong sign they
    join ``K`` and ``G`` is minimised again. If there are more, the band was
    too narrow for the start (``G``'s minimiser is then typically far off):
    ``m`` doubles and ``K`` is rebuilt around the best fit so far by ``F``
    (quantreg's rule). After ``max_rounds`` reduced problems, or once ``K``
    holds more than half of the rows, the full problem is solved instead.

    Each LP, reduced or full, is solved through its dual, with ``p + 1``
    equality rows and box bounds; the primal point is checked against the
    dual value and, should that certificate fail, the full problem is solved
    in :func:`solve_lp`'s formulation.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Any real dtype, C or Fortran order, CSR or CSC; never modified and
        never copied densely as a whole.
    y : array-like of shape (n_samples,)
    quantile : float
        ``q`` in (0, 1).
    sample_weight : array-like of shape (n_samples,) or None
        Non-negative weights with a positive sum; None for ones. Rows of zero
        weight are ignored.
    alpha : float
        Non-negative L1 penalty strength.
    fit_intercept : bool
        Whether to fit the unpenalised intercept ``b``.
    coef_init : array-like of shape (n_features,) or None
        Preliminary coefficients (None for zeros). Any value gives the exact
        answer; a good one makes it fast.
    intercept_init : float or None
        Preliminary intercept, ignored without ``fit_intercept``.
    initial_size : int, default=None
        Size ``m`` of the first kept set. The default is
        ``2 sqrt(n_pos (p + fit_intercept))`` clipped to ``[300, n_pos]``
        (``n_pos`` rows of positive weight), and the full problem is solved
        directly when it exceeds ``n_pos / 2`` (small ``n``, or ``p`` close to
        ``n``). An explicit value is only clipped to ``[1, n_pos]``.
    max_rounds : int, default=6
        Maximum number of reduced problems before the full one is solved.

    Returns
    -------
    coef : ndarray of shape (n_features,)
    intercept : float
        0.0 when ``fit_intercept`` is False.
    info : dict
        ``rounds`` (reduced problems solved), ``reduced_size`` (rows of the
        last kept set, without the two pseudo-observations; ``n_pos`` for the
        full problem), ``refined`` (whether the Newton step was kept),
        ``fallback`` (True if the reduced path was given up for the full
        problem) and ``solver`` (``"reduced"``, ``"full"`` or
        ``"full-primal"``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((2000, 3))
    >>> y = X @ [1.0, -2.0, 0.5] + rng.standard_t(2, size=2000)
    >>> coef, b, info = solve_exact(
    ...     X, y, 0.8, None, 0.0, True, np.zeros(3), 0.0, initial_size=200
    ... )
    >>> info["solver"]
    'reduced'
    >>> coef_lp, b_lp = solve_lp(X, y, 0.8, None, 0.0, True)
    >>> f = pinball_objective(X, y, coef, b, 0.8, None, 0.0)
    >>> f_lp = pinball_objective(X, y, coef_lp, b_lp, 0.8, None, 0.0)
    >>> bool(abs(f - f_lp) <= 1e-9 * f_lp)
    True
    """
    X, y, s, S = _check_inputs(X, y, quantile, sample_weight, alpha)
    q = float(quantile)
    n, p = X.shape
    fit_intercept = bool(fit_intercept)
    p1 = p + int(fit_intercept)
    pos_mask = s > 0
    pos = np.flatnonzero(pos_mask)
    n_pos = pos.size
    pos_or_none = None if n_pos == n else pos
    s_hat = S / n_pos  # LP costs in units of the mean weight: O(1) for HiGHS
    lam = alpha * n_pos  # alpha * S in those units
    penalty = alpha * S  # in the units of sum_i s_i rho_q(r_i)
    info = {"rounds": 0, "reduced_size": n_pos, "refined": False, "fallback": False}

    if initial_size is None:
        m = int(np.ceil(_SIZE_FACTOR * np.sqrt(n_pos * max(p1, 1))))
        m = min(max(m, _MIN_SIZE), n_pos)
        direct = m > _FULL_FRACTION * n_pos
    else:
        m = min(max(int(initial_size), 1), n_pos)
        direct = m >= n_pos
    if direct:
        coef, intercept, info["solver"] = _solve_full(
            X, y, s, pos, q, alpha, fit_intercept
        )
        return coef, intercept, info

    coef = np.zeros(p) if coef_init is None else np.asarray(coef_init, float).ravel()
    if coef.shape != (p,):
        raise ValueError(f"coef_init must have shape ({p},), got {coef.shape}")
    coef = coef.copy()
    b = float(intercept_init) if fit_intercept and intercept_init is not None else 0.0

    def residuals(coef, b):
        return y - _matvec(X, coef) - b

    def centred(r, b):
        # With an intercept the best shift of a fit is the weighted
        # q-quantile of its residuals: centre the band there.
        if fit_intercept:
            if pos_or_none is None:
                t = _weighted_quantile(r, s, q)
            else:
                t = _weighted_quantile(r[pos], s[pos], q)
            return r - t, b + t
        return r, b

    def objective(r, coef):  # S * F, zero-weight rows contribute 0
        loss = _weighted_sum(s, _pinball(r, q))
        return loss + penalty * float(np.abs(coef).sum())

    r, b = centred(residuals(coef, b), b)
    best_obj = objective(r, coef)
    kept_idx = _nearest(np.abs(r), pos_or_none, m)
    above = r >= 0  # side of each globbed row, fixed when it is globbed
    sums = _side_sums(X, y, s, above)
    h = float(np.abs(r[kept_idx]).max())
    if p1 <= _NEWTON_MAX_COEF and h > 0:
        # Density of the errors at the fit: weight within +-h over 2 h S.
        density = float(s[np.abs(r) <= h].sum()) / (2.0 * h * S)
        step, shift = _one_step(
            X, s, pos, sums, coef, q, penalty, fit_intercept, density
        )
        # A step that moves the residuals by a small fraction of the band's
        # half-width cannot change the band much (a quantile-type start):
        # skip the passes that apply it.
        if shift > _NEWTON_MIN_SHIFT * h:
            coef1 = coef + step[:p]
            b1 = b + (step[p] if fit_intercept else 0.0)
            r1, b1 = centred(residuals(coef1, b1), b1)
            obj1 = objective(r1, coef1)
            if obj1 < best_obj:
                coef, b, r, best_obj = coef1, b1, r1, obj1
                kept_idx = _nearest(np.abs(r), pos_or_none, m)
                above = r >= 0
                sums = _side_sums(X, y, s, above)
                info["refined"] = True
    best_r = r

    kept = np.zeros(n, dtype=bool)
    kept[kept_idx] = True
    limit = max(_FULL_FRACTION * n_pos, m)
    eps = np.finfo(np.float64).eps

    for rnd in range(1, max_rounds + 1):
        info["rounds"] = rnd
        glob_a = pos_mask & ~kept & above
        glob_b = pos_mask & ~kept & ~above
        K = np.flatnonzero(kept)
        info["reduced_size"] = K.size
        ZK = _sparse_rows(X, K)
        # The pseudo-observations: the side sums over all rows minus those
        # over the kept rows, which are at hand (no pass over X). Their
        # weights are summed directly, so that an empty side is exactly 0.
        VK = np.vstack([s[K] * above[K], s[K] * ~above[K]])
        sx = sums[0] - np.asarray((ZK.T @ VK.T).T)
        sy = sums[2] - VK @ y[K]
        ss = np.array([_weighted_sum(s, glob_a), _weighted_sum(s, glob_b)])
        has = ss > 0
        # They are divided by their total weight so that their rows are on
        # the scale of the others; their cost weight carries the total
        # instead (rho_q is positively homogeneous).
        Z = sp.vstack([ZK, sp.csr_matrix(sx[has] / ss[has, None])], format="csr")
        yy = np.concatenate([y[K], sy[has] / ss[has]])
        ww = np.concatenate([s[K], ss[has]]) / s_hat
        coef, b, ok = _dual_lp(Z, yy, ww, q, lam, fit_intercept)
        if not ok:
            break
        r = residuals(coef, b)

        # Sign check on the globbed rows (all of positive weight). An exact
        # zero residual is of both signs.
        viol = np.flatnonzero((glob_a & (r < 0)) | (glob_b & (r > 0)))
        if viol.size == 0:
            info["solver"] = "reduced"
            return coef, b, info
        # Rounding of r_i = y_i - x_i w - b is about (p + 2) eps times the
        # magnitudes involved: residuals that small are zeros (ties,
        # duplicated rows) and cost at most s_i * gamma_i in objective.
        r_v = np.abs(r[viol])
        gamma = 4.0 * (p1 + 2) * eps * (np.abs(y[viol]) + np.abs(y[viol] - r[viol]))
        if float(s[viol] @ r_v) <= _GAP_RTOL * objective(r, coef) + float(
            s[viol] @ gamma
        ):
            info["solver"] = "reduced"
            return coef, b, info
        bad = viol[r_v > gamma]
        if bad.size > _FIXUP_FRACTION * m:
            # Restart around the best fit so far, with a band twice as wide.
            obj = objective(r, coef)
            if obj < best_obj:
                best_obj, best_r = obj, r
            m = min(2 * m, n_pos)
            kept[:] = False
            kept[_nearest(np.abs(best_r), pos_or_none, m)] = True
            above = best_r >= 0
            sums = _side_sums(X, y, s, above)
        else:
            kept[bad] = True
        if kept.sum() > limit:
            break

    info["fallback"] = True
    info["reduced_size"] = n_pos
    coef, b, info["solver"] = _solve_full(X, y, s, pos, q, alpha, fit_intercept)
    return coef, b, info
