"""Warm starts: a state per instance id, kept in the caller and shipped with the instance.

Hints must never change the objective (only which optimum a tie returns), results must be the
same on every route, and ids are checked before any solve."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or.solvers.certificate import BASIS_CERTIFICATE


def knapsack(n: int = 12, dims: int = 2, seed: int = 0, **options: object) -> ipo.CpSatLayer:
    """A CP-SAT knapsack, warm-started unless ``warm_start=`` says otherwise."""
    options = {"warm_start": True, **options}
    rng = np.random.default_rng(seed)
    weights = rng.integers(1, 10, (dims, n))
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(n)]
    for k in range(dims):
        model.add(sum(int(w) * xi for w, xi in zip(weights[k], x)) <= int(weights[k].sum() // 2))
    return ipo.CpSatLayer(model, x, sense="max", **options)


def grid_lp(backend: str = "GLOP", size: int = 4, **options: object) -> ipo.LinearSolverLayer:
    """PyEPO's grid shortest path as a declared LP (arcs right and down, 0 <= x <= 1), without
    the network path shortcut (it would decide every row before the basis certificate)."""
    arcs = [(i * size + j, i * size + j + 1) for i in range(size) for j in range(size - 1)]
    arcs += [(i * size + j, (i + 1) * size + j) for i in range(size - 1) for j in range(size)]
    solver = pywraplp.Solver.CreateSolver(backend)
    x = [solver.NumVar(0, 1, f"a{k}") for k in range(len(arcs))]
    last = size * size - 1
    for node in range(size * size):
        flow = sum(x[k] for k, (_, j) in enumerate(arcs) if j == node) - sum(
            x[k] for k, (i, _) in enumerate(arcs) if i == node
        )
        solver.Add(flow == (-1 if node == 0 else 1 if node == last else 0))
    layer = ipo.LinearSolverLayer(solver, x, projection="none", **options)
    layer.handle.batch.network = False
    return layer


def facility(backend: str = "SCIP", **options: object) -> ipo.LinearSolverLayer:
    """A small capacitated facility location MIP; costs on the assignments."""
    rng = np.random.default_rng(3)
    sites, clients = 3, 5
    demand = rng.integers(1, 5, clients)
    solver = pywraplp.Solver.CreateSolver(backend)
    open_ = [solver.BoolVar(f"o{f}") for f in range(sites)]
    assign = [[solver.BoolVar(f"a{f}{c}") for c in range(clients)] for f in range(sites)]
    for c in range(clients):
        solver.Add(sum(assign[f][c] for f in range(sites)) == 1)
    for f in range(sites):
        solver.Add(sum(int(demand[c]) * assign[f][c] for c in range(clients)) <= 8 * open_[f])
    solver.Minimize(sum(5 * o for o in open_))
    return ipo.LinearSolverLayer(solver, assign, **options)


def drift(base: torch.Tensor, rounds: int, seed: int) -> list[torch.Tensor]:
    """Costs moving slowly, as predictions do over epochs."""
    gen = torch.Generator().manual_seed(seed)
    out, c = [], base.clone()
    for _ in range(rounds):
        c = c + 0.3 * torch.randn(c.shape, generator=gen, dtype=c.dtype)
        out.append(c.clone())
    return out


def objective(y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (y.reshape(len(y), -1) * c.reshape(len(c), -1)).sum(1)


def test_cpsat_warm_starts_on_request_and_keep_a_state_per_id() -> None:
    default = knapsack(warm_start=None)
    assert default.warm_start is False  # measured not to pay by default (docs/warm_start.md)
    costs = torch.rand(10, 12, dtype=torch.float64)
    default(costs, ids=torch.arange(10))
    assert len(default.handle.states) == 0
    layer = knapsack()
    assert layer.warm_start is True
    layer(costs, ids=torch.arange(10))
    assert len(layer.handle.states) == 10
    off = knapsack(warm_start=False)
    off(costs, ids=torch.arange(10))
    assert len(off.handle.states) == 0


def test_cpsat_hints_never_change_the_objective() -> None:
    """Warm and cold on 3 x 150 drifting instances with integer (tied) costs: equal objectives."""
    cold, warm = knapsack(warm_start=False), knapsack()
    base = torch.randint(0, 4, (150, 12)).double()
    ids = torch.arange(150)
    for c in drift(base, 3, seed=1):
        c = c.round()  # ties everywhere
        yc, yw = cold(c), warm(c, ids=ids)
        torch.testing.assert_close(objective(yw, c), objective(yc, c), rtol=0, atol=1e-9)
        assert warm.last_info.status.count("optimal") == 150


def test_cpsat_solves_from_the_shipped_state() -> None:
    """The resident CP-SAT model carries the row's state as its hint during that row's solve,
    and no hint for a row without one (NaN) or a cold call."""
    layer = knapsack()
    solver = layer.spec.build()
    seen: list[list[int]] = []
    solve = solver.solver.solve

    def spy(model: cp_model.CpModel) -> object:
        seen.append(list(model.proto.solution_hint.values))
        return solve(model)

    solver.solver.solve = spy  # type: ignore[method-assign]
    costs = np.random.default_rng(0).normal(size=(3, 12))
    first = solver.solve_many(costs, None, warm=np.empty((3, 0)))
    assert first.warm is not None and first.warm.shape == (3, 12) and seen == [[], [], []]
    states = first.warm.copy()
    states[1] = np.nan
    solver.solve_many(costs, None, warm=states)
    assert seen[3:] == [states[0].astype(int).tolist(), [], states[2].astype(int).tolist()]
    solver.solve_many(costs, None)
    assert seen[6:] == [[], [], []]


def test_states_follow_ids_not_batch_positions() -> None:
    layer = knapsack()  # its model's variables are the cost variables: a state is the decision
    gen = torch.Generator().manual_seed(1)
    c = torch.rand(6, 12, generator=gen, dtype=torch.float64)  # positive: every row is solved
    ids = np.array([10, 11, 12, 13, 14, 15])
    y = layer(c, ids=ids)
    perm = np.array([3, 0, 5, 1, 4, 2])
    np.testing.assert_array_equal(layer.handle.states.rows(ids[perm]), y.numpy()[perm])
    unknown = layer.handle.states.rows(np.array([10, 99]))
    assert np.isnan(unknown[1]).all() and not np.isnan(unknown[0]).any()


def test_warm_starts_are_identical_serial_and_pool() -> None:
    serial = knapsack(n=14, seed=2, route="serial", workers=2)
    pooled = knapsack(n=14, seed=2, route="pool", workers=2)
    base = torch.randint(0, 3, (40, 14)).double()
    ids = torch.arange(100, 140)
    for c in drift(base, 3, seed=2):
        c = c.round()
        ys, yp = serial(c, ids=ids), pooled(c, ids=ids)
        assert pooled.last_info.mode == "pool"
        assert torch.equal(ys, yp)


def test_rules_pass_ids_through_every_solve() -> None:
    layer = knapsack()
    gen = torch.Generator().manual_seed(3)
    pred = torch.randn(8, 12, generator=gen, dtype=torch.float64, requires_grad=True)
    c = torch.randn(8, 12, generator=gen, dtype=torch.float64)
    w = layer.solve(c)
    z = objective(w, c)
    ids = torch.arange(8)
    ipo.SPOPlus(layer)(pred, c, w, z, ids=ids).backward()
    ipo.Blackbox(layer, lambd=10)(pred, ids=ids).sum().backward()
    # K samples per instance repeat its id inside the solve: allowed there, not from the caller
    ipo.FenchelYoung(layer, n_samples=3, generator=gen)(pred, w, ids=ids).backward()
    ipo.ProjectedIdentity(layer, solve_ratio=0.5, generator=gen)(pred, ids=ids)
    kept = set(layer.handle.states._states)
    assert kept <= set(range(8)) and len(kept) >= 6  # rows the box certificate decided keep none


def test_warm_start_true_requires_ids_in_forward() -> None:
    layer = knapsack(warm_start=True)
    with pytest.raises(ValueError, match=r"warm_start=True.*pass ids="):
        layer(torch.rand(3, 12))
    with pytest.raises(ValueError, match=r"warm_start=True.*pass ids="):
        ipo.SPOPlus(layer)(torch.rand(3, 12), torch.rand(3, 12), torch.rand(3, 12), torch.rand(3))
    layer.solve(torch.rand(3, 12))  # an exact solve without a graph needs none


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        (torch.tensor([0.0, 1.0, 2.0]), r"ids must hold integers.*float"),
        (torch.tensor([True, False, True]), r"ids must hold integers.*bool"),
        (torch.tensor([0, 1]), r"ids must have shape \(3,\).*got \(2,\)"),
        (torch.tensor([[0, 1, 2]]), r"ids must have shape \(3,\).*got \(1, 3\)"),
        (torch.tensor([0, 5, 5]), r"id 5 appears more than once in the batch \(at \[1, 2\]\)"),
        (torch.tensor([0, -1, 2]), r"ids\[1\] = -1 is out of range"),
        (np.array([0, 2**53, 1]), r"ids\[1\] = 9007199254740992 is out of range"),
        ("abc", r"ids must"),
        (None, r"ids must"),
    ],
)
def test_bad_ids_are_refused_before_any_solve(ids: object, match: str) -> None:
    layer = knapsack()
    with pytest.raises(ValueError, match=match):
        layer(torch.rand(3, 12), ids=ids)
    assert layer.last_info is None


def test_ids_as_lists_and_numpy_are_accepted() -> None:
    layer = knapsack()
    layer(torch.rand(3, 12), ids=[4, 5, 6])
    layer(torch.rand(3, 12), ids=np.array([7, 8, 9], dtype=np.int32))
    layer(torch.rand(12), ids=[42])  # an unbatched instance has one id
    assert len(layer.handle.states) == 7


def test_warm_start_option_is_checked() -> None:
    with pytest.raises(ValueError, match=r"warm_start='yes' must be None"):
        knapsack(warm_start="yes")
    with pytest.raises(ValueError, match=r"warm_start=True is not supported"):
        ipo.KnapsackLayer([[3, 4, 5]], [7], warm_start=True)
    with pytest.raises(ValueError, match=r"warm_start=True is not supported"):
        grid_lp("PDLP", warm_start=True)
    ready = ipo.KnapsackLayer([[3, 4, 5]], [7])
    assert ready.warm_start is False
    ready(torch.rand(2, 3), ids=[0, 1])  # ids are accepted (fit passes them) and ignored


def test_copies_start_cold() -> None:
    layer = knapsack()
    layer(torch.rand(4, 12), ids=torch.arange(4))
    assert len(layer.handle.states) == 4
    assert len(pickle.loads(pickle.dumps(layer)).handle.states) == 0
    assert len(copy.deepcopy(layer).handle.states) == 0


def test_fit_passes_the_training_indices() -> None:
    from idproj_or import data
    from idproj_or.training import fit

    layer = knapsack(n=8)
    layer.handle.batch.box = None  # every instance solved, so every one keeps a state
    gen = np.random.default_rng(0)
    x = torch.as_tensor(gen.normal(size=(40, 3)))
    c = torch.as_tensor(gen.uniform(0, 1, (40, 8)))
    train = data.solve_dataset(layer, x, c)
    fit(torch.nn.Linear(3, 8), layer, train, train, epochs=1, progress=False)
    assert sorted(layer.handle.states._states) == list(range(40))


def test_scip_hints_never_change_the_objective() -> None:
    cold, warm = facility(warm_start=False), facility(warm_start=True)
    base = torch.rand(40, 3, 5, dtype=torch.float64) * 4
    ids = torch.arange(40)
    for c in drift(base, 3, seed=4):
        c = c.round()
        warm(c, ids=ids)
        cold(c)
        # the objective with the model's own (opening costs): ties may open other facilities
        np.testing.assert_allclose(warm.last_info.objective, cold.last_info.objective, rtol=0, atol=1e-9)
    assert len(warm.handle.states) == 40


# The basis certificate (GLOP / CLP LPs with warm starts)


@pytest.mark.parametrize("backend", ["GLOP", "CLP"])
def test_basis_certificate_equals_full_solves(backend: str) -> None:
    """On 8 rounds x 300 drifting instances of a 4x4 grid LP (integer costs: many ties and
    degenerate vertices), every certified decision is optimal: its objective equals a cold solve's."""
    cold, warm = grid_lp(backend, warm_start=False), grid_lp(backend, warm_start=True)
    n = cold.shape[0]
    gen = torch.Generator().manual_seed(5)
    base = torch.randint(1, 6, (300, n), generator=gen).double()
    ids = torch.arange(300)
    certified = 0
    for k, c in enumerate(drift(base, 8, seed=5)):
        c = c.round().clamp(min=-1) if k % 2 else c  # negative and tied costs in odd rounds
        yc, yw = cold(c), warm(c, ids=ids)
        torch.testing.assert_close(objective(yw, c), objective(yc, c), rtol=0, atol=1e-9)
        words = warm.last_info.solver_status
        certified += words.count(BASIS_CERTIFICATE)
        assert set(warm.last_info.status) == {"optimal"}
    assert certified > 300  # the check runs and decides rows, not only refuses them


