"""CvxpyLayer with per-instance data (declared parameters applied to the problem compiled once),
cost groups, and the outcomes (bound, duals, reduced costs, binding): each against CVXPY's own
problem.solve() of the same problem with the parameter values set by hand."""

from __future__ import annotations

import pickle
import pickletools

import cvxpy as cp
import numpy as np
import pytest
import torch

import idproj_or as ipo

# Instances made infeasible on purpose: on_failure="nan" says so once per layer.
pytestmark = pytest.mark.filterwarnings("ignore:.*instances have no decision:idproj_or.SolverWarning")

N = 6


def budget_problem(rng: np.random.Generator, sense: str, *, integer: bool) -> dict:
    """min/max c @ x over 0 <= x <= upper with two budget rows ``A x <= budget`` (a data
    parameter, nonneg) and a demand ``sum(x) >= need`` (a scalar data parameter): large needs and
    small budgets make some instances infeasible."""
    upper = rng.integers(1, 4, size=N).astype(float)
    a = rng.integers(1, 6, size=(2, N)).astype(float)
    c = cp.Parameter(N, name="c")
    budget = cp.Parameter(2, nonneg=True, name="budget", value=a.sum(axis=1) / 2)
    need = cp.Parameter(name="need", value=1.0)
    x = cp.Variable(N, integer=integer, name="x")
    declare = cp.Minimize if sense == "min" else cp.Maximize
    constraints = [a @ x <= budget, cp.sum(x) >= need, x >= 0, x <= upper]
    problem = cp.Problem(declare(c @ x), constraints)
    return {"problem": problem, "c": c, "x": x, "budget": budget, "need": need, "a": a, "upper": upper}


def direct(case: dict, cost: np.ndarray, **values: np.ndarray) -> tuple[str, np.ndarray | None, float]:
    """CVXPY's own solve with the parameters set by hand."""
    case["c"].value = cost
    for name, value in values.items():
        case[name].value = value
    case["problem"].solve(solver="HIGHS")
    x = case["x"].value
    return case["problem"].status, None if x is None else np.asarray(x), float(case["problem"].value)


def random_data(rng: np.random.Generator, case: dict, b: int) -> dict[str, np.ndarray]:
    # budgets from 5% to 80% of the full rows, needs 0 to 6: some instances infeasible
    budgets = case["a"].sum(axis=1) * rng.uniform(0.05, 0.8, size=(b, 2))
    needs = rng.integers(0, 7, size=b).astype(float)
    return {"budget": np.round(budgets, 2), "need": needs}


@pytest.mark.parametrize("integer", [False, True], ids=["LP", "MIP"])
@pytest.mark.parametrize("sense", ["min", "max"])
def test_per_instance_data_equals_cvxpys_own_solve(sense: str, integer: bool) -> None:
    # 3 problems x 40 instances per case, 480 in all, infeasible ones included.
    rng = np.random.default_rng([31, sense == "max", integer])
    infeasible = 0
    for _ in range(3):
        case = budget_problem(rng, sense, integer=integer)
        data = {"budget": case["budget"], "need": case["need"]}
        layer = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], data=data, on_failure="nan")
        costs = rng.uniform(-1, 1, size=(40, N))
        values = random_data(rng, case, 40)
        ys = layer.solve(torch.from_numpy(costs), **{k: torch.from_numpy(v) for k, v in values.items()}).numpy()
        info = layer.last_info
        for i, cost in enumerate(costs):
            status, y, value = direct(case, cost, budget=values["budget"][i], need=values["need"][i])
            if status == "infeasible":
                infeasible += 1
                assert info.status[i] == "infeasible"
                assert np.isnan(ys[i]).all()
                continue
            assert status == "optimal" and info.status[i] == "optimal"
            np.testing.assert_allclose(ys[i], y, atol=1e-7)
            assert info.objective[i] == pytest.approx(value, abs=1e-7)
            assert info.bound[i] == pytest.approx(value, abs=1e-6)
    assert 10 < infeasible < 100  # both kinds of instances were met


