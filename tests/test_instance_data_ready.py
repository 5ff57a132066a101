"""Per-instance data of the ready layers (issue 23): a knapsack's capacities, top-k's k, a shortest
path's source and target, each checked against an independent solve (brute force, a stable sort,
networkx), broadcast against batched, serial against the pool, against a layer built with the same
data, and through the "auto" projection's gradient."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.rules.projection import project
from idproj_or.solvers import shortest_path as sp_module

# ------------------------------------------------------------------------------------ knapsack


def packings(n: int) -> np.ndarray:
    return np.array(list(itertools.product((0, 1), repeat=n)), dtype=float)


def knapsack_case(seed: int, batch: int = 300):
    """Weights with two decimals, values with ties, and per-instance capacities from 0 to beyond
    the total weight, with float error of decimal arithmetic."""
    rng = np.random.default_rng(seed)
    n, d = 7, 1 + seed % 2
    weights = np.round(rng.uniform(0.5, 4, size=(d, n)), 2)
    values = rng.integers(-2, 6, size=(batch, n)).astype(float)
    caps = np.round(rng.uniform(0, 1.1, size=(batch, d)) * weights.sum(1), 2)
    caps[::17] = 0.0
    caps[1::13] = caps[1::13] + 0.1 - 0.1  # the same numbers, as arithmetic leaves them
    return weights, values, caps


@pytest.mark.parametrize("seed, sense", [(0, "max"), (1, "max"), (2, "min"), (3, "min")])
def test_knapsack_capacities_match_brute_force_and_a_layer_built_with_them(seed, sense):
    weights, values, caps = knapsack_case(seed)
    layer = ipo.KnapsackLayer(weights, weights.sum(1) / 2, sense=sense, projection="none")
    y = layer.solve(torch.as_tensor(values), capacity=torch.as_tensor(caps)).numpy()
    assert set(layer.last_info.status) == {"optimal"}
    every = packings(weights.shape[1])
    # feasible on the integer scale of two decimals (exact)
    load = np.rint(100 * weights) @ every.T  # (d, 2^n)
    fits = (load[None] <= np.floor(100 * caps + 1e-6)[:, :, None]).all(axis=1)  # (B, 2^n)
    best = np.where(fits, values @ every.T, -np.inf if sense == "max" else np.inf)
    best = best.max(axis=1) if sense == "max" else best.min(axis=1)
    np.testing.assert_array_equal(np.einsum("ij,ij->i", values, y), best)
    assert (weights @ y.T <= caps.T + 1e-9).all()
    for i in range(0, len(values), 10):  # the decision of a layer whose default is that capacity
        baked = ipo.KnapsackLayer(weights, caps[i], sense=sense, projection="none")
        assert np.array_equal(baked.solve(torch.as_tensor(values[i])).numpy(), y[i])


@pytest.mark.parametrize("seed, sense", [(6, "max"), (7, "min")])
def test_knapsack_weights_per_instance_match_brute_force_and_a_layer_built_with_them(seed, sense):
    rng = np.random.default_rng(seed)
    n, d, batch = 7, 2, 300
    weights = rng.integers(0, 9, size=(batch, d, n))
    values = rng.integers(-2, 6, size=(batch, n)).astype(float)
    caps = np.round(rng.uniform(0, 0.8, size=(batch, d)) * weights.sum(2), 1)
    # the constructor's weights have decimals (its rows' scale is 10): an instance's integer
    # weights are exact on it
    layer = ipo.KnapsackLayer(np.full((d, n), 0.5), [1.0, 2.0], sense=sense, projection="none")
    y = layer.solve(torch.as_tensor(values), weights=torch.as_tensor(weights), capacity=caps).numpy()
    every = packings(n)
    fits = (np.einsum("bkn,pn->bkp", weights, every) <= np.floor(caps + 1e-9)[:, :, None]).all(axis=1)
    best = np.where(fits, values @ every.T, -np.inf if sense == "max" else np.inf)
    best = best.max(axis=1) if sense == "max" else best.min(axis=1)
    np.testing.assert_array_equal(np.einsum("ij,ij->i", values, y), best)
    assert (np.einsum("bkn,bn->bk", weights, y) <= caps + 1e-9).all()
    # the constructor's capacities with an instance's weights, and integer weights in both
    integral = ipo.KnapsackLayer(np.ones((d, n)), [3.0, 4.0], sense=sense, projection="none")
    y = integral.solve(torch.as_tensor(values), weights=torch.as_tensor(weights)).numpy()
    for i in range(0, batch, 10):
        baked = ipo.KnapsackLayer(weights[i], [3.0, 4.0], sense=sense, projection="none")
        assert np.array_equal(baked.solve(torch.as_tensor(values[i])).numpy(), y[i])


def test_knapsack_capacities_broadcast_default_and_pool(force_pool):
    weights, values, caps = knapsack_case(4, batch=120)
    costs = torch.as_tensor(values)
    layer = ipo.KnapsackLayer(weights, caps[5], projection="none")
    batched = layer.solve(costs, capacity=torch.as_tensor(np.broadcast_to(caps[5], caps.shape).copy()))
    assert torch.equal(layer.solve(costs, capacity=caps[5]), batched)  # (d,): every instance
    assert torch.equal(layer.solve(costs), batched)  # the constructor's
    serial = layer.solve(costs, capacity=caps)
    pooled = force_pool(ipo.KnapsackLayer(weights, caps[5], projection="none", workers=2))
    assert torch.equal(pooled.solve(costs, capacity=caps), serial)
    assert pooled.last_info.mode == "pool"
    many = np.random.default_rng(12).integers(0, 5, size=(120, *weights.shape))
    assert torch.equal(pooled.solve(costs, weights=many), layer.solve(costs, weights=many))
    batched = layer.solve(costs, weights=np.broadcast_to(many[3], many.shape).copy())
    assert torch.equal(layer.solve(costs, weights=many[3]), batched)  # (d, n): every instance


def test_knapsack_gradient_with_capacities_is_that_of_the_built_layer():
    weights, values, caps = knapsack_case(5, batch=8)
    w = torch.as_tensor(values + 0.1).requires_grad_(True)
    g = torch.randn(8, weights.shape[1], dtype=torch.float64)
    layer = ipo.KnapsackLayer(weights, weights.sum(1))  # "auto": "norm", whatever the capacity
    (layer(w, capacity=caps) * g).sum().backward()
    for i in range(8):
        wi = w.detach()[i].clone().requires_grad_(True)
        (ipo.KnapsackLayer(weights, caps[i])(wi) * g[i]).sum().backward()
        torch.testing.assert_close(w.grad[i], wi.grad, rtol=0, atol=0)
    expected = torch.autograd.grad((project(w, "norm") * g).sum(), w)[0]  # +I for a maximisation
    torch.testing.assert_close(w.grad, expected)


@pytest.mark.parametrize(
    "capacity, match",
    [
        (
            [[1.0], [-0.5]],
            r"data 'capacity' \(the capacities\) of instance 1, at position \(0,\), is outside \[0, inf\]",
        ),
        ([[1.0], [np.nan]], r"data 'capacity' \(the capacities\) of instance 1, at position \(0,\), is not finite"),
        ([1.0, 2.0, 3.0], r"data 'capacity' \(the capacities\) must have shape \(1,\) or \(2, 1\) for a batch of 2"),
    ],
)
def test_knapsack_capacity_errors(capacity, match):
    layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
    with pytest.raises(ValueError, match=match):
        layer(torch.ones(2, 3), capacity=capacity)


@pytest.mark.parametrize(
    "weights, match",
    [
        ([[3, 4.5, 5]], r"data 'weights' \(the item weights\) of instance 0, at position \(0, 1\), is not an integer"),
        (
            [[[3, 4, 5]], [[3, -1, 5]]],
            r"data 'weights' \(the item weights\) of instance 1, at position \(0, 1\), is outside",
        ),
        (
            [[2**60, 1, 1]],
            r"data 'weights' \(the item weights\) of instance 0, at position \(0, 0\), is outside \[0, 7",
        ),
        ([3, 4, 5], r"data 'weights' \(the item weights\) must have shape \(1, 3\) or \(2, 1, 3\) for a batch of 2"),
    ],
)
def test_knapsack_weights_errors(weights, match):
    layer = ipo.KnapsackLayer([[3, 4, 5]], [7])  # integer weights: up to 2^61 / 3 each
    with pytest.raises(ValueError, match=match):
        layer(torch.ones(2, 3), weights=weights)


# --------------------------------------------------------------------------------------- top-k


@pytest.mark.parametrize("sense", ["max", "min"])
def test_topk_per_instance_k_matches_a_stable_sort(sense):
    rng = np.random.default_rng(6)
    for n in (1, 2, 5, 12):
        costs = rng.integers(-3, 4, size=(100, n)).astype(float)  # many ties
        ks = rng.integers(0, n + 1, size=100)
        y = ipo.TopKLayer(n, n // 2, sense, projection="none").solve(torch.as_tensor(costs), k=torch.as_tensor(ks))
        order = np.argsort(-costs if sense == "max" else costs, axis=1, kind="stable")
        expected = np.zeros_like(costs)
        for i, k in enumerate(ks):
            expected[i, order[i, :k]] = 1.0
        np.testing.assert_array_equal(y.numpy(), expected)


def test_topk_k_broadcast_default_built_layers_and_pool(force_pool):
    rng = np.random.default_rng(7)
    costs = torch.as_tensor(rng.integers(0, 4, size=(200, 9)).astype(float))
    ks = torch.as_tensor(rng.integers(0, 10, size=200))
    layer = ipo.TopKLayer(9, 3)
    assert torch.equal(layer.solve(costs, k=3), layer.solve(costs))
    assert torch.equal(layer.solve(costs, k=torch.full((200,), 3)), layer.solve(costs))
    y = layer.solve(costs, k=ks)
    for k in range(10):
        rows = ks == k
        assert torch.equal(y[rows], ipo.TopKLayer(9, k).solve(costs[rows]))
    pooled = force_pool(ipo.TopKLayer(9, 3, workers=2))
    assert torch.equal(pooled.solve(costs, k=ks), y)
    assert pooled.last_info.mode == "pool"


def test_topk_auto_removes_the_all_ones_direction_for_every_k():
    gen = torch.Generator().manual_seed(8)
    w = torch.randn(40, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    ks = torch.arange(40) % 7  # 0..6, with k == 0 and k == n among them
    g = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    layer = ipo.TopKLayer(6, 2)
    torch.testing.assert_close(layer.basis, torch.full((1, 6), 6**-0.5, dtype=torch.float64))
    shifted = w.detach() + 10 * torch.randn(40, 1, generator=gen, dtype=torch.float64)
    assert torch.equal(layer.solve(shifted, k=ks), layer.solve(w.detach(), k=ks))
    (layer(w, k=ks) * g).sum().backward()
    expected = torch.autograd.grad((project(w, "std") * g).sum(), w)[0]  # +I through P_std
    torch.testing.assert_close(w.grad, expected)
    for i in (0, 6, 13):  # the gradient of a layer built with that k
        wi = w.detach()[i].clone().requires_grad_(True)
        (ipo.TopKLayer(6, int(ks[i]))(wi) * g[i]).sum().backward()
        torch.testing.assert_close(w.grad[i], wi.grad)


@pytest.mark.parametrize(
    "k, match",
    [
        (
            torch.tensor([1.0, 2.5]),
            r"data 'k' \(how many to select\) of instance 1, at position \(\), is not an integer",
        ),
        (torch.tensor([6, 1]), r"data 'k' \(how many to select\) of instance 0, at position \(\), is outside \[0, 5\]"),
        (-1, r"data 'k' \(how many to select\) of instance 0, at position \(\), is outside \[0, 5\]"),
        (torch.tensor([1, 2, 3]), r"data 'k' \(how many to select\) must have shape \(\) or \(2, ?\) for a batch of 2"),
        (torch.tensor([1.0, 2.0], requires_grad=True), r"data 'k' requires grad"),
        (True, r"data 'k' must hold real numbers, got dtype torch.bool"),
    ],
)
def test_topk_k_errors(k, match):
    with pytest.raises(ValueError, match=match):
        ipo.TopKLayer(5, 2)(torch.randn(2, 5), k=k)


# ------------------------------------------------------------------------------- shortest path


def random_dag(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    """Arcs from lower to higher labels of a random permutation (acyclic), one of them doubled,
    in random order; node 0 may reach nothing and some pairs no path."""
    perm = rng.permutation(n)
    arcs = [(int(perm[i]), int(perm[j])) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.4]
    arcs.append((int(perm[0]), int(perm[-1])))
    arcs.append(arcs[0])
    return [arcs[k] for k in rng.permutation(len(arcs))]


def arc_graph(arcs, n: int) -> nx.MultiDiGraph:
    g = nx.MultiDiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from((t, h, {"arc": e}) for e, (t, h) in enumerate(arcs))
    return g


def networkx_length(graph, cost, source, target, sense):
    """The optimal path length by networkx's Bellman-Ford on the multigraph (None: no path)."""
    sign = 1.0 if sense == "min" else -1.0

    def weight(_u, _v, parallel):  # the best of parallel arcs
        return min(sign * cost[a["arc"]] for a in parallel.values())

    try:
        return sign * nx.bellman_ford_path_length(graph, source, target, weight=weight)
    except nx.NetworkXNoPath:
        return None


