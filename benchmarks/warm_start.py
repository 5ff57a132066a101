"""Declared models against a cold solve (exact shortcuts and warm starts), beside PyEPO where it
has the same model, in one run: seconds per training epoch, the share of rows each shortcut
decided, and the final training loss.

Every configuration trains the same linear model (5 features, Adam 1e-2, batch 32) from the same
initialisation in the same batch order; ours pass the batch's indices as ``ids=``.

- Knapsack 48 x 3 on CP-SAT (PyEPO's data: ``idproj_or.data.knapsack``, deg 4, noise 0.5; the
  weights have two decimals, so the model states them times 100), SPO+ and Blackbox (lambda 20),
  3 epochs: PyEPO's same rule on ``pyepo.model.ort.knapsackModel(solver="scip")``; ours cold
  (every row solved), with the box certificate, and with the box certificate and warm starts.
- Shortest path 6 x 6 as a declared GLOP LP (``0 <= x <= 1``, flow conservation), the identity
  rule without projection (PyEPO's NID), 5 epochs: PyEPO NID on
  ``pyepo.model.ort.shortestPathModel(solver="glop")``; ours cold, by default (the network path
  shortcut decides every row), and with warm starts and the basis certificate (network path off).
- A CP-SAT scheduling model (20 optional jobs with release times, deadlines and durations on one
  machine, ``no_overlap``; predicted profits on the jobs' presence, maximised), identity without
  projection, 3 epochs: ours cold and warm (hints of every variable, start times included).
- A SCIP facility location (4 sites, 10 clients, capacities, opening costs as the model's own
  objective; predicted assignment costs), identity without projection, 3 epochs: ours cold and
  warm (SCIP hints).

Writes ``benchmarks/results/warm_start.json`` and the tables between the markers of
``docs/warm_start.md``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model
from tqdm.auto import tqdm

import idproj_or as ipo
from idproj_or import data
from idproj_or.solvers.certificate import BASIS_CERTIFICATE, BOX_CERTIFICATE, NETWORK_PATH

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "warm_start.json"
DOC = ROOT / "docs" / "warm_start.md"
BEGIN, END = "<!-- warm_start: begin -->", "<!-- warm_start: end -->"
FEATURES = 5
Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Problem:
    """Features, true costs, true optima and a fresh layer per configuration."""

    def __init__(self, x: torch.Tensor, c: torch.Tensor, make: Callable[..., Any], sense: str) -> None:
        self.x, self.c, self.make, self.sense = x, c, make, sense
        self.pyepo: Callable[[], Any] | None = None  # PyEPO's model of the same problem
        layer = make(warm_start=False)
        self.w = layer.solve(c.double()).float()
        info = layer.last_info
        self.z = torch.as_tensor(info.objective, dtype=torch.float32)


def knapsack(n: int, seed: int) -> Problem:
    d = data.knapsack(n, FEATURES, 48, dim=3, deg=4, noise_width=0.5, seed=seed)
    weights = np.rint(np.asarray(d.weights) * 100).astype(int)
    caps = np.floor(np.asarray(d.capacities, dtype=float) * 100 + 1e-9).astype(int)

    def make(**options: Any) -> ipo.CpSatLayer:
        model = cp_model.CpModel()
        x = [model.new_bool_var(f"x{i}") for i in range(48)]
        for k in range(3):
            model.add(sum(int(w) * xi for w, xi in zip(weights[k], x)) <= int(caps[k]))
        return ipo.CpSatLayer(model, x, sense="max", **options)

    p = Problem(
        torch.as_tensor(d.features, dtype=torch.float32), torch.as_tensor(d.costs, dtype=torch.float32), make, "max"
    )
    p.pyepo = lambda: __import__("pyepo.model.ort", fromlist=["knapsackModel"]).knapsackModel(
        np.asarray(d.weights), np.asarray(d.capacities, dtype=float), solver="scip"
    )
    return p


def shortest_path(n: int, seed: int) -> Problem:
    d = data.shortest_path(n, FEATURES, (6, 6), deg=4, noise_width=0.5, seed=seed)
    arcs = ipo.problems.grid_arcs(6, 6)  # PyEPO's order, as the data's costs are

    def make(**options: Any) -> ipo.LinearSolverLayer:
        solver = pywraplp.Solver.CreateSolver("GLOP")
        x = [solver.NumVar(0, 1, f"a{k}") for k in range(len(arcs))]
        for node in range(36):
            inflow = sum(x[k] for k, (_, j) in enumerate(arcs) if j == node)
            outflow = sum(x[k] for k, (i, _) in enumerate(arcs) if i == node)
            solver.Add(inflow - outflow == (-1 if node == 0 else 1 if node == 35 else 0))
        return ipo.LinearSolverLayer(solver, x, projection="none", **options)

    p = Problem(
        torch.as_tensor(d.features, dtype=torch.float32), torch.as_tensor(d.costs, dtype=torch.float32), make, "min"
    )
    p.pyepo = lambda: __import__("pyepo.model.ort", fromlist=["shortestPathModel"]).shortestPathModel(
        (6, 6), solver="glop"
    )
    return p


def scheduling(n: int, seed: int) -> Problem:
    jobs = 20
    d = data.knapsack(n, FEATURES, jobs, dim=1, deg=4, noise_width=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    duration = rng.integers(2, 10, jobs)
    release = rng.integers(0, 60, jobs)
    deadline = release + duration + rng.integers(0, 15, jobs)

    def make(**options: Any) -> ipo.CpSatLayer:
        model = cp_model.CpModel()
        present = [model.new_bool_var(f"p{j}") for j in range(jobs)]
        intervals = []
        for j in range(jobs):
            start = model.new_int_var(int(release[j]), int(deadline[j] - duration[j]), f"s{j}")
            intervals.append(model.new_optional_fixed_size_interval_var(start, int(duration[j]), present[j], f"i{j}"))
        model.add_no_overlap(intervals)
        return ipo.CpSatLayer(model, present, sense="max", projection="none", **options)

    return Problem(
        torch.as_tensor(d.features, dtype=torch.float32), torch.as_tensor(d.costs, dtype=torch.float32), make, "max"
    )


def facility(n: int, seed: int) -> Problem:
    sites, clients = 4, 10
    d = data.knapsack(n, FEATURES, sites * clients, dim=1, deg=4, noise_width=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    demand = rng.integers(1, 6, clients)
    capacity = int(demand.sum() * 0.45)
    opening = rng.uniform(2.0, 6.0, sites)

    def make(**options: Any) -> ipo.LinearSolverLayer:
        solver = pywraplp.Solver.CreateSolver("SCIP")
        open_ = [solver.BoolVar(f"o{f}") for f in range(sites)]
        assign = [[solver.BoolVar(f"a{f}_{c}") for c in range(clients)] for f in range(sites)]
        for c in range(clients):
            solver.Add(sum(assign[f][c] for f in range(sites)) == 1)
        for f in range(sites):
            solver.Add(sum(int(demand[c]) * assign[f][c] for c in range(clients)) <= capacity * open_[f])
            for c in range(clients):
                solver.Add(assign[f][c] <= open_[f])
        solver.Minimize(sum(float(opening[f]) * open_[f] for f in range(sites)))
        flat = [v for row in assign for v in row]
        return ipo.LinearSolverLayer(solver, flat, projection="none", **options)

    return Problem(
        torch.as_tensor(d.features, dtype=torch.float32), torch.as_tensor(d.costs, dtype=torch.float32), make, "min"
    )


def ours(p: Problem, rule: str, *, box: bool, warm: bool, network: bool) -> tuple[Step, Callable[[], list[str]]]:
    layer = p.make(warm_start=warm)
    if not box:  # every shortcut off
        layer.handle.batch.box = None
    layer.handle.batch.network = network
    sign = -1.0 if p.sense == "max" else 1.0
    module: Any = {"spo+": lambda: ipo.SPOPlus(layer), "dbb": lambda: ipo.Blackbox(layer, lambd=20)}.get(
        rule, lambda: layer
    )()
    words: list[str] = []
    ids: dict[str, Any] = {}

    def step(pred: torch.Tensor, c: torch.Tensor, w: torch.Tensor, z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if warm:
            ids["ids"] = idx
        loss = module(pred, c, w, z, **ids) if rule == "spo+" else sign * (module(pred, **ids) * c).sum(1).mean()
        info = module.last_info
        if info is not None:
            words.extend(info.solver_status)
        return loss

    return step, lambda: words


def pyepo(p: Problem, rule: str) -> tuple[Step, Callable[[], list[str]]]:
    import pyepo as pe

    assert p.pyepo is not None
    model = p.pyepo()
    sign = -1.0 if p.sense == "max" else 1.0
    if rule == "spo+":
        spo = pe.func.SPOPlus(model, processes=1)
        return (lambda pred, c, w, z, idx: spo(pred, c, w, z.unsqueeze(1))), list
    fn = (
        pe.func.blackboxOpt(model, lambd=20, processes=1)
        if rule == "dbb"
        else pe.func.negativeIdentity(model, processes=1)
    )
    return (lambda pred, c, w, z, idx: sign * (fn(pred) * c).sum(1).mean()), list


def train(p: Problem, step: Step, epochs: int, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(FEATURES, p.c.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    order = torch.Generator().manual_seed(seed)
    n = len(p.x)
    seconds, last = 0.0, 0.0
    for _ in tqdm(range(epochs), desc="epochs", leave=False):
        t0 = time.perf_counter()
        total = 0.0
        for idx in torch.randperm(n, generator=order).split(32):
            loss = step(model(p.x[idx]), p.c[idx], p.w[idx], p.z[idx], idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        seconds += time.perf_counter() - t0
        last = total / n
    return {"seconds_per_epoch": seconds / epochs, "loss": last}


# (section, problem, rule, epochs, training instances, configurations)
SECTIONS: list[tuple[str, Callable[[int, int], Problem], str, int, int, tuple[str, ...]]] = [
    ("knapsack 48x3, CP-SAT, SPO+", knapsack, "spo+", 3, 1000, ("pyepo", "cold", "box", "box+warm")),
    ("knapsack 48x3, CP-SAT, Blackbox", knapsack, "dbb", 3, 1000, ("pyepo", "cold", "box", "box+warm")),
    ("shortest path 6x6, GLOP, NID", shortest_path, "nid", 5, 1000, ("pyepo", "cold", "network", "warm")),
    ("scheduling 20 jobs, CP-SAT, identity", scheduling, "nid", 3, 300, ("cold", "warm")),
    ("facility location 4x10, SCIP, identity", facility, "nid", 3, 300, ("cold", "warm")),
]
PYEPO_NAMES = {"spo+": "SPO+", "dbb": "DBB", "nid": "NID"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    warnings.simplefilter("ignore", ipo.SolverWarning)
    out: dict[str, Any] = {"setting": vars(args), "sections": {}}
    for title, build, rule, epochs, n, configs in SECTIONS:
        if args.only and not any(k in title for k in args.only):
            continue
        rows: dict[str, list[dict[str, Any]]] = {}
        n = args.train or n
        for seed in args.seeds:
            p = build(n, seed)
            for config in tqdm(configs, desc=f"{title} seed {seed}", leave=False):
                if config == "pyepo":
                    step, words = pyepo(p, rule)
                else:
                    step, words = ours(
                        p, rule, box=config != "cold", warm="warm" in config, network=config == "network"
                    )
                row: dict[str, Any] = train(p, step, epochs, seed)
                seen = words()
                row["box"] = seen.count(BOX_CERTIFICATE) / len(seen) if seen else None
                row["basis"] = seen.count(BASIS_CERTIFICATE) / len(seen) if seen else None
                row["network"] = seen.count(NETWORK_PATH) / len(seen) if seen else None
                rows.setdefault(config, []).append(row)
        out["sections"][title] = {"rule": rule, "epochs": epochs, "train": n, "rows": rows}
    return out


LABELS = {
    "pyepo": "PyEPO {rule} ({solver})",
    "cold": "ours, cold (every row solved)",
    "network": "ours, default (network path shortcut)",
    "box": "ours, box certificate",
    "box+warm": "ours, box certificate + warm starts (hints)",
    "warm": "ours, warm starts ({how})",
}


def table(res: dict[str, Any]) -> str:
    seeds = res["setting"]["seeds"]
    lines = [f"Seeds {', '.join(map(str, seeds))}; mean over seeds; one solver thread each; same machine, one run."]
    for title, sec in res["sections"].items():
        rows = sec["rows"]
        base = "pyepo" if "pyepo" in rows else "cold"
        ref = np.mean([r["seconds_per_epoch"] for r in rows[base]])
        solver = "SCIP" if "knapsack" in title else "GLOP"
        how = "basis certificate; network path off" if "GLOP" in title else "hints"
        lines += [
            "",
            f"**{title}**: {sec['train']} training instances, {sec['epochs']} epochs.",
            "",
            f"| method | seconds per epoch | vs {'PyEPO' if base == 'pyepo' else 'cold'} | rows decided without a solve "
            "| final training loss |",
            "|---|---|---|---|---|",
        ]
        for config, runs in rows.items():
            sec_epoch = np.mean([r["seconds_per_epoch"] for r in runs])
            shares = [
                (r["box"] or 0.0) + (r["basis"] or 0.0) + (r.get("network") or 0.0)
                for r in runs
                if r["box"] is not None
            ]
            share = f"{100 * np.mean(shares):.0f}%" if shares else ""
            label = LABELS[config].format(rule=PYEPO_NAMES[sec["rule"]], solver=solver, how=how)
            loss = np.mean([r["loss"] for r in runs])
            lines.append(f"| {label} | {sec_epoch:.3f} | {sec_epoch / ref:.2f}x | {share} | {loss:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--train", type=int, default=None, help="training instances of every section (a quick run)")
    parser.add_argument("--only", nargs="*", default=[], help="run the sections whose title contains one of these")
    parser.add_argument("--dry", action="store_true", help="print the tables, write nothing")
    args = parser.parse_args()
    res = run(args)
    if args.only and OUT.exists():  # the other sections keep their last results
        res = {**res, "sections": {**json.loads(OUT.read_text())["sections"], **res["sections"]}}
    text = table(res)
    print(text)
    if args.dry:
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    doc = DOC.read_text()
    start, stop = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[stop:])


if __name__ == "__main__":
    main()
