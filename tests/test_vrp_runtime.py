"""VRPLayer at run time, for its three methods ("exact", "routing", "pyvrp"): Ctrl-C during a long
solve is a KeyboardInterrupt within 2 s and leaves no process (in-process and in the pool, with
the scenarios and helpers of tests/test_interrupts.py); a Dask executor gives the results of a serial solve, per-instance demands and
capacities included; the layer's spec pickles, unpickles equal and builds the same solver."""

from __future__ import annotations

import pickle
import textwrap

import numpy as np
import pytest
import torch

import idproj_or as ipo
from tests.test_interrupts import DURING_SOLVE, HEADER, check_pool_interrupt, gone, run
from tests.vrp_reference import check_solution

METHODS = ("exact", "routing", "pyvrp")
# A heuristic's decision is "feasible", and a layer says once that it is not proven optimal.
quiet_heuristics = pytest.mark.filterwarnings("ignore:.*not proven optimal:idproj_or.errors.SolverWarning")


# --- Ctrl-C ---------------------------------------------------------------------------------------

# test_interrupts.py's scenario with VRP kinds ("vrp-<method>") added to its ``hard_layer``, and
# its ``check_small`` also checking that the same method still solves a small VRP (before the
# interrupt: every first-call cost is paid, PyVRP's import included; after it: still right).
VRP_KINDS = textwrap.dedent(
    """
    import warnings

    KIND = sys.argv[1]
    N = 40  # customers: CP-SAT proves nothing for minutes, the heuristics' budgets last minutes

    _hard_layer, _check_small = hard_layer, check_small

    def hard_layer(kind, **options):
        if not kind.startswith("vrp-"):
            return _hard_layer(kind, **options)
        method = kind[4:]
        rng = np.random.default_rng(1)
        p = rng.uniform(0, 100, size=(N + 1, 2))
        d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
        iu, ju = np.triu_indices(N + 1, 1)
        costs = torch.as_tensor(d[iu, ju]).repeat(8, 1) + torch.rand(8, len(iu), dtype=torch.float64)
        budget = {} if method == "exact" else {"iterations": 10**7}  # and no time limit
        layer = ipo.VRPLayer(
            N, 30, rng.integers(1, 10, size=N), method=method, projection="none", **budget, **options
        )
        return layer, costs

    def check_small(**options):
        _check_small(**options)
        if KIND.startswith("vrp-"):  # (a heuristic's "not proven optimal" warning is expected)
            warnings.filterwarnings("ignore", "VRPLayer: .* not proven optimal")
            method = KIND[4:]
            budget = {} if method == "exact" else {"iterations": 50}
            layer = ipo.VRPLayer(3, 2, [1, 1, 2], method=method, **budget, **options)
            y = layer(torch.tensor([[1.0, 1.0, 4.0, 1.0, 9.0, 9.0]] * 4))
            assert y.tolist() == [[1.0, 1.0, 2.0, 1.0, 0.0, 0.0]] * 4, y
    """
)
assert DURING_SOLVE.startswith(HEADER)
VRP_DURING_SOLVE = HEADER + VRP_KINDS + DURING_SOLVE.removeprefix(HEADER)


@pytest.mark.parametrize(
    "method",
    [
        "exact",
        "routing",
        "pyvrp",
    ],
)
def test_ctrl_c_during_an_in_process_vrp_solve_interrupts_it_at_once(tmp_path, method):
    lines, err, family, reaction = run(tmp_path, VRP_DURING_SOLVE, f"vrp-{method}", "0")
    assert "not interrupted" not in lines  # never a silently non-optimal decision
    assert reaction is not None and reaction < 2.0, lines
    assert lines[-1] == "still works"
    assert "Traceback" not in err, err[-3000:]
    assert gone(family)


@pytest.mark.parametrize("method", METHODS)
def test_ctrl_c_during_a_pool_vrp_solve_stops_the_workers_and_leaves_no_process(tmp_path, method):
    check_pool_interrupt(*run(tmp_path, VRP_DURING_SOLVE, f"vrp-{method}", "2"))


