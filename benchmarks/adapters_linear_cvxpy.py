"""Layer overhead of LinearSolverLayer and CvxpyLayer: layer time / hand-written loop time.

Serial, batch 256, on the same costs and the same prebuilt model (target <= 1.15):

(a) 32-item, 2-row knapsack MIP, pywraplp SCIP
(b) 5x5 grid shortest-path LP (PyEPO's: arcs right and down), pywraplp GLOP
(c) the same knapsack in CVXPY, HiGHS
(d) the same grid LP in CVXPY, HiGHS

Two hand-written loops per model:

- "naive": what a user writes first. pywraplp: one resident ``Solver``, per instance
  ``Objective().SetCoefficient`` for each variable, ``Solve()``, ``solution_value()``. CVXPY:
  ``c.value = w; problem.solve(solver="HIGHS")`` (DPP: no re-canonicalisation).
- "same route": the loop the layer runs, written by hand without the library, so the ratio is
  the layer's own overhead. pywraplp: the resident ``model_builder`` model, a fresh solver per
  instance (SCIP, GLOP). CVXPY: a ``highspy`` model built once from the compiled matrices, per
  instance ``changeColsCost`` + ``clearSolver`` + ``run``.

The layer does not take the naive pywraplp route because it carries state from one solve to the
next (the answer among tied optima depends on the previous instance); the script counts how
often on integer costs with ties. SCIP's naive loop also stops at pywraplp's 1e-4 relative MIP
gap, the layer (and the same-route loop) solves to a zero gap; CVXPY's HiGHS default gap is
1e-4 as well.

"layer.solve" is the solve path alone (validation, batch routing, resident solver); "fwd+bwd"
is a training step's forward (projection "auto" + solve) and backward.

Run: .venv/bin/python benchmarks/adapters_linear_cvxpy.py [--repeats 3] [--batch 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import cvxpy as cp
import highspy
import numpy as np
import scipy.sparse as sp
import torch
from ortools.linear_solver import linear_solver_pb2, pywraplp
from ortools.linear_solver.python import model_builder_helper as mbh

import idproj_or as ipo

Loop = Callable[[np.ndarray], np.ndarray]


def knapsack_data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 8, size=(2, 32))


def grid_arcs(h: int = 5, w: int = 5) -> tuple[list, np.ndarray, np.ndarray]:
    arcs = [((i, j), (i, j + 1)) for i in range(h) for j in range(w - 1)]
    arcs += [((i, j), (i + 1, j)) for i in range(h - 1) for j in range(w)]
    nodes = [(i, j) for i in range(h) for j in range(w)]
    flow = np.zeros((len(nodes), len(arcs)))
    for k, (a, b) in enumerate(arcs):
        flow[nodes.index(a), k] = 1.0
        flow[nodes.index(b), k] = -1.0
    supply = np.zeros(len(nodes))
    supply[0], supply[-1] = 1.0, -1.0
    return arcs, flow, supply


def pywraplp_knapsack() -> tuple[pywraplp.Solver, list]:
    solver = pywraplp.Solver.CreateSolver("SCIP")
    x = [solver.BoolVar(f"x{i}") for i in range(32)]
    for row in knapsack_data():
        solver.Add(sum(int(a) * v for a, v in zip(row, x)) <= int(row.sum() // 2))
    solver.Maximize(0)
    return solver, x


def pywraplp_grid() -> tuple[pywraplp.Solver, list]:
    _, flow, supply = grid_arcs()
    solver = pywraplp.Solver.CreateSolver("GLOP")
    x = [solver.NumVar(0, 1, f"a{k}") for k in range(flow.shape[1])]
    for row, rhs in zip(flow, supply):
        solver.Add(sum(float(a) * v for a, v in zip(row, x) if a) == float(rhs))
    return solver, x


def cvxpy_knapsack() -> tuple[cp.Problem, cp.Parameter, cp.Variable]:
    weights = knapsack_data()
    c, x = cp.Parameter(32), cp.Variable(32, boolean=True)
    return cp.Problem(cp.Maximize(c @ x), [weights @ x <= weights.sum(1) // 2]), c, x


def cvxpy_grid() -> tuple[cp.Problem, cp.Parameter, cp.Variable]:
    _, flow, supply = grid_arcs()
    c, x = cp.Parameter(flow.shape[1]), cp.Variable(flow.shape[1])
    return cp.Problem(cp.Minimize(c @ x), [flow @ x == supply, x >= 0, x <= 1]), c, x


def naive_pywraplp(solver: pywraplp.Solver, x: list, maximize: bool) -> Loop:
    solver.SetNumThreads(1)
    objective = solver.Objective()
    objective.SetOptimizationDirection(maximize)

    def run(costs: np.ndarray) -> np.ndarray:
        out = np.empty_like(costs)
        for i, c in enumerate(costs):
            for v, ci in zip(x, c.tolist()):
                objective.SetCoefficient(v, ci)
            solver.Solve()
            out[i] = [v.solution_value() for v in x]
        return out

    return run


def same_route_pywraplp(solver: pywraplp.Solver, x: list, backend: str, maximize: bool) -> Loop:
    proto = linear_solver_pb2.MPModelProto()
    solver.ExportModelToProto(proto)
    proto.maximize = maximize
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pb")
        with open(path, "wb") as f:
            f.write(proto.SerializeToString())
        model = mbh.ModelBuilderHelper()
        model.read_model_from_proto_file(path)
    index = [v.index() for v in x]

    def run(costs: np.ndarray) -> np.ndarray:
        out = np.empty_like(costs)
        for i, c in enumerate(costs):
            model.clear_objective()
            model.set_maximize(maximize)
            model.set_objective_coefficients(index, c.tolist())
            helper = mbh.ModelSolverHelper(backend)
            helper.solve(model)
            out[i] = helper.variable_values()[index]
        return out

    return run


def naive_cvxpy(problem: cp.Problem, c: cp.Parameter, x: cp.Variable) -> Loop:
    def run(costs: np.ndarray) -> np.ndarray:
        out = np.empty_like(costs)
        for i, w in enumerate(costs):
            c.value = w
            problem.solve(solver="HIGHS")
            out[i] = x.value
        return out

    return run


def same_route_highspy(problem: cp.Problem, c: cp.Parameter, x: cp.Variable, maximize: bool) -> Loop:
    """A highspy model from CVXPY's compiled matrices (A z + b in K, equalities first)."""
    data, _, _ = problem.get_problem_data("HIGHS")
    prob = data["param_prob"]
    _, _, a, b = prob.apply_parameters({c.id: np.zeros(c.shape)})
    a = sp.csc_array(a)
    n, inf = a.shape[1], highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, a.shape[0]
    lp.col_cost_ = np.zeros(n)
    lower = np.full(n, -inf) if prob.lower_bounds is None else np.array(prob.lower_bounds, float)
    upper = np.full(n, inf) if prob.upper_bounds is None else np.array(prob.upper_bounds, float)
    integer = [int(t[0]) for t in prob.x.boolean_idx]
    lower[integer], upper[integer] = 0.0, 1.0
    lp.col_lower_, lp.col_upper_ = lower, upper
    zero = prob.cone_dims.zero
    lp.row_lower_ = -b
    lp.row_upper_ = np.concatenate([-b[:zero], np.full(len(b) - zero, inf)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    if integer:
        kinds = [highspy.HighsVarType.kContinuous] * n
        for j in integer:
            kinds[j] = highspy.HighsVarType.kInteger
        lp.integrality_ = kinds
    highs = highspy.Highs()
    for name, value in (("output_flag", False), ("threads", 1), ("mip_rel_gap", 0.0)):
        highs.setOptionValue(name, value)
    highs.passModel(lp)
    cols = prob.var_id_to_col[x.id] + np.arange(x.size, dtype=np.int32)
    sign = -1.0 if maximize else 1.0

    def run(costs: np.ndarray) -> np.ndarray:
        out = np.empty_like(costs)
        for i, w in enumerate(costs):
            highs.changeColsCost(len(cols), cols, sign * w)
            highs.clearSolver()
            highs.run()
            out[i] = np.asarray(highs.getSolution().col_value)[cols]
        return out

    return run


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def train_step(layer: ipo.OptLayer, costs: torch.Tensor) -> None:
    w = costs.clone().requires_grad_(True)
    (layer(w) * torch.ones_like(w)).sum().backward()


def order_dependent(loop: Loop, n: int, seed: int = 1) -> int:
    """Tied instances (of 32) whose answer changes when the batch is reversed.

    The batch alternates random costs and tied integer costs, so that reversing it gives each
    tied instance another predecessor.
    """
    rng = np.random.default_rng(seed)
    costs = rng.random((64, n))
    costs[1::2] = rng.integers(1, 3, size=(32, n))
    forward = loop(costs)
    backward = loop(costs[::-1])[::-1]
    return int((np.abs(forward - backward)[1::2].max(axis=1) > 1e-9).sum())


def compare(label: str, layer: ipo.OptLayer, loops: dict[str, Loop], costs: torch.Tensor, repeats: int) -> None:
    c = costs.numpy()
    times: dict[str, list[float]] = {k: [] for k in [*loops, "layer.solve", "fwd+bwd"]}
    reference = layer.solve(costs).numpy()
    for loop in loops.values():  # same decisions up to ties: compare objectives
        np.testing.assert_allclose((loop(c) * c).sum(1), (reference * c).sum(1), rtol=2e-4, atol=1e-6)
    for _ in range(repeats):
        for name, loop in loops.items():
            times[name].append(timed(lambda: loop(c)))
        times["layer.solve"].append(timed(lambda: layer.solve(costs)))
        times["fwd+bwd"].append(timed(lambda: train_step(layer, costs)))
    per = {k: statistics.median(v) / len(c) * 1e3 for k, v in times.items()}
    print(f"{label}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in per.items()))
    for name in loops:
        ratios = [s / h for s, h in zip(times["layer.solve"], times[name])]
        steps = [s / h for s, h in zip(times["fwd+bwd"], times[name])]
        print(
            f"    vs {name}: layer.solve {statistics.median(ratios):.3f}, fwd+bwd {statistics.median(steps):.3f}"
            " (target <= 1.15)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (median reported)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before timing")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)

    solver, x = pywraplp_knapsack()
    costs = torch.rand(args.batch, 32, generator=gen, dtype=torch.float64)
    layer = ipo.LinearSolverLayer(solver, x, "max")
    naive = naive_pywraplp(solver, x, maximize=True)
    loops = {"naive": naive, "same route": same_route_pywraplp(solver, x, "SCIP", maximize=True)}
    compare("(a) knapsack 32x2, pywraplp SCIP", layer, loops, costs, args.repeats)
    print(f"    naive loop: {order_dependent(naive, 32)}/32 tied instances change with the batch order")

    solver, x = pywraplp_grid()
    costs = torch.rand(args.batch, len(x), generator=gen, dtype=torch.float64)
    layer = ipo.LinearSolverLayer(solver, x)
    naive = naive_pywraplp(solver, x, maximize=False)
    loops = {"naive": naive, "same route": same_route_pywraplp(solver, x, "GLOP", maximize=False)}
    compare("(b) grid 5x5 LP, pywraplp GLOP", layer, loops, costs, args.repeats)
    print(f"    naive loop: {order_dependent(naive, len(x))}/32 tied instances change with the batch order")

    problem, c, x = cvxpy_knapsack()
    costs = torch.rand(args.batch, 32, generator=gen, dtype=torch.float64)
    layer = ipo.CvxpyLayer(problem, c, x)
    loops = {"problem.solve": naive_cvxpy(problem, c, x), "same route": same_route_highspy(problem, c, x, True)}
    compare("(c) knapsack 32x2, CVXPY + HiGHS", layer, loops, costs, args.repeats)

    problem, c, x = cvxpy_grid()
    costs = torch.rand(args.batch, c.size, generator=gen, dtype=torch.float64)
    layer = ipo.CvxpyLayer(problem, c, x)
    loops = {"problem.solve": naive_cvxpy(problem, c, x), "same route": same_route_highspy(problem, c, x, False)}
    compare("(d) grid 5x5 LP, CVXPY + HiGHS", layer, loops, costs, args.repeats)


if __name__ == "__main__":
    main()
