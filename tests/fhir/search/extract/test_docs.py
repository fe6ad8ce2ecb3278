"""The examples in the extraction package's docstrings are true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hygeia.fhir.search.extract as package

MODULES = [package.__name__] + [
    f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