# --- Dask -----------------------------------------------------------------------------------------

# The heuristics stop at an iteration budget only (no time limit): deterministic, per the docstring.
# At 20 customers these budgets are short of convergence: the routes depend on the search's path
# (OTHER_SEARCH, checked), so a worker that searched otherwise would show.
BUDGET: dict[str, dict] = {"exact": {}, "routing": {"iterations": 30}, "pyvrp": {"iterations": 50}}
OTHER_SEARCH: dict[str, dict] = {"routing": {"iterations": 100}, "pyvrp": {"iterations": 50, "seed": 1}}


def instances(n: int, batch: int, seed: int):
    """Costs, per-instance demands (permutations of the layer's) and capacities, for ``batch``
    instances of ``n`` customers; the last instance has a demand above its capacity."""
    rng = np.random.default_rng(seed)
    costs = torch.as_tensor(rng.uniform(0, 10, size=(batch, (n + 1) * n // 2)))
    d = rng.integers(1, 6, size=n)
    demands = torch.as_tensor(np.stack([rng.permutation(d) for _ in range(batch)]))
    capacity = torch.as_tensor(rng.integers(5, 14, size=batch))
    capacity[-1] = int(demands[-1].max()) - 1
    return d, costs, demands, capacity


@pytest.fixture(scope="module")
def dask_client():
    from distributed import LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        cluster.get_client() as client,
    ):
        yield client


@quiet_heuristics
@pytest.mark.filterwarnings("ignore:VRPLayer. 1 of 8 instances have no decision")
@pytest.mark.parametrize("method", METHODS)
def test_serial_and_dask_give_identical_results_with_per_instance_data(method, dask_client):
    n = 7 if method == "exact" else 20
    d, costs, demands, capacity = instances(n, 8, seed=21)
    options = {"method": method, "on_failure": "nan", **BUDGET[method]}
    serial = ipo.VRPLayer(n, 10, d, **options)
    expected = serial(costs, demands=demands, capacity=capacity)
    assert serial.last_info.mode == "serial"
    assert serial.last_info.status[-1] == "infeasible" and serial.last_info.failed == (7,)
    remote = ipo.VRPLayer(n, 10, d, executor=dask_client.get_executor(), **options)
    got = remote(costs, demands=demands, capacity=capacity)
    assert remote.last_info.mode == "executor"
    torch.testing.assert_close(got, expected, equal_nan=True, rtol=0, atol=0)
    assert remote.last_info.status == serial.last_info.status
    np.testing.assert_array_equal(remote.last_info.objective, serial.last_info.objective)
    for row, di, qi in zip(got[:-1].numpy(), demands.numpy(), capacity.tolist()):
        check_solution(row, di, qi)
    if method in OTHER_SEARCH:
        other = ipo.VRPLayer(n, 10, d, **{**options, **OTHER_SEARCH[method]})
        assert not torch.equal(other(costs, demands=demands, capacity=capacity).nan_to_num(-1), got.nan_to_num(-1))


# --- pickling -------------------------------------------------------------------------------------


@quiet_heuristics
@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
@pytest.mark.parametrize("method", METHODS)
def test_the_spec_pickles_and_unpickles_equal(method, symmetric):
    def layer(demands=(1, 2, 3, 4, 5), **options):
        return ipo.VRPLayer(
            5, 7, demands, n_vehicles=4, method=method, symmetric=symmetric, sense="max", **BUDGET[method], **options
        )

    spec = layer().spec
    copy = pickle.loads(pickle.dumps(spec))
    assert type(copy) is type(spec)
    assert copy == spec and hash(copy) == hash(spec)
    assert copy.fields == spec.fields and copy.shape == spec.shape
    assert layer(demands=[1, 2, 3, 4, 4]).spec != spec  # (equality is not vacuous)
    # the copy builds a solver that decides as the layer does
    cost = torch.rand(spec.shape, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    outcome = copy.build().solve(cost.reshape(-1).numpy(), None)
    expected = layer(projection="none").solve(cost)
    np.testing.assert_array_equal(outcome.x, expected.reshape(-1).numpy())
