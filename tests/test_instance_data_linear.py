"""LinearSolverLayer with per-instance data (bounds of named constraints and variables), its
bound, duals, reduced costs and binding rows, and cost groups: against the backend solving a
fresh pywraplp model with the same bounds set by hand."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
import torch
from ortools.linear_solver import linear_solver_pb2, pywraplp

import idproj_or as ipo

# Rows without a decision (on_failure="nan") warn by design here.
pytestmark = pytest.mark.filterwarnings("ignore::idproj_or.SolverWarning")

INF = math.inf
LE, GE, EQ, RANGE = range(4)
LP = ("GLOP", "CLP", "PDLP", "HIGHS_LP")
# PDLP is a first-order method: accurate to its default tolerance only.
TOL = {"PDLP": 1e-3}


class Rows(NamedTuple):
    """A random model's numbers: n variables in [0, upper]; rows LE, GE, EQ, RANGE."""

    upper: np.ndarray
    a: np.ndarray  # (4, n)
    lo: np.ndarray  # (4,) own bounds, -inf / inf for none
    hi: np.ndarray


def random_rows(rng: np.random.Generator, integer: bool, n: int = 5) -> Rows:
    upper = rng.integers(1, 4, n).astype(float)
    x0 = rng.integers(0, upper + 1).astype(float)
    # Integer rows for a MIP (exact activities); generic float rows for an LP (a nondegenerate
    # optimum: unique duals to compare).
    a = rng.integers(-2, 5, (4, n)).astype(float) if integer else rng.uniform(-2, 5, (4, n))
    act = a @ x0
    lo = np.array([-INF, act[GE] - rng.integers(0, 3), act[EQ], act[RANGE] - 2])
    hi = np.array([act[LE] + rng.integers(0, 4), INF, act[EQ], act[RANGE] + 2])
    return Rows(upper, a, lo, hi)


def layer_model(backend: str, rows: Rows):
    """The model as a user writes it: each row by its own kind of statement."""
    solver = pywraplp.Solver.CreateSolver(backend)
    integer = backend not in LP
    x = [solver.IntVar(0, u, f"x{i}") if integer else solver.NumVar(0, u, f"x{i}") for i, u in enumerate(rows.upper)]
    expr = [sum(float(c) * v for c, v in zip(row, x)) for row in rows.a]
    cts = [
        solver.Add(expr[LE] <= rows.hi[LE]),
        solver.Add(expr[GE] >= rows.lo[GE]),
        solver.Add(expr[EQ] == rows.lo[EQ]),
        solver.Constraint(rows.lo[RANGE], rows.hi[RANGE]),
    ]
    for c, v in zip(rows.a[RANGE], x):
        cts[RANGE].SetCoefficient(v, float(c))
    return solver, x, cts


class Reference(NamedTuple):
    x: np.ndarray
    objective: float
    duals: np.ndarray
    reduced_costs: np.ndarray


def reference(backend, rows, lo, hi, var_lo, var_hi, cost, sense) -> Reference | None:
    """A fresh pywraplp model of ``backend`` with these bounds, solved to a zero gap; None if
    infeasible."""
    if np.any(var_lo > var_hi) or np.any(lo > hi):
        return None  # no point lies in a crossed range
    solver = pywraplp.Solver.CreateSolver(backend)
    n = len(rows.upper)
    integer = backend not in LP
    x = [(solver.IntVar if integer else solver.NumVar)(var_lo[i], var_hi[i], f"x{i}") for i in range(n)]
    cts = []
    for k, row in enumerate(rows.a):
        ct = solver.Constraint(lo[k], hi[k])
        for c, v in zip(row, x):
            ct.SetCoefficient(v, float(c))
        cts.append(ct)
    objective = solver.Objective()
    for i, c in enumerate(cost):
        objective.SetCoefficient(x[i % n], objective.GetCoefficient(x[i % n]) + float(c))
    objective.SetMaximization() if sense == "max" else objective.SetMinimization()
    params = pywraplp.MPSolverParameters()
    if integer:
        params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 0.0)
    status = solver.Solve(params)
    if status == pywraplp.Solver.INFEASIBLE:
        return None
    assert status == pywraplp.Solver.OPTIMAL
    duals = np.array([ct.dual_value() for ct in cts]) if not integer else np.zeros(4)
    reduced = np.array([x[i % n].reduced_cost() for i in range(len(cost))]) if not integer else np.zeros(0)
    return Reference(np.array([v.solution_value() for v in x]), objective.Value(), duals, reduced)


