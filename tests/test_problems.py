import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import idproj_or as ipo
from idproj_or import problems
from tests.helpers import monotone_paths


def cpsat_solve(problem, costs, **options):
    layer = problem.layer(projection="none", **options)
    assert isinstance(layer, ipo.CpSatLayer) and layer.sense == problem.sense
    return layer.solve(torch.as_tensor(costs)).numpy()


def close(a, b, costs):
    return abs(a - b) <= 1e-12 * np.abs(costs).sum()


# ----------------------------------------------------------------- brute force references


def knapsack_best(weights, caps, c):
    ys = np.array(list(itertools.product((0, 1), repeat=weights.shape[1])), float)
    ok = np.all(ys @ weights.T <= caps + 1e-9, axis=1)
    return float((ys[ok] @ c).max())


def tsp_best(c):
    n = len(c)
    best = np.inf
    for perm in itertools.permutations(range(1, n)):
        tour = (0, *perm, 0)
        best = min(best, sum(c[a, b] for a, b in itertools.pairwise(tour)))
    return best


# ----------------------------------------------------------------- grid arcs


def test_grid_arcs_follow_pyepo_order():
    assert problems.grid_arcs(2, 3) == [(0, 1), (1, 2), (0, 3), (1, 4), (2, 5), (3, 4), (4, 5)]
    arcs = problems.grid_arcs(5, 5)
    assert len(arcs) == 40 and len(set(arcs)) == 40
    assert arcs[:9] == [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (1, 6), (2, 7), (3, 8), (4, 9)]
    assert all(b - a in (1, 5) for a, b in arcs)
    assert len(problems.grid_arcs(1, 4)) == 3 and len(problems.grid_arcs(4, 1)) == 3


def test_grid_incidence_is_flow_conservation():
    a, b = problems.grid_incidence(3, 3)
    assert a.shape == (9, 12) and b[0] == 1 and b[-1] == -1 and np.all(b[1:-1] == 0)
    for path in monotone_paths(3, 3):
        np.testing.assert_array_equal(a @ path, b)


# ----------------------------------------------------------------- CP-SAT vs brute force


@pytest.mark.parametrize("d, n", [(1, 6), (2, 8), (3, 5)])
def test_knapsack_cpsat_optimal_against_brute_force(d, n):
    rng = np.random.default_rng(d * 10 + n)
    weights = rng.integers(1, 10, size=(d, n))
    caps = rng.integers(0, weights.sum(1) + 1)
    p = problems.knapsack(weights, caps)
    assert p.sense == "max" and p.shape == (n,)
    costs = rng.uniform(0, 1, size=(15, n))
    for c, y in zip(costs, cpsat_solve(p, costs)):
        assert np.all(weights @ y <= caps)
        assert close((c * y).sum(), knapsack_best(weights, caps, c), c)


def test_knapsack_cpsat_scales_decimal_weights_exactly():
    # PyEPO-style weights with two decimals: the CP-SAT rows are scaled by 100, not rounded
    rng = np.random.default_rng(4)
    weights = np.round(rng.uniform(3, 8, size=(2, 8)), 2)
    caps = np.array([weights[0].sum() / 2, weights[1].sum() / 2 + 0.005])
    p = problems.knapsack(weights, caps)
    costs = rng.uniform(0, 1, size=(20, 8))
    for c, y in zip(costs, cpsat_solve(p, costs)):
        assert np.all(weights @ y <= caps + 1e-9)
        assert close((c * y).sum(), knapsack_best(weights, caps, c), c)


def test_knapsack_one_dimensional_and_declared_sense():
    p = problems.knapsack([3, 4, 5], 7)
    assert p.shape == (3,)
    # the model itself states "maximise", so a layer built without sense= maximises too
    layer = ipo.CpSatLayer(p.model, p.variables)
    assert layer.sense == "max"
    assert layer(torch.tensor([1.0, 2.0, 2.5])).tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("h, w", [(1, 3), (2, 2), (3, 3), (3, 4), (5, 5)])
def test_shortest_path_cpsat_optimal_against_all_paths(h, w):
    p = problems.shortest_path_grid(h, w)
    paths = monotone_paths(h, w)
    rng = np.random.default_rng(h * 10 + w)
    costs = rng.uniform(0, 1, size=(12, len(paths[0])))
    for c, y in zip(costs, cpsat_solve(p, costs)):
        assert any(np.array_equal(y, path) for path in paths)
        assert close((c * y).sum(), (paths @ c).min(), c)


