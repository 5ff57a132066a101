"""Shared test models: small CP-SAT models with brute-force optima, and a spec whose instances
fail on demand (per-instance error reporting everywhere)."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from idproj_or.problems import grid_arcs
from idproj_or.solvers.base import DataField, ModelSpec, ResidentSolver
from idproj_or.statuses import Outcome


def knapsack(weights: np.ndarray, capacities: np.ndarray):
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(weights.shape[1])]
    for wd, cap in zip(weights, capacities):
        m.add(sum(int(a) * v for a, v in zip(wd, x)) <= int(cap))
    feasible = [
        np.array(y, float)
        for y in itertools.product((0, 1), repeat=weights.shape[1])
        if np.all(weights @ np.array(y) <= capacities)
    ]
    return m, x, feasible


def k_subset(n: int, k: int):
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(n)]
    m.add(sum(x) == k)
    feasible = [np.array(y, float) for y in itertools.product((0, 1), repeat=n) if sum(y) == k]
    return m, x, feasible


def assignment(n: int):
    m = cp_model.CpModel()
    x = [[m.new_bool_var(f"x{i}_{j}") for j in range(n)] for i in range(n)]
    for i in range(n):
        m.add_exactly_one(x[i])
        m.add_exactly_one([x[j][i] for j in range(n)])
    feasible = [np.eye(n)[list(p)] for p in itertools.permutations(range(n))]
    return m, x, feasible


def best(feasible: list[np.ndarray], cost: np.ndarray, sense: str) -> float:
    values = [float((cost * y).sum()) for y in feasible]
    return max(values) if sense == "max" else min(values)


def knapsack_32(seed: int = 0):
    """A 32-item, 2-dimensional knapsack with capacity half the total weight (PyEPO's setting)."""
    rng = np.random.default_rng(seed)
    weights = rng.integers(3, 8, size=(2, 32))
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(32)]
    for wd in weights:
        m.add(sum(int(a) * v for a, v in zip(wd, x)) <= int(wd.sum() // 2))
    return m, x


@dataclass(frozen=True)
class SignSpec(ModelSpec):
    """y = 1[cost < 0] (a trivially exact solver); an instance with cost[0] > 100 "fails"; a cost[0]
    of -999 makes the worker process exit, as a crash would. ``delay`` is seconds per solve,
    ``build_delay`` seconds to build the solver (a large model)."""

    shape: tuple[int, ...] = (3,)
    sense: str = "min"
    delay: float = 0.0
    build_delay: float = 0.0

    def build(self) -> ResidentSolver:
        time.sleep(self.build_delay)
        return SignSolver(self.delay)

    def equalities(self):
        return np.zeros((0, 3)), np.zeros(0)


class SignSolver(ResidentSolver):
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def solve(self, cost, time_limit):
        if self.delay:
            time.sleep(self.delay)
        if cost[0] == -999:
            os._exit(3)
        if cost[0] > 100:
            return Outcome(None, "error", "BROKEN")
        return Outcome((cost < 0).astype(np.float64), "optimal", "OPTIMAL")


def monotone_paths(h: int, w: int) -> np.ndarray:
    """0/1 arc vectors of every right/down path from the top-left to the bottom-right node."""
    index = {arc: e for e, arc in enumerate(grid_arcs(h, w))}
    paths = []
    for downs in itertools.combinations(range(h + w - 2), h - 1):
        y, node = np.zeros(len(index)), 0
        for step in range(h + w - 2):
            nxt = node + w if step in downs else node + 1
            y[index[(node, nxt)]] = 1.0
            node = nxt
        paths.append(y)
    return np.array(paths)


def weighted_choice():
    """CVXPY: max c @ x over 4 Booleans with a @ x == k, the row ``a`` and ``k`` parameters."""
    import cvxpy as cp

    c = cp.Parameter(4)
    x = cp.Variable(4, boolean=True)
    a = cp.Parameter(4, value=np.ones(4))
    k = cp.Parameter(value=2.0)
    return cp.Problem(cp.Maximize(c @ x), [a @ x == k]), c, x, a, k


@dataclass(frozen=True)
class ChooseSpec(ModelSpec):
    """min sum(c * y) over y in {0, 1}^n with sum(y) == k, item i bounded to [lo_i, hi_i]:
    the per-instance data ``k`` (integral) and ``bounds`` (pairs, or an upper bound alone).
    Infeasible when more than k items are forced in or fewer than k are allowed. Counts the
    instances whose data it applied, to show that an unchanged instance rewrites nothing."""

    shape: tuple[int, ...] = (4,)
    sense: str = "min"
    k: int = 2
    fields: tuple[DataField, ...] = (
        DataField("k", (), "the number of items chosen", integral=True, low=0, high=4),
        DataField("bounds", (4,), "the items' bounds", pairs=True, low=0, high=1),
    )

    def build(self) -> ResidentSolver:
        return ChooseSolver(self)

    def equalities(self):
        return np.ones((1, 4)), np.array([float(self.k)])


class ChooseSolver(ResidentSolver):
    def __init__(self, spec: ChooseSpec) -> None:
        self.spec = spec

    def solve(self, cost, time_limit, data=None):
        data = data or {}
        k = int(data.get("k", self.spec.k))
        bounds = np.asarray(data.get("bounds", np.ones(4)), dtype=float)
        lo, hi = (bounds[:, 0], bounds[:, 1]) if bounds.ndim == 2 else (np.zeros(4), bounds)
        forced, allowed = lo > 0.5, hi > 0.5
        if forced.sum() > k or allowed.sum() < k:
            return Outcome(None, "infeasible", "INFEASIBLE")
        order = [i for i in np.argsort(cost, kind="stable") if allowed[i] and not forced[i]]
        y = forced.astype(float)
        y[order[: k - int(forced.sum())]] = 1.0
        return Outcome(y, "optimal", "OPTIMAL", bound=float(cost @ y))


def choose_brute(cost: np.ndarray, k: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """The optimum of :class:`ChooseSpec`'s model by enumeration (None when infeasible)."""
    best_y, best_v = None, np.inf
    for y in itertools.product((0.0, 1.0), repeat=len(cost)):
        y = np.array(y)
        if y.sum() == k and np.all(y >= lo) and np.all(y <= hi) and cost @ y < best_v - 1e-12:
            best_y, best_v = y, cost @ y
    return best_y
