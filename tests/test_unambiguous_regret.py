"""metrics.unambiguous_regret / normalized_unambiguous_regret: equal to PyEPO 2.2's
calUnambRegret and unambRegret on identical inputs (a minimisation and a maximisation, with and
without tied predictions), the worst tie by hand and by brute force, the rounding tolerance, the
retries, per-instance data, and every error."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model
from pyepo.metric.unambregret import calUnambRegret, unambRegret
from pyepo.model.ort import knapsackModel, shortestPathCpModel, shortestPathModel
from torch.utils.data import DataLoader, TensorDataset

import idproj_or as ipo
from idproj_or import metrics

B = 12


def _shortest_path():
    # PyEPO's binary (CP-SAT) model: its tie set is exactly the optima (see test_pyepo_lp_ties_are_looser)
    return ipo.ShortestPathLayer.grid(5, 5), shortestPathCpModel((5, 5))


def _knapsack():
    rng = np.random.default_rng(3)
    w = rng.integers(1, 10, size=(2, 10)).astype(float)
    cap = np.floor(w.sum(axis=1) / 2)
    return ipo.KnapsackLayer(w, cap), knapsackModel(w, cap)


PROBLEMS = {"shortest path (min)": _shortest_path, "knapsack (max)": _knapsack}


class _Lookup(torch.nn.Module):
    """PyEPO's metrics take a model and a loader: this one returns the fixed predictions of the
    instances whose indices are the features."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].long()]


