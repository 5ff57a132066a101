"""Small random CP-SAT models and brute-force optima shared by the core tests."""

from __future__ import annotations

import itertools

import numpy as np
from ortools.sat.python import cp_model


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
