"""The solve handle: one spec's batch solver, with the checks, reports and failure policy that
every layer shares. It knows nothing of gradients.

Layers and gradient rules (``idproj_or.rules``) call it from their opaque torch operators, through
the solving module's log (:class:`idproj_or.rules.base.SolveLog`).
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

import numpy as np
import torch

from .batch import BatchInfo, BatchSolver, is_dask_executor
from .batch.warm import WarmStates
from .errors import SolverError, SolverWarning, user_stacklevel
from .options import ON_FAILURE, ROUTES, OnFailure, Route
from .solvers.base import DataField, ModelSpec, invariance_basis
from .solvers.scaling import RESOLVED_RANGE, beyond_range
from .statuses import ERROR, cause

_REAL_DTYPES = (
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
)


def real_scalar(value: Any, *, where: str, name: str) -> float:
    """``value`` as a float when it is a real scalar (int, float, numpy scalar, 0-dim tensor);
    otherwise a ValueError naming ``name``."""
    if (isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_complex()) or (
        isinstance(value, np.ndarray) and value.ndim == 0
    ):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}: {name}={value!r} must be a real number")
    return float(value)


def _positive_int_or_none(value: Any, *, where: str, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{where}: {name}={value!r} must be None or a positive int")


def _check_executor(executor: Any, workers: int | None, executor_workers: int | None, *, where: str) -> None:
    if executor is None:
        return
    if workers is not None:
        raise ValueError(f"{where}: pass either workers= or executor=, not both")
    if not isinstance(executor, Executor):
        raise ValueError(f"{where}: executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
    if executor_workers is None and not is_dask_executor(executor):
        raise ValueError(
            f"{where}: executor_workers= must say how many chunks the {type(executor).__name__} runs at once "
            "(its worker count), so that each worker gets work; only a Dask client's executor is asked for it"
        )


# Keywords of the layers' and rules' forward and solve: no data field may take them ("ids":
# the instance ids of warm starts, which travel with the data).
RESERVED_NAMES = frozenset({"costs", "pred_cost", "true_cost", "true_sol", "true_obj", "duals", "ids", "self"})


def check_field_names(fields: tuple[DataField, ...], *, where: str) -> None:
    names = [f.name for f in fields]
    for name in names:
        if not name.isidentifier() or name in RESERVED_NAMES or names.count(name) > 1:
            raise ValueError(
                f"{where}: data name {name!r} must be a Python identifier, used once, and none of "
                f"{', '.join(sorted(RESERVED_NAMES))} (it becomes a keyword of the layer's call)"
            )


# Instance ids are exact in the float64 data channel below this.
IDS_LIMIT = 2**53


def check_ids(value: Any, batch: int, *, where: str) -> torch.Tensor:
    """Instance ids as a ``(batch,)`` float64 tensor (the data channel's dtype, exact below
    2^53): integers, one per instance, distinct, in ``[0, 2^53)``; otherwise a ValueError."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{where}: ids must be a 1-d sequence of ints, got {type(value).__name__}") from None
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex() or t.dtype not in _REAL_DTYPES:
        raise ValueError(f"{where}: ids must hold integers (one id per instance), got dtype {t.dtype}")
    if tuple(t.shape) != (batch,):
        raise ValueError(
            f"{where}: ids must have shape ({batch},), one per instance of the batch, got {tuple(t.shape)}"
        )
    ids = t.to(torch.int64)
    bad = (ids < 0) | (ids >= IDS_LIMIT)
    if bad.any():
        k = int(torch.nonzero(bad)[0])
        raise ValueError(f"{where}: ids[{k}] = {int(ids[k])} is out of range: ids are integers in [0, 2**53)")
    unique, counts = torch.unique(ids, return_counts=True)
    if len(unique) < batch:
        i = int(unique[counts > 1][0])
        at = torch.nonzero(ids == i).flatten().tolist()
        raise ValueError(
            f"{where}: id {i} appears more than once in the batch (at {at}); each instance of a batch "
            "needs its own id (e.g. its index in the dataset)"
        )
    return ids.to(torch.float64)


