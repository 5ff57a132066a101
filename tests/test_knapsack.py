import itertools
import pickle
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import idproj_or as ipo
from idproj_or import problems
from idproj_or.solvers.knapsack import prune_gaps

EPS = float(np.finfo(np.float64).eps)


def brute_force(w: np.ndarray, cap: np.ndarray, c: np.ndarray, sense: str) -> float:
    best = None
    for y in itertools.product((0, 1), repeat=w.shape[1]):
        y = np.array(y, float)
        if np.all(w @ y <= cap + 1e-9):
            v = float(c @ y)
            if best is None or (v > best if sense == "max" else v < best):
                best = v
    assert best is not None
    return best


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 9),
    d=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
    sense=st.sampled_from(["max", "min"]),
    decimals=st.sampled_from([0, 2]),
)
def test_optimal_against_brute_force(n, d, seed, sense, decimals):
    rng = np.random.default_rng(seed)
    w = np.round(rng.uniform(0, 8, size=(d, n)), decimals)
    cap = np.round(rng.uniform(0, w.sum(1) + 1), decimals)
    costs = rng.normal(size=(3, n)) * rng.uniform(0.01, 100)  # mixed signs, any scale
    layer = ipo.KnapsackLayer(w, cap, sense=sense, projection="none")
    y = layer.solve(torch.as_tensor(costs)).numpy()
    assert layer.last_info.status == ("optimal",) * 3
    for c, yi in zip(costs, y):
        assert set(np.unique(yi)) <= {0.0, 1.0}
        assert np.all(w @ yi <= cap + 1e-9)
        # "optimal": up to the float64 rounding of the sums, nothing else
        assert abs(float(c @ yi) - brute_force(w, cap, c, sense)) <= n * EPS * 2 * np.abs(c).sum()


def test_same_decisions_as_cpsat_on_pyepo_sized_instances():
    rng = np.random.default_rng(0)
    w = np.round(rng.uniform(3, 8, size=(2, 32)), 2)
    cap = 0.5 * w.sum(1)
    costs = torch.as_tensor(rng.normal(size=(40, 32)) + 2)
    ours = ipo.KnapsackLayer(w, cap, projection="none").solve(costs)
    ref = problems.knapsack(w, cap).layer(projection="none").solve(costs)
    torch.testing.assert_close((ours * costs).sum(1), (ref * costs).sum(1), rtol=0, atol=1e-6)


def test_nothing_worth_packing_and_zero_values_are_left_out():
    layer = ipo.KnapsackLayer([1, 1, 1], 3, projection="none")
    assert layer.solve(torch.tensor([-1.0, -2.0, -0.5])).tolist() == [0.0, 0.0, 0.0]
    assert layer.solve(torch.tensor([0.0, 1.0, 0.0])).tolist() == [0.0, 1.0, 0.0]
    # "min": the items of negative cost are the ones worth packing, within capacity
    small = ipo.KnapsackLayer([2, 2, 2], 4, sense="min", projection="none")
    assert small.solve(torch.tensor([-1.0, -3.0, -2.0])).tolist() == [0.0, 1.0, 1.0]


def test_items_heavier_than_the_default_capacity_are_not_fixed():
    # items 1 and 2 never fit the default capacities, but fit an instance's larger ones: "auto"
    # fixes nothing and is "norm"
    layer = ipo.KnapsackLayer([[1, 9, 2, 1], [1, 1, 5, 1]], [5, 4])
    a, b = layer.spec.equalities()
    assert a.shape == (0, 4) and b.shape == (0,)
    w = torch.tensor([[1.0, 5.0, 5.0, 1.0]], dtype=torch.float64, requires_grad=True)
    assert layer.solve(w).tolist() == [[1.0, 0.0, 0.0, 1.0]]
    assert layer.solve(w, capacity=[12, 8]).tolist() == [[1.0, 1.0, 1.0, 0.0]]
    g = torch.randn(1, 4, dtype=torch.float64)
    (layer(w) * g).sum().backward()
    expected = torch.autograd.grad((torch.nn.functional.normalize(w, dim=1, eps=0) * g).sum(), w)[0]
    torch.testing.assert_close(w.grad, expected)


def test_gradient_is_plus_projected_identity_for_max():
    layer = ipo.KnapsackLayer(np.ones((1, 6)), 3, projection="norm")
    w = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 6, dtype=torch.float64)
    (layer(w) * g).sum().backward()
    expected = torch.autograd.grad((torch.nn.functional.normalize(w, dim=1, eps=0) * g).sum(), w)[0]
    torch.testing.assert_close(w.grad, expected, rtol=1e-6, atol=1e-9)


