"""Side by side with PyEPO: normalized regret and seconds per epoch, same data, same loop.

Tasks (PyEPO's benchmark settings): shortest path 5x5, knapsack 32 items x 2 dims, TSP-20; deg 4,
noise 0.5, 5 features, 1000 train / 1000 test, batch 32, Adam 1e-2, linear model. The data come
from PyEPO's own generators (``pyepo.data.*.genData``) and feed both libraries.

Methods:
- ours: identity with each valid projection (``CpSatLayer`` knapsack, ``CvxpyLayer`` shortest
  path LP with HiGHS, ``TSPLayer`` cpsat), serial and ``workers=2``;
- PyEPO 2.2: negative identity (NID), SPO+ and DBB (lambda 20) on its fastest backend here
  (Gurobi's pip licence), ``processes=1`` and ``2``.

Both run the same training loop (same initialisation, batch order and optimiser); the decision
loss for NID, DBB and ours is the realised objective ``<c, y>`` (signed for maximisation), SPO+
uses its own loss. Regret is evaluated for every method by one evaluator: exact decisions for the
predicted costs, ``sum(regret) / sum(|optimal|)`` on the test set. Seconds per epoch are the
wall time of the training steps only (no evaluation).

Every run is cached as JSON under ``benchmarks/results/``; ``--report`` rewrites
``docs/benchmarks.md`` and its plots from the cache. Needs the ``bench`` extra
(``make bench`` installs it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import idproj_or as ipo
from idproj_or import problems

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"

N_TRAIN = N_TEST = 1000
FEATURES, DEG, NOISE, BATCH, LR = 5, 4, 0.5, 32, 1e-2
PROJECTIONS = {"shortest_path": ["none", "norm", "auto"], "knapsack": ["none", "norm", "auto"],
               "tsp": ["none", "norm", "std", "auto"]}
PYEPO_METHODS = ["nid", "spo+", "dbb"]


class Task:
    """PyEPO data for one task and seed, our layer for it, and PyEPO's model for it."""

    def __init__(self, name: str, seed: int) -> None:
        import pyepo

        self.name, self.seed = name, seed
        n = N_TRAIN + N_TEST
        if name == "shortest_path":
            x, c = pyepo.data.shortestpath.genData(n, FEATURES, (5, 5), deg=DEG, noise_width=NOISE, seed=seed)
            self.build_ours = lambda **o: problems.shortest_path_grid(5, 5, backend="cvxpy").layer(**o)
            self.pyepo_model = lambda: pyepo.model.predefined.shortestPathModel((5, 5), backend="gurobi")
        elif name == "knapsack":
            w, x, c = pyepo.data.knapsack.genData(n, FEATURES, 32, dim=2, deg=DEG, noise_width=NOISE, seed=seed)
            cap = 0.5 * w.sum(axis=1)
            self.build_ours = lambda **o: problems.knapsack(w, cap, backend="cpsat").layer(**o)
            self.pyepo_model = lambda: pyepo.model.predefined.knapsackModel(w, cap, backend="gurobi")
        elif name == "tsp":
            x, c = pyepo.data.tsp.genData(n, FEATURES, 20, deg=DEG, noise_width=NOISE, seed=seed)
            self.build_ours = lambda **o: ipo.TSPLayer(20, **o)
            self.pyepo_model = lambda: pyepo.model.predefined.tspModel(20, backend="gurobi")
        else:
            raise ValueError(f"unknown task {name!r}")
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.c = torch.as_tensor(c, dtype=torch.float32)  # PyEPO's cost vectors (edges for TSP)
        self.dim = self.c.shape[1]
        self.layer = self.build_ours(projection="none")
        self.sense = self.layer.sense
        sols = self.layer.solve(self.to_ours(self.c).double())
        self.w = self.from_ours(sols).float()  # optimal decisions, in PyEPO's cost vector space
        self.z = (self.c.double() * self.w.double()).sum(1)

    def to_ours(self, c: torch.Tensor) -> torch.Tensor:
        """PyEPO cost vectors -> our layer's cost shape (TSP: symmetric matrix from edges)."""
        if self.name != "tsp":
            return c
        iu, ju = torch.triu_indices(20, 20, 1)
        m = c.new_zeros(len(c), 20, 20)
        m[:, iu, ju] = c
        m[:, ju, iu] = c
        return m

    def from_ours(self, y: torch.Tensor) -> torch.Tensor:
        if self.name != "tsp":
            return y
        iu, ju = torch.triu_indices(20, 20, 1)
        return y[:, iu, ju] + y[:, ju, iu]

    def regret(self, predictor: torch.nn.Module) -> float:
        """Normalized test regret of ``predictor``: exact decisions for its costs (our layer)."""
        test = slice(N_TRAIN, None)
        with torch.no_grad():
            pred = predictor(self.x[test]).double()
        y = self.from_ours(self.layer.solve(self.to_ours(pred))).double()
        sign = -1.0 if self.sense == "max" else 1.0
        achieved = (self.c[test].double() * y).sum(1)
        return float((sign * (achieved - self.z[test])).sum() / self.z[test].abs().sum())


