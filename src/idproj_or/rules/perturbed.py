"""Perturbed optimisers (Berthet et al., NeurIPS 2020), as PyEPO's ``perturbedOpt`` (DPO) and
``perturbedFenchelYoung`` (PFY), with additive Gaussian noise.

Both draw ``n_samples`` perturbations ``Z_s ~ N(0, I)`` per instance and solve the
``B * n_samples`` costs ``c_hat + sigma Z_s`` as one flattened batch (through the layer's pool
when it has one):

- :class:`PerturbedOpt` returns the smoothed decision ``E[y(c_hat + sigma Z)]`` (Monte Carlo
  mean), whose Jacobian is ``E[y(c_hat + sigma Z) Z^T] / sigma``; backward applies that estimator
  to ``g = dL/dy``: ``sum_s <y_s, g> Z_s / (n sigma)``, with PyEPO's leave-one-out baseline
  (``<y_s, g>`` minus its sample mean, times ``n / (n - 1)``) when ``variance_reduction``.
- :class:`FenchelYoung` returns the loss ``s (F(c_hat) - <c_hat, y*>)`` with
  ``F(c_hat) = mean_s <c_hat + sigma Z_s, y_s>`` the Monte Carlo estimate of the smoothed optimal
  value, ``s = -1`` for minimisation and ``+1`` for maximisation; its gradient is
  ``y* - E[y]`` (min) or ``E[y] - y*`` (max), no solver call in backward.

What the Fenchel-Young loss value means (PyEPO #46): the Fenchel-Young loss is
``F(c_hat) + Omega(y*) - <c_hat, y*>`` (up to the sign of the sense), ``>= 0`` and 0 exactly when
the smoothed decision equals ``y*``. The term ``Omega(y*)`` (the conjugate of ``F`` at the label)
does not depend on the prediction and has no closed form, so, as in PyEPO, it is left out: the
value here is the Fenchel-Young loss minus a per-label constant. Its gradient and its decrease
during training are exact (up to Monte Carlo error); its level is not comparable across labels
and is not 0 at the optimum. It is ``>= 0`` in expectation (Jensen).

With ``multiplicative=True`` (PyEPO's ``perturbedOptMul`` and ``perturbedFenchelYoungMul``, DPOMul
and PFYMul) the perturbation is ``c_hat * exp(sigma Z - sigma^2 / 2)``: each entry keeps its sign,
for solvers that need, e.g., nonnegative edge costs (PyEPO #7), and its expectation is ``c_hat``.
The perturbed optimiser's backward then divides entrywise by ``n sigma c_hat`` (clamped away from
0 at ``1e-8`` with its sign, as PyEPO); the Fenchel-Young gradient is ``E[y * exp(sigma Z -
sigma^2 / 2)]`` in place of ``E[y]``, by autograd through the perturbed costs.

With ``projection=``, ``c_hat`` is ``P(pred)`` (plus the training noise margin), so ``sigma`` is
measured against a cost of unit norm under ``"norm"``/``"std"``/``"auto"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..options import RuleOptions
from .base import (
    Frame,
    Rule,
    as_handle,
    check_reduction,
    failed_rows,
    nan_failed,
    positive,
    positive_int,
    reduce,
    rule_options,
    zero_failed,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack


# PyEPO's least magnitude of the multiplicative backward's divisor (pyepo.utils._EPS).
EPS = 1e-8


class Perturbed(Rule):
    """What the perturbed rules share: ``n_samples`` Gaussian perturbations of scale ``sigma``
    (additive, or multiplicative and sign-preserving), solved as one batch."""

    def __init__(self, layer: Any, *, n_samples: int, sigma: float, multiplicative: bool, options: RuleOptions) -> None:
        name = type(self).__name__
        super().__init__(as_handle(layer, where=name), rule_options(options, where=name))
        self.n_samples = positive_int(n_samples, where=name, name="n_samples")
        self.sigma = positive(sigma, where=name, name="sigma")
        self.multiplicative = bool(multiplicative)

    def extra_repr(self) -> str:
        extra = ", multiplicative=True" if self.multiplicative else ""
        return f"{super().extra_repr()}, n_samples={self.n_samples}, sigma={self.sigma}{extra}"

    def perturb(self, z: torch.Tensor, frame: Frame, noises: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The perturbed costs ``z + sigma noises`` (or ``z * exp(sigma noises - sigma^2 / 2)``;
        ``(B, S, n)``, differentiable in ``z``) and their decisions (detached), solved as one
        batch of ``B * S``."""
        if self.multiplicative:
            costs = z.unsqueeze(1) * torch.exp(self.sigma * noises - 0.5 * self.sigma**2)
        else:
            costs = z.unsqueeze(1) + self.sigma * noises
        return costs, self.decide_samples(costs, frame)


