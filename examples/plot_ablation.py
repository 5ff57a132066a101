"""Bar chart of the projection ablation: final normalized test regret per projection and problem.

Reads the ``results.json`` that the examples write with ``--compare`` and draws one group of bars
per problem (mean over seeds, whiskers min..max), with the two-stage baseline and the Bayes floor
as ticks.

    python examples/knapsack.py --seeds 0 1 2 3 4 --compare --out runs/knapsack_compare
    python examples/shortest_path.py --seeds 0 1 2 3 4 --compare --out runs/shortest_path_compare
    python examples/tsp.py --seeds 0 1 2 --compare --out runs/tsp_compare
    python examples/plot_ablation.py runs/knapsack_compare runs/shortest_path_compare runs/tsp_compare \\
        --out docs/img/learning_ablation.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

PROJECTIONS = ("none", "norm", "std", "auto")


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description="Projection ablation bar chart from examples' results.json.")
    p.add_argument("runs", type=Path, nargs="+", help="output directories of examples run with --compare")
    p.add_argument("--out", type=Path, default=Path("runs/ablation.png"))
    args = p.parse_args(argv)
    fig, axes = plt.subplots(1, len(args.runs), figsize=(3.6 * len(args.runs), 3.6), dpi=120, squeeze=False)
    for ax, run in zip(axes[0], args.runs):
        results = json.loads((run / "results.json").read_text())
        summary = results["summary"]
        labels, means, lows, highs = [], [], [], []
        for projection in PROJECTIONS:
            label = next((k for k in summary if k.split(" ")[0] == projection), None)
            if label is None:
                continue
            s = summary[label]
            labels.append(label.replace(" (", "\n("))
            means.append(100 * s["mean"])
            lows.append(100 * (s["mean"] - s["min"]))
            highs.append(100 * (s["max"] - s["mean"]))
        x = np.arange(len(labels))
        ax.bar(x, means, yerr=[lows, highs], capsize=3, color="tab:blue", alpha=0.8)
        for name, style in (("two-stage", "--"), ("oracle E[c|x]", ":")):
            if name in summary:
                ax.axhline(
                    100 * summary[name]["mean"], ls=style, color="black", label=f"{name} {summary[name]['mean']:.2%}"
                )
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_title(results.get("title", run.name), fontsize=8)
        ax.set_ylabel("normalized test regret (%)")
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