def is_path(arcs, n, y, source, target) -> bool:
    chosen = np.flatnonzero(y)
    flow = np.zeros(n)
    for e in chosen:
        flow[arcs[e][0]] += 1
        flow[arcs[e][1]] -= 1
    rhs = np.zeros_like(flow)
    rhs[source] += 1
    rhs[target] -= 1
    return set(np.unique(y).tolist()) <= {0.0, 1.0} and np.array_equal(flow, rhs)  # acyclic: a path


@pytest.mark.parametrize("method", ["enumerate", "recursion"])
@pytest.mark.parametrize("sense", ["min", "max"])
def test_shortest_path_pairs_match_networkx(method, sense, monkeypatch):
    if method == "recursion":
        monkeypatch.setattr(sp_module, "ENUMERATE_WORK", 0)
    # a seed per case: the resident solver (cached per spec) lists paths as it was built
    rng = np.random.default_rng(["enumerate", "recursion"].index(method) * 2 + ["min", "max"].index(sense))
    for _ in range(4):
        n = 8
        arcs = random_dag(rng, n)
        layer = ipo.ShortestPathLayer(arcs, *arcs[-1], n_nodes=n, sense=sense, projection="none", on_failure="nan")
        assert (layer.spec.build().pair_paths(*arcs[-1]) is None) == (method == "recursion")
        costs = rng.normal(size=(100, len(arcs)))
        graph = arc_graph(arcs, n)
        reachable = [(s, t) for s in range(n) for t in nx.descendants(graph, s)]
        pairs = np.array([reachable[k] for k in rng.integers(0, len(reachable), size=100)])
        pairs[::5] = rng.integers(0, n, size=(20, 2))  # s == t, and some with no path
        sources, targets = pairs.T
        with pytest.warns(ipo.SolverWarning, match="instances have no decision"):
            y = layer.solve(torch.as_tensor(costs), source=sources, target=targets).numpy()
        for i in range(100):
            s, t = int(sources[i]), int(targets[i])
            length = 0.0 if s == t else networkx_length(graph, costs[i], s, t, sense)
            if length is None:
                assert np.isnan(y[i]).all() and layer.last_info.status[i] == "infeasible"
                continue
            assert is_path(arcs, n, y[i], s, t) and layer.last_info.status[i] == "optimal"
            assert abs(costs[i] @ y[i] - length) <= 1e-9 * max(1.0, abs(length))


