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

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.graph.python import linear_sum_assignment

from .. import statuses
from ..handle import OnFailure
from ..layer import OptLayer
from ..statuses import Outcome
from .base import ModelSpec, ResidentSolver, Sense, check_sense

RESOLUTION = 2**30  # largest |cost| of an instance becomes +-1,073,741,824
_OPTIMAL = linear_sum_assignment.SimpleLinearSumAssignment.OPTIMAL
def check_size(value: Any, name: str, *, where: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats are refused)."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: {name}={value!r} must be an int >= {minimum}")
    try:
        size = operator.index(value)
    except TypeError:
        raise ValueError(f"{where}: {name}={value!r} must be an int >= {minimum}") from None
    if size < minimum:
        raise ValueError(f"{where}: {name}={value!r} must be an int >= {minimum}")
    return size


@dataclass(frozen=True)
class AssignmentSpec(ModelSpec):
    on_caller_thread = True
    n: int
    m: int
    sense: Sense

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.n, self.m)

    def build(self) -> ResidentSolver:
        return AssignmentSolver(self)

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        return assignment_equalities(self.n, self.m)


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


class AssignmentLayer(OptLayer):
    """Min- (or max-) cost assignment as a layer: costs ``(n, m)`` -> a 0/1 matrix ``y``.

    ``y[i, j] = 1`` when row ``i`` is assigned to column ``j``. Square: a permutation matrix.
    ``n < m``: every row assigned to a distinct column. ``n > m``: every column to a distinct row.
    Solved exactly by OR-Tools' linear sum assignment on costs rounded to ``RESOLUTION`` steps of
    the instance's largest magnitude (see the module docstring).

    ``projection="auto"`` uses the row-sum equalities (``n <= m``) and column-sum equalities
    (``n >= m``): adding a constant to a whole row (or column) never changes the argmin.

    Args:
        n: number of rows.
        m: number of columns; default ``n``.
        sense: ``"min"`` (default) or ``"max"``.
        **options: ``projection``, ``noise``, ``workers``, ``executor``, ``time_limit``,
            ``on_failure``, ``generator`` (see :class:`idproj_or.layer.OptLayer`). ``time_limit`` is accepted
            for a uniform interface but not used: every solve runs to optimality.

    Example:
        >>> import torch
        >>> layer = AssignmentLayer(2)
        >>> layer(torch.tensor([[1.0, 5.0], [2.0, 3.0]])).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """

    def __init__(
        self,
        n: int,
        m: int | None = None,
        sense: str = "min",
        *,
        projection: str = "auto",
        noise: float = 0.0,
        workers: int | None = None,
        executor: Any = None,
        time_limit: float | None = None,
        on_failure: OnFailure = "raise",
        generator: Any = None,
    ) -> None:
        where = type(self).__name__
        n = check_size(n, "n", where=where)
        m = n if m is None else check_size(m, "m", where=where)
        spec = AssignmentSpec(n, m, check_sense(sense, where=where))
        super().__init__(
            spec,
            projection=projection,
            noise=noise,
            workers=workers,
            executor=executor,
            time_limit=time_limit,
            on_failure=on_failure,
            generator=generator,
        )