def instance_bounds(rows: Rows, cap=None, band=None, ub=None, box=None):
    """The bounds an instance's data gives, by the documented rule (single values: <= upper,
    >= lower, == both; variables upper; pairs both)."""
    lo, hi = rows.lo.copy(), rows.hi.copy()
    var_lo, var_hi = np.zeros(len(rows.upper)), rows.upper.copy()
    if cap is not None:
        for k, v in enumerate(cap):
            if np.ndim(v):
                lo[k], hi[k] = v
            elif k == GE:
                lo[k] = v
            elif k == EQ:
                lo[k] = hi[k] = v
            else:
                hi[k] = v
    if band is not None:
        lo[RANGE], hi[RANGE] = band[0]
    if ub is not None:
        var_hi[:2] = ub
    if box is not None:
        var_lo[2], var_hi[2] = box[0]
    return lo, hi, var_lo, var_hi


def random_data(rows: Rows, rng: np.random.Generator, b: int, pairs: bool, integer: bool) -> dict[str, np.ndarray]:
    """Per-instance values near the model's own bounds; some make the instance infeasible."""

    def near(center, width, size):
        step = rng.integers(-width, width + 1, size) if integer else rng.uniform(-width, width, size)
        return center + step

    own = np.where(np.isfinite(rows.lo), rows.lo, rows.hi)[:3]
    cap = near(own, 3, (b, 3))
    if pairs:
        cap = np.stack([cap - abs(near(0, 2, (b, 3))), cap], axis=-1)
    band_lo = near(rows.lo[RANGE], 3, b)
    box_lo = rng.integers(0, 2, b)
    return {
        "cap": cap,
        "band": np.stack([band_lo, band_lo + abs(near(0, 3, b))], axis=-1)[:, None, :],
        "ub": rng.integers(-1, 4, (b, 2)).astype(float),
        "box": np.stack([box_lo, box_lo + rng.integers(0, 2, b)], axis=-1)[:, None, :].astype(float),
    }


def make_layer(backend: str, rows: Rows, sense: str, *, repeat: bool = False, **options):
    solver, x, cts = layer_model(backend, rows)
    data = {"cap": cts[:3], "band": [cts[RANGE]], "ub": x[:2], "box": [x[2]]}
    variables = [*x, x[0]] if repeat else x
    return ipo.LinearSolverLayer(solver, variables, sense=sense, data=data, **options), solver


def tensors(data: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in data.items()}


def check_batch(backend, layer, rows, costs, data, sense, *, duals=False):
    integer = backend not in LP
    tol = TOL.get(backend, 1e-7)
    if duals:
        y = layer.solve(torch.from_numpy(costs), duals=True, **tensors(data))
    else:
        y = layer(torch.from_numpy(costs), **tensors(data))
    info = layer.last_info
    infeasible = 0
    for i, cost in enumerate(costs):
        bounds = instance_bounds(rows, **{k: v[i] for k, v in data.items()})
        ref = reference(backend, rows, *bounds, cost, sense)
        if ref is None:
            infeasible += 1
            assert info.status[i] == "infeasible", (i, info.solver_status[i])
            assert torch.isnan(y[i]).all()
            continue
        assert info.status[i] == "optimal"
        scale = 1 + abs(ref.objective)
        assert abs(info.objective[i] - ref.objective) <= tol * scale
        assert abs(info.bound[i] - ref.objective) <= tol * scale
        if integer:
            np.testing.assert_array_equal(y[i].numpy(), ref.x[: y.shape[1]])
        else:
            np.testing.assert_allclose(y[i].numpy(), ref.x[np.arange(y.shape[1]) % len(ref.x)], atol=tol * 10)
        if duals and backend in ("GLOP", "CLP", "PDLP"):
            np.testing.assert_allclose(info.duals[i], ref.duals, atol=tol * 10)
            np.testing.assert_allclose(info.reduced_costs[i], ref.reduced_costs, atol=tol * 10)
        if duals and integer:
            lo, hi = bounds[:2]
            act = rows.a @ y[i].numpy()  # integer rows and decisions: exact
            np.testing.assert_array_equal(info.binding[i], (act == lo) | (act == hi))
    return infeasible


