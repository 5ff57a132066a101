"""The resident solvers of a process: each thread keeps the models it built, keyed by the spec's
content hash, and a :class:`Task` (one chunk of instances) runs on them.

Workers receive the pickled spec with each chunk but build the model only once.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from ..solvers.base import ChunkResult, Data, ModelSpec, ResidentSolver

# Models kept built per thread, bounded by their estimated memory (the resident set growth
# while building, at least 64 KiB): dozens of layers used in turn never rebuild.
_RESIDENT_BYTES = 1 << 30
_RESIDENT_MIN_BYTES = 1 << 16
_local = threading.local()


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def resident_solver(key: str, payload: bytes) -> ResidentSolver:
    """This thread's resident solver of the pickled spec ``payload`` (content hash ``key``),
    built on first use."""
    cache: OrderedDict[str, tuple[ResidentSolver, int]] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    entry = cache.get(key)
    if entry is not None:
        cache.move_to_end(key)
        return entry[0]
    before = _rss()
    spec: ModelSpec = pickle.loads(payload)
    solver = spec.build()
    size = max(_rss() - before, 4 * len(payload), _RESIDENT_MIN_BYTES)
    cache[key] = (solver, size)
    total = sum(s for _, s in cache.values())
    while total > _RESIDENT_BYTES and len(cache) > 1:
        _, (_, freed) = cache.popitem(last=False)
        total -= freed
    return solver


def resident_count() -> int:
    """Models built and kept by the calling thread."""
    return len(getattr(_local, "cache", ()))


class Task(NamedTuple):
    """A chunk of instances and how to solve them: ``costs`` ``(B, n)``, ``data`` (field ->
    ``(B, ...)``), the time limit per instance, whether to stop at the first failure, whether to
    report duals, and the instances' warm states (None: no warm start;
    :meth:`ResidentSolver.solve_many`)."""

    costs: np.ndarray
    data: Data
    time_limit: float | None
    stop: bool
    duals: bool = False
    warm: np.ndarray | None = None

    def rows(self, a: int, b: int) -> Task:
        warm = None if self.warm is None else self.warm[a:b]
        return self._replace(costs=self.costs[a:b], data={k: v[a:b] for k, v in self.data.items()}, warm=warm)

    def run(self, solver: ResidentSolver, cancel: threading.Event | None = None) -> ChunkResult:
        return solver.solve_many(
            self.costs,
            self.time_limit,
            data=self.data,
            duals=self.duals,
            stop_at_failure=self.stop,
            cancel=cancel,
            warm=self.warm,
        )


def solve_chunk(key: str, payload: bytes, task: Task) -> ChunkResult:
    """Solve ``task`` on this thread's resident solver of the spec."""
    return task.run(resident_solver(key, payload))


def remote_chunk(key: str, payload: bytes, task: Task) -> tuple[ChunkResult, float]:
    """:func:`solve_chunk` in a worker, with the seconds spent building the resident solver
    there (work, not pool overhead: a cold worker must not make the pool look slow)."""
    t0 = time.perf_counter()
    solver = resident_solver(key, payload)
    built = time.perf_counter() - t0
    return task.run(solver), built
