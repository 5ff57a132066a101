"""Exact symmetric TSP: Held-Karp 1-tree bounds, depth-first branch and bound on edges
(Held & Karp 1971; Volgenant & Jonker 1982). The kernels are compiled with numba; the search loop
is Python, so that it can watch a time limit.

Bound: for node penalties ``pi``, a minimum 1-tree (a spanning tree on nodes ``1..n-1`` plus the
two cheapest edges at node 0) under costs ``c_ij + pi_i + pi_j`` weighs at most any tour plus
``2 sum(pi)``, so ``L(pi) = w(1-tree) - 2 sum(pi)`` bounds every tour from below. Subgradient
ascent moves ``pi`` by ``t (deg - 2)`` (Polyak steps toward the incumbent); a 1-tree whose degrees
are all 2 is a tour, optimal for its subproblem.

Incumbent: the best of ``HEURISTIC_STARTS`` nearest-neighbour tours, each improved by 2-opt and
Or-opt; later, every 1-tree that is a tour.

Search: a subproblem fixes edges in or out. The branching node is a node of the 1-tree with the
most edges, the branching edge its costliest free 1-tree edge: first out, then in (with the
propagation that a node with two edges in loses all others, and that a path of forced edges
cannot close early). Subproblems whose bound reaches the incumbent minus a tolerance are pruned,
so the tour returned is optimal up to that tolerance: the float64 rounding of the incumbent's
length (``TOLERANCE`` times ``n eps`` times the sum of its absolute edge costs), never a fraction
of the largest cost (which a huge cost on an edge no good tour uses would make loose). Ties keep
the first tour found, which makes the result a function of the costs alone. The search runs on
the costs times a power of two that brings the largest to ``[0.5, 1)`` (exact), so that its
constants are relative to the costs.
"""

from __future__ import annotations

import time

import numba
import numpy as np

FREE, IN, OUT = 0, 1, 2
# A better first tour and longer ascents per subproblem pay for themselves in fewer subproblems
# (measured on PyEPO's 40- and 50-city instances; docs/adapters/tsp.md).
HEURISTIC_STARTS = 16
EPS = float(np.finfo(np.float64).eps)
# The pruning tolerance in units of the float64 rounding of a tour ("n eps" times its absolute
# length): at most that of the objective, so that a finished search is "optimal" (scaling.proven).
TOLERANCE = 1.0


@numba.njit(cache=True)
def one_tree(c, state, pi, big, parent, deg):  # pragma: no cover (compiled)
    """Minimum 1-tree under ``c + pi_i + pi_j`` with ``state`` (IN edges first, OUT edges never).

    Fills ``parent`` (tree parent of nodes ``1..n-1``; ``parent[0]``, ``parent[1]`` are the two
    neighbours of node 0 stored as ``-2 - v``) and ``deg``; returns ``L(pi)`` computed on the true
    costs, or ``inf`` when the subproblem has no 1-tree containing its IN edges.
    """
    n = c.shape[0]
    key = np.full(n, np.inf)
    done = np.zeros(n, dtype=np.bool_)
    for v in range(n):
        parent[v] = -1
        deg[v] = 0
    key[1] = -np.inf
    total = 0.0
    forced_in_tree = 0
    for _ in range(n - 1):
        u = -1
        best = np.inf
        for v in range(1, n):
            if not done[v] and key[v] < best:
                best = key[v]
                u = v
        if u == -1:
            return np.inf
        done[u] = True
        p = parent[u]
        if p >= 0:
            total += c[u, p] + pi[u] + pi[p]
            deg[u] += 1
            deg[p] += 1
            if state[u, p] == IN:
                forced_in_tree += 1
        for v in range(1, n):
            if not done[v] and state[u, v] != OUT:
                w = c[u, v] + pi[u] + pi[v]
                if state[u, v] == IN:
                    w -= big
                if w < key[v]:
                    key[v] = w
                    parent[v] = u
    # The two cheapest edges at node 0.
    a, b = -1, -1
    wa, wb = np.inf, np.inf
    for v in range(1, n):
        if state[0, v] == OUT:
            continue
        w = c[0, v] + pi[0] + pi[v]
        if state[0, v] == IN:
            w -= big
        if w < wa:
            b, wb = a, wa
            a, wa = v, w
        elif w < wb:
            b, wb = v, w
    if b == -1:
        return np.inf
    for v in (a, b):
        total += c[0, v] + pi[0] + pi[v]
        deg[0] += 1
        deg[v] += 1
        if state[0, v] == IN:
            forced_in_tree += 1
    n_in = 0
    for i in range(n):
        for j in range(i + 1, n):
            if state[i, j] == IN:
                n_in += 1
    if forced_in_tree < n_in:
        return np.inf
    parent[0] = -2 - a
    parent[1] = -2 - b
    return total - 2.0 * pi.sum()


