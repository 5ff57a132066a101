"""Warm starts of CVXPY LPs on the resident HiGHS model: each id's last optimal basis, kept in the
caller and shipped with the instance. A basis never changes the objective (only which optimum a
tie returns); a solve depends on its cost, data and basis only, whatever ran before; serial and
pool agree; MIPs and other solvers take none."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

import idproj_or as ipo


def grid_lp(size: int = 5, **options: object) -> ipo.CvxpyLayer:
    """A grid shortest path LP, every shortcut off (each row is solved by HiGHS)."""
    arcs = [(i * size + j, i * size + j + 1) for i in range(size) for j in range(size - 1)]
    arcs += [(i * size + j, (i + 1) * size + j) for i in range(size - 1) for j in range(size)]
    a = np.zeros((size * size, len(arcs)))
    for k, (i, j) in enumerate(arcs):
        a[i, k], a[j, k] = 1.0, -1.0
    b = np.zeros(size * size)
    b[0], b[-1] = 1.0, -1.0
    c = cp.Parameter(len(arcs))
    x = cp.Variable(len(arcs))
    problem = cp.Problem(cp.Minimize(c @ x), [a @ x == b, x >= 0, x <= 1])
    layer = ipo.CvxpyLayer(problem, c, x, projection="none", **{"warm_start": True, **options})
    layer.handle.batch.box = None
    return layer


def budget_lp(**options: object) -> ipo.CvxpyLayer:
    """An LP with per-instance budgets (right-hand sides) and its own objective."""
    rng = np.random.default_rng(0)
    n = 10
    a = rng.integers(1, 6, size=(3, n)).astype(float)
    c = cp.Parameter(n)
    budget = cp.Parameter(3, nonneg=True, value=a.sum(1) / 2)
    x = cp.Variable(n)
    own = rng.integers(0, 3, n).astype(float)
    problem = cp.Problem(cp.Maximize(c @ x + own @ x + 1.0), [a @ x <= budget, x >= 0, x <= 1])
    layer = ipo.CvxpyLayer(problem, c, x, projection="none", data={"budget": budget}, **options)
    layer.handle.batch.box = None
    return layer


def drift(base: torch.Tensor, rounds: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out, c = [], base.clone()
    for _ in range(rounds):
        c = c + 0.3 * torch.randn(c.shape, generator=gen, dtype=c.dtype)
        out.append(c.clone())
    return out


def test_lps_take_warm_starts_off_by_default_mips_none() -> None:
    default = grid_lp(warm_start=None)
    assert default.warm_start is False
    default(torch.rand(5, 40, dtype=torch.float64), ids=torch.arange(5))
    assert len(default.handle.states) == 0
    layer = grid_lp()
    layer(torch.rand(5, 40, dtype=torch.float64), ids=torch.arange(5))
    assert len(layer.handle.states) == 5
    c = cp.Parameter(3)
    x = cp.Variable(3, boolean=True)
    problem = cp.Problem(cp.Maximize(c @ x), [cp.sum(x) <= 2])
    with pytest.raises(ValueError, match=r"warm_start=True is not supported"):
        ipo.CvxpyLayer(problem, c, x, warm_start=True)
    assert ipo.CvxpyLayer(problem, c, x).warm_start is False


def test_bases_never_change_the_objective() -> None:
    """Warm and cold on 3 x 700 drifting instances with integer (tied) costs: equal objectives."""
    cold, warm = grid_lp(warm_start=False), grid_lp()
    base = torch.randint(0, 4, (700, 40)).double()
    ids = torch.arange(700)
    for c in drift(base, 3, seed=1):
        c = c.round().abs()
        cold.solve(c)
        warm(c, ids=ids)
        np.testing.assert_allclose(warm.last_info.objective, cold.last_info.objective, rtol=0, atol=1e-9)
        assert warm.last_info.status.count("optimal") == 700
    assert len(warm.handle.states) == 700


def test_bases_with_per_instance_data_never_change_the_objective() -> None:
    cold, warm = budget_lp(), budget_lp(warm_start=True)
    rng = np.random.default_rng(2)
    base = torch.as_tensor(rng.integers(-2, 4, (500, 10)).astype(float))
    ids = torch.arange(500)
    for k, c in enumerate(drift(base, 3, seed=3)):
        c = c.round()
        budget = torch.as_tensor(np.round(rng.uniform(1.0, 12.0, (500, 3)), 1 + k))
        cold.solve(c, budget=budget)
        warm(c, ids=ids, budget=budget)
        np.testing.assert_allclose(warm.last_info.objective, cold.last_info.objective, rtol=1e-9, atol=1e-9)
        assert warm.last_info.status == cold.last_info.status


def test_a_solve_depends_on_its_instance_and_basis_only() -> None:
    """The resident model solves an instance from its shipped basis to the same decision whatever
    it solved before, and reports the basis to keep; a cold row stays cold."""
    layer = grid_lp()
    spec = layer.handle.spec
    rng = np.random.default_rng(4)
    costs = rng.integers(0, 3, (6, 40)).astype(float)  # tied
    first = spec.build().solve_many(costs, None, warm=np.empty((6, 0)))
    assert first.warm is not None and not np.isnan(first.warm).any()
    states = first.warm.copy()
    states[2] = np.nan
    new = costs + rng.integers(0, 2, costs.shape)
    fresh = [spec.build().solve_many(new[i : i + 1], None, warm=states[i : i + 1]) for i in range(6)]
    after = spec.build()
    after.solve_many(rng.integers(0, 5, (5, 40)).astype(float), None, warm=np.empty((5, 0)))
    together = after.solve_many(new[::-1], None, warm=states[::-1])
    for i in range(6):
        np.testing.assert_array_equal(together.solutions[5 - i], fresh[i].solutions[0])
        np.testing.assert_array_equal(together.warm[5 - i], fresh[i].warm[0])


def test_warm_starts_are_identical_serial_and_pool() -> None:
    serial = grid_lp(route="serial", workers=2)
    pooled = grid_lp(route="pool", workers=2)
    base = torch.randint(0, 3, (40, 40)).double()
    ids = torch.arange(100, 140)
    for c in drift(base, 3, seed=5):
        c = c.round().abs()
        ys, yp = serial(c, ids=ids), pooled(c, ids=ids)
        assert pooled.last_info.mode == "pool"
        assert torch.equal(ys, yp)
        np.testing.assert_array_equal(serial.handle.states.rows(ids.numpy()), pooled.handle.states.rows(ids.numpy()))


def test_the_shipped_basis_starts_the_solve() -> None:
    """Solved again from its own optimal basis, an instance takes no simplex iteration; cold, it
    takes some."""
    spec = grid_lp().handle.spec
    costs = np.random.default_rng(6).uniform(0.1, 1.0, (1, 40))
    solver = spec.build()
    first = solver.solve_many(costs, None, warm=np.empty((1, 0)))
    assert solver.model.highs.getInfo().simplex_iteration_count > 0
    again = solver.solve_many(costs, None, warm=first.warm)
    assert solver.model.highs.getInfo().simplex_iteration_count == 0
    np.testing.assert_array_equal(again.solutions, first.solutions)
    solver.solve_many(costs, None, warm=np.full_like(first.warm, np.nan))
    assert solver.model.highs.getInfo().simplex_iteration_count > 0
