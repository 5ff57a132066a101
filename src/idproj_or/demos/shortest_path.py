"""Learn arc lengths of a 5x5 grid from features; the shortest path is an LP declared in CVXPY.

The setting of PyEPO's shortest-path benchmark (Tang & Khalil, arXiv 2206.14234): 40 arcs (right
and down) of a 5x5 grid from the top-left to the bottom-right node, arc costs from a degree-4
polynomial of 5 features with multiplicative noise of half-width 0.5. A linear model predicts
the 40 costs; the LP ``min c.x s.t. flow conservation, 0 <= x <= 1`` (its vertices are paths) is
declared in CVXPY and wrapped in ``CvxpyLayer`` (HiGHS), and the loss is taken on the path.

Projections: every path has 8 arcs, so "mean"/"std" are valid; "auto" removes every node
potential ``p_tail - p_head`` that the flow-conservation equalities prove invariant, then
normalises.

    python examples/shortest_path.py               # default "auto", seeds 0 1 2, baselines
    python examples/shortest_path.py --compare     # + none, norm, std
    python examples/shortest_path.py --help

``python examples/shortest_path.py`` (source checkout) and
``python -m idproj_or.demos.shortest_path`` (any install) take the same options;
``idproj-or demo shortest-path`` runs it with fast defaults.
"""

from __future__ import annotations

import argparse
from typing import Any

import cvxpy as cp
import numpy as np
import torch

import idproj_or as ipo
from idproj_or import data, problems, training
from idproj_or.demos import _harness as harness

PROJECTIONS = ("none", "norm", "std", "auto")


def build_layer(h: int, w: int, **options: Any) -> ipo.CvxpyLayer:
    """``min c.x`` over unit s-t flows on the ``h x w`` grid (arcs in PyEPO's order), as a layer."""
    arcs = problems.grid_arcs(h, w)
    incidence = np.zeros((h * w, len(arcs)))
    for e, (tail, head) in enumerate(arcs):
        incidence[tail, e], incidence[head, e] = 1.0, -1.0
    supply = np.zeros(h * w)
    supply[0], supply[-1] = 1.0, -1.0  # source top-left, sink bottom-right
    cost = cp.Parameter(len(arcs))
    x = cp.Variable(len(arcs))
    problem = cp.Problem(cp.Minimize(cost @ x), [incidence @ x == supply, x >= 0, x <= 1])
    return ipo.CvxpyLayer(problem, cost, x, **options)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Shortest path on a grid (PyEPO setting), an LP declared in CVXPY, trained through CvxpyLayer.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--grid", type=int, nargs=2, default=[5, 5], metavar=("H", "W"), help="grid nodes")
    harness.add_common_arguments(p, projections=PROJECTIONS, out="runs/shortest_path")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[training.History]:
    """Train and evaluate every requested method for every seed."""
    h, w = args.grid
    return harness.train_all(
        args,
        projections=PROJECTIONS,
        generate=lambda seed: data.shortest_path(
            args.train + args.test, args.features, (h, w), deg=args.deg, noise_width=args.noise_width, seed=seed
        ),
        build_layer=lambda d, **options: build_layer(h, w, **options),
        model=lambda d: torch.nn.Linear(args.features, d.costs.shape[1]),
        two_stage_model=lambda d: torch.nn.Linear(args.features, d.costs.shape[1]),
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return harness.timed_report(
        run, parse_args(argv), title="shortest path {grid[0]}x{grid[1]}, deg {deg}, noise {noise_width}"
    )


if __name__ == "__main__":
    main()
