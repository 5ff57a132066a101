"""Layers used the way PyTorch code uses modules: copies (deepcopy, pickle, torch.save,
state_dict), torch.compile, torch.func.vmap, noise given as any real scalar, threads sharing a
layer, the resident model cache, CVXPY parameters changed after building, and silence."""

from __future__ import annotations

import copy
import gc
import io
import pickle
import subprocess
import sys
import textwrap
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import cvxpy as cp
import numpy as np
import pytest
import torch
import torch._dynamo
import torch._dynamo.testing
from ortools.sat.python import cp_model

import idproj_or as ipo
from idproj_or.batch import resident_count
from idproj_or.solvers.base import ModelSpec
from idproj_or.solvers.cpsat import CpSatSpec
from tests.helpers import SignSolver, k_subset, weighted_choice

N = 6
WEIGHTS = np.array([[3, 4, 5, 2, 6, 1], [2, 2, 3, 5, 1, 4]])
CAPACITIES = np.array([10, 9])


def batch(b: int = 8, seed: int = 0, n: int = N) -> torch.Tensor:
    return torch.randn(b, n, generator=torch.Generator().manual_seed(seed))


# --- the layers under test ------------------------------------------------------------------


def cpsat_layer(**options) -> ipo.CpSatLayer:
    """3 of 6 items (an equality: "auto" has a basis) within a weight budget, minimised."""
    m, x, _ = k_subset(N, 3)
    m.add(sum(int(w) * v for w, v in zip(WEIGHTS[0], x)) <= 12)
    return ipo.CpSatLayer(m, x, **options)


def cpsat_noisy() -> ipo.CpSatLayer:
    return cpsat_layer(projection="auto", noise=0.1, generator=torch.Generator().manual_seed(7))


def cvxpy_layer(**options) -> ipo.CvxpyLayer:
    c = cp.Parameter(N)
    x = cp.Variable(N, boolean=True)
    problem = cp.Problem(cp.Maximize(c @ x), [WEIGHTS @ x <= CAPACITIES, cp.sum(x) <= 3])
    return ipo.CvxpyLayer(problem, c, x, **options)


def knapsack_layer(**options) -> ipo.KnapsackLayer:
    return ipo.KnapsackLayer(WEIGHTS, CAPACITIES, **options)


LAYERS = {"cpsat_noisy": cpsat_noisy, "cvxpy": cvxpy_layer, "knapsack": knapsack_layer}
PLAIN = {"cpsat": cpsat_layer, "cvxpy": cvxpy_layer, "knapsack": knapsack_layer}


def saved(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


COPIES = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
    "torch.save": saved,
}


# --- 1. copies ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("make", LAYERS.values(), ids=LAYERS.keys())
def test_copy_solves_the_same_batch_exactly_like_the_original(make, how):
    layer = make().eval()
    costs = batch(16)
    expected = layer(costs)
    info = layer.last_info
    twin = COPIES[how](layer)
    assert type(twin) is type(layer) and twin is not layer
    assert not twin.training
    assert (twin.shape, twin.sense, twin.projection, twin.noise) == (
        layer.shape,
        layer.sense,
        layer.projection,
        layer.noise,
    )
    assert twin.last_info is None  # nothing solved through the copy yet
    # The copy owns its solve handle: it outlives the original.
    del layer
    gc.collect()
    got = twin(costs)
    assert torch.equal(got, expected)
    assert twin.last_info.status == info.status
    np.testing.assert_array_equal(twin.last_info.objective, info.objective)
    assert torch.equal(twin.solve(costs), expected)


@pytest.mark.parametrize("how", COPIES)
def test_copy_carries_the_noise_generator_state(how):
    layer = cpsat_noisy()  # training mode: noise is drawn
    assert layer.training
    twin = COPIES[how](layer)
    assert twin.noise == pytest.approx(0.1) and twin.generator is not layer.generator
    assert torch.equal(twin.generator.get_state(), layer.generator.get_state())
    costs = batch(16, seed=1)
    for _ in range(3):  # both generators advance in step
        assert torch.equal(twin(costs), layer(costs))


