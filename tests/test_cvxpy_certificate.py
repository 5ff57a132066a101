"""The box certificate and the network path shortcut for CVXPY LPs and MIPs (CvxpyLayer; the model
read from its compiled form, idproj_or.solvers.cvxpy.compiled_box): rows decided without a solver
against full HiGHS solves of the same rows (every shortcut switched off) on thousands of random
instances: knapsacks under SPO+-like costs, bounds stated as rows, a grid shortest path, the model's
own objective and per-instance data (right-hand sides, bounds, the own objective, coefficients);
the problems it must leave to the solver; pool parity; duals."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.solvers.certificate import BOX_CERTIFICATE, NETWORK_PATH

# Instances made infeasible on purpose: on_failure="nan" says so once per layer.
pytestmark = pytest.mark.filterwarnings("ignore:.*instances have no decision:idproj_or.SolverWarning")

SHORTCUTS = {BOX_CERTIFICATE, NETWORK_PATH}


def cold(layer):
    """The same layer with every shortcut switched off: every row goes to HiGHS."""
    layer.handle.batch.box = None
    return layer


def compare(make, costs: np.ndarray, **data: np.ndarray) -> dict[str, int]:
    """Shortcut and cold layers agree: same statuses, objectives within 1e-9 relative (decisions
    may differ among ties); the shortcut rows "optimal"; returns how many rows each word decided."""
    fast, slow = make(), cold(make())
    assert fast.handle.batch.box is not None
    tensors = {k: torch.as_tensor(v) for k, v in data.items()}
    fast.solve(torch.as_tensor(costs), **tensors)
    slow.solve(torch.as_tensor(costs), **tensors)
    a, b = fast.last_info, slow.last_info
    assert a.status == b.status
    words = np.array(a.solver_status)
    assert not SHORTCUTS & set(b.solver_status)
    assert set(np.array(a.status)[np.isin(words, list(SHORTCUTS))]) <= {"optimal"}
    ok = ~np.isnan(np.asarray(b.objective, dtype=float))
    np.testing.assert_allclose(
        np.asarray(a.objective)[ok], np.asarray(b.objective)[ok], rtol=1e-9, atol=1e-9 * np.abs(b.objective[ok]).max()
    )
    return {w: int((words == w).sum()) for w in SHORTCUTS}


def knapsack(weights: np.ndarray, capacity: np.ndarray, sense: str, *, rows: bool = False, upper: int = 1):
    """A knapsack: ``x`` boolean, or (``rows``) integer with ``0 <= x <= upper`` stated as rows."""
    n = weights.shape[1]
    c = cp.Parameter(n)
    x = cp.Variable(n, integer=True) if rows else cp.Variable(n, boolean=True)
    constraints = [weights @ x <= capacity]
    if rows:
        constraints += [x >= 0, x <= upper]
    declare = cp.Maximize if sense == "max" else cp.Minimize
    return ipo.CvxpyLayer(cp.Problem(declare(c @ x), constraints), c, x, projection="none")


@pytest.mark.parametrize("rows", [False, True], ids=["boolean", "bounds-as-rows"])
@pytest.mark.parametrize("sense", ["max", "min"])
def test_knapsack_rows_equal_full_solves(sense: str, rows: bool) -> None:
    rng = np.random.default_rng([1, sense == "max", rows])
    n = 12
    weights = rng.integers(1, 10, size=(3, n)).astype(float)
    capacity = weights.sum(1) / 3
    flip = 1.0 if sense == "max" else -1.0
    # SPO+-like costs (mostly disfavoured), ties and zeros, and plain favoured ones
    costs = np.concatenate(
        [
            rng.normal(-flip, 1.0, size=(600, n)),
            rng.integers(-1, 2, size=(200, n)).astype(float),
            np.zeros((10, n)),
            rng.uniform(0, 1, size=(190, n)) * flip,
        ]
    )
    counts = compare(lambda: knapsack(weights, capacity, sense, rows=rows, upper=2 if rows else 1), costs)
    assert 150 <= counts[BOX_CERTIFICATE] <= 850, counts


def incidence(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Node-arc incidence (out - in) of the right/down grid and its supply vector."""
    arcs = [(i * w + j, i * w + j + 1) for i in range(h) for j in range(w - 1)]
    arcs += [(i * w + j, (i + 1) * w + j) for i in range(h - 1) for j in range(w)]
    a = np.zeros((h * w, len(arcs)))
    for k, (i, j) in enumerate(arcs):
        a[i, k], a[j, k] = 1.0, -1.0
    b = np.zeros(h * w)
    b[0], b[-1] = 1.0, -1.0
    return a, b


