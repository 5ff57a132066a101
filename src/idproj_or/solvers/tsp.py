"""Travelling salesman: costs ``(n, n)`` -> the 0/1 adjacency matrix of a tour.

``y[i, j] = 1`` when the tour goes from node ``i`` to node ``j``; every node has exactly one
successor and one predecessor, the diagonal is 0, and the arcs form a single cycle through all
``n`` nodes. Costs need not be symmetric; the diagonal costs are ignored.

Symmetric costs (``TSPLayer(n, symmetric=True)``): one cost per edge, in the order of
``itertools.combinations(range(n), 2)`` (PyEPO's), and the 0/1 edge vector of an optimal tour,
solved exactly (up to the float64 rounding of a tour's length, ``scaling_error``) by the
Held-Karp branch and bound of :mod:`._tsp_hk` (status ``"OPTIMAL"``; with a time limit the best
tour found, ``"FEASIBLE"``). ``"auto"`` uses the degree-2 equalities.

Asymmetric costs, two methods:

- ``"cpsat"`` (exact): a CP-SAT model with one Boolean per arc and ``add_circuit``, built once per
  worker through the CP-SAT adapter (:mod:`idproj_or.solvers.cpsat`); each solve swaps the
  objective. Costs are scaled and rounded as in that adapter (:mod:`idproj_or.solvers.scaling`),
  the ignored diagonal set to 0 first: ``"optimal"`` means proven optimal with a rounding that
  cannot matter; ``"feasible"``: the time limit stopped the proof, or ``scaling_error`` says
  what the rounding can cost.
- ``"routing"`` (heuristic, for n in the hundreds): OR-Tools' vehicle-routing solver with one
  vehicle, a first-solution strategy and a local-search metaheuristic (guided local search by
  default) under a time limit. The status is the routing solver's own name
  (``"ROUTING_SUCCESS"``, ``"ROUTING_PARTIAL_SUCCESS_LOCAL_OPTIMUM_NOT_REACHED"``, ...); it proves
  optimality (``"ROUTING_OPTIMAL"``) only when its search space is exhausted, i.e. for tiny n.
  Costs are shifted so that the cheapest off-diagonal arc costs 0 (every tour has ``n`` arcs, so
  the argmin is unchanged), multiplied by the largest power of two that keeps every tour's
  length below ``2^ROUTING_HEADROOM_BITS`` and rounded; ``scaling_error`` bounds what that can
  cost, and ``ROUTING_OPTIMAL`` is reported ``"optimal"`` only when it cannot matter.

The routing model is rebuilt for every instance from the worker's search parameters and that
instance's integer matrix (``RegisterTransitMatrix``; small against the time limit). A resident ``RoutingModel`` with a Python transit callback was measured first and
rejected: solving the same instance twice on it gave different tours (search state carries over
between solves, breaking the "no state from one solve to the next" contract), and every arc
evaluation crossed into Python.

Determinism: guided local search stops only at the time limit, so its tours depend on machine
speed. Pass ``solution_limit`` (stop after that many solutions, with a time limit large enough
not to bind) or ``metaheuristic="GREEDY_DESCENT"`` (stop at the first local optimum) to get the
same tours on every run, serial or in workers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2
from ortools.sat.python import cp_model

from .. import statuses
from ..checks import Sense, check_sense, check_size, declare
from ..statuses import Outcome
from .base import NO_DATA, Data, ModelSpec, ResidentSolver
from .cpsat import CpSatSolver, CpSatSpec, cpsat_spec
from .scaling import choice_error, integer_costs, proven, scale_exponent

METHODS = ("cpsat", "routing")
SYMMETRIC_METHODS = ("held_karp",)
# A tour's integer cost stays below 2^62: the routing solver's int64 sums (saturating) were
# measured to give the same tours up to sums just below 2^63, guided local search included.
ROUTING_HEADROOM_BITS = 62
ROUTING_TIME_LIMIT = 1.0  # seconds per instance when method="routing" and no time_limit is given
FIRST_SOLUTION_STRATEGIES: tuple[str, ...] = tuple(
    v.name for v in routing_enums_pb2.FirstSolutionStrategy.Value.DESCRIPTOR.values if v.name != "UNSET"
)
METAHEURISTICS: tuple[str, ...] = tuple(
    v.name for v in routing_enums_pb2.LocalSearchMetaheuristic.Value.DESCRIPTOR.values if v.name != "UNSET"
)


def tsp_equalities(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``A y = b`` of every tour over the flattened ``(n, n)`` adjacency: out-degree 1 per
    node (``n`` rows over the off-diagonal entries), in-degree 1 per node (``n`` rows), and
    ``y[i, i] = 0`` (``n`` rows: the diagonal cost never changes the argmin)."""
    off = 1.0 - np.eye(n)
    out_rows = np.einsum("ij,ik->ijk", np.eye(n), off).reshape(n, n * n)
    in_rows = np.einsum("jk,ik->jik", np.eye(n), off).reshape(n, n * n)
    diag_rows = np.zeros((n, n * n))
    diag_rows[np.arange(n), np.arange(n) * (n + 1)] = 1.0
    a = np.concatenate([out_rows, in_rows, diag_rows])
    b = np.concatenate([np.ones(2 * n), np.zeros(n)])
    return a, b


