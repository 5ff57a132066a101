"""The persistent process pools: one per worker count, shared by every layer of the process,
started on first use (its workers forked from a fork server that preloads the solver modules),
discarded when a worker dies or a Ctrl-C abandons its chunks, stopped at exit."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, cast

from ..errors import SolverWarning, WorkerError, user_stacklevel

if TYPE_CHECKING:
    from typing import TypeAlias

    # (The fork server's context exists on POSIX only.)
    Context: TypeAlias = multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext


def _init_worker() -> None:
    # One thread per worker: the pool provides the parallelism (no oversubscription).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    # The terminal's Ctrl-C reaches the whole process group: the owner handles it (and stops
    # this worker), so a worker never prints a traceback or dies by itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# Seconds each start-up task keeps its worker busy (see get_pool).
_START_HOLD = 0.05


def _hold(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


class _Recording:
    """A multiprocessing context that keeps the processes made through it: a pool's workers
    (the executor's own list of them is not public)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.processes: list[BaseProcess] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ctx, name)

    def Process(self, *args: Any, **kwargs: Any) -> BaseProcess:  # noqa: N802 (multiprocessing's name)
        process: BaseProcess = self.ctx.Process(*args, **kwargs)
        self.processes.append(process)
        return process


@dataclass(frozen=True)
class _Pool:
    executor: ProcessPoolExecutor
    workers: list[BaseProcess]  # every process the executor started

    def stop(self, *, kill: bool) -> None:
        """Shut down without waiting: pending chunks are dropped; with ``kill`` running ones are
        killed with their worker, else they run to their end."""
        procs = list(self.workers) if kill else []
        self.executor.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=1.0)


_pools: dict[int, _Pool] = {}
_pools_lock = threading.Lock()


# Imported once by the fork server, so that each worker forks with them loaded. Neither torch nor
# CVXPY: a CVXPY worker imports it with its first chunk, and no worker needs torch.
_PRELOAD = [
    "idproj_or._quiet_sigint",
    "idproj_or.batch",
    *(
        f"idproj_or.solvers.{m}"
        for m in ("assignment", "cpsat", "knapsack", "linear", "shortest_path", "sorting", "tsp")
    ),
]


def _context() -> Context:
    if "forkserver" in multiprocessing.get_all_start_methods():
        from .forkserver import LibraryContext

        ctx = LibraryContext()
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")  # each worker imports the caller's __main__


def _start_failure(workers: int) -> WorkerError:
    """Why the workers of a new pool died before their first task, in words."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    guard = re.compile(r"""if\s+__name__\s*==\s*['"]__main__['"]""")
    message = f"the {workers} workers of a new process pool died while starting"
    if path is not None:
        try:
            with open(path) as f:
                unguarded = guard.search(f.read()) is None
        except OSError:
            unguarded = False
        if unguarded:
            return WorkerError(
                f"{message}: the script {path} has no 'if __name__ == \"__main__\":' guard. Each "
                "worker imports the main script, so the code that builds and calls layers with "
                "workers= must run under that guard"
            )
    return WorkerError(
        f"{message} (a script that starts workers needs an 'if __name__ == \"__main__\":' guard; "
        "see the workers' error output above)"
    )


def get_pool(workers: int) -> ProcessPoolExecutor:
    """The process pool of ``workers`` processes shared by every layer of this process."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            ctx = _Recording(_context())
            executor = ProcessPoolExecutor(workers, mp_context=cast(Any, ctx), initializer=_init_worker)
            pool = _Pool(executor, ctx.processes)
            # Start every worker now, so that start-up is not mistaken for per-call overhead. The
            # executor starts a worker per task only while none is idle: each task holds its worker
            # for a moment, or a quick first worker takes every task and the others never start.
            try:
                for f in [executor.submit(_hold, _START_HOLD) for _ in range(workers)]:
                    f.result()
            except BrokenProcessPool as exc:
                pool.stop(kill=False)
                raise _start_failure(workers) from exc
            except BaseException:
                pool.stop(kill=True)
                raise
            _pools[workers] = pool
        return pool.executor


def discard_pool(workers: int, *, kill: bool = False) -> None:
    """Forget the pool of ``workers`` processes (the next call starts a fresh one); with
    ``kill``, stop its workers now."""
    with _pools_lock:
        pool = _pools.pop(workers, None)
    if pool is not None:
        pool.stop(kill=kill)


def pool_pids(workers: int) -> list[int]:
    """Process ids of the live pool of ``workers`` processes (empty when none is running)."""
    pool = _pools.get(workers)
    return [] if pool is None else sorted(p.pid for p in pool.workers if p.pid is not None and p.is_alive())


@atexit.register
def shutdown_pools() -> None:
    """Stop every pool (registered at exit, so no worker outlives the process)."""
    for workers in list(_pools):
        with _pools_lock:
            pool = _pools.pop(workers, None)
        if pool is not None:
            pool.executor.shutdown(wait=True, cancel_futures=True)


_warned_daemonic = False


def may_start_pool(workers: int) -> bool:
    """Whether this process may start a pool: not a daemonic process (e.g. a torch DataLoader
    worker), about which a warning says so the first time."""
    global _warned_daemonic
    if not multiprocessing.current_process().daemon:
        return True
    if not _warned_daemonic:
        _warned_daemonic = True
        warnings.warn(
            f"workers={workers}: this process is daemonic (e.g. a torch DataLoader worker) and may not "
            "start the pool's processes; its batches are solved in-process (last_info.mode 'serial'). "
            "Shown once per process.",
            SolverWarning,
            stacklevel=user_stacklevel(),
        )
    return False
