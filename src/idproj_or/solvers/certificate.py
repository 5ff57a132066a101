"""The box certificate: an exact answer without a solve, for linear models.

For ``min sum(t_j x_j)`` over ``low <= x <= high`` and linear rows ``row_low <= A x <= row_high``,
the corner ``x_j = low_j`` where ``t_j > 0`` and ``high_j`` where ``t_j < 0`` attains the smallest
objective over the whole box, a relaxation of the feasible set. When that corner satisfies every
row it is optimal, whatever the rest of the model: no solver can do better. A variable with
``t_j = 0`` may take any value of its range, so the rows must hold over that whole range (interval
arithmetic); it takes its lower bound. ``max`` mirrors it.

In decision-focused learning this is common: SPO+ solves at ``2 c_hat - c``, often negative for a
maximisation (a knapsack's best set is then the empty one), and the early epochs of training predict
costs whose favoured corner is feasible. The check is a few matrix products per batch, in the
caller, before any instance is shipped to a solver; certified rows are reported ``"optimal"`` with
solver status ``"BOX_CERTIFICATE"``, and the same rows are certified on every route (serial, pool,
executor), so results stay identical.

Integral models (CP-SAT's) are checked exactly: an instance whose row sums could pass 2^52 in
magnitude is left to the solver. Others are checked within ``FLOAT_TOLERANCE`` relative, the
feasibility tolerance solvers use.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse

from .base import Data
from .bounds import BOTH, LOWER, UPPER, BoundField

BOX_CERTIFICATE = "BOX_CERTIFICATE"
FLOAT_TOLERANCE = 1e-9
# Integral data at most this large: every sum of a row is exact in float64.
EXACT_LIMIT = 2.0**52


class Certified(NamedTuple):
    """The rows of a batch the certificate decides: ``mask`` ``(B,)``; for those rows the cost
    entries' values ``x`` ``(k, n)``, the model's own objective there ``fixed`` and the optimum
    in the user's sense ``bound``; ``seconds`` spent on the whole check."""

    mask: np.ndarray
    x: np.ndarray
    fixed: np.ndarray
    bound: np.ndarray
    seconds: float


@dataclass(frozen=True, eq=False)
class LinearBox:
    """A linear model as the certificate reads it (plain arrays: it travels with the spec).

    Args:
        var_index: ``(n,)`` the model variable of each cost entry (repeats sum).
        low, high: ``(v,)`` the variables' bounds (``-inf`` / ``inf`` when free).
        matrix: the ``(m, v)`` row coefficients (CSR).
        row_low, row_high: ``(m,)`` the rows' bounds.
        own: ``(v,)`` the model's own objective coefficients; ``own_offset`` its constant.
        sign: 1 for minimisation, -1 for maximisation.
        bounds: the data names (per-instance bounds of variables or constraints) and
            ``row_of``: each constraint index's row (-1: none).
        integral: every coefficient and bound is an integer (so are an instance's data).
    """

    var_index: np.ndarray
    low: np.ndarray
    high: np.ndarray
    matrix: sparse.csr_array
    row_low: np.ndarray
    row_high: np.ndarray
    own: np.ndarray
    own_offset: float
    sign: float
    bounds: tuple[BoundField, ...]
    row_of: np.ndarray
    integral: bool

    def _key(self) -> tuple[Any, ...]:
        arrays = (self.var_index, self.low, self.high, self.row_low, self.row_high, self.own, self.row_of)
        m = self.matrix
        parts = (*arrays, m.data, m.indices, m.indptr)
        shape = (m.shape, self.own_offset, self.sign, self.bounds, self.integral)
        return (*(a.tobytes() for a in parts), *(a.shape for a in parts), *shape)

    def __eq__(self, other: object) -> bool:  # value equality: specs compare equal when rebuilt
        return isinstance(other, LinearBox) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @functools.cached_property
    def scatter(self) -> sparse.csr_array:
        """``(v, n)``: each cost entry into its variable's coefficient (repeats sum)."""
        n = len(self.var_index)
        return sparse.csr_array((np.ones(n), (self.var_index, np.arange(n))), shape=(len(self.low), n))

    @functools.cached_property
    def parts(self) -> tuple[sparse.csr_array, sparse.csr_array, sparse.csr_array]:
        """The matrix's positive and negative coefficients, and their magnitudes."""
        return self.matrix.maximum(0).tocsr(), self.matrix.minimum(0).tocsr(), abs(self.matrix).tocsr()

    def _instance_bounds(self, data: Data, batch: int) -> tuple[np.ndarray, ...]:
        """Per-instance ``(B, v)`` variable and ``(B, m)`` row bounds after the data."""
        low = np.broadcast_to(self.low, (batch, len(self.low))).copy()
        high = np.broadcast_to(self.high, (batch, len(self.high))).copy()
        row_low = np.broadcast_to(self.row_low, (batch, len(self.row_low))).copy()
        row_high = np.broadcast_to(self.row_high, (batch, len(self.row_high))).copy()
        for field in self.bounds:
            values = data.get(field.name)
            if values is None:
                continue
            index = np.asarray(field.index)
            lo, hi = (low, high) if field.variables else (row_low, row_high)
            at = index if field.variables else self.row_of[index]
            if values.ndim == 3:  # (lower, upper) pairs
                lo[:, at], hi[:, at] = values[..., 0], values[..., 1]
                continue
            side = np.asarray(field.side)
            sets_low, sets_high = (side == LOWER) | (side == BOTH), (side == UPPER) | (side == BOTH)
            lo[:, at[sets_low]] = values[:, sets_low]
            hi[:, at[sets_high]] = values[:, sets_high]
        return low, high, row_low, row_high

    def certify(self, costs: np.ndarray, data: Data) -> Certified:
        """Which rows of ``costs`` ``(B, n)`` (with ``data``'s rows) the corner decides."""
        t0 = time.perf_counter()
        batch = len(costs)
        total = (self.scatter @ costs.T).T + self.own
        signed = self.sign * total
        low, high, row_low, row_high = self._instance_bounds(data, batch)
        free = signed == 0
        floor = np.where(np.isfinite(low), low, np.where(np.isfinite(high), high, 0.0))
        x = np.where(signed > 0, low, np.where(signed < 0, high, floor))
        x_min, x_max = np.where(free, low, x), np.where(free, high, x)
        positive, negative, magnitude = self.parts
        with np.errstate(invalid="ignore"):  # inf - inf: a free variable in a row, not certified
            act_min = (positive @ x_min.T + negative @ x_max.T).T
            act_max = (positive @ x_max.T + negative @ x_min.T).T
        if self.integral:  # exact while every partial sum stays below 2^52
            slack_low = slack_high = 0.0
            reach = np.maximum(np.abs(x_min), np.abs(x_max))
            exact = (magnitude @ reach.T).T.max(axis=1, initial=0.0) <= EXACT_LIMIT
            exact &= (np.abs(np.where(np.isfinite(row_low), row_low, 0.0)) <= EXACT_LIMIT).all(axis=1)
            exact &= (np.abs(np.where(np.isfinite(row_high), row_high, 0.0)) <= EXACT_LIMIT).all(axis=1)
        else:
            exact = np.ones(batch, dtype=bool)
            slack_low = FLOAT_TOLERANCE * np.maximum(1.0, np.abs(row_low))
            slack_high = FLOAT_TOLERANCE * np.maximum(1.0, np.abs(row_high))
        ok = (
            exact
            & np.isfinite(x).all(axis=1)
            & (low <= high).all(axis=1)
            & (act_min >= row_low - slack_low).all(axis=1)
            & (act_max <= row_high + slack_high).all(axis=1)
        )
        chosen = x[ok]
        fixed = chosen @ self.own + self.own_offset
        bound = np.einsum("ij,ij->i", total[ok], chosen) + self.own_offset
        return Certified(ok, chosen[:, self.var_index], fixed, bound, time.perf_counter() - t0)


