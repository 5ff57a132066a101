"""Dijkstra's algorithm on a graph in CSR form, compiled by numba, one row of arc costs per
instance: what the grid layer and the cyclic route of the shortest-path layer share.

The arcs leaving node ``u`` are ``indptr[u]:indptr[u + 1]`` (``heads`` their head nodes). Costs
are clamped at zero (Dijkstra needs them ``>= 0``; the callers say so in the status). Ties:
nodes are settled in the order (distance, node index), and a node's predecessor arc is the first
arc, in CSR order from the first settled node, that reaches it at its final distance. A row
depends on itself only.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from ..statuses import FEASIBLE, OPTIMAL
from .base import ChunkResult

CLAMPED = "NEGATIVE_COSTS_CLAMPED"


def csr(n_nodes: int, tails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``indptr`` of arcs sorted by tail (stable: a node's arcs keep their order) and that order."""
    order = np.argsort(tails, kind="stable")
    return np.concatenate([[0], np.cumsum(np.bincount(tails, minlength=n_nodes))]), order


def dijkstra_rows(
    costs: np.ndarray,
    cost_of: np.ndarray,
    indptr: np.ndarray,
    heads: np.ndarray,
    sources: np.ndarray,
    targets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dijkstra_csr` on float64 costs, each row whose path sums could overflow scaled first
    by a power of two (exact, the same decision)."""
    c = np.ascontiguousarray(costs, dtype=np.float64)
    peak = np.abs(c).max(axis=1, initial=0.0)
    big = peak > np.finfo(np.float64).max / (2.0 * len(indptr))
    if big.any():
        c = c.copy()
        c[big] = np.ldexp(c[big], -np.frexp(peak[big])[1][:, None] + 1000 - int(np.log2(len(indptr)) + 2))
    return dijkstra_csr(c, cost_of, indptr, heads, sources.astype(np.int64), targets.astype(np.int64))


def clamped_result(
    costs: np.ndarray, sols: np.ndarray, started: float, negative: np.ndarray, reached: np.ndarray
) -> ChunkResult:
    """A chunk's result: ``optimal`` where no cost the decision depends on is negative,
    ``feasible`` (solver status ``NEGATIVE_COSTS_CLAMPED``, no bound) where the solver clamped
    one (``negative``: ``(B, n)``, those entries); NaN rows and ``infeasible`` where the target
    was not reached."""
    n = len(costs)
    times = np.full(n, (time.perf_counter() - started) / max(n, 1))
    objective = np.einsum("ij,ij->i", costs, sols)
    clamped: list[bool] = np.any(negative, axis=1).tolist()
    if not any(clamped) and reached.all():
        return ChunkResult(sols, [OPTIMAL] * n, ["OPTIMAL"] * n, times, bound=objective)
    status = [FEASIBLE if bad else OPTIMAL for bad in clamped]
    words = [CLAMPED if bad else "OPTIMAL" for bad in clamped]
    bound = np.where(clamped, np.nan, objective)
    for i in np.flatnonzero(~reached).tolist():
        status[i], words[i] = "infeasible", "INFEASIBLE"
    sols[~reached] = np.nan
    bound[~reached] = np.nan
    return ChunkResult(sols, status, words, times, bound=bound)


@njit(cache=True)
def _before(dist, a, b):  # pragma: no cover - compiled
    """Whether node ``a`` is settled before ``b``: the order (distance, index)."""
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
    """The first node of the heap, removed; returns it and the new size."""
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
def dijkstra_csr(costs, cost_of, indptr, heads, sources, targets):  # pragma: no cover - compiled
    """Cheapest ``sources[r] -> targets[r]`` path of every row of ``costs`` ``(B, k)``, the arc
    ``a`` (in CSR order) costing ``costs[r, cost_of[a]]`` clamped at zero: its arcs ``(B, n - 1)``
    (from the target back, padded with -1) and whether the target was reached ``(B,)``."""
    n_rows, m = costs.shape[0], len(heads)
    n = len(indptr) - 1
    path = np.full((n_rows, max(n - 1, 1)), -1, dtype=np.int64)
    reached = np.zeros(n_rows, dtype=np.bool_)
    dist = np.empty(n)
    pred = np.empty(n, dtype=np.int64)  # the arc into a node, -1 for none
    tail = np.empty(m, dtype=np.int64)
    for u in range(n):
        tail[indptr[u] : indptr[u + 1]] = u
    done = np.empty(n, dtype=np.bool_)
    heap = np.empty(n, dtype=np.int64)  # an indexed binary heap: each node at most once
    pos = np.empty(n, dtype=np.int64)  # a node's place in the heap, -1 outside it
    for r in range(n_rows):
        c = costs[r]
        source, target = sources[r], targets[r]
        dist[:] = np.inf
        pred[:] = -1
        done[:] = False
        pos[:] = -1
        dist[source] = 0.0
        heap[0], pos[source], size = source, 0, 1
        while size > 0:
            u, size = _pop(heap, pos, dist, size)
            done[u] = True
            if u == target:
                reached[r] = True
                break
            d = dist[u]
            for a in range(indptr[u], indptr[u + 1]):
                v = heads[a]
                if done[v]:
                    continue
                nd = d + max(c[cost_of[a]], 0.0)
                if nd < dist[v]:
                    dist[v] = nd
                    pred[v] = a
                    if pos[v] < 0:
                        heap[size], pos[v] = v, size
                        size += 1
                    _sift_up(heap, pos, dist, pos[v])
        if reached[r]:
            v, k = target, 0
            while pred[v] != -1:
                path[r, k] = pred[v]
                v, k = tail[pred[v]], k + 1
    return path, reached
