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
  diagonals left out for 4 neighbours). The path depends on its own row only: serial, pool and
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
from numba import njit

from ..checks import Sense
from ..statuses import FEASIBLE, OPTIMAL
from .base import ChunkResult, ChunkSolver, Data, ModelSpec

NEIGHBOURS = (4, 8)
# Steps (di, dj) in the order a settled vertex relaxes its neighbours (the ties' order).
_STEPS_8 = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)], dtype=np.int64)
_STEPS_4 = np.array([(-1, 0), (0, -1), (0, 1), (1, 0)], dtype=np.int64)
CLAMPED = "NEGATIVE_COSTS_CLAMPED"


@njit(cache=True)
def _before(dist, a, b):  # pragma: no cover - compiled
    """Whether vertex ``a`` is settled before ``b``: the order (distance, index)."""
    return dist[a] < dist[b] or (dist[a] == dist[b] and a < b)


@njit(cache=True)
def _sift_up(heap, pos, dist, i):  # pragma: no cover - compiled
    v = heap[i]
    while i > 0:
        parent = (i - 1) // 2
        if not _before(dist, v, heap[parent]):
            break
        heap[i] = heap[parent]
        pos[heap[i]] = i
        i = parent
    heap[i] = v
    pos[v] = i


@njit(cache=True)
def _pop(heap, pos, dist, size):  # pragma: no cover - compiled
    """The first vertex of the heap, removed; returns it and the new size."""
    top = heap[0]
    pos[top] = -1
    size -= 1
    if size == 0:
        return top, size
    v = heap[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(dist, heap[child + 1], heap[child]):
            child += 1
        if not _before(dist, heap[child], v):
            break
        heap[i] = heap[child]
        pos[heap[i]] = i
        i = child
    heap[i] = v
    pos[v] = i
    return top, size


@njit(cache=True)
def dijkstra_grid(costs, height, width, steps, source, target):  # pragma: no cover - compiled
    """Rows of ``costs`` ``(B, H * W)`` (clamped at zero) -> the 0/1 vertex indicators ``(B, H * W)``
    of their cheapest ``source -> target`` paths (see the module docstring for the ties)."""
    n_rows, n = costs.shape
    out = np.zeros((n_rows, n))
    dist = np.empty(n)
    pred = np.empty(n, dtype=np.int64)
    done = np.empty(n, dtype=np.bool_)
    heap = np.empty(n, dtype=np.int64)  # an indexed binary heap: each vertex at most once
    pos = np.empty(n, dtype=np.int64)  # a vertex's place in the heap, -1 outside it
    for r in range(n_rows):
        c = costs[r]
        dist[:] = np.inf
        pred[:] = -1
        done[:] = False
        pos[:] = -1
        dist[source] = max(c[source], 0.0)
        heap[0], pos[source], size = source, 0, 1
        while size > 0:
            u, size = _pop(heap, pos, dist, size)
            done[u] = True
            if u == target:
                break
            d = dist[u]
            ui, uj = u // width, u % width
            for k in range(steps.shape[0]):
                vi, vj = ui + steps[k, 0], uj + steps[k, 1]
                if vi < 0 or vi >= height or vj < 0 or vj >= width:
                    continue
                v = vi * width + vj
                if done[v]:
                    continue
                nd = d + max(c[v], 0.0)
                if nd < dist[v]:
                    dist[v] = nd
                    pred[v] = u
                    if pos[v] < 0:
                        heap[size], pos[v] = v, size
                        size += 1
                    _sift_up(heap, pos, dist, pos[v])
        v = target
        while v != -1:
            out[r, v] = 1.0
            v = pred[v]
    return out


class GridPathSolver(ChunkSolver):
    """Dijkstra on every row of a chunk (the grid is always connected: every row has a path)."""

    def __init__(self, spec: GridPathSpec) -> None:
        self.height, self.width = spec.shape
        self.steps = _STEPS_8 if spec.neighbours == 8 else _STEPS_4
        self.source, self.target = spec.source, spec.target

    def solve_chunk(self, costs: np.ndarray, time_limit: float | None, data: Data) -> ChunkResult:
        t0 = time.perf_counter()
        n = len(costs)
        c = np.ascontiguousarray(costs, dtype=np.float64)
        sols = dijkstra_grid(c, self.height, self.width, self.steps, self.source, self.target)
        times = np.full(n, (time.perf_counter() - t0) / max(n, 1))
        objective = np.einsum("ij,ij->i", c, sols)
        clamped: list[bool] = np.any(c < 0, axis=1).tolist()
        if not any(clamped):
            return ChunkResult(sols, [OPTIMAL] * n, ["OPTIMAL"] * n, times, bound=objective)
        status = [FEASIBLE if bad else OPTIMAL for bad in clamped]
        words = [CLAMPED if bad else "OPTIMAL" for bad in clamped]
        return ChunkResult(sols, status, words, times, bound=np.where(clamped, np.nan, objective))


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
