"""CVRP learning, side by side with PyEPO: normalized regret and seconds per epoch, same data,
same initialisation, same batch order.

Setting (PyEPO's CVRP): edge costs from ``idproj_or.data.tsp`` (PyEPO's ``tsp.genData``) over the
depot and ``N`` customers, deg 4, noise 0.5, 5 features, a linear model, batch 32, Adam 1e-2;
demands uniform in 1..9 (one draw, shared by every instance, as PyEPO's model fixes them),
capacity 30, a fleet of ``ceil(5 N / 30) + 1`` vehicles.

Methods:
- ours, on ``VRPLayer(method="pyvrp", iterations=TRAIN_ITERATIONS)``: identity with
  ``projection="auto"`` (loss: the realised length ``<c, y>``), SPO+, Blackbox (lambda 20) and
  Fenchel-Young (10 samples, sigma 1);
- PyEPO 2.2: SPO+ on ``vrpRCIModel`` (Gurobi's pip licence, MIPGap 0, lazy rounded-capacity cuts;
  0/1 edges, no single-customer routes).

Regret is evaluated for every method by one evaluator, ``VRPLayer(method="pyvrp",
iterations=EVAL_ITERATIONS)`` on the test set (the true optima by the same evaluator), as
``sum(regret) / sum(optimum)``. Seconds per epoch are training steps only. The full setting
(1000 / 1000 instances, 20 epochs, seeds 1-3) takes hours on two cores; ``--train``, ``--test``,
``--epochs`` and ``--seeds`` set a smaller run, and the table says which was run. Writes
``benchmarks/results/vrp_learning.json`` and the table between the markers of
``docs/adapters/routing.md``.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import idproj_or as ipo
from idproj_or import data
from vrp import CAPACITY, publish

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "vrp_learning.json"
BEGIN, END = "<!-- vrp_learning: begin -->", "<!-- vrp_learning: end -->"
FEATURES = 5
TRAIN_ITERATIONS, EVAL_ITERATIONS = 300, 2000


class Task:
    """One seed's data: features, true edge costs, shared demands, and the evaluator's optima."""

    def __init__(self, n: int, seed: int, train: int, test: int) -> None:
        d = data.tsp(train + test, FEATURES, n + 1, deg=4, noise_width=0.5, seed=seed)
        self.n, self.train = n, train
        self.x = torch.as_tensor(d.features, dtype=torch.float32)
        iu, ju = np.triu_indices(n + 1, 1)  # PyEPO's edge order
        self.c = torch.as_tensor(np.asarray(d.costs)[:, iu, ju], dtype=torch.float32)
        self.demands = np.random.default_rng(seed).integers(1, 10, n)
        self.vehicles = math.ceil(5 * n / CAPACITY) + 1
        assert self.demands.sum() <= self.vehicles * CAPACITY
        self.evaluator = self.layer(EVAL_ITERATIONS, projection="none")
        self.w = self.evaluator.solve(self.c.double()).float()
        self.z = (self.c * self.w).sum(1)

    def layer(self, iterations: int, **options: Any) -> ipo.VRPLayer:
        return ipo.VRPLayer(
            self.n,
            CAPACITY,
            self.demands,
            n_vehicles=self.vehicles,
            method="pyvrp",
            iterations=iterations,
            **options,
        )

    def regret(self, model: torch.nn.Module) -> float:
        with torch.no_grad():
            pred = model(self.x[self.train :]).double()
        y = self.evaluator.solve(pred).float()
        c, z = self.c[self.train :], self.z[self.train :]
        return float(((c * y).sum(1) - z).sum() / z.sum())


def ours(task: Task, rule: str) -> Callable[..., torch.Tensor]:
    layer = task.layer(TRAIN_ITERATIONS, projection="auto" if rule == "identity" else "none")
    gen = torch.Generator().manual_seed(135)
    module: Any = {
        "identity": lambda: layer,
        "spo+": lambda: ipo.SPOPlus(layer),
        "dbb": lambda: ipo.Blackbox(layer, lambd=20),
        "pfy": lambda: ipo.FenchelYoung(layer, n_samples=10, sigma=1.0, generator=gen),
    }[rule]()

    def step(pred: torch.Tensor, c: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if rule == "spo+":
            return module(pred, c, w, z)
        if rule == "pfy":
            return module(pred, w)
        return (module(pred) * c).sum(1).mean()

    return step


def pyepo_spo(task: Task) -> Callable[..., torch.Tensor]:
    import pyepo

    model = pyepo.model.grb.vrpRCIModel(task.n + 1, task.demands.astype(float).tolist(), CAPACITY, task.vehicles)
    model._model.setParam("MIPGap", 0.0)
    model._model.setParam("Threads", 1)
    spo = pyepo.func.SPOPlus(model, processes=1)
    return lambda pred, c, w, z: spo(pred, c, w, z.unsqueeze(1))


def train(task: Task, step: Callable[..., torch.Tensor], epochs: int, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(FEATURES, task.c.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    order = torch.Generator().manual_seed(seed)
    x, c, w, z = (t[: task.train] for t in (task.x, task.c, task.w, task.z))
    seconds = 0.0
    for _ in tqdm(range(epochs), desc="epochs", leave=False):
        t0 = time.perf_counter()
        for idx in torch.randperm(task.train, generator=order).split(32):
            loss = step(model(x[idx]), c[idx], w[idx], z[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - t0
    return {"regret": task.regret(model), "seconds_per_epoch": seconds / epochs}


def run(args: argparse.Namespace) -> dict[str, Any]:
    warnings.simplefilter("ignore", ipo.SolverWarning)
    methods: dict[str, Callable[[Task], Callable[..., torch.Tensor]]] = {
        f"ours {rule}": (lambda task, rule=rule: ours(task, rule)) for rule in ("identity", "spo+", "dbb", "pfy")
    }
    methods["PyEPO SPO+ (Gurobi RCI)"] = pyepo_spo
    out: dict[str, Any] = {"setting": vars(args), "runs": {}}
    for seed in args.seeds:
        task = Task(args.customers, seed, args.train, args.test)
        for name, make in tqdm(methods.items(), desc=f"seed {seed}"):
            out["runs"].setdefault(name, []).append(train(task, make(task), args.epochs, seed))
    return out


def table(res: dict[str, Any]) -> str:
    s = res["setting"]
    lines = [
        f"{s['customers']} customers, {s['train']} train / {s['test']} test, {s['epochs']} epochs, seeds "
        f"{', '.join(map(str, s['seeds']))}; regret by PyVRP ({EVAL_ITERATIONS} iterations) on the test set.",
        "",
        "| method | normalized regret (mean over seeds) | seconds per epoch |",
        "|---|---|---|",
    ]
    for name, runs in res["runs"].items():
        regret = sum(r["regret"] for r in runs) / len(runs)
        sec = sum(r["seconds_per_epoch"] for r in runs) / len(runs)
        lines.append(f"| {name} | {100 * regret:.2f}% | {sec:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--dry", action="store_true", help="print the table, write nothing")
    args = parser.parse_args()
    res = run(args)
    text = table(res)
    print(text)
    if not args.dry:
        publish(res, text, OUT, BEGIN, END)


if __name__ == "__main__":
    main()