@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize("ties", [True, False], ids=["tied predictions", "continuous predictions"])
def test_equals_pyepo(name, ties):
    layer, model = PROBLEMS[name]()
    n = layer.size
    gen = torch.Generator().manual_seed(7)
    true = (torch.rand(B, n, generator=gen) + 0.1).double()
    # integer predictions: many decisions tie for them; normal draws: none do
    pred = torch.randint(1, 4, (B, n), generator=gen).double() if ties else torch.randn(B, n, generator=gen).double()
    sols = layer.solve(true)
    optimal = (true * sols).sum(dim=1)
    ours = metrics.unambiguous_regret(layer, pred, true, optimal=optimal)
    theirs = [calUnambRegret(model, pred[i].numpy(), true[i].numpy(), optimal[i].item()) for i in range(B)]
    torch.testing.assert_close(ours, torch.tensor(theirs, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    plain = metrics.regret(layer, pred, true, optimal=optimal)
    if ties:  # somewhere the solver's optimum is not the worst
        assert (ours >= plain - 1e-9).all() and (ours > plain + 1e-3).any()
    else:
        torch.testing.assert_close(ours, plain)
    # the normalized form, as PyEPO computes it from a model and a loader
    loader = DataLoader(TensorDataset(torch.arange(B).double()[:, None], true, sols, optimal[:, None]), batch_size=5)
    reference = unambRegret(_Lookup(pred), model, loader)
    assert metrics.normalized_unambiguous_regret(layer, pred, true, optimal=optimal) == pytest.approx(
        reference, rel=1e-6
    )
    assert metrics.unambiguous_regret(layer, pred, true).tolist() == pytest.approx(ours.tolist(), abs=1e-9)


def test_pyepo_lp_ties_are_looser():
    """PyEPO's LP shortest path (GLOP) adds <c_r, y> <= ceil(z_r) + 0.01 to a polytope: its worst
    case may mix in a sliver of a decision that is not tied, and then exceeds the worst optimum a
    little (documented); never by less."""
    layer = ipo.ShortestPathLayer.grid(5, 5)
    gen = torch.Generator().manual_seed(7)
    true = (torch.rand(B, 40, generator=gen) + 0.1).double()
    pred = torch.randn(B, 40, generator=gen).double()
    optimal = (true * layer.solve(true)).sum(dim=1)
    ours = metrics.unambiguous_regret(layer, pred, true, optimal=optimal)
    lp = shortestPathModel((5, 5))
    theirs = torch.tensor([calUnambRegret(lp, pred[i].numpy(), true[i].numpy(), optimal[i].item()) for i in range(B)])
    assert (theirs >= ours - 1e-6).all()
    torch.testing.assert_close(ours, theirs.double(), rtol=1e-4, atol=1e-5)
    assert (theirs > ours + 1e-6).any()  # seed 7: instance 9 mixes in 9e-6 of a path outside the ties


def test_tied_prediction_takes_the_worse_optimum():
    # TopKLayer breaks ties towards the lower index: plain regret takes item 0 in both instances
    layer = ipo.TopKLayer(3, 1)  # maximisation
    pred = torch.tensor([[2.0, 2.0, 1.0], [2.0, 2.0, 1.0]])
    true = torch.tensor([[4.0, 1.0, 2.0], [1.0, 4.0, 2.0]])
    assert metrics.regret(layer, pred, true).tolist() == [0.0, 3.0]
    assert metrics.unambiguous_regret(layer, pred, true).tolist() == [3.0, 3.0]
    assert metrics.unambiguous_regret(layer, pred, true, reduction="sum").item() == 6.0
    assert metrics.unambiguous_regret(layer, pred, true, reduction="mean").item() == 3.0
    assert metrics.normalized_unambiguous_regret(layer, pred, true) == 6.0 / 8.0
    assert metrics.normalized_regret(layer, pred, true) == 3.0 / 8.0
    smallest = ipo.TopKLayer(3, 1, sense="min")
    pred, true = torch.tensor([[1.0, 1.0, 5.0]]), torch.tensor([[0.0, 3.0, 1.0]])
    assert metrics.regret(smallest, pred, true).tolist() == [0.0]
    assert metrics.unambiguous_regret(smallest, pred, true).tolist() == [3.0]


def test_ties_are_ties_after_rounding_with_the_tolerance():
    layer = ipo.TopKLayer(3, 1, sense="min")
    pred, true = torch.tensor([[1.0, 1.000001, 5.0]]), torch.tensor([[0.0, 3.0, 1.0]])
    assert metrics.unambiguous_regret(layer, pred, true).tolist() == [3.0]  # 1e-5: tied
    assert metrics.unambiguous_regret(layer, pred, true, tolerance=1e-7).tolist() == [0.0]  # not tied


def _knapsack_cpsat(w: list[int], cap: int) -> ipo.CpSatLayer:
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(len(w))]
    m.add(sum(wi * xi for wi, xi in zip(w, x)) <= cap)
    return ipo.CpSatLayer(m, x, sense="max")


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(1, 9), min_size=5, max_size=5),
    st.lists(st.integers(-3, 3), min_size=5, max_size=5),
    st.lists(st.integers(0, 9), min_size=5, max_size=5),
)
def test_matches_brute_force(weights, pred, true):
    cap = sum(weights) // 2
    layer = _knapsack_cpsat(weights, cap)
    feasible = [np.array(b) for b in itertools.product([0, 1], repeat=5) if np.dot(b, weights) <= cap]
    p, t = np.array(pred, float), np.array(true, float)
    best_pred = max(float(y @ p) for y in feasible)
    worst = min(float(y @ t) for y in feasible if float(y @ p) == best_pred)  # the worst optimum
    z = max(float(y @ t) for y in feasible)
    r = metrics.unambiguous_regret(
        layer, torch.tensor([pred], dtype=torch.float64), torch.tensor([true], dtype=torch.float64)
    )
    assert r.item() == z - worst


def test_each_instance_keeps_its_data():
    layer = ipo.KnapsackLayer([[1, 1, 1]], [1])
    pred = torch.tensor([[2.0, 2.0, 1.0], [2.0, 2.0, 1.0]])
    true = torch.tensor([[4.0, 1.0, 2.0], [4.0, 1.0, 2.0]])
    # capacity 1: items 0 and 1 tie, the worse is 1 (regret 4 - 1); capacity 2: {0, 1} is the one
    # optimum (value 5) and {0, 2} the true best (6)
    assert metrics.unambiguous_regret(layer, pred, true).tolist() == [3.0, 3.0]
    caps = torch.tensor([[1.0], [2.0]])
    assert metrics.unambiguous_regret(layer, pred, true, data={"capacity": caps}).tolist() == [3.0, 1.0]


