"""PyEPO-style generators (shapes, ranges, formulas, determinism) and solve_dataset."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or import data


def _all_equal(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: data.shortest_path(20, 5, (5, 5), deg=4, noise_width=0.5, seed=seed),
        lambda seed: data.knapsack(20, 5, 32, dim=2, deg=4, noise_width=0.5, seed=seed),
        lambda seed: data.tsp(20, 5, 8, deg=4, noise_width=0.5, seed=seed),
    ],
    ids=["shortest_path", "knapsack", "tsp"],
)
def test_deterministic_per_seed(make):
    assert _all_equal(make(7), make(7))
    assert not np.array_equal(make(7).costs, make(8).costs)
    assert not np.array_equal(make(7).features, make(8).features)


def test_shortest_path_shapes_and_formula():
    feats, costs, expected = data.shortest_path(50, 4, (3, 4), deg=1, noise_width=0.0, seed=1)
    np.testing.assert_array_equal(expected, costs)  # no noise: the cost is its expectation
    d = 2 * 4 + 3 * 3  # (h-1) w + (w-1) h
    assert feats.shape == (50, 4) and costs.shape == (50, d)
    # deg 1, no noise: c = (x B^T / sqrt(p) + 4) / 3.5, so B is recovered exactly and is 0/1.
    b = np.linalg.lstsq(feats, costs * 3.5 - 4.0, rcond=None)[0].T * math.sqrt(4)
    np.testing.assert_allclose(b, np.round(b), atol=1e-9)
    assert set(np.round(b).ravel().tolist()) <= {0.0, 1.0}


def test_shortest_path_deg_and_noise_range():
    clean = data.shortest_path(200, 5, (5, 5), deg=4, noise_width=0.0, seed=3).costs
    noisy = data.shortest_path(200, 5, (5, 5), deg=4, noise_width=0.5, seed=3).costs
    assert clean.shape == (200, 40)
    assert (clean >= 1 / 3.5**4).all()  # ((.)^4 + 1) / 3.5^4 with an even degree
    ratio = noisy / clean  # x and B are drawn before the noise: same for both widths
    np.testing.assert_allclose(data.shortest_path(200, 5, (5, 5), deg=4, noise_width=0.5, seed=3).expected, clean)
    assert ratio.min() >= 0.5 and ratio.max() <= 1.5
    assert ratio.min() < 0.6 and ratio.max() > 1.4


def test_knapsack_shapes_ranges_and_capacity():
    d = data.knapsack(300, 5, 32, dim=2, deg=4, noise_width=0.5, seed=0)
    assert d.weights.shape == (2, 32) and d.capacities.shape == (2,)
    assert d.features.shape == (300, 5) and d.costs.shape == (300, 32)
    assert d.weights.min() >= 3.0 and d.weights.max() < 8.0
    np.testing.assert_allclose(d.weights * 100, np.round(d.weights * 100), atol=1e-9)
    np.testing.assert_allclose(d.capacities, 0.5 * d.weights.sum(axis=1))
    assert (d.costs == np.ceil(d.costs)).all() and d.costs.min() >= 1.0
    clean = data.knapsack(300, 5, 32, dim=2, deg=4, noise_width=0.0, seed=0)
    np.testing.assert_array_equal(clean.weights, d.weights)
    # ceil(v * eps) with eps in [0.5, 1.5] lies in [ceil(v / 2) - 1, ceil(1.5 v)] around ceil(v).
    v = clean.costs
    assert (d.costs <= np.ceil(1.5 * v)).all() and (d.costs >= np.floor(0.5 * (v - 1))).all()
    assert data.knapsack(5, 3, 7, dim=3, capacity=0.25, seed=1).capacities.shape == (3,)


def test_knapsack_capacities_per_instance_keep_the_values_and_weights_of_the_seed():
    fixed = data.knapsack(400, 5, 16, dim=3, deg=2, noise_width=0.5, seed=4)
    drawn = data.knapsack(400, 5, 16, dim=3, deg=2, noise_width=0.5, capacity=(0.2, 0.6), seed=4)
    np.testing.assert_array_equal(drawn.costs, fixed.costs)
    np.testing.assert_array_equal(drawn.weights, fixed.weights)
    assert drawn.capacities.shape == (400, 3)
    fraction = drawn.capacities / drawn.weights.sum(axis=1)
    assert fraction.min() >= 0.2 - 1e-3 and fraction.max() <= 0.6 and fraction.std() > 0.1
    np.testing.assert_allclose(drawn.capacities * 100, np.round(drawn.capacities * 100), atol=1e-6)


def test_expected_ceil_matches_monte_carlo_and_edges():
    m = np.array([0.3, 1.0, 2.7, 10.0, -1.6, 0.0])
    eps = np.random.default_rng(0).uniform(0.5, 1.5, (400_000, 1))
    np.testing.assert_allclose(data.expected_ceil(m, 0.5), np.ceil(m * eps).mean(axis=0), atol=5e-3)
    np.testing.assert_array_equal(data.expected_ceil(m, 0.0), np.ceil(m))
    d = data.knapsack(50, 5, 8, deg=4, noise_width=0.5, seed=3)
    # the noisy values average to their expectation over many draws of eps
    assert abs(d.costs.mean() - d.expected.mean()) < 0.05 * d.expected.mean()
    np.testing.assert_array_equal(
        data.knapsack(50, 5, 8, deg=4, seed=3).expected, data.knapsack(50, 5, 8, deg=4, seed=3).costs
    )


def test_knapsack_formula_without_noise():
    d = data.knapsack(400, 5, 6, dim=1, deg=2, noise_width=0.0, seed=2)
    # c = ceil(5 ((x B^T / sqrt(p) + 3)^2 + 1) / 3.5^2): the pre-ceil value lies in (c - 1, c].
    lo = np.sqrt(np.maximum((d.costs - 1) * 3.5**2 / 5 - 1, 0))
    hi = np.sqrt(d.costs * 3.5**2 / 5 - 1)
    best = None
    for bits in itertools.product([0, 1], repeat=5):
        s = d.features @ np.array(bits) / math.sqrt(5) + 3
        if ((s >= lo[:, 0] - 1e-9) & (s <= hi[:, 0] + 1e-9)).all():
            best = bits
    assert best is not None  # some 0/1 row of B reproduces item 0's values exactly


def test_tsp_shapes_symmetry_and_formula():
    d = data.tsp(30, 3, 7, deg=1, noise_width=0.0, seed=4)
    assert d.coords.shape == (7, 2) and d.features.shape == (30, 3) and d.costs.shape == (30, 7, 7)
    np.testing.assert_array_equal(d.costs, d.costs.transpose(0, 2, 1))
    assert (np.diagonal(d.costs, axis1=1, axis2=2) == 0).all()
    assert np.abs(d.coords[:3]).max() <= 2.0  # first n // 2 cities uniform in [-2, 2]^2
    edges = data.edge_vector(d.costs)
    assert edges.shape == (30, 21)
    iu, ju = np.triu_indices(7, k=1)
    dist = np.linalg.norm(d.coords[iu] - d.coords[ju], axis=1)
    # deg 1, no noise: c_e - dist_e = x B_e / sqrt(p) + 3, affine in x (up to 4-decimal rounding)
    feat_term = edges - dist
    design = np.c_[d.features, np.ones(30)]
    coef, *_ = np.linalg.lstsq(design, feat_term, rcond=None)
    np.testing.assert_allclose(design @ coef, feat_term, atol=1e-4)
    np.testing.assert_allclose(coef[-1], 3.0, atol=1e-4)
    np.testing.assert_allclose(d.expected, d.costs, atol=5e-5)  # no noise: up to the rounding
    noisy = data.tsp(2000, 3, 5, deg=2, noise_width=0.5, seed=4)
    np.testing.assert_allclose(noisy.costs.mean(axis=0), noisy.expected.mean(axis=0), rtol=0.05)
    assert np.abs(coef[:-1] * math.sqrt(3)).max() <= 2.0 + 1e-3  # B = Bernoulli * U[-2, 2]


def test_edge_matrix_roundtrip():
    e = np.arange(1.0, 11.0).reshape(1, 10)
    m = data.edge_matrix(e, 5)
    assert m.shape == (1, 5, 5) and m[0, 0, 1] == 1.0 and m[0, 1, 0] == 1.0 and m[0, 3, 4] == 10.0
    np.testing.assert_array_equal(data.edge_vector(m), e)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: data.shortest_path(0, 5), "shortest_path: num_data=0"),
        (lambda: data.shortest_path(5, 5, deg=0), "shortest_path: deg=0"),
        (lambda: data.shortest_path(5, 5, deg=2.0), "shortest_path: deg=2.0"),
        (lambda: data.shortest_path(5, 5, noise_width=1.5), "shortest_path: noise_width=1.5"),
        (lambda: data.shortest_path(5, 5, (1, 5)), r"shortest_path: grid=\(1, 5\)"),
        (lambda: data.knapsack(5, 0), "knapsack: num_features=0"),
        (lambda: data.knapsack(5, 5, 0), "knapsack: num_items=0"),
        (lambda: data.knapsack(5, 5, dim=0), "knapsack: dim=0"),
        (lambda: data.knapsack(5, 5, capacity=0.0), "knapsack: capacity=0.0"),
        (lambda: data.knapsack(5, 5, capacity=(0.6, 0.2)), r"knapsack: capacity=\(0.6, 0.2\) .* lo <= hi"),
        (lambda: data.tsp(5, 5, 2), "tsp: num_nodes=2"),
        (lambda: data.tsp(5, 5, noise_width=-0.1), "tsp: noise_width=-0.1"),
        (lambda: data.edge_matrix(np.zeros(4), 4), r"edge_matrix: last axis 4 != n\(n-1\)/2 = 6"),
    ],
)
def test_generator_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _small_knapsack(n: int = 8, **options) -> tuple[ipo.CpSatLayer, np.ndarray, int]:
    rng = np.random.default_rng(0)
    w = rng.integers(3, 9, n)
    cap = int(w.sum() // 2)
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(n)]
    m.add(sum(int(w[i]) * x[i] for i in range(n)) <= cap)
    return ipo.CpSatLayer(m, x, sense="max", **options), w, cap


def _brute_force(values: np.ndarray, w: np.ndarray, cap: int) -> float:
    best = 0.0
    for bits in itertools.product([0, 1], repeat=len(w)):
        y = np.array(bits)
        if y @ w <= cap:
            best = max(best, float(y @ values))
    return best


def test_solve_dataset_optimal_and_typed():
    layer, w, cap = _small_knapsack()
    rng = np.random.default_rng(1)
    feats, costs = rng.normal(size=(25, 3)), rng.integers(1, 20, (25, 8)).astype(float)
    ds = data.solve_dataset(layer, feats, costs, chunk=7, progress=False)
    assert len(ds) == 25
    assert ds.features.dtype == torch.float32 and ds.solutions.dtype == torch.float32
    assert ds.objectives.dtype == torch.float64 and ds.solutions.shape == (25, 8)
    for k in range(25):
        assert ds.objectives[k].item() == _brute_force(costs[k], w, cap)
        assert float(ds.solutions[k].double() @ torch.from_numpy(w).double()) <= cap
    _x, c, _y, z = ds[3]
    assert torch.equal(c, torch.as_tensor(costs[3], dtype=torch.float32)) and z == ds.objectives[3]
    sub = ds.subset(slice(5, 10))
    assert len(sub) == 5 and torch.equal(sub.solutions, ds.solutions[5:10])


def test_solve_dataset_pool_matches_serial():
    serial, _, _ = _small_knapsack()
    pooled, _, _ = _small_knapsack(workers=2)
    rng = np.random.default_rng(2)
    feats, costs = rng.normal(size=(60, 2)), rng.normal(size=(60, 8))
    a = data.solve_dataset(serial, feats, costs, progress=False)
    b = data.solve_dataset(pooled, feats, costs, chunk=60, progress=False)
    assert torch.equal(a.solutions, b.solutions) and torch.equal(a.objectives, b.objectives)


def test_solve_dataset_errors():
    layer, _, _ = _small_knapsack()
    with pytest.raises(ValueError, match=r"solve_dataset: costs must be \(4, 8\)"):
        data.solve_dataset(layer, np.zeros((4, 2)), np.zeros((4, 7)), progress=False)
    with pytest.raises(ValueError, match=r"solve_dataset: costs must be \(4, 8\)"):
        data.solve_dataset(layer, np.zeros((4, 2)), np.zeros((5, 8)), progress=False)
    with pytest.raises(ValueError, match=r"solve_dataset: features must be \(N, p\)"):
        data.solve_dataset(layer, np.zeros(4), np.zeros((4, 8)), progress=False)
    with pytest.raises(ValueError, match="solve_dataset: chunk=0"):
        data.solve_dataset(layer, np.zeros((4, 2)), np.zeros((4, 8)), chunk=0, progress=False)