def test_copies_of_a_workers_2_layer_solve_on_the_pool_identically(force_pool):
    serial = cpsat_layer()
    costs = batch(16, seed=2)
    expected = serial(costs)
    layer = force_pool(cpsat_layer(workers=2))
    assert torch.equal(layer(costs), expected)
    assert layer.last_info.mode == "pool"
    for how, make_copy in COPIES.items():
        twin = make_copy(layer)
        assert twin.workers == 2, how
        assert torch.equal(twin(costs), expected), how
        assert twin.last_info.mode == "pool", how


def test_copies_of_an_executor_layer_drop_it_when_pickled_and_share_it_when_deepcopied():
    costs = batch(16, seed=3)
    expected = cpsat_layer()(costs)
    with ThreadPoolExecutor(2) as ex:
        layer = cpsat_layer(executor=ex, executor_workers=2)
        assert torch.equal(layer(costs), expected) and layer.last_info.mode == "executor"

        for how in ("pickle", "torch.save"):
            twin = COPIES[how](layer)
            assert twin.executor is None, how
            assert torch.equal(twin(costs), expected), how
            assert twin.last_info.mode == "serial", how
            twin.executor = ex  # re-attached
            assert twin.executor is ex
            assert torch.equal(twin(costs), expected) and twin.last_info.mode == "executor", how

        deep = copy.deepcopy(layer)
        assert deep.executor is ex
        assert torch.equal(deep(costs), expected) and deep.last_info.mode == "executor"
        assert layer.executor is ex  # the original keeps it too


def test_executor_setter_validates():
    layer = cpsat_layer()
    with pytest.raises(ValueError, match=r"executor must be a concurrent.futures.Executor"):
        layer.executor = "threads"
    with ThreadPoolExecutor(1) as ex, pytest.raises(ValueError, match="either workers= or executor="):
        cpsat_layer(workers=2).executor = ex