def test_infeasible_instance_raises_solver_error_with_its_index() -> None:
    case = budget_problem(np.random.default_rng(32), "max", integer=True)
    layer = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], data={"need": case["need"]})
    needs = torch.tensor([1.0, 2.0, 1000.0, 1.0])
    with pytest.raises(ipo.SolverError, match="CvxpyLayer: instance 2 of the batch has no solution") as info:
        layer(torch.rand(4, N), need=needs)
    assert (info.value.index, info.value.status) == (2, "infeasible")


def test_broadcast_data_equals_the_batched_copy_and_missing_data_keeps_the_models_value() -> None:
    rng = np.random.default_rng(33)
    case = budget_problem(rng, "max", integer=True)
    layer = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], data={"budget": case["budget"]}, projection="none")
    costs = torch.from_numpy(rng.uniform(0, 1, size=(8, N)))
    budget = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert torch.equal(layer(costs, budget=budget), layer(costs, budget=budget.expand(8, 2)))
    assert torch.equal(layer(costs[0], budget=budget), layer(costs, budget=budget)[0])
    own = case["budget"].value.copy()
    case["budget"].value = np.zeros(2)  # declared data: a later value is not followed
    without = layer(costs)
    assert torch.equal(without, layer(costs, budget=torch.from_numpy(own)))


def test_errors_name_the_data() -> None:
    case = budget_problem(np.random.default_rng(34), "min", integer=False)
    problem, c, x = case["problem"], case["c"], case["x"]
    layer = ipo.CvxpyLayer(problem, c, x, data={"budget": case["budget"], "need": case["need"]})
    assert [(f.name, f.shape, f.low) for f in layer.spec.fields] == [("budget", (2,), 0.0), ("need", (), -np.inf)]
    costs = torch.rand(3, N)
    with pytest.raises(ValueError, match=r"CvxpyLayer: unknown data 'cap'; the layer's data: budget, need"):
        layer(costs, cap=torch.ones(2))
    with pytest.raises(ValueError, match=r"CvxpyLayer: data 'budget' \(values of parameter budget\) must have shape"):
        layer(costs, budget=torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"data 'budget' .* of instance 1, at position \(0,\), is not finite"):
        layer(costs, budget=torch.tensor([[1.0, 1.0], [np.nan, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"data 'budget' .* of instance 2, at position \(1,\), is outside \[0, inf\]"):
        layer(costs, budget=torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, -1.0]]))
    with pytest.raises(ValueError, match=r"CvxpyLayer: data 'cap': parameter other is not a parameter of the problem"):
        ipo.CvxpyLayer(problem, c, x, data={"cap": cp.Parameter(name="other", value=1.0)})
    with pytest.raises(ValueError, match=r"CvxpyLayer: data 'cap' is the cost parameter c"):
        ipo.CvxpyLayer(problem, c, x, data={"cap": c})
    with pytest.raises(ValueError, match=r"CvxpyLayer: data 'cap' must be a cvxpy.Parameter, got ndarray"):
        ipo.CvxpyLayer(problem, c, x, data={"cap": np.ones(2)})
    with pytest.raises(ValueError, match=r"CvxpyLayer: data 'again' and 'budget' are the same parameter budget"):
        ipo.CvxpyLayer(problem, c, x, data={"budget": case["budget"], "again": case["budget"]})
    with pytest.raises(ValueError, match=r"CvxpyLayer: data name 'costs' must be a Python identifier, used once"):
        ipo.CvxpyLayer(problem, c, x, data={"costs": case["budget"]})
    scale = cp.Parameter(name="scale", value=2.0)
    product = cp.Problem(cp.Minimize(c @ x), [scale * case["need"] * cp.sum(x) <= 3, x >= 0, x <= 1])
    with pytest.raises(ValueError, match=r"the problem is not DPP: constraint 0 .* parameters scale, data 'need'"):
        ipo.CvxpyLayer(product, c, x, data={"need": case["need"]})
    flags = cp.Parameter(2, boolean=True, value=np.ones(2))
    flagged = cp.Problem(cp.Minimize(c @ x), [flags[0] * x[0] + flags[1] * x[1] >= 0, x >= 0, x <= 1])
    layer = ipo.CvxpyLayer(flagged, c, x, data={"flags": flags})
    with pytest.raises(ValueError, match=r"data 'flags' .* of instance 0, at position \(1,\), is not an integer"):
        layer(torch.rand(1, N), flags=torch.tensor([[1.0, 0.5]]))


