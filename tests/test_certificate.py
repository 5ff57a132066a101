"""The box certificate (idproj_or.solvers.certificate): rows it decides without a solver against
full CP-SAT solves of the same rows (the certificate switched off) on thousands of random instances,
mixed-sign, tied and zero costs; equality rows, literal rows with negations, per-instance bounds,
the model's own objective; the models it must leave to the solver; pool parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or.solvers.certificate import BOX_CERTIFICATE


def cold(layer):
    """The same layer with the certificate switched off: every row goes to CP-SAT."""
    layer._handle.batch.box = None
    return layer


def knapsack(weights: np.ndarray, capacity: np.ndarray, *, data: bool = False, own=None):
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(weights.shape[1])]
    rows = [model.add(sum(int(w) * xi for w, xi in zip(ws, x)) <= int(c)) for ws, c in zip(weights, capacity)]
    if own is not None:
        model.maximize(sum(int(o) * xi for o, xi in zip(own, x)))
    return model, x, ({"cap": rows} if data else None)


def compare(make, costs, **call):
    """Certified and cold layers agree: same objective on every row, the certificate's rows
    "optimal" with its status word; returns how many rows it certified."""
    fast, slow = make(), cold(make())
    y_fast = fast(costs, **call).numpy()
    y_slow = slow(costs, **call).numpy()
    info_fast, info_slow = fast.last_info, slow.last_info
    c = costs.numpy()
    np.testing.assert_allclose(info_fast.objective, info_slow.objective, rtol=0, atol=1e-9)
    np.testing.assert_allclose((c * y_fast).sum(1), (c * y_slow).sum(1), rtol=0, atol=1e-9)
    assert set(info_fast.status) == {"optimal"} and set(info_slow.status) == {"optimal"}
    words = np.array(info_fast.solver_status)
    assert BOX_CERTIFICATE not in info_slow.solver_status
    return int((words == BOX_CERTIFICATE).sum())


@pytest.mark.parametrize("sense", ["max", "min"])
def test_knapsack_rows_equal_full_solves(sense):
    rng = np.random.default_rng(0)
    weights = rng.integers(1, 10, size=(3, 12))
    capacity = weights.sum(1) // 3

    def make():
        model, x, _ = knapsack(weights, capacity)
        return ipo.CpSatLayer(model, x, sense=sense)

    # SPO+-like costs (mostly negative for max), ties and zeros, and plain positive ones
    costs = np.concatenate(
        [
            rng.normal(-1.0 if sense == "max" else 1.0, 1.0, size=(1000, 12)),
            rng.integers(-1, 2, size=(500, 12)).astype(float),
            np.zeros((20, 12)),
            rng.uniform(0, 1, size=(480, 12)) * (1 if sense == "max" else -1),
        ]
    )
    certified = compare(make, torch.as_tensor(costs))
    assert 300 <= certified <= 1700, certified  # both kinds of rows are exercised


def test_equality_rows_assignment():
    """Sum-to-one rows: certified exactly when each agent's favoured task is its own, different
    from the others' (the corner of a permutation's -1 costs)."""
    n = 4
    rng = np.random.default_rng(1)

    def make():
        model = cp_model.CpModel()
        x = [[model.new_bool_var(f"x{i}{j}") for j in range(n)] for i in range(n)]
        for i in range(n):
            model.add_exactly_one(x[i])
            model.add(sum(x[j][i] for j in range(n)) == 1)
        return ipo.CpSatLayer(model, x, sense="min")

    costs = rng.uniform(0, 1, size=(600, n, n))
    for k in range(300):  # a permutation at -1: the corner is that permutation
        costs[k][np.arange(n), rng.permutation(n)] = -1.0
    certified = compare(make, torch.as_tensor(costs))
    assert certified >= 300


def test_negated_literals_and_zero_costs():
    """at_most_one / bool_or over negated literals, and zero costs (a free variable must keep
    every row true over its whole range)."""
    rng = np.random.default_rng(2)

    def make():
        model = cp_model.CpModel()
        x = [model.new_bool_var(f"x{i}") for i in range(6)]
        model.add_at_most_one([x[0], ~x[1], x[2]])
        model.add_bool_or([~x[3], x[4]])
        model.add_exactly_one([x[5], ~x[0]])
        model.add(x[1] + x[2] + x[3] <= 2)
        return ipo.CpSatLayer(model, x, sense="min")

    costs = rng.integers(-1, 2, size=(2000, 6)).astype(float)
    certified = compare(make, torch.as_tensor(costs))
    assert 50 <= certified <= 1900, certified


def test_integer_variables_and_own_objective():
    """General integer ranges, a kept own objective (its value reported), rows with both sides."""
    rng = np.random.default_rng(3)

    def make():
        model = cp_model.CpModel()
        x = [model.new_int_var(-3, 5, f"x{i}") for i in range(5)]
        z = model.new_int_var(0, 4, "z")
        model.add_linear_constraint(x[0] + 2 * x[1] - x[2] + z, -4, 9)
        model.add(x[3] - x[4] >= -6)
        model.minimize(2 * z - x[0])
        return ipo.CpSatLayer(model, x, sense="min")

    costs = rng.normal(size=(1500, 5))
    costs[:300] = np.round(costs[:300])
    certified = compare(make, torch.as_tensor(costs))
    assert 100 <= certified <= 1400, certified


def test_per_instance_capacities():
    rng = np.random.default_rng(4)
    weights = rng.integers(1, 10, size=(2, 10))

    def make():
        model, x, data = knapsack(weights, weights.sum(1), data=True)
        return ipo.CpSatLayer(model, x, sense="max", data=data)

    costs = torch.as_tensor(rng.normal(-0.5, 1.0, size=(800, 10)))
    caps = torch.as_tensor(rng.integers(0, weights.sum(1) + 1, size=(800, 2)))
    certified = compare(make, costs, cap=caps)
    assert 100 <= certified <= 700, certified
    # the same rows with the constructor's (loose) capacities certify more: the data were read
    assert compare(make, costs) > certified


def test_the_models_it_leaves_to_the_solver():
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(3)]
    model.add(x[0] + x[1] <= 1).only_enforce_if(x[2])
    assert ipo.CpSatLayer(model, x)._handle.spec.box is None  # an enforcement literal
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(3)]
    model.add_allowed_assignments(x, [(1, 0, 0), (0, 1, 1)])
    assert ipo.CpSatLayer(model, x)._handle.spec.box is None  # a table
    tsp = ipo.TSPLayer(5, method="cpsat")
    assert tsp._handle.spec.box is None  # a circuit


def test_sums_beyond_float64_integers_go_to_the_solver():
    """Rows whose sums could pass 2^52 are not checked in float64: solved, and correct."""
    model = cp_model.CpModel()
    x = [model.new_int_var(0, 2**55, f"x{i}") for i in range(2)]
    model.add(x[0] - x[1] <= 1)
    layer = ipo.CpSatLayer(model, x, sense="max")
    y = layer(torch.tensor([[1.0, -1.0]], dtype=torch.float64))
    assert layer.last_info.solver_status[0] != BOX_CERTIFICATE
    assert y.tolist() == [[1.0, 0.0]]


def test_a_certified_row_says_so():
    model, x, _ = knapsack(np.ones((1, 4), dtype=int), np.array([2]))
    layer = ipo.CpSatLayer(model, x, sense="max")
    layer(torch.full((4,), -1.0))
    assert layer.last_info.solver_status == (BOX_CERTIFICATE,)


def test_pool_gives_the_same_rows(force_pool):
    rng = np.random.default_rng(5)
    weights = rng.integers(1, 10, size=(3, 12))

    def make(**options):
        model, x, _ = knapsack(weights, weights.sum(1) // 3)
        return ipo.CpSatLayer(model, x, sense="max", **options)

    costs = torch.as_tensor(rng.normal(-0.5, 1.0, size=(64, 12)))
    serial = make()
    pooled = force_pool(make(workers=2))
    assert torch.equal(pooled(costs), serial(costs))
    assert pooled.last_info.mode == "pool"
    assert pooled.last_info.solver_status == serial.last_info.solver_status
    assert BOX_CERTIFICATE in serial.last_info.solver_status


@pytest.mark.parametrize(
    ("backend", "sense", "field", "value", "expected"),
    [
        ("SCIP", "max", "ub", [[2.5]], 2.0),  # an upper bound from data, rounded down
        ("CBC", "min", "box", [[[0.5, 3.7]]], 1.0),  # a (lower, upper) pair, the lower rounded up
    ],
)
def test_fractional_data_bounds_of_integer_variables_are_rounded_inward(backend, sense, field, value, expected):
    """The corner of a MIP must be integral with the instance's own bounds too: found by review,
    a bound of 2.5 from data gave x = 2.5 labelled optimal."""
    solver = pywraplp.Solver.CreateSolver(backend)
    x = [solver.IntVar(0, 10, f"x{i}") for i in range(2)]
    solver.Add(x[0] + x[1] <= 100)
    costs = torch.tensor([[1.0, -1.0]] if sense == "max" else [[1.0, 1.0]], dtype=torch.float64)
    decided = []
    for shortcut in (True, False):
        layer = ipo.LinearSolverLayer(solver, x, sense=sense, data={field: [x[0]]})
        if not shortcut:
            layer.handle.batch.box = None
        decided.append(layer.solve(costs, **{field: torch.tensor(value, dtype=torch.float64)}))
        assert layer.last_info.status == ("optimal",)
    assert decided[0].tolist() == decided[1].tolist() == [[expected, 0.0]]


@pytest.mark.parametrize("big", [1e20, 1e30])
def test_bounds_of_1e20_and_more_are_infinite_for_the_certificate(big):
    """Solvers read |bound| >= 1e20 as infinite: the corner at 1e20 is no optimum (SCIP: unbounded)."""
    solver = pywraplp.Solver.CreateSolver("SCIP")
    x = [solver.NumVar(0, big, f"x{i}") for i in range(2)]
    solver.Add(x[0] - x[1] <= 5)
    layer = ipo.LinearSolverLayer(solver, x, sense="max", on_failure="nan")
    layer.solve(torch.tensor([[1.0, 1.0]]))
    assert layer.last_info.solver_status != ("BOX_CERTIFICATE",)
    assert layer.last_info.status != ("optimal",)