def test_state_dict_round_trip():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, N), cpsat_layer())
    other = torch.nn.Sequential(torch.nn.Linear(5, N), cpsat_layer())
    # A layer has no learnable state: only the predictor's entries.
    assert set(model.state_dict()) == {"0.weight", "0.bias"}
    feats = torch.randn(8, 5)
    result = other.load_state_dict(model.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(other(feats), model(feats))

    layer, layer2 = cpsat_noisy(), copy.deepcopy(cpsat_noisy())
    result = layer.load_state_dict(layer2.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other.load_state_dict(torch.load(buf, weights_only=True))
    layer.eval()
    assert torch.equal(layer(batch()), layer2.eval()(batch()))


# --- 2. torch.compile -----------------------------------------------------------------------


def training_step(layer, predictor):
    def step(feats, costs):
        y = layer(predictor(feats))
        loss = (costs * y).sum()
        grads = torch.autograd.grad(loss, list(predictor.parameters()))
        return (loss.detach(), *grads)

    return step


@pytest.mark.parametrize("make", PLAIN.values(), ids=PLAIN.keys())
def test_compiled_fullgraph_training_step_matches_eager_without_recompiling(make):
    torch._dynamo.reset()
    layer = make()
    torch.manual_seed(0)
    predictor = torch.nn.Linear(5, N)
    step = training_step(layer, predictor)
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(step, fullgraph=True, backend=counter)
    g = torch.Generator().manual_seed(11)
    # trace_autograd_ops: Dynamo (2.13) traces autograd.grad only with it (Tensor.backward()
    # never fullgraph); the step is then one graph, forward and backward.
    with torch._dynamo.config.patch(error_on_recompile=True, trace_autograd_ops=True):
        for _ in range(3):
            feats, costs = torch.randn(8, 5, generator=g), torch.randn(8, N, generator=g)
            got = compiled(feats, costs)
            assert len(layer.last_info) == 8
            want = step(feats, costs)
            assert torch.equal(got[0], want[0])
            for a, b in zip(got[1:], want[1:]):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
                assert a.abs().sum() > 0
    assert counter.frame_count == 1


def test_compiled_forward_then_eager_backward_matches_eager():
    torch._dynamo.reset()
    layer = cvxpy_layer()
    torch.manual_seed(0)
    predictor = torch.nn.Linear(5, N)

    def loss_fn(feats, costs):
        return (costs * layer(predictor(feats))).sum()

    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    g = torch.Generator().manual_seed(12)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(3):
            feats, costs = torch.randn(8, 5, generator=g), torch.randn(8, N, generator=g)
            predictor.zero_grad()
            loss = compiled(feats, costs)
            loss.backward()
            got = [loss.detach()] + [p.grad.clone() for p in predictor.parameters()]
            predictor.zero_grad()
            loss = loss_fn(feats, costs)
            loss.backward()
            want = [loss.detach()] + [p.grad.clone() for p in predictor.parameters()]
            assert torch.equal(got[0], want[0])
            for a, b in zip(got[1:], want[1:]):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# Draws from generator=: the noise margin (every rule), Gaussian (PerturbedOpt, FenchelYoung) and
# Sum-of-Gamma (IMLE) perturbations.
RANDOM = {
    "layer_noise": lambda g: cpsat_layer(noise=0.1, generator=g),
    "PerturbedOpt": lambda g: ipo.PerturbedOpt(knapsack_layer(), n_samples=4, sigma=0.5, noise=0.1, generator=g),
    "FenchelYoung": lambda g: ipo.FenchelYoung(knapsack_layer(), n_samples=4, sigma=0.5, generator=g),
    "IMLE": lambda g: ipo.IMLE(knapsack_layer(), n_samples=4, sigma=0.5, generator=g),
}


@pytest.mark.parametrize("name", RANDOM)
def test_compiled_fullgraph_step_with_a_generator_draws_what_eager_draws(name):
    torch._dynamo.reset()
    torch.manual_seed(0)
    predictor = torch.nn.Linear(5, N)
    eager_rule, compiled_rule = (RANDOM[name](torch.Generator().manual_seed(5)) for _ in range(2))
    start = compiled_rule.generator.get_state()

    def step_of(rule):
        def step(feats, costs, sols):
            pred = predictor(feats)
            loss = rule(pred, sols) if name == "FenchelYoung" else (costs * rule(pred)).sum()
            grads = torch.autograd.grad(loss, list(predictor.parameters()))
            return (loss.detach(), *grads)

        return step

    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(step_of(compiled_rule), fullgraph=True, backend=counter)
    eager = step_of(eager_rule)
    g = torch.Generator().manual_seed(14)
    with torch._dynamo.config.patch(error_on_recompile=True, trace_autograd_ops=True):
        for _ in range(3):
            feats, costs = torch.randn(8, 5, generator=g), torch.randn(8, N, generator=g)
            sols = knapsack_layer().solve(costs)
            got, want = compiled(feats, costs, sols), eager(feats, costs, sols)
            assert torch.equal(got[0], want[0])  # the same draws, hence the same decisions
            for a, b in zip(got[1:], want[1:]):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
            # Both generators advanced by the same draws.
            assert torch.equal(compiled_rule.generator.get_state(), eager_rule.generator.get_state())
    assert not torch.equal(compiled_rule.generator.get_state(), start)
    assert counter.frame_count == 1


def test_inductor_compiled_cpsat_layer_matches_eager():
    # Measured here: ~20 s with a cold inductor cache, ~2 s warm.
    torch._dynamo.reset()
    layer = cpsat_layer()
    torch.manual_seed(0)
    predictor = torch.nn.Linear(5, N)

    def loss_fn(feats, costs):
        y = layer(predictor(feats))
        return (costs * y).sum(), y

    compiled = torch.compile(loss_fn)
    g = torch.Generator().manual_seed(13)
    for _ in range(2):
        feats, costs = torch.randn(8, 5, generator=g), torch.randn(8, N, generator=g)
        results = []
        for fn in (compiled, loss_fn):
            predictor.zero_grad()
            loss, y = fn(feats, costs)
            loss.backward()
            results.append((loss.detach(), y.detach(), [p.grad.clone() for p in predictor.parameters()]))
        (l1, y1, g1), (l2, y2, g2) = results
        assert torch.equal(y1, y2)  # the same decisions
        torch.testing.assert_close(l1, l2, rtol=1e-6, atol=1e-6)  # inductor reorders the sum
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# --- 3. vmap --------------------------------------------------------------------------------


@pytest.mark.parametrize("make", PLAIN.values(), ids=PLAIN.keys())
def test_vmap_is_refused_with_a_pointer_to_batching(make):
    layer = make()
    with pytest.raises(ValueError, match="pass the batch as the first dimension"):
        torch.func.vmap(layer)(batch(4))
    with pytest.raises(ValueError, match="pass the batch as the first dimension"):
        torch.func.vmap(layer)(torch.randn(3, 4, N))  # each vmapped sample a batch
    assert layer.last_info is None  # nothing was solved


# --- 4. noise scalars ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.1, 0.1),
        (np.float32(0.1), float(np.float32(0.1))),
        (np.float64(0.25), 0.25),
        (torch.tensor(0.1), float(torch.tensor(0.1).item())),
        (torch.tensor(0.5, dtype=torch.float64), 0.5),
        (torch.tensor(0.3, requires_grad=True), float(np.float32(0.3))),
        (torch.tensor(2), 2.0),
        (np.array(0.5), 0.5),
        (np.int64(3), 3.0),
        (1, 1.0),
        (0, 0.0),
    ],
    ids=lambda v: type(v).__name__,
)
def test_noise_accepts_any_real_scalar(value, expected):
    layer = cpsat_layer(noise=value)
    assert type(layer.noise) is float and layer.noise == expected
    layer.noise = 0.0
    layer.noise = value  # the setter takes the same values
    assert type(layer.noise) is float and layer.noise == expected
    y = layer(batch())  # training mode: the noise is drawn with it
    assert y.shape == (8, N)


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        np.bool_(True),
        torch.tensor(True),
        "0.1",
        None,
        1j,
        torch.tensor(1j),
        torch.tensor([0.1]),
        np.array([0.1]),
        [0.1],
        -0.1,
        torch.tensor(-0.1),
        float("nan"),
        torch.tensor(float("nan")),
        float("inf"),
    ],
    ids=repr,
)
def test_noise_rejects_anything_but_a_finite_nonnegative_real_scalar(value):
    with pytest.raises(ValueError, match=r"CpSatLayer: noise="):
        cpsat_layer(noise=value)
    layer = cpsat_layer(noise=0.2)
    with pytest.raises(ValueError, match=r"CpSatLayer: noise="):
        layer.noise = value
    assert layer.noise == 0.2  # unchanged by the refused value