# (backend, models, instances per batch): several hundred instances for the main backends.
RANDOM = [("GLOP", 8, 10), ("CBC", 5, 10), ("SCIP", 4, 10), ("HIGHS", 5, 10), ("CLP", 3, 10), ("HIGHS_LP", 2, 10)]


@pytest.mark.parametrize(("backend", "models", "b"), RANDOM)
def test_random_instances_match_a_fresh_model_with_the_same_bounds(backend, models, b):
    rng = np.random.default_rng(sum(map(ord, backend)))
    integer = backend not in LP
    infeasible = total = 0
    for trial in range(models):
        rows = random_rows(rng, integer)
        sense = ("min", "max")[trial % 2]
        layer, solver = make_layer(backend, rows, sense, on_failure="nan")
        before = linear_solver_pb2.MPModelProto()
        solver.ExportModelToProto(before)
        for fields in (("cap", "band", "ub", "box"), ("cap",), (), ("ub", "band")):
            costs = rng.uniform(-10, 10, (b, len(rows.upper)))
            data = random_data(rows, rng, b, pairs=trial % 4 >= 2, integer=integer)
            infeasible += check_batch(backend, layer, rows, costs, {k: data[k] for k in fields}, sense)
            total += b
        after = linear_solver_pb2.MPModelProto()
        solver.ExportModelToProto(after)
        assert after == before  # the model is left untouched
    assert 0.1 * total < infeasible < 0.7 * total


@pytest.mark.parametrize("backend", ["GLOP", "CLP", "PDLP"])
def test_duals_and_reduced_costs_are_the_solvers_own(backend):
    rng = np.random.default_rng(7)
    for trial in range(4):
        rows = random_rows(rng, integer=False)
        sense = ("min", "max")[trial % 2]
        # x0 repeated in the costs: its reduced cost at both positions.
        layer, _ = make_layer(backend, rows, sense, repeat=True, on_failure="nan")
        costs = rng.uniform(-10, 10, (12, 6))
        own = np.where(np.isfinite(rows.lo), rows.lo, rows.hi)[:3]
        data = {"cap": own + rng.uniform(-0.3, 0.3, (12, 3)), "box": random_data(rows, rng, 12, False, False)["box"]}
        assert check_batch(backend, layer, rows, costs, data, sense, duals=True) <= 6
        info = layer.last_info
        assert info.binding is None and info.duals.shape == (12, 4) and info.reduced_costs.shape == (12, 6)
        solved = [i for i, s in enumerate(info.status) if s == "optimal"]
        np.testing.assert_array_equal(info.reduced_costs[solved, 0], info.reduced_costs[solved, 5])


def test_a_dual_is_d_objective_d_bound_in_the_objectives_sense():
    rng = np.random.default_rng(8)
    checked = 0
    for sense in ("min", "max", "min", "max"):
        rows = random_rows(rng, integer=False)
        layer, _ = make_layer("GLOP", rows, sense)
        cost = torch.from_numpy(rng.uniform(-10, 10, 5))
        cap = torch.from_numpy(np.where(np.isfinite(rows.lo), rows.lo, rows.hi)[:3])
        layer.solve(cost, duals=True, cap=cap)
        duals = layer.last_info.duals[0]
        base = layer.last_info.objective[0]
        for k in range(3):  # move one row's bound by h: the objective moves by h * dual
            h = 1e-6
            moved = cap.clone()
            moved[k] += h
            layer.solve(cost, cap=moved)
            np.testing.assert_allclose((layer.last_info.objective[0] - base) / h, duals[k], atol=1e-4)
            checked += duals[k] != 0
    assert checked >= 3


