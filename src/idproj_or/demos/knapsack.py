"""Learn knapsack item values from features, training end to end through CP-SAT.

The setting of PyEPO's knapsack benchmark (Tang & Khalil, arXiv 2206.14234): 32 items, 2 capacity
dimensions (each capacity is half the total weight), values from a degree-4 polynomial of 5
features with multiplicative noise of half-width 0.5. A linear model predicts the 32 values; the
knapsack is an ordinary CP-SAT model wrapped in ``CpSatLayer`` (identity with projection), and the
loss is taken on the decision the solver returns.

    python examples/knapsack.py                # default projection "auto", seeds 0 1 2, baselines
    python examples/knapsack.py --compare      # + the projection ablation (none, norm, std)
    python examples/knapsack.py --help

``python examples/knapsack.py`` (source checkout) and ``python -m idproj_or.demos.knapsack`` (any
install) take the same options; ``idproj-or demo knapsack`` runs it with fast defaults.

Writes ``<out>/results.json`` and ``<out>/curves.png`` and prints a table of the normalized test
regret (mean and spread over seeds) next to the two-stage baseline (least squares, then solve) and
the Bayes floor (deciding on the true ``E[c | x]``, which no predictor beats in expectation).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or import data, training
from idproj_or.demos import _harness as harness

# A knapsack has no equality constraints: "auto" equals "norm"; "std" (mean-centring) is not
# a valid invariance here (feasible sets have different sizes) and is shown for contrast.
PROJECTIONS = ("none", "norm", "std", "auto")


def build_layer(weights: np.ndarray, capacities: np.ndarray, **options: Any) -> ipo.CpSatLayer:
    """The multi-dimensional knapsack ``max v.x s.t. W x <= cap, x in {0,1}^n`` as a layer.

    PyEPO's weights have two decimals; CP-SAT needs integers, so both sides are scaled by 100
    (the capacity rounded down on that scale, which keeps the feasible set exactly).
    """
    w = np.rint(np.asarray(weights) * 100).astype(int)
    cap = np.floor(np.asarray(capacities) * 100 + 1e-9).astype(int)
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(w.shape[1])]
    for k in range(w.shape[0]):
        model.add(sum(int(w[k, i]) * x[i] for i in range(w.shape[1])) <= int(cap[k]))
    return ipo.CpSatLayer(model, x, sense="max", **options)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Knapsack (PyEPO setting) trained through CpSatLayer with identity + projection.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--items", type=int, default=32)
    p.add_argument("--dim", type=int, default=2, help="capacity dimensions")
    harness.add_common_arguments(p, projections=PROJECTIONS, out="runs/knapsack")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[training.History]:
    """Train and evaluate every requested method for every seed."""
    return harness.train_all(
        args,
        projections=PROJECTIONS,
        generate=lambda seed: data.knapsack(
            args.train + args.test,
            args.features,
            args.items,
            dim=args.dim,
            deg=args.deg,
            noise_width=args.noise_width,
            seed=seed,
        ),
        build_layer=lambda d, **options: build_layer(d.weights, d.capacities, **options),
        model=lambda d: torch.nn.Linear(args.features, args.items),
        two_stage_model=lambda d: torch.nn.Linear(args.features, args.items),
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return harness.timed_report(run, parse_args(argv), title="knapsack {items}x{dim}, deg {deg}, noise {noise_width}")


if __name__ == "__main__":
    main()
