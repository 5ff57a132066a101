"""Declared models against a cold solve: seconds per training epoch of SPO+ and Blackbox through a
declared CP-SAT knapsack, with and without the box certificate, beside PyEPO's same rules on SCIP
(``pyepo.model.ort.knapsackModel(solver="scip")``), in one run.

Setting: PyEPO's knapsack data (``idproj_or.data.knapsack``: 48 items, 3 dimensions, 5 features,
deg 4, noise 0.5, capacity half of each dimension's weight; weights have two decimals, so the
CP-SAT model states them times 100), 1000 training instances, a linear model, batch 32, Adam
1e-2, 3 epochs, seed 1. Every method trains from the same initialisation in the same batch
order; the table gives seconds per epoch (training steps only), the share of solves the
certificate decided, and the training loss after the last epoch (equal with and without the
certificate: the same decisions' objectives).

Writes ``benchmarks/results/shortcuts.json`` and the table between the markers of
``docs/certificate.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ortools.sat.python import cp_model
from tqdm.auto import tqdm

import idproj_or as ipo
from idproj_or import data
from idproj_or.solvers.certificate import BOX_CERTIFICATE

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "shortcuts.json"
DOC = ROOT / "docs" / "certificate.md"
BEGIN, END = "<!-- shortcuts: begin -->", "<!-- shortcuts: end -->"
ITEMS, DIM, FEATURES = 48, 3, 5


class Task:
    def __init__(self, train: int, seed: int) -> None:
        d = data.knapsack(train, FEATURES, ITEMS, dim=DIM, deg=4, noise_width=0.5, seed=seed)
        self.weights = np.asarray(d.weights)
        self.cap = np.asarray(d.capacities, dtype=float)
        self.x = torch.as_tensor(d.features, dtype=torch.float32)
        self.c = torch.as_tensor(d.costs, dtype=torch.float32)
        layer = self.layer()
        self.w = layer.solve(self.c.double()).float()
        self.z = (self.c * self.w).sum(1)

    def layer(self) -> ipo.CpSatLayer:
        model = cp_model.CpModel()
        x = [model.new_bool_var(f"x{i}") for i in range(ITEMS)]
        weights = np.rint(self.weights * 100).astype(int)
        for k in range(DIM):
            model.add(sum(int(w) * xi for w, xi in zip(weights[k], x)) <= int(np.floor(self.cap[k] * 100 + 1e-9)))
        return ipo.CpSatLayer(model, x, sense="max")

    def pyepo_model(self) -> Any:
        from pyepo.model.ort import knapsackModel

        return knapsackModel(self.weights, self.cap, solver="scip")


def ours(task: Task, rule: str, *, certificate: bool) -> tuple[Callable[..., torch.Tensor], Callable[[], list[str]]]:
    layer = task.layer()
    if not certificate:
        layer._handle.batch.box = None
    words: list[str] = []
    module: Any = ipo.SPOPlus(layer) if rule == "spo+" else ipo.Blackbox(layer, lambd=20)

    def step(pred: torch.Tensor, c: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        loss = module(pred, c, w, z) if rule == "spo+" else -(module(pred) * c).sum(1).mean()
        info = module.last_info if hasattr(module, "last_info") else None
        if info is not None:
            words.extend(info.solver_status)
        return loss

    return step, lambda: words


def pyepo(task: Task, rule: str) -> tuple[Callable[..., torch.Tensor], Callable[[], list[str]]]:
    import pyepo as pe

    model = task.pyepo_model()
    if rule == "spo+":
        spo = pe.func.SPOPlus(model, processes=1)
        return (lambda pred, c, w, z: spo(pred, c, w, z.unsqueeze(1))), list
    dbb = pe.func.blackboxOpt(model, lambd=20, processes=1)
    return (lambda pred, c, w, z: -(dbb(pred) * c).sum(1).mean()), list


def train(task: Task, step: Callable[..., torch.Tensor], epochs: int, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(FEATURES, ITEMS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    order = torch.Generator().manual_seed(seed)
    seconds, last = 0.0, 0.0
    n = len(task.x)
    for _ in tqdm(range(epochs), desc="epochs", leave=False):
        t0 = time.perf_counter()
        total = 0.0
        for idx in torch.randperm(n, generator=order).split(32):
            loss = step(model(task.x[idx]), task.c[idx], task.w[idx], task.z[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        seconds += time.perf_counter() - t0
        last = total / n
    return {"seconds_per_epoch": seconds / epochs, "loss": last}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    warnings.simplefilter("ignore", ipo.SolverWarning)
    task = Task(args.train, args.seed)
    out: dict[str, Any] = {"setting": vars(args), "rows": {}}
    for rule in ("spo+", "dbb"):
        makers: dict[str, Callable[[], tuple[Callable[..., torch.Tensor], Callable[[], list[str]]]]] = {
            f"PyEPO {rule} (SCIP)": lambda rule=rule: pyepo(task, rule),
            f"ours {rule}, cold (every row solved)": lambda rule=rule: ours(task, rule, certificate=False),
            f"ours {rule}, box certificate": lambda rule=rule: ours(task, rule, certificate=True),
        }
        for name, make in tqdm(makers.items(), desc=rule):
            step, words = make()
            row = train(task, step, args.epochs, args.seed)
            seen = words()
            row["certified"] = seen.count(BOX_CERTIFICATE) / len(seen) if seen else None
            out["rows"][name] = row
    return out


def table(res: dict[str, Any]) -> str:
    s = res["setting"]
    lines = [
        f"Knapsack {ITEMS} items x {DIM} dimensions, {s['train']} training instances, {s['epochs']} epochs, "
        f"seed {s['seed']}; one solver thread each.",
        "",
        "| method | seconds per epoch | vs PyEPO | rows certified | final training loss |",
        "|---|---|---|---|---|",
    ]
    for name, row in res["rows"].items():
        rule = name.split()[1].rstrip(",")
        ref = res["rows"][f"PyEPO {rule} (SCIP)"]["seconds_per_epoch"]
        share = "" if row["certified"] is None else f"{100 * row['certified']:.0f}%"
        lines.append(
            f"| {name} | {row['seconds_per_epoch']:.3f} | {row['seconds_per_epoch'] / ref:.2f}x | {share} "
            f"| {row['loss']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dry", action="store_true", help="print the table, write nothing")
    args = parser.parse_args()
    res = run(args)
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
