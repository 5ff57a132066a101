import pickle

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import idproj_or as ipo
from idproj_or.solvers.assignment import AssignmentSpec, headroom_bits

EPS = float(np.finfo(np.float64).eps)

SHAPES = [(1, 1), (2, 2), (5, 5), (8, 8), (3, 7), (7, 3), (1, 4), (6, 2)]


def check_feasible(y: np.ndarray, n: int, m: int) -> None:
    assert set(np.unique(y)) <= {0.0, 1.0}
    rows, cols = y.sum(1), y.sum(0)
    assert np.all(rows <= 1) and np.all(cols <= 1)
    if n <= m:
        assert np.all(rows == 1)
    if n >= m:
        assert np.all(cols == 1)


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize("n, m", SHAPES)
def test_optimal_against_scipy(n, m, sense):
    # 8 shapes x 2 senses x 10 instances = 160 instances, through the full forward ("auto").
    rng = np.random.default_rng(n * 100 + m + (sense == "max"))
    costs = rng.normal(size=(10, n, m)) * rng.uniform(0.01, 100)
    layer = ipo.AssignmentLayer(n, m, sense)
    y = layer(torch.as_tensor(costs)).numpy()
    assert layer.last_info.status == ("optimal",) * 10
    for c, yi in zip(costs, y):
        check_feasible(yi, n, m)
        r, k = linear_sum_assignment(c, maximize=sense == "max")
        # "optimal": the rounding to integers costs nothing float64 can tell
        assert abs(float((c * yi).sum()) - float(c[r, k].sum())) <= n * m * EPS * 2 * np.abs(c).sum()


def test_integer_costs_match_scipy_exactly():
    rng = np.random.default_rng(7)
    costs = rng.integers(-50, 50, size=(30, 6, 6)).astype(float)
    y = ipo.AssignmentLayer(6, projection="none").solve(torch.as_tensor(costs)).numpy()
    for c, yi in zip(costs, y):
        r, k = linear_sum_assignment(c)
        assert (c * yi).sum() == c[r, k].sum()


def test_rectangular_rows_go_to_distinct_columns_example():
    c = torch.tensor([[1.0, 5.0, 0.0], [2.0, 3.0, 0.0]])
    assert ipo.AssignmentLayer(2, 3, projection="none")(c).tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    # transposed: columns get distinct rows, row 2 stays unassigned
    assert ipo.AssignmentLayer(3, 2, projection="none")(c.T).tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize("n, m", [(4, 4), (3, 5), (5, 3)])
def test_auto_invariance_solution_for_shifted_cost_is_optimal(n, m):
    layer = ipo.AssignmentLayer(n, m)
    a, b = layer.spec.equalities()
    expected_rows = (n if n <= m else 0) + (m if n >= m else 0)
    assert a.shape == (expected_rows, n * m) and np.all(b == 1)
    rng = np.random.default_rng(3)
    w = rng.normal(size=(20, n * m))
    shifted = w + 10 * rng.normal(size=(20, len(a))) @ a  # w + A^T l: large row/column shifts
    y = layer.solve(torch.as_tensor(shifted.reshape(20, n, m))).numpy().reshape(20, -1)
    for wi, yi in zip(w, y):
        r, k = linear_sum_assignment(wi.reshape(n, m))
        assert abs((wi * yi).sum() - wi.reshape(n, m)[r, k].sum()) <= 1e-6


def test_auto_gradient_has_zero_row_and_column_sums():
    w = torch.randn(3, 5, 5, dtype=torch.float64, requires_grad=True)
    y = ipo.AssignmentLayer(5)(w)
    (y * torch.randn(3, 5, 5, dtype=torch.float64)).sum().backward()
    assert w.grad.abs().sum() > 0
    torch.testing.assert_close(w.grad.sum(1), torch.zeros(3, 5, dtype=torch.float64))
    torch.testing.assert_close(w.grad.sum(2), torch.zeros(3, 5, dtype=torch.float64))


def test_max_sense_and_backward_sign():
    w = torch.tensor([[1.0, 5.0], [2.0, 3.0]], requires_grad=True)
    layer = ipo.AssignmentLayer(2, sense="max", projection="none")
    y = layer(w)
    assert y.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    y.sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0], [1.0, 1.0]]  # +identity for a maximisation


