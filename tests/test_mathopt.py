"""MathOptLayer and ModelBuilderLayer: decisions against a direct MathOpt / model_builder solve of
the same model with the same costs and data, parity serial / pool, refused elements, statuses."""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from ortools.linear_solver.python import model_builder as mb
from ortools.math_opt import model_pb2
from ortools.math_opt.python import mathopt

import idproj_or as ipo
from idproj_or.solvers.mathopt import mathopt_to_mp

EXACT = mathopt.SolveParameters(relative_gap_tolerance=0.0, absolute_gap_tolerance=0.0)


@dataclass
class Random:
    """A random bounded feasible model: variables in [0, ub] (the first ``n_cost`` take costs,
    the others carry the model's own objective), rows ``a x <= b`` (a >= 0, b >= 1, so x = 0 is
    feasible) and one equality ``x0 + x1 + x2 == e`` (e <= 1 <= every ub)."""

    a: np.ndarray
    b: np.ndarray
    ub: np.ndarray
    e: float
    own: np.ndarray  # own objective coefficients of the variables after the cost ones
    offset: float
    integer: bool
    maximize: bool
    n_cost: int

    @classmethod
    def draw(cls, rng: np.random.Generator, *, integer: bool, maximize: bool) -> Random:
        n_cost, n_own, m = 6, 2, 4
        n = n_cost + n_own
        return cls(
            a=rng.uniform(0, 1, size=(m, n)).round(3),
            b=rng.uniform(1, 3, size=m).round(3),
            ub=rng.integers(1, 4, size=n).astype(float),
            e=float(rng.integers(0, 2)) if integer else round(float(rng.uniform(0, 1)), 3),
            own=rng.uniform(-1, 1, size=n_own).round(3),
            offset=round(float(rng.uniform(-5, 5)), 3),
            integer=integer,
            maximize=maximize,
            n_cost=n_cost,
        )

    def mathopt(self, cost=None, rows=None, caps=None):
        """The MathOpt model; with ``cost`` its objective includes the predicted term, with
        ``rows`` / ``caps`` the first two rows' bounds and the first two variables' upper bounds
        are this instance's."""
        model = mathopt.Model()
        ub = self.ub.copy() if caps is None else np.concatenate([caps, self.ub[2:]])
        x = [model.add_variable(lb=0, ub=float(u), is_integer=self.integer, name=f"x{i}") for i, u in enumerate(ub)]
        b = self.b if rows is None else np.concatenate([rows, self.b[2:]])
        cts = [
            model.add_linear_constraint(sum(float(a) * v for a, v in zip(row, x)) <= float(bi))
            for row, bi in zip(self.a, b)
        ]
        model.add_linear_constraint(x[0] + x[1] + x[2] == self.e)
        objective = sum(float(c) * v for c, v in zip(self.own, x[self.n_cost :])) + self.offset
        if cost is not None:
            objective = objective + sum(float(c) * v for c, v in zip(cost, x[: self.n_cost]))
        model.set_objective(objective, is_maximize=self.maximize)
        return model, x[: self.n_cost], cts[:2]

    def model_builder(self, cost=None, rows=None, caps=None):
        model = mb.Model()
        ub = self.ub.copy() if caps is None else np.concatenate([caps, self.ub[2:]])
        x = [model.new_var(0, float(u), self.integer, f"x{i}") for i, u in enumerate(ub)]
        b = self.b if rows is None else np.concatenate([rows, self.b[2:]])
        cts = [model.add(sum(float(a) * v for a, v in zip(row, x)) <= float(bi)) for row, bi in zip(self.a, b)]
        model.add(x[0] + x[1] + x[2] == self.e)
        objective = sum(float(c) * v for c, v in zip(self.own, x[self.n_cost :])) + self.offset
        if cost is not None:
            objective = objective + sum(float(c) * v for c, v in zip(cost, x[: self.n_cost]))
        (model.maximize if self.maximize else model.minimize)(objective)
        return model, x[: self.n_cost], cts[:2]


def _direct_mathopt(r: Random, solver_type, cost, rows, caps):
    model, x, _ = r.mathopt(cost, rows, caps)
    result = mathopt.solve(model, solver_type, params=EXACT)
    assert result.termination.reason == mathopt.TerminationReason.OPTIMAL
    return np.array([result.variable_values(v) for v in x]), result.objective_value()


def _direct_model_builder(r: Random, name, cost, rows, caps):
    model, x, _ = r.model_builder(cost, rows, caps)
    solver = mb.Solver(name)
    if name == "scip":
        solver.set_solver_specific_parameters("limits/gap = 0")
    assert solver.solve(model) == mb.SolveStatus.OPTIMAL
    return np.array([solver.value(v) for v in x]), solver.objective_value


