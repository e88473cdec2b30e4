"""Validation and reduction shared by every metric.

Every metric computes a per-sample, per-output array of losses ``L`` of
shape ``(n_samples, n_outputs)`` and hands it to :func:`reduce_losses`, which
applies the two combination rules the public functions document:

* ``reduction`` combines samples: ``"mean"`` is
  ``sum_i s_i L_ik / sum_i s_i`` with sample weights ``s``, ``"sum"`` is
  ``sum_i s_i L_ik`` and ``"none"`` keeps ``s_i L_ik`` (PyTorch's
  convention for weighted losses, so that ``"none"`` sums to ``"sum"``);
* ``multioutput`` combines outputs: ``"raw_values"`` keeps them,
  ``"uniform_average"`` or an array of output weights ``w`` gives
  ``sum_k w_k L_k / sum_k w_k``.

Means are taken after dividing by the largest finite magnitude, so that
losses near the largest double (residuals of ``1e300``) average to a finite
number instead of overflowing in an intermediate sum.
"""

from numbers import Real

import numpy as np
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
)

REDUCTIONS = ("mean", "sum", "none")


def check_array_1d_or_2d(array, name):
    """``array`` as floats of shape (n,) or (n, k), finite, with a clear name."""
    array = check_array(array, ensure_2d=False, dtype=float, input_name=name)
    if array.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be of shape (n_samples,) or (n_samples, n_outputs), "
            f"got shape {array.shape}."
        )
    return array


def check_same_shape(reference, reference_name, **arrays):
    """Validate ``arrays`` as floats of the same shape as ``reference``."""
    checked = []
    for name, array in arrays.items():
        array = check_array_1d_or_2d(array, name)
        check_consistent_length(reference, array)
        if array.shape != reference.shape:
            raise ValueError(
                f"{name} of shape {array.shape} does not match {reference_name} "
                f"of shape {reference.shape}."
            )
        checked.append(array)
    return checked


def check_targets(y_true, y_pred, pred_name="y_pred"):
    """``y_true`` and ``y_pred`` as float arrays of one shape, (n,) or (n, k)."""
    y_true = check_array_1d_or_2d(y_true, "y_true")
    (y_pred,) = check_same_shape(y_true, "y_true", **{pred_name: y_pred})
    return y_true, y_pred


def check_positive(value, name, *, allow_zero=False):
    """A positive float, or an array of them; ``allow_zero`` admits 0 too."""
    array = np.asarray(value, dtype=float)
    bad = ~np.isfinite(array) | (array < 0 if allow_zero else array <= 0)
    if np.any(bad):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}.")
    return float(array) if array.ndim == 0 else array


def check_probability(value, name):
    """A float strictly between 0 and 1."""
    if not (isinstance(value, Real) and 0.0 < value < 1.0):
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}.")
    return float(value)


def as_columns(array):
    """A (n,) array as (n, 1); a (n, k) array unchanged."""
    return array[:, None] if array.ndim == 1 else array


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")


def check_output_weights(multioutput, n_outputs):
    """``None`` for ``"raw_values"``, else non-negative weights of shape (k,)."""
    if isinstance(multioutput, str):
        if multioutput == "raw_values":
            return None
        if multioutput == "uniform_average":
            return np.ones(n_outputs)
        raise ValueError(
            "multioutput must be 'raw_values', 'uniform_average' or an array "
            f"of output weights, got {multioutput!r}."
        )
    weights = check_array(
        multioutput, ensure_2d=False, dtype=float, input_name="multioutput"
    )
    if weights.shape != (n_outputs,):
        raise ValueError(
            f"multioutput weights of shape {weights.shape} do not match the "
            f"{n_outputs} outputs."
        )
    if np.any(weights < 0) or not np.any(weights > 0):
        raise ValueError(
            f"multioutput weights must be non-negative and not all zero, got {weights}."
        )
    return weights


def check_sample_weight(sample_weight, n_samples):
    """Non-negative sample weights of shape (n,), ones when None."""
    return _check_sample_weight(
        sample_weight, np.empty((n_samples, 0)), ensure_non_negative=True
    )


def _scaled(values, weights, axis):
    """``values`` and ``weights`` divided by their largest finite magnitudes.

    Returns the scaled values, the scaled weights, the value scale (of the
    shape of the reduction) and the weight scale.
    """
    finite = np.isfinite(values)
    value_scale = np.max(np.abs(values), axis=axis, where=finite, initial=0.0)
    value_scale = np.where(value_scale > 0, value_scale, 1.0)
    weight_scale = np.max(weights, initial=0.0) or 1.0
    scaled = values / np.expand_dims(value_scale, axis)
    return scaled, weights / weight_scale, value_scale, weight_scale


def weighted_sum(values, weights, axis):
    """``sum(weights * values)`` along ``axis``, where a zero weight gives 0.

    A row of weight zero does not count even when its loss is infinite
    (``0 * inf`` would be NaN).
    """
    shape = [1] * values.ndim
    shape[axis] = -1
    weights = np.broadcast_to(weights.reshape(shape), values.shape)
    terms = np.multiply(values, weights, out=np.zeros(values.shape), where=weights > 0)
    return np.sum(terms, axis=axis)


