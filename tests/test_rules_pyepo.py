"""Every rule against PyEPO 2.2's own module on identical inputs (same costs, same seeds): loss,
decisions and gradients agree, on a minimisation (shortest path 5x5) and a maximisation
(2-dimensional knapsack). PyEPO's OR-Tools models are the referee's solvers; ours are the ready
layers (a different solver, so agreement also checks the optimum)."""

from __future__ import annotations

import numpy as np
import pyepo  # in the test extra: these tests always run
import pytest
import torch
from pyepo.model.ort import knapsackModel, shortestPathModel

import idproj_or as ipo

B = 6


def _shortest_path():
    return ipo.ShortestPathLayer.grid(5, 5), shortestPathModel((5, 5))


def _knapsack():
    rng = np.random.default_rng(3)
    w = rng.integers(1, 10, size=(2, 10)).astype(float)
    cap = np.floor(w.sum(axis=1) / 2)
    return ipo.KnapsackLayer(w, cap), knapsackModel(w, cap)


PROBLEMS = {"shortest path (min)": _shortest_path, "knapsack (max)": _knapsack}


@pytest.fixture(params=list(PROBLEMS), scope="module")
def problem(request):
    layer, model = PROBLEMS[request.param]()
    n = layer.size
    gen = torch.Generator().manual_seed(7)
    true = torch.rand(B, n, generator=gen) + 0.1
    pred = torch.randn(B, n, generator=gen)
    sols = layer.solve(true)
    objs = (true * sols).sum(dim=1, keepdim=True)
    upstream = torch.randn(B, n, generator=gen)
    return layer, model, pred, true, sols, objs, upstream


def _grad(fn, pred, upstream=None):
    p = pred.clone().requires_grad_(True)
    out = fn(p)
    (out if upstream is None else (out * upstream).sum()).backward()
    return out.detach(), p.grad


def test_spo_plus_equals_pyepo(problem):
    layer, model, pred, true, sols, objs, _ = problem
    ours = ipo.SPOPlus(layer, reduction="none")
    theirs = pyepo.func.SPOPlus(model, processes=1, reduction="none")
    loss, grad = _grad(lambda p: ours(p, true, sols, objs).sum(), pred)
    ref_loss, ref_grad = _grad(lambda p: theirs(p, true, sols, objs).sum(), pred)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad)
    assert grad.abs().sum() > 0  # not a trivial case: some predictions are wrong


def test_blackbox_equals_pyepo(problem):
    layer, model, pred, _, _, _, upstream = problem
    sol, grad = _grad(ipo.Blackbox(layer, lambd=10), pred, upstream)
    ref_sol, ref_grad = _grad(pyepo.func.blackboxOpt(model, lambd=10, processes=1), pred, upstream)
    torch.testing.assert_close(sol, ref_sol)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    assert grad.abs().sum() > 0


def test_identity_without_projection_is_pyepo_nid(problem):
    layer, model, pred, _, _, _, upstream = problem
    sol, grad = _grad(ipo.Identity(layer, projection="none"), pred, upstream)
    ref_sol, ref_grad = _grad(pyepo.func.negativeIdentity(model, processes=1), pred, upstream)
    torch.testing.assert_close(sol, ref_sol)
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize("variance_reduction", [True, False])
def test_perturbed_opt_equals_pyepo_for_the_same_seed(problem, variance_reduction):
    layer, model, pred, _, _, _, upstream = problem
    ours = ipo.PerturbedOpt(
        layer,
        n_samples=5,
        sigma=0.5,
        variance_reduction=variance_reduction,
        generator=torch.Generator().manual_seed(135),
    )
    theirs = pyepo.func.perturbedOpt(
        model, n_samples=5, sigma=0.5, processes=1, seed=135, variance_reduction=variance_reduction
    )
    sol, grad = _grad(ours, pred, upstream)
    ref_sol, ref_grad = _grad(theirs, pred, upstream)
    torch.testing.assert_close(sol, ref_sol)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)
    assert ((sol > 0) & (sol < 1)).any()  # a smoothed decision, not a vertex
    assert grad.abs().sum() > 0


def test_fenchel_young_equals_pyepo_for_the_same_seed(problem):
    layer, model, pred, _, sols, _, _ = problem
    ours = ipo.FenchelYoung(
        layer, n_samples=5, sigma=0.5, reduction="none", generator=torch.Generator().manual_seed(135)
    )
    theirs = pyepo.func.perturbedFenchelYoung(model, n_samples=5, sigma=0.5, processes=1, seed=135, reduction="none")
    loss, grad = _grad(lambda p: ours(p, sols).sum(), pred)
    ref_loss, ref_grad = _grad(lambda p: theirs(p, sols).sum(), pred)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("two_sides", [False, True])
