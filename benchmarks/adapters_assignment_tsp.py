"""Layer overhead of AssignmentLayer and TSPLayer("cpsat"): layer time / hand-written loop time.

Both run serially at batch 128 on the same costs; the hand-written loop is what a user writes
without the library on the same prebuilt model (target <= 1.15):

(a) assignment 20x20: precomputed arc arrays, per instance scale the costs to integers, load them
    into a SimpleLinearSumAssignment, solve, read the mates (the OR-Tools object has no way to
    swap costs, so loading them is part of any loop).
(b) TSP-10 with CP-SAT: one prebuilt add_circuit model, per instance swap the objective
    coefficients in the proto and solve with a one-thread CpSolver.

"layer.solve" is the solve path alone (validation, batch routing, the resident solver, no
projection, no autograd). "layer fwd" is the forward pass (projection + solve); "fwd+bwd" adds
the backward. Each
layer runs with projection "auto" (the default; a product with the r x n invariance basis) and
"std" (O(n) per row), to separate the projection's cost from the solve path's.

On a machine whose cores are busy, torch's intra-op thread pool can make even the layer's small
tensor ops (the finiteness check, the projection) cost tens of milliseconds; ``--threads 1``
shows the layer's own overhead without that contention.

Run: .venv/bin/python benchmarks/adapters_assignment_tsp.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from ortools.graph.python import linear_sum_assignment
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or.solvers.assignment import headroom_bits
from idproj_or.solvers.scaling import integer_costs, scale_exponent
from idproj_or.solvers.tsp import circuit_model

BATCH = 128
# "auto" (the default) multiplies by the (r x size) invariance basis; "std" is O(size) a row.
PROJECTIONS = ("auto", "std")


def make_hand_assignment(n: int, m: int) -> Callable[[np.ndarray], np.ndarray]:
    """The user's loop for assignment: arc arrays built once, costs loaded per instance."""
    tails, heads = (a.reshape(-1).astype(np.int32) for a in np.meshgrid(np.arange(n), np.arange(m), indexing="ij"))

    bits = headroom_bits(max(n, m))

    def solve(costs: np.ndarray) -> np.ndarray:
        out = np.zeros_like(costs)
        for b, c in enumerate(costs):
            # The same int64 scaling as the library's (largest cost at the solver's headroom).
            exponent = scale_exponent(np.abs(c).max().reshape(1), np.ones(1), headroom_bits=bits)
            scaled = integer_costs(c, exponent).coeffs
            lsa = linear_sum_assignment.SimpleLinearSumAssignment()
            lsa.add_arcs_with_cost(tails, heads, scaled.reshape(-1))
            assert lsa.solve() == lsa.OPTIMAL
            for i in range(n):
                out[b, i, lsa.right_mate(i)] = 1.0
        return out

    return solve


def make_hand_tsp(n: int) -> Callable[[np.ndarray], np.ndarray]:
    """The user's loop for TSP: one prebuilt circuit model and solver, coefficients swapped."""
    model, arcs = circuit_model(n)
    idx = [arcs[i][j].index for i in range(n) for j in range(n) if i != j]
    off = ~np.eye(n, dtype=bool)
    model.proto.clear_objective()
    objective = model.proto.objective
    objective.vars.extend(idx)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1

    def solve(costs: np.ndarray) -> np.ndarray:
        out = np.zeros_like(costs)
        for b, c in enumerate(costs):
            w = c[off]
            objective.coeffs.clear()
            objective.coeffs.extend(integer_costs(w, scale_exponent(w, np.ones(len(w)))).coeffs.tolist())
            solver.solve(model)
            out[b][off] = np.asarray(solver.response_proto.solution)[idx]
        return out

    return solve


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def forward(layer: ipo.OptLayer, costs: torch.Tensor) -> None:
    with torch.no_grad():
        layer(costs)


def forward_backward(layer: ipo.OptLayer, costs: torch.Tensor) -> None:
    w = costs.clone().requires_grad_(True)
    (layer(w) * torch.ones_like(w)).sum().backward()


def compare(
    label: str,
    layers: dict[str, ipo.OptLayer],
    hand: Callable[[np.ndarray], np.ndarray],
    costs: torch.Tensor,
    repeats: int,
) -> None:
    c = costs.numpy()
    # the hand loop optimises the raw cost, the layer the projected one: same argmin, check it
    objective = (c * hand(c)).sum((1, 2))
    for layer in layers.values():
        np.testing.assert_allclose((c * layer(costs).numpy()).sum((1, 2)), objective, rtol=1e-5)
    first = next(iter(layers.values()))
    runs: list[list[float]] = []
    for _ in range(repeats):  # interleaved, so machine load hits every variant alike
        row = [timed(lambda: hand(c)), timed(lambda: first.solve(costs))]
        for layer in layers.values():
            row += [timed(lambda: forward(layer, costs)), timed(lambda: forward_backward(layer, costs))]
        runs.append(row)
    med = [statistics.median(r[k] for r in runs) for k in range(len(runs[0]))]
    hand_t = med[0]
    print(
        f"{label}, batch {BATCH}, serial: hand loop {hand_t * 1e3:.1f} ms ({hand_t / BATCH * 1e3:.3f} ms a solve); "
        f"layer.solve (no projection, no graph) {med[1] * 1e3:.1f} ms ({med[1] / hand_t:.3f}x)"
    )
    for k, name in enumerate(layers):
        fwd, both = med[2 + 2 * k], med[3 + 2 * k]
        print(
            f"    projection={name!r}: layer fwd {fwd * 1e3:.1f} ms ({fwd / hand_t:.3f}x), "
            f"fwd+bwd {both * 1e3:.1f} ms ({both / hand_t:.3f}x); target <= 1.15x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    gen = torch.Generator().manual_seed(0)

    costs = torch.rand(BATCH, 20, 20, generator=gen, dtype=torch.float64)
    layers = {p: ipo.AssignmentLayer(20, projection=p) for p in PROJECTIONS}
    compare("(a) assignment 20x20", layers, make_hand_assignment(20, 20), costs, args.repeats)

    costs = torch.rand(BATCH, 10, 10, generator=gen, dtype=torch.float64)
    layers = {p: ipo.TSPLayer(10, projection=p) for p in PROJECTIONS}
    compare("(b) TSP-10 cpsat", layers, make_hand_tsp(10), costs, args.repeats)


if __name__ == "__main__":
    main()
