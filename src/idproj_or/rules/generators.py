"""Random draws that ``torch.compile`` does not trace.

Dynamo cannot pass a ``torch.Generator`` to a traced op, and the draws it traces come from the
compiler's own random streams. So every draw of the rules (the noise margin, the Gaussian and the
Sum-of-Gamma perturbations) is an opaque operator, as the solve is, and its generator travels as
an int key (0: the global RNG), as a solve handle does: compiled (``fullgraph=True`` included) or
eager, the same seed gives the same draws.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch

_generators: dict[int, weakref.ref[torch.Generator]] = {}


def check_generator(generator: Any, *, where: str) -> torch.Generator | None:
    """``generator`` if it is None or a ``torch.Generator``; otherwise a ValueError."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"{where}: generator={generator!r} must be a torch.Generator or None")
    return generator


def _forget(key: int, dead: weakref.ref[torch.Generator]) -> None:
    if _generators.get(key) is dead:  # not a newer generator that reuses the id
        del _generators[key]


# Run, not traced, under Dynamo: it guards on the generator and keeps the key as a constant.
@torch.compiler.assume_constant_result
def generator_key(generator: torch.Generator | None) -> int:
    """The int that :func:`generator_for` turns back into ``generator`` (0 for None)."""
    if generator is None:
        return 0
    key = id(generator)
    ref = _generators.get(key)
    if ref is None or ref() is not generator:
        _generators[key] = weakref.ref(generator, functools.partial(_forget, key))
    return key


def generator_for(key: int) -> torch.Generator | None:
    if key == 0:
        return None
    ref = _generators.get(key)
    generator = ref() if ref is not None else None
    if generator is None:
        raise RuntimeError(f"idproj_or: the generator of key {key} no longer exists")
    return generator


# Defined with torch.library.Library rather than torch.library.custom_op, whose first call
# imports torch._dynamo (~2 s) even in plain eager code.
_LIB = torch.library.Library("idproj_or", "FRAGMENT")


def define_draw(name: str, schema: str, draw: Callable[..., torch.Tensor], fake: Callable[..., torch.Tensor]) -> None:
    """Define the operator ``idproj_or::<name>(<schema>, int generator) -> Tensor`` that returns
    ``draw(*args, generator)``; ``fake(*args)`` is an empty tensor of the draw's shape, dtype and
    device. Tagged as a seeded random op: never constant-folded, merged or recomputed."""
    _LIB.define(f"{name}({schema}, int generator) -> Tensor", tags=(torch.Tag.nondeterministic_seeded,))

    def impl(*args: Any) -> torch.Tensor:
        return draw(*args[:-1], generator_for(args[-1]))

    def meta(*args: Any) -> torch.Tensor:
        return fake(*args[:-1])

    _LIB.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"idproj_or::{name}", meta, lib=_LIB)


def _gaussian(shape: list[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


define_draw("gaussian", "SymInt[] shape, Tensor like", _gaussian, lambda shape, like: like.new_empty(shape))


def gaussian(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gaussian draws of ``shape`` in ``like``'s dtype and on its device, sampled on the
    generator's device (``like``'s with the global RNG)."""
    return torch.ops.idproj_or.gaussian(list(shape), like.detach(), generator_key(generator))
