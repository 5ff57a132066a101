"""CpSatLayer with per-instance data (bounds of named constraints and variables), its bound and
binding rows, and cost groups: against CP-SAT solving a fresh model with the same bounds set
by hand."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch
from ortools.sat.python import cp_model

import idproj_or as ipo

# Rows without a decision (on_failure="nan") and float costs' rounding warn by design here.
pytestmark = pytest.mark.filterwarnings("ignore::idproj_or.SolverWarning")

INT_MIN, INT_MAX = cp_model.INT_MIN, cp_model.INT_MAX
# Constraint rows of the random model, in the order they are added (and data's "cap" order).
LE, GE, EQ, RANGE, ENFORCED = range(5)
CAP_ROWS = (LE, GE, EQ, ENFORCED)  # the rows named "cap" in data, in its order


class Rows(NamedTuple):
    """A random model's numbers: n integer variables in [0, upper] and one Boolean b (the last
    cost entry); rows LE, GE, EQ, RANGE over the integers, ENFORCED (x0 + x1 <= k if b), and an
    always-true bool_or (not linear)."""

    upper: np.ndarray
    a: np.ndarray  # (5, n)
    lo: np.ndarray  # (5,) own bounds, INT_MIN / INT_MAX for none
    hi: np.ndarray


def random_rows(rng: np.random.Generator, n: int = 5) -> Rows:
    upper = rng.integers(1, 4, n)
    x0 = rng.integers(0, upper + 1)
    a = rng.integers(-2, 5, (5, n))
    a[ENFORCED] = 0
    a[ENFORCED, :2] = 1
    act = a @ x0
    lo = np.array([INT_MIN, act[GE] - rng.integers(0, 3), act[EQ], act[RANGE] - 2, INT_MIN])
    hi = np.array([act[LE] + rng.integers(0, 4), INT_MAX, act[EQ], act[RANGE] + 2, rng.integers(0, 4)])
    return Rows(upper, a, lo, hi)


def layer_model(rows: Rows):
    """The model as a user writes it: each row by its own kind of statement."""
    m = cp_model.CpModel()
    x = [m.new_int_var(0, int(u), f"x{i}") for i, u in enumerate(rows.upper)]
    b = m.new_bool_var("b")
    expr = [sum(int(c) * v for c, v in zip(row, x)) for row in rows.a]
    cts = [
        m.add(expr[LE] <= int(rows.hi[LE])),
        m.add(expr[GE] >= int(rows.lo[GE])),
        m.add(expr[EQ] == int(rows.lo[EQ])),
        m.add_linear_constraint(expr[RANGE], int(rows.lo[RANGE]), int(rows.hi[RANGE])),
        m.add(x[0] + x[1] <= int(rows.hi[ENFORCED])).only_enforce_if(b),
    ]
    m.add_bool_or([b, ~b])
    return m, [*x, b], cts


def reference(rows: Rows, lo, hi, var_lo, var_hi, cost, sense):
    """(decision, objective) of a fresh model with these bounds (integer costs), or None if
    infeasible."""
    if np.any(var_lo > var_hi) or np.any(lo > hi):
        return None  # no integer lies in a crossed range
    m = cp_model.CpModel()
    n = len(rows.upper)
    x = [m.new_int_var(int(var_lo[i]), int(var_hi[i]), f"x{i}") for i in range(n)]
    b = m.new_int_var(int(var_lo[n]), int(var_hi[n]), "b")
    for k, row in enumerate(rows.a):
        ct = m.add_linear_constraint(sum(int(c) * v for c, v in zip(row, x)), int(lo[k]), int(hi[k]))
        if k == ENFORCED:
            ct.only_enforce_if(b)
    obj = sum(int(c) * v for c, v in zip(cost, [*x, b]))
    m.maximize(obj) if sense == "max" else m.minimize(obj)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    status = solver.solve(m)
    if status == cp_model.INFEASIBLE:
        return None
    assert status == cp_model.OPTIMAL
    y = np.array([solver.value(v) for v in [*x, b]], dtype=float)
    return y, float(cost @ y)  # exact: integer costs and decisions


def instance_bounds(rows: Rows, cap=None, band=None, ub=None, box=None):
    """The bounds an instance's data gives, by the documented rule (single values: <= upper,
    >= lower, == both, the enforced <= row upper; variables upper; pairs both)."""
    lo, hi = rows.lo.copy(), rows.hi.copy()
    var_lo = np.zeros(len(rows.upper) + 1, dtype=np.int64)
    var_hi = np.append(rows.upper, 1)
    if cap is not None:
        for k, v in zip(CAP_ROWS, cap):
            if np.ndim(v):
                lo[k], hi[k] = v
            elif k == GE:
                lo[k] = v
            elif k == EQ:
                lo[k] = hi[k] = v
            else:
                hi[k] = v
    if band is not None:
        lo[RANGE], hi[RANGE] = band[0]
    if ub is not None:
        var_hi[:2] = ub
    if box is not None:
        var_lo[2], var_hi[2] = box[0]
    return lo, hi, var_lo, var_hi


def random_data(rows: Rows, rng: np.random.Generator, b: int, pairs: bool) -> dict[str, np.ndarray]:
    """Per-instance values near the model's own bounds; some make the instance infeasible."""
    own = np.where(rows.lo > INT_MIN, rows.lo, rows.hi)[list(CAP_ROWS)]
    cap = own + rng.integers(-3, 4, (b, 4))
    if pairs:
        cap = np.stack([cap - rng.integers(0, 3, (b, 4)), cap], axis=-1)
    band_lo = rows.lo[RANGE] + rng.integers(-3, 3, b)
    return {
        "cap": cap.astype(float),
        "band": np.stack([band_lo, band_lo + rng.integers(0, 4, b)], axis=-1)[:, None, :].astype(float),
        "ub": rng.integers(-1, 4, (b, 2)).astype(float),
        "box": np.stack([lo := rng.integers(0, 2, b), lo + rng.integers(0, 2, b)], axis=-1)[:, None, :].astype(float),
    }


