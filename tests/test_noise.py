import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.rules.noise import sign_noise
from tests.helpers import k_subset


def test_noise_takes_the_two_values_with_equal_frequency():
    xi = sign_noise(
        (200, 50), 0.4, dtype=torch.float64, device=torch.device("cpu"), generator=torch.Generator().manual_seed(1)
    )
    values, counts = torch.unique(xi, return_counts=True)
    assert values.tolist() == [-0.2, 0.2]
    assert abs(counts[0].item() / xi.numel() - 0.5) < 0.02  # 10k draws: 5 sigma is 0.025
    assert abs(xi.mean().item()) < 0.01


def make_layer(noise, generator=None):
    m, x, _ = k_subset(8, 4)
    return ipo.CpSatLayer(m, x, projection="none", noise=noise, generator=generator)


def solver_costs(layer, w):
    seen = []
    solve = layer._handle.batch.solve
    layer._handle.batch.solve = lambda c, **kw: seen.append(c.copy()) or solve(c, **kw)
    layer(w)
    return seen[0]


def test_noise_is_added_in_training_only_and_is_reproducible():
    w = torch.randn(4, 8, dtype=torch.float64)
    layer = make_layer(0.3, torch.Generator().manual_seed(5))
    first = solver_costs(layer, w) - w.numpy()
    assert set(np.round(np.unique(first), 12)) == {-0.15, 0.15}
    layer.generator = torch.Generator().manual_seed(5)
    np.testing.assert_array_equal(solver_costs(layer, w) - w.numpy(), first)
    layer.eval()
    np.testing.assert_array_equal(solver_costs(layer, w), w.numpy())


def test_noise_follows_the_global_seed_without_a_generator():
    w = torch.randn(4, 8, dtype=torch.float64)
    torch.manual_seed(11)
    a = solver_costs(make_layer(1.0), w)
    torch.manual_seed(11)
    b = solver_costs(make_layer(1.0), w)
    np.testing.assert_array_equal(a, b)


def test_noise_is_settable_between_epochs_and_validated():
    layer = make_layer(0.5)
    w = torch.randn(2, 8, dtype=torch.float64)
    layer.noise = 0.0
    np.testing.assert_array_equal(solver_costs(layer, w), w.numpy())
    with pytest.raises(ValueError, match=r"CpSatLayer: noise=-1 must be a finite number >= 0"):
        layer.noise = -1
    with pytest.raises(ValueError, match=r"noise=nan"):
        make_layer(float("nan"))


def test_fit_applies_the_noise_in_the_first_epochs_only():
    from idproj_or import data, training

    m, x, _ = k_subset(5, 2)
    layer = ipo.CpSatLayer(m, x, sense="max", projection="std", noise=0.4)
    rng = np.random.default_rng(0)
    ds = data.solve_dataset(layer, rng.normal(size=(40, 3)), rng.normal(size=(40, 5)), progress=False)
    seen = []
    layer.register_forward_pre_hook(lambda module, args: seen.append(module.noise) if module.training else None)
    training.fit(torch.nn.Linear(3, 5), layer, ds, ds, epochs=4, batch_size=10, noise_epochs=2, progress=False)
    assert seen == [0.4] * 8 + [0.0] * 8  # 4 steps an epoch
    assert layer.noise == 0.4  # restored
    with pytest.raises(ValueError, match="fit: noise_epochs=-1 must be None or an int >= 0"):
        training.fit(torch.nn.Linear(3, 5), layer, ds, ds, noise_epochs=-1, progress=False)
