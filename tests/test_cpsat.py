import itertools
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or.rules.projection import project
from idproj_or.solvers.cpsat import CpSatSpec
from tests.helpers import assignment, best, k_subset, knapsack

SETTINGS = settings(max_examples=70, deadline=None, derandomize=True)


def check_optimal(layer, feasible, costs, sense):
    y = layer(torch.as_tensor(costs))
    info = layer.last_info
    for i, (c, yi) in enumerate(zip(costs, y.numpy())):
        assert any(np.array_equal(yi, f) for f in feasible), "decision is not feasible"
        # Optimal up to the float64 rounding of the objective, or as far as the scaling error says.
        gap = abs(float((c * yi).sum()) - best(feasible, c, sense))
        assert gap <= info.scaling_error[i] + 1e-12 * np.abs(c).sum()
        assert info.status[i] == "feasible" or gap <= 1e-12 * np.abs(c).sum()


@SETTINGS
@given(
    n=st.integers(2, 8),
    d=st.integers(1, 2),
    seed=st.integers(0, 2**32 - 1),
    sense=st.sampled_from(["min", "max"]),
)
def test_knapsack_optimal_against_brute_force(n, d, seed, sense):
    rng = np.random.default_rng(seed)
    weights = rng.integers(1, 10, size=(d, n))
    caps = rng.integers(0, weights.sum(1) + 1)
    m, x, feasible = knapsack(weights, caps)
    layer = ipo.CpSatLayer(m, x, sense=sense)
    check_optimal(layer, feasible, rng.normal(size=(3, n)), sense)


@SETTINGS
@given(n=st.integers(2, 8), data=st.data(), seed=st.integers(0, 2**32 - 1), sense=st.sampled_from(["min", "max"]))
def test_k_subset_optimal_against_brute_force(n, data, seed, sense):
    k = data.draw(st.integers(1, n))
    m, x, feasible = k_subset(n, k)
    layer = ipo.CpSatLayer(m, x, sense=sense, projection="std")
    check_optimal(layer, feasible, np.random.default_rng(seed).normal(size=(3, n)), sense)


@SETTINGS
@given(n=st.integers(2, 4), seed=st.integers(0, 2**32 - 1), sense=st.sampled_from(["min", "max"]))
def test_assignment_via_exactly_one_optimal_against_brute_force(n, seed, sense):
    m, x, feasible = assignment(n)
    layer = ipo.CpSatLayer(m, x, sense=sense)
    assert layer.shape == (n, n)
    check_optimal(layer, feasible, np.random.default_rng(seed).normal(size=(3, n, n)), sense)


def test_integer_variables_and_duplicate_cost_variables():
    m = cp_model.CpModel()
    a, b = m.new_int_var(-2, 3, "a"), m.new_int_var(0, 4, "b")
    m.add(a + b <= 4)
    layer = ipo.CpSatLayer(m, [a, b, a], sense="max", projection="none")
    costs = np.random.default_rng(0).normal(size=(20, 3))
    y = layer(torch.as_tensor(costs)).numpy()
    grid = [np.array([u, v, u], float) for u in range(-2, 4) for v in range(5) if u + v <= 4]
    for c, yi in zip(costs, y):
        assert yi[0] == yi[2]
        assert abs((c * yi).sum() - best(grid, c, "max")) <= 1e-5


def test_sense_defaults_to_the_declared_objective_else_min():
    m, x, _ = k_subset(4, 2)
    w = torch.tensor([1.0, 4.0, 2.0, 3.0])
    assert ipo.CpSatLayer(m, x).sense == "min"
    assert ipo.CpSatLayer(m, x)(w).tolist() == [1.0, 0.0, 1.0, 0.0]
    m.maximize(sum(x))  # constant on this model: the declared sense alone matters
    assert ipo.CpSatLayer(m, x).sense == "max"
    assert ipo.CpSatLayer(m, x)(w).tolist() == [0.0, 1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="sense='min' contradicts the model's own objective"):
        ipo.CpSatLayer(m, x, sense="min")
    layer = ipo.CpSatLayer(m, x, sense="min", objective="replace")
    assert layer(w).tolist() == [1.0, 0.0, 1.0, 0.0]


def test_users_objective_is_kept_unless_replaced_and_model_left_untouched():
    m, x, _ = k_subset(4, 1)
    m.minimize(100 * x[0] + 7)
    before = str(m.proto)
    w = torch.tensor([-5.0, 1.0, 2.0, 3.0])
    kept = ipo.CpSatLayer(m, x)
    assert kept(w).tolist() == [0.0, 1.0, 0.0, 0.0]  # x0 costs -5 + 100
    assert kept.last_info.objective.tolist() == [1.0 + 7.0]
    replaced = ipo.CpSatLayer(m, x, objective="replace")
    assert replaced(w).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert replaced.last_info.objective.tolist() == [-5.0]
    assert str(m.proto) == before
    with pytest.raises(ValueError, match="objective='drop' must be 'keep'"):
        ipo.CpSatLayer(m, x, objective="drop")