CASES = [
    (integer, maximize, solver)
    for integer, solvers in ((False, ("GLOP", "HIGHS")), (True, ("GSCIP", "HIGHS", "CP_SAT")))
    for maximize in (False, True)
    for solver in solvers
]


def _instances(r: Random, rng: np.random.Generator, batch: int):
    cost = rng.uniform(-2, 2, size=(batch, r.n_cost)).round(4)
    rows = rng.uniform(1, 3, size=(batch, 2)).round(3)
    caps = rng.integers(1, 4, size=(batch, 2)).astype(float)
    return cost, rows, caps


def _check(layer, direct, cost, rows, caps) -> None:
    y = layer(torch.from_numpy(cost), rows=torch.from_numpy(rows), caps=torch.from_numpy(caps)).numpy()
    objective = np.asarray(layer.last_info.objective)
    for i in range(len(cost)):
        want, total = direct(cost[i], rows[i], caps[i])
        np.testing.assert_allclose(y[i], want, atol=1e-6, err_msg=f"instance {i}")
        assert objective[i] == pytest.approx(total, abs=1e-6)


@pytest.mark.parametrize(("integer", "maximize", "solver"), CASES)
def test_mathopt_decisions_equal_direct_solve(integer: bool, maximize: bool, solver: str) -> None:
    rng = np.random.default_rng(CASES.index((integer, maximize, solver)))
    solver_type = getattr(mathopt.SolverType, solver)
    for _ in range(3):
        r = Random.draw(rng, integer=integer, maximize=maximize)
        model, x, cts = r.mathopt()
        layer = ipo.MathOptLayer(model, x, solver=solver_type, data={"rows": cts, "caps": x[:2]})
        cost, rows, caps = _instances(r, rng, 12)
        _check(layer, functools.partial(_direct_mathopt, r, solver_type), cost, rows, caps)


@pytest.mark.parametrize(("integer", "maximize", "solver"), CASES)
def test_model_builder_decisions_equal_direct_solve(integer: bool, maximize: bool, solver: str) -> None:
    rng = np.random.default_rng(100 + CASES.index((integer, maximize, solver)))
    name = {"GSCIP": "scip"}.get(solver, solver.lower())
    for _ in range(3):
        r = Random.draw(rng, integer=integer, maximize=maximize)
        model, x, cts = r.model_builder()
        layer = ipo.ModelBuilderLayer(model, x, solver=name, data={"rows": cts, "caps": x[:2]})
        cost, rows, caps = _instances(r, rng, 12)
        _check(layer, functools.partial(_direct_model_builder, r, name), cost, rows, caps)


def test_parity_serial_vs_pool(force_pool) -> None:
    rng = np.random.default_rng(7)
    r = Random.draw(rng, integer=True, maximize=True)
    cost, rows, caps = (torch.from_numpy(a) for a in _instances(r, rng, 24))
    for make in (
        lambda **o: ipo.MathOptLayer(*r.mathopt()[:2], solver=mathopt.SolverType.GSCIP, **o),
        lambda **o: ipo.ModelBuilderLayer(*r.model_builder()[:2], solver="highs", **o),
    ):
        serial = make()(cost)
        pooled = force_pool(make(workers=2))
        assert torch.equal(pooled(cost), serial)
        assert pooled.last_info.mode == "pool"
    model, x, cts = r.mathopt()
    data = {"rows": cts, "caps": x[:2]}
    serial = ipo.MathOptLayer(model, x, data=data)(cost, rows=rows, caps=caps)
    pooled = force_pool(ipo.MathOptLayer(model, x, data=data, workers=2))
    assert torch.equal(pooled(cost, rows=rows, caps=caps), serial)


def test_mathopt_ids_with_gaps_map_to_positions() -> None:
    # Deleted variables and constraints leave gaps in MathOpt's ids; the layer maps ids to rows.
    model = mathopt.Model()
    x = [model.add_variable(lb=0, ub=2, name=f"x{i}") for i in range(5)]
    rows = [model.add_linear_constraint(x[i] + x[i + 1] <= 3) for i in range(4)]
    model.delete_variable(x[1])
    model.delete_linear_constraint(rows[0])
    kept = [x[0], x[4], x[2]]
    layer = ipo.MathOptLayer(model, kept, solver=mathopt.SolverType.GLOP, sense="max", data={"cap": [rows[3]]})
    y = layer(torch.tensor([1.0, 2.0, 3.0]), cap=torch.tensor([1.5]))
    # x0 is in no row (its row was deleted), x2 + x3 <= 3 and x3 + x4 <= 1.5: x3 = 0 is best.
    assert y.tolist() == [2.0, 1.5, 2.0]