# --- 5. threads -----------------------------------------------------------------------------


def test_threads_sharing_a_layer_each_read_their_own_last_info():
    layer = cpsat_layer()
    rounds = 50
    barrier = threading.Barrier(2, timeout=60)
    errors: list[BaseException] = []

    def run(b: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        try:
            for _ in range(rounds):
                costs = torch.randn(b, N, generator=g)
                barrier.wait()  # both solve at once
                y = layer(costs)
                assert len(layer.last_info) == b
                barrier.wait()  # the other thread has solved too
                info = layer.last_info
                assert len(info) == b
                np.testing.assert_allclose(info.objective, (costs * y).sum(1).numpy(), rtol=1e-5, atol=1e-6)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(3, 0)), threading.Thread(target=run, args=(5, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]
    assert layer.last_info is None  # the main thread solved nothing


# --- 6. resident model cache ----------------------------------------------------------------


@dataclass(frozen=True)
class CountingSpec(ModelSpec):
    """y = 1[cost < 0]; counts its builds. ``tag`` and ``index`` make distinct specs."""

    tag: str
    index: int
    shape: tuple[int, ...] = (3,)
    sense: str = "min"
    builds: ClassVar[int] = 0

    def build(self):
        type(self).builds += 1
        return SignSolver(0.0)

    def equalities(self):
        return np.zeros((0, 3)), np.zeros(0)


def test_forty_layers_used_in_turn_are_built_once_each():
    tag = uuid.uuid4().hex
    layers = [ipo.OptLayer(CountingSpec(tag, i)) for i in range(40)]
    CountingSpec.builds = 0
    costs = torch.tensor([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]])
    for _ in range(3):
        for layer in layers:
            assert torch.equal(layer(costs), (costs < 0).to(costs.dtype))
    assert CountingSpec.builds == 40