class PerturbedOpt(Perturbed):
    """The perturbed optimiser: ``y = po(pred_cost)`` is ``E[y(P(pred) + sigma Z)]``.

    Args:
        layer: any idproj_or layer, or its ``.handle``.
        n_samples: perturbations per instance (default 10).
        sigma: noise scale (default 1).
        variance_reduction: PyEPO's leave-one-out baseline in backward (default True).
        multiplicative: sign-preserving perturbations ``c_hat * exp(sigma Z - sigma^2 / 2)``
            (PyEPO's DPOMul; default False).
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator`` (draws the
            perturbations too), ``solve_ratio``, ``solutions`` (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> po = ipo.PerturbedOpt(layer, n_samples=100, sigma=0.5, generator=torch.Generator().manual_seed(0))
        >>> y = po(torch.tensor([1.0, 2.0, 2.5]))  # mostly items 0 and 1, sometimes item 2
        >>> [round(v, 2) for v in y.tolist()]
        [0.7, 0.71, 0.29]
    """

    def __init__(
        self,
        layer: Any,
        *,
        n_samples: int = 10,
        sigma: float = 1.0,
        variance_reduction: bool = True,
        multiplicative: bool = False,
        **options: Unpack[RuleOptions],
    ) -> None:
        super().__init__(layer, n_samples=n_samples, sigma=sigma, multiplicative=multiplicative, options=options)
        self.variance_reduction = bool(variance_reduction)

    def forward(self, pred_cost: Any, **data: Any) -> Any:
        w, batched, dtype = self.flat(pred_cost)
        z, frame = self.prepare(w, self.instance_data(data, len(w)))
        noises = self.samples((len(z), self.n_samples, z.shape[1]), z)
        _, sols = self.perturb(z.detach(), frame, noises)
        y = _ScoreFunction.apply(z, sols, noises, self)
        return self.unflat(y, batched, dtype)

    def scale(self, z: torch.Tensor) -> torch.Tensor | float:
        """The score-function estimator's divisor: ``n sigma``, or entrywise ``n sigma z`` (its
        magnitude at least ``EPS``, its sign kept) for multiplicative perturbations."""
        if not self.multiplicative:
            return self.n_samples * self.sigma
        d = self.sigma * z
        return self.n_samples * torch.where(d.abs() < EPS, torch.where(d >= 0, EPS, -EPS), d)


class _ScoreFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, z: torch.Tensor, sols: torch.Tensor, noises: torch.Tensor, rule: PerturbedOpt
    ) -> torch.Tensor:
        ctx.save_for_backward(z.detach(), sols, noises)
        ctx.rule = rule
        return sols.mean(dim=1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        z, sols, noises = ctx.saved_tensors
        rule: PerturbedOpt = ctx.rule
        n = sols.shape[1]
        failed = failed_rows(sols)
        reward = torch.einsum("bsd,bd->bs", torch.nan_to_num(sols), torch.nan_to_num(grad))
        if rule.variance_reduction and n > 1:
            reward = (reward - reward.mean(dim=1, keepdim=True)) * (n / (n - 1))
        out = torch.einsum("bsd,bs->bd", noises, reward) / rule.scale(z)
        return zero_failed(out, failed), None, None, None


class FenchelYoung(Perturbed):
    """The perturbed Fenchel-Young loss: ``loss = fy(pred_cost, true_sol)``.

    See the module docstring for what the value means. Reduced by ``reduction`` (``"mean"``,
    ``"sum"`` or ``"none"`` for ``(B,)``).

    Args:
        layer: any idproj_or layer, or its ``.handle``.
        n_samples: perturbations per instance (default 10).
        sigma: noise scale (default 1).
        reduction: as PyEPO, default ``"mean"``.
        multiplicative: sign-preserving perturbations ``c_hat * exp(sigma Z - sigma^2 / 2)``
            (PyEPO's PFYMul; default False).
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator``,
            ``solve_ratio``, ``solutions`` (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> fy = ipo.FenchelYoung(layer, n_samples=100, sigma=0.5, generator=torch.Generator().manual_seed(0))
        >>> pred = torch.tensor([[1.0, 2.0, 2.5]], requires_grad=True)
        >>> fy(pred, torch.tensor([[1.0, 1.0, 0.0]])).backward()
        >>> [round(v, 2) for v in pred.grad[0].tolist()]  # E[y] - y* for a maximisation
        [-0.3, -0.29, 0.29]
    """

    def __init__(
        self,
        layer: Any,
        *,
        n_samples: int = 10,
        sigma: float = 1.0,
        reduction: str = "mean",
        multiplicative: bool = False,
        **options: Unpack[RuleOptions],
    ) -> None:
        super().__init__(layer, n_samples=n_samples, sigma=sigma, multiplicative=multiplicative, options=options)
        self.reduction = check_reduction(reduction, where=type(self).__name__)

    def forward(self, pred_cost: Any, true_sol: Any, **data: Any) -> torch.Tensor:
        w, _, dtype = self.flat(pred_cost)
        y_star = self.labels(true_sol, w, "true_sol")
        z, frame = self.prepare(w, self.instance_data(data, len(w)))
        noises = self.samples((len(z), self.n_samples, z.shape[1]), z)
        costs, sols = self.perturb(z, frame, noises)
        failed = failed_rows(sols)
        # With the decisions constant, the gradient of the smoothed value is E[y] (Danskin).
        smoothed = torch.einsum("bsd,bsd->bs", costs, torch.nan_to_num(sols)).mean(dim=1)
        loss = smoothed - (z * y_star).sum(dim=1)
        if self.sense == "min":
            loss = -loss
        return reduce(nan_failed(loss, failed).to(dtype), self.reduction)
