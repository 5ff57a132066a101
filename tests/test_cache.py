"""Solution caching (solve_ratio, solutions=): the pool's best member exactly, the pool grows
with distinct solutions only, the coin flips follow the generator, and every rule takes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.rules.cache import SolutionCache

from .helpers import k_subset


def _layer(sense="min"):
    m, x, feasible = k_subset(6, 3)
    return ipo.CpSatLayer(m, x, sense=sense), torch.tensor(np.array(feasible))


def _count_solves(layer):
    calls = []
    solve = layer.handle.batch.solve
    layer.handle.batch.solve = lambda c, **kw: calls.append(len(c)) or solve(c, **kw)
    return calls


@pytest.mark.parametrize("sense", ["min", "max"])
def test_without_solving_each_instance_gets_the_best_pool_member_exactly(sense):
    layer, feasible = _layer(sense)
    pool = feasible[torch.randperm(len(feasible), generator=torch.Generator().manual_seed(0))[:7]]
    calls = _count_solves(layer)
    rule = ipo.Identity(layer, projection="none", solve_ratio=0.0, solutions=pool)
    costs = torch.randn(50, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = rule(costs)
    scores = costs @ pool.T
    best = scores.max(dim=1).values if sense == "max" else scores.min(dim=1).values
    torch.testing.assert_close((out * costs).sum(dim=1), best)  # best objective over the pool
    assert all((pool == row).all(dim=1).any() for row in out)  # and a member of it
    assert calls == []
    # The full feasible set as the pool: the pool's best is the true optimum.
    full = ipo.Identity(layer, projection="none", solve_ratio=0.0, solutions=feasible)
    torch.testing.assert_close(full(costs), layer.solve(costs))


def test_gradient_of_a_cached_identity_is_still_minus_identity():
    layer, feasible = _layer("min")
    rule = ipo.Identity(layer, projection="none", solve_ratio=0.0, solutions=feasible)
    p = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 6, dtype=torch.float64)
    (rule(p) * g).sum().backward()
    torch.testing.assert_close(p.grad, -g)


def test_solved_decisions_join_the_pool_once():
    layer, _ = _layer("min")
    rule = ipo.Blackbox(layer, solve_ratio=1.0, solutions=torch.zeros(1, 6))
    assert len(rule.cache) == 1
    costs = torch.randn(40, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = rule(costs)
    distinct = torch.unique(y, dim=0)
    assert len(rule.cache) == 1 + len(distinct)
    rule(costs)  # the same decisions again: nothing new
    assert len(rule.cache) == 1 + len(distinct)


def test_an_empty_pool_solves_and_the_coin_follows_the_generator():
    layer, _ = _layer("min")
    costs = torch.randn(8, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    labels = layer.solve(costs)
    calls = _count_solves(layer)

    def pattern(seed):
        rule = ipo.SPOPlus(layer, solve_ratio=0.3, generator=torch.Generator().manual_seed(seed))
        solved = []
        for _ in range(40):
            calls.clear()
            rule(costs, costs, labels, torch.zeros(8))
            solved.append(len(calls))
        return solved

    first = pattern(5)
    assert first[0] == 1  # nothing in the pool yet: solved
    assert pattern(5) == first  # deterministic per seed
    assert 5 <= sum(first) <= 25  # about 30% of 40 calls
    assert pattern(6) != first


def test_every_rule_takes_the_cache_options():
    layer, feasible = _layer("max")
    true = torch.randn(4, 6, dtype=torch.float64)
    sol = layer.solve(true)
    calls = _count_solves(layer)
    rules = [
        (ipo.Identity(layer, solve_ratio=0, solutions=feasible), lambda r, p: r(p).sum()),
        (ipo.Blackbox(layer, solve_ratio=0, solutions=feasible), lambda r, p: r(p).sum()),
        (ipo.SPOPlus(layer, solve_ratio=0, solutions=feasible), lambda r, p: r(p, true, sol, (true * sol).sum(1))),
        (ipo.PerturbedOpt(layer, n_samples=3, solve_ratio=0, solutions=feasible), lambda r, p: r(p).sum()),
        (ipo.FenchelYoung(layer, n_samples=3, solve_ratio=0, solutions=feasible), lambda r, p: r(p, sol)),
        (ipo.IMLE(layer, n_samples=3, solve_ratio=0, solutions=feasible), lambda r, p: r(p).sum()),
    ]
    for rule, loss in rules:
        p = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
        loss(rule, p).backward()
        assert p.grad is not None
    assert calls == []  # every solve, forward and backward, came from the pool


def test_cache_errors_say_what():
    layer, feasible = _layer()
    with pytest.raises(ValueError, match=r"Blackbox: solve_ratio=1.5 must be in \[0, 1\]"):
        ipo.Blackbox(layer, solve_ratio=1.5)
    with pytest.raises(ValueError, match=r"Blackbox: solutions must have shape \(N, 6\) with N >= 1, got \(3, 5\)"):
        ipo.Blackbox(layer, solutions=torch.zeros(3, 5))
    bad = feasible.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"SPOPlus: solutions\[2\] has a non-finite entry"):
        ipo.SPOPlus(layer, solutions=bad)
    with pytest.raises(ValueError, match="solve_ratio='x' must be a real number"):
        ipo.IMLE(layer, solve_ratio="x")


def test_pool_dedup_tolerates_lp_round_off():
    cache = SolutionCache((4,), "min", torch.tensor([[1.0, 0.0, 0.0, 1.0]]), where="t")
    cache.add(torch.tensor([[1.0 - 1e-9, 1e-9, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]))
    assert len(cache) == 2
