"""CvxpyLayer: optimality vs scipy on random LPs/MIPs, compiled-data mapping, parity, errors."""

from __future__ import annotations

import pickle

import cvxpy as cp
import numpy as np
import pytest
import torch
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

import idproj_or as ipo
from idproj_or.rules.projection import project
from idproj_or.solvers.cvxpy import CvxpySpec


def random_problem(
    rng: np.random.Generator, sense: str, *, integer: bool, n: int = 8
) -> tuple[cp.Problem, cp.Parameter, cp.Variable, dict]:
    """A feasible bounded problem with two `<=` rows and one equality row, plus its scipy data."""
    upper = rng.integers(1, 3, size=n).astype(float)
    x0 = np.floor(rng.random(n) * (upper + 1)).clip(0, upper)  # a feasible integer point
    a_ub = rng.integers(1, 6, size=(2, n)).astype(float)
    b_ub = a_ub @ x0 + rng.integers(0, 4, size=2)
    a_eq = (rng.random((1, n)) < 0.5).astype(float)
    a_eq[0, 0] = 1.0
    b_eq = a_eq @ x0
    c = cp.Parameter(n)
    x = cp.Variable(n, integer=integer)
    objective = cp.Maximize(c @ x) if sense == "max" else cp.Minimize(c @ x)
    problem = cp.Problem(objective, [a_ub @ x <= b_ub, a_eq @ x == b_eq, x >= 0, x <= upper])
    data = {"a_ub": a_ub, "b_ub": b_ub, "a_eq": a_eq, "b_eq": b_eq, "upper": upper, "integer": integer}
    return problem, c, x, data


def scipy_optimum(data: dict, cost: np.ndarray) -> float:
    n = len(cost)
    if data["integer"]:
        res = milp(
            cost,
            constraints=[
                LinearConstraint(data["a_ub"], -np.inf, data["b_ub"]),
                LinearConstraint(data["a_eq"], data["b_eq"], data["b_eq"]),
            ],
            integrality=np.ones(n),
            bounds=Bounds(np.zeros(n), data["upper"]),
        )
    else:
        res = linprog(
            cost,
            A_ub=data["a_ub"],
            b_ub=data["b_ub"],
            A_eq=data["a_eq"],
            b_eq=data["b_eq"],
            bounds=list(zip(np.zeros(n), data["upper"])),
            method="highs",
        )
    assert res.status == 0
    return float(res.fun)


@pytest.mark.parametrize(
    "solver, integer, models, tol",
    [
        ("HIGHS", True, 4, 1e-9),
        ("HIGHS", False, 4, 1e-9),
        ("CLARABEL", False, 4, 1e-6),
        ("SCIPY", True, 1, 1e-9),
    ],
)
def test_optimal_vs_scipy_on_random_problems(solver: str, integer: bool, models: int, tol: float) -> None:
    # models x 2 senses x 13 costs: 104 instances for HiGHS MIP/LP and Clarabel LP.
    rng = np.random.default_rng(11 + integer)
    for _ in range(models):
        for sense, sign in (("min", 1.0), ("max", -1.0)):
            problem, c, x, data = random_problem(rng, sense, integer=integer)
            layer = ipo.CvxpyLayer(problem, c, x, solver, projection="none")
            assert layer.sense == sense and layer.spec.solver == solver
            costs = rng.uniform(-1, 1, size=(13, 8))
            ys = layer.solve(torch.from_numpy(costs)).numpy()
            assert set(layer.last_info.status) == {"optimal"}
            for cost, y in zip(costs, ys):
                assert np.all(data["a_ub"] @ y <= data["b_ub"] + tol)
                np.testing.assert_allclose(data["a_eq"] @ y, data["b_eq"], atol=tol)
                assert np.all(y >= -tol) and np.all(y <= data["upper"] + tol)
                if integer:
                    np.testing.assert_array_equal(y, np.round(y))
                assert cost @ y == pytest.approx(sign * scipy_optimum(data, sign * cost), abs=10 * tol)


def assignment(*, boolean: bool = True) -> tuple[cp.Problem, cp.Parameter, cp.Variable]:
    """3 x 4 assignment: each row picks one column, each column at most one row."""
    c = cp.Parameter((3, 4))
    x = cp.Variable((3, 4), boolean=boolean)
    constraints = [cp.sum(x, axis=1) == 1, cp.sum(x, axis=0) <= 1]
    if not boolean:
        constraints += [x >= 0]
    return cp.Problem(cp.Minimize(cp.sum(cp.multiply(c, x))), constraints), c, x


