r"""Confidence intervals and a coefficient table, shared by every estimator.

An estimator that can compute a covariance of its parameters inherits
:class:`InferenceMixin` and, at the end of ``fit``, calls
:func:`set_inference_attributes` with that covariance (``None`` when its
``cov_type`` is ``None``). The mixin then turns the fitted attributes into
Wald intervals and a :class:`Summary`:

.. math::

    \hat\theta_j \pm q_{(1 + \ell) / 2} \sqrt{\hat V_{jj}},

with :math:`q` the standard normal quantile (``z`` inference, as R's
``summary.rlm`` and statsmodels ``RLM``) or Student's ``t`` quantile with the
degrees of freedom that ``_inference_dof()`` returns (as R's
``summary.rq``), and :math:`\ell` the level.

What an estimator provides:

``_cov_types``
    tuple of the ``cov_type`` values it accepts, for the error message;
``_inference_dof()``
    ``None`` for normal inference, else the ``t`` degrees of freedom;
``_inference_parameters()`` (optional)
    ``(names, estimates)`` of the rows of ``cov_``; the default is
    ``[intercept, coef...]`` (the intercept only with ``fit_intercept``),
    named ``"intercept"`` and ``feature_names_in_`` (or ``x0``, ``x1``, ...).
"""

import functools

import numpy as np
import scipy.sparse as sp
from scipy import linalg, stats
from sklearn.utils.validation import check_is_fitted

from ._passes import _THREADPOOLS
from ._small_design import weighted_gram as _weighted_gram

_INTERCEPT_NAME = "intercept"

# R prints p-values below the machine epsilon as "< 2e-16"; so does this.
_SMALLEST_PRINTED_P = 2.2e-16

# Elements of X per row block of weighted_grams' products by syrk (1 MiB):
# 6500 rows at p = 20, measured as fast as blocks 4 times larger or smaller.
_GRAM_BLOCK_ELEMENTS = 2**17
# Up to this many columns a block's Gram is a general product (BLAS gemm)
# rather than syrk: OpenBLAS's syrk of a tall block with few columns ran at
# half gemm's speed per row although gemm does twice its flops (1e6 x 21:
# 33 ms against 17, one thread); from p ~ 50 syrk is faster. gemm keeps
# that speed on blocks of up to ~2^16 elements, and halves it beyond (at
# 2^16 already for p = 21): blocks of 2^15 elements (256 KiB) then.
_GEMM_MAX_COLUMNS = 32
_GEMM_BLOCK_ELEMENTS = 2**15
# Elements of X per call of block_grams' weights_of_block (2 MiB in float64):
# 13 000 rows at p = 20, whose per-row vectors stay in cache (2^16 and 2^17
# were slower at 1e5 and 1e6 rows, 2^19 and 2^20 as fast or slower).
_WEIGHT_BLOCK_ELEMENTS = 2**18
# Rows of the strided sample that design_center averages and that decides
# whether weighted_grams centres its row blocks.
_CENTRING_SAMPLE_ROWS = 2048
# Columns whose means are within this many standard deviations of 0 are
# centred after the products: the rounding error of the Grams grows by up to
# 1 + ratio^2, 10 here. (At 30, summary.rq's standard errors on the real data
# sets of the tests moved by 2e-8 relative, through ill-conditioned Grams.)
_ALGEBRAIC_CENTRING_MAX_RATIO = 3.0


