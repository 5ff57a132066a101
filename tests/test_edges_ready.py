"""Every ready layer at the numeric edges (issue 22, points 1 and 2): cost ranges up to 1e12 in
float64, one entry up to 1e30 in float32 and bfloat16 (6e4 in float16). The forward decision
(projection "auto", "norm", "std") attains the objective of ``layer.solve()`` on the same raw
cost and that of brute force over every feasible decision where the status is "optimal";
otherwise the status is "feasible", a warning says so, and ``last_info.scaling_error`` bounds the
gap. Both up to the float64 rounding of the objectives (the solvers compare float64 sums)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

import idproj_or as ipo
from tests.helpers import monotone_paths

EPS = float(np.finfo(np.float64).eps)


def knapsack_points(w: np.ndarray, cap: np.ndarray) -> np.ndarray:
    subsets = np.array(list(itertools.product((0.0, 1.0), repeat=w.shape[1])))
    return subsets[(subsets @ w.T <= cap).all(axis=1)]


def assignments(n: int, m: int) -> np.ndarray:
    points = []
    if n <= m:
        for cols in itertools.permutations(range(m), n):
            y = np.zeros((n, m))
            y[np.arange(n), cols] = 1.0
            points.append(y.reshape(-1))
    else:
        return assignments(m, n).reshape(-1, m, n).transpose(0, 2, 1).reshape(-1, n * m)
    return np.array(points)


def tours(n: int) -> np.ndarray:
    points = []
    for perm in itertools.permutations(range(1, n)):
        order = (0, *perm)
        y = np.zeros((n, n))
        y[order, np.roll(order, -1)] = 1.0
        points.append(y.reshape(-1))
    return np.array(points)


def edge_tours(n: int) -> np.ndarray:
    iu, ju = np.triu_indices(n, 1)
    return np.unique((tours(n).reshape(-1, n, n) + tours(n).reshape(-1, n, n).transpose(0, 2, 1))[:, iu, ju], axis=0)


def subsets(n: int, k: int) -> np.ndarray:
    points = []
    for chosen in itertools.combinations(range(n), k):
        y = np.zeros(n)
        y[list(chosen)] = 1.0
        points.append(y)
    return np.array(points)


def rankings(n: int) -> np.ndarray:
    return np.array([np.array(p, dtype=float) + 1.0 for p in itertools.permutations(range(n))])


@dataclass(frozen=True)
class Ready:
    name: str
    make: Callable[[str], Any]  # projection -> layer
    points: np.ndarray  # every feasible decision, flattened
    shape: tuple[int, ...]
    sense: str
    heuristic: bool = False  # routing: no optimality claim to check


_W = np.array([[3, 1, 4, 1, 5, 2, 6, 2], [2, 7, 1, 8, 2, 8, 1, 3]])
_CAP = np.array([11, 14])
READY = [
    Ready("knapsack", lambda p: ipo.KnapsackLayer(_W, _CAP, projection=p), knapsack_points(_W, _CAP), (8,), "max"),
    Ready(
        "knapsack-min",
        lambda p: ipo.KnapsackLayer(_W, _CAP, "min", projection=p),
        knapsack_points(_W, _CAP),
        (8,),
        "min",
    ),
    Ready(
        "shortest_path", lambda p: ipo.ShortestPathLayer.grid(3, 4, projection=p), monotone_paths(3, 4), (17,), "min"
    ),
    Ready(  # 924 paths: solved by the recursion, not by listing the paths
        "shortest_path-dp",
        lambda p: ipo.ShortestPathLayer.grid(7, 7, sense="max", projection=p),
        monotone_paths(7, 7),
        (84,),
        "max",
    ),
    Ready("assignment", lambda p: ipo.AssignmentLayer(4, projection=p), assignments(4, 4), (4, 4), "min"),
    Ready(
        "assignment-wide", lambda p: ipo.AssignmentLayer(3, 5, "max", projection=p), assignments(3, 5), (3, 5), "max"
    ),
    Ready("assignment-tall", lambda p: ipo.AssignmentLayer(5, 3, projection=p), assignments(5, 3), (5, 3), "min"),
    Ready("tsp-cpsat", lambda p: ipo.TSPLayer(5, projection=p), tours(5), (5, 5), "min"),
    Ready(
        "tsp-routing",
        lambda p: ipo.TSPLayer(5, "routing", metaheuristic="GREEDY_DESCENT", projection=p),
        tours(5),
        (5, 5),
        "min",
        heuristic=True,
    ),
    Ready("tsp-held_karp", lambda p: ipo.TSPLayer(6, symmetric=True, projection=p), edge_tours(6), (15,), "min"),
    Ready("topk", lambda p: ipo.TopKLayer(6, 2, projection=p), subsets(6, 2), (6,), "max"),
    Ready("topk-min", lambda p: ipo.TopKLayer(6, 3, sense="min", projection=p), subsets(6, 3), (6,), "min"),
    Ready("ranking", lambda p: ipo.RankingLayer(5, projection=p), rankings(5), (5,), "min"),
]


def edge_costs(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """4 instances: U(0, 5) costs spread over 12 decades (float64), or with one entry of either
    sign at the largest magnitude the dtype holds well (1e12, 1e30, 6e4 for float16)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0, 5, size=(4, *shape)).reshape(4, -1)
    if kind == "float64-range":
        return torch.as_tensor((c * 10.0 ** rng.uniform(0, 12, size=c.shape)).reshape(4, *shape))
    dtype, big = {
        "float64-1e12": (torch.float64, 1e12),
        "float32-1e30": (torch.float32, 1e30),
        "bfloat16-1e30": (torch.bfloat16, 1e30),
        "float16-6e4": (torch.float16, 6e4),
    }[kind]
    c[np.arange(4), rng.integers(0, c.shape[1], size=4)] = big * np.array([1.0, -1.0, 1.0, -1.0])
    return torch.as_tensor(c.reshape(4, *shape)).to(dtype)