def test_shortest_path_pairs_on_a_grid_take_either_method_and_match_built_layers(force_pool):
    # an 8x8 grid: pairs far apart have too many paths to list (the recursion), near ones few
    rng = np.random.default_rng(10)
    layer = ipo.ShortestPathLayer.grid(8, 8, projection="none")
    costs = torch.as_tensor(rng.integers(0, 3, size=(200, 112)).astype(float))  # many ties
    rows, cols = rng.integers(0, 4, size=(2, 200)), rng.integers(4, 8, size=(2, 200))
    sources, targets = rows[0] * 8 + rows[1], cols[0] * 8 + cols[1]
    y = layer.solve(costs, source=sources, target=targets)
    solver = layer.spec.build()
    listed = [solver.pair_paths(int(s), int(t)) is not None for s, t in zip(sources, targets)]
    assert 0 < sum(listed) < 200  # both methods ran
    arcs = ipo.problems.grid_arcs(8, 8)
    graph = arc_graph(arcs, 64)
    for i in range(0, 200, 5):  # the decision of a layer built with that pair, ties included
        s, t = int(sources[i]), int(targets[i])
        assert torch.equal(ipo.ShortestPathLayer(arcs, s, t, n_nodes=64).solve(costs[i]), y[i])
        assert float(costs[i] @ y[i]) == networkx_length(graph, costs[i].numpy(), s, t, "min")
    chunks = [
        layer.solve(costs[j : j + 7], source=sources[j : j + 7], target=targets[j : j + 7]) for j in range(0, 200, 7)
    ]
    assert torch.equal(torch.cat(chunks), y)  # any split of the batch
    pooled = force_pool(ipo.ShortestPathLayer.grid(8, 8, projection="none", workers=2))
    assert torch.equal(pooled.solve(costs, source=sources, target=targets), y)
    assert pooled.last_info.mode == "pool"