def test_basis_certificate_refuses_a_vertex_the_new_cost_does_not_favour() -> None:
    layer = grid_lp(warm_start=True)
    n = layer.shape[0]
    c = torch.ones(1, n, dtype=torch.float64)
    y0 = layer(c, ids=[0])
    flipped = torch.where(y0 > 0.5, 10.0, 1.0).double()  # the old path is now the worst
    y1 = layer(flipped, ids=[0])
    assert layer.last_info.solver_status[0] != BASIS_CERTIFICATE
    assert float(objective(y1, flipped)) < float(objective(y0, flipped))


def test_basis_certificate_follows_per_instance_bounds() -> None:
    """A stored vertex that the instance's new data make infeasible is not certified."""
    solver = pywraplp.Solver.CreateSolver("GLOP")
    x = [solver.NumVar(0, 10, f"x{i}") for i in range(3)]
    cap = solver.Add(sum(x) <= 6)
    layer = ipo.LinearSolverLayer(solver, x, sense="max", data={"cap": [cap]}, warm_start=True)
    c = torch.tensor([[3.0, 2.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(layer(c, ids=[0], cap=[[6.0]]), torch.tensor([[6.0, 0.0, 0.0]], dtype=torch.float64))
    again = layer(c, ids=[0], cap=[[6.0]])
    assert layer.last_info.solver_status[0] == BASIS_CERTIFICATE
    torch.testing.assert_close(again, torch.tensor([[6.0, 0.0, 0.0]], dtype=torch.float64))
    smaller = layer(c, ids=[0], cap=[[4.0]])
    assert layer.last_info.solver_status[0] != BASIS_CERTIFICATE
    torch.testing.assert_close(smaller, torch.tensor([[4.0, 0.0, 0.0]], dtype=torch.float64))
