"""Ctrl-C always reaches the caller as KeyboardInterrupt, within 2 s, and leaves no process.

Each scenario runs in a fresh process group (as a terminal's Ctrl-C reaches the whole group),
gets SIGINT while or after it solves, and reports what it saw.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

HEADER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np, torch
    import idproj_or as ipo
    from ortools.sat.python import cp_model
    from ortools.linear_solver import pywraplp

    def subset_sum(n=60):  # a needle in a haystack: seconds to minutes to a first solution
        w = np.random.default_rng(1).integers(10**6, 10**7, size=n)
        m = cp_model.CpModel()
        x = [m.new_bool_var(f"x{i}") for i in range(n)]
        m.add(sum(int(a) * v for a, v in zip(w, x)) == int(w.sum() // 2) + 1)
        return m, x

    def k_subset():
        m = cp_model.CpModel()
        x = [m.new_bool_var(f"x{i}") for i in range(4)]
        m.add(sum(x) == 2)
        return m, x

    def check_small(**options):  # the library still works, and right
        m, x = k_subset()
        y = ipo.CpSatLayer(m, x, sense="max", **options)(torch.tensor([[1.0, 4.0, 2.0, 3.0]] * 8))
        assert y.tolist() == [[0.0, 1.0, 0.0, 1.0]] * 8, y

    def hard_layer(kind, **options):
        if kind == "cpsat":
            m, x = subset_sum()
            return ipo.CpSatLayer(m, x, **options), torch.rand(8, 60) + 1.0
        if kind in ("SCIP", "SAT", "CBC"):  # CBC cannot be stopped: the call returns without it
            rng = np.random.default_rng(1)
            w = rng.integers(10**6, 10**7, size=60)
            s = pywraplp.Solver.CreateSolver(kind)
            x = [s.BoolVar(f"x{i}") for i in range(60)]
            s.Add(sum(int(a) * v for a, v in zip(w, x)) == int(w.sum() // 2) + 1)
            return ipo.LinearSolverLayer(s, x, **options), torch.rand(8, 60) + 1.0
        if kind in ("mathopt", "model_builder"):  # the same subset sum, declared in those APIs
            w = np.random.default_rng(1).integers(10**6, 10**7, size=60)
            if kind == "mathopt":
                from ortools.math_opt.python import mathopt
                m = mathopt.Model()
                x = [m.add_binary_variable(name=f"x{i}") for i in range(60)]
                m.add_linear_constraint(sum(int(a) * v for a, v in zip(w, x)) == int(w.sum() // 2) + 1)
                return ipo.MathOptLayer(m, x, solver=mathopt.SolverType.GSCIP, **options), torch.rand(8, 60) + 1.0
            from ortools.linear_solver.python import model_builder as mb
            m = mb.Model()
            x = [m.new_bool_var(f"x{i}") for i in range(60)]
            m.add(sum(int(a) * v for a, v in zip(w, x)) == int(w.sum() // 2) + 1)
            return ipo.ModelBuilderLayer(m, x, solver="scip", **options), torch.rand(8, 60) + 1.0
        if kind == "cvxpy":  # HiGHS cannot be stopped: the call returns without it
            import cvxpy as cp
            w = np.random.default_rng(1).integers(10**6, 10**7, size=60)
            c, x = cp.Parameter(60), cp.Variable(60, boolean=True)
            problem = cp.Problem(cp.Minimize(c @ x), [w @ x == int(w.sum() // 2) + 1])
            return ipo.CvxpyLayer(problem, c, x, **options), torch.rand(8, 60) + 1.0
        if kind == "knapsack":  # profits pi x even weights (off any grid), odd capacity: nothing prunes
            w = 2 * np.random.default_rng(0).integers(1, 1000, size=(1, 60))
            layer = ipo.KnapsackLayer(w, [int(w.sum() // 2) | 1], **options)
            layer.solve(torch.zeros(60))  # loads the compiled search (numba) before the test
            return layer, torch.tensor(np.pi * w, dtype=torch.float64).repeat(8, 1)
        raise ValueError(kind)

    def say(*args):
        print(*args, flush=True)
    """
)

AFTER_SOLVE = HEADER + textwrap.dedent(
    """
    if __name__ == "__main__":
        kind = sys.argv[1]
        if kind == "cpsat":
            check_small()
        elif kind == "tsp":
            ipo.TSPLayer(5)(torch.rand(2, 5, 5))
        elif kind == "SAT":
            s = pywraplp.Solver.CreateSolver("SAT")
            x = [s.BoolVar(f"x{i}") for i in range(3)]
            ipo.LinearSolverLayer(s, x)(torch.randn(2, 3))
        elif kind == "probe":
            m, x = k_subset()
            ipo.CpSatLayer(m, x, workers=2)(torch.randn(4, 4))
        try:
            say("ready")
            time.sleep(30)
            say("not interrupted")
        except KeyboardInterrupt:
            say("KeyboardInterrupt")
        finally:
            say("finally")
    """
)

