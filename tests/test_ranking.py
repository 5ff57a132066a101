import itertools
import pickle
import time

import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.rules.projection import project
from idproj_or.solvers.sorting import RankingSpec

SIZES = [1, 2, 3, 6, 17, 100]


def reference(w: torch.Tensor, sense: str) -> torch.Tensor:
    """Ranks from a stable sort (descending for "min"): ties give the lower index the smaller
    rank."""
    order = torch.sort(w, dim=1, descending=sense == "min", stable=True).indices
    ranks = torch.arange(1, w.shape[1] + 1, dtype=w.dtype).expand_as(w)
    return torch.empty_like(w).scatter_(1, order, ranks)


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_argmin_over_every_permutation(n, sense):
    rng = np.random.default_rng(n)
    perms = np.array(list(itertools.permutations(range(1, n + 1))), dtype=float)
    w = rng.normal(size=(30, n))
    y = ipo.RankingLayer(n, sense).solve(torch.as_tensor(w)).numpy()
    values = w @ perms.T
    best = perms[values.argmin(1) if sense == "min" else values.argmax(1)]
    assert np.array_equal(y, best)


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("n", SIZES)
def test_matches_argsort_on_distinct_scores(n, sense):
    w = torch.randn(40, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    layer = ipo.RankingLayer(n, sense)
    y = layer(w)  # through the default "auto" projection
    order = torch.argsort(w, dim=1, descending=sense == "min")
    assert torch.equal(torch.argsort(y, dim=1), order)  # rank 1 first
    if sense == "min":
        assert torch.all(y.gather(1, w.argmax(1, keepdim=True)) == 1)  # highest score ranked 1
    assert layer.last_info.status == ("optimal",) * 40
    torch.testing.assert_close(torch.as_tensor(layer.last_info.objective), (w * y).sum(1))


@pytest.mark.parametrize("projection", ["none", "mean", "norm", "std", "auto"])
@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("n", SIZES)
def test_ties_rank_the_lower_index_first(n, sense, projection):
    w = torch.randint(0, 3, (60, n), generator=torch.Generator().manual_seed(n)).to(torch.float32)
    expected = reference(w, sense)
    assert torch.equal(ipo.RankingLayer(n, sense).solve(w), expected)
    # every projection subtracts one constant and scales each row: ties stay ties
    assert torch.equal(ipo.RankingLayer(n, sense, projection=projection)(w), expected)


def test_tie_rule_examples():
    w = torch.tensor([[1.0, 2.0, 2.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    assert ipo.RankingLayer(4).solve(w).tolist() == [[3, 1, 2, 4], [1, 2, 3, 4]]
    assert ipo.RankingLayer(4, "max").solve(w).tolist() == [[2, 3, 4, 1], [1, 2, 3, 4]]


@pytest.mark.parametrize("sense", ["min", "max"])
def test_auto_is_the_all_ones_invariance(sense):
    layer = ipo.RankingLayer(20, sense)
    a, b = layer.spec.equalities()
    assert np.array_equal(a, np.ones((1, 20))) and np.array_equal(b, [210.0])
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(50, 20, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(project(w, "auto", layer.basis), project(w, "std"))
    shifted = w + 10 * torch.randn(50, 1, generator=gen, dtype=torch.float64)
    assert torch.equal(layer(w), layer.solve(w))
    assert torch.equal(layer.solve(project(w, "auto", layer.basis)), layer.solve(w))
    assert torch.equal(layer.solve(shifted), layer.solve(w))
    assert torch.equal(layer(shifted), layer(w))


@pytest.mark.parametrize("sense, sign", [("min", -1.0), ("max", 1.0)])
def test_backward_is_signed_identity_through_the_projection(sense, sign):
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    w = torch.randn(6, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    (ipo.RankingLayer(9, sense, projection="none")(w) * g).sum().backward()
    assert torch.equal(w.grad, sign * g)  # -I for a minimisation, +I for a maximisation

    w.grad = None
    (ipo.RankingLayer(9, sense)(w) * g).sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    (project(w2, "std") * g).sum().backward()
    torch.testing.assert_close(w.grad, sign * w2.grad)  # -+P'(w)^T g
    torch.testing.assert_close(w.grad.sum(1), torch.zeros(6, dtype=torch.float64))


def test_large_batch_is_fast():
    layer = ipo.RankingLayer(500)
    w = torch.randn(256, 500, generator=torch.Generator().manual_seed(0), requires_grad=True)
    layer(w)  # first call: builds the resident solver
    t0 = time.perf_counter()
    y = layer(w)
    y.sum().backward()
    assert time.perf_counter() - t0 < 0.5  # a generous bound: vectorised, a few ms on one core
    assert torch.equal(y.detach(), reference(w.detach(), "min"))


@pytest.mark.parametrize("sense", ["min", "max"])
def test_serial_and_pool_give_identical_results(force_pool, sense):
    w = torch.randint(0, 4, (40, 15), generator=torch.Generator().manual_seed(0)).to(torch.float64)
    w[::2] += torch.rand(20, 15, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = ipo.RankingLayer(15, sense)(w)
    pooled = force_pool(ipo.RankingLayer(15, sense, workers=2))
    assert torch.equal(pooled(w), expected)
    assert pooled.last_info.mode == "pool"


def test_every_rule_runs_on_it():
    layer = ipo.RankingLayer(6)
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(4, 6, generator=gen, requires_grad=True)
    true_cost = torch.randn(4, 6, generator=gen)
    true_sol = layer.solve(true_cost)
    true_obj = (true_cost * true_sol).sum(1)
    outputs = [
        ipo.Blackbox(layer)(w),
        ipo.IMLE(layer, generator=gen)(w),
        ipo.PerturbedOpt(layer, generator=gen)(w),
    ]
    for y in outputs:
        assert y.shape == (4, 6)
        torch.testing.assert_close(y.sum(1), torch.full((4,), 21.0))  # ranks 1..6 (or their mean)
    losses = [ipo.FenchelYoung(layer, generator=gen)(w, true_sol), ipo.SPOPlus(layer)(w, true_cost, true_sol, true_obj)]
    total = sum(y.sum() * 0.1 for y in outputs) + sum(losses)
    total.backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_spec_pickles_and_is_plain_data():
    spec = ipo.RankingLayer(7, "max").spec
    assert pickle.loads(pickle.dumps(spec)) == RankingSpec(7, "max")
    assert spec.shape == (7,)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0,), {}, r"RankingLayer: n=0 must be an int >= 1"),
        ((2.5,), {}, r"RankingLayer: n=2.5 must be an int >= 1"),
        ((True,), {}, r"RankingLayer: n=True must be an int >= 1"),
        ((5, "descending"), {}, r"RankingLayer: sense='descending' must be 'min' or 'max'"),
        ((5,), {"projection": "l2"}, r"projection='l2' is not one of"),
        ((5,), {"time_limit": 1.0}, r"RankingLayer: time_limit is not supported"),
        ((5,), {"time_limit": -1.0}, r"RankingLayer: time_limit=-1.0 must be a positive"),
    ],
)
def test_validation_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ipo.RankingLayer(*args, **kwargs)


@pytest.mark.parametrize(
    "costs, match",
    [
        (torch.zeros(3, 4), r"RankingLayer: expected costs of shape \(3,\) or \(B, 3\), got \(3, 4\)"),
        (torch.zeros(2, 2, 3), r"RankingLayer: expected costs of shape \(3,\) or \(B, 3\), got \(2, 2, 3\)"),
        (torch.tensor([[0.0, 1, 2], [3, float("nan"), 5]]), r"RankingLayer: costs\[1\] has a non-finite entry nan"),
    ],
)
def test_cost_errors(costs, match):
    with pytest.raises(ValueError, match=match):
        ipo.RankingLayer(3)(costs)
