"""GridShortestPathLayer's speed on Warcraft-sized batches, against what a user writes without it.

For a batch of 256 grids (8 neighbours, corner to corner) at 12x12 and 30x30 cells, seconds per
batch (median of the repeats) of:

- ours, the solver alone (compiled Dijkstra over the chunk) and the layer forward + backward
  (``projection="norm"``, serial route, one thread);
- scipy: ``scipy.sparse.csgraph.dijkstra`` per grid, the arc costs swapped into a prebuilt graph,
  the path read back from its predecessors;
- a heapq Dijkstra in Python per grid, as blackbox-backprop's Warcraft module solves.

Every method's path cost is checked against ours. Run: make bench (or
.venv/bin/python benchmarks/grid_path.py); writes benchmarks/results/grid_path.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

import idproj_or as ipo
from idproj_or.solvers.grid_path import _STEPS_8, grid_path_spec

OUT = Path(__file__).parent / "results" / "grid_path.json"


def _arcs(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    tails, heads = [], []
    for i in range(h):
        for j in range(w):
            for di, dj in _STEPS_8.tolist():
                if 0 <= i + di < h and 0 <= j + dj < w:
                    tails.append(i * w + j)
                    heads.append((i + di) * w + j + dj)
    return np.array(tails), np.array(heads)


def scipy_paths(c: np.ndarray, h: int, w: int) -> np.ndarray:
    tails, heads = _arcs(h, w)
    graph = csr_matrix((np.ones(len(tails)), (tails, heads)), shape=(h * w, h * w))
    order = np.lexsort((heads, tails))  # csr stores arcs sorted by (tail, head)
    out = np.zeros_like(c)
    for r, row in enumerate(c):
        graph.data[:] = row[heads[order]]
        _, pred = dijkstra(graph, indices=0, return_predecessors=True)
        v = h * w - 1
        while v >= 0:
            out[r, v] = 1.0
            v = pred[v]
    return out


def heapq_paths(c: np.ndarray, h: int, w: int) -> np.ndarray:
    steps = _STEPS_8.tolist()
    out = np.zeros_like(c)
    for r, row in enumerate(c.tolist()):
        dist = {0: row[0]}
        pred = {0: -1}
        heap = [(row[0], 0)]
        done = set()
        while heap:
            d, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            if u == h * w - 1:
                break
            i, j = divmod(u, w)
            for di, dj in steps:
                if 0 <= i + di < h and 0 <= j + dj < w:
                    v = (i + di) * w + j + dj
                    nd = d + row[v]
                    if nd < dist.get(v, np.inf):
                        dist[v], pred[v] = nd, u
                        heapq.heappush(heap, (nd, v))
        v = h * w - 1
        while v >= 0:
            out[r, v] = 1.0
            v = pred[v]
    return out


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for size in (12, 30):
        c = np.random.default_rng(size).uniform(0.1, 10.0, size=(args.batch, size * size))
        layer = ipo.GridShortestPathLayer(size, size, projection="norm", route="serial")
        pred = torch.tensor(c.reshape(-1, size, size), requires_grad=True)

        def layer_step(layer=layer, pred=pred) -> None:
            layer(pred).sum().backward()

        solver = grid_path_spec(size, size, 8, (0, 0), (-1, -1), where="benchmark").build()
        ours = solver.solve_chunk(c, None, {}).solutions
        for name, paths in (("scipy", scipy_paths(c, size, size)), ("heapq", heapq_paths(c, size, size))):
            np.testing.assert_allclose((paths * c).sum(1), (ours * c).sum(1), rtol=1e-12, err_msg=name)
        row = {
            "size": size,
            "batch": args.batch,
            "ours_solver": timed(lambda c=c, solver=solver: solver.solve_chunk(c, None, {}), args.repeats),
            "ours_layer_fwd_bwd": timed(layer_step, args.repeats),
            "scipy": timed(lambda c=c, size=size: scipy_paths(c, size, size), max(1, args.repeats // 3)),
            "heapq": timed(lambda c=c, size=size: heapq_paths(c, size, size), max(1, args.repeats // 3)),
        }
        rows.append(row)
        print(
            f"{size}x{size}, batch {args.batch}: ours solver {row['ours_solver'] * 1e3:.1f} ms, layer fwd+bwd "
            f"{row['ours_layer_fwd_bwd'] * 1e3:.1f} ms; scipy {row['scipy'] * 1e3:.0f} ms, heapq {row['heapq'] * 1e3:.0f} ms"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
