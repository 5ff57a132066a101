"""Adaptive I-MLE: PyEPO's ``adaptiveImplicitMLE`` on identical inputs over several batches (so the
adaptive step's evolution is compared too), one- and two-sided, on a minimisation and a
maximisation; the hand formula over brute-force optima; the state (its dense-gradient branch,
its floor, state_dict, copies, compile); the errors."""

from __future__ import annotations

import copy
import math
import pickle

import pyepo  # in the test extra: these tests always run
import pytest
import torch
from pyepo.func.utils import sumGammaDistribution

import idproj_or as ipo
from idproj_or.rules.imle import sum_of_gamma
from idproj_or.rules.projection import project

from .test_rules import SENSES, _brute, _data, _subset_layer, _vjp_through
from .test_rules_pyepo import _grad, problem  # noqa: F401  (problem: the fixture of both rules' tests)

BATCHES = 4


def _next_batch(pred: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return pred + 0.5 * torch.randn(pred.shape, generator=gen), torch.randn(pred.shape, generator=gen)


@pytest.mark.parametrize("two_sides", [False, True])
def test_equals_pyepo_batch_after_batch(problem, two_sides):  # noqa: F811
    layer, model, pred, _, _, _, upstream = problem
    ours = ipo.AdaptiveIMLE(
        layer, n_samples=4, sigma=0.5, two_sides=two_sides, generator=torch.Generator().manual_seed(135)
    )
    noise = sumGammaDistribution(kappa=5, seed=135)
    theirs = pyepo.func.adaptiveImplicitMLE(
        model, n_samples=4, sigma=0.5, distribution=noise, two_sides=two_sides, processes=1
    )
    gen = torch.Generator().manual_seed(21)
    alphas = []
    for t in range(BATCHES):
        alpha = ours.alpha
        sol, grad = _grad(ours, pred, upstream)
        ref_sol, ref_grad = _grad(theirs, pred, upstream)
        torch.testing.assert_close(sol, ref_sol)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
        assert grad.abs().sum() > 0
        # the step of this batch: norms over the whole batch
        assert ours.lambd == pytest.approx(alpha * pred.norm().item() / upstream.norm().item(), rel=1e-6)
        assert (ours.alpha, ours.grad_norm_avg) == (theirs.alpha, theirs.grad_norm_avg), t
        alphas.append(ours.alpha)
        pred, upstream = _next_batch(pred, gen)
    assert alphas == pytest.approx([1.001, 1.002, 1.003, 1.004])  # sparse gradients: alpha grows
    assert ours.grad_norm_avg < 1


def _expected(feasible, sense, two_sides, pred, g, eps, sigma, alpha, average):
    """One batch by hand: the gradient, the step and the state after it."""
    b, s, n = eps.shape
    costs = pred[:, None] + sigma * eps

    def solve(c):
        return _brute(feasible, c.reshape(-1, n), sense).reshape(b, s, n)

    lambd = alpha * math.sqrt((pred**2).sum()) / math.sqrt((g**2).sum()) if (g != 0).any() else 0.0
    d = lambd * g[:, None]
    if two_sides:
        grad = (solve(costs + d) - solve(costs - d)).mean(1) / (2 * lambd + 1e-8)
    else:
        sign = 1.0 if sense == "min" else -1.0
        grad = sign * (solve(costs + sign * d) - solve(costs)).mean(1) / (lambd + 1e-8)
    density = (grad.abs() > 1e-8).float().mean().item()  # float32, as PyEPO
    average = 0.9 * average + 0.1 * density
    alpha = alpha + 1e-3 if average < 1 else max(0.0, alpha - 1e-3)
    return solve(costs).mean(1), grad, lambd, alpha, average


@pytest.mark.parametrize("sense", SENSES)
@pytest.mark.parametrize("two_sides", [False, True])
def test_is_the_hand_formula_batch_after_batch(sense, two_sides):
    layer, feasible = _subset_layer(sense)
    rule = ipo.AdaptiveIMLE(
        layer, n_samples=6, sigma=0.7, two_sides=two_sides, generator=torch.Generator().manual_seed(4)
    )
    draws = torch.Generator().manual_seed(4)  # the rule's draws, batch after batch
    alpha, average = 1.0, 1.0
    for seed in range(3):
        pred, _, g = _data(b=3, seed=seed)
        eps = sum_of_gamma((3, 6, 5), kappa=5.0, generator=draws, like=pred)
        before = (alpha, average)
        y, grad, lambd, alpha, average = _expected(feasible, sense, two_sides, pred, g, eps, 0.7, alpha, average)
        p = pred.clone().requires_grad_(True)
        out = rule(p)
        torch.testing.assert_close(out.detach(), y)
        assert (rule.alpha, rule.grad_norm_avg) == before  # a forward alone changes nothing
        (out * g).sum().backward()
        torch.testing.assert_close(p.grad, grad)
        assert rule.lambd == pytest.approx(lambd, rel=1e-12)
        assert (rule.alpha, rule.grad_norm_avg) == (alpha, average)
        assert p.grad.abs().sum() > 0


def _dense_case(alpha: float = 1.0):
    """The top 2 of 4 (sorted exactly), costs tied up to noise far below the step: y(c + lambda g)
    and y(c - lambda g) differ in every entry, so the two-sided gradient is dense."""
    layer = ipo.TopKLayer(4, 2)
    rule = ipo.AdaptiveIMLE(layer, n_samples=3, sigma=1e-12, two_sides=True, generator=torch.Generator().manual_seed(0))
    if alpha != 1.0:
        rule.load_state_dict({"_extra_state": {"alpha": alpha, "grad_norm_avg": 1.0}})
    pred = torch.full((1, 4), 0.01, dtype=torch.float64)
    g = torch.tensor([[1.0, 2.0, -1.0, -2.0]], dtype=torch.float64)
    return rule, pred, g


def _backward(rule, pred, g) -> torch.Tensor:
    p = pred.clone().requires_grad_(True)
    (rule(p) * g).sum().backward()
    return p.grad


def test_dense_gradients_shrink_alpha():
    rule, pred, g = _dense_case()
    for t in range(1, 4):
        grad = _backward(rule, pred, g)
        assert (grad.abs() > 1e-8).all()
        assert rule.grad_norm_avg == 1.0
        assert rule.alpha == pytest.approx(1.0 - 1e-3 * t, abs=1e-12)


def test_alpha_stops_at_zero_where_the_gradient_vanishes_and_climbs_back():
    rule, pred, g = _dense_case(alpha=5e-4)
    grad = _backward(rule, pred, g)
    assert (grad.abs() > 1e-8).all()
    assert rule.alpha == 0.0  # max(0, 5e-4 - 1e-3)
    grad = _backward(rule, pred, g)
    assert rule.lambd == 0.0
    assert torch.equal(grad, torch.zeros_like(grad))  # lambda = 0: no move, (y - y) / 1e-8
    assert rule.grad_norm_avg == pytest.approx(0.9) and rule.alpha == 1e-3


def test_a_zero_incoming_gradient_gives_lambda_zero_and_no_nan():
    rule, pred, g = _dense_case()
    grad = _backward(rule, pred, torch.zeros_like(g))
    assert rule.lambd == 0.0
    assert torch.equal(grad, torch.zeros_like(grad))
    assert rule.alpha == 1.001  # density 0: the average falls below 1


def test_state_dict_and_copies_carry_the_state_on():
    rule, pred, g = _dense_case()
    _backward(rule, pred, g)
    assert rule.state_dict() == {"_extra_state": {"alpha": rule.alpha, "grad_norm_avg": 1.0}}
    fresh, _, _ = _dense_case()
    fresh.load_state_dict(rule.state_dict())
    copies = [fresh, copy.deepcopy(rule), pickle.loads(pickle.dumps(rule))]
    assert all(c.alpha == rule.alpha and c.grad_norm_avg == rule.grad_norm_avg for c in copies)
    for c in copies:
        _backward(c, pred, g)
    assert len({c.alpha for c in copies}) == 1 and copies[0].alpha == pytest.approx(0.998, abs=1e-12)
    assert rule.alpha == pytest.approx(0.999, abs=1e-12)  # each copy is its own


def test_a_projected_rule_is_the_plain_rule_at_p_of_pred_composed_with_p_prime():
    # lambda too is computed from P(pred): the rule works on the projected cost
    layer, _ = _subset_layer("max")
    pred, _, g = _data()
    q = project(pred, "std").clone().requires_grad_(True)
    plain = ipo.AdaptiveIMLE(layer, n_samples=5, generator=torch.Generator().manual_seed(0))
    (plain(q) * g).sum().backward()
    p = pred.clone().requires_grad_(True)
    projected = ipo.AdaptiveIMLE(layer, n_samples=5, projection="std", generator=torch.Generator().manual_seed(0))
    (projected(p) * g).sum().backward()
    torch.testing.assert_close(p.grad, _vjp_through("std", pred, q.grad))
    assert projected.lambd == pytest.approx(plain.lambd, rel=1e-12)
    assert p.grad.abs().sum() > 0


def test_a_compiled_step_updates_the_state_as_eager_code_does():
    torch._dynamo.reset()
    torch.manual_seed(0)
    predictor = torch.nn.Linear(3, 5)
    layer, _ = _subset_layer("max")
    eager_rule, compiled_rule = (
        ipo.AdaptiveIMLE(layer, n_samples=3, sigma=0.5, generator=torch.Generator().manual_seed(5)) for _ in range(2)
    )

    def step_of(rule):
        def step(feats, g):
            loss = (rule(predictor(feats)) * g).sum()
            return torch.autograd.grad(loss, list(predictor.parameters()))

        return step

    compiled = torch.compile(step_of(compiled_rule), fullgraph=True, backend="aot_eager")
    eager = step_of(eager_rule)
    gen = torch.Generator().manual_seed(3)
    with torch._dynamo.config.patch(error_on_recompile=True, trace_autograd_ops=True):
        for _ in range(3):
            feats, g = torch.randn(4, 3, generator=gen), torch.randn(4, 5, generator=gen)
            for a, b in zip(compiled(feats, g), eager(feats, g)):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
            assert compiled_rule.alpha == eager_rule.alpha
            assert compiled_rule.lambd == pytest.approx(eager_rule.lambd, rel=1e-6)
    assert eager_rule.alpha == pytest.approx(1.003)


def _layer():
    return _subset_layer("min")[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, r"AdaptiveIMLE: n_samples=0 must be a positive int"),
        ({"sigma": 0.0}, r"AdaptiveIMLE: sigma=0.0 must be a finite number > 0"),
        ({"kappa": float("nan")}, r"AdaptiveIMLE: kappa=nan must be a finite number > 0"),
        ({"generator": 7}, r"AdaptiveIMLE: generator=7 must be a torch.Generator or None"),
        ({"solve_ratio": 2.0}, r"AdaptiveIMLE: solve_ratio=2.0 must be in \[0, 1\]"),
        ({"projection": "max"}, r"AdaptiveIMLE: .*max"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ipo.AdaptiveIMLE(_layer(), **kwargs)


def test_lambda_is_not_an_option():
    with pytest.raises(TypeError, match=r"AdaptiveIMLE\(\) got an unexpected keyword argument 'lambd'"):
        ipo.AdaptiveIMLE(_layer(), lambd=10)


def test_not_a_layer():
    with pytest.raises(ValueError, match=r"AdaptiveIMLE: expected an idproj_or layer .* got list"):
        ipo.AdaptiveIMLE([1, 2])


@pytest.mark.parametrize(
    ("state", "match"),
    [
        (
            {"alpha": 1.0},
            r"AdaptiveIMLE: the extra state must be a dict of alpha and grad_norm_avg, got \{'alpha': 1.0\}",
        ),
        (3, r"AdaptiveIMLE: the extra state must be a dict of alpha and grad_norm_avg, got 3"),
        ({"alpha": -1.0, "grad_norm_avg": 1.0}, r"AdaptiveIMLE: alpha=-1.0 must be a finite number >= 0"),
        ({"alpha": float("inf"), "grad_norm_avg": 1.0}, r"AdaptiveIMLE: alpha=inf must be a finite number >= 0"),
        ({"alpha": 1.0, "grad_norm_avg": 1.5}, r"AdaptiveIMLE: grad_norm_avg=1.5 must be in \[0, 1\]"),
        ({"alpha": 1.0, "grad_norm_avg": float("nan")}, r"AdaptiveIMLE: grad_norm_avg=nan must be in \[0, 1\]"),
        ({"alpha": "x", "grad_norm_avg": 1.0}, r"AdaptiveIMLE: alpha='x' must be a real number"),
    ],
)
def test_bad_state(state, match):
    rule = ipo.AdaptiveIMLE(_layer())
    with pytest.raises(ValueError, match=match):
        rule.load_state_dict({"_extra_state": state})
    assert (rule.alpha, rule.grad_norm_avg) == (1.0, 1.0)  # unchanged


def test_the_operators_of_a_rule_that_is_gone():
    z = torch.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"the adaptive I-MLE state 0 no longer exists"):
        torch.ops.idproj_or.aimle_step(z, z, 0)
    with pytest.raises(RuntimeError, match=r"the adaptive I-MLE state 0 no longer exists"):
        torch.ops.idproj_or.aimle_observe(z, 0)
