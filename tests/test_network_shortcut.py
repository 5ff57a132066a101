"""The network path shortcut (idproj_or.solvers.network): unit-flow LPs on acyclic networks decided
by a shortest-path pass in the caller, against full solves of the same rows (every shortcut switched
off) on thousands of random instances: grids and random DAGs, both sign conventions, a left-out
row, mixed-sign and tied integer costs, min and max, the model's own objective, MIPs, MathOpt and
model_builder; the models and instances it must leave to the solver; pool parity; duals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ortools.linear_solver import pywraplp
from ortools.linear_solver.python import model_builder as mb
from ortools.math_opt.python import mathopt

import idproj_or as ipo
from idproj_or.solvers.certificate import NETWORK_PATH


def grid(h: int, w: int) -> tuple[list[tuple[int, int]], int, int, int]:
    """Arcs right and down on an ``h x w`` grid, from the top-left to the bottom-right node."""
    arcs = [(i * w + j, i * w + j + 1) for i in range(h) for j in range(w - 1)]
    arcs += [(i * w + j, (i + 1) * w + j) for i in range(h - 1) for j in range(w)]
    return arcs, h * w, 0, h * w - 1


def random_dag(rng: np.random.Generator, nodes: int, p: float) -> tuple[list[tuple[int, int]], int, int, int]:
    """Random arcs along a random node order (with a chain through some nodes, so the sink is
    reachable), parallel arcs possible."""
    order = rng.permutation(nodes)
    arcs = [(int(order[i]), int(order[j])) for i in range(nodes) for j in range(i + 1, nodes) if rng.random() < p]
    chain = np.sort(rng.choice(np.arange(1, nodes - 1), size=min(2, nodes - 2), replace=False))
    stops = [0, *chain.tolist(), nodes - 1]
    arcs += [(int(order[a]), int(order[b])) for a, b in itertools.pairwise(stops)]
    rng.shuffle(arcs)
    return arcs, nodes, int(order[0]), int(order[-1])


def flow_lp(
    arcs,
    nodes,
    source,
    sink,
    *,
    backend="GLOP",
    convention="in-out",
    drop=None,
    upper=1.0,
    integer=False,
    own=None,
    sense="min",
    supply=1.0,
    **options,
):
    """The declared LP: one variable per arc in ``[0, upper]``, flow conservation at every node
    (but ``drop``), ``own``: the model's own objective ``(coefficients, offset)``."""
    solver = pywraplp.Solver.CreateSolver(backend)
    x = [solver.Var(0, upper, integer, f"a{k}") for k in range(len(arcs))]
    rows = {}
    for node in range(nodes):
        if node == drop:
            continue
        inflow = sum(x[k] for k, (_, j) in enumerate(arcs) if j == node)
        outflow = sum(x[k] for k, (i, _) in enumerate(arcs) if i == node)
        b = supply if node == source else -supply if node == sink else 0.0
        rows[node] = solver.Add(outflow - inflow == b if convention == "out-in" else inflow - outflow == -b)
    if own is not None:
        coeffs, offset = own
        objective = sum(float(c) * xi for c, xi in zip(coeffs, x)) + offset
        (solver.Maximize if sense == "max" else solver.Minimize)(objective)
    layer = ipo.LinearSolverLayer(solver, x, sense=sense, projection="none", **options)
    return layer, solver, x, rows


def cold(layer):
    """The same layer with every shortcut switched off: every row goes to the solver."""
    layer.handle.batch.box = None
    return layer


def compare(make, costs, **call):
    """The shortcut's layer and a cold one agree: objectives within 1e-9 relative, every row
    optimal; returns the shortcut's status words."""
    fast, slow = make(), cold(make())
    y_fast = fast(costs, **call)
    slow(costs, **call)
    info_fast, info_slow = fast.last_info, slow.last_info
    np.testing.assert_allclose(info_fast.objective, info_slow.objective, rtol=1e-9, atol=1e-9)
    assert set(info_fast.status) == {"optimal"} and set(info_slow.status) == {"optimal"}
    assert NETWORK_PATH not in info_slow.solver_status
    assert set(np.unique(y_fast.numpy())) <= {0.0, 1.0}
    return info_fast.solver_status


