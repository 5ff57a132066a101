import os
import threading
import time

import cvxpy as cp
import numpy as np
import pytest
import torch
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or.batch import pool_pids
from tests.helpers import SignSpec, k_subset


def layer4(**options):
    m, x, _ = k_subset(4, 2)
    return ipo.CpSatLayer(m, x, **options)


def count_solves(layer):
    calls = []
    solve = layer._handle.batch.solve
    layer._handle.batch.solve = lambda c, **kw: calls.append(1) or solve(c, **kw)
    return calls


@pytest.mark.parametrize(
    "costs, message",
    [
        (
            torch.tensor([[0.0, 1, 2, 3], [1, 2, 3, 4], [1, float("nan"), 3, 4]]),
            r"costs\[2\] has a non-finite entry nan at index \(1,\) \(batch index 2\)",
        ),
        (torch.tensor([[0.0, 1, float("-inf"), 3]]), r"costs\[0\] has a non-finite entry -inf at index \(2,\)"),
        (torch.zeros(3, 5), r"expected costs of shape \(4,\) or \(B, 4\), got \(3, 5\)"),
        (torch.zeros(2, 2, 4), r"expected costs of shape \(4,\) or \(B, 4\), got \(2, 2, 4\)"),
        (torch.zeros(0, 4), r"empty batch \(costs of shape \(0, 4\)\)"),
        (torch.zeros(2, 4, dtype=torch.int64), r"costs must be a floating-point tensor, got dtype torch.int64"),
    ],
)
def test_bad_costs_are_rejected_before_any_solve(costs, message):
    layer = layer4()
    calls = count_solves(layer)
    with pytest.raises(ValueError, match=message):
        layer(costs)
    assert calls == []


def test_nan_position_is_reported_in_the_cost_shape():
    m = cp_model.CpModel()
    x = [[m.new_bool_var(f"x{i}{j}") for j in range(3)] for i in range(2)]
    costs = torch.zeros(4, 2, 3)
    costs[3, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"costs\[3\] has a non-finite entry nan at index \(1, 2\)"):
        ipo.CpSatLayer(m, x)(costs)


def test_infeasible_model_raises_solver_error_with_index_and_status():
    m, x, _ = k_subset(4, 2)
    m.add(sum(x) == 3)
    with pytest.raises(
        ipo.SolverError,
        match=r"instance 0 of the batch has no solution: the model has no feasible point \(the solver said INFEASIBLE\)",
    ) as e:
        ipo.CpSatLayer(m, x)(torch.randn(2, 4))
    assert (e.value.index, e.value.status, e.value.solver_status) == (0, "infeasible", "INFEASIBLE")


