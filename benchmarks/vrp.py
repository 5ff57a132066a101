"""Capacitated vehicle routing, side by side in one run: ``VRPLayer``'s three methods, a Gurobi
referee and PyEPO's ``vrpRCIModel``, on random instances; milliseconds per solve and gaps.

Instances: ``n`` customers and a depot uniform in the unit square, Euclidean edge costs, integer
demands uniform in 1..9, capacity 30 (PyEPO's CVRP example sizes), a fleet of
``ceil(5 n / 30) + 1`` vehicles (room for one more route than the mean demand needs, as PyEPO's
examples; instances whose demand fills more than 90% of it are drawn again).

- ``exact``: ``VRPLayer(method="exact")`` (CP-SAT), up to ``EXACT_MAX`` customers.
- ``routing``: OR-Tools routing, ``iterations=ROUTING_SOLUTIONS`` (deterministic).
- ``pyvrp``: PyVRP, ``iterations=PYVRP_ITERATIONS`` (deterministic per seed).
- ``gurobi``: the referee, our own model on Gurobi (one variable per edge, 0..2 on depot edges so
  that single-customer routes exist, customer degree 2, lazy rounded-capacity cuts on integer
  solutions, MIPGap 0, one thread), up to ``EXACT_MAX`` customers.
- ``pyepo``: PyEPO's ``vrpRCIModel`` (0/1 edges: it cannot express a single-customer route),
  counted where its optimum is worse than the true one; with a time limit of
  ``PYEPO_TIME_LIMIT`` (one instance stalled for minutes), counted where it runs out.

Gaps are to the best known length: the exact one where an exact method ran, else the best of all
methods and a long PyVRP run (``REFERENCE_ITERATIONS``). Writes ``benchmarks/results/vrp.json``
and the table between the markers in ``docs/adapters/routing.md``. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import idproj_or as ipo

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "vrp.json"
DOC = ROOT / "docs" / "adapters" / "routing.md"
BEGIN, END = "<!-- vrp: begin -->", "<!-- vrp: end -->"
SIZES = {10: 30, 15: 30, 20: 20, 50: 10, 100: 5}  # customers: instances
REFEREE_SIZES = {15: 50, 20: 50}  # exact vs Gurobi on 100 instances
EXACT_MAX = 20
PYEPO_TIME_LIMIT = 10.0  # seconds: its 0/1 model, with cuts on integer solutions only, can stall
CAPACITY = 30
ROUTING_SOLUTIONS = 200
PYVRP_ITERATIONS = 2000
REFERENCE_ITERATIONS = 20000


def fleet(n: int) -> int:
    return math.ceil(5 * n / CAPACITY) + 1


def instance(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    while True:
        points = rng.uniform(0.0, 1.0, (n + 1, 2))
        iu, ju = np.triu_indices(n + 1, 1)
        demands = rng.integers(1, 10, n)
        if demands.sum() <= 0.9 * fleet(n) * CAPACITY:
            return np.linalg.norm(points[iu] - points[ju], axis=1), demands


def gurobi_referee(n: int, vehicles: int) -> Any:
    """Gurobi model of the CVRP with 0..2 depot edges; ``solve(cost, demands)`` -> edge usage."""
    import gurobipy as gp
    from gurobipy import GRB

    env = gp.Env(params={"OutputFlag": 0})
    edges = [(i, j) for i in range(n + 1) for j in range(i + 1, n + 1)]

    def solve(cost: np.ndarray, demands: np.ndarray) -> np.ndarray:
        m = gp.Model(env=env)
        m.Params.MIPGap = 0.0
        m.Params.Threads = 1
        m.Params.LazyConstraints = 1
        x = m.addVars(edges, lb=0, ub={e: 2 if e[0] == 0 else 1 for e in edges}, vtype=GRB.INTEGER)
        m.setObjective(gp.quicksum(float(c) * x[e] for c, e in zip(cost, edges)), GRB.MINIMIZE)
        for i in range(1, n + 1):
            m.addConstr(gp.quicksum(x[e] for e in edges if i in e) == 2)
        m.addConstr(gp.quicksum(x[e] for e in edges if e[0] == 0) <= 2 * vehicles)

        def cut(model: Any, where: int) -> None:
            if where != GRB.Callback.MIPSOL:
                return
            val = model.cbGetSolution(x)
            parent = list(range(n + 1))

            def find(a: int) -> int:
                while parent[a] != a:
                    parent[a] = parent[parent[a]]
                    a = parent[a]
                return a

            for (i, j), v in val.items():
                if i > 0 and v > 0.5:
                    parent[find(i)] = find(j)
            groups: dict[int, list[int]] = {}
            for i in range(1, n + 1):
                groups.setdefault(find(i), []).append(i)
            for s in groups.values():
                need = 2 * math.ceil(demands[[i - 1 for i in s]].sum() / CAPACITY)
                inside = set(s)
                border = [e for e in edges if (e[0] in inside) != (e[1] in inside)]
                if sum(val[e] for e in border) < need - 0.5:
                    model.cbLazy(gp.quicksum(x[e] for e in border) >= need)

        m.optimize(cut)
        return np.array([round(x[e].X) for e in edges], dtype=np.float64)

    return solve


def run(quick: bool) -> dict[str, Any]:
    warnings.simplefilter("ignore", ipo.SolverWarning)
    rng = np.random.default_rng(1)
    sizes = {10: 5, 20: 3} if quick else SIZES
    out: dict[str, Any] = {"sizes": {}, "referee": {}}
    for n, k in tqdm(sizes.items(), desc="sizes"):
        demands, k_max = np.ones(n, dtype=np.int64), fleet(n)
        layers = {
            "routing": ipo.VRPLayer(
                n, CAPACITY, demands, n_vehicles=k_max, method="routing", iterations=ROUTING_SOLUTIONS
            ),
            "pyvrp": ipo.VRPLayer(n, CAPACITY, demands, n_vehicles=k_max, method="pyvrp", iterations=PYVRP_ITERATIONS),
        }
        if n <= EXACT_MAX:
            layers["exact"] = ipo.VRPLayer(n, CAPACITY, demands, n_vehicles=k_max)
        reference = ipo.VRPLayer(
            n, CAPACITY, demands, n_vehicles=k_max, method="pyvrp", iterations=REFERENCE_ITERATIONS, seed=1
        )
        times: dict[str, list[float]] = {m: [] for m in layers}
        lengths: dict[str, list[float]] = {m: [] for m in layers}
        best: list[float] = []
        for _ in tqdm(range(k), desc=f"{n} customers", leave=False):
            cost, d = instance(rng, n)
            c, dd = torch.as_tensor(cost), torch.as_tensor(d)
            for name, layer in layers.items():
                t0 = time.perf_counter()
                y = layer.solve(c, demands=dd).numpy()
                times[name].append(time.perf_counter() - t0)
                lengths[name].append(float(cost @ y))
            if "exact" in layers:
                best.append(lengths["exact"][-1])
            else:
                long_run = float(cost @ reference.solve(c, demands=dd).numpy())
                best.append(min(long_run, *(lengths[m][-1] for m in layers)))
        out["sizes"][n] = {
            "instances": k,
            "reference": "exact" if n <= EXACT_MAX else f"best of all, PyVRP {REFERENCE_ITERATIONS} iterations",
            "ms": {m: [1e3 * statistics.median(t), 1e3 * statistics.fmean(t)] for m, t in times.items()},
            "gap_pct": {
                m: [
                    100 * statistics.fmean(v / b - 1 for v, b in zip(ls, best)),
                    100 * max(v / b - 1 for v, b in zip(ls, best)),
                ]
                for m, ls in lengths.items()
            },
        }
    out["referee"] = referee(rng, {15: 5, 20: 5} if quick else REFEREE_SIZES)
    return out


def referee(rng: np.random.Generator, sizes: dict[int, int]) -> dict[str, Any]:
    """Exact vs Gurobi (both proven optimal) and PyEPO's 0/1 model, same instances."""
    import pyepo

    result: dict[str, Any] = {}
    for n, k in sizes.items():
        grb = gurobi_referee(n, fleet(n))
        exact = ipo.VRPLayer(n, CAPACITY, np.ones(n, dtype=np.int64), n_vehicles=fleet(n))
        worst, pyepo_worse, pyepo_unsolved, ms = 0.0, 0, 0, {"exact": [], "gurobi": [], "pyepo": []}
        for _ in tqdm(range(k), desc=f"referee {n}", leave=False):
            cost, d = instance(rng, n)
            t0 = time.perf_counter()
            ours = float(cost @ exact.solve(torch.as_tensor(cost), demands=torch.as_tensor(d)).numpy())
            ms["exact"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            theirs = float(cost @ grb(cost, d))
            ms["gurobi"].append(time.perf_counter() - t0)
            worst = max(worst, abs(ours - theirs) / theirs)
            model = pyepo.model.grb.vrpRCIModel(n + 1, d.astype(float).tolist(), CAPACITY, fleet(n))
            model._model.setParam("MIPGap", 0.0)
            model._model.setParam("Threads", 1)
            model._model.setParam("TimeLimit", PYEPO_TIME_LIMIT)
            model.setObj(cost)
            t0 = time.perf_counter()
            try:
                _, value = model.solve()
            except Exception:  # no solution within the limit
                value = math.inf
            ms["pyepo"].append(time.perf_counter() - t0)
            if model._model.Status != 2:  # not proven optimal within the limit
                pyepo_unsolved += 1
            else:
                pyepo_worse += value > ours * (1 + 1e-9)
        result[n] = {
            "instances": k,
            "max_rel_diff_exact_gurobi": worst,
            "pyepo_worse_than_optimal": pyepo_worse,
            "pyepo_not_proven_within_limit": pyepo_unsolved,
            "median_ms": {m: 1e3 * statistics.median(t) for m, t in ms.items()},
        }
    return result


def table(res: dict[str, Any]) -> str:
    methods = ["exact", "pyvrp", "routing"]
    lines = [
        "| customers | instances | "
        + " | ".join(f"{m}: median ms / mean gap % / max gap %" for m in methods)
        + " | reference |",
        "|---|---|" + "---|" * len(methods) + "---|",
    ]
    for n, row in res["sizes"].items():
        cells = []
        for m in methods:
            if m not in row["ms"]:
                cells.append("–")
                continue
            gap = row["gap_pct"][m]
            cells.append(f"{row['ms'][m][0]:.1f} / {gap[0]:.2f} / {gap[1]:.2f}")
        lines.append(f"| {n} | {row['instances']} | " + " | ".join(cells) + f" | {row['reference']} |")
    lines.append("")
    for n, r in res["referee"].items():
        ms = r["median_ms"]
        lines.append(
            f"- Referee, {n} customers, {r['instances']} instances: exact vs Gurobi (MIPGap 0) largest relative "
            f"difference {r['max_rel_diff_exact_gurobi']:.1e}; PyEPO's `vrpRCIModel` worse than the true optimum on "
            f"{r['pyepo_worse_than_optimal']} (it has no single-customer routes) and not proven optimal within "
            f"{PYEPO_TIME_LIMIT:g} s on {r['pyepo_not_proven_within_limit']}; median ms: exact "
            f"{ms['exact']:.0f}, Gurobi {ms['gurobi']:.0f}, PyEPO {ms['pyepo']:.0f}."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few small instances (a smoke run; writes nothing)")
    args = parser.parse_args()
    res = run(args.quick)
    text = table(res)
    print(text)
    if not args.quick:
        publish(res, text, OUT, BEGIN, END)


def publish(res: dict[str, Any], text: str, out: Path, begin: str, end: str) -> None:
    """``res`` as JSON at ``out``; ``text`` between the markers ``begin`` and ``end`` of the page."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    doc = DOC.read_text()
    start, stop = doc.index(begin) + len(begin), doc.index(end)
    DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[stop:])


if __name__ == "__main__":
    main()
