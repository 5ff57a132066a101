"""regret / normalized_regret / evaluate: zero at the truth, hand computations, sign for max,
and agreement with brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or import data, metrics


def _choose(n: int, k: int, sense: str) -> ipo.CpSatLayer:
    """Pick exactly k of n items."""
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(n)]
    m.add(sum(x) == k)
    return ipo.CpSatLayer(m, x, sense=sense)


def _knapsack(w: list[int], cap: int) -> ipo.CpSatLayer:
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(len(w))]
    m.add(sum(wi * xi for wi, xi in zip(w, x)) <= cap)
    return ipo.CpSatLayer(m, x, sense="max")


@pytest.mark.parametrize("sense", ["min", "max"])
def test_zero_regret_for_true_costs(sense):
    layer = _choose(6, 2, sense)
    true = torch.randn(10, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(metrics.regret(layer, true, true), torch.zeros(10, dtype=torch.float64))
    assert metrics.normalized_regret(layer, true, true) == 0.0
    # scaling a prediction does not change the decision: still zero regret
    assert metrics.normalized_regret(layer, 3.0 * true, true) == 0.0


def test_hand_computation_min():
    layer = _choose(4, 2, "min")
    true = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, 0.0, 5.0]])
    pred = torch.tensor([[4.0, 3.0, 2.0, 1.0], [0.0, 1.0, 2.0, 3.0]])
    # instance 0: picks {2, 3} -> 7 vs optimum 1 + 2 = 3: regret 4
    # instance 1: picks {0, 1} -> -3 = optimum -3: regret 0
    r = metrics.regret(layer, pred, true)
    assert r.tolist() == [4.0, 0.0]
    assert metrics.regret(layer, pred, true, reduction="sum").item() == 4.0
    assert metrics.regret(layer, pred, true, reduction="mean").item() == 2.0
    assert metrics.normalized_regret(layer, pred, true) == pytest.approx(4.0 / (3.0 + 3.0))


def test_hand_computation_max_sign():
    layer = _knapsack([2, 3, 4], 5)  # feasible: {}, {0}, {1}, {2}, {0, 1}
    true = torch.tensor([[3.0, 4.0, 6.0]])  # optimum {0, 1} = 7
    pred = torch.tensor([[0.0, 0.0, 1.0]])  # picks {2} = 6
    assert metrics.regret(layer, pred, true).tolist() == [1.0]  # positive for max: 7 - 6
    assert metrics.normalized_regret(layer, pred, true) == pytest.approx(1.0 / 7.0)
    # negative objectives count by absolute value in the denominator
    layer_min = _choose(3, 1, "min")
    true_neg = torch.tensor([[-4.0, -1.0, -2.0]])
    assert metrics.normalized_regret(layer_min, torch.tensor([[1.0, 0.0, 2.0]]), true_neg) == pytest.approx(3.0 / 4.0)


def test_optimal_argument_matches_solved():
    layer = _choose(5, 2, "max")
    g = torch.Generator().manual_seed(1)
    true, pred = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    ds = data.solve_dataset(layer, torch.zeros(8, 1), true, progress=False, dtype=torch.float64)
    a = metrics.regret(layer, pred, true)
    b = metrics.regret(layer, pred, true, optimal=ds.objectives)
    assert torch.equal(a, b)
    assert metrics.normalized_regret(layer, pred, true, optimal=ds.objectives) == metrics.normalized_regret(
        layer, pred, true
    )


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(1, 9), min_size=5, max_size=5),
    st.lists(st.integers(-9, 9), min_size=5, max_size=5),
    st.lists(st.integers(0, 9), min_size=5, max_size=5),
)
def test_regret_matches_brute_force(weights, pred, true):
    cap = sum(weights) // 2
    layer = _knapsack(weights, cap)
    feasible = [np.array(b) for b in itertools.product([0, 1], repeat=5) if np.dot(b, weights) <= cap]
    p, t = np.array(pred, float), np.array(true, float)
    best_pred = max(float(y @ p) for y in feasible)
    # any optimum for the prediction is acceptable: regret lies between the best and worst tie
    achieved = [float(y @ t) for y in feasible if float(y @ p) == best_pred]
    z = max(float(y @ t) for y in feasible)
    r = metrics.regret(layer, torch.tensor([pred], dtype=torch.float64), torch.tensor([true], dtype=torch.float64))
    assert z - max(achieved) <= r.item() <= z - min(achieved)
    assert r.item() >= 0.0


def test_evaluate_matches_normalized_regret_and_restores_mode():
    layer = _choose(6, 3, "max")
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(30, 4, generator=g)
    true = feats @ torch.randn(4, 6, generator=g) + 0.1 * torch.randn(30, 6, generator=g)
    ds = data.solve_dataset(layer, feats, true, progress=False)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Dropout(0.5))
    model.train()
    value = metrics.evaluate(model, layer, ds, batch_size=7)
    assert model.training  # restored
    model.eval()
    expected = metrics.normalized_regret(layer, model(ds.features).detach(), ds.costs, optimal=ds.objectives)
    assert value == pytest.approx(expected)
    assert value > 0.0


def test_metric_errors():
    layer = _choose(4, 2, "min")
    c = torch.ones(3, 4)
    with pytest.raises(ValueError, match="regret: reduction='max'"):
        metrics.regret(layer, c, c, reduction="max")
    with pytest.raises(ValueError, match=r"regret: pred_costs must have shape \(B, 4\)"):
        metrics.regret(layer, torch.ones(3, 5), c)
    with pytest.raises(ValueError, match=r"regret: true_costs must have shape \(B, 4\)"):
        metrics.regret(layer, c, torch.ones(4))
    with pytest.raises(ValueError, match="regret: 2 predicted and 3 true cost vectors"):
        metrics.regret(layer, torch.ones(2, 4), c)
    with pytest.raises(ValueError, match="regret: optimal has 2 entries for 3 instances"):
        metrics.regret(layer, c, c, optimal=torch.ones(2))
    with pytest.raises(ValueError, match="normalized_regret: every optimal objective is 0"):
        metrics.normalized_regret(layer, c, torch.zeros(3, 4))
    ds = data.solve_dataset(layer, torch.zeros(3, 1), c, progress=False)
    with pytest.raises(ValueError, match="evaluate: batch_size=0"):
        metrics.evaluate(torch.nn.Linear(1, 4), layer, ds, batch_size=0)