def test_compiled_once_for_a_batch_of_data(monkeypatch) -> None:
    case = budget_problem(np.random.default_rng(35), "max", integer=True)
    calls = []
    compile_problem = cp.Problem.get_problem_data

    def counting(self, *args, **kwargs):
        calls.append(args)
        return compile_problem(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "get_problem_data", counting)
    layer = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], data={"budget": case["budget"]})
    assert len(calls) == 1
    rng = np.random.default_rng(36)
    costs = rng.uniform(0, 1, size=(50, N))
    budgets = case["a"].sum(axis=1) * rng.uniform(0.4, 0.9, size=(50, 2))  # all feasible
    ys = layer.solve(torch.from_numpy(costs), budget=torch.from_numpy(budgets)).numpy()
    layer(torch.from_numpy(costs), budget=torch.from_numpy(budgets))
    assert len(calls) == 1
    monkeypatch.undo()
    for cost, budget, y in zip(costs, budgets, ys):
        np.testing.assert_allclose(y, direct(case, cost, budget=budget)[1], atol=1e-9)


def test_parity_serial_vs_pool_and_dask(force_pool) -> None:
    rng = np.random.default_rng(37)
    case = budget_problem(rng, "max", integer=True)
    data = {"budget": case["budget"], "need": case["need"]}
    costs = torch.from_numpy(rng.uniform(-1, 1, size=(24, N)))
    values = {k: torch.from_numpy(v) for k, v in random_data(rng, case, 24).items()}
    serial = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], data=data, on_failure="nan")
    expected = serial(costs, **values)
    # The spec is plain data: no CVXPY object among what its pickle refers to.
    refs = {arg.split()[0] for op, arg, _ in pickletools.genops(pickle.dumps(serial.spec)) if op.name == "GLOBAL"}
    refs |= {str(arg) for op, arg, _ in pickletools.genops(pickle.dumps(serial.spec)) if op.name == "SHORT_BINUNICODE"}
    assert not any(r.startswith("cvxpy") for r in refs) and "idproj_or.solvers.cvxpy" in refs
    pooled = force_pool(ipo.CvxpyLayer(case["problem"], case["c"], case["x"], data=data, on_failure="nan", workers=2))
    got = pooled(costs, **values)
    assert pooled.last_info.mode == "pool"
    assert torch.equal(torch.isnan(got), torch.isnan(expected)) and torch.equal(got.nan_to_num(), expected.nan_to_num())
    assert pooled.last_info.status == serial.last_info.status
    np.testing.assert_array_equal(pooled.last_info.objective, serial.last_info.objective)
    from distributed import LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        cluster.get_client() as client,
    ):
        remote = ipo.CvxpyLayer(
            case["problem"], case["c"], case["x"], data=data, on_failure="nan", executor=client.get_executor()
        )
        got = remote(costs, **values)
        assert remote.last_info.mode == "executor"
        assert (
            torch.equal(got.nan_to_num(), expected.nan_to_num()) and remote.last_info.status == serial.last_info.status
        )