# CP-SAT's unbounded sides of a linear row (INT_MIN, INT_MAX) and anything as large.
CPSAT_INFINITY = 2**62
# CP-SAT constraints over literals that are linear rows: (field, lower, upper) of sum(literals).
_LITERAL_ROWS = {"at_most_one": (-np.inf, 1.0), "exactly_one": (1.0, 1.0), "bool_or": (1.0, np.inf)}


def cpsat_box(
    proto: Any,
    var_index: Sequence[int],
    own: Mapping[int, float],
    own_offset: float,
    sense: str,
    bounds: Sequence[BoundField],
) -> LinearBox | None:
    """The certificate's view of a CP-SAT model, or None when a constraint is not a plain linear
    row (an enforcement literal, a circuit, a table, a domain with holes, ...)."""
    rows: list[tuple[list[int], list[float], float, float]] = []
    row_of = np.full(len(proto.constraints), -1, dtype=np.int64)
    for k, ct in enumerate(proto.constraints):
        if len(ct.enforcement_literal):
            return None
        kind = next((k for k in ("linear", *_LITERAL_ROWS) if getattr(ct, f"has_{k}")()), None)
        if kind == "linear":
            domain = list(ct.linear.domain)
            if len(domain) != 2 or any(v < 0 for v in ct.linear.vars):
                return None
            lo, hi = (float(d) if abs(d) < CPSAT_INFINITY else math.copysign(math.inf, d) for d in domain)
            rows.append((list(ct.linear.vars), [float(c) for c in ct.linear.coeffs], lo, hi))
        elif kind in _LITERAL_ROWS:
            lo, hi = _LITERAL_ROWS[kind]
            vars_, coeffs = [], []
            for lit in getattr(ct, kind).literals:
                if lit >= 0:
                    vars_.append(lit)
                    coeffs.append(1.0)
                else:  # not(x) = 1 - x
                    vars_.append(-lit - 1)
                    coeffs.append(-1.0)
                    lo, hi = lo - 1.0, hi - 1.0
            rows.append((vars_, coeffs, lo, hi))
        else:
            return None
        row_of[k] = len(rows) - 1
    n_vars = len(proto.variables)
    domains = [list(v.domain) for v in proto.variables]
    low = np.array([d[0] for d in domains], dtype=np.float64)
    high = np.array([d[-1] for d in domains], dtype=np.float64)
    indptr = np.cumsum([0] + [len(r[0]) for r in rows])
    indices = np.array([v for r in rows for v in r[0]], dtype=np.int64)
    data = np.array([c for r in rows for c in r[1]], dtype=np.float64)
    matrix = sparse.csr_array((data, indices, indptr), shape=(len(rows), n_vars))
    matrix.sum_duplicates()
    own_coeffs = np.zeros(n_vars)
    for v, c in own.items():
        own_coeffs[v] += c
    return LinearBox(
        np.asarray(var_index, dtype=np.int64),
        low,
        high,
        matrix,
        np.array([r[2] for r in rows], dtype=np.float64),
        np.array([r[3] for r in rows], dtype=np.float64),
        own_coeffs,
        float(own_offset),
        -1.0 if sense == "max" else 1.0,
        tuple(bounds),
        row_of,
        integral=True,
    )
