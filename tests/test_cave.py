"""CaVE (ConeAligned): equal to PyEPO's coneAlignedCosine on identical binding normals (loss and
gradient, both branches), its normals equal to PyEPO's _extract_tight_normals on Gurobi and the
same on every backend, hand formulas (the cone projection by NNLS), the hybrid coin, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

import idproj_or as ipo

B = 6
W2 = np.random.default_rng(3).integers(1, 10, size=(2, 10)).astype(float)
CAP2 = np.floor(W2.sum(axis=1) / 2)


def _rows(t: torch.Tensor) -> np.ndarray:
    """The nonzero rows of one instance's normals, as a sorted set (the cone ignores the order)."""
    a = np.asarray(t, dtype=np.float64)
    a = a[np.abs(a).sum(axis=1) > 0]
    return a[np.lexsort(a.T[::-1])] if len(a) else a


def _grad(fn, pred):
    p = pred.clone().requires_grad_(True)
    out = fn(p)
    out.sum().backward()
    return out.detach(), p.grad


# --- PyEPO on identical normals -------------------------------------------------------------


def _pyepo_problem(name: str):
    from pyepo.model.ort import knapsackModel, shortestPathModel

    if name == "shortest path (min)":
        return ipo.ShortestPathLayer.grid(5, 5), shortestPathModel((5, 5))
    return ipo.KnapsackLayer(W2, CAP2), knapsackModel(W2, CAP2)


@pytest.mark.parametrize("name", ["shortest path (min)", "knapsack (max)"])
@pytest.mark.parametrize("solve_ratio", [1.0, 0.0], ids=["qp", "heuristic"])
def test_loss_and_gradient_equal_pyepo_on_the_same_normals(name: str, solve_ratio: float) -> None:
    from pyepo.func import coneAlignedCosine

    layer, model = _pyepo_problem(name)
    gen = torch.Generator().manual_seed(11)
    true = torch.rand(B, layer.size, generator=gen) + 0.1
    pred = torch.randn(B, layer.size, generator=gen)
    ours = ipo.ConeAligned(layer, solve_ratio=solve_ratio, inner_ratio=0.3, reduction="none")
    normals = ours.normals(layer.solve(true))
    assert normals.shape[:2] == (B, normals.shape[1]) and normals.shape[1] > 0
    theirs = coneAlignedCosine(model, solve_ratio=solve_ratio, inner_ratio=0.3, reduction="none")
    loss, grad = _grad(lambda p: ours(p, normals=normals), pred)
    ref_loss, ref_grad = _grad(lambda p: theirs(p, normals), pred)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(grad, ref_grad)
    assert (loss > 1e-5).all() and grad.abs().sum() > 0  # random predictions are off the cones


def test_reductions_and_true_sol_route_agree() -> None:
    layer = ipo.KnapsackLayer(W2, CAP2)
    gen = torch.Generator().manual_seed(2)
    true_sol = layer.solve(torch.rand(B, 10, generator=gen))
    pred = torch.randn(B, 10, generator=gen, dtype=torch.float64)
    per = ipo.ConeAligned(layer, reduction="none")(pred, true_sol)
    assert per.shape == (B,) and per.dtype == torch.float64
    cave = ipo.ConeAligned(layer)
    torch.testing.assert_close(cave(pred, true_sol), per.mean())
    torch.testing.assert_close(cave(pred, normals=cave.normals(true_sol)), per.mean())
    torch.testing.assert_close(ipo.ConeAligned(layer, reduction="sum")(pred, true_sol), per.sum())


# --- the normals: PyEPO's Gurobi extraction, every backend ----------------------------------


@pytest.mark.parametrize("name", ["shortest path", "knapsack"])
def test_normals_equal_pyepo_extract_tight_normals_on_gurobi(name: str) -> None:
    pytest.importorskip("gurobipy")
    from pyepo.data.dataset import _extract_tight_normals
    from pyepo.model.grb import knapsackModel, shortestPathModel

    if name == "shortest path":
        layer, model = ipo.ShortestPathLayer.grid(5, 5), shortestPathModel((5, 5))
    else:
        layer, model = ipo.KnapsackLayer(W2, CAP2), knapsackModel(W2, CAP2)
    costs = torch.rand(B, layer.size, generator=torch.Generator().manual_seed(5)) + 0.1
    normals = ipo.ConeAligned(layer).normals(layer.solve(costs))
    for i, c in enumerate(costs.numpy()):
        model.setObj(c)
        sol, _ = model.solve()
        sol = np.asarray(sol, dtype=np.float64)
        np.testing.assert_allclose(sol, layer.solve(costs[i]).numpy(), atol=1e-6)  # the same decision
        expected = _extract_tight_normals(model, sol)
        np.testing.assert_array_equal(_rows(normals[i]), _rows(torch.as_tensor(expected)))


