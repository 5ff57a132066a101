"""Identity with projection (Sahoo et al., ICLR 2023): what every layer applies
(:class:`OptLayer`, over its own handle) and the same as a rule over an existing layer
(:class:`ProjectedIdentity`, for the options only rules take); both run
:func:`identity_forward`.

Forward: check -> project (differentiable torch ops, per instance) -> training-only noise margin
-> exact batch solve through the handle, of the raw cost plus the margin at the raw cost's scale
(the same argmin as the projected cost, :func:`~idproj_or.rules.projection.solver_costs`). The
solve is one opaque torch operator, ``idproj_or::identity_solve``: the compiler sees a black box
with the input's shape, never traces into the solver, and autograd passes ``sign * grad`` through
it (``-I`` for minimisation, ``+I`` for maximisation; no solver call in backward; exactly 0 for
an instance without a decision under ``on_failure="nan"``). Autograd through the projection does
the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import torch

from ..handle import SolveHandle
from ..options import LayerOptions, OnFailure, Route, RuleOptions, with_defaults
from ..solvers.base import ModelSpec
from .base import (
    Frame,
    HandleModule,
    Rule,
    as_handle,
    empty_like_first,
    failed_rows,
    log_for,
    pack_data,
    rule_options,
    solve_op,
    zero_failed,
)
from .projection import solver_costs

if TYPE_CHECKING:
    from typing_extensions import Unpack


def identity_forward(
    module: HandleModule,
    costs: Any,
    data: dict[str, Any],
    decide: Callable[[torch.Tensor, Frame], torch.Tensor] | None = None,
) -> Any:
    """Identity with projection of ``costs`` (``shape`` or ``(B, *shape)``; a dict per group for
    a model with cost groups) with the instances' ``data``: check, project, add the training
    noise margin, and solve through the opaque ``idproj_or::identity_solve`` (backward ``-+I``),
    or through ``decide`` (straight-through: the decision's value, the gradient of ``-+z``)."""
    w, batched, dtype = module.flat(costs)
    z, frame = module.prepare(w, module.instance_data(data, len(w)))
    if decide is None:
        costs64 = solver_costs(z, *frame[:3])
        names, values = pack_data(frame.data, len(w))
        y = torch.ops.idproj_or.identity_solve(
            z, costs64, frame.raw, values, names, module.basis_version, module.solve_log.key
        )
    else:
        y = decide(z, frame)
        step = z - z.detach()
        y = y - module.sign * torch.where(failed_rows(y)[:, None], torch.zeros_like(step), step)
    return module.unflat(y, batched, dtype)


class ProjectedIdentity(Rule):
    """Identity with projection as a rule over an existing layer (what every layer applies in
    its own forward), for the options only rules take: ``solve_ratio`` and ``solutions``.

    ``y = rule(pred)`` returns ``y(P(pred) + xi)``; backward ``-P'^T dL/dy`` for minimisation,
    ``+P'^T dL/dy`` for maximisation, with no solver call. ``projection="none"`` is PyEPO's NID.

    Named for what it does, the identity Jacobian taken through the projection: a plain
    ``Identity`` reads as a no-op module to PyTorch users (``torch.nn.Identity``), and
    ``IdentityProjection`` as a projection that leaves the costs as they are.
    ``ipo.Identity``, the rule's first name, is this same class.

    Args:
        layer: any idproj_or layer, or its ``.handle``.
        **options: ``projection`` (default ``"auto"`` here, as for layers), ``noise``,
            ``generator``, ``solve_ratio``, ``solutions`` (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> nid = ipo.ProjectedIdentity(layer, projection="none")
        >>> pred = torch.tensor([1.0, 2.0, 2.5], requires_grad=True)
        >>> y = nid(pred); y.tolist()
        [1.0, 1.0, 0.0]
        >>> y.sum().backward(); pred.grad.tolist()  # +I for a maximisation
        [1.0, 1.0, 1.0]
    """

    def __init__(self, layer: Any, **options: Unpack[RuleOptions]) -> None:
        name = type(self).__name__
        options = {"projection": "auto", **options}
        super().__init__(as_handle(layer, where=name), rule_options(options, where=name))

    def forward(self, costs: Any, **data: Any) -> Any:
        """Decisions for ``costs`` (``shape`` or ``(B, *shape)``; a dict per group for a layer
        with cost groups) with the instances' ``data`` (keywords declared with the layer)."""
        return identity_forward(self, costs, data, None if self.cache is None else self.decide)


_V = TypeVar("_V")


class _FromHandle(Generic[_V]):
    """A layer attribute that is its handle's: ``layer.route`` reads ``layer.handle.route``; a
    ``settable`` one sets the handle's too (which checks the value)."""

    def __init__(self, *, settable: bool = False) -> None:
        self.settable = settable

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, layer: None, owner: type) -> _FromHandle[_V]: ...

    @overload
    def __get__(self, layer: HandleModule, owner: type) -> _V: ...

    def __get__(self, layer: HandleModule | None, owner: type) -> _V | _FromHandle[_V]:
        return self if layer is None else getattr(layer.handle, self.name)

    def __set__(self, layer: HandleModule, value: _V) -> None:
        if not self.settable:  # what a property without a setter says
            raise AttributeError(f"property {self.name!r} of {type(layer).__name__!r} object has no setter")
        setattr(layer.handle, self.name, value)