@pytest.mark.parametrize("solver", ["HIGHS", "CLARABEL", "SCIPY"])
def test_matrix_variable_matches_problem_solve(solver: str) -> None:
    # Non-symmetric costs on a 3 x 4 variable: a wrong (C vs Fortran) flattening would
    # assign the wrong cost to each entry.
    problem, c, x = assignment(boolean=solver != "CLARABEL")
    layer = ipo.CvxpyLayer(problem, c, x, solver, projection="none")
    rng = np.random.default_rng(12)
    for _ in range(5):
        w = rng.random((3, 4))
        y = layer.solve(torch.from_numpy(w)).numpy()
        c.value = w
        problem.solve(solver=solver)
        np.testing.assert_allclose(y, x.value, atol=1e-6)
        assert (w * y).sum() == pytest.approx(problem.value, abs=1e-6)


def test_nonneg_variable_substituted_by_the_compiler() -> None:
    # Clarabel has no variable bounds: CVXPY replaces a nonneg variable by a fresh one, whose
    # columns the layer must follow.
    c = cp.Parameter(3)
    x = cp.Variable(3, nonneg=True)
    problem = cp.Problem(cp.Maximize(c @ x), [cp.sum(x) <= 2, x <= 1])
    layer = ipo.CvxpyLayer(problem, c, x, "CLARABEL", projection="none")
    y = layer.solve(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(y, [1.0, 0.0, 1.0], atol=1e-6)


def test_default_solver_falls_back_to_clarabel_for_a_cone() -> None:
    # min c x over the unit ball: HiGHS cannot take the second-order cone; x* = -c / |c|.
    c = cp.Parameter(3)
    x = cp.Variable(3)
    layer = ipo.CvxpyLayer(cp.Problem(cp.Minimize(c @ x), [cp.norm(x, 2) <= 1]), c, x, projection="none")
    assert layer.spec.solver == "CLARABEL"
    w = np.array([3.0, -4.0, 0.0])
    np.testing.assert_allclose(layer.solve(torch.from_numpy(w)).numpy(), -w / 5, atol=1e-6)


def test_solution_does_not_depend_on_previous_instances() -> None:
    # Tied integer costs: HiGHS warm-started from the previous basis or incumbent would return
    # another optimum in another order.
    problem, c, x = assignment(boolean=False)
    layer = ipo.CvxpyLayer(problem, c, x)
    costs = torch.from_numpy(np.random.default_rng(13).integers(0, 2, size=(24, 3, 4)).astype(float))
    forward = layer.solve(costs)
    backward = layer.solve(costs.flip(0)).flip(0)
    one_by_one = torch.stack([ipo.CvxpyLayer(problem, c, x).solve(w) for w in costs])
    assert torch.equal(forward, backward)
    assert torch.equal(forward, one_by_one)


def test_parity_serial_vs_pool(force_pool) -> None:
    problem, c, x = assignment()
    costs = torch.from_numpy(np.random.default_rng(14).integers(0, 3, size=(12, 3, 4)).astype(float))
    serial = ipo.CvxpyLayer(problem, c, x)
    pooled = force_pool(ipo.CvxpyLayer(problem, c, x, workers=2))
    y_pool = pooled(costs)
    assert pooled.last_info.mode == "pool"
    assert torch.equal(serial(costs), y_pool)


def test_equalities_are_the_compiled_rows_over_the_variable() -> None:
    c = cp.Parameter((2, 2))
    x = cp.Variable((2, 2), boolean=True)
    z = cp.Variable()
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(c, x))),
        [cp.sum(x, axis=1) == 1, x[0, 1] + 2 * x[1, 0] == 1, x[1, 1] + z == 1, z >= 0, cp.sum(x) <= 3],
    )
    a, b = ipo.CvxpyLayer(problem, c, x).spec.equalities()
    # Rows scaled to a leading +1 so that CVXPY's sign convention does not matter.
    rows = {tuple(np.append(r, rhs) / r[np.flatnonzero(r)[0]]) for r, rhs in zip(a, b)}
    assert rows == {(1.0, 1.0, 0.0, 0.0, 1.0), (0.0, 0.0, 1.0, 1.0, 1.0), (0.0, 1.0, 2.0, 0.0, 1.0)}