def test_shortest_path_one_end_broadcast_empty_and_unreachable_paths():
    arcs = [(0, 1), (1, 3), (0, 2), (2, 3)]
    costs = torch.tensor([[1.0, 1.0, 0.5, 2.0]] * 3)
    layer = ipo.ShortestPathLayer(arcs, 0, 3)
    assert torch.equal(layer.solve(costs, target=3), layer.solve(costs))
    assert torch.equal(layer.solve(costs, source=torch.tensor([0, 0, 0]), target=3), layer.solve(costs))
    y = layer.solve(costs, source=torch.tensor([0, 2, 3]), target=torch.tensor([1, 3, 3]))
    assert y.tolist() == [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]  # 3 -> 3: the empty path
    assert layer.last_info.objective.tolist() == [1.0, 2.0, 0.0]
    with pytest.raises(ipo.SolverError, match=r"instance 1 of the batch has no solution: the model has no feasible"):
        layer.solve(costs, source=torch.tensor([0, 3, 0]), target=torch.tensor([3, 0, 3]))
    lenient = ipo.ShortestPathLayer(arcs, 0, 3, on_failure="nan")
    with pytest.warns(ipo.SolverWarning, match="1 of 3 instances have no decision"):
        y = lenient(costs, source=torch.tensor([0, 3, 0]), target=torch.tensor([3, 0, 3]))
    assert torch.isnan(y[1]).all() and torch.equal(y[[0, 2]], layer.solve(costs[[0, 2]]))
    assert tuple(lenient.last_info.status) == ("optimal", "infeasible", "optimal")


