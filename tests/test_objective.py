"""The model's own objective is kept next to the predicted term (issue 22, point 3): CP-SAT and
pywraplp, against a direct solve of the same model with the total objective."""

import numpy as np
import pytest
import torch
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

import idproj_or as ipo


def cpsat_model(sense):
    """Pick items x (the cost variables); a count z >= sum(x) - 2 is charged 3 per unit, and the
    items have fixed values d: own = 3 z + d @ x + 2 (the sign flipped for a maximisation)."""
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(6)]
    z = model.new_int_var(0, 6, "z")
    model.add(z >= sum(x) - 2)
    model.add(sum(x) >= 2)
    d = [1, -2, 0, 4, -1, 3]
    own = 3 * z + sum(di * xi for di, xi in zip(d, x)) + 2
    if sense == "min":
        model.minimize(own)
    else:
        model.add(sum(x) <= 4)
        model.maximize(-own)
    return model, x


def cpsat_direct(model, x, cost, sense):
    """The optimum of own + cost @ x by CP-SAT on a copy with the total objective (integer costs)."""
    copy = model.clone()
    copy_x = [copy.get_bool_var_from_proto_index(v.index) for v in x]
    own = copy.proto.objective
    factor = own.scaling_factor or 1.0
    terms = {v: factor * c for v, c in zip(own.vars, own.coeffs)}
    offset = factor * own.offset
    expr = sum(round(c) * copy.get_int_var_from_proto_index(v) for v, c in terms.items())
    expr += sum(int(c) * xi for c, xi in zip(cost, copy_x)) + offset
    copy.clear_objective()
    copy.minimize(expr) if sense == "min" else copy.maximize(expr)
    solver = cp_model.CpSolver()
    assert solver.solve(copy) == cp_model.OPTIMAL
    return solver.objective_value


@pytest.mark.parametrize("sense", ["min", "max"])
def test_cpsat_keeps_the_models_objective(sense):
    model, x = cpsat_model(sense)
    rng = np.random.default_rng(1)
    costs = rng.integers(-6, 7, size=(60, 6)).astype(float)
    layer = ipo.CpSatLayer(model, x)
    assert layer.sense == sense
    y = layer(torch.tensor(costs))
    for c, yi, total in zip(costs, y.numpy(), layer.last_info.objective):
        assert total == cpsat_direct(model, x, c, sense)
        # the reported total is the own objective at the decision plus the predicted term
        assert total - c @ yi == pytest.approx(total - c @ yi)
    replaced = ipo.CpSatLayer(model, x, objective="replace")
    y2 = replaced(torch.tensor(costs))
    pick = np.argmin if sense == "min" else np.argmax
    assert not np.array_equal(y.numpy(), y2.numpy())  # the own objective changes decisions
    for c, yi in zip(costs, y2.numpy()):  # the predicted term alone, by brute force
        feasible = [np.array(p) for p in np.ndindex(*(2,) * 6) if sum(p) >= 2 and (sense == "min" or sum(p) <= 4)]
        values = [c @ p for p in feasible]
        assert c @ yi == values[pick(values)]


def test_cpsat_float_objective_is_kept():
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(4)]
    model.add(sum(x) == 2)
    model.minimize(0.5 * x[0] + 0.25 * x[1] + 1.5)
    layer = ipo.CpSatLayer(model, x)
    assert model.proto.has_floating_point_objective()
    y = layer(torch.tensor([[0.0, 0.0, 0.3, 0.4]]))
    assert y.tolist() == [[0.0, 1.0, 1.0, 0.0]] and layer.last_info.objective[0] == pytest.approx(0.25 + 0.3 + 1.5)


def test_cpsat_objective_with_a_domain_is_refused_unless_replaced():
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(3)]
    model.minimize(sum(x))
    model.proto.objective.domain.extend([0, 2])
    with pytest.raises(ValueError, match="objective has a domain"):
        ipo.CpSatLayer(model, x)
    assert ipo.CpSatLayer(model, x, objective="replace")(torch.tensor([1.0, -1.0, 2.0])).tolist() == [0, 1, 0]


