"""The backward is -P'(w)^T g (min) / +P'(w)^T g (max), with no solver call."""

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

import idproj_or as ipo
from idproj_or.rules.projection import project
from tests.helpers import k_subset, knapsack


def closed_form_jacobian(w: torch.Tensor, projection: str, m: torch.Tensor) -> torch.Tensor:
    """P'(w) written out by hand (Sahoo et al. eq. 14), independent of the layer's code."""
    n = len(w)
    eye = torch.eye(n, dtype=w.dtype)
    center = {"none": eye, "norm": eye, "mean": eye - 1.0 / n, "std": eye - 1.0 / n, "auto": eye - m}[projection]
    if projection in ("none", "mean"):
        return center
    v = center @ w
    r = v.norm()
    u = v / r
    return (eye - torch.outer(u, u)) / r @ center


@pytest.mark.parametrize("projection", ["none", "mean", "norm", "std", "auto"])
@pytest.mark.parametrize("sense", ["min", "max"])
def test_gradient_is_signed_projected_identity(projection, sense):
    m, x, _ = k_subset(6, 3)
    layer = ipo.CpSatLayer(m, x, sense=sense, projection=projection)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(5, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    g = torch.randn(5, 6, dtype=torch.float64, generator=gen)
    (layer(w) * g).sum().backward()
    sign = 1.0 if sense == "max" else -1.0
    basis = layer.basis if layer.basis is not None else torch.zeros(0, 6, dtype=torch.float64)
    for i in range(5):
        jac = jacobian(lambda v: project(v[None], projection, basis)[0], w[i].detach())
        torch.testing.assert_close(jac, closed_form_jacobian(w[i].detach(), projection, basis.T @ basis))
        torch.testing.assert_close(w.grad[i], sign * jac.T @ g[i])


def test_backward_calls_no_solver_and_passes_through_noise():
    m, x, _ = knapsack(np.array([[2, 3, 4, 5, 1]]), np.array([7]))
    layer = ipo.CpSatLayer(m, x, sense="max", projection="norm", noise=0.5)
    calls = []
    solve = layer._handle.batch.solve
    layer._handle.batch.solve = lambda c, **kw: calls.append(1) or solve(c, **kw)
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 5, dtype=torch.float64)
    (layer(w) * g).sum().backward()
    assert calls == [1]
    expected = torch.stack([jacobian(lambda v: project(v[None], "norm")[0], w[i].detach()).T @ g[i] for i in range(3)])
    torch.testing.assert_close(w.grad, expected)


def test_gradient_flows_to_a_network_and_keeps_dtype():
    m, x, _ = k_subset(4, 2)
    net = torch.nn.Linear(3, 4)
    layer = ipo.CpSatLayer(m, x, projection="std")
    y = layer(net(torch.randn(8, 3)))
    assert y.dtype == torch.float32 and y.requires_grad
    (y * torch.randn(8, 4)).sum().backward()
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all()
    assert net.weight.grad.abs().sum() > 0
