"""The L2-regularised Frank-Wolfe rules: PyEPO's RFWO and RFY on identical inputs, the regularised
optimum and its Jacobian against an independent QP over the enumerated vertices (CVXPY), the
batched oracle, caching, failed instances, routes, errors."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pyepo
import pytest
import torch

import idproj_or as ipo
from idproj_or.rules.projection import project
from tests import test_rules_pyepo
from tests.helpers import monotone_paths
from tests.test_failed_gradients import COSTS, half_bounded_lp
from tests.test_pg import _cpsat
from tests.test_rules_pyepo import _grad

problem = test_rules_pyepo.problem  # the shortest path (min) and knapsack (max) of the PyEPO comparison

WEIGHTS, CAP = np.array([[3.0, 4.0, 5.0, 2.0]]), np.array([8.0])


def knapsack_vertices() -> np.ndarray:
    """Every 0/1 decision within the capacity (the hull's vertices)."""
    bits = np.array(np.meshgrid(*[[0.0, 1.0]] * 4, indexing="ij")).reshape(4, -1).T
    return bits[bits @ WEIGHTS[0] <= CAP[0]]


def hull_projection(vertices: np.ndarray):
    """``theta -> argmin_{mu in conv(vertices)} ||mu - theta||^2``, a QP over the convex weights."""
    theta = cp.Parameter(vertices.shape[1])
    lam = cp.Variable(len(vertices), nonneg=True)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(vertices.T @ lam - theta)), [cp.sum(lam) == 1])

    def solve(value: np.ndarray) -> np.ndarray:
        theta.value = value
        prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
        assert prob.status == cp.OPTIMAL
        return vertices.T @ lam.value

    return solve


# (layer, the hull's vertices, s: +1 min, -1 max)
MODELS = {
    "knapsack (max)": (lambda: ipo.KnapsackLayer(WEIGHTS, CAP), knapsack_vertices, -1.0),
    "shortest path (min)": (lambda: ipo.ShortestPathLayer.grid(3, 3), lambda: monotone_paths(3, 3), 1.0),
}


