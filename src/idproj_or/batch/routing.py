"""Where a batch runs: :class:`BatchSolver` splits it into chunks and solves them in-process, in
the shared process pool or on any ``concurrent.futures.Executor`` (e.g. Dask), choosing from
measured solve times, and gathers the results in order."""

from __future__ import annotations

import hashlib
import itertools
import pickle
import sys
import time
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from ..errors import WorkerError
from ..options import Route
from ..solvers.base import ChunkResult, Data, ModelSpec
from ..solvers.certificate import Certified
from ..statuses import SOLVED
from .interrupts import run_in_process
from .pool import discard_pool, get_pool, may_start_pool
from .resident import Task, remote_chunk
from .results import BatchResult, certified, gather, unattempted

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

    # The network path shortcut (unit-flow LPs on acyclic networks) on; False (per instance):
    # the box and basis certificates alone. A class default, so copies pickled before it existed
    # read it too.
    network: bool = True

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
        self.box = spec.box
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
        return may_start_pool(self.workers)

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
        self,
        costs: np.ndarray,
        *,
        data: Data | None = None,
        stop_at_failure: bool = True,
        duals: bool = False,
        warm: np.ndarray | None = None,
    ) -> BatchResult:
        """Decisions for the rows of ``costs`` with ``data``'s rows (field -> ``(B, ...)``); with
        ``stop_at_failure`` the rows after a failed one (within its chunk) are not attempted;
        with ``duals`` the backends that know them report duals (:class:`BatchInfo`); with
        ``warm`` (``(B, s)`` states, NaN rows where none) each row starts from its state and the
        result's ``warm`` holds the states to keep. The rows that the spec's box certificate, basis
        certificate or network path shortcut decides (:mod:`idproj_or.solvers.certificate`) are
        not sent to a solver."""
        data = dict(data or {})
        if self.box is None or duals:
            return self._solve(costs, data, stop_at_failure, duals, warm)
        n = len(costs)
        rest = np.arange(n)
        decided: list[tuple[Certified, np.ndarray]] = []
        checks = [lambda c, d, w: self.box.certify(c, d)]
        if self.network and self.box.network is not None:
            checks.insert(0, lambda c, d, w: self.box.certify_network(c, d))
        if warm is not None and warm.shape[1] and self.box.basis:
            checks.append(lambda c, d, w: self.box.certify_basis(c, d, w))
        for check in checks:
            cert = check(costs[rest], {k: v[rest] for k, v in data.items()}, None if warm is None else warm[rest])
            if cert.mask.any():
                decided.append((cert, rest[cert.mask]))
                rest = rest[~cert.mask]
            if not len(rest):
                break
        if not decided:
            return self._solve(costs, data, stop_at_failure, duals, warm)
        inner = (
            self._solve(
                costs[rest],
                {k: v[rest] for k, v in data.items()},
                stop_at_failure,
                duals,
                None if warm is None else warm[rest],
            )
            if len(rest)
            else None
        )
        return certified(decided, inner, rest, costs.shape)

    def _solve(
        self, costs: np.ndarray, data: Data, stop_at_failure: bool, duals: bool, warm: np.ndarray | None
    ) -> BatchResult:
        n = len(costs)
        task = Task(costs, data, self.time_limit, stop_at_failure, duals, warm)
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
                    chunks.append(unattempted(costs[1:]))
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
        result = gather(chunks, mode)
        self._observe(result.wall_time[result.solved])
        return result

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
            executor.submit(remote_chunk, self.key, self.payload, task.rows(a, b))
            for a, b in itertools.pairwise(bounds.tolist())
        ]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()