def make_layer(rows: Rows, sense: str, **options):
    m, x, cts = layer_model(rows)
    data = {"cap": [cts[k] for k in CAP_ROWS], "band": [cts[RANGE]], "ub": x[:2], "box": [x[2]]}
    return ipo.CpSatLayer(m, x, sense=sense, data=data, **options), m


def check_batch(layer, rows, costs, data, sense):
    y = layer(torch.from_numpy(costs), **{k: torch.from_numpy(v) for k, v in data.items()})
    info = layer.last_info
    infeasible = 0
    for i, cost in enumerate(costs):
        bounds = instance_bounds(rows, **{k: v[i] for k, v in data.items()})
        ref = reference(rows, *bounds, cost, sense)
        if ref is None:
            infeasible += 1
            assert info.status[i] == "infeasible"
            assert torch.isnan(y[i]).all()
            continue
        assert info.status[i] == "optimal"
        np.testing.assert_array_equal(y[i].numpy(), ref[0])
        assert info.objective[i] == ref[1] == info.bound[i]
    return infeasible


def test_random_instances_match_a_fresh_model_with_the_same_bounds():
    rng = np.random.default_rng(0)
    infeasible = total = 0
    for trial in range(8):
        rows = random_rows(rng)
        sense = ("min", "max")[trial % 2]
        layer, model = make_layer(rows, sense, on_failure="nan")
        before = str(model.proto)
        n = len(rows.upper) + 1
        for fields in (("cap", "band", "ub", "box"), ("cap",), (), ("ub", "band")):
            b = 12
            costs = rng.integers(-(10**6), 10**6, (b, n)).astype(float)
            data = random_data(rows, rng, b, pairs=trial % 4 >= 2)
            infeasible += check_batch(layer, rows, costs, {k: data[k] for k in fields}, sense)
            total += b
        assert str(model.proto) == before  # the model is left untouched
    assert total == 384 and 0.1 * total < infeasible < 0.7 * total


