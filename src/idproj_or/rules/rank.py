"""Learning to rank over a pool of solutions (Mandi et al., ICML 2022), as PyEPO's
``pointwiseLearningToRank``, ``pairwiseLearningToRank`` and ``listwiseLearningToRank``
(ptLTR, prLTR, lsLTR).

With the pool ``S`` (the training set's optimal decisions and every decision solved since),
scores ``<c_hat, w>`` and true objectives ``<c, w>`` for ``w in S``, per instance:

- pointwise: ``l = mean_{w in S} (<c - c_hat, w>)^2``;
- pairwise: with ``b`` the pool's best member for the true cost, ``l = sum_{w in S}
  relu(<c_hat, b> - <c_hat, w>) / max(|S| - 1, 1)`` for a minimisation (``relu(<c_hat, w> -
  <c_hat, b>)`` for a maximisation);
- listwise: the cross-entropy between softmaxes of the pool's objectives, ``l = -sum_{w in S}
  max(softmax(-<c, S>)_w, 1e-8) log softmax(-<c_hat, S>)_w`` for a minimisation (without the
  minus signs for a maximisation).

No solve in backward; the forward solves only to refresh the pool (with probability
``solve_ratio``, default 1).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional

from ..options import RuleOptions
from .base import PoolRule, reduce

if TYPE_CHECKING:
    from typing_extensions import Unpack


class _Rank(PoolRule, abc.ABC):
    def __init__(self, layer: Any, *, reduction: str = "mean", **options: Unpack[RuleOptions]) -> None:
        super().__init__(layer, reduction=reduction, options=options)

    def forward(self, pred_cost: Any, true_cost: Any, **data: Any) -> torch.Tensor:
        w, _, dtype = self.flat(pred_cost)
        c = self.labels(true_cost, w, "true_cost")
        z, frame = self.prepare(w, self.instance_data(data, len(w)))
        pool = self.pool(z, frame)
        loss = self.loss(z @ pool.T, c @ pool.T, z, c, pool)
        return reduce(loss.to(dtype), self.reduction)

    @abc.abstractmethod
    def loss(
        self, scores: torch.Tensor, truth: torch.Tensor, z: torch.Tensor, c: torch.Tensor, pool: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


class PointwiseLTR(_Rank):
    """Pointwise learning to rank: ``loss = ltr(pred_cost, true_cost)``, the mean squared error of
    the pool members' predicted objectives.

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
        >>> ltr = ipo.PointwiseLTR(layer, solutions=torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        >>> ltr(torch.tensor([[1.0, 2.0, 2.5]]), torch.tensor([[2.0, 2.0, 2.0]])).item()  # (1^2 + 0.5^2) / 2
        0.625
    """

    def loss(
        self, scores: torch.Tensor, truth: torch.Tensor, z: torch.Tensor, c: torch.Tensor, pool: torch.Tensor
    ) -> torch.Tensor:
        return (truth - scores).square().mean(dim=1)


class PairwiseLTR(_Rank):
    """Pairwise learning to rank: ``loss = ltr(pred_cost, true_cost)``, a hinge between the pool's
    best member for the true cost and every other member.

    Args: as :class:`PointwiseLTR`.

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> ltr = ipo.PairwiseLTR(layer, solutions=torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        >>> ltr(torch.tensor([[1.0, 2.0, 2.5]]), torch.tensor([[1.0, 1.0, 3.0]])).item()  # relu(3 - 2.5) / 1
        0.5
    """

    def loss(
        self, scores: torch.Tensor, truth: torch.Tensor, z: torch.Tensor, c: torch.Tensor, pool: torch.Tensor
    ) -> torch.Tensor:
        best = truth.argmin(dim=1) if self.sense == "min" else truth.argmax(dim=1)
        top = scores.gather(1, best.unsqueeze(1))
        diff = top - scores if self.sense == "min" else scores - top
        return torch.relu(diff).sum(dim=1) / max(scores.shape[1] - 1, 1)


class ListwiseLTR(_Rank):
    """Listwise learning to rank: ``loss = ltr(pred_cost, true_cost)``, the cross-entropy of the
    softmax of the pool's predicted objectives against that of its true ones.

    Args: as :class:`PointwiseLTR`.

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> ltr = ipo.ListwiseLTR(layer, solutions=torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        >>> pred = torch.tensor([[1.0, 2.0, 2.5]])  # scores [3, 2.5]: the entropy of softmax([3, 2.5])
        >>> round(ltr(pred, pred).item(), 4)
        0.6628
    """

    def loss(
        self, scores: torch.Tensor, truth: torch.Tensor, z: torch.Tensor, c: torch.Tensor, pool: torch.Tensor
    ) -> torch.Tensor:
        sign = -1.0 if self.sense == "min" else 1.0
        target = functional.softmax(sign * truth, dim=1).clamp(min=1e-8)
        return -(functional.log_softmax(sign * scores, dim=1) * target).sum(dim=1)