def test_spec_pickles_and_rebuilds_an_equal_solver():
    m, x, _ = k_subset(5, 2)
    spec = ipo.CpSatLayer(m, x).spec
    clone = pickle.loads(pickle.dumps(spec))
    assert isinstance(clone, CpSatSpec) and clone == spec
    out = clone.build().solve(np.array([3.0, 1.0, 2.0, 0.0, 5.0]), None)
    assert out.status == "optimal" and out.solver_status == "OPTIMAL"
    assert out.x.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0] and out.scaling_error == 0.0


def test_equalities_read_from_linear_exactly_one_circuit_and_fixed_variables():
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(4)]
    z = m.new_int_var(0, 5, "z")  # not a cost variable
    fixed = m.new_int_var(2, 2, "f")
    m.add(x[0] + 2 * x[1] == 1)
    m.add(x[2] + z == 1)  # touches a non-cost variable: skipped
    m.add(x[0] + x[3] <= 1)  # inequality: skipped
    m.add_exactly_one([x[2], ~x[3]])
    m.add(x[1] + x[2] == 1).only_enforce_if(x[0])  # conditional: skipped
    a, b = ipo.CpSatLayer(m, [*x, fixed]).spec.equalities()
    rows = {tuple(r): v for r, v in zip(a.tolist(), b.tolist())}
    assert rows == {(1, 2, 0, 0, 0): 1, (0, 0, 1, -1, 0): 0, (0, 0, 0, 0, 1): 2}

    n = 4
    t = cp_model.CpModel()
    arcs = {(i, j): t.new_bool_var(f"a{i}{j}") for i in range(n) for j in range(n) if i != j}
    t.add_circuit([(i, j, v) for (i, j), v in arcs.items()])
    order = list(arcs)
    a, b = ipo.CpSatLayer(t, list(arcs.values())).spec.equalities()
    assert a.shape == (2 * n, len(order)) and np.all(b == 1)
    for node in range(n):
        out = [float(i == node) for i, _ in order]
        inc = [float(j == node) for _, j in order]
        assert out in a.tolist() and inc in a.tolist()


@pytest.mark.parametrize("builder", [lambda: k_subset(6, 3), lambda: assignment(4)])
def test_auto_projection_removes_only_directions_the_model_proves_invariant(builder):
    m, x, _feasible = builder()
    layer = ipo.CpSatLayer(m, x)
    a, _ = layer.spec.equalities()
    assert len(a) > 0
    rng = np.random.default_rng(7)
    n = a.shape[1]
    for _ in range(20):
        w = rng.normal(size=n)
        shifted = w + a.T @ rng.normal(scale=3.0, size=len(a))
        y0 = layer(torch.as_tensor(w).reshape(layer.shape)).numpy().ravel()
        y1 = layer(torch.as_tensor(shifted).reshape(layer.shape)).numpy().ravel()
        # the shifted cost's decision is optimal for w as well
        assert abs(w @ y1 - w @ y0) <= 1e-5 * np.abs(w).max() * n
        p = [project(torch.as_tensor(v)[None], "auto", layer.basis) for v in (w, shifted)]
        torch.testing.assert_close(p[0], p[1])


def test_auto_equals_norm_for_a_knapsack_without_equalities():
    m, x, _ = knapsack(np.array([[2, 3, 4, 5]]), np.array([6]))
    layer = ipo.CpSatLayer(m, x)
    assert layer.spec.equalities()[0].shape == (0, 4)
    assert layer.basis.shape == (0, 4)


def test_circuit_tsp_is_a_tour():
    n = 5
    rng = np.random.default_rng(0)
    t = cp_model.CpModel()
    arcs = [[t.new_bool_var(f"a{i}{j}") if i != j else t.new_constant(0) for j in range(n)] for i in range(n)]
    t.add_circuit([(i, j, arcs[i][j]) for i in range(n) for j in range(n) if i != j])
    # the diagonal constants are variables too, fixed to 0
    layer = ipo.CpSatLayer(t, arcs)
    costs = rng.uniform(1, 10, size=(4, n, n))
    y = layer(torch.as_tensor(costs)).numpy()
    tours = []
    for perm in itertools.permutations(range(1, n)):
        order = (0, *perm)
        adj = np.zeros((n, n))
        for i in range(n):
            adj[order[i], order[(i + 1) % n]] = 1
        tours.append(adj)
    for c, yi in zip(costs, y):
        assert any(np.array_equal(yi, tour) for tour in tours)
        assert abs((c * yi).sum() - best(tours, c, "min")) <= 1e-4
