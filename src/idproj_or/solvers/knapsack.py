"""Multi-dimensional 0/1 knapsack: item values ``(n,)`` -> the 0/1 items of an optimal packing.

``max sum(w * x)`` s.t. ``weights @ x <= capacities``, solved exactly by our compiled branch and
bound (``_knapsack_bb``: surrogate and per-row LP bounds), which is one to two orders of magnitude
faster than OR-Tools' ``KnapsackSolver``, CP-SAT or a MIP on PyEPO-sized instances (32 items x 2
dims: tens of microseconds a solve), and solves the whole chunk in one compiled call.

Weights must be integers: each weight row is multiplied by the smallest power of ten (up to
10^6) that makes it integral, and its capacity is rounded down on that scale: an exact
reformulation (PyEPO's two-decimal weights work as they are; integers of any size stay exact).
An instance may bring its own capacities (data ``capacity``, rounded down on the same scales)
and its own integer weights (data ``weights``, multiplied by the same powers of ten).
Values are not rounded: the search compares float64 sums (after an exact power-of-two scaling),
so "optimal" means optimal up to the float64 rounding of the sums, and ``scaling_error`` is 0;
values on a grid (integers, float32 inputs) prune near-ties as an integer search would
(:func:`prune_gaps`). Items of value ``<= 0`` are never packed (dropping an item keeps a packing feasible), so negative projected
values are handled exactly. ``sense="min"`` minimises ``sum(w * x)`` over the same packings
(the items of negative cost are the ones worth packing).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import statuses
from ..checks import Sense
from .base import NO_DATA, ChunkResult, ChunkSolver, Data, DataField, LinearRows, ModelSpec
from .scaling import EPS

# How the kernel ended each instance (its ``ends`` codes 0-3): proven optimal, time limit (the
# best packing found), interrupted, not reached.
_KNAPSACK_STATUS = (statuses.OPTIMAL, statuses.FEASIBLE, statuses.INTERRUPTED, statuses.NOT_SOLVED)
_KNAPSACK_WORD = ("OPTIMAL", "FEASIBLE", "INTERRUPTED", "NOT_SOLVED")
# Largest power of ten a weight row is multiplied by to make it integral.
MAX_DECIMALS = 6
# Largest capacity on the integer scale: the search adds a weight to a load, both at most this.
INT_LIMIT = 2**62


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


def _snap(x: np.ndarray | float) -> np.ndarray | float:
    """How far from an integer a scaled weight or capacity may be and still count as one: the
    float error of decimal arithmetic (``0.29 * 100 = 28.999999999999996``), a billionth
    relative up to a millionth of a unit, or two ulps, but never a thousandth of a unit (where
    an ulp is that coarse, only integers are integers)."""
    ulps = 2 * np.spacing(np.abs(x))
    return np.minimum(np.maximum(ulps, np.minimum(1e-9 * np.maximum(1.0, np.abs(x)), 1e-6)), 1e-3)


def scaled_row(weights: np.ndarray, *, row: int, where: str, hint: str = "") -> tuple[list[int], float]:
    """Weights times the smallest power of ten that makes them integers (exact Python ints), and
    that power of ten."""
    for decimals in range(MAX_DECIMALS + 1):
        scaled = weights * 10.0**decimals
        rounded = np.rint(scaled)
        if np.all(np.abs(scaled - rounded) <= _snap(scaled)):
            return [int(v) for v in rounded.tolist()], 10.0**decimals
    raise ValueError(
        f"{where}: weights row {row} has more than {MAX_DECIMALS} decimals; integer weights (or "
        f"decimals that scale to integers) are needed: round them{hint}"
    )


def floor_on_scale(capacity: Any, scale: Any) -> np.ndarray:
    """``capacity * scale`` rounded down, where the float error of decimal arithmetic
    (``0.29 * 100 = 28.999999999999996``) counts as the integer above: exact differences."""
    cap = np.asarray(capacity, dtype=np.float64) * scale
    whole = np.floor(cap)
    frac = cap - whole
    return whole + ((frac > 0) & (1.0 - frac <= _snap(cap)))


def _bound(ints: list[int], capacity: float, scale: float, *, row: int, where: str, hint: str) -> int:
    """The capacity on its row's integer scale, at most the row's total weight (beyond it, it
    binds nothing), checked to keep the search's sums in int64."""
    bound = min(int(floor_on_scale(capacity, scale)), sum(ints))
    if bound >= INT_LIMIT:
        raise ValueError(
            f"{where}: capacities[{row}]={capacity!r} is {bound:.3g} on its row's integer scale, "
            f"and its weights sum beyond that; at most 2^62 is supported{hint}"
        )
    return bound


