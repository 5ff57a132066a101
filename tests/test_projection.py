import numpy as np
import pytest
import torch

from idproj_or.rules.projection import PROJECTIONS, check_projection, invariance_basis, project


def rows(b=4, n=6, seed=0):
    return torch.randn(b, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_each_projection_matches_its_formula():
    w = rows()
    c = w - w.mean(1, keepdim=True)
    assert torch.equal(project(w, "none"), w)
    torch.testing.assert_close(project(w, "mean"), c)
    torch.testing.assert_close(project(w, "norm"), w / w.norm(dim=1, keepdim=True))
    torch.testing.assert_close(project(w, "std"), c / c.norm(dim=1, keepdim=True))


def test_projections_act_per_instance_not_across_the_batch():
    w = rows(b=5)
    for p in ("mean", "norm", "std"):
        whole = project(w, p)
        for i in range(len(w)):
            torch.testing.assert_close(whole[i : i + 1], project(w[i : i + 1], p))


@pytest.mark.parametrize("projection", ["norm", "std", "auto"])
def test_constant_cost_gives_no_nan_forward_or_backward(projection):
    w = torch.full((2, 5), 3.0, dtype=torch.float64, requires_grad=True)
    q = torch.from_numpy(invariance_basis(np.ones((1, 5))))
    out = project(w * 0 if projection == "norm" else w, projection, q)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(w.grad).all()


def test_auto_with_all_ones_row_equals_std_and_without_rows_equals_norm():
    w = rows(n=7)
    ones = torch.from_numpy(invariance_basis(np.ones((1, 7))))
    none = torch.from_numpy(invariance_basis(np.zeros((0, 7))))
    torch.testing.assert_close(project(w, "auto", ones), project(w, "std"))
    torch.testing.assert_close(project(w, "auto", none), project(w, "norm"))


def test_invariance_basis_spans_exactly_the_row_space():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 8))
    a = np.vstack([a, a[0] + a[1]])  # a redundant row must not add a direction
    q = invariance_basis(a)
    assert q.shape == (3, 8)
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
    m = q.T @ q
    np.testing.assert_allclose(m @ m, m, atol=1e-12)
    np.testing.assert_allclose(m, m.T, atol=1e-12)
    assert round(np.trace(m)) == 3
    lam = rng.normal(size=4)
    w = rng.normal(size=8)
    np.testing.assert_allclose((w + a.T @ lam) @ (np.eye(8) - m), w @ (np.eye(8) - m), atol=1e-10)
    # a direction orthogonal to every row survives untouched
    v = np.linalg.svd(a)[2][-1]
    np.testing.assert_allclose(v @ (np.eye(8) - m), v, atol=1e-10)


def test_unknown_projection_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match=r"projection='unit' is not one of 'none', 'mean'"):
        check_projection("unit")
    assert set(PROJECTIONS) == {"none", "mean", "norm", "std", "auto"}
