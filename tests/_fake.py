"""A spec whose instances fail on demand: exercises per-instance error reporting everywhere."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from idproj_or.solvers.base import ModelSpec, ResidentSolver
from idproj_or.statuses import Outcome


@dataclass(frozen=True)
class SignSpec(ModelSpec):
    """y = 1[cost < 0] (a trivially exact solver); an instance with cost[0] > 100 "fails"; a cost[0]
    of -999 makes the worker process exit, as a crash would. ``delay`` is seconds per solve,
    ``build_delay`` seconds to build the solver (a large model)."""

    shape: tuple[int, ...] = (3,)
    sense: str = "min"
    delay: float = 0.0
    build_delay: float = 0.0

    def build(self) -> ResidentSolver:
        time.sleep(self.build_delay)
        return SignSolver(self.delay)

    def equalities(self):
        return np.zeros((0, 3)), np.zeros(0)


class SignSolver(ResidentSolver):
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def solve(self, cost, time_limit):
        if self.delay:
            time.sleep(self.delay)
        if cost[0] == -999:
            os._exit(3)
        if cost[0] > 100:
            return Outcome(None, "error", "BROKEN")
        return Outcome((cost < 0).astype(np.float64), "optimal", "OPTIMAL")


def force_pool(layer):
    """Make ``layer`` send every batch to its pool, as it would for slow solves: parity tests on
    fast models would otherwise (rightly) stay in-process."""
    layer._handle.batch._per_instance = 1.0
    return layer
