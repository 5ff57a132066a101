"""Every gradient rule, ours vs PyEPO's same rule: regret and seconds per epoch.

Tasks and loop: those of ``compare_pyepo.py`` (PyEPO's generators, deg 4, noise 0.5, 1000/1000,
batch 32, Adam 1e-2, linear model; same initialisation and batch order per seed). Rules and the
loss each is trained with (the same for both libraries):

=========  ===================================================  ==============================
rule       ours / PyEPO                                         loss
=========  ===================================================  ==============================
identity   ``layer(pred)``, projection auto / (none in PyEPO)   realised objective
nid        ``Identity(projection="none")`` / ``negativeIdentity``  realised objective
spo+       ``SPOPlus`` / ``SPOPlus``                             its own
dbb        ``Blackbox(lambd=20)`` / ``blackboxOpt(lambd=20)``    realised objective
dpo        ``PerturbedOpt(n=10, sigma=1)`` / ``perturbedOpt``    squared error to ``w*``
pfy        ``FenchelYoung(n=10, sigma=1)`` / ``perturbedFenchelYoung``  its own
imle       ``IMLE(n=10, sigma=1, lambd=10)`` / ``implicitMLE``   L1 to ``w*``
=========  ===================================================  ==============================

Perturbations are drawn from a generator seeded 135 on both sides (PyEPO's default seed, same
draws in the same order), so the two libraries see the same noise.

Phases (cached as JSON under ``benchmarks/results/rules/``):

- ``regret``: seeds 1-3, ``--epochs`` (regret at 5 and at the end). PyEPO's rules run on an exact
  oracle: Gurobi (MIPGap 0) for the shortest path; for the knapsack and the TSP, where Gurobi
  takes 11 and 4 ms a solve and the perturbed rules need 10-20 solves per instance, PyEPO's
  modules run over our exact solver wrapped as a PyEPO ``optModel`` (same optimum; what is
  compared is the rule's mathematics and loop, not the solver). TSP: ours on
  ``TSPLayer(20, symmetric=True)`` (exact Held-Karp branch and bound, PyEPO's edge vectors).
- ``timing``: seconds per epoch, from ``k`` steps of an epoch after a warm-up step (``k`` = all
  unless they take over ``--budget`` seconds; scaled to 1000 / 32 steps), each configuration alone, on seed 1: ours in-process
  and ``workers=2``; PyEPO on Gurobi and on OR-Tools (its open-solver backend), ``processes`` 1
  and 2.

``--report`` rewrites the "Gradient rules" section of ``docs/benchmarks.md`` from the cache.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import compare_pyepo
import idproj_or as ipo
from compare_pyepo import BATCH, DESIGN, DOC, FEATURES, LR, N_TRAIN, ROOT, RULES_SECTION, Task, objective_loss, train

RESULTS = ROOT / "benchmarks" / "results" / "rules"
SECTION = RULES_SECTION
RULES = ["identity", "nid", "spo+", "dbb", "dpo", "pfy", "imle"]
PYEPO_RULES = RULES[1:]
TASKS = ("shortest_path", "knapsack", "tsp")
SEED_135 = 135
# TSP-20 on the symmetric layer (Held-Karp, PyEPO's edge vectors). PyEPO's regret runs use our
# exact solver as its optModel here too: on Gurobi (4 ms a tour) a perturbed rule's 20 epochs take
# 15-30 minutes a seed.
STEPS_PER_EPOCH = math.ceil(N_TRAIN / BATCH)


def loss_of(rule: str) -> str:
    return {"dpo": "squared", "imle": "l1"}.get(rule, "own" if rule in ("spo+", "pfy") else "objective")


def decision_loss(kind: str, y: torch.Tensor, c: torch.Tensor, w: torch.Tensor, sense: str) -> torch.Tensor:
    if kind == "squared":
        return ((y - w) ** 2).sum(1).mean()
    if kind == "l1":
        return (y - w).abs().sum(1).mean()
    return objective_loss(y, c, sense)


def ours_step(task: Task, rule: str, workers: int | None) -> Callable[..., torch.Tensor]:
    """One training step's loss through our rule (costs in PyEPO's vector space outside)."""
    layer = task.build_ours(projection="auto" if rule == "identity" else "none", workers=workers)
    gen = torch.Generator().manual_seed(SEED_135)
    module: Any = {
        "identity": lambda: layer,
        "nid": lambda: ipo.Identity(layer, projection="none"),
        "spo+": lambda: ipo.SPOPlus(layer),
        "dbb": lambda: ipo.Blackbox(layer, lambd=20),
        "dpo": lambda: ipo.PerturbedOpt(layer, n_samples=10, sigma=1.0, generator=gen),
        "pfy": lambda: ipo.FenchelYoung(layer, n_samples=10, sigma=1.0, generator=gen),
        "imle": lambda: ipo.IMLE(layer, n_samples=10, sigma=1.0, lambd=10, generator=gen),
    }[rule]()
    kind = loss_of(rule)

    def step(pred: torch.Tensor, c: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        p, co = task.to_ours(pred), task.to_ours(c)
        if rule == "spo+":
            return module(p, co, task.to_label(w), z)
        if rule == "pfy":
            return module(p, task.to_label(w))
        return decision_loss(kind, task.from_ours(module(p)), c, w, task.sense)

    return step


def oracle_model(task: Task) -> Any:
    """Our exact solver as a PyEPO ``optModel`` (PyEPO's cost vector space, its sense)."""
    from pyepo import EPO
    from pyepo.model.opt import optModel

    class ExactOracle(optModel):
        def __init__(self) -> None:
            self.modelSense = EPO.MAXIMIZE if task.sense == "max" else EPO.MINIMIZE
            super().__init__()

        def _getModel(self) -> tuple[Any, list[int]]:  # noqa: N802 (PyEPO API)
            return task.layer.spec.build(), list(range(task.dim))

        def setObj(self, c: Any) -> None:  # noqa: N802 (PyEPO API)
            self.cost = np.asarray(c, dtype=np.float64)

        def solve(self) -> tuple[np.ndarray, float]:
            cost = task.to_ours(torch.as_tensor(self.cost)[None]).reshape(-1).numpy()
            x = self._model.solve(cost, None).x
            sol = task.from_ours(torch.as_tensor(x).reshape(1, *task.layer.shape)).reshape(-1).numpy()
            return sol, float(self.cost @ sol)

    return ExactOracle()


def pyepo_model(task: Task, backend: str) -> Any:
    if backend == "exact":
        return oracle_model(task)
    model = task.pyepo_model() if backend == "gurobi" else task.pyepo_open_model()
    if backend == "gurobi":
        model._model.setParam("MIPGap", 0.0)
    return model


def pyepo_step(task: Task, rule: str, backend: str, processes: int) -> Callable[..., torch.Tensor]:
    import pyepo

    model = pyepo_model(task, backend)
    f = pyepo.func
    module: Any = {
        "nid": lambda: f.negativeIdentity(model, processes=processes),
        "spo+": lambda: f.SPOPlus(model, processes=processes),
        "dbb": lambda: f.blackboxOpt(model, lambd=20, processes=processes),
        "dpo": lambda: f.perturbedOpt(model, n_samples=10, sigma=1.0, processes=processes, seed=SEED_135),
        "pfy": lambda: f.perturbedFenchelYoung(model, n_samples=10, sigma=1.0, processes=processes, seed=SEED_135),
        "imle": lambda: f.implicitMLE(
            model,
            n_samples=10,
            sigma=1.0,
            lambd=10,
            processes=processes,
            distribution=f.utils.sumGammaDistribution(kappa=5, seed=SEED_135),
        ),
    }[rule]()
    kind = loss_of(rule)

    def step(pred: torch.Tensor, c: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if rule == "spo+":
            return module(pred, c, w, z)
        if rule == "pfy":
            return module(pred, w)
        return decision_loss(kind, module(pred), c, w, task.sense)

    return step


def cached(key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return compare_pyepo.cached(key, fn, RESULTS)


def regret_backend(name: str) -> str:
    return "gurobi" if name == "shortest_path" else "exact"


def phase_regret(task: Task, rules: list[str], epochs: int, *, workers: int | None, sides: list[str]) -> None:
    eval_at = sorted({min(5, epochs), epochs})
    backend = regret_backend(task.name)
    for rule in rules:
        key = f"{task.name}-{rule}-e{epochs}-s{task.seed}"
        if "ours" in sides:
            cached(
                f"ours-{key}",
                lambda: train(
                    task, ours_step(task, rule, workers), epochs=epochs, eval_at=eval_at, label=f"ours {rule}"
                ),
            )
        if "pyepo" in sides and rule in PYEPO_RULES:
            cached(
                f"pyepo-{backend}-{key}",
                lambda: train(
                    task, pyepo_step(task, rule, backend, 1), epochs=epochs, eval_at=eval_at, label=f"pyepo {rule}"
                ),
            )


def time_steps(task: Task, step: Callable[..., torch.Tensor], budget: float) -> dict[str, Any]:
    """Seconds per epoch from the steps of an epoch after the first (all of them unless they
    exceed ``budget`` seconds), scaled to the epoch's step count."""
    torch.manual_seed(task.seed)
    predictor = torch.nn.Linear(FEATURES, task.dim)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=LR)
    order = torch.Generator().manual_seed(task.seed)
    spent, steps = 0.0, -1
    for index in torch.randperm(N_TRAIN, generator=order).split(BATCH):
        if steps == 0:  # after one warm-up step (a pool starting, first imports)
            spent = 0.0
        t0 = time.perf_counter()
        loss = step(predictor(task.x[index]), task.c[index], task.w[index], task.z[index].float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        spent += time.perf_counter() - t0
        steps += 1
        if steps > 0 and spent > budget:
            break
    return {"seconds_per_epoch": spent / steps * STEPS_PER_EPOCH, "steps": steps}


def phase_timing(task: Task, rules: list[str], budget: float) -> None:
    for rule in rules:
        for workers in (None, 2):
            cached(
                f"time-ours-{task.name}-{rule}-w{workers or 0}",
                lambda: time_steps(task, ours_step(task, rule, workers), budget),
            )
        if rule not in PYEPO_RULES:
            continue
        for backend in ("gurobi", "open"):
            if backend == "open" and task.name == "tsp":
                continue  # PyEPO has no OR-Tools TSP; its Pyomo route needs a MIP solver binary
            for processes in (1, 2):
                cached(
                    f"time-pyepo-{backend}-{task.name}-{rule}-p{processes}",
                    lambda: time_steps(task, pyepo_step(task, rule, backend, processes), budget),
                )


def _load(key: str) -> dict[str, Any] | None:
    path = RESULTS / f"{key}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _spread(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2%}"
    return f"{statistics.mean(values):.2%} ± {statistics.stdev(values):.2%}"


def _runs(prefix: str) -> list[dict[str, Any]]:
    """The runs of ``prefix`` for seeds 1-3: the longest cached run of each seed."""
    out = []
    for seed in (1, 2, 3):
        found = sorted(
            RESULTS.glob(f"{prefix}-e*-s{seed}.json"), key=lambda p: int(p.stem.rsplit("-e", 1)[1].split("-")[0])
        )
        if found:
            out.append(json.loads(found[-1].read_text()))
    return out


def _at(runs: list[dict[str, Any]], epoch: int) -> str:
    return _spread([r["regret"][str(epoch)] for r in runs if str(epoch) in r["regret"]])


def report(epochs: int) -> str:
    lines = [
        SECTION.strip(),
        "",
        "Every rule of `idproj_or.rules` against PyEPO 2.2's module of the same name, same data, "
        "initialisation, batch order and perturbation draws (seeds 1-3; `benchmarks/rules.py`, its "
        "docstring has the losses and settings). Regret: normalized test regret, mean ± std over "
        f"seeds, after 5 and {epochs} epochs. Seconds per epoch: training steps on seed 1, each "
        "configuration alone (the best of in-process / `workers=2` for ours, of `processes` 1 / 2 "
        "for PyEPO). PyEPO's regret runs use Gurobi (MIPGap 0) for the shortest path, and our exact "
        "solver as its `optModel` for the knapsack and the TSP (Gurobi's 11 and 4 ms a solve times "
        "10-20 solves per instance would take hours); its timings are on its own backends. TSP: "
        "ours on `TSPLayer(20, symmetric=True)` (exact, Held-Karp).",
        "",
    ]
    for name in TASKS:
        rows = []
        for rule in RULES:
            ours = _runs(f"ours-{name}-{rule}")
            theirs = _runs(f"pyepo-{regret_backend(name)}-{name}-{rule}")

            def best(prefix: str, options: tuple[str, ...]) -> float | None:
                found = [r["seconds_per_epoch"] for o in options if (r := _load(f"{prefix}{o}"))]
                return min(found) if found else None

            t_ours = best(f"time-ours-{name}-{rule}-w", ("0", "2"))
            t_grb = best(f"time-pyepo-gurobi-{name}-{rule}-p", ("1", "2"))
            t_open = best(f"time-pyepo-open-{name}-{rule}-p", ("1", "2"))
            if not (ours or theirs or t_ours):
                continue
            fmt = lambda t: "–" if t is None else f"{t:.2f}"  # noqa: E731
            ratio = lambda t: "–" if t is None or t_ours is None else f"{t_ours / t:.2f}"  # noqa: E731
            rows.append(
                f"| {rule} | {_at(ours, 5)} | {_at(theirs, 5)} | {_at(ours, epochs)} | {_at(theirs, epochs)} | "
                f"{len(ours)} / {len(theirs)} | "
                f"{fmt(t_ours)} | {fmt(t_grb)} ({ratio(t_grb)}) | {fmt(t_open)} ({ratio(t_open)}) |"
            )
        if not rows:
            continue
        lines += [
            f"### {name.replace('_', ' ')}",
            "",
            f"| rule | ours @5 | PyEPO @5 | ours @{epochs} | PyEPO @{epochs} | seeds | s/epoch ours | "
            "PyEPO Gurobi (ours/it) | PyEPO OR-Tools (ours/it) |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    return "\n".join(lines) + "\n"


def write_report(epochs: int) -> None:
    text = DOC.read_text()
    start = text.find(SECTION)
    design = text.find(DESIGN)
    head = text[: start if start >= 0 else design if design >= 0 else len(text)]
    tail = text[design:] if design >= 0 else ""
    DOC.write_text(head.rstrip("\n") + "\n" + SECTION + report(epochs).split("\n", 1)[1] + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--rules", nargs="+", default=RULES, choices=RULES)
    parser.add_argument("--phases", nargs="+", default=["regret", "timing"], choices=["regret", "timing"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0, help="our pool in the regret runs (0: in-process)")
    parser.add_argument(
        "--sides", nargs="+", default=["ours", "pyepo"], choices=["ours", "pyepo"], help="regret runs of whom"
    )
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of steps per timing configuration")
    parser.add_argument("--report", action="store_true", help="only rewrite the docs section from the cache")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.report:
        for name in tqdm(args.tasks, desc="tasks"):
            if "regret" in args.phases:
                for seed in args.seeds:
                    phase_regret(
                        Task(name, seed, symmetric=True),
                        args.rules,
                        args.epochs,
                        workers=args.workers or None,
                        sides=args.sides,
                    )
            if "timing" in args.phases:
                phase_timing(Task(name, 1, symmetric=True), args.rules, args.budget)
    write_report(args.epochs)


if __name__ == "__main__":
    main()