def integer_row(
    weights: np.ndarray, capacity: float, *, row: int, where: str, hint: str = ""
) -> tuple[np.ndarray, int]:
    """Weights times the smallest power of ten that makes them integers, and the capacity on the
    same scale rounded down (an exact reformulation, since ``w @ x`` is then an integer).

    A capacity above the total weight binds nothing and becomes that total, and a weight above
    the capacity becomes the capacity plus one (never packed either way), so that the search's
    sums stay in int64 whatever the magnitudes."""
    ints, scale = scaled_row(weights, row=row, where=where, hint=hint)
    bound = _bound(ints, capacity, scale, row=row, where=where, hint=hint)
    return np.array([min(v, bound + 1) for v in ints], dtype=np.int64), bound


def knapsack_spec(weights: np.ndarray, capacities: np.ndarray, sense: Sense, *, where: str) -> KnapsackSpec:
    """The spec of checked ``(d, n)`` weights and ``(d,)`` default capacities (:func:`knapsack_arrays`).

    Weights are kept whole up to ``INT_LIMIT`` (an instance's capacity may be larger than the
    default one), above it clipped to ``INT_LIMIT``: heavier than any capacity the spec accepts."""
    ints, scales, bounds = [], [], []
    for k in range(len(weights)):
        row, scale = scaled_row(weights[k], row=k, where=where)
        bounds.append(_bound(row, float(capacities[k]), scale, row=k, where=where, hint=""))
        ints.append(tuple(min(v, INT_LIMIT) for v in row))
        scales.append(scale)
    return KnapsackSpec(tuple(ints), tuple(bounds), sense, tuple(scales), tuple(capacities.tolist()))


def prune_gaps(values: np.ndarray) -> np.ndarray:
    """Per row of ``values``, the search's ``gap`` (:mod:`._knapsack_bb`): just below the
    largest power of two ``g`` that divides every positive value, when the bound's float error
    (at most ``1.5 eps`` times the total positive value) leaves room below ``g``; else 0."""
    positive = np.maximum(values, 0.0)
    mantissa, exponent = np.frexp(positive)
    bits = (mantissa * 2.0**53).astype(np.int64)  # exact: the 53-bit significands
    lowest = np.ldexp((bits & -bits).astype(np.float64), exponent - 53)  # each value's last bit
    unit = np.where(positive > 0, lowest, np.inf).min(axis=1)
    gap = unit - 3 * EPS * positive.sum(axis=1)
    return np.where(np.isfinite(unit) & (gap > 0), gap, 0.0)


