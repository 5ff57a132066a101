"""What the per-instance data channel costs, as ratios measured in one run.

(a) The channel on a cost-only layer: forward+backward of layers that take no data, on this
    tree divided by the same on the last commit before the channel (BASELINE, extracted with
    ``git archive`` and imported in a subprocess; the rounds alternate). Fast layers, where the
    library's own overhead is the largest share: TopKLayer (top-8 of 32) and a CpSatLayer
    knapsack 32x2, batch 256 (target <= 1.05 each).
(b) Per-instance capacities: CpSatLayer forward+backward over a 32x2 knapsack with a capacity
    pair per instance (``layer(costs, cap=caps)``), serial, batch 256, divided by a hand-written
    loop that solves one prebuilt CpModel, rewriting the objective and the two constraints'
    upper bounds per instance (target <= 1.15).

Run: make bench  (or .venv/bin/python benchmarks/instance_data.py --repeats 5)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or.solvers.scaling import integer_costs, scale_exponent

# The last commit before the data channel (cvxpy 1.9.1 lock).
BASELINE = "17ec0fc"
ROOT = Path(__file__).resolve().parents[1]

# Timed in a subprocess against one source tree: a cost-only forward+backward per layer.
PROBE = r"""
import json, sys, time
import numpy as np, torch
from ortools.sat.python import cp_model
import idproj_or as ipo

def knapsack():
    rng = np.random.default_rng(0)
    weights = rng.integers(3, 8, size=(2, 32))
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(32)]
    for wd in weights:
        m.add(sum(int(a) * v for a, v in zip(wd, x)) <= int(wd.sum() // 2))
    return m, x

gen = torch.Generator().manual_seed(0)
costs = torch.rand(256, 32, generator=gen, dtype=torch.float64)
layers = {"topk": ipo.TopKLayer(32, 8), "cpsat_knapsack": ipo.CpSatLayer(*knapsack(), sense="max")}
rounds = {"topk": 100, "cpsat_knapsack": 2}
out = {}
for name, layer in layers.items():
    def step():
        w = costs.clone().requires_grad_(True)
        layer(w).sum().backward()
    step()
    blocks = []
    for _ in range(5):  # the fastest of 5 blocks: the least disturbed by anything else running
        t0 = time.perf_counter()
        for _ in range(rounds[name]):
            step()
        blocks.append((time.perf_counter() - t0) / rounds[name])
    out[name] = min(blocks)
print(json.dumps(out))
"""


def baseline_tree(where: Path) -> Path:
    """The BASELINE commit's ``src`` under ``where`` (from git, no checkout)."""
    archive = where / "baseline.tar"
    subprocess.run(["git", "archive", "-o", str(archive), BASELINE, "src"], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(where, filter="data")
    return where / "src"


def probe(src: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def knapsack_with_capacities(seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = rng.integers(3, 8, size=(2, 32))
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(32)]
    rows = [m.add(sum(int(a) * v for a, v in zip(wd, x)) <= int(wd.sum() // 2)) for wd in weights]
    return m, x, rows, weights


def hand_loop(model: cp_model.CpModel, variables: list, rows: list, costs: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """What a user writes without the library: one prebuilt model; per instance, swap the
    objective coefficients and the rows' upper bounds, solve."""
    idx = [v.index for v in variables]
    obj = model.proto.objective
    obj.vars.extend(idx)
    proto = model.proto
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    out = np.empty_like(costs)
    for i, c in enumerate(costs):
        obj.coeffs.clear()
        # The same int64 scaling as the library's CP-SAT adapter (maximise: negated costs).
        obj.coeffs.extend(integer_costs(-c, scale_exponent(c, np.ones(len(c)))).coeffs.tolist())
        for row, cap in zip(rows, caps[i]):
            proto.constraints[row.index].linear.domain[1] = int(cap)  # [-1] = is ignored by this container
        solver.solve(model)
        out[i] = np.asarray(solver.response_proto.solution)[idx]
    return out


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (median reported)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        old_src = baseline_tree(Path(tmp))
        ratios: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            before, after = probe(old_src), probe(ROOT / "src")
            for name in before:
                ratios.setdefault(name, []).append(after[name] / before[name])
    for name, runs in ratios.items():
        print(
            f"(a) cost-only fwd+bwd, this tree / {BASELINE} (before the data channel), {name}, batch 256: "
            f"{statistics.median(runs):.3f} (runs {', '.join(f'{r:.3f}' for r in runs)}; target <= 1.05)"
        )

    m, x, rows, weights = knapsack_with_capacities()
    gen = np.random.default_rng(1)
    costs = torch.as_tensor(gen.random((256, 32)))
    caps = torch.as_tensor(gen.integers(weights.sum(1) // 4, weights.sum(1) // 2 + 1, size=(256, 2)))
    layer = ipo.CpSatLayer(m, x, sense="max", data={"cap": rows})

    def fresh() -> cp_model.CpModel:
        copy = cp_model.CpModel()
        copy.proto.copy_from(m.proto)
        return copy

    expected = hand_loop(fresh(), x, rows, costs.numpy(), caps.numpy())
    runs = []
    for _ in range(args.repeats):
        hand = fresh()
        t_hand = timed(lambda: hand_loop(hand, x, rows, costs.numpy(), caps.numpy()))
        w = costs.clone().requires_grad_(True)

        def step(w: torch.Tensor = w) -> torch.Tensor:
            y = layer(w, cap=caps)
            y.sum().backward()
            return y

        t0 = time.perf_counter()
        y = step()
        t_layer = time.perf_counter() - t0
        runs.append(t_layer / t_hand)
        # the same optimum (the decisions may differ where two decisions tie)
        assert np.allclose((y.detach().numpy() * costs.numpy()).sum(1), (expected * costs.numpy()).sum(1))
    print(
        f"(b) CpSatLayer with per-instance capacities fwd+bwd / hand loop, knapsack 32x2, batch 256: "
        f"{statistics.median(runs):.3f} (runs {', '.join(f'{r:.3f}' for r in runs)}; target <= 1.15)"
    )


if __name__ == "__main__":
    main()
