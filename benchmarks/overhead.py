"""Overhead of the layer and of the process pool, as ratios measured in one run.

(a) CpSatLayer forward+backward, serial, batch 256, 32-item 2-dim knapsack, divided by a
    hand-written loop that solves the same prebuilt CpModel by swapping objective coefficients
    (target <= 1.15).
(b) serial time / workers=2 time at batch 512 on TSP-15 (AddCircuit, >= 1 ms a solve)
    (target >= 1.8).
(c) workers=2 time / serial time on a ~0.1 ms problem (target <= 1.05).

Run: make bench  (or .venv/bin/python benchmarks/overhead.py --repeats 5)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or.solvers.scaling import integer_costs, scale_exponent


def knapsack_32(seed: int = 0) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
    rng = np.random.default_rng(seed)
    weights = rng.integers(3, 8, size=(2, 32))
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(32)]
    for wd in weights:
        m.add(sum(int(a) * v for a, v in zip(wd, x)) <= int(wd.sum() // 2))
    return m, x


def tsp(n: int) -> tuple[cp_model.CpModel, list[list[cp_model.IntVar]]]:
    m = cp_model.CpModel()
    arcs = [[m.new_bool_var(f"a{i}_{j}") if i != j else m.new_constant(0) for j in range(n)] for i in range(n)]
    m.add_circuit([(i, j, arcs[i][j]) for i in range(n) for j in range(n) if i != j])
    return m, arcs


def top_k(n: int, k: int) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(n)]
    m.add(sum(x) == k)
    return m, x


def hand_loop(model: cp_model.CpModel, variables: list, costs: np.ndarray, maximize: bool) -> np.ndarray:
    """What a user writes without the library: one prebuilt model, swap coefficients, solve."""
    idx = [v.index for v in variables]
    obj = model.proto.objective
    obj.vars.extend(idx)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    out = np.empty_like(costs)
    sign = -1 if maximize else 1
    for i, c in enumerate(costs):
        obj.coeffs.clear()
        # The same int64 scaling as the library's CP-SAT adapter.
        obj.coeffs.extend(integer_costs(sign * c, scale_exponent(c, np.ones(len(c)))).coeffs.tolist())
        solver.solve(model)
        out[i] = np.asarray(solver.response_proto.solution)[idx]
    return out


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def layer_step(layer: ipo.OptLayer, costs: torch.Tensor) -> None:
    w = costs.clone().requires_grad_(True)
    (layer(w) * torch.ones_like(w)).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (median reported)")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)

    m, x = knapsack_32()
    costs = torch.rand(256, 32, generator=gen, dtype=torch.float64)
    layer = ipo.CpSatLayer(m, x, sense="max")
    ratios_a = []
    for _ in range(args.repeats):
        hand = cp_model.CpModel()
        hand.proto.copy_from(m.proto)
        t_hand = timed(lambda: hand_loop(hand, x, costs.numpy(), maximize=True))
        t_layer = timed(lambda: layer_step(layer, costs))
        ratios_a.append(t_layer / t_hand)
    print(
        f"(a) layer fwd+bwd / hand loop, knapsack 32x2, batch 256: {statistics.median(ratios_a):.3f} "
        f"(runs {', '.join(f'{r:.3f}' for r in ratios_a)}; target <= 1.15)"
    )

    def pool_vs_serial(model, variables, batch: int, label: str) -> list[tuple[float, float]]:
        shape = np.shape(variables)
        c = torch.rand(batch, *shape, generator=gen, dtype=torch.float64)
        serial = ipo.CpSatLayer(model, variables)
        pooled = ipo.CpSatLayer(model, variables, workers=2)
        pooled(c)  # start the pool and measure the solve time once
        runs = []
        for _ in range(args.repeats):
            ts = timed(lambda: serial(c))
            tp = timed(lambda: pooled(c))
            runs.append((ts, tp))
        per = np.mean(serial.last_info.wall_time) * 1e3
        print(f"    {label}: {per:.3f} ms a solve; pool mode {pooled.last_info.mode!r}")
        return runs

    runs_b = pool_vs_serial(*tsp(15), 512, "TSP-15")
    speedup = statistics.median(ts / tp for ts, tp in runs_b)
    print(f"(b) serial / workers=2, TSP-15, batch 512: {speedup:.2f}x (target >= 1.8)")
    runs_c = pool_vs_serial(*top_k(8, 3), 512, "top-3 of 8")
    slowdown = statistics.median(tp / ts for ts, tp in runs_c)
    print(f"(c) workers=2 / serial, ~0.1 ms problem, batch 512: {slowdown:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
