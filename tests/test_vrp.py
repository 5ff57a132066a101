"""VRPLayer (capacitated vehicle routing): the exact method against an independent brute force
(tests/vrp_reference.py) on random small instances, symmetric and asymmetric, min and max, with
ties, single-customer routes and binding vehicle counts; per-instance demands and capacity;
infeasible instances; the heuristics ("routing", "pyvrp") feasible, close to the optimum and
deterministic; serial and pool parity; the identity gradient; constructor errors; extreme costs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import idproj_or as ipo
from tests.vrp_reference import brute_force, check_solution, dp_optimum, edge_list, objective, routes_to_decision

HEURISTICS = ("routing", "pyvrp")
# The heuristics stop at their iteration budget (deterministic for a seed, per the docstring),
# which these sizes reach in a few tens of milliseconds; the time limit only caps a runaway.
HEURISTIC_OPTIONS: dict[str, dict] = {
    "routing": {"iterations": 100, "time_limit": 0.5},
    "pyvrp": {"iterations": 200, "time_limit": 0.5},
}


# A heuristic's decision is "feasible", and a layer says once that it is not proven optimal.
quiet_heuristics = pytest.mark.filterwarnings("ignore:.*not proven optimal:idproj_or.errors.SolverWarning")


def n_edges(n: int) -> int:
    return (n + 1) * n // 2


def cost_shape(n: int, symmetric: bool) -> tuple[int, ...]:
    return (n_edges(n),) if symmetric else (n + 1, n + 1)


def tolerance(costs: np.ndarray) -> float:
    """What float64 rounding of an objective may differ by (integer costs: exact)."""
    c = np.asarray(costs, dtype=float)
    return 0.0 if np.array_equal(c, np.round(c)) and np.abs(c).sum() < 2**50 else 1e-9 * (1.0 + np.abs(c).sum())


def random_costs(rng: np.random.Generator, n: int, symmetric: bool, kind: str) -> np.ndarray:
    """Costs of shape ``cost_shape(n, symmetric)``: ``"uniform"`` floats, ``"ties"`` integers
    in {1, 2, 3} (many optimal solutions), ``"euclidean"`` distances (asymmetric: plus noise),
    ``"negative"`` floats in [-5, 5]."""
    shape = cost_shape(n, symmetric)
    if kind == "uniform":
        return rng.uniform(0, 10, size=shape)
    if kind == "ties":
        return rng.integers(1, 4, size=shape).astype(float)
    if kind == "negative":
        return rng.uniform(-5, 5, size=shape)
    assert kind == "euclidean"
    p = rng.uniform(0, 100, size=(n + 1, 2))
    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    if symmetric:
        return np.array([d[i, j] for i, j in edge_list(n)])
    return d + rng.uniform(0, 10, size=d.shape)


def depot_mask(n: int, symmetric: bool) -> np.ndarray:
    """True on the costs of the depot's edges (symmetric) or arcs (asymmetric)."""
    if symmetric:
        return np.array([i == 0 for i, _ in edge_list(n)])
    m = np.zeros((n + 1, n + 1), dtype=bool)
    m[0, :] = m[:, 0] = True
    return m


def min_vehicles(demands: np.ndarray, capacity: int) -> int:
    """The fewest routes that serve ``demands`` within ``capacity`` (bin packing, by brute force)."""
    n = len(demands)
    zero = np.zeros(n_edges(n))
    for k in range(1, n + 1):
        if brute_force(zero, demands, capacity, k)[0] is not None:
            return k
    raise AssertionError("some demand exceeds the capacity")


# kind of costs, kind of demands, sense
EXACT_KINDS = [
    ("uniform", "loose", "min"),
    ("ties", "moderate", "min"),
    ("uniform", "singletons", "min"),
    ("uniform", "binding", "min"),
    ("ties", "binding", "min"),
    ("uniform", "moderate", "max"),
    ("ties", "binding", "max"),
    ("negative", "moderate", "min"),
    ("negative", "loose", "max"),
]


