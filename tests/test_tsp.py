import itertools
import pickle

import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.solvers.tsp import (
    ROUTING_TIME_LIMIT,
    RoutingTspSolver,
    TspCpSatSpec,
    TspRoutingSpec,
    tsp_equalities,
)

ROUTING_STATUSES = {"ROUTING_SUCCESS", "ROUTING_PARTIAL_SUCCESS_LOCAL_OPTIMUM_NOT_REACHED", "ROUTING_OPTIMAL"}


def tour_order(y: np.ndarray) -> list[int]:
    """The nodes in tour order from node 0; asserts y is the adjacency of one Hamiltonian cycle."""
    n = len(y)
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert np.all(np.diag(y) == 0)
    assert np.all(y.sum(0) == 1) and np.all(y.sum(1) == 1)
    order, node = [0], int(np.argmax(y[0]))
    while node != 0:
        order.append(node)
        node = int(np.argmax(y[node]))
    assert len(order) == n, "the adjacency has subtours"
    return order


def brute_force(c: np.ndarray, sense: str = "min") -> float:
    n = len(c)
    perms = np.array(list(itertools.permutations(range(1, n))))
    tours = np.concatenate([np.zeros((len(perms), 1), int), perms, np.zeros((len(perms), 1), int)], axis=1)
    lengths = c[tours[:, :-1], tours[:, 1:]].sum(1)
    return float(lengths.max() if sense == "max" else lengths.min())


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8])
def test_cpsat_tours_optimal_against_brute_force(n):
    # 7 sizes x 16 asymmetric instances = 112 instances (mixed senses), full forward with "auto".
    rng = np.random.default_rng(n)
    costs = rng.uniform(0, 10, size=(16, n, n))
    for sense, batch in (("min", costs[:12]), ("max", costs[12:])):
        layer = ipo.TSPLayer(n, sense=sense)
        y = layer(torch.as_tensor(batch)).numpy()
        assert set(layer.last_info.status) == {"optimal"}
        for c, yi in zip(batch, y):
            tour_order(yi)
            assert abs((c * yi).sum() - brute_force(c, sense)) <= 1e-12 * np.abs(c).sum()


def test_cpsat_ignores_the_diagonal_even_when_it_dominates_the_scale():
    rng = np.random.default_rng(11)
    costs = rng.uniform(0, 1, size=(10, 6, 6))
    costs[:, np.arange(6), np.arange(6)] = 1e12  # a common "no self-loop" convention
    layer = ipo.TSPLayer(6, projection="none")
    y = layer.solve(torch.as_tensor(costs)).numpy()
    for c, yi, error in zip(costs, y, layer.last_info.scaling_error):
        tour_order(yi)
        off = c.copy()
        np.fill_diagonal(off, 0.0)
        assert abs((off * yi).sum() - brute_force(off)) <= error + 1e-12 * np.abs(off).sum()


def test_routing_returns_a_hamiltonian_tour_for_100_nodes_within_its_time_limit():
    rng = np.random.default_rng(0)
    points = rng.uniform(size=(100, 2))
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    layer = ipo.TSPLayer(100, "routing", projection="std", time_limit=0.5)
    y = layer(torch.as_tensor(dist)).numpy()
    order = tour_order(y)
    info = layer.last_info[0]
    assert info.solver_status in ROUTING_STATUSES and info.status in ("feasible", "optimal")
    assert info.wall_time <= 0.5 + 0.5  # the limit plus model build and read-out
    # A random tour of 100 uniform points is ~52 long; a locally optimised one is below 9.
    length = dist[order, np.roll(order, -1)].sum()
    assert length == pytest.approx((dist * y).sum()) and length < 9.0


@pytest.mark.parametrize("n", [3, 5, 7])
def test_routing_small_instances_are_valid_tours_close_to_optimal(n):
    rng = np.random.default_rng(n)
    costs = rng.uniform(0, 10, size=(4, n, n))
    layer = ipo.TSPLayer(n, "routing", solution_limit=50, time_limit=10.0)
    y = layer(torch.as_tensor(costs)).numpy()
    for c, yi in zip(costs, y):
        tour_order(yi)
        assert (c * yi).sum() <= 1.5 * brute_force(c)  # a heuristic: close to, not always at, the optimum