def test_forty_cpsat_layers_stay_resident_in_a_thread(monkeypatch):
    builds = []
    original = CpSatSpec.build

    def counting_build(self):
        builds.append(self.var_index)
        return original(self)

    monkeypatch.setattr(CpSatSpec, "build", counting_build)
    layers = []
    for i in range(40):
        m = cp_model.CpModel()
        x = [m.new_bool_var(f"x{j}") for j in range(4)]
        m.add(sum(x) <= 1 + i % 3)
        m.add(sum((j + 1) * v for j, v in enumerate(x)) <= 3 + i)  # distinct models
        layer = ipo.CpSatLayer(m, x, sense="max")
        layer._handle.batch.box = None  # every batch must reach a resident solver
        layers.append(layer)
    costs = batch(2, n=4)
    counts = []
    outputs: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def run():  # a fresh thread: its cache starts empty, and solves run on it
        try:
            counts.append(resident_count())
            for r in range(3):
                for i, layer in enumerate(layers):
                    y = layer(costs)
                    if r == 0:
                        outputs[i] = y
                    else:
                        assert torch.equal(y, outputs[i])
                counts.append(resident_count())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    if errors:
        raise errors[0]
    assert counts == [0, 40, 40, 40]
    assert len(builds) == 40


# --- 7. CVXPY parameters re-read before each solve ------------------------------------------


VALUES = torch.tensor([[1.0, 2.0, 2.5, 1.0], [3.0, 1.0, 1.0, 1.0], [0.5, 0.2, 3.0, 2.0]])


def test_changed_capacity_parameter_changes_the_next_decisions():
    c = cp.Parameter(4)
    x = cp.Variable(4, boolean=True)
    cap = cp.Parameter(nonneg=True, value=7.0)
    problem = cp.Problem(cp.Maximize(c @ x), [np.array([3.0, 4.0, 5.0, 2.0]) @ x <= cap])
    layer = ipo.CvxpyLayer(problem, c, x)  # projection="auto"
    before = layer(VALUES)
    cap.value = 11.0
    after = layer(VALUES)
    fresh = ipo.CvxpyLayer(problem, c, x)(VALUES)
    assert torch.equal(after, fresh)
    assert not torch.equal(after, before)
    assert torch.equal(layer.solve(VALUES), fresh)
    assert (after.numpy() @ np.array([3.0, 4.0, 5.0, 2.0]) <= 11.0).all()
    cap.value = 7.0  # and back
    assert torch.equal(layer(VALUES), before)


@pytest.mark.parametrize("how", COPIES)
def test_a_copy_solves_with_the_parameter_values_of_when_it_was_made(how):
    c = cp.Parameter(4)
    x = cp.Variable(4, boolean=True)
    cap = cp.Parameter(nonneg=True, value=7.0)
    problem = cp.Problem(cp.Maximize(c @ x), [np.array([3.0, 4.0, 5.0, 2.0]) @ x <= cap])
    layer = ipo.CvxpyLayer(problem, c, x)
    before = layer(VALUES)
    twin = COPIES[how](layer)
    cap.value = 11.0
    after = layer(VALUES)
    assert not torch.equal(after, before)  # the original follows the parameter
    assert torch.equal(twin(VALUES), before)  # the copy keeps the value it was made with
    assert torch.equal(ipo.CvxpyLayer(problem, c, x)(VALUES), after)  # a new layer follows it again


