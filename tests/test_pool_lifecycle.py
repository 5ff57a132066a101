"""The pool starts lazily and no worker outlives the process that owns it."""

import os
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import torch
    from ortools.sat.python import cp_model
    import idproj_or as ipo
    from idproj_or.batch import pool_pids

    if __name__ == "__main__":
        m = cp_model.CpModel()
        x = [m.new_bool_var(f"x{i}") for i in range(6)]
        m.add(sum(x) == 2)
        layer = ipo.CpSatLayer(m, x, workers=2, route="pool")
        assert pool_pids(2) == []          # nothing started before the first batch
        layer(torch.randn(16, 6))
        print(*pool_pids(2))
    """
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_workers_exit_with_the_owning_process(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True)
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2 and os.getpid() not in pids
    deadline = time.time() + 5
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)
