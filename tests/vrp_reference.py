"""An independent brute-force CVRP solver and feasibility checker for the VRPLayer tests (pure
Python and numpy: no OR-Tools, no idproj_or).

Nodes 0..n, node 0 the depot, customers 1..n. Symmetric costs are edge costs in the order of
``itertools.combinations(range(n + 1), 2)``; a decision counts how often the routes use each
edge (2 on the depot edge of a route ``0 -> i -> 0``). Asymmetric costs are an ``(n + 1, n + 1)``
arc matrix (diagonal ignored); a decision is the 0/1 arc matrix of the routes.

With time windows (``windows`` ``(n + 1, 2)``, ``service`` ``(n + 1,)``, ``travel`` ``(n + 1, n +
1)``, the depot first), a route leaves the depot at ``e_0 + s_0`` at the earliest, starts each
customer's service at ``max(arrival, e_i)``, which must be at most ``l_i``, and is back by ``l_0``.

The optimum enumerates every set partition of the customers into routes (each block within the
capacity, at most ``n_vehicles`` blocks) and the best order of each block over all permutations
(memoised per block): fast enough up to 7 customers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np


def edge_list(n: int) -> list[tuple[int, int]]:
    """The edges of the complete graph on nodes 0..n, in the order of the edge costs."""
    return list(itertools.combinations(range(n + 1), 2))


def edge_matrix(n: int, edge_costs: np.ndarray) -> np.ndarray:
    """The symmetric ``(n + 1, n + 1)`` matrix of edge costs (zero diagonal)."""
    edge_costs = np.asarray(edge_costs, dtype=float)
    assert edge_costs.shape == (n * (n + 1) // 2,), edge_costs.shape
    m = np.zeros((n + 1, n + 1))
    for e, (i, j) in enumerate(edge_list(n)):
        m[i, j] = m[j, i] = edge_costs[e]
    return m


def routes_to_decision(routes: Sequence[Sequence[int]], n: int, symmetric: bool) -> np.ndarray:
    """The decision of a set of routes (each the customers in visiting order, depot implicit)."""
    if symmetric:
        index = {e: k for k, e in enumerate(edge_list(n))}
        y = np.zeros(len(index))
        for route in routes:
            path = [0, *route, 0]
            for a, b in itertools.pairwise(path):
                y[index[(min(a, b), max(a, b))]] += 1
        return y
    y = np.zeros((n + 1, n + 1))
    for route in routes:
        path = [0, *route, 0]
        for a, b in itertools.pairwise(path):
            y[a, b] += 1
    return y


def objective(costs: np.ndarray, decision: np.ndarray, symmetric: bool) -> float:
    """sum(cost * decision), the asymmetric diagonal ignored."""
    c = np.array(costs, dtype=float)
    if not symmetric:
        np.fill_diagonal(c, 0.0)
    return float((c * np.asarray(decision, dtype=float)).sum())


Timing = tuple[np.ndarray, np.ndarray, np.ndarray]


def on_time(path: Sequence[int], timing: Timing | None) -> bool:
    """Whether the route ``path`` (customers in order) meets every window, leaving as early as
    it can (waiting is allowed, so leaving later never helps)."""
    if timing is None:
        return True
    windows, service, travel = (np.asarray(a, dtype=np.int64) for a in timing)
    now, here = int(windows[0, 0]), 0
    for node in path:
        now = max(now + int(service[here]) + int(travel[here, node]), int(windows[node, 0]))
        if now > windows[node, 1]:
            return False
        here = node
    return now + int(service[here]) + int(travel[here, 0]) <= windows[0, 1]


def set_partitions(items: Sequence[int]) -> Iterator[list[list[int]]]:
    """Every partition of ``items`` into non-empty blocks (each exactly once)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        yield [[first], *partition]
        for k in range(len(partition)):
            yield [*partition[:k], [first, *partition[k]], *partition[k + 1 :]]


def _instance(costs: np.ndarray, demands: Sequence[int], symmetric: bool) -> tuple[list[int], int, np.ndarray]:
    """Integer demands, the number of customers and the ``(n + 1, n + 1)`` arc costs."""
    demand_list = [int(d) for d in demands]
    n = len(demand_list)
    arc = edge_matrix(n, np.asarray(costs, dtype=float)) if symmetric else np.array(costs, dtype=float)
    assert arc.shape == (n + 1, n + 1), arc.shape
    return demand_list, n, arc


