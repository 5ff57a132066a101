"""The VRPLayer heuristics on 200 random instances of 10-15 customers, half of them with time
windows: every routing they return meets capacities and windows (tests/vrp_reference.py's checker,
independent of the solvers), and their gaps to the exact optimum (CP-SAT, itself checked against
brute force in test_vrp.py and test_vrptw.py) stay within what docs/adapters/routing.md states.
Instances of one size and kind go as one batch with per-instance data, solved in a pool of 2."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import idproj_or as ipo
from tests.test_vrp import quiet_heuristics
from tests.test_vrptw import random_timing
from tests.vrp_reference import check_solution

INSTANCES = 200
CAPACITY = 30
BUDGETS = {"routing": 100, "pyvrp": 200}  # iterations
TIMES = ("time_windows", "service_times", "travel_times")


@functools.cache
def batches() -> list[tuple[int, bool, np.ndarray, dict[str, np.ndarray]]]:
    """(n, timed, costs (B, edges), data) per size and kind: Euclidean edge lengths on a 100 x 100
    square, demands 1-9, capacity 30; timed instances add random_timing's windows."""
    rng = np.random.default_rng(2026)
    groups: dict[tuple[int, bool], list[tuple[np.ndarray, dict[str, np.ndarray]]]] = {}
    for k in range(INSTANCES):
        n, timed = int(rng.integers(10, 16)), k % 2 == 1
        p = rng.uniform(0, 100, size=(n + 1, 2))
        iu, ju = np.triu_indices(n + 1, 1)
        costs = np.sqrt(((p[iu] - p[ju]) ** 2).sum(1))
        data = {"demands": rng.integers(1, 10, size=n)}
        if timed:
            data |= dict(zip(TIMES, random_timing(rng, n, tight=False), strict=True))
        groups.setdefault((n, timed), []).append((costs, data))
    return [
        (n, timed, np.stack([c for c, _ in rows]), {k: np.stack([d[k] for _, d in rows]) for k in rows[0][1]})
        for (n, timed), rows in sorted(groups.items())
    ]


def solve(n: int, timed: bool, costs: np.ndarray, data: dict[str, np.ndarray], method: str | None) -> np.ndarray:
    first = {k: v[0] for k, v in data.items() if k in TIMES}
    layer = ipo.VRPLayer(
        n,
        CAPACITY,
        data["demands"][0],
        method=method,
        iterations=BUDGETS.get(method),  # type: ignore[arg-type]
        workers=2,
        route="pool",
        **first,
    )
    y = layer(torch.as_tensor(costs), **{k: torch.as_tensor(v) for k, v in data.items()}).numpy()
    expected = "optimal" if method is None else "feasible"
    assert set(layer.last_info.status) <= {expected, "optimal"}, layer.last_info.status
    return y


@functools.cache
def optima() -> list[np.ndarray]:
    return [(costs * solve(n, timed, costs, data, None)).sum(1) for n, timed, costs, data in batches()]


def test_the_instances():
    """Guards the test below: 200 instances, sizes 10-15, half with windows, which bind."""
    sizes = {n for n, _, _, _ in batches()}
    count = {timed: sum(len(c) for _, t, c, _ in batches() if t == timed) for timed in (False, True)}
    assert sizes == set(range(10, 16)) and count == {False: 100, True: 100}


@quiet_heuristics
@pytest.mark.parametrize("method, mean_gap, max_gap", [("pyvrp", 0.01, 0.05), ("routing", 0.03, 0.15)])
def test_heuristics_are_feasible_and_close_to_the_optimum(method, mean_gap, max_gap):
    gaps = []
    for (n, timed, costs, data), optimum in zip(batches(), optima(), strict=True):
        y = solve(n, timed, costs, data, method)
        for i in range(len(y)):
            timing = tuple(data[k][i] for k in TIMES) if timed else None
            check_solution(y[i], data["demands"][i], CAPACITY, timing=timing)  # type: ignore[arg-type]
        gaps.extend(((costs * y).sum(1) / optimum - 1).tolist())
    gaps_arr = np.array(gaps)
    assert len(gaps_arr) == INSTANCES
    assert gaps_arr.min() > -1e-9, "a heuristic beat the proven optimum"
    assert gaps_arr.mean() <= mean_gap and gaps_arr.max() <= max_gap, (gaps_arr.mean(), gaps_arr.max())