def test_data_in_coefficients_bounds_and_objective() -> None:
    # A data parameter as a coefficient of the constraint matrix, one as a variable's bound and
    # one as a coefficient of the fixed part: each instance equals CVXPY's own solve, whatever
    # the order the instances come in.
    rng = np.random.default_rng(38)
    c = cp.Parameter(N)
    w = cp.Parameter(N, nonneg=True, value=np.ones(N))
    top = cp.Parameter(nonneg=True, value=2.0)
    price = cp.Parameter(value=0.5)
    x = cp.Variable(N, integer=True)
    z = cp.Variable(bounds=[0, top])  # (a parametric bound and a parameter coefficient on z are not DPP)
    u = cp.Variable(nonneg=True)
    constraints = [w @ x <= 3 + z, u >= x[0] + x[1] - 1, x >= 0, x <= 2]
    problem = cp.Problem(cp.Maximize(c @ x - 0.5 * z - price * u), constraints)
    case = {"problem": problem, "c": c, "x": x, "w": w, "top": top, "price": price}
    layer = ipo.CvxpyLayer(problem, c, x, data={"w": w, "top": top, "price": price}, projection="none")
    costs = rng.uniform(0, 1, size=(30, N))
    values = {
        "w": rng.integers(0, 4, size=(30, N)).astype(float),  # zeros: entries vanish and come back
        "top": rng.integers(0, 4, size=30).astype(float),
        "price": rng.uniform(0, 1, size=30),
    }
    as_tensors = {k: torch.from_numpy(v) for k, v in values.items()}
    ys = layer.solve(torch.from_numpy(costs), **as_tensors).numpy()
    objective = layer.last_info.objective.copy()
    for i, cost in enumerate(costs):
        status, y, value = direct(case, cost, **{k: v[i] for k, v in values.items()})
        assert status == "optimal"
        assert objective[i] == pytest.approx(value, abs=1e-9)
        np.testing.assert_allclose(ys[i], y, atol=1e-9)
    flipped = layer.solve(torch.from_numpy(costs[::-1].copy()), **{k: v.flip(0) for k, v in as_tensors.items()})
    assert torch.equal(flipped.flip(0), torch.from_numpy(ys))


def test_undeclared_parameter_is_still_followed_next_to_declared_data() -> None:
    case = budget_problem(np.random.default_rng(39), "min", integer=True)  # positive costs: x as small as need allows
    layer = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], data={"budget": case["budget"]})
    costs = torch.rand(5, N, dtype=torch.float64)
    budget = torch.tensor([100.0, 100.0], dtype=torch.float64)
    case["need"].value = 1.0
    before = layer(costs, budget=budget)
    case["need"].value = 4.0  # not declared: read again before the next solve
    after = layer(costs, budget=budget)
    assert not torch.equal(before, after)
    for cost, y in zip(costs.numpy(), after.numpy()):
        np.testing.assert_allclose(y, direct(case, cost, budget=budget.numpy(), need=4.0)[1], atol=1e-9)


# --- cost groups ---------------------------------------------------------------------------


def facility(*, grouped: bool) -> tuple[cp.Problem, object, object]:
    """Open facilities (3) and assign customers (4 x 3): each customer to one open facility, at
    most 2 per facility; as two cost groups, or as one parameter over the concatenation."""
    if grouped:
        open_ = cp.Variable(3, boolean=True)
        assign = cp.Variable((4, 3), boolean=True)
        c_open, c_assign = cp.Parameter(3), cp.Parameter((4, 3))
        objective = c_open @ open_ + cp.sum(cp.multiply(c_assign, assign))
        params, variables = {"open": c_open, "assign": c_assign}, {"open": open_, "assign": assign}
    else:
        v = cp.Variable(15, boolean=True)
        open_, assign = v[:3], cp.reshape(v[3:], (4, 3), order="C")
        c = cp.Parameter(15)
        objective = c @ v
        params, variables = c, v
    constraints = [cp.sum(assign, axis=1) == 1, cp.sum(assign, axis=0) <= 2 * open_]
    return cp.Problem(cp.Minimize(objective), constraints), params, variables