def test_highs_lp_reports_binding_rows_not_duals():
    rng = np.random.default_rng(9)
    rows = random_rows(rng, integer=False)
    layer, _ = make_layer("HIGHS_LP", rows, "min", on_failure="nan")
    costs = rng.uniform(-10, 10, (8, 5))
    y = layer.solve(torch.from_numpy(costs), duals=True)
    info = layer.last_info
    assert info.duals is None and info.reduced_costs is None
    for i in range(8):
        act = rows.a @ y[i].numpy()
        scale = np.maximum(1, np.abs(rows.a) @ np.abs(y[i].numpy()))
        expected = (np.abs(act - rows.lo) <= 1e-9 * scale) | (np.abs(act - rows.hi) <= 1e-9 * scale)
        np.testing.assert_array_equal(info.binding[i], expected)
        assert info.binding[i, EQ]


def test_broadcast_data_equals_batched_and_pairs():
    rng = np.random.default_rng(10)
    rows = random_rows(rng, integer=True)
    layer, _ = make_layer("SCIP", rows, "max", on_failure="nan")
    costs = torch.from_numpy(rng.uniform(-10, 10, (5, 5)))
    cap = torch.from_numpy(np.where(np.isfinite(rows.lo), rows.lo, rows.hi)[:3])
    one = layer(costs, cap=cap)
    assert torch.equal(one, layer(costs, cap=cap.expand(5, 3)))
    assert torch.equal(one, layer(costs))  # the model's own bounds
    pairs = torch.from_numpy(np.stack([rows.lo[:3].clip(-1e30), rows.hi[:3].clip(None, 1e30)], axis=-1))
    assert torch.equal(one, layer(costs, cap=pairs))
    # "auto" does not use an equality that data names (a pair can open it into a range).
    solver, x, _ = layer_model("SCIP", rows)
    assert ipo.LinearSolverLayer(solver, x).handle.invariance_basis().shape == (1, 5)
    assert layer.handle.invariance_basis().shape == (0, 5)


def test_infeasible_instance_raises_with_its_index():
    rng = np.random.default_rng(11)
    rows = random_rows(rng, integer=True)
    for backend in ("CBC", "GLOP"):  # the pywraplp and the model_builder routes
        layer, _ = make_layer(backend, rows, "min")
        ub = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, 1.0]])  # x0 <= -1 < 0: infeasible
        with pytest.raises(ipo.SolverError, match=r"instance 1 of the batch has no solution") as err:
            layer(torch.ones(3, 5), ub=ub)
        assert err.value.index == 1 and err.value.status == "infeasible"
        assert err.value.solver_status == "INFEASIBLE_BOUNDS"
        eq = torch.tensor([float(np.abs(rows.a[EQ]) @ rows.upper + 1)])  # beyond any activity
        with pytest.raises(ipo.SolverError, match=r"instance 0 of the batch has no solution") as err:
            layer(torch.ones(5), cap=torch.cat([torch.tensor([rows.hi[LE], rows.lo[GE]]), eq]))
        assert err.value.status == "infeasible" and err.value.solver_status == "INFEASIBLE"


