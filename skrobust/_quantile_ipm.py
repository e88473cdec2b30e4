r"""The dual LP of quantile regression by a primal-dual interior point method.

:func:`~skrobust._quantile_lp._dual_lp` solves, in scaled units,

.. math::

    \max_a \; y^\top a \quad\text{s.t.}\quad A a = 0,\;
    \ell \le a \le u,

whose columns are a row ``(z_i, [1])`` per observation (box
``[(q - 1) w_i, q w_i]``) and, with an L1 penalty, a column ``-e_j`` per
slack ``t_j`` (box ``[-lam_j, lam_j]``); the primal coefficients ``theta``
are the multipliers of ``A a = 0``. On wide designs (``p`` in the
thousands) HiGHS's interior point solver spends most of its time in
iterative solves preconditioned by a basis whose LU fills in, and the dual
simplex needs thousands of pivots on ``p`` dense rows. This module solves
the same LP as quantreg's ``rq.fit.fnb`` does (the Frisch-Newton method of
Portnoy and Koenker, "The Gaussian hare and the Laplacian tortoise",
Statistical Science 12, 1997): Mehrotra's predictor-corrector on the
bounded LP, whose every step is one Cholesky factorisation of the ``p + 1``
square matrix ``A D A^T`` (formed by BLAS from the row-scaled dense ``Z``,
or by a sparse product from a sparse one), then recovers an optimal
vertex (the one the simplex method returns, when the optimum is unique).

**Interior point** (:func:`_interior_point`). With ``x = a - l`` in
``[0, u - l]``, ``s = u - l - x``, the LP is ``max c^T x`` s.t.
``A x = b := -A l``, and its dual ``min b^T theta + (u - l)^T v`` s.t.
``A^T theta - z + v = c``, ``z, v >= 0``: ``c - A^T theta = v - z`` are the
residuals, ``v`` their positive part (paired with ``s``), ``z`` their
negative part (paired with ``x``). Newton's method on the perturbed
complementarity ``x z = mu``, ``s v = mu`` eliminates to

.. math::

    (A D A^\top)\, d\theta = A D \rho - r_p,\qquad
    D = (z / x + v / s)^{-1},\qquad
    dx = D (\rho - A^\top d\theta),

with ``r_p = b - A x`` and ``rho = r_d + r_{xz} / x - r_{sv} / s`` from the
dual residual ``r_d = c - A^T theta + z - v`` and the complementarity
targets. Mehrotra's predictor (``mu = 0``) gives the centring
``sigma = (mu_aff / mu)^3`` and the second-order term of the corrector,
both solved with one factorisation, and up to three of Gondzio's
centrality correctors (:func:`_centrality_correctors`), a solve each with
the same factor, lengthen the step. The start ``a = 0`` is primal
feasible and stays so.

**Vertex** (:func:`_vertex`). Near the optimum the columns strictly inside
their box (``min(x, s)`` large, ``|residual|`` small) are the basic ones of
an optimal vertex. The ``p + 1`` most clearly basic columns ``B`` give
``theta`` from ``A_B^T theta = c_B`` (the fit through those rows, and
``theta_j = 0`` for a basic slack); every other column goes to the bound
the sign of its residual asks for, and ``A_B a_B = -A_N a_N``. If ``a_B``
is within its box, ``(a, theta)`` is a primal-dual optimal vertex; the
caller checks its duality gap. Otherwise (degenerate or rank-deficient
problems) the caller's HiGHS dual simplex starts from that basis, whose
bounds follow the residuals' signs (dual feasible).
"""

import warnings

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.linalg.blas import dsyrk
from scipy.linalg.lapack import dpotrf

__all__ = ["solve_dual_ipm"]

