r"""The heteroscedastic likelihood's dense pass: one Gram matrix for its Hessian.

The Gaussian negative log-likelihood of
:class:`~skrobust.losses.GaussianNLLLoss` has two linear predictors, the
mean :math:`\mu = X w + b` and the log-variance :math:`v = Z g + g_0` (``Z``
the variance columns of ``X``). Each row's Hessian in :math:`(\mu, v)` is,
with :math:`a_i = \sqrt{s_i} e^{-v_i/2}` and :math:`b_i = r_i a_i`
(:meth:`~skrobust.losses.GaussianNLLLoss.loss_gradient_root`),

.. math::

    \begin{pmatrix} a_i^2 & a_i b_i \\ a_i b_i & (b_i^2 + \tau^2 a_i^2) / 2
    \end{pmatrix},

so that with :math:`E = [\,a \circ [X, 1],\; b \circ [Z, 1]\,]` (rows
scaled) the three blocks of the Hessian in the raw coordinates are blocks
of the one Gram matrix :math:`M = E^\top E`:

.. math::

    H_{\mu\mu} = M_{11}, \qquad H_{\mu v} = M_{12}, \qquad
    H_{vv} = \tfrac12 M_{22} + \tfrac{\tau^2}{2} (M_{11})_{ZZ},

intercepts included (the columns of ones). One symmetric rank-k update
(BLAS ``syrk``) per row block forms them, rather than
:class:`~skrobust._objective.LinearObjective`'s three weighted Gram
matrices (one of them a general product: ``r e^{-v}`` has either sign),
each with a scaled copy of the block, and four matrix-vector products for
the intercepts. (The predictors and the gradient are the generic pass's
matrix-vector products: one product ``A W`` with both predictors'
coefficients as the columns of ``W``, and ``A^T G``, were slower.) At
``1e5 x 20`` a pass with the Hessian took 18 ms instead of 23, on the
contiguous copy of a 9091-row subsample 2.1 ms instead of 4.0.

Sums come out in another order than the generic pass's, so results agree
with it to rounding. Sparse ``X`` and passes without a Hessian (the
gradient alone, Hessian-vector products, per-row curvatures) take the
generic pass.
"""

import numpy as np

from ._base import copy_budget
from ._objective import LinearObjective, _PassSums

# Elements of a row block's scaled copy E (4 MiB): one block for a subsample
# of 1e4 rows of 20 columns, and blocks of about the generic pass's size
# (2 MiB of X) on larger data.
_BLOCK_ELEMENTS = 2**19


class LikelihoodObjective(LinearObjective):
    """A :class:`~skrobust._objective.LinearObjective` of ``GaussianNLLLoss``.

    The same objective, predictors ``[(None, fit_intercept), (columns,
    True)]``; its passes over dense ``X`` form the Hessian as one Gram
    matrix per block (see the module).
    """

    # Newton's chord steps on an older Hessian update it to the gradients
    # they see (skrobust._linalg.secant_update). At 1e5 x 20 (10% gross
    # errors) the full-data steps from the subsample's solution shrank the
    # gradient ~12x each, 9 of them; with the updates 7 reached tol.
    secant_updates = True
    # Steps from a subsample's solution: the first trial point's Hessian is
    # not formed where that step was slow, but the next one's (after a step
    # on the subsample's Hessian, secant-updated): nearer the optimum, it
    # serves more chord steps (skrobust._newton._newton_steps). At 1e5 x 20
    # (10% gross errors) the gradient went 5.4e-2 (subsample's solution),
    # 1.4e-2, 2.7e-3 (Hessian there), then 2.2e-5 ... 5.6e-12: 7 passes over
    # all rows instead of 8 (the Hessian at 1.4e-2 left six chord steps).
    subsample_hessian_steps = 2

    def _subsample_rows(self, step):
        """``X[::step]``: a copy of dense ``X``'s within :func:`copy_budget`.

        (A fraction of ``X``.) The passes of the solve on the subsample
        that starts the full one, several per iteration, then read
        contiguous rows in few blocks.
        """
        X = self.X[::step]
        if not self.sparse and X.size <= copy_budget(self.X):
            X = np.ascontiguousarray(X)
        return X

    def _pass_single_threaded(self, coef, gradient, hessian, direction, curvature):
        if self.sparse or not hessian or direction is not None or curvature is not None:
            return super()._pass_single_threaded(
                coef, gradient, hessian, direction, curvature
            )
        return _likelihood_pass(self, coef, gradient)