def test_spec_pickles_and_pool_matches_serial(force_pool):
    rng = np.random.default_rng(1)
    w = np.round(rng.uniform(3, 8, size=(2, 20)), 2)
    layer = force_pool(ipo.KnapsackLayer(w, 0.5 * w.sum(1), workers=2))
    assert pickle.loads(pickle.dumps(layer.spec)) == layer.spec
    costs = torch.as_tensor(rng.integers(0, 4, size=(64, 20)).astype(float))  # many ties
    serial = ipo.KnapsackLayer(w, 0.5 * w.sum(1)).solve(costs)
    torch.testing.assert_close(layer.solve(costs), serial, rtol=0, atol=0)
    assert layer.last_info.mode == "pool"


def test_time_limit_returns_the_best_packing_found():
    # Subset sum with even weights and an odd capacity: the LP bound stays a whole weight unit
    # above every packing, so nothing is pruned and 2^60 nodes are left to visit. Values pi
    # times the weights, off any grid (with the weights as values, their grid of 2 would prune).
    rng = np.random.default_rng(2)
    w = 2 * rng.integers(500, 5000, size=60)
    cap = w.sum() // 2 + 1 - (w.sum() // 2) % 2
    layer = ipo.KnapsackLayer(w, cap, projection="none", time_limit=0.05)
    layer.solve(torch.as_tensor(np.pi * w[None]))  # untimed: a cold cache compiles here
    t0 = time.perf_counter()
    y = layer.solve(torch.as_tensor(np.pi * np.stack([w, w]))).numpy()
    assert time.perf_counter() - t0 < 5.0
    assert layer.last_info.status == ("feasible", "feasible")
    assert np.all(y @ w <= cap)
    assert np.all(y @ w >= cap - 2 * 5000)  # better than an empty or a poor packing
    # without a limit the same layer proves small instances optimal
    unlimited = ipo.KnapsackLayer(w[:12], w[:12].sum() // 2 + 1, projection="none")
    unlimited.solve(torch.as_tensor(w[:12].astype(float)))
    assert unlimited.last_info.status == ("optimal",)


def test_six_decimal_weights_in_the_thousands_against_brute_force():
    # Scaled by 10^6, the capacities reach ~10^10: a bound computed as value * capacity in int64
    # overflowed and cut the optimum (found in review: 2.7667 returned for 2.8114).
    w = [[2486.061555, 8936.371742, 6778.897547, 4412.660631, 6344.188947, 10784.366178, 11274.478676, 4935.747164]]
    c = np.array([0.614377, 0.389682, 0.63487, 0.40412, 0.452457, 0.901247, 0.304442, 0.660868])
    y = ipo.KnapsackLayer(w, [27976.38622], projection="none").solve(torch.as_tensor(c)).numpy()
    assert (
        c @ y == pytest.approx(brute_force(np.array(w), np.array([27976.38622]), c, "max")) == pytest.approx(2.811362)
    )
    rng = np.random.default_rng(5)
    for _ in range(40):
        n, d = rng.integers(4, 10), rng.integers(1, 3)
        w = np.round(rng.uniform(1000, 12000, size=(d, n)), 6)
        cap = np.round(rng.uniform(0.3, 0.7) * w.sum(1), 6)
        costs = rng.uniform(0.01, 1, size=(2, n))
        y = ipo.KnapsackLayer(w, cap, projection="none").solve(torch.as_tensor(costs)).numpy()
        for ci, yi in zip(costs, y):
            assert np.all(w @ yi <= cap + 1e-6)
            assert ci @ yi == pytest.approx(brute_force(w, cap, ci, "max"), abs=n * EPS * 2 * ci.sum())


def test_weights_and_capacities_stay_exact_at_any_magnitude():
    # The integer test forgave 1e-9 relative: 10 units at 1e10, so a capacity of 1e10 + 0.5 took
    # a load of 1e10 + 1 (and 1e10 + 0.5 counted as an integer weight).
    values = torch.tensor([2.0, 1.0], dtype=torch.float64)
    assert ipo.KnapsackLayer([[1e10, 1.0]], [1e10 + 0.5]).solve(values).tolist() == [1.0, 0.0]
    assert ipo.KnapsackLayer([[1e10 + 0.5, 1.0]], [1e10 + 1.0]).solve(values).tolist() == [1.0, 0.0]
    assert ipo.KnapsackLayer([[1e10 + 0.5, 0.5]], [1e10 + 1.0]).solve(values).tolist() == [1.0, 1.0]
    # a capacity no load reaches, and weights no capacity takes, beyond int64
    assert ipo.KnapsackLayer([[3.0, 4.0]], [1e30]).spec.capacities == (7,)
    far = ipo.KnapsackLayer([[3.0, 4.0, 1e25], [1.0, 1.0, 1.0]], [1e18, 2.0])
    assert far.spec.weights == ((3, 4, 2**62), (1, 1, 1)) and far.spec.capacities == (10**18, 2)
    assert far.solve(torch.tensor([1.0, 2.0, 5.0])).tolist() == [1.0, 1.0, 0.0]
    # an instance's capacities: below 2^61 on a row whose weights sum beyond 2^62, so that the
    # clipped weight stays heavier than any
    assert far.solve(torch.tensor([1.0, 2.0, 5.0]), capacity=[2e18, 3.0]).tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(
        ValueError, match=r"data 'capacity' \(the capacities\) of instance 0, at position \(0,\), is outside"
    ):
        far.solve(torch.tensor([1.0, 2.0, 5.0]), capacity=[1e25, 3.0])
    assert ipo.KnapsackLayer([[2.0**70, 1.0]], [1.0]).spec.weights == ((2**62, 1),)
    # decimal weights as typed, and a capacity computed with float error, as before
    decimal, whole = ipo.KnapsackLayer([[0.29, 0.1]], [0.1 + 0.29]).spec, ipo.KnapsackLayer([[29, 10]], [39]).spec
    assert (decimal.weights, decimal.capacities, decimal.scales) == (whole.weights, whole.capacities, (100.0,))
    with pytest.raises(
        ValueError, match=r"KnapsackLayer: capacities\[0\]=1e\+30 is 2e\+25 on its row's integer scale.* at most 2\^62"
    ):
        ipo.KnapsackLayer([[1e25, 1e25]], [1e30])


def test_values_on_a_grid_prune_near_ties_as_integers_would():
    rng = np.random.default_rng(3)
    integers = rng.integers(-5, 9, 30).astype(float)
    gaps = prune_gaps(np.stack([integers, rng.uniform(0, 5, 30), np.zeros(30)]))
    # integers: the next better packing is at least 1 better, less the bound's float error
    assert gaps[0] == 1 - 3 * np.finfo(np.float64).eps * np.maximum(integers, 0).sum()
    assert gaps[1:].tolist() == [0.0, 0.0]  # float64 values have no grid; nothing to prune
    w = np.round(rng.uniform(3, 8, size=(2, 32)), 2)
    single = rng.uniform(0, 5, size=(20, 32)).astype(np.float32).astype(float)  # a 2^-21 grid or so
    layer = ipo.KnapsackLayer(w, 0.5 * w.sum(1), projection="none")
    y = layer.solve(torch.as_tensor(single)).numpy()
    reference = problems.knapsack(w, 0.5 * w.sum(1)).layer(projection="none").solve(torch.as_tensor(single))
    assert np.array_equal(np.einsum("ij,ij->i", single, y), np.einsum("ij,ij->i", single, reference.numpy()))


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 10),
    d=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_integer_ties_zero_weights_and_zero_capacities_against_brute_force(n, d, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 6, size=(d, n)) * (rng.random((d, n)) < 0.8)  # some zero weights
    cap = rng.integers(0, max(1, int(w.sum() // d)) + 1, size=d) * (rng.random(d) < 0.9)
    costs = rng.integers(-3, 5, size=(4, n)).astype(float)  # small integers: many ties
    y = ipo.KnapsackLayer(w, cap, projection="none").solve(torch.as_tensor(costs)).numpy()
    for c, yi in zip(costs, y):
        assert np.all(w @ yi <= cap)
        assert float(c @ yi) == brute_force(w, cap, c, "max")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ipo.KnapsackLayer([[1, -2]], [3]), r"KnapsackLayer: weights\[0, 1\]=-2.0 is negative"),
        (lambda: ipo.KnapsackLayer([1, 2], [-1]), r"KnapsackLayer: capacities\[0\]=-1.0 is negative"),
        (lambda: ipo.KnapsackLayer([[1, 2]], [1, 2]), r"capacities must have shape \(1,\)"),
        (lambda: ipo.KnapsackLayer([], 1), r"weights must have shape \(d, n\)"),
        (lambda: ipo.KnapsackLayer([1, np.inf], 1), r"must be finite"),
        (lambda: ipo.KnapsackLayer([1, 1 / 3], 1), r"weights row 0 has more than 6 decimals"),
        (lambda: ipo.KnapsackLayer([1, 2], 1, sense="maximize"), r"sense='maximize' must be 'min' or 'max'"),
    ],
)
def test_bad_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_cost_shape_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"expected costs of shape \(3,\) or \(B, 3\)"):
        ipo.KnapsackLayer([1, 2, 3], 3)(torch.ones(2, 4))
