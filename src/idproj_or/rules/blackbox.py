"""Blackbox differentiation (Vlastelica et al., ICLR 2020), as PyEPO's ``blackboxOpt`` (DBB).

Forward: ``y = y(c_hat)``. Backward, for the incoming gradient ``g = dL/dy``: solve again at the
perturbed cost ``c' = c_hat + s lambda g`` (``s = +1`` for minimisation, ``-1`` for maximisation)
and return

    dL/dc_hat = s (y(c') - y(c_hat)) / lambda,

the gradient of the piecewise-linear interpolation of ``L(y(.))`` at ``c_hat``. Two solves per
step (one forward, one backward). Larger ``lambda`` smooths more (PyEPO recommends 10-20).

With ``projection=``, ``c_hat`` is ``P(pred)`` (plus the training noise margin): both solves see
the projected cost, so ``lambda`` is measured against a cost of unit norm under ``"norm"``/``"std"``/
``"auto"``, and autograd through ``P`` maps the interpolation gradient back to ``pred``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..options import RuleOptions
from .base import Frame, Rule, as_handle, failed_rows, positive, rule_options, zero_failed

if TYPE_CHECKING:
    from typing_extensions import Unpack


class Blackbox(Rule):
    """Blackbox differentiation over any idproj_or layer: ``sol = bb(pred_cost)``.

    Args:
        layer: any idproj_or layer, or its ``.handle``.
        lambd: interpolation step ``lambda > 0`` (default 10, as PyEPO).
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator``,
            ``solve_ratio``, ``solutions`` (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> bb = ipo.Blackbox(layer, lambd=10)
        >>> pred = torch.tensor([1.0, 2.0, 2.5], requires_grad=True)
        >>> y = bb(pred); y.tolist()
        [1.0, 1.0, 0.0]
        >>> (y * torch.tensor([0.0, 0.5, 0.0])).sum().backward()  # item 1 should go
        >>> [round(v, 6) for v in pred.grad.tolist()]  # y(pred - 10 g) = item 2: (y' - y) / -10
        [0.1, 0.1, -0.1]
    """

    def __init__(self, layer: Any, *, lambd: float = 10.0, **options: Unpack[RuleOptions]) -> None:
        name = type(self).__name__
        super().__init__(as_handle(layer, where=name), rule_options(options, where=name))
        self.lambd = positive(lambd, where=name, name="lambd")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambd={self.lambd}"

    def forward(self, pred_cost: Any, **data: Any) -> Any:
        w, batched, dtype = self.flat(pred_cost)
        z, frame = self.prepare(w, self.instance_data(data, len(w)))
        y = _Interpolate.apply(z, self, frame)
        return self.unflat(y, batched, dtype)


class _Interpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, rule: Blackbox, frame: Frame) -> torch.Tensor:
        y = rule.decide(z, frame)
        ctx.save_for_backward(z, y)
        ctx.rule, ctx.frame = rule, frame
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z, y = ctx.saved_tensors
        rule: Blackbox = ctx.rule
        s = rule.sign
        shifted = rule.decide(z + s * rule.lambd * grad, ctx.frame)
        # No gradient where either solve has no decision (on_failure="nan").
        failed = failed_rows(y) | failed_rows(shifted)
        out = zero_failed(s * (torch.nan_to_num(shifted) - torch.nan_to_num(y)) / rule.lambd, failed)
        return out, None, None