def test_changed_equality_rows_are_followed_under_every_projection():
    problem, c, x, a, k = weighted_choice()
    auto = ipo.CvxpyLayer(problem, c, x)
    plain = ipo.CvxpyLayer(problem, c, x, projection="none")
    assert torch.equal(auto(VALUES), plain(VALUES))
    # A new right-hand side keeps the rows.
    k.value = 3.0
    y = auto(VALUES)
    assert (y.sum(1) == 3).all()
    assert torch.equal(y, ipo.CvxpyLayer(problem, c, x)(VALUES))
    # A parameter multiplying the cost variables in an equality changes the rows: "auto" takes
    # its basis from the new ones (tests/test_basis.py checks the gradient).
    a.value = np.array([1.0, 1.0, 2.0, 1.0])
    y = auto(VALUES)
    assert torch.equal(y, plain(VALUES))
    assert torch.equal(y, ipo.CvxpyLayer(problem, c, x, projection="none")(VALUES))
    assert (y.numpy() @ a.value == 3).all()
    assert auto.handle.basis_version == 1


# --- 8. silence -----------------------------------------------------------------------------


SILENT_SCRIPT = """
import sys
import warnings

import idproj_or as ipo
import cvxpy as cp
import numpy as np
import torch
from ortools.sat.python import cp_model

warnings.simplefilter("ignore", ipo.SolverWarning)
costs = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
c = cp.Parameter(6)

xb = cp.Variable(6, boolean=True)
mip = cp.Problem(cp.Maximize(c @ xb), [np.arange(1, 7) @ xb <= 10, cp.sum(xb) == 3])
ipo.CvxpyLayer(mip, c, xb)(costs)  # HiGHS MIP
ipo.CvxpyLayer(mip, c, xb, time_limit=5.0)(costs)
ipo.CvxpyLayer(mip, c, xb, solver="SCIPY")(costs)

xc = cp.Variable(6)
lp = cp.Problem(cp.Minimize(c @ xc), [cp.sum(xc) == 1, xc >= 0, xc <= 0.5])
ipo.CvxpyLayer(lp, c, xc)(costs)  # HiGHS LP
ipo.CvxpyLayer(lp, c, xc, solver="SCIPY", time_limit=5.0)(costs)
ipo.CvxpyLayer(lp, c, xc, solver="CLARABEL", time_limit=5.0)(costs)

infeasible = cp.Problem(cp.Maximize(c @ xb), [cp.sum(xb) >= 7])
assert torch.isnan(ipo.CvxpyLayer(infeasible, c, xb, on_failure="nan")(costs)).all()
lp_infeasible = cp.Problem(cp.Minimize(c @ xc), [cp.sum(xc) >= 7, xc <= 1])
for solver in (None, "SCIPY", "CLARABEL"):
    assert torch.isnan(ipo.CvxpyLayer(lp_infeasible, c, xc, solver, on_failure="nan")(costs)).all()
unbounded = cp.Problem(cp.Minimize(c @ xc), [xc <= 1])
assert torch.isnan(ipo.CvxpyLayer(unbounded, c, xc, on_failure="nan")(costs.abs() + 0.1)).all()

rng = np.random.default_rng(0)
n = 60
w = rng.integers(10, 100, size=(3, n))
xh = cp.Variable(n, boolean=True)
ch = cp.Parameter(n)
hard = cp.Problem(cp.Maximize(ch @ xh), [w @ xh <= w.sum(1) // 2])
ipo.CvxpyLayer(hard, ch, xh, time_limit=0.01, on_failure="nan")(torch.rand(2, n))

m = cp_model.CpModel()
x = [m.new_bool_var(f"x{i}") for i in range(6)]
m.add(sum(x) == 3)
ipo.CpSatLayer(m, x)(costs)
ipo.KnapsackLayer(np.arange(1, 7), 10)(costs)

with open(sys.argv[1], "w") as f:
    f.write("done")
"""


