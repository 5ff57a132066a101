"""Learn TSP edge costs from features, training end to end through ``TSPLayer``.

The setting of PyEPO's TSP benchmark (Tang & Khalil, arXiv 2206.14234): symmetric edge costs =
Euclidean distance between fixed cities + a degree-``deg`` polynomial of 5 features, with
multiplicative noise. A linear model predicts the ``n (n - 1) / 2`` edge costs (a symmetric
matrix by construction); ``TSPLayer`` returns the tour's 0/1 adjacency and the loss is taken on
the tour.

Three modes:

- ``--method held_karp`` (default): exact tours of the symmetric costs
  (``TSPLayer(n, symmetric=True)``, a Held-Karp branch and bound: about a millisecond a tour at 20
  cities, tens of milliseconds at 50).
- ``--method cpsat``: exact tours from CP-SAT's circuit on the (asymmetric) arc model.
- ``--method routing`` (100+ cities): OR-Tools' routing heuristic (greedy descent to a
  local optimum, deterministic). Its "optimal" tours, used for the regret, are the heuristic's
  tours for the true costs, so the regret is measured against that reference and can dip below 0.

Projections: every tour has one arc in and one arc out of each city, so "mean"/"std" are valid;
"auto" removes every row and column constant of the cost matrix (and the diagonal), then
normalises.

    python examples/tsp.py                                    # 20 cities, exact, seeds 0 1 2
    python examples/tsp.py --nodes 50 --noise-epochs 3        # 50 cities, noise in the first half
    python examples/tsp.py --method routing --nodes 150       # heuristic mode
    python examples/tsp.py --compare                          # + none, norm, std

``python examples/tsp.py`` (source checkout) and ``python -m idproj_or.demos.tsp`` (any
install) take the same options; ``idproj-or demo tsp`` runs it with fast defaults.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

import idproj_or as ipo
from idproj_or import data, training
from idproj_or.demos import _harness as harness

PROJECTIONS = ("none", "norm", "std", "auto")


class EdgeModel(torch.nn.Module):
    """Linear model from features to the ``n (n - 1) / 2`` edge costs, returned as they are
    (``matrix=False``: what ``TSPLayer(n, symmetric=True)`` takes) or as symmetric ``(B, n, n)``
    matrices with a zero diagonal (what the arc model of ``TSPLayer`` takes)."""

    def __init__(self, num_features: int, n: int, *, init_scale: float = 1.0, matrix: bool = True) -> None:
        super().__init__()
        self.n = n
        self.matrix = matrix
        self.linear = torch.nn.Linear(num_features, n * (n - 1) // 2)
        with torch.no_grad():
            self.linear.weight.mul_(init_scale)
            self.linear.bias.mul_(init_scale)
        self.register_buffer("rows", torch.triu_indices(n, n, offset=1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        edges = self.linear(x)
        if not self.matrix:
            return edges
        out = edges.new_zeros(len(x), self.n, self.n)
        rows = self.rows
        assert isinstance(rows, torch.Tensor)
        i, j = rows
        out[:, i, j] = edges
        out[:, j, i] = edges
        return out


def build_layer(n: int, method: str, **options: Any) -> ipo.TSPLayer:
    """``TSPLayer`` for ``n`` cities (symmetric ``(n, n)`` costs in, the tour's adjacency out); the
    routing mode stops at the first local optimum (fast and the same tour on every run)."""
    if method == "held_karp":
        return ipo.TSPLayer(n, symmetric=True, **options)
    if method == "routing":
        return ipo.TSPLayer(n, "routing", metaheuristic="GREEDY_DESCENT", **options)
    return ipo.TSPLayer(n, "cpsat", **options)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="TSP (PyEPO setting) trained through TSPLayer with identity + projection.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--nodes", type=int, default=20, help="cities")
    p.add_argument(
        "--method", choices=("held_karp", "cpsat", "routing"), default="held_karp", help="exact or heuristic tours"
    )
    p.add_argument(
        "--init-scale",
        type=float,
        default=0.1,
        help="scale of the model's initial weights (the projected loss is scale invariant, so a small "
        "start lets each Adam step turn the predicted costs further)",
    )
    # Hamming loss, no projection, a noise margin of 0.5 in every epoch: the best of the sweep
    # in docs/learning.md (the regret loss's gradient ignores the decision; on tours it lags far).
    harness.add_common_arguments(
        p, projections=PROJECTIONS, out="runs/tsp", train=1000, test=200, loss="hamming", noise=0.5, projection="none"
    )
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[training.History]:
    """Train and evaluate every requested method for every seed."""
    n = args.nodes
    edges = args.method == "held_karp"  # PyEPO's edge vectors; else (n, n) matrices

    def generate(seed: int) -> data.TSPData:
        d = data.tsp(args.train + args.test, args.features, n, deg=args.deg, noise_width=args.noise_width, seed=seed)
        if edges:
            return d._replace(costs=data.edge_vector(d.costs), expected=data.edge_vector(d.expected))
        return d

    return harness.train_all(
        args,
        projections=PROJECTIONS,
        generate=generate,
        build_layer=lambda d, **options: build_layer(n, args.method, **options),
        model=lambda d: EdgeModel(args.features, n, init_scale=args.init_scale, matrix=not edges),
        # Least squares on every cost entry (for matrices the fit is symmetric, as the targets are).
        two_stage_model=lambda d: torch.nn.Linear(args.features, d.costs.shape[1] if edges else n * n),
        chunk=50,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return harness.timed_report(
        run, parse_args(argv), title="TSP {nodes} cities ({method}), deg {deg}, noise {noise_width}"
    )


if __name__ == "__main__":
    main()