def exact_case(rng: np.random.Generator, n: int, symmetric: bool, costs_kind: str, demand_kind: str, sense: str):
    """One random instance: (costs, demands, capacity, n_vehicles, sense)."""
    costs = random_costs(rng, n, symmetric, costs_kind)
    n_vehicles = None
    if demand_kind == "singletons":  # every demand above half the capacity: one customer per route
        capacity = 10
        demands = rng.integers(6, 11, size=n)
    else:
        demands = rng.integers(0 if demand_kind == "loose" else 1, 6, size=n)
        total = int(demands.sum())
        capacity = max(total, 1) if demand_kind == "loose" else max(int(demands.max()), -(-total // 2))
    if demand_kind == "binding":
        # depot edges attractive for the sense: more routes pay, so the vehicle count binds
        mask = depot_mask(n, symmetric)
        costs = np.where(mask, costs * (0.0 if sense == "min" else 4.0), costs)
        if costs_kind == "ties" and sense == "min":
            costs = np.where(mask, rng.integers(0, 2, size=costs.shape), costs).astype(float)
        n_vehicles = min_vehicles(demands, capacity)
    return costs, demands, capacity, n_vehicles, sense


def exact_cases(n: int, symmetric: bool):
    rng = np.random.default_rng(100 * n + symmetric)
    return [exact_case(rng, n, symmetric, *kind) for kind in EXACT_KINDS]


def solve_one(costs, demands, capacity, n_vehicles, sense, symmetric, method=None, **options):
    layer = ipo.VRPLayer(
        len(demands),
        capacity,
        demands,
        n_vehicles=n_vehicles,
        symmetric=symmetric,
        sense=sense,
        method=method,
        **options,
    )
    y = layer(torch.as_tensor(costs))
    return y, layer


# --- the reference itself --------------------------------------------------------------------------


def test_reference_checker_rejects_infeasible_decisions():
    # the checker is what the feasibility assertions rest on: it must be able to fail
    d = [1, 1, 1, 1]
    ok = routes_to_decision([[1, 2], [3], [4]], 4, True)
    assert check_solution(ok, d, 2, 3) == [[1, 2], [3], [4]]
    assert ok[0] == 1 and ok[2] == 2 and ok[3] == 2  # (0,1) once, (0,3) and (0,4) twice
    with pytest.raises(AssertionError, match=r"carries 2 > capacity 1"):
        check_solution(ok, d, 1)
    with pytest.raises(AssertionError, match=r"3 routes > n_vehicles=2"):
        check_solution(ok, d, 2, 2)
    # 0-1-2-0 plus the subtour 3-4-3 (edge (3, 4) cannot be used twice)
    subtour = routes_to_decision([[1, 2]], 4, True)
    subtour[edge_list(4).index((3, 4))] = 2
    with pytest.raises(AssertionError, match=r"edge \(3, 4\) used 2 times"):
        check_solution(subtour, d, 4)
    # asymmetric: 0->1->0 and the subtour 2->3->4->2
    arcs = routes_to_decision([[1]], 4, False)
    arcs[2, 3] = arcs[3, 4] = arcs[4, 2] = 1
    with pytest.raises(AssertionError, match=r"customers visited \[1\]"):
        check_solution(arcs, d, 4, symmetric=False)
    half = ok.copy()
    half[0] = 0.5
    with pytest.raises(AssertionError, match="non-integral"):
        check_solution(half, d, 2)


def test_reference_brute_force_on_hand_solved_instances():
    # 3 customers of demand 4, capacity 5: every route serves one customer
    value, y = brute_force(np.arange(1.0, 7.0), [4, 4, 4], 5)
    assert value == 2 * (1 + 2 + 3) and y.tolist() == [2, 2, 2, 0, 0, 0]
    # one vehicle: the cheapest tour 0-1-2-3-0 or its reverse
    c = np.array([1.0, 9.0, 1.0, 1.0, 9.0, 1.0])  # 01 02 03 12 13 23
    assert brute_force(c, [1, 1, 1], 3, 1)[0] == 4.0
    assert brute_force(c, [2, 2, 2], 3)[0] == 2 * (1 + 9 + 1)
    assert brute_force(c, [2, 2, 2], 3, 2) == (None, None)


def test_reference_dynamic_programme_equals_the_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(150):
        n, symmetric, sense = int(rng.integers(1, 8)), bool(rng.integers(2)), ("min", "max")[rng.integers(2)]
        d = rng.integers(0, 6, size=n)
        q = int(max(d.max(), 1) + rng.integers(0, 6))
        k = (None, 1, 2, 3)[rng.integers(4)]
        costs = rng.uniform(-3, 5, size=cost_shape(n, symmetric))
        value, _ = brute_force(costs, d, q, k, symmetric=symmetric, sense=sense)
        other = dp_optimum(costs, d, q, k, symmetric=symmetric, sense=sense)
        assert (value is None and other is None) or abs(value - other) <= 1e-9, (n, symmetric, sense, k, value, other)


def test_exact_cases_cover_singletons_binding_vehicles_and_ties():
    # the random instances of the exactness test do exercise what they are meant to
    singletons = binding = ties = 0
    for n, symmetric in itertools.product(range(3, 8), (True, False)):
        for costs, d, q, k, sense in exact_cases(n, symmetric):
            value, y = brute_force(costs, d, q, k, symmetric=symmetric, sense=sense)
            routes = check_solution(y, d, q, k, symmetric=symmetric)
            singletons += any(len(r) == 1 for r in routes)
            if k is not None:
                binding += value != brute_force(costs, d, q, None, symmetric=symmetric, sense=sense)[0]
            ties += bool(np.array_equal(costs, np.round(costs)))
    assert singletons >= 20 and binding >= 10 and ties >= 20, (singletons, binding, ties)


# --- the exact method -----------------------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_exact_is_optimal_against_brute_force(n, symmetric):
    # 5 sizes x 2 cost kinds x 9 instances = 90 instances
    for costs, d, q, k, sense in exact_cases(n, symmetric):
        expected, _ = brute_force(costs, d, q, k, symmetric=symmetric, sense=sense)
        y, layer = solve_one(costs, d, q, k, sense, symmetric)
        assert y.shape == cost_shape(n, symmetric) and y.dtype == torch.float64
        assert list(layer.last_info.status) == ["optimal"]
        y = y.numpy()
        check_solution(y, d, q, k, symmetric=symmetric)
        got = objective(costs, y, symmetric)
        assert abs(got - expected) <= tolerance(costs), (
            f"n={n} symmetric={symmetric} sense={sense} demands={d.tolist()} capacity={q} n_vehicles={k}: "
            f"objective {got}, optimum {expected}, costs {costs.tolist()}"
        )


@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
def test_exact_batch_with_shared_data_equals_brute_force_per_row(symmetric):
    n, d, q = 6, np.array([3, 1, 4, 1, 5, 2]), 7
    rng = np.random.default_rng(7)
    costs = np.stack([random_costs(rng, n, symmetric, "ties") for _ in range(10)])
    for sense in ("min", "max"):
        layer = ipo.VRPLayer(n, q, d, n_vehicles=3, symmetric=symmetric, sense=sense)
        y = layer(torch.as_tensor(costs)).numpy()
        assert y.shape == (10, *cost_shape(n, symmetric))
        assert list(layer.last_info.status) == ["optimal"] * 10
        for c, row in zip(costs, y):
            check_solution(row, d, q, 3, symmetric=symmetric)
            assert objective(c, row, symmetric) == brute_force(c, d, q, 3, symmetric=symmetric, sense=sense)[0]
        # one instance alone equals its row of the batch
        assert np.array_equal(layer(torch.as_tensor(costs[4])).numpy(), y[4])


def test_single_customer_routes_use_their_depot_edge_twice():
    layer = ipo.VRPLayer(3, 5, [4, 4, 4])
    y = layer(torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 0.0]))  # edges 01 02 03 12 13 23
    assert y.tolist() == [2.0, 2.0, 2.0, 0.0, 0.0, 0.0]
    arcs = ipo.VRPLayer(3, 5, [4, 4, 4], symmetric=False)(torch.zeros(4, 4))
    expected = np.zeros((4, 4))
    expected[0, 1:] = expected[1:, 0] = 1
    assert arcs.numpy().tolist() == expected.tolist()


