"""Every ``>>>`` example in the library's docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "idproj_or"
MODULES = sorted(
    ".".join(("idproj_or", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
    for p in SRC.rglob("*.py")
    # _quiet_sigint ignores SIGINT on import (for the fork server): in this process it would
    # leave every later subprocess deaf to Ctrl-C
    if p.name not in ("__main__.py", "_quiet_sigint.py")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


def test_the_layers_have_examples():
    finder = doctest.DocTestFinder()
    for name in ("cpsat", "linear", "cvxpy", "assignment", "knapsack", "shortest_path", "sorting", "tsp"):
        module = importlib.import_module(f"idproj_or.layers.{name}")
        assert any(t.examples for t in finder.find(module)), name
