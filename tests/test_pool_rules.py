"""Contrastive and learning-to-rank rules over the solution pool: hand formulas, the pool's
refresh, errors."""

from __future__ import annotations

import pytest
import torch

import idproj_or as ipo

POOL = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
RULES = [ipo.NoiseContrastive, ipo.ContrastiveMAP, ipo.PointwiseLTR, ipo.PairwiseLTR, ipo.ListwiseLTR]


def layer() -> ipo.KnapsackLayer:
    return ipo.KnapsackLayer([[3, 4, 5]], [7])


def test_hand_formulas_on_a_three_member_pool() -> None:
    pred = torch.tensor([[1.0, 2.0, 2.5]], dtype=torch.float64, requires_grad=True)
    scores = pred.detach() @ POOL.T  # [3, 2.5, 1]; y(pred) = [1, 1, 0] is already in the pool
    w_star = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    true = torch.tensor([[1.0, 1.0, 3.0]], dtype=torch.float64)
    truth = true @ POOL.T  # [2, 3, 1]: the best member for the true cost is the second
    nce = ipo.NoiseContrastive(layer(), solutions=POOL)(pred, w_star)
    assert nce.item() == pytest.approx(float((scores - 2.5).mean()))  # a maximisation: <p, w> - <p, w*>
    nce.backward()
    torch.testing.assert_close(pred.grad, POOL.mean(0, keepdim=True) - w_star)
    cmap = ipo.ContrastiveMAP(layer(), solutions=POOL)(pred, w_star)
    assert cmap.item() == pytest.approx(0.5)
    pt = ipo.PointwiseLTR(layer(), solutions=POOL)(pred, true)
    assert pt.item() == pytest.approx(float(((truth - scores) ** 2).mean()))
    pr = ipo.PairwiseLTR(layer(), solutions=POOL)(pred, true)
    assert pr.item() == pytest.approx(float(torch.relu(scores - 2.5).sum() / 2))
    ls = ipo.ListwiseLTR(layer(), solutions=POOL)(pred, true)
    expect = -(torch.log_softmax(scores, 1) * torch.softmax(truth, 1)).sum()
    assert ls.item() == pytest.approx(float(expect))


def test_a_solve_joins_the_pool() -> None:
    rule = ipo.NoiseContrastive(layer(), solutions=POOL[:1])
    rule(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[0.0, 0.0, 1.0]]))
    assert len(rule.cache) == 2  # y = [0, 0, 1] joined [1, 1, 0]


@pytest.mark.parametrize("cls", RULES, ids=lambda c: c.__name__)
def test_solutions_are_required(cls: type) -> None:
    with pytest.raises(ValueError, match=r"solutions= is required"):
        cls(layer())


@pytest.mark.parametrize("cls", RULES, ids=lambda c: c.__name__)
def test_bad_reduction_and_label_shape(cls: type) -> None:
    with pytest.raises(ValueError, match=r"reduction='x' must be 'mean', 'sum' or 'none'"):
        cls(layer(), solutions=POOL, reduction="x")
    with pytest.raises(ValueError, match=r"must have shape \(2, 3\) like the predictions"):
        cls(layer(), solutions=POOL)(torch.rand(2, 3), torch.rand(2, 4))


@pytest.mark.parametrize("cls", RULES, ids=lambda c: c.__name__)
def test_serial_and_pool_give_identical_losses_and_gradients(cls: type, force_pool) -> None:
    """The rule's solves (which refresh the pool) on a 2-worker pool equal the in-process ones."""
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    true = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    label = POOL[torch.arange(6) % 3]
    label = label if cls in (ipo.NoiseContrastive, ipo.ContrastiveMAP) else true
    results = []
    for options in ({}, {"workers": 2}):
        knapsack = ipo.KnapsackLayer([[3, 4, 5]], [7], **options)
        if options:
            force_pool(knapsack)
        rule = cls(knapsack, solutions=POOL[:1], solve_ratio=1.0)
        p = pred.clone().requires_grad_(True)
        loss = rule(p, label)
        loss.backward()
        if options:
            assert rule.last_info.mode == "pool"
        results.append((loss.detach(), p.grad, len(rule.cache)))
    assert results[0][2] > 1  # the solves joined the pool
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert results[0][2] == results[1][2]