class KnapsackBranchAndBound(ChunkSolver):
    def __init__(self, spec: KnapsackSpec) -> None:
        from . import _knapsack_bb  # numba: compiled on first use (~15 s), then loaded from its cache

        self._solve_batch = _knapsack_bb.solve_batch
        self.weights = np.array(spec.weights, dtype=np.int64)
        self.capacities = np.array(spec.capacities, dtype=np.int64)
        self.given_capacities = np.array(spec.given_capacities)
        self.scales = np.array(spec.scales)
        self.factors = self.scales.astype(np.int64)[:, None]  # exact: powers of ten up to 10^6
        # an instance's capacity above its row's total weight binds nothing: it becomes that total
        self.totals = np.array([min(sum(row), INT_LIMIT) for row in spec.weights], dtype=np.int64)
        self.sign = -1.0 if spec.sense == "min" else 1.0
        self.abort = np.zeros(1, dtype=np.int8)  # set by interrupt(), read by the search
        self.solve_chunk(np.zeros((1, self.weights.shape[1])), None, NO_DATA)  # load the code before timed solves

    def interrupt(self) -> None:
        self.abort[0] = 1

    def integer_data(self, data: Data, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each instance's weights and capacities on the rows' integer scales: the weight
        matrices ``(W, d, items)``, which of them each instance has ``(n,)``, and the capacities
        ``(n, d)``, rounded down as the spec's were; the spec's where the data leave them out."""
        if not data:
            return self.weights[None], np.zeros(n, dtype=np.int64), np.tile(self.capacities, (n, 1))
        if "weights" in data:  # checked integral and small enough for int64 sums on these scales
            weights = data["weights"].astype(np.int64) * self.factors
            which, totals = np.arange(n), weights.sum(axis=2)
        else:
            weights, which, totals = self.weights[None], np.zeros(n, dtype=np.int64), self.totals
        caps = data.get("capacity", self.given_capacities[None])
        scaled = np.minimum(floor_on_scale(caps, self.scales), totals)
        return weights, which, np.minimum(scaled.astype(np.int64), totals)

    def solve_chunk(self, costs: np.ndarray, time_limit: float | None, data: Data) -> ChunkResult:
        t0 = time.perf_counter()
        values = costs * self.sign
        # Largest positive value to [0.5, 1): exact, and no sum of values can overflow.
        peak = np.maximum(values.max(axis=1, keepdims=True), 0.0)
        values = np.ldexp(values, -np.frexp(peak)[1])
        x = np.zeros(values.shape, dtype=np.int8)
        ends = np.full(len(costs), 3, dtype=np.int8)  # 3: not reached (see _KNAPSACK_STATUS)
        limit = float(time_limit or 0.0)  # always a float: an int would compile a second version
        weights, which, caps = self.integer_data(data, len(costs))
        self.abort[0] = 0
        self._solve_batch(values, weights, which, caps, prune_gaps(values), limit, x, ends, self.abort)
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
    weights: tuple[tuple[int, ...], ...]  # (d, n), integral after scaling, at most INT_LIMIT
    capacities: tuple[int, ...]  # the default capacities on the rows' integer scales
    sense: Sense
    scales: tuple[float, ...]  # each row's power of ten (weights and capacities times it are its scale)
    given_capacities: tuple[float, ...]  # the default capacities as given (for an instance's weights)

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (len(self.weights[0]),)

    fields: tuple[DataField, ...] = field(init=False)  # set from the others (read when tracing)

    def __post_init__(self) -> None:
        # Rows whose weights sum beyond INT_LIMIT take capacities below INT_LIMIT / 2 on their
        # scale (with room for float error), so that clipped weights stay heavier than any.
        huge = [s for row, s in zip(self.weights, self.scales) if sum(row) >= INT_LIMIT]
        high = min((INT_LIMIT / 2 / s for s in huge), default=math.inf)
        d, n = len(self.weights), len(self.weights[0])
        capacity = DataField("capacity", (d,), "the capacities", low=0.0, high=high)
        # An instance's weights: integers (times each row's power of ten on its scale), small
        # enough that a row's total stays below INT_LIMIT / 2 on it.
        most = math.floor(INT_LIMIT / 2 / n / max(self.scales))
        weights = DataField("weights", (d, n), "the item weights", integral=True, low=0.0, high=most)
        object.__setattr__(self, "fields", (capacity, weights))

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        # A knapsack has no equality: "auto" is "norm". (An item heavier than the default
        # capacity is always 0 at that capacity, but not at an instance's larger one.)
        n = len(self.weights[0])
        return np.zeros((0, n)), np.zeros(0)

    def linear_rows(self, data: Data = NO_DATA) -> LinearRows:
        # weights @ y <= capacities (as given, or the instance's), 0 <= y <= 1
        weights = data.get("weights")
        if weights is None:
            weights = np.array(self.weights, dtype=np.float64) / np.array(self.scales)[:, None]
        capacities = np.asarray(data.get("capacity", self.given_capacities), dtype=np.float64)
        d, n = weights.shape
        return LinearRows(
            np.asarray(weights, dtype=np.float64),
            np.full(d, -np.inf),
            capacities.reshape(d),
            np.zeros(n),
            np.ones(n),
            np.arange(d),
        )
