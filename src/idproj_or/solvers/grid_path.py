"""Shortest paths over the vertices of a grid (Warcraft's shortest-path task): vertex costs
``(H, W)`` -> the 0/1 indicator of the vertices on a cheapest ``source -> target`` path.

A path moves between 4- or 8-neighbouring cells and costs the sum of the costs of the vertices it
visits, both end vertices included. Solved exactly by Dijkstra's algorithm (compiled by numba,
one chunk of instances per call): the graph has cycles, so it needs costs ``>= 0``.

- **Negative costs** (a noise margin or a perturbation can produce them) are clamped at zero, as
  blackbox-backprop's Dijkstra does: the decision is a cheapest path for ``max(w, 0)``. With a
  negative cost the cheapest simple path for ``w`` itself is NP-hard to find (it contains the
  longest-path problem), so such a row is not labelled optimal: its status is ``feasible``, its
  solver status ``NEGATIVE_COSTS_CLAMPED``. The clamp is part of the solver, not of the
  projection, so the backward (``-I`` for the identity rule) passes every entry, clamped or not,
  as blackbox-backprop's gradient does.
- **Ties**: vertices are settled in the order (distance, vertex index ``i * W + j``) and a vertex's
  predecessor is the first settled neighbour that reaches it at its final distance, neighbours
  taken in the fixed order up-left, up, up-right, left, right, down-left, down, down-right (the
  diagonals left out for 4 neighbours); the distances leave out the source's cost, which every
  path pays (:mod:`idproj_or.solvers._dijkstra`). The path depends on its own row only: serial, pool and
  executor results are identical.
- **Arithmetic**: distances are float64 sums along the path, so a decision is optimal up to the
  float64 rounding of sums of at most ``H * W`` costs.

Every path contains the source and the target, ``y[source] = y[target] = 1``, which
``projection="auto"`` uses: their costs never change the decision.
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import Sense
from ._dijkstra import CLAMPED, clamped_result, csr, dijkstra_rows
from .base import ChunkResult, ChunkSolver, Data, ModelSpec

NEIGHBOURS = (4, 8)
# Steps (di, dj) in the order a settled vertex relaxes its neighbours (the ties' order).
_STEPS_8 = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)], dtype=np.int64)
_STEPS_4 = np.array([(-1, 0), (0, -1), (0, 1), (1, 0)], dtype=np.int64)
__all__ = ["CLAMPED", "GridPathSolver", "GridPathSpec", "grid_path_spec"]


class GridPathSolver(ChunkSolver):
    """Dijkstra on every row of a chunk, over the grid's arcs ``u -> v`` of cost ``w_v`` (the grid
    is connected: every row has a path)."""

    def __init__(self, spec: GridPathSpec) -> None:
        height, width = spec.shape
        steps = _STEPS_8 if spec.neighbours == 8 else _STEPS_4
        tails, heads = [], []
        for u in range(height * width):
            i, j = divmod(u, width)
            for di, dj in steps.tolist():
                if 0 <= i + di < height and 0 <= j + dj < width:
                    tails.append(u)
                    heads.append((i + di) * width + j + dj)
        self.indptr, _ = csr(height * width, np.array(tails, dtype=np.int64))  # listed by tail already
        self.heads = np.array(heads, dtype=np.int64)
        self.source, self.target = spec.source, spec.target
        # The end cells' costs never change the decision (the source's is not in the distances,
        # every path pays the target's once): clamping them leaves a row optimal.
        self.inner = np.ones(height * width, dtype=bool)
        self.inner[[self.source, self.target]] = False

    def solve_chunk(self, costs: np.ndarray, time_limit: float | None, data: Data) -> ChunkResult:
        t0 = time.perf_counter()
        n = len(costs)
        c = np.ascontiguousarray(costs, dtype=np.float64)
        ends = np.full(n, self.source), np.full(n, self.target)
        path, reached = dijkstra_rows(c, self.heads, self.indptr, self.heads, *ends)
        sols = np.zeros_like(c)
        sols[:, self.source] = 1.0
        rows, steps = np.nonzero(path >= 0)
        sols[rows, self.heads[path[rows, steps]]] = 1.0
        return clamped_result(c, sols, t0, (c < 0) & self.inner, reached)


@dataclass(frozen=True)
class GridPathSpec(ModelSpec):
    resident_solver = GridPathSolver
    on_caller_thread = True
    stops_at_time_limit = False
    shape: tuple[int, int]
    neighbours: int
    source: int  # flat vertex index i * W + j
    target: int
    sense: Sense = "min"

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        # every path visits its two end vertices
        ends = sorted({self.source, self.target})
        a = np.zeros((len(ends), self.shape[0] * self.shape[1]))
        a[np.arange(len(ends)), ends] = 1.0
        return a, np.ones(len(ends))


def _cell(value: Any, name: str, height: int, width: int, *, where: str) -> int:
    """A ``(row, column)`` pair (negative indices count from the end) -> its flat vertex index."""
    try:
        i, j = (operator.index(x) for x in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name}={value!r} must be a (row, column) pair of ints") from None
    if any(isinstance(x, bool) for x in value) or not (-height <= i < height and -width <= j < width):
        raise ValueError(f"{where}: {name}={value!r} is outside the {height}x{width} grid")
    return (i % height) * width + j % width


def grid_path_spec(height: int, width: int, neighbours: Any, source: Any, target: Any, *, where: str) -> GridPathSpec:
    if isinstance(neighbours, bool) or neighbours not in NEIGHBOURS:
        raise ValueError(f"{where}: neighbours={neighbours!r} must be 4 or 8")
    s = _cell(source, "source", height, width, where=where)
    t = _cell(target, "target", height, width, where=where)
    return GridPathSpec((height, width), int(neighbours), s, t)
