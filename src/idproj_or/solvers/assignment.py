"""Linear sum assignment: costs ``(n, m)`` -> the 0/1 matrix of a min- (or max-) cost assignment.

Solved with OR-Tools' ``SimpleLinearSumAssignment`` (a cost-scaling push-relabel algorithm,
exact for integer costs). The spec is just ``(n, m, sense)``; a worker precomputes the arc index
arrays once and each solve only loads that instance's costs.

Feasible decisions: when ``n == m``, permutation matrices (every row and column has exactly one
1); when ``n < m``, every row is assigned to a distinct column; when ``n > m``, every column gets a
distinct row. The rectangular case is solved exactly as a square problem padded with zero-cost
dummy rows or columns, whose value is the same for every assignment.

Integer costs: the algorithm multiplies each cost by ``size + 1`` (``size = max(n, m)``) and
bounds its prices by ``3 (size^2 - 1) max|cost|``, which must stay below ``2^63`` (else it answers
``POSSIBLE_OVERFLOW``: measured, that is its exact limit). Each instance is scaled by the largest
power of two that keeps this one bit below that limit (``2^58`` for a 3x3, ``2^45`` for 200x200)
and rounded (:mod:`idproj_or.solvers.scaling`). The assignment is ``"optimal"`` when the bound on
what the rounding can cost (``scaling_error``) is within the float64 rounding of its objective,
else ``"feasible"``. When it is not, entries that no optimal assignment can use (a huge cost
marking a forbidden pairing, ``1e20`` next to costs of order 1) are lowered to just above what
would make them worth using and the instance is solved again (``CLIP_ROUNDS`` times at most):
the range left to round is then that of the costs that matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.graph.python import linear_sum_assignment

from .. import statuses
from ..checks import Sense
from ..statuses import Outcome
from .base import NO_DATA, Data, LinearRows, ModelSpec, ResidentSolver
from .scaling import EPS, choice_error, integer_costs, proven, scale_exponent

_OPTIMAL = linear_sum_assignment.SimpleLinearSumAssignment.OPTIMAL
_ONE = np.ones(1)
# Solves with dominated entries lowered, each from the best assignment so far (a better one
# lowers them further): the first rounds all the costs, so its assignment may be poor.
CLIP_ROUNDS = 2


def headroom_bits(size: int) -> int:
    """Bits the largest scaled cost magnitude may use for a ``size x size`` problem."""
    return int(np.floor(62 - np.log2(3 * size * size)))


def assignment_equalities(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``A y = 1`` over the flattened ``(n, m)`` decision: row sums when ``n <= m``, column
    sums when ``n >= m`` (both when square)."""
    rows = []
    if n <= m:
        rows.append(np.kron(np.eye(n), np.ones((1, m))))
    if n >= m:
        rows.append(np.kron(np.ones((1, n)), np.eye(m)))
    a = np.concatenate(rows)
    return a, np.ones(len(a))