def circuit_model(n: int) -> tuple[cp_model.CpModel, list[list[cp_model.IntVar]]]:
    """A CP-SAT model whose solutions are the tours of ``n`` nodes, and its ``(n, n)`` arc
    variables (the diagonal entries are the constant 0)."""
    model = cp_model.CpModel()
    zero = model.new_constant(0)
    x = [[zero if i == j else model.new_bool_var(f"x{i}_{j}") for j in range(n)] for i in range(n)]
    model.add_circuit([(i, j, x[i][j]) for i in range(n) for j in range(n) if i != j])
    return model, x


class TspCpSatSolver(CpSatSolver):
    def __init__(self, spec: TspCpSatSpec) -> None:
        super().__init__(spec)
        # The circuit's LP relaxation with cuts: about 1.5-2x faster on 20-city tours (same optima).
        self.solver.parameters.linearization_level = 2
        n = spec.shape[0]
        self.diagonal = np.arange(n) * (n + 1)

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        # Zero the ignored diagonal so that it cannot coarsen the integer scaling.
        cost = cost.copy()
        cost[self.diagonal] = 0.0
        return super().solve(cost, time_limit)


@dataclass(frozen=True)
class TspCpSatSpec(CpSatSpec):
    """The CP-SAT adapter's spec of :func:`circuit_model`, with the diagonal costs ignored."""

    resident_solver = TspCpSatSolver  # type: ignore[assignment]  # a ClassVar the dataclass keeps

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        return tsp_equalities(self.shape[0])


def edge_index(n: int) -> np.ndarray:
    """``(n, n)`` matrix of the position of edge ``{i, j}`` in the edge vector (-1 on the diagonal)."""
    index = np.full((n, n), -1, dtype=np.int64)
    iu, ju = np.triu_indices(n, 1)
    index[iu, ju] = index[ju, iu] = np.arange(len(iu))
    return index