def test_construction_refuses_bad_data():
    solver = pywraplp.Solver.CreateSolver("SCIP")
    x = [solver.IntVar(0, 5, f"x{i}") for i in range(3)]
    le = solver.Add(x[0] + x[1] <= 4)
    other = pywraplp.Solver.CreateSolver("SCIP")
    y = other.IntVar(0, 3, "y")
    other_ct = other.Add(y <= 2)

    def make(data):
        return ipo.LinearSolverLayer(solver, x, data=data)

    with pytest.raises(ValueError, match=r"data 'c'\[1\] \('.*'\) is not a constraint of this solver"):
        make({"c": [le, other_ct]})
    with pytest.raises(ValueError, match=r"data 'v'\[0\] \('y'\) is not a variable of this solver"):
        make({"v": [y]})
    with pytest.raises(ValueError, match=r"data 'c' is empty"):
        make({"c": []})
    with pytest.raises(ValueError, match=r"data 'c' mixes constraints and variables"):
        make({"c": [le, x[0]]})
    with pytest.raises(ValueError, match=r"data 'd'\[0\] is a constraint already named in data 'c'"):
        make({"c": [le], "d": [le]})
    with pytest.raises(ValueError, match=r"data 'c'\[0\] is a float; expected a constraint"):
        make({"c": [4.0]})
    with pytest.raises(ValueError, match=r"data must be a dict"):
        make([le])
    with pytest.raises(ValueError, match=r"data name 'duals' must be a Python identifier, used once, and none of"):
        make({"duals": [le]})
    layer = make({"cap": [le], "ub": x[:2]})
    with pytest.raises(
        ValueError, match=r"data 'ub' \(upper bounds of variables.* of instance 0, at position \(1,\), is NaN"
    ):
        layer(torch.ones(3), ub=torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match=r"data 'cap' .* is a lower bound above its upper bound"):
        layer(torch.ones(3), cap=torch.tensor([[3.0, 2.0]]))
    with pytest.raises(ValueError, match=r"unknown data 'caps'; the layer's data: cap, ub"):
        layer(torch.ones(3), caps=torch.ones(1))
    with pytest.raises(ValueError, match=r"data 'ub' requires grad"):
        layer(torch.ones(3), ub=torch.ones(2, requires_grad=True))


def facility_model(n_fac: int = 3, n_cust: int = 4):
    """Assign each customer to one open facility: sum_j x_ij = 1 couples x only, x_ij <= y_j
    couples both groups."""
    solver = pywraplp.Solver.CreateSolver("SCIP")
    y = [solver.BoolVar(f"y{j}") for j in range(n_fac)]
    x = [[solver.BoolVar(f"x{i}_{j}") for j in range(n_fac)] for i in range(n_cust)]
    for i in range(n_cust):
        solver.Add(sum(x[i]) == 1)
        for j in range(n_fac):
            solver.Add(x[i][j] <= y[j])
    return solver, y, x


@pytest.mark.parametrize("projection", ["none", "auto"])
def test_cost_groups_match_the_flat_layer(projection):
    solver, y, x = facility_model()
    grouped = ipo.LinearSolverLayer(solver, {"open": y, "assign": x}, projection=projection)
    flat = ipo.LinearSolverLayer(solver, y + [v for row in x for v in row], projection=projection)
    g = torch.Generator().manual_seed(1)
    c_open = torch.rand(6, 3, generator=g, dtype=torch.float64) * 5
    c_assign = torch.rand(6, 4, 3, generator=g, dtype=torch.float64)
    out = grouped({"open": c_open, "assign": c_assign})
    expected = flat(torch.cat([c_open, c_assign.reshape(6, 12)], dim=1))
    assert out["open"].shape == (6, 3) and out["assign"].shape == (6, 4, 3)
    assert torch.equal(out["open"], expected[:, :3]) and torch.equal(out["assign"].reshape(6, 12), expected[:, 3:])
    # Every customer assigned to an open facility.
    assert torch.all(out["assign"].sum(-1) == 1) and torch.all(out["assign"] <= out["open"][:, None, :])
    if projection == "auto":
        assert grouped.handle.invariance_basis().shape == (4, 15)
    with pytest.raises(ValueError, match=r"expected a dict of costs with keys \['assign', 'open'\]"):
        grouped(torch.cat([c_open, c_assign.reshape(6, 12)], dim=1))


