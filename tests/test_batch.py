import hashlib
import multiprocessing
import pickle
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.batch import BatchSolver, Task, get_pool, pool_pids
from idproj_or.batch.resident import remote_chunk
from tests.helpers import SignSpec, k_subset, knapsack_32


def knapsack_costs(b=48, seed=0):
    return torch.rand(b, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_serial_pool_and_user_executors_give_identical_results():
    m, x = knapsack_32()
    costs = knapsack_costs()
    serial = ipo.CpSatLayer(m, x, sense="max")
    expected = serial(costs)
    assert serial.last_info.mode == "serial"
    pooled = ipo.CpSatLayer(m, x, sense="max", workers=2)
    assert torch.equal(pooled(costs), expected)
    assert pooled.last_info.mode == "pool"
    with ThreadPoolExecutor(2) as threads:
        layer = ipo.CpSatLayer(m, x, sense="max", executor=threads, executor_workers=2)
        assert torch.equal(layer(costs), expected) and layer.last_info.mode == "executor"
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as procs:
        assert torch.equal(ipo.CpSatLayer(m, x, sense="max", executor=procs, executor_workers=2)(costs), expected)
    np.testing.assert_array_equal(pooled.last_info.objective, serial.last_info.objective)
    assert pooled.last_info.status == serial.last_info.status


def test_dask_executor_gives_identical_results_and_work_to_every_worker():
    from distributed import LocalCluster, get_task_stream

    m, x = knapsack_32(seed=1)
    costs = knapsack_costs(16, seed=1)
    expected = ipo.CpSatLayer(m, x, sense="max")(costs)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        cluster.get_client() as client,
    ):
        layer = ipo.CpSatLayer(m, x, sense="max", executor=client.get_executor())
        with get_task_stream(client) as stream:
            assert torch.equal(layer(costs), expected)
        assert layer.last_info.mode == "executor"
        chunks = [t for t in stream.data if t["key"].startswith("remote_chunk")]
        # The first call of a layer cuts 2 chunks per thread of the cluster (2 threads here).
        assert len(chunks) == 4
        assert {t["worker"] for t in chunks} == set(client.nthreads())
        # An explicit count is used as given, without asking the cluster.
        explicit = ipo.CpSatLayer(m, x, sense="max", executor=client.get_executor(), executor_workers=3)
        with get_task_stream(client) as stream:
            assert torch.equal(explicit(costs), expected)
        assert sorted(t["key"].split("-")[0] for t in stream.data) == ["remote_chunk"] * 6


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self, threads: int) -> None:
        super().__init__(threads)
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_any_other_executor_needs_its_worker_count_and_gets_that_many_chunks_at_least():
    m, x = knapsack_32()
    costs = knapsack_costs(16)
    with CountingExecutor(3) as threads:
        with pytest.raises(ValueError, match=r"executor_workers= must say how many chunks the CountingExecutor runs"):
            ipo.CpSatLayer(m, x, sense="max", executor=threads)
        layer = ipo.CpSatLayer(m, x, sense="max", executor=threads, executor_workers=3)
        assert torch.equal(layer(costs), ipo.CpSatLayer(m, x, sense="max")(costs))
        assert threads.submitted == 6  # 2 per worker before the solve time is known
        layer.executor_workers = 5
        threads.submitted = 0
        layer(costs)
        assert threads.submitted >= 5 and layer.last_info.mode == "executor"
        with pytest.raises(ValueError, match=r"executor_workers= must say how many chunks"):
            layer.executor_workers = None  # the attached executor cannot say


def test_route_forces_the_pool_or_in_process_and_last_info_says_which_ran():
    costs = torch.randn(8, 3)
    expected = (costs < 0).float()
    layer = ipo.OptLayer(SignSpec(), projection="none", workers=2, route="pool")
    assert layer.route == "pool"
    assert torch.equal(layer(costs), expected)
    assert layer.last_info.mode == "pool"  # a fast model, in the pool from the first call: no probe
    layer.route = "serial"
    assert torch.equal(layer(costs), expected) and layer.last_info.mode == "serial"
    layer.route = "auto"
    assert torch.equal(layer(costs), expected) and layer.last_info.mode == "serial"  # too fast for the pool
    # One process: in-process unless asked for, then a pool of one (a crash stays out of this process).
    single = ipo.OptLayer(SignSpec(), projection="none", workers=1)
    assert torch.equal(single(costs), expected) and single.last_info.mode == "serial"
    single.route = "pool"
    assert torch.equal(single(costs), expected) and single.last_info.mode == "pool"
    assert len(pool_pids(1)) == 1
    with ThreadPoolExecutor(2) as threads:
        on_threads = ipo.OptLayer(SignSpec(), projection="none", executor=threads, executor_workers=2, route="serial")
        assert torch.equal(on_threads(costs), expected) and on_threads.last_info.mode == "serial"
        on_threads.route = "auto"
        assert torch.equal(on_threads(costs), expected) and on_threads.last_info.mode == "executor"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"route": "threads"}, r"OptLayer: route='threads' must be one of 'auto', 'pool', 'serial'"),
        ({"route": "pool"}, r"OptLayer: route='pool' needs workers=k, the number of pool processes"),
        ({"executor_workers": 0}, r"OptLayer: executor_workers=0 must be None or a positive int"),
        ({"executor_workers": True}, r"OptLayer: executor_workers=True must be None or a positive int"),
        ({"workers": 2, "executor_workers": 2}, r"OptLayer: executor_workers= goes with executor=, not workers="),
    ],
)
def test_routing_options_are_validated(options, message):
    with pytest.raises(ValueError, match=message):
        ipo.OptLayer(SignSpec(), **options)