def test_broadcast_data_equals_batched_and_a_pair_sets_both_ends():
    rng = np.random.default_rng(1)
    rows = random_rows(rng)
    layer, _ = make_layer(rows, "min", on_failure="nan")
    costs = torch.from_numpy(rng.integers(-100, 100, (6, 6)).astype(float))
    rows_cap = list(CAP_ROWS)
    cap = torch.from_numpy(np.where(rows.lo > INT_MIN, rows.lo, rows.hi)[rows_cap].astype(float))
    one = layer(costs, cap=cap)
    assert torch.equal(one, layer(costs, cap=cap.expand(6, 4)))
    # The model's own bounds as data change nothing, as single values or as pairs (+-2^62, the
    # largest data, for an open side).
    assert torch.equal(one, layer(costs))
    lo, hi = rows.lo[rows_cap].clip(-(2**62)), rows.hi[rows_cap].clip(None, 2**62)
    pairs = torch.from_numpy(np.stack([lo, hi], axis=-1).astype(float))
    assert torch.equal(one, layer(costs, cap=pairs))
    # An equality opened into a range by a pair: as a fresh model with that range ("auto" does
    # not use an equality that data names).
    m, x, _ = layer_model(rows)
    assert ipo.CpSatLayer(m, x).handle.invariance_basis().shape == (1, 6)
    assert layer.handle.invariance_basis().shape == (0, 6)
    wide = pairs.clone()
    wide[CAP_ROWS.index(EQ)] = torch.tensor([rows.lo[EQ] - 3.0, rows.lo[EQ] + 3.0])
    y = layer(costs, cap=wide)
    for i, cost in enumerate(costs.numpy()):
        lo, hi, var_lo, var_hi = instance_bounds(rows)
        lo[EQ], hi[EQ] = rows.lo[EQ] - 3, rows.lo[EQ] + 3
        ref = reference(rows, lo, hi, var_lo, var_hi, cost, "min")
        np.testing.assert_array_equal(y[i].numpy(), ref[0])


def test_infeasible_instance_raises_with_its_index():
    rng = np.random.default_rng(2)
    rows = random_rows(rng)
    layer, _ = make_layer(rows, "max")
    ub = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, 1.0]])  # x0 <= -1 < 0: infeasible
    with pytest.raises(ipo.SolverError, match=r"instance 2 of the batch has no solution") as err:
        layer(torch.ones(4, 6), ub=ub)
    assert err.value.index == 2 and err.value.status == "infeasible"
    assert layer.last_info.solver_status[2] == "INFEASIBLE_BOUNDS"
    # An instance infeasible by its rows (not crossed bounds) is CP-SAT's own verdict.
    eq = torch.tensor([float(rows.a[EQ].clip(0) @ rows.upper + 1)])
    m, x, cts = layer_model(rows)
    with pytest.raises(ipo.SolverError, match=r"instance 0 of the batch") as err:
        ipo.CpSatLayer(m, x, data={"eq": [cts[EQ]]})(torch.ones(6), eq=eq)
    assert err.value.solver_status == "INFEASIBLE"


def test_binding_rows_against_activities_of_the_decision():
    rng = np.random.default_rng(3)
    for _ in range(4):
        rows = random_rows(rng)
        layer, _ = make_layer(rows, "max", on_failure="nan")
        costs = rng.integers(-50, 50, (32, 6)).astype(float)
        data = random_data(rows, rng, 32, pairs=False)
        del data["ub"]  # fewer infeasible instances
        y = layer.solve(torch.from_numpy(costs), duals=True, **{k: torch.from_numpy(v) for k, v in data.items()})
        info = layer.last_info
        assert info.duals is None and info.reduced_costs is None
        assert info.binding.shape == (32, 6) and info.status.count("optimal") >= 8
        for i in range(32):
            if info.status[i] != "optimal":
                assert not info.binding[i].any()
                continue
            lo, hi, _, _ = instance_bounds(rows, **{k: v[i] for k, v in data.items()})
            x = y[i].numpy()
            act = rows.a @ x[:-1]
            tight = ((act == lo) & (lo > INT_MIN)) | ((act == hi) & (hi < INT_MAX))
            tight[ENFORCED] &= x[-1] == 1
            np.testing.assert_array_equal(info.binding[i], np.append(tight, False))  # bool_or: not linear


