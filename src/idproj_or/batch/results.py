"""What a batch solve returns: the chunks' outcomes gathered in order (:class:`BatchResult`, for
the handle) and what a layer reports per instance (:class:`BatchInfo`, ``layer.last_info``)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..solvers.base import ChunkResult
from ..solvers.certificate import Certified
from ..statuses import FEASIBLE, NOT_SOLVED, OPTIMAL, SOLVED, cause


class InstanceInfo(NamedTuple):
    status: str
    solver_status: str
    objective: float
    wall_time: float
    scaling_error: float
    bound: float


@dataclass(frozen=True)
class BatchInfo:
    """What the solver reported for each instance of a batch.

    ``status[i]`` is the common status (``"optimal"``, ``"feasible"``, ``"infeasible"``, ...; see
    docs/batching.md) and ``solver_status[i]`` the backend's own word; ``objective[i]`` is
    ``sum(c_i * y_i)`` for the cost ``c_i`` passed to the layer (before projection and noise),
    NaN without a decision; ``wall_time[i]`` is the seconds spent in that instance's solve;
    ``mode`` says where the batch ran: ``"serial"`` (in the calling process), ``"pool"`` (the
    layer's process pool; on the first call of ``route="auto"``, all but the first instance,
    which measures the solve time in-process) or ``"executor"``.
    ``objective[i]`` includes the model's own objective when the layer keeps it (CpSatLayer,
    LinearSolverLayer, CvxpyLayer with ``objective="keep"``). ``scaling_error[i]`` bounds how
    much worse than optimal the decision can be because the library scaled the costs to
    integers for the solver (CP-SAT, assignment, knapsack, TSP); 0 when the solver saw them
    exactly. A decision whose bound exceeds the float64 rounding of its objective is reported
    ``"feasible"``, not ``"optimal"``. ``bound[i]`` is the solver's proven bound on
    ``objective[i]`` (the optimum itself for exact solvers; NaN when the backend gives none, or
    when a training noise margin made the solver optimise other costs than the caller's).
    After a solve with ``duals=True`` (``layer.solve(costs, duals=True)``), ``duals`` holds
    ``(B, m)`` constraint duals, ``reduced_costs`` ``(B, n)`` those of the cost entries and
    ``binding`` ``(B, m)`` whether each constraint is tight at the decision (NaN / False rows
    without a decision; None when the backend has none, see its docs).
    """

    status: tuple[str, ...]
    solver_status: tuple[str, ...]
    objective: np.ndarray
    wall_time: np.ndarray
    mode: str
    time_limit: float | None = None
    scaling_error: np.ndarray | None = None
    bound: np.ndarray | None = None
    duals: np.ndarray | None = None
    reduced_costs: np.ndarray | None = None
    binding: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.status)

    def __getitem__(self, i: int) -> InstanceInfo:
        error = 0.0 if self.scaling_error is None else float(self.scaling_error[i])
        bound = math.nan if self.bound is None else float(self.bound[i])
        return InstanceInfo(
            self.status[i], self.solver_status[i], float(self.objective[i]), float(self.wall_time[i]), error, bound
        )

    @property
    def failed(self) -> tuple[int, ...]:
        """Batch indices without a decision."""
        if self.status.count(OPTIMAL) == len(self.status):
            return ()
        return tuple(i for i, s in enumerate(self.status) if s not in SOLVED)

    @property
    def not_optimal(self) -> tuple[int, ...]:
        """Batch indices with a decision not proven optimal."""
        if FEASIBLE not in self.status:
            return ()
        return tuple(i for i, s in enumerate(self.status) if s == FEASIBLE)

    def cause(self, i: int) -> str:
        """Instance ``i``'s outcome in words (e.g. why it has no decision)."""
        return cause(self.status[i], self.solver_status[i], self.time_limit)


@dataclass(frozen=True)
class BatchResult:
    solutions: np.ndarray  # NaN rows for instances without a decision
    status: tuple[str, ...]
    solver_status: tuple[str, ...]
    wall_time: np.ndarray
    mode: str
    fixed: np.ndarray  # the model's own objective at each decision (NaN without one)
    scaling_error: np.ndarray
    bound: np.ndarray  # the solver's bound, in the sense it optimised (NaN: none)
    duals: np.ndarray | None = None
    reduced_costs: np.ndarray | None = None
    binding: np.ndarray | None = None
    warm: np.ndarray | None = None  # (B, s) states to keep (NaN rows: none); None: not requested

    @property
    def solved(self) -> np.ndarray:
        """``(B,)`` mask of the instances with a decision."""
        return _solved(self.status)


def _solved(status: tuple[str, ...]) -> np.ndarray:
    if status.count(OPTIMAL) == len(status):  # the usual batch, without a Python loop over it
        return np.ones(len(status), dtype=bool)
    return np.array([s in SOLVED for s in status], dtype=bool)


def gather(chunks: list[ChunkResult], mode: str) -> BatchResult:
    """The chunks' results, in order, as one batch's (``mode``: where it ran)."""
    sols = np.concatenate([c.solutions for c in chunks])
    times = np.concatenate([c.wall_time for c in chunks])
    status = tuple(itertools.chain.from_iterable(c.status for c in chunks))
    words = tuple(itertools.chain.from_iterable(c.solver_status for c in chunks))
    fixed = np.concatenate([np.zeros(len(c.status)) if c.fixed is None else c.fixed for c in chunks])
    errors = np.concatenate([np.zeros(len(c.status)) if c.scaling_error is None else c.scaling_error for c in chunks])
    bound = np.concatenate([np.full(len(c.status), np.nan) if c.bound is None else c.bound for c in chunks])
    solved = _solved(status)
    extras = (_stack(chunks, f) for f in ("duals", "reduced_costs", "binding", "warm"))
    return BatchResult(sols, status, words, times, mode, np.where(solved, fixed, np.nan), errors, bound, *extras)


def _stack(chunks: list[ChunkResult], field: str) -> np.ndarray | None:
    """One optional per-row array of the chunks, stacked (None when no chunk has it; the rows
    of chunks without it NaN, or False for flags)."""
    parts = [getattr(c, field) for c in chunks]
    like = next((p for p in parts if p is not None), None)
    if like is None:
        return None
    fill = False if like.dtype == bool else np.nan
    return np.concatenate(
        [
            np.full((len(c.status), like.shape[1]), fill, dtype=like.dtype) if p is None else p
            for c, p in zip(chunks, parts)
        ]
    )


def unattempted(costs: np.ndarray) -> ChunkResult:
    """A chunk of instances not attempted (after a failure, with ``stop_at_failure``)."""
    n = len(costs)
    return ChunkResult(np.full_like(costs, np.nan), [NOT_SOLVED] * n, [""] * n, np.zeros(n))


def certified(
    decided: list[tuple[Certified, np.ndarray]], inner: BatchResult | None, rest: np.ndarray, shape: tuple[int, ...]
) -> BatchResult:
    """One batch's result from the rows that certificates decided (each with the batch rows it
    decided) and ``inner``, the solved ``rest`` (None: none)."""
    n = shape[0]
    sols = np.full(shape, np.nan)
    status = np.full(n, OPTIMAL, dtype=object)
    words = np.full(n, "", dtype=object)
    times = np.zeros(n)
    fixed = np.full(n, np.nan)
    errors = np.zeros(n)
    bound = np.full(n, np.nan)
    for cert, rows in decided:
        sols[rows], fixed[rows], bound[rows], words[rows] = cert.x, cert.fixed, cert.bound, cert.word
        times[rows] = cert.seconds / len(rows)
    mode = "serial"
    if inner is not None:
        sols[rest], fixed[rest], errors[rest], bound[rest] = (
            inner.solutions,
            inner.fixed,
            inner.scaling_error,
            inner.bound,
        )
        status[rest], words[rest], times[rest] = inner.status, inner.solver_status, inner.wall_time
        mode = inner.mode
    warm = None
    if inner is not None and inner.warm is not None:  # the decided rows keep their states
        warm = np.full((n, inner.warm.shape[1]), np.nan)
        warm[rest] = inner.warm
    return BatchResult(
        sols, tuple(status.tolist()), tuple(words.tolist()), times, mode, fixed, errors, bound, warm=warm
    )