def test_route_setter_is_validated():
    layer = ipo.OptLayer(SignSpec())
    with pytest.raises(ValueError, match=r"route='pool' needs workers=k"):
        layer.route = "pool"
    with pytest.raises(ValueError, match=r"route=None must be one of"):
        layer.route = None
    assert layer.route == "auto"


def test_last_info_reports_status_objective_and_time_per_instance():
    m, x = knapsack_32()
    costs = knapsack_costs(5)
    layer = ipo.CpSatLayer(m, x, sense="max", projection="none")
    y = layer(costs)
    info = layer.last_info
    assert len(info) == 5 and info.status == ("optimal",) * 5
    np.testing.assert_allclose(info.objective, (costs * y).sum(1).numpy())
    assert np.all(info.wall_time > 0)
    assert info[2].status == "optimal" and info[2].solver_status == "OPTIMAL" and info[2].objective == info.objective[2]


def test_fast_models_never_start_the_pool():
    # the first call solves one instance in-process to measure: too fast for a pool to pay
    layer = ipo.OptLayer(SignSpec(), projection="none", workers=2)
    costs = torch.randn(8, 3)
    for _ in range(3):
        assert torch.equal(layer(costs), (costs < 0).float())
        assert layer.last_info.mode == "serial"


def test_slow_first_batch_goes_to_the_pool_after_the_probe():
    solver = BatchSolver(SignSpec(delay=0.01), workers=2, executor=None, time_limit=None)
    costs = np.random.default_rng(0).normal(size=(16, 3))
    result = solver.solve(costs)
    assert result.mode == "pool"
    np.testing.assert_array_equal(result.solutions, (costs < 0).astype(float))
    assert np.all(result.wall_time >= 0.009)  # every instance, the probe included, measured


def test_slow_batches_stay_in_the_pool_in_chunks():
    solver = BatchSolver(SignSpec(delay=0.002), workers=2, executor=None, time_limit=None)
    for _ in range(2):
        result = solver.solve(np.random.default_rng(0).normal(size=(64, 3)))
        assert result.mode == "pool"
    # a long batch is cut into more chunks than workers, for load balance
    assert solver._n_chunks(1000, 2) >= 4


def test_building_the_model_in_a_worker_is_not_pool_overhead():
    # A worker reports the seconds it spent building the model apart from the solve times: the
    # pool subtracts both from the wall time to learn its own round-trip overhead.
    spec = SignSpec(delay=0.05, build_delay=0.3)
    payload = pickle.dumps(spec)
    key = hashlib.sha256(payload).hexdigest()
    (sols, status, _, times, *_), built = remote_chunk(key, payload, Task(-np.ones((4, 3)), {}, None, True))
    assert status == ["optimal"] * 4 and np.all(sols == 1)
    assert 0.3 <= built < 0.3 + 0.05  # the build only, not the 0.2 s of solving
    assert times.sum() >= 0.2
    _, again = remote_chunk(key, payload, Task(-np.ones((1, 3)), {}, None, True))
    assert again < 0.05  # resident: built once per worker
    solver = BatchSolver(SignSpec(delay=0.003, build_delay=0.4), workers=2, executor=None, time_limit=None)
    for _ in range(2):
        assert solver.solve(np.random.default_rng(0).normal(size=(64, 3))).mode == "pool"


def test_one_slow_round_trip_does_not_keep_batches_off_the_pool(monkeypatch):
    solver = BatchSolver(SignSpec(delay=0.003), workers=2, executor=None, time_limit=None)
    costs = np.random.default_rng(0).normal(size=(64, 3))
    assert solver.solve(costs).mode == "pool"
    settled = solver._overhead
    real = BatchSolver._run_pool

    def stalled(self, pool, rest):  # e.g. a worker still starting
        time.sleep(0.5)
        return real(self, pool, rest)

    monkeypatch.setattr(BatchSolver, "_run_pool", stalled)
    solver.solve(costs)
    assert solver._overhead <= 1.9 * settled + 1e-12
    monkeypatch.undo()
    assert solver.solve(costs).mode == "pool"


def test_layers_with_the_same_worker_count_share_one_pool(force_pool):
    m, x, _ = k_subset(5, 2)
    a = force_pool(ipo.CpSatLayer(m, x, workers=2))
    b = force_pool(ipo.CpSatLayer(m, x, sense="max", workers=2))
    a(torch.randn(6, 5))
    pool, pids = get_pool(2), pool_pids(2)
    b(torch.randn(6, 5))
    assert a.last_info.mode == b.last_info.mode == "pool"
    assert len(pids) == 2 and pool_pids(2) == pids and get_pool(2) is pool


def test_a_spec_class_of_the_main_script_is_refused_for_the_pool(monkeypatch):
    # pool workers do not run the main script, so they could not unpickle its classes
    monkeypatch.setattr(SignSpec, "__module__", "__main__")
    with pytest.raises(ValueError, match="spec class SignSpec is defined in the main script"):
        BatchSolver(SignSpec(), workers=2, executor=None, time_limit=None)
