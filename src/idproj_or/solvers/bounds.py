"""Per-instance bounds of named constraints and variables (the CP-SAT and pywraplp adapters).

A layer declared with ``data={"cap": [ct0, ct1]}`` takes ``layer(costs, cap=values)``. The spec
keeps plain data per name (:class:`BoundField`: proto indices, and which side a single value
sets); the resident solver keeps the model's own bounds and the current ones (:class:`Bounds`),
and rewrites only the entries whose bounds an instance changes, back to the model's own values
for the names an instance does not give.

A single value sets, for a constraint stated ``expr <= u`` its upper bound, ``expr >= l`` its
lower bound, ``expr == k`` both, and any other row (ranged or free) its upper bound; for a
variable its upper bound. A trailing dimension of 2 gives ``(lower, upper)`` pairs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..checks import _flatten
from .base import Data, DataField, ModelSpec

if TYPE_CHECKING:
    from .certificate import LinearBox

LOWER, UPPER, BOTH = 0, 1, 2
# solver_status of an instance whose data puts a lower bound above an upper one: infeasible
# without a solve (CP-SAT calls an empty domain an invalid model, pywraplp refuses to load it).
INFEASIBLE_BOUNDS = "INFEASIBLE_BOUNDS"


@dataclass(frozen=True)
class BoundField:
    """One data name: the proto indices of its constraints (or variables) and, per entry, the
    side a single value sets (``LOWER``, ``UPPER`` or ``BOTH``)."""

    name: str
    variables: bool  # bounds of variables, else of constraints
    index: tuple[int, ...]
    side: tuple[int, ...]

    def field(self, *, integral: bool, low: float, high: float, infinite: bool = False) -> DataField:
        what = (
            "upper bounds of variables"
            if self.variables
            else "bounds of constraints (upper for <= rows, lower for >= rows, both for equalities)"
        )
        return DataField(
            self.name, (len(self.index),), f"{what}, or (lower, upper) pairs", integral, True, low, high, infinite
        )


@dataclass(frozen=True)
class DeclaredSpec(ModelSpec):
    """What the spec of every declared model (CP-SAT, pywraplp, MathOpt, model_builder) holds
    beside its backend's fields, keyword-only: the model's own objective, ``own(x) =
    sum(own_coeffs * x[own_vars]) + own_offset`` (kept), the per-instance bounds of named
    constraints and variables with the data they take, and the model as the box certificate
    reads it (:mod:`idproj_or.solvers.certificate`; None: not a plain linear model)."""

    own_vars: tuple[int, ...] = dataclasses.field(default=(), kw_only=True)
    own_coeffs: tuple[float, ...] = dataclasses.field(default=(), kw_only=True)
    own_offset: float = dataclasses.field(default=0.0, kw_only=True)
    bounds: tuple[BoundField, ...] = dataclasses.field(default=(), kw_only=True)
    fields: tuple[DataField, ...] = dataclasses.field(default=(), kw_only=True)
    box: LinearBox | None = dataclasses.field(default=None, kw_only=True)


def side_of(lower: float, upper: float, *, low_inf: float, high_inf: float) -> int:
    """What a single value sets for a row ``lower <= expr <= upper`` (infinite sides at ``low_inf``
    / ``high_inf``): the side the row states, both for an equality, the upper one otherwise."""
    if lower == upper:
        return BOTH
    if lower > low_inf and upper >= high_inf:
        return LOWER
    return UPPER


# What a backend says of one data entry: (a variable?, its proto index, the side a single value
# sets); it raises a ValueError for an entry that cannot take data.
Identify = Callable[[str, int, Any], tuple[bool, int, int]]


def bound_fields(data: Any, identify: Identify, *, where: str) -> tuple[BoundField, ...]:
    """The spec's data names from ``data`` (name -> array-like of constraints or variables).

    Refuses a name without entries, one that mixes constraints and variables, and an entry named
    twice (in one name or two: which value would it take?).
    """
    if data is None:
        return ()
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"{where}: data must be a dict of name -> list of constraints or variables")
    seen: dict[tuple[bool, int], str] = {}
    fields = []
    for name, items in data.items():
        entries = [identify(name, pos, item) for pos, item in enumerate(_flatten(items))]
        if not entries:
            raise ValueError(f"{where}: data {name!r} is empty; name at least one constraint or variable")
        if len({kind for kind, _, _ in entries}) > 1:
            raise ValueError(f"{where}: data {name!r} mixes constraints and variables; give each its own name")
        for pos, (kind, index, _) in enumerate(entries):
            if (kind, index) in seen:
                raise ValueError(
                    f"{where}: data {name!r}[{pos}] is a {'variable' if kind else 'constraint'} already "
                    f"named in data {seen[kind, index]!r}; each constraint or variable takes data once"
                )
            seen[kind, index] = name
        fields.append(BoundField(name, entries[0][0], tuple(e[1] for e in entries), tuple(e[2] for e in entries)))
    return tuple(fields)


class Change(NamedTuple):
    """The entries of one data name whose bounds change: positions in the name, new bounds."""

    field: BoundField
    positions: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


class Bounds:
    """The resident side: the model's own bounds of every named entry and the current ones.

    Args:
        fields: the spec's data names.
        own: per name, the model's ``(lower, upper)`` arrays of its entries: float64, or int64
            for CP-SAT (exact at any magnitude; an instance's values are cast to it).
    """

    def __init__(self, fields: Sequence[BoundField], own: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.fields = tuple(fields)
        self.own = [(np.asarray(lo), np.asarray(hi)) for lo, hi in own]
        self.current = [(lo.copy(), hi.copy()) for lo, hi in self.own]
        sides = [np.asarray(f.side, dtype=np.int64) for f in self.fields]
        self.sets_lower = [(s == LOWER) | (s == BOTH) for s in sides]
        self.sets_upper = [(s == UPPER) | (s == BOTH) for s in sides]

    def target(self, k: int, values: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The bounds of name ``k`` for an instance's ``values`` (None: the model's own)."""
        lo, hi = self.own[k]
        if values is None:
            return lo, hi
        values = values.astype(lo.dtype)
        if values.ndim == 2:
            return values[:, 0], values[:, 1]
        return np.where(self.sets_lower[k], values, lo), np.where(self.sets_upper[k], values, hi)

    def update(self, data: Data) -> list[Change]:
        """Move to this instance's bounds; the entries that changed, per name."""
        changes = []
        for k, field in enumerate(self.fields):
            lo, hi = self.target(k, data.get(field.name))
            cur_lo, cur_hi = self.current[k]
            changed = np.flatnonzero((lo != cur_lo) | (hi != cur_hi))
            if len(changed):
                cur_lo[changed], cur_hi[changed] = lo[changed], hi[changed]
                changes.append(Change(field, changed, lo[changed], hi[changed]))
        return changes

    def crossed(self) -> bool:
        """Whether an entry's lower bound is above its upper one (the instance is infeasible)."""
        return any(bool((lo > hi).any()) for lo, hi in self.current)


def with_data(
    fields: Sequence[BoundField], bounds: dict[bool, tuple[np.ndarray, np.ndarray]], data: Data
) -> dict[bool, tuple[np.ndarray, np.ndarray]]:
    """The model's ``(lower, upper)`` bounds of its constraints (key False) and variables (key
    True), indexed as in the model, with one instance's ``data`` applied as a resident solver
    applies it (copies; the model's own bounds where the data leave them out)."""
    out = {kind: (lo.copy(), hi.copy()) for kind, (lo, hi) in bounds.items()}
    given = [k for k, f in enumerate(fields) if f.name in data]
    if not given:
        return out
    own = [(bounds[f.variables][0][list(f.index)], bounds[f.variables][1][list(f.index)]) for f in fields]
    current = Bounds(fields, own)
    for k in given:
        field = fields[k]
        lo, hi = current.target(k, np.asarray(data[field.name]))
        out[field.variables][0][list(field.index)] = lo
        out[field.variables][1][list(field.index)] = hi
    return out
