"""One bad instance does not sink a batch; statuses say the same thing on every backend."""

import subprocess
import sys
import textwrap
import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or.training import decision_loss
from tests.helpers import SignSpec, k_subset

# Row 1 makes "min c x over x >= 0, x0 + x1 >= 1" unbounded; rows 0 and 2 are solvable.
UNBOUNDED_ROW = torch.tensor([[1.0, 2.0], [-1.0, 1.0], [2.0, 1.0]], dtype=torch.float64)
LP_BACKENDS = ["GLOP", "CLP", "HIGHS_LP", "SCIP", "CBC", "HIGHS"]


def half_line_lp(backend):
    s = pywraplp.Solver.CreateSolver(backend)
    make = s.IntVar if backend in ("SCIP", "CBC", "HIGHS") else s.NumVar
    x = [make(0, s.infinity(), f"x{i}") for i in range(2)]
    s.Add(x[0] + x[1] >= 1)
    return s, x


@pytest.mark.parametrize("backend", LP_BACKENDS)
def test_unbounded_row_is_nan_and_called_unbounded_on_every_backend(backend):
    # GLOP and HiGHS MIP call this LP INFEASIBLE; a zero-cost check tells the truth.
    s, x = half_line_lp(backend)
    layer = ipo.LinearSolverLayer(s, x, projection="none", on_failure="nan")
    with pytest.warns(
        ipo.SolverWarning, match=r"1 of 3 instances have no decision \(instance 1: the objective is unbounded"
    ):
        y = layer(UNBOUNDED_ROW)
    assert torch.isnan(y[1]).all()
    assert y[0].tolist() == [1.0, 0.0] and y[2].tolist() == [0.0, 1.0]
    info = layer.last_info
    assert info.status == ("optimal", "unbounded", "optimal") and info.failed == (1,)
    assert info.solver_status[1] in ("UNBOUNDED", "INFEASIBLE")
    assert np.isnan(info.objective[1]) and info.objective[0] == 1.0


@pytest.mark.parametrize("backend", ["GLOP", "SCIP"])
def test_infeasible_model_stays_infeasible_after_the_check(backend):
    s = pywraplp.Solver.CreateSolver(backend)
    x = [s.NumVar(0, 1, f"x{i}") for i in range(2)]
    s.Add(x[0] + x[1] >= 3)
    layer = ipo.LinearSolverLayer(s, x, projection="none", on_failure="nan")
    with pytest.warns(ipo.SolverWarning):
        assert torch.isnan(layer(UNBOUNDED_ROW)).all()
    assert layer.last_info.status == ("infeasible",) * 3


def test_pdlp_failure_is_not_confused_with_rows_never_attempted():
    s, x = half_line_lp("PDLP")
    layer = ipo.LinearSolverLayer(s, x, projection="none")
    with pytest.raises(
        ipo.SolverError,
        match=r"instance 1 of the batch has no solution: the solver failed \(the solver said NOT_SOLVED\)",
    ):
        layer(UNBOUNDED_ROW)
    # on_failure="raise" stops at the failure: the row after it is "not_solved", not a failure
    assert layer.last_info.status == ("optimal", "error", "not_solved")
    assert layer.last_info.solver_status == ("OPTIMAL", "NOT_SOLVED", "")


def test_cvxpy_statuses_use_the_common_words():
    c = cp.Parameter(2)
    x = cp.Variable(2, nonneg=True)
    layer = ipo.CvxpyLayer(cp.Problem(cp.Minimize(c @ x), [cp.sum(x) >= 1]), c, x, projection="none", on_failure="nan")
    with pytest.warns(ipo.SolverWarning):
        y = layer(UNBOUNDED_ROW)
    assert layer.last_info.status == ("optimal", "unbounded", "optimal")
    assert torch.isnan(y[1]).all() and not torch.isnan(y[[0, 2]]).any()


