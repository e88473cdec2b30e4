"""scikit-learn's estimator checks over every public skrobust estimator.

Estimators are found from ``skrobust.__all__``, so a new one is checked
without anyone remembering to add it here. No check is expected to fail.
"""

import inspect

import pytest
from numpydoc.validate import validate as numpydoc_validate
from sklearn.base import is_regressor
from sklearn.utils.estimator_checks import parametrize_with_checks

import skrobust


def public_estimators():
    return [
        getattr(skrobust, name)
        for name in skrobust.__all__
        if inspect.isclass(getattr(skrobust, name))
        and is_regressor(getattr(skrobust, name)())
    ]


def estimator_variants():
    """Every estimator at its defaults, plus its other scale options."""
    variants = []
    for cls in public_estimators():
        variants.append(cls())
        if "scale" in inspect.signature(cls).parameters:
            variants += [cls(scale="mad"), cls(scale="lad"), cls(scale=1.0)]
    return variants


@parametrize_with_checks(estimator_variants())
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_every_public_name_is_an_estimator():
    assert len(public_estimators()) == len(skrobust.__all__)


def public_docstrings():
    """Every public class and its own public methods (not inherited ones)."""
    names = []
    for cls in public_estimators():
        names.append(f"skrobust.{cls.__name__}")
        for attr, value in vars(cls).items():
            if callable(value) and not attr.startswith("_"):
                names.append(f"skrobust.{cls.__name__}.{attr}")
    for base in inspect.getmro(public_estimators()[0])[1:]:
        if base.__module__.startswith("skrobust"):
            for attr, value in vars(base).items():
                if callable(value) and not attr.startswith("_"):
                    names.append(f"skrobust.{public_estimators()[0].__name__}.{attr}")
    return sorted(set(names))


@pytest.mark.parametrize("name", public_docstrings())
def test_docstring_is_valid_numpydoc(name):
    # Methods need no extended summary, See Also or Examples (scikit-learn's
    # own rule set for methods); classes get every check.
    ignored = {"ES01", "SA01", "EX01"} if name.count(".") > 1 else set()
    errors = [
        (code, msg)
        for code, msg in numpydoc_validate(name)["errors"]
        if code not in ignored
    ]
    assert errors == []
