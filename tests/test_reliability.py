"""Reliability of every public estimator: optimality on plain data, no lost state.

Issue 5. The estimators, their specs (``SPECS``: the first-order optimality
conditions of each documented objective) and the fitting harness are in
``tests/_reliability.py``; the other reliability tests are split by idea:
``test_bad_input.py`` (refused clearly), ``test_odd_input.py`` (unusual but
valid input gives the correct fit) and ``test_extreme_parameters.py``
(parameters and data at the edges of their ranges). Here:

* every estimator has a spec, and plain data fit without any warning at a
  point that satisfies the spec's optimality conditions;
* nothing is lost or corrupted: inputs are not modified, refits and
  concurrent fits give identical results.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _reliability import (
    OPTIMALITY_RTOL,
    SPECS,
    X_REF,
    Y_REF,
    HeteroscedasticSpec,  # noqa: F401 - test_heteroscedastic.py imports it here
    fit,
    make_data,
    snapshot,
    spec_for,
    variant_params,
)
from numpy.testing import assert_array_equal
from sklearn.base import clone
from test_common import public_estimators


def test_every_estimator_has_a_spec():
    # Without a spec only the generic checks run: the optimality conditions
    # and breakdown requirements of a new estimator must be written down.
    missing = [cls.__name__ for cls in public_estimators() if cls.__name__ not in SPECS]
    assert missing == []


@variant_params
def test_plain_data_fits_without_any_warning(estimator):
    # Small well-conditioned Gaussian problems: every seed must fit cleanly
    # (warnings are errors here) and satisfy the optimality conditions.
    spec = spec_for(estimator)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(30, 3))
        y = X @ [1.0, 2.0, 3.0] + rng.normal(size=30)
        model = fit(estimator, X, y)
        if type(estimator).__name__ in SPECS:
            assert spec.optimality_violation(model, X, y, np.ones(30)) < OPTIMALITY_RTOL


# ---------------------------------------------------------------------------
# Nothing lost or corrupted
# ---------------------------------------------------------------------------


def _inputs_to_protect():
    X_F = np.asfortranarray(X_REF)
    rounded = np.round(X_REF * 3)
    frame = pd.DataFrame(X_REF, columns=["a", "b", "c"])
    nullable = pd.DataFrame(rounded.astype(np.int64), columns=["a", "b", "c"]).astype(
        "Int64"
    )
    unsorted = sp.csr_matrix(X_REF)
    # Reverse the column order within each row: valid CSR, unsorted indices,
    # which scipy sorts in place when asked to.
    for i in range(unsorted.shape[0]):
        row = slice(unsorted.indptr[i], unsorted.indptr[i + 1])
        unsorted.indices[row] = unsorted.indices[row][::-1].copy()
        unsorted.data[row] = unsorted.data[row][::-1].copy()
    unsorted.has_sorted_indices = False
    return {
        "dense-C": X_REF.copy(),
        "dense-F": X_F,
        "float32": X_REF.astype(np.float32),
        "int": rounded.astype(np.int64),
        "csr": sp.csr_matrix(X_REF),
        "csc": sp.csc_matrix(X_REF),
        "csr-unsorted-indices": unsorted,
        "DataFrame": frame,
        "DataFrame-Int64": nullable,
    }


@variant_params
@pytest.mark.parametrize("kind", list(_inputs_to_protect()))
def test_inputs_are_not_modified(estimator, kind):
    X = _inputs_to_protect()[kind]
    y = Y_REF.copy()
    y_series = pd.Series(Y_REF.copy())
    weights = np.linspace(0.5, 2.0, len(y))
    before = [snapshot(obj) for obj in (X, y, y_series, weights)]
    model = fit(estimator, X, y, weights)
    fit(estimator, X, y_series, weights)
    model.predict(X)
    model.score(X, y, sample_weight=weights)
    after = [snapshot(obj) for obj in (X, y, y_series, weights)]
    assert after == before


def _fitted_state(model):
    return {
        name: np.copy(value)
        for name, value in vars(model).items()
        if name.endswith("_") and not name.startswith("_")
    }


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert_array_equal(a[name], b[name], err_msg=name)


@variant_params
def test_refit_gives_identical_results(estimator):
    X_other, y_other = make_data(seed=5)
    model = clone(estimator)
    first = _fitted_state(model.fit(X_REF, Y_REF))
    second = _fitted_state(model.fit(X_REF, Y_REF))
    _assert_identical(first, second)
    # A fit on other data in between leaves no trace.
    model.fit(X_other, y_other)
    _assert_identical(first, _fitted_state(model.fit(X_REF, Y_REF)))


@variant_params
def test_concurrent_fits_give_identical_results(estimator):
    X, y = make_data(n_samples=2000, seed=6)
    serial = _fitted_state(clone(estimator).fit(X, y))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda _: _fitted_state(clone(estimator).fit(X, y)), range(4))
        )
    for state in results:
        _assert_identical(serial, state)