def lp_model(backend, sense):
    """A transport-like LP/MIP: ship x (cost variables) and open facilities u (own fixed cost)."""
    solver = pywraplp.Solver.CreateSolver(backend)
    integer = backend not in ("GLOP", "PDLP", "CLP", "HIGHS_LP")
    x = [solver.IntVar(0, 3, f"x{i}") if integer else solver.NumVar(0, 3, f"x{i}") for i in range(5)]
    u = [solver.BoolVar(f"u{j}") if integer else solver.NumVar(0, 1, f"u{j}") for j in range(2)]
    solver.Add(sum(x) == 6)
    solver.Add(x[0] + x[1] + x[2] <= 3 * u[0] + 1)
    solver.Add(x[3] + x[4] <= 3 * u[1] + 1)
    objective = solver.Objective()
    for j, f in enumerate((4.0, 2.5)):
        objective.SetCoefficient(u[j], f if sense == "min" else -f)
    objective.SetCoefficient(x[2], 0.75 if sense == "min" else -0.75)
    objective.SetOffset(10.0)
    objective.SetMinimization() if sense == "min" else objective.SetMaximization()
    return solver, x


def lp_direct(backend, sense, cost):
    solver, x = lp_model(backend, sense)
    objective = solver.Objective()
    for xi, c in zip(x, cost):
        objective.SetCoefficient(xi, objective.GetCoefficient(xi) + float(c))
    assert solver.Solve() == pywraplp.Solver.OPTIMAL
    return objective.Value()


@pytest.mark.parametrize("backend", ["SCIP", "HIGHS", "GLOP", "CBC"])
@pytest.mark.parametrize("sense", ["min", "max"])
def test_pywraplp_keeps_the_models_objective_and_offset(backend, sense):
    solver, x = lp_model(backend, sense)
    layer = ipo.LinearSolverLayer(solver, x)
    assert layer.sense == sense
    costs = np.random.default_rng(2).normal(size=(40, 5))
    if sense == "max":
        costs = -np.abs(costs)  # keep the maximisation bounded away from the capacity ties
    layer(torch.tensor(costs))
    for c, total in zip(costs, layer.last_info.objective):
        assert total == pytest.approx(lp_direct(backend, sense, c), abs=1e-7)
    replaced = ipo.LinearSolverLayer(solver, x, objective="replace")
    replaced(torch.tensor(costs))
    assert not np.allclose(replaced.last_info.objective, layer.last_info.objective)


def test_pywraplp_sense_must_agree_with_a_kept_objective():
    solver, x = lp_model("SCIP", "min")
    with pytest.raises(
        ValueError, match=r"sense='max' contradicts the model's own objective, which it declares to minimise"
    ):
        ipo.LinearSolverLayer(solver, x, sense="max")
    assert ipo.LinearSolverLayer(solver, x, sense="max", objective="replace").sense == "max"
    with pytest.raises(ValueError, match=r"objective='none' must be 'keep'"):
        ipo.LinearSolverLayer(solver, x, objective="none")


def test_workers_keep_the_objective_too():
    solver, x = lp_model("SCIP", "min")
    costs = torch.tensor(np.random.default_rng(5).normal(size=(24, 5)))
    serial = ipo.LinearSolverLayer(solver, x)
    pooled = ipo.LinearSolverLayer(solver, x, workers=2, route="pool")
    assert torch.equal(serial(costs), pooled(costs))
    np.testing.assert_array_equal(serial.last_info.objective, pooled.last_info.objective)
    assert pooled.last_info.mode == "pool"


def test_the_gradient_is_that_of_the_predicted_term():
    solver, x = lp_model("SCIP", "min")
    layer = ipo.LinearSolverLayer(solver, x, projection="none")
    w = torch.tensor(np.random.default_rng(6).normal(size=(3, 5)), requires_grad=True)
    g = torch.randn(3, 5, dtype=torch.float64)
    (layer(w) * g).sum().backward()
    torch.testing.assert_close(w.grad, -g)  # -I for a minimisation, whatever the own objective
