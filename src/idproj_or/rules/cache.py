"""Solution caching (Mulamba et al., IJCAI 2021; PyEPO's ``solve_ratio``): a pool of distinct
solutions that stands in for the solver on a share of the calls.

A call solves with probability ``solve_ratio`` (one coin per call, i.e. per batch, as PyEPO) and
adds the new distinct decisions to the pool; otherwise each instance takes the pool member that is
best for its cost, ``argmin_{s in pool} <z, s>`` (``argmax`` for maximisation), as one matmul on
the cost's device. The pool's best is only as good as the pool: an approximation that improves as
the pool grows.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def pool_tolerance(n: int) -> float:
    """L1 distance below which two solutions count as one (PyEPO's ``min(1e-4 n, 0.1)``): LP
    solvers return the same vertex up to round-off."""
    return min(1e-4 * n, 0.1)


class SolutionCache:
    """The pool of one rule.

    Args:
        shape: the decision shape of the layer.
        sense: ``"min"`` or ``"max"``.
        solutions: ``(N, *shape)`` initial members (e.g. a dataset's optimal solutions), or None.
        where: the owner's name, for messages.
    """

    def __init__(self, shape: tuple[int, ...], sense: str, solutions: Any, *, where: str) -> None:
        self.size = math.prod(shape)
        self.sense = sense
        self.pool: torch.Tensor | None = None
        if solutions is not None:
            t = torch.as_tensor(solutions)
            if not t.is_floating_point():
                t = t.to(torch.float64)
            if t.ndim < 1 or tuple(t.shape[1:]) != tuple(shape) or len(t) == 0:
                raise ValueError(
                    f"{where}: solutions must have shape (N, {', '.join(map(str, shape))}) with N >= 1, "
                    f"got {tuple(t.shape)}"
                )
            flat = t.reshape(len(t), -1)
            finite = torch.isfinite(flat).all(dim=1)
            if not finite.all():
                i = int(torch.nonzero(~finite)[0])
                raise ValueError(f"{where}: solutions[{i}] has a non-finite entry")
            self.add(flat)

    def __len__(self) -> int:
        return 0 if self.pool is None else len(self.pool)

    def skip(self, solve_ratio: float, generator: torch.Generator | None) -> bool:
        """Whether this call takes the pool's best instead of solving (never with an empty pool)."""
        if self.pool is None or solve_ratio >= 1.0:
            return False
        if solve_ratio <= 0.0:
            return True
        device = generator.device if generator is not None else None
        return bool(torch.rand((), generator=generator, device=device) >= solve_ratio)

    def best(self, z: torch.Tensor) -> torch.Tensor:
        """For each row of the ``(B, n)`` costs ``z``, the best pool member (first on ties)."""
        assert self.pool is not None
        self.pool = self.pool.to(device=z.device, dtype=z.dtype)
        scores = z @ self.pool.T
        pick = scores.argmax(dim=1) if self.sense == "max" else scores.argmin(dim=1)
        return self.pool[pick]

    def add(self, y: torch.Tensor) -> None:
        """Add the distinct finite rows of the ``(B, n)`` decisions ``y`` that the pool lacks."""
        y = y.reshape(len(y), -1)
        y = y[torch.isfinite(y).all(dim=1)]
        if len(y) == 0:
            return
        fresh = torch.unique(y, dim=0)
        if self.pool is None:
            self.pool = fresh.clone()
            return
        fresh = fresh.to(self.pool)
        new = (torch.cdist(fresh, self.pool, p=1.0) > pool_tolerance(self.size)).all(dim=1)
        if new.any():
            self.pool = torch.cat([self.pool, fresh[new]])
