"""The perturbation gradient: hand formulas on an enumerable model, routes, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import idproj_or as ipo

WEIGHTS, CAP = np.array([[3.0, 4.0, 5.0, 2.0]]), np.array([8.0])


def brute(q: np.ndarray) -> np.ndarray:
    """The knapsack's argmax by enumeration (distinct values: no ties in these draws)."""
    best, arg = -np.inf, None
    for bits in itertools.product([0.0, 1.0], repeat=4):
        y = np.array(bits)
        if WEIGHTS[0] @ y <= CAP[0] and q @ y > best:
            best, arg = q @ y, y
    assert arg is not None
    return arg


@pytest.mark.parametrize("two_sides", [False, True])
def test_loss_and_gradient_are_the_finite_difference_of_the_optimal_value(two_sides: bool) -> None:
    layer = ipo.KnapsackLayer(WEIGHTS, CAP)
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    true = torch.rand(5, 4, generator=gen, dtype=torch.float64) * 3
    sigma = 0.7
    p = pred.clone().requires_grad_(True)
    loss = ipo.PerturbationGradient(layer, sigma=sigma, two_sides=two_sides, reduction="none")(p, true)
    loss.sum().backward()
    for i in range(5):
        z, c = pred[i].numpy(), true[i].numpy()
        hi = z + sigma * c if two_sides else z
        lo = z - sigma * c
        width = (2 if two_sides else 1) * sigma + 1e-8
        value = (hi @ brute(hi) - lo @ brute(lo)) / width
        assert loss[i].item() == pytest.approx(-value, abs=1e-12)  # a maximisation: -l
        np.testing.assert_allclose(p.grad[i].numpy(), -(brute(hi) - brute(lo)) / width, atol=1e-12)


def test_pool_and_serial_agree() -> None:
    gen = torch.Generator().manual_seed(1)
    pred = torch.randn(40, 4, generator=gen)
    true = torch.rand(40, 4, generator=gen)
    serial = ipo.PerturbationGradient(_cpsat(route="serial", workers=2))
    pooled = ipo.PerturbationGradient(_cpsat(route="pool", workers=2))
    torch.testing.assert_close(serial(pred, true, ids=torch.arange(40)), pooled(pred, true, ids=torch.arange(40)))


def _cpsat(**options: object) -> ipo.CpSatLayer:
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(4)]
    model.add(sum(int(w) * xi for w, xi in zip(WEIGHTS[0], x)) <= int(CAP[0]))
    return ipo.CpSatLayer(model, x, sense="max", **options)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, r"sigma=0.0 must be a finite number > 0"),
        ({"sigma": float("inf")}, r"sigma=inf must be a finite number > 0"),
        ({"reduction": "avg"}, r"reduction='avg' must be 'mean', 'sum' or 'none'"),
    ],
)
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ipo.PerturbationGradient(ipo.KnapsackLayer(WEIGHTS, CAP), **kwargs)


def test_true_cost_of_the_wrong_shape() -> None:
    pg = ipo.PerturbationGradient(ipo.KnapsackLayer(WEIGHTS, CAP))
    with pytest.raises(ValueError, match=r"true_cost must have shape \(2, 4\)"):
        pg(torch.rand(2, 4), torch.rand(2, 3))
