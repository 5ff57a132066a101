"""Shortest (or longest) path in a directed acyclic graph: arc costs ``(E,)`` -> the 0/1 arcs of
an optimal ``source -> target`` path.

Exact for costs of any sign, because the graph has no cycle (projected costs are centred and may
be negative). Two exact methods, chosen once per ``(source, target)`` pair:

- few paths (at most ``ENUMERATE_WORK`` arc entries over all ``source -> target`` paths, e.g. the
  70 paths of a 5x5 grid): the paths are listed once; a chunk of instances is solved by summing
  each path's arc costs and taking the argmin (ties: the path found first by a depth-first search
  over arcs in index order);
- otherwise, dynamic programming in topological order (Bellman's recursion
  ``d(v) = min over arcs (u, v) of d(u) + c_uv``; ties: the arc listed first among a node's
  incoming arcs).

Both run on a whole chunk at once with numpy, a few microseconds per instance on PyEPO's grid.
Every row is computed independently of the others, so serial, pool and executor results are
identical.

A graph with cycles is solved by Dijkstra's algorithm instead (:class:`CyclicPathSolver`, compiled,
the chunk at once), which needs arc costs ``>= 0``: a negative one is clamped at zero and the row
is labelled ``feasible`` (solver status ``NEGATIVE_COSTS_CLAMPED``), never ``optimal``, since a
cheapest simple path with negative costs is NP-hard to find. Its ``"auto"`` projection is
``"norm"``: the node potentials that flow conservation allows would make costs negative. Ties:
nodes are settled in the order (distance, node index), a node's arc the first (in index order)
from the first settled node that reaches it at its final distance.

An instance may have its own pair (data ``source`` and ``target``): it gets the decision a layer
built with that pair gives, ties included. ``source == target`` is the empty path (all zeros); a
target its source does not reach leaves the instance infeasible.

Feasible decisions are the ``source -> target`` paths; their arc vectors satisfy flow
conservation ``A y = e_source - e_target`` (``A`` the node-arc incidence matrix), which
``projection="auto"`` uses: an instance's own pair changes ``e_source - e_target`` only, not ``A``.
"""

from __future__ import annotations

import operator
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import Sense, check_sense
from ._dijkstra import clamped_result, csr, dijkstra_rows
from .base import NO_DATA, ChunkResult, ChunkSolver, Data, DataField, ExactChunkSolver, LinearRows, ModelSpec

# Largest total number of arc entries over all paths for which the paths are enumerated.
ENUMERATE_WORK = 4096
# Pairs whose method (their paths, or the recursion) a resident solver keeps, the latest used.
KEPT_PAIRS = 4096


def _reachable(n: int, tails: np.ndarray, heads: np.ndarray, start: int) -> np.ndarray:
    out: list[list[int]] = [[] for _ in range(n)]
    for t, h in zip(tails.tolist(), heads.tolist()):
        out[t].append(h)
    seen = np.zeros(n, dtype=bool)
    seen[start] = True
    queue = deque([start])
    while queue:
        for h in out[queue.popleft()]:
            if not seen[h]:
                seen[h] = True
                queue.append(h)
    return seen


def _topological_order(n: int, tails: np.ndarray, heads: np.ndarray) -> list[int] | None:
    """Kahn's algorithm; None when the graph has a cycle."""
    indegree = np.bincount(heads, minlength=n)
    out: list[list[int]] = [[] for _ in range(n)]
    for t, h in zip(tails.tolist(), heads.tolist()):
        out[t].append(h)
    queue = deque(np.flatnonzero(indegree == 0).tolist())
    order: list[int] = []
    while queue:
        v = queue.popleft()
        order.append(v)
        for h in out[v]:
            indegree[h] -= 1
            if indegree[h] == 0:
                queue.append(h)
    return order if len(order) == n else None


