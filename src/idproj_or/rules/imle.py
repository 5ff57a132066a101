"""Implicit maximum-likelihood estimation (Niepert, Minervini & Franceschi, NeurIPS 2021), as
PyEPO's ``implicitMLE``: perturb-and-MAP with Sum-of-Gamma noise.

Forward: ``n_samples`` perturbations ``c_s = c_hat + sigma eps_s`` per instance, with ``eps`` of the
Sum-of-Gamma distribution

    eps = (sum_{i=1..m} Gamma(shape 1/kappa, scale kappa/i) - log m) / kappa

(``kappa = 5``, ``m = 10``: the sum of ``kappa`` such variables is Gumbel in the limit, so top-k
and other ``k``-subset problems sample from their exact Gibbs distribution), solved as one batch,
and the mean decision ``mean_s y(c_s)``. Backward, for ``g = dL/dy``: the same perturbations moved
to the target distribution, ``c_s + s lambda g`` (``s = +1`` min, ``-1`` max), solved again, and

    dL/dc_hat = s mean_s (y(c_s + s lambda g) - y(c_s)) / lambda

(``two_sides=True``: ``mean_s (y(c_s + lambda g) - y(c_s - lambda g)) / (2 lambda)``). The paper's
top-k experiments use it as the baseline of identity with projection.

With ``projection=``, ``c_hat`` is ``P(pred)`` (plus the training noise margin).

:class:`PerturbAndMAP` holds all of this but the step ``lambda``: :class:`IMLE` fixes it, the
adaptive I-MLE (:mod:`.aimle`) sets it at each backward.
"""

from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING, Any

import torch

from ..options import RuleOptions
from .base import Frame, failed_rows, positive, zero_failed
from .generators import define_draw, generator_key
from .perturbed import Perturbed

if TYPE_CHECKING:
    from typing_extensions import Unpack


# Terms of the Sum-of-Gamma sum (PyEPO's and the paper's 10).
SOG_TERMS = 10


