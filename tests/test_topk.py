import pickle

import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.rules.projection import project
from idproj_or.solvers.sorting import TopKSpec

CASES = [(1, 1), (2, 1), (5, 0), (5, 2), (8, 8), (10, 3), (33, 7)]


def reference(w: torch.Tensor, k: int, sense: str) -> torch.Tensor:
    """k-hot of the first k positions of a stable sort: ties select the lower index first."""
    order = torch.sort(w, dim=1, descending=sense == "max", stable=True).indices[:, :k]
    return torch.zeros_like(w).scatter_(1, order, 1.0)


@pytest.mark.parametrize("sense", ["max", "min"])
@pytest.mark.parametrize("n, k", CASES)
def test_matches_torch_topk_on_distinct_scores(n, k, sense):
    w = torch.randn(40, n, generator=torch.Generator().manual_seed(n * 10 + k), dtype=torch.float64)
    layer = ipo.TopKLayer(n, k, sense)
    y = layer(w)  # through the default "auto" projection
    expected = torch.zeros_like(w).scatter_(1, torch.topk(w, k, dim=1, largest=sense == "max").indices, 1.0)
    assert torch.equal(y, expected)
    assert layer.last_info.status == ("optimal",) * 40
    torch.testing.assert_close(torch.as_tensor(layer.last_info.objective), (w * expected).sum(1))


@pytest.mark.parametrize("projection", ["none", "mean", "norm", "std", "auto"])
@pytest.mark.parametrize("sense", ["max", "min"])
@pytest.mark.parametrize("n, k", CASES)
def test_ties_select_the_lower_index_first(n, k, sense, projection):
    # scores from {0, 1, 2}: most rows have ties, also across the k-th position
    gen = torch.Generator().manual_seed(n + k)
    w = torch.randint(0, 3, (60, n), generator=gen).to(torch.float32)
    expected = reference(w, k, sense)
    assert torch.equal(ipo.TopKLayer(n, k, sense).solve(w), expected)
    # every projection subtracts one constant and scales each row: ties stay ties
    assert torch.equal(ipo.TopKLayer(n, k, sense, projection=projection)(w), expected)