def test_time_limit_without_a_feasible_point_raises_solver_error():
    rng = np.random.default_rng(1)
    w = rng.integers(10**6, 10**7, size=60)
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(60)]
    m.add(sum(int(a) * v for a, v in zip(w, x)) == int(w.sum() // 2) + 1)
    with pytest.raises(
        ipo.SolverError, match=r"no feasible point within time_limit=0.001 s \(the solver said UNKNOWN\)"
    ) as e:
        ipo.CpSatLayer(m, x, time_limit=1e-3)(torch.randn(2, 60))
    assert (e.value.status, e.value.solver_status) == ("time_limit", "UNKNOWN")


@pytest.mark.parametrize("workers", [None, 2])
def test_failing_instance_is_reported_by_its_batch_index(workers):
    layer = ipo.OptLayer(SignSpec(), projection="none", workers=workers)
    costs = torch.randn(40, 3)
    costs[27, 0] = 500.0
    costs[33, 0] = 500.0
    with pytest.raises(
        ipo.SolverError, match=r"OptLayer: instance 27 of the batch has no solution: the solver failed"
    ) as e:
        layer(costs)
    assert e.value.index == 27 and e.value.solver_status == "BROKEN"
    assert layer.last_info.status[27] == "error" and layer.last_info.status[26] == "optimal"


def test_killed_worker_is_an_error_within_seconds_and_the_next_call_works():
    layer = ipo.OptLayer(SignSpec(delay=0.02), projection="none", workers=2)
    costs = torch.randn(200, 3)
    expected = (costs < 0).float()
    assert torch.equal(layer(costs[:4]), expected[:4])  # pool is up
    pids = pool_pids(2)
    assert len(pids) == 2
    timer = threading.Timer(0.3, os.kill, args=(pids[0], 9))
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(ipo.WorkerError, match=r"a worker of the 2-process pool died .* next call starts a fresh one"):
        layer(costs)
    assert time.perf_counter() - t0 < 10
    timer.join()
    assert torch.equal(layer(costs), expected)
    assert set(pool_pids(2)).isdisjoint(pids)


def test_worker_that_exits_mid_chunk_is_an_error_not_a_hang(force_pool):
    layer = force_pool(ipo.OptLayer(SignSpec(), projection="none", workers=2))
    costs = torch.randn(10, 3)
    costs[5, 0] = -999.0
    t0 = time.perf_counter()
    with pytest.raises(ipo.WorkerError):
        layer(costs)
    assert time.perf_counter() - t0 < 10
    costs[5, 0] = 1.0
    assert torch.equal(layer(costs), (costs < 0).float())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_output_keeps_the_callers_dtype_and_unbatched_shape(dtype):
    layer = layer4(sense="max")
    w = torch.tensor([1.0, 4.0, 2.0, 3.0], dtype=dtype)
    y = layer(w)
    assert y.dtype == dtype and y.shape == (4,) and y.tolist() == [0.0, 1.0, 0.0, 1.0]


def test_numpy_costs_are_accepted():
    assert layer4(sense="max")(np.array([1.0, 4.0, 2.0, 3.0])).tolist() == [0.0, 1.0, 0.0, 1.0]


def test_constructor_validation_names_the_method_and_value():
    m, x, _ = k_subset(4, 2)
    other = cp_model.CpModel()
    foreign = [other.new_bool_var(f"y{i}") for i in range(6)]
    with pytest.raises(TypeError, match=r"CpSatLayer: model must be an ortools.sat.python.cp_model.CpModel, got list"):
        ipo.CpSatLayer([], x)
    with pytest.raises(ValueError, match=r"CpSatLayer: variables\[2\] is a int, expected a IntVar"):
        ipo.CpSatLayer(m, [x[0], x[1], 3])
    with pytest.raises(ValueError, match=r"CpSatLayer: variables\[1\] is a NotBooleanVariable"):
        ipo.CpSatLayer(m, [x[0], ~x[1]])
    with pytest.raises(
        ValueError, match=r"CpSatLayer: variables\[0\] \('y0', proto index 0\) is not a variable of this model"
    ):
        ipo.CpSatLayer(m, foreign)
    with pytest.raises(ValueError, match=r"CpSatLayer: variables is empty"):
        ipo.CpSatLayer(m, [])
    with pytest.raises(ValueError, match=r"CpSatLayer: sense='maximize' must be 'min' or 'max'"):
        ipo.CpSatLayer(m, x, sense="maximize")
    with pytest.raises(ValueError, match=r"CpSatLayer: workers=0 must be None or a positive int"):
        ipo.CpSatLayer(m, x, workers=0)
    with pytest.raises(ValueError, match=r"pass either workers= or executor=, not both"):
        ipo.CpSatLayer(m, x, workers=2, executor=__import__("concurrent.futures").futures.ThreadPoolExecutor(1))
    with pytest.raises(ValueError, match=r"executor must be a concurrent.futures.Executor, got str"):
        ipo.CpSatLayer(m, x, executor="dask")
    with pytest.raises(ValueError, match=r"time_limit=-1 must be a positive number of seconds"):
        ipo.CpSatLayer(m, x, time_limit=-1)
    with pytest.raises(ValueError, match=r"projection='unit' is not one of"):
        ipo.CpSatLayer(m, x, projection="unit")


def test_wide_domains_scale_within_int64_and_report_the_rounding():
    # Domains of 2^45 once overflowed a fixed 2^20 scaling: the scale now fits the headroom.
    m = cp_model.CpModel()
    big = [m.new_int_var(0, 2**45, f"b{i}") for i in range(8)]
    m.add(sum(big) == 2**45 + 3)
    layer = ipo.CpSatLayer(m, big, projection="none")
    # float64 decisions: float32 cannot hold 2^45 + 3
    exact = torch.tensor([[0.75, 0.25, 1.5, 0.5, 1.25, 1.0, 0.375, 2.0]], dtype=torch.float64)  # exact at 2^12
    y = layer(exact)
    assert y[0, 1] == 2**45 and y[0, 6] == 3  # the cheapest full, the rest on the next
    assert layer.last_info.status == ("optimal",) and layer.last_info.scaling_error[0] == 0
    inexact = torch.tensor([[0.7, 0.3, 0.9, 0.5, 0.6, 0.8, 0.4, 1.0]], dtype=torch.float64)
    with pytest.warns(ipo.SolverWarning, match="not proven optimal"):
        y = layer(inexact)
    assert y[0, 1] == 2**45 and y[0, 6] == 3  # right, but 2^45 spans times 2^-13 steps cannot prove it
    assert layer.last_info.status == ("feasible",) and 0 < layer.last_info.scaling_error[0] < 2**35


def test_ragged_variables_are_rejected():
    m, x, _ = k_subset(4, 2)
    with pytest.raises(ValueError, match=r"rectangular"):
        ipo.CpSatLayer(m, [[x[0], x[1]], [x[2]]])


def _glop_layer(**options):
    s = pywraplp.Solver.CreateSolver("GLOP")
    x = [s.NumVar(0, 1, f"x{i}") for i in range(3)]
    s.Add(sum(x) == 1)
    return ipo.LinearSolverLayer(s, x, **options)


def _cvxpy_layer(**options):
    c = cp.Parameter(3)
    x = cp.Variable(3, boolean=True)
    return ipo.CvxpyLayer(cp.Problem(cp.Minimize(c @ x), [cp.sum(x) == 1]), c, x, **options)


# Every layer and every rule, built with the given options.
BUILDERS = {
    "CpSatLayer": layer4,
    "LinearSolverLayer": _glop_layer,
    "CvxpyLayer": _cvxpy_layer,
    "KnapsackLayer": lambda **o: ipo.KnapsackLayer([[1, 2, 3]], [3], **o),
    "ShortestPathLayer": lambda **o: ipo.ShortestPathLayer([(0, 1), (1, 2), (0, 2)], 0, 2, **o),
    "AssignmentLayer": lambda **o: ipo.AssignmentLayer(3, **o),
    "TSPLayer": lambda **o: ipo.TSPLayer(4, **o),
    "TopKLayer": lambda **o: ipo.TopKLayer(4, 2, **o),
    "RankingLayer": lambda **o: ipo.RankingLayer(4, **o),
    "Identity": lambda **o: ipo.Identity(layer4(), **o),
    "SPOPlus": lambda **o: ipo.SPOPlus(layer4(), **o),
    "Blackbox": lambda **o: ipo.Blackbox(layer4(), **o),
    "PerturbedOpt": lambda **o: ipo.PerturbedOpt(layer4(), **o),
    "FenchelYoung": lambda **o: ipo.FenchelYoung(layer4(), **o),
    "IMLE": lambda **o: ipo.IMLE(layer4(), **o),
}


@pytest.mark.parametrize("value", [0, 7, "cpu", np.random.default_rng(0), torch.Generator], ids=repr)
@pytest.mark.parametrize("name", BUILDERS)
def test_a_generator_that_is_not_a_torch_generator_is_refused_at_construction(name, value):
    with pytest.raises(ValueError, match=rf"{name}: generator=.* must be a torch.Generator or None"):
        BUILDERS[name](generator=value)
    rule = BUILDERS[name](generator=torch.Generator().manual_seed(0))  # the accepted kind
    assert isinstance(rule.generator, torch.Generator)
