"""L2-regularised optimisers solved by Frank-Wolfe (Dalle et al., 2022), as PyEPO's
``regularizedFrankWolfeOpt`` (RFWO) and ``regularizedFrankWolfeFenchelYoung`` (RFY).

Both replace the decision ``y(c_hat) = argmin_{y in Y} <c_hat, y>`` by the regularised one over
the convex hull of the feasible set (for a minimisation; a maximisation maximises
``<c_hat, y> - lambda/2 ||y||^2``):

    mu(c_hat) = argmin_{mu in conv(Y)} <c_hat, mu> + lambda/2 ||mu||^2
              = argmin_{mu in conv(Y)} 1/2 ||mu - theta||^2,   theta = -s c_hat / lambda,

unique, inside the hull and continuous in ``c_hat`` (``s = +1`` for minimisation, ``-1`` for
maximisation). It is found by batched away-step Frank-Wolfe with the layer as the linear
minimisation oracle, PyEPO's ``_away_step_frank_wolfe`` step for step:

- start at the vertex ``v_0 = y(c_hat)``, weight 1, in an active set of at most ``2n + 2``
  vertices;
- each iteration asks the oracle for ``v = argmax_{y in Y} <theta - mu, y>``, i.e. the layer's
  decision for the cost ``c_hat + s lambda mu`` (a positive multiple, so the same decision), for
  the whole batch as one batch solve; the Frank-Wolfe gap is ``g_FW = <mu - theta, mu - v>`` and
  the away gap ``g_A = <mu - theta, a - mu>`` for the active vertex ``a`` of largest
  ``<mu - theta, a>``;
- an instance with ``g_FW < tol`` takes no step (it stays converged, as the oracle's answer for
  it cannot change); the loop ends when every instance has, or after ``max_iter`` iterations;
- otherwise the step goes towards ``v`` when ``g_FW >= g_A`` (step cap 1), else away from ``a``
  (step cap ``alpha_a / (1 - alpha_a)``, ``alpha_a`` its weight), with the exact line search of
  the quadratic ``gamma = min(max(gap / ||d||^2, 0), cap)``; the weights are rescaled, a new
  vertex fills a free slot (or replaces the lightest), and weights below ``1e-12`` drop out.

:class:`RegularizedFrankWolfe` returns ``mu``; its backward is PyEPO's: the incoming gradient
projected onto the directions of the active face, ``P g`` with ``P`` the orthogonal projector onto
the span of the active vertices minus their mean (a ridge ``1e-6 max(diag(M), 1)`` on the Gram
matrix ``M``), times ``-s / lambda``: the Jacobian of the Euclidean projection onto the hull. No
solver call in backward.

:class:`RegularizedFenchelYoung` returns the Fenchel-Young loss of ``Omega = lambda/2 ||.||^2``:

    loss = Omega(y*) - Omega(mu) + <c_hat, y* - mu>      (minimisation)
    loss = Omega(y*) - Omega(mu) + <c_hat, mu - y*>      (maximisation)

``>= 0`` and 0 exactly when ``mu(c_hat) = y*``; by Danskin its gradient is ``y* - mu`` (``mu -
y*`` for a maximisation), with no differentiation through the iterations.

With ``projection=``, ``c_hat`` is ``P(pred)`` (plus the training noise margin), so ``lambda`` is
measured against a cost of unit norm under ``"norm"``/``"std"``/``"auto"``; the oracle's costs
go to the solver at the raw cost's scale, as every rule's. With ``solve_ratio < 1`` each oracle
call (one per Frank-Wolfe iteration) takes the pool's best members instead of solving with
probability ``1 - solve_ratio``, as PyEPO: the iteration then converges over the hull of what the
pool offers, an approximation. Only with an exact oracle are converged instances left out of the
next calls (same result, fewer solves); with the pool every instance asks at every iteration, as
in PyEPO, where a better pool member can make a converged instance move again. ``last_info``
reports the last oracle batch. An instance without a decision (``on_failure="nan"``) at any oracle
call gets NaN (its decision or loss) and zero gradient.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from ..handle import real_scalar
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


class Regularized(Rule):
    """What the regularised rules share: ``lambd``, the Frank-Wolfe budget and tolerance, and the
    away-step Frank-Wolfe iteration (:meth:`frank_wolfe`) over the layer's decisions."""

    def __init__(self, layer: Any, *, lambd: float, max_iter: int, tol: float, options: RuleOptions) -> None:
        name = type(self).__name__
        super().__init__(as_handle(layer, where=name), rule_options(options, where=name))
        self.lambd = positive(lambd, where=name, name="lambd")
        self.max_iter = positive_int(max_iter, where=name, name="max_iter")
        value = real_scalar(tol, where=name, name="tol")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}: tol={tol!r} must be a finite number >= 0")
        self.tol = value

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambd={self.lambd}, max_iter={self.max_iter}, tol={self.tol}"

    @torch.no_grad()
    def frank_wolfe(
        self, theta: torch.Tensor, z: torch.Tensor, frame: Frame
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """PyEPO's batched away-step Frank-Wolfe for ``argmin_mu 1/2 ||mu - theta||^2`` over the
        hull of the layer's decisions, ``theta = -s z / lambda`` for the ``(B, n)`` costs ``z`` (in
        ``frame``'s projected space).

        Returns the final iterate ``mu`` ``(B, n)`` (NaN rows for the instances without a
        decision), the active vertices ``(B, 2n + 2, n)``, their weights ``(B, 2n + 2)`` and the
        ``(B,)`` mask of the instances without a decision.
        """
        batch, num_vars = theta.shape
        device, dtype = theta.device, theta.dtype
        step = self.sign * self.lambd  # the oracle's cost for mu is z + s lambda mu = -s lambda (theta - mu)
        exact = self.cache is None or self.solve_ratio >= 1.0

        def oracle(todo: torch.Tensor, mu: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            """The decisions of the rows ``todo`` (NaN-free) and the mask of those without one."""
            if bool(todo.all()):
                costs, part = z, frame
            else:
                rows = todo.nonzero().squeeze(1)
                costs, part = z[rows], _rows(frame, rows)
                mu = None if mu is None else mu[rows]
            y = self.decide(costs if mu is None else costs + step * mu, part).to(device=device, dtype=dtype)
            return torch.nan_to_num(y), failed_rows(y)

        # bounded active-set buffer (support <= num_vars + 1 by Caratheodory)
        width = 2 * num_vars + 2
        vertices = torch.zeros((batch, width, num_vars), device=device, dtype=dtype)
        weights = torch.zeros((batch, width), device=device, dtype=dtype)
        vertex_norms = torch.zeros((batch, width), device=device, dtype=dtype)
        # initial vertex: the layer's decision for z itself
        failed = torch.zeros(batch, dtype=torch.bool, device=device)
        v0, failed = oracle(~failed, None)
        vertices[:, 0] = v0
        weights[:, 0] = 1.0
        vertex_norms[:, 0] = (v0 * v0).sum(dim=-1)
        mu = v0.clone()
        v = torch.zeros_like(mu)  # each instance's last oracle vertex
        converged = failed.clone()
        batch_idx = torch.arange(batch, device=device)
        for _ in range(self.max_iter):
            grad = mu - theta
            # Frank-Wolfe vertex and gap; an exact oracle's answer for a converged (unmoved)
            # instance is the one it gave, so only the others ask
            todo = ~converged if exact else ~failed
            if bool(todo.any()):
                found, lost = oracle(todo, mu)
                v[todo] = found
                failed[todo] |= lost
            gap_fw = (grad * (mu - v)).sum(dim=-1)
            # away vertex: active atom maximizing <grad, .>
            scores = torch.einsum("bwv,bv->bw", vertices, grad).masked_fill(weights <= 0, float("-inf"))
            away_idx = scores.argmax(dim=-1)
            v_away = vertices[batch_idx, away_idx]
            alpha_away = weights[batch_idx, away_idx]
            gap_away = (grad * (v_away - mu)).sum(dim=-1)
            # zero the step on converged instances (and on those without a decision)
            unconverged = (gap_fw >= self.tol) & ~failed
            converged = ~unconverged
            if not bool(unconverged.any()):
                break
            active = unconverged.to(dtype)
            # Frank-Wolfe or away direction, per instance
            use_fw = gap_fw >= gap_away
            direction = torch.where(use_fw.unsqueeze(-1), v - mu, mu - v_away)
            gap = torch.where(use_fw, gap_fw, gap_away)
            gamma_max = torch.where(
                use_fw, torch.ones_like(alpha_away), alpha_away / (1.0 - alpha_away).clamp(min=1e-12)
            )
            # exact line search for the quadratic, clamped to the step cap
            denom = (direction * direction).sum(dim=-1).clamp(min=1e-12)
            gamma = torch.minimum((gap / denom).clamp(min=0.0), gamma_max) * active
            mu = mu + gamma.unsqueeze(-1) * direction
            # shrink weights: Frank-Wolfe *(1 - gamma), away *(1 + gamma)
            weights = weights * torch.where(use_fw, 1.0 - gamma, 1.0 + gamma).unsqueeze(-1)
            gamma_fw = gamma * use_fw
            gamma_away = gamma * (~use_fw)
            # Frank-Wolfe add: dedup against active atoms, else fill a free slot
            v_norm_sq = (v * v).sum(dim=-1)
            inner = torch.einsum("bwv,bv->bw", vertices, v)
            dist_sq = vertex_norms - 2 * inner + v_norm_sq.unsqueeze(-1)
            match = (dist_sq < 1e-6) & (weights > 0)
            has_match = match.any(dim=-1)
            match_idx = match.to(dtype).argmax(dim=-1)
            free_idx = _free_slot(weights)
            # zero-weight adds carry no mass and must not displace an atom
            add_new = (~has_match) & use_fw & (gamma_fw > 0)
            weights[batch_idx, match_idx] = weights[batch_idx, match_idx] + gamma_fw * (has_match & use_fw).to(dtype)
            vertices[batch_idx, free_idx] = torch.where(add_new.unsqueeze(-1), v, vertices[batch_idx, free_idx])
            vertex_norms[batch_idx, free_idx] = torch.where(add_new, v_norm_sq, vertex_norms[batch_idx, free_idx])
            # displaced mass is dropped
            weights[batch_idx, free_idx] = torch.where(add_new, gamma_fw, weights[batch_idx, free_idx])
            # away subtract, then clear FP residue so dropped atoms leave the active set
            weights[batch_idx, away_idx] = weights[batch_idx, away_idx] - gamma_away
            weights = weights.clamp(min=0.0)
            weights = torch.where(weights < 1e-12, torch.zeros_like(weights), weights)
        mu = torch.where(failed.unsqueeze(-1), torch.full_like(mu, float("nan")), mu)
        weights = torch.where(failed.unsqueeze(-1), torch.zeros_like(weights), weights)
        return mu, vertices, weights, failed


def _free_slot(weights: torch.Tensor) -> torch.Tensor:
    """Slot of a new active vertex: the first free one, or the lightest when the buffer is full."""
    free_mask = weights <= 1e-12
    return torch.where(free_mask.any(dim=-1), free_mask.to(weights.dtype).argmax(dim=-1), weights.argmin(dim=-1))


def _rows(frame: Frame, rows: torch.Tensor) -> Frame:
    """The instances ``rows`` (indices) of ``frame``."""
    raw, anchor, scale = (t[rows.to(t.device)] for t in frame[:3])
    return Frame(raw, anchor, scale, {k: v[rows.to(v.device)] for k, v in frame.data.items()})


class RegularizedFrankWolfe(Regularized):
    """The L2-regularised decision (PyEPO's RFWO): ``mu = rfw(pred_cost)`` is
    ``argmin_{mu in conv(Y)} <c_hat, mu> + lambda/2 ||mu||^2`` (``argmax <c_hat, mu> - lambda/2
    ||mu||^2`` for a maximisation), a smoothed decision, not a loss: pair it with a task loss
    (e.g. the squared error to the true decision), or use :class:`RegularizedFenchelYoung`.

    See the module docstring for the iteration and the backward.

    Args:
        layer: any idproj_or layer, or its ``.handle``.
        lambd: the regularisation strength ``lambda`` (default 1, as PyEPO), > 0.
        max_iter: Frank-Wolfe iterations at most (default 10000, as PyEPO).
        tol: an instance stops when its Frank-Wolfe gap is below ``tol`` (default ``1e-6``, as
            PyEPO), >= 0.
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator``,
            ``solve_ratio`` (per oracle call), ``solutions`` (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> rfw = ipo.RegularizedFrankWolfe(layer, lambd=1.0)
        >>> pred = torch.tensor([1.0, 2.0, 2.5], requires_grad=True)
        >>> mu = rfw(pred); [round(v, 4) for v in mu.tolist()]  # halfway between {0, 1} and {2}
        [0.5, 0.5, 0.5]
        >>> mu[0].backward()  # along the face's direction [1, 1, -1]: [1, 1, -1] / 3
        >>> [round(v, 4) for v in pred.grad.tolist()]
        [0.3333, 0.3333, -0.3333]
    """

    def __init__(
        self,
        layer: Any,
        *,
        lambd: float = 1.0,
        max_iter: int = 10000,
        tol: float = 1e-6,
        **options: Unpack[RuleOptions],
    ) -> None:
        super().__init__(layer, lambd=lambd, max_iter=max_iter, tol=tol, options=options)

    def forward(self, pred_cost: Any, **data: Any) -> Any:
        w, batched, dtype = self.flat(pred_cost)
        z, frame = self.prepare(w, self.instance_data(data, len(w)))
        mu = _ProjectOntoHull.apply(z, self, frame)
        return self.unflat(mu, batched, dtype)


class _ProjectOntoHull(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, rule: RegularizedFrankWolfe, frame: Frame) -> torch.Tensor:
        cp = z.detach()
        # rescale by sense and lambd (PyEPO: -1 / lambd for minimisation, 1 / lambd for maximisation)
        scale = -rule.sign / rule.lambd
        mu, vertices, weights, failed = rule.frank_wolfe(scale * cp, cp, frame)
        ctx.save_for_backward(vertices, weights, failed)
        ctx.scale = scale
        return mu

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        vertices, weights, failed = ctx.saved_tensors
        grad_output = zero_failed(grad_output, failed)
        # batched orthogonal projector onto each instance's active hull
        s = (weights > 0).to(vertices.dtype)
        # active-only mean per instance
        n_active = s.sum(dim=-1, keepdim=True).clamp(min=1.0)
        v_mean = (vertices * s.unsqueeze(-1)).sum(dim=-2) / n_active
        # centred, with inactive rows kept at zero
        v_centred = (vertices - v_mean.unsqueeze(-2)) * s.unsqueeze(-1)
        # project grad_output onto the row space of v_centred through its Gram matrix
        gram = v_centred @ v_centred.transpose(-1, -2)
        h = v_centred @ grad_output.unsqueeze(-1)
        # a ridge scaled to the Gram matrix, for a rank-deficient one
        ridge = gram.diagonal(dim1=-2, dim2=-1).amax(dim=-1, keepdim=True).clamp(min=1.0) * 1e-6
        gram.diagonal(dim1=-2, dim2=-1).add_(ridge)
        alpha = torch.linalg.solve(gram, h)
        grad = (v_centred.transpose(-1, -2) @ alpha).squeeze(-1)
        return zero_failed(ctx.scale * grad, failed), None, None


class RegularizedFenchelYoung(Regularized):
    """The Fenchel-Young loss of the L2 regulariser (PyEPO's RFY): ``loss = rfy(pred_cost,
    true_sol)``, with the regularised decision ``mu`` of :class:`RegularizedFrankWolfe`:
    ``lambda/2 ||y*||^2 - lambda/2 ||mu||^2 + s <c_hat, y* - mu>`` (``s = +1`` for minimisation,
    ``-1`` for maximisation), ``>= 0`` and 0 exactly when ``mu = y*``; its gradient is
    ``s (y* - mu)``, no solver call in backward. Reduced by ``reduction`` (``"mean"``, ``"sum"``
    or ``"none"`` for ``(B,)``).

    Args:
        layer: any idproj_or layer, or its ``.handle``.
        lambd: the regularisation strength ``lambda`` (default 1, as PyEPO), > 0.
        max_iter: Frank-Wolfe iterations at most (default 10000, as PyEPO).
        tol: an instance stops when its Frank-Wolfe gap is below ``tol`` (default ``1e-6``, as
            PyEPO), >= 0.
        reduction: as PyEPO, default ``"mean"``.
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator``,
            ``solve_ratio`` (per oracle call), ``solutions`` (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> rfy = ipo.RegularizedFenchelYoung(layer, lambd=1.0)
        >>> pred = torch.tensor([[1.0, 2.0, 2.5]], requires_grad=True)
        >>> loss = rfy(pred, torch.tensor([[1.0, 1.0, 0.0]])); round(loss.item(), 4)  # mu = [0.5, 0.5, 0.5]
        0.375
        >>> loss.backward(); [round(v, 4) for v in pred.grad[0].tolist()]  # mu - y* for a maximisation
        [-0.5, -0.5, 0.5]
    """

    def __init__(
        self,
        layer: Any,
        *,
        lambd: float = 1.0,
        max_iter: int = 10000,
        tol: float = 1e-6,
        reduction: str = "mean",
        **options: Unpack[RuleOptions],
    ) -> None:
        super().__init__(layer, lambd=lambd, max_iter=max_iter, tol=tol, options=options)
        self.reduction = check_reduction(reduction, where=type(self).__name__)

    def forward(self, pred_cost: Any, true_sol: Any, **data: Any) -> torch.Tensor:
        w, _, dtype = self.flat(pred_cost)
        y_star = self.labels(true_sol, w, "true_sol").detach()
        z, frame = self.prepare(w, self.instance_data(data, len(w)))
        cp = z.detach()
        if self.sense == "min":
            r_sol, _, _, failed = self.frank_wolfe(-cp / self.lambd, cp, frame)
            diff = y_star - r_sol
        else:
            r_sol, _, _, failed = self.frank_wolfe(cp / self.lambd, cp, frame)
            diff = r_sol - y_star
        r_sol, diff = torch.nan_to_num(r_sol), torch.nan_to_num(diff)
        omega_w = 0.5 * self.lambd * (y_star**2).sum(dim=-1)
        omega_r = 0.5 * self.lambd * (r_sol**2).sum(dim=-1)
        # with mu held constant, the gradient in z is diff (Danskin)
        loss = (omega_w - omega_r) + torch.einsum("bi,bi->b", z, diff)
        return reduce(nan_failed(loss, failed).to(dtype), self.reduction)
