"""GridShortestPathLayer: exact against scipy's Dijkstra and brute force, its ties, negative
costs, every rule, serial / pool parity and its errors."""

from __future__ import annotations

import itertools
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

import idproj_or as ipo
from idproj_or.solvers.grid_path import CLAMPED

from .test_rules import RULES


def _steps(neighbours):
    if neighbours == 4:
        return [(-1, 0), (0, -1), (0, 1), (1, 0)]
    return [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]


def _adjacency(h, w, neighbours):
    """Each cell's neighbour cells (flat indices)."""
    out = []
    for i, j in itertools.product(range(h), range(w)):
        out.append([(i + a) * w + j + b for a, b in _steps(neighbours) if 0 <= i + a < h and 0 <= j + b < w])
    return out


def _scipy_costs(c, h, w, neighbours, source=0, target=None):
    """Cheapest vertex-weighted path cost per row by scipy: the arc u -> v costs c[v]."""
    target = h * w - 1 if target is None else target
    adj = _adjacency(h, w, neighbours)
    tails = np.array([u for u, vs in enumerate(adj) for _ in vs])
    heads = np.array([v for vs in adj for v in vs])
    out = []
    for row in c:
        # a sparse matrix's explicit zeros are arcs of cost 0 for scipy
        graph = csr_matrix((row[heads], (tails, heads)), shape=(h * w, h * w))
        out.append(dijkstra(graph, indices=source)[target] + row[source])
    return np.array(out)


def _is_path(y, h, w, neighbours, source, target):
    """Whether the selected cells of ``y`` are exactly the cells of one simple source -> target
    path (a depth-first search for a path through every selected cell)."""
    chosen = set(np.flatnonzero(y.reshape(-1) > 0.5).tolist())
    if source not in chosen or target not in chosen:
        return False
    adj = _adjacency(h, w, neighbours)

    def extend(v, seen):
        if v == target:
            return len(seen) == len(chosen)
        return any(extend(u, seen | {u}) for u in adj[v] if u in chosen and u not in seen)

    return extend(source, {source})


@pytest.mark.parametrize("neighbours", [4, 8])
def test_optimal_against_scipy_dijkstra_on_random_grids(neighbours):
    rng = np.random.default_rng(neighbours)
    checked = 0
    for h, w, kind in itertools.product((2, 3, 5, 8, 12), (2, 4, 7, 12), ("uniform", "ties", "zeros", "spread")):
        if kind == "uniform":
            c = rng.uniform(0.01, 1.0, size=(40, h, w))
        elif kind == "ties":
            c = rng.integers(1, 4, size=(40, h, w)).astype(float)
        elif kind == "zeros":
            c = rng.integers(0, 3, size=(40, h, w)).astype(float)
        else:  # a wide range of magnitudes
            c = 10.0 ** rng.uniform(-6, 6, size=(40, h, w))
        layer = ipo.GridShortestPathLayer(h, w, neighbours=neighbours, projection="none")
        y = layer(torch.tensor(c)).numpy()
        assert layer.last_info.status == ("optimal",) * len(c)
        ours = (y * c).sum(axis=(1, 2))
        ref = _scipy_costs(c.reshape(len(c), -1), h, w, neighbours)
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)
        if h * w <= 25:  # the selected cells are one simple path (checked independently)
            assert all(_is_path(row, h, w, neighbours, 0, h * w - 1) for row in y)
        else:  # positive costs: any superfluous cell would make the selection cost more
            assert set(np.unique(y)) <= {0.0, 1.0} and (y[:, 0, 0] == 1).all() and (y[:, -1, -1] == 1).all()
        checked += len(c)
    assert checked == 5 * 4 * 4 * 40


def _simple_paths(h, w, neighbours, source, target):
    adj = _adjacency(h, w, neighbours)
    stack = [(source, (source,))]
    while stack:
        v, path = stack.pop()
        if v == target:
            yield path
            continue
        stack.extend((u, (*path, u)) for u in adj[v] if u not in path)


