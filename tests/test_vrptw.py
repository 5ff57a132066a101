"""VRPLayer with time windows (VRPTW): the exact method against the independent brute force
(tests/vrp_reference.py, which simulates each route's times) on random instances whose windows
bind, symmetric and asymmetric, min and max; instances that the windows make infeasible; the
heuristics feasible by the independent checker; per-instance windows, service and travel times
equal to layers built with them; serial and pool parity; times scaled by 2^20 change nothing;
constructor and data errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import idproj_or as ipo
from tests.test_vrp import HEURISTIC_OPTIONS, HEURISTICS, cost_shape, quiet_heuristics, random_costs
from tests.vrp_reference import brute_force, check_solution, objective


def random_timing(rng: np.random.Generator, n: int, *, tight: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows, service and travel times (depot first): rounded Euclidean travel times on a
    30 x 30 square, services of 0-3, windows of width 3-12 (``tight``) or 10-40, the depot's
    [0, 80]; a window a lone route cannot meet is widened until it can."""
    p = rng.uniform(0, 30, size=(n + 1, 2))
    travel = np.rint(np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))).astype(np.int64)
    service = rng.integers(0, 4, size=n + 1)
    service[0] = int(rng.integers(0, 2))
    early = rng.integers(0, 50, size=n + 1)
    width = rng.integers(3, 13, size=n + 1) if tight else rng.integers(10, 41, size=n + 1)
    windows = np.stack([early, early + width], axis=1)
    windows[0] = [0, 80]
    start = windows[0, 0] + service[0] + travel[0, 1:]
    windows[1:, 1] = np.maximum(windows[1:, 1], start)
    back = np.maximum(start, windows[1:, 0]) + service[1:] + travel[1:, 0]
    windows[1:, 0] -= np.maximum(back - windows[0, 1], 0)  # start earlier so that it can return
    windows[1:, 0] = np.maximum(windows[1:, 0], 0)
    return windows, service, travel


def timed_layer(n, capacity, demands, timing, **kwargs):
    windows, service, travel = timing
    return ipo.VRPLayer(
        n, capacity, demands, time_windows=windows, service_times=service, travel_times=travel, **kwargs
    )


def value(costs: np.ndarray, y: np.ndarray, symmetric: bool) -> float:
    return objective(costs, y.reshape(np.shape(costs)), symmetric)


# --- exact against brute force ---------------------------------------------------------------------


