"""ShortestPathLayer on graphs with cycles (Dijkstra): exact against scipy, each decision one
simple path, per-instance pairs, ties, negative costs, "auto", serial / pool parity, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import dijkstra

import idproj_or as ipo


def _random_graph(rng, n, m):
    """``m`` random arcs (parallel arcs allowed, no self-loops) plus a cycle through every node,
    so every node reaches every other."""
    arcs = [(i, (i + 1) % n) for i in range(n)]
    while len(arcs) < m:
        t, h = rng.integers(0, n, size=2)
        if t != h:
            arcs.append((int(t), int(h)))
    return arcs


def _reference(arcs, n, c, source, target):
    """scipy's distance, parallel arcs reduced to their cheapest (a dense matrix, where 0 is no
    arc: the costs here are > 0)."""
    dense = np.full((n, n), np.inf)
    for (t, h), cost in zip(arcs, c):
        dense[t, h] = min(dense[t, h], cost)
    dense[np.isinf(dense)] = 0.0
    return dijkstra(dense, indices=source)[target]


def _check_path(y, arcs, n, source, target):
    """``y`` is the arc indicator of one simple source -> target path."""
    out, inc = np.zeros(n), np.zeros(n)
    for k in np.flatnonzero(y > 0.5):
        out[arcs[k][0]] += 1
        inc[arcs[k][1]] += 1
    balance = out - inc
    expect = np.zeros(n)
    expect[source], expect[target] = 1, -1
    assert set(np.unique(y)) <= {0.0, 1.0} and (balance == expect).all() and out.max() <= 1 and inc.max() <= 1
    node, seen = source, {source}  # follow the arcs: no separate cycle among them
    nxt = {arcs[k][0]: arcs[k][1] for k in np.flatnonzero(y > 0.5)}
    while node != target:
        node = nxt[node]
        assert node not in seen
        seen.add(node)
    assert len(seen) == int(y.sum()) + 1


def test_optimal_against_scipy_on_random_graphs_with_cycles():
    rng = np.random.default_rng(0)
    checked = 0
    for n, m in [(4, 8), (6, 15), (10, 30), (25, 80), (60, 300)]:
        for _ in range(8):
            arcs = _random_graph(rng, n, m)
            source, target = (int(v) for v in rng.choice(n, size=2, replace=False))
            layer = ipo.ShortestPathLayer(arcs, source, target, projection="none")
            c = rng.uniform(0.01, 1.0, size=(50, len(arcs)))
            c[:25] = np.round(c[:25] * 3) + 1  # ties
            y = layer(torch.tensor(c)).numpy()
            assert layer.last_info.status == ("optimal",) * 50
            for row, cost in zip(y, c):
                _check_path(row, arcs, n, source, target)
                assert (row * cost).sum() == pytest.approx(_reference(arcs, n, cost, source, target), rel=1e-12)
            checked += 50
    assert checked == 2000


def test_each_instance_may_have_its_own_pair_and_an_unreachable_target_fails():
    arcs = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 2)]  # nothing leaves {2, 3} towards 4; 4 reaches 0
    arcs.append((4, 0))
    layer = ipo.ShortestPathLayer(arcs, 0, 3, projection="none")
    c = torch.ones(3, len(arcs), dtype=torch.float64)
    y = layer(c, source=torch.tensor([0, 3, 2]), target=torch.tensor([3, 1, 2]))
    assert y[0].tolist() == [1, 1, 0, 1, 0, 0]  # 0 -> 1 -> 2 -> 3
    assert y[1].tolist() == [1, 0, 1, 0, 1, 0]  # 3 -> 2 -> 0 -> 1
    assert y[2].tolist() == [0] * 6  # source == target: the empty path
    with pytest.raises(ipo.SolverError, match=r"instance 0.*infeasible"):
        layer(c[:1], target=torch.tensor([4]))
    nan_layer = ipo.ShortestPathLayer(arcs, 0, 3, projection="none", on_failure="nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ipo.SolverWarning)
        y = nan_layer(c[:2], target=torch.tensor([4, 3]))
    assert torch.isnan(y[0]).all() and y[1].tolist() == [1, 1, 0, 1, 0, 0]
    assert nan_layer.last_info.status == ("infeasible", "optimal")


def test_ties_take_the_lower_index_arc_and_the_first_settled_node():
    # parallel arcs 0 -> 1 of equal cost: the first listed; two equal routes 0 -> 3: via node 1
    # (settled before node 2 at the same distance)
    arcs = [(0, 1), (0, 1), (1, 0), (0, 2), (2, 3), (1, 3)]
    layer = ipo.ShortestPathLayer(arcs, 0, 3, projection="none")
    assert layer(torch.ones(6)).tolist() == [1, 0, 0, 0, 0, 1]


def test_negative_costs_are_clamped_and_not_labelled_optimal():
    arcs = [(0, 1), (1, 0), (1, 2), (0, 2)]
    layer = ipo.ShortestPathLayer(arcs, 0, 2, projection="none")
    w = torch.tensor([[1.0, -3.0, 1.0, 3.0], [1.0, 1.0, 1.0, 3.0]])
    with pytest.warns(ipo.SolverWarning, match=r"NEGATIVE_COSTS_CLAMPED"):
        y = layer(w)
    assert layer.last_info.status == ("feasible", "optimal")
    assert y.tolist() == [[1, 0, 1, 0], [1, 0, 1, 0]]  # the cheapest path for max(w, 0)


def test_auto_is_norm_with_cycles_and_a_dag_keeps_its_equalities():
    cyclic = ipo.ShortestPathLayer([(0, 1), (1, 0), (1, 2)], 0, 2)
    assert cyclic.basis.shape == (0, 3)
    w = torch.tensor([[2.0, 1.0, 3.0]], requires_grad=True)
    g = torch.tensor([[0.5, -1.0, 2.0]])
    (cyclic(w) * g).sum().backward()
    expected = -torch.autograd.grad((torch.nn.functional.normalize(w, dim=1) * g).sum(), w)[0]
    torch.testing.assert_close(w.grad, expected)
    assert ipo.ShortestPathLayer([(0, 1), (1, 2)], 0, 2).basis.shape[0] > 0


def test_serial_and_pool_agree(force_pool):
    rng = np.random.default_rng(7)
    arcs = _random_graph(rng, 12, 40)
    c = torch.tensor(rng.integers(1, 4, size=(64, len(arcs))).astype(float))
    sources, targets = torch.tensor(rng.integers(0, 12, 64)), torch.tensor(rng.integers(0, 12, 64))
    serial = ipo.ShortestPathLayer(arcs, 0, 5)(c, source=sources, target=targets)
    pooled = force_pool(ipo.ShortestPathLayer(arcs, 0, 5, workers=2))
    assert torch.equal(pooled(c, source=sources, target=targets), serial)
    assert pooled.last_info.mode == "pool"


def test_costs_near_the_float64_limit_still_give_the_cheapest_path():
    # path sums would overflow: the row is scaled by a power of two before the search
    arcs = [(0, 1), (1, 2), (2, 1), (0, 2)]
    layer = ipo.ShortestPathLayer(arcs, 0, 2, projection="none")
    y = layer(torch.tensor([[1e308, 1e308, 0.0, 1.7e308], [1e308, 0.5e308, 0.0, 1.7e308]], dtype=torch.float64))
    assert y.tolist() == [[0, 0, 0, 1], [1, 1, 0, 0]] and layer.last_info.status == ("optimal",) * 2


def test_cone_aligned_reads_flow_conservation_on_a_graph_with_cycles():
    arcs = [(0, 1), (1, 0), (1, 2), (0, 2)]
    layer = ipo.ShortestPathLayer(arcs, 0, 2)
    true_sol = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    normals = ipo.ConeAligned(layer).normals(true_sol)
    # at 0 -> 1 -> 2: the three flow rows (both orientations), y >= 0 on the two unused arcs and
    # y <= 1 on the two used ones
    a = torch.tensor([[1.0, -1.0, 0.0, 1.0], [-1.0, 1.0, 1.0, 0.0], [0.0, 0.0, -1.0, -1.0]], dtype=torch.float64)
    eye = torch.eye(4, dtype=torch.float64)
    expected = torch.cat([a, -a, -eye[[1, 3]], eye[[0, 2]]])
    torch.testing.assert_close(normals[0], expected)
    loss = ipo.ConeAligned(layer)(torch.tensor([[1.0, 2.0, 1.0, 3.0]], requires_grad=True), true_sol)
    assert torch.isfinite(loss)