def test_routing_integer_costs_shift_scale_and_ignore_the_diagonal():
    solver = RoutingTspSolver(TspRoutingSpec(3, "max"))
    cost = np.array([[100.0, 1.0, 3.0], [2.0, -50.0, 5.0], [4.0, 2.0, 9.0]])
    scaled, residual = solver.integer_costs(cost.reshape(-1))
    # sense max negates: off-diagonal -c spans [-5, -1], shifted to start at 0; a tour of 3 arcs
    # of at most 4 each stays within 2^62, so the scale is 2^62 / 16 = 2^58, exact here
    expected = (-cost + 5.0) * 2.0**58
    np.fill_diagonal(expected, 0)
    np.testing.assert_array_equal(scaled, expected.astype(np.int64))
    assert np.all(residual == 0)


def test_routing_optimal_is_reported_feasible_when_the_rounding_can_matter():
    # One arc of 1e30 next to costs of order 1: rounded at 1e30's scale they all become 0, and
    # a search that exhausts the tours of 4 nodes is optimal only for the rounded costs.
    rng = np.random.default_rng(4)
    costs = rng.uniform(0, 5, size=(6, 4, 4))
    costs[:, 0, 1] = 1e30
    layer = ipo.TSPLayer(4, "routing", metaheuristic="GREEDY_DESCENT")
    with pytest.warns(ipo.SolverWarning, match=r"may be up to .* worse than optimal for that alone"):
        y = layer.solve(torch.as_tensor(costs)).numpy()
    info = layer.last_info
    assert "ROUTING_OPTIMAL" in info.solver_status and set(info.status) == {"feasible"}
    for c, yi, error in zip(costs, y, info.scaling_error):
        tour_order(yi)
        assert 0 < (c * yi).sum() - brute_force(c) <= error
    layer.solve(torch.arange(16.0).reshape(4, 4) - 7.5)  # shifted and scaled exactly
    assert layer.last_info.scaling_error.tolist() == [0.0]


def test_routing_max_sense_finds_the_longest_tour_of_a_small_instance():
    c = torch.tensor([[0.0, 1.0, 9.0, 2.0], [2.0, 0.0, 1.0, 9.0], [9.0, 2.0, 0.0, 1.0], [1.0, 9.0, 2.0, 0.0]])
    exact = ipo.TSPLayer(4, sense="max")(c).numpy()
    heuristic = ipo.TSPLayer(4, "routing", sense="max", metaheuristic="GREEDY_DESCENT")(c).numpy()
    assert (c.numpy() * exact).sum() == brute_force(c.numpy(), "max") == 21.0
    assert (c.numpy() * heuristic).sum() == 21.0  # 4 of the 6 tours reach 21


@pytest.mark.parametrize("n, method", [(6, "cpsat"), (5, "routing"), (3, "routing")])
def test_auto_invariance_solution_for_shifted_cost_is_optimal(n, method):
    options = {"solution_limit": 30, "time_limit": 10.0} if method == "routing" else {}
    layer = ipo.TSPLayer(n, method, **options)
    a, b = layer.spec.equalities()
    assert a.shape == (3 * n, n * n) and b.tolist() == [1.0] * 2 * n + [0.0] * n
    rng = np.random.default_rng(5)
    w = rng.uniform(0, 1, size=(6, n * n))
    shifted = w + 5 * rng.normal(size=(6, 3 * n)) @ a  # row, column and diagonal shifts
    y = layer.solve(torch.as_tensor(shifted.reshape(6, n, n))).numpy()
    for wi, yi in zip(w, y):
        tour_order(yi)
        if method == "cpsat" or n <= 3:  # routing is exact only where every tour is found
            assert abs((wi.reshape(n, n) * yi).sum() - brute_force(wi.reshape(n, n))) <= 1e-5


