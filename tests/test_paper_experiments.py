"""The paper experiments (examples/paper/) run end to end on their tiny settings, and the report
turns their summaries into the claims table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "paper"))

import globe_tsp  # noqa: E402
import graph_matching  # noqa: E402
import report  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper")
    return folder, {
        module.NAME: module.main(["--tiny", "--seeds", "1", "2", "--quiet", "--out", str(folder)])
        for module in (globe_tsp, graph_matching)
    }


def _check_runs(summary, methods):
    assert summary["tiny"] and summary["seeds"] == [1, 2]
    assert {v["method"] for v in summary["settings"].values()} == methods
    for v in summary["settings"].values():
        assert 0.0 <= v["accuracy"]["mean"] <= 1.0 and len(v["accuracy"]["values"]) == 2
        assert v["seconds_per_epoch"]["mean"] > 0


def test_globe_tsp_tiny(tiny):
    folder, summaries = tiny
    summary = summaries["globe_tsp"]
    _check_runs(summary, {"identity", "blackbox"})
    calls = {v["method"]: v["solve_batches_per_step"]["mean"] for v in summary["settings"].values()}
    assert calls == {"identity": 1.0, "blackbox": 2.0}  # Blackbox solves again in backward
    assert any(v.get("corrupt") for v in summary["settings"].values())
    assert any(v.get("grad_noise") for v in summary["settings"].values())
    assert (folder / "globe_tsp.json").exists() and (folder / "globe_tsp.png").exists()


def test_graph_matching_tiny(tiny):
    folder, summaries = tiny
    summary = summaries["graph_matching"]
    _check_runs(summary, {"identity", "blackbox", "blackbox-small"})
    assert {v["projection"] for v in summary["settings"].values()} == {"none", "norm"}
    assert (folder / "graph_matching.png").exists()


def test_report_writes_the_claims_table(tiny, tmp_path):
    folder, _ = tiny
    doc = tmp_path / "paper.md"
    markers = ["paper_claims", *(f"paper_{name}" for name in report.EXPERIMENTS)]
    doc.write_text("".join(f"<!-- {m}: begin -->\nold\n<!-- {m}: end -->\n" for m in markers))
    report.write(doc, folder)
    text = doc.read_text()
    assert "old" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "**" in line]
    assert len(rows) == 6  # three claims per experiment
    assert all(any(f"**{v}**" in row for v in ("reproduced", "partly", "not")) for row in rows)