def _wide_decisions() -> ipo.CpSatLayer:
    """min 2x - y: the one optimum is x = y = 0 (z = 1); every other decision has 2x - y >= 1 and
    reaches x = 100, y = 199, far beyond the 0/1 scale that the first optimum suggests."""
    m = cp_model.CpModel()
    x, y, z = m.new_int_var(0, 100, "x"), m.new_int_var(0, 200, "y"), m.new_bool_var("z")
    m.add(y <= 2 * x - 1 + z)
    m.add(x <= 100 * (1 - z))
    return ipo.CpSatLayer(m, [x, y], sense="min")


def test_a_decision_outside_the_ties_is_caught_and_the_weight_shrunk():
    layer = _wide_decisions()
    pred, true = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.0, 1.0]])
    # the first weight of the true cost (0.2) makes (100, 199) win the second solve: not tied
    assert metrics.unambiguous_regret(layer, pred, true, tolerance=1.0).tolist() == [0.0]
    with pytest.raises(ipo.SolverError, match="unambiguous_regret: instance 0: no tied decision was found after 1"):
        metrics.unambiguous_regret(layer, pred, true, tolerance=1.0, max_iter=1)
    assert metrics.regret(layer, pred, true).tolist() == [0.0]


def _failing_once(monkeypatch, layer, fail_at: int, index: int) -> list[torch.Tensor]:
    """Make the ``fail_at``-th call of ``layer.solve`` (from 1) fail at ``index`` of its batch."""
    calls: list[torch.Tensor] = []
    solve = layer.solve

    def patched(costs, **data):
        calls.append(costs.clone())
        if len(calls) == fail_at:
            raise ipo.SolverError("test: no solution", index=index, status="time_limit")
        return solve(costs, **data)

    monkeypatch.setattr(layer, "solve", patched)
    return calls


def test_a_failed_second_solve_is_retried_with_a_coarser_rounding(monkeypatch):
    layer = ipo.TopKLayer(3, 1, sense="min")
    pred = torch.tensor([[1.0, 1.0, 5.0], [1.0, 1.00004, 5.0]], dtype=torch.float64)
    true = torch.tensor([[0.0, 3.0, 1.0], [0.0, 3.0, 1.0]])
    optimal = torch.zeros(2)
    calls = _failing_once(monkeypatch, layer, fail_at=2, index=1)
    # instance 1's second solve fails: instance 0 is solved again alone, then instance 1 is
    # retried at tolerance 1e-4, where its two smallest entries tie (1e-5: they do not)
    assert metrics.unambiguous_regret(layer, pred, true, optimal=optimal).tolist() == [3.0, 3.0]
    assert [len(c) for c in calls] == [2, 2, 1, 1, 1]
    assert calls[3].tolist() == [[1e4, 1e4, 5e4]]
    layer = ipo.TopKLayer(3, 1, sense="min")
    _failing_once(monkeypatch, layer, fail_at=2, index=0)
    with pytest.raises(
        ipo.SolverError,
        match=r"unambiguous_regret: instance 0: its second solve has no decision \(time_limit\) after 1 attempts \(last "
        r"tolerance 1e-05\)",
    ):
        metrics.unambiguous_regret(layer, pred[:1], true[:1], optimal=optimal[:1], max_iter=1)


