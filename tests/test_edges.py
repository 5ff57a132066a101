"""Numeric edges of the model backends (issue 22, points 1 and 2): huge cost ranges, float32 near
overflow, big-M costs for CP-SAT. Every decision labelled optimal equals brute force; any other
gets a status that says so, with a warning."""

import itertools
import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or.rules.projection import normalize, project

LP = ("GLOP", "CLP", "PDLP", "HIGHS_LP")
MIP = ("SCIP", "CBC", "HIGHS", "CP_SAT", "BOP")


def choose(n, k, backend):
    """``sum(x) == k`` over ``n`` variables in [0, 1] (Boolean for a MIP backend)."""
    if backend in ("cvxpy", "cvxpy_lp"):
        c = cp.Parameter(n)
        x = cp.Variable(n, boolean=backend == "cvxpy")
        bounds = [] if backend == "cvxpy" else [x >= 0, x <= 1]
        problem = cp.Problem(cp.Minimize(c @ x), [cp.sum(x) == k, *bounds])
        return lambda **o: ipo.CvxpyLayer(problem, c, x, **o)
    if backend == "cpsat":
        model = cp_model.CpModel()
        x = [model.new_bool_var(f"x{i}") for i in range(n)]
        model.add(sum(x) == k)
        return lambda **o: ipo.CpSatLayer(model, x, **o)
    solver = pywraplp.Solver.CreateSolver(backend)
    x = [solver.NumVar(0, 1, f"x{i}") if backend in LP else solver.BoolVar(f"x{i}") for i in range(n)]
    solver.Add(sum(x) == k)
    return lambda **o: ipo.LinearSolverLayer(solver, x, **o)


def brute_best(c, k):
    """The least objective of ``k`` items out of ``len(c)``."""
    return min(sum(c[list(s)]) for s in itertools.combinations(range(len(c)), k))


def ranged_costs(big, dtype):
    """One entry ``big`` among 3, 4, 5 at every position: the optimum (k=2, min) never takes it."""
    rows = [np.insert(np.array([5.0, 3.0, 4.0]), p, big) for p in range(4)]
    return torch.tensor(np.array(rows), dtype=dtype)