def test_bound_in_user_units_with_float_costs_and_the_own_objective():
    rng = np.random.default_rng(4)
    rows = random_rows(rng)
    for sense in ("min", "max"):
        m, x, cts = layer_model(rows)
        z = m.new_int_var(0, 3, "z")
        m.add(z <= x[0] + 1)
        own = 3 * z + 2
        m.maximize(own) if sense == "max" else m.minimize(own)
        layer = ipo.CpSatLayer(m, x, data={"cap": cts[:2]})
        costs = torch.from_numpy(rng.normal(size=(20, 6)) * 10.0 ** rng.integers(-3, 4, (20, 1)))
        layer.solve(costs, cap=torch.tensor([rows.hi[LE] + 2.0, rows.lo[GE] - 1.0]))
        info = layer.last_info
        # (Some are "feasible": the float costs' rounding to int64 is reported, 1e-17 here.)
        assert set(info.status) <= {"optimal", "feasible"}
        gap = (info.bound - info.objective) * (1 if sense == "max" else -1)
        # A proven bound: on the right side of the objective and within the float64 rounding of
        # the objective itself (which the handle sums in float64: either side by that much).
        rounding = 1e-12 * (1 + np.abs(info.objective))
        assert np.all(gap >= -rounding) and np.all(gap <= rounding)


def test_changed_variable_domains_follow_the_integer_scaling():
    # A cost variable widened by data to 2^40: the costs are scaled within the new headroom.
    m = cp_model.CpModel()
    x = [m.new_int_var(0, 10, f"x{i}") for i in range(3)]
    m.add(sum(x) <= 2**41)
    layer = ipo.CpSatLayer(m, x, sense="max", data={"ub": x})
    costs = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    y = layer(costs, ub=torch.tensor([[10.0, 10, 10], [2.0**40, 5, 7]]))
    assert y.tolist() == [[10, 10, 10], [2**40, 5, 7]]
    assert layer.last_info.objective[1] == 2.0**40 + 31 == layer.last_info.bound[1]
    assert layer.last_info.status == ("optimal", "optimal")


def test_enforced_constraint_takes_data():
    m = cp_model.CpModel()
    x = [m.new_int_var(0, 5, f"x{i}") for i in range(2)]
    b = m.new_bool_var("b")
    m.add(b == 1)
    ct = m.add(x[0] + x[1] <= 4).only_enforce_if(b)
    layer = ipo.CpSatLayer(m, [*x, b], sense="max", data={"k": [ct]})
    y = layer(torch.tensor([1.0, 2.0, 0.0]).expand(3, 3), k=torch.tensor([[4.0], [1.0], [7.0]]))
    assert y.tolist() == [[0, 4, 1], [0, 1, 1], [2, 5, 1]]


