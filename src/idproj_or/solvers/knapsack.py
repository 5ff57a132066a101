"""Multi-dimensional 0/1 knapsack: item values ``(n,)`` -> the 0/1 items of an optimal packing.

``max sum(w * x)`` s.t. ``weights @ x <= capacities``, solved exactly by our compiled branch and
bound (``_knapsack_bb``: surrogate and per-row LP bounds), which is one to two orders of magnitude
faster than OR-Tools' ``KnapsackSolver``, CP-SAT or a MIP on PyEPO-sized instances (32 items x 2
dims: tens of microseconds a solve), and solves the whole chunk in one compiled call.

The search needs integers. Each weight row is multiplied by the smallest power of ten (up to
10^6) that makes it integral, and its capacity is rounded down on that scale: an exact
reformulation (PyEPO's two-decimal weights work as they are). Values are scaled so that the
instance's largest value maps to ``RESOLUTION`` (2^30) and rounded; "optimal" means optimal for
the rounded values, within ``n * max|w| / RESOLUTION`` of the true optimum. Items of value
``<= 0`` are never packed (dropping an item keeps a packing feasible), so negative projected
values are handled exactly. ``sense="min"`` minimises ``sum(w * x)`` over the same packings
(the items of negative cost are the ones worth packing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import statuses
from ..checks import Sense
from ..statuses import Outcome
from .base import ChunkResult, ModelSpec, ResidentSolver

RESOLUTION = 2**30  # the instance's largest value becomes 1,073,741,824
# How the kernel ended each instance (its ``ends`` codes 0-3): proven optimal, time limit (the
# best packing found), interrupted, not reached.
_KNAPSACK_STATUS = (statuses.OPTIMAL, statuses.FEASIBLE, statuses.INTERRUPTED, statuses.NOT_SOLVED)
_KNAPSACK_WORD = ("OPTIMAL", "FEASIBLE", "INTERRUPTED", "NOT_SOLVED")
# Largest power of ten a weight row is multiplied by to make it integral.
MAX_DECIMALS = 6


def knapsack_arrays(weights: Any, capacities: Any, *, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``weights`` as a float ``(d, n)`` array and ``capacities`` as ``(d,)``, checked."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2 or w.shape[1] == 0:
        raise ValueError(f"{where}: weights must have shape (d, n) or (n,) with n >= 1, got {np.shape(weights)}")
    cap = np.asarray(capacities, dtype=np.float64).reshape(-1)
    if cap.shape != (w.shape[0],):
        raise ValueError(
            f"{where}: capacities must have shape ({w.shape[0]},) to match weights, got {np.shape(capacities)}"
        )
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(cap))):
        raise ValueError(f"{where}: weights and capacities must be finite")
    return w, cap


def integer_row(
    weights: np.ndarray, capacity: float, *, row: int, where: str, hint: str = ""
) -> tuple[np.ndarray, int]:
    """Weights times the smallest power of ten that makes them integers, and the capacity on the
    same scale rounded down (an exact reformulation, since ``w @ x`` is then an integer)."""
    for decimals in range(MAX_DECIMALS + 1):
        scaled = weights * 10.0**decimals
        rounded = np.rint(scaled)
        if np.all(np.abs(scaled - rounded) <= 1e-9 * np.maximum(1.0, np.abs(scaled))):
            cap = capacity * 10.0**decimals
            return rounded.astype(np.int64), int(np.floor(cap + 1e-9 * max(1.0, abs(cap))))
    raise ValueError(
        f"{where}: weights row {row} has more than {MAX_DECIMALS} decimals; integer weights (or "
        f"decimals that scale to integers) are needed: round them{hint}"
    )


class KnapsackBranchAndBound(ResidentSolver):
    def __init__(self, spec: KnapsackSpec) -> None:
        from . import _knapsack_bb  # numba: compiled on first use (~15 s), then loaded from its cache

        self._solve_batch = _knapsack_bb.solve_batch
        self.weights = np.array(spec.weights, dtype=np.int64)
        self.capacities = np.array(spec.capacities, dtype=np.int64)
        self.sign = -1.0 if spec.sense == "min" else 1.0
        self.abort = np.zeros(1, dtype=np.int8)  # set by interrupt(), read by the search
        self.solve_many(np.zeros((1, self.weights.shape[1])), None)  # load the code before timed solves

    def solve(self, cost: np.ndarray, time_limit: float | None) -> Outcome:
        chunk = self.solve_many(cost[None, :], time_limit)
        return Outcome(chunk.solutions[0], chunk.status[0], chunk.solver_status[0])

    def interrupt(self) -> None:
        self.abort[0] = 1

    def solve_many(
        self, costs: np.ndarray, time_limit: float | None, *, stop_at_failure: bool = False, cancel: Any = None
    ) -> ChunkResult:
        t0 = time.perf_counter()
        values = costs * self.sign
        peak = values.max(axis=1, keepdims=True)
        scale = np.divide(RESOLUTION, peak, out=np.zeros_like(peak), where=peak > 0)
        # items rounding to value 0 are never packed (a deterministic choice among ties)
        profits = np.maximum(np.rint(values * scale), 0).astype(np.int64)
        x = np.zeros(profits.shape, dtype=np.int8)
        ends = np.full(len(costs), 3, dtype=np.int8)  # 3: not reached (see _KNAPSACK_STATUS)
        limit = float(time_limit or 0.0)  # always a float: an int would compile a second version
        self.abort[0] = 0
        self._solve_batch(profits, self.weights, self.capacities, limit, x, ends, self.abort)
        times = np.full(len(costs), (time.perf_counter() - t0) / max(len(costs), 1))
        sols = x.astype(np.float64)
        common = [_KNAPSACK_STATUS[e] for e in ends.tolist()]
        sols[[s not in statuses.SOLVED for s in common]] = np.nan
        words = [_KNAPSACK_WORD[e] for e in ends.tolist()]
        return ChunkResult(sols, common, words, times)


@dataclass(frozen=True)
class KnapsackSpec(ModelSpec):
    resident_solver = KnapsackBranchAndBound
    on_caller_thread = True
    weights: tuple[tuple[int, ...], ...]  # (d, n), integral after scaling
    capacities: tuple[int, ...]
    sense: Sense

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (len(self.weights[0]),)

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        # Only items too heavy for some capacity are fixed (to 0); a knapsack has no other
        # equality, so "auto" is "norm" plus those rows.
        w, cap = np.asarray(self.weights), np.asarray(self.capacities)
        heavy = np.flatnonzero((w > cap[:, None]).any(axis=0))
        a = np.zeros((len(heavy), w.shape[1]))
        a[np.arange(len(heavy)), heavy] = 1.0
        return a, np.zeros(len(heavy))
