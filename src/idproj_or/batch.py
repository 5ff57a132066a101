"""Batch solving: split a batch into chunks and run them in-process, in a persistent process
pool shared per worker count, or on any ``concurrent.futures.Executor`` (e.g. Dask).

Workers receive the pickled spec with each chunk but build the model only once: resident
solvers are cached per thread by the spec's content hash.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import math
import multiprocessing
import os
import pickle
import queue
import re
import signal
import sys
import threading
import time
import warnings
from collections import OrderedDict
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .errors import SolverWarning, WorkerError, user_stacklevel
from .options import Route
from .solvers.base import ChunkResult, Data, ModelSpec, ResidentSolver
from .statuses import NOT_SOLVED, SOLVED, cause

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


def _resident(key: str, payload: bytes) -> ResidentSolver:
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
    ``(B, ...)``), the time limit per instance, whether to stop at the first failure, and
    whether to report duals (:meth:`ResidentSolver.solve_many`)."""

    costs: np.ndarray
    data: Data
    time_limit: float | None
    stop: bool
    duals: bool = False

    def rows(self, a: int, b: int) -> Task:
        return self._replace(costs=self.costs[a:b], data={k: v[a:b] for k, v in self.data.items()})

    def run(self, solver: ResidentSolver, cancel: threading.Event | None = None) -> ChunkResult:
        return solver.solve_many(
            self.costs, self.time_limit, data=self.data, duals=self.duals, stop_at_failure=self.stop, cancel=cancel
        )


def solve_chunk(key: str, payload: bytes, task: Task) -> ChunkResult:
    """Solve ``task`` on this thread's resident solver of the spec."""
    return task.run(_resident(key, payload))


def _remote_chunk(key: str, payload: bytes, task: Task) -> tuple[ChunkResult, float]:
    """:func:`solve_chunk` in a worker, with the seconds spent building the resident solver
    there (work, not pool overhead: a cold worker must not make the pool look slow)."""
    t0 = time.perf_counter()
    solver = _resident(key, payload)
    built = time.perf_counter() - t0
    return task.run(solver), built


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
            self.solver = _resident(key, payload)
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
    """:func:`solve_chunk` in this process, interruptible by Ctrl-C when called from the main
    thread: on this thread with the interrupt watch (``on_caller_thread``, see
    :attr:`ModelSpec.on_caller_thread`), else on the helper thread."""
    global _solver_thread, _interrupt_watch
    handler = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(handler):
        return solve_chunk(key, payload, task)
    if on_caller_thread and handler is signal.default_int_handler:
        # (A handler of the user's may not raise: then nothing must stop the solver.)
        if _interrupt_watch is None:
            _interrupt_watch = _InterruptWatch()
        return _interrupt_watch.run(_resident(key, payload), task)
    if _solver_thread is None:
        _solver_thread = _SolverThread()
    return _solver_thread.run(_Job(key, payload, task))