def test_cost_groups_equal_the_concatenated_single_parameter_model() -> None:
    rng = np.random.default_rng(40)
    grouped = ipo.CvxpyLayer(*facility(grouped=True), projection="none")
    single = ipo.CvxpyLayer(*facility(grouped=False), projection="none")
    w_open = torch.from_numpy(rng.uniform(0, 3, size=(20, 3)))
    w_assign = torch.from_numpy(rng.uniform(0, 1, size=(20, 4, 3)))
    y = grouped.solve({"open": w_open, "assign": w_assign})
    assert set(y) == {"open", "assign"} and y["open"].shape == (20, 3) and y["assign"].shape == (20, 4, 3)
    flat = single.solve(torch.cat([w_open, w_assign.reshape(20, 12)], dim=1))
    assert torch.equal(torch.cat([y["open"], y["assign"].reshape(20, 12)], dim=1), flat)
    np.testing.assert_allclose(grouped.last_info.objective, single.last_info.objective, atol=1e-12)
    one = grouped({"open": w_open[0], "assign": w_assign[0]})  # unbatched, through the rule
    assert torch.equal(one["open"], y["open"][0]) and torch.equal(one["assign"], y["assign"][0])
    # The gradient reaches both groups: -I for a minimisation, projection "none".
    w1, w2 = w_open[:2].clone().requires_grad_(), w_assign[:2].clone().requires_grad_()
    out = grouped({"open": w1, "assign": w2})
    (out["open"].sum() + 2 * out["assign"].sum()).backward()
    assert torch.equal(w1.grad, -torch.ones_like(w1)) and torch.equal(w2.grad, -2 * torch.ones_like(w2))


def test_cost_group_errors() -> None:
    problem, params, variables = facility(grouped=True)
    with pytest.raises(ValueError, match=r"cost groups need a dict of parameters and a dict of variables"):
        ipo.CvxpyLayer(problem, params, variables["open"])
    with pytest.raises(ValueError, match=r"cost groups need a dict .* same keys"):
        ipo.CvxpyLayer(problem, params, {"assign": variables["assign"], "open": variables["open"]})
    with pytest.raises(ValueError, match=r"cost group 'open': parameter.shape \(3,\) must equal variable.shape"):
        ipo.CvxpyLayer(problem, params, {"open": variables["assign"], "assign": variables["open"]})
    layer = ipo.CvxpyLayer(problem, params, variables)
    with pytest.raises(ValueError, match=r"expected a dict of costs with keys \['assign', 'open'\]"):
        layer(torch.rand(15))


# --- outcomes: bound, duals, reduced costs, binding --------------------------------------------


def random_lp(rng: np.random.Generator, sense: str) -> dict:
    """A random bounded LP over -1 <= x <= 1 with five random rows ``G x <= h`` (h a data
    parameter), an equality ``sum(x) == s`` (s data) and a matrix constraint."""
    g = rng.normal(size=(5, N))
    c = cp.Parameter(N)
    h = cp.Parameter(5, value=np.abs(rng.normal(size=5)))
    s = cp.Parameter(value=0.0)
    x = cp.Variable(N)
    m = cp.Variable((2, 2))
    declare = cp.Minimize if sense == "min" else cp.Maximize
    sign = 1.0 if sense == "min" else -1.0
    constraints = [g @ x <= h, cp.sum(x) == s, x >= -1, x <= 1, m >= x[0], m <= 2, cp.sum(m) == 1 + x[1]]
    problem = cp.Problem(declare(c @ x + sign * cp.sum(cp.multiply(rng.uniform(1, 2, (2, 2)), m))), constraints)
    return {"problem": problem, "c": c, "x": x, "h": h, "s": s}


@pytest.mark.parametrize("sense", ["min", "max"])
def test_lp_duals_equal_cvxpys_dual_values(sense: str) -> None:
    rng = np.random.default_rng([41, sense == "max"])
    checked = 0
    for _ in range(4):
        case = random_lp(rng, sense)
        problem = case["problem"]
        layer = ipo.CvxpyLayer(problem, case["c"], case["x"], data={"h": case["h"], "s": case["s"]})
        costs = rng.normal(size=(10, N))
        hs = np.abs(rng.normal(size=(10, 5))) + 0.1
        ss = rng.uniform(-0.5, 0.5, size=10)
        layer.solve(torch.from_numpy(costs), duals=True, h=torch.from_numpy(hs), s=torch.from_numpy(ss))
        info = layer.last_info
        sizes = sum(con.size for con in problem.constraints)
        assert info.duals.shape == (10, sizes) and info.binding.shape == (10, sizes)
        assert info.reduced_costs.shape == (10, N)
        for i, cost in enumerate(costs):
            status, _, value = direct(case, cost, h=hs[i], s=ss[i])
            assert status == "optimal" == info.status[i]
            want = np.concatenate([np.ravel(con.dual_value) for con in problem.constraints])
            np.testing.assert_allclose(info.duals[i], want, atol=1e-7)
            assert info.bound[i] == pytest.approx(value, abs=1e-7)
            # the rows CVXPY's solution leaves tight are the binding ones (equalities always)
            tight = np.concatenate(
                [
                    np.ravel(np.abs(con.expr.value) <= 1e-7) | isinstance(con, cp.constraints.Zero)
                    for con in problem.constraints
                ]
            )
            np.testing.assert_array_equal(info.binding[i], tight)
            checked += 1
    assert checked == 40


