"""Seconds per training step, eager vs torch.compile, through an idproj_or layer.

The solve is the opaque operator ``idproj_or::solve``: the compiler fuses the predictor, the
projection and the loss around it and never traces into the solver. Both variants run the same
steps alternately (so machine drift hits both alike); the ratio is compiled / eager.

    python benchmarks/compile.py [--steps 200] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch._dynamo

import idproj_or as ipo

RESULTS = Path(__file__).parent / "results" / "compile.json"


def make(task: str) -> tuple[torch.nn.Module, int]:
    rng = np.random.default_rng(0)
    if task == "knapsack":
        w = rng.integers(3, 8, size=(2, 32))
        return ipo.KnapsackLayer(w, w.sum(axis=1) // 2, projection="auto", noise=0.1), 32
    arcs = ipo.problems.grid_arcs(5, 5)
    layer = ipo.ShortestPathLayer(arcs, 0, 24, projection="auto", noise=0.1)
    return layer, layer.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    out = {}
    for task in ("knapsack", "shortest_path"):
        layer, n = make(task)
        layer.train()
        predictor = torch.nn.Sequential(torch.nn.Linear(5, 64), torch.nn.ReLU(), torch.nn.Linear(64, n))
        optimizer = torch.optim.SGD(predictor.parameters(), lr=1e-3)
        sign = -1.0 if layer.sense == "max" else 1.0

        def step(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            y = layer(predictor(x).reshape(len(x), *layer.shape))
            return sign * (c * y.reshape(len(x), -1)).sum(dim=1).mean()

        torch._dynamo.reset()
        compiled = torch.compile(step, fullgraph=True)
        x = torch.randn(args.batch, 5)
        c = torch.rand(args.batch, n)
        t0 = time.perf_counter()
        compiled(x, c).backward()  # compile once
        compile_seconds = time.perf_counter() - t0
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        with torch._dynamo.config.patch(error_on_recompile=True):
            for i in range(args.steps):
                x = torch.randn(args.batch, 5)
                c = torch.rand(args.batch, n)
                for name, fn in (("eager", step), ("compiled", compiled))[:: 1 if i % 2 else -1]:
                    optimizer.zero_grad()
                    t = time.perf_counter()
                    fn(x, c).backward()
                    optimizer.step()
                    times[name].append(time.perf_counter() - t)
        eager = statistics.median(times["eager"])
        comp = statistics.median(times["compiled"])
        out[task] = {
            "batch": args.batch,
            "steps": args.steps,
            "eager_ms": 1e3 * eager,
            "compiled_ms": 1e3 * comp,
            "ratio": comp / eager,
            "first_compile_s": compile_seconds,
        }
        print(
            f"{task}: eager {1e3 * eager:.3f} ms, compiled {1e3 * comp:.3f} ms a step "
            f"(compiled / eager {comp / eager:.3f}; first compile {compile_seconds:.1f} s, no recompile)"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
