"""TSPLayer(n, symmetric=True): the Held-Karp branch and bound is exact (brute force on every
small size, agreement with CP-SAT's circuit model on random and PyEPO instances), handles ties and
degenerate costs, is deterministic in any chunking, stops at a time limit with the best tour, and
its "auto" projection removes exactly the degree-2 invariance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.solvers._tsp_hk import solve_symmetric, tour_length


def _edges(n: int, c: np.ndarray) -> torch.Tensor:
    iu, ju = np.triu_indices(n, 1)
    return torch.as_tensor(c[..., iu, ju])


def _matrix(n: int, edges: np.ndarray) -> np.ndarray:
    iu, ju = np.triu_indices(n, 1)
    m = np.zeros((*edges.shape[:-1], n, n))
    m[..., iu, ju] = edges
    m[..., ju, iu] = edges
    return m


def _brute(c: np.ndarray) -> float:
    n = len(c)
    return min(tour_length(c, np.array((0, *p))) for p in itertools.permutations(range(1, n)) if p[0] < p[-1])


def _is_tour(n: int, y: np.ndarray) -> bool:
    adj = _matrix(n, y)
    if not np.array_equal(adj.sum(axis=1), np.full(n, 2.0)):
        return False
    seen, prev, cur = {0}, -1, 0
    for _ in range(n - 1):
        nxt = next(int(v) for v in np.flatnonzero(adj[cur]) if v != prev)
        prev, cur = cur, nxt
        seen.add(cur)
    return len(seen) == n


def _random_symmetric(rng, n, kind):
    if kind == "uniform":
        a = rng.random((n, n))
    elif kind == "ties":
        a = rng.integers(1, 3, size=(n, n)).astype(float)  # costs 1 or 2: many optimal tours
    elif kind == "euclidean":
        p = rng.random((n, 2))
        return np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    else:  # "constant": every tour is optimal
        return np.ones((n, n))
    return np.triu(a, 1) + np.triu(a, 1).T


@pytest.mark.parametrize("n", range(3, 9))
@pytest.mark.parametrize("kind", ["uniform", "ties", "euclidean", "constant"])
def test_optimal_against_brute_force_on_every_small_size(n, kind):
    rng = np.random.default_rng(n)
    layer = ipo.TSPLayer(n, symmetric=True)
    mats = np.stack([_random_symmetric(rng, n, kind) for _ in range(12)])
    y = layer.solve(_edges(n, mats)).numpy()
    for c, row in zip(mats, y):
        assert _is_tour(n, row)
        assert (row * _edges(n, c).numpy()).sum() == pytest.approx(_brute(c), abs=1e-9)
    assert layer.last_info.status == ("optimal",) * len(mats)


def test_agrees_with_cp_sat_on_random_and_pyepo_instances():
    import pyepo

    rng = np.random.default_rng(0)
    cases = []
    for n in (9, 10, 12, 14, 16, 20, 25, 30):
        cases += [(n, _random_symmetric(rng, n, kind)) for kind in ("uniform", "euclidean", "ties") for _ in range(10)]
    for n, k in ((20, 60), (30, 10), (40, 4), (50, 3)):
        _, c = pyepo.data.tsp.genData(k, 5, n, deg=4, noise_width=0.5, seed=n)
        cases += [(n, _matrix(n, row)) for row in c]
    assert len(cases) == 317
    for n, mat in cases:
        tour, proven, _ = solve_symmetric(mat)
        assert proven and sorted(tour.tolist()) == list(range(n))
        ours = tour_length(mat, tour)
        reference = ipo.TSPLayer(n).solve(torch.as_tensor(mat))  # CP-SAT circuit, independent
        assert ours == pytest.approx(float((reference.numpy() * mat).sum()), rel=1e-9, abs=1e-9)


def test_a_huge_edge_does_not_loosen_the_pruning():
    # The pruning tolerance was 1e-9 n max|c|: with one 1e12 edge, 8000, so the first tour found
    # came back "optimal" (seed 185: 1.74 for 1.66). Now it is the float64 rounding of a tour.
    layer = ipo.TSPLayer(8, symmetric=True)
    mats = []
    for seed in range(170, 200):
        rng = np.random.default_rng(seed)
        mat = _random_symmetric(rng, 8, "uniform")
        for _ in range(3):
            i, j = rng.choice(8, 2, replace=False)
            mat[i, j] = mat[j, i] = 1e12
        mats.append(mat)
    y = layer.solve(_edges(8, np.stack(mats))).numpy()
    assert layer.last_info.status == ("optimal",) * len(mats)
    for mat, row in zip(mats, y):
        assert (row * _edges(8, mat).numpy()).sum() == pytest.approx(_brute(mat), rel=1e-12)


@pytest.mark.parametrize("scale", [1e-200, 1e-20, 1e20, 1e200])
def test_any_cost_scale_gives_the_same_tour(scale):
    # The search runs on the costs scaled by a power of two, so its constants are relative.
    rng = np.random.default_rng(10)
    mats = np.stack([_random_symmetric(rng, 10, "euclidean") for _ in range(6)])
    layer = ipo.TSPLayer(10, symmetric=True)
    assert torch.equal(layer.solve(_edges(10, mats * scale)), layer.solve(_edges(10, mats)))
    assert layer.last_info.status == ("optimal",) * 6


def test_deterministic_in_any_chunking_and_in_the_pool(force_pool):
    rng = np.random.default_rng(5)
    n = 12
    costs = _edges(n, np.stack([_random_symmetric(rng, n, "ties") for _ in range(24)]))
    layer = ipo.TSPLayer(n, symmetric=True)
    whole = layer.solve(costs)
    parts = torch.cat([layer.solve(costs[i : i + 5]) for i in range(0, 24, 5)])
    reversed_ = layer.solve(costs.flip(0)).flip(0)
    pooled = force_pool(ipo.TSPLayer(n, symmetric=True, workers=2)).solve(costs)
    for other in (parts, reversed_, pooled):
        assert torch.equal(whole, other)


def test_maximisation_is_minimisation_of_the_negated_costs():
    rng = np.random.default_rng(6)
    costs = _edges(9, np.stack([_random_symmetric(rng, 9, "uniform") for _ in range(6)]))
    assert torch.equal(
        ipo.TSPLayer(9, sense="max", symmetric=True).solve(costs), ipo.TSPLayer(9, symmetric=True).solve(-costs)
    )


def test_time_limit_returns_the_best_tour_found_as_feasible():
    rng = np.random.default_rng(7)
    n = 70
    costs = _edges(n, _random_symmetric(rng, n, "uniform"))[None]
    layer = ipo.TSPLayer(n, symmetric=True, time_limit=1e-4)
    with pytest.warns(ipo.SolverWarning, match="not proven optimal"):
        y = layer.solve(costs)
    assert _is_tour(n, y[0].numpy())
    assert layer.last_info.status == ("feasible",)
    assert layer.last_info.solver_status == ("TIME_LIMIT",)


def test_auto_removes_exactly_the_degree_two_invariance():
    n = 8
    layer = ipo.TSPLayer(n, symmetric=True, projection="auto")
    a, b = layer.spec.equalities()
    assert a.shape == (n, n * (n - 1) // 2) and np.all(b == 2)
    assert layer.basis.shape == (n, n * (n - 1) // 2)  # n independent rows (n >= 3, non-bipartite)
    rng = np.random.default_rng(8)
    w = _edges(n, _random_symmetric(rng, n, "uniform"))
    shifted = w + torch.as_tensor(rng.normal(size=n)) @ torch.as_tensor(a)  # a constant per node
    assert torch.allclose(layer(w), layer(shifted))
    pw = w.clone().requires_grad_(True)
    layer(pw).sum().backward()
    assert torch.allclose(torch.as_tensor(a) @ pw.grad, torch.zeros(n, dtype=w.dtype), atol=1e-12)


def test_matrix_input_gives_the_symmetric_adjacency():
    rng = np.random.default_rng(9)
    n = 7
    mats = torch.as_tensor(np.stack([_random_symmetric(rng, n, "uniform") for _ in range(3)]))
    layer = ipo.TSPLayer(n, symmetric=True)
    adj = layer(mats)
    assert adj.shape == (3, n, n) and torch.equal(adj, adj.transpose(1, 2))
    assert torch.equal(adj, torch.as_tensor(_matrix(n, layer.solve(_edges(n, mats.numpy())).numpy())))
    assert torch.equal(layer(mats[0]), adj[0])
    bad = mats.clone()
    bad[1, 0, 3] += 1.0
    with pytest.raises(ValueError, match=r"TSPLayer: symmetric=True takes a symmetric cost matrix; costs\[1\] is not"):
        layer(bad)
    with pytest.raises(ValueError, match="TSPLayer: method='cpsat' is not one of 'held_karp'"):
        ipo.TSPLayer(n, "cpsat", symmetric=True)
    with pytest.raises(ValueError, match="metaheuristic applies only to method='routing'"):
        ipo.TSPLayer(n, symmetric=True, metaheuristic="GREEDY_DESCENT")
