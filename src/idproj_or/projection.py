"""Cost projections applied before the solver, as differentiable torch ops (per instance).

Every projection P leaves the solver's argmin unchanged, so the forward solution is the same as
for the raw cost, while autograd through P turns the solver's identity backward into
``-P'(w)^T dL/dy`` (Sahoo et al., ICLR 2023, eq. 11).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Projection = Literal["none", "mean", "norm", "std", "auto"]
PROJECTIONS: tuple[str, ...] = ("none", "mean", "norm", "std", "auto")

# Smooths the norm at 0: a constant cost vector under "std" becomes 0, not NaN, in both passes.
EPS = 1e-12


def check_projection(projection: str) -> str:
    if projection not in PROJECTIONS:
        raise ValueError(
            f"projection={projection!r} is not one of {', '.join(map(repr, PROJECTIONS))}"
        )
    return projection


def mean_center(w: torch.Tensor) -> torch.Tensor:
    return w - w.mean(dim=-1, keepdim=True)


def normalize(w: torch.Tensor) -> torch.Tensor:
    return w * torch.rsqrt((w * w).sum(dim=-1, keepdim=True) + EPS * EPS)


def invariance_projector(a: np.ndarray) -> np.ndarray:
    """Orthogonal projector ``M = A^T (A A^T)^+ A`` onto the row space of ``a`` (n x n).

    ``w - w M`` removes exactly the directions ``A^T l`` that the equalities ``A y = b`` prove
    do not change the argmin.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return np.zeros((a.shape[1], a.shape[1]))
    # Orthonormal basis of the row space via SVD: robust to redundant rows (e.g. the degree
    # rows of a square assignment sum to the same total).
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    rank = int((s > s.max() * max(a.shape) * np.finfo(float).eps).sum())
    basis = vt[:rank]
    return basis.T @ basis


def project(w: torch.Tensor, projection: str, projector: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``projection`` to each row of ``w`` (shape ``(B, n)``).

    ``projector`` is the ``(n, n)`` matrix of :func:`invariance_projector`, required for "auto".
    """
    if projection == "none":
        return w
    if projection == "mean":
        return mean_center(w)
    if projection == "norm":
        return normalize(w)
    if projection == "std":
        return normalize(mean_center(w))
    if projection == "auto":
        if projector is None:
            raise ValueError('projection="auto" needs the invariance projector of the model')
        return normalize(w - w @ projector)
    raise ValueError(f"unknown projection {projection!r}")
