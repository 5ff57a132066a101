"""on_failure="nan": an instance without a decision gets exactly zero gradient, in every rule
(issue 22, point 5), while the other instances keep theirs."""

import numpy as np
import pytest
import torch
from ortools.linear_solver import pywraplp

import idproj_or as ipo


def half_bounded_lp(**options):
    """min c @ x with x <= 1 and no lower bound: unbounded when an entry of c is positive."""
    solver = pywraplp.Solver.CreateSolver("GLOP")
    x = [solver.NumVar(-solver.infinity(), 1, f"x{i}") for i in range(3)]
    return ipo.LinearSolverLayer(solver, x, on_failure="nan", **options)


COSTS = torch.tensor([[-1.0, -2.0, -3.0], [4.0, -1.0, -1.0], [-2.0, -1.0, -0.5]], dtype=torch.float64)
FAILED = 1
TRUE_SOL = torch.ones(3, 3, dtype=torch.float64)


def summed(m, w):
    return m(w).sum()


def rules(layer):
    """Per rule: how to make it over ``layer``, and its loss for costs ``w``."""
    gen = torch.Generator().manual_seed(0)
    return {
        "layer": (lambda: layer, summed),
        "identity_cached": (lambda: ipo.ProjectedIdentity(layer, projection="none", solutions=TRUE_SOL[:1]), summed),
        "spo": (
            lambda: ipo.SPOPlus(layer, reduction="none"),
            lambda m, w: m(w, -COSTS.abs(), TRUE_SOL, torch.full((3,), -6.0)),
        ),
        "blackbox": (lambda: ipo.Blackbox(layer, lambd=0.01), summed),
        "perturbed": (lambda: ipo.PerturbedOpt(layer, n_samples=4, sigma=0.01, generator=gen), summed),
        "fenchel_young": (
            lambda: ipo.FenchelYoung(layer, n_samples=4, sigma=0.01, generator=gen, reduction="none"),
            lambda m, w: m(w, TRUE_SOL),
        ),
        "imle": (lambda: ipo.IMLE(layer, n_samples=4, sigma=0.01, lambd=0.01, generator=gen), summed),
        "imle_two_sides": (
            lambda: ipo.IMLE(layer, n_samples=4, sigma=0.01, lambd=0.01, two_sides=True, generator=gen),
            summed,
        ),
    }


@pytest.mark.parametrize("rule", list(rules(None)))
@pytest.mark.parametrize("projection", ["none", "norm"])
def test_failed_rows_get_exactly_zero_gradient(rule, projection):
    layer = half_bounded_lp(projection=projection)
    make, loss = rules(layer)[rule]
    module = make()
    w = COSTS.clone().requires_grad_(True)
    with pytest.warns(ipo.SolverWarning, match="have no decision"):
        out = loss(module, w)
    assert "unbounded" in module.last_info.status
    if out.ndim:  # per-instance losses: NaN for the failed instance only
        assert torch.isnan(out[FAILED]) and torch.isfinite(out[[0, 2]]).all()
        out = out[[0, 2]].sum() + 0 * out[FAILED].nan_to_num()
    out.backward()
    assert torch.equal(w.grad[FAILED], torch.zeros(3, dtype=torch.float64)), w.grad
    assert torch.isfinite(w.grad).all()


def test_the_other_rows_keep_their_gradient():
    layer = half_bounded_lp(projection="none")
    w = COSTS.clone().requires_grad_(True)
    g = torch.tensor(np.arange(9.0).reshape(3, 3))
    with pytest.warns(ipo.SolverWarning):
        y = layer(w)
    assert torch.isnan(y[FAILED]).all() and torch.equal(y[0], torch.ones(3, dtype=torch.float64))
    (y.nan_to_num() * g).sum().backward()
    expected = -g.clone()
    expected[FAILED] = 0
    torch.testing.assert_close(w.grad, expected)