@quiet_heuristics
@pytest.mark.parametrize("method", [None, *HEURISTICS])
def test_one_customer(method):
    options = HEURISTIC_OPTIONS.get(method, {})
    one = ipo.VRPLayer(1, 1, [1], method=method, **options)
    assert one(torch.tensor([5.0])).tolist() == [2.0]
    assert one(torch.tensor([[5.0], [-1.0]])).tolist() == [[2.0], [2.0]]
    arcs = ipo.VRPLayer(1, 1, [1], symmetric=False, method=method, **options)
    assert arcs(torch.ones(2, 2)).tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_a_binding_vehicle_count_forces_the_longer_routes():
    # depot edges cost 0, customer edges 10: without a limit every customer has its own route
    n, d, q = 4, [1, 1, 1, 1], 4
    c = np.array([0.0 if i == 0 else 10.0 for i, _ in edge_list(n)])
    free = ipo.VRPLayer(n, q, d)(torch.as_tensor(c)).numpy()
    assert objective(c, free, True) == 0.0 and check_solution(free, d, q) == [[1], [2], [3], [4]]
    for k, value in ((1, 30.0), (2, 20.0), (3, 10.0)):
        y = ipo.VRPLayer(n, q, d, n_vehicles=k)(torch.as_tensor(c)).numpy()
        assert len(check_solution(y, d, q, k)) == k and objective(c, y, True) == value


