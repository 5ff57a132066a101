"""The DVAE-on-MNIST paper experiment (examples/paper/dvae.py): its tiny run end to end, its loss
and its claim verdicts."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "paper"))

import dvae  # noqa: E402

pytest.importorskip("mlxtend")


def test_dvae_tiny(paper_tiny):
    tmp_path, run = paper_tiny
    summary = run(dvae)
    assert summary["tiny"] and summary["seeds"] == [1, 2]
    assert set(summary["settings"]) == {dvae.key(m, n) for m in dvae.METHODS for n in dvae.NOISES}
    for v in summary["settings"].values():
        for key in ("nelbo", "kl", "nelbo_mode", "best_nelbo"):
            assert len(v[key]["values"]) == 2 and all(math.isfinite(x) for x in v[key]["values"])
        # the KL to the uniform prior of 20 groups of 20 categories lies in [0, 20 log 20]
        assert 0.0 <= v["kl"]["mean"] <= dvae.GROUPS * math.log(dvae.CATEGORIES)
        assert v["kl"]["mean"] < v["nelbo"]["mean"] < 784 * math.log(2) + 1  # below the untrained BCE
        assert v["nelbo"]["mean"] < v["curve"]["0"]  # one epoch lowers the test N-ELBO
        assert list(v["curve"]) == ["0", "1"] and v["seconds_per_epoch"]["mean"] > 0
    # under a noise, every method starts from the same network and is evaluated with the same draws
    for noise in dvae.NOISES:
        starts = {v["curve"]["0"] for v in summary["settings"].values() if v["noise"] == noise}
        assert len(starts) == 1
    assert len(dvae.claims(summary)) == 3 * len(dvae.NOISES)
    assert (tmp_path / "dvae.json").exists() and (tmp_path / "dvae.png").exists()
    assert (tmp_path / "dvae" / "imle-notebook-s2.json").exists()


def test_split_is_fixed_disjoint_and_in_unit_range():
    x, xt = dvae.split(100, 50)
    assert x.shape == (100, 784) and xt.shape == (50, 784)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    assert not (x[:, None, :] == xt[None, :, :]).all(dim=2).any()  # no test image in training
    assert torch.equal(dvae.split(100, 50)[1], xt)


def test_kl_matches_torch_distributions():
    logits = torch.randn(3, dvae.GROUPS, dvae.CATEGORIES, generator=torch.Generator().manual_seed(0)) * 3
    prior = torch.distributions.Categorical(probs=torch.full((dvae.CATEGORIES,), 1.0 / dvae.CATEGORIES))
    expected = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=logits), prior).sum(dim=1)
    assert torch.allclose(dvae.kl_uniform(logits), expected, atol=1e-5)
    assert torch.allclose(dvae.kl_uniform(torch.zeros(2, 4, 5)), torch.zeros(2))  # uniform q: no KL


def test_sum_of_gamma_scales():
    """Eq. 23's noise at tau = 10 has a std of about 3.9, the notebook's (scale i/k) about 0.62."""
    z = torch.zeros(100_000)
    g = torch.Generator().manual_seed(0)
    assert abs(float(dvae.sog(z, g, "formula").std()) - 3.94) < 0.1
    assert abs(float(dvae.sog(z, g, "notebook").std()) - 0.62) < 0.02


@pytest.mark.parametrize("noise", ["formula", "notebook"])
def test_samplers_give_10_hot_rows_and_gradients(noise):
    scores = torch.randn(6, dvae.CATEGORIES, requires_grad=True)
    for method in dvae.METHODS:
        y = dvae.sampler(method, seed=0, noise=noise)(scores)
        assert y.shape == scores.shape and set(y.unique().tolist()) <= {0.0, 1.0}
        assert (y.sum(dim=1) == dvae.K).all()
        (grad,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), scores)
        assert torch.isfinite(grad).all()


def _summary(**nelbo):
    """Methods' test N-ELBO as (mean, std) under eq. 23's noise; the rest of the claims' input."""
    settings = {}
    for m, (a, b) in nelbo.items():
        settings[m if m == "imle" else f"identity-{m}"] = {"noise": "formula", "nelbo": {"mean": a, "std": b}}
    return {"seeds": [1, 2, 3], "settings": settings}


@pytest.mark.parametrize(
    ("nelbo", "verdicts"),
    [
        # the paper's picture: std < imle, norm well below mean, none worst beyond the spread
        (
            {"none": (140, 1), "mean": (130, 1), "norm": (120, 1), "std": (115, 1), "imle": (125, 1)},
            ["reproduced", "reproduced", "reproduced"],
        ),
        # the right order, but within the spreads
        (
            {"none": (131, 3), "mean": (130, 3), "norm": (129, 3), "std": (124, 3), "imle": (125, 3)},
            ["partly", "partly", "partly"],
        ),
        # the opposite order
        (
            {"none": (110, 1), "mean": (120, 1), "norm": (130, 1), "std": (130, 1), "imle": (120, 1)},
            ["not", "not", "not"],
        ),
        # none worst beyond the spread of two projections only: partly
        (
            {"none": (130, 1), "mean": (129.5, 1), "norm": (120, 1), "std": (118, 1), "imle": (125, 1)},
            ["reproduced", "reproduced", "partly"],
        ),
    ],
)
def test_claim_verdicts(nelbo, verdicts):
    rows = dvae.claims(_summary(**nelbo))
    assert [r["verdict"] for r in rows] == verdicts
    assert all(r["paper"] and r["ours"] for r in rows)
