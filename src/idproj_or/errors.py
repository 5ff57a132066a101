"""Domain errors and warnings raised by idproj_or layers."""

from __future__ import annotations

import os
import sys
from types import FrameType


class SolverError(RuntimeError):
    """An instance of the batch has no decision (infeasible, unbounded, time limit hit before any
    feasible point, a solver failure) and the layer was built with ``on_failure="raise"``.

    Attributes:
        index: position of the (first) failing instance in the batch.
        status: its common status (``"infeasible"``, ``"time_limit"``, ...; docs/batching.md).
        solver_status: the backend's own word for it (e.g. CP-SAT's ``"UNKNOWN"``).
    """

    def __init__(self, message: str, *, index: int, status: str, solver_status: str = "") -> None:
        super().__init__(message)
        self.index = index
        self.status = status
        self.solver_status = solver_status


class WorkerError(RuntimeError):
    """A solver worker process died (killed, out of memory, crashed) while solving a batch, or
    the workers of a new pool died while starting.

    The pool it belonged to is discarded; the next call starts a fresh one.
    """


class SolverWarning(UserWarning):
    """Some decisions of a batch are not proven optimal (a time limit, a heuristic), or, with
    ``on_failure="nan"``, some instances have no decision (shown once per layer and kind); or a
    layer with ``workers=`` solves in-process because the process is daemonic, e.g. a torch
    DataLoader worker (once per process). Filter it with
    ``warnings.filterwarnings("ignore", category=idproj_or.SolverWarning)``."""


def user_stacklevel() -> int:
    """``stacklevel`` that shows a warning issued by the caller at the first frame outside this
    package and torch: the user's line."""
    torch = sys.modules.get("torch")
    files = [__file__, getattr(torch, "__file__", None)]
    inside = tuple(os.path.join(os.path.dirname(f), "") for f in files if f is not None)
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level
