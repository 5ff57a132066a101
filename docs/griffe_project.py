"""Griffe extension for the API reference: reads this project's docstrings as they are written.

They are Google style with a little reStructuredText that Markdown renders wrongly: Sphinx roles
(``:mod:`idproj_or.options```), simple tables (``====  ====`` borders: Markdown makes the row
above a border a heading), and the ``Example:`` header, which griffe's Google parser takes for an
admonition (the doctest then renders as nested block quotes).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|exc|obj):`~?([^`]+)`")
EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
BORDER = re.compile(r"^\s*=+(?: +=+)+\s*$")
CODE = re.compile(r"(`+).*?\1")


def _escape_pipes(cell: str) -> str:
    """``|`` splits a Markdown table cell, except inside a code span."""
    pieces, end = [], 0
    for m in CODE.finditer(cell):
        pieces += [cell[end : m.start()].replace("|", "\\|"), m[0]]
        end = m.end()
    return "".join([*pieces, cell[end:].replace("|", "\\|")])


def _rows(lines: list[str], starts: list[int]) -> list[list[str]]:
    rows: list[list[str]] = []
    for line in lines:
        ends = [*starts[1:], None]
        cells = [_escape_pipes(line[a:b].strip()) for a, b in zip(starts, ends)]
        if rows and not cells[0]:  # a continuation line
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    return rows


def _table(lines: list[str]) -> list[str]:
    """An RST simple table (from its first border to its last) as a Markdown table."""
    indent = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
    starts = [m.start() for m in re.finditer(r"=+", lines[0])]
    borders = [k for k, line in enumerate(lines) if BORDER.match(line)]
    head_end = borders[1] if len(borders) >= 3 else 0  # a header sits between the first two borders
    header = [" ".join(c) for c in zip(*_rows(lines[1:head_end], starts))] or [""] * len(starts)
    body = _rows([line for line in lines[head_end + 1 :] if not BORDER.match(line)], starts)
    out = [f"| {' | '.join(header)} |", "|" + "---|" * len(starts), *(f"| {' | '.join(r)} |" for r in body)]
    return [indent + row for row in out]


def rst_tables_to_markdown(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        # a table runs to its last border before a blank line
        j = i + 1
        while j < len(lines) and lines[j].strip():
            j += 1
        last = max(k for k in range(i, j) if BORDER.match(lines[k]))
        out += _table(lines[i : last + 1])
        out += lines[last + 1 : j]
        i = j
    return "\n".join(out)


def markdown_docstring(text: str) -> str:
    text = ROLE.sub(r"`\1`", text)
    text = EXAMPLE.sub(r"\1Examples:", text)
    return rst_tables_to_markdown(text)


class ProjectDocstrings(Extension):
    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
