"""Training-time noise margin (Sahoo et al., Sec. 3.6): each entry gets +alpha/2 or -alpha/2."""

from __future__ import annotations

import torch

from .generators import define_draw, generator_key


def _draw(
    shape: list[int], alpha: float, dtype: torch.dtype, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    bits = torch.randint(0, 2, tuple(shape), generator=generator, dtype=torch.int8)
    xi = (bits.to(torch.float64) - 0.5) * alpha
    return xi.to(device=device, dtype=dtype)


def _fake(shape: list[int], alpha: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=device)


define_draw("sign_noise", "SymInt[] shape, float alpha, ScalarType dtype, Device device", _draw, _fake)


def sign_noise(
    shape: torch.Size | tuple[int, ...],
    alpha: float,
    *,
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``xi`` uniformly from ``{-alpha/2, +alpha/2}`` per entry.

    Drawn on the CPU (with ``generator`` if given, else the global RNG) so that a seed gives the
    same noise on every device; an opaque operator under ``torch.compile``
    (:mod:`idproj_or.rules.generators`).
    """
    return torch.ops.idproj_or.sign_noise(list(shape), float(alpha), dtype, device, generator_key(generator))