def test_construction_refuses_bad_data():
    m = cp_model.CpModel()
    x = [m.new_int_var(0, 5, f"x{i}") for i in range(3)]
    b = m.new_bool_var("b")
    le = m.add(x[0] + x[1] <= 4)
    hole = m.add(x[0] != 2)
    other = cp_model.CpModel()
    y = other.new_int_var(0, 3, "y")
    other_ct = other.add(y <= 2)
    gappy = m.new_int_var_from_domain(cp_model.Domain.from_values([0, 2, 4]), "g")

    def make(data):
        return ipo.CpSatLayer(m, x, data=data)

    with pytest.raises(ValueError, match=r"data 'c'\[1\] is not a linear constraint"):
        make({"c": [le, m.add_bool_or([b])]})
    with pytest.raises(ValueError, match=r"data 'c'\[0\] has a domain with holes"):
        make({"c": [hole]})
    with pytest.raises(ValueError, match=r"data 'v'\[0\] \('g'\) has a domain with holes"):
        make({"v": [gappy]})
    with pytest.raises(ValueError, match=r"data 'c'\[1\] is not a constraint of this model"):
        make({"c": [le, other_ct]})
    with pytest.raises(ValueError, match=r"data 'v'\[0\] \('y'\) is not a variable of this model"):
        make({"v": [y]})
    with pytest.raises(ValueError, match=r"data 'c' is empty"):
        make({"c": []})
    with pytest.raises(ValueError, match=r"data 'c' mixes constraints and variables"):
        make({"c": [le, x[0]]})
    with pytest.raises(ValueError, match=r"data 'd'\[0\] is a constraint already named in data 'c'"):
        make({"c": [le], "d": [le]})
    with pytest.raises(ValueError, match=r"data 'c'\[1\] is a variable already named in data 'c'"):
        make({"c": [x[1], x[1]]})
    with pytest.raises(ValueError, match=r"data 'c'\[0\] is a NotBooleanVariable; expected a linear constraint"):
        make({"c": [~b]})
    with pytest.raises(ValueError, match=r"data must be a dict"):
        make([le])
    with pytest.raises(ValueError, match=r"variables as a dict needs at least one group"):
        ipo.CpSatLayer(m, {})
    with pytest.raises(ValueError, match=r"CpSatLayer \(group 'open'\): variables\[1\] is a Constraint"):
        ipo.CpSatLayer(m, {"assign": x, "open": [b, le]})
    with pytest.raises(ValueError, match=r"data name 'costs' must be a Python identifier, used once, and none of"):
        make({"costs": [le]})
    with pytest.raises(ValueError, match=r"data name 'a b' must be a Python identifier"):
        make({"a b": [le]})


def test_bad_values_are_refused_before_any_solve():
    m = cp_model.CpModel()
    x = [m.new_int_var(0, 5, f"x{i}") for i in range(3)]
    le = m.add(x[0] + x[1] <= 4)
    layer = ipo.CpSatLayer(m, x, data={"cap": [le]})
    costs = torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"data 'cap' .* of instance 1, at position \(0,\), is not an integer: .*2\.5"):
        layer(costs, cap=torch.tensor([[1.0], [2.5]]))
    with pytest.raises(ValueError, match=r"data 'cap' .* of instance 0, at position \(0,\), is outside \[-4.6"):
        layer(costs, cap=torch.tensor([2.0**63]))
    with pytest.raises(ValueError, match=r"data 'cap' .* is a lower bound above its upper bound"):
        layer(costs, cap=torch.tensor([[3.0, 2.0]]))
    with pytest.raises(
        ValueError, match=r"data 'cap' .* must have shape \(1,\) or \(2, 1\) or \(1, 2\) or \(2, 1, 2\)"
    ):
        layer(costs, cap=torch.ones(3))
    with pytest.raises(ValueError, match=r"unknown data 'caps'; the layer's data: cap"):
        layer(costs, caps=torch.ones(1))


def facility_model(n_fac: int = 3, n_cust: int = 4):
    """Assign each customer to one open facility: sum_j x_ij = 1 couples x only, x_ij <= y_j
    couples both groups."""
    m = cp_model.CpModel()
    y = [m.new_bool_var(f"y{j}") for j in range(n_fac)]
    x = [[m.new_bool_var(f"x{i}_{j}") for j in range(n_fac)] for i in range(n_cust)]
    for i in range(n_cust):
        m.add(sum(x[i]) == 1)
        for j in range(n_fac):
            m.add(x[i][j] <= y[j])
    return m, y, x


