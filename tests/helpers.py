"""Shared test models: small CP-SAT models with brute-force optima, and a spec whose instances
fail on demand (per-instance error reporting everywhere)."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

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