def mixed_costs(rng: np.random.Generator, n: int, arcs: int) -> torch.Tensor:
    """Positive, mixed-sign, tied integer and zero costs."""
    return torch.as_tensor(
        np.concatenate(
            [
                rng.uniform(0, 1, (n // 4, arcs)),
                rng.normal(0, 1, (n // 4, arcs)),
                rng.integers(-3, 4, (n // 4, arcs)).astype(float),
                rng.integers(0, 2, (n - 3 * (n // 4) - 2, arcs)).astype(float),
                np.zeros((2, arcs)),
            ]
        )
    )


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize(("h", "w"), [(2, 2), (3, 5), (6, 6)])
def test_grids_equal_full_solves(h, w, sense):
    rng = np.random.default_rng(h * 10 + w)
    arcs, nodes, s, t = grid(h, w)
    words = compare(lambda: flow_lp(arcs, nodes, s, t, sense=sense)[0], mixed_costs(rng, 500, len(arcs)))
    assert set(words) == {NETWORK_PATH}


@pytest.mark.parametrize("convention", ["in-out", "out-in"])
@pytest.mark.parametrize("sense", ["min", "max"])
def test_random_dags_equal_full_solves(convention, sense):
    rng = np.random.default_rng(7 if sense == "min" else 8)
    for k in range(8):
        nodes = int(rng.integers(3, 14))
        arcs, nodes, s, t = random_dag(rng, nodes, float(rng.uniform(0.2, 0.7)))
        upper = [1.0, 3.0, pywraplp.Solver.infinity()][k % 3]
        drop = [None, s, t, (s + 1) % nodes][k % 4]  # a left-out row is implied by the others

        def make(arcs=arcs, nodes=nodes, s=s, t=t, upper=upper, drop=drop):
            return flow_lp(arcs, nodes, s, t, convention=convention, sense=sense, upper=upper, drop=drop)[0]

        words = compare(make, mixed_costs(rng, 150, len(arcs)))
        assert set(words) == {NETWORK_PATH}


@pytest.mark.parametrize("sense", ["min", "max"])
def test_own_objective_and_a_subset_of_cost_arcs(sense):
    rng = np.random.default_rng(11)
    arcs, nodes, s, t = grid(4, 4)
    own = (rng.integers(-2, 3, len(arcs)).astype(float), 2.5)

    def make():
        _, solver, x, _ = flow_lp(arcs, nodes, s, t, own=own, sense=sense)
        return ipo.LinearSolverLayer(solver, x[::2], sense=sense, projection="none")

    words = compare(make, mixed_costs(rng, 400, len(arcs[::2])))
    assert set(words) == {NETWORK_PATH}


@pytest.mark.parametrize("backend", ["SCIP", "CBC"])
def test_mip_of_integer_arcs(backend):
    """Integer arcs: the path is integral, so it is the MIP's optimum too."""
    rng = np.random.default_rng(12)
    arcs, nodes, s, t = grid(3, 4)
    words = compare(
        lambda: flow_lp(arcs, nodes, s, t, backend=backend, integer=True)[0], mixed_costs(rng, 120, len(arcs))
    )
    assert set(words) == {NETWORK_PATH}


def test_mathopt_and_model_builder_take_the_same_route():
    arcs, nodes, s, t = grid(3, 3)
    costs = torch.as_tensor(np.random.default_rng(13).normal(0, 1, (50, len(arcs))))
    model = mathopt.Model()
    xm = [model.add_variable(lb=0, ub=1, name=f"a{k}") for k in range(len(arcs))]
    builder = mb.Model()
    xb = [builder.new_var(0, 1, False, f"a{k}") for k in range(len(arcs))]
    for node in range(nodes):
        b = 1.0 if node == s else -1.0 if node == t else 0.0
        out_m = [xm[k] for k, (i, _) in enumerate(arcs) if i == node]
        in_m = [xm[k] for k, (_, j) in enumerate(arcs) if j == node]
        model.add_linear_constraint(sum(out_m) - sum(in_m) == b)
        out_b = [xb[k] for k, (i, _) in enumerate(arcs) if i == node]
        in_b = [xb[k] for k, (_, j) in enumerate(arcs) if j == node]
        builder.add(sum(out_b) - sum(in_b) == b)
    reference = cold(flow_lp(arcs, nodes, s, t)[0])
    reference(costs)
    for layer in (
        ipo.MathOptLayer(model, xm, solver=mathopt.SolverType.GLOP),
        ipo.ModelBuilderLayer(builder, xb, solver="GLOP"),
    ):
        layer(costs)
        assert set(layer.last_info.solver_status) == {NETWORK_PATH}
        np.testing.assert_allclose(layer.last_info.objective, reference.last_info.objective, rtol=1e-9, atol=1e-9)


# Models and instances the shortcut must leave to the solver


def _path_graph():
    return [(0, 1), (1, 2), (0, 2), (2, 3), (1, 3)], 4, 0, 3


def _negatives():
    arcs, nodes, s, t = _path_graph()
    yield "cycle", flow_lp([*arcs, (2, 1)], nodes, s, t)
    yield "non-unit rhs", flow_lp(arcs, nodes, s, t, supply=2.0)
    yield "bound 0.5", flow_lp(arcs, nodes, s, t, upper=0.5)
    _, solver, x, rows = flow_lp(arcs, nodes, s, t)
    solver.Add(x[0] + x[2] <= 1)
    yield "side constraint", (ipo.LinearSolverLayer(solver, x, projection="none"), solver, x, rows)
    _, solver, x, rows = flow_lp(arcs, nodes, s, t)
    rows[1].SetCoefficient(x[0], 2)
    yield "coefficient 2", (ipo.LinearSolverLayer(solver, x, projection="none"), solver, x, rows)
    _, solver, x, rows = flow_lp(arcs, nodes, s, t)
    x[3].SetLb(0.25)
    yield "lower bound", (ipo.LinearSolverLayer(solver, x, projection="none"), solver, x, rows)


@pytest.mark.parametrize(
    "name", ["cycle", "non-unit rhs", "bound 0.5", "side constraint", "coefficient 2", "lower bound"]
)
def test_models_it_must_leave_to_the_solver(name):
    layer = dict(_negatives())[name][0]
    assert layer.handle.batch.box.network is None
    costs = torch.as_tensor(np.random.default_rng(14).normal(0, 1, (40, layer.shape[0])))
    layer.handle.batch.box = None  # no box certificate either: every row goes to GLOP
    layer(costs)
    assert NETWORK_PATH not in layer.last_info.solver_status


def test_detection_reads_the_same_model_as_a_network():
    """The positive twin of the negatives: the plain model is detected (so they can fail)."""
    arcs, nodes, s, t = _path_graph()
    layer = flow_lp(arcs, nodes, s, t)[0]
    net = layer.handle.batch.box.network
    assert net is not None and net.nodes == nodes


def test_instance_data_that_change_a_bound_fall_back():
    arcs, nodes, s, t = _path_graph()
    _, solver, x, rows = flow_lp(arcs, nodes, s, t)
    options = {"projection": "none", "data": {"cap": [x[2]], "row": [rows[1]]}, "on_failure": "nan"}
    layer = ipo.LinearSolverLayer(solver, x, **options)
    costs = torch.tensor([[1.0, 1.0, 1.0, 1.0, 5.0]] * 5, dtype=torch.float64)
    cap = torch.tensor([[1.0], [0.5], [2.0], [1.0], [1.0]], dtype=torch.float64)
    row = torch.tensor([[0.0], [0.0], [0.0], [0.5], [0.0]], dtype=torch.float64)
    with pytest.warns(ipo.SolverWarning, match="INFEASIBLE"):
        y = layer(costs, cap=cap, row=row)
    words = layer.last_info.solver_status
    assert [w == NETWORK_PATH for w in words] == [True, False, True, False, True]
    assert layer.last_info.status[1] == "optimal" and layer.last_info.status[3] == "infeasible"
    # the capped instance splits its flow: 0.5 over arc 0 -> 2, 0.5 over node 1
    torch.testing.assert_close(y[1], torch.tensor([0.5, 0.5, 0.5, 1.0, 0.0], dtype=torch.float64))
    slow = cold(ipo.LinearSolverLayer(solver, x, **options))
    with pytest.warns(ipo.SolverWarning, match="INFEASIBLE"):
        slow(costs, cap=cap, row=row)
    np.testing.assert_allclose(layer.last_info.objective, slow.last_info.objective, rtol=1e-9)


def test_unreachable_sink_is_left_to_the_solver():
    layer = flow_lp([(0, 1), (2, 3)], 4, 0, 3, on_failure="nan")[0]
    assert layer.handle.batch.box.network is not None
    with pytest.warns(ipo.SolverWarning, match="INFEASIBLE"):
        layer(torch.ones(3, 2, dtype=torch.float64))
    assert set(layer.last_info.status) == {"infeasible"}
    assert NETWORK_PATH not in layer.last_info.solver_status


def test_duals_requested_skip_it():
    arcs, nodes, s, t = grid(3, 3)
    layer = flow_lp(arcs, nodes, s, t)[0]
    costs = torch.rand(6, len(arcs), dtype=torch.float64)
    layer.solve(costs, duals=True)
    assert NETWORK_PATH not in layer.last_info.solver_status
    assert layer.last_info.duals is not None
    layer(costs)
    assert set(layer.last_info.solver_status) == {NETWORK_PATH}


def test_the_switch_turns_it_off():
    arcs, nodes, s, t = grid(3, 3)
    layer = flow_lp(arcs, nodes, s, t)[0]
    layer.handle.batch.network = False
    layer(torch.rand(20, len(arcs), dtype=torch.float64) + 0.1)
    assert NETWORK_PATH not in layer.last_info.solver_status


def test_pool_gives_the_same_rows(force_pool):
    arcs, nodes, s, t = grid(4, 4)
    rng = np.random.default_rng(15)
    costs = torch.as_tensor(rng.integers(-2, 4, (64, len(arcs))).astype(float))
    cap = torch.as_tensor(np.where(rng.random((64, 1)) < 0.5, 1.0, 0.5))  # half the rows solved

    def make(**options):
        _, solver, x, _ = flow_lp(arcs, nodes, s, t)
        return ipo.LinearSolverLayer(solver, x, projection="none", data={"cap": [x[0]]}, **options)

    serial = make()
    pooled = force_pool(make(workers=2))
    assert torch.equal(pooled(costs, cap=cap), serial(costs, cap=cap))
    assert pooled.last_info.mode == "pool"
    assert pooled.last_info.solver_status == serial.last_info.solver_status
    assert NETWORK_PATH in serial.last_info.solver_status
    assert "OPTIMAL" in serial.last_info.solver_status
