"""Batch solving, numpy in and numpy out (no torch below this line), one module per job:

- :mod:`.routing`: :class:`BatchSolver`, where a batch runs (in-process, the pool, an executor)
  and how it is cut into chunks;
- :mod:`.resident`: the resident solvers built once per thread and process, and the
  :class:`Task` (one chunk) they run;
- :mod:`.interrupts`: Ctrl-C during an in-process solve;
- :mod:`.pool`: the persistent process pools (start, discard, stop at exit);
- :mod:`.forkserver`: pool workers that run library code only;
- :mod:`.results`: :class:`BatchResult` (for the handle) and :class:`BatchInfo` (``last_info``).
"""

from .pool import discard_pool, get_pool, pool_pids, shutdown_pools
from .resident import Task, resident_count, solve_chunk
from .results import BatchInfo, BatchResult, InstanceInfo
from .routing import BatchSolver, is_dask_executor

__all__ = [
    "BatchInfo",
    "BatchResult",
    "BatchSolver",
    "InstanceInfo",
    "Task",
    "discard_pool",
    "get_pool",
    "is_dask_executor",
    "pool_pids",
    "resident_count",
    "shutdown_pools",
    "solve_chunk",
]