def test_equalities_match_the_cpsat_circuit_rows():
    # the explicit rows equal what the CP-SAT adapter derives from the circuit model
    spec = ipo.TSPLayer(4).spec
    from idproj_or.solvers.cpsat import CpSatSpec

    a_explicit, _b_explicit = tsp_equalities(4)
    a_derived, _b_derived = CpSatSpec.equalities(spec)
    stack = np.linalg.matrix_rank(np.vstack([a_explicit, a_derived]))
    assert stack == np.linalg.matrix_rank(a_explicit) == np.linalg.matrix_rank(a_derived)


@pytest.mark.parametrize(
    "method, options",
    [
        ("cpsat", {}),
        ("routing", {"solution_limit": 20, "time_limit": 10.0}),
        ("routing", {"metaheuristic": "GREEDY_DESCENT"}),
    ],
)
def test_serial_and_pool_give_identical_results(method, options, force_pool):
    costs = torch.rand(8, 9, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = ipo.TSPLayer(9, method, **options)(costs)
    pooled = force_pool(ipo.TSPLayer(9, method, workers=2, **options))
    assert torch.equal(pooled(costs), expected)
    assert pooled.last_info.mode == "pool"


def test_routing_solve_is_stateless():
    # the same instance after a different one gives the same tour as on a fresh solver
    spec = TspRoutingSpec(12, "min", solution_limit=30)
    rng = np.random.default_rng(1)
    first, second = rng.uniform(size=(2, 144))
    fresh = spec.build().solve(second, 10.0)[0]
    solver = spec.build()
    solver.solve(first, 10.0)
    np.testing.assert_array_equal(solver.solve(second, 10.0)[0], fresh)


def test_specs_pickle_and_defaults():
    cpsat = ipo.TSPLayer(5)
    routing = ipo.TSPLayer(5, "routing")
    assert isinstance(cpsat.spec, TspCpSatSpec) and cpsat.time_limit is None
    assert routing.time_limit == ROUTING_TIME_LIMIT
    assert routing.spec == TspRoutingSpec(5, "min", "PATH_CHEAPEST_ARC", "GUIDED_LOCAL_SEARCH", None)
    for spec in (cpsat.spec, routing.spec):
        assert pickle.loads(pickle.dumps(spec)) == spec
    assert "method='routing'" in repr(routing)


def test_cpsat_time_limit_reports_feasible_or_optimal_tours():
    costs = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(3))
    layer = ipo.TSPLayer(12, time_limit=0.05)
    y = layer(costs).numpy()
    for yi in y:
        tour_order(yi)
    assert set(layer.last_info.status) <= {"optimal", "feasible"}


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((1,), {}, r"TSPLayer: n=1 must be an int >= 2"),
        ((4.0,), {}, r"TSPLayer: n=4.0 must be an int >= 2"),
        ((4, "lkh"), {}, r"TSPLayer: method='lkh' is not one of 'cpsat', 'routing'"),
        ((4, "cpsat", "shortest"), {}, r"TSPLayer: sense='shortest' must be 'min' or 'max'"),
        ((4,), {"metaheuristic": "GREEDY_DESCENT"}, r"TSPLayer: metaheuristic applies only to method='routing'"),
        (
            (4,),
            {"solution_limit": 3, "first_solution": "SAVINGS"},
            r"TSPLayer: first_solution, solution_limit apply only to method='routing'",
        ),
        (
            (4, "routing"),
            {"metaheuristic": "ANNEALING"},
            r"TSPLayer: metaheuristic='ANNEALING' is not one of .*'GUIDED_LOCAL_SEARCH'",
        ),
        (
            (4, "routing"),
            {"first_solution": "NEAREST"},
            r"TSPLayer: first_solution='NEAREST' is not one of .*'SAVINGS'",
        ),
        ((4, "routing"), {"solution_limit": 0}, r"TSPLayer: solution_limit=0 must be an int >= 1"),
        ((4, "routing"), {"time_limit": 0.0}, r"TSPLayer: time_limit=0.0 must be a positive"),
    ],
)
def test_validation_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ipo.TSPLayer(*args, **kwargs)


def test_cost_shape_error():
    with pytest.raises(ValueError, match=r"TSPLayer: expected costs of shape \(4, 4\) or \(B, 4, 4\), got \(2, 4, 5\)"):
        ipo.TSPLayer(4)(torch.zeros(2, 4, 5))