KINDS = ["float64-range", "float64-1e12", "float32-1e30", "bfloat16-1e30", "float16-6e4"]


@pytest.mark.filterwarnings("ignore::idproj_or.SolverWarning")  # layer.solve()'s, as expected
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ready", READY, ids=[r.name for r in READY])
def test_forward_at_the_edges_is_optimal_or_says_how_far_from_it(ready, kind):
    costs = edge_costs(kind, ready.shape, seed=len(ready.name) + KINDS.index(kind))
    flat = costs.double().reshape(4, -1).numpy()  # what the solver sees
    values = flat @ ready.points.T  # every feasible decision's objective
    best = values.max(axis=1) if ready.sense == "max" else values.min(axis=1)
    reference = ready.make("none").solve(costs)
    for projection in ("auto", "norm", "std"):
        layer = ready.make(projection)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = layer(costs)
        assert y.dtype == costs.dtype and y.shape == costs.shape
        assert torch.equal(y, reference), "the forward decision differs from layer.solve()'s"
        info = layer.last_info
        decisions = y.double().reshape(4, -1).numpy()
        for i, (c, yi) in enumerate(zip(flat, decisions)):
            assert any(np.array_equal(yi, p) for p in ready.points), "not a feasible decision"
            gap = abs(float(c @ yi) - best[i])
            rounding = len(c) * EPS * (float(np.abs(c) @ yi) + float(np.abs(c) @ ready.points[0]) + abs(best[i]))
            if info.status[i] == "optimal":
                assert gap <= rounding, (projection, i, gap)
            else:
                assert info.status[i] == "feasible"
                assert any(issubclass(w.category, ipo.SolverWarning) for w in caught)
                if not ready.heuristic:
                    assert gap <= info.scaling_error[i] + rounding, (projection, i, gap)


def test_the_issues_top_k_case():
    layer = ipo.TopKLayer(4, 2, sense="min")
    assert layer(torch.tensor([[1e20, 3.0, 4.0, 5.0]])).tolist() == [[0.0, 1.0, 1.0, 0.0]]
    assert layer.last_info.status == ("optimal",)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_issues_assignment_case_avoids_the_huge_diagonal_and_is_optimal(dtype):
    # Rounded at the 1e20's scale the other costs all round to 0; lowering the entries no
    # optimal assignment can use lets them be resolved again.
    costs = torch.rand(8, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    costs[:, range(3), range(3)] = 1e20
    costs = costs.to(dtype)
    layer = ipo.AssignmentLayer(3)
    y = layer(costs).double().numpy()
    c = costs.double().numpy()
    points = assignments(3, 3)
    assert np.all(y[:, range(3), range(3)] == 0)
    assert layer.last_info.status == ("optimal",) * 8
    for ci, yi in zip(c, y):
        assert np.array_equal(yi.reshape(-1), points[np.argmin(points @ ci.reshape(-1))])


def test_the_issues_knapsack_case_one_value_of_1e9_is_exact():
    # With the largest value at 2^30 steps, values U(0, 5) next to 1e9 kept about 3 bits.
    rng = np.random.default_rng(0)
    w = rng.integers(1, 10, size=(1, 10))
    cap = np.array([w.sum() // 2])
    points = knapsack_points(w, cap)
    costs = rng.uniform(0, 5, size=(40, 10))
    costs[np.arange(40), rng.integers(0, 10, size=40)] = 1e9
    layer = ipo.KnapsackLayer(w, cap)
    y = layer(torch.as_tensor(costs)).numpy()
    assert layer.last_info.status == ("optimal",) * 40
    assert np.array_equal(y, points[np.argmax(costs @ points.T, axis=1)])
