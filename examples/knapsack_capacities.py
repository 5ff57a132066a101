"""Knapsack with a capacity per instance: learn item values from features through CP-SAT.

PyEPO's knapsack (32 items, 2 capacity dimensions, values from a degree-4 polynomial of 5
features, noise half-width 0.5), except that every instance has its own capacities, drawn as
20-60% of each dimension's total weight (``idproj_or.data.knapsack(..., capacity=(0.2, 0.6))``).
The capacities are known when the decision is taken; a linear model predicts the values.

The knapsack is an ordinary CP-SAT model whose two capacity rows are declared as data,
``CpSatLayer(model, x, data={"cap": rows})``, and each call passes the batch's capacities,
``layer(values, cap=caps)``. ``KnapsackLayer(weights, capacity=...)`` would do the same for this
one model; CP-SAT is used to show the general data channel, which works for any linear row of
any model (the scheduling example uses it on variables). CP-SAT needs integers: weights and
capacities are scaled by 100 (both are multiples of 0.01, so the feasible sets are exact).

    python examples/knapsack_capacities.py                      # 1000 train / 1000 test, seed 0
    python examples/knapsack_capacities.py --seeds 0 1 2 --epochs 5

Prints the normalized test regret of the untrained model, the decision-focused model and the
two-stage baseline (least squares, then solve), next to the floor that the noise sets (deciding on
the true ``E[c | x]``); each decision is taken with its instance's capacities.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or import data, training
from idproj_or.demos import _harness as harness

FEATURES, ITEMS, DIM = 5, 32, 2


def generate(num_data: int, seed: int) -> data.KnapsackData:
    """Features, integer values and per-instance capacities ``(num_data, DIM)`` (PyEPO's setting)."""
    return data.knapsack(num_data, FEATURES, ITEMS, dim=DIM, deg=4, noise_width=0.5, capacity=(0.2, 0.6), seed=seed)


def scaled_capacities(capacities: np.ndarray) -> np.ndarray:
    """Capacities on the integer scale of :func:`build_layer` (x100; they are multiples of 0.01)."""
    return np.rint(np.asarray(capacities) * 100.0)


def build_layer(weights: np.ndarray, **options: Any) -> ipo.CpSatLayer:
    """``max v.x s.t. W x <= cap, x in {0,1}^n`` with ``cap`` given per instance as ``cap=``."""
    w = np.rint(np.asarray(weights) * 100.0).astype(int)
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(w.shape[1])]
    # The model's own capacity (everything fits) is a placeholder: every call sets its own.
    rows = [model.add(sum(int(w[k, i]) * x[i] for i in range(w.shape[1])) <= int(w[k].sum())) for k in range(len(w))]
    return ipo.CpSatLayer(model, x, sense="max", data={"cap": rows}, **options)


def run_seed(seed: int, args: argparse.Namespace) -> list[training.History]:
    """Label the data with its capacities, train decision-focused, fit the two-stage baseline,
    decide on E[c|x] (the floor)."""
    d = generate(args.train + args.test, seed)
    layer = build_layer(d.weights)
    ds = data.solve_dataset(
        layer, d.features, d.costs, data={"cap": scaled_capacities(d.capacities)}, progress=not args.quiet
    )
    return harness.compare_on(layer, ds, d.expected, args, seed)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run every seed, print the table; return :func:`idproj_or.demos._harness.summarize`'s output."""
    return harness.small_example(
        argv, "Knapsack with per-instance capacities, trained through CpSatLayer (data={'cap': rows}).", run_seed
    )


if __name__ == "__main__":
    main()