def test_auto_projection_invariance() -> None:
    problem, c, x = assignment()
    layer = ipo.CvxpyLayer(problem, c, x)
    a, b = layer.spec.equalities()
    assert a.shape == (3, 12)
    rng = np.random.default_rng(15)
    for _ in range(20):
        w = rng.random((3, 4))
        shifted = w + (a.T @ rng.normal(size=3) * 3).reshape(3, 4)
        y_w = layer.solve(torch.from_numpy(w)).numpy()
        y_shift = layer.solve(torch.from_numpy(shifted)).numpy()
        assert (w * y_shift).sum() == pytest.approx((w * y_w).sum(), abs=1e-12)
        np.testing.assert_allclose(a @ y_shift.ravel(), b)


def test_gradient_is_projected_negative_identity() -> None:
    problem, c, x = assignment()
    layer = ipo.CvxpyLayer(problem, c, x)  # min model, projection="auto"
    rng = np.random.default_rng(16)
    w = torch.tensor(rng.random((3, 4)), requires_grad=True)
    g = torch.tensor(rng.normal(size=(3, 4)))
    (layer(w) * g).sum().backward()
    basis = layer.basis.to(torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: project(v.reshape(1, -1), "auto", basis)[0], w.detach()).reshape(
        12, 12
    )
    torch.testing.assert_close(w.grad.reshape(-1), -jac.T @ g.reshape(-1))


def test_infeasible_problem_raises_solver_error() -> None:
    c = cp.Parameter(3)
    x = cp.Variable(3, boolean=True)
    layer = ipo.CvxpyLayer(cp.Problem(cp.Minimize(c @ x), [cp.sum(x) >= 4]), c, x)
    with pytest.raises(ipo.SolverError, match="CvxpyLayer: instance 0 of the batch has no solution") as info:
        layer(torch.ones(2, 3))
    assert (info.value.index, info.value.status) == (0, "infeasible")


def test_unbounded_instance_raises_solver_error_with_index() -> None:
    c = cp.Parameter(2)
    x = cp.Variable(2, nonneg=True)
    layer = ipo.CvxpyLayer(cp.Problem(cp.Minimize(c @ x), [cp.sum(x) >= 1]), c, x, projection="none")
    with pytest.raises(ipo.SolverError, match="instance 2 of the batch") as info:
        layer(torch.tensor([[1.0, 2.0], [2.0, 1.0], [-1.0, 1.0]]))
    assert info.value.index == 2
    assert info.value.status == "unbounded"