def test_building_and_using_layers_prints_nothing(tmp_path):
    script = tmp_path / "silent.py"
    script.write_text(textwrap.dedent(SILENT_SCRIPT))
    marker = tmp_path / "done.txt"
    proc = subprocess.run(
        [sys.executable, str(script), str(marker)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "done"
    assert proc.stdout == ""
    assert proc.stderr == ""


# CVXPY logs, at its import and at every solver probe, that its GLOP and PDLP interfaces refuse
# this OR-Tools. MARK is printed just before `import idproj_or`: nothing may follow it.
CVXPY_USE = """
import torch

c = cp.Parameter(4)
x = cp.Variable(4, boolean=True)
problem = cp.Problem(cp.Maximize(c @ x), [cp.sum(x) == 2])
costs = torch.randn(6, 4)
ipo.CvxpyLayer(problem, c, x)(costs)
ipo.CvxpyLayer(problem, c, x, solver="SCIPY")(costs)  # a named solver: CVXPY probes them all again
pooled = ipo.CvxpyLayer(problem, c, x, workers=2, route="pool")
pooled(costs)  # the pool's workers import CVXPY too
assert pooled.last_info.mode == "pool"
"""

IMPORT_ORDERS = {
    "idproj_or first": "import sys\nprint('MARK', file=sys.stderr)\nimport idproj_or as ipo\nimport cvxpy as cp\n",
    "cvxpy first": "import sys\nimport cvxpy as cp\nprint('MARK', file=sys.stderr)\nimport idproj_or as ipo\n",
}


@pytest.mark.parametrize("order", IMPORT_ORDERS)
def test_no_cvxpy_probe_lines_whatever_the_import_order(tmp_path, order):
    script = tmp_path / "cvxpy_use.py"
    script.write_text(f"{IMPORT_ORDERS[order]}\nif __name__ == '__main__':\n{textwrap.indent(CVXPY_USE, '    ')}")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    # The locked CVXPY (1.9.1) accepts OR-Tools 9.15: not a line, even before idproj_or exists.
    assert proc.stderr == "MARK\n"


LOGGING_CONFIG_SCRIPT = """
import logging.config

import idproj_or
logging.config.dictConfig({"version": 1})  # disables the loggers that exist at this point
import cvxpy as cp

x = cp.Variable()
cp.Problem(cp.Minimize(x), [x >= 1]).solve(solver="CLARABEL", verbose=True)
"""


def test_the_users_logging_configuration_keeps_cvxpys_own_messages(tmp_path):
    script = tmp_path / "logging_config.py"
    script.write_text(LOGGING_CONFIG_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # idproj_or filters CVXPY's logger when CVXPY creates it, not before: the user's
    # configuration leaves it enabled, and only the OR-Tools probe lines are dropped.
    assert "(CVXPY)" in proc.stderr and "Your problem has 1 variables" in proc.stderr
    assert "Encountered unexpected exception importing solver" not in proc.stderr


# --- 9. DataLoader workers ------------------------------------------------------------------


DATALOADER_SCRIPT = """
import torch
from ortools.sat.python import cp_model
from torch.utils.data import DataLoader, Dataset

import idproj_or as ipo


class Solved(Dataset):
    def __init__(self, layer, costs):
        self.layer, self.costs = layer, costs

    def __len__(self):
        return len(self.costs)

    def __getitem__(self, i):
        return self.layer(self.costs[i]), self.layer.last_info.mode


if __name__ == "__main__":
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(6)]
    m.add(sum(x) == 2)
    layer = ipo.CpSatLayer(m, x, workers=2, route="pool")
    costs = torch.randn(5, 4, 6, generator=torch.Generator().manual_seed(0))
    out = list(DataLoader(Solved(layer, costs), batch_size=None, num_workers=1))
    expected = ipo.CpSatLayer(m, x)(costs.reshape(20, 6)).reshape(5, 4, 6)
    assert torch.equal(torch.stack([y for y, _ in out]), expected)
    print(*sorted({mode for _, mode in out}))
    layer(costs[0])  # the main process may start the pool
    print(layer.last_info.mode)
"""


def test_a_workers_layer_in_a_dataloader_worker_solves_in_process_with_one_warning(tmp_path):
    script = tmp_path / "loader.py"
    script.write_text(DATALOADER_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["serial", "pool"]
    # One warning for the worker's five calls, saying why.
    assert proc.stderr.count("SolverWarning") == 1, proc.stderr
    assert "workers=2: this process is daemonic (e.g. a torch DataLoader worker)" in proc.stderr