def test_auto_projection_uses_equality_rows() -> None:
    # x0 + x1 + x2 == e over cost variables: projection="auto" removes the mean of those costs.
    model = mathopt.Model()
    x = [model.add_variable(lb=0, ub=1) for _ in range(3)]
    model.add_linear_constraint(x[0] + x[1] + x[2] == 1)
    layer = ipo.MathOptLayer(model, x, solver=mathopt.SolverType.GLOP, projection="auto")
    cost = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    layer(cost).sum().backward()
    assert layer(cost).tolist() == [1.0, 0.0, 0.0]
    torch.testing.assert_close(cost.grad, torch.zeros(3))


def _mathopt_with(add) -> tuple[mathopt.Model, list]:
    model = mathopt.Model()
    x = [model.add_variable(lb=0, ub=1, name=f"x{i}") for i in range(2)]
    add(model, x)
    return model, x


@pytest.mark.parametrize(
    ("add", "match"),
    [
        (lambda m, x: m.minimize(x[0] * x[1]), "objective has a quadratic part"),
        (lambda m, x: m.add_quadratic_constraint(expr=x[0] * x[0] + x[1], ub=1), "quadratic constraints"),
        (
            lambda m, x: m.add_indicator_constraint(indicator=m.add_binary_variable(), implied_constraint=x[0] <= 0.5),
            "indicator constraints",
        ),
        (lambda m, x: m.add_auxiliary_objective(priority=1, expr=x[0]), "auxiliary objectives"),
    ],
)
def test_mathopt_refuses_nonlinear_elements(add, match: str) -> None:
    model, x = _mathopt_with(add)
    with pytest.raises(ValueError, match=f"MathOptLayer: the model.*{match}"):
        ipo.MathOptLayer(model, x)


@pytest.mark.parametrize(
    ("field", "match"),
    [
        ("second_order_cone_constraints", "second-order cone constraints"),
        ("sos1_constraints", "SOS1 constraints"),
        ("sos2_constraints", "SOS2 constraints"),
    ],
)
def test_mathopt_proto_refuses_cone_and_sos_constraints(field: str, match: str) -> None:
    # MathOpt's Python Model cannot state these; a proto from elsewhere can.
    proto = model_pb2.ModelProto()
    proto.variables.ids.append(0)
    proto.variables.lower_bounds.append(0.0)
    proto.variables.upper_bounds.append(1.0)
    proto.variables.integers.append(False)
    getattr(proto, field)[0].SetInParent()
    with pytest.raises(ValueError, match=f"where: the model has {match}"):
        mathopt_to_mp(proto, where="where")


@pytest.mark.parametrize(
    ("solver", "match"),
    [
        ("GUROBI", "needs Gurobi's library and licence"),
        ("OSQP", "QP solver"),
        ("SCS", "conic solver"),
        ("GLPK", "not linked"),
        ("SANTORINI", "experimental"),
    ],
)
def test_mathopt_refuses_unsupported_solver_types(solver: str, match: str) -> None:
    model, x = _mathopt_with(lambda m, x: None)
    with pytest.raises(ValueError, match=f"solver=SolverType.{solver} .*{match}.*supported: SolverType.GLOP"):
        ipo.MathOptLayer(model, x, solver=getattr(mathopt.SolverType, solver))


def test_mathopt_refuses_lp_solver_with_integer_variables_and_foreign_elements() -> None:
    model = mathopt.Model()
    x = [model.add_binary_variable(name=f"x{i}") for i in range(2)]
    with pytest.raises(ValueError, match=r"SolverType\.GLOP solves LPs only and the model has integer variables"):
        ipo.MathOptLayer(model, x, solver=mathopt.SolverType.GLOP)
    with pytest.raises(ValueError, match="OR-Tools' SAT backend solves continuous variables only approximately"):
        ipo.MathOptLayer(model, [model.add_variable(lb=0, ub=1, name="z")], solver=mathopt.SolverType.CP_SAT)
    other = mathopt.Model()
    y = other.add_binary_variable(name="y")
    c = other.add_linear_constraint(y <= 1, name="c")
    with pytest.raises(ValueError, match=r"MathOptLayer: variables\[2\] \('y'\) is not a variable of this model"):
        ipo.MathOptLayer(model, [*x, y])
    with pytest.raises(ValueError, match=r"data 'cap'\[0\] \('c'\) is not a linear constraint of this model"):
        ipo.MathOptLayer(model, x, data={"cap": [c]})
    with pytest.raises(ValueError, match=r"data 'cap'\[0\] is a float; expected a linear constraint"):
        ipo.MathOptLayer(model, x, data={"cap": [1.0]})
    with pytest.raises(TypeError, match=r"model must be an ortools\.math_opt\.python\.mathopt\.Model, got Model"):
        ipo.MathOptLayer(mb.Model(), x)


