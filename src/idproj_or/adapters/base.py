"""The contract every adapter meets: a picklable spec that rebuilds a resident solver."""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

Sense = Literal["min", "max"]
# (solutions, statuses, wall times, number of leading rows solved)
ChunkResult = tuple[np.ndarray, list[str], np.ndarray, int]


def check_sense(sense: str, *, where: str) -> Sense:
    if sense not in ("min", "max"):
        raise ValueError(f"{where}: sense={sense!r} must be 'min' or 'max'")
    return sense  # type: ignore[return-value]


def as_variable_array(variables: Any, var_type: type, *, where: str) -> np.ndarray:
    """``variables`` as an object array whose elements are all ``var_type``; its shape is the cost
    shape."""
    flat_in = list(_flatten(variables))
    try:
        shape = variables.shape if isinstance(variables, np.ndarray) else np.shape(variables)
    except ValueError:
        shape = None
    if shape is None or math.prod(shape) != len(flat_in):
        raise ValueError(f"{where}: variables must be a rectangular array-like of variables")
    arr = np.empty(shape, dtype=object)
    arr.reshape(-1)[:] = flat_in
    if arr.size == 0:
        raise ValueError(f"{where}: variables is empty; pass at least one variable")
    for pos, v in enumerate(flat_in):
        if not isinstance(v, var_type):
            idx = tuple(int(k) for k in np.unravel_index(pos, arr.shape))
            raise ValueError(
                f"{where}: variables{list(idx)} is a {type(v).__name__}, expected a {var_type.__name__} of the model"
            )
    return arr


def _flatten(x: Any) -> Sequence[Any]:
    if isinstance(x, np.ndarray):
        return list(x.reshape(-1))
    if isinstance(x, (list, tuple)):
        out: list[Any] = []
        for item in x:
            out.extend(_flatten(item) if isinstance(item, (list, tuple, np.ndarray)) else [item])
        return out
    return [x]


class ResidentSolver(abc.ABC):
    """A model built once (in a worker or in-process) whose objective is swapped per solve."""

    @abc.abstractmethod
    def solve(self, cost: np.ndarray, time_limit: float | None) -> tuple[np.ndarray | None, str, bool]:
        """Optimise ``sum(cost * x)`` over the model.

        Args:
            cost: float64 vector of length ``prod(spec.shape)``.
            time_limit: seconds for this instance, or None for no limit.

        Returns:
            ``(solution, status, ok)``: the flattened decision (float64), the solver's status name,
            and whether the solution is usable (``solution`` is None when not).
        """

    def solve_many(self, costs: np.ndarray, time_limit: float | None) -> ChunkResult:
        """Solve the rows of ``costs`` in order; stop at the first instance without a solution.

        Returns ``(solutions, statuses, wall_times, n_ok)``: rows ``[:n_ok]`` are solved; when
        ``n_ok < len(costs)``, ``statuses[n_ok]`` is the failing instance's status. Solvers that
        can treat a whole chunk at once (vectorised over rows) override this; each row's answer
        must not depend on the other rows, so that any chunking gives the same results.
        """
        sols = np.zeros_like(costs)
        times = np.zeros(len(costs))
        statuses: list[str] = []
        for i, cost in enumerate(costs):
            t0 = time.perf_counter()
            x, status, ok = self.solve(cost, time_limit)
            times[i] = time.perf_counter() - t0
            statuses.append(status)
            if not ok:
                return sols, statuses, times, i
            sols[i] = x
        return sols, statuses, times, len(costs)


class ModelSpec(abc.ABC):
    """Picklable recipe of a declared model with the objective ``sum(w * x)``.

    Subclasses are frozen dataclasses holding plain data (text, bytes, arrays) so that the spec
    can cross process boundaries; OR-Tools objects are rebuilt from it by :meth:`build`.
    """

    shape: tuple[int, ...]
    sense: Sense

    @abc.abstractmethod
    def build(self) -> ResidentSolver:
        """Rebuild the model and its solver (once per worker)."""

    @abc.abstractmethod
    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``A y = b`` (``A`` of shape ``(m, prod(shape))``) that every feasible decision
        satisfies, restricted to constraints over cost variables only; used by ``"auto"``."""