def symmetric_tsp_equalities(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every tour uses two edges at each node: ``n`` rows over the edge vector, right-hand side 2."""
    iu, ju = np.triu_indices(n, 1)
    a = np.zeros((n, len(iu)))
    a[iu, np.arange(len(iu))] = 1.0
    a[ju, np.arange(len(iu))] = 1.0
    return a, np.full(n, 2.0)


class HeldKarpSolver(ResidentSolver):
    def __init__(self, spec: SymmetricTspSpec) -> None:
        from . import _tsp_hk  # numba: compiled on first use, then loaded from its cache

        self._solve = _tsp_hk.solve_symmetric
        self.n = spec.n
        self.sign = -1.0 if spec.sense == "max" else 1.0
        self.iu, self.ju = np.triu_indices(spec.n, 1)
        self.index = edge_index(spec.n)
        self.abort = np.zeros(1, dtype=np.int8)
        self._solve(np.add.outer(np.arange(6.0), np.arange(6.0)) % 5)  # load the code before timed solves

    def interrupt(self) -> None:
        self.abort[0] = 1

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        c = np.zeros((self.n, self.n))
        c[self.iu, self.ju] = c[self.ju, self.iu] = self.sign * cost
        self.abort[0] = 0
        tour, finished, slack = self._solve(c, time_limit, self.abort)
        y = np.zeros(len(self.iu))
        y[self.index[tour, np.roll(tour, -1)]] = 1.0
        if not finished:
            return Outcome(y, statuses.FEASIBLE, "TIME_LIMIT", 0.0, slack)
        # The pruning tolerance is within the float64 rounding of the tour's length but for a
        # tour of much smaller magnitude than the first incumbent (costs of mixed signs).
        common = statuses.OPTIMAL if proven(slack, cost, y) else statuses.FEASIBLE
        return Outcome(y, common, "OPTIMAL", 0.0, slack)


@dataclass(frozen=True)
class SymmetricTspSpec(ModelSpec):
    resident_solver = HeldKarpSolver
    n: int
    sense: Sense

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.n * (self.n - 1) // 2,)

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        return symmetric_tsp_equalities(self.n)


_ROUTING_FAILURE = {
    "ROUTING_FAIL_TIMEOUT": statuses.TIME_LIMIT,
    "ROUTING_INFEASIBLE": statuses.INFEASIBLE,
    "ROUTING_NOT_SOLVED": statuses.NOT_SOLVED,
}


class StoppableRouting:
    """What the OR-Tools routing solvers share for Ctrl-C: the routing search holds the GIL for
    the whole solve, so it polls a Python limit, which lets the thread that takes Ctrl-C run and
    stops the search once :meth:`interrupt` was called."""

    stopped = False

    def interrupt(self) -> None:
        self.stopped = True

    def _poll(self) -> bool:
        return self.stopped

    def search(self, routing: pywrapcp.RoutingModel, params: Any) -> Any:
        self.stopped = False
        routing.AddSearchMonitor(routing.solver().CustomLimit(self._poll))
        return routing.SolveWithParameters(params)


class RoutingTspSolver(StoppableRouting, ResidentSolver):
    def __init__(self, spec: TspRoutingSpec) -> None:
        self.n = spec.n
        self.sign = -1.0 if spec.sense == "max" else 1.0
        self.off_diagonal = ~np.eye(self.n, dtype=bool)
        self.arcs = np.array([float(self.n)])  # arcs of a tour, each at most the largest cost
        params = pywrapcp.DefaultRoutingSearchParameters()
        params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.Value.Value(spec.first_solution)
        params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.Value.Value(spec.metaheuristic)
        if spec.solution_limit is not None:
            params.solution_limit = spec.solution_limit
        self.params = params

    def integer_costs(self, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``(n, n)`` int64 matrix the routing solver gets (off-diagonal costs shifted to
        start at 0, then scaled by the largest power of two that keeps every tour's sum within
        ``2^ROUTING_HEADROOM_BITS``, and rounded; diagonal 0), and the off-diagonal residuals."""
        off = self.sign * cost.reshape(self.n, self.n)[self.off_diagonal]
        low = off.min()
        shifted = off - low  # every tour has n arcs: the argmin is unchanged
        back = shifted - off
        lost = np.abs((off - (shifted - back)) + (-low - back))  # the shift's exact rounding (TwoSum)
        exponent = scale_exponent(shifted.max(keepdims=True), self.arcs, headroom_bits=ROUTING_HEADROOM_BITS)
        scaled = integer_costs(shifted, exponent)
        matrix = np.zeros((self.n, self.n), dtype=np.int64)
        matrix[self.off_diagonal] = scaled.coeffs
        return matrix, scaled.residual + lost

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        seconds = ROUTING_TIME_LIMIT if time_limit is None else time_limit
        self.params.time_limit.FromNanoseconds(max(int(seconds * 1e9), 1))
        manager = pywrapcp.RoutingIndexManager(self.n, 1, 0)
        routing = pywrapcp.RoutingModel(manager)
        matrix, residual = self.integer_costs(cost)
        transit = routing.RegisterTransitMatrix(matrix.tolist())
        routing.SetArcCostEvaluatorOfAllVehicles(transit)
        solution = self.search(routing, self.params)
        status = routing_enums_pb2.RoutingSearchStatus.Value.Name(routing.status())
        if self.stopped:
            return statuses.no_decision(statuses.INTERRUPTED, status)
        if solution is None:
            return statuses.no_decision(_ROUTING_FAILURE.get(status, statuses.ERROR), status)
        y = np.zeros((self.n, self.n))
        index = routing.Start(0)
        while not routing.IsEnd(index):
            nxt = solution.Value(routing.NextVar(index))
            y[manager.IndexToNode(index), manager.IndexToNode(nxt)] = 1.0
            index = nxt
        arcs = y[self.off_diagonal]
        error = choice_error(residual, arcs, self.n)
        # A local search proves nothing unless the routing solver says so, and the rounding
        # then must not matter.
        exact = status == "ROUTING_OPTIMAL" and proven(error, cost.reshape(self.n, self.n)[self.off_diagonal], arcs)
        return Outcome(y.reshape(-1), statuses.OPTIMAL if exact else statuses.FEASIBLE, status, 0.0, error)


@dataclass(frozen=True)
class TspRoutingSpec(ModelSpec):
    resident_solver = RoutingTspSolver
    n: int
    sense: Sense
    first_solution: str = "PATH_CHEAPEST_ARC"
    metaheuristic: str = "GUIDED_LOCAL_SEARCH"
    solution_limit: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.n, self.n)

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        return tsp_equalities(self.n)


