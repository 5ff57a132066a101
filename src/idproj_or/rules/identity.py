"""Identity with projection (Sahoo et al., ICLR 2023), the rule of every layer.

Forward: check -> project (differentiable torch ops, per instance) -> training-only noise margin
-> exact batch solve through the handle. The solve is one opaque torch operator,
``idproj_or::identity_solve``: the compiler sees a black box with the input's shape, never traces
into the solver, and autograd passes ``sign * grad`` through it (``-I`` for minimisation, ``+I``
for maximisation; no solver call in backward). Autograd through the projection does the rest.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import torch

from ..batch import BatchInfo
from ..handle import SolveHandle, handle_for, real_scalar
from ..options import LayerOptions, OnFailure, with_defaults
from ..solvers.base import ModelSpec
from .noise import sign_noise
from .projection import check_projection, invariance_basis, project

if TYPE_CHECKING:
    from typing_extensions import Unpack


class OptLayer(torch.nn.Module):
    """A declared optimisation model as a differentiable layer (identity with projection).

    ``forward(costs)`` maps costs of shape ``shape`` or ``(B, *shape)`` to optimal decisions of the
    same shape, dtype and device. Subclasses only turn a user's model into a :class:`ModelSpec`.

    Args:
        spec: the picklable model recipe.
        **options: ``projection``, ``noise``, ``workers``, ``executor``, ``time_limit``,
            ``on_failure``, ``generator`` (:mod:`idproj_or.options`).
    """

    def __init__(self, spec: ModelSpec, **options: Unpack[LayerOptions]) -> None:
        super().__init__()
        name = type(self).__name__
        opts = with_defaults(options, where=name)
        projection = opts["projection"]
        try:
            self.projection = check_projection(projection)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        self._handle = SolveHandle(
            spec,
            name=name,
            workers=opts["workers"],
            executor=opts["executor"],
            time_limit=opts["time_limit"],
            on_failure=opts["on_failure"],
        )
        self.shape: tuple[int, ...] = tuple(spec.shape)
        self.sense = spec.sense
        self.noise = opts["noise"]
        self.generator = opts["generator"]
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
        y = identity_solve(z, w, self._handle, sense=self.sense)
        y = y.to(out_dtype).reshape(len(w), *self.shape)
        return y if batched else y[0]

    def solve(self, costs: torch.Tensor) -> torch.Tensor:
        """Exact decisions for ``costs`` as given: no projection, no noise, no graph."""
        w, batched = self._handle.check_costs(costs)
        with torch.no_grad():
            w64 = w.to(torch.float64)
            y = self._handle.solve_tensor(w64, w64).to(w.dtype).reshape(len(w), *self.shape)
        return y if batched else y[0]


# Defined with torch.library.Library rather than torch.library.custom_op, whose first call
# imports torch._dynamo (~2 s) even in plain eager code.
_LIB = torch.library.Library("idproj_or", "DEF")
_LIB.define("identity_solve(Tensor z, Tensor raw, int key, float sign) -> Tensor")


def _solve(z: torch.Tensor, raw: torch.Tensor, key: int, sign: float) -> torch.Tensor:
    return handle_for(key).solve_tensor(z, raw)


def _fake(z: torch.Tensor, raw: torch.Tensor, key: int, sign: float) -> torch.Tensor:
    return torch.empty_like(z)


_LIB.impl("identity_solve", _solve, "CompositeExplicitAutograd")
torch.library.register_fake("idproj_or::identity_solve", _fake, lib=_LIB)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.sign = inputs[3]


def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
    return (grad if ctx.sign > 0 else -grad), None, None, None


torch.library.register_autograd("idproj_or::identity_solve", _backward, setup_context=_setup_context, lib=_LIB)


def _no_vmap(info: Any, in_dims: Any, *args: Any) -> Any:
    raise ValueError(
        "idproj_or layers do not run under torch.func.vmap: the solver batches already; pass the "
        "batch as the first dimension of the costs, layer(costs) with costs of shape (B, *shape)"
    )


torch.library.register_vmap("idproj_or::identity_solve", _no_vmap, lib=_LIB)


def identity_solve(z: torch.Tensor, raw: torch.Tensor, handle: SolveHandle, *, sense: str) -> torch.Tensor:
    """``y = solve(z)`` as the opaque operator; backward ``dL/dz = -dL/dy`` for min, ``+dL/dy``
    for max. ``raw`` is the caller's cost (checked and used for the reported objective)."""
    return torch.ops.idproj_or.identity_solve(z, raw.detach(), handle.key, 1.0 if sense == "max" else -1.0)