def test_shortest_path_auto_uses_node_potentials():
    p = problems.shortest_path_grid(4, 4)
    layer = p.layer()
    a, _ = problems.grid_incidence(4, 4)
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, size=(10, a.shape[1]))
    potentials = 3 * rng.normal(size=(10, a.shape[0]))
    y = layer.solve(torch.as_tensor(w + potentials @ a)).numpy()  # w_e + p_tail - p_head
    for wi, yi in zip(w, y):
        assert close((wi * yi).sum(), (monotone_paths(4, 4) @ wi).min(), wi)
    # the projected gradient has no component along any node potential
    wt = torch.as_tensor(w[:2]).requires_grad_(True)
    layer(wt).sum().backward()
    np.testing.assert_allclose(wt.grad.numpy() @ a.T, 0, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_tsp_cpsat_optimal_against_brute_force(n):
    p = problems.tsp(n)
    rng = np.random.default_rng(n)
    costs = rng.uniform(0, 1, size=(10, n, n))
    for c, y in zip(costs, cpsat_solve(p, costs)):
        assert np.all(y.sum(0) == 1) and np.all(y.sum(1) == 1) and np.all(np.diag(y) == 0)
        off = c.copy()
        np.fill_diagonal(off, 0)
        assert close((off * y).sum(), tsp_best(off), c)


@pytest.mark.parametrize("n, m", [(4, 4), (3, 5), (5, 2)])
def test_assignment_cpsat_optimal_against_scipy(n, m):
    p = problems.assignment(n, m)
    rng = np.random.default_rng(n * 10 + m)
    costs = rng.normal(size=(12, n, m))
    for c, y in zip(costs, cpsat_solve(p, costs)):
        r, k = linear_sum_assignment(c)
        assert close((c * y).sum(), c[r, k].sum(), c)
        assert np.all(y.sum(1) <= 1) and np.all(y.sum(0) <= 1) and y.sum() == min(n, m)


@pytest.mark.parametrize("n, k", [(1, 1), (5, 0), (6, 2), (8, 5)])
def test_top_k_cpsat_picks_the_k_largest(n, k):
    p = problems.top_k(n, k)
    rng = np.random.default_rng(n + k)
    costs = rng.normal(size=(12, n))
    for c, y in zip(costs, cpsat_solve(p, costs)):
        assert y.sum() == k
        assert close((c * y).sum(), np.sort(c)[::-1][:k].sum(), c)


# ----------------------------------------------------------------- every backend, solved directly


def solve_pywraplp(problem, c):
    lp = problem.model
    objective = lp.Objective()
    for var, coef in zip(problem.variables.reshape(-1), c.reshape(-1)):
        objective.SetCoefficient(var, float(coef))
    assert lp.Solve() == lp.OPTIMAL
    return np.array([v.solution_value() for v in problem.variables.reshape(-1)]).reshape(problem.shape)


def solve_cvxpy(problem, c):
    problem.parameter.value = c
    problem.model.solve(solver="SCIPY")  # scipy's HiGHS: LP and MIP
    assert problem.model.status == "optimal"
    return problem.variables.value


BUILDS = {
    "knapsack": lambda backend: problems.knapsack([[3, 4, 5, 2, 6], [2, 2, 4, 5, 1]], [9, 8], backend=backend),
    "shortest_path_grid": lambda backend: problems.shortest_path_grid(3, 4, backend=backend),
    "tsp": lambda backend: problems.tsp(5, backend=backend),
    "assignment": lambda backend: problems.assignment(3, 4, backend=backend),
    "top_k": lambda backend: problems.top_k(6, 4, backend=backend),
}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_every_backend_of_a_ready_problem_has_the_same_optimum(name):
    built = {backend: BUILDS[name](backend) for backend in problems.BACKENDS}
    shape = built["cpsat"].shape
    assert all(p.shape == shape and p.sense == built["cpsat"].sense for p in built.values())
    rng = np.random.default_rng(len(name))
    costs = rng.uniform(0, 1, size=(4, *shape))
    reference = cpsat_solve(built["cpsat"], costs)
    for c, y in zip(costs, reference):
        best = (c * y).sum()
        for solve, backend in ((solve_pywraplp, "pywraplp"), (solve_cvxpy, "cvxpy")):
            value = (c * solve(built[backend], c)).sum()
            assert close(value, best, c), (backend, value, best)


# ----------------------------------------------------------------- every backend, through its layer

LAYER_BACKENDS = ("cpsat", "pywraplp", "cvxpy")
DEDICATED = {
    "assignment": lambda: ipo.AssignmentLayer(3, 4),
    "tsp": lambda: ipo.TSPLayer(5),
}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_every_backend_layer_agrees_on_the_optimum_and_the_auto_invariances(name):
    layers = {backend: BUILDS[name](backend).layer() for backend in LAYER_BACKENDS}
    if name in DEDICATED:
        layers["dedicated"] = DEDICATED[name]()
    shape = layers["cpsat"].shape
    costs = torch.as_tensor(np.random.default_rng(len(name) + 1).uniform(0, 1, size=(6, *shape)))
    values = {}
    for backend, layer in layers.items():
        assert layer.shape == shape and layer.sense == layers["cpsat"].sense
        values[backend] = (costs * layer(costs)).flatten(1).sum(1).numpy()
    for backend, value in values.items():
        np.testing.assert_allclose(value, values["cpsat"], atol=1e-9, err_msg=backend)
    # "auto" projects out the same directions whichever backend declares the model
    spans = [layer.spec.equalities()[0] for layer in layers.values()]
    rank = np.linalg.matrix_rank(spans[0])
    assert all(np.linalg.matrix_rank(a) == rank == np.linalg.matrix_rank(np.vstack([spans[0], a])) for a in spans)


def test_default_pywraplp_solvers_and_cvxpy_variable_kinds():
    assert problems.knapsack([1, 2], 2, backend="pywraplp").model.SolverVersion().startswith("SCIP")
    assert problems.top_k(3, 1, backend="pywraplp").model.SolverVersion().startswith("Glop")
    assert problems.tsp(3, backend="cvxpy").variables.attributes["boolean"]
    assert not problems.assignment(3, backend="cvxpy").variables.attributes["boolean"]
    p = problems.top_k(3, 1, backend="cvxpy", solver="SCIPY")
    assert p.solver == "SCIPY" and p.parameter.shape == (3,)


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda: problems.top_k(4, 2, backend="gurobi"),
            r"top_k: backend='gurobi' is not one of 'cpsat', 'pywraplp', 'cvxpy'",
        ),
        (lambda: problems.top_k(4, 2, solver="SCIP"), r"top_k: solver='SCIP' does not apply to backend='cpsat'"),
        (lambda: problems.top_k(4, 2, backend="pywraplp", solver="NOPE"), r"top_k: pywraplp has no solver 'NOPE'"),
        (lambda: problems.top_k(4, 5), r"top_k: k=5 must be at most n=4"),
        (lambda: problems.top_k(4, -1), r"top_k: k=-1 must be an int >= 0"),
        (lambda: problems.knapsack([[1, 2], [3, 4]], [5]), r"knapsack: capacities must have shape \(2,\)"),
        (
            lambda: problems.knapsack(np.zeros((2, 2, 2)), [1, 1]),
            r"knapsack: weights must have shape \(d, n\) or \(n,\)",
        ),
        (lambda: problems.knapsack([[1, np.nan]], [5]), r"knapsack: weights and capacities must be finite"),
        (lambda: problems.knapsack([[1, 1 / 3]], [5]), r"knapsack: weights row 0 has more than 6 decimals"),
        (lambda: problems.shortest_path_grid(0, 3), r"shortest_path_grid: h=0 must be an int >= 1"),
        (lambda: problems.shortest_path_grid(1, 1), r"shortest_path_grid: the grid needs at least 2 nodes, got 1x1"),
        (lambda: problems.tsp(1), r"tsp: n=1 must be an int >= 2"),
        (lambda: problems.assignment(3, 0), r"assignment: m=0 must be an int >= 1"),
    ],
)
def test_validation_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_knapsack_float_weights_work_in_the_float_backends():
    p = problems.knapsack([[1, 1 / 3]], [1.2], backend="pywraplp")
    assert solve_pywraplp(p, np.array([1.0, 2.0])).tolist() == [0.0, 1.0]
