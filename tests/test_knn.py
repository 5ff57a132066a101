"""kNN-robust targets (data.knn_costs, data.solve_knn_dataset): equal to PyEPO 2.2's
optDatasetKNN on identical inputs (a minimisation and a maximisation), its neighbours exactly,
the edge weights by hand, per-instance data, the pool, and every error.

The features are continuous draws: no two distances tie, so the neighbours are unambiguous
(between equal distances both libraries take what numpy's argpartition gives)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pyepo.data.dataset import optDatasetKNN
from pyepo.model.ort import knapsackModel, shortestPathModel

import idproj_or as ipo
from idproj_or import data

N = 24


def _shortest_path():
    d = data.shortest_path(N, 5, (5, 5), deg=4, noise_width=0.5, seed=11)
    return ipo.ShortestPathLayer.grid(5, 5), shortestPathModel((5, 5)), d.features, d.costs


def _knapsack_arrays():
    rng = np.random.default_rng(3)
    w = rng.integers(1, 10, size=(2, 10)).astype(float)
    cap = np.floor(w.sum(axis=1) / 2)
    feats = rng.normal(size=(N, 4))
    costs = rng.uniform(1.0, 10.0, size=(N, 10))  # continuous values: no tied packings
    return w, cap, feats, costs


def _knapsack():
    w, cap, feats, costs = _knapsack_arrays()
    return ipo.KnapsackLayer(w, cap), knapsackModel(w, cap), feats, costs


PROBLEMS = {"shortest path (min)": _shortest_path, "knapsack (max)": _knapsack}


@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize(("k", "weight"), [(5, 0.5), (1, 0.0), (N - 1, 0.8), (3, 1.0)])
def test_equals_pyepo(name, k, weight):
    layer, model, feats, costs = PROBLEMS[name]()
    ours = data.solve_knn_dataset(layer, feats, costs, k=k, weight=weight, progress=False, chunk=17)
    theirs = optDatasetKNN(model, feats, costs, k=k, weight=weight)
    torch.testing.assert_close(ours.features, theirs.feats)
    torch.testing.assert_close(ours.costs, theirs.costs)
    torch.testing.assert_close(ours.solutions, theirs.sols)
    torch.testing.assert_close(ours.objectives.float(), theirs.objs[:, 0])
    assert ours.objectives.dtype == torch.float64
    if 0 < weight < 1 and k > 1:  # averaged decisions of different combinations: fractional targets
        assert ((ours.solutions > 0) & (ours.solutions < 1)).any()


def test_neighbours_are_pyepos_and_the_nearest():
    rng = np.random.default_rng(0)
    feats, costs = rng.normal(size=(40, 3)), rng.normal(size=(40, 6))
    ours = data.knn_costs(feats, costs, k=7, weight=0.3)
    theirs = optDatasetKNN._get_knn(SimpleNamespace(feats=feats, costs=costs, k=7, weight=0.3))
    np.testing.assert_array_equal(ours, np.moveaxis(theirs, 2, 1))  # same neighbours, same order
    dist = np.linalg.norm(feats[:, None] - feats[None], axis=2)
    for i in range(40):
        nearest = [j for j in np.argsort(dist[i]) if j != i][:7]
        expected = 0.3 * costs[i] + 0.7 * costs[nearest]
        np.testing.assert_allclose(np.sort(ours[i], axis=0), np.sort(expected, axis=0), rtol=1e-12)


def test_by_hand_and_the_weight_edges():
    feats = np.array([[0.0], [1.0], [3.0], [7.0]])  # nearest: 0 -> 1, 1 -> 0, 2 -> 1, 3 -> 2
    costs = np.array([[0.0, 4.0], [2.0, 0.0], [4.0, 4.0], [8.0, 0.0]])
    assert data.knn_costs(feats, costs, k=1, weight=0.25).tolist() == [
        [[1.5, 1.0]],
        [[0.5, 3.0]],
        [[2.5, 1.0]],
        [[5.0, 3.0]],
    ]
    np.testing.assert_array_equal(data.knn_costs(feats, costs, k=1, weight=1.0)[:, 0], costs)
    np.testing.assert_array_equal(data.knn_costs(feats, costs, k=1, weight=0.0)[:, 0], costs[[1, 0, 1, 2]])
    # a (N, h, w) cost shape keeps its shape; torch inputs are taken as they are
    square = torch.arange(16.0).reshape(4, 2, 2)
    out = data.knn_costs(torch.as_tensor(feats), square, k=2, weight=0.5)
    assert out.shape == (4, 2, 2, 2)
    # instance 3 (at 7): neighbours 2 (at 3) and 1 (at 1), whose [0, 0] entries are 8 and 4
    np.testing.assert_array_equal(np.sort(out[3, :, 0, 0]), [0.5 * 12 + 0.5 * 4, 0.5 * 12 + 0.5 * 8])


def test_weight_one_gives_the_true_targets():
    layer, _, feats, costs = _shortest_path()
    knn = data.solve_knn_dataset(layer, feats, costs, k=4, weight=1.0, progress=False, dtype=torch.float64)
    plain = data.solve_dataset(layer, feats, costs, progress=False, dtype=torch.float64)
    assert torch.equal(knn.costs, plain.costs) and torch.equal(knn.solutions, plain.solutions)
    torch.testing.assert_close(knn.objectives, plain.objectives, rtol=1e-12, atol=0.0)


def test_each_instance_keeps_its_data():
    rng = np.random.default_rng(5)
    w = rng.integers(1, 10, size=(1, 8))
    layer = ipo.KnapsackLayer(w, [20])
    feats, costs = rng.normal(size=(10, 2)), rng.uniform(1, 5, size=(10, 8))
    caps = rng.integers(5, 30, size=(10, 1)).astype(float)
    ds = data.solve_knn_dataset(layer, feats, costs, k=3, progress=False, data={"capacity": caps}, dtype=torch.float64)
    assert torch.equal(ds.data["capacity"], torch.as_tensor(caps))
    combined = data.knn_costs(feats, costs, k=3)
    for i in range(10):
        sols = layer.solve(torch.from_numpy(combined[i]), capacity=np.repeat(caps[i : i + 1], 3, axis=0))
        torch.testing.assert_close(ds.solutions[i], sols.mean(dim=0))
        torch.testing.assert_close(ds.objectives[i], (sols * torch.from_numpy(combined[i])).sum(dim=1).mean())
    without = data.solve_knn_dataset(layer, feats, costs, k=3, progress=False, dtype=torch.float64)
    assert not torch.equal(without.solutions, ds.solutions)  # the capacities were used


def test_pool_matches_serial(force_pool):
    w, cap, feats, costs = _knapsack_arrays()
    serial = data.solve_knn_dataset(ipo.KnapsackLayer(w, cap), feats, costs, k=4, progress=False)
    pooled_layer = force_pool(ipo.KnapsackLayer(w, cap, workers=2))
    pooled = data.solve_knn_dataset(pooled_layer, feats, costs, k=4, progress=False, chunk=N * 4)
    assert pooled_layer.last_info.mode == "pool"
    assert torch.equal(serial.solutions, pooled.solutions) and torch.equal(serial.objectives, pooled.objectives)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "solve_knn_dataset: k=0 must be a positive int"),
        ({"k": True}, "solve_knn_dataset: k=True must be a positive int"),
        ({"k": 2.0}, r"solve_knn_dataset: k=2\.0 must be a positive int"),
        ({"k": 6}, r"solve_knn_dataset: k=6 must be below the number of instances \(6\)"),
        ({"k": 7}, r"solve_knn_dataset: k=7 must be below the number of instances \(6\)"),
        ({"weight": -0.1}, r"solve_knn_dataset: weight=-0\.1 must be a number in \[0, 1\]"),
        ({"weight": 1.5}, r"solve_knn_dataset: weight=1\.5 must be a number in \[0, 1\]"),
        ({"weight": float("nan")}, r"solve_knn_dataset: weight=nan must be a number in \[0, 1\]"),
        ({"weight": True}, "solve_knn_dataset: weight=True must be a number"),
        ({"chunk": 0}, "solve_knn_dataset: chunk=0 must be a positive int"),
        ({"features": np.zeros(6)}, r"solve_knn_dataset: features must be \(N, p\)"),
        ({"costs": np.zeros((6, 7))}, r"solve_knn_dataset: costs must be \(6, 8\)"),
        ({"costs": np.zeros((5, 8))}, r"solve_knn_dataset: costs must be \(6, 8\)"),
        (
            {"data": {"capacity": np.ones((5, 1))}},
            r"solve_knn_dataset: data 'capacity' must have one row per instance \(6\)",
        ),
    ],
)
def test_solve_knn_dataset_errors(kwargs, match):
    layer = ipo.KnapsackLayer(np.ones((1, 8)), [3])
    args = {"features": np.random.default_rng(0).normal(size=(6, 2)), "costs": np.ones((6, 8)), "k": 3}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        data.solve_knn_dataset(layer, progress=False, **args)


@pytest.mark.parametrize(
    ("features", "costs", "k", "match"),
    [
        (np.zeros((4, 2)), np.zeros((4, 3)), 4, r"knn_costs: k=4 must be below the number of instances \(4\)"),
        (np.zeros((4, 2)), np.zeros((4, 3)), -1, "knn_costs: k=-1 must be a positive int"),
        (np.zeros(4), np.zeros((4, 3)), 1, r"knn_costs: features must be \(N, p\), got shape \(4,\)"),
        (np.zeros((4, 2)), np.zeros(4), 1, r"knn_costs: costs must be \(4, \.\.\.\)"),
        (np.zeros((4, 2)), np.zeros((3, 3)), 1, r"knn_costs: costs must be \(4, \.\.\.\) to match 4 features"),
    ],
)
def test_knn_costs_errors(features, costs, k, match):
    assert data.knn_costs(np.zeros((4, 2)), np.zeros((4, 3)), k=3).shape == (4, 3, 3)  # k = N - 1 is valid
    with pytest.raises(ValueError, match=match):
        data.knn_costs(features, costs, k=k)