def brute_force(
    costs: np.ndarray,
    demands: Sequence[int],
    capacity: int,
    n_vehicles: int | None = None,
    *,
    symmetric: bool = True,
    sense: str = "min",
    timing: Timing | None = None,
) -> tuple[float | None, np.ndarray | None]:
    """The optimal objective value and one optimal decision, or ``(None, None)`` when no set of
    routes serves every customer within the capacity and the vehicle count."""
    demands, n, arc = _instance(costs, demands, symmetric)
    better = (lambda a, b: a > b) if sense == "max" else (lambda a, b: a < b)
    block_best: dict[tuple[int, ...], tuple[float, tuple[int, ...]] | None] = {}

    def best_order(block: tuple[int, ...]) -> tuple[float, tuple[int, ...]] | None:
        if block not in block_best:
            if sum(demands[i - 1] for i in block) > capacity:
                block_best[block] = None
            else:
                found: tuple[float, tuple[int, ...]] | None = None
                for perm in itertools.permutations(block):
                    if not on_time(perm, timing):
                        continue
                    path = (0, *perm, 0)
                    value = sum(arc[a, b] for a, b in itertools.pairwise(path))
                    if found is None or better(value, found[0]):
                        found = (value, perm)
                block_best[block] = found
        return block_best[block]

    best_value: float | None = None
    best_routes: list[tuple[int, ...]] | None = None
    for partition in set_partitions(list(range(1, n + 1))):
        if n_vehicles is not None and len(partition) > n_vehicles:
            continue
        value, routes = 0.0, []
        for block in partition:
            found = best_order(tuple(sorted(block)))
            if found is None:
                break
            value += found[0]
            routes.append(found[1])
        else:
            if best_value is None or better(value, best_value):
                best_value, best_routes = value, routes
    if best_routes is None:
        return None, None
    decision = routes_to_decision(best_routes, n, symmetric)
    return objective(costs, decision, symmetric), decision


def check_solution(
    decision: np.ndarray,
    demands: Sequence[int],
    capacity: int,
    n_vehicles: int | None = None,
    *,
    symmetric: bool = True,
    timing: Timing | None = None,
) -> list[list[int]]:
    """The routes of ``decision`` (customers in visiting order from the depot); AssertionError
    unless it is a feasible CVRP solution: integral, every customer visited exactly once by a
    route from and back to the depot, each route within the capacity, at most ``n_vehicles``,
    and on time (a symmetric decision's route in one of its two directions)."""
    demands = [int(d) for d in demands]
    n = len(demands)
    y = np.asarray(decision, dtype=float)
    assert np.all(np.isfinite(y)), f"non-finite decision {y}"
    assert np.array_equal(y, np.round(y)), f"non-integral decision {y}"
    if symmetric:
        edges = edge_list(n)
        assert y.shape == (len(edges),), f"decision shape {y.shape}, expected {(len(edges),)}"
        count = np.zeros((n + 1, n + 1), dtype=int)
        for e, (i, j) in enumerate(edges):
            v = int(y[e])
            limit = 2 if i == 0 else 1  # 2 only for the depot edge of a single-customer route
            assert 0 <= v <= limit, f"edge {(i, j)} used {v} times"
            count[i, j] = count[j, i] = v
        degree = count.sum(1)
        assert np.all(degree[1:] == 2), f"customer degrees {degree[1:].tolist()}, expected all 2"
        assert degree[0] % 2 == 0, f"depot degree {degree[0]} is odd"
        remaining = count.copy()
        routes = []
        while remaining[0].sum() > 0:
            node, route = int(np.flatnonzero(remaining[0])[0]), []
            remaining[0, node] -= 1
            remaining[node, 0] -= 1
            while node != 0:
                route.append(node)
                assert len(route) <= n, "a route does not return to the depot"
                nxt = np.flatnonzero(remaining[node])
                assert len(nxt) >= 1, f"customer {node} is a dead end"
                step = int(nxt[0])
                remaining[node, step] -= 1
                remaining[step, node] -= 1
                node = step
            routes.append(route)
        assert remaining.sum() == 0, "some edges form a cycle away from the depot (a subtour)"
    else:
        assert y.shape == (n + 1, n + 1), f"decision shape {y.shape}, expected {(n + 1, n + 1)}"
        assert set(np.unique(y).tolist()) <= {0.0, 1.0}, f"arc values {np.unique(y)}"
        assert np.all(np.diag(y) == 0), "a self-loop"
        out_deg, in_deg = y.sum(1), y.sum(0)
        assert np.all(out_deg[1:] == 1) and np.all(in_deg[1:] == 1), (
            f"customer out/in degrees {out_deg[1:].tolist()} / {in_deg[1:].tolist()}, expected all 1"
        )
        assert out_deg[0] == in_deg[0], "depot in and out degrees differ"
        routes = []
        for start in np.flatnonzero(y[0]):
            node, route = int(start), []
            while node != 0:
                route.append(node)
                assert len(route) <= n, "a route does not return to the depot"
                node = int(np.flatnonzero(y[node])[0])
            routes.append(route)
    visited = sorted(c for route in routes for c in route)
    assert visited == list(range(1, n + 1)), f"customers visited {visited} (subtour or repeat), routes {routes}"
    for route in routes:
        load = sum(demands[c - 1] for c in route)
        assert load <= capacity, f"route {route} carries {load} > capacity {capacity}"
    if n_vehicles is not None:
        assert len(routes) <= n_vehicles, f"{len(routes)} routes > n_vehicles={n_vehicles}: {routes}"
    for route in routes:
        directions = (route, route[::-1]) if symmetric else (route,)
        assert any(on_time(r, timing) for r in directions), f"route {route} misses a time window"
    return routes