def _likelihood_pass(objective, coef, gradient):
    """``(value, grad, H, None)`` of ``objective`` at ``coef`` in one pass.

    ``grad`` is None without ``gradient`` (it costs two matrix-vector
    products per block, a fraction of the Gram matrix).
    """
    X, y = objective.X, objective.y
    p = X.shape[1]
    cols = objective.predictors[1].columns  # Z (None: all of X)
    q = p if cols is None else cols.size
    raw_coefs = [pred.to_raw(coef[pred.slice]) for pred in objective.predictors]
    sums = _PassSums(objective.predictors, False)
    unit = objective.unit_weights
    remembered = objective._remembering() if objective.remember_prediction else None
    m = p + q + 2
    M = np.zeros((m, m))
    E = None
    for rows, A in _hessian_blocks(objective, m):
        parts = [pred.take(A) for pred in objective.predictors]
        out = None if remembered is None else remembered[rows]
        raw = objective._raw_block(parts, raw_coefs, out)
        sw = objective.sample_weight[rows]
        loss, g, root = objective.loss.loss_gradient_root(y[rows], raw)
        sums.add_value_gradient(parts, loss, g if gradient else None, sw, unit)
        if not unit:
            root *= np.sqrt(sw)[:, None]
        if E is None:
            E = np.empty((A.shape[0], m))
        M += _scaled_gram(E[: A.shape[0]], A, root, cols)
    if remembered is not None:
        objective._remember(coef, remembered)
    _split_gram(sums, M, p, cols, objective.loss.jitter_variance)
    return sums.finish(objective, coef, gradient, True, None)


def _hessian_blocks(objective, width):
    """Row blocks ``(rows, A)`` whose scaled copy ``E`` has ``_BLOCK_ELEMENTS``.

    ``A`` as :meth:`LinearObjective._row_blocks` gives it (standardised
    first where the objective centres explicitly); ``width`` is ``E``'s
    number of columns.
    """
    X = objective.X
    n = X.shape[0]
    step = max(1, _BLOCK_ELEMENTS // width)
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        A = X[rows]
        if objective.explicit_centering:
            A = (A - objective.mean) * objective.inv_scale
        yield rows, A


def _scaled_gram(E, A, root, cols):
    """``E^T E`` of the block ``E = [a [A, 1], b [A_Z, 1]]``, written into ``E``."""
    p = A.shape[1]
    a, b = root[:, 0], root[:, 1]
    np.multiply(A, a[:, None], out=E[:, :p])
    E[:, p] = a
    if cols is None:
        np.multiply(A, b[:, None], out=E[:, p + 1 : -1])
    else:
        np.multiply(A[:, cols], b[:, None], out=E[:, p + 1 : -1])
    E[:, -1] = b
    return E.T @ E


def _split_gram(sums, M, p, cols, jitter):
    """``sums``' Gram matrices, column sums and totals from ``M = E^T E``.

    Raw coordinates, as :meth:`_PassSums.add_hessian` would have summed
    them: pair (0, 0) is the mean's block, (0, 1) the cross block and
    (1, 1) the variance's, ``M_22 / 2`` plus ``tau^2 / 2`` times the mean's
    block restricted to the variance columns.
    """
    z = np.arange(p) if cols is None else cols
    one = p  # index of a's column of ones
    var = p + 1 + np.arange(z.size)  # the b-scaled variance columns
    last = M.shape[0] - 1  # b's column of ones
    sums.G = {
        (0, 0): M[:p, :p],
        (0, 1): M[:p][:, var],
        (1, 1): 0.5 * M[var][:, var] + (0.5 * jitter) * M[z][:, z],
    }
    sums.xd = {
        (0, 0): (M[:p, one], M[:p, one]),
        (0, 1): (M[:p, last], M[one, var]),
        (1, 1): (
            0.5 * M[var, last] + (0.5 * jitter) * M[z, one],
            0.5 * M[var, last] + (0.5 * jitter) * M[z, one],
        ),
    }
    sums.d_sum = {
        (0, 0): M[one, one],
        (0, 1): M[one, last],
        (1, 1): 0.5 * M[last, last] + (0.5 * jitter) * M[one, one],
    }
