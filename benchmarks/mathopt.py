"""MathOptLayer and ModelBuilderLayer per solve, against hand-written resident loops on the same
APIs and side by side with LinearSolverLayer (pywraplp) on the same model.

Two models: a 5x5 grid shortest path LP (40 edges, flow conservation; GLOP) and a 32x2 knapsack
MIP (SCIP: MathOpt's GSCIP, model_builder's "scip"). Per model, serial, one batch of instances:

- ``MathOptLayer`` / ``ModelBuilderLayer`` / ``LinearSolverLayer``: forward of one batch (no
  gradient), per instance;
- MathOpt loop: one ``mathopt.IncrementalSolver`` on the model, per instance the objective's
  coefficients set in place, ``solve()``, ``variable_values``;
- model_builder loop: one ``model_builder.Solver``, per instance ``minimize`` / ``maximize`` of a
  ``weighted_sum`` of the costs, ``solve``, ``values``.

Target: each layer <= 1.15x the hand-written loop on its own API. The fastest of ``--repeats``
blocks counts.

Run: make bench  (or .venv/bin/python benchmarks/mathopt.py --repeats 3)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from ortools.linear_solver import pywraplp
from ortools.linear_solver.python import model_builder as mb
from ortools.math_opt.python import mathopt

import idproj_or as ipo

SIDE = 5  # grid nodes per side
N_ITEMS, N_DIMS = 32, 2


def grid_edges() -> list[tuple[int, int]]:
    """Right and down edges of a SIDE x SIDE grid of nodes (node r * SIDE + c)."""
    edges = []
    for r in range(SIDE):
        for c in range(SIDE):
            if c + 1 < SIDE:
                edges.append((r * SIDE + c, r * SIDE + c + 1))
            if r + 1 < SIDE:
                edges.append((r * SIDE + c, (r + 1) * SIDE + c))
    return edges


def knapsack_weights() -> np.ndarray:
    return np.random.default_rng(0).integers(3, 8, size=(N_DIMS, N_ITEMS))


def flow_rows(add_row: Callable[[list, float, int], None], x: list) -> None:
    """Flow conservation: one unit from node 0 to the last node."""
    edges = grid_edges()
    last = SIDE * SIDE - 1
    for node in range(SIDE * SIDE):
        out = [x[k] for k, (a, _) in enumerate(edges) if a == node]
        into = [x[k] for k, (_, b) in enumerate(edges) if b == node]
        add_row(out + into, 1.0 if node == 0 else -1.0 if node == last else 0.0, len(out))


def build(api: str, problem: str):
    """The model on ``api`` ("mathopt", "model_builder", "pywraplp") and its cost variables."""
    lp = problem == "lp"
    n = len(grid_edges()) if lp else N_ITEMS
    if api == "mathopt":
        model = mathopt.Model()
        x = [model.add_variable(lb=0, ub=1, is_integer=not lp) for _ in range(n)]
        add = model.add_linear_constraint
    elif api == "model_builder":
        model = mb.Model()
        x = [model.new_var(0, 1, not lp, f"x{i}") for i in range(n)]
        add = model.add
    else:
        model = pywraplp.Solver.CreateSolver("GLOP" if lp else "SCIP")
        x = [model.NumVar(0, 1, "") if lp else model.BoolVar("") for _ in range(n)]
        add = model.Add
    if lp:
        flow_rows(lambda vs, rhs, n_out: add(sum(vs[:n_out]) - sum(vs[n_out:]) == rhs), x)
    else:
        for wd in knapsack_weights():
            add(sum(int(a) * v for a, v in zip(wd, x)) <= int(wd.sum() // 2))
    return model, x


def mathopt_loop(problem: str, costs: np.ndarray) -> np.ndarray:
    model, x = build("mathopt", problem)
    lp = problem == "lp"
    model.objective.is_maximize = not lp
    params = mathopt.SolveParameters(threads=1, relative_gap_tolerance=0.0, absolute_gap_tolerance=0.0)
    solver = mathopt.IncrementalSolver(model, mathopt.SolverType.GLOP if lp else mathopt.SolverType.GSCIP)
    out = np.empty_like(costs)
    for i, cost in enumerate(costs.tolist()):
        for v, c in zip(x, cost):
            model.objective.set_linear_coefficient(v, c)
        result = solver.solve(params=params)
        out[i] = [result.variable_values(v) for v in x]
    return out


def model_builder_loop(problem: str, costs: np.ndarray) -> np.ndarray:
    model, x = build("model_builder", problem)
    lp = problem == "lp"
    solver = mb.Solver("glop" if lp else "scip")
    out = np.empty_like(costs)
    for i, cost in enumerate(costs):
        expr = mb.LinearExpr.weighted_sum(x, cost)
        model.minimize(expr) if lp else model.maximize(expr)
        solver.solve(model)
        out[i] = solver.values(x).to_numpy()
    return out


def layer(api: str, problem: str) -> ipo.OptLayer:
    lp = problem == "lp"
    model, x = build(api, problem)
    sense = "min" if lp else "max"
    if api == "mathopt":
        kind = mathopt.SolverType.GLOP if lp else mathopt.SolverType.GSCIP
        return ipo.MathOptLayer(model, x, solver=kind, sense=sense, projection="none")
    if api == "model_builder":
        return ipo.ModelBuilderLayer(model, x, solver="glop" if lp else "scip", sense=sense, projection="none")
    return ipo.LinearSolverLayer(model, x, sense, projection="none")


def per_solve(run: Callable[[], np.ndarray], n: int, repeats: int) -> tuple[float, np.ndarray]:
    """The fastest of ``repeats`` runs, per instance, and the decisions."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = run()
        best = min(best, (time.perf_counter() - t0) / n)
    assert out is not None
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for problem, n in (("lp", 200), ("mip", 40)):
        size = len(grid_edges()) if problem == "lp" else N_ITEMS
        costs = rng.uniform(0, 1, size=(n, size))
        times, decisions = {}, {}
        for name, api in (
            ("MathOptLayer", "mathopt"),
            ("ModelBuilderLayer", "model_builder"),
            ("LinearSolverLayer", "pywraplp"),
        ):
            ly, c = layer(api, problem), torch.from_numpy(costs)
            ly(c[:2])  # builds the resident solver
            with torch.no_grad():
                times[name], y = per_solve(lambda ly=ly, c=c: ly(c).numpy(), n, args.repeats)
            decisions[name] = y
        times["MathOpt IncrementalSolver loop"], decisions["mathopt loop"] = per_solve(
            lambda: mathopt_loop(problem, costs), n, args.repeats
        )
        times["model_builder Solver loop"], decisions["model_builder loop"] = per_solve(
            lambda: model_builder_loop(problem, costs), n, args.repeats
        )
        objective = {k: float(np.einsum("ij,ij->", v, costs)) for k, v in decisions.items()}
        assert max(objective.values()) - min(objective.values()) < 1e-6 * n, objective
        title = "5x5 shortest path LP (GLOP)" if problem == "lp" else "32x2 knapsack MIP (SCIP)"
        print(f"{title}, {n} instances, per solve:")
        for name, t in times.items():
            print(f"  {name:32s} {t * 1e3:8.3f} ms")
        print(
            f"  MathOptLayer / IncrementalSolver loop:  {times['MathOptLayer'] / times['MathOpt IncrementalSolver loop']:.2f}x"
        )
        print(
            f"  ModelBuilderLayer / Solver loop:        {times['ModelBuilderLayer'] / times['model_builder Solver loop']:.2f}x"
        )
        print(f"  MathOptLayer / LinearSolverLayer:       {times['MathOptLayer'] / times['LinearSolverLayer']:.2f}x")


if __name__ == "__main__":
    main()