def test_model_builder_refuses_enforced_constraints_and_unknown_solvers() -> None:
    model = mb.Model()
    x = [model.new_bool_var(f"x{i}") for i in range(2)]
    with pytest.raises(ValueError, match=r"solver='gurobi' is not supported.*supported: 'glop'"):
        ipo.ModelBuilderLayer(model, x, solver="gurobi")
    model.add_enforced(x[0] + x[1] <= 1, x[0], True)
    with pytest.raises(ValueError, match="ModelBuilderLayer: the model has enforced \\(indicator\\)"):
        ipo.ModelBuilderLayer(model, x)
    other = mb.Model()
    y = other.new_bool_var("y")
    with pytest.raises(ValueError, match=r"variables\[0\] \('y'\) is not a variable of this model"):
        ipo.ModelBuilderLayer(mb.Model(), [y])


def test_statuses_infeasible_and_unbounded() -> None:
    # x0 in [f, 5], x1 >= 0 unbounded above: f = 10 is infeasible, a negative cost on x1 unbounded.
    model = mathopt.Model()
    x = [model.add_variable(lb=0, ub=5 if i == 0 else np.inf, name=f"x{i}") for i in range(2)]
    floor = model.add_linear_constraint(x[0] >= 1)
    layer = ipo.MathOptLayer(model, x, solver=mathopt.SolverType.HIGHS, data={"floor": [floor]}, on_failure="nan")
    with pytest.warns(ipo.SolverWarning, match="2 of 3 instances have no decision"):
        y = layer(torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, -1.0]]), floor=torch.tensor([[1.0], [10.0], [1.0]]))
    assert layer.last_info.status == ("optimal", "infeasible", "unbounded")
    assert y[0].tolist() == [1.0, 0.0] and torch.isnan(y[1:]).all()
    assert layer.last_info.bound[0] == pytest.approx(1.0)
    model_b = mb.Model()
    z = [model_b.new_bool_var(f"z{i}") for i in range(2)]
    model_b.add(z[0] + z[1] >= 3)
    with pytest.raises(ipo.SolverError, match=r"ModelBuilderLayer: instance 0 .*INFEASIBLE") as info:
        ipo.ModelBuilderLayer(model_b, z)(torch.ones(2))
    assert info.value.status == "infeasible"


def test_duals_and_objective_include_the_models_own_objective() -> None:
    # max x0 + 2 x1 + c.x s.t. x0 + x1 <= 1 (GLOP): the row's dual is the best marginal value.
    model = mathopt.Model()
    x = [model.add_variable(lb=0, ub=1, name=f"x{i}") for i in range(2)]
    model.add_linear_constraint(x[0] + x[1] <= 1)
    model.maximize(x[0] + 2 * x[1])
    layer = ipo.MathOptLayer(model, x, solver=mathopt.SolverType.GLOP)
    y = layer.solve(torch.tensor([0.5, 0.0]), duals=True)
    assert y.tolist() == [0.0, 1.0]
    assert layer.last_info.objective.tolist() == [2.0]
    np.testing.assert_allclose(layer.last_info.duals, [[2.0]])


@pytest.mark.parametrize("api", ["mathopt", "model_builder"])
def test_a_time_limit_stops_a_hard_solve_with_a_status_that_says_so(api: str) -> None:
    # a subset sum with no solution found for seconds: the limit ends it, never a decision as optimal
    w = np.random.default_rng(1).integers(10**6, 10**7, size=60)
    target = int(w.sum() // 2) + 1
    if api == "mathopt":
        m = mathopt.Model()
        x = [m.add_binary_variable(name=f"x{i}") for i in range(60)]
        m.add_linear_constraint(sum(int(a) * v for a, v in zip(w, x)) == target)
        layer = ipo.MathOptLayer(m, x, solver=mathopt.SolverType.GSCIP, time_limit=0.5, on_failure="nan")
    else:
        m = mb.Model()
        x = [m.new_bool_var(f"x{i}") for i in range(60)]
        m.add(sum(int(a) * v for a, v in zip(w, x)) == target)
        layer = ipo.ModelBuilderLayer(m, x, solver="scip", time_limit=0.5, on_failure="nan")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ipo.SolverWarning)
        layer(torch.rand(2, 60) + 1.0)
    assert time.perf_counter() - t0 < 5.0
    assert set(layer.last_info.status) <= {"time_limit", "feasible"}
