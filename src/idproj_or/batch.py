"""Batch solving: split a batch into chunks and run them in-process, in a persistent process
pool shared per worker count, or on any ``concurrent.futures.Executor`` (e.g. Dask).

Workers receive the pickled spec with each chunk but build the model only once: resident
solvers are cached per thread by the spec's content hash.
"""

from __future__ import annotations

import atexit
import hashlib
import multiprocessing
import os
import pickle
import threading
import time
from collections import OrderedDict
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .adapters.base import ChunkResult, ModelSpec, ResidentSolver
from .errors import WorkerError

_RESIDENT_PER_THREAD = 16
_local = threading.local()


def _resident(key: str, payload: bytes) -> ResidentSolver:
    cache: OrderedDict[str, ResidentSolver] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    solver = cache.get(key)
    if solver is None:
        spec: ModelSpec = pickle.loads(payload)
        solver = cache[key] = spec.build()
        while len(cache) > _RESIDENT_PER_THREAD:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return solver


def solve_chunk(key: str, payload: bytes, costs: np.ndarray, time_limit: float | None) -> ChunkResult:
    """Solve the rows of ``costs`` on this thread's resident solver of the spec (see
    :meth:`ResidentSolver.solve_many`)."""
    return _resident(key, payload).solve_many(costs, time_limit)


def _remote_chunk(
    key: str, payload: bytes, costs: np.ndarray, time_limit: float | None
) -> tuple[ChunkResult, float]:
    """:func:`solve_chunk` in a worker, with the seconds spent building the resident solver
    there (work, not pool overhead: a cold worker must not make the pool look slow)."""
    t0 = time.perf_counter()
    solver = _resident(key, payload)
    built = time.perf_counter() - t0
    return solver.solve_many(costs, time_limit), built


def _init_worker() -> None:
    # One thread per worker: the pool provides the parallelism (no oversubscription).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


# Imported once by the fork server, so that each worker forks with them loaded instead of
# importing torch and OR-Tools itself.
_PRELOAD = ["idproj_or.layer", "idproj_or.adapters"]


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD + [f"idproj_or.adapters.{m}" for m in _adapter_modules()])
        return ctx
    return multiprocessing.get_context("spawn")


def _adapter_modules() -> list[str]:
    import pkgutil

    from . import adapters

    return [m.name for m in pkgutil.iter_modules(adapters.__path__) if not m.name.startswith("_")]