def test_time_limit_returns_feasible_incumbent() -> None:
    rng = np.random.default_rng(17)
    weights = rng.integers(20, 100, size=(10, 400))
    c = cp.Parameter(400)
    x = cp.Variable(400, boolean=True)
    problem = cp.Problem(cp.Maximize(c @ x), [weights @ x <= weights.sum(axis=1) // 2])
    layer = ipo.CvxpyLayer(problem, c, x, time_limit=0.2)
    y = layer.solve(torch.from_numpy(rng.integers(20, 100, 400).astype(float))).numpy()
    assert layer.last_info.status == ("feasible",)
    assert np.all(weights @ y <= weights.sum(axis=1) // 2) and y.sum() > 0


def test_spec_pickle_round_trip() -> None:
    problem, c, x = assignment()
    layer = ipo.CvxpyLayer(problem, c, x)
    spec = pickle.loads(pickle.dumps(layer.spec))
    assert isinstance(spec, CvxpySpec)
    assert (spec.solver, spec.cols, spec.shape, spec.sense) == (layer.spec.solver, layer.spec.cols, (3, 4), "min")
    np.testing.assert_array_equal(spec.equalities()[0], layer.spec.equalities()[0])
    w = np.random.default_rng(18).random(12)
    out = spec.build().solve(w, None)
    assert out.status == "optimal" and out.fixed == 0.0
    np.testing.assert_array_equal(out.x.reshape(3, 4), layer.solve(torch.from_numpy(w.reshape(3, 4))).numpy())


def test_user_parameter_values_are_left_alone() -> None:
    problem, c, x = assignment()
    c.value = np.full((3, 4), 7.0)
    layer = ipo.CvxpyLayer(problem, c, x)
    layer(torch.rand(2, 3, 4))
    np.testing.assert_array_equal(c.value, np.full((3, 4), 7.0))


def test_validation_errors() -> None:
    n = 4
    c = cp.Parameter(n)
    x = cp.Variable(n, boolean=True)
    y = cp.Variable(n)
    ok = [cp.sum(x) == 2]
    bounded = ok + [y >= 0, y <= 1]

    def layer(
        objective: cp.Objective,
        constraints: list = ok,
        parameter: cp.Parameter = c,
        variable: cp.Variable = x,
        **kw: object,
    ) -> None:
        ipo.CvxpyLayer(cp.Problem(objective, constraints), parameter, variable, **kw)

    with pytest.raises(TypeError, match=r"CvxpyLayer: problem must be a cvxpy.Problem"):
        ipo.CvxpyLayer("problem", c, x)
    with pytest.raises(TypeError, match=r"CvxpyLayer: parameter must be a cvxpy.Parameter"):
        layer(cp.Minimize(c @ x), parameter=x)
    with pytest.raises(TypeError, match=r"CvxpyLayer: variable must be a cvxpy.Variable"):
        layer(cp.Minimize(c @ x), variable=c)
    with pytest.raises(ValueError, match=r"CvxpyLayer: parameter.shape \(3,\) must equal variable.shape"):
        d = cp.Parameter(3)
        layer(cp.Minimize(d @ x[:3]), parameter=d)
    with pytest.raises(ValueError, match=r"CvxpyLayer: variable var.* is not a variable of the problem"):
        layer(cp.Minimize(c @ x), variable=cp.Variable(n))
    with pytest.raises(ValueError, match=r"CvxpyLayer: parameter param.* does not appear in the objective"):
        layer(cp.Minimize(cp.sum(x)), ok + [x <= c])
    with pytest.raises(ValueError, match=r"CvxpyLayer: the cost parameter appears in constraint 1 \(.*\); it may only"):
        layer(cp.Minimize(c @ x), ok + [x <= c])
    with pytest.raises(
        ValueError, match=r"CvxpyLayer: the cost parameter must be declared without attributes \(got nonneg"
    ):
        p = cp.Parameter(n, nonneg=True)
        layer(cp.Minimize(p @ x), parameter=p)
    with pytest.raises(ValueError, match=r"CvxpyLayer: parameters \['param.*'\] have no value"):
        layer(cp.Minimize(c @ x), ok + [cp.sum(x) <= cp.Parameter()])
    with pytest.raises(ValueError, match="CvxpyLayer: the problem is not DPP"):
        layer(cp.Minimize(cp.multiply(c, c) @ x))
    nonlinear = "CvxpyLayer: the objective must be linear in the parameters and the variables; its term"
    with pytest.raises(ValueError, match=nonlinear):
        layer(cp.Minimize(cp.sum_squares(c) + c @ x))  # quadratic in the parameter
    with pytest.raises(ValueError, match=nonlinear):
        layer(cp.Minimize(c @ x + cp.sum_squares(y)), bounded)  # quadratic in a variable
    with pytest.raises(ValueError, match="CvxpyLayer: the cost parameter multiplies variables other than var"):
        layer(cp.Minimize(c @ x + c @ y), bounded)
    with pytest.raises(ValueError, match=r"with coefficient 1 .*coefficient 2"):
        layer(cp.Minimize(2 * c @ x))
    with pytest.raises(ValueError, match=r"with coefficient 1 .*coefficient -1"):
        layer(cp.Minimize(-c @ x))
    with pytest.raises(ValueError, match="CvxpyLayer: solver 'NOPE' is not installed"):
        layer(cp.Minimize(c @ x), solver="NOPE")
    with pytest.raises(ValueError, match="CvxpyLayer: time_limit is not supported with solver OSQP"):
        layer(cp.Minimize(c @ y), [cp.sum(y) == 2, y >= 0], variable=y, solver="OSQP", time_limit=1.0)
    with pytest.raises(ValueError, match="CvxpyLayer: CVXPY cannot compile the problem for solver OSQP"):
        layer(cp.Minimize(c @ x), solver="OSQP")  # a MIP
