"""The per-instance data examples (examples/knapsack_capacities.py, portfolio_budget.py,
scheduling_due_dates.py): a tiny run trains, each decision respects its own instance's data, and
the regret taken with the data equals a recomputation by an independent solve of that instance."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from ortools.sat.python import cp_model
from scipy.optimize import linprog

import idproj_or as ipo
from idproj_or import metrics
from tests.vrp_reference import check_solution

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--train", "200", "--test", "50", "--epochs", "3", "--quiet"]


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


knapsack = _example("knapsack_capacities")
portfolio = _example("portfolio_budget")
scheduling = _example("scheduling_due_dates")
cvrp = _example("cvrp")


@pytest.mark.parametrize("example", [knapsack, portfolio, scheduling], ids=lambda m: m.__name__)
def test_tiny_run_trains_below_untrained(example, capsys):
    summary = example.main(TINY)
    trained, two_stage, floor = summary["decision-focused"], summary["two-stage"], summary["oracle E[c|x]"]
    assert trained["untrained"] > 0.2  # a random linear model decides badly
    assert trained["mean"] < 0.85 * trained["untrained"]
    assert 0.0 <= floor["mean"] < two_stage["mean"] < trained["untrained"]
    printed = capsys.readouterr().out
    assert all(f"| {label} |" in printed for label in summary)


def _wrong_predictions(costs: np.ndarray) -> torch.Tensor:
    """Integral costs of the other instances: a prediction that is wrong but exactly solvable."""
    return torch.as_tensor(np.roll(costs, 1, axis=0), dtype=torch.float64)


def _knapsack_optimum(weights: np.ndarray, cap: np.ndarray, values: np.ndarray) -> float:
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(weights.shape[1])]
    for k in range(len(weights)):
        model.add(sum(int(weights[k, i]) * x[i] for i in range(len(x))) <= int(cap[k]))
    model.maximize(sum(int(values[i]) * x[i] for i in range(len(x))))
    solver = cp_model.CpSolver()
    assert solver.solve(model) == cp_model.OPTIMAL
    return solver.objective_value


def test_knapsack_decisions_fit_each_capacity_and_regret_matches_direct_solve():
    d = knapsack.generate(6, seed=3)
    layer = knapsack.build_layer(d.weights)
    caps = knapsack.scaled_capacities(d.capacities)
    weights = np.rint(d.weights * 100.0)
    pred, true = _wrong_predictions(d.costs), torch.as_tensor(d.costs)
    y = layer.solve(pred, cap=torch.as_tensor(caps)).numpy()
    assert (layer.solve(pred).numpy() == 1).all()  # the model's own capacity: everything fits
    used = y @ weights.T
    assert (used <= caps).all()
    assert (used > caps.min(axis=0)).any(axis=1).any()  # some instance uses more than the smallest capacity
    got = metrics.regret(layer, pred, true, data={"cap": caps}).numpy()
    for i in range(len(y)):
        assert float(pred[i].numpy() @ y[i]) == _knapsack_optimum(weights, caps[i], pred[i].numpy())
        assert got[i] == _knapsack_optimum(weights, caps[i], d.costs[i]) - float(d.costs[i] @ y[i])


def _allocation_optimum(prices: np.ndarray, sectors: np.ndarray, budget: float, returns: np.ndarray) -> float:
    """The allocation LP solved by scipy (HiGHS), written out by hand."""
    rows = [prices] + [np.where(sectors == s, prices, 0.0) for s in range(portfolio.SECTORS)]
    bounds = [budget] + [portfolio.SECTOR_SHARE * budget] * portfolio.SECTORS
    result = linprog(-returns, A_ub=np.array(rows), b_ub=np.array(bounds), bounds=(0.0, 1.0), method="highs")
    assert result.status == 0
    return -result.fun


def test_portfolio_spends_each_budget_and_regret_matches_direct_solve():
    d = portfolio.generate(6, seed=3)
    layer = portfolio.build_layer(d.prices, d.sectors)
    pred, true = _wrong_predictions(d.returns), torch.as_tensor(d.returns)
    y = layer.solve(pred, budget=torch.as_tensor(d.budgets)).numpy()
    assert ((y >= -1e-9) & (y <= 1 + 1e-9)).all()
    # positive returns and not everything affordable: each instance spends exactly its own budget
    np.testing.assert_allclose(y @ d.prices, d.budgets, rtol=1e-7)
    for s in range(portfolio.SECTORS):
        assert (y[:, d.sectors == s] @ d.prices[d.sectors == s] <= portfolio.SECTOR_SHARE * d.budgets + 1e-7).all()
    got = metrics.regret(layer, pred, true, data={"budget": d.budgets}).numpy()
    for i in range(len(y)):
        np.testing.assert_allclose(
            pred[i].numpy() @ y[i], _allocation_optimum(d.prices, d.sectors, d.budgets[i], pred[i].numpy()), rtol=1e-7
        )
        best = _allocation_optimum(d.prices, d.sectors, d.budgets[i], d.returns[i])
        np.testing.assert_allclose(got[i], best - d.returns[i] @ y[i], rtol=1e-6, atol=1e-7)


def _on_time(jobs: tuple[int, ...], durations: np.ndarray, due: np.ndarray) -> bool:
    """A set of jobs fits one machine by its due dates iff it does in due-date order (Jackson)."""
    ends = np.cumsum(durations[sorted(jobs, key=lambda j: due[j])])
    return bool((ends <= np.sort(due[list(jobs)])).all())


def _best_schedule(durations: np.ndarray, due: np.ndarray, profits: np.ndarray) -> float:
    """Brute force over every subset of jobs."""
    jobs = range(len(durations))
    return max(
        float(profits[list(s)].sum())
        for r in range(len(durations) + 1)
        for s in itertools.combinations(jobs, r)
        if _on_time(s, durations, due)
    )


def test_schedule_meets_each_due_date_and_regret_matches_brute_force():
    d = scheduling.generate(6, seed=3)
    layer = scheduling.build_layer(d.durations)
    pred, true = _wrong_predictions(d.profits), torch.as_tensor(d.profits)
    y = layer.solve(pred, due=torch.as_tensor(d.due)).numpy()
    assert (layer.solve(pred).numpy() == 1).all()  # the model's own ends: every job fits
    assert (y.sum(axis=1) < scheduling.JOBS).all()
    got = metrics.regret(layer, pred, true, data={"due": d.due}).numpy()
    for i in range(len(y)):
        accepted = tuple(int(j) for j in np.flatnonzero(y[i]))
        assert _on_time(accepted, d.durations, d.due[i])
        assert float(pred[i].numpy() @ y[i]) == _best_schedule(d.durations, d.due[i], pred[i].numpy())
        assert got[i] == _best_schedule(d.durations, d.due[i], d.profits[i]) - float(d.profits[i] @ y[i])


def test_cvrp_tiny_run_trains_and_routes_respect_each_instances_demands(capsys):
    summary = cvrp.main(["--train", "96", "--test", "32", "--epochs", "2", "--quiet"])
    trained, two_stage, floor = summary["decision-focused"], summary["two-stage"], summary["oracle E[c|x]"]
    assert trained["mean"] < 0.85 * trained["untrained"]
    assert 0.0 <= floor["mean"] < two_stage["mean"] < trained["untrained"]
    d, demands, _ = cvrp.generate(6, 0)
    layer = cvrp.build_layer()
    y = layer.solve(torch.as_tensor(cvrp.edges(d.costs)), demands=torch.as_tensor(demands)).numpy()
    for yi, di in zip(y, demands):
        routes = check_solution(yi, di.tolist(), cvrp.CAPACITY, cvrp.VEHICLES)
        assert sorted(c for r in routes for c in r) == list(range(1, cvrp.CUSTOMERS + 1))
    # the same routes as a layer built with that instance's demands: the data reached the solver
    own = ipo.VRPLayer(
        cvrp.CUSTOMERS, cvrp.CAPACITY, demands[0], n_vehicles=cvrp.VEHICLES, method="pyvrp", iterations=cvrp.ITERATIONS
    )
    assert torch.equal(own.solve(torch.as_tensor(cvrp.edges(d.costs[:1])))[0], torch.as_tensor(y[0]))