@pytest.mark.parametrize("neighbours", [4, 8])
def test_optimal_against_brute_force_over_every_simple_path(neighbours):
    h, w = 3, 3
    paths = list(_simple_paths(h, w, neighbours, 1, 6))  # an inner pair, not the corners
    indicators = np.zeros((len(paths), h * w))
    for k, path in enumerate(paths):
        indicators[k, list(path)] = 1.0
    rng = np.random.default_rng(1)
    c = rng.integers(0, 5, size=(300, h * w)).astype(float)
    layer = ipo.GridShortestPathLayer(h, w, neighbours=neighbours, source=(0, 1), target=(2, 0), projection="none")
    y = layer(torch.tensor(c.reshape(-1, h, w))).numpy().reshape(len(c), -1)
    np.testing.assert_allclose((y * c).sum(1), (c @ indicators.T).min(axis=1))
    # each decision is one of the simple paths
    assert ((y[:, None, :] == indicators[None]).all(axis=2).sum(axis=1) == 1).all()


def test_ties_follow_the_documented_order():
    # equal costs: 8 neighbours go diagonally; 4 neighbours, of the 2x2 grid's two paths, take the
    # one through (0, 1): it is settled first (same distance, lower index)
    assert ipo.GridShortestPathLayer(3, 3, projection="none")(torch.ones(3, 3)).int().tolist() == [
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
    ]
    layer = ipo.GridShortestPathLayer(2, 2, neighbours=4, projection="none")
    assert layer(torch.ones(2, 2)).int().tolist() == [[1, 1], [0, 1]]
    # zero costs everywhere: the route is still a single path, found the same way each time
    zero = ipo.GridShortestPathLayer(4, 5, neighbours=4, projection="none")
    y = zero(torch.zeros(6, 4, 5)).numpy()
    assert (y == y[0]).all() and _is_path(y[0], 4, 5, 4, 0, 19)


def test_a_row_gets_the_same_path_alone_or_in_any_batch():
    rng = np.random.default_rng(3)
    c = torch.tensor(rng.integers(1, 3, size=(50, 6, 6)).astype(float))
    layer = ipo.GridShortestPathLayer(6, 6, projection="none")
    full = layer(c)
    for i in (0, 17, 49):
        assert torch.equal(layer(c[i]), full[i])
    assert torch.equal(layer(c.flip(0)), full.flip(0))


def test_source_target_and_shapes():
    c = torch.rand(4, 5, 6, generator=torch.Generator().manual_seed(0)) + 0.1
    layer = ipo.GridShortestPathLayer(5, 6, source=(4, 0), target=(0, -1), projection="none")
    y = layer(c).numpy()
    assert y.shape == (4, 5, 6) and (y[:, 4, 0] == 1).all() and (y[:, 0, 5] == 1).all()
    ref = _scipy_costs(c.double().numpy().reshape(4, -1), 5, 6, 8, source=24, target=5)
    np.testing.assert_allclose((y * c.double().numpy()).sum(axis=(1, 2)), ref, rtol=1e-12)
    # the source as target: the path is that one cell
    same = ipo.GridShortestPathLayer(3, 3, source=(1, 1), target=(1, 1), projection="none")
    assert same(torch.rand(3, 3)).int().tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    # an unbatched and a float32 input keep their shape and dtype
    out = ipo.GridShortestPathLayer(5, 6)(c[0].float())
    assert out.shape == (5, 6) and out.dtype == torch.float32


