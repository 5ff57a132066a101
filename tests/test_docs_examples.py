"""Every ```python block of the README and of docs/ runs as written (blocks of one page share a
namespace, in order)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page):
    namespace: dict = {"__name__": "__docs__"}
    for block in python_blocks(page):
        exec(compile(block, str(page), "exec"), namespace)


def test_readme_example_trains_through_the_layer():
    namespace: dict = {}
    exec(compile(python_blocks(ROOT / "README.md")[0], "README.md", "exec"), namespace)
    assert namespace["picked"].shape == (8, 6)
    assert set(namespace["picked"].unique().tolist()) <= {0.0, 1.0}
    assert namespace["values"].grad is not None and namespace["values"].grad.abs().sum() > 0