def _knapsack_models() -> dict[str, ipo.OptLayer]:
    import cvxpy as cp
    from ortools.linear_solver import pywraplp
    from ortools.sat.python import cp_model

    d, n = W2.shape
    layers: dict[str, ipo.OptLayer] = {"ready": ipo.KnapsackLayer(W2, CAP2)}
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(n)]
    for k in range(d):
        model.add(sum(int(W2[k, i]) * x[i] for i in range(n)) <= int(CAP2[k]))
    layers["cpsat"] = ipo.CpSatLayer(model, x, sense="max")
    solver = pywraplp.Solver.CreateSolver("SCIP")
    v = [solver.BoolVar(f"x{i}") for i in range(n)]
    for k in range(d):
        solver.Add(sum(W2[k, i] * v[i] for i in range(n)) <= CAP2[k])
    layers["pywraplp"] = ipo.LinearSolverLayer(solver, v, sense="max")
    c, z = cp.Parameter(n), cp.Variable(n, boolean=True)
    layers["cvxpy"] = ipo.CvxpyLayer(cp.Problem(cp.Maximize(c @ z), [W2 @ z <= CAP2]), c, z)
    return layers


def test_every_backend_gives_the_same_normals() -> None:
    layers = _knapsack_models()
    costs = torch.rand(B, 10, generator=torch.Generator().manual_seed(8))
    true_sol = layers["ready"].solve(costs)
    expected = ipo.ConeAligned(layers["ready"]).normals(true_sol)
    assert (expected[:, 0].abs().sum(1) > 0).all()
    for name, layer in layers.items():
        got = ipo.ConeAligned(layer).normals(true_sol)
        for i in range(B):
            np.testing.assert_array_equal(_rows(got[i]), _rows(expected[i]), err_msg=name)


def test_an_lp_shortest_path_gives_the_ready_layers_normals() -> None:
    from ortools.linear_solver import pywraplp

    from idproj_or.problems import grid_arcs

    arcs = grid_arcs(3, 4)
    solver = pywraplp.Solver.CreateSolver("GLOP")
    x = [solver.NumVar(0.0, 1.0, f"x{a}") for a in range(len(arcs))]
    for node in range(12):
        out = sum(x[a] for a, (t, _) in enumerate(arcs) if t == node)
        inn = sum(x[a] for a, (_, h) in enumerate(arcs) if h == node)
        solver.Add(out - inn == (1 if node == 0 else -1 if node == 11 else 0))
    lp = ipo.LinearSolverLayer(solver, x, sense="min")
    ready = ipo.ShortestPathLayer.grid(3, 4)
    costs = torch.rand(B, len(arcs), generator=torch.Generator().manual_seed(4)) + 0.1
    true_sol = ready.solve(costs)
    got, expected = ipo.ConeAligned(lp).normals(true_sol), ipo.ConeAligned(ready).normals(true_sol)
    for i in range(B):
        np.testing.assert_array_equal(_rows(got[i]), _rows(expected[i]))