def grid_lp(h: int, w: int, sense: str = "min", *, own: np.ndarray | None = None, integer: bool = False):
    a, b = incidence(h, w)
    c = cp.Parameter(a.shape[1])
    x = cp.Variable(a.shape[1], integer=integer)
    objective = c @ x + (0 if own is None else own @ x + 2.5)
    declare = cp.Maximize if sense == "max" else cp.Minimize
    problem = cp.Problem(declare(objective), [a @ x == b, x >= 0, x <= 1])
    return ipo.CvxpyLayer(problem, c, x, projection="none")


@pytest.mark.parametrize(
    ("sense", "own", "integer"), [("min", False, False), ("max", True, False), ("min", True, True)]
)
def test_grid_shortest_path_equals_full_solves(sense: str, own: bool, integer: bool) -> None:
    rng = np.random.default_rng([2, sense == "max", own, integer])
    h = w = 5
    arcs = 2 * h * (w - 1)
    own_costs = rng.normal(0, 0.5, arcs) if own else None
    costs = np.concatenate([rng.uniform(0.1, 2.0, size=(1000, arcs)), rng.integers(-2, 4, size=(1000, arcs))])
    counts = compare(lambda: grid_lp(h, w, sense, own=own_costs, integer=integer), costs)
    assert counts[NETWORK_PATH] == len(costs), counts
    layer = grid_lp(h, w, sense, own=own_costs, integer=integer)
    assert layer.handle.batch.box.network is not None
    layer.handle.batch.network = False  # the switch: every row solved (the box decides none here)
    layer.solve(torch.as_tensor(costs[:20]))
    assert NETWORK_PATH not in layer.last_info.solver_status


def data_problem(rng: np.random.Generator, sense: str, *, integer: bool):
    """An LP (or MIP) with its own objective (a data parameter ``d`` on ``x``, fixed terms on an
    extra variable ``y`` and a constant) and data in right-hand sides (``budget``, ``need``) and in
    bounds stated as rows (``upper``)."""
    n = 6
    a = rng.integers(1, 6, size=(2, n)).astype(float)
    c = cp.Parameter(n)
    d = cp.Parameter(n, value=rng.normal(0, 0.3, n))
    budget = cp.Parameter(2, nonneg=True, value=a.sum(1) / 2)
    need = cp.Parameter(value=0.0)
    upper = cp.Parameter(n, nonneg=True, value=np.ones(n))
    x = cp.Variable(n, integer=integer)
    y = cp.Variable(2)
    flip = 1.0 if sense == "min" else -1.0
    objective = c @ x + d @ x + flip * (2.0 * y[0] + 0.5 * y[1]) + 1.5
    constraints = [a @ x + y[0] <= budget, cp.sum(x) >= need, x >= 0, x <= upper, y >= 0, y <= 1, y[1] >= need / 4]
    declare = cp.Maximize if sense == "max" else cp.Minimize
    problem = cp.Problem(declare(objective), constraints)
    data = {"budget": budget, "need": need, "upper": upper, "d": d}
    return ipo.CvxpyLayer(problem, c, x, projection="none", data=data, on_failure="nan"), a


@pytest.mark.parametrize("integer", [False, True], ids=["LP", "MIP"])
@pytest.mark.parametrize("sense", ["min", "max"])
def test_own_objective_and_per_instance_data_equal_full_solves(sense: str, integer: bool) -> None:
    seed = [3, sense == "max", integer]
    _, a = data_problem(np.random.default_rng(seed), sense, integer=integer)
    rng = np.random.default_rng([*seed, 1])
    b = 2000
    flip = 1.0 if sense == "min" else -1.0
    costs = flip * rng.normal(0.4, 1.0, size=(b, 6))
    data = {
        "budget": np.round(a.sum(1) * rng.uniform(0.05, 0.8, size=(b, 2)), 2),
        "need": rng.choice([0.0, 0.0, 1.0, 2.5, 30.0], size=b),  # 30: infeasible
        "upper": rng.choice([0.0, 0.5, 1.0, 2.0], size=(b, 6)),
        "d": rng.normal(0, 0.5, size=(b, 6)),
    }
    counts = compare(lambda: data_problem(np.random.default_rng(seed), sense, integer=integer)[0], costs, **data)
    assert 200 <= counts[BOX_CERTIFICATE] <= 1900, counts
    # and instances without data (the model's own values)
    compare(lambda: data_problem(np.random.default_rng(seed), sense, integer=integer)[0], costs[:300])