def test_imle_equals_pyepo_for_the_same_seed(problem, two_sides):
    layer, model, pred, _, _, _, upstream = problem
    ours = ipo.IMLE(
        layer, n_samples=4, sigma=0.5, lambd=10, two_sides=two_sides, generator=torch.Generator().manual_seed(135)
    )
    noise = pyepo.func.utils.sumGammaDistribution(kappa=5, seed=135)
    theirs = pyepo.func.implicitMLE(
        model, n_samples=4, sigma=0.5, lambd=10, distribution=noise, two_sides=two_sides, processes=1
    )
    sol, grad = _grad(ours, pred, upstream)
    ref_sol, ref_grad = _grad(theirs, pred, upstream)
    torch.testing.assert_close(sol, ref_sol)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("two_sides", [False, True])
def test_perturbation_gradient_equals_pyepo(problem, two_sides):
    layer, model, pred, true, _, _, _ = problem
    ours = ipo.PerturbationGradient(layer, sigma=2.0, two_sides=two_sides, reduction="none")
    theirs = pyepo.func.PG(model, sigma=2.0, two_sides=two_sides, processes=1, reduction="none")
    loss, grad = _grad(lambda p: ours(p, true).sum(), pred)
    ref_loss, ref_grad = _grad(lambda p: theirs(p, true).sum(), pred)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)
    assert grad.abs().sum() > 0


def test_multiplicative_perturbed_opt_equals_pyepo_dpomul(problem):
    layer, model, pred, _, _, _, upstream = problem
    pred = pred.abs() + 0.1  # sign-preserving perturbations are meant for costs of one sign
    ours = ipo.PerturbedOpt(
        layer, n_samples=5, sigma=0.5, multiplicative=True, generator=torch.Generator().manual_seed(135)
    )
    theirs = pyepo.func.perturbedOptMul(model, n_samples=5, sigma=0.5, processes=1, seed=135)
    sol, grad = _grad(ours, pred, upstream)
    ref_sol, ref_grad = _grad(theirs, pred, upstream)
    torch.testing.assert_close(sol, ref_sol)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    assert grad.abs().sum() > 0


def test_multiplicative_fenchel_young_equals_pyepo_pfymul(problem):
    layer, model, pred, _, sols, _, _ = problem
    pred = pred.abs() + 0.1
    ours = ipo.FenchelYoung(
        layer,
        n_samples=5,
        sigma=0.5,
        reduction="none",
        multiplicative=True,
        generator=torch.Generator().manual_seed(135),
    )
    theirs = pyepo.func.perturbedFenchelYoungMul(model, n_samples=5, sigma=0.5, processes=1, seed=135, reduction="none")
    loss, grad = _grad(lambda p: ours(p, sols).sum(), pred)
    ref_loss, ref_grad = _grad(lambda p: theirs(p, sols).sum(), pred)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    assert grad.abs().sum() > 0


def _pool_dataset(layer, model):
    """PyEPO's dataset (its own solves) and our pool from the same decisions."""
    from pyepo.data.dataset import optDataset

    gen = torch.Generator().manual_seed(11)
    costs = (torch.rand(12, layer.size, generator=gen) + 0.1).numpy()
    feats = torch.rand(12, 3, generator=gen).numpy()
    ds = optDataset(model, feats, costs)
    return ds, torch.as_tensor(ds.sols, dtype=torch.float32)


POOL_RULES = {
    "NCE": (ipo.NoiseContrastive, "noiseContrastiveEstimation", "sol"),
    "CMAP": (ipo.ContrastiveMAP, "contrastiveMAP", "sol"),
    "ptLTR": (ipo.PointwiseLTR, "pointwiseLearningToRank", "cost"),
    "prLTR": (ipo.PairwiseLTR, "pairwiseLearningToRank", "cost"),
    "lsLTR": (ipo.ListwiseLTR, "listwiseLearningToRank", "cost"),
}


@pytest.mark.parametrize("rule", list(POOL_RULES))
def test_pool_rules_equal_pyepo(problem, rule):
    layer, model, pred, true, sols, _, _ = problem
    ours_cls, theirs_name, label = POOL_RULES[rule]
    ds, pool = _pool_dataset(layer, model)
    ours = ours_cls(layer, solutions=pool, reduction="none")
    theirs = getattr(pyepo.func, theirs_name)(model, processes=1, reduction="none", dataset=ds)
    target = sols if label == "sol" else true
    for _ in range(2):  # the second call's pool holds the first call's solves
        loss, grad = _grad(lambda p: ours(p, target).sum(), pred)
        ref_loss, ref_grad = _grad(lambda p: theirs(p, target).sum(), pred)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)
        assert len(ours.cache) == len(theirs.solpool)
        pred = pred * 0.5 + true
    assert grad.abs().sum() > 0