def stable_average(values, weights, axis):
    """``np.average`` that neither overflows nor warns on values near 1e308.

    Divides the values by their largest finite magnitude along ``axis`` and
    the weights by their largest before summing, and multiplies back at the
    end. An infinite value of positive weight gives ``inf``.
    """
    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if not np.sum(weights) > 0:
        raise ValueError("The weights sum to zero: no weighted mean is defined.")
    scaled, scaled_weights, value_scale, _ = _scaled(values, weights, axis)
    mean = weighted_sum(scaled, scaled_weights, axis) / np.sum(scaled_weights)
    return mean * value_scale


def stable_weighted_sum(values, weights, axis):
    """``sum(weights * values)`` along ``axis``, infinite only if it must be."""
    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=float)
    scaled, scaled_weights, value_scale, weight_scale = _scaled(values, weights, axis)
    # The sum itself may legitimately exceed the largest double.
    with np.errstate(over="ignore"):
        return weighted_sum(scaled, scaled_weights, axis) * value_scale * weight_scale


def reduce_samples(losses, sample_weight, reduction):
    """Combine the rows of ``losses`` (n, k) by ``reduction``: (k,) or (n, k)."""
    if reduction == "none":
        # Weighted per-sample losses (zero where the weight is zero, even for
        # an infinite loss); their product may exceed the largest double.
        weights = np.broadcast_to(sample_weight[:, None], losses.shape)
        with np.errstate(over="ignore"):
            return np.multiply(
                losses, weights, out=np.zeros(losses.shape), where=weights > 0
            )
    if reduction == "sum":
        return stable_weighted_sum(losses, sample_weight, axis=0)
    return stable_average(losses, sample_weight, axis=0)


def combine_outputs(losses, output_weights):
    """Average the last axis of ``losses`` with ``output_weights`` (or keep it)."""
    if output_weights is None:
        return losses
    return stable_average(losses, output_weights, axis=losses.ndim - 1)


def reduce_losses(
    losses, *, one_output, sample_weight, multioutput, reduction, finish=None
):
    """Apply ``reduction`` over samples, then ``multioutput`` over outputs.

    Parameters
    ----------
    losses : ndarray of shape (n_samples, n_outputs)
        Per-sample, per-output losses.
    one_output : bool
        Whether the targets were 1-d: ``reduction="none"`` with
        ``multioutput="raw_values"`` then returns shape (n_samples,).
    sample_weight, multioutput, reduction
        As in the public metrics.
    finish : callable, optional
        Applied to the reduced losses before combining outputs (the square
        root of the root mean squared error).

    Returns
    -------
    float or ndarray
        A float when the outputs are averaged and samples reduced, an array
        otherwise.
    """
    check_reduction(reduction)
    n_samples, n_outputs = losses.shape
    sample_weight = check_sample_weight(sample_weight, n_samples)
    output_weights = check_output_weights(multioutput, n_outputs)
    reduced = reduce_samples(losses, sample_weight, reduction)
    if finish is not None:
        reduced = finish(reduced)
    combined = combine_outputs(reduced, output_weights)
    if reduction == "none" and output_weights is None and one_output:
        return combined[:, 0]
    if reduction != "none" and output_weights is not None:
        return float(combined)
    return combined


# The parameters and return value every metric shares, written once and
# substituted into the docstrings by ``fill_doc``.
_SHARED_DOC = {
    "{weights_parameters}": (
        "sample_weight : array-like of shape (n_samples,), default=None\n"
        "        Non-negative sample weights ``s_i``.\n"
        '    multioutput : {"raw_values", "uniform_average"} or array-like of '
        'shape (n_outputs,), default="uniform_average"\n'
        """        How outputs are combined: ``"raw_values"`` keeps one value per
        output, ``"uniform_average"`` averages them and an array of
        non-negative weights ``w`` takes ``sum_k w_k L_k / sum_k w_k``.
    reduction : {"mean", "sum", "none"}, default="mean"
        How samples are combined: ``"mean"`` is ``sum_i s_i L_i /
        sum_i s_i``, ``"sum"`` is ``sum_i s_i L_i`` and ``"none"`` returns
        the weighted per-sample values ``s_i L_i`` (PyTorch's convention:
        they sum to ``"sum"``)."""
    ),
    "{returns}": """\
float or ndarray
        A float when samples are reduced and outputs averaged; with
        ``multioutput="raw_values"`` an array of shape (n_outputs,), or with
        ``reduction="none"`` of shape (n_samples,) for 1-d ``y_true`` and
        (n_samples, n_outputs) for 2-d; with ``reduction="none"`` and
        averaged outputs an array of shape (n_samples,).""",
}


def fill_doc(function):
    """Substitute the shared parameter descriptions into a docstring."""
    for marker, text in _SHARED_DOC.items():
        function.__doc__ = function.__doc__.replace(marker, text)
    return function
