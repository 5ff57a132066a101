"""CVRP learning, side by side with PyEPO: normalized regret and seconds per epoch, same data,
same initialisation, same batch order.

Setting (PyEPO's CVRP): edge costs from ``idproj_or.data.tsp`` (PyEPO's ``tsp.genData``) over the
depot and ``N`` customers, deg 4, noise 0.5, 5 features, a linear model, batch 32, Adam 1e-2;
demands uniform in 1..9 (one draw, shared by every instance, as PyEPO's model fixes them),
capacity 30, a fleet of ``ceil(5 N / 30) + 1`` vehicles.

Methods:
- ours, on ``VRPLayer(method="pyvrp", iterations=TRAIN_ITERATIONS, workers=2)``: identity with
  ``projection="auto"`` (loss: the realised length ``<c, y>``), SPO+, Blackbox (lambda 20) and
  Fenchel-Young (3 samples, sigma 1);
- PyEPO 2.2 on ``vrpRCIModel`` (Gurobi's pip licence, MIPGap 0, lazy rounded-capacity cuts; 0/1
  edges, no single-customer routes; at most PYEPO_TIME_LIMIT s a solve): SPO+ (one process, its
  fastest here). PyEPO's CaVE is not run: its ``optDatasetConstrs`` needs proven optima of the
  training instances, and Gurobi did not prove one 20-customer instance within 10 s (the dataset
  then raises) nor another within minutes without a limit.

Regret is evaluated for every method by one evaluator, ``VRPLayer(method="pyvrp",
iterations=EVAL_ITERATIONS)`` on the test set (the true optima by the same evaluator), as
``sum(regret) / sum(optimum)``, after each epoch count of ``--epochs`` (one run per seed: the
5-epoch model is the 20-epoch run after 5 epochs). Seconds per epoch are training steps only.
The table also gives the gap the training heuristic leaves against the evaluator on the test
set's true costs. ``--train``, ``--test``, ``--epochs`` and ``--seeds`` set a smaller run, and
the table says which was run. Writes ``benchmarks/results/vrp_learning.json``, the table between
the markers of ``docs/adapters/routing.md`` and ``docs/benchmarks.md``, and the plot
``docs/img/learning_vrp.png``; ``--report`` rewrites those from the JSON without training.
"""

from __future__ import annotations

