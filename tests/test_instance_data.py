"""The data channel, independent of any backend: a spec with per-instance data (ChooseSpec:
choose k items, each within its bounds) checked against enumeration; every bad input a
ValueError naming the data, instance and position; broadcast, pool and Dask parity; data
through the rules, metrics, data sets and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import idproj_or as ipo
from idproj_or.data import solve_dataset
from idproj_or.metrics import normalized_regret, regret
from idproj_or.rules.identity import OptLayer
from idproj_or.training import fit
from tests.helpers import ChooseSpec, choose_brute


def random_instances(n: int, seed: int):
    rng = np.random.default_rng(seed)
    costs = rng.normal(size=(n, 4))
    ks = rng.integers(0, 5, size=n)
    lo = (rng.random((n, 4)) < 0.15).astype(float)
    hi = np.maximum(lo, (rng.random((n, 4)) < 0.85).astype(float))
    return costs, ks, np.stack([lo, hi], axis=-1)


def expected_decisions(costs, ks, bounds):
    out = np.full_like(costs, np.nan)
    for i in range(len(costs)):
        y = choose_brute(costs[i], int(ks[i]), bounds[i, :, 0], bounds[i, :, 1])
        if y is not None:
            out[i] = y
    return out


def test_decisions_with_per_instance_data_equal_enumeration_including_infeasible_ones():
    costs, ks, bounds = random_instances(300, seed=0)
    expected = expected_decisions(costs, ks, bounds)
    assert 10 < np.isnan(expected[:, 0]).sum() < 290  # both kinds occur
    layer = OptLayer(ChooseSpec(), on_failure="nan")
    with pytest.warns(ipo.SolverWarning, match="have no decision"):
        y = layer.solve(torch.as_tensor(costs), k=torch.as_tensor(ks), bounds=torch.as_tensor(bounds)).numpy()
    np.testing.assert_array_equal(y, expected)
    infeasible = np.isnan(expected[:, 0])
    assert [s == "infeasible" for s in layer.last_info.status] == infeasible.tolist()
    np.testing.assert_allclose(layer.last_info.bound[~infeasible], (costs * expected).sum(1)[~infeasible])


def test_on_failure_raise_names_the_instance_that_its_data_makes_infeasible():
    layer = OptLayer(ChooseSpec())
    costs = torch.zeros(3, 4)
    with pytest.raises(ipo.SolverError, match="instance 1 of the batch has no solution") as err:
        layer(costs, k=torch.tensor([2, 4, 1]), bounds=torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert err.value.index == 1


def test_unbatched_data_is_broadcast_and_equals_the_batched_form():
    costs, _, _ = random_instances(20, seed=1)
    layer = OptLayer(ChooseSpec())
    once = layer.solve(torch.as_tensor(costs), k=3, bounds=[1.0, 1.0, 0.0, 1.0])
    batched = layer.solve(
        torch.as_tensor(costs), k=torch.full((20,), 3), bounds=torch.tensor([[1.0, 1.0, 0.0, 1.0]] * 20)
    )
    assert torch.equal(once, batched)
    assert torch.all(once[:, 2] == 0) and torch.all(once.sum(1) == 3)


def test_fields_not_given_keep_the_models_values():
    layer = OptLayer(ChooseSpec(k=1))
    y = layer.solve(torch.tensor([[3.0, 1.0, 2.0, 4.0]]), bounds=[1.0, 0.0, 1.0, 1.0])
    assert y.tolist() == [[0.0, 0.0, 1.0, 0.0]]
    assert layer.solve(torch.tensor([[3.0, 1.0, 2.0, 4.0]])).tolist() == [[0.0, 1.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"cap": 1}, r"unknown data 'cap'; the layer's data: k, bounds"),
        ({"k": torch.tensor(2.0, requires_grad=True)}, r"data 'k' requires grad.*detach"),
        ({"k": torch.tensor(True)}, r"data 'k' must hold real numbers, got dtype torch.bool"),
        (
            {"k": torch.ones(2)},
            r"data 'k' \(the number of items chosen\) must have shape \(\) or \(3,\) for a batch of 3, got \(2,\)",
        ),
        ({"bounds": torch.ones(3, 3)}, r"data 'bounds' .* must have shape \(4,\) or \(3, 4\) or \(4, 2\)"),
        ({"k": torch.tensor([1.0, float("nan"), 2.0])}, r"data 'k' .* of instance 1, at position \(\), is not finite"),
        ({"k": torch.tensor([1.0, 2.0, 2.5])}, r"data 'k' .* of instance 2, at position \(\), is not an integer"),
        ({"k": torch.tensor([1, 5, 2])}, r"data 'k' .* of instance 1, at position \(\), is outside \[0, 4\]"),
        (
            {"bounds": torch.tensor([[[0.0, 1.0]] * 3 + [[1.0, 0.0]]] * 3)},
            r"data 'bounds' .* of instance 0, at position \(3, 0\), is a lower bound above its upper bound",
        ),
    ],
)
def test_bad_data_is_a_value_error_before_any_solve_naming_data_instance_and_position(data, match):
    layer = OptLayer(ChooseSpec())
    with pytest.raises(ValueError, match=match):
        layer(torch.zeros(3, 4), **data)
    assert layer.last_info is None  # nothing was solved


def test_data_names_that_clash_with_the_call_are_refused():
    from idproj_or.solvers.base import DataField

    fields = (DataField("duals", (), "x"),)
    with pytest.raises(ValueError, match=r"data name 'duals' must be a Python identifier, used once"):
        OptLayer(ChooseSpec(fields=fields))


def test_the_gradient_is_the_costs_alone_and_does_not_depend_on_the_data_path():
    costs, ks, bounds = random_instances(8, seed=2)
    keep = ~np.isnan(expected_decisions(costs, ks, bounds)[:, 0])
    w = torch.as_tensor(costs[keep]).requires_grad_()
    layer = OptLayer(ChooseSpec(), projection="none")
    y = layer(w, k=torch.as_tensor(ks[keep]), bounds=torch.as_tensor(bounds[keep]))
    g = torch.randn_like(y)
    (y * g).sum().backward()
    torch.testing.assert_close(w.grad, -g)  # -I for minimisation


@pytest.mark.parametrize("rule", ["spo", "blackbox", "perturbed", "fy", "imle"])
def test_every_rule_passes_the_data_to_its_solves(rule):
    costs, ks, bounds = random_instances(12, seed=3)
    keep = ~np.isnan(expected_decisions(costs, ks, bounds)[:, 0])
    costs, ks, bounds = costs[keep], ks[keep], bounds[keep]
    layer = OptLayer(ChooseSpec(), projection="none")
    w = torch.as_tensor(costs).requires_grad_()
    data = {"k": torch.as_tensor(ks), "bounds": torch.as_tensor(bounds)}
    c = torch.as_tensor(costs)
    truth = layer.solve(c, **data)
    objective = (c * truth).sum(1)
    if rule == "spo":
        loss = ipo.SPOPlus(layer)(w, c, truth, objective, **data)
    elif rule == "fy":
        loss = ipo.FenchelYoung(layer, n_samples=3)(w, truth, **data)
    else:
        make = {"blackbox": ipo.Blackbox, "perturbed": ipo.PerturbedOpt, "imle": ipo.IMLE}[rule]
        options = {} if rule == "blackbox" else {"n_samples": 3}
        y = make(layer, **options)(w, **data)
        # each instance's decisions (or their mean) meet its own k and bounds
        torch.testing.assert_close(y.sum(1), torch.as_tensor(ks, dtype=y.dtype))
        assert torch.all(y >= data["bounds"][..., 0] - 1e-12) and torch.all(y <= data["bounds"][..., 1] + 1e-12)
        loss = (y * c).sum()
    if rule == "spo":
        assert torch.all(loss >= -1e-12)  # >= 0 when the solves inside took each instance's data
    loss.sum().backward()
    assert torch.isfinite(w.grad).all()
    if rule == "fy":
        # the gradient is (mean perturbed decision - true decision) per row: each with sum k
        torch.testing.assert_close(w.grad.sum(1), torch.zeros(len(w), dtype=w.dtype))


def test_rules_refuse_data_with_a_solution_pool():
    layer = OptLayer(ChooseSpec())
    rule = ipo.SPOPlus(layer, solve_ratio=0.5)
    w = torch.zeros(2, 4, requires_grad=True)
    with pytest.raises(ValueError, match="per-instance data cannot go with solve_ratio < 1"):
        rule(w, torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2), k=1)


@pytest.mark.filterwarnings("ignore:OptLayer. 11 of 64 instances have no decision")
def test_serial_pool_and_dask_give_identical_results_with_data():
    from distributed import LocalCluster

    costs, ks, bounds = random_instances(64, seed=4)
    data = {"k": torch.as_tensor(ks), "bounds": torch.as_tensor(bounds)}
    serial = OptLayer(ChooseSpec(), on_failure="nan")
    expected = serial.solve(torch.as_tensor(costs), **data)
    pooled = OptLayer(ChooseSpec(), on_failure="nan", workers=2, route="pool")
    assert torch.equal(pooled.solve(torch.as_tensor(costs), **data).nan_to_num(-1), expected.nan_to_num(-1))
    assert pooled.last_info.mode == "pool"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        cluster.get_client() as client,
    ):
        remote = OptLayer(ChooseSpec(), on_failure="nan", executor=client.get_executor())
        got = remote.solve(torch.as_tensor(costs), **data)
        assert remote.last_info.mode == "executor"
    assert torch.equal(got.nan_to_num(-1), expected.nan_to_num(-1))


def test_metrics_data_sets_and_training_take_the_data():
    rng = np.random.default_rng(5)
    n = 40
    features = rng.normal(size=(n, 3))
    costs = features @ rng.normal(size=(3, 4)) + 0.1 * rng.normal(size=(n, 4))
    ks = rng.integers(1, 4, size=n)
    layer = OptLayer(ChooseSpec())
    ds = solve_dataset(layer, features, costs, data={"k": ks}, progress=False, dtype=torch.float64)
    assert torch.equal(ds.solutions.sum(1), torch.as_tensor(ks, dtype=torch.float64))
    *_, d = ds[torch.arange(5)]
    assert torch.equal(d["k"], torch.as_tensor(ks[:5]))
    assert torch.equal(ds.subset(slice(0, 5)).data["k"], torch.as_tensor(ks[:5]))
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    assert next(iter(loader))[4]["k"].tolist() == ks[:8].tolist()
    # regret with the data is 0 at the true costs and equals enumeration elsewhere
    true = torch.as_tensor(costs)
    assert torch.all(regret(layer, true, true, data={"k": ks}).abs() < 1e-12)
    pred = torch.as_tensor(rng.normal(size=(n, 4)))
    r = regret(layer, pred, true, data={"k": ks}).numpy()
    for i in range(n):
        chosen = choose_brute(pred[i].numpy(), int(ks[i]), np.zeros(4), np.ones(4))
        best = choose_brute(costs[i], int(ks[i]), np.zeros(4), np.ones(4))
        assert r[i] == pytest.approx(costs[i] @ chosen - costs[i] @ best)
    assert normalized_regret(layer, pred, true, data={"k": ks}) == pytest.approx(
        r.sum() / ds.objectives.abs().sum().item()
    )
    torch.manual_seed(0)
    history = fit(torch.nn.Linear(3, 4).double(), layer, ds, ds, epochs=3, batch_size=10, progress=False)
    assert history.final <= history.untrained


def test_a_batch_of_two_single_values_for_two_rows_is_read_batched_not_as_pairs():
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    x = [m.new_int_var(0, 10, f"x{i}") for i in range(2)]
    rows = [m.add(x[0] <= 10), m.add(x[1] <= 10)]
    layer = ipo.CpSatLayer(m, x, sense="max", data={"cap": rows})
    # (2, 2) fits both (B, rows) and unbatched (rows, 2) pairs: the batch dimension wins
    y = layer(torch.ones(2, 2), cap=torch.tensor([[3, 4], [5, 6]]))
    assert y.tolist() == [[3.0, 4.0], [5.0, 6.0]]
    pairs = layer(torch.ones(2, 2), cap=torch.tensor([[[0, 3], [0, 4]]] * 2))
    assert pairs.tolist() == [[3.0, 4.0], [3.0, 4.0]]


def test_the_bound_is_reported_only_for_the_costs_as_given():
    # a forward with a noise margin solves other costs: their bound says nothing about the
    # caller's objective, so it is NaN; without noise the solver sees the raw costs (whatever the
    # projection: the same argmin at the raw scale) and the bound is reported
    costs = torch.tensor([[3.0, 1.0, 2.0, 4.0]])
    layer = OptLayer(ChooseSpec(), projection="none", noise=0.5, generator=torch.Generator().manual_seed(0))
    layer.train()
    layer(costs)
    assert np.isnan(layer.last_info.bound).all()
    layer.eval()
    layer(costs)
    assert layer.last_info.bound.tolist() == [3.0]
    auto = OptLayer(ChooseSpec())
    auto(costs)
    assert auto.last_info.bound.tolist() == auto.last_info.objective.tolist() == [3.0]


@pytest.mark.parametrize("value", [None, "2", [1, [2, 3]], object()])
def test_data_that_is_not_numbers_is_a_value_error(value):
    with pytest.raises(ValueError, match=r"data 'k' must hold real numbers, got"):
        OptLayer(ChooseSpec())(torch.zeros(4), k=value)