def _draws(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(5, n, generator=gen, dtype=torch.float64), torch.randn(5, n, generator=gen, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# PyEPO on identical inputs


def test_regularized_frank_wolfe_equals_pyepo_rfwo(problem):
    layer, model, pred, _, _, _, upstream = problem
    sol, grad = _grad(ipo.RegularizedFrankWolfe(layer), pred, upstream)
    ref_sol, ref_grad = _grad(pyepo.func.regularizedFrankWolfeOpt(model, processes=1), pred, upstream)
    torch.testing.assert_close(sol, ref_sol, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)
    assert ((sol > 1e-3) & (sol < 1 - 1e-3)).any()  # a smoothed decision, not a vertex
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("lambd", [0.5, 3.0])
def test_regularized_fenchel_young_equals_pyepo_rfy(problem, lambd):
    layer, model, pred, _, sols, _, _ = problem
    ours = ipo.RegularizedFenchelYoung(layer, lambd=lambd, reduction="none")
    theirs = pyepo.func.regularizedFrankWolfeFenchelYoung(model, lambd=lambd, processes=1, reduction="none")
    loss, grad = _grad(lambda p: ours(p, sols).sum(), pred)
    ref_loss, ref_grad = _grad(lambda p: theirs(p, sols).sum(), pred)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)
    assert grad.abs().sum() > 0


def test_reductions_equal_pyepo(problem):
    layer, model, pred, _, sols, _, _ = problem
    for reduction in ("mean", "sum"):
        ours = ipo.RegularizedFenchelYoung(layer, reduction=reduction)(pred, sols)
        theirs = pyepo.func.RFY(model, processes=1, reduction=reduction)(pred, sols)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# By hand: an independent QP over the enumerated vertices


@pytest.mark.parametrize("name", list(MODELS))
def test_the_regularised_decision_is_the_projection_onto_the_hull(name):
    make, vertices, s = MODELS[name]
    layer, proj = make(), hull_projection(vertices())
    lambd = 3.0
    pred, upstream = _draws(layer.size, seed=2)
    p = pred.clone().requires_grad_(True)
    mu = ipo.RegularizedFrankWolfe(layer, lambd=lambd, tol=1e-12)(p)
    (mu * upstream).sum().backward()
    eps = 1e-4
    fractional = 0
    for i in range(len(pred)):
        z, g = pred[i].numpy(), upstream[i].numpy()
        expect = proj(-s * z / lambd)
        np.testing.assert_allclose(mu[i].detach().numpy(), expect, atol=1e-6)
        fractional += int(((expect > 1e-3) & (expect < 1 - 1e-3)).any())
        # the Jacobian by central differences of the QP's solution (piecewise linear in z)
        jac = np.stack(
            [(proj(-s * (z + eps * e) / lambd) - proj(-s * (z - eps * e) / lambd)) / (2 * eps) for e in np.eye(len(z))],
            axis=1,
        )
        np.testing.assert_allclose(p.grad[i].numpy(), jac.T @ g, atol=1e-4)
    assert fractional >= 3  # most draws land inside a face, where the Jacobian is not 0


@pytest.mark.parametrize("name", list(MODELS))
def test_fenchel_young_loss_by_hand(name):
    make, vertices, s = MODELS[name]
    layer, V = make(), vertices()
    proj = hull_projection(V)
    lambd = 1.3
    pred, _ = _draws(layer.size, seed=4)
    y_star = torch.as_tensor(V[[0, 1, 2, 3, 4]])
    p = pred.clone().requires_grad_(True)
    loss = ipo.RegularizedFenchelYoung(layer, lambd=lambd, tol=1e-12, reduction="none")(p, y_star)
    loss.sum().backward()
    for i in range(len(pred)):
        z, y = pred[i].numpy(), y_star[i].numpy()
        mu = proj(-s * z / lambd)
        expect = lambd / 2 * (y @ y - mu @ mu) + s * z @ (y - mu)
        assert loss[i].item() == pytest.approx(expect, abs=1e-6)
        assert loss[i].item() >= -1e-9  # a Fenchel-Young loss
        np.testing.assert_allclose(p.grad[i].numpy(), s * (y - mu), atol=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
def test_fenchel_young_loss_is_zero_where_the_regularised_decision_is_the_label(name):
    make, vertices, s = MODELS[name]
    layer, V = make(), vertices()
    y_star = torch.as_tensor(V[[1, 2]])
    pred = -s * 10.0 * (2 * y_star - 1)  # theta deep in the normal cone of the label's vertex
    p = pred.clone().requires_grad_(True)
    loss = ipo.RegularizedFenchelYoung(layer, reduction="none")(p, y_star)
    loss.sum().backward()
    assert torch.equal(loss, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(p.grad, torch.zeros_like(pred))


# ---------------------------------------------------------------------------------------------
# The oracle: one batch per iteration, through the cache, with failures, on every route


def _count_batches(monkeypatch, layer):
    sizes: list[int] = []
    solve = layer.handle.solve_tensor

    def counted(costs, raw, **options):
        sizes.append(len(costs))
        return solve(costs, raw, **options)

    monkeypatch.setattr(layer.handle, "solve_tensor", counted)
    return sizes


def test_each_iteration_is_one_batch_solve(monkeypatch):
    layer = ipo.KnapsackLayer(WEIGHTS, CAP)
    sizes = _count_batches(monkeypatch, layer)
    pred, _ = _draws(4, seed=5)
    ipo.RegularizedFrankWolfe(layer, max_iter=3, tol=0.0)(pred)  # tol 0: no instance stops early
    assert sizes == [5, 5, 5, 5]  # the first vertex, then one oracle batch per iteration
    sizes.clear()
    ipo.RegularizedFrankWolfe(layer)(pred)
    assert sizes[0] == 5 and len(sizes) > 2
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < 5  # converged instances ask no more


def test_a_full_pool_stands_in_for_the_solver(monkeypatch):
    layer = ipo.KnapsackLayer(WEIGHTS, CAP)
    pool = torch.as_tensor(knapsack_vertices())
    pred, _ = _draws(4, seed=6)
    exact = ipo.RegularizedFrankWolfe(layer, tol=1e-12)(pred)
    sizes = _count_batches(monkeypatch, layer)
    cached = ipo.RegularizedFrankWolfe(layer, tol=1e-12, solve_ratio=0.0, solutions=pool)
    torch.testing.assert_close(cached(pred), exact, atol=1e-6, rtol=0)
    assert sizes == [] and cached.last_info is None  # every oracle call from the pool


@pytest.mark.parametrize("cls", [ipo.RegularizedFrankWolfe, ipo.RegularizedFenchelYoung])
def test_failed_instances_are_nan_with_zero_gradient(cls):
    # row 1 fails at the first vertex, row 2 at the first Frank-Wolfe step (cost [-1, 0, 0.5])
    layer = half_bounded_lp(projection="none")
    rule = cls(layer, lambd=1.0, **({"reduction": "none"} if cls is ipo.RegularizedFenchelYoung else {}))
    w = COSTS.clone().requires_grad_(True)
    with pytest.warns(ipo.SolverWarning, match="have no decision"):
        out = rule(w) if cls is ipo.RegularizedFrankWolfe else rule(w, torch.ones(3, 3, dtype=torch.float64))
    bad = out.reshape(3, -1).isnan().any(dim=1)
    assert bad.tolist() == [False, True, True]
    out[0].sum().backward()
    assert torch.isfinite(w.grad).all() and torch.equal(w.grad[1:], torch.zeros(2, 3, dtype=torch.float64))


def test_projection_solves_the_projected_cost():
    layer = ipo.KnapsackLayer(WEIGHTS, CAP)
    pred, _ = _draws(4, seed=7)
    pred = pred * 40  # the oracle's costs go to the solver at the raw scale
    normed = ipo.RegularizedFrankWolfe(layer, projection="norm", tol=1e-12)(pred)
    plain = ipo.RegularizedFrankWolfe(layer, tol=1e-12)(project(pred, "norm"))
    torch.testing.assert_close(normed, plain, atol=1e-6, rtol=0)


def test_pool_and_serial_agree():
    gen = torch.Generator().manual_seed(1)
    pred = torch.randn(8, 4, generator=gen)
    true_sol = (torch.rand(8, 4, generator=gen) > 0.5).float()
    results = []
    for route in ("serial", "pool"):
        layer = _cpsat(route=route, workers=2)
        rfw, rfy = ipo.RegularizedFrankWolfe(layer), ipo.RegularizedFenchelYoung(layer)
        p = pred.clone().requires_grad_(True)
        mu, loss = rfw(p), rfy(p, true_sol)
        (mu.sum() + loss).backward()
        assert rfw.last_info.mode == rfy.last_info.mode == route
        results.append((mu.detach(), loss.detach(), p.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("cls", [ipo.RegularizedFrankWolfe, ipo.RegularizedFenchelYoung])
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lambd": 0.0}, ValueError, r"lambd=0.0 must be a finite number > 0"),
        ({"lambd": float("nan")}, ValueError, r"lambd=nan must be a finite number > 0"),
        ({"max_iter": 0}, ValueError, r"max_iter=0 must be a positive int"),
        ({"max_iter": 2.5}, ValueError, r"max_iter=2.5 must be a positive int"),
        ({"tol": -1e-6}, ValueError, r"tol=-1e-06 must be a finite number >= 0"),
        ({"tol": float("inf")}, ValueError, r"tol=inf must be a finite number >= 0"),
        ({"tol": "small"}, ValueError, r"tol='small' must be a real number"),
        ({"solve_ratio": 2.0}, ValueError, r"solve_ratio=2.0 must be in \[0, 1\]"),
        ({"sigma": 1.0}, TypeError, r"got an unexpected keyword argument 'sigma'"),
    ],
)
def test_bad_options(cls, kwargs, error, match):
    with pytest.raises(error, match=rf"{cls.__name__}.*{match}"):
        cls(ipo.KnapsackLayer(WEIGHTS, CAP), **kwargs)


def test_bad_reduction_layer_and_label():
    with pytest.raises(ValueError, match=r"reduction='avg' must be 'mean', 'sum' or 'none'"):
        ipo.RegularizedFenchelYoung(ipo.KnapsackLayer(WEIGHTS, CAP), reduction="avg")
    with pytest.raises(ValueError, match=r"RegularizedFrankWolfe: expected an idproj_or layer .* got Linear"):
        ipo.RegularizedFrankWolfe(torch.nn.Linear(2, 2))
    rfy = ipo.RegularizedFenchelYoung(ipo.KnapsackLayer(WEIGHTS, CAP))
    with pytest.raises(ValueError, match=r"true_sol must have shape \(2, 4\) like the predictions, got \(2, 3\)"):
        rfy(torch.rand(2, 4), torch.rand(2, 3))
