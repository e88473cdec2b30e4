"""Bad input to every public estimator is refused clearly (issue 5).

``BAD_INPUTS`` and ``BAD_PARAMETER_VALUES``: input that must be refused with a
``ValueError`` or ``TypeError`` that names the problem, raised by validation,
never from inside the solvers or scipy's linear algebra
(:func:`_reliability.assert_refused` checks the traceback). Estimators and
harness: ``tests/_reliability.py``.
"""

import re

import numpy as np
import pandas as pd
import pytest
from _reliability import (
    VARIANTS,
    X_REF,
    Y_REF,
    assert_refused,
    fit,
    spec_for,
    variant_params,
)
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.utils import get_tags


def _with(array, index, value):
    out = np.array(array, dtype=np.result_type(array, type(value)))
    out[index] = value
    return out


# (id, make(X, y) -> (X, y, sample_weight), regular expression of the message)
BAD_INPUTS = [
    ("nan-in-X", lambda X, y: (_with(X, (3, 1), np.nan), y, None), "NaN"),
    ("inf-in-X", lambda X, y: (_with(X, (3, 1), np.inf), y, None), "infinity"),
    ("-inf-in-X", lambda X, y: (_with(X, (3, 1), -np.inf), y, None), "infinity"),
    ("nan-in-y", lambda X, y: (X, _with(y, 3, np.nan), None), "NaN"),
    ("inf-in-y", lambda X, y: (X, _with(y, 3, np.inf), None), "infinity"),
    (
        "nan-in-weights",
        lambda X, y: (X, y, _with(np.ones(len(y)), 3, np.nan)),
        "sample_weight.*NaN",
    ),
    (
        "inf-in-weights",
        lambda X, y: (X, y, _with(np.ones(len(y)), 3, np.inf)),
        "sample_weight.*infinity",
    ),
    (
        "negative-weight",
        lambda X, y: (X, y, _with(np.ones(len(y)), 3, -1.0)),
        "[Nn]egative.*sample_weight",
    ),
    ("all-zero-weights", lambda X, y: (X, y, np.zeros(len(y))), "[Ss]ample.weight"),
    ("no-rows", lambda X, y: (X[:0], y[:0], None), "0 sample"),
    ("no-columns", lambda X, y: (X[:, :0], y, None), "0 feature"),
    ("X-longer-than-y", lambda X, y: (X, y[:-1], None), "inconsistent numbers"),
    ("y-longer-than-X", lambda X, y: (X[:-1], y, None), "inconsistent numbers"),
    (
        "weights-too-short",
        lambda X, y: (X, y, np.ones(len(y) - 1)),
        "sample_weight",
    ),
    (
        "weights-2d",
        lambda X, y: (X, y, np.ones((len(y), 2))),
        "[Ss]ample.weight",
    ),
    ("X-3d", lambda X, y: (X[:, :, None], y, None), "dim 3"),
    ("X-1d", lambda X, y: (X[:, 0], y, None), "2D array"),
    ("y-2-columns", lambda X, y: (X, np.c_[y, y], None), "1d array|1-dimensional"),
    ("complex-X", lambda X, y: (X + 1j, y, None), "[Cc]omplex"),
    ("complex-y", lambda X, y: (X, y + 1j, None), "[Cc]omplex"),
    ("complex-weights", lambda X, y: (X, y, np.ones(len(y)) + 1j), "[Cc]omplex"),
    ("string-X", lambda X, y: (np.full(X.shape, "a"), y, None), "string|convert"),
    ("numeric-string-X", lambda X, y: (X.astype(str), y, None), "string|convert"),
    ("string-y", lambda X, y: (X, np.full(len(y), "a"), None), "string|convert"),
    (
        "object-X-of-dicts",
        lambda X, y: (np.array([[{}] * X.shape[1]] * len(y), dtype=object), y, None),
        "float|convert|number",
    ),
    (
        "string-column-in-DataFrame",
        lambda X, y: (pd.DataFrame({"a": X[:, 0], "b": ["x"] * len(y)}), y, None),
        "string|convert|float",
    ),
]


def _bad_input_cases():
    """Every variant with every bad input; a 2-D y is bad only without multi-output."""
    return [
        pytest.param(estimator, make, match, id=f"{name}-{estimator!r}")
        for estimator in VARIANTS
        for name, make, match in BAD_INPUTS
        if not (name == "y-2-columns" and get_tags(estimator).target_tags.multi_output)
    ]


@pytest.mark.parametrize("estimator, make, match", _bad_input_cases())
def test_bad_input_is_refused_clearly(estimator, make, match):
    X, y, sample_weight = make(X_REF, Y_REF)
    assert_refused(estimator, X, y, sample_weight, match=match or None)


# Values outside each parameter's documented range. Only the parameters an
# estimator has are tried; an InvalidParameterError is a ValueError.
BAD_PARAMETER_VALUES = {
    "delta": [0.0, -1.0, np.nan, np.inf, "1.35"],
    "alpha": [-1e-3, np.nan, np.inf],
    "quantile": [0.0, 1.0, -0.5, 1.5, np.nan],
    "scale": [0.0, -1.0, np.nan, np.inf, "no-such-scale"],
    "solver": ["no-such-solver", None],
    "max_iter": [0, -1, 2.5],
    "tol": [0.0, -1.0, np.nan],
    "fit_intercept": ["yes"],
    "warm_start": ["no"],
    "bandwidth": [0.0, -1.0, np.nan],
    "kernel": ["no-such-kernel"],
    "variance_floor": [-1.0, np.nan],
}


def _bad_parameter_cases():
    cases = []
    for estimator in VARIANTS:
        params = estimator.get_params()
        for name, values in BAD_PARAMETER_VALUES.items():
            if name in params:
                for value in values:
                    cases.append(
                        pytest.param(
                            estimator, name, value, id=f"{estimator!r}-{name}={value!r}"
                        )
                    )
    return cases


@pytest.mark.parametrize("estimator, name, value", _bad_parameter_cases())
def test_bad_parameter_is_refused_clearly(estimator, name, value):
    bad = clone(estimator).set_params(**{name: value})
    assert_refused(bad, X_REF, Y_REF, match=re.escape(name))


@variant_params
def test_too_few_samples(estimator):
    # Fewer rows than an estimator needs is refused; one row is otherwise a
    # valid p >= n problem whose fit reproduces it.
    spec = spec_for(estimator)
    if spec.min_samples > 1:
        rows = spec.min_samples - 1
        assert_refused(estimator, X_REF[:rows], Y_REF[:rows], match="sample")
    else:
        model = fit(estimator, X_REF[:1], Y_REF[:1])
        assert_allclose(model.predict(X_REF[:1]), Y_REF[:1], rtol=1e-12)
        # Only the intercept can be identified from one row.
        assert_allclose(model.coef_, 0.0, atol=1e-12 * abs(Y_REF[0]))
