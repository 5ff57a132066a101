"""Writes docs/paper.md's generated parts from the cached experiment summaries.

An experiment registers by its module name in :data:`EXPERIMENTS`: a module of this folder with
``NAME`` (its summary is ``benchmarks/results/paper/<NAME>.json``), ``claims(summary)`` (rows of
the claims table: ``claim``, ``paper``, ``ours``, ``verdict``) and ``details(summary)`` (its full
table, written between ``<!-- paper_<NAME>: begin -->`` and ``<!-- paper_<NAME>: end -->``).
An experiment without a summary yet is left out of the table.

    python examples/paper/report.py
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT

EXPERIMENTS = ["dvae", "l2x", "graph_matching", "ranking", "globe_tsp", "warcraft"]
DOC = ROOT / "docs" / "paper.md"
CLAIMS = "paper_claims"


def summaries(folder: Path = RESULTS) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Module and summary of every registered experiment that has a summary in ``folder``."""
    out = {}
    for name in EXPERIMENTS:
        module = importlib.import_module(name)
        path = folder / f"{module.NAME}.json"
        if path.exists():
            out[module.NAME] = (module, json.loads(path.read_text()))
    return out


def claims_table(found: dict[str, tuple[Any, dict[str, Any]]]) -> str:
    lines = [
        "| claim | paper | ours (mean ± std over seeds) | verdict |",
        "|---|---|---|---|",
    ]
    for module, summary in found.values():
        seeds = ", ".join(map(str, summary["seeds"]))
        for row in module.claims(summary):
            lines.append(f"| {row['claim']} | {row['paper']} | {row['ours']} (seeds {seeds}) | **{row['verdict']}** |")
    return "\n".join(lines)


def sections(folder: Path = RESULTS) -> dict[str, str]:
    """Marker name -> generated Markdown."""
    found = summaries(folder)
    out = {CLAIMS: claims_table(found)}
    for name, (module, summary) in found.items():
        out[f"paper_{name}"] = module.details(summary)
    return out


def replace(text: str, marker: str, body: str) -> str:
    """``text`` with the part between the marker's begin and end comments set to ``body``."""
    pattern = re.compile(rf"(<!-- {marker}: begin -->\n).*?(<!-- {marker}: end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {marker}: begin/end --> markers in the document")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def write(doc: Path = DOC, folder: Path = RESULTS) -> Path:
    text = doc.read_text()
    for marker, body in sections(folder).items():
        text = replace(text, marker, body)
    doc.write_text(text)
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the experiment summaries")
    parser.add_argument("--doc", type=Path, default=DOC, help="the page to update")
    args = parser.parse_args(argv)
    print(f"updated {write(args.doc, args.results)}")


if __name__ == "__main__":
    main()
