import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import idproj_or as ipo
from idproj_or import problems
from idproj_or.solvers import shortest_path as sp_module


def all_paths(arcs, source, target):
    out = {}
    for e, (t, _h) in enumerate(arcs):
        out.setdefault(t, []).append(e)
    paths, stack = [], [(source, [])]
    while stack:
        v, prefix = stack.pop()
        if v == target:
            paths.append(prefix)
            continue
        stack.extend((arcs[e][1], [*prefix, e]) for e in out.get(v, []))
    return paths


def random_dag(rng, n):
    # arcs only from lower to higher labels of a random permutation: acyclic
    perm = rng.permutation(n)
    arcs = [(int(perm[i]), int(perm[j])) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.5]
    arcs.append((int(perm[0]), int(perm[-1])))  # the target is reachable
    if rng.random() < 0.5:
        arcs.append(arcs[0])  # a parallel arc
    order = rng.permutation(len(arcs))
    return [arcs[k] for k in order], int(perm[0]), int(perm[-1])


@pytest.fixture(params=["enumerate", "recursion"])
def method(request, monkeypatch):
    if request.param == "recursion":
        monkeypatch.setattr(sp_module, "ENUMERATE_WORK", 0)
    return request.param


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 8), seed=st.integers(0, 2**31 - 1), sense=st.sampled_from(["min", "max"]))
def test_optimal_against_brute_force(n, seed, sense):
    for work in (0, sp_module.ENUMERATE_WORK):  # both exact methods
        original = sp_module.ENUMERATE_WORK
        sp_module.ENUMERATE_WORK = work
        try:
            rng = np.random.default_rng(seed)
            arcs, s, t = random_dag(rng, n)
            layer = ipo.ShortestPathLayer(arcs, s, t, n_nodes=n, sense=sense, projection="none")
            costs = rng.normal(size=(4, len(arcs))) * rng.uniform(0.01, 100)  # any sign
            y = layer.solve(torch.as_tensor(costs)).numpy()
        finally:
            sp_module.ENUMERATE_WORK = original
        paths = all_paths(arcs, s, t)
        for c, yi in zip(costs, y):
            chosen = list(np.flatnonzero(yi))
            assert sorted(chosen) in [sorted(p) for p in paths]  # a source -> target path
            values = [c[p].sum() for p in paths]
            best = min(values) if sense == "min" else max(values)
            assert abs(c @ yi - best) <= 1e-9 * max(1.0, abs(best))


def test_grid_matches_the_lp_and_keeps_pyepo_arc_order(method):
    rng = np.random.default_rng(0)
    costs = torch.as_tensor(rng.normal(size=(200, 40)))
    ours = ipo.ShortestPathLayer.grid(5, 5, projection="none").solve(costs)
    lp = problems.shortest_path_grid(5, 5, backend="pywraplp").layer(projection="none").solve(costs)
    torch.testing.assert_close((ours * costs).sum(1), (lp * costs).sum(1), rtol=0, atol=1e-9)
    assert ipo.ShortestPathLayer.grid(5, 5).spec.tails == tuple(a for a, _ in problems.grid_arcs(5, 5))


def test_ties_are_broken_the_same_way_for_any_batch_split(method):
    layer = ipo.ShortestPathLayer.grid(4, 4, projection="none")
    costs = torch.ones(50, 24)  # all 20 paths tie
    costs[::3, 5] = 0.5
    full = layer.solve(costs)
    parts = torch.cat([layer.solve(costs[i : i + 7]) for i in range(0, 50, 7)])
    assert torch.equal(full, parts)


def test_pool_matches_serial(force_pool):
    rng = np.random.default_rng(5)
    costs = torch.as_tensor(rng.integers(0, 3, size=(300, 40)).astype(float))  # many ties
    serial = ipo.ShortestPathLayer.grid(5, 5).solve(costs)
    layer = force_pool(ipo.ShortestPathLayer.grid(5, 5, workers=2))
    assert pickle.loads(pickle.dumps(layer.spec)) == layer.spec
    torch.testing.assert_close(layer.solve(costs), serial, rtol=0, atol=0)
    assert layer.last_info.mode == "pool"


def test_auto_invariance_is_flow_conservation():
    # arc 5 (3 -> 4) is on no 0 -> 2 path, but on the 0 -> 4 paths an instance may ask for: "auto"
    # removes the node potentials alone, valid for every pair
    arcs = [(0, 1), (1, 2), (0, 2), (1, 3), (3, 2), (3, 4)]
    layer = ipo.ShortestPathLayer(arcs, 0, 2)
    a, b = layer.spec.equalities()
    assert a.shape == (5, 6) and b.tolist() == [1, 0, -1, 0, 0]
    rng = np.random.default_rng(1)
    w = rng.normal(size=(30, 6))
    shifted = w + 5 * rng.normal(size=(30, len(a))) @ a  # node potentials
    for target in (2, 4):
        y = layer.solve(torch.as_tensor(shifted), target=target).numpy()
        paths = all_paths(arcs, 0, target)
        for wi, yi in zip(w, y):
            assert abs(wi @ yi - min(wi[p].sum() for p in paths)) <= 1e-9
    g = torch.randn(30, 6, dtype=torch.float64)
    x = torch.as_tensor(w, dtype=torch.float64).requires_grad_(True)
    (layer(x) * g).sum().backward()
    torch.testing.assert_close(x.grad @ torch.as_tensor(a).T, torch.zeros(30, 5, dtype=torch.float64))


def test_gradient_is_minus_projected_identity():
    layer = ipo.ShortestPathLayer.grid(3, 3, projection="norm")
    w = torch.randn(6, 12, dtype=torch.float64, requires_grad=True)
    g = torch.randn(6, 12, dtype=torch.float64)
    (layer(w) * g).sum().backward()
    expected = -torch.autograd.grad((torch.nn.functional.normalize(w, dim=1, eps=0) * g).sum(), w)[0]
    torch.testing.assert_close(w.grad, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: ipo.ShortestPathLayer([(0, 1), (1, 0)], 0, 1, sense="max"),
            r"ShortestPathLayer: the graph has a cycle and sense='max': a longest simple path is NP-hard",
        ),
        (lambda: ipo.ShortestPathLayer([(0, 0), (0, 1)], 0, 1), r"arcs\[0\]=\(0, 0\) is a self-loop"),
        (lambda: ipo.ShortestPathLayer([(0, 1), (2, 1)], 0, 2), r"target 2 is not reachable from source 0"),
        (lambda: ipo.ShortestPathLayer([(0, 1)], 1, 1), r"source and target are both 1"),
        (lambda: ipo.ShortestPathLayer([(0, 1)], 0, 5), r"target=5 must be a node index in \[0, 2\)"),
        (lambda: ipo.ShortestPathLayer([(0, 1), (1, 4)], 0, 1, n_nodes=3), r"arcs\[1\]=\(1, 4\) has a node outside"),
        (lambda: ipo.ShortestPathLayer([(0.5, 1)], 0, 1), r"arcs must be a non-empty sequence of \(tail, head\) int"),
        (lambda: ipo.ShortestPathLayer([], 0, 1), r"arcs must be a non-empty sequence"),
        (lambda: ipo.ShortestPathLayer.grid(1, 1), r"ShortestPathLayer.grid: the grid needs at least 2 nodes"),
        (lambda: ipo.ShortestPathLayer([(0, 1)], 0, 1, sense="shortest"), r"sense='shortest' must be"),
    ],
)
def test_bad_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()