def test_negative_costs_are_clamped_and_not_labelled_optimal():
    # 2 x 3 from (0, 0) to (0, 2): a detour through every negative cell is cheaper for w itself,
    # but clamped they all cost 0 and the direct step through (0, 1) is as cheap (the simple-path
    # problem with negative costs is NP-hard): the decision is the cheapest path for max(w, 0),
    # and its status says so.
    w = torch.tensor([[[1.0, -1.0, 1.0], [-5.0, -5.0, -5.0]], [[1.0, 2.0, 1.0], [2.0, 2.0, 1.0]]])
    layer = ipo.GridShortestPathLayer(2, 3, target=(0, 2), projection="none")
    with pytest.warns(ipo.SolverWarning, match=r"1 of 2 decisions are not proven optimal.*NEGATIVE_COSTS_CLAMPED"):
        y = layer(w)
    assert layer.last_info.status == ("feasible", "optimal")
    assert layer.last_info.solver_status == (CLAMPED, "OPTIMAL")
    clamped = ipo.GridShortestPathLayer(2, 3, target=(0, 2), projection="none")(w.clamp(min=0))
    assert torch.equal(y, clamped) and y[0].int().tolist() == [[1, 1, 1], [0, 0, 0]]
    best = min(sum(w[0].reshape(-1)[list(p)].tolist()) for p in _simple_paths(2, 3, 8, 0, 2))
    assert best == -14.0 and float((y[0] * w[0]).sum()) == 1.0  # why it is not "optimal"
    assert np.isnan(layer.last_info.bound[0]) and layer.last_info.bound[1] == float((y[1] * w[1]).sum())