def test_tie_rule_examples():
    w = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0, 3.0]])
    assert ipo.TopKLayer(5, 2).solve(w).tolist() == [[0, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert ipo.TopKLayer(5, 2, "min").solve(w).tolist() == [[1, 0, 0, 0, 1], [1, 1, 0, 0, 0]]


@pytest.mark.parametrize("sense", ["max", "min"])
def test_auto_is_the_sum_invariance(sense):
    layer = ipo.TopKLayer(12, 4, sense)
    a, b = layer.spec.equalities()
    assert np.array_equal(a, np.ones((1, 12))) and np.array_equal(b, [4.0])
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(50, 12, generator=gen, dtype=torch.float64)
    # "auto" removes exactly the all-ones direction, then normalises: the paper's P_std
    torch.testing.assert_close(project(w, "auto", layer.basis), project(w, "std"))
    # the auto-projected costs give the decision of the raw costs, and so do shifted ones
    shifted = w + 10 * torch.randn(50, 1, generator=gen, dtype=torch.float64)
    assert torch.equal(layer(w), layer.solve(w))
    assert torch.equal(layer.solve(project(w, "auto", layer.basis)), layer.solve(w))
    assert torch.equal(layer.solve(shifted), layer.solve(w))
    assert torch.equal(layer(shifted), layer(w))


@pytest.mark.parametrize("k", [0, 4])
def test_a_single_decision_keeps_the_equality_every_k_shares(k):
    # with k == 0 or n every direction is invariant, but only for that k; an instance may bring
    # its own k, so "auto" removes the all-ones direction alone
    layer = ipo.TopKLayer(4, k)
    a, b = layer.spec.equalities()
    assert np.array_equal(a, np.ones((1, 4))) and np.array_equal(b, [k])
    w = torch.randn(3, 4, requires_grad=True)
    y = layer(w)
    assert torch.equal(y, torch.full((3, 4), k / 4))
    g = torch.randn(3, 4)
    (y * g).sum().backward()
    torch.testing.assert_close(w.grad, torch.autograd.grad((project(w, "std") * g).sum(), w)[0])
    assert torch.equal(layer(w, k=2), ipo.TopKLayer(4, 2)(w))


@pytest.mark.parametrize("sense, sign", [("max", 1.0), ("min", -1.0)])
def test_backward_is_signed_identity_through_the_projection(sense, sign):
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    w = torch.randn(6, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    (ipo.TopKLayer(9, 3, sense, projection="none")(w) * g).sum().backward()
    assert torch.equal(w.grad, sign * g)  # +I for a maximisation, -I for a minimisation

    w.grad = None
    (ipo.TopKLayer(9, 3, sense)(w) * g).sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    (project(w2, "std") * g).sum().backward()
    torch.testing.assert_close(w.grad, sign * w2.grad)  # +-P'(w)^T g
    torch.testing.assert_close(w.grad.sum(1), torch.zeros(6, dtype=torch.float64))


def test_shape_dtype_and_unbatched_input():
    layer = ipo.TopKLayer(4, 1)
    y = layer(torch.tensor([0.0, 3.0, 1.0, 2.0], dtype=torch.float32))
    assert y.dtype == torch.float32 and y.tolist() == [0.0, 1.0, 0.0, 0.0]
    y = layer(torch.tensor([[0.0, 3.0, 1.0, 2.0]], dtype=torch.float64))
    assert y.dtype == torch.float64 and y.shape == (1, 4)


@pytest.mark.parametrize("sense", ["max", "min"])
def test_serial_and_pool_give_identical_results(force_pool, sense):
    w = torch.randint(0, 4, (40, 15), generator=torch.Generator().manual_seed(0)).to(torch.float64)
    w[::2] += torch.rand(20, 15, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = ipo.TopKLayer(15, 5, sense)(w)
    pooled = force_pool(ipo.TopKLayer(15, 5, sense, workers=2))
    assert torch.equal(pooled(w), expected)
    assert pooled.last_info.mode == "pool"


def test_every_rule_runs_on_it():
    layer = ipo.TopKLayer(6, 2)
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
        torch.testing.assert_close(y.sum(1), torch.full((4,), 2.0))  # each sample is 2-hot
    losses = [ipo.FenchelYoung(layer, generator=gen)(w, true_sol), ipo.SPOPlus(layer)(w, true_cost, true_sol, true_obj)]
    total = sum(y.sum() * 0.1 for y in outputs) + sum(losses)
    total.backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_spec_pickles_and_is_plain_data():
    spec = ipo.TopKLayer(7, 3, "min").spec
    assert pickle.loads(pickle.dumps(spec)) == TopKSpec(7, 3, "min")
    assert spec.shape == (7,)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0, 1), {}, r"TopKLayer: n=0 must be an int >= 1"),
        ((2.5, 1), {}, r"TopKLayer: n=2.5 must be an int >= 1"),
        ((5, -1), {}, r"TopKLayer: k=-1 must be an int >= 0"),
        ((5, True), {}, r"TopKLayer: k=True must be an int >= 0"),
        ((5, 6), {}, r"TopKLayer: k=6 must be at most n=5"),
        ((5, 2, "largest"), {}, r"TopKLayer: sense='largest' must be 'min' or 'max'"),
        ((5, 2), {"projection": "l2"}, r"projection='l2' is not one of"),
        ((5, 2), {"time_limit": 1.0}, r"TopKLayer: time_limit is not supported"),
        ((5, 2), {"time_limit": -1.0}, r"TopKLayer: time_limit=-1.0 must be a positive"),
    ],
)
def test_validation_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ipo.TopKLayer(*args, **kwargs)


@pytest.mark.parametrize(
    "costs, match",
    [
        (torch.zeros(3, 4), r"TopKLayer: expected costs of shape \(3,\) or \(B, 3\), got \(3, 4\)"),
        (torch.zeros(2, 2, 3), r"TopKLayer: expected costs of shape \(3,\) or \(B, 3\), got \(2, 2, 3\)"),
        (torch.tensor([[0.0, 1, 2], [3, float("inf"), 5]]), r"TopKLayer: costs\[1\] has a non-finite entry inf"),
    ],
)
def test_cost_errors(costs, match):
    with pytest.raises(ValueError, match=match):
        ipo.TopKLayer(3, 1)(costs)


def test_agrees_with_the_declared_cp_sat_model():
    w = torch.randn(20, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    declared = ipo.problems.top_k(8, 3).layer(projection="none")
    assert torch.equal(ipo.TopKLayer(8, 3)(w), declared(w))