def train(task: Task, step: Callable[..., torch.Tensor], *, epochs: int, eval_at: list[int], label: str) -> dict[str, Any]:
    torch.manual_seed(task.seed)
    predictor = torch.nn.Linear(FEATURES, task.dim)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=LR)
    order = torch.Generator().manual_seed(task.seed)
    seconds, regrets = [], {0: task.regret(predictor)}
    bar = tqdm(range(1, epochs + 1), desc=label, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        for index in torch.randperm(N_TRAIN, generator=order).split(BATCH):
            loss = step(predictor(task.x[index]), task.c[index], task.w[index], task.z[index].float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - t0)
        if epoch in eval_at:
            regrets[epoch] = task.regret(predictor)
            bar.set_postfix(regret=f"{regrets[epoch]:.2%}")
    return {"seconds_per_epoch": seconds, "regret": regrets}


def objective_loss(y: torch.Tensor, c: torch.Tensor, sense: str) -> torch.Tensor:
    sign = -1.0 if sense == "max" else 1.0
    return sign * (y * c).sum(1).mean()


def run_ours(task: Task, projection: str, workers: int | None, *, epochs: int, eval_at: list[int]) -> dict[str, Any]:
    layer = task.build_ours(projection=projection, workers=workers)

    def step(pred, c, w, z):
        y = task.from_ours(layer(task.to_ours(pred)))
        return objective_loss(y, c, task.sense)

    return train(task, step, epochs=epochs, eval_at=eval_at, label=f"ours {projection} w={workers}")


def run_pyepo(task: Task, method: str, processes: int, *, epochs: int, eval_at: list[int]) -> dict[str, Any]:
    import pyepo

    model = task.pyepo_model()
    if method == "spo+":
        module = pyepo.func.SPOPlus(model, processes=processes)

        def step(pred, c, w, z):
            return module(pred, c, w, z)
    else:
        module = (pyepo.func.negativeIdentity(model, processes=processes) if method == "nid"
                  else pyepo.func.blackboxOpt(model, lambd=20, processes=processes))

        def step(pred, c, w, z):
            return objective_loss(module(pred), c, task.sense)

    return train(task, step, epochs=epochs, eval_at=eval_at, label=f"pyepo {method} p={processes}")


def cached(key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    path = RESULTS / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = fn()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def solver_floor(task: Task, batch: int = 256) -> dict[str, float]:
    """Layer solve time vs a loop over the same resident solver (what a hand loop costs)."""
    layer = task.build_ours(projection="none")
    costs = task.to_ours(task.c[:batch]).double()
    spec_solver = layer.spec.build()
    flat = costs.reshape(batch, -1).numpy()
    t0 = time.perf_counter()
    for c in flat:
        spec_solver.solve(c, None)
    hand = time.perf_counter() - t0
    t0 = time.perf_counter()
    layer.solve(costs)
    ours = time.perf_counter() - t0
    return {"hand_ms": hand / batch * 1e3, "layer_ms": ours / batch * 1e3, "ratio": ours / hand}


def main() -> None:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["shortest_path", "knapsack", "tsp"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--tsp-epochs", type=int, default=5, help="TSP-20 is costly: epochs for it")
    parser.add_argument("--report", action="store_true", help="only rewrite docs/benchmarks.md from the cache")
    parser.add_argument("--results", type=Path, default=RESULTS, help="cache folder of the runs")
    args = parser.parse_args()
    RESULTS = args.results
    if not args.report:
        for name in args.tasks:
            epochs = args.tsp_epochs if name == "tsp" else args.epochs
            eval_at = sorted({min(5, epochs), epochs})
            for seed in args.seeds:
                task = Task(name, seed)
                cached(f"{name}-floor-s{seed}", lambda: solver_floor(task))
                for proj in PROJECTIONS[name]:
                    cached(f"{name}-ours-{proj}-w2-s{seed}",
                           lambda: run_ours(task, proj, 2, epochs=epochs, eval_at=eval_at))
                for method in PYEPO_METHODS:
                    cached(f"{name}-pyepo-{method}-p1-s{seed}",
                           lambda: run_pyepo(task, method, 1, epochs=epochs, eval_at=eval_at))
                if seed == args.seeds[0]:  # timing of the other process counts: one seed
                    cached(f"{name}-ours-auto-w1-s{seed}",
                           lambda: run_ours(task, "auto", None, epochs=epochs, eval_at=eval_at))
                    for method in PYEPO_METHODS:
                        cached(f"{name}-pyepo-{method}-p2-s{seed}",
                               lambda: run_pyepo(task, method, 2, epochs=epochs, eval_at=eval_at))
    report(args.tasks)


def _load(pattern: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]


def _mean_spread(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2%}"
    return f"{statistics.mean(values):.2%} ± {statistics.stdev(values):.2%}"


def report(tasks: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import ortools
    import pyepo  # noqa: F401

    from importlib.metadata import version

    IMG.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Benchmarks: idproj_or vs PyEPO",
        "",
        "Regenerate with `make bench` (runs missing results, then rewrites this page). Machine: "
        f"{platform.machine()}, 2 cores, Python {platform.python_version()}, torch {torch.__version__}, "
        f"ortools {ortools.__version__}, cvxpy {version('cvxpy')}, pyepo {version('pyepo')}, "
        f"gurobipy {version('gurobipy')}.",
        "",
        "Setting: PyEPO's generators, deg 4, noise 0.5, 5 features, 1000 train / 1000 test, batch 32, "
        "Adam 1e-2, linear model; seeds 1-3. Regret: normalized test regret (mean ± std over seeds). "
        "Seconds per epoch: training steps only, median over epochs. Ours: identity with projection; "
        "PyEPO: NID, SPO+, DBB (λ=20) on Gurobi, its fastest backend here.",
        "",
    ]
    for name in tasks:
        runs = {p.stem: json.loads(p.read_text()) for p in RESULTS.glob(f"{name}-*.json")}
        if not runs:
            continue
        lines += [f"## {name.replace('_', ' ')}", "", "| method | regret @5 | regret @final | s/epoch serial | s/epoch 2 proc. |",
                  "|---|---|---|---|---|"]
        fig, ax = plt.subplots(figsize=(6, 3.5))

        def row(label: str, prefix: str, serial_key: str, pool_key: str) -> None:
            seeds = [r for k, r in runs.items() if k.startswith(prefix)]
            if not seeds:
                return
            final = max(int(e) for e in seeds[0]["regret"])
            r5 = [r["regret"].get("5", r["regret"].get(5)) for r in seeds]
            rf = [r["regret"][str(final)] if str(final) in r["regret"] else r["regret"][final] for r in seeds]
            t1 = runs.get(serial_key)
            t2 = runs.get(pool_key)
            med = lambda r: f"{statistics.median(r['seconds_per_epoch']):.3f}" if r else "–"  # noqa: E731
            lines.append(f"| {label} | {_mean_spread([v for v in r5 if v is not None])} | {_mean_spread(rf)} | {med(t1)} | {med(t2)} |")
            ax.bar(label, statistics.mean(rf), yerr=statistics.stdev(rf) if len(rf) > 1 else 0)

        seed0 = min(int(k.rsplit("-s", 1)[1]) for k in runs if "-s" in k)
        for proj in PROJECTIONS[name]:
            row(f"ours, {proj}", f"{name}-ours-{proj}-w2-", f"{name}-ours-{proj}-w1-s{seed0}" if proj == "auto" else "",
                f"{name}-ours-{proj}-w2-s{seed0}")
        for method in PYEPO_METHODS:
            row(f"PyEPO {method.upper()}", f"{name}-pyepo-{method}-p1-", f"{name}-pyepo-{method}-p1-s{seed0}",
                f"{name}-pyepo-{method}-p2-s{seed0}")
        floors = [r for k, r in runs.items() if "-floor-" in k]
        if floors:
            f = floors[0]
            lines += ["", f"Solver floor: layer solve {f['layer_ms']:.3f} ms/instance vs a loop over the same "
                      f"resident solver {f['hand_ms']:.3f} ms (ratio {f['ratio']:.3f})."]
        ax.set_ylabel("normalized test regret")
        ax.set_title(name.replace("_", " "))
        ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        fig.savefig(IMG / f"bench_{name}.png", dpi=120)
        plt.close(fig)
        lines += ["", f"![{name}](img/bench_{name}.png)", ""]
    DOC.write_text("\n".join(lines) + "\n")
    print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
