"""Pool workers that run library code only (forkserver platforms).

A forkserver or spawn worker normally runs the caller's ``__main__`` again before its first task
(to find functions defined there), and with it everything the script imports: torch, cvxpy, the
user's data loading. The pool's tasks are library functions on library specs, so its workers
leave ``__main__`` out: they load only the solver modules the fork server preloads, and a script
without an ``if __name__ == "__main__":`` guard cannot start them recursively.
"""

from __future__ import annotations

import multiprocessing.context
import threading
from multiprocessing import popen_forkserver, spawn
from typing import Any


class _WithoutMain:
    """``multiprocessing.spawn`` as seen by :class:`_LibraryPopen`: the preparation data of a
    worker leaves out the caller's ``__main__``, which a worker would otherwise run again (with
    the torch it imports). A pool worker runs library code only."""

    def __getattr__(self, name: str) -> Any:
        return getattr(spawn, name)

    def get_preparation_data(self, name: str) -> dict[str, Any]:
        data = spawn.get_preparation_data(name)
        if getattr(_launching, "active", False):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data


_launching = threading.local()
_launch_lock = threading.Lock()


class _LibraryPopen(popen_forkserver.Popen):
    def _launch(self, process_obj: Any) -> None:
        # (The module's ``spawn`` is swapped only while this thread launches; another thread's
        # launch in that window still sees the full preparation data.)
        with _launch_lock:
            _launching.active = True
            popen_forkserver.spawn = _WithoutMain()  # type: ignore[attr-defined]
            try:
                super()._launch(process_obj)  # type: ignore[misc]
            finally:
                popen_forkserver.spawn = spawn  # type: ignore[attr-defined]
                _launching.active = False


class _LibraryProcess(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _LibraryPopen:  # noqa: N802 (multiprocessing's name)
        return _LibraryPopen(process_obj)


class LibraryContext(multiprocessing.context.ForkServerContext):
    Process = _LibraryProcess
