"""The layer shared by every adapter: validate -> project -> noise -> batch solve -> tensor."""

from __future__ import annotations

import math
from concurrent.futures import Executor

import numpy as np
import torch

from .adapters.base import ModelSpec
from .autograd import identity_solve
from .batch import BatchInfo, BatchSolver
from .errors import SolverError
from .noise import sign_noise
from .projection import check_projection, invariance_basis, project


class OptLayer(torch.nn.Module):
    """A declared optimisation model as a differentiable layer (identity with projection).

    ``forward(costs)`` maps costs of shape ``shape`` or ``(B, *shape)`` to optimal decisions of the
    same shape, dtype and device. Subclasses only turn a user's model into a :class:`ModelSpec`.

    Args:
        spec: the picklable model recipe.
        projection: ``"none" | "mean" | "norm" | "std" | "auto"`` (see docs/method.md).
        noise: width ``alpha`` of the training-only margin ``xi in {-alpha/2, +alpha/2}^n``.
        workers: None solves in-process; ``k`` uses the shared persistent pool of ``k`` processes.
        executor: any ``concurrent.futures.Executor`` (e.g. a Dask client's) to solve on.
        time_limit: seconds per instance, or None.
        generator: ``torch.Generator`` for the noise; the global RNG when None.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        projection: str = "auto",
        noise: float = 0.0,
        workers: int | None = None,
        executor: Executor | None = None,
        time_limit: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.projection = check_projection(projection)
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"{name}: workers={workers!r} must be None or a positive int")
        if workers is not None and executor is not None:
            raise ValueError(f"{name}: pass either workers= or executor=, not both")
        if executor is not None and not isinstance(executor, Executor):
            raise ValueError(f"{name}: executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
        if time_limit is not None and not (time_limit > 0 and math.isfinite(time_limit)):
            raise ValueError(f"{name}: time_limit={time_limit!r} must be a positive number of seconds")
        self.spec = spec
        self.shape: tuple[int, ...] = tuple(spec.shape)
        self.sense = spec.sense
        self.noise = noise
        self.generator = generator
        self.workers = workers
        self.executor = executor
        self.time_limit = time_limit
        self._batch = BatchSolver(spec, workers=workers, executor=executor, time_limit=time_limit)
        self.last_info: BatchInfo | None = None
        basis = None
        if projection == "auto":
            a, _ = spec.equalities()
            basis = torch.from_numpy(invariance_basis(a.reshape(-1, self.size)))
        self.register_buffer("basis", basis, persistent=False)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def noise(self) -> float:
        return self._noise

    @noise.setter
    def noise(self, alpha: float) -> None:
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"{type(self).__name__}: noise={alpha!r} must be a finite number >= 0")
        self._noise = float(alpha)

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, sense={self.sense!r}, projection={self.projection!r}, "
            f"noise={self.noise}, workers={self.workers}"
        )

    def _flatten(self, costs: torch.Tensor) -> tuple[torch.Tensor, bool]:
        name = type(self).__name__
        if not isinstance(costs, torch.Tensor):
            costs = torch.as_tensor(costs)
        if not costs.is_floating_point():
            raise ValueError(f"{name}: costs must be a floating-point tensor, got dtype {costs.dtype}")
        shape = tuple(costs.shape)
        if shape == self.shape:
            batched = False
            costs = costs.unsqueeze(0)
        elif shape[1:] == self.shape:
            batched = True
        else:
            raise ValueError(
                f"{name}: expected costs of shape {self.shape} or (B, {', '.join(map(str, self.shape))}),"
                f" got {shape}"
            )
        if costs.shape[0] == 0:
            raise ValueError(f"{name}: empty batch (costs of shape {shape})")
        w = costs.reshape(costs.shape[0], -1)
        finite = torch.isfinite(w)
        if not bool(finite.all()):
            bad = (~finite).nonzero()[0].tolist()
            i, j = bad
            where = np.unravel_index(j, self.shape)
            value = w[i, j].item()
            raise ValueError(
                f"{name}: costs[{i}] has a non-finite entry {value} at index "
                f"{tuple(int(k) for k in where)} (batch index {i})"
            )
        return w, batched

    def forward(self, costs: torch.Tensor) -> torch.Tensor:
        w, batched = self._flatten(costs)
        out_dtype = w.dtype
        w = w.to(torch.promote_types(w.dtype, torch.float32))
        basis = self.basis.to(w) if self.basis is not None else None
        z = project(w, self.projection, basis)
        if self.training and self._noise > 0:
            z = z + sign_noise(z.shape, self._noise, dtype=z.dtype, device=z.device, generator=self.generator)
        y = identity_solve(z, self._solve, sense=self.sense)
        y = y.to(out_dtype).reshape(len(w), *self.shape)
        return y if batched else y[0]

    def _solve(self, z: torch.Tensor) -> torch.Tensor:
        costs = z.to(device="cpu", dtype=torch.float64).numpy()
        result = self._batch.solve(costs)
        self.last_info = result.info
        if result.failed is not None:
            i = result.failed
            status = result.info.status[i]
            raise SolverError(
                f"{type(self).__name__}: instance {i} of the batch has no solution "
                f"(solver status {status})",
                index=i,
                status=status,
            )
        return torch.from_numpy(result.solutions).to(device=z.device, dtype=z.dtype)

    def solve(self, costs: torch.Tensor) -> torch.Tensor:
        """Exact decisions for ``costs`` as given: no projection, no noise, no graph."""
        w, batched = self._flatten(costs)
        with torch.no_grad():
            y = self._solve(w.to(torch.float64)).to(w.dtype).reshape(len(w), *self.shape)
        return y if batched else y[0]