def clip_dominated(c: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The ``(n, m)`` minimisation costs ``c`` (``n <= m``) with the entries that no optimal
    assignment uses lowered, given an assignment ``y``; None when there is none.

    Every assignment through ``(i, j)`` costs at least ``c_ij + sum_{k != i} min_l c_kl``; above
    ``c @ y`` (plus a float64 error budget) it is worse than ``y``, and stays so when ``c_ij`` is
    lowered to that threshold plus the largest magnitude of the other entries."""
    rowmin = c.min(axis=1)
    value, low = float((c * y).sum()), float(rowmin.sum())
    slack = 4 * (len(c) + 2) * EPS * (float(np.abs(c * y).sum()) + float(np.abs(rowmin).sum()))
    threshold = (value - low + slack) + rowmin[:, None]
    dominated = c > threshold
    if not dominated.any():
        return None
    margin = float(np.abs(c[~dominated]).max()) or 1.0
    return np.where(dominated, np.minimum(c, threshold + margin), c)


class AssignmentSolver(ResidentSolver):
    def __init__(self, spec: AssignmentSpec) -> None:
        self.n, self.m = spec.n, spec.m
        self.size = max(self.n, self.m)
        tails, heads = np.meshgrid(np.arange(self.size), np.arange(self.size), indexing="ij")
        self.tails = tails.reshape(-1).astype(np.int32)
        self.heads = heads.reshape(-1).astype(np.int32)
        self.padded = np.zeros((self.size, self.size), dtype=np.int64)
        self.sign = -1.0 if spec.sense == "max" else 1.0
        self.bits = headroom_bits(self.size)

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        # time_limit is not used: the algorithm is polynomial and always runs to optimality.
        c = self.sign * cost
        first = self._solve_rounded(c)
        if isinstance(first, Outcome):
            return first
        y, error = first
        tall = self.n > self.m  # then the columns are the ones always assigned: the transpose
        for _ in range(CLIP_ROUNDS):
            if proven(error, c, y):
                break
            square = (c.reshape(self.n, self.m), y.reshape(self.n, self.m))
            clipped = clip_dominated(*(a.T for a in square)) if tall else clip_dominated(*square)
            if clipped is None:
                break
            lowered = (clipped.T if tall else clipped).reshape(-1)
            again = self._solve_rounded(lowered)
            # Never through a lowered entry (only a rounding coarser than the margin could).
            if isinstance(again, Outcome) or (again[0] * (lowered != c)).any() or again[1] >= error:
                break
            y, error = again
        common = statuses.OPTIMAL if proven(error, c, y) else statuses.FEASIBLE
        return Outcome(y, common, "OPTIMAL", 0.0, error)

    def _solve_rounded(self, c: np.ndarray) -> tuple[np.ndarray, float] | Outcome:
        """An assignment optimal for ``c`` rounded, and the scaling error; or the failure."""
        exponent = scale_exponent(np.abs(c).max(keepdims=True), _ONE, headroom_bits=self.bits)
        scaled = integer_costs(c, exponent)
        if self.n == self.m:
            arc_costs = scaled.coeffs
        else:
            self.padded[: self.n, : self.m] = scaled.coeffs.reshape(self.n, self.m)
            arc_costs = self.padded.reshape(-1)
        lsa = linear_sum_assignment.SimpleLinearSumAssignment()
        lsa.add_arcs_with_cost(self.tails, self.heads, arc_costs)
        status = lsa.solve()
        if status != _OPTIMAL:
            # Never query mates after a failed solve (OR-Tools may crash on it).
            common = statuses.INFEASIBLE if status.name == "INFEASIBLE" else statuses.ERROR
            return statuses.no_decision(common, status.name)
        y = np.zeros(self.n * self.m)
        mate, m = lsa.right_mate, self.m
        for i in range(self.n):
            j = mate(i)
            if j < m:  # rows matched to a padding column stay unassigned (n > m)
                y[i * m + j] = 1.0
        return y, choice_error(scaled.residual, y, min(self.n, self.m))


@dataclass(frozen=True)
class AssignmentSpec(ModelSpec):
    resident_solver = AssignmentSolver
    on_caller_thread = True
    stops_at_time_limit = False
    n: int
    m: int
    sense: Sense

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.n, self.m)

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        return assignment_equalities(self.n, self.m)

    def linear_rows(self, data: Data = NO_DATA) -> LinearRows:
        # row sums, then column sums: == 1 on the smaller side (both when square), <= 1 on the other
        n, m = self.n, self.m
        a = np.concatenate([np.kron(np.eye(n), np.ones((1, m))), np.kron(np.ones((1, n)), np.eye(m))])
        lower = np.concatenate([np.full(n, 1.0 if n <= m else -np.inf), np.full(m, 1.0 if n >= m else -np.inf)])
        size = n * m
        return LinearRows(a, lower, np.ones(n + m), np.zeros(size), np.ones(size), np.arange(n + m))