def test_nan_rows_leave_the_other_rows_and_their_gradients_unchanged():
    s, x = half_line_lp("GLOP")
    layer = ipo.LinearSolverLayer(s, x, projection="norm", on_failure="nan")
    true = torch.tensor([[3.0, 1.0], [1.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    pred = UNBOUNDED_ROW.clone().requires_grad_()
    with pytest.warns(ipo.SolverWarning):
        y = layer(pred)
    loss = decision_loss("regret", y, true, y.detach(), sense="min")
    loss.backward()
    # the same two good rows alone, their loss scaled to the same batch size
    good = UNBOUNDED_ROW[[0, 2]].clone().requires_grad_()
    y_good = layer(good)
    (decision_loss("regret", y_good, true[[0, 2]], y_good.detach(), sense="min") * 2 / 3).backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    torch.testing.assert_close(y[[0, 2]], y_good, rtol=0, atol=0)
    torch.testing.assert_close(pred.grad[[0, 2]], good.grad, rtol=0, atol=0)
    assert pred.grad[1].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("workers", [None, 2])
def test_nan_mode_solves_every_row_serial_and_in_the_pool(workers, force_pool):
    layer = ipo.OptLayer(SignSpec(), projection="none", workers=workers, on_failure="nan")
    if workers:
        force_pool(layer)
    costs = torch.randn(40, 3)
    costs[[3, 27, 33], 0] = 500.0
    with pytest.warns(ipo.SolverWarning, match=r"3 of 40 instances have no decision \(instance 3: the solver failed"):
        y = layer(costs)
    bad = torch.zeros(40, dtype=torch.bool)
    bad[[3, 27, 33]] = True
    assert torch.isnan(y[bad]).all()
    assert torch.equal(y[~bad], (costs[~bad] < 0).float())
    assert layer.last_info.failed == (3, 27, 33)
    assert layer.last_info.cause(27) == "the solver failed (the solver said BROKEN)"
    assert layer.last_info.mode == ("pool" if workers else "serial")


def test_failure_warning_is_shown_once_per_layer():
    costs = torch.randn(4, 3)
    costs[1, 0] = 500.0
    first, second = (ipo.OptLayer(SignSpec(), projection="none", on_failure="nan") for _ in range(2))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            first(costs)
        second(costs)
    assert [type(w.message) for w in seen] == [ipo.SolverWarning] * 2
    assert all(w.filename == __file__ for w in seen)  # points at the caller's line


def hard_cpsat(n=60, seed=1):
    """Subset sum with an impossible-looking target: no solution within a millisecond."""
    w = np.random.default_rng(seed).integers(10**6, 10**7, size=n)
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(n)]
    m.add(sum(int(a) * v for a, v in zip(w, x)) == int(w.sum() // 2) + 1)
    return m, x


def test_time_limit_failure_is_said_in_words_and_nan_mode_goes_on():
    m, x = hard_cpsat()
    with pytest.raises(
        ipo.SolverError,
        match=r"instance 0 of the batch has no solution: no feasible point within time_limit=0.001 s \(the solver said UNKNOWN\) \(status time_limit\)",
    ):
        ipo.CpSatLayer(m, x, time_limit=1e-3)(torch.randn(2, 60))
    layer = ipo.CpSatLayer(m, x, time_limit=1e-3, on_failure="nan")
    with pytest.warns(ipo.SolverWarning, match="no feasible point within time_limit=0.001 s"):
        y = layer(torch.randn(3, 60))
    assert torch.isnan(y).all() and layer.last_info.status == ("time_limit",) * 3


def test_not_proven_optimal_decisions_warn_once_with_the_cause():
    rng = np.random.default_rng(7)
    weights = rng.integers(20, 100, size=(10, 150))
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(150)]
    for row in weights:
        m.add(sum(int(a) * v for a, v in zip(row, x)) <= int(row.sum()) // 2)
    layer = ipo.CpSatLayer(m, x, sense="max", time_limit=0.2)
    costs = torch.from_numpy(rng.integers(20, 100, (2, 150)).astype(float))
    with pytest.warns(
        ipo.SolverWarning,
        match=r"2 of 2 decisions are not proven optimal \(instance 0: a feasible decision not proven optimal within time_limit=0.2 s \(the solver said FEASIBLE\)\)",
    ):
        y = layer(costs)
    assert layer.last_info.status == ("feasible", "feasible") and layer.last_info.not_optimal == (0, 1)
    assert torch.isfinite(y).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(costs)  # once per layer


def test_objective_is_reported_in_the_callers_cost_units():
    m, x, _ = k_subset(4, 2)
    layer = ipo.CpSatLayer(m, x, sense="max", projection="std", noise=0.5)
    costs = torch.tensor([[10.0, 40.0, 20.0, 30.0], [1.0, 2.0, 3.0, 4.0]])
    y = layer(costs)
    np.testing.assert_array_equal(layer.last_info.objective, (costs * y).sum(1).numpy())
    layer.eval()  # no noise: the best pair of each row, in the caller's units (not the projected ones)
    layer(costs)
    assert layer.last_info.objective.tolist() == [70.0, 7.0]


def test_on_failure_is_validated():
    m, x, _ = k_subset(4, 2)
    with pytest.raises(ValueError, match=r"CpSatLayer: on_failure='skip' must be one of 'raise', 'nan'"):
        ipo.CpSatLayer(m, x, on_failure="skip")


def test_status_vocabulary_is_closed():
    assert ipo.STATUSES == (
        "optimal",
        "feasible",
        "infeasible",
        "unbounded",
        "infeasible_or_unbounded",
        "time_limit",
        "interrupted",
        "error",
        "not_solved",
    )


UNGUARDED = textwrap.dedent(
    """
    import sys
    import torch
    from ortools.sat.python import cp_model
    import idproj_or as ipo

    print("script runs", flush=True)
    if sys.argv[1:] == ["spawn"]:  # as on a platform without a fork server
        import multiprocessing
        import idproj_or.batch.pool
        idproj_or.batch.pool._context = lambda: multiprocessing.get_context("spawn")
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(6)]
    m.add(sum(x) == 2)
    layer = ipo.CpSatLayer(m, x, sense="max", workers=2, route="pool")
    try:
        y = layer(torch.arange(6.0).repeat(16, 1))
        print("solved", layer.last_info.mode, y[:, 4:].sum().item())
    except ipo.WorkerError as e:
        print("WorkerError:", e)
    """
)


def test_pool_workers_do_not_run_the_script_so_it_needs_no_main_guard(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(UNGUARDED)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # the script ran once (not again in each worker) and the pool solved: the two largest of 16
    assert out.stdout.splitlines() == ["script runs", "solved pool 32.0"], out.stdout + out.stderr[-2000:]


def test_spawned_workers_of_an_unguarded_script_give_a_worker_error_naming_the_guard(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(UNGUARDED)
    out = subprocess.run([sys.executable, str(script), "spawn"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "WorkerError: the 2 workers of a new process pool died while starting" in out.stdout
    assert "has no 'if __name__ == \"__main__\":' guard" in out.stdout