def test_negative_costs_are_clamped_on_random_grids():
    rng = np.random.default_rng(5)
    c = rng.normal(size=(200, 6, 6))
    layer = ipo.GridShortestPathLayer(6, 6, projection="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ipo.SolverWarning)
        y = layer(torch.tensor(c)).numpy()
    ref = _scipy_costs(np.maximum(c, 0).reshape(200, -1), 6, 6, 8)
    np.testing.assert_allclose((y * np.maximum(c, 0)).sum(axis=(1, 2)), ref, atol=1e-12)
    assert set(layer.last_info.status) == {"feasible"}


def test_identity_backward_is_minus_identity_through_the_clamp_and_auto_ignores_the_end_cells():
    w = torch.tensor([[[0.5, -0.2, 2.0], [1.0, 3.0, 0.1], [2.0, -1.0, 0.3]]], dtype=torch.float64)
    g = torch.arange(9.0, dtype=torch.float64).reshape(1, 3, 3)
    p = w.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ipo.SolverWarning)
        (ipo.GridShortestPathLayer(3, 3, projection="none")(p) * g).sum().backward()
    assert torch.equal(p.grad, -g)  # every entry, the clamped ones included
    layer = ipo.GridShortestPathLayer(3, 3)  # "auto": the end cells' costs are zeroed, then normalised
    basis = layer.basis.abs()
    assert basis.shape == (2, 9) and set(torch.nonzero(basis)[:, 1].tolist()) == {0, 8}
    c = torch.rand(20, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.1
    bumped = c.clone()
    bumped[:, 0, 0] += 100.0
    bumped[:, -1, -1] += 100.0
    assert torch.equal(layer(c), layer(bumped))
    assert torch.equal(layer(c), ipo.GridShortestPathLayer(3, 3, projection="none")(c))


def _call(name, rule, pred, true, w_star, g):
    if name == "spo":
        return rule(pred, true, w_star, (true * w_star).sum((1, 2)))
    if name in ("fy", "fy-mul", "rfy"):
        return rule(pred, w_star).sum()
    if name == "pg":
        return rule(pred, true).sum()
    return (rule(pred) * g).sum()


def test_every_rule_runs_on_the_grid_identically_serial_in_the_pool_and_on_an_executor(force_pool):
    gen = torch.Generator().manual_seed(4)
    true = torch.rand(6, 5, 5, generator=gen, dtype=torch.float64) + 0.1
    pred = torch.rand(6, 5, 5, generator=gen, dtype=torch.float64) + 0.1
    g = torch.randn(6, 5, 5, generator=gen, dtype=torch.float64)
    w_star = ipo.GridShortestPathLayer(5, 5, projection="none")(true)
    serial, pooled = ipo.GridShortestPathLayer(5, 5), force_pool(ipo.GridShortestPathLayer(5, 5, workers=2))
    executor = ThreadPoolExecutor(2)
    on_executor = ipo.GridShortestPathLayer(5, 5, executor=executor, executor_workers=2)
    for name, make in RULES.items():
        results = []
        for layer in (serial, pooled, on_executor):
            p = pred.clone().requires_grad_(True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ipo.SolverWarning)  # perturbations may clamp
                budget = {"max_iter": 20} if name in ("rfwo", "rfy") else {}  # Frank-Wolfe: seconds otherwise
                rule = make(layer, projection="norm", **budget)
                out = _call(name, rule, p, true, w_star, g)
                out.backward()
            assert torch.isfinite(out) and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
            results.append((out.detach(), p.grad, rule.last_info.mode))
        assert [mode for *_, mode in results] == ["serial", "pool", "executor"], name
        for out, grad, _ in results[1:]:
            assert torch.equal(out, results[0][0]) and torch.equal(grad, results[0][1]), name
    executor.shutdown()


def test_errors_say_what_and_where():
    with pytest.raises(ValueError, match=r"GridShortestPathLayer: neighbours=6 must be 4 or 8"):
        ipo.GridShortestPathLayer(3, 3, neighbours=6)
    with pytest.raises(ValueError, match=r"GridShortestPathLayer: neighbours=True must be 4 or 8"):
        ipo.GridShortestPathLayer(3, 3, neighbours=True)
    with pytest.raises(ValueError, match=r"GridShortestPathLayer: source=\(3, 0\) is outside the 3x4 grid"):
        ipo.GridShortestPathLayer(3, 4, source=(3, 0))
    with pytest.raises(ValueError, match=r"GridShortestPathLayer: target=\(0, -5\) is outside the 3x4 grid"):
        ipo.GridShortestPathLayer(3, 4, target=(0, -5))
    with pytest.raises(ValueError, match=r"GridShortestPathLayer: source=5 must be a \(row, column\) pair of ints"):
        ipo.GridShortestPathLayer(3, 4, source=5)
    with pytest.raises(ValueError, match=r"GridShortestPathLayer: target=\(1.5, 2\) must be a \(row, column\) pair"):
        ipo.GridShortestPathLayer(3, 4, target=(1.5, 2))
    with pytest.raises(ValueError, match=r"GridShortestPathLayer: height=0"):
        ipo.GridShortestPathLayer(0, 4)
    with pytest.raises(ValueError, match=r"time_limit"):
        ipo.GridShortestPathLayer(3, 4, time_limit=1.0)
    layer = ipo.GridShortestPathLayer(3, 4)
    with pytest.raises(ValueError, match=r"shape"):
        layer(torch.rand(2, 4, 3))
    with pytest.raises(ValueError, match=r"(?i)nan|finite"):
        layer(torch.full((3, 4), float("nan")))


def test_degenerate_grids_and_costs_near_the_float64_limit():
    assert ipo.GridShortestPathLayer(1, 1, projection="none")(torch.tensor([[2.0]])).tolist() == [[1.0]]
    layer = ipo.GridShortestPathLayer(1, 3, projection="none")
    y = layer(torch.tensor([[1e308, 1e308, 1e308]], dtype=torch.float64))
    assert y.tolist() == [[1.0, 1.0, 1.0]] and layer.last_info.status == ("optimal",)
    big = ipo.GridShortestPathLayer(2, 3, neighbours=4, projection="none")
    y = big(torch.tensor([[1e308, 1.5e308, 1e308], [1e308, 1e308, 1e308]], dtype=torch.float64))
    assert y.int().tolist() == [[1, 0, 0], [1, 1, 1]]


def test_negative_end_cells_never_change_the_decision_and_stay_optimal():
    w = torch.tensor([[-1.0, 1.0, 1.0], [1.0, 3.0, 1.0], [1.0, 1.0, -2.0]])
    layer = ipo.GridShortestPathLayer(3, 3, neighbours=4, projection="none")
    y = layer(w)
    assert layer.last_info.status == ("optimal",)
    assert torch.equal(y, layer(w.clamp(min=0)))
    best = min(sum(w.reshape(-1)[list(p)].tolist()) for p in _simple_paths(3, 3, 4, 0, 8))
    assert float((y * w).sum()) == best
