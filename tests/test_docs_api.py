"""The API reference (docs/api/, mkdocstrings): one page per public name, listed in the nav,
rendering the docstring of the object that the name really is (``idproj_or`` imports lazily)."""

from __future__ import annotations

import html
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import idproj_or

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
EXTRA_PAGES = {"index", "options"}  # the overview and the options that every layer and rule takes


def _target(page: Path) -> str:
    """The object the page renders: its first ``::: dotted.path``."""
    return next(line[3:].strip() for line in page.read_text().splitlines() if line.startswith(":::"))


def _resolve(path: str) -> object:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(path)


def _documented_args(obj: object) -> list[str]:
    """Names in the Args section of the object's own docstring."""
    match = re.search(r"^Args:\n((?:[ \t]+.*\n|\n)+)", (inspect.getdoc(obj) or "") + "\n", flags=re.M)
    return re.findall(r"^    (\*{0,2}\w+)(?: \(.*?\))?:", match[1], flags=re.M) if match else []


def test_one_page_per_public_name():
    assert {p.stem for p in API.glob("*.md")} - EXTRA_PAGES == set(idproj_or.__all__)


@pytest.mark.parametrize("name", idproj_or.__all__)
def test_page_renders_the_public_object(name):
    assert _resolve(_target(API / f"{name}.md")) is getattr(idproj_or, name)


def test_nav_lists_every_page():
    nav = (ROOT / "mkdocs.yml").read_text()
    assert [p.name for p in sorted(API.glob("*.md")) if f"api/{p.name}" not in nav] == []


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


DOCUMENTED = [name for name in idproj_or.__all__ if _documented_args(getattr(idproj_or, name))]


def test_the_layers_and_rules_have_arguments_to_render():
    assert {"CpSatLayer", "KnapsackLayer", "ShortestPathLayer", "TSPLayer", "SPOPlus", "IMLE"} <= set(DOCUMENTED)


@pytest.mark.parametrize("name", DOCUMENTED)
def test_page_shows_the_arguments_and_runnable_examples(site, name):
    obj = getattr(idproj_or, name)
    page = (site / "api" / name / "index.html").read_text()
    assert 'doc-section-title">Parameters:' in page
    missing = [a for a in _documented_args(obj) if f"<code>{html.escape(a)}</code>" not in page]
    assert missing == []
    if ">>>" in (inspect.getdoc(obj) or ""):
        # a highlighted console session, not ">>>" read as three nested block quotes
        assert '<span class="gp">&gt;&gt;&gt; </span>' in page
        assert not re.search(r"<blockquote>\s*<blockquote>", page)


@pytest.mark.parametrize("name", ["problems", "data", "metrics"])
def test_module_page_shows_each_documented_function(site, name):
    module = getattr(idproj_or, name)
    page = (site / "api" / name / "index.html").read_text()
    functions = [
        f
        for f, obj in vars(module).items()
        if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not f.startswith("_") and obj.__doc__
    ]
    assert functions
    assert [f for f in functions if f'id="idproj_or.{name}.{f}"' not in page] == []


def test_rst_table_of_a_module_docstring_renders_as_a_table(site):
    page = (site / "api" / "problems" / "index.html").read_text()
    table = page[page.index("<table>") : page.index("</table>")]
    assert "<th>builder</th>" in table and "<code>shortest_path_grid(h, w)</code>" in table


@pytest.fixture(scope="module")
def markdown_docstring():
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("griffe_project", ROOT / "docs" / "griffe_project.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.markdown_docstring


def test_docstring_rst_becomes_markdown(markdown_docstring):
    text = (
        "See :mod:`idproj_or.options` and :class:`~idproj_or.CpSatLayer`.\n"
        "\n"
        "    Example:\n"
        "        >>> 1 + 1\n"
        "        2\n"
        "\n"
        "=====  =========\n"
        "name   meaning\n"
        "=====  =========\n"
        "``a``  one | two\n"
        "       continued ``x | y``\n"
        "``b``  three\n"
        "=====  =========\n"
        "\n"
        "  ====  ====\n"
        "  k     v\n"
        "  ====  ====\n"
    )
    assert markdown_docstring(text).splitlines() == [
        "See `idproj_or.options` and `idproj_or.CpSatLayer`.",
        "",
        "    Examples:",
        "        >>> 1 + 1",
        "        2",
        "",
        "| name | meaning |",
        "|---|---|",
        "| ``a`` | one \\| two continued ``x | y`` |",
        "| ``b`` | three |",
        "",
        "  |  |  |",
        "  |---|---|",
        "  | k | v |",
    ]


LAYERS = [name for name in idproj_or.__all__ if name.endswith("Layer") and name != "OptLayer"]


def test_adapter_pages_link_the_reference_for_every_layer():
    links = "".join(p.read_text() for p in (ROOT / "docs" / "adapters").glob("*.md"))
    assert [name for name in LAYERS if f"(../api/{name}.md)" not in links] == []


@pytest.mark.parametrize("page", sorted((ROOT / "docs").rglob("*.md")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_hand_copied_signatures(page):
    # a bare `*` parameter only occurs in a signature, never in a call: such copies drifted
    # (missing options, wrong keyword-only arguments); the API reference has the real ones
    copies = re.findall(r"^\s*(?:ipo\.)?\w+(?:\.\w+)?\([^()]*?(?:\(|, )\*(?:,|\))", page.read_text(), flags=re.M)
    assert copies == []
