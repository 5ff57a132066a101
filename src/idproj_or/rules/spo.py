"""SPO+ (Elmachtoub & Grigas, Management Science 2022), as PyEPO's ``SPOPlus``.

For a minimisation with true cost ``c``, its optimal decision ``w*`` and objective ``z*``, and a
prediction ``c_hat``, the loss of one instance is

    l(c_hat) = -min_w <2 c_hat - c, w> + 2 <c_hat, w*> - z*  =  -<2 c_hat - c, w_q> + 2 <c_hat, w*> - z*

with ``w_q = y(2 c_hat - c)``: one solve per instance, none in backward. It is convex in ``c_hat``
and bounds the regret from above; its subgradient is ``2 (w* - w_q)`` (Danskin). For a
maximisation every sign flips: ``l = <2 c_hat - c, w_q> - 2 <c_hat, w*> + z*`` with
``w_q = argmax``, subgradient ``2 (w_q - w*)``.

With ``projection=``, ``c_hat`` above is ``P(pred)`` (plus the training noise margin) and autograd
through ``P`` turns the subgradient into ``P'(pred)^T 2 (w* - w_q)``. The argmin is invariant under
``P`` but the loss is not: ``P`` here rescales or re-centres the prediction that SPO+ compares with
the true cost, which is a different loss from the published one (``"none"``, the default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..options import RuleOptions
from .base import Frame, Rule, as_handle, check_reduction, failed_rows, nan_failed, reduce, rule_options

if TYPE_CHECKING:
    from typing_extensions import Unpack


class SPOPlus(Rule):
    """SPO+ loss over any idproj_or layer.

    ``loss = spo(pred_cost, true_cost, true_sol, true_obj)``: costs and solutions of shape
    ``(B, *layer.shape)``, objectives ``(B,)`` or ``(B, 1)`` (PyEPO's signature); the loss is
    reduced by ``reduction`` (``"mean"``, ``"sum"`` or ``"none"`` for ``(B,)``).

    Args:
        layer: any idproj_or layer, or its ``.handle`` (it solves, in its pool if it has one).
        reduction: as PyEPO, default ``"mean"``.
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator``,
            ``solve_ratio``, ``solutions`` (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> spo = ipo.SPOPlus(layer)
        >>> c = torch.tensor([[2.0, 2.0, 3.0]]); w = torch.tensor([[1.0, 1.0, 0.0]])
        >>> pred = torch.tensor([[0.0, 0.0, 1.0]], requires_grad=True)
        >>> loss = spo(pred, c, w, torch.tensor([4.0])); loss.item()
        4.0
        >>> loss.backward(); pred.grad.tolist()  # 2 (w_q - w*), w_q = argmax(2 pred - c) = 0
        [[-2.0, -2.0, 0.0]]
    """

    def __init__(self, layer: Any, *, reduction: str = "mean", **options: Unpack[RuleOptions]) -> None:
        name = type(self).__name__
        super().__init__(as_handle(layer, where=name), rule_options(options, where=name))
        self.reduction = check_reduction(reduction, where=name)

    def forward(self, pred_cost: Any, true_cost: Any, true_sol: Any, true_obj: Any, **data: Any) -> torch.Tensor:
        name = type(self).__name__
        w, _, dtype = self.flat(pred_cost)
        c = self.labels(true_cost, w, "true_cost")
        w_star = self.labels(true_sol, w, "true_sol")
        z_star = torch.as_tensor(true_obj, device=w.device).to(w.dtype).reshape(-1)
        if len(z_star) != len(w):
            raise ValueError(f"{name}: true_obj has {len(z_star)} entries for {len(w)} instances")
        z, frame = self.prepare(w, self.instance_data(data, len(w)))
        q = 2 * z - c
        w_q = self.decide(q, Frame.plain(q, frame.data))
        failed = failed_rows(w_q)
        w_q = torch.nan_to_num(w_q)
        # The solve's objective <q, w_q> with w_q constant: its gradient is 2 w_q (Danskin).
        loss = (q * w_q).sum(dim=1) - 2 * (z * w_star).sum(dim=1) + z_star
        if self.sense == "min":
            loss = -loss
        return reduce(nan_failed(loss, failed).to(dtype), self.reduction)
