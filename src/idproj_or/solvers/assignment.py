"""Linear sum assignment: costs ``(n, m)`` -> the 0/1 matrix of a min- (or max-) cost assignment.

Solved with OR-Tools' ``SimpleLinearSumAssignment`` (a cost-scaling push-relabel algorithm,
exact for integer costs). The spec is just ``(n, m, sense)``; a worker precomputes the arc index
arrays once and each solve only loads that instance's costs.

Feasible decisions: when ``n == m``, permutation matrices (every row and column has exactly one
1); when ``n < m``, every row is assigned to a distinct column; when ``n > m``, every column gets a
distinct row. The rectangular case is solved exactly as a square problem padded with zero-cost
dummy rows or columns, whose value is the same for every assignment.

The algorithm needs integer costs, so each instance's float cost is scaled so that its largest
magnitude maps to ``RESOLUTION`` (2^30) and rounded. "Optimal" means optimal for the rounded
cost; the returned assignment's true cost is within ``min(n, m) * max|w| / RESOLUTION`` of the true
optimum (each of the ``2 min(n, m)`` entries that differ rounds by at most half a step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.graph.python import linear_sum_assignment

from .. import statuses
from ..checks import Sense
from ..statuses import Outcome
from .base import ModelSpec, ResidentSolver

RESOLUTION = 2**30  # largest |cost| of an instance becomes +-1,073,741,824
_OPTIMAL = linear_sum_assignment.SimpleLinearSumAssignment.OPTIMAL


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


class AssignmentSolver(ResidentSolver):
    def __init__(self, spec: AssignmentSpec) -> None:
        self.n, self.m = spec.n, spec.m
        self.size = max(self.n, self.m)
        tails, heads = np.meshgrid(np.arange(self.size), np.arange(self.size), indexing="ij")
        self.tails = tails.reshape(-1).astype(np.int32)
        self.heads = heads.reshape(-1).astype(np.int32)
        self.padded = np.zeros((self.size, self.size), dtype=np.int64)
        self.scale = -RESOLUTION if spec.sense == "max" else RESOLUTION

    def solve(self, cost: np.ndarray, time_limit: float | None) -> Outcome:
        # time_limit is not used: the algorithm is polynomial and always runs to optimality.
        peak = np.abs(cost).max()
        if peak > 0:
            scaled = np.rint(cost * (self.scale / peak)).astype(np.int64)
        else:
            scaled = np.zeros(cost.shape, dtype=np.int64)
        if self.n == self.m:
            arc_costs = scaled
        else:
            self.padded[: self.n, : self.m] = scaled.reshape(self.n, self.m)
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
        return Outcome(y, statuses.OPTIMAL, "OPTIMAL")


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
