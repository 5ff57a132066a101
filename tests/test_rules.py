"""The gradient rules against independent computations: hand formulas over brute-force optima
(SPO+, Blackbox, I-MLE), the exact expectation of a Gaussian-perturbed argmin (PerturbedOpt,
Fenchel-Young), projections composed by hand, and bit-identical results serial, in the pool and
on a thread-pool executor for the same seed."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.rules.imle import sum_of_gamma
from idproj_or.rules.projection import project

from .helpers import k_subset

SENSES = ["min", "max"]


def _subset_layer(sense: str, n: int = 5, k: int = 2):
    m, x, feasible = k_subset(n, k)
    return ipo.CpSatLayer(m, x, sense=sense), torch.tensor(np.array(feasible), dtype=torch.float64)


def _brute(feasible: torch.Tensor, costs: torch.Tensor, sense: str) -> torch.Tensor:
    scores = costs @ feasible.T
    return feasible[scores.argmax(dim=1) if sense == "max" else scores.argmin(dim=1)]


def _data(n: int = 5, b: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, n, generator=g, dtype=torch.float64) for _ in range(3))


@pytest.mark.parametrize("sense", SENSES)
def test_spo_plus_is_the_hand_formula_over_brute_force(sense):
    layer, feasible = _subset_layer(sense)
    pred, true, _ = _data()
    w_star = _brute(feasible, true, sense)
    z_star = (true * w_star).sum(dim=1)
    w_q = _brute(feasible, 2 * pred - true, sense)
    s = 1.0 if sense == "min" else -1.0
    expected = s * (-((2 * pred - true) * w_q).sum(1) + 2 * (pred * w_star).sum(1) - z_star)
    p = pred.clone().requires_grad_(True)
    loss = ipo.SPOPlus(layer, reduction="none")(p, true, w_star, z_star)
    torch.testing.assert_close(loss.detach(), expected)
    assert (loss >= -1e-12).all()  # SPO+ bounds the (non-negative) regret
    loss.sum().backward()
    torch.testing.assert_close(p.grad, s * 2 * (w_star - w_q))
    # "mean" and "sum" reduce the same values; (B, 1) objectives as PyEPO's datasets give them.
    mean = ipo.SPOPlus(layer)(pred, true, w_star, z_star[:, None])
    torch.testing.assert_close(mean, expected.mean())
    torch.testing.assert_close(ipo.SPOPlus(layer, reduction="sum")(pred, true, w_star, z_star), expected.sum())


def test_spo_plus_is_zero_at_the_truth_up_to_scale():
    layer, feasible = _subset_layer("min")
    _, true, _ = _data()
    w_star = _brute(feasible, true, "min")
    loss = ipo.SPOPlus(layer, reduction="none")(true, true, w_star, (true * w_star).sum(1))
    torch.testing.assert_close(loss, torch.zeros(len(true), dtype=torch.float64))


def test_a_rule_over_a_layer_keeps_its_own_last_info_and_leaves_the_layers():
    layer, feasible = _subset_layer("min")
    pred, true, g = _data()
    y = layer(true)
    info = layer.last_info
    np.testing.assert_array_equal(info.objective, (true * _brute(feasible, true, "min")).sum(1).numpy())
    assert torch.equal(y, _brute(feasible, true, "min"))

    spo = ipo.SPOPlus(layer)
    assert spo.last_info is None  # nothing solved through the rule yet
    w_star = _brute(feasible, true, "min")
    spo(pred, true, w_star, (true * w_star).sum(1))
    assert layer.last_info is info  # the rule's solve is not the layer's
    q = 2 * pred - true  # SPO+ solves 2 pred - true, as given
    np.testing.assert_allclose(spo.last_info.objective, (q * _brute(feasible, q, "min")).sum(1).numpy(), rtol=1e-12)

    bb = ipo.Blackbox(layer, lambd=3.0)
    p = pred.clone().requires_grad_(True)
    (bb(p) * g).sum().backward()  # backward solves pred + 3 g, reported at the caller's pred
    shifted = _brute(feasible, pred + 3.0 * g, "min")
    np.testing.assert_allclose(bb.last_info.objective, (pred * shifted).sum(1).numpy(), rtol=1e-12)
    assert layer.last_info is info and len(spo.last_info) == len(pred)

    layer.solve(pred[:2])  # only calling the layer changes its last_info
    np.testing.assert_allclose(
        layer.last_info.objective, (pred[:2] * _brute(feasible, pred[:2], "min")).sum(1).numpy(), rtol=1e-12
    )


def test_identity_is_the_projected_identity_rule_under_its_first_name():
    assert ipo.Identity is ipo.ProjectedIdentity


@pytest.mark.parametrize("sense", SENSES)
def test_blackbox_is_the_interpolation_gradient(sense):
    layer, feasible = _subset_layer(sense)
    pred, _, g = _data()
    s = 1.0 if sense == "min" else -1.0
    y = _brute(feasible, pred, sense)
    shifted = _brute(feasible, pred + s * 3.0 * g, sense)
    p = pred.clone().requires_grad_(True)
    out = ipo.Blackbox(layer, lambd=3.0)(p)
    torch.testing.assert_close(out.detach(), y)
    (out * g).sum().backward()
    torch.testing.assert_close(p.grad, s * (shifted - y) / 3.0)


@pytest.mark.parametrize("sense", SENSES)
def test_identity_rule_gradient_is_minus_or_plus_identity(sense):
    layer, feasible = _subset_layer(sense)
    pred, _, g = _data()
    p = pred.clone().requires_grad_(True)
    out = ipo.Identity(layer, projection="none")(p)
    torch.testing.assert_close(out.detach(), _brute(feasible, pred, sense))
    (out * g).sum().backward()
    torch.testing.assert_close(p.grad, g if sense == "max" else -g)


@pytest.mark.parametrize("sense", SENSES)
@pytest.mark.parametrize("two_sides", [False, True])
def test_imle_is_the_target_distribution_difference(sense, two_sides):
    layer, feasible = _subset_layer(sense)
    pred, _, g = _data(b=3)
    rule = ipo.IMLE(
        layer, n_samples=6, sigma=0.7, lambd=2.0, two_sides=two_sides, generator=torch.Generator().manual_seed(4)
    )
    eps = sum_of_gamma((3, 6, 5), kappa=5.0, generator=torch.Generator().manual_seed(4), like=pred)
    costs = pred[:, None] + 0.7 * eps

    def solve(c):
        return _brute(feasible, c.reshape(-1, 5), sense).reshape(3, 6, 5)

    p = pred.clone().requires_grad_(True)
    out = rule(p)
    torch.testing.assert_close(out.detach(), solve(costs).mean(1))
    (out * g).sum().backward()
    d = 2.0 * g[:, None]
    if two_sides:
        expected = (solve(costs + d) - solve(costs - d)).mean(1) / 4.0
    else:
        s = 1.0 if sense == "min" else -1.0
        expected = s * (solve(costs + s * d) - solve(costs)).mean(1) / 2.0
    torch.testing.assert_close(p.grad, expected)


def test_sum_of_gamma_has_its_known_mean_and_variance():
    # eps = (sum_i Gamma(1/k, k/i) - log m) / k: mean (H_m - log m) / k, variance sum_i 1/i^2 / k.
    eps = sum_of_gamma(
        (200_000,),
        kappa=5.0,
        generator=torch.Generator().manual_seed(0),
        like=torch.zeros((), dtype=torch.float64),
    )
    harmonic = sum(1 / i for i in range(1, 11))
    assert float(eps.mean()) == pytest.approx((harmonic - math.log(10)) / 5, abs=0.006)
    assert float(eps.var()) == pytest.approx(sum(1 / i**2 for i in range(1, 11)) / 5, rel=0.03)


# --- Perturbed optimiser and Fenchel-Young against the exact expectation -----------------------

SIGMA = 0.8


def _assignment_expectation(theta: torch.Tensor, sigma: float):
    """2x2 assignment (min): y = identity (x11 = x22 = 1) iff t11 + t22 + sigma (Z11 + Z22) <
    t12 + t21 + sigma (Z12 + Z21): probability Phi(d / (2 sigma)), d = t12 + t21 - t11 - t22.
    Returns E[y] (B, 4) in row-major order and its Jacobian (B, 4, 4)."""
    t = theta.reshape(-1, 4)
    d = t[:, 1] + t[:, 2] - t[:, 0] - t[:, 3]
    p = 0.5 * (1 + torch.erf(d / (2 * sigma) / math.sqrt(2)))
    density = torch.exp(-0.5 * (d / (2 * sigma)) ** 2) / math.sqrt(2 * math.pi) / (2 * sigma)
    ey = torch.stack([p, 1 - p, 1 - p, p], dim=1)
    dd = torch.tensor([-1.0, 1.0, 1.0, -1.0], dtype=theta.dtype)  # d(d)/d(theta)
    sign = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=theta.dtype)  # dE[y_j]/dp
    jac = density[:, None, None] * sign[None, :, None] * dd[None, None, :]
    return ey, jac


def _theta():
    return torch.tensor([[0.3, -0.2, 0.1, 0.4], [0.0, 0.6, -0.5, 0.2]], dtype=torch.float64)


@pytest.mark.parametrize("variance_reduction", [True, False])
def test_perturbed_opt_matches_the_exact_expectation_and_its_jacobian(variance_reduction):
    layer = ipo.AssignmentLayer(2)
    theta = _theta()
    ey, jac = _assignment_expectation(theta, SIGMA)
    g = torch.tensor([[1.0, -0.5, 0.25, 0.75], [-1.0, 0.5, 0.5, 0.0]], dtype=torch.float64)
    rule = ipo.PerturbedOpt(
        layer,
        n_samples=4000,
        sigma=SIGMA,
        variance_reduction=variance_reduction,
        generator=torch.Generator().manual_seed(1),
    )
    p = theta.reshape(2, 2, 2).clone().requires_grad_(True)
    out = rule(p)
    # Monte Carlo: 4000 Bernoulli draws, std <= 0.008 -> 5 sigma.
    torch.testing.assert_close(out.detach().reshape(2, 4), ey, atol=0.04, rtol=0)
    (out.reshape(2, 4) * g).sum().backward()
    exact = torch.einsum("bj,bjk->bk", g, jac)
    # Score-function estimator: per-sample std about |g| / sigma -> 0.03 over 4000 samples.
    torch.testing.assert_close(p.grad.reshape(2, 4), exact, atol=0.1, rtol=0)


@pytest.mark.parametrize("sense", SENSES)
def test_perturbed_top2_of_4_matches_a_large_independent_monte_carlo(sense):
    layer, feasible = _subset_layer(sense, n=4, k=2)
    theta = torch.tensor([[0.5, 0.2, -0.1, 0.3]], dtype=torch.float64)
    g = torch.tensor([[1.0, -0.5, 0.2, 0.3]], dtype=torch.float64)
    # Reference: 10^6 numpy draws (top-2 / bottom-2 by sorting), E[y] and E[<y, g> Z] / sigma.
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1_000_000, 4))
    costs = theta.numpy() + SIGMA * z
    order = np.argsort(-costs if sense == "max" else costs, axis=1)[:, :2]
    y = np.zeros_like(costs)
    np.put_along_axis(y, order, 1.0, axis=1)
    ey_ref = y.mean(axis=0)
    vjp_ref = ((y @ g.numpy()[0])[:, None] * z).mean(axis=0) / SIGMA
    f_ref = (costs * y).sum(axis=1).mean()

    rule = ipo.PerturbedOpt(layer, n_samples=4000, sigma=SIGMA, generator=torch.Generator().manual_seed(2))
    p = theta.clone().requires_grad_(True)
    out = rule(p)
    np.testing.assert_allclose(out.detach().numpy()[0], ey_ref, atol=0.04)
    (out * g).sum().backward()
    np.testing.assert_allclose(p.grad.numpy()[0], vjp_ref, atol=0.08)

    # Fenchel-Young: value s (F - <theta, y*>), gradient E[y] - y* (max) or y* - E[y] (min).
    y_star = _brute(feasible, theta + torch.tensor([[0.0, 0.0, 1.0, 0.0]], dtype=torch.float64), sense)
    fy = ipo.FenchelYoung(layer, n_samples=4000, sigma=SIGMA, generator=torch.Generator().manual_seed(3))
    p = theta.clone().requires_grad_(True)
    loss = fy(p, y_star)
    s = 1.0 if sense == "max" else -1.0
    expected_value = s * (f_ref - float((theta * y_star).sum()))
    assert float(loss.detach()) == pytest.approx(expected_value, abs=0.05)
    assert float(loss.detach()) > 0  # >= 0 in expectation; here clearly positive (y* is not the mode)
    loss.backward()
    np.testing.assert_allclose(p.grad.numpy()[0], s * (ey_ref - y_star.numpy()[0]), atol=0.04)


# --- Projections: each rule sees P(pred), autograd maps back ------------------------------------


def _vjp_through(projection, pred, inner_grad):
    p = pred.clone().requires_grad_(True)
    (project(p, projection) * inner_grad).sum().backward()
    return p.grad


RULES = {
    "spo": lambda layer, **kw: ipo.SPOPlus(layer, reduction="sum", **kw),
    "blackbox": lambda layer, **kw: ipo.Blackbox(layer, lambd=2.0, **kw),
    "identity": lambda layer, **kw: ipo.Identity(layer, **kw),
    "perturbed": lambda layer, **kw: ipo.PerturbedOpt(
        layer, n_samples=5, generator=torch.Generator().manual_seed(0), **kw
    ),
    "fy": lambda layer, **kw: ipo.FenchelYoung(layer, n_samples=5, generator=torch.Generator().manual_seed(0), **kw),
    "imle": lambda layer, **kw: ipo.IMLE(layer, n_samples=5, generator=torch.Generator().manual_seed(0), **kw),
    "aimle": lambda layer, **kw: ipo.AdaptiveIMLE(layer, n_samples=5, generator=torch.Generator().manual_seed(0), **kw),
    "perturbed-mul": lambda layer, **kw: ipo.PerturbedOpt(
        layer, n_samples=5, multiplicative=True, generator=torch.Generator().manual_seed(0), **kw
    ),
    "fy-mul": lambda layer, **kw: ipo.FenchelYoung(
        layer, n_samples=5, multiplicative=True, generator=torch.Generator().manual_seed(0), **kw
    ),
    "pg": lambda layer, **kw: ipo.PerturbationGradient(layer, sigma=0.5, two_sides=True, **kw),
    "rfwo": lambda layer, **kw: ipo.RegularizedFrankWolfe(layer, **kw),
    "rfy": lambda layer, **kw: ipo.RegularizedFenchelYoung(layer, **kw),
}


def _call(name, rule, pred, true, w_star, g):
    if name == "spo":
        return rule(pred, true, w_star, (true * w_star).sum(1))
    if name in ("fy", "fy-mul", "rfy"):
        return rule(pred, w_star).sum()
    if name == "pg":
        return rule(pred, true).sum()
    return (rule(pred) * g).sum()


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("sense", SENSES)
@pytest.mark.parametrize("projection", ["std", "norm"])
def test_a_projected_rule_is_the_plain_rule_at_p_of_pred_composed_with_p_prime(name, sense, projection):
    layer, feasible = _subset_layer(sense)
    pred, true, g = _data()
    w_star = _brute(feasible, true, sense)
    # Plain rule evaluated at P(pred), then the projection's VJP by hand.
    q = project(pred, projection).clone().requires_grad_(True)
    plain = _call(name, RULES[name](layer, projection="none"), q, true, w_star, g)
    plain.backward()
    expected = _vjp_through(projection, pred, q.grad)
    p = pred.clone().requires_grad_(True)
    projected = _call(name, RULES[name](layer, projection=projection), p, true, w_star, g)
    projected.backward()
    torch.testing.assert_close(projected.detach(), plain.detach())
    torch.testing.assert_close(p.grad, expected)


def test_auto_projection_uses_the_models_equalities_for_every_rule():
    layer, _ = _subset_layer("max")  # sum(x) == 2: auto removes the mean, then normalises
    for make in RULES.values():
        assert torch.allclose(
            make(layer, projection="auto").basis.abs(), torch.full((1, 5), 5**-0.5, dtype=torch.float64)
        )


# --- Same results serial, in the pool, on an executor ---------------------------------------------


@pytest.mark.parametrize("name", list(RULES))
def test_rules_are_identical_serial_in_the_pool_and_on_an_executor(name, force_pool):
    from .helpers import knapsack

    rng = np.random.default_rng(0)
    weights = rng.integers(1, 9, size=(1, 8))
    m, x, feasible = knapsack(weights, weights.sum(axis=1) // 2)
    pred, true, g = _data(n=8, b=5)
    feasible_t = torch.tensor(np.array(feasible))
    w_star = _brute(feasible_t, true, "max")
    results = []
    with ThreadPoolExecutor(2) as executor:
        for options in ({}, {"workers": 2}, {"executor": executor, "executor_workers": 2}):
            layer = ipo.CpSatLayer(m, x, sense="max", **options)
            if "workers" in options:
                force_pool(layer)
            p = pred.clone().requires_grad_(True)
            rule = RULES[name](layer, projection="std")
            out = _call(name, rule, p, true, w_star, g)
            out.backward()
            # Frank-Wolfe's last oracle batch holds only the instances not yet converged.
            if "workers" in options and name not in ("rfwo", "rfy"):
                assert rule.last_info.mode == "pool"
            results.append((out.detach(), p.grad))
    for out, grad in results[1:]:
        assert torch.equal(out, results[0][0])
        assert torch.equal(grad, results[0][1])


def test_rules_train_under_the_global_seed_reproducibly():
    layer, _ = _subset_layer("max")
    pred, _, g = _data()

    def run():
        torch.manual_seed(11)
        p = pred.clone().requires_grad_(True)
        (ipo.PerturbedOpt(layer, n_samples=3)(p) * g).sum().backward()
        return p.grad

    assert torch.equal(run(), run())


def test_samples_of_a_batch_are_one_solve_call():
    layer, _ = _subset_layer("max")
    calls = []
    solve = layer.handle.batch.solve
    layer.handle.batch.solve = lambda c, **kw: calls.append(len(c)) or solve(c, **kw)
    pred, _, g = _data()
    p = pred.clone().requires_grad_(True)
    (ipo.IMLE(layer, n_samples=7)(p) * g).sum().backward()
    assert calls == [4 * 7, 4 * 7]  # forward samples, backward target samples
    calls.clear()
    p = pred.clone().requires_grad_(True)
    (ipo.PerturbedOpt(layer, n_samples=7)(p) * g).sum().backward()
    assert calls == [4 * 7]  # no solve in backward


def test_rules_keep_shape_dtype_and_unbatched_inputs():
    layer, _ = _subset_layer("max")
    single = torch.tensor([0.3, 0.1, -0.2, 0.5, 0.0], dtype=torch.float16)
    for make in (ipo.Blackbox, ipo.Identity, ipo.PerturbedOpt, ipo.IMLE):
        out = make(layer)(single)
        assert out.shape == (5,) and out.dtype == torch.float16


# --- Errors ---------------------------------------------------------------------------------------


def test_rule_errors_say_what_and_where():
    layer, feasible = _subset_layer("min")
    pred, true, _ = _data()
    w_star = _brute(feasible, true, "min")
    with pytest.raises(ValueError, match=r"SPOPlus: expected an idproj_or layer .* got str"):
        ipo.SPOPlus("layer")
    with pytest.raises(ValueError, match="Blackbox: lambd=0 must be a finite number > 0"):
        ipo.Blackbox(layer, lambd=0)
    with pytest.raises(ValueError, match="PerturbedOpt: n_samples=0 must be a positive int"):
        ipo.PerturbedOpt(layer, n_samples=0)
    with pytest.raises(ValueError, match="FenchelYoung: sigma=-1 must be a finite number > 0"):
        ipo.FenchelYoung(layer, sigma=-1)
    with pytest.raises(ValueError, match="IMLE: kappa=nan must be a finite number > 0"):
        ipo.IMLE(layer, kappa=float("nan"))
    with pytest.raises(ValueError, match="SPOPlus: reduction='max' must be 'mean', 'sum' or 'none'"):
        ipo.SPOPlus(layer, reduction="max")
    with pytest.raises(ValueError, match="Identity: projection='unit' is not one of"):
        ipo.Identity(layer, projection="unit")
    with pytest.raises(TypeError, match="SPOPlus\\(\\) got an unexpected keyword argument 'workers'"):
        ipo.SPOPlus(layer, workers=2)  # a layer option: the rule solves through the layer's pool
    spo = ipo.SPOPlus(layer)
    with pytest.raises(
        ValueError, match=r"SPOPlus: true_cost must have shape \(4, 5\) like the predictions, got \(3, 5\)"
    ):
        spo(pred, true[:3], w_star, torch.zeros(4))
    with pytest.raises(ValueError, match=r"SPOPlus: true_sol must have shape \(4, 5\)"):
        spo(pred, true, w_star[:, :4], torch.zeros(4))
    with pytest.raises(ValueError, match="SPOPlus: true_obj has 3 entries for 4 instances"):
        spo(pred, true, w_star, torch.zeros(3))
    bad = pred.clone()
    bad[2, 3] = float("inf")
    with pytest.raises(ValueError, match=r"CpSatLayer: costs\[2\] has a non-finite entry inf at index \(3,\)"):
        ipo.Blackbox(layer)(bad)
    with pytest.raises(ValueError, match=r"CpSatLayer: expected costs of shape \(5,\) or \(B, 5\), got \(4, 6\)"):
        ipo.PerturbedOpt(layer)(torch.zeros(4, 6))


def test_a_rule_takes_a_layer_or_its_handle_and_reports_solver_failures():
    from ortools.sat.python import cp_model

    layer, _ = _subset_layer("min")
    pred, _, _ = _data()
    assert torch.equal(ipo.Blackbox(layer.handle)(pred), ipo.Blackbox(layer)(pred))
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(3)]
    m.add(sum(x) == 4)  # infeasible
    with pytest.raises(ipo.SolverError, match="CpSatLayer: instance 0 of the batch has no solution"):
        ipo.PerturbedOpt(ipo.CpSatLayer(m, x), n_samples=2)(torch.zeros(2, 3))


def test_multiplicative_perturbations_keep_each_cost_sign_and_mean():
    layer = ipo.ShortestPathLayer.grid(3, 3)
    rule = ipo.PerturbedOpt(
        layer, n_samples=4000, sigma=0.8, multiplicative=True, generator=torch.Generator().manual_seed(0)
    )
    z = torch.tensor([[0.5, -2.0, 1.0, 3.0, 0.1, -0.3, 2.0, 1.5, 0.7, 0.2, 1.1, 0.9]], dtype=torch.float64)
    noises = rule.samples((1, 4000, 12), z)
    costs, _ = rule.perturb(z, rule.prepare(z)[1], noises)
    assert (torch.sign(costs) == torch.sign(z).unsqueeze(1)).all()
    torch.testing.assert_close(costs.mean(dim=1), z, rtol=0.05, atol=0.0)  # E[exp(sZ - s^2/2)] = 1
    assert "multiplicative=True" in repr(rule)