def test_an_instance_without_a_decision(monkeypatch):
    layer = ipo.TopKLayer(3, 1, sense="min")
    pred, true = torch.tensor([[1.0, 1.0, 5.0], [1.0, 2.0, 5.0]]), torch.tensor([[0.0, 3.0, 1.0], [0.0, 3.0, 1.0]])
    _failing_once(monkeypatch, layer, fail_at=1, index=1)
    with pytest.raises(
        ipo.SolverError, match=r"unambiguous_regret: instance 1 has no decision for its rounded predicted cost"
    ) as caught:
        metrics.unambiguous_regret(layer, pred, true, optimal=torch.zeros(2))
    assert caught.value.index == 1 and caught.value.status == "time_limit"
    nan_layer = ipo.TopKLayer(3, 1, sense="min", on_failure="nan")
    solve = nan_layer.solve

    def first_row_fails(costs, **data):  # the first solve of instance 0 has no decision
        y = solve(costs, **data)
        if len(costs) == 2:
            y[0] = float("nan")
        return y

    monkeypatch.setattr(nan_layer, "solve", first_row_fails)
    r = metrics.unambiguous_regret(nan_layer, pred, true, optimal=torch.zeros(2))
    assert r[0].isnan() and r[1].item() == 0.0
    assert metrics.unambiguous_regret(nan_layer, pred, true, optimal=torch.zeros(2), reduction="sum").item() == 0.0


def test_errors():
    layer = ipo.TopKLayer(4, 2)
    c = torch.ones(3, 4)
    cases = [
        ({"reduction": "max"}, "unambiguous_regret: reduction='max' must be one of"),
        ({"tolerance": 0.0}, "unambiguous_regret: tolerance=0.0 must be a finite positive number"),
        ({"tolerance": -1e-5}, "unambiguous_regret: tolerance=-1e-05 must be a finite positive number"),
        ({"tolerance": float("inf")}, "unambiguous_regret: tolerance=inf must be a finite positive number"),
        ({"tolerance": float("nan")}, "unambiguous_regret: tolerance=nan must be a finite positive number"),
        ({"tolerance": True}, "unambiguous_regret: tolerance=True must be a finite positive number"),
        ({"tolerance": "1e-5"}, "unambiguous_regret: tolerance='1e-5' must be a finite positive number"),
        ({"max_iter": 0}, "unambiguous_regret: max_iter=0 must be a positive int"),
        ({"max_iter": 2.0}, r"unambiguous_regret: max_iter=2\.0 must be a positive int"),
        ({"max_iter": True}, "unambiguous_regret: max_iter=True must be a positive int"),
        ({"pred_costs": torch.ones(3, 5)}, r"unambiguous_regret: pred_costs must have shape \(B, 4\)"),
        ({"true_costs": torch.ones(4)}, r"unambiguous_regret: true_costs must have shape \(B, 4\)"),
        ({"pred_costs": torch.ones(2, 4)}, "unambiguous_regret: 2 predicted and 3 true cost vectors"),
        ({"optimal": torch.ones(2)}, "unambiguous_regret: optimal has 2 entries for 3 instances"),
    ]
    for kwargs, match in cases:
        args = {"pred_costs": c, "true_costs": c, **kwargs}
        with pytest.raises(ValueError, match=match):
            metrics.unambiguous_regret(layer, **args)
    with pytest.raises(ValueError, match="normalized_unambiguous_regret: every optimal objective is 0"):
        metrics.normalized_unambiguous_regret(layer, c, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="normalized_unambiguous_regret: max_iter=-1 must be a positive int"):
        metrics.normalized_unambiguous_regret(layer, c, c, max_iter=-1)


@pytest.mark.parametrize("backend", ["GLOP", "SCIP", "CLP"])
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_large_predictions_still_find_the_worst_tie(backend, scale):
    """Found by review: with predictions of 1e3 the rounded costs are ~1e8, and a delta small
    enough to be safe sank below the solver's tolerance (a better tie came back: 0, not 3)."""
    solver = pywraplp.Solver.CreateSolver(backend)
    x = [solver.Var(0, 1, backend == "SCIP", f"x{i}") for i in range(3)]
    solver.Add(x[0] + x[1] + x[2] == 1)
    solver.Add(x[0] + 2 * x[1] + x[2] <= 5)  # not a network: the solver decides
    layer = ipo.LinearSolverLayer(solver, x, sense="min", projection="none")
    pred = torch.tensor([[2.0, 2.0, 7.0]], dtype=torch.float64) * scale  # items 0 and 1 tie
    true = torch.tensor([[0.0, 3.0, 1.0]], dtype=torch.float64)  # item 1 is the worse tie
    assert metrics.unambiguous_regret(layer, pred, true).tolist() == [3.0]