def test_per_instance_data_gives_each_instance_its_rows() -> None:
    layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
    cave = ipo.ConeAligned(layer)
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    normals = cave.normals(y, capacity=torch.tensor([[7.0], [8.0]]))  # binding at 7, slack at 8
    assert normals[0].tolist() == [[3.0, 4.0, 5.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert normals[1].tolist() == [[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


def test_cpsat_rows_other_than_linear_ones() -> None:
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(4)]
    model.add_exactly_one(x[:2])
    model.add_at_most_one([x[2], ~x[3]])  # x2 + (1 - x3) <= 1
    model.add_bool_or([x[0], x[2]])
    start = model.new_int_var(0, 10, "s")
    model.new_interval_var(start, 2, start + 2, "task")  # over no cost variable: left out
    cave = ipo.ConeAligned(ipo.CpSatLayer(model, x, sense="max"))
    y = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    # exactly_one: +-(1, 1, 0, 0); at_most_one binds (x2 - x3 = 0): (0, 0, 1, -1); bool_or
    # (x0 + x2 = 2) does not; bounds: x1 = 0, x0 = x2 = x3 = 1
    expected = [[0, 0, 1, -1], [1, 1, 0, 0], [-1, -1, 0, 0], [0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    assert cave.normals(y)[0].tolist() == expected


# --- hand formulas ----------------------------------------------------------------------------


def _cone_projection(x: np.ndarray, normals: np.ndarray) -> np.ndarray:
    lam, _ = nnls(normals.T, x)
    return normals.T @ lam


@pytest.mark.parametrize("sense", ["max", "min"])
def test_converged_loss_is_the_cosine_to_the_nnls_projection(sense: str) -> None:
    if sense == "max":  # knapsack 2 y0 + 3 y1 + 4 y2 <= 5 at y = (1, 1, 0)
        layer, y = ipo.KnapsackLayer([[2, 3, 4]], [5]), [1.0, 1.0, 0.0]
        cone = np.array([[2, 3, 4], [0, 0, -1], [1, 0, 0], [0, 1, 0]], dtype=float)
    else:  # paths 0 -> 1 -> 2 and 0 -> 2 (arcs 0, 1, 2); the true path takes arc 2
        layer, y = ipo.ShortestPathLayer([(0, 1), (1, 2), (0, 2)], 0, 2), [0.0, 0.0, 1.0]
        rows = np.array([[1, 0, 1], [-1, 1, 0], [0, -1, -1]], dtype=float)  # out - in per node
        cone = np.concatenate([rows, -rows, -np.eye(3)[:2], np.eye(3)[2:]])
    cave = ipo.ConeAligned(layer, max_iter=200, reduction="none")
    normals = cave.normals(torch.tensor([y]))
    np.testing.assert_array_equal(normals[0].numpy(), cone)
    s = 1.0 if sense == "max" else -1.0
    for pred in ([0.3, -1.0, 2.0], [1.0, 1.0, -1.0], [-2.0, 0.5, 0.1]):
        c = torch.tensor([pred], dtype=torch.float64, requires_grad=True)
        loss = cave(c, normals=normals)
        loss.sum().backward()
        x = s * np.array(pred)
        p = _cone_projection(x, cone)
        nx, npj = np.linalg.norm(x), np.linalg.norm(p)
        assert loss.item() == pytest.approx(1 - x @ p / (nx * npj), abs=1e-6)
        dcos = p / (nx * npj) - (x @ p) * x / (nx**3 * npj)
        np.testing.assert_allclose(c.grad[0].numpy(), -s * dcos, atol=1e-6)


def test_three_iterations_stop_inside_the_cone() -> None:
    # the CaVE+ preset is not the converged projection: its loss differs
    layer = ipo.KnapsackLayer([[2, 3, 4]], [5])
    normals = ipo.ConeAligned(layer).normals(torch.tensor([[1.0, 1.0, 0.0]]))
    pred = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    plus, exact = (
        ipo.ConeAligned(layer)(pred, normals=normals),
        ipo.ConeAligned(layer, max_iter=200)(pred, normals=normals),
    )
    assert abs(plus.item() - exact.item()) > 1e-4


def test_heuristic_branch_formula() -> None:
    layer = ipo.KnapsackLayer([[2, 3, 4]], [5])
    cave = ipo.ConeAligned(layer, solve_ratio=0.0, inner_ratio=0.25)
    normals = cave.normals(torch.tensor([[1.0, 1.0, 0.0]]))
    x = np.array([0.3, -1.0, 2.0])
    rows = normals[0].numpy()
    mean = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).mean(axis=0)
    p = 0.75 * x / np.linalg.norm(x) + 0.25 * mean
    loss = cave(torch.from_numpy(x[None]), normals=normals)
    assert loss.item() == pytest.approx(1 - x @ p / (np.linalg.norm(x) * np.linalg.norm(p)), abs=1e-12)


def test_an_empty_cone_leaves_the_prediction_where_it_is() -> None:
    # x in [0, 1] at 0.5 and no constraint: nothing binds, proj = s c_hat, loss 0
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("GLOP")
    x = [solver.NumVar(0.0, 1.0, f"x{i}") for i in range(2)]
    cave = ipo.ConeAligned(ipo.LinearSolverLayer(solver, x, sense="min"))
    normals = cave.normals(torch.tensor([[0.5, 0.5]]))
    assert normals.shape == (1, 0, 2)
    assert cave(torch.tensor([[1.0, -2.0]]), normals=normals).item() == pytest.approx(0.0, abs=1e-7)


def test_the_hybrid_coin_is_one_draw_per_call_from_the_generator() -> None:
    layer = ipo.KnapsackLayer(W2, CAP2)
    gen = torch.Generator().manual_seed(2)
    normals = ipo.ConeAligned(layer).normals(layer.solve(torch.rand(B, 10, generator=gen)))
    pred = torch.randn(B, 10, generator=gen, dtype=torch.float64)
    hybrid = ipo.ConeAligned(layer, solve_ratio=0.5, generator=torch.Generator().manual_seed(9), reduction="none")
    qp = ipo.ConeAligned(layer, reduction="none")(pred, normals=normals)
    heuristic = ipo.ConeAligned(layer, solve_ratio=0.0, reduction="none")(pred, normals=normals)
    assert (qp - heuristic).abs().max() > 1e-3
    coins = torch.Generator().manual_seed(9)
    seen = set()
    for _ in range(12):
        takes_qp = bool(torch.rand((), generator=coins, dtype=torch.float64) < 0.5)
        seen.add(takes_qp)
        torch.testing.assert_close(hybrid(pred, normals=normals), qp if takes_qp else heuristic)
    assert seen == {True, False}


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_iter": 0}, ValueError, r"max_iter=0 must be a positive int"),
        ({"solve_ratio": 1.5}, ValueError, r"solve_ratio=1.5 must be in \[0, 1\]"),
        ({"inner_ratio": -0.1}, ValueError, r"inner_ratio=-0.1 must be in \[0, 1\]"),
        ({"reduction": "avg"}, ValueError, r"reduction='avg' must be 'mean', 'sum' or 'none'"),
        ({"solutions": torch.zeros(1, 3)}, TypeError, r"unexpected keyword argument 'solutions'"),
    ],
)
def test_bad_options(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ipo.ConeAligned(ipo.KnapsackLayer([[3, 4, 5]], [7]), **kwargs)


def test_cpsat_constraints_that_are_not_linear_are_named() -> None:
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    arcs = [(0, 1), (1, 2), (2, 0), (1, 0), (2, 1), (0, 2)]
    lits = [model.new_bool_var(f"a{t}{h}") for t, h in arcs]
    model.add_circuit([(t, h, lit) for (t, h), lit in zip(arcs, lits)]).with_name("tour")
    with pytest.raises(
        ValueError, match=r"ConeAligned: CpSatLayer: constraint 0 \('tour'\) is a CP-SAT circuit constraint"
    ):
        ipo.ConeAligned(ipo.CpSatLayer(model, lits, sense="min"))

    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(2)]
    starts = [model.new_int_var(0, 5, f"s{i}") for i in range(2)]
    tasks = [
        model.new_optional_fixed_size_interval_var(s, 2, lit, f"t{i}") for i, (s, lit) in enumerate(zip(starts, x))
    ]
    model.add_no_overlap(tasks)
    with pytest.raises(ValueError, match=r"constraint 0 \('t0'\) has enforcement literals \(only_enforce_if\)"):
        ipo.ConeAligned(ipo.CpSatLayer(model, x, sense="max"))

    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(2)]
    starts = [model.new_int_var(0, 5, f"s{i}") for i in range(2)]
    model.add_no_overlap([model.new_fixed_size_interval_var(s, 2, f"t{i}") for i, s in enumerate(starts)])
    model.add(x[0] + x[1] <= 1)
    with pytest.raises(ValueError, match=r"constraint 2 is a CP-SAT no_overlap constraint"):
        ipo.ConeAligned(ipo.CpSatLayer(model, x, sense="max"))


def test_rows_over_other_variables_are_named() -> None:
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(3)]
    load = model.new_int_var(0, 10, "load")
    model.add(load == 3 * x[0] + 4 * x[1] + 5 * x[2]).with_name("load")
    model.add(load <= 7)
    with pytest.raises(ValueError, match=r"constraint 0 \('load'\) involves variables other than the cost variables"):
        ipo.ConeAligned(ipo.CpSatLayer(model, x, sense="max"))

    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(3)]
    three = model.new_constant(3)  # a fixed variable is a constant of its rows
    model.add(x[0] + x[1] + x[2] + three <= 5)
    normals = ipo.ConeAligned(ipo.CpSatLayer(model, x, sense="max")).normals(torch.tensor([[1.0, 1.0, 0.0]]))
    assert normals[0, 0].tolist() == [1.0, 1.0, 1.0]  # x0 + x1 + x2 <= 2 binds