@pytest.mark.parametrize("backend", [*LP, *MIP, "cpsat", "cvxpy", "cvxpy_lp"])
@pytest.mark.parametrize("big", [3e9, 1e10, 1e12])
def test_large_ranges_in_float64_are_solved_exactly_under_every_projection(backend, big):
    make = choose(4, 2, backend)
    costs = ranged_costs(big, torch.float64)
    for projection in ("auto", "norm", "std", "none"):
        layer = make(projection=projection)
        y = layer(costs)
        assert set(layer.last_info.status) == {"optimal"}, (projection, layer.last_info.status)
        for c, yi in zip(costs.numpy(), y.numpy()):
            assert (c * yi).sum() == brute_best(c, 2), (projection, c, yi)
        torch.testing.assert_close(y, layer.solve(costs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", [*LP, *MIP, "cpsat", "cvxpy", "cvxpy_lp"])
@pytest.mark.parametrize(
    "big, dtype", [(1e15, torch.float64), (1e20, torch.float32), (1e30, torch.float32), (1e30, torch.bfloat16)]
)
def test_beyond_the_resolved_range_no_worse_decision_is_labelled_optimal(backend, big, dtype):
    layer = choose(4, 2, backend)(on_failure="nan")
    costs = ranged_costs(big, dtype)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        y = layer(costs)
    info = layer.last_info
    exact = costs.to(torch.float64).numpy()
    for i, (c, yi) in enumerate(zip(exact, y.to(torch.float64).numpy())):
        if info.status[i] == "optimal":
            assert (c * yi).sum() == brute_best(c, 2), (c, yi)
        else:
            assert info.status[i] in ("feasible", "error"), info.status[i]
    if set(info.status) != {"optimal"}:
        assert any(issubclass(w.category, ipo.SolverWarning) for w in seen)


def test_a_solver_failing_on_huge_costs_says_why():
    make = choose(4, 2, "SCIP")
    with pytest.raises(ipo.SolverError, match=r"instance 0 .* span more than floating-point solvers resolve"):
        make(projection="none")(ranged_costs(1e25, torch.float64)[:1])


@pytest.mark.parametrize("big", [1e6, 1e7, 1e9])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpsat_big_m_costs_against_brute_force(big, dtype):
    # 12 Booleans, sum == 3, costs U(0, 5) and one entry M: a fixed 2^20 resolution made 15/40
    # (M = 1e6) and 40/40 (M = 1e7) decisions worse, all labelled optimal.
    rng = np.random.default_rng(int(big))
    costs = rng.uniform(0, 5, size=(40, 12))
    costs[np.arange(40), rng.integers(0, 12, 40)] = big
    costs = torch.tensor(costs, dtype=dtype)
    layer = choose(12, 3, "cpsat")(projection="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ipo.SolverWarning)
        y = layer(costs)
    info = layer.last_info
    exact = costs.to(torch.float64).numpy()
    for i, (c, yi) in enumerate(zip(exact, y.numpy())):
        best = np.sort(c)[:3].sum()
        gap = (c * yi).sum() - best
        assert gap <= info.scaling_error[i] + 1e-12 * np.abs(c).sum()
        if info.status[i] == "optimal":
            assert gap <= 1e-12 * best
    if dtype == torch.float32:
        # float32 costs over this range are integers once scaled: exact, proven optimal
        assert set(info.status) == {"optimal"} and not info.scaling_error.any()


def test_cpsat_reports_an_unresolvable_range_as_feasible_with_its_bound():
    costs = torch.tensor([[1e30, 3.0, 4.0, 5.0], [5.0, 4.0, 3.0, 1e30]])
    layer = choose(4, 2, "cpsat")()
    with pytest.warns(ipo.SolverWarning, match=r"not proven optimal .* up to .* worse than optimal"):
        y = layer(costs)
    info = layer.last_info
    assert info.status == ("feasible", "feasible")
    assert ((costs.double() * y).sum(1).numpy() - 7.0 <= info.scaling_error).all()
    assert (info.scaling_error > 0).all() and info[0].scaling_error == info.scaling_error[0]


def test_cpsat_integer_costs_are_exact():
    layer = choose(6, 3, "cpsat")(projection="none")
    costs = torch.tensor([[7.0, -3.0, 2.0, 11.0, 0.0, 5.0], [2.0**40, 1.0, 2.0, 3.0, 4.0, 5.0]], dtype=torch.float64)
    y = layer(costs)
    assert layer.last_info.status == ("optimal", "optimal") and not layer.last_info.scaling_error.any()
    assert y.tolist() == [[0, 1, 1, 0, 1, 0], [0, 1, 1, 1, 0, 0]]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_normalize_neither_overflows_nor_underflows(dtype):
    big = min(1e30, torch.finfo(dtype).max / 4)
    base = torch.tensor([[4.0, -3.0, 2.0, 1.0]], dtype=torch.float64)
    reference = base / base.norm()  # scale invariant
    for scale in (big, 1.0, torch.finfo(dtype).tiny * 4):
        w = (base * scale).to(dtype).requires_grad_(True)
        z = normalize(w.float() if dtype in (torch.float16, torch.bfloat16) else w)
        torch.testing.assert_close(z.double(), reference, rtol=1e-2, atol=0)
        z.sum().backward()
        assert torch.isfinite(w.grad).all()


@pytest.mark.parametrize("projection", ["auto", "norm", "std"])
def test_the_noise_margin_is_solved_at_the_raw_scale(projection):
    # The solver gets w + s xi, s the norm the projection divided out: its argmin is that of the
    # paper's P(w) + xi, computed here independently by brute force over the 6 feasible points.
    layer = choose(4, 2, "cpsat")(projection=projection, noise=0.5, generator=torch.Generator().manual_seed(3))
    layer.train()
    w = torch.tensor(np.random.default_rng(0).uniform(-1e6, 1e6, size=(32, 4)))
    y = layer(w)
    # the same draws again, from a fresh generator of the same seed
    draws = torch.randint(0, 2, (32, 4), generator=torch.Generator().manual_seed(3), dtype=torch.int8)
    xi = (draws.to(torch.float64) - 0.5) * 0.5
    z = project(w, projection, layer.basis) + xi
    points = [np.array(p, dtype=float) for p in itertools.product([0, 1], repeat=4) if sum(p) == 2]
    for zi, yi in zip(z.numpy(), y.numpy()):
        values = sorted((zi @ p, tuple(p)) for p in points)
        assert values[0][0] < values[1][0] - 1e-9  # no tie: the answer is unique
        assert tuple(yi) == values[0][1]