def _choice(value: str, choices: tuple[str, ...], name: str, *, where: str) -> str:
    if value not in choices:
        raise ValueError(f"{where}: {name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def tsp_spec(
    n: int,
    method: str | None,
    sense: str,
    *,
    symmetric: bool,
    first_solution: str | None,
    metaheuristic: str | None,
    solution_limit: int | None,
    where: str,
) -> TspCpSatSpec | TspRoutingSpec | SymmetricTspSpec:
    n = check_size(n, "n", where=where, minimum=2)
    resolved = check_sense(sense, where=where)
    if symmetric:
        _choice(method or "held_karp", SYMMETRIC_METHODS, "method", where=where)
    else:
        method = _choice(method or "cpsat", METHODS, "method", where=where)
    if method != "routing":
        given = [
            k
            for k, v in (
                ("first_solution", first_solution),
                ("metaheuristic", metaheuristic),
                ("solution_limit", solution_limit),
            )
            if v is not None
        ]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ValueError(f"{where}: {', '.join(given)} {verb} only to method='routing'")
        if symmetric:
            return SymmetricTspSpec(n, resolved)
        model, x = circuit_model(n)
        base = cpsat_spec(model, declare(x, cp_model.IntVar, resolved, where=where))
        return TspCpSatSpec(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    limit = None if solution_limit is None else check_size(solution_limit, "solution_limit", where=where)
    return TspRoutingSpec(
        n,
        resolved,
        _choice(first_solution or "PATH_CHEAPEST_ARC", FIRST_SOLUTION_STRATEGIES, "first_solution", where=where),
        _choice(metaheuristic or "GUIDED_LOCAL_SEARCH", METAHEURISTICS, "metaheuristic", where=where),
        limit,
    )