def _init_worker() -> None:
    # One thread per worker: the pool provides the parallelism (no oversubscription).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    # The terminal's Ctrl-C reaches the whole process group: the owner handles it (and stops
    # this worker), so a worker never prints a traceback or dies by itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_pools: dict[int, ProcessPoolExecutor] = {}
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


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        from ._forkserver import LibraryContext

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
            pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_init_worker)
            # Start every worker now, so that start-up is not mistaken for per-call overhead.
            try:
                for f in [pool.submit(os.getpid) for _ in range(workers)]:
                    f.result()
            except BrokenProcessPool as exc:
                pool.shutdown(wait=False, cancel_futures=True)
                raise _start_failure(workers) from exc
            except BaseException:
                _stop(pool)
                raise
            _pools[workers] = pool
        return pool


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` now: pending chunks are dropped and running ones killed with their worker."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=1.0)


def discard_pool(workers: int, *, kill: bool = False) -> None:
    with _pools_lock:
        pool = _pools.pop(workers, None)
    if pool is not None:
        if kill:
            _stop(pool)
        else:
            pool.shutdown(wait=False, cancel_futures=True)


def pool_pids(workers: int) -> list[int]:
    """Process ids of the live pool of ``workers`` processes (empty when none is running)."""
    pool = _pools.get(workers)
    procs = getattr(pool, "_processes", None) or {}
    return sorted(procs)


@atexit.register
def shutdown_pools() -> None:
    """Stop every pool (registered at exit, so no worker outlives the process)."""
    for workers in list(_pools):
        with _pools_lock:
            pool = _pools.pop(workers, None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class InstanceInfo(NamedTuple):
    status: str
    solver_status: str
    objective: float
    wall_time: float
    scaling_error: float
    bound: float


@dataclass(frozen=True)
class BatchInfo:
    """What the solver reported for each instance of a batch.

    ``status[i]`` is the common status (``"optimal"``, ``"feasible"``, ``"infeasible"``, ...; see
    docs/batching.md) and ``solver_status[i]`` the backend's own word; ``objective[i]`` is
    ``sum(c_i * y_i)`` for the cost ``c_i`` passed to the layer (before projection and noise),
    NaN without a decision; ``wall_time[i]`` is the seconds spent in that instance's solve;
    ``mode`` says where the batch ran: ``"serial"`` (in the calling process), ``"pool"`` (the
    layer's process pool; on the first call of ``route="auto"``, all but the first instance,
    which measures the solve time in-process) or ``"executor"``.
    ``objective[i]`` includes the model's own objective when the layer keeps it (CpSatLayer,
    LinearSolverLayer, CvxpyLayer with ``objective="keep"``). ``scaling_error[i]`` bounds how
    much worse than optimal the decision can be because the library scaled the costs to
    integers for the solver (CP-SAT, assignment, knapsack, TSP); 0 when the solver saw them
    exactly. A decision whose bound exceeds the float64 rounding of its objective is reported
    ``"feasible"``, not ``"optimal"``. ``bound[i]`` is the solver's proven bound on
    ``objective[i]`` (the optimum itself for exact solvers; NaN when the backend gives none).
    After a solve with ``duals=True`` (``layer.solve(costs, duals=True)``), ``duals`` holds
    ``(B, m)`` constraint duals, ``reduced_costs`` ``(B, n)`` those of the cost entries and
    ``binding`` ``(B, m)`` whether each constraint is tight at the decision (NaN / False rows
    without a decision; None when the backend has none, see its docs).
    """

    status: tuple[str, ...]
    solver_status: tuple[str, ...]
    objective: np.ndarray
    wall_time: np.ndarray
    mode: str
    time_limit: float | None = None
    scaling_error: np.ndarray | None = None
    bound: np.ndarray | None = None
    duals: np.ndarray | None = None
    reduced_costs: np.ndarray | None = None
    binding: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.status)

    def __getitem__(self, i: int) -> InstanceInfo:
        error = 0.0 if self.scaling_error is None else float(self.scaling_error[i])
        bound = math.nan if self.bound is None else float(self.bound[i])
        return InstanceInfo(
            self.status[i], self.solver_status[i], float(self.objective[i]), float(self.wall_time[i]), error, bound
        )

    @property
    def failed(self) -> tuple[int, ...]:
        """Batch indices without a decision."""
        return tuple(i for i, s in enumerate(self.status) if s not in SOLVED)

    @property
    def not_optimal(self) -> tuple[int, ...]:
        """Batch indices with a decision not proven optimal."""
        return tuple(i for i, s in enumerate(self.status) if s == "feasible")

    def cause(self, i: int) -> str:
        """Instance ``i``'s outcome in words (e.g. why it has no decision)."""
        return cause(self.status[i], self.solver_status[i], self.time_limit)


@dataclass(frozen=True)
class BatchResult:
    solutions: np.ndarray  # NaN rows for instances without a decision
    status: tuple[str, ...]
    solver_status: tuple[str, ...]
    wall_time: np.ndarray
    mode: str
    fixed: np.ndarray  # the model's own objective at each decision (NaN without one)
    scaling_error: np.ndarray
    bound: np.ndarray  # the solver's bound, in the sense it optimised (NaN: none)
    duals: np.ndarray | None = None
    reduced_costs: np.ndarray | None = None
    binding: np.ndarray | None = None


# Target seconds of solving per pool chunk, and chunks per worker at most (load balance: solve
# times are heavy-tailed, and a free worker takes the next chunk; a round trip costs ~1 ms).
_CHUNK_SECONDS = 0.01
_MAX_CHUNKS_PER_WORKER = 16
# Prior of a pool round trip before it is measured (seconds), on the safe side: a low prior
# sends small batches of sub-millisecond solves to the pool before the overhead is learned.
_POOL_OVERHEAD_PRIOR = 0.007  # measured here: ~6.6 ms for a 2-chunk call
# Least round trip the learned overhead may fall to: with every core busy, the pool's own cost
# hides in the workers' solve times, and wall - busy alone would drift to zero.
_POOL_OVERHEAD_FLOOR = 0.001
# The pool must be predicted this much faster than in-process: a wrong "pool" costs more than a
# wrong "in-process" on small batches.
_POOL_MARGIN = 0.9


_warned_daemonic = False


def _daemonic(workers: int) -> bool:
    """Whether this process may not start a pool (a daemonic process, e.g. a torch DataLoader
    worker); the first time, a warning that says so."""
    global _warned_daemonic
    if not multiprocessing.current_process().daemon:
        return False
    if not _warned_daemonic:
        _warned_daemonic = True
        warnings.warn(
            f"workers={workers}: this process is daemonic (e.g. a torch DataLoader worker) and may not "
            "start the pool's processes; its batches are solved in-process (last_info.mode 'serial'). "
            "Shown once per process.",
            SolverWarning,
            stacklevel=user_stacklevel(),
        )
    return True


def is_dask_executor(executor: Executor) -> bool:
    """Whether ``executor`` is a Dask ``distributed`` client's (``client.get_executor()``)."""
    module = sys.modules.get("distributed.cfexecutor")  # loaded whenever such an executor exists
    return module is not None and isinstance(executor, module.ClientExecutor)


def _cluster_threads() -> int:
    """Run on a Dask worker: the threads of every worker of its cluster."""
    from distributed import get_client

    return sum(get_client().nthreads().values())


class BatchSolver:
    """Routes the rows of a cost matrix to resident solvers of one spec and gathers them in order.

    With ``workers=k`` and ``route="auto"`` the batch goes to the pool only when the measured
    per-instance solve time says the pool wins; otherwise it is solved in-process.
    ``route="pool"`` always uses the pool, ``route="serial"`` never leaves the process. An
    executor gets ``executor_workers`` chunks' worth of parallelism, or its Dask cluster's thread
    count (asked at each call). Every route runs the same :meth:`ResidentSolver.solve_many` on
    the same deterministic solver, so results are identical.

    A pickled (or ``torch.save``d) BatchSolver leaves its executor behind: the copy solves
    in-process until one is attached again (``deepcopy`` keeps the same executor).
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        workers: int | None,
        executor: Executor | None,
        time_limit: float | None,
        route: Route = "auto",
        executor_workers: int | None = None,
    ) -> None:
        if workers is not None and type(spec).__module__ == "__main__":
            raise ValueError(
                f"workers={workers}: the spec class {type(spec).__name__} is defined in the main "
                "script, which pool workers do not run; define it in an importable module"
            )
        self.payload = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
        self.key = hashlib.sha256(self.payload).hexdigest()
        self.on_caller_thread = spec.on_caller_thread
        self.workers = workers
        self.executor = executor
        self.time_limit = time_limit
        self.route: Route = route
        self.executor_workers = executor_workers
        self._per_instance: float | None = None
        self._overhead = _POOL_OVERHEAD_PRIOR

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["executor"] = None
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> BatchSolver:
        new = BatchSolver.__new__(BatchSolver)
        new.__dict__.update(self.__dict__)  # plain data and a shared executor
        return new

    def _observe(self, times: np.ndarray) -> None:
        if len(times):
            t = float(np.mean(times))
            self._per_instance = t if self._per_instance is None else 0.7 * self._per_instance + 0.3 * t

    def _pooled(self) -> bool:
        """Whether this call may use the pool: with ``route="pool"``, or ``"auto"`` and two
        workers or more (one process never beats in-process); never in a daemonic process."""
        if self.workers is None or self.route == "serial" or (self.route == "auto" and self.workers < 2):
            return False
        return not _daemonic(self.workers)

    def _use_pool(self, n: int) -> bool:
        assert self.workers is not None and self._per_instance is not None
        serial = n * self._per_instance
        pool = serial / min(self.workers, n) + self._overhead
        return pool < _POOL_MARGIN * serial

    def _n_chunks(self, n: int, parallel: int) -> int:
        if self._per_instance is None:
            return min(n, 2 * parallel)
        per_worker = n * self._per_instance / parallel
        k = int(np.clip(round(per_worker / _CHUNK_SECONDS), 1, _MAX_CHUNKS_PER_WORKER))
        return min(n, parallel * k)

    def solve(
        self, costs: np.ndarray, *, data: Data | None = None, stop_at_failure: bool = True, duals: bool = False
    ) -> BatchResult:
        """Decisions for the rows of ``costs`` with ``data``'s rows (field -> ``(B, ...)``); with
        ``stop_at_failure`` the rows after a failed one (within its chunk) are not attempted;
        with ``duals`` the backends that know them report duals (:class:`BatchInfo`)."""
        n = len(costs)
        task = Task(costs, dict(data or {}), self.time_limit, stop_at_failure, duals)
        stop = stop_at_failure
        if self.executor is not None and self.route != "serial":
            parallel = self.executor_workers or max(1, self.executor.submit(_cluster_threads).result())
            chunks = [c for c, _ in self._run(self.executor, task, self._n_chunks(n, parallel))]
            mode = "executor"
        elif self._pooled():
            assert self.workers is not None
            chunks, mode = [], "serial"
            rest = task
            if self.route == "auto" and self._per_instance is None:
                # Probe: solve the first instance in-process to measure the solve time, so a
                # fast model never starts a pool it does not need.
                probe = self._local(task.rows(0, 1))
                chunks.append(probe)
                rest = task.rows(1, n)
                if stop and probe.status[0] not in SOLVED:  # report it, solve no more
                    rest = task.rows(n, n)
                    chunks.append(_unattempted(costs[1:]))
                else:
                    self._observe(probe.wall_time)
            m = len(rest.costs)
            if m and (self.route == "pool" or self._use_pool(m)):
                pool = get_pool(self.workers)
                t0 = time.perf_counter()
                pooled = self._run_pool(pool, rest)
                wall = time.perf_counter() - t0
                work = sum(float(c.wall_time.sum()) + built for c, built in pooled)
                busy = work / min(self.workers, len(pooled))
                # One slow round trip (a worker still starting, a busy machine) may raise the
                # estimate at most 1.9x: a lasting change still shows within a few batches.
                sample = float(np.clip(wall - busy, _POOL_OVERHEAD_FLOOR, 4 * self._overhead))
                self._overhead = 0.7 * self._overhead + 0.3 * sample
                chunks += [c for c, _ in pooled]
                mode = "pool"
            elif m:
                chunks.append(self._local(rest))
        else:
            chunks = [self._local(task)]
            mode = "serial"
        return self._gather(chunks, mode)

    def _local(self, task: Task) -> ChunkResult:
        return run_in_process(self.key, self.payload, task, on_caller_thread=self.on_caller_thread)

    def _run_pool(self, pool: Executor, task: Task) -> list[tuple[ChunkResult, float]]:
        assert self.workers is not None
        n = len(task.costs)
        try:
            return self._run(pool, task, self._n_chunks(n, self.workers))
        except BrokenProcessPool as exc:
            discard_pool(self.workers)
            raise WorkerError(
                f"a worker of the {self.workers}-process pool died while solving a batch of "
                f"{n} instances; the pool was discarded and the next call starts a "
                "fresh one"
            ) from exc
        except KeyboardInterrupt:
            # Its workers would go on with abandoned chunks: stop them; the next call starts a
            # fresh pool.
            discard_pool(self.workers, kill=True)
            raise

    def _run(self, executor: Executor, task: Task, n_chunks: int) -> list[tuple[ChunkResult, float]]:
        bounds = np.linspace(0, len(task.costs), n_chunks + 1).round().astype(int)
        futures: list[Future[tuple[ChunkResult, float]]] = [
            executor.submit(_remote_chunk, self.key, self.payload, task.rows(a, b))
            for a, b in itertools.pairwise(bounds.tolist())
        ]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

    def _gather(self, chunks: list[ChunkResult], mode: str) -> BatchResult:
        sols = np.concatenate([c.solutions for c in chunks])
        times = np.concatenate([c.wall_time for c in chunks])
        status = tuple(s for c in chunks for s in c.status)
        words = tuple(w for c in chunks for w in c.solver_status)
        fixed = np.concatenate([np.zeros(len(c.status)) if c.fixed is None else c.fixed for c in chunks])
        errors = np.concatenate(
            [np.zeros(len(c.status)) if c.scaling_error is None else c.scaling_error for c in chunks]
        )
        bound = np.concatenate([np.full(len(c.status), np.nan) if c.bound is None else c.bound for c in chunks])
        solved = np.array([s in SOLVED for s in status])
        self._observe(times[solved])
        extras = (_stack(chunks, f) for f in ("duals", "reduced_costs", "binding"))
        return BatchResult(sols, status, words, times, mode, np.where(solved, fixed, np.nan), errors, bound, *extras)


def _stack(chunks: list[ChunkResult], field: str) -> np.ndarray | None:
    """One optional per-row array of the chunks, stacked (None when no chunk has it; the rows
    of chunks without it NaN, or False for flags)."""
    parts = [getattr(c, field) for c in chunks]
    like = next((p for p in parts if p is not None), None)
    if like is None:
        return None
    fill = False if like.dtype == bool else np.nan
    return np.concatenate(
        [
            np.full((len(c.status), like.shape[1]), fill, dtype=like.dtype) if p is None else p
            for c, p in zip(chunks, parts)
        ]
    )


def _unattempted(costs: np.ndarray) -> ChunkResult:
    n = len(costs)
    return ChunkResult(np.full_like(costs, np.nan), [NOT_SOLVED] * n, [""] * n, np.zeros(n))