# Step to this fraction of the way to the boundary (quantreg's beta).
_STEP_FRACTION = 0.99995
# Stop when the complementarity gap x'z + s'v is below this fraction of
# the dual objective and the dual infeasibility below the next times the
# largest cost. Two or three iterations more than a gap of 1e-8 needs, but
# from 1e-8 the vertex of the 2e4 x 1000 and sparse 2e4 x 2000 benchmark
# LPs was not yet feasible, and HiGHS's simplex from its basis cost 5 s more
# than the 3.5 s of the whole method.
_GAP_RTOL = 1e-10
_DUAL_RTOL = 1e-9
_MAX_ITER = 100
# Gondzio's centrality correctors (_centrality_correctors): at most this
# many per iteration, each aiming this much further along the direction
# than its steps reach, towards complementarity products within this
# factor of their target, and kept if the two steps together grow by this
# fraction of the aim. On the sparse 2e4 x 2000 benchmark LP: 20
# factorisations without, 15 with (3, 0.2, 0.1); 5 correctors or an aim of
# 0.3 or 0.5 took 16, as did a range of 0.05 or 0.2.
_MAX_CORRECTORS = 3
_CORRECTOR_AIM = 0.2
_PRODUCT_RANGE = 0.1
_CORRECTOR_GAIN = 0.1
# Relative size of the diagonal added to A D A^T when its Cholesky
# factorisation fails (duplicated columns, p close to m): the direction
# of theta along a null space of the design is then set to zero.
_REGULARISATION = 1e-12
# A basic a_i outside its box by at most this fraction of the box's width
# is rounding (HiGHS's primal feasibility tolerance is 1e-7 absolute).
_BOUND_RTOL = 1e-9


