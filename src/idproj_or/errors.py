"""Domain errors raised by idproj_or layers."""

from __future__ import annotations


class SolverError(RuntimeError):
    """An instance of the batch has no usable solution (infeasible, invalid, or time limit hit
    before any feasible point).

    Attributes:
        index: position of the failing instance in the batch.
        status: the solver's status name for that instance.
    """

    def __init__(self, message: str, *, index: int, status: str) -> None:
        super().__init__(message)
        self.index = index
        self.status = status


class WorkerError(RuntimeError):
    """A solver worker process died (killed, out of memory, crashed) while solving a batch.

    The pool it belonged to is discarded; the next call starts a fresh one.
    """