DURING_SOLVE = HEADER + textwrap.dedent(
    """
    if __name__ == "__main__":
        kind, workers = sys.argv[1], int(sys.argv[2]) or None
        layer, costs = hard_layer(kind, workers=workers)
        if workers:
            layer.route = "pool"
            from idproj_or.batch import get_pool, pool_pids
            get_pool(workers)
            say("pool", *pool_pids(workers))
        check_small()  # first-call costs paid: the interrupt lands in the solve
        say("ready")
        t0 = time.perf_counter()
        try:
            layer(costs)
            say("not interrupted")
        except KeyboardInterrupt:
            say(f"KeyboardInterrupt after {time.perf_counter() - t0:.3f}")
        check_small(workers=workers)
        say("still works")
    """
)


def descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def run(tmp_path, source, *args, wait_after_ready=1.0):
    """Start the scenario, SIGINT its process group ``wait_after_ready`` s after it says
    "ready"; returns (lines, stderr, the process ids of its descendants before the signal,
    seconds from the signal to the KeyboardInterrupt line)."""
    script = tmp_path / "scenario.py"
    script.write_text(source)
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # Ctrl-C as a terminal's script has it, however pytest was started: a background job of a
        # non-interactive shell (nohup ... &) inherits SIGINT ignored, and so would the scenario.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    try:
        while True:
            line = proc.stdout.readline()
            assert line, f"scenario ended early: {proc.communicate(timeout=30)[1][-3000:]}"
            lines.append(line.strip())
            if line.strip() == "ready":
                break
        time.sleep(wait_after_ready)
        family = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.perf_counter()
        reaction = None
        while True:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("KeyboardInterrupt") and reaction is None:
                reaction = time.perf_counter() - sent
            lines.append(line.strip())
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    return lines, err, family, reaction


def gone(pids, timeout=5.0):
    deadline = time.time() + timeout
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    return not any(alive(p) for p in pids)


@pytest.mark.parametrize("kind", ["cpsat", "tsp", "SAT", "probe"])
def test_ctrl_c_after_a_solve_is_a_keyboard_interrupt(tmp_path, kind):
    # CP-SAT's default catch_sigint_signal=True took SIGINT over: the process died with exit 130
    # and no finally, and a pool's workers were orphaned.
    lines, err, family, _ = run(tmp_path, AFTER_SOLVE, kind, wait_after_ready=0.3)
    assert lines[-2:] == ["KeyboardInterrupt", "finally"]
    assert "Traceback" not in err
    assert gone(family)


@pytest.mark.parametrize("kind", ["cpsat", "SCIP", "SAT", "CBC", "cvxpy", "knapsack", "mathopt", "model_builder"])
def test_ctrl_c_during_an_in_process_solve_interrupts_it_at_once(tmp_path, kind):
    lines, err, family, reaction = run(tmp_path, DURING_SOLVE, kind, "0")
    assert "not interrupted" not in lines  # never a silently non-optimal decision
    assert reaction is not None and reaction < 2.0, lines
    assert lines[-1] == "still works"
    assert "Traceback" not in err
    assert gone(family)


@pytest.mark.parametrize("kind", ["cpsat", "SCIP", "knapsack"])
def test_ctrl_c_during_a_pool_solve_stops_the_workers_and_leaves_no_process(tmp_path, kind):
    check_pool_interrupt(*run(tmp_path, DURING_SOLVE, kind, "2"))


def check_pool_interrupt(lines: list[str], err: str, family: set[int], reaction: float | None) -> None:
    """What a Ctrl-C during a pool solve must do (the scenario's output, as :func:`run` reads it)."""
    workers = [int(p) for p in lines[0].split()[1:]]
    assert len(workers) == 2 and set(workers) <= family
    assert reaction is not None and reaction < 2.0, lines
    assert lines[-1] == "still works"  # a fresh pool solves the next batch
    # the workers got the terminal's SIGINT too: no traceback, no solver chatter
    assert "Traceback" not in err and err.strip() == "", err[-3000:]
    # the fork server, the resource tracker and every worker end with the script
    assert len(family) >= 4
    assert gone(family)


OWN_HANDLER = HEADER + textwrap.dedent(
    """
    import signal
    if __name__ == "__main__":
        seen = []
        signal.signal(signal.SIGINT, lambda *_: seen.append(1))  # e.g. "stop after this epoch"
        layer, costs = hard_layer("cpsat", time_limit=2.0, on_failure="nan")
        check_small()
        say("ready")
        t0 = time.perf_counter()
        y = layer(costs[:1])
        say("handled", len(seen), layer.last_info.status[0], time.perf_counter() - t0 > 1.5)
    """
)


def test_a_users_own_sigint_handler_is_respected_and_the_solve_is_not_cut(tmp_path):
    lines, err, _, _ = run(tmp_path, OWN_HANDLER, wait_after_ready=0.5)
    # the handler ran once, and the solve was not stopped (it ran to its time limit or a solution)
    handled, calls, status, long = lines[-1].split()
    assert (handled, calls) == ("handled", "1"), (lines, err[-2000:])
    assert status == "feasible" or (status == "time_limit" and long == "True")
