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
from idproj_or.solvers.base import ModelSpec, ResidentSolver
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
