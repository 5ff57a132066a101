"""The perturbation gradient (PG; Gupta and Huang, NeurIPS 2024), as PyEPO's ``perturbationGradient``.

PG differentiates the decision's objective along the true cost ``c`` by a finite difference of
the optimal value ``V(c_hat) = min_w <c_hat, w>`` (for a minimisation):

- backward differencing (``two_sides=False``, one extra solve per instance):
  ``l = (V(c_hat) - V(c_hat - sigma c)) / sigma``;
- central differencing (``two_sides=True``, two solves):
  ``l = (V(c_hat + sigma c) - V(c_hat - sigma c)) / (2 sigma)``.

Each ``V(q) = <q, y(q)>`` with the decision held constant, so its gradient in ``c_hat`` is
``y(q)`` (Danskin): backward differencing gives ``(y(c_hat) - y(c_hat - sigma c)) / sigma``.
As ``sigma -> 0`` the loss tends to ``<c, y(c_hat)>``, the decision's true objective. For a
maximisation the sign flips (``-l``). PyEPO divides by ``sigma + 1e-8``; so does this module,
so that both give the same value. PG needs the true cost only, not the true decision.

With ``projection=``, ``c_hat`` is ``P(pred)`` (plus the training noise margin) and ``c`` the
true cost as given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..options import RuleOptions
from .base import Frame, Rule, as_handle, check_reduction, failed_rows, nan_failed, positive, reduce, rule_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

# PyEPO's guard on the finite difference's divisor (pyepo.utils._EPS).
EPS = 1e-8


class PerturbationGradient(Rule):
    """The perturbation gradient loss over any idproj_or layer: ``loss = pg(pred_cost, true_cost)``.

    Costs of shape ``(B, *layer.shape)``; the loss is reduced by ``reduction`` (``"mean"``,
    ``"sum"`` or ``"none"`` for ``(B,)``). The two solves per instance (three costs with
    ``two_sides``) go to the layer as one batch.

    Args:
        layer: any idproj_or layer, or its ``.handle``.
        sigma: the finite difference's width (default 0.1), > 0.
        two_sides: central differencing (default False: backward differencing).
        reduction: as PyEPO, default ``"mean"``.
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator``,
            ``solve_ratio``, ``solutions`` (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> pg = ipo.PerturbationGradient(layer, sigma=0.5)
        >>> pred = torch.tensor([[1.0, 2.0, 2.5]], requires_grad=True)
        >>> loss = pg(pred, torch.tensor([[3.0, 1.0, 1.0]])); loss.item()  # -(3 - 2) / 0.5
        -2.0
        >>> loss.backward(); pred.grad.tolist()  # -(y(c_hat) - y(c_hat - sigma c)) / sigma
        [[-2.0, -2.0, 2.0]]
    """

    def __init__(
        self,
        layer: Any,
        *,
        sigma: float = 0.1,
        two_sides: bool = False,
        reduction: str = "mean",
        **options: Unpack[RuleOptions],
    ) -> None:
        name = type(self).__name__
        super().__init__(as_handle(layer, where=name), rule_options(options, where=name))
        self.sigma = positive(sigma, where=name, name="sigma")
        self.two_sides = bool(two_sides)
        self.reduction = check_reduction(reduction, where=name)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma={self.sigma}, two_sides={self.two_sides}"

    def forward(self, pred_cost: Any, true_cost: Any, **data: Any) -> torch.Tensor:
        w, _, dtype = self.flat(pred_cost)
        c = self.labels(true_cost, w, "true_cost")
        z, frame = self.prepare(w, self.instance_data(data, len(w)))
        step = self.sigma * c
        upper = z + step if self.two_sides else z
        lower = z - step
        pairs = torch.stack([upper, lower], dim=1)  # (B, 2, n): differentiable in z
        flat = pairs.detach().reshape(-1, pairs.shape[-1])
        plain = Frame.plain(flat, {k: v.repeat_interleave(2, dim=0) for k, v in frame.data.items()})
        sols = self.decide(flat, plain).reshape(pairs.shape)
        failed = failed_rows(sols.reshape(len(z), -1))
        # <q, y(q)> with y(q) constant: the gradient in z is y(q)
        values = torch.einsum("bsd,bsd->bs", pairs, torch.nan_to_num(sols))
        width = 2 * self.sigma if self.two_sides else self.sigma
        loss = (values[:, 0] - values[:, 1]) / (width + EPS)
        if self.sense == "max":
            loss = -loss
        return reduce(nan_failed(loss, failed).to(dtype), self.reduction)