def cases(count: int, seed: int):
    """Random VRPTW instances of 3-6 customers: (costs, demands, capacity, n_vehicles, timing,
    symmetric, sense)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        n = int(rng.integers(3, 7))
        symmetric = bool(k % 2)
        sense = "max" if k % 5 == 4 else "min"
        kind = ("uniform", "ties", "euclidean", "negative")[k % 4]
        demands = rng.integers(1, 4, size=n)
        capacity = int(rng.integers(max(demands.max(), 4), 9))
        vehicles = None if k % 3 else int(rng.integers(2, n + 1))
        if vehicles is not None and demands.sum() > vehicles * capacity:
            vehicles = None
        timing = random_timing(rng, n, tight=k % 4 != 3)
        out.append((random_costs(rng, n, symmetric, kind), demands, capacity, vehicles, timing, symmetric, sense))
    return out


EXACT_CASES = cases(60, seed=41)


def test_the_cases_bind_the_windows():
    """Guards the test below: in many cases the windows move the optimum, and some make the
    instance infeasible where the capacities alone would not."""
    moved = infeasible = 0
    for costs, demands, capacity, vehicles, timing, symmetric, sense in EXACT_CASES:
        timed, _ = brute_force(costs, demands, capacity, vehicles, symmetric=symmetric, sense=sense, timing=timing)
        free, _ = brute_force(costs, demands, capacity, vehicles, symmetric=symmetric, sense=sense)
        assert free is not None
        if timed is None:
            infeasible += 1
        elif abs(timed - free) > 1e-9:
            moved += 1
    assert moved >= 25 and infeasible >= 2, (moved, infeasible)


@pytest.mark.parametrize("case", range(len(EXACT_CASES)))
def test_exact_equals_brute_force(case):
    costs, demands, capacity, vehicles, timing, symmetric, sense = EXACT_CASES[case]
    n = len(demands)
    expected, _ = brute_force(costs, demands, capacity, vehicles, symmetric=symmetric, sense=sense, timing=timing)
    layer = timed_layer(
        n, capacity, demands, timing, n_vehicles=vehicles, symmetric=symmetric, sense=sense, on_failure="nan"
    )
    if expected is None:
        with pytest.warns(ipo.SolverWarning, match="have no decision"):
            y = layer(torch.as_tensor(costs)).numpy()
        assert np.all(np.isnan(y))
        assert list(layer.last_info.status) == ["infeasible"]
        return
    y = layer(torch.as_tensor(costs)).numpy()
    assert list(layer.last_info.status) == ["optimal"]
    check_solution(y.reshape(cost_shape(n, symmetric)), demands, capacity, vehicles, symmetric=symmetric, timing=timing)
    assert value(costs, y, symmetric) == pytest.approx(expected, abs=1e-9)


@quiet_heuristics
@pytest.mark.parametrize("method", HEURISTICS)
def test_heuristics_meet_the_windows(method):
    """Every routing a heuristic returns meets capacities and windows (checked independently);
    on these small instances they find the optimum almost always."""
    gaps = []
    for costs, demands, capacity, vehicles, timing, symmetric, sense in EXACT_CASES[:30]:
        n = len(demands)
        expected, _ = brute_force(costs, demands, capacity, vehicles, symmetric=symmetric, sense=sense, timing=timing)
        if expected is None:
            continue
        layer = timed_layer(
            n,
            capacity,
            demands,
            timing,
            n_vehicles=vehicles,
            symmetric=symmetric,
            sense=sense,
            method=method,
            on_failure="nan",
            **HEURISTIC_OPTIONS[method],
        )
        y = layer(torch.as_tensor(costs)).numpy().reshape(cost_shape(n, symmetric))
        assert layer.last_info.status[0] in ("feasible", "optimal")
        check_solution(y, demands, capacity, vehicles, symmetric=symmetric, timing=timing)
        got = value(costs, y, symmetric)
        gaps.append((expected - got) if sense == "max" else (got - expected))
    assert len(gaps) >= 25
    assert min(gaps) > -1e-9  # never better than the optimum
    assert sum(g < 1e-9 for g in gaps) >= 0.8 * len(gaps), gaps


# --- per-instance data ------------------------------------------------------------------------------


@quiet_heuristics
@pytest.mark.parametrize("method", [None, *HEURISTICS])
def test_per_instance_times_equal_layers_built_with_them(method):
    rng = np.random.default_rng(5)
    n, b = 5, 4
    demands = rng.integers(1, 3, size=n)
    timings = [random_timing(rng, n, tight=True) for _ in range(b)]
    costs = torch.as_tensor(rng.uniform(0, 10, size=(b, *cost_shape(n, True))))
    options = HEURISTIC_OPTIONS.get(method, {})
    own = random_timing(rng, n, tight=False)
    layer = timed_layer(n, 6, demands, own, method=method, **options)
    data = {
        name: torch.as_tensor(np.stack([t[k] for t in timings]))
        for k, name in enumerate(("time_windows", "service_times", "travel_times"))
    }
    got = layer(costs, **data)
    for i, timing in enumerate(timings):
        alone = timed_layer(n, 6, demands, timing, method=method, **options)
        assert torch.equal(got[i], alone(costs[i])), i
        check_solution(got[i].numpy(), demands, 6, timing=timing)
    # one field alone: the others stay the constructor's
    wide = np.stack([np.tile([[0, 60 + 20 * i]], (n + 1, 1)) for i in range(b)])
    windows_only = layer(costs, time_windows=torch.as_tensor(wide))
    for i in range(b):
        alone = timed_layer(n, 6, demands, (wide[i], own[1], own[2]), method=method, **options)
        assert torch.equal(windows_only[i], alone(costs[i])), i


UNREACHABLE = [
    # (windows of customer 1, depot window): infeasible from the data alone
    pytest.param([5, 3], [0, 100], "EMPTY_TIME_WINDOW", id="empty-window"),
    pytest.param([0, 1], [0, 100], "TIME_WINDOW_UNREACHABLE", id="closes-before-arrival"),
    pytest.param([95, 99], [0, 100], "TIME_WINDOW_UNREACHABLE", id="too-late-to-return"),
]


@quiet_heuristics
@pytest.mark.parametrize("method", [None, *HEURISTICS])
@pytest.mark.parametrize("window, depot, word", UNREACHABLE)
def test_windows_no_route_can_meet_are_infeasible(method, window, depot, word):
    n = 3
    travel = np.full((n + 1, n + 1), 10)
    np.fill_diagonal(travel, 0)
    good = np.array([depot, [0, 100], [0, 100], [0, 100]])
    bad = good.copy()
    bad[1] = window
    layer = ipo.VRPLayer(
        n,
        5,
        [1, 1, 1],
        method=method,
        time_windows=good,
        travel_times=travel,
        on_failure="nan",
        **HEURISTIC_OPTIONS.get(method, {}),
    )
    costs = torch.ones(3, 6)
    with pytest.warns(ipo.SolverWarning, match="have no decision"):
        y = layer(costs, time_windows=torch.as_tensor(np.stack([good, bad, good]))).numpy()
    assert np.all(np.isnan(y[1])) and not np.isnan(y[[0, 2]]).any()
    assert layer.last_info.status[1] == "infeasible"
    assert layer.last_info.solver_status[1] == word
    match = "is empty" if word == "EMPTY_TIME_WINDOW" else "customer 1 cannot be served in its window"
    with pytest.raises(ValueError, match=match):
        ipo.VRPLayer(n, 5, [1, 1, 1], method=method, time_windows=bad, travel_times=travel)


def test_windows_that_need_more_vehicles_are_proven_infeasible():
    """Two customers whose windows both close at time 10, 10 from the depot and 10 apart: one
    vehicle cannot serve both; the exact solver proves it, two vehicles serve them."""
    travel = np.array([[0, 10, 10], [10, 0, 10], [10, 10, 0]])
    windows = [[0, 100], [0, 10], [0, 10]]
    costs = torch.tensor([1.0, 1.0, 1.0])
    one = ipo.VRPLayer(2, 5, [1, 1], n_vehicles=1, time_windows=windows, travel_times=travel, on_failure="nan")
    with pytest.warns(ipo.SolverWarning, match="have no decision"):
        assert torch.isnan(one(costs)).all()
    assert list(one.last_info.status) == ["infeasible"]
    two = ipo.VRPLayer(2, 5, [1, 1], n_vehicles=2, time_windows=windows, travel_times=travel)
    assert two(costs).tolist() == [2.0, 2.0, 0.0]


# --- scaling, parity, errors ------------------------------------------------------------------------


@quiet_heuristics
@pytest.mark.parametrize("method", [None, *HEURISTICS])
def test_times_scaled_by_a_power_of_two_change_nothing(method):
    """All times x 2^20 (near the data's 2^40 cap with the windows): the same routing problem."""
    rng = np.random.default_rng(8)
    n = 6
    options = HEURISTIC_OPTIONS.get(method, {})
    for _ in range(3):
        windows, service, travel = random_timing(rng, n, tight=True)
        costs = torch.as_tensor(rng.uniform(0, 10, size=cost_shape(n, True)))
        small = timed_layer(n, 10, [1] * n, (windows, service, travel), method=method, **options)(costs)
        big = timed_layer(n, 10, [1] * n, (windows * 2**20, service * 2**20, travel * 2**20), method=method, **options)(
            costs
        )
        assert torch.equal(small, big)


@quiet_heuristics
@pytest.mark.parametrize("method", [None, *HEURISTICS])
def test_serial_and_pool_give_identical_results(method, force_pool):
    rng = np.random.default_rng(9)
    n, b = 6, 4
    timings = [random_timing(rng, n, tight=True) for _ in range(b)]
    data = {
        name: torch.as_tensor(np.stack([t[k] for t in timings]))
        for k, name in enumerate(("time_windows", "service_times", "travel_times"))
    }
    costs = torch.as_tensor(rng.uniform(0, 10, size=(b, *cost_shape(n, True))))
    options = HEURISTIC_OPTIONS.get(method, {})
    serial = timed_layer(n, 10, [1] * n, timings[0], method=method, on_failure="nan", **options)
    expected = serial(costs, **data)
    pooled = force_pool(timed_layer(n, 10, [1] * n, timings[0], method=method, on_failure="nan", workers=2, **options))
    got = pooled(costs, **data)
    assert pooled.last_info.mode == "pool"
    assert torch.equal(got, expected)
    assert pooled.last_info.status == serial.last_info.status


BAD = [
    pytest.param({"service_times": [0] * 4}, "apply only with time_windows", id="service-without-windows"),
    pytest.param({"travel_times": np.zeros((4, 4))}, "apply only with time_windows", id="travel-without-windows"),
    pytest.param({"time_windows": [[0, 9]] * 4}, "need travel_times", id="windows-without-travel"),
    pytest.param(
        {"time_windows": [[0, 9]] * 3, "travel_times": np.zeros((4, 4))}, r"expected \(4, 2\)", id="windows-shape"
    ),
    pytest.param(
        {"time_windows": [[0, 9]] * 4, "travel_times": np.zeros((3, 3))}, r"expected \(4, 4\)", id="travel-shape"
    ),
    pytest.param(
        {"time_windows": [[0, 9]] * 4, "travel_times": np.zeros((4, 4)), "service_times": [0] * 3},
        r"expected \(4,\)",
        id="service-shape",
    ),
    pytest.param(
        {"time_windows": [[0, 9.5]] * 4, "travel_times": np.zeros((4, 4))}, "must be integers", id="fractional"
    ),
    pytest.param({"time_windows": [[0, 9]] * 4, "travel_times": -np.ones((4, 4))}, "must be integers", id="negative"),
]


@pytest.mark.parametrize("kwargs, match", BAD)
def test_bad_times_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ipo.VRPLayer(3, 5, [1, 1, 1], **kwargs)


def test_times_as_data_need_a_layer_built_with_windows():
    layer = ipo.VRPLayer(3, 5, [1, 1, 1])
    with pytest.raises(ValueError, match="unknown data 'time_windows'"):
        layer(torch.ones(6), time_windows=torch.zeros(4, 2))
    timed = ipo.VRPLayer(3, 5, [1, 1, 1], time_windows=[[0, 50]] * 4, travel_times=np.ones((4, 4)))
    with pytest.raises(ValueError, match="time_windows"):
        timed(torch.ones(6), time_windows=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="travel_times"):
        timed(torch.ones(6), travel_times=torch.full((4, 4), 0.5))
