"""Ctrl-C during an in-process solve: ``KeyboardInterrupt`` reaches the caller at once, whatever
native solver is running, and that solver is stopped (or abandoned if it cannot be)."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time

from ..solvers.base import ChunkResult, ResidentSolver
from .resident import Task, resident_solver, solve_chunk

# Seconds a Ctrl-C waits for the interrupted in-process solve to stop before it is abandoned.
_INTERRUPT_GRACE = 1.0
# Stop requests, 0.1 s apart, that the interrupt watch sends to a solve until it returns.
_INTERRUPT_RETRIES = 100


class _Job:
    def __init__(self, key: str, payload: bytes, task: Task) -> None:
        self.args = (key, payload, task)
        self.done = threading.Event()
        self.cancel = threading.Event()
        self.solver: ResidentSolver | None = None
        self.result: ChunkResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        key, payload, task = self.args
        try:
            self.solver = resident_solver(key, payload)
            if not self.cancel.is_set():
                self.result = task.run(self.solver, self.cancel)
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc
        finally:
            self.done.set()


class _SolverThread:
    """Runs the main thread's in-process solves on a helper thread while the main thread waits
    in an interruptible wait: a Ctrl-C raises ``KeyboardInterrupt`` at once, whatever native
    solver is running, and stops that solver (or abandons it if it cannot be stopped)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="idproj_or-solver", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self.jobs.get().run()

    def run(self, job: _Job) -> ChunkResult:
        global _solver_thread
        self.jobs.put(job)
        try:
            # Woken every 50 ms: the kernel may deliver SIGINT to the helper thread, whose
            # native solve then leaves the main thread's wait unbroken.
            while not job.done.wait(0.05):
                pass
        except KeyboardInterrupt:
            job.cancel.set()
            if job.solver is not None:
                job.solver.interrupt()
            if not job.done.wait(_INTERRUPT_GRACE):
                _solver_thread = None  # still inside a native solve: the next call starts afresh
            raise
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result


_solver_thread: _SolverThread | None = None


class _InterruptWatch:
    """While the main thread solves in-process, Python's C-level SIGINT handler writes to a
    wakeup fd (``signal.set_wakeup_fd``) that this thread reads: it stops the solver at once,
    and Python raises ``KeyboardInterrupt`` in the main thread as soon as the solver returns.
    No thread hand-off per call: a hand-off can cost more than a fast batch."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.target: tuple[ResidentSolver, threading.Event] | None = None
        threading.Thread(target=self._loop, name="idproj_or-interrupts", daemon=True).start()

    def _loop(self) -> None:
        while True:
            signals = os.read(self.read_fd, 64)
            target = self.target
            if target is None or signal.SIGINT not in signals:
                continue
            target[1].set()
            # Again until the solve returns: a stop that lands between two instances, or before
            # the native solve starts, may be lost.
            for _ in range(_INTERRUPT_RETRIES):
                target[0].interrupt()
                time.sleep(0.1)
                if self.target is not target:
                    break

    def run(self, solver: ResidentSolver, task: Task) -> ChunkResult:
        cancel = threading.Event()
        self.target = (solver, cancel)
        previous = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        try:
            return task.run(solver, cancel)
        finally:
            signal.set_wakeup_fd(previous)
            self.target = None


_interrupt_watch: _InterruptWatch | None = None


def run_in_process(key: str, payload: bytes, task: Task, *, on_caller_thread: bool) -> ChunkResult:
    """:func:`~idproj_or.batch.resident.solve_chunk` in this process, interruptible by Ctrl-C
    when called from the main thread: on this thread with the interrupt watch
    (``on_caller_thread``, see :attr:`ModelSpec.on_caller_thread`), else on the helper thread."""
    global _solver_thread, _interrupt_watch
    handler = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(handler):
        return solve_chunk(key, payload, task)
    if on_caller_thread and handler is signal.default_int_handler:
        # (A handler of the user's may not raise: then nothing must stop the solver.)
        if _interrupt_watch is None:
            _interrupt_watch = _InterruptWatch()
        return _interrupt_watch.run(resident_solver(key, payload), task)
    if _solver_thread is None:
        _solver_thread = _SolverThread()
    return _solver_thread.run(_Job(key, payload, task))