class OptLayer(HandleModule):
    """A declared optimisation model as a differentiable layer (identity with projection).

    ``forward(costs)`` maps costs of shape ``shape`` or ``(B, *shape)`` to optimal decisions of the
    same shape, dtype and device. Subclasses only turn a user's model into a :class:`ModelSpec`.
    The layer owns its solve handle and is not a rule: a rule over it (``ipo.SPOPlus(layer)``)
    solves through the same handle but keeps its own ``last_info``.

    Args:
        spec: the picklable model recipe.
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``, ``on_failure``, ``generator``,
            ``warm_start`` (:mod:`idproj_or.options`).
    """

    def __init__(self, spec: ModelSpec, **options: Unpack[LayerOptions]) -> None:
        name = type(self).__name__
        opts = with_defaults(options, where=name)
        handle = SolveHandle(
            spec,
            name=name,
            workers=opts["workers"],
            route=opts["route"],
            executor=opts["executor"],
            executor_workers=opts["executor_workers"],
            time_limit=opts["time_limit"],
            on_failure=opts["on_failure"],
            warm_start=opts["warm_start"],
        )
        super().__init__(handle, opts)

    def forward(self, costs: Any, **data: Any) -> Any:
        """Decisions for ``costs`` (``shape`` or ``(B, *shape)``; a dict per group for a layer
        with cost groups) with the instances' ``data`` (keywords declared with the layer) and
        ``ids=`` (the instances' ids, for warm starts)."""
        return identity_forward(self, costs, data)

    spec = _FromHandle[ModelSpec]()
    workers = _FromHandle[int | None]()
    executor = _FromHandle[Executor | None](settable=True)
    executor_workers = _FromHandle[int | None](settable=True)
    """How many chunks the executor runs at once (None: a Dask client's executor is asked)."""
    route = _FromHandle[Route](settable=True)
    """``"auto"``, ``"pool"`` or ``"serial"``: where batches run (:mod:`idproj_or.options`)."""
    time_limit = _FromHandle[float | None]()
    on_failure = _FromHandle[OnFailure]()
    warm_start = _FromHandle[bool]()
    """Whether calls with ``ids=`` start each instance from its previous solve."""

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, workers={self.workers}, route={self.route!r}, on_failure={self.on_failure!r}"

    def solve(self, costs: Any, *, duals: bool = False, **data: Any) -> Any:
        """Exact decisions for ``costs`` as given, with the instances' ``data``: no projection,
        no noise, no graph. ``duals=True`` asks the backend for constraint duals, reduced costs
        and binding constraints (in :attr:`last_info`, where it has them)."""
        w, batched = self._handle.check_costs(costs)
        checked = self._handle.check_data(data, len(w))
        with torch.no_grad():
            w64 = w.to(torch.float64)
            y = self._log.solve(w64, w64, data=checked, duals=duals)
            y = y.to(w.dtype).reshape(len(w), *self.shape)
        return self._handle.split_groups(y if batched else y[0])


# Defined with torch.library.Library rather than torch.library.custom_op, whose first call
# imports torch._dynamo (~2 s) even in plain eager code.
_LIB = torch.library.Library("idproj_or", "FRAGMENT")
# z: the projected (noisy) cost, which receives the gradient; costs: what the solver solves (z at
# the raw scale); raw: the caller's cost (checked, and used for the reported objective).
# log: the solving module's (:class:`~idproj_or.rules.base.SolveLog`), which leads to its handle.
_LIB.define(
    "identity_solve(Tensor z, Tensor costs, Tensor raw, Tensor data, str names, int version, int log) -> Tensor"
)


def _solve(
    z: torch.Tensor, costs: torch.Tensor, raw: torch.Tensor, data: torch.Tensor, names: str, version: int, log: int
) -> torch.Tensor:
    return solve_op(costs, raw, data, names, version, log).to(z.dtype)


_LIB.impl("identity_solve", _solve, "CompositeExplicitAutograd")
torch.library.register_fake("idproj_or::identity_solve", empty_like_first, lib=_LIB)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    # +I for maximisation, -I for minimisation
    ctx.sign = 1.0 if log_for(inputs[-1]).handle.sense == "max" else -1.0
    ctx.save_for_backward(failed_rows(output))


def _backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    (failed,) = ctx.saved_tensors
    grad = zero_failed(grad if ctx.sign > 0 else -grad, failed)
    return grad, None, None, None, None, None, None  # the data carries no gradient


torch.library.register_autograd("idproj_or::identity_solve", _backward, setup_context=_setup_context, lib=_LIB)


def _no_vmap(info: Any, in_dims: Any, *args: Any) -> Any:
    raise ValueError(
        "idproj_or layers do not run under torch.func.vmap: the solver batches already; pass the "
        "batch as the first dimension of the costs, layer(costs) with costs of shape (B, *shape)"
    )


torch.library.register_vmap("idproj_or::identity_solve", _no_vmap, lib=_LIB)
