"""Contrastive losses over a pool of solutions (Mulamba et al., IJCAI 2021), as PyEPO's
``noiseContrastiveEstimation`` (NCE) and ``contrastiveMAP`` (CMAP).

For a minimisation with true decision ``w*`` and the pool ``S`` (the training set's optimal
decisions and every decision solved since), per instance:

- NCE: ``l = mean_{w in S} (<c_hat, w*> - <c_hat, w>)``, gradient ``w* - mean(S)``;
- CMAP: ``l = max_{w in S} (<c_hat, w*> - <c_hat, w>) = <c_hat, w*> - min_{w in S} <c_hat, w>``,
  gradient ``w* - argmin_S <c_hat, w>``.

A maximisation flips the differences. No solve in backward; the forward solves only to refresh
the pool (with probability ``solve_ratio``, default 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..options import RuleOptions
from .base import PoolRule, reduce

if TYPE_CHECKING:
    from typing_extensions import Unpack


class NoiseContrastive(PoolRule):
    """Noise-contrastive estimation over the pool: ``loss = nce(pred_cost, true_sol)``.

    Args:
        layer: any idproj_or layer, or its ``.handle``.
        solutions: ``(N, *layer.shape)`` the pool's first members (required).
        reduction: as PyEPO, default ``"mean"``.
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator``,
            ``solve_ratio`` (the probability that a call refreshes the pool; default 1)
            (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> pool = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> nce = ipo.NoiseContrastive(layer, solutions=pool)
        >>> pred = torch.tensor([[1.0, 2.0, 2.5]], requires_grad=True)
        >>> nce(pred, torch.tensor([[0.0, 0.0, 1.0]])).item()  # mean(<p, w> - <p, w*>) for a maximisation
        0.25
    """

    def __init__(self, layer: Any, *, reduction: str = "mean", **options: Unpack[RuleOptions]) -> None:
        super().__init__(layer, reduction=reduction, options=options)

    def forward(self, pred_cost: Any, true_sol: Any, **data: Any) -> torch.Tensor:
        return reduce(_contrast(self, pred_cost, true_sol, data).mean(dim=1), self.reduction)


class ContrastiveMAP(PoolRule):
    """Contrastive MAP over the pool (the pool's most violating member): ``loss = cmap(pred_cost, true_sol)``.

    Args: as :class:`NoiseContrastive`.

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> pool = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> cmap = ipo.ContrastiveMAP(layer, solutions=pool)
        >>> pred = torch.tensor([[1.0, 2.0, 2.5]], requires_grad=True)
        >>> cmap(pred, torch.tensor([[0.0, 0.0, 1.0]])).item()  # max(<p, w> - <p, w*>) for a maximisation
        0.5
    """

    def __init__(self, layer: Any, *, reduction: str = "mean", **options: Unpack[RuleOptions]) -> None:
        super().__init__(layer, reduction=reduction, options=options)

    def forward(self, pred_cost: Any, true_sol: Any, **data: Any) -> torch.Tensor:
        return reduce(_contrast(self, pred_cost, true_sol, data).max(dim=1).values, self.reduction)


def _contrast(rule: PoolRule, pred_cost: Any, true_sol: Any, data: dict[str, Any]) -> torch.Tensor:
    """``(B, P)``: how much better each pool member is than the true decision under the
    prediction (``<c_hat, w*> - <c_hat, w>`` for a minimisation, the opposite for a maximisation)."""
    w, _, dtype = rule.flat(pred_cost)
    w_star = rule.labels(true_sol, w, "true_sol")
    z, frame = rule.prepare(w, rule.instance_data(data, len(w)))
    pool = rule.pool(z, frame)
    diff = (z * w_star).sum(dim=1, keepdim=True) - z @ pool.T
    return (diff if rule.sense == "min" else -diff).to(dtype)