def single_threaded_blas(function):
    """Run ``function`` with one BLAS thread, as the objective's passes do.

    A covariance is a few Gram matrices and dot products of ``n``-vectors:
    with several BLAS threads on a shared machine a single ``ddot`` of 1e5
    elements was measured at 12 ms instead of 0.1 ms.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return wrapper


def weighted_grams(X, row_weights, fit_intercept=True, sum_weights=None, center=None):
    r"""Weighted Gram matrices of ``[1, X]`` for several row weightings, one pass.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Design; sparse ``X`` is multiplied as it is, dense ``X`` in row
        blocks (no copy of ``X``).
    row_weights : sequence of ndarray of shape (n_samples,)
        One weighting per Gram matrix; any sign.
    fit_intercept : bool, default=True
        Whether a column of ones comes first.
    sum_weights : sequence of ndarray of shape (n_samples,), default=None
        Weightings ``d`` of weighted sums ``[1, X].T @ d`` to form in the
        same pass.
    center : ndarray of shape (n_features,), default=None
        The Grams and sums are then those of ``[1, X - center]``. See
        :func:`design_center` and :func:`uncentre`.

    Returns
    -------
    grams : ndarray of shape (n_grams, n_params, n_params)
        :math:`G_k = \sum_i d_{ki} \tilde x_i \tilde x_i^\top` with
        :math:`\tilde x_i = (1, x_i)` (or :math:`x_i`), intercept first.
    sums : ndarray of shape (n_sums, n_params)
        :math:`\sum_i d_{ki} \tilde x_i`; only returned with
        ``sum_weights``.

    Notes
    -----
    Every Gram matrix and sum of the call is accumulated in the same pass
    over the row blocks of a dense ``X``: a block is read once for all
    weightings (a covariance needs two to six). Non-negative weights
    :math:`d` are applied as :math:`C = \sqrt{d}\, A` and :math:`C^\top C`
    (BLAS ``syrk``, half the flops of a general product; on designs of
    fewer than ``_GEMM_MAX_COLUMNS`` columns ``gemm``, which OpenBLAS runs
    twice as fast there), constant ones (no sample weights) as a factor of
    the unweighted Gram.

    The centred Grams are those of ``[1, X]`` transformed,
    :math:`M^\top G M` with :math:`[1, X - c] = [1, X] M`, when that loses
    next to nothing: when no column's mean is more than :math:`k` =
    ``_ALGEBRAIC_CENTRING_MAX_RATIO`` (3) standard deviations from 0
    (judged on a strided sample of rows), the entries of :math:`G` are at
    most :math:`1 + k^2` times those of the centred Gram, and so is the
    transformation's rounding error relative to them (10 machine
    epsilons). Else (a column of years, or of ``X + 1e6``) each row block
    is centred before its products, which costs a copy of the block.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0], [2.0], [4.0]])
    >>> grams, sums = weighted_grams(X, [np.ones(3)], sum_weights=[[1.0, 0, 0]])
    >>> grams[0]
    array([[ 3.,  7.],
           [ 7., 21.]])
    >>> sums
    array([[1., 1.]])
    """
    if isinstance(row_weights, np.ndarray) and row_weights.ndim == 1:
        row_weights = [row_weights]
    row_weights = [np.asarray(weights, dtype=float) for weights in row_weights]
    sum_weights = [] if sum_weights is None else list(sum_weights)
    sum_weights = [np.asarray(weights, dtype=float) for weights in sum_weights]

    def weights_of_block(rows, block):
        return [d[rows] for d in row_weights], [d[rows] for d in sum_weights]

    grams, sums = block_grams(
        X,
        weights_of_block,
        len(row_weights),
        len(sum_weights),
        fit_intercept,
        center=center,
    )
    if sum_weights:
        return grams, sums
    return grams


def block_grams(X, weights_of_block, n_grams, n_sums, fit_intercept=True, center=None):
    r"""Weighted Grams and sums of ``[1, X]``, with weights formed block by block.

    :func:`weighted_grams` for weights that are functions of each row (of
    its residual, say): ``weights_of_block(rows, block)`` returns the
    weights of the rows ``rows`` of ``X``, whose values (float64, not
    centred) are ``block``, as two lists of arrays of the block's length:
    ``n_grams`` weightings of Gram matrices and ``n_sums`` of sums. The
    weights then live in a block that stays in cache rather than in
    ``n``-vectors, which cost a pass over memory each to write and read
    (at ``n = 1e6`` a dozen of them cost as much as a Gram matrix). A sparse
    ``X`` is one block. The function may also accumulate statistics of its
    own; it is called once per block, in row order.

    A Gram weighting may also be ``None``, unit weights (the plain Gram,
    without a weighted copy of the block), or a boolean array, the Gram of
    the selected rows (weights 1 and 0), formed from a gathered copy of
    them: for weights that are 0 or 1 (Huber's :math:`\psi'`) the rows
    left out cost no flops, and a selection and its complement give two
    Grams for the flops of one. Or a tuple ``(a, b, factor)`` of two
    arrays and a number: the Gram of weights ``factor * a * b``, formed as
    the product of the rows scaled by ``a`` with the rows scaled by ``b``;
    weightings that name the same array share its scaled copy (the three
    Grams of ``a^2``, ``a b`` and ``b^2`` cost two scalings, not three).

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    weights_of_block : callable
        ``weights_of_block(rows, block) -> (gram_weights, sum_weights)``.
    n_grams, n_sums : int
        How many weightings of each kind it returns.
    fit_intercept : bool, default=True
        Whether the first column ``1`` is kept.
    center : ndarray of shape (n_features,), default=None
        Column centre subtracted from ``X`` (dense only).

    Returns
    -------
    grams : ndarray of shape (n_grams, n_params, n_params)
    sums : ndarray of shape (n_sums, n_params)
        As :func:`weighted_grams`, for ``[1, X - center]`` (or ``[1, X]``).
    """
    if sp.issparse(X):
        if center is not None:
            raise ValueError("a sparse design is not centred: it would be dense.")
        grams, sums = _sparse_grams(X, *weights_of_block(slice(None), X))
    else:
        shift = None
        if center is not None:
            center = np.asarray(center, dtype=float)
            if _needs_explicit_centring(X):
                shift = center
        grams, sums = _dense_grams(X, weights_of_block, n_grams, n_sums, shift)
        if center is not None and shift is None:
            # [1, X - c] = [1, X] M: transform the Grams of [1, X].
            move = np.eye(X.shape[1] + 1)
            move[0, 1:] = -center
            grams = move.T @ grams @ move
            sums = sums @ move
    if not fit_intercept:
        grams, sums = grams[:, 1:, 1:], sums[:, 1:]
    return grams, sums


def _needs_explicit_centring(X):
    """Whether a column's mean is too far from 0 for algebraic centring.

    Judged on a strided sample of ``_CENTRING_SAMPLE_ROWS`` rows: a column
    whose sampled mean exceeds ``_ALGEBRAIC_CENTRING_MAX_RATIO`` sampled
    standard deviations (a constant non-zero column: any multiple) needs
    its blocks centred.
    """
    sample = _strided_sample(X)
    if sample.shape[0] == 0:
        return False
    mean = sample.mean(axis=0)
    sample -= mean
    spread = np.sqrt(np.mean(np.square(sample, out=sample), axis=0))
    return bool(np.any(np.abs(mean) > _ALGEBRAIC_CENTRING_MAX_RATIO * spread))


def _strided_sample(X):
    """Every ``n / _CENTRING_SAMPLE_ROWS``-th row of dense ``X``, a float64 copy.

    (Contiguous: numpy's column means of the strided view took ten times as
    long, a third of a millisecond per covariance.)
    """
    step = max(1, X.shape[0] // _CENTRING_SAMPLE_ROWS)
    return np.array(X[::step], dtype=np.float64, order="C")


def _dense_grams(X, weights_of_block, n_grams, n_sums, shift):
    """Grams and sums of ``[1, X - shift]`` (``[1, X]`` for None), one pass.

    ``weights_of_block`` is called on row blocks of about
    ``_WEIGHT_BLOCK_ELEMENTS`` elements of ``X``, whose products are formed
    in sub-blocks of the size BLAS is fastest on: per-row weights then cost
    a few dozen calls on vectors of tens of thousands of rows, not hundreds
    on vectors of a thousand, and the sub-blocks' loop only gathers or
    scales rows and multiplies (at 1e6 x 20 there are 600 sub-blocks, and a
    microsecond per call there is a millisecond).
    """
    n, p = X.shape
    narrow = p + 1 <= _GEMM_MAX_COLUMNS
    product_elements = _GEMM_BLOCK_ELEMENTS if narrow else _GRAM_BLOCK_ELEMENTS
    product_rows = max(256, product_elements // max(p, 1))
    call_rows = product_rows * max(
        1, _WEIGHT_BLOCK_ELEMENTS // max(p, 1) // product_rows
    )
    buffers = _Buffers(min(product_rows, n), p, min(call_rows, n))
    centred = None if shift is None else np.empty_like(buffers.scaled)
    # Column-major accumulators, which gemm adds its products to in place.
    products = np.zeros((p, p, n_grams), order="F").transpose(2, 0, 1)
    # The intercept rows of the Grams and the sums: every weighting's
    # products with a sub-block in one gemm (p x rows by rows x K), in an
    # accumulator per layout of the weightings that are not selections;
    # those of a selection are the column sums of its gathered rows
    # (``borders`` directly), for no flops on the rows it leaves out.
    borders = np.zeros((n_grams + n_sums, p))
    layouts = {}
    totals = np.zeros(n_grams + n_sums)
    for start in range(0, n, call_rows):
        rows = slice(start, min(start + call_rows, n))
        block = np.ascontiguousarray(X[rows], dtype=np.float64)
        row_weights, sum_weights = weights_of_block(rows, block)
        row_weights = [_block_weighting(d, product_rows) for d in row_weights]
        layout, weightings = [], []
        for j, (kind, d, extra) in enumerate(row_weights):
            if kind == "mask":
                totals[j] += extra[0].size
            else:
                layout.append(j)
                weightings.append(extra if kind == "pair" else d)
        layout = tuple(layout) + tuple(range(n_grams, n_grams + n_sums))
        weightings += list(sum_weights)
        border_weights = np.empty((block.shape[0], len(layout)))
        for j, d in enumerate(weightings):
            column = border_weights[:, j]
            if isinstance(d, tuple):
                # A pair's product weights, formed in place.
                np.multiply(d[0], d[1], out=column)
                if d[2] != 1.0:
                    column *= d[2]
            else:
                column[:] = 1.0 if d is None else d
        totals[list(layout)] += buffers.block_ones[: block.shape[0]] @ border_weights
        if layout not in layouts:
            layouts[layout] = np.zeros((p, len(layout)), order="F")
        for index, sub_start in enumerate(range(0, block.shape[0], product_rows)):
            sub = slice(sub_start, sub_start + product_rows)
            part = block[sub]
            if shift is not None:
                part = np.subtract(part, shift, out=centred[: part.shape[0]])
            _add_products(
                products, part, row_weights, (sub, index), buffers, narrow, borders
            )
            # (From the sub-block, in cache after its products: from the
            # whole block they would cost another read of it.)
            # (As rows x p by rows x K, p x K: OpenBLAS is a fifth faster
            # with the wide operand first.)
            _add_product(layouts[layout], part, border_weights[sub])
    for layout, accumulated in layouts.items():
        borders[list(layout)] += accumulated.T
    grams = np.zeros((n_grams, p + 1, p + 1))
    grams[:, 1:, 1:] = products
    grams[:, 0, 1:], grams[:, 0, 0] = borders[:n_grams], totals[:n_grams]
    sums = np.zeros((n_sums, p + 1))
    sums[:, 1:], sums[:, 0] = borders[n_grams:], totals[n_grams:]
    grams[:, 1:, 0] = grams[:, 0, 1:]
    # (One-sided products are symmetric only to rounding.)
    grams += np.swapaxes(grams, 1, 2)
    grams *= 0.5
    return grams, sums


class _Buffers:
    """Scratch sub-blocks of :func:`_dense_grams`, and the ones it sums with."""

    def __init__(self, rows, p, block_rows):
        self.scaled = np.empty((rows, p))
        self.ones = np.ones(rows)
        self.block_ones = np.ones(block_rows)
        # Scaled copies of the rows shared by paired weightings, made as
        # needed.
        self.pool = []

    def scaled_copy(self, k):
        while len(self.pool) <= k:
            self.pool.append(np.empty_like(self.scaled))
        return self.pool[k]


def _block_weighting(d, product_rows):
    """``(kind, d, extra)``: a weighting's kind on one block, its array (or None).

    ``"unit"`` (``d`` None), ``"constant"`` (one value: a multiple of the
    plain Gram), ``"mask"`` (boolean: the Gram of the selected rows;
    ``extra`` their indices, and where each sub-block's start among them),
    ``"pair"`` (a tuple ``(a, b, factor)`` of weights ``factor a b``: ``d``
    None, ``extra`` the tuple), ``"roots"`` (non-negative: ``extra = sqrt(d)``) or
    ``"weights"``.
    """
    if d is None:
        return "unit", None, None
    if isinstance(d, tuple):
        # (The product weights, for the sums, are formed by the caller.)
        return "pair", None, d
    if d.dtype == bool:
        chosen = np.flatnonzero(d)
        starts = np.searchsorted(
            chosen, np.arange(0, d.size + product_rows, product_rows)
        )
        return "mask", d, (chosen, starts)
    if d[0] == d[-1] and np.all(d == d[0]):
        return "constant", d, None
    if d.min() >= 0:
        return "roots", d, np.sqrt(d)
    return "weights", d, None


def _add_products(products, block, row_weights, position, buffers, narrow, borders):
    r"""Add ``block.T diag(d) block`` of each weighting to ``products``.

    ``position`` is ``(sub, index)``: the sub-block's rows in the weights'
    block and its number; ``buffers`` a :class:`_Buffers`. A selection's
    column sums (a product with ``ones``, faster than numpy's ``sum`` over
    the rows) go to its row of ``borders``. Pairs as the product of the
    block scaled by each of their arrays (each array's scaling made once
    per sub-block). Non-negative weights as
    :math:`C^\top C` with
    :math:`C = \sqrt{d}` block (half the flops of a general product by
    syrk; by gemm on narrow blocks, whose product of a block with itself
    beat the product of two), selected rows gathered by index (``take``
    with ``mode="clip"``: a third of ``compress``'s time per sub-block).
    """
    sub, index = position
    size = block.shape[0]
    scaled = buffers.scaled
    scalings = {}

    def scaled_by(array):
        if id(array) not in scalings:
            out = buffers.scaled_copy(len(scalings))[:size]
            scalings[id(array)] = np.multiply(block, array[sub][:, None], out=out)
        return scalings[id(array)]

    for j, (kind, d, extra) in enumerate(row_weights):
        product = products[j]
        if kind == "mask":
            chosen, starts = extra
            rows = chosen[starts[index] : starts[index + 1]] - sub.start
            left = np.take(block, rows, axis=0, out=scaled[: rows.size], mode="clip")
            _add_product(product, left, left, narrow)
            borders[j] += buffers.ones[: rows.size] @ left
        elif kind == "pair":
            a, b, factor = extra
            _add_product(product, scaled_by(a), scaled_by(b), narrow, factor)
        elif kind in ("unit", "constant"):
            _add_product(product, block, block, narrow, 1.0 if d is None else d[0])
        elif kind == "roots":
            root = np.multiply(block, extra[sub][:, None], out=scaled[:size])
            _add_product(product, root, root, narrow)
        else:
            weighted = np.multiply(block, d[sub][:, None], out=scaled[:size])
            _add_product(product, weighted, block, narrow)


def _add_product(total, left, right=None, narrow=True, factor=1.0):
    """``total += factor * left.T @ right`` (``right`` None: ``left``).

    By gemm into the column-major ``total`` in place where ``left`` and
    ``right`` are row-major (their transposes column-major: no copies),
    else (wide blocks: syrk for a block with itself) by numpy.
    """
    right = left if right is None else right
    if left.shape[0] == 0 or total.size == 0:
        return
    if (
        narrow
        and total.flags.f_contiguous
        and left.flags.c_contiguous
        and right.flags.c_contiguous
    ):
        linalg.blas.dgemm(
            factor, left.T, right.T, beta=1.0, c=total, trans_b=True, overwrite_c=True
        )
    else:
        total += factor * (left.T @ right)


def _sparse_grams(X, row_weights, sum_weights):
    """Grams and sums of ``[1, X]`` for a sparse ``X``, by sparse products."""
    p = X.shape[1]
    grams = np.zeros((len(row_weights), p + 1, p + 1))
    sums = np.zeros((len(sum_weights), p + 1))
    for k, d in enumerate(row_weights):
        if isinstance(d, tuple):
            d = d[2] * (d[0] * d[1])
        d = np.ones(X.shape[0]) if d is None else np.asarray(d, dtype=float)
        grams[k, 1:, 1:] = _weighted_gram(X, X, d, True)
        grams[k, 0, 1:] = grams[k, 1:, 0] = np.asarray(X.T @ d).ravel()
        grams[k, 0, 0] = d.sum()
    for k, d in enumerate(sum_weights):
        sums[k, 1:] = np.asarray(X.T @ d).ravel()
        sums[k, 0] = d.sum()
    return grams, sums


def design_center(X, fit_intercept):
    """A centre of the rows of a dense ``X`` for its Grams, else ``None``.

    With an intercept, a column far from zero next to the column of ones is
    nearly collinear with it: ``[1, X]`` of statsmodels' longley data has a
    condition number of 5e9 (4e4 after scaling its columns), ``[1, X -
    mean]`` 110 after scaling. An inverse Gram in the centred coordinates
    is accurate to about 1e-12 where the uncentred one loses 8 digits
    (the Gram squares the condition number); :func:`uncentre` maps it back
    exactly. Any centre within a fraction of a standard deviation of the
    column means does: the mean of a strided sample of
    ``_CENTRING_SAMPLE_ROWS`` rows, which costs no pass over ``X``. Sparse
    ``X`` is not centred (that would make it dense).
    """
    if not fit_intercept or sp.issparse(X) or X.shape[0] == 0:
        return None
    return _strided_sample(X).mean(axis=0)


def uncentre(cov, center, blocks=None):
    r"""Covariance of ``[b, w]`` from that of ``[b + center @ w, w]``.

    ``[1, X] = [1, X - c] T`` with :math:`T = \begin{pmatrix} 1 & c^\top
    \\ 0 & I \end{pmatrix}`, so coefficients in the centred coordinates
    are :math:`T (b, w)` and a covariance :math:`V` there is :math:`T^{-1}
    V T^{-\top}` in the original ones. Every covariance formula built from
    Grams and weighted sums of the centred design (inverses, sandwiches) is
    that :math:`V`. ``center=None`` returns ``cov``.

    ``blocks``, for parameter vectors with several intercepts, lists
    ``(intercept_index, slope_indices, columns)``: the intercept at
    ``intercept_index`` was shifted by ``center[columns] @`` the slopes at
    ``slope_indices``. By default one intercept first, then every slope.
    """
    if center is None:
        return cov
    if blocks is None:
        blocks = [(0, np.arange(1, center.size + 1), np.arange(center.size))]
    back = np.eye(cov.shape[0])
    for intercept_index, slope_indices, columns in blocks:
        back[intercept_index, slope_indices] = -center[columns]
    return back @ cov @ back.T


def inverse_symmetric(matrix):
    """Inverse of a symmetric matrix, the pseudo-inverse if it is singular.

    The matrix is equilibrated first (divided by the square roots of its
    diagonal on both sides), so that columns of very different sizes do not
    count as rank deficiency; eigenvalues below ``1e-12`` times the largest
    (in absolute value) of the equilibrated matrix count as zero. Raises
    ``ValueError`` where the inverse is beyond the floating-point range
    (see :func:`finite_covariance`).
    """
    size = np.sqrt(np.abs(np.diag(matrix)))
    size[~(size > 0)] = 1.0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scaled = matrix / np.outer(size, size)
        if not np.all(np.isfinite(scaled)):
            return finite_covariance(scaled)  # (raises)
        inverse = linalg.pinvh(scaled, atol=0.0, rtol=1e-12) / np.outer(size, size)
    return finite_covariance(inverse)


def finite_covariance(cov):
    """``cov``, or a ``ValueError`` if some entry overflowed.

    A covariance with inf entries is refused rather than returned (its
    products with the zeros of the centring map would make every entry
    NaN). It happens for the coefficient of a column of spread below
    ~1e-154, whose variance, of order ``1 / (n spread^2)``, exceeds 1e308:
    whether the fit is penalised or not, for ``cov_type``'s formulas count
    that column's information (a ridge's pinned coefficient is 0, but the
    covariance is that of the unpenalised estimator, or with the ridge as a
    prior, see the estimators).
    """
    if not np.all(np.isfinite(cov)):
        raise ValueError(
            "cov_type: the covariance of the estimates is beyond the "
            "floating-point range (a variance above 1e308): a column of X has "
            "a spread below ~1e-154, or is as nearly collinear with others. "
            "Rescale or drop that column, or fit without cov_type."
        )
    return cov


def set_inference_attributes(estimator, cov):
    """Store a fitted covariance and the standard errors it implies.

    Parameters
    ----------
    estimator : estimator instance
        A fitted estimator with ``coef_``, ``fit_intercept`` and ``cov_type``.
    cov : ndarray of shape (n_params, n_params) or (n_targets, n_params, \
n_params), or None
        Covariance of ``[intercept, coef...]`` (intercept first, only with
        ``fit_intercept``; an estimator with more parameters appends them
        after these); one per output, stacked, for a 2-D ``y``. ``None``
        removes the attributes of an earlier fit.

    Notes
    -----
    Sets ``cov_``, ``coef_se_`` (shape ``coef_.shape``) and, with an
    intercept, ``intercept_se_`` (a float, or one per output); without one
    ``intercept_se_`` is deleted. The ``cov_type`` in force at this fit is
    remembered, so that :meth:`InferenceMixin.summary` refuses a covariance
    that a later ``set_params(cov_type=...)`` no longer describes.
    """
    for name in ("cov_", "coef_se_", "intercept_se_"):
        if hasattr(estimator, name):
            delattr(estimator, name)
    estimator._inference_cov_type = None
    if cov is None:
        return
    cov = np.asarray(cov, dtype=float)
    coef = np.asarray(estimator.coef_)
    n_coef = coef.shape[-1]
    offset = 1 if estimator.fit_intercept else 0
    # Rounding can leave a variance of a well-determined parameter at -1e-30.
    se = np.sqrt(np.maximum(np.diagonal(cov, axis1=-2, axis2=-1), 0.0))
    estimator.cov_ = cov
    estimator.coef_se_ = se[..., offset : offset + n_coef].reshape(coef.shape)
    if estimator.fit_intercept:
        intercept_se = se[..., 0]
        estimator.intercept_se_ = (
            float(intercept_se) if intercept_se.ndim == 0 else intercept_se
        )
    estimator._inference_cov_type = estimator.cov_type


class InferenceMixin:
    """Wald confidence intervals and a coefficient table from ``cov_``.

    See the module docstring for what an estimator inheriting this provides.
    """

    _cov_types: tuple = ()

    def _inference_dof(self):
        """``None``: intervals and p-values use the normal distribution."""
        return None

    def _inference_parameters(self):
        """Names and estimates of ``[intercept, coef...]``, the rows of ``cov_``."""
        coef = np.ravel(self.coef_)
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = [f"x{j}" for j in range(coef.size)]
        names = [str(name) for name in names]
        if self.fit_intercept:
            return [_INTERCEPT_NAME, *names], np.r_[self.intercept_, coef]
        return names, coef

    def _checked_cov(self):
        check_is_fitted(self)
        fitted_type = getattr(self, "_inference_cov_type", None)
        if self.cov_type is None or fitted_type is None or not hasattr(self, "cov_"):
            valid = ", ".join(repr(value) for value in self._cov_types)
            raise ValueError(
                f"{type(self).__name__}(cov_type={fitted_type!r}) computed no "
                f"standard errors; refit with cov_type in {{{valid}}}."
            )
        if fitted_type != self.cov_type:
            raise ValueError(
                f"cov_type is {self.cov_type!r} but the fit computed "
                f"cov_type={fitted_type!r}: refit to use the new cov_type."
            )
        if self.cov_.ndim != 2:
            raise ValueError(
                "conf_int() and summary() describe a fit to a 1-D y; for a 2-D "
                "y read cov_, coef_se_ and intercept_se_, one entry per output."
            )
        return self.cov_

    def conf_int(self, level=0.95):
        """Wald confidence intervals of the parameters.

        Parameters
        ----------
        level : float, default=0.95
            Coverage probability of each interval, in (0, 1).

        Returns
        -------
        ndarray of shape (n_params, 2)
            Lower and upper bounds, one row per parameter in the order of
            ``cov_``: the intercept first (with ``fit_intercept``), then
            ``coef_``.
        """
        return self.summary(level).conf_int

    def summary(self, level=0.95):
        """Table of estimates, standard errors, tests and confidence intervals.

        Parameters
        ----------
        level : float, default=0.95
            Coverage probability of the intervals, in (0, 1).

        Returns
        -------
        Summary
            Prints as a table like R's coefficient table;
            ``Summary.to_frame()`` gives a pandas DataFrame.
        """
        if not (isinstance(level, (float, int)) and 0 < level < 1):
            raise ValueError(f"level must be in (0, 1), got {level!r}.")
        cov = self._checked_cov()
        names, estimates = self._inference_parameters()
        return Summary(
            names,
            estimates,
            np.sqrt(np.maximum(np.diag(cov), 0.0)),
            level=level,
            dof=self._inference_dof(),
            cov_type=self.cov_type,
            title=type(self).__name__,
        )


class Summary:
    """Estimates with standard errors, tests and Wald confidence intervals.

    Parameters
    ----------
    names : sequence of str
        Parameter names.
    estimates : array-like of shape (n_params,)
        Point estimates.
    std_errors : array-like of shape (n_params,)
        Standard errors.
    level : float, default=0.95
        Coverage probability of the intervals.
    dof : float or None, default=None
        Degrees of freedom of Student's ``t``; ``None`` for the normal
        distribution.
    cov_type : str, default=""
        How the standard errors were computed (printed in the header).
    title : str, default=""
        Printed in the header, usually the estimator's name.

    Attributes
    ----------
    statistic : ndarray of shape (n_params,)
        ``estimates / std_errors``.
    statistic_name : {"z", "t"}
        The reference distribution.
    p_values : ndarray of shape (n_params,)
        Two-sided p-values of ``parameter = 0``.
    conf_int : ndarray of shape (n_params, 2)
        Lower and upper bounds ``estimate -+ q std_error``.
    """

    def __init__(
        self,
        names,
        estimates,
        std_errors,
        *,
        level=0.95,
        dof=None,
        cov_type="",
        title="",
    ):
        self.names = list(names)
        self.estimates = np.asarray(estimates, dtype=float)
        self.std_errors = np.asarray(std_errors, dtype=float)
        self.level = float(level)
        self.dof = dof
        self.cov_type = cov_type
        self.title = title
        distribution = stats.norm if dof is None else stats.t(dof)
        self.statistic_name = "z" if dof is None else "t"
        with np.errstate(divide="ignore", invalid="ignore"):
            self.statistic = self.estimates / self.std_errors
        self.p_values = 2.0 * distribution.sf(np.abs(self.statistic))
        quantile = distribution.ppf(0.5 + 0.5 * self.level)
        half_width = quantile * self.std_errors
        self.conf_int = np.column_stack(
            [self.estimates - half_width, self.estimates + half_width]
        )

    def _columns(self):
        """Column labels as R prints them (``confint`` for the bounds)."""
        tail = 100.0 * (1.0 - self.level) / 2.0
        return [
            "Estimate",
            "Std. Error",
            f"{self.statistic_name} value",
            f"Pr(>|{self.statistic_name}|)",
            f"{tail:.3g} %",
            f"{100.0 - tail:.3g} %",
        ]

    def _rows(self):
        """The table's cells as strings, one list per parameter."""
        rows = []
        for j, name in enumerate(self.names):
            p = self.p_values[j]
            rows.append(
                [
                    name,
                    f"{self.estimates[j]:.6g}",
                    f"{self.std_errors[j]:.6g}",
                    f"{self.statistic[j]:.3f}",
                    "< 2e-16" if p < _SMALLEST_PRINTED_P else f"{p:.3g}",
                    f"{self.conf_int[j, 0]:.6g}",
                    f"{self.conf_int[j, 1]:.6g}",
                ]
            )
        return rows

    def _header(self):
        reference = (
            "normal" if self.dof is None else f"Student's t with {self.dof:g} df"
        )
        return f"{self.title}: cov_type={self.cov_type!r}, {reference} reference"

    def __str__(self):
        table = [["", *self._columns()], *self._rows()]
        widths = [max(len(row[k]) for row in table) for k in range(len(table[0]))]
        lines = [self._header()]
        for row in table:
            cells = [row[0].ljust(widths[0])]
            cells += [
                cell.rjust(width)
                for cell, width in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        from html import escape

        head = "".join(f"<th>{escape(c)}</th>" for c in ["", *self._columns()])
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
            for row in self._rows()
        )
        return (
            f"<p>{escape(self._header())}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    def to_frame(self):
        """The table as a pandas DataFrame, indexed by parameter name.

        Returns
        -------
        pandas.DataFrame
            Columns ``Estimate``, ``Std. Error``, ``z value`` (or ``t
            value``), ``Pr(>|z|)`` (or ``Pr(>|t|)``) and the interval bounds.
        """
        try:
            import pandas as pd
        except ImportError as error:  # pragma: no cover - pandas is optional
            raise ImportError(
                "Summary.to_frame needs pandas: pip install pandas."
            ) from error
        values = np.column_stack(
            [
                self.estimates,
                self.std_errors,
                self.statistic,
                self.p_values,
                self.conf_int,
            ]
        )
        return pd.DataFrame(values, index=self.names, columns=self._columns())
