"""CvxpyLayer keeps the problem's own objective (a fixed part next to c @ x): decisions and
last_info.objective against a direct problem.solve() of the same problem; objective="replace";
the refusals; the gradient; serial vs pool."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

import idproj_or as ipo

N, M = 6, 3  # cost entries, other variables
KINDS = ("other", "own", "constant", "param", "all")


def random_problem(rng: np.random.Generator, sense: str, kind: str, *, integer: bool) -> dict:
    """min/max c @ x + fixed over a random feasible bounded LP/MIP; the other variables
    ``z >= G x - h`` are pushed down by the fixed part, so that it changes the decision."""
    upper = rng.integers(1, 3, size=N).astype(float)
    x0 = np.floor(rng.random(N) * (upper + 1)).clip(0, upper)  # a feasible point
    a_ub = rng.integers(1, 6, size=(2, N)).astype(float)
    a_eq = (rng.random((1, N)) < 0.5).astype(float)
    a_eq[0, 0] = 1.0
    g = (rng.random((M, N)) < 0.5).astype(float)
    c = cp.Parameter(N, name="c")
    x = cp.Variable(N, integer=integer, name="x")
    z = cp.Variable(M, name="z")
    p = cp.Parameter(M, name="p")
    s = cp.Parameter(N, name="s")
    constraints = [
        a_ub @ x <= a_ub @ x0 + rng.integers(0, 4, size=2),
        a_eq @ x == a_eq @ x0,
        z >= g @ x - rng.integers(0, 2, size=M),
        z >= 0,
        z <= 10,
        x >= 0,
        x <= upper,
    ]
    sign = 1.0 if sense == "min" else -1.0  # the fixed part's z terms cost, in either sense
    d = sign * rng.uniform(0.2, 1.0, size=M)
    e = rng.uniform(-1, 1, size=N)
    fixed = {
        "other": d @ z,
        "own": e @ x,
        "constant": cp.Constant(7.5),
        "param": p @ z + s @ x,
        "all": d @ z + e @ x + 7.5 + p @ z + s @ x,
    }[kind]
    predicted = cp.sum(cp.multiply(c + s, x)) - s @ x if kind == "param" else c @ x  # two spellings of c @ x
    declare = cp.Minimize if sense == "min" else cp.Maximize
    problem = cp.Problem(declare(predicted + fixed), constraints)
    bare = cp.Problem(declare(c @ x), constraints)

    def new_parameters() -> None:
        p.value = sign * rng.uniform(0.2, 1.0, size=M)
        s.value = rng.uniform(-1, 1, size=N)

    new_parameters()
    return {"problem": problem, "bare": bare, "c": c, "x": x, "new_parameters": new_parameters}


def direct(problem: cp.Problem, c: cp.Parameter, x: cp.Variable, cost: np.ndarray) -> tuple[np.ndarray, float]:
    c.value = cost
    problem.solve(solver="HIGHS")
    assert problem.status == "optimal"
    return np.asarray(x.value), float(problem.value)


def check_against_direct(layer, problem, c, x, costs, *, atol: float) -> None:
    ys = layer(torch.from_numpy(costs)).numpy()
    info = layer.last_info
    assert set(info.status) == {"optimal"}
    for cost, y, objective in zip(costs, ys, info.objective):
        y_direct, value = direct(problem, c, x, cost)
        np.testing.assert_allclose(y, y_direct, atol=atol)
        assert objective == pytest.approx(value, rel=1e-7, abs=10 * atol)


@pytest.mark.parametrize("integer", [False, True], ids=["LP", "MIP"])
@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("kind", KINDS)
def test_fixed_part_is_kept_as_a_direct_solve(kind: str, sense: str, integer: bool) -> None:
    # 2 problems x 3 parameter values x 6 costs = 36 instances per case, 720 in all; the layer
    # projects ("auto") and the solver must still see the fixed part at the costs' scale.
    rng = np.random.default_rng([17, KINDS.index(kind), sense == "max", integer])
    for _ in range(2):
        case = random_problem(rng, sense, kind, integer=integer)
        layer = ipo.CvxpyLayer(case["problem"], case["c"], case["x"])
        assert layer.sense == sense
        for _ in range(3):
            case["new_parameters"]()  # followed before the next solve (a "param" fixed part)
            costs = rng.uniform(-1, 1, size=(6, N))
            check_against_direct(layer, case["problem"], case["c"], case["x"], costs, atol=1e-7)


@pytest.mark.parametrize("solver, integer, atol", [("CLARABEL", False, 1e-5), ("SCIPY", True, 1e-7)])
@pytest.mark.parametrize("sense", ["min", "max"])
def test_fixed_part_is_kept_or_replaced_on_other_solvers(solver: str, integer: bool, atol: float, sense: str) -> None:
    # The route that re-instantiates the compiled problem per cost (CVXPY's solver interfaces).
    rng = np.random.default_rng([18, integer, sense == "max"])
    case = random_problem(rng, sense, "all", integer=integer)
    for objective, reference in (("keep", case["problem"]), ("replace", case["bare"])):
        layer = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], solver, objective=objective)
        assert layer.spec.solver == solver
        for _ in range(2):
            case["new_parameters"]()
            costs = rng.uniform(-1, 1, size=(4, N))
            check_against_direct(layer, reference, case["c"], case["x"], costs, atol=atol)


@pytest.mark.parametrize("integer", [False, True], ids=["LP", "MIP"])
@pytest.mark.parametrize("sense", ["min", "max"])
def test_replace_solves_the_predicted_term_alone(sense: str, integer: bool) -> None:
    rng = np.random.default_rng([19, sense == "max", integer])
    case = random_problem(rng, sense, "all", integer=integer)
    layer = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], objective="replace")
    check_against_direct(layer, case["bare"], case["c"], case["x"], rng.uniform(-1, 1, size=(12, N)), atol=1e-7)


def test_fixed_part_changes_the_decision_and_the_reported_objective() -> None:
    c = cp.Parameter(4)
    x = cp.Variable(4, boolean=True)
    z = cp.Variable(nonneg=True)
    problem = cp.Problem(cp.Minimize(c @ x + 3 * z - 2 * x[3] + 1), [cp.sum(x) == 2, z >= x[0] + x[1] - 1])
    w = torch.tensor([1.0, 1.5, 2.0, 2.8], dtype=torch.float64)
    kept = ipo.CvxpyLayer(problem, c, x)
    assert kept(w).tolist() == [1.0, 0.0, 0.0, 1.0]  # x3 costs 0.8; x0 with x1 would cost z = 1
    assert kept.last_info.objective.tolist() == [1.0 + 2.8 - 2.0 + 1.0]
    replaced = ipo.CvxpyLayer(problem, c, x, objective="replace")
    assert replaced(w).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert replaced.last_info.objective.tolist() == [2.5]


@pytest.mark.parametrize("sense", ["min", "max"])
def test_gradient_is_that_of_the_predicted_term(sense: str) -> None:
    # The fixed part does not depend on the costs: the same -I / +I (through the projection) as
    # without it, on a decision that it does change.
    rng = np.random.default_rng([20, sense == "max"])
    case = random_problem(rng, sense, "all", integer=True)
    w = torch.tensor(rng.uniform(-1, 1, size=(5, N)), requires_grad=True)
    g = torch.tensor(rng.normal(size=(5, N)))
    grads = {}
    for objective in ("keep", "replace"):
        for projection in ("none", "auto"):
            layer = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], objective=objective, projection=projection)
            w.grad = None
            (layer(w) * g).sum().backward()
            grads[objective, projection] = w.grad.clone()
    torch.testing.assert_close(grads["keep", "none"], g if sense == "max" else -g)
    torch.testing.assert_close(grads["keep", "auto"], grads["replace", "auto"])
    replaced = ipo.CvxpyLayer(case["problem"], case["c"], case["x"], objective="replace")
    assert not torch.equal(ipo.CvxpyLayer(case["problem"], case["c"], case["x"]).solve(w), replaced.solve(w))


def test_parity_serial_vs_pool(force_pool) -> None:
    rng = np.random.default_rng(21)
    case = random_problem(rng, "max", "all", integer=True)
    serial = ipo.CvxpyLayer(case["problem"], case["c"], case["x"])
    pooled = force_pool(ipo.CvxpyLayer(case["problem"], case["c"], case["x"], workers=2))
    for _ in range(2):
        case["new_parameters"]()  # a fixed part with parameters: recompiled, sent to the workers
        pooled._handle.sync()  # the recompiled spec comes with a new batch solver: force it too
        force_pool(pooled)
        costs = torch.from_numpy(rng.uniform(-1, 1, size=(12, N)))
        y_pool = pooled(costs)
        assert pooled.last_info.mode == "pool"
        assert torch.equal(serial(costs), y_pool)
        np.testing.assert_array_equal(serial.last_info.objective, pooled.last_info.objective)


def test_refusals() -> None:
    c = cp.Parameter(3, name="c")
    p = cp.Parameter(3, name="p", value=np.ones(3))
    x = cp.Variable(3, boolean=True, name="x")
    z = cp.Variable(3, name="z")
    constraints = [cp.sum(x) == 1, z >= 0, z <= 1]

    def layer(declared: cp.Objective, **kw: object) -> ipo.CvxpyLayer:
        return ipo.CvxpyLayer(cp.Problem(declared, constraints), c, x, **kw)

    nonlinear = r"CvxpyLayer: the objective must be linear in the parameters and the variables; its term "
    for mode in ("keep", "replace"):  # a nonlinear term is refused whether kept or not
        with pytest.raises(ValueError, match=nonlinear + r"quad_over_lin\(z, 1.0.*\) is quadratic"):
            layer(cp.Minimize(c @ x + cp.sum_squares(z)), objective=mode)
        with pytest.raises(
            ValueError, match=nonlinear + r"norm1\(z \+ Promote\(-0.5, \(3,\)\)\) is nonlinear \(convex\)"
        ):
            layer(cp.Minimize(c @ x + cp.norm1(z - 0.5)), objective=mode)
        with pytest.raises(ValueError, match=nonlinear + r"PowerApprox\(z\[0\], 0.5\) is nonlinear \(concave\)"):
            layer(cp.Maximize(c @ x + cp.sqrt(z[0])), objective=mode)
        with pytest.raises(
            ValueError, match=nonlinear + r"QuadForm\(x, \[\[1.00 0.00 0.00\] \[0.00 1.00 0.00\] .*\) is quadratic"
        ):
            layer(cp.Minimize(c @ x + cp.quad_form(x, np.eye(3))), objective=mode)
        with pytest.raises(ValueError, match=nonlinear + r"quad_over_lin\(p, 1.0.*\) is quadratic"):
            layer(cp.Minimize(c @ x + cp.sum_squares(p)), objective=mode)  # nonlinear in a parameter
    with pytest.raises(ValueError, match="CvxpyLayer: the problem is not DPP"):
        layer(cp.Minimize(c @ x + (p @ p) * z[0]))  # a product of parameters as a coefficient
    with pytest.raises(
        ValueError, match=r"depends on the cost parameter but not on the variables \(e.g. cp.sum\(c\)\)"
    ):
        layer(cp.Minimize(c @ (x - 1)))
    with pytest.raises(ValueError, match="objective='drop' must be 'keep'"):
        layer(cp.Minimize(c @ x), objective="drop")
    with pytest.raises(TypeError):
        ipo.CvxpyLayer(cp.Problem(cp.Minimize(c @ x), constraints), c, x, None, "replace")  # keyword-only
    # "replace" solves c @ x alone, so a cost term without the variables is no longer in the way.
    w = torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)
    replaced = layer(cp.Minimize(c @ (x - 1)), objective="replace")
    assert replaced(w).tolist() == [0.0, 1.0, 0.0] and replaced.last_info.objective.tolist() == [1.0]
