"""The "auto" invariance basis belongs to the handle, one per version of the model (issue 22,
point 4): every rule over a layer projects with the current one."""

import itertools

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

import idproj_or as ipo
from idproj_or.rules.projection import invariance_basis, project
from tests.helpers import weighted_choice

COSTS = torch.tensor(np.random.default_rng(0).normal(size=(16, 4)))


def projector(q):
    """``Q^T Q``: the basis up to the sign of its rows."""
    return q.T @ q


def brute_force(c, a, k):
    points = [np.array(p, dtype=float) for p in itertools.product([0, 1], repeat=4) if np.dot(a, p) == k]
    return max(float(c @ p) for p in points)


@pytest.mark.parametrize("kind", ["rule over a plain layer", "auto layer"])
def test_rules_follow_a_changed_equality_row(kind):
    problem, c, x, a, k = weighted_choice()
    if kind == "auto layer":
        rule = ipo.CvxpyLayer(problem, c, x)
    else:
        rule = ipo.Identity(ipo.CvxpyLayer(problem, c, x, projection="none"), projection="auto")
    np.testing.assert_allclose(projector(rule.basis.numpy()), projector(invariance_basis(np.ones((1, 4)))))
    a.value = np.array([1.0, 2.0, 1.0, 1.0])
    k.value = 3.0
    w = COSTS.clone().requires_grad_(True)
    y = rule(w)
    for ci, yi in zip(COSTS.numpy(), y.detach().numpy()):
        assert yi @ a.value == 3 and ci @ yi == pytest.approx(brute_force(ci, a.value, 3.0))
    # the basis, and so the gradient, are those of the new row
    new = invariance_basis(a.value[None, :])
    np.testing.assert_allclose(projector(rule.basis.numpy()), projector(new), atol=1e-12)
    g = torch.randn(16, 4, dtype=torch.float64)
    (y * g).sum().backward()
    basis = torch.from_numpy(new)
    expected = torch.stack(
        [jacobian(lambda v: project(v[None], "auto", basis)[0], wi).T @ gi for wi, gi in zip(COSTS, g)]
    )
    torch.testing.assert_close(w.grad, expected)  # +P'^T g for a maximisation


def test_the_basis_version_changes_with_the_rows_only():
    problem, c, x, a, k = weighted_choice()
    layer = ipo.CvxpyLayer(problem, c, x)
    handle = layer.handle
    layer(COSTS)
    assert handle.basis_version == 0
    k.value = 3.0  # a new right-hand side keeps the rows
    layer(COSTS)
    assert handle.basis_version == 0
    a.value = np.array([1.0, 1.0, 2.0, 1.0])
    layer(COSTS)
    assert handle.basis_version == 1
    handle.check_basis(1)
    with pytest.raises(ValueError, match="equality rows over the cost variables changed"):
        handle.check_basis(0)