def dp_optimum(
    costs: np.ndarray,
    demands: Sequence[int],
    capacity: int,
    n_vehicles: int | None = None,
    *,
    symmetric: bool = True,
    sense: str = "min",
) -> float | None:
    """The optimal objective value by dynamic programming over customer subsets (the same
    problem as :func:`brute_force`, for up to ~12 customers): Held-Karp gives each subset's best
    route, then routes are added one at a time, each containing the lowest customer not yet
    served. None when infeasible."""
    demand_list, n, arc = _instance(costs, demands, symmetric)
    demands = np.asarray(demand_list, dtype=np.int64)
    sign = -1.0 if sense == "max" else 1.0
    arc = sign * arc
    full = 1 << n
    masks = np.arange(full)
    bits = (masks[:, None] >> np.arange(n)) & 1  # (2^n, n)
    load = bits @ demands
    feasible = load <= capacity
    # path[S, j]: cheapest path from the depot through exactly S, ending at customer j in S
    path = np.full((full, n), np.inf)
    for j in range(n):
        path[1 << j, j] = arc[0, j + 1]
    inner = arc[1:, 1:]
    for mask in range(1, full):
        if not feasible[mask] or mask & (mask - 1) == 0:
            continue
        members = np.flatnonzero(bits[mask])
        for j in members:
            prev = mask ^ (1 << j)
            path[mask, j] = np.min(path[prev, members] + inner[members, j])
    route = np.min(path + arc[1:, 0][None, :], axis=1)
    route[0] = np.inf
    route[~feasible] = np.inf
    # lowest[S]: the lowest customer (bit) of S
    lowest = np.full(full, -1)
    for j in reversed(range(n)):
        lowest[(masks >> j) & 1 == 1] = j
    routes = [int(s) for s in np.flatnonzero(np.isfinite(route))]
    level = np.full(full, np.inf)  # served sets with k routes, routes added by lowest customer
    level[0] = 0.0
    best = np.inf
    limit = n if n_vehicles is None else min(n, n_vehicles)
    # the lowest customer a set has not served (n when it serves everyone)
    unserved_low = np.array([lowest[(full - 1) ^ m] if m != full - 1 else n for m in range(full)])
    for _ in range(limit):
        nxt = np.full(full, np.inf)
        reach = np.isfinite(level)
        for s in routes:
            # sets disjoint from s whose lowest unserved customer is s's lowest
            ok = reach & ((masks & s) == 0) & (unserved_low == lowest[s])
            if ok.any():
                src = masks[ok]
                np.minimum.at(nxt, src | s, level[ok] + route[s])
        level = nxt
        best = min(best, level[full - 1])
    if not np.isfinite(best):
        return None
    return float(sign * best)