def test_parity_serial_pool_and_dask_with_data(force_pool):
    from distributed import LocalCluster

    rng = np.random.default_rng(12)
    rows = random_rows(rng, integer=False)
    costs = torch.from_numpy(rng.uniform(-10, 10, (24, 5)))
    data = tensors(random_data(rows, rng, 24, pairs=False, integer=False))
    serial, _ = make_layer("GLOP", rows, "min", on_failure="nan")
    expected = serial.solve(costs, duals=True, **data)
    assert serial.last_info.mode == "serial" and 0 < len(serial.last_info.failed) < 24
    pooled = force_pool(make_layer("GLOP", rows, "min", on_failure="nan", workers=2)[0])
    torch.testing.assert_close(pooled.solve(costs, duals=True, **data), expected, equal_nan=True, rtol=0, atol=0)
    assert pooled.last_info.mode == "pool" and pooled.last_info.status == serial.last_info.status
    np.testing.assert_array_equal(pooled.last_info.duals, serial.last_info.duals)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster,
        cluster.get_client() as client,
    ):
        remote = make_layer("GLOP", rows, "min", on_failure="nan", executor=client.get_executor())[0]
        torch.testing.assert_close(remote.solve(costs, duals=True, **data), expected, equal_nan=True, rtol=0, atol=0)
        assert remote.last_info.mode == "executor"
    np.testing.assert_array_equal(remote.last_info.reduced_costs, serial.last_info.reduced_costs)
    np.testing.assert_array_equal(remote.last_info.bound, serial.last_info.bound)


@pytest.mark.parametrize("backend", ["GLOP", "SCIP", "CBC"])
def test_bound_includes_the_solvers_own_objective(backend):
    rng = np.random.default_rng(13)
    rows = random_rows(rng, integer=backend not in LP)
    solver, x, cts = layer_model(backend, rows)
    solver.Maximize(3 * x[0] - x[4] + 2.5)  # kept: the bound is on the total
    layer = ipo.LinearSolverLayer(solver, x[:4], data={"cap": cts[:3]})
    costs = torch.from_numpy(rng.uniform(-10, 10, (6, 4)))
    cap = torch.from_numpy(np.where(np.isfinite(rows.lo), rows.lo, rows.hi)[:3])
    layer.solve(costs, cap=cap)
    info = layer.last_info
    assert info.status == ("optimal",) * 6
    for i, cost in enumerate(costs.numpy()):
        ref = reference(backend, rows, *instance_bounds(rows), np.append(cost, 0.0) + [3, 0, 0, 0, -1], "max")
        np.testing.assert_allclose([info.objective[i], info.bound[i]], ref.objective + 2.5, rtol=1e-9)


@pytest.mark.parametrize("backend", ["GLOP", "PDLP", "CLP", "SCIP", "CBC"])
@pytest.mark.parametrize("open_side", [math.inf, 1e20, 1e30])
def test_an_open_side_of_a_pair_is_infinite_on_every_backend(backend, open_side):
    # GLOP stopped ABNORMAL and PDLP returned [10, 10] (outside x0 + x1 <= 4) labelled OPTIMAL when a
    # huge finite bound went to the solver as given
    s = pywraplp.Solver.CreateSolver(backend)
    assert s is not None, f"{backend} is in the locked OR-Tools wheel"
    make = s.IntVar if backend in ("SCIP", "CBC") else s.NumVar
    x = [make(0, 10, f"x{i}") for i in range(2)]
    row = s.Add(x[0] + x[1] <= 4)
    layer = ipo.LinearSolverLayer(s, x, sense="max", data={"row": [row], "x0": [x[0]]})
    costs = torch.tensor([1.0, 2.0])
    y = layer.solve(costs, row=torch.tensor([[-open_side, 4.0]]))
    assert y.tolist() == pytest.approx([0.0, 4.0], abs=1e-6) and layer.last_info.status == ("optimal",)
    y = layer.solve(costs, x0=torch.tensor([[0.0, open_side]]))
    assert y.tolist() == pytest.approx([0.0, 4.0], abs=1e-6) and layer.last_info.status == ("optimal",)
