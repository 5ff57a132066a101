"""Every code fence of the README and of docs/ opens with a language and closes.

A stray fence is valid Markdown, so ``mkdocs build --strict`` passes while the rest of the page
renders as one code block (docs/rules.md had an extra closing fence after its first example).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# CommonMark: a run of 3+ backticks or tildes, then an info string (no backtick in it for `)
FENCE = re.compile(r"^\s*(?P<fence>`{3,}(?!.*`)|~{3,})(?P<info>.*)$")


def fence_errors(text: str) -> list[str]:
    """What is wrong with the fences of one Markdown page, as ``line N: ...`` messages."""
    errors = []
    opened: tuple[int, str] | None = None  # (line, fence) of the block we are in
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match is None:
            continue
        fence, info = match["fence"], match["info"].strip()
        if opened is None:
            if not info:
                # every block here names its language: a bare fence is a stray closing one
                errors.append(f"line {number}: code block without a language (a stray closing fence?)")
            opened = (number, fence)
        elif fence[0] == opened[1][0] and len(fence) >= len(opened[1]):
            if info:
                # it cannot close the block, so it renders as code: the block before never closed
                errors.append(f"line {number}: {line.strip()!r} inside the block opened at line {opened[0]}")
            else:
                opened = None
    if opened is not None:
        errors.append(f"line {opened[0]}: code block never closed")
    return errors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_fences_balance(page):
    assert fence_errors(page.read_text()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the docs/rules.md bug: an extra fence swallowed the next section up to the next block
        ("```python\nx = 1\n```\n```\n\n## Rules\n\n```python\ny = 2\n```\n", ["line 4", "line 8"]),
        ("text\n```python\nx = 1\n", ["line 2: code block never closed"]),
        ("```\nplain\n```\n", ["line 1: code block without a language"]),
        ("~~~python\nx = 1\n```\n", ["line 1: code block never closed"]),  # ``` cannot close ~~~
        ("```python\nx = 1\n````\n", []),  # a longer fence closes
        ("````markdown\n```python\nx = 1\n```\n````\n", []),  # shorter fences are content
        ("    ```python\n    x = 1\n    ```\n", []),  # inside a list item or admonition
        ("```inline``` code, not a fence\n", []),
    ],
)
def test_fence_errors_finds_what_renders_wrong(text, expected):
    errors = fence_errors(text)
    assert len(errors) == len(expected) and all(e.startswith(x) for e, x in zip(errors, expected)), errors
