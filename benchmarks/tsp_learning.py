"""TSP-20 learning: identity with projection on the exact symmetric layer, the full sweep of loss x
projection x noise schedule, against PyEPO's SPO+ and DBB on the same data.

Setting (PyEPO's TSP benchmark): ``pyepo.data.tsp.genData``, 20 cities, deg 4, noise 0.5,
5 features, 1000 train / 1000 test, batch 32, Adam 1e-2, linear model, seeds 1-3, regret after 5
and 20 epochs; the loop, initialisation and batch order of ``compare_pyepo.py``. Ours:
``TSPLayer(20, symmetric=True, projection=P, noise=alpha)`` (exact Held-Karp branch and bound, PyEPO's
edge vectors), loss ``objective`` (the realised tour length, whose gradient through the layer is
the regret's) or ``hamming`` (``||y - y*||^2``); noise schedules: none, ``alpha`` in every epoch,
``alpha`` in the first half only (the paper's schedule). PyEPO's SPO+ and DBB rows come from
``rules.py`` (same data, same loop; their solver there is our exact one wrapped as a PyEPO model).

Writes ``benchmarks/results/tsp_learning/*.json``, ``docs/img/tsp_sweep.png`` and the table
between the markers of ``docs/learning.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from compare_pyepo import ROOT, Task, objective_loss, train

RESULTS = ROOT / "benchmarks" / "results" / "tsp_learning"
RULES = ROOT / "benchmarks" / "results" / "rules"
DOC = ROOT / "docs" / "learning.md"
PLOT = ROOT / "docs" / "img" / "tsp_sweep.png"
BEGIN, END = "<!-- tsp_sweep: begin -->", "<!-- tsp_sweep: end -->"
LOSSES = ("objective", "hamming")
PROJECTIONS = ("none", "std", "auto")
SCHEDULES = {
    "no noise": (0.0, None),
    "0.1 always": (0.1, 20),
    "0.1 first half": (0.1, 10),
    "0.5 always": (0.5, 20),
    "0.5 first half": (0.5, 10),
    "1.0 first half": (1.0, 10),
}
EPOCHS, SEEDS = 20, (1, 2, 3)


def run_one(task: Task, loss: str, projection: str, schedule: str) -> dict[str, Any]:
    alpha, until = SCHEDULES[schedule]
    layer = task.build_ours(projection=projection, noise=alpha)

    def before_epoch(epoch: int) -> None:
        layer.noise = alpha if until is None or epoch <= until else 0.0

    def step(pred: torch.Tensor, c: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = layer(pred)
        return ((y - w) ** 2).sum(1).mean() if loss == "hamming" else objective_loss(y, c, task.sense)

    return train(
        task,
        step,
        epochs=EPOCHS,
        eval_at=[5, EPOCHS],
        label=f"{loss}/{projection}/{schedule}",
        before_epoch=before_epoch,
    )


def key(loss: str, projection: str, schedule: str, seed: int) -> str:
    return f"{loss}-{projection}-{schedule.replace(' ', '_')}-s{seed}"


def sweep(seeds: tuple[int, ...]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    configs = list(itertools.product(LOSSES, PROJECTIONS, SCHEDULES))
    for seed in seeds:
        task = Task("tsp", seed, symmetric=True)
        for loss, projection, schedule in tqdm(configs, desc=f"seed {seed}"):
            path = RESULTS / f"{key(loss, projection, schedule, seed)}.json"
            if not path.exists():
                path.write_text(json.dumps(run_one(task, loss, projection, schedule), indent=1))


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _stats(values: list[float]) -> str:
    if not values:
        return "–"
    spread = f" ± {statistics.stdev(values):.2%}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2%}{spread}"


def report() -> None:
    rows, points = [], []
    for loss, projection, schedule in itertools.product(LOSSES, PROJECTIONS, SCHEDULES):
        runs = [r for s in SEEDS if (r := _load(RESULTS / f"{key(loss, projection, schedule, s)}.json"))]
        if not runs:
            continue
        r5 = [r["regret"]["5"] for r in runs]
        r20 = [r["regret"][str(EPOCHS)] for r in runs]
        sec = statistics.fmean(statistics.fmean(r["seconds_per_epoch"]) for r in runs)
        rows.append(
            (statistics.mean(r20), f"| {loss} | {projection} | {schedule} | {_stats(r5)} | {_stats(r20)} | {sec:.2f} |")
        )
        points.append((f"{loss}/{projection}/{schedule}", statistics.mean(r5), statistics.mean(r20)))
    refs = []
    for rule in ("spo+", "dbb", "nid"):
        runs = [r for s in SEEDS if (r := _load(RULES / f"pyepo-exact-tsp-{rule}-e20-s{s}.json"))]
        if runs:
            refs.append(
                f"| PyEPO {rule.upper()} | none | – | {_stats([r['regret']['5'] for r in runs])} | "
                f"{_stats([r['regret']['20'] for r in runs])} | – |"
            )
    lines = [
        "| loss | projection | noise | regret @5 | regret @20 | s/epoch |",
        "|---|---|---|---|---|---|",
        *[r for _, r in sorted(rows)],
        *refs,
    ]
    text = DOC.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail)
    if points:
        _plot(points)
    print("\n".join(lines))


def _plot(points: list[tuple[str, float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points.sort(key=lambda p: p[2])
    fig, ax = plt.subplots(figsize=(7.0, 0.28 * len(points) + 1.2), dpi=120)
    y = range(len(points))
    ax.barh(y, [p[2] * 100 for p in points], color="tab:blue", label="20 epochs")
    ax.scatter([p[1] * 100 for p in points], y, color="tab:orange", zorder=3, s=12, label="5 epochs")
    ax.set_yticks(list(y), [p[0] for p in points], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("normalized test regret (%), mean over seeds 1-3")
    ax.set_title("TSP-20, identity: loss / projection / noise schedule")
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--report", action="store_true", help="only rewrite the docs from the cache")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.report:
        sweep(tuple(args.seeds))
    report()


if __name__ == "__main__":
    main()
