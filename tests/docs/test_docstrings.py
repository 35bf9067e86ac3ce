"""Every example in the package's docstrings runs (doctest)."""

import doctest
import importlib
import pkgutil

import pytest

import dagster_openai_batch

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(dagster_openai_batch.__path__, "dagster_openai_batch.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