class DagPathSolver(ExactChunkSolver):
    """Each instance's ``(source, target)`` pair is solved as a layer built with that pair would
    solve it (the same method, the same ties): its paths listed once per pair when they are few,
    else the recursion, which runs on every such row at once from each row's own source."""

    def __init__(self, spec: ShortestPathSpec) -> None:
        tails, heads = np.asarray(spec.tails), np.asarray(spec.heads)
        order = _topological_order(spec.n_nodes, tails, heads)
        assert order is not None  # checked when the layer was built
        self.n_arcs, self.n_nodes = len(tails), spec.n_nodes
        self.source, self.target = spec.source, spec.target
        self.sign = -1.0 if spec.sense == "max" else 1.0
        self.tails = tails
        self.head = heads.tolist()
        self.out_arcs: list[list[int]] = [[] for _ in range(spec.n_nodes)]  # in index order
        self.in_tails: list[list[int]] = [[] for _ in range(spec.n_nodes)]
        for arc, (t, h) in enumerate(zip(tails.tolist(), self.head)):
            self.out_arcs[t].append(arc)
            self.in_tails[h].append(t)
        # per pair: its paths, or None for the recursion (found on first use; speed only)
        self.paths: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()
        self.pair_paths(spec.source, spec.target)
        # (node, its incoming arcs, their tails) in topological order: the recursion's steps. An
        # arc whose tail the row's source does not reach has an infinite candidate and never
        # wins, so every row can use every arc.
        self.steps: list[tuple[int, np.ndarray, np.ndarray]] = []
        for v in order:
            arcs = np.flatnonzero(heads == v)
            if len(arcs):
                self.steps.append((v, arcs, tails[arcs]))

    def pair_paths(self, source: int, target: int) -> np.ndarray | None:
        """The paths of a pair when they are few (listed once): arc indices per path, padded with
        the index of an extra zero-cost column (no rows: no path); else None."""
        key = (source, target)
        if key in self.paths:
            self.paths.move_to_end(key)
            return self.paths[key]
        paths = self.enumerate_paths(source, target)
        arcs = None
        if paths is not None:
            arcs = np.full((len(paths), max(map(len, paths), default=0)), self.n_arcs)
            for k, path in enumerate(paths):
                arcs[k, : len(path)] = path
        self.paths[key] = arcs
        if len(self.paths) > KEPT_PAIRS:
            self.paths.popitem(last=False)
        return arcs

    def enumerate_paths(self, source: int, target: int) -> list[list[int]] | None:
        """Every ``source -> target`` path as its arc list (depth first, arcs in index order; the
        empty path when ``source == target``), or None once the paths hold more than
        ``ENUMERATE_WORK`` arc entries."""
        reaches = {target}  # the nodes that reach the target: a search follows arcs into them only
        queue = deque([target])
        while queue:
            for t in self.in_tails[queue.popleft()]:
                if t not in reaches:
                    reaches.add(t)
                    queue.append(t)
        paths: list[list[int]] = []
        work = 0
        stack: list[tuple[int, list[int]]] = [(source, [])] if source in reaches else []
        while stack:
            node, prefix = stack.pop()
            if node == target:
                work += len(prefix)
                if work > ENUMERATE_WORK:
                    return None
                paths.append(prefix)
                continue
            for arc in reversed(self.out_arcs[node]):  # popped in index order
                if self.head[arc] in reaches:
                    stack.append((self.head[arc], [*prefix, arc]))
        return paths

    def decide_chunk(self, costs: np.ndarray, data: Data = NO_DATA) -> np.ndarray:
        # Rows without a path (a target its source does not reach: no arc to list) are NaN.
        n = len(costs)
        c = costs * self.sign
        sources = data["source"].astype(np.int64) if "source" in data else np.full(n, self.source)
        targets = data["target"].astype(np.int64) if "target" in data else np.full(n, self.target)
        if "source" in data or "target" in data:
            keys, inverse, counts = np.unique(sources * self.n_nodes + targets, return_inverse=True, return_counts=True)
            groups = np.split(np.argsort(inverse.reshape(-1), kind="stable"), np.cumsum(counts)[:-1])
        else:
            keys, groups = np.array([self.source * self.n_nodes + self.target]), [np.arange(n)]
        sols = np.empty_like(c)
        recursion = []
        for key, rows in zip(keys.tolist(), groups):
            paths = self.pair_paths(*divmod(key, self.n_nodes))
            if paths is None:
                recursion.append(rows)
            elif len(paths) == 0:
                sols[rows] = np.nan
            else:
                padded = np.concatenate([c[rows], np.zeros((len(rows), 1))], axis=1)
                y = np.zeros_like(padded)
                np.put_along_axis(y, paths[padded[:, paths].sum(axis=2).argmin(axis=1)], 1.0, axis=1)
                sols[rows] = y[:, :-1]
        if recursion:
            rows = np.concatenate(recursion)
            sols[rows] = self._recursion(c[rows], sources[rows], targets[rows])
        return sols

    def _recursion(self, c: np.ndarray, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        # Bellman's recursion in topological order, linear in the arcs and always exact.
        n = len(c)
        rows = np.arange(n)
        dist = np.full((n, self.n_nodes), np.inf)
        dist[rows, sources] = 0.0
        pred = np.zeros((n, self.n_nodes), dtype=np.int64)
        for v, arcs, tails in self.steps:
            cand = dist[:, tails] + c[:, arcs]
            best = cand.argmin(axis=1)
            # a row's source keeps 0: its ancestors are never reached from it (infinite candidates)
            dist[:, v] = np.minimum(dist[:, v], cand[rows, best])
            pred[:, v] = arcs[best]
        sols = np.zeros_like(c)
        node = targets.copy()
        for _ in range(self.n_nodes - 1):
            active = np.flatnonzero(node != sources)
            if not len(active):
                break
            arc = pred[active, node[active]]
            sols[active, arc] = 1.0
            node[active] = self.tails[arc]
        return sols


@dataclass(frozen=True)
class ShortestPathSpec(ModelSpec):
    resident_solver = DagPathSolver
    on_caller_thread = True
    stops_at_time_limit = False
    tails: tuple[int, ...]
    heads: tuple[int, ...]
    n_nodes: int
    source: int
    target: int
    sense: Sense

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (len(self.tails),)

    fields: tuple[DataField, ...] = field(init=False)  # set from n_nodes (read when tracing)

    def __post_init__(self) -> None:
        last = float(self.n_nodes - 1)
        pair = (
            DataField("source", (), "the path's start node", integral=True, low=0.0, high=last),
            DataField("target", (), "the path's end node", integral=True, low=0.0, high=last),
        )
        object.__setattr__(self, "fields", pair)

    def incidence(self) -> np.ndarray:
        """The node-arc incidence matrix: +1 at an arc's tail, -1 at its head."""
        n_arcs = len(self.tails)
        a = np.zeros((self.n_nodes, n_arcs))
        a[self.tails, np.arange(n_arcs)] += 1.0
        a[self.heads, np.arange(n_arcs)] -= 1.0
        return a

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        # Flow conservation, A y = e_source - e_target: an instance's own pair changes the right
        # hand side only, so the rows (what "auto" removes) hold for every instance.
        b = np.zeros(self.n_nodes)
        b[self.source] += 1.0
        b[self.target] -= 1.0
        return self.incidence(), b

    def linear_rows(self, data: Data = NO_DATA) -> LinearRows:
        # flow conservation (out - in = 1 at the source, -1 at the target, 0 elsewhere), 0 <= y <= 1;
        # with cycles too (a simple path is a vertex of this polytope, circulations aside)
        a = self.incidence()
        b = np.zeros(self.n_nodes)
        b[int(data.get("source", self.source))] += 1.0
        b[int(data.get("target", self.target))] -= 1.0
        n = len(self.tails)
        return LinearRows(a, b, b.copy(), np.zeros(n), np.ones(n), np.arange(self.n_nodes))


class CyclicPathSolver(ChunkSolver):
    """Dijkstra on every row of a chunk, from each row's own source (a graph with cycles)."""

    def __init__(self, spec: ShortestPathSpec) -> None:
        tails, heads = np.asarray(spec.tails), np.asarray(spec.heads)
        self.indptr, self.order = csr(spec.n_nodes, tails)
        self.heads = heads[self.order]
        self.source, self.target = spec.source, spec.target

    def solve_chunk(self, costs: np.ndarray, time_limit: float | None, data: Data) -> ChunkResult:
        t0 = time.perf_counter()
        n = len(costs)
        c = np.ascontiguousarray(costs, dtype=np.float64)
        sources = data["source"].astype(np.int64) if "source" in data else np.full(n, self.source)
        targets = data["target"].astype(np.int64) if "target" in data else np.full(n, self.target)
        path, reached = dijkstra_rows(c, self.order, self.indptr, self.heads, sources, targets)
        sols = np.zeros_like(c)
        rows, steps = np.nonzero(path >= 0)
        sols[rows, self.order[path[rows, steps]]] = 1.0
        return clamped_result(c, sols, t0, c < 0, reached)


@dataclass(frozen=True)
class CyclicPathSpec(ShortestPathSpec):
    resident_solver = CyclicPathSolver  # type: ignore[assignment]

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        # Flow conservation holds, but its node potentials make costs negative, which Dijkstra
        # cannot take: "auto" is "norm".
        return np.zeros((0, len(self.tails))), np.zeros(0)


def _node(value: Any, name: str, n_nodes: int, *, where: str) -> int:
    try:
        node = operator.index(value)
    except TypeError:
        raise ValueError(f"{where}: {name}={value!r} must be an int node index") from None
    if isinstance(value, bool) or not 0 <= node < n_nodes:
        raise ValueError(f"{where}: {name}={value!r} must be a node index in [0, {n_nodes})")
    return node


def dag_path_spec(arcs: Any, source: Any, target: Any, *, n_nodes: Any, sense: str, where: str) -> ShortestPathSpec:
    sense = check_sense(sense, where=where)
    try:
        arr = np.asarray(arcs)
    except ValueError:
        arr = np.empty((0,))
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{where}: arcs must be a non-empty sequence of (tail, head) int pairs, got shape {arr.shape}")
    tails, heads = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
    if n_nodes is None:
        n_nodes = int(arr.max()) + 1
    elif isinstance(n_nodes, bool) or not isinstance(n_nodes, (int, np.integer)) or n_nodes < 1:
        raise ValueError(f"{where}: n_nodes={n_nodes!r} must be a positive int")
    n_nodes = int(n_nodes)
    if arr.min() < 0 or arr.max() >= n_nodes:
        bad = int(np.flatnonzero((arr < 0).any(1) | (arr >= n_nodes).any(1))[0])
        raise ValueError(f"{where}: arcs[{bad}]={tuple(arr[bad].tolist())} has a node outside [0, {n_nodes})")
    loops = np.flatnonzero(tails == heads)
    if len(loops):
        raise ValueError(f"{where}: arcs[{loops[0]}]={tuple(arr[loops[0]].tolist())} is a self-loop")
    s = _node(source, "source", n_nodes, where=where)
    t = _node(target, "target", n_nodes, where=where)
    if s == t:
        raise ValueError(f"{where}: source and target are both {s}; they must differ")
    if not _reachable(n_nodes, tails, heads, s)[t]:
        raise ValueError(f"{where}: target {t} is not reachable from source {s}")
    arcs_ = (tuple(tails.tolist()), tuple(heads.tolist()))
    if _topological_order(n_nodes, tails, heads) is not None:
        return ShortestPathSpec(*arcs_, n_nodes, s, t, sense)
    if sense == "max":
        raise ValueError(
            f"{where}: the graph has a cycle and sense='max': a longest simple path is NP-hard to find "
            "(a DAG takes sense='max'; a graph with cycles takes sense='min' with costs >= 0)"
        )
    return CyclicPathSpec(*arcs_, n_nodes, s, t, sense)


def grid_arcs(h: int, w: int) -> list[tuple[int, int]]:
    """Arcs of the ``h x w`` grid in PyEPO's order (its shortest-path benchmark).

    Node ``(i, j)`` (row ``i``, column ``j``) is numbered ``i * w + j``. For each row ``i`` in
    turn: its ``w - 1`` right arcs ``(i*w + j) -> (i*w + j + 1)`` for ``j = 0 .. w-2``, then (except
    for the last row) its ``w`` down arcs ``(i*w + j) -> ((i+1)*w + j)`` for ``j = 0 .. w-1``.
    There are ``h (w-1) + (h-1) w`` arcs: 40 for 5x5.

    Example:
        >>> grid_arcs(2, 2)
        [(0, 1), (0, 2), (1, 3), (2, 3)]
    """
    arcs: list[tuple[int, int]] = []
    for i in range(h):
        arcs.extend((i * w + j, i * w + j + 1) for j in range(w - 1))
        if i < h - 1:
            arcs.extend((i * w + j, (i + 1) * w + j) for j in range(w))
    return arcs
