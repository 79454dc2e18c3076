"""Every example in a docstring runs: the doctests of every module of the installed package.

Modules are found by walking the package (``plugin/`` and ``workers/`` are installed inside it
as ``shopsearch.plugin`` and ``shopsearch.workers``), so a new module's examples run without
being listed here. A module without examples is not a test case.
"""

import doctest
import importlib
import pkgutil

import pytest

import shopsearch

SKIP = {"shopsearch.__main__"}  # running it is running the CLI


def modules_with_examples() -> list[str]:
    finder = doctest.DocTestFinder()
    found = []
    for info in pkgutil.walk_packages(shopsearch.__path__, "shopsearch."):
        if info.name in SKIP:
            continue
        module = importlib.import_module(info.name)
        if any(t.examples for t in finder.find(module, module.__name__)):
            found.append(info.name)
    return sorted(found)


MODULES = modules_with_examples()


def test_the_package_has_doctests_in_many_modules():
    assert len(MODULES) >= 20, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_in_the_docstrings_hold(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (see the output above)"