class _Columns:
    """The constraint matrix ``A`` of the dual LP, kept as its blocks.

    Columns: a row ``(z_i, [1])`` per observation, then ``-e_j`` per
    slack (``n_slack`` is ``p`` or 0); rows: the ``p`` coefficients and,
    with an intercept, a row of ones. ``Z`` stays dense or sparse as given.
    """

    def __init__(self, Z, n_slack, fit_intercept):
        self.Z = Z
        self.m, self.p = Z.shape
        self.n_slack = n_slack
        self.fit_intercept = fit_intercept
        self.n_rows = self.p + int(fit_intercept)
        self.n_cols = self.m + n_slack
        self.sparse = sp.issparse(Z)
        self._buffers = None  # (see normal_matrix)
        self._scaled = None
        if self.sparse:
            self.Z = sp.csr_matrix(Z)
            self.Zt = self.Z.T.tocsr()
            # The pseudo-observations (sums of many rows) are dense: in a
            # sparse product their p^2 terms cost more than all the other
            # rows' (2e4 x 2000 at 0.5%: 2 x 4e6 against 6e5), so they are
            # taken out and added by BLAS.
            counts = np.diff(self.Z.indptr)
            self.dense_rows = np.flatnonzero(counts > self.p // 4)
            self.sparse_rows = np.flatnonzero(counts <= self.p // 4)
            self.Z_dense = self.Z[self.dense_rows].toarray()
            self.Zt_sparse = self.Z[self.sparse_rows].T.tocsr()

    def matvec(self, v):
        """``A v``."""
        rows = v[: self.m]
        out = np.empty(self.n_rows)
        out[: self.p] = self.Zt @ rows if self.sparse else rows @ self.Z
        out[: self.n_slack] -= v[self.m :]
        if self.fit_intercept:
            out[self.p] = rows.sum()
        return out

    def rmatvec(self, theta):
        """``A^T theta``."""
        out = np.empty(self.n_cols)
        out[: self.m] = self.Z @ theta[: self.p]
        if self.fit_intercept:
            out[: self.m] += theta[self.p]
        out[self.m :] = -theta[: self.n_slack]
        return out

    def normal_matrix(self, d):
        """``A diag(d) A^T``, dense ``(p + 1)`` square (upper triangle valid).

        Written into the same two buffers at every iteration, the dense
        rows' ``dsyrk`` in place: fresh ``p x p`` arrays each time, and the
        sum of two of them, cost their page faults and passes (on the sparse
        ``2e4 x 2000`` benchmark a normal matrix took 49 ms, now 27 ms).
        """
        m, p = self.m, self.p
        dr = d[:m]
        if self._buffers is None:
            self._buffers = (np.empty((self.n_rows, self.n_rows)), np.empty((p, p)))
        M, block = self._buffers
        # BLAS writes the lower triangle of block.T (Fortran order, in
        # place): the upper triangle of block.
        if self.sparse:
            # Z_S^T D_S Z_S with the scaling written into a copy of Z_S^T's
            # entries (its column indices are the rows), then the dense rows.
            scaled = self.Zt_sparse.copy()
            scaled.data *= dr[self.sparse_rows][scaled.indices]
            (scaled @ self.Zt_sparse.T).toarray(out=block)
            if self.dense_rows.size:
                root = np.sqrt(dr[self.dense_rows])
                Zd = self.Z_dense * root[:, None]
                dsyrk(1.0, Zd.T, beta=1.0, c=block.T, trans=0, lower=1, overwrite_c=1)
        else:
            # dsyrk on the row-scaled Z: half the flops of a product, and
            # the dominant cost of an iteration (m p^2 / 2 multiply-adds).
            # (Into a buffer of its own: a fresh m x p array per iteration
            # costs its page faults, as the normal matrix's would.)
            if self._scaled is None:
                self._scaled = np.empty((m, p))
            Zs = np.multiply(self.Z, np.sqrt(dr)[:, None], out=self._scaled)
            dsyrk(1.0, Zs.T, beta=0.0, c=block.T, trans=0, lower=1, overwrite_c=1)
        M[:p, :p] = block
        M[np.arange(self.n_slack), np.arange(self.n_slack)] += d[m:]
        if self.fit_intercept:
            border = self.Zt @ dr if self.sparse else dr @ self.Z
            M[:p, p] = border
            M[p, :p] = border
            M[p, p] = dr.sum()
        return M

    def basis_matrix(self, basic):
        """``A_B^T``, dense: a row per basic column, Fortran-ordered.

        Written into the normal matrix's buffer, free once the interior
        point method has finished (fresh pages of ``(p + 1)^2`` doubles
        cost more than the vertex's LU factorisation, which then overwrites
        it in place).
        """
        rows = basic[basic < self.m]
        slacks = basic[basic >= self.m] - self.m
        k = basic.size
        buffer = self._buffers[0] if self._buffers is not None else None
        if buffer is None or buffer.shape != (k, k):
            buffer = np.empty((k, k))
        out = buffer.T
        out.fill(0.0)
        kept = self.Z[rows]
        if self.sparse:
            kept.sum_duplicates()
            kept = kept.tocoo()
            out[kept.row, kept.col] = kept.data
        else:
            out[: rows.size, : self.p] = kept
        if self.fit_intercept:
            out[: rows.size, self.p] = 1.0
        out[rows.size + np.arange(slacks.size), slacks] = -1.0
        return out, rows, slacks


def _factor(A, d):
    """Cholesky factor of ``A diag(d) A^T``, regularised if (numerically) singular.

    Factored in place, in the buffer of :meth:`_Columns.normal_matrix`: its
    valid upper triangle is the lower one of its transpose, a
    Fortran-ordered view that LAPACK takes without a copy. A copy of the
    ``p + 1`` square matrix per iteration is 32 MB at ``p = 2000``, whose
    fresh pages cost up to 0.4 s where the operating system hands them out
    lazily (a virtual machine's memory). Returns ``(factor, lower)`` for
    :func:`scipy.linalg.cho_solve`, or None.
    """
    M = A.normal_matrix(d)
    factor, info = dpotrf(M.T, lower=1, clean=0, overwrite_a=1)
    if info == 0:
        return factor, True
    # Not positive definite: the buffer holds a partial factor, so the
    # matrix is formed again and shifted in a copy (a rare path).
    M = A.normal_matrix(d)
    shift = _REGULARISATION * max(float(np.diag(M).max(initial=0.0)), 1.0)
    index = np.arange(M.shape[0])
    for _ in range(6):
        M_reg = M.copy()
        M_reg[index, index] += shift
        try:
            return scipy.linalg.cho_factor(M_reg, lower=False, check_finite=False)
        except np.linalg.LinAlgError:
            shift *= 100.0
    return None


def _max_step(v, dv):
    """Largest ``t <= 1`` with ``v + t dv >= 0``, times ``_STEP_FRACTION``."""
    neg = dv < 0
    if not np.any(neg):
        return 1.0
    return min(1.0, _STEP_FRACTION * float(np.min(-v[neg] / dv[neg])))


def _interior_point(A, c, width, x, theta):
    r"""Mehrotra's predictor-corrector for the LP in ``x`` (module notes).

    ``max c^T x`` s.t. ``A x = b``, ``0 <= x <= width``, from a strictly
    interior feasible ``x`` (``b = A x``) and a guess ``theta`` of the
    multipliers. Returns ``(x, theta, z, v, n_iter)``, or None if a
    factorisation fails or the iterates stop being finite.
    """
    b = A.matvec(x)
    s = width - x
    r = c - A.rmatvec(theta)
    # Dual slacks: the parts of the residuals, kept away from zero by their
    # mean size (quantreg adds a fixed 1e-6 to the tiny ones; the data are
    # scaled to order one here, and a floor of their size centres better).
    floor = max(float(np.mean(np.abs(r))), 1e-8)
    v = np.maximum(r, 0.0) + floor
    z = np.maximum(-r, 0.0) + floor
    n2 = 2.0 * x.size
    c_size = 1.0 + float(np.max(np.abs(c), initial=0.0))
    for n_iter in range(1, _MAX_ITER + 1):
        point = _Point(x, s, z, v)
        point.r_p = b - A.matvec(x)
        point.r_d = c - A.rmatvec(theta) + z - v
        gap = float(x @ z + s @ v)
        dual = float(b @ theta + width @ v)
        if not (np.isfinite(gap) and np.isfinite(dual)):
            return None
        if (
            gap <= _GAP_RTOL * max(abs(dual), 1.0)
            and np.max(np.abs(point.r_d), initial=0.0) <= _DUAL_RTOL * c_size
        ):
            return x, theta, z, v, n_iter
        point.d = 1.0 / (z / x + v / s)
        point.factor = _factor(A, point.d)
        if point.factor is None:
            return None
        # Predictor (mu = 0): how far the affine step gets sets the centring.
        dx, dtheta, dz, dv = point.direction(A, -x * z, -s * v)
        ap, ad = point.steps(dx, dz, dv)
        gap_aff = float((x + ap * dx) @ (z + ad * dz) + (s - ap * dx) @ (v + ad * dv))
        target = (gap_aff / gap) ** 3 * gap / n2
        # Corrector: centring and Mehrotra's second-order term.
        step = point.direction(A, target - x * z - dx * dz, target - s * v + dx * dv)
        (dx, dtheta, dz, dv), (ap, ad) = _centrality_correctors(point, A, step, target)
        x_new = x + ap * dx
        s_new = width - x_new
        if not (np.all(x_new > 0) and np.all(s_new > 0)):
            # s = width - x rounded to zero: a column within rounding of its
            # bound. The vertex is found from here.
            return x, theta, z, v, n_iter
        x, s = x_new, s_new
        theta = theta + ad * dtheta
        z = z + ad * dz
        v = v + ad * dv
    return x, theta, z, v, _MAX_ITER


def _centrality_correctors(point, A, step, target):
    r"""Gondzio's centrality correctors of a Mehrotra direction.

    From the direction ``step`` (steps ``alpha_p, alpha_d``) take the
    trial point ``alpha + _CORRECTOR_AIM`` along it; its complementarity
    products ``x z`` and ``s v`` far outside
    ``[_PRODUCT_RANGE * mu, mu / _PRODUCT_RANGE]`` (``mu = target``)
    are what stops the step at the boundary. A corrector direction with
    the linear residuals left out moves them back into that range:

    .. math::

        t = \operatorname{clip}(\pi, \beta \mu, \mu / \beta) - \pi,
        \qquad t \ge -\mu / \beta,

    and is kept while it lengthens the steps by ``_CORRECTOR_GAIN`` of the
    aim; at most ``_MAX_CORRECTORS`` of them (J. Gondzio, "Multiple
    centrality corrections in a primal-dual method for linear
    programming", Comput. Optim. Appl. 6, 1996). Each costs one solve with
    the iteration's factorisation (about 5 ms at ``p = 2000``, against 90
    ms for the factorisation), and they cut the factorisations of the
    sparse ``2e4 x 2000`` benchmark's LP from 20 to 15. Returns the
    direction and its steps.
    """
    steps = point.steps(step[0], step[2], step[3])
    low, high = _PRODUCT_RANGE * target, target / _PRODUCT_RANGE

    def push(products):
        return np.maximum(np.clip(products, low, high) - products, -high)

    for _ in range(_MAX_CORRECTORS):
        if min(steps) >= 1.0:
            break
        trial_p = min(1.0, steps[0] + _CORRECTOR_AIM)
        trial_d = min(1.0, steps[1] + _CORRECTOR_AIM)
        dx, dz, dv = step[0], step[2], step[3]
        xz = (point.x + trial_p * dx) * (point.z + trial_d * dz)
        sv = (point.s - trial_p * dx) * (point.v + trial_d * dv)
        corrector = point.direction(A, push(xz), push(sv), linear=False)
        corrected = tuple(a + b for a, b in zip(step, corrector, strict=True))
        new_steps = point.steps(corrected[0], corrected[2], corrected[3])
        if sum(new_steps) < sum(steps) + _CORRECTOR_GAIN * _CORRECTOR_AIM:
            break
        step, steps = corrected, new_steps
    return step, steps


class _Point:
    """An iterate ``(x, s, z, v)`` with its residuals and factorisation."""

    def __init__(self, x, s, z, v):
        self.x, self.s, self.z, self.v = x, s, z, v
        self.r_p = self.r_d = self.d = self.factor = None

    def direction(self, A, r_xz, r_sv, linear=True):
        """Newton direction ``(dx, dtheta, dz, dv)`` for complementarity targets.

        ``linear`` False leaves out the primal and dual residuals: the
        direction then only changes the complementarity products (a
        centrality corrector, added to a direction that has them).
        """
        x, s = self.x, self.s
        rho = r_xz / x - r_sv / s
        if linear:
            rho += self.r_d
        rhs = A.matvec(self.d * rho)
        if linear:
            rhs -= self.r_p
        dtheta = scipy.linalg.cho_solve(self.factor, rhs, check_finite=False)
        dx = self.d * (rho - A.rmatvec(dtheta))
        dz = (r_xz - self.z * dx) / x
        dv = (r_sv + self.v * dx) / s
        return dx, dtheta, dz, dv

    def steps(self, dx, dz, dv):
        """Primal and dual step lengths that keep ``x, s, z, v`` positive."""
        primal = min(_max_step(self.x, dx), _max_step(self.s, -dx))
        dual = min(_max_step(self.z, dz), _max_step(self.v, dv))
        return primal, dual


def solve_dual_ipm(Z, c, lower, upper, n_slack, fit_intercept):
    r"""Optimal vertex of ``max c^T a``, ``A a = 0``, ``lower <= a <= upper``.

    Parameters
    ----------
    Z : {ndarray, sparse matrix} of shape (m, p)
        The rows of the LP's columns (scaled units); sparse stays sparse.
    c : ndarray of shape (m + n_slack,)
        Costs: the targets of the rows, 0 for the slacks.
    lower, upper : ndarray of shape (m + n_slack,)
        Boxes, ``lower < 0 < upper``.
    n_slack : int
        ``p`` with an L1 penalty (slack columns ``-e_j``), else 0.
    fit_intercept : bool
        Whether ``A`` has the row of ones (the intercept's constraint).

    Returns
    -------
    solution : tuple or None
        ``(a, theta, value, basic)`` as :func:`~skrobust._quantile_lp._solve_dual`
        (``value`` is ``-c^T a``, the objective of the minimisation HiGHS
        solves), or None if no feasible vertex was found.
    start : tuple or None
        When ``solution`` is None after the interior point method converged:
        ``(basic, at_upper)``, the basis next to its optimum (the basic
        columns and, for the others, whether they sit at their upper
        bound), for HiGHS's dual simplex to start from.
    """
    A = _Columns(Z, n_slack, fit_intercept)
    if not np.all(upper > 0) or not np.all(lower < 0):
        return None, None
    width = upper - lower
    # From theta = 0: a start at the optimum itself saved 2 of 21 iterations
    # on the sparse 2e4 x 2000 benchmark LP (interior point methods gain
    # little from warm starts).
    result = _interior_point(A, c, width, -lower, np.zeros(A.n_rows))
    if result is None:
        return None, None
    x, theta, z, v, _ = result
    return _vertex(A, c, lower, upper, x, z, v)


def _vertex(A, c, lower, upper, x, z, v):
    """The optimal vertex next to the interior point ``x`` (see the module notes)."""
    width = upper - lower
    s = width - x
    # Basic-looking columns: far from both bounds, small residual.
    inside = np.minimum(x, s) / width
    residual = np.maximum(z, v)
    order = np.argsort(residual / np.maximum(inside, 1e-300), kind="stable")
    basic = np.sort(order[: A.n_rows])
    At_B, rows, slacks = A.basis_matrix(basic)
    at_upper = x > s
    with warnings.catch_warnings():
        # (An exactly singular basis is expected, and handled below.)
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        lu = scipy.linalg.lu_factor(At_B, overwrite_a=True, check_finite=False)
    if not np.all(np.isfinite(lu[0])) or np.min(np.abs(np.diag(lu[0]))) == 0:
        # A singular basis (rank-deficient design): HiGHS's simplex
        # replaces its dependent columns by logical ones.
        return None, (basic, at_upper)
    theta = scipy.linalg.lu_solve(lu, c[basic], check_finite=False)
    if slacks.size:
        theta[slacks] = 0.0  # exact zeros, as -theta_j = 0 says
    reduced = c - A.rmatvec(theta)
    a = np.where(reduced > 0, upper, lower)
    # Ties (residual exactly zero off the basis): the bound nearer the
    # interior point.
    tie = reduced == 0
    a[tie] = np.where(x[tie] > s[tie], upper[tie], lower[tie])
    a[basic] = 0.0
    # A_B a_B = -A_N a_N, i.e. (A_B^T)^T a_B.
    a[basic] = scipy.linalg.lu_solve(lu, -A.matvec(a), trans=1, check_finite=False)
    # Primal feasibility of the vertex, to the rounding of the solve
    # (HiGHS's own tolerance is 1e-7 absolute in these units).
    slack = _BOUND_RTOL * width[basic]
    if np.all(a[basic] >= lower[basic] - slack) and np.all(
        a[basic] <= upper[basic] + slack
    ):
        return (a, theta, -float(c @ a), basic), None
    # Not feasible: a degenerate optimum (ties, more zero residuals than
    # coefficients) or a wrong guess of B. The basis is dual feasible (the
    # bounds follow the residuals' signs), so the dual simplex starts there.
    return None, (basic, a >= upper)