@pytest.mark.parametrize("projection", ["none", "auto"])
def test_cost_groups_match_the_flat_layer(projection):
    m, y, x = facility_model()
    grouped = ipo.CpSatLayer(m, {"open": y, "assign": x}, projection=projection)
    flat = ipo.CpSatLayer(m, y + [v for row in x for v in row], projection=projection)
    assert grouped.shape == flat.shape == (15,)
    g = torch.Generator().manual_seed(0)
    c_open = torch.rand(8, 3, generator=g, dtype=torch.float64) * 5
    c_assign = torch.rand(8, 4, 3, generator=g, dtype=torch.float64)
    out = grouped({"open": c_open, "assign": c_assign})
    expected = flat(torch.cat([c_open, c_assign.reshape(8, 12)], dim=1))
    assert set(out) == {"open", "assign"} and out["assign"].shape == (8, 4, 3)
    assert torch.equal(out["open"], expected[:, :3]) and torch.equal(out["assign"].reshape(8, 12), expected[:, 3:])
    np.testing.assert_array_equal(grouped.last_info.objective, flat.last_info.objective)
    # The exact decisions, unbatched as well.
    one = grouped.solve({"open": c_open[0], "assign": c_assign[0]})
    assert torch.equal(one["open"], expected[0, :3])
    if projection == "auto":  # the assignment rows over x are found in the flat space
        assert grouped.handle.invariance_basis().shape == (4, 15)


def test_parity_serial_pool_and_dask_with_data(force_pool):
    from distributed import LocalCluster

    rng = np.random.default_rng(5)
    rows = random_rows(rng)
    costs = torch.from_numpy(rng.integers(-100, 100, (24, 6)).astype(float))
    data = {k: torch.from_numpy(v) for k, v in random_data(rows, rng, 24, pairs=False).items()}
    serial, _ = make_layer(rows, "max", on_failure="nan")
    expected = serial(costs, **data)
    assert serial.last_info.mode == "serial" and 0 < len(serial.last_info.failed) < 24
    pooled = force_pool(make_layer(rows, "max", on_failure="nan", workers=2)[0])
    torch.testing.assert_close(pooled(costs, **data), expected, equal_nan=True, rtol=0, atol=0)
    assert pooled.last_info.mode == "pool" and pooled.last_info.status == serial.last_info.status
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster,
        cluster.get_client() as client,
    ):
        remote = make_layer(rows, "max", on_failure="nan", executor=client.get_executor())[0]
        torch.testing.assert_close(remote(costs, **data), expected, equal_nan=True, rtol=0, atol=0)
        assert remote.last_info.mode == "executor"
    np.testing.assert_array_equal(remote.last_info.objective, serial.last_info.objective)
    np.testing.assert_array_equal(remote.last_info.bound, serial.last_info.bound)


def test_an_item_switched_off_by_data_never_overflows_the_cost_scaling():
    # a variable fixed at 0 has no headroom: its scaled cost used to pass int64 (MODEL_INVALID)
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(3)]
    m.add(3 * x[0] + 2 * x[1] + 2 * x[2] <= 4)
    layer = ipo.CpSatLayer(m, x, sense="max", data={"available": x})
    values = torch.tensor([[5.0, 0.2, 0.1]] * 3)
    available = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    y = layer(values, available=available)
    assert y.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
    assert layer.last_info.status == ("optimal",) * 3


def test_variable_data_beyond_what_cp_sat_accepts_is_refused_before_any_solve():
    m = cp_model.CpModel()
    b = [m.new_bool_var(f"b{i}") for i in range(2)]
    v = m.new_int_var(0, 10, "v")
    m.add(b[0] + b[1] + v <= 11)
    m.add_bool_or([b[0], b[1]])  # literals: a bound of 2 would make the model invalid
    layer = ipo.CpSatLayer(m, [*b, v], sense="max", data={"on": b, "v_ub": [v]})
    with pytest.raises(ValueError, match=r"data 'on' .* of instance 0, at position \(1,\), is outside \[0, 1\]: 2"):
        layer(torch.ones(3), on=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"data 'v_ub' .* is outside \[-2\.30584e\+18, 2\.30584e\+18\]"):
        layer(torch.ones(3), v_ub=torch.tensor([[0.0, 2.0**62]]))
    y = layer(torch.tensor([0.0, 0.0, 1.0]), v_ub=torch.tensor([[0.0, 2.0**40]]))
    assert y[2] == 10.0 and y[:2].sum() == 1.0  # the bool_or needs one literal
