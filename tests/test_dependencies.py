"""pyproject.toml's ranges leave out the releases known to break next to ortools, and contain
the lock (constraints.txt) that the test suite runs on."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

# Checked with ortools 9.15 in one process (tests/test_compat.py, tests/test_interrupts.py):
# highspy 1.15 ships libhighs.so.1 under the name of ortools' own HiGHS (undefined symbol on
# import); 1.16 reports a solve stopped by Ctrl-C as kSolveError (SolverError, not KeyboardInterrupt).
KNOWN_BROKEN = {"highspy": ["1.15.0", "1.15.1", "1.16.0"]}


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements() -> dict[str, Requirement]:
    project = _project()
    lines = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def _lock() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pins}


@pytest.mark.parametrize(("name", "version"), [(n, v) for n, vs in KNOWN_BROKEN.items() for v in vs])
def test_ranges_leave_out_known_broken_releases(name, version):
    assert not _requirements()[name].specifier.contains(version, prereleases=True)


def test_lock_is_inside_the_ranges():
    lock = _lock()
    outside = {
        name: (lock.get(name), str(req.specifier))
        for name, req in _requirements().items()
        if lock.get(name) is None or not req.specifier.contains(lock[name], prereleases=True)
    }
    assert outside == {}


def test_torch_is_a_range_for_users():
    # a pinned torch in pyproject would pull a multi-GB CUDA build on most machines; the lock pins
    # the CPU build (test above)
    assert not any(s.operator in ("==", "===", "~=") for s in _requirements()["torch"].specifier)