def _sum_of_gamma(
    shape: list[int], kappa: float, like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    n_iterations = SOG_TERMS
    device = generator.device if generator is not None else like.device
    shape_param = torch.full((n_iterations, *shape), 1.0 / kappa, dtype=like.dtype, device=device)
    gammas = torch._standard_gamma(shape_param, generator=generator)
    scale = kappa / torch.arange(1, n_iterations + 1, dtype=like.dtype, device=device)
    total = (gammas * scale.view(-1, *([1] * len(shape)))).sum(dim=0)
    return ((total - math.log(n_iterations)) / kappa).to(like.device)


define_draw(
    "sum_of_gamma",
    "SymInt[] shape, float kappa, Tensor like",
    _sum_of_gamma,
    lambda shape, kappa, like: like.new_empty(shape),
)


def sum_of_gamma(
    shape: tuple[int, ...], *, kappa: float, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """Sum-of-Gamma draws of ``shape`` (:data:`SOG_TERMS` terms) in ``like``'s dtype and on its
    device (sampled on the generator's device); an opaque operator under ``torch.compile``
    (:mod:`idproj_or.rules.generators`)."""
    return torch.ops.idproj_or.sum_of_gamma(list(shape), float(kappa), like.detach(), generator_key(generator))


class PerturbAndMAP(Perturbed, abc.ABC):
    """What :class:`IMLE` and :class:`~idproj_or.rules.aimle.AdaptiveIMLE` share: forward, the
    mean decision of ``n_samples`` Sum-of-Gamma perturbations ``c_hat + sigma eps_s``; backward,
    the same perturbations moved to the target distribution by the step ``lambda`` that
    :meth:`target_step` gives, solved again, and their difference divided by ``lambda +``
    :attr:`guard` (``2 lambda + guard`` with ``two_sides``); :meth:`observe` sees the result."""

    # Added to the backward's divisor: 0 where lambda > 0 always (I-MLE).
    guard = 0.0

    def __init__(
        self, layer: Any, *, n_samples: int, sigma: float, kappa: float, two_sides: bool, options: RuleOptions
    ) -> None:
        super().__init__(layer, n_samples=n_samples, sigma=sigma, multiplicative=False, options=options)
        self.kappa = positive(kappa, where=type(self).__name__, name="kappa")
        self.two_sides = bool(two_sides)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kappa={self.kappa}, two_sides={self.two_sides}"

    def forward(self, pred_cost: Any, **data: Any) -> Any:
        w, batched, dtype = self.flat(pred_cost)
        z, frame = self.prepare(w, self.instance_data(data, len(w)))
        eps = sum_of_gamma((len(z), self.n_samples, z.shape[1]), kappa=self.kappa, generator=self.generator, like=z)
        costs, sols = self.perturb(z.detach(), frame, eps)
        y = _TargetDistribution.apply(z, costs, sols, self, frame)
        return self.unflat(y, batched, dtype)

    @abc.abstractmethod
    def target_step(self, z: torch.Tensor, grad: torch.Tensor) -> torch.Tensor | float:
        """The step ``lambda`` of this backward, for the ``(B, n)`` costs ``z`` and the NaN-free
        ``(B, n)`` gradient ``grad = dL/dy``."""
        raise NotImplementedError

    def observe(self, grad: torch.Tensor) -> torch.Tensor:
        """The ``(B, n)`` gradient ``dL/dc_hat`` that backward returns (here: ``grad`` itself)."""
        return grad


class IMLE(PerturbAndMAP):
    """I-MLE over any idproj_or layer: ``y = imle(pred_cost)``, the mean of ``n_samples``
    perturb-and-MAP decisions.

    Args:
        layer: any idproj_or layer, or its ``.handle``.
        n_samples: perturbations per instance (default 10).
        sigma: noise temperature (default 1).
        lambd: target-distribution step ``lambda > 0`` (default 10).
        kappa: Sum-of-Gamma parameter (default 5; ``k`` of a top-k problem).
        two_sides: central difference in backward (default False).
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator`` (draws the
            perturbations too), ``solve_ratio``, ``solutions`` (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> imle = ipo.IMLE(layer, n_samples=100, sigma=0.5, generator=torch.Generator().manual_seed(0))
        >>> y = imle(torch.tensor([1.0, 2.0, 2.5]))
        >>> [round(v, 2) for v in y.tolist()]
        [0.94, 0.94, 0.06]
    """

    def __init__(
        self,
        layer: Any,
        *,
        lambd: float = 10.0,
        n_samples: int = 10,
        sigma: float = 1.0,
        kappa: float = 5.0,
        two_sides: bool = False,
        **options: Unpack[RuleOptions],
    ) -> None:
        super().__init__(layer, n_samples=n_samples, sigma=sigma, kappa=kappa, two_sides=two_sides, options=options)
        self.lambd = positive(lambd, where=type(self).__name__, name="lambd")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambd={self.lambd}"

    def target_step(self, z: torch.Tensor, grad: torch.Tensor) -> float:
        return self.lambd


class _TargetDistribution(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, z: torch.Tensor, costs: torch.Tensor, sols: torch.Tensor, rule: PerturbAndMAP, frame: Frame
    ) -> torch.Tensor:
        ctx.save_for_backward(z, costs, sols)
        ctx.rule, ctx.frame = rule, frame
        return sols.mean(dim=1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z, costs, sols = ctx.saved_tensors
        frame: Frame = ctx.frame
        rule: PerturbAndMAP = ctx.rule
        s = costs.shape[1]
        g = torch.nan_to_num(grad)
        lambd = rule.target_step(z.detach(), g)
        delta = lambd * g.unsqueeze(1)
        if rule.two_sides:
            both = rule.decide_samples(torch.cat([costs + delta, costs - delta], dim=1), frame)
            failed = failed_rows(both)
            out = (both[:, :s] - both[:, s:]).mean(dim=1) / (2 * lambd + rule.guard)
        else:
            moved = rule.decide_samples(costs + rule.sign * delta, frame)
            failed = failed_rows(moved) | failed_rows(sols)
            out = rule.sign * (moved - sols).mean(dim=1) / (lambd + rule.guard)
        # No gradient where a solve has no decision (on_failure="nan").
        return rule.observe(zero_failed(torch.nan_to_num(out), failed)), None, None, None, None