def test_demands_of_zero_and_a_capacity_that_fits_everything():
    n = 5
    rng = np.random.default_rng(3)
    for d in ([0, 0, 0, 0, 0], [0, 3, 0, 2, 5]):
        costs = rng.uniform(0, 1, size=(4, n_edges(n)))
        layer = ipo.VRPLayer(n, 10, d, n_vehicles=1)
        y = layer(torch.as_tensor(costs)).numpy()
        for c, row in zip(costs, y):
            assert len(check_solution(row, d, 10, 1)) == 1
            assert abs(objective(c, row, True) - brute_force(c, d, 10, 1)[0]) <= tolerance(c)


def test_solve_returns_decisions_without_a_graph():
    costs = torch.rand(3, n_edges(5), dtype=torch.float64, requires_grad=True)
    layer = ipo.VRPLayer(5, 6, [1, 2, 3, 2, 1])
    y = layer.solve(costs)
    assert not y.requires_grad
    assert torch.equal(y, layer(costs).detach())


# --- per-instance data ----------------------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
def test_per_instance_demands_and_capacity_equal_separate_layers(symmetric):
    n, b = 6, 8
    rng = np.random.default_rng(11)
    costs = np.stack([random_costs(rng, n, symmetric, "uniform") for _ in range(b)])  # unique optima
    demands = rng.integers(0, 6, size=(b, n))
    capacity = np.maximum(demands.max(1), rng.integers(3, 16, size=b))
    layer = ipo.VRPLayer(n, 5, [1] * n, n_vehicles=4, symmetric=symmetric)
    y = layer(torch.as_tensor(costs), demands=torch.as_tensor(demands), capacity=torch.as_tensor(capacity))
    assert list(layer.last_info.status) == ["optimal"] * b
    for i in range(b):
        alone = ipo.VRPLayer(n, int(capacity[i]), demands[i], n_vehicles=4, symmetric=symmetric)
        expected = alone(torch.as_tensor(costs[i]))
        assert torch.equal(y[i], expected), f"instance {i}: demands {demands[i]}, capacity {capacity[i]}"
        check_solution(y[i].numpy(), demands[i], int(capacity[i]), 4, symmetric=symmetric)
        ref = brute_force(costs[i], demands[i], int(capacity[i]), 4, symmetric=symmetric)[0]
        assert abs(objective(costs[i], y[i].numpy(), symmetric) - ref) <= tolerance(costs[i])
    # after the call the constructor's data hold again
    again = layer(torch.as_tensor(costs))
    for i in range(b):
        check_solution(again[i].numpy(), [1] * n, 5, 4, symmetric=symmetric)


def test_unbatched_data_is_broadcast_and_one_field_alone_keeps_the_other():
    n = 5
    rng = np.random.default_rng(12)
    costs = torch.as_tensor(rng.uniform(0, 10, size=(6, n_edges(n))))
    layer = ipo.VRPLayer(n, 4, [1, 1, 1, 1, 1])
    d = [2, 3, 1, 2, 2]
    once = layer(costs, demands=torch.tensor(d), capacity=torch.tensor(5))
    batched = layer(costs, demands=torch.tensor([d] * 6), capacity=torch.full((6,), 5))
    assert torch.equal(once, batched)
    assert torch.equal(once, ipo.VRPLayer(n, 5, d)(costs))
    assert torch.equal(layer(costs, demands=torch.tensor(d)), ipo.VRPLayer(n, 4, d)(costs))
    assert torch.equal(layer(costs, capacity=torch.tensor(2)), ipo.VRPLayer(n, 2, [1] * 5)(costs))


INFEASIBLE = [
    # (demands per instance, capacity per instance, n_vehicles): instance 1 infeasible
    pytest.param([[2, 3, 5, 1]] * 3, [10, 4, 10], None, id="demand-above-capacity"),
    pytest.param([[3, 3, 3, 3]] * 3, [10, 5, 10], 2, id="total-above-vehicles-times-capacity"),
    # total 10 = 2 x 5, but no two of the 3s share a route: three routes needed
    pytest.param([[3, 1, 1, 1], [3, 3, 3, 1], [1, 1, 1, 1]], [5, 5, 5], 2, id="bin-packing"),
]