def test_enforcement_literals_are_refused() -> None:
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(3)]
    model.add(x[0] + x[1] <= 1).only_enforce_if(x[2])
    with pytest.raises(ValueError, match=r"constraint 0 has enforcement literals"):
        ipo.ConeAligned(ipo.CpSatLayer(model, x, sense="max"))


def test_a_layer_without_linear_rows() -> None:
    with pytest.raises(ValueError, match=r"ConeAligned: RankingLayer: its model has no linear description"):
        ipo.ConeAligned(ipo.RankingLayer(4))


@pytest.fixture
def cave() -> ipo.ConeAligned:
    return ipo.ConeAligned(ipo.KnapsackLayer([[3, 4, 5]], [7]))


def test_call_errors(cave: ipo.ConeAligned) -> None:
    pred, y = torch.rand(2, 3), torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    normals = cave.normals(y)
    with pytest.raises(ValueError, match=r"exactly one of the two"):
        cave(pred)
    with pytest.raises(ValueError, match=r"exactly one of the two"):
        cave(pred, y, normals=normals)
    with pytest.raises(ValueError, match=r"data \(capacity\) goes with true_sol"):
        cave(pred, normals=normals, capacity=torch.tensor([7.0]))
    with pytest.raises(ValueError, match=r"normals must be a float \(B, K, 3\) tensor"):
        cave(pred, normals=normals[:, :, :2])
    with pytest.raises(ValueError, match=r"normals has a non-finite entry"):
        cave(pred, normals=torch.full_like(normals, float("nan")))
    with pytest.raises(ValueError, match=r"3 predictions but 2 instances"):
        cave(torch.rand(3, 3), normals=normals)
    with pytest.raises(ValueError, match=r"true_sol must have shape \(B, 3\) or \(3\), got \(2, 4\)"):
        cave.normals(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"true_sol\[1\] has a non-finite entry nan at flat index 2"):
        cave.normals(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, float("nan")]]))
    with pytest.raises(
        ValueError,
        match=r"true_sol\[1\] is not a feasible decision of the model: the activity of the model's constraint 0 is 12",
    ):
        cave.normals(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(
        ValueError, match=r"true_sol\[0\] is not a feasible decision of the model: cost entry 2 \(flat index\) is -1"
    ):
        cave.normals(torch.tensor([[0.0, 0.0, -1.0]]))
    with pytest.raises(ValueError, match=r"unknown data 'cap'"):
        cave.normals(y, cap=torch.tensor([7.0]))


def test_cvxpy_routes() -> None:
    import cvxpy as cp

    # the generic route (Clarabel) of an LP: bounds as rows, the equality both ways
    c, x = cp.Parameter(3), cp.Variable(3)
    layer = ipo.CvxpyLayer(cp.Problem(cp.Minimize(c @ x), [x >= 0, x <= 1, cp.sum(x) == 2]), c, x, solver="CLARABEL")
    normals = ipo.ConeAligned(layer).normals(torch.tensor([[1.0, 1.0, 0.0]]))
    expected = [[1, 0, 0], [0, 1, 0], [0, 0, -1], [1, 1, 1], [-1, -1, -1]]
    np.testing.assert_array_equal(_rows(normals[0]), _rows(torch.tensor(expected)))
    # a second-order cone is not a linear row
    c, x = cp.Parameter(3), cp.Variable(3)
    with pytest.raises(ValueError, match=r"CvxpyLayer: the compiled problem has cone constraints"):
        ipo.ConeAligned(ipo.CvxpyLayer(cp.Problem(cp.Minimize(c @ x), [cp.norm(x, 2) <= 1]), c, x))