def test_serial_and_pool_give_identical_results(force_pool):
    costs = torch.rand(24, 7, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = ipo.AssignmentLayer(7, 9)(costs)
    pooled = force_pool(ipo.AssignmentLayer(7, 9, workers=2))
    assert torch.equal(pooled(costs), expected)
    assert pooled.last_info.mode == "pool"


def test_spec_pickles_and_is_plain_data():
    spec = ipo.AssignmentLayer(3, 4, "max").spec
    assert pickle.loads(pickle.dumps(spec)) == AssignmentSpec(3, 4, "max")
    assert spec.shape == (3, 4)


def test_constant_cost_gives_a_feasible_assignment():
    y = ipo.AssignmentLayer(3, 5, projection="none")(torch.zeros(3, 5)).numpy()
    check_feasible(y, 3, 5)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0,), {}, r"AssignmentLayer: n=0 must be an int >= 1"),
        ((2.5,), {}, r"AssignmentLayer: n=2.5 must be an int >= 1"),
        ((True,), {}, r"AssignmentLayer: n=True must be an int >= 1"),
        ((3, 0), {}, r"AssignmentLayer: m=0 must be an int >= 1"),
        ((3, 3, "minimize"), {}, r"AssignmentLayer: sense='minimize' must be 'min' or 'max'"),
        ((3,), {"projection": "l2"}, r"projection='l2' is not one of"),
        ((3,), {"time_limit": -1.0}, r"AssignmentLayer: time_limit=-1.0 must be a positive"),
    ],
)
def test_validation_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ipo.AssignmentLayer(*args, **kwargs)


def test_large_assignment_works_with_std_projection():
    layer = ipo.AssignmentLayer(65, projection="std")
    c = torch.rand(65, 65, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = layer(c).numpy()
    r, k = linear_sum_assignment(c.numpy())
    assert layer.last_info.status == ("optimal",)
    assert abs((c.numpy() * y).sum() - c.numpy()[r, k].sum()) <= 65 * 65 * EPS * 2 * c.sum().item()


@pytest.mark.parametrize("size", [1, 2, 3, 8, 65, 200])
def test_the_scaling_uses_the_headroom_or_tools_allows(size):
    # OR-Tools answers POSSIBLE_OVERFLOW once 3 (size^2 - 1) max|cost| reaches 2^63: the scaled
    # costs reach 2^headroom_bits, and 4x that is refused.
    from ortools.graph.python import linear_sum_assignment as lsa

    rng = np.random.default_rng(size)
    signs = np.where(rng.random(size * size) < 0.5, -1, 1).astype(np.int64)
    tails, heads = np.divmod(np.arange(size * size, dtype=np.int32), np.int32(size))
    for bits, expected in ((headroom_bits(size), "OPTIMAL"), (headroom_bits(size) + 2, "POSSIBLE_OVERFLOW")):
        solver = lsa.SimpleLinearSumAssignment()
        solver.add_arcs_with_cost(tails, heads, signs * (2**bits - 1))
        assert solver.solve().name == expected
    out = AssignmentSpec(size, size, "min").build().solve(rng.normal(size=size * size), None)
    assert out.status == "optimal"


def test_a_huge_forbidden_pairing_leaves_the_others_exact():
    # Rounded at 1e15's scale, costs of order 1 in a 40x40 keep 3 bits; the entries no optimal
    # assignment uses are lowered and the instance is solved again at the others' scale.
    rng = np.random.default_rng(2)
    c = rng.uniform(0, 1, size=(6, 40, 40))
    c[rng.random(c.shape) < 0.2] = 1e15
    layer = ipo.AssignmentLayer(40, projection="none")
    y = layer(torch.as_tensor(c)).numpy()
    assert layer.last_info.status == ("optimal",) * 6
    for ci, yi in zip(c, y):
        r, k = linear_sum_assignment(ci)
        assert np.array_equal(yi[r, k], np.ones(40))


@pytest.mark.parametrize(
    "costs, match",
    [
        (torch.zeros(3, 4), r"AssignmentLayer: expected costs of shape \(3, 3\) or \(B, 3, 3\), got \(3, 4\)"),
        (torch.tensor([[0.0, 1, 2], [3, float("nan"), 5], [6, 7, 8]]), r"AssignmentLayer: costs\[0\] has a non-finite"),
    ],
)
def test_cost_errors(costs, match):
    with pytest.raises(ValueError, match=match):
        ipo.AssignmentLayer(3)(costs)