@pytest.mark.parametrize("demands, capacity, n_vehicles", INFEASIBLE)
@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
def test_infeasible_instances_are_reported(demands, capacity, n_vehicles, symmetric):
    n = 4
    rng = np.random.default_rng(13)
    costs = torch.as_tensor(np.stack([random_costs(rng, n, symmetric, "uniform") for _ in range(3)]))
    data = {"demands": torch.tensor(demands), "capacity": torch.tensor(capacity)}
    layer = ipo.VRPLayer(n, 5, [1] * n, n_vehicles=n_vehicles, symmetric=symmetric, on_failure="nan")
    with pytest.warns(ipo.SolverWarning, match="have no decision"):
        y = layer(costs, **data).numpy()
    assert list(layer.last_info.status) == ["optimal", "infeasible", "optimal"]
    assert np.all(np.isnan(y[1]))
    for i in (0, 2):
        check_solution(y[i], demands[i], capacity[i], n_vehicles, symmetric=symmetric)
    strict = ipo.VRPLayer(n, 5, [1] * n, n_vehicles=n_vehicles, symmetric=symmetric)
    with pytest.raises(ipo.SolverError, match="instance 1 of the batch has no solution") as err:
        strict(costs, **data)
    assert err.value.index == 1


@quiet_heuristics
@pytest.mark.parametrize("method", HEURISTICS)
@pytest.mark.parametrize("demands, capacity, n_vehicles", INFEASIBLE)
def test_heuristics_report_data_infeasible_instances(method, demands, capacity, n_vehicles):
    n = 4
    costs = torch.as_tensor(np.random.default_rng(14).uniform(0, 10, size=(3, n_edges(n))))
    data = {"demands": torch.tensor(demands), "capacity": torch.tensor(capacity)}
    layer = ipo.VRPLayer(
        n, 5, [1] * n, n_vehicles=n_vehicles, method=method, on_failure="nan", **HEURISTIC_OPTIONS[method]
    )
    with pytest.warns(ipo.SolverWarning, match="have no decision"):
        y = layer(costs, **data).numpy()
    assert np.all(np.isnan(y[1]))
    # infeasible from the data alone: "infeasible" before any search; otherwise (bin packing) a
    # heuristic proves nothing: its budget ran out without a routing ("time_limit")
    info = layer.last_info
    fleet = math.inf if n_vehicles is None else n_vehicles * capacity[1]
    packing = sum(demands[1]) <= fleet and max(demands[1]) <= capacity[1]
    expected = "time_limit" if packing else "infeasible"
    assert info.status[1] == expected, f"{method}: status {info.status[1]!r} ({info.solver_status[1]})"
    for i in (0, 2):
        assert info.status[i] in ("feasible", "optimal")
        check_solution(y[i], demands[i], capacity[i], n_vehicles)
    strict = ipo.VRPLayer(n, 5, [1] * n, n_vehicles=n_vehicles, method=method, **HEURISTIC_OPTIONS[method])
    with pytest.raises(ipo.SolverError, match="instance 1 of the batch has no solution"):
        strict(costs, **data)


# --- the heuristics -------------------------------------------------------------------------------