def test_shortest_path_auto_basis_and_gradient_do_not_depend_on_the_pair():
    rng = np.random.default_rng(11)
    arcs = ipo.problems.grid_arcs(3, 4)
    layer = ipo.ShortestPathLayer(arcs, 0, 11)
    other = ipo.ShortestPathLayer(arcs, 1, 10)
    torch.testing.assert_close(layer.basis, other.basis, rtol=0, atol=0)
    w = torch.as_tensor(rng.normal(size=(20, len(arcs)))).requires_grad_(True)
    g = torch.as_tensor(rng.normal(size=(20, len(arcs))))
    sources, targets = torch.tensor([1] * 20), torch.tensor([10] * 20)
    shifted = w.detach() + torch.as_tensor(rng.normal(size=(20, 12))) @ torch.as_tensor(layer.spec.equalities()[0])
    assert torch.equal(layer.solve(shifted, source=sources, target=targets), other.solve(w.detach()))
    (layer(w, source=sources, target=targets) * g).sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    (other(w2) * g).sum().backward()
    torch.testing.assert_close(w.grad, w2.grad, rtol=0, atol=0)
    expected = -torch.autograd.grad((project(w2, "auto", layer.basis) * g).sum(), w2)[0]
    torch.testing.assert_close(w.grad, expected)


@pytest.mark.parametrize(
    "data, match",
    [
        (
            {"source": 4},
            r"data 'source' \(the path's start node\) of instance 0, at position \(\), is outside \[0, 3\]",
        ),
        (
            {"target": torch.tensor([3, -1])},
            r"data 'target' \(the path's end node\) of instance 1, at position \(\), is outside \[0, 3\]",
        ),
        (
            {"source": torch.tensor([0.0, 0.5])},
            r"data 'source' \(the path's start node\) of instance 1, at position \(\), is not an integer",
        ),
        (
            {"target": torch.tensor([[3], [3]])},
            r"data 'target' \(the path's end node\) must have shape \(\) or \(2, ?\) for a batch of 2",
        ),
        ({"sink": 3}, r"unknown data 'sink'; the layer's data: source, target"),
    ],
)
def test_shortest_path_pair_errors(data, match):
    layer = ipo.ShortestPathLayer([(0, 1), (1, 3), (0, 2), (2, 3)], 0, 3)
    with pytest.raises(ValueError, match=match):
        layer(torch.ones(2, 4), **data)