def test_lp_duals_on_the_generic_route() -> None:
    rng = np.random.default_rng(44)
    case = random_lp(rng, "max")
    problem = case["problem"]
    layer = ipo.CvxpyLayer(problem, case["c"], case["x"], "CLARABEL", data={"h": case["h"]})
    costs = rng.normal(size=(5, N))
    hs = np.abs(rng.normal(size=(5, 5))) + 0.1
    layer.solve(torch.from_numpy(costs), duals=True, h=torch.from_numpy(hs))
    info = layer.last_info
    assert info.binding is None and info.reduced_costs is None and np.isnan(info.bound).all()
    for i, cost in enumerate(costs):
        case["c"].value, case["h"].value = cost, hs[i]
        problem.solve(solver="CLARABEL")
        want = np.concatenate([np.ravel(con.dual_value) for con in problem.constraints])
        np.testing.assert_allclose(info.duals[i], want, atol=1e-6)


def test_reduced_costs_are_the_duals_of_bounds_written_as_constraints() -> None:
    # Bounds on the cost variable as column bounds (reduced costs) or as constraints (their
    # duals): in the user's sense, the reduced cost is dual(x >= lo) - dual(x <= hi).
    rng = np.random.default_rng(42)
    for sense in ("min", "max"):
        declare = cp.Minimize if sense == "min" else cp.Maximize
        g = rng.normal(size=(3, N))
        c = cp.Parameter(N)
        x = cp.Variable(N, bounds=[-1, 1])
        bounded = ipo.CvxpyLayer(cp.Problem(declare(c @ x), [g @ x <= 0.5]), c, x)
        xs = cp.Variable(N)
        lo, hi = xs >= -1, xs <= 1
        written = cp.Problem(declare(c @ xs), [g @ xs <= 0.5, lo, hi])
        costs = rng.normal(size=(10, N))
        bounded.solve(torch.from_numpy(costs), duals=True)
        for cost, reduced in zip(costs, bounded.last_info.reduced_costs):
            c.value = cost
            written.solve(solver="HIGHS")
            sign = 1.0 if sense == "min" else -1.0
            np.testing.assert_allclose(reduced, sign * (lo.dual_value - hi.dual_value), atol=1e-7)


def test_mip_bound_and_binding() -> None:
    rng = np.random.default_rng(43)
    case = budget_problem(rng, "max", integer=True)
    layer = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], data={"budget": case["budget"]})
    costs = rng.uniform(0, 1, size=(15, N))
    budgets = case["a"].sum(axis=1) * rng.uniform(0.3, 0.8, size=(15, 2))
    ys = layer.solve(torch.from_numpy(costs), duals=True, budget=torch.from_numpy(budgets)).numpy()
    info = layer.last_info
    assert info.duals is None and info.reduced_costs is None  # a MIP has none
    for i, y in enumerate(ys):
        assert info.bound[i] == pytest.approx(info.objective[i], abs=1e-9)  # zero gap
        slack = np.concatenate([budgets[i] - case["a"] @ y, [y.sum() - 1.0], y, case["upper"] - y])
        np.testing.assert_array_equal(info.binding[i], np.abs(slack) <= 1e-9)