def heuristic_cases():
    """20 random instances of 8 to 12 customers: Euclidean (half asymmetric), demands 1..9."""
    rng = np.random.default_rng(2024)
    cases = []
    for i in range(20):
        n = int(rng.integers(8, 13))
        symmetric = i % 2 == 0
        costs = np.round(random_costs(rng, n, symmetric, "euclidean"), 3)
        demands = rng.integers(1, 10, size=n)
        capacity = int(rng.integers(15, 31))
        n_vehicles = None if i % 4 < 2 else int(-(-demands.sum() // capacity)) + 1
        cases.append((costs, demands, capacity, n_vehicles, symmetric))
    return cases


@pytest.fixture(scope="module")
def heuristic_optima():
    """The optimum of every heuristic case, by the reference's subset dynamic programme."""
    return [dp_optimum(costs, d, q, k, symmetric=symmetric) for costs, d, q, k, symmetric in heuristic_cases()]


def test_exact_matches_the_reference_on_medium_instances(heuristic_optima):
    # the heuristic cases with a vehicle limit (the exact method proves those in about a second)
    for (costs, d, q, k, symmetric), best in zip(heuristic_cases(), heuristic_optima):
        if k is None:
            continue
        y, layer = solve_one(costs, d, q, k, "min", symmetric)
        assert list(layer.last_info.status) == ["optimal"]
        check_solution(y.numpy(), d, q, k, symmetric=symmetric)
        assert objective(costs, y.numpy(), symmetric) == pytest.approx(best, rel=1e-12, abs=1e-9)


@quiet_heuristics
@pytest.mark.parametrize("method", HEURISTICS)
def test_heuristics_are_feasible_and_close_to_the_optimum(method, heuristic_optima):
    gaps = []
    for (costs, d, q, k, symmetric), best in zip(heuristic_cases(), heuristic_optima):
        y, layer = solve_one(costs, d, q, k, "min", symmetric, method, **HEURISTIC_OPTIONS[method])
        assert y.shape == cost_shape(len(d), symmetric)
        status = layer.last_info.status[0]
        assert status in ("feasible", "optimal")
        check_solution(y.numpy(), d, q, k, symmetric=symmetric)
        value = objective(costs, y.numpy(), symmetric)
        assert value >= best - 1e-9 * abs(best), f"{method} beat the exact optimum: {value} < {best}"
        if status == "optimal":
            assert value == pytest.approx(best, rel=1e-9), f"{method} says optimal at {value}, optimum {best}"
        gaps.append(value / best - 1)
    assert np.mean(gaps) <= 0.03, f"{method}: mean gap {np.mean(gaps):.4f}, gaps {np.round(gaps, 4).tolist()}"
    assert max(gaps) <= 0.15, f"{method}: worst gap {max(gaps):.4f}"


@quiet_heuristics
@pytest.mark.parametrize("method", HEURISTICS)
@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
def test_heuristics_are_deterministic_for_a_seed(method, symmetric):
    # 25 customers and a budget of 50 iterations: short of convergence, PyVRP's routes depend on
    # its seed (asserted), so a seed that did not fix the search would show
    n = 25
    rng = np.random.default_rng(15)
    costs = torch.as_tensor(np.stack([random_costs(rng, n, symmetric, "euclidean") for _ in range(3)]))
    d, q = rng.integers(1, 10, size=n), 30
    # (projection="none": the default's basis for 676 arcs takes longer to build than the solves)
    options = {"symmetric": symmetric, "method": method, "iterations": 50, "time_limit": 0.5, "projection": "none"}
    layer = ipo.VRPLayer(n, q, d, seed=3, **options)
    first = layer(costs)
    assert torch.equal(layer(costs), first)
    assert torch.equal(ipo.VRPLayer(n, q, d, seed=3, **options)(costs), first)
    assert set(layer.last_info.status) <= {"feasible", "optimal"}
    for row in first.numpy():
        check_solution(row, d, q, symmetric=symmetric)
    if method == "pyvrp":
        others = [ipo.VRPLayer(n, q, d, seed=seed, **options)(costs) for seed in (4, 5)]
        assert not all(torch.equal(other, first) for other in others), "the seed changes nothing here"


@quiet_heuristics
@pytest.mark.parametrize("method", HEURISTICS)
def test_heuristics_with_max_sense_and_negative_costs(method):
    # Costs of either sign (and sense "max") cannot be shifted to non-negative ones without
    # changing the optimum: a route's edge count is its size + 1, so a shift favours fewer or
    # more routes. Small instances: a heuristic should reach the brute-force optimum.
    rng = np.random.default_rng(16)
    gaps = []
    for i in range(8):
        n, symmetric, sense = 6, i % 2 == 0, ("min", "max")[i // 4]
        costs = random_costs(rng, n, symmetric, "negative")
        d, q = rng.integers(1, 5, size=n), 8
        best, _ = brute_force(costs, d, q, 4, symmetric=symmetric, sense=sense)
        y, layer = solve_one(costs, d, q, 4, sense, symmetric, method, **HEURISTIC_OPTIONS[method])
        assert layer.last_info.status[0] in ("feasible", "optimal")
        check_solution(y.numpy(), d, q, 4, symmetric=symmetric)
        value = objective(costs, y.numpy(), symmetric)
        gap = (best - value) if sense == "max" else (value - best)
        assert gap >= -1e-9, f"{method} beat the optimum: {value} vs {best}"
        gaps.append(gap / (np.abs(costs).sum() / costs.size * (n + 1)))  # relative to a typical route set
    assert np.mean(gaps) <= 0.03, f"{method}: mean relative gap {np.mean(gaps):.4f}, gaps {np.round(gaps, 4).tolist()}"


# --- serial and pool ------------------------------------------------------------------------------


@quiet_heuristics
@pytest.mark.parametrize("method", [None, *HEURISTICS])
def test_serial_and_pool_give_identical_results(method, force_pool):
    n = 7 if method is None else 9
    rng = np.random.default_rng(17)
    costs = torch.as_tensor(rng.uniform(0, 10, size=(6, n_edges(n))))
    d = rng.integers(1, 6, size=n)
    demands = torch.as_tensor(np.stack([rng.permutation(d) for _ in range(6)]))
    capacity = torch.tensor([8, 9, 10, 11, 12, 13])
    options = HEURISTIC_OPTIONS.get(method, {})
    serial = ipo.VRPLayer(n, 10, d, n_vehicles=5, method=method, **options)
    expected = serial(costs, demands=demands, capacity=capacity)
    pooled = force_pool(ipo.VRPLayer(n, 10, d, n_vehicles=5, method=method, workers=2, **options))
    got = pooled(costs, demands=demands, capacity=capacity)
    assert pooled.last_info.mode == "pool"
    assert torch.equal(got, expected)
    assert pooled.last_info.status == serial.last_info.status
    for row, di, qi in zip(got.numpy(), demands.numpy(), capacity.tolist()):
        check_solution(row, di, qi, 5)


# --- gradient -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sense, sign", [("min", -1.0), ("max", 1.0)])
@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
def test_gradient_is_the_signed_identity_without_projection(sense, sign, symmetric):
    n = 4
    gen = torch.Generator().manual_seed(18)
    shape = (3, *cost_shape(n, symmetric))
    costs = torch.rand(shape, generator=gen, dtype=torch.float64).requires_grad_(True)
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    layer = ipo.VRPLayer(n, 3, [1, 2, 1, 2], symmetric=symmetric, sense=sense, projection="none")
    y = layer(costs)
    assert y.requires_grad
    (y * g).sum().backward()
    torch.testing.assert_close(costs.grad, sign * g, rtol=0, atol=0)


# --- extreme costs --------------------------------------------------------------------------------


@quiet_heuristics
@pytest.mark.parametrize("method", [None, *HEURISTICS])
@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
def test_huge_costs_differing_by_one_are_still_exact(symmetric, method):
    # 1e9 on every edge makes every extra route cost 1e9; the differences of 1 must still count
    n, d = 6, [1, 2, 3, 2, 1, 3]
    rng = np.random.default_rng(19)
    options = HEURISTIC_OPTIONS.get(method, {})
    layer = ipo.VRPLayer(n, 6, d, n_vehicles=4, symmetric=symmetric, method=method, **options)
    costs = 1e9 + rng.integers(0, 4, size=(8, *cost_shape(n, symmetric))).astype(float)
    y = layer(torch.as_tensor(costs)).numpy()
    gaps = []
    for c, row in zip(costs, y):
        check_solution(row, d, 6, 4, symmetric=symmetric)
        gaps.append(objective(c, row, symmetric) - brute_force(c, d, 6, 4, symmetric=symmetric)[0])
    if method is None:
        assert list(layer.last_info.status) == ["optimal"] * 8
        assert gaps == [0.0] * 8
    else:
        # a heuristic on 6 customers: at most a stray unit, never a lost route (1e9) or a rounding
        assert set(layer.last_info.status) <= {"feasible", "optimal"}
        assert min(gaps) >= 0 and np.mean(gaps) <= 0.5, f"{method}: gaps {gaps}"


@quiet_heuristics
@pytest.mark.parametrize("method", [None, *HEURISTICS])
def test_the_asymmetric_diagonal_is_ignored(method):
    n, d = 6, [2, 1, 3, 1, 2, 2]
    rng = np.random.default_rng(21)
    costs = rng.uniform(0, 10, size=(4, n + 1, n + 1))
    costs[:, np.arange(n + 1), np.arange(n + 1)] = 0.0
    options = HEURISTIC_OPTIONS.get(method, {})
    layer = ipo.VRPLayer(n, 5, d, symmetric=False, method=method, **options)
    plain = layer(torch.as_tensor(costs))
    for diagonal in (1e12, -1e12):
        big = costs.copy()
        big[:, np.arange(n + 1), np.arange(n + 1)] = diagonal
        assert torch.equal(layer(torch.as_tensor(big)), plain)
    assert np.all(np.diagonal(plain.numpy(), axis1=1, axis2=2) == 0)
    if method is None:
        assert list(layer.last_info.status) == ["optimal"] * 4


@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
def test_costs_shifted_along_the_equalities_keep_the_optimum(symmetric):
    # a constant on every edge at a customer (symmetric), on its arcs out or in, or on the
    # diagonal (asymmetric) adds the same to every routing: the optimum for w stays optimal
    n, d, q = 6, [2, 1, 3, 1, 2, 2], 5
    layer = ipo.VRPLayer(n, q, d, symmetric=symmetric)
    a, b = layer.spec.equalities()
    assert a.shape[1] == int(np.prod(cost_shape(n, symmetric))) and len(a) >= n
    rng = np.random.default_rng(22)
    w = np.stack([random_costs(rng, n, symmetric, "uniform") for _ in range(6)])
    shifted = w + (5 * rng.normal(size=(6, len(a))) @ a).reshape(w.shape)
    for y in (layer.solve(torch.as_tensor(shifted)).numpy(), layer(torch.as_tensor(shifted)).numpy()):
        for wi, yi in zip(w, y):
            check_solution(yi, d, q, symmetric=symmetric)
            assert a @ yi.reshape(-1) == pytest.approx(b)
            assert objective(wi, yi, symmetric) == pytest.approx(
                brute_force(wi, d, q, symmetric=symmetric)[0], abs=1e-9
            )


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
def test_negative_costs_are_exact(sense, symmetric):
    # negative depot edges reward more routes (min); the optimum balances that against capacity
    n = 6
    rng = np.random.default_rng(20)
    d, q = [2, 2, 3, 1, 1, 2], 5
    costs = rng.integers(-6, 4, size=(8, *cost_shape(n, symmetric))).astype(float)
    layer = ipo.VRPLayer(n, q, d, symmetric=symmetric, sense=sense)
    y = layer(torch.as_tensor(costs)).numpy()
    assert list(layer.last_info.status) == ["optimal"] * 8
    for c, row in zip(costs, y):
        check_solution(row, d, q, symmetric=symmetric)
        assert objective(c, row, symmetric) == brute_force(c, d, q, symmetric=symmetric, sense=sense)[0]


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0, 5, []), {}, r"VRPLayer: n_customers=0 must be an int >= 1"),
        ((2.5, 5, [1, 1]), {}, r"VRPLayer: n_customers=2.5 must be an int >= 1"),
        ((3, 5, [1, -1, 2]), {}, r"VRPLayer: demands must be integers in \[0, 2\^40\], got \[1, -1, 2\]"),
        ((3, 5, [1, 1.5, 2]), {}, r"VRPLayer: demands must be integers in \[0, 2\^40\], got \[1, 1.5, 2\]"),
        ((3, 5, [1, 6, 2]), {}, r"VRPLayer: customer 2's demand 6 is above the capacity 5"),
        ((3, 5, [1, 2]), {}, r"VRPLayer: demands has 2 entries; expected one per customer \(3\)"),
        ((3, 5, [1, 2, 3, 4]), {}, r"VRPLayer: demands has 4 entries; expected one per customer \(3\)"),
        ((3, 5.5, [1, 1, 1]), {}, r"VRPLayer: capacity must be integers in \[0, 2\^40\], got 5.5"),
        ((3, 5, [1, 1, 1]), {"method": "lkh"}, r"VRPLayer: method='lkh' is not one of 'exact', 'routing', 'pyvrp'"),
        ((3, 5, [1, 1, 1]), {"sense": "longest"}, r"VRPLayer: sense='longest' must be 'min' or 'max'"),
        ((3, 5, [1, 1, 1]), {"n_vehicles": 0}, r"VRPLayer: n_vehicles=0 must be an int >= 1"),
        ((3, 5, [1, 1, 1]), {"iterations": 3}, r"VRPLayer: iterations applies only to the heuristics"),
        ((3, 5, [1, 1, 1]), {"method": "pyvrp", "iterations": 0}, r"VRPLayer: iterations=0 must be an int >= 1"),
    ],
    ids=[
        "no-customers",
        "fractional-customers",
        "negative-demand",
        "fractional-demand",
        "demand-above-capacity",
        "short-demands",
        "long-demands",
        "fractional-capacity",
        "method",
        "sense",
        "no-vehicles",
        "iterations-exact",
        "iterations-zero",
    ],
)
def test_constructor_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ipo.VRPLayer(*args, **kwargs)


