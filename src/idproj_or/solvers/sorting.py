"""Top-k selection and ranking: decisions that a sort of the scores gives exactly.

Both are linear programs over a polytope whose vertices a stable sort enumerates in order, so
no MIP is needed. A resident solver sorts a whole chunk at once (``numpy.argsort`` along the rows,
each row on its own, so that any chunking gives the same decisions).

- **Top-k** (``TopKSpec``): ``y in {0, 1}^n`` with ``sum(y) == k``. ``sense="max"`` selects the k
  largest scores, ``sense="min"`` the k smallest; ``k`` may be given per instance (data ``k``).
- **Ranking** (``RankingSpec``): ``y`` a permutation of ``(1, ..., n)``. ``sense="min"`` gives
  ``argmin_y <w, y>``: the smallest rank goes with the largest score (rank 1 = highest score);
  ``sense="max"`` gives rank 1 to the lowest score.

Ties (equal costs as the solver receives them) are broken by position: the lower index is
selected first (top-k) or gets the smaller rank (ranking), in either sense. This is the order of
a stable sort, e.g. ``torch.sort(w, descending=True, stable=True)`` for the defaults.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from ..checks import Sense
from .base import NO_DATA, Data, DataField, ExactChunkSolver, LinearRows, ModelSpec


class _SortSolver(ExactChunkSolver):
    """A solver whose chunk of decisions is one stable sort of the (signed) rows."""

    def __init__(self, descending: bool) -> None:
        # Sorting -cost ascending is a descending sort that keeps the lower index first on ties.
        self.sign = -1.0 if descending else 1.0

    @abc.abstractmethod
    def decide(self, order: np.ndarray, data: Data) -> np.ndarray:
        """Decisions ``(B, n)`` from each row's positions in sorted order (and its data)."""

    def decide_chunk(self, costs: np.ndarray, data: Data = NO_DATA) -> np.ndarray:
        return self.decide(np.argsort(costs * self.sign, axis=1, kind="stable"), data)


class TopKSolver(_SortSolver):
    def __init__(self, spec: TopKSpec) -> None:
        super().__init__(descending=spec.sense == "max")
        self.k = spec.k

    def decide(self, order: np.ndarray, data: Data) -> np.ndarray:
        if "k" not in data:
            y = np.zeros(order.shape)
            np.put_along_axis(y, order[:, : self.k], 1.0, axis=1)
            return y
        # each row's first k_i places in sorted order are selected (k checked integral in [0, n])
        chosen = np.arange(order.shape[1]) < data["k"][:, None]
        y = np.empty(order.shape)
        np.put_along_axis(y, order, chosen.astype(np.float64), axis=1)
        return y


class RankingSolver(_SortSolver):
    def __init__(self, spec: RankingSpec) -> None:
        # min <w, y>: the largest score takes rank 1, so sort the scores descending.
        super().__init__(descending=spec.sense == "min")
        self.ranks = np.arange(1.0, spec.n + 1.0)

    def decide(self, order: np.ndarray, data: Data) -> np.ndarray:
        y = np.empty(order.shape)
        np.put_along_axis(y, order, np.broadcast_to(self.ranks, order.shape), axis=1)
        return y


@dataclass(frozen=True)
class _SortSpec(ModelSpec):
    on_caller_thread = True
    stops_at_time_limit = False
    n: int

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.n,)


@dataclass(frozen=True)
class TopKSpec(_SortSpec):
    resident_solver = TopKSolver
    k: int
    sense: Sense

    fields: tuple[DataField, ...] = field(init=False)  # set from n (read when tracing)

    def __post_init__(self) -> None:
        k = DataField("k", (), "how many to select", integral=True, low=0.0, high=float(self.n))
        object.__setattr__(self, "fields", (k,))

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        # sum(y) == k whatever an instance's k: the all-ones direction is invariant for every
        # instance. (With k == 0 or n every direction is, but only for that k.)
        return np.ones((1, self.n)), np.array([float(self.k)])

    def linear_rows(self, data: Data = NO_DATA) -> LinearRows:
        # sum(y) == k (the instance's), 0 <= y <= 1
        k = np.full(1, float(data.get("k", self.k)))
        return LinearRows(
            np.ones((1, self.n)), k, k.copy(), np.zeros(self.n), np.ones(self.n), np.zeros(1, dtype=np.int64)
        )


@dataclass(frozen=True)
class RankingSpec(_SortSpec):
    resident_solver = RankingSolver
    sense: Sense

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        # The permutahedron spans n - 1 dimensions: its only equality is the sum of the ranks.
        return np.ones((1, self.n)), np.array([self.n * (self.n + 1) / 2])
