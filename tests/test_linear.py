"""LinearSolverLayer: optimality vs scipy on random LPs/MIPs, history-free solves, parity, errors."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ortools.linear_solver import pywraplp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

import idproj_or as ipo
from idproj_or.checks import declare
from idproj_or.rules.projection import invariance_basis, project
from idproj_or.solvers.linear import LinearSpec, detect_backend, linear_spec

MIP_BACKENDS = ["SCIP", "CBC", "SAT", "HIGHS", "BOP"]
LP_BACKENDS = ["GLOP", "CLP", "PDLP", "HIGHS_LP"]
# PDLP is a first-order method: its optimum is accurate to its default tolerance only.
LP_TOL = {"GLOP": 1e-7, "CLP": 1e-7, "HIGHS_LP": 1e-7, "PDLP": 1e-3}


def random_model(backend: str, rng: np.random.Generator, n: int = 8) -> tuple[pywraplp.Solver, list, dict]:
    """A feasible bounded model with two `<=` rows and one equality row, plus its scipy data."""
    solver = pywraplp.Solver.CreateSolver(backend)
    integer = solver.IsMip()
    upper = rng.integers(1, 3, size=n).astype(float)
    x = [solver.IntVar(0, u, f"x{i}") if integer else solver.NumVar(0, u, f"x{i}") for i, u in enumerate(upper)]
    x0 = np.floor(rng.random(n) * (upper + 1)).clip(0, upper)  # a feasible integer point
    a_ub = rng.integers(1, 6, size=(2, n)).astype(float)
    b_ub = a_ub @ x0 + rng.integers(0, 4, size=2)
    a_eq = (rng.random((1, n)) < 0.5).astype(float)
    a_eq[0, 0] = 1.0
    b_eq = a_eq @ x0
    for row, rhs in zip(a_ub, b_ub):
        solver.Add(sum(float(a) * v for a, v in zip(row, x)) <= float(rhs))
    solver.Add(sum(float(a) * v for a, v in zip(a_eq[0], x) if a) == float(b_eq[0]))
    data = {"a_ub": a_ub, "b_ub": b_ub, "a_eq": a_eq, "b_eq": b_eq, "upper": upper, "integer": integer}
    return solver, x, data


def scipy_optimum(data: dict, cost: np.ndarray) -> float:
    n = len(cost)
    if data["integer"]:
        res = milp(
            cost,
            constraints=[
                LinearConstraint(data["a_ub"], -np.inf, data["b_ub"]),
                LinearConstraint(data["a_eq"], data["b_eq"], data["b_eq"]),
            ],
            integrality=np.ones(n),
            bounds=Bounds(np.zeros(n), data["upper"]),
        )
    else:
        res = linprog(
            cost,
            A_ub=data["a_ub"],
            b_ub=data["b_ub"],
            A_eq=data["a_eq"],
            b_eq=data["b_eq"],
            bounds=list(zip(np.zeros(n), data["upper"])),
            method="highs",
        )
    assert res.status == 0
    return float(res.fun)


def assert_feasible(data: dict, y: np.ndarray, tol: float) -> None:
    assert np.all(y >= -tol) and np.all(y <= data["upper"] + tol)
    assert np.all(data["a_ub"] @ y <= data["b_ub"] + tol)
    np.testing.assert_allclose(data["a_eq"] @ y, data["b_eq"], atol=tol)
    if data["integer"]:
        np.testing.assert_array_equal(y, np.round(y))


@pytest.mark.parametrize("backend", MIP_BACKENDS + LP_BACKENDS)
def test_optimal_vs_scipy_on_random_models(backend: str) -> None:
    # 4 models x 2 senses x 13 cost vectors = 104 instances per backend.
    rng = np.random.default_rng(sum(map(ord, backend)))
    tol = LP_TOL.get(backend, 1e-9)
    for _ in range(4):
        solver, x, data = random_model(backend, rng)
        costs = rng.uniform(-1, 1, size=(13, len(x)))
        for sense, sign in (("min", 1.0), ("max", -1.0)):
            layer = ipo.LinearSolverLayer(solver, x, sense, projection="none")
            ys = layer.solve(torch.from_numpy(costs)).numpy()
            assert layer.last_info.status == ("optimal",) * len(costs)
            for cost, y in zip(costs, ys):
                assert_feasible(data, y, max(tol, 1e-7))
                best = sign * scipy_optimum(data, sign * cost)
                assert cost @ y == pytest.approx(best, abs=10 * tol + 1e-7)


@pytest.mark.parametrize("backend", LP_BACKENDS)
def test_lp_with_an_optimal_face_returns_an_optimum(backend: str) -> None:
    # max x0 + x1 s.t. x0 + x1 <= 1: every point of the segment is optimal.
    solver = pywraplp.Solver.CreateSolver(backend)
    x = [solver.NumVar(0, 1, f"x{i}") for i in range(3)]
    solver.Add(x[0] + x[1] <= 1)
    solver.Add(x[1] + x[2] <= 1)
    layer = ipo.LinearSolverLayer(solver, x, "max", projection="none")
    y = layer.solve(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)).numpy()
    tol = LP_TOL[backend]
    assert y[0] + y[1] == pytest.approx(1.0, abs=tol)
    assert y[1] + y[2] <= 1 + tol and np.all(y >= -tol) and np.all(y <= 1 + tol)


@pytest.mark.parametrize(
    "name, backend",
    [
        ("SCIP", "SCIP"),
        ("CBC", "CBC"),
        ("CP_SAT", "SAT"),
        ("BOP", "BOP"),
        ("HIGHS", "HIGHS"),
        ("GLOP", "GLOP"),
        ("CLP", "CLP"),
        ("PDLP", "PDLP"),
        ("HIGHS_LP", "HIGHS_LP"),
    ],
)
def test_backend_detection(name: str, backend: str) -> None:
    solver = pywraplp.Solver.CreateSolver(name)
    x = solver.IntVar(0, 1, "x") if backend in ("SAT", "BOP") else solver.NumVar(0, 1, "x")
    assert ipo.LinearSolverLayer(solver, [x]).spec.backend == backend


@pytest.mark.parametrize(
    "name, why",
    [
        ("BOP", "BOP solves Boolean models only"),
        ("CP_SAT", "OR-Tools. SAT backend solves continuous variables only approximately"),
    ],
)
def test_bop_and_sat_refuse_a_continuous_variable_at_construction(name: str, why: str) -> None:
    solver = pywraplp.Solver.CreateSolver(name)
    x = [solver.BoolVar(f"x{i}") for i in range(3)]
    slack = solver.NumVar(0, 2.5, "slack")  # not a cost variable: still refused
    solver.Add(sum(x) + slack == 2)
    with pytest.raises(ValueError, match=rf"variable 'slack' is continuous and {why}.*CreateSolver\('SCIP'\)"):
        ipo.LinearSolverLayer(solver, x)


def test_unknown_backend_is_rejected() -> None:
    fake = SimpleNamespace(SolverVersion=lambda: "Mystery 1.0", IsMip=lambda: True)
    with pytest.raises(ValueError, match=r"LinearSolverLayer: unsupported pywraplp backend 'Mystery 1.0'"):
        detect_backend(fake, where="LinearSolverLayer")  # type: ignore[arg-type]


def grid_lp(backend: str, h: int = 3, w: int = 3) -> tuple[pywraplp.Solver, list]:
    """Shortest path on an h x w grid (right/down arcs) as a flow LP."""
    solver = pywraplp.Solver.CreateSolver(backend)
    arcs = [((i, j), (i, j + 1)) for i in range(h) for j in range(w - 1)]
    arcs += [((i, j), (i + 1, j)) for i in range(h - 1) for j in range(w)]
    x = [solver.NumVar(0, 1, f"a{k}") for k in range(len(arcs))]
    for node in [(i, j) for i in range(h) for j in range(w)]:
        out = sum(v for v, (a, _) in zip(x, arcs) if a == node)
        inn = sum(v for v, (_, b) in zip(x, arcs) if b == node)
        rhs = 1 if node == (0, 0) else -1 if node == (h - 1, w - 1) else 0
        solver.Add(out - inn == rhs)
    return solver, x


def knapsack(backend: str, n: int = 10) -> tuple[pywraplp.Solver, list]:
    solver = pywraplp.Solver.CreateSolver(backend)
    x = [solver.BoolVar(f"x{i}") for i in range(n)]
    weights = np.arange(n) % 4 + 2
    solver.Add(sum(int(a) * v for a, v in zip(weights, x)) <= int(weights.sum()) // 2)
    return solver, x


@pytest.mark.parametrize("backend", ["SCIP", "GLOP", "CLP", "CBC", "HIGHS", "SAT"])
def test_solution_does_not_depend_on_previous_instances(backend: str) -> None:
    # Tied integer costs (many optima, zeros among them): a solver that warm starts from the
    # previous instance, or keeps a stale coefficient, returns another optimum in another order.
    solver, x = grid_lp(backend) if backend in ("GLOP", "CLP") else knapsack(backend)
    rng = np.random.default_rng(3)
    costs = torch.from_numpy(rng.integers(0, 3, size=(24, len(x))).astype(float))

    def solver_layer() -> ipo.LinearSolverLayer:
        made = ipo.LinearSolverLayer(solver, x, "min" if backend in ("GLOP", "CLP") else "max")
        made.handle.batch.network = False  # the grid would be decided by the network path shortcut
        return made

    layer = solver_layer()
    forward = layer.solve(costs)
    backward = layer.solve(costs.flip(0)).flip(0)
    assert "NETWORK_PATH" not in layer.last_info.solver_status
    one_by_one = torch.stack([solver_layer().solve(c) for c in costs])
    assert torch.equal(forward, backward)
    assert torch.equal(forward, one_by_one)


def test_parity_serial_vs_pool(force_pool) -> None:
    solver, x = knapsack("SCIP")
    costs = torch.from_numpy(np.random.default_rng(4).integers(0, 3, size=(12, len(x))).astype(float))
    serial = ipo.LinearSolverLayer(solver, x, "max")
    pooled = force_pool(ipo.LinearSolverLayer(solver, x, "max", workers=2))
    y_pool = pooled(costs)
    assert pooled.last_info.mode == "pool"
    assert torch.equal(serial(costs), y_pool)


def test_auto_projection_invariance() -> None:
    # Shortest path: flow conservation gives one equality per node; w + A^T l has the same
    # argmin as w, so its solution is optimal for w.
    solver, x = grid_lp("GLOP")
    layer = ipo.LinearSolverLayer(solver, x)
    a, b = layer.spec.equalities()
    assert a.shape == (9, 12) and np.linalg.matrix_rank(a) == 8
    rng = np.random.default_rng(5)
    for _ in range(20):
        w = rng.random(len(x))
        shifted = w + a.T @ rng.normal(size=len(a)) * 3
        y_w = layer.solve(torch.from_numpy(w)).numpy()
        y_shift = layer.solve(torch.from_numpy(shifted)).numpy()
        assert w @ y_shift == pytest.approx(w @ y_w, abs=1e-9)
        np.testing.assert_allclose(a @ y_shift, b, atol=1e-9)
    # The basis spans exactly the row space of A.
    assert layer.basis is not None
    q = layer.basis.numpy()
    np.testing.assert_allclose(q.T @ q, invariance_basis(a).T @ invariance_basis(a), atol=1e-12)
    np.testing.assert_allclose(a - a @ q.T @ q, 0, atol=1e-9)


def test_equalities_cover_rows_fixed_and_repeated_variables() -> None:
    solver = pywraplp.Solver.CreateSolver("SCIP")
    x = [solver.BoolVar(f"x{i}") for i in range(3)]
    z = solver.BoolVar("z")  # not a cost variable
    fixed = solver.IntVar(2, 2, "fixed")
    solver.Add(x[0] + 2 * x[1] == 1)
    solver.Add(x[1] + z == 1)  # touches z: not an invariance of the cost
    solver.Add(x[2] <= 1)  # not an equality
    layer = ipo.LinearSolverLayer(solver, [x[0], x[1], x[2], fixed, x[0]])
    a, b = layer.spec.equalities()
    rows = {tuple(r) + (rhs,) for r, rhs in zip(a.tolist(), b.tolist())}
    assert rows == {
        (1.0, 0.0, 0.0, 0.0, -1.0, 0.0),  # x0 repeated
        (0.0, 0.0, 0.0, 1.0, 0.0, 2.0),  # fixed == 2
        (1.0, 2.0, 0.0, 0.0, 0.0, 1.0),  # x0 + 2 x1 == 1
    }


def test_gradient_is_projected_negative_identity() -> None:
    solver, x = grid_lp("GLOP")
    layer = ipo.LinearSolverLayer(solver, x)  # min model, projection="auto"
    rng = np.random.default_rng(6)
    w = torch.tensor(rng.random(len(x)), requires_grad=True)
    g = torch.tensor(rng.normal(size=len(x)))
    (layer(w) * g).sum().backward()
    basis = layer.basis.to(torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: project(v[None], "auto", basis)[0], w.detach())
    torch.testing.assert_close(w.grad, -jac.T @ g)


def test_max_model_gradient_sign_and_default_sense() -> None:
    solver, x = knapsack("SCIP")
    solver.Maximize(sum(x))
    layer = ipo.LinearSolverLayer(solver, x, projection="none")
    assert layer.sense == "max"
    w = torch.rand(len(x), dtype=torch.float64, requires_grad=True)
    g = torch.randn(len(x), dtype=torch.float64)
    (layer(w) * g).sum().backward()
    torch.testing.assert_close(w.grad, g)
    plain, y = knapsack("SCIP")
    assert ipo.LinearSolverLayer(plain, y).sense == "min"


def test_matrix_shaped_variables_and_integer_output() -> None:
    solver = pywraplp.Solver.CreateSolver("CBC")
    x = [[solver.BoolVar(f"x{i}{j}") for j in range(3)] for i in range(2)]
    for row in x:
        solver.Add(sum(row) == 1)
    layer = ipo.LinearSolverLayer(solver, x, "max")
    cost = torch.tensor([[0.1, 0.9, 0.2], [0.7, 0.3, 0.5]])
    y = layer(cost)
    assert y.shape == (2, 3) and y.dtype == torch.float32
    assert y.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


def test_unbounded_instance_raises_solver_error_with_index() -> None:
    # min c x over x >= 0 (no upper bound): unbounded exactly when some c_i < 0. (GLOP's
    # presolve reports such an LP as INFEASIBLE; CLP and HiGHS say UNBOUNDED.)
    solver = pywraplp.Solver.CreateSolver("CLP")
    x = [solver.NumVar(0, solver.infinity(), f"x{i}") for i in range(2)]
    solver.Add(x[0] + x[1] >= 1)
    layer = ipo.LinearSolverLayer(solver, x, projection="none")
    costs = torch.tensor([[1.0, 2.0], [2.0, 1.0], [-1.0, 1.0]])
    with pytest.raises(ipo.SolverError, match="instance 2 of the batch has no solution") as info:
        layer(costs)
    assert info.value.index == 2
    assert info.value.status == "unbounded"


@pytest.mark.parametrize("backend", ["SCIP", "CBC"])
def test_infeasible_model_raises_solver_error(backend: str) -> None:
    solver = pywraplp.Solver.CreateSolver(backend)
    x = [solver.BoolVar(f"x{i}") for i in range(3)]
    solver.Add(sum(x) >= 4)
    layer = ipo.LinearSolverLayer(solver, x)
    with pytest.raises(ipo.SolverError, match=r"LinearSolverLayer: instance 0 .*INFEASIBLE") as info:
        layer(torch.ones(2, 3))
    assert (info.value.index, info.value.status) == (0, "infeasible")


def test_time_limit_returns_feasible_incumbent() -> None:
    # A 400-item, 10-row knapsack: SCIP finds incumbents at once but needs seconds to prove.
    rng = np.random.default_rng(7)
    solver = pywraplp.Solver.CreateSolver("SCIP")
    x = [solver.BoolVar(f"x{i}") for i in range(400)]
    weights = rng.integers(20, 100, size=(10, 400))
    for row in weights:
        solver.Add(sum(int(a) * v for a, v in zip(row, x)) <= int(row.sum()) // 2)
    layer = ipo.LinearSolverLayer(solver, x, "max", time_limit=0.3)
    y = layer.solve(torch.from_numpy(rng.integers(20, 100, 400).astype(float))).numpy()
    assert layer.last_info.status == ("feasible",)
    assert np.all(weights @ y <= weights.sum(axis=1) // 2) and y.sum() > 0


def test_spec_pickle_round_trip() -> None:
    solver, x = knapsack("SCIP")
    layer = ipo.LinearSolverLayer(solver, x, "max")
    spec = pickle.loads(pickle.dumps(layer.spec))
    assert isinstance(spec, LinearSpec) and spec == layer.spec
    cost = np.linspace(0, 1, len(x))
    y1, status, *_ = spec.build().solve(cost, None)
    assert status == "optimal"
    np.testing.assert_array_equal(y1, layer.solve(torch.from_numpy(cost)).numpy())


def test_validation_errors() -> None:
    solver, x = knapsack("SCIP")
    _other, y = knapsack("SCIP")
    with pytest.raises(TypeError, match=r"LinearSolverLayer: solver must be an ortools.linear_solver.pywraplp"):
        ipo.LinearSolverLayer("model", x)
    with pytest.raises(ValueError, match=r"LinearSolverLayer: variables\[1\] \('x1'\) is not a variable of this"):
        ipo.LinearSolverLayer(solver, [x[0], y[1]])
    with pytest.raises(ValueError, match=r"LinearSolverLayer: variables\[1\] is a int, expected a Variable"):
        ipo.LinearSolverLayer(solver, [x[0], 3])
    with pytest.raises(ValueError, match="LinearSolverLayer: variables is empty"):
        ipo.LinearSolverLayer(solver, [])
    with pytest.raises(ValueError, match="LinearSolverLayer: sense='minimise' must be 'min' or 'max'"):
        ipo.LinearSolverLayer(solver, x, "minimise")
    with pytest.raises(ValueError, match="projection='best' is not one of"):
        ipo.LinearSolverLayer(solver, x, projection="best")
    layer = ipo.LinearSolverLayer(solver, x)
    with pytest.raises(ValueError, match=r"LinearSolverLayer: expected costs of shape \(10,\)"):
        layer(torch.ones(3, 4))


def test_spec_is_direct_function_of_the_model() -> None:
    # Names do not reach the spec; the sense does; the user's objective travels as plain numbers.
    solver, x = knapsack("SCIP")
    bare = linear_spec(solver, declare(x, pywraplp.Variable, "max", where="t"))
    solver.Maximize(sum((i + 1) * v for i, v in enumerate(x)) + 4)
    assert linear_spec(solver, declare(x, pywraplp.Variable, objective="replace", where="t")) == bare
    kept = linear_spec(solver, declare(x, pywraplp.Variable, where="t"))
    assert kept.own_coeffs == tuple(float(i + 1) for i in range(len(x))) and kept.own_offset == 4.0
    assert kept.model == bare.model  # the proto itself carries no objective
    assert bare.proto().variable[0].name == "" and bare.proto().maximize
