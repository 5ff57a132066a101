"""The house's layering: the worker side imports neither torch nor CVXPY (unless its backend is
CVXPY), pool workers map neither, and no module imports from a layer above its own."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "idproj_or"

# Lower number = lower layer; a module may import only from its own layer or below.
LAYERS = {
    "errors": 0,
    "statuses": 0,
    "checks": 0,
    "options": 0,
    "_quiet_sigint": 0,
    "solvers": 1,
    "batch": 2,
    "handle": 3,
    "rules": 4,
    "layers": 5,
    "problems": 5,
    "data": 6,
    "metrics": 6,
    "training": 7,
    "demos": 8,
    "cli": 8,
}


def _part(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path) -> list[str]:
    """Modules of this package that ``path`` imports (absolute names below idproj_or)."""
    package = path.relative_to(SRC).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = base + (node.module.split(".") if node.module else [])
                names = [".".join(target)] if node.module else [".".join(base + [a.name]) for a in node.names]
                found += names
            elif node.module and node.module.startswith("idproj_or."):
                found.append(node.module.removeprefix("idproj_or."))
        elif isinstance(node, ast.Import):
            found += [a.name.removeprefix("idproj_or.") for a in node.names if a.name.startswith("idproj_or.")]
    return [f for f in found if f]


# The batch package's own floors, one module per job: what a worker runs (a resident solver and
# its task, the results) knows nothing of where batches are routed.
BATCH_LAYERS = {
    "results": 0,
    "warm": 0,
    "resident": 0,
    "forkserver": 0,
    "interrupts": 1,
    "pool": 1,
    "routing": 2,
}
BATCH = sorted((SRC / "batch").glob("*.py"))


def test_every_module_has_a_place_in_the_house():
    parts = {p.relative_to(SRC).with_suffix("").parts[0] for p in SRC.rglob("*.py")} - {"__init__", "__main__"}
    assert parts <= set(LAYERS), parts - set(LAYERS)
    assert {p.stem for p in BATCH} - {"__init__"} == set(BATCH_LAYERS)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_from_a_layer_above_its_own(path):
    own = path.relative_to(SRC).with_suffix("").parts[0]
    if own in ("__init__", "__main__"):
        return
    for target in _imports(path):
        assert LAYERS[_part(target)] <= LAYERS[own], f"{path.relative_to(SRC)} imports {target}"


def test_no_batch_module_imports_from_a_batch_module_above_its_own():
    edges = [
        (p.stem, t.split(".")[1])
        for p in BATCH
        if p.stem != "__init__"
        for t in _imports(p)
        if _part(t) == "batch" and "." in t
    ]
    assert ("routing", "pool") in edges and ("interrupts", "resident") in edges  # the check reads them
    assert [(a, b) for a, b in edges if BATCH_LAYERS[b] > BATCH_LAYERS[a]] == []


@pytest.mark.parametrize("path", [p for p in BATCH if p.stem != "forkserver"], ids=lambda p: p.stem)
def test_batch_modules_read_no_private_attribute_of_another_object(path):
    # e.g. a pool's ``_processes``: the pools are tracked by their own bookkeeping. (forkserver.py
    # is the one exception: it subclasses multiprocessing's fork-server Popen.)
    private = [
        f"{ast.unparse(node)} (line {node.lineno})"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    private += [
        f"{ast.unparse(node)} (line {node.lineno})"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) in ("getattr", "setattr", "hasattr")
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
        and str(node.args[1].value).startswith("_")
        and not str(node.args[1].value).startswith("__")
    ]
    assert private == []


def test_the_worker_side_imports_neither_torch_nor_cvxpy():
    modules = [f"idproj_or.solvers.{p.stem}" for p in (SRC / "solvers").glob("*.py") if p.stem != "cvxpy"]
    modules += [f"idproj_or.batch.{p.stem}" for p in BATCH if p.stem != "__init__"]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules + ["idproj_or.batch"])
    code += "print(sorted(m for m in ('torch', 'cvxpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


MAPS = textwrap.dedent(
    """
    import torch, cvxpy  # a training script imports both; the workers must not
    import idproj_or as ipo
    from ortools.sat.python import cp_model
    from idproj_or.batch import pool_pids

    if __name__ == "__main__":
        m = cp_model.CpModel()
        x = [m.new_bool_var(f"x{i}") for i in range(4)]
        m.add(sum(x) == 2)
        layer = ipo.CpSatLayer(m, x, sense="max", workers=2, route="pool")
        y = layer(torch.arange(4.0).repeat(16, 1))
        assert layer.last_info.mode == "pool" and y[:, 2:].sum() == 32
        for pid in pool_pids(2):
            with open(f"/proc/{pid}/maps") as f:
                files = {line.split()[-1] for line in f if "/" in line}
            print(pid, any("libtorch" in p for p in files), any("cvxpy" in p or "cvxcore" in p for p in files),
                  any("libortools" in p for p in files))
    """
)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/<pid>/maps (Linux)")
def test_cp_sat_pool_workers_map_neither_libtorch_nor_cvxpy(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(MAPS)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split() for line in out.stdout.splitlines()]
    assert len(rows) == 2, out.stdout
    # each worker: no libtorch, no CVXPY, and OR-Tools (the maps are real)
    assert all(row[1:] == ["False", "False", "True"] for row in rows), out.stdout


def test_the_architecture_page_names_every_module():
    page = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    table = page[page.index("## The pieces") : page.index("## Who runs where")]
    missing = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "__main__.py"
        and (p.name != "__init__.py" or p.parent == SRC)
        and not any(f"`{name}`" in table for name in (str(p.relative_to(SRC)), p.name, f"{p.parent.relative_to(SRC)}/"))
    ]
    assert missing == []