@numba.njit(cache=True)
def ascent(c, state, pi, ub, tol, big, max_iter, parent, deg):  # pragma: no cover (compiled)
    """Subgradient ascent on ``L(pi)`` from ``pi`` (updated in place to the best found);
    ``parent``/``deg`` describe the 1-tree at that ``pi``. Stops early when the bound reaches
    ``ub - tol`` or the 1-tree is a tour."""
    n = c.shape[0]
    best = -np.inf
    best_pi = pi.copy()
    lam = 2.0
    stale = 0
    patience = max(5, n // 2)
    for _ in range(max_iter):
        bound = one_tree(c, state, pi, big, parent, deg)
        if bound == np.inf:
            return np.inf
        if bound > best + tol * 1e-3:
            best = bound
            best_pi[:] = pi
            stale = 0
        else:
            stale += 1
        if best >= ub - tol:
            break
        norm = 0.0
        for v in range(n):
            norm += (deg[v] - 2) ** 2
        if norm == 0:
            return bound
        if stale >= patience:
            lam *= 0.5
            stale = 0
            if lam < 1e-6:
                break
        step = lam * (ub - bound) / norm
        for v in range(n):
            pi[v] += step * (deg[v] - 2)
    pi[:] = best_pi
    return one_tree(c, state, pi, big, parent, deg)


@numba.njit(cache=True)
def tour_length(c, tour):  # pragma: no cover (compiled)
    n = len(tour)
    total = 0.0
    for k in range(n):
        total += c[tour[k], tour[(k + 1) % n]]
    return total


@numba.njit(cache=True)
def two_opt(c, tour):  # pragma: no cover (compiled)
    """First-improvement 2-opt to a local optimum (in place)."""
    n = len(tour)
    improved = True
    while improved:
        improved = False
        for i in range(n - 1):
            a, b = tour[i], tour[i + 1]
            for j in range(i + 2, n if i > 0 else n - 1):
                d, e = tour[j], tour[(j + 1) % n]
                delta = c[a, d] + c[b, e] - c[a, b] - c[d, e]
                # relative to the terms: a float-noise "gain" never undoes the last move
                if delta < -1e-12 * (abs(c[a, d]) + abs(c[b, e]) + abs(c[a, b]) + abs(c[d, e])):
                    tour[i + 1 : j + 1] = tour[i + 1 : j + 1][::-1].copy()
                    improved = True
                    a, b = tour[i], tour[i + 1]


@numba.njit(cache=True)
def or_opt(c, tour):  # pragma: no cover (compiled)
    """Or-opt: move a run of 1-3 consecutive nodes, either way round, to the best place between
    two other neighbours while that shortens the tour (in place); True if a run moved."""
    n = len(tour)
    moved = False
    improved = True
    while improved:
        improved = False
        for seg in range(1, 4):
            for i in range(n):
                p, s0 = tour[(i - 1) % n], tour[i]
                s1, q = tour[(i + seg - 1) % n], tour[(i + seg) % n]
                gain_out = c[p, s0] + c[s1, q] - c[p, q]
                best, at, flip = 1e-12 * (abs(c[p, s0]) + abs(c[s1, q]) + abs(c[p, q])), -1, False
                for k in range(n - seg - 1):
                    a, b = tour[(i + seg + k) % n], tour[(i + seg + k + 1) % n]
                    forward = gain_out - (c[a, s0] + c[s1, b] - c[a, b])
                    backward = gain_out - (c[a, s1] + c[s0, b] - c[a, b])
                    if forward > best:
                        best, at, flip = forward, k, False
                    if backward > best:
                        best, at, flip = backward, k, True
                if at < 0:
                    continue
                # The rest of the tour from q on, with the run inserted after its entry ``at``.
                out = np.empty(n, dtype=tour.dtype)
                m = 0
                for t in range(n - seg):
                    out[m] = tour[(i + seg + t) % n]
                    m += 1
                    if t == at:
                        for r in range(seg):
                            out[m] = tour[(i + (seg - 1 - r if flip else r)) % n]
                            m += 1
                tour[:] = out
                improved = moved = True
    return moved


@numba.njit(cache=True)
def heuristic_tour(c, starts):  # pragma: no cover (compiled)
    """Best of nearest-neighbour tours from ``starts`` first nodes, each improved by 2-opt and
    Or-opt to a local optimum of both."""
    n = c.shape[0]
    best = np.arange(n)
    best_len = np.inf
    for s in range(min(starts, n)):
        tour = np.empty(n, dtype=np.int64)
        used = np.zeros(n, dtype=np.bool_)
        tour[0] = s
        used[s] = True
        for k in range(1, n):
            last = tour[k - 1]
            nxt, w = -1, np.inf
            for v in range(n):
                if not used[v] and c[last, v] < w:
                    w = c[last, v]
                    nxt = v
            tour[k] = nxt
            used[nxt] = True
        two_opt(c, tour)
        while or_opt(c, tour):
            two_opt(c, tour)
        length = tour_length(c, tour)
        if length < best_len - 1e-12 * abs(length):
            best_len = length
            best = tour.copy()
    return best, best_len


def _tree_edges(parent: np.ndarray) -> list[tuple[int, int]]:
    n = len(parent)
    edges = [(0, -2 - int(parent[0])), (0, -2 - int(parent[1]))]
    edges += [(v, int(parent[v])) for v in range(2, n)]
    return edges


def _tour_from_edges(edges: list[tuple[int, int]], n: int) -> np.ndarray:
    nbrs: list[list[int]] = [[] for _ in range(n)]
    for i, j in edges:
        nbrs[i].append(j)
        nbrs[j].append(i)
    tour = [0]
    prev, cur = -1, 0
    for _ in range(n - 1):
        nxt = nbrs[cur][0] if nbrs[cur][0] != prev else nbrs[cur][1]
        tour.append(nxt)
        prev, cur = cur, nxt
    return np.asarray(tour, dtype=np.int64)


def _force(state: np.ndarray, i: int, j: int) -> bool:
    """Fix edge ``{i, j}`` in, with propagation; False when the subproblem becomes infeasible."""
    n = len(state)
    state[i, j] = state[j, i] = IN
    for v in (i, j):
        if int((state[v] == IN).sum()) > 2:
            return False
        if int((state[v] == IN).sum()) == 2:
            free = state[v] == FREE
            state[v, free] = OUT
            state[free, v] = OUT
    # Walk the path of IN edges through {i, j}: its two ends may not be joined unless it is the tour.
    ends, length = [], 1
    for start, came in ((i, j), (j, i)):
        prev, cur = came, start
        while True:
            nxt = [int(u) for u in np.flatnonzero(state[cur] == IN) if u != prev]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            length += 1
            if cur in (i, j):
                return length == n  # a cycle: feasible only as the whole tour
        ends.append(cur)
    if 2 <= length < n - 1:  # a path short of every node: closing it would be a subtour
        a, b = ends
        if state[a, b] == IN:
            return False
        state[a, b] = state[b, a] = OUT
    return True


def solve_symmetric(
    c: np.ndarray, time_limit: float | None = None, abort: np.ndarray | None = None
) -> tuple[np.ndarray, bool, float]:
    """An optimal tour of the symmetric costs ``c`` (``(n, n)``, diagonal ignored) as a node
    order starting at 0; whether the search finished (False when ``time_limit`` seconds, or
    ``abort[0]`` set from another thread, stopped it: the tour is then the best found); and how
    much worse than optimal the tour can be for the pruning tolerance (``TOLERANCE`` times the
    float64 rounding of a tour's length), in the units of ``c``."""
    c = np.ascontiguousarray(c, dtype=np.float64)
    n = len(c)
    if n <= 3:
        return np.arange(n, dtype=np.int64), True, 0.0
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    off = c[~np.eye(n, dtype=bool)]
    # Largest magnitude to [0.5, 1): exact, so the kernels' constants are relative to the costs.
    exponent = int(np.frexp(np.abs(off).max())[1])
    c = np.ldexp(c, -exponent)
    tour, ub = heuristic_tour(c, HEURISTIC_STARTS)
    tol = _tolerance(c, tour)
    slack = tol
    big = 1e6 * n
    parent = np.empty(n, dtype=np.int64)
    deg = np.empty(n, dtype=np.int64)
    root = np.zeros((n, n), dtype=np.int8)
    np.fill_diagonal(root, OUT)
    stack = [(root, np.zeros(n))]
    first = True
    while stack:
        if (deadline is not None and time.perf_counter() > deadline) or (abort is not None and abort[0]):
            return _rotate(tour), False, float(np.ldexp(slack, exponent))
        state, pi = stack.pop()
        iters = max(100, 10 * n) if first else max(30, 4 * n)
        first = False
        bound = ascent(c, state, pi, ub, tol, big, iters, parent, deg)
        if bound >= ub - tol:
            continue
        if (deg == 2).all():
            tour = _tour_from_edges(_tree_edges(parent), n)
            ub = float(tour_length(c, tour))
            tol = _tolerance(c, tour)
            slack = max(slack, tol)
            continue
        v = int(np.argmax(deg))
        cand = [(i, j) for i, j in _tree_edges(parent) if v in (i, j) and state[i, j] == FREE]
        i, j = max(cand, key=lambda e: (c[e[0], e[1]] + pi[e[0]] + pi[e[1]], -min(e), -max(e)))
        take = state.copy()
        if _force(take, i, j):
            stack.append((take, pi.copy()))
        drop = state.copy()
        drop[i, j] = drop[j, i] = OUT
        stack.append((drop, pi.copy()))
    return _rotate(tour), True, float(np.ldexp(slack, exponent))


def _tolerance(c: np.ndarray, tour: np.ndarray) -> float:
    """How close to the incumbent ``tour`` a bound may come and still prune: ``TOLERANCE`` times
    the float64 rounding of its length (subgradient bounds approach the optimum only in the
    limit), relative to the tour itself rather than to the largest cost, which can be a huge
    cost no good tour uses."""
    return TOLERANCE * len(tour) * EPS * float(np.abs(c[tour, np.roll(tour, -1)]).sum())


def _rotate(tour: np.ndarray) -> np.ndarray:
    """The same tour starting at node 0, its second node the smaller neighbour of 0."""
    k = int(np.flatnonzero(tour == 0)[0])
    t = np.roll(tour, -k)
    return t if t[1] <= t[-1] else np.concatenate([t[:1], t[1:][::-1]])