def get_pool(workers: int) -> ProcessPoolExecutor:
    """The process pool of ``workers`` processes shared by every layer of this process."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_init_worker)
            # Start every worker now, so that start-up is not mistaken for per-call overhead.
            for f in [pool.submit(os.getpid) for _ in range(workers)]:
                f.result()
            _pools[workers] = pool
        return pool


def discard_pool(workers: int) -> None:
    with _pools_lock:
        pool = _pools.pop(workers, None)
    if pool is not None:
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
    objective: float
    wall_time: float


@dataclass(frozen=True)
class BatchInfo:
    """What the solver reported for each instance of the last batch.

    ``objective[i]`` is ``sum(c_i * y_i)`` for the cost the solver saw (after projection and
    noise); ``wall_time[i]`` is the seconds spent in that instance's solve; ``mode`` says where
    the batch ran: ``"serial"``, ``"pool"`` or ``"executor"``.
    """

    status: tuple[str, ...]
    objective: np.ndarray
    wall_time: np.ndarray
    mode: str

    def __len__(self) -> int:
        return len(self.status)

    def __getitem__(self, i: int) -> InstanceInfo:
        return InstanceInfo(self.status[i], float(self.objective[i]), float(self.wall_time[i]))


@dataclass(frozen=True)
class BatchResult:
    solutions: np.ndarray
    info: BatchInfo
    failed: int | None  # lowest batch index without a solution


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


class BatchSolver:
    """Routes the rows of a cost matrix to resident solvers of one spec and gathers them in order.

    With ``workers=k`` the batch goes to the pool only when the measured per-instance solve time
    says the pool wins; otherwise it is solved in-process. Every route runs the same
    :func:`solve_chunk` on the same deterministic solver, so results are identical.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        workers: int | None,
        executor: Executor | None,
        time_limit: float | None,
    ) -> None:
        self.payload = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
        self.key = hashlib.sha256(self.payload).hexdigest()
        self.workers = workers
        self.executor = executor
        self.time_limit = time_limit
        self._per_instance: float | None = None
        self._overhead = _POOL_OVERHEAD_PRIOR

    def _observe(self, times: np.ndarray) -> None:
        if len(times):
            t = float(np.mean(times))
            self._per_instance = t if self._per_instance is None else 0.7 * self._per_instance + 0.3 * t

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

    def solve(self, costs: np.ndarray) -> BatchResult:
        n = len(costs)
        if self.executor is not None:
            parallel = int(getattr(self.executor, "_max_workers", 0) or 4)
            chunks = [c for c, _ in self._run(self.executor, costs, self._n_chunks(n, parallel))]
            mode = "executor"
        elif self.workers is not None and self.workers >= 2:  # one process never beats in-process
            chunks, mode = [], "serial"
            rest = costs
            if self._per_instance is None:
                # Probe: solve the first instance in-process to measure the solve time, so a
                # fast model never starts a pool it does not need.
                probe = solve_chunk(self.key, self.payload, costs[:1], self.time_limit)
                if probe[3] == 0:  # the first instance has no solution: report it, solve no more
                    times = np.zeros(n)
                    times[0] = probe[2][0]
                    return self._gather(costs, [(np.zeros_like(costs), probe[1], times, 0)], "serial")
                chunks.append(probe)
                self._observe(probe[2])
                rest = costs[1:]
            if len(rest) and self._use_pool(len(rest)):
                pool = get_pool(self.workers)
                t0 = time.perf_counter()
                pooled = self._run_pool(pool, rest)
                wall = time.perf_counter() - t0
                work = sum(float(c[2].sum()) + built for c, built in pooled)
                busy = work / min(self.workers, len(pooled))
                # One slow round trip (a worker still starting, a busy machine) may raise the
                # estimate at most 1.9x: a lasting change still shows within a few batches.
                sample = float(np.clip(wall - busy, _POOL_OVERHEAD_FLOOR, 4 * self._overhead))
                self._overhead = 0.7 * self._overhead + 0.3 * sample
                chunks += [c for c, _ in pooled]
                mode = "pool"
            elif len(rest):
                chunks.append(solve_chunk(self.key, self.payload, rest, self.time_limit))
        else:
            chunks = [solve_chunk(self.key, self.payload, costs, self.time_limit)]
            mode = "serial"
        return self._gather(costs, chunks, mode)

    def _run_pool(self, pool: Executor, costs: np.ndarray) -> list[tuple[ChunkResult, float]]:
        assert self.workers is not None
        try:
            return self._run(pool, costs, self._n_chunks(len(costs), self.workers))
        except BrokenProcessPool as exc:
            discard_pool(self.workers)
            raise WorkerError(
                f"a worker of the {self.workers}-process pool died while solving a batch of "
                f"{len(costs)} instances; the pool was discarded and the next call starts a "
                "fresh one"
            ) from exc

    def _run(self, executor: Executor, costs: np.ndarray, n_chunks: int) -> list[tuple[ChunkResult, float]]:
        bounds = np.linspace(0, len(costs), n_chunks + 1).round().astype(int)
        futures: list[Future[tuple[ChunkResult, float]]] = [
            executor.submit(_remote_chunk, self.key, self.payload, costs[a:b], self.time_limit)
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

    def _gather(self, costs: np.ndarray, chunks: list[ChunkResult], mode: str) -> BatchResult:
        n = len(costs)
        sols = np.zeros_like(costs)
        times = np.zeros(n)
        statuses: list[str] = []
        failed: int | None = None
        start = 0
        for chunk_sols, chunk_status, chunk_times, n_ok in chunks:
            m = len(chunk_sols)
            sols[start : start + m] = chunk_sols
            times[start : start + m] = chunk_times
            statuses.extend(chunk_status)
            statuses.extend(["NOT_SOLVED"] * (m - len(chunk_status)))
            if n_ok < m and failed is None:
                failed = start + n_ok
            start += m
        self._observe(times[: failed if failed is not None else n])
        objective = np.einsum("ij,ij->i", costs, sols)
        info = BatchInfo(tuple(statuses), objective, times, mode)
        return BatchResult(sols, info, failed)