def _check_route(route: Any, workers: int | None, *, where: str) -> None:
    if route not in ROUTES:
        raise ValueError(f"{where}: route={route!r} must be one of {', '.join(map(repr, ROUTES))}")
    if route == "pool" and workers is None:
        raise ValueError(f"{where}: route='pool' needs workers=k, the number of pool processes")


class SolveHandle:
    """Validates costs, solves a batch (serial, pool or executor), keeps ``last_info`` (per
    thread) and applies ``on_failure``.

    Args:
        spec: the picklable model recipe.
        name: the owning layer's name, for messages.
        workers, route, executor, executor_workers, time_limit, on_failure: see
            :mod:`idproj_or.options`.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        name: str,
        workers: int | None = None,
        route: Route = "auto",
        executor: Executor | None = None,
        executor_workers: int | None = None,
        time_limit: float | None = None,
        on_failure: OnFailure = "raise",
        warm_start: bool | None = None,
    ) -> None:
        _positive_int_or_none(workers, where=name, name="workers")
        _positive_int_or_none(executor_workers, where=name, name="executor_workers")
        if workers is not None and executor_workers is not None:
            raise ValueError(f"{name}: executor_workers= goes with executor=, not workers=")
        _check_executor(executor, workers, executor_workers, where=name)
        _check_route(route, workers, where=name)
        if time_limit is not None:
            seconds = real_scalar(time_limit, where=name, name="time_limit")
            if not (seconds > 0 and math.isfinite(seconds)):
                raise ValueError(f"{name}: time_limit={time_limit!r} must be a positive number of seconds")
            time_limit = seconds
            if not spec.stops_at_time_limit:
                raise ValueError(
                    f"{name}: time_limit is not supported: its solver is exact and polynomial and "
                    "always runs to optimality"
                )
        if on_failure not in ON_FAILURE:
            raise ValueError(f"{name}: on_failure={on_failure!r} must be one of {', '.join(map(repr, ON_FAILURE))}")
        if warm_start not in (None, True, False):
            raise ValueError(f"{name}: warm_start={warm_start!r} must be None (the backend's default), True or False")
        if warm_start and spec.warm_start is None:
            raise ValueError(
                f"{name}: warm_start=True is not supported: its solver takes no start (an exact chunk "
                "solver, or a backend without hints or bases)"
            )
        check_field_names(spec.fields, where=name)
        self.name = name
        self.spec = spec
        # Cost groups (a layer declared with a dict of variables): name -> shape, in the order
        # their entries are concatenated into the flat cost vector.
        self.groups: dict[str, tuple[int, ...]] | None = None
        self.shape: tuple[int, ...] = tuple(spec.shape)
        self.size = math.prod(self.shape)
        self.sense = spec.sense
        self.on_failure: OnFailure = on_failure
        # Warm starts: on where the backend's measured default says so, unless set; an explicit
        # True makes ids required in every forward.
        self.warm_start = bool(spec.warm_start) if warm_start is None else warm_start
        self.ids_required = warm_start is True
        self.states = WarmStates()
        self.batch = BatchSolver(
            spec,
            workers=workers,
            executor=executor,
            time_limit=time_limit,
            route=route,
            executor_workers=executor_workers,
        )
        # Called before each solve; may return a new spec (a CVXPY parameter changed).
        self.refresh: Callable[[], ModelSpec | None] | None = None
        # "auto"'s basis: (the spec it was taken from, its equality rows, the basis), and a
        # version that changes with the rows, so that a stale projection is caught.
        self._basis: tuple[ModelSpec, np.ndarray, torch.Tensor] | None = None
        self.basis_version = 0
        self._warned: set[str] = set()
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]
        state["states"] = None  # a cache: a copy starts cold
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self.states = WarmStates()

    @property
    def last_info(self) -> BatchInfo | None:
        """What the solver reported for the last batch solved by the calling thread."""
        return getattr(self._local, "info", None)

    @property
    def workers(self) -> int | None:
        return self.batch.workers

    @property
    def executor(self) -> Executor | None:
        return self.batch.executor

    @executor.setter
    def executor(self, executor: Executor | None) -> None:
        _check_executor(executor, self.batch.workers, self.batch.executor_workers, where=self.name)
        self.batch.executor = executor

    @property
    def executor_workers(self) -> int | None:
        return self.batch.executor_workers

    @executor_workers.setter
    def executor_workers(self, count: int | None) -> None:
        _positive_int_or_none(count, where=self.name, name="executor_workers")
        if self.batch.workers is not None and count is not None:
            raise ValueError(f"{self.name}: executor_workers= goes with executor=, not workers=")
        _check_executor(self.batch.executor, None, count, where=self.name)
        self.batch.executor_workers = count

    @property
    def route(self) -> Route:
        return self.batch.route

    @route.setter
    def route(self, route: Route) -> None:
        _check_route(route, self.batch.workers, where=self.name)
        self.batch.route = route

    @property
    def time_limit(self) -> float | None:
        return self.batch.time_limit

    def sync(self) -> None:
        """Follow the model: a refreshed spec (a CVXPY parameter changed) replaces the old one."""
        if self.refresh is not None:
            spec = self.refresh()
            if spec is not None:
                self.replace_spec(spec)

    def invariance_basis(self) -> torch.Tensor:
        """The ``(r, n)`` float64 basis of the model's equalities over the cost variables, for
        ``projection="auto"`` (:func:`idproj_or.rules.projection.invariance_basis`), taken from
        the current version of the model (the model is followed first, except while a compiler
        traces: then the solve checks the version, :meth:`check_basis`)."""
        if not torch.compiler.is_compiling():
            self.sync()
        return self._spec_basis()

    def _spec_basis(self) -> torch.Tensor:
        """The basis of the current spec, taken once per spec; a new version when its rows differ."""
        cached = self._basis
        if cached is None or cached[0] is not self.spec:
            a = np.asarray(self.spec.equalities()[0], dtype=np.float64).reshape(-1, self.size)
            if cached is not None and a.shape == cached[1].shape and np.array_equal(a, cached[1]):
                basis = cached[2]
            else:
                self.basis_version += cached is not None
                basis = torch.from_numpy(invariance_basis(a))
            self._basis = cached = (self.spec, a, basis)
        return cached[2]

    def check_basis(self, version: int) -> None:
        """Raise if an "auto" projection used the basis of version ``version`` while the model's
        equality rows have changed since (a compiled forward that could not follow the model)."""
        if version < 0:
            return
        self._spec_basis()  # the model was followed just before (solve_numpy's sync)
        if version != self.basis_version:
            raise ValueError(
                f"{self.name}: the model's equality rows over the cost variables changed after the "
                "compiled forward took projection='auto''s basis from them; call the layer once "
                "outside torch.compile (or torch.compiler.reset()) to follow the model"
            )

    def replace_spec(self, spec: ModelSpec) -> None:
        """Solve ``spec`` from now on (same shape and sense), keeping the routing options."""
        old = self.batch
        self.spec = spec
        self.states.clear()  # states of the old model
        self.batch = BatchSolver(
            spec,
            workers=old.workers,
            executor=old.executor,
            time_limit=old.time_limit,
            route=old.route,
            executor_workers=old.executor_workers,
        )

    @property
    def fields(self) -> dict[str, DataField]:
        """The per-instance data the model accepts, by name."""
        return {f.name: f for f in self.spec.fields}

    def check_data(self, data: Mapping[str, Any], batch: int) -> dict[str, torch.Tensor]:
        """Per-instance data as float64 tensors of shape ``(batch, *field.shape)`` (or with a
        trailing 2 for pairs), broadcast when given unbatched; the checks that do not read
        values (names, types, shapes, gradients; the values are checked in :meth:`solve_numpy`)."""
        fields = self.fields
        out: dict[str, torch.Tensor] = {}
        for name, value in data.items():
            if name == "ids":
                out[name] = check_ids(value, batch, where=self.name)
                continue
            field = fields.get(name)
            if field is None:
                known = ", ".join(fields) if fields else "none: this layer was declared without data"
                raise ValueError(f"{self.name}: unknown data {name!r}; the layer's data: {known}")
            if isinstance(value, torch.Tensor) and value.requires_grad:
                raise ValueError(
                    f"{self.name}: data {name!r} requires grad, but the layer's gradient is with respect "
                    "to the costs only (identity with projection differentiates the cost); pass "
                    f"{name}=tensor.detach() if a constant was meant"
                )
            try:
                t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
            except (TypeError, ValueError, RuntimeError):  # None, strings, ragged lists
                raise ValueError(
                    f"{self.name}: data {name!r} must hold real numbers, got {type(value).__name__} {value!r:.80}"
                ) from None
            if t.dtype == torch.bool or t.is_complex() or t.dtype not in _REAL_DTYPES:
                raise ValueError(f"{self.name}: data {name!r} must hold real numbers, got dtype {t.dtype}")
            t = t.detach().to(device="cpu", dtype=torch.float64)
            shapes = [field.shape] + ([(*field.shape, 2)] if field.pairs else [])
            shape = tuple(t.shape)
            # (B, *shape) before unbatched pairs: with B == 2 == shape[-1] both readings fit, and
            # the leading batch dimension is the rule (pairs then go as (B, *shape, 2))
            if shape == (batch, *field.shape):
                pass
            elif shape in shapes:
                t = t.unsqueeze(0).expand(batch, *shape)
            elif not (len(shape) >= 1 and shape[0] == batch and shape[1:] in shapes):
                forms = " or ".join(f"{s} or {(batch, *s)}" for s in shapes)
                raise ValueError(
                    f"{self.name}: data {name!r} ({field.what}) must have shape {forms} for a batch of "
                    f"{batch}, got {shape}"
                )
            out[name] = t
        return out

    def _check_data_values(self, data: Mapping[str, np.ndarray]) -> None:
        fields = self.fields
        for name, values in data.items():
            field = fields[name]
            bad = np.isnan(values) if field.infinite else ~np.isfinite(values)
            why = "is NaN" if field.infinite else "is not finite"
            if not bad.any() and field.integral:
                bad, why = values != np.rint(values), "is not an integer"
            if not bad.any():
                bad, why = (values < field.low) | (values > field.high), f"is outside [{field.low:g}, {field.high:g}]"
            if not bad.any() and values.ndim == len(field.shape) + 2:
                bad = np.zeros(values.shape, dtype=bool)
                bad[..., 0] = values[..., 0] > values[..., 1]
                why = "is a lower bound above its upper bound"
            if bad.any():
                at = tuple(int(k) for k in np.argwhere(bad)[0])
                raise ValueError(
                    f"{self.name}: data {name!r} ({field.what}) of instance {at[0]}, at position "
                    f"{at[1:]}, {why}: {float(values[at]):g}"
                )

    def check_costs(self, costs: Any) -> tuple[torch.Tensor, bool]:
        """``costs`` as a ``(B, n)`` float tensor and whether it was batched; the checks that do
        not read values (those run in :meth:`solve_numpy`, so that a compiler can trace this).
        A layer with cost groups takes a dict of tensors, one per group, concatenated here."""
        if self.groups is not None:
            costs = self._join_groups(costs)
        if not isinstance(costs, torch.Tensor):
            costs = torch.as_tensor(costs)
        if not costs.is_floating_point():
            raise ValueError(f"{self.name}: costs must be a floating-point tensor, got dtype {costs.dtype}")
        shape = tuple(costs.shape)
        if shape == self.shape:
            batched = False
            costs = costs.unsqueeze(0)
        elif shape[1:] == self.shape:
            batched = True
        else:
            raise ValueError(
                f"{self.name}: expected costs of shape {self.shape} or (B, {', '.join(map(str, self.shape))}),"
                f" got {shape}"
            )
        if shape[0] == 0 and batched:
            raise ValueError(f"{self.name}: empty batch (costs of shape {shape})")
        return costs.reshape(costs.shape[0], -1), batched

    def _check_finite(self, raw: np.ndarray, what: str = "costs") -> None:
        finite = np.isfinite(raw)
        if not finite.all():
            i, j = np.argwhere(~finite)[0].tolist()
            where = tuple(int(k) for k in np.unravel_index(j, self.shape))
            raise ValueError(
                f"{self.name}: {what}[{i}] has a non-finite entry {raw[i, j]} at index {where} (batch index {i})"
            )

    def solve_numpy(
        self,
        z: np.ndarray,
        raw: np.ndarray,
        *,
        data: Mapping[str, np.ndarray] | None = None,
        basis_version: int = -1,
        duals: bool = False,
    ) -> np.ndarray:
        """Decisions for the solver's costs ``z`` (rows) with the per-instance ``data`` (field
        -> ``(B, ...)``, from :meth:`check_data`; its ``"ids"``, when given, are the instance
        ids of warm starts); ``raw`` are the costs the caller passed
        (before projection and noise), checked for non-finite entries and used for the reported
        objective. Rows without a decision are NaN with ``on_failure="nan"``; with ``"raise"``
        the first one raises :class:`SolverError`. ``basis_version``: that of the "auto" basis
        the caller projected with (:meth:`check_basis`), or -1; ``duals``: ask the backend for
        duals, reduced costs and binding constraints (in ``last_info``)."""
        self._check_finite(raw)
        same = _same(z, raw)  # the costs as given (no noise margin): checked once, bound reported
        if not same:
            self._check_finite(z, what="solver costs")
        data = dict(data or {})
        ids = data.pop("ids", None)
        self._check_data_values(data)
        self.sync()
        self.check_basis(basis_version)
        keys = None if ids is None or not self.warm_start else ids.astype(np.int64)
        warm = None if keys is None else self.states.rows(keys)
        result = self.batch.solve(z, data=data, stop_at_failure=self.on_failure == "raise", duals=duals, warm=warm)
        if keys is not None:
            self.states.keep(keys, result.warm)
        sols = result.solutions + 0.0  # -0.0 from LP solvers reads as 0
        objective = np.einsum("ij,ij->i", raw, sols) + result.fixed
        info = BatchInfo(
            result.status,
            result.solver_status,
            objective,
            result.wall_time,
            result.mode,
            self.batch.time_limit,
            result.scaling_error,
            # a bound on the objective the solver optimised: one on the caller's only if it
            # solved the costs as given (not projected or with a noise margin)
            result.bound if same else np.where((z == raw).all(axis=1), result.bound, np.nan),
            result.duals,
            result.reduced_costs,
            result.binding,
        )
        self._local.info = info
        failed = info.failed
        if failed and self.on_failure == "raise":
            i = failed[0]
            hint = (
                f"; its costs span more than floating-point solvers resolve (largest / smallest "
                f"nonzero magnitude above {RESOLVED_RANGE:.0e})"
                if info.status[i] == ERROR and beyond_range(z[i])
                else ""
            )
            raise SolverError(
                f"{self.name}: instance {i} of the batch has no solution: {info.cause(i)} (status "
                f"{info.status[i]}){hint}",
                index=i,
                status=info.status[i],
                solver_status=info.solver_status[i],
            )
        if failed:
            self._warn_once(
                "failed",
                f"{len(failed)} of {len(info)} instances have no decision (instance {failed[0]}: "
                f"{info.cause(failed[0])}); their rows are NaN (on_failure='nan'), see last_info",
            )
        loose = info.not_optimal
        if loose:
            i = loose[0]
            error = result.scaling_error[i]
            why = cause(info.status[i], info.solver_status[i], info.time_limit)
            if error == math.inf:
                why += (
                    "; its costs span more than floating-point solvers resolve (largest / smallest "
                    f"nonzero magnitude above {RESOLVED_RANGE:.0e}; last_info.scaling_error is inf)"
                )
            elif error > 0 and "OPTIMAL" in info.solver_status[i]:
                why += (
                    "; the solver's integer or float arithmetic cannot resolve these costs: the decision "
                    f"may be up to {error:.3g} worse than optimal for that alone (last_info.scaling_error)"
                )
            elif error > 0:  # a heuristic or a time limit: the rounding is not why
                why += f"; the rounding of the costs to the solver's arithmetic can add up to {error:.3g}"
            self._warn_once(
                "not_optimal",
                f"{len(loose)} of {len(info)} decisions are not proven optimal (instance {i}: {why}); see "
                "last_info.status",
            )
        return sols

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"{self.name}: {message}. Shown once per layer.", SolverWarning, stacklevel=user_stacklevel())

    def solve_tensor(
        self, z: torch.Tensor, raw: torch.Tensor, *, data: Mapping[str, torch.Tensor] | None = None, **options: Any
    ) -> torch.Tensor:
        """:meth:`solve_numpy` on tensors (its ``options``: ``basis_version``, ``duals``):
        decisions on ``z``'s device, in ``z``'s dtype."""
        costs = z.detach().to(device="cpu", dtype=torch.float64).numpy()
        given = raw.detach().to(device="cpu", dtype=torch.float64).numpy()
        arrays = {k: v.detach().to(device="cpu", dtype=torch.float64).numpy() for k, v in (data or {}).items()}
        sols = self.solve_numpy(costs, given, data=arrays, **options)
        return torch.from_numpy(sols).to(device=z.device, dtype=z.dtype)

    def _join_groups(self, costs: Any) -> torch.Tensor:
        """The costs of every group, as one ``(B, n)`` or ``(n,)`` tensor in the groups' order."""
        assert self.groups is not None
        if not isinstance(costs, Mapping) or set(costs) != set(self.groups):
            got = sorted(costs) if isinstance(costs, Mapping) else type(costs).__name__
            raise ValueError(f"{self.name}: expected a dict of costs with keys {sorted(self.groups)}, got {got}")
        parts = []
        batch: tuple[int, ...] | None = None
        for name, shape in self.groups.items():
            t = costs[name] if isinstance(costs[name], torch.Tensor) else torch.as_tensor(costs[name])
            lead = tuple(t.shape[: t.ndim - len(shape)])
            if tuple(t.shape[t.ndim - len(shape) :]) != shape or len(lead) > 1 or (batch is not None and lead != batch):
                raise ValueError(
                    f"{self.name}: costs[{name!r}] must have shape {shape} or (B, {', '.join(map(str, shape))}) "
                    f"with the same B for every group, got {tuple(t.shape)}"
                )
            batch = lead
            parts.append(t.reshape(*lead, -1))
        dtype = functools.reduce(torch.promote_types, (p.dtype for p in parts))
        return torch.cat([p.to(dtype) for p in parts], dim=-1)

    def split_groups(self, y: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """Decisions ``(B, n)`` or ``(n,)`` as they were given: one tensor, or a dict per group."""
        if self.groups is None:
            return y
        out: dict[str, torch.Tensor] = {}
        start = 0
        lead = y.shape[:-1]
        for name, shape in self.groups.items():
            size = math.prod(shape)
            out[name] = y[..., start : start + size].reshape(*lead, *shape)
            start += size
        return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two float arrays hold the same values, bit for bit (a memcmp, not a ufunc)."""
    return a.shape == b.shape and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