import argparse
import json
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
BENCH_DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "img" / "learning_vrp.png"
BEGIN, END = "<!-- vrp_learning: begin -->", "<!-- vrp_learning: end -->"
FEATURES = 5
TRAIN_ITERATIONS, EVAL_ITERATIONS = 50, 300
# Seconds per Gurobi solve: benchmarks/vrp.py saw one 20-customer instance stall for minutes.
PYEPO_TIME_LIMIT = 10.0
WORKERS = 2


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
            workers=WORKERS,
            **options,
        )

    def heuristic_gap(self) -> float:
        """The training heuristic's mean gap to the evaluator on the test set's true costs."""
        c = self.c[self.train :]
        y = self.layer(TRAIN_ITERATIONS).solve(c.double()).float()
        return float(((c * y).sum(1) / self.z[self.train :] - 1).mean())

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
        "pfy": lambda: ipo.FenchelYoung(layer, n_samples=3, sigma=1.0, generator=gen),
    }[rule]()

    def step(pred: torch.Tensor, c: torch.Tensor, w: torch.Tensor, z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if rule == "spo+":
            return module(pred, c, w, z)
        if rule == "pfy":
            return module(pred, w)
        return (module(pred) * c).sum(1).mean()

    return step


def pyepo_model(task: Task) -> Any:
    import pyepo

    model = pyepo.model.grb.vrpRCIModel(task.n + 1, task.demands.astype(float).tolist(), CAPACITY, task.vehicles)
    model._model.setParam("MIPGap", 0.0)
    model._model.setParam("Threads", 1)
    model._model.setParam("TimeLimit", PYEPO_TIME_LIMIT)
    return model


def pyepo_spo(task: Task) -> Callable[..., torch.Tensor]:
    import pyepo

    spo = pyepo.func.SPOPlus(pyepo_model(task), processes=1)
    return lambda pred, c, w, z, idx: spo(pred, c, w, z.unsqueeze(1))


def train(task: Task, step: Callable[..., torch.Tensor], epochs: list[int], seed: int) -> dict[str, Any]:
    """Regret after each epoch count in ``epochs`` and seconds per epoch over the whole run."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(FEATURES, task.c.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    order = torch.Generator().manual_seed(seed)
    x, c, w, z = (t[: task.train] for t in (task.x, task.c, task.w, task.z))
    seconds, regret = 0.0, {}
    for epoch in tqdm(range(1, max(epochs) + 1), desc="epochs", leave=False):
        t0 = time.perf_counter()
        for idx in torch.randperm(task.train, generator=order).split(32):
            loss = step(model(x[idx]), c[idx], w[idx], z[idx], idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - t0
        if epoch in epochs:
            regret[epoch] = task.regret(model)
    return {"regret": regret, "seconds_per_epoch": seconds / max(epochs)}


def run(args: argparse.Namespace, done: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every method on every seed; ``done`` receives the results after each seed."""
    warnings.simplefilter("ignore", ipo.SolverWarning)
    methods: dict[str, Callable[[Task], Callable[..., torch.Tensor]]] = {
        f"ours {rule}": (lambda task, rule=rule: ours(task, rule)) for rule in ("identity", "spo+", "dbb", "pfy")
    }
    methods["PyEPO SPO+ (Gurobi RCI)"] = pyepo_spo
    out: dict[str, Any] = {"setting": {**vars(args), "seeds": []}, "runs": {}, "heuristic_gap": []}
    for seed in args.seeds:
        task = Task(args.customers, seed, args.train, args.test)
        out["heuristic_gap"].append(task.heuristic_gap())
        for name, make in tqdm(methods.items(), desc=f"seed {seed}"):
            out["runs"].setdefault(name, []).append(train(task, make(task), args.epochs, seed))
        out["setting"]["seeds"].append(seed)
        done(out)
    return out


def table(res: dict[str, Any]) -> str:
    s = res["setting"]
    epochs = s["epochs"]
    gap = 100 * float(np.mean(res["heuristic_gap"]))
    lines = [
        f"{s['customers']} customers, {s['train']} train / {s['test']} test, seeds "
        f"{', '.join(map(str, s['seeds']))}; normalized regret on the test set by PyVRP ({EVAL_ITERATIONS} "
        f"iterations), mean ± std over seeds. Ours train on PyVRP with {TRAIN_ITERATIONS} iterations in "
        f"{WORKERS} workers; its mean gap to the evaluator on the test set's true costs is {gap:.2f}%.",
        "",
        "| method | " + " | ".join(f"regret, {e} epochs" for e in epochs) + " | seconds per epoch |",
        "|---|" + "---|" * len(epochs) + "---|",
    ]
    for name, runs in res["runs"].items():
        cells = []
        for e in epochs:
            values = 100 * np.array([r["regret"][str(e)] if str(e) in r["regret"] else r["regret"][e] for r in runs])
            cells.append(f"{values.mean():.2f}% ± {values.std():.2f}")
        sec = np.mean([r["seconds_per_epoch"] for r in runs])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {sec:.2f} |")
    return "\n".join(lines)


def plot(res: dict[str, Any]) -> None:
    """Regret after each epoch count (bars, mean over seeds, std as error bars) and seconds per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, epochs = list(res["runs"]), res["setting"]["epochs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 0.4 * len(names) + 1.4), dpi=120, sharey=True)
    y = np.arange(len(names))
    height = 0.8 / len(epochs)
    for k, e in enumerate(epochs):
        values = np.array([[100 * r["regret"][str(e)] for r in res["runs"][n]] for n in names])
        left.barh(y + k * height, values.mean(1), height, xerr=values.std(1), label=f"{e} epochs")
    left.set_yticks(y + height * (len(epochs) - 1) / 2, names, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("normalized test regret (%)")
    left.legend(fontsize=8)
    seconds = [np.mean([r["seconds_per_epoch"] for r in res["runs"][n]]) for n in names]
    bars = right.barh(y + height * (len(epochs) - 1) / 2, seconds, 0.6, color="tab:gray")
    right.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    right.set_xlim(0, 1.15 * max(seconds))
    right.set_xlabel("seconds per epoch")
    for ax in (left, right):
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(
        f"CVRP-{res['setting']['customers']}: ours on PyVRP vs PyEPO on Gurobi, seeds {res['setting']['seeds']}"
    )
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT)
    plt.close(fig)


def report(res: dict[str, Any], *, write: bool) -> None:
    """The table on both pages and the plot (``write=False``: print only)."""
    text = table(res)
    print(text, flush=True)
    if write:
        publish(res, text, OUT, BEGIN, END)
        doc = BENCH_DOC.read_text()
        start, stop = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        BENCH_DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[stop:])
        plot(res)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 20], help="evaluate after these epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--dry", action="store_true", help="print the table, write nothing")
    parser.add_argument("--report", action="store_true", help="rewrite the tables and the plot from the JSON")
    args = parser.parse_args()
    if args.report:
        report(json.loads(OUT.read_text()), write=True)
        return
    # Published after each seed, so that a long run cut short keeps its finished seeds.
    run(args, lambda res: report(res, write=not args.dry))


if __name__ == "__main__":
    main()
