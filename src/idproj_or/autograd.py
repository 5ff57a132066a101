"""The one custom autograd Function: an exact batched solve whose backward is -/+ identity."""

from __future__ import annotations

from typing import Any, Callable

import torch

SolveFn = Callable[[torch.Tensor], torch.Tensor]


class IdentitySolve(torch.autograd.Function):
    """``y = solve(w)`` forward; ``dL/dw = sign * dL/dy`` backward (sign -1 for min, +1 for max).

    No solver call happens in backward: the projection in front of this Function (ordinary torch
    ops) turns the identity into the projected identity ``-P'(w)^T dL/dy``.
    """

    @staticmethod
    def forward(costs: torch.Tensor, solve: SolveFn, sign: float) -> torch.Tensor:
        return solve(costs.detach())

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.sign = inputs[2]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        return (grad if ctx.sign > 0 else -grad), None, None


def identity_solve(costs: torch.Tensor, solve: SolveFn, *, sense: str) -> torch.Tensor:
    return IdentitySolve.apply(costs, solve, 1.0 if sense == "max" else -1.0)
