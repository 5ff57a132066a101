"""Capacitated vehicle routing with demands per instance: learn edge costs from features.

PyEPO's CVRP setting (edge costs of the depot and 20 customers from a degree-4 polynomial of 5
features, noise half-width 0.5, PyEPO's edge order), except that every instance has its own
demands, uniform in 1..9, known when the routes are planned; capacity 30 and a fleet of
``ceil(5 n / 30) + 1`` vehicles. A linear model predicts the edge costs; ``VRPLayer`` plans the
routes with each instance's demands, ``layer(costs, demands=d)``; PyVRP (deterministic under an
iteration budget) labels, trains and evaluates.

    python examples/cvrp.py                      # 1000 train / 1000 test, seed 0
    python examples/cvrp.py --seeds 0 1 2 --epochs 5

Prints the normalized test regret of the untrained model, the decision-focused model and the
two-stage baseline (least squares, then route), next to the floor that the noise sets (routing on
the true ``E[c | x]``).
"""

from __future__ import annotations

import argparse
import math
import warnings
from typing import Any

import numpy as np

import idproj_or as ipo
from idproj_or import data, training
from idproj_or.demos import _harness as harness

FEATURES, CUSTOMERS, CAPACITY, ITERATIONS = 5, 20, 30, 300
VEHICLES = math.ceil(5 * CUSTOMERS / CAPACITY) + 1


def generate(num_data: int, seed: int) -> tuple[data.TSPData, np.ndarray, np.ndarray]:
    """Features and edge costs (PyEPO's generator, edge order), each instance's demands ``(num_data,
    CUSTOMERS)`` and the expected edge costs."""
    d = data.tsp(num_data, FEATURES, CUSTOMERS + 1, deg=4, noise_width=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    demands = rng.integers(1, 10, (num_data, CUSTOMERS))
    # An instance whose demand the fleet cannot carry is drawn again (rare: the mean is 5 n).
    while (full := demands.sum(axis=1) > VEHICLES * CAPACITY).any():
        demands[full] = rng.integers(1, 10, (int(full.sum()), CUSTOMERS))
    return d, demands, d.expected


def edges(matrices: Any) -> np.ndarray:
    """``(N, n + 1, n + 1)`` symmetric matrices as PyEPO's edge vectors."""
    iu, ju = np.triu_indices(CUSTOMERS + 1, 1)
    return np.asarray(matrices)[:, iu, ju]


def build_layer(**options: Any) -> ipo.VRPLayer:
    """The routing layer; the constructor's demands are placeholders: every call passes its own."""
    return ipo.VRPLayer(
        CUSTOMERS,
        CAPACITY,
        np.ones(CUSTOMERS, dtype=np.int64),
        n_vehicles=VEHICLES,
        method="pyvrp",
        iterations=ITERATIONS,
        **options,
    )


def run_seed(seed: int, args: argparse.Namespace) -> list[training.History]:
    """Label the data with its demands, train decision-focused, fit the two-stage baseline,
    route on E[c|x] (the floor)."""
    d, demands, expected = generate(args.train + args.test, seed)
    # PyVRP is a heuristic: its routes are "feasible", never proven "optimal"; no need to warn.
    warnings.filterwarnings("ignore", "VRPLayer: .* not proven optimal", ipo.SolverWarning)
    layer = build_layer()
    ds = data.solve_dataset(layer, d.features, edges(d.costs), data={"demands": demands}, progress=not args.quiet)
    return harness.compare_on(layer, ds, edges(expected), args, seed)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run every seed, print the table; return :func:`idproj_or.demos._harness.summarize`'s output."""
    return harness.small_example(argv, "CVRP with per-instance demands, trained through VRPLayer (PyVRP).", run_seed)


if __name__ == "__main__":
    main()
