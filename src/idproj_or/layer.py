"""The layer shared by every adapter: check -> project -> noise -> opaque batch solve -> tensor."""

from __future__ import annotations

import math
from concurrent.futures import Executor
from typing import Any

import torch

from .adapters.base import ModelSpec
from .batch import BatchInfo
from .handle import OnFailure, SolveHandle, real_scalar, solve_op
from .noise import sign_noise
from .projection import check_projection, invariance_basis, project


class OptLayer(torch.nn.Module):
    """A declared optimisation model as a differentiable layer (identity with projection).

    ``forward(costs)`` maps costs of shape ``shape`` or ``(B, *shape)`` to optimal decisions of the
    same shape, dtype and device. Subclasses only turn a user's model into a :class:`ModelSpec`.

    Args:
        spec: the picklable model recipe.
        projection: ``"none" | "mean" | "norm" | "std" | "auto"`` (see docs/method.md).
        noise: width ``alpha`` of the training-only margin ``xi in {-alpha/2, +alpha/2}^n`` (any
            real scalar, a 0-dim tensor included).
        workers: None solves in-process; ``k`` uses the shared persistent pool of ``k`` processes.
        executor: any ``concurrent.futures.Executor`` (e.g. a Dask client's) to solve on. Not
            pickled: a pickled or ``torch.save``d layer solves in-process until ``layer.executor``
            is set again (a ``deepcopy`` keeps the same executor).
        time_limit: seconds per instance, or None.
        on_failure: ``"raise"``: an instance without a decision raises
            :class:`idproj_or.SolverError`; ``"nan"``: its row of the output is NaN and
            ``last_info`` says why (the other rows and their gradients are unaffected).
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
        on_failure: OnFailure = "raise",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        try:
            self.projection = check_projection(projection)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        self._handle = SolveHandle(
            spec, name=name, workers=workers, executor=executor, time_limit=time_limit, on_failure=on_failure
        )
        self.shape: tuple[int, ...] = tuple(spec.shape)
        self.sense = spec.sense
        self.noise = noise
        self.generator = generator
        basis = None
        if projection == "auto":
            a, _ = spec.equalities()
            basis = torch.from_numpy(invariance_basis(a.reshape(-1, self.size)))
        self.register_buffer("basis", basis, persistent=False)

    @property
    def spec(self) -> ModelSpec:
        return self._handle.spec

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def last_info(self) -> BatchInfo | None:
        """What the solver reported for the last batch this thread solved through the layer
        (per thread: two threads sharing a layer each see their own)."""
        return self._handle.last_info

    @property
    def workers(self) -> int | None:
        return self._handle.workers

    @property
    def executor(self) -> Executor | None:
        return self._handle.executor

    @executor.setter
    def executor(self, executor: Executor | None) -> None:
        self._handle.executor = executor

    @property
    def time_limit(self) -> float | None:
        return self._handle.time_limit

    @property
    def on_failure(self) -> OnFailure:
        return self._handle.on_failure

    @property
    def noise(self) -> float:
        return self._noise

    @noise.setter
    def noise(self, alpha: Any) -> None:
        name = type(self).__name__
        value = real_scalar(alpha, where=name, name="noise")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}: noise={value:g} must be a finite number >= 0")
        self._noise = value

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, sense={self.sense!r}, projection={self.projection!r}, "
            f"noise={self.noise}, workers={self.workers}, on_failure={self.on_failure!r}"
        )

    def forward(self, costs: torch.Tensor) -> torch.Tensor:
        w, batched = self._handle.check_costs(costs)
        out_dtype = w.dtype
        w = w.to(torch.promote_types(w.dtype, torch.float32))
        basis = self.basis.to(w) if self.basis is not None else None
        z = project(w, self.projection, basis)
        if self.training and self._noise > 0:
            z = z + sign_noise(z.shape, self._noise, dtype=z.dtype, device=z.device, generator=self.generator)
        y = solve_op(z, w, self._handle, sense=self.sense)
        y = y.to(out_dtype).reshape(len(w), *self.shape)
        return y if batched else y[0]

    def solve(self, costs: torch.Tensor) -> torch.Tensor:
        """Exact decisions for ``costs`` as given: no projection, no noise, no graph."""
        w, batched = self._handle.check_costs(costs)
        with torch.no_grad():
            w64 = w.to(torch.float64)
            y = self._handle.solve_tensor(w64, w64).to(w.dtype).reshape(len(w), *self.shape)
        return y if batched else y[0]