@pytest.mark.parametrize(
    "costs, data, match",
    [
        (torch.zeros(2, 5), {}, r"VRPLayer: expected costs of shape \(6,\) or \(B, 6\), got \(2, 5\)"),
        (torch.zeros(4, 4), {}, r"VRPLayer: expected costs of shape \(6,\) or \(B, 6\), got \(4, 4\)"),
        (torch.zeros(6), {"demands": torch.tensor([1, -1, 1])}, r"data 'demands' .* is outside \[0, "),
        (torch.zeros(6), {"demands": torch.tensor([1.5, 1.0, 1.0])}, r"data 'demands' .* is not an integer: 1.5"),
        (torch.zeros(6), {"capacity": torch.tensor(2.5)}, r"data 'capacity' .* is not an integer: 2.5"),
        (torch.zeros(6), {"demands": torch.tensor([1, 1])}, r"data 'demands' .* must have shape \(3,\)"),
        (
            torch.zeros(2, 6),
            {"capacity": torch.tensor([1, 2, 3])},
            r"data 'capacity' .* must have shape \(\) or \(2,\)",
        ),
    ],
    ids=[
        "costs-batch",
        "costs-matrix",
        "negative-demand",
        "fractional-demand",
        "fractional-capacity",
        "demands-shape",
        "capacity-shape",
    ],
)
def test_call_errors(costs, data, match):
    with pytest.raises(ValueError, match=match):
        ipo.VRPLayer(3, 5, [1, 1, 1])(costs, **data)
