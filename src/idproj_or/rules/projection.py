"""Cost projections applied before the solver, as differentiable torch ops (per instance).

Every projection P leaves the solver's argmin unchanged, so the forward solution is the same as
for the raw cost, while autograd through P turns the solver's identity backward into
``-P'(w)^T dL/dy`` (Sahoo et al., ICLR 2023, eq. 11).

P's value is never what the solver sees: ``P(w) = (w - A^T l) / s`` with ``s`` the norm divided
out (1 for "none" and "mean"), and a solver whose tolerances are absolute, or a rounding to
integers, can tell ``3e9, 3, 4, 5`` apart but not ``1, 1e-9, 1.3e-9, 1.7e-9``. So the solver gets
the raw cost back, ``w + s (z - P(w))`` for a cost ``z = P(w) + xi`` (``xi``: the noise margin or
a rule's perturbation), which has the same argmin as ``z`` over every feasible point
(:func:`solver_costs`).
"""

from __future__ import annotations

import torch

from ..options import Projection as Projection  # re-exported: defined once with the options
from ..solvers.base import invariance_basis as invariance_basis  # re-exported: a projection concept

PROJECTIONS: tuple[str, ...] = ("none", "mean", "norm", "std", "auto")

# Smooths the norm at 0: a constant cost vector under "std" becomes 0, not NaN, in both passes.
EPS = 1e-12


def check_projection(projection: str) -> str:
    if projection not in PROJECTIONS:
        raise ValueError(f"projection={projection!r} is not one of {', '.join(map(repr, PROJECTIONS))}")
    return projection


def mean_center(w: torch.Tensor) -> torch.Tensor:
    return w - w.mean(dim=-1, keepdim=True)


def _peak(w: torch.Tensor) -> torch.Tensor:
    """The largest magnitude of each row, detached, and 1 for an all-zero row (a divisor)."""
    peak = w.detach().abs().amax(dim=-1, keepdim=True)
    return torch.where(peak > 0, peak, torch.ones_like(peak))


def normalize(w: torch.Tensor) -> torch.Tensor:
    # w / ||w|| computed as u / ||u|| with u = w / max|w|: the same function of w (so the same
    # gradient), without w * w overflowing (float32 above ~1.8e19) or underflowing.
    u = w / _peak(w)
    return u * torch.rsqrt((u * u).sum(dim=-1, keepdim=True) + EPS * EPS)


def row_norm(w: torch.Tensor) -> torch.Tensor:
    """``||w||`` of each row as a detached float64 ``(B, 1)`` column, without overflow."""
    w = w.detach()
    peak = _peak(w).to(torch.float64)
    return peak * torch.linalg.vector_norm(w.to(torch.float64) / peak, dim=-1, keepdim=True)


def project(w: torch.Tensor, projection: str, basis: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``projection`` to each row of ``w`` (shape ``(B, n)``).

    ``basis`` is the ``(r, n)`` matrix of :func:`invariance_basis`, required for "auto".
    """
    return project_scaled(w, projection, basis)[0]


def project_scaled(
    w: torch.Tensor, projection: str, basis: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``P(w)`` and the detached float64 ``(B, 1)`` norm ``s`` it divided out (1 for "none" and
    "mean"; 1 too for a row that projects to 0, whose every decision ties)."""
    ones = torch.ones(len(w), 1, dtype=torch.float64, device=w.device)
    if projection == "none":
        return w, ones
    if projection == "mean":
        return mean_center(w), ones
    if projection == "norm":
        v = w
    elif projection == "std":
        v = mean_center(w)
    elif projection == "auto":
        if basis is None:
            raise ValueError('projection="auto" needs the invariance basis of the model')
        v = w - (w @ basis.T) @ basis
    else:
        raise ValueError(f"unknown projection {projection!r}")
    s = row_norm(v)
    return normalize(v), torch.where(s > 0, s, ones)


def solver_costs(z: torch.Tensor, raw: torch.Tensor, anchor: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The costs a solver gets for the costs ``z`` near the projected ``anchor = P(raw)``:
    ``raw + scale (z - anchor)`` in float64, detached. Its argmin equals ``z``'s over every
    feasible point (``P(raw)`` and ``raw / scale`` differ by an invariant direction) and it keeps
    the raw cost's resolution: without a perturbation it is ``raw`` itself."""
    raw, z, anchor = (t.detach().to(torch.float64) for t in (raw, z, anchor))
    return raw + scale.to(raw) * (z - anchor)