def test_data_in_coefficients_leave_changed_instances_to_the_solver() -> None:
    n = 5
    base = np.arange(1.0, n + 1)
    rng = np.random.default_rng(4)

    def make():
        c = cp.Parameter(n)
        w = cp.Parameter(n, nonneg=True, value=base)
        x = cp.Variable(n, boolean=True)
        problem = cp.Problem(cp.Maximize(c @ x), [w @ x <= 6])
        return ipo.CvxpyLayer(problem, c, x, projection="none", data={"w": w})

    b = 1000
    costs = rng.normal(0.0, 1.0, size=(b, n))
    same = rng.random(b) < 0.5
    weights = np.where(same[:, None], base, rng.uniform(0.5, 8.0, size=(b, n)))
    compare(make, costs, w=weights)
    layer = make()
    layer.solve(torch.as_tensor(costs), w=torch.as_tensor(weights))
    words = np.array(layer.last_info.solver_status)
    assert (words[~same] != BOX_CERTIFICATE).all()
    assert (words[same] == BOX_CERTIFICATE).sum() > 100


def test_other_cones_get_no_shortcut() -> None:
    c = cp.Parameter(4)
    x = cp.Variable(4)
    problem = cp.Problem(cp.Minimize(c @ x), [cp.norm(x, 2) <= 3, x >= -1])
    layer = ipo.CvxpyLayer(problem, c, x, projection="none")
    assert layer.handle.spec.box is None and layer.handle.batch.box is None
    layer.solve(torch.ones(3, 4, dtype=torch.float64))
    assert set(layer.last_info.status) == {"optimal"}
    assert not SHORTCUTS & set(layer.last_info.solver_status)


def test_duals_requested_skip_it() -> None:
    rng = np.random.default_rng(5)
    weights = rng.integers(1, 10, size=(2, 8)).astype(float)
    c = cp.Parameter(8)
    x = cp.Variable(8)
    problem = cp.Problem(cp.Maximize(c @ x), [weights @ x <= weights.sum(1) / 3, x >= 0, x <= 1])
    layer = ipo.CvxpyLayer(problem, c, x, projection="none")
    costs = -torch.rand(6, 8, dtype=torch.float64)
    layer.solve(costs, duals=True)
    assert BOX_CERTIFICATE not in layer.last_info.solver_status
    assert layer.last_info.duals is not None
    layer.solve(costs)
    assert set(layer.last_info.solver_status) == {BOX_CERTIFICATE}
    assert torch.equal(layer.solve(costs), torch.zeros(6, 8, dtype=torch.float64))


def test_pool_gives_the_same_rows(force_pool) -> None:
    rng = np.random.default_rng(6)
    weights = rng.integers(1, 10, size=(3, 10)).astype(float)
    costs = torch.as_tensor(np.concatenate([rng.normal(-1, 1, (40, 10)), rng.normal(1, 1, (40, 10))]))

    def make(**options):
        c = cp.Parameter(10)
        cap = cp.Parameter(3, nonneg=True, value=weights.sum(1) / 3)
        x = cp.Variable(10, boolean=True)
        problem = cp.Problem(cp.Maximize(c @ x), [weights @ x <= cap])
        return ipo.CvxpyLayer(problem, c, x, projection="none", data={"cap": cap}, **options)

    caps = torch.as_tensor(weights.sum(1) * rng.uniform(0.1, 0.6, (80, 3)))
    serial = make()
    pooled = force_pool(make(workers=2))
    assert torch.equal(pooled(costs, cap=caps), serial(costs, cap=caps))
    assert pooled.last_info.mode == "pool"
    assert pooled.last_info.solver_status == serial.last_info.solver_status
    assert BOX_CERTIFICATE in serial.last_info.solver_status
    assert "kOptimal" in serial.last_info.solver_status
