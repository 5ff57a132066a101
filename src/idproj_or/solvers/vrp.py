"""Capacitated vehicle routing (CVRP): costs -> how the routes use each edge (or arc).

Nodes ``0..n``: the depot 0 and customers ``1..n`` with integer demands; vehicles of one integer
capacity, at most ``n_vehicles`` routes (None: no limit). Every customer is served once, by one
route that leaves the depot and returns to it carrying at most the capacity.

Symmetric costs (default): one cost per edge in the order of ``itertools.combinations(range(n +
1), 2)`` (PyEPO's); the decision counts how often the routes use each edge: 1 on a route, 2 on the
depot edge ``{0, i}`` of a route that serves customer ``i`` alone (``0 -> i -> 0``), which 0/1 edge
variables cannot express. Asymmetric costs: an ``(n + 1, n + 1)`` arc matrix (diagonal ignored)
and the 0/1 arcs of the routes.

Methods:

- ``"exact"``: CP-SAT (through :mod:`idproj_or.solvers.cpsat`, scaling and proofs included) over
  one Boolean per arc with ``add_multiple_circuit`` (every cycle passes through the depot) and a
  load per customer, ``demand_i <= load_i <= capacity`` and ``load_j >= load_i + demand_j`` when
  arc ``i -> j`` is used; a symmetric edge's usage is ``x_ij + x_ji``. ``"optimal"`` is proven.
  Per-instance demands and capacity rewrite those bounds only.
- ``"routing"``: OR-Tools' routing solver with a capacity dimension (a first solution, then
  guided local search), deterministic under ``iterations`` (its solution limit).
- ``"pyvrp"``: PyVRP's iterated local search (``pip install idproj_or[routing]``), deterministic
  per ``seed`` under ``iterations``.

The heuristics take non-negative integer arc costs. Adding ``u_i`` to the arcs out of customer
``i`` and ``v_j`` to the arcs into customer ``j`` adds the constant ``sum(u + v)`` to every
solution (each customer has one arc out and one in), so the potentials that make every arc
non-negative leave the optimum where it is; the result is scaled by a power of two and rounded,
and ``scaling_error`` bounds what that can cost. They report ``"feasible"``: a heuristic proves
nothing (OR-Tools' ``ROUTING_OPTIMAL``, an exhausted search, is ``"optimal"`` when the rounding
cannot matter).

Time windows (optional, :class:`Timing`): node ``i``'s service starts in ``[e_i, l_i]``, lasts
``s_i``, and going ``i -> j`` takes ``T_ij``; the exact model adds a service start per customer,
OR-Tools a time dimension, PyVRP its windows (times scaled like loads). Windows, service and
travel times may vary per instance as data.

An instance that no routing can serve (a demand above the capacity, a total demand above
``n_vehicles * capacity``, a window no lone route can meet) is ``"infeasible"`` before any
search, with the reason as its solver status. Any other infeasibility (demands that do not pack
into ``n_vehicles`` routes, windows that need more routes) is the
exact solver's verdict, ``"infeasible"``; a heuristic proves none, and an instance it serves no
routing within its budget is ``"time_limit"``.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2
from ortools.sat.python import cp_model

from .. import statuses
from ..checks import Sense, check_sense, check_size, declare
from ..statuses import Outcome
from .base import NO_DATA, Data, DataField, ModelSpec, ResidentSolver
from .cpsat import CpSatSolver, CpSatSpec, cpsat_spec
from .scaling import integer_costs, proven, scale_exponent
from .tsp import StoppableRouting, edge_index

METHODS = ("exact", "routing", "pyvrp")
HEURISTIC_TIME_LIMIT = 1.0  # seconds per instance for a heuristic given neither time_limit nor iterations
# Integer demands and capacities up to 2^40: load sums stay far inside int64 in every backend.
DATA_HIGH = float(2**40)
# Route lengths after scaling: OR-Tools sums int64 (62 bits measured safe for tours).
ROUTING_HEADROOM_BITS = 62
# PyVRP searches through overloaded routes at a penalty per unit of excess load of at most
# PYVRP_MAX_PENALTY (its default cap; larger risks int64 overflow in its native code). Loads are
# scaled by 2^k up to 2^PYVRP_LOAD_BITS, and distances kept below a tenth of the penalty of one
# unit of demand over capacity, at most 2^40 in all: a cheaper route never pays for an overload.
PYVRP_MAX_PENALTY = 100_000.0
PYVRP_LOAD_BITS = 30
PYVRP_HEADROOM_BITS = 40
DEMAND_ABOVE_CAPACITY = "DEMAND_ABOVE_CAPACITY"
DEMAND_ABOVE_FLEET = "DEMAND_ABOVE_FLEET_CAPACITY"
EMPTY_TIME_WINDOW = "EMPTY_TIME_WINDOW"
TIME_WINDOW_UNREACHABLE = "TIME_WINDOW_UNREACHABLE"
# PyVRP's times are scaled by 2^k up to 2^PYVRP_TIME_BITS, as loads are (one unit of lateness
# then costs more than any route length at its penalty cap).
PYVRP_TIME_BITS = 30


def vrp_equalities(n: int, *, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``A y = b`` of every routing: symmetric, each customer on two edge ends; asymmetric,
    one arc out of and one into each customer and ``y[i, i] = 0``. The depot's degree (twice
    the number of routes) varies, so it has no row."""
    nodes = n + 1
    if symmetric:
        iu, ju = np.triu_indices(nodes, 1)
        a = np.zeros((n, len(iu)))
        for side in (iu, ju):
            customer = side > 0
            a[side[customer] - 1, np.flatnonzero(customer)] = 1.0
        return a, np.full(n, 2.0)
    off = 1.0 - np.eye(nodes)
    out_rows = np.einsum("ij,ik->ijk", np.eye(nodes), off).reshape(nodes, nodes * nodes)[1:]
    in_rows = np.einsum("jk,ik->jik", np.eye(nodes), off).reshape(nodes, nodes * nodes)[1:]
    diag_rows = np.zeros((nodes, nodes * nodes))
    diag_rows[np.arange(nodes), np.arange(nodes) * (nodes + 1)] = 1.0
    return np.concatenate([out_rows, in_rows, diag_rows]), np.concatenate([np.ones(2 * n), np.zeros(nodes)])


def _fields(n: int, *, timed: bool) -> tuple[DataField, ...]:
    fields = (
        DataField("demands", (n,), "the customers' demands", integral=True, low=0.0, high=DATA_HIGH),
        DataField("capacity", (), "the vehicle capacity", integral=True, low=0.0, high=DATA_HIGH),
    )
    if not timed:
        return fields
    nodes = n + 1
    return (
        *fields,
        DataField(
            "time_windows", (nodes, 2), "each node's (earliest, latest) service start", True, False, 0.0, DATA_HIGH
        ),
        DataField("service_times", (nodes,), "each node's service time", integral=True, low=0.0, high=DATA_HIGH),
        DataField("travel_times", (nodes, nodes), "the travel times between nodes", True, False, 0.0, DATA_HIGH),
    )


@dataclass(frozen=True)
class Timing:
    """Time windows: node ``i``'s service starts in ``[windows[i, 0], windows[i, 1]]`` (waiting
    is allowed) and takes ``service[i]``; going ``i -> j`` takes ``travel[i, j]``. The depot's
    window bounds when routes leave and return; its service time is spent before leaving."""

    windows: np.ndarray  # (n + 1, 2) int64
    service: np.ndarray  # (n + 1,) int64
    travel: np.ndarray  # (n + 1, n + 1) int64

    def why_infeasible(self) -> str | None:
        """Why no routing can meet the windows, when that shows from the data alone: an empty
        window, or a customer that even a route serving it alone reaches late or leaves too
        late to be back at the depot in time."""
        early, late = self.windows[:, 0], self.windows[:, 1]
        if (early > late).any():
            return EMPTY_TIME_WINDOW
        start = np.maximum(early[0] + self.service[0] + self.travel[0, 1:], early[1:])
        back = start + self.service[1:] + self.travel[1:, 0]
        if (start > late[1:]).any() or (back > late[0]).any():
            return TIME_WINDOW_UNREACHABLE
        return None

    def bounds(self, source: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
        """The bounds of :func:`arc_model`'s time rows (customer pairs ``source -> target``,
        1-based)."""
        early, late = self.windows[:, 0], self.windows[:, 1]
        return {
            "times": self.windows[1:].astype(np.float64),
            "travel": (self.service[source] + self.travel[source, target]).astype(np.float64),
            "departs": (early[0] + self.service[0] + self.travel[0, 1:]).astype(np.float64),
            "returns": (late[0] - self.service[1:] - self.travel[1:, 0]).astype(np.float64),
        }


@dataclass(frozen=True)
class Load:
    """One instance's data (the spec's unless the data give them) and why no routing can serve
    it, if that shows from the data alone."""

    demands: np.ndarray
    capacity: int
    timing: Timing | None
    why: str | None


class _Instance:
    def __init__(self, spec: VrpCpSatSpec | VrpHeuristicSpec) -> None:
        self.demands = np.asarray(spec.demands, dtype=np.int64)
        self.capacity = int(spec.capacity)
        self.vehicles = spec.n_vehicles
        self.timing = spec.timing()

    def read(self, data: Data) -> Load:
        demands = data["demands"].astype(np.int64) if "demands" in data else self.demands
        capacity = int(data["capacity"]) if "capacity" in data else self.capacity
        timing = self.timing
        if timing is not None and any(k in data for k in ("time_windows", "service_times", "travel_times")):
            timing = Timing(
                *(
                    data[k].astype(np.int64) if k in data else own
                    for k, own in zip(
                        ("time_windows", "service_times", "travel_times"),
                        (timing.windows, timing.service, timing.travel),
                        strict=True,
                    )
                )
            )
        why = None
        if (demands > capacity).any():
            why = DEMAND_ABOVE_CAPACITY
        elif self.vehicles is not None and int(demands.sum()) > self.vehicles * capacity:
            why = DEMAND_ABOVE_FLEET
        elif timing is not None:
            why = timing.why_infeasible()
        return Load(demands, capacity, timing, why)


def arc_model(
    n: int,
    demands: np.ndarray,
    capacity: int,
    n_vehicles: int | None,
    *,
    symmetric: bool,
    timing: Timing | None = None,
) -> tuple[cp_model.CpModel, Any, dict[str, Any]]:
    """The CP-SAT model of the CVRP, its cost variables (edge usages, or the ``(n + 1, n + 1)``
    arcs with constant-0 diagonal) and the data it declares: ``loads`` (each customer's load
    variable) and ``steps`` (the rows ``load_j - load_i >= demand_j`` in the order of the
    customer pairs ``(i, j)``, ``i != j``). With ``timing``, each customer's service start
    ``t_i`` too: ``times`` (the variables, in their windows), ``travel`` (``t_j - t_i >= s_i +
    T_ij`` when arc ``i -> j`` is used, customer pairs in the same order), ``departs`` (``t_j >=
    e_0 + s_0 + T_0j`` on a route's first customer) and ``returns`` (``t_i <= l_0 - s_i - T_i0``
    on its last)."""
    nodes = n + 1
    model = cp_model.CpModel()
    zero = model.new_constant(0)
    x = [[zero if i == j else model.new_bool_var(f"x{i}_{j}") for j in range(nodes)] for i in range(nodes)]
    model.add_multiple_circuit([(i, j, x[i][j]) for i in range(nodes) for j in range(nodes) if i != j])
    pairs = [(i, j) for i in range(1, nodes) for j in range(1, nodes) if i != j]
    loads = [model.new_int_var(int(demands[i - 1]), capacity, f"load{i}") for i in range(1, nodes)]
    steps = [model.add(loads[j - 1] - loads[i - 1] >= int(demands[j - 1])).only_enforce_if(x[i][j]) for i, j in pairs]
    if n_vehicles is not None:
        model.add(sum(x[0][1:]) <= n_vehicles)
    data: dict[str, Any] = {"loads": loads, "steps": steps} if steps else {"loads": loads}  # one customer: no pairs
    if timing is not None:
        source = np.array([i for i, _ in pairs], dtype=np.int64)
        target = np.array([j for _, j in pairs], dtype=np.int64)
        rows = timing.bounds(source, target)
        times = [model.new_int_var(int(lo), int(hi), f"t{i + 1}") for i, (lo, hi) in enumerate(rows["times"])]
        data["times"] = times
        if pairs:
            data["travel"] = [
                model.add(times[j - 1] - times[i - 1] >= int(k)).only_enforce_if(x[i][j])
                for (i, j), k in zip(pairs, rows["travel"], strict=True)
            ]
        data["departs"] = [
            model.add(times[j - 1] >= int(k)).only_enforce_if(x[0][j]) for j, k in enumerate(rows["departs"], 1)
        ]
        data["returns"] = [
            model.add(times[i - 1] <= int(k)).only_enforce_if(x[i][0]) for i, k in enumerate(rows["returns"], 1)
        ]
    if not symmetric:
        return model, x, data
    edges = []
    for i, j in zip(*np.triu_indices(nodes, 1)):
        y = model.new_int_var(0, 2 if i == 0 else 1, f"y{i}_{j}")
        model.add(y == x[i][j] + x[j][i])
        edges.append(y)
    return model, edges, data


def _timing(spec: VrpCpSatSpec | VrpHeuristicSpec) -> Timing | None:
    """The spec's time windows, service and travel times (None: none)."""
    if spec.time_windows is None or spec.service_times is None or spec.travel_times is None:
        return None
    return Timing(*(np.array(v, dtype=np.int64) for v in (spec.time_windows, spec.service_times, spec.travel_times)))


class VrpCpSatSolver(CpSatSolver):
    def __init__(self, spec: VrpCpSatSpec) -> None:
        super().__init__(spec)
        self.solver.parameters.linearization_level = 2
        self.instance = _Instance(spec)
        n = spec.n
        pairs = [(i, j) for i in range(1, n + 1) for j in range(1, n + 1) if i != j]
        self.source = np.array([i for i, _ in pairs], dtype=np.int64)
        self.target = np.array([j for _, j in pairs], dtype=np.int64)
        self.diagonal = None if spec.symmetric else np.arange(n + 1) * (n + 2)

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        load = self.instance.read(data)
        if load.why is not None:
            return statuses.no_decision(statuses.INFEASIBLE, load.why)
        if self.diagonal is not None:  # ignored: zeroed so that it cannot coarsen the scaling
            cost = cost.copy()
            cost[self.diagonal] = 0.0
        demands = load.demands
        bounds = {"loads": np.stack([demands, np.full(len(demands), load.capacity)], axis=1).astype(np.float64)}
        if len(self.target):
            bounds["steps"] = demands[self.target - 1].astype(np.float64)
        if load.timing is not None:
            bounds |= load.timing.bounds(self.source, self.target)
            if not len(self.target):
                del bounds["travel"]
        return super().solve(cost, time_limit, bounds)


@dataclass(frozen=True)
class VrpCpSatSpec(CpSatSpec):
    """The CP-SAT adapter's spec of :func:`arc_model`, taking demands and capacity as data."""

    resident_solver = VrpCpSatSolver  # type: ignore[assignment]  # a ClassVar the dataclass keeps
    n: int = 0
    demands: tuple[int, ...] = ()
    capacity: int = 0
    n_vehicles: int | None = None
    symmetric: bool = True
    time_windows: tuple[tuple[int, int], ...] | None = None
    service_times: tuple[int, ...] | None = None
    travel_times: tuple[tuple[int, ...], ...] | None = None

    timing = _timing

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        return vrp_equalities(self.n, symmetric=self.symmetric)


class VrpHeuristicSolver(ResidentSolver):
    """The heuristics' shared duties: potentials and integer scaling of the costs, the routes as
    a decision, statuses; :meth:`routes` is the search."""

    def __init__(self, spec: VrpHeuristicSpec) -> None:
        self.spec = spec
        self.n = spec.n
        self.nodes = spec.n + 1
        self.sign = -1.0 if spec.sense == "max" else 1.0
        self.instance = _Instance(spec)
        self.off_diagonal = ~np.eye(self.nodes, dtype=bool)
        self.edge = edge_index(self.nodes)

    def arc_costs(self, cost: np.ndarray) -> np.ndarray:
        """The ``(n + 1, n + 1)`` arc costs to minimise (diagonal 0)."""
        if self.spec.symmetric:
            arcs = np.zeros((self.nodes, self.nodes))
            iu, ju = np.triu_indices(self.nodes, 1)
            arcs[iu, ju] = arcs[ju, iu] = cost
        else:
            arcs = cost.reshape(self.nodes, self.nodes) * self.off_diagonal
        return self.sign * arcs

    def headroom_bits(self, load: Load) -> int:
        """How many bits any routing's integer length may take."""
        return ROUTING_HEADROOM_BITS

    def integer_arcs(self, arcs: np.ndarray, headroom_bits: int) -> tuple[np.ndarray, np.ndarray]:
        """Non-negative int64 arc costs with the same optimal routings (see the module's
        docstring), and each arc's bound on what the shift and the rounding moved it."""
        out = np.where(self.off_diagonal, arcs, np.inf).min(axis=1)
        u = np.maximum(-out, 0.0)
        u[0] = 0.0
        shifted_out = arcs + u[:, None]
        into = np.where(self.off_diagonal, shifted_out, np.inf).min(axis=0)
        v = np.maximum(-into, 0.0)
        v[0] = 0.0
        shifted = np.maximum((shifted_out + v[None, :]) * self.off_diagonal, 0.0)
        # Two float64 additions per arc: each rounds by at most half a unit in the last place.
        lost = np.spacing(np.abs(arcs) + u[:, None] + v[None, :] + shifted)
        exponent = scale_exponent(np.array([shifted.max()]), np.array([2.0 * self.n]), headroom_bits=headroom_bits)
        scaled = integer_costs(shifted, exponent)
        return scaled.coeffs * self.off_diagonal, (scaled.residual + lost) * self.off_diagonal

    @abc.abstractmethod
    def routes(
        self, arcs: np.ndarray, load: Load, time_limit: float | None
    ) -> tuple[list[list[int]] | None, str, bool]:
        """Routes (customer lists) for int64 ``arcs`` and the instance's ``load``, the solver's
        status word, and whether the solver proved them optimal."""
        raise NotImplementedError

    def decision(self, routes: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The decision of ``routes``, and their ``(n + 1, n + 1)`` arc usage."""
        used = np.zeros((self.nodes, self.nodes))
        for route in routes:
            path = [0, *route, 0]
            for a, b in itertools.pairwise(path):
                used[a, b] += 1.0
        if not self.spec.symmetric:
            return used.reshape(-1), used
        iu, ju = np.triu_indices(self.nodes, 1)
        return used[iu, ju] + used[ju, iu], used

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        load = self.instance.read(data)
        if load.why is not None:
            return statuses.no_decision(statuses.INFEASIBLE, load.why)
        arcs = self.arc_costs(cost)
        integer, residual = self.integer_arcs(arcs, self.headroom_bits(load))
        routes, word, optimal = self.routes(integer, load, time_limit)
        if routes is None:
            return statuses.no_decision(_NO_ROUTES.get(word, statuses.ERROR), word)
        y, used = self.decision(routes)
        # Against any other routing (at most 2n arcs): its own residuals and these routes'.
        error = float((residual * used).sum() + np.sort(residual, axis=None)[-2 * self.n :].sum())
        exact = optimal and proven(error, arcs[self.off_diagonal], used[self.off_diagonal])
        return Outcome(y, statuses.OPTIMAL if exact else statuses.FEASIBLE, word, 0.0, error)


# The common status of a heuristic that returned no routing, by its status word. A heuristic
# proves no infeasibility: without a routing its budget ran out ("time_limit").
_NO_ROUTES = {
    "ROUTING_INFEASIBLE": statuses.INFEASIBLE,  # proven by the routing solver's propagation
    "ROUTING_FAIL": statuses.TIME_LIMIT,
    "ROUTING_FAIL_TIMEOUT": statuses.TIME_LIMIT,
    "INTERRUPTED": statuses.INTERRUPTED,
    "NO_FEASIBLE_SOLUTION": statuses.TIME_LIMIT,
}


class RoutingVrpSolver(StoppableRouting, VrpHeuristicSolver):
    """OR-Tools routing: one vehicle per allowed route, a capacity dimension; the model is built
    per instance (a resident routing model carries search state from one solve to the next)."""

    def __init__(self, spec: VrpHeuristicSpec) -> None:
        super().__init__(spec)
        params = pywrapcp.DefaultRoutingSearchParameters()
        params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
        params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
        if spec.iterations is not None:
            params.solution_limit = spec.iterations
        self.params = params

    def routes(
        self, arcs: np.ndarray, load: Load, time_limit: float | None
    ) -> tuple[list[list[int]] | None, str, bool]:
        vehicles = self.n if self.spec.n_vehicles is None else min(self.spec.n_vehicles, self.n)
        seconds = time_limit if time_limit is not None else (None if self.spec.iterations else HEURISTIC_TIME_LIMIT)
        if seconds is None:
            self.params.ClearField("time_limit")
        else:
            self.params.time_limit.FromNanoseconds(max(int(seconds * 1e9), 1))
        manager = pywrapcp.RoutingIndexManager(self.nodes, vehicles, 0)
        routing = pywrapcp.RoutingModel(manager)
        routing.SetArcCostEvaluatorOfAllVehicles(routing.RegisterTransitMatrix(arcs.tolist()))
        carried = routing.RegisterUnaryTransitVector([0, *load.demands.tolist()])
        routing.AddDimensionWithVehicleCapacity(carried, 0, [load.capacity] * vehicles, True, "load")
        if load.timing is not None:
            self.time_dimension(manager, routing, load.timing, vehicles)
        solution = self.search(routing, self.params)
        if self.stopped:
            return None, "INTERRUPTED", False
        word = routing_enums_pb2.RoutingSearchStatus.Value.Name(routing.status())
        if solution is None:
            return None, word, False
        out = []
        for k in range(vehicles):
            index = solution.Value(routing.NextVar(routing.Start(k)))
            route = []
            while not routing.IsEnd(index):
                route.append(manager.IndexToNode(index))
                index = solution.Value(routing.NextVar(index))
            if route:
                out.append(route)
        return out, word, word == "ROUTING_OPTIMAL"

    @staticmethod
    def time_dimension(
        manager: pywrapcp.RoutingIndexManager, routing: pywrapcp.RoutingModel, timing: Timing, vehicles: int
    ) -> None:
        """Each node's service start in its window, ``s_i + T_ij`` from ``i`` to ``j``; the
        slack is the waiting."""
        transit = timing.service[:, None] + timing.travel
        np.fill_diagonal(transit, 0)
        horizon = int(timing.windows[:, 1].max())
        callback = routing.RegisterTransitMatrix(transit.tolist())
        routing.AddDimension(callback, horizon, horizon, False, "time")
        dimension = routing.GetDimensionOrDie("time")
        for node in range(1, len(transit)):
            early, late = timing.windows[node].tolist()
            dimension.CumulVar(manager.NodeToIndex(node)).SetRange(early, late)
        early, late = timing.windows[0].tolist()
        for k in range(vehicles):
            dimension.CumulVar(routing.Start(k)).SetRange(early, late)
            dimension.CumulVar(routing.End(k)).SetRange(early, late)


class _Stop:
    """PyVRP's stopping criterion: an iteration budget, a time limit, or an interrupt."""

    def __init__(self, iterations: int | None, deadline: float | None, flag: list[bool]) -> None:
        self.left = iterations
        self.deadline = deadline
        self.flag = flag

    def __call__(self, best_cost: float) -> bool:
        if self.flag[0]:
            return True
        if self.left is not None:
            self.left -= 1
            if self.left < 0:
                return True
        return self.deadline is not None and time.perf_counter() >= self.deadline


class PyVrpSolver(VrpHeuristicSolver):
    """PyVRP's iterated local search over a ``ProblemData`` of the instance's integer arcs."""

    def __init__(self, spec: VrpHeuristicSpec) -> None:
        super().__init__(spec)
        import pyvrp

        self.pyvrp = pyvrp
        self.locations = [pyvrp.Location(0, 0) for _ in range(self.nodes)]
        self.depots = [pyvrp.Depot(location=0)]
        self.zero = np.zeros((self.nodes, self.nodes), dtype=np.int64)
        self.flag = [False]

    def interrupt(self) -> None:
        self.flag[0] = True

    @staticmethod
    def load_scale(capacity: int) -> int:
        """The power of two that loads are multiplied by (exact: feasibility is unchanged)."""
        return 2 ** max(0, PYVRP_LOAD_BITS - max(capacity, 1).bit_length())

    @staticmethod
    def time_scale(timing: Timing | None) -> int:
        """The power of two that times are multiplied by (exact: feasibility is unchanged)."""
        if timing is None:
            return 2**PYVRP_TIME_BITS
        longest = max(int(timing.windows.max()), int(timing.service.max() + timing.travel.max()), 1)
        return 2 ** max(0, PYVRP_TIME_BITS - longest.bit_length())

    def headroom_bits(self, load: Load) -> int:
        unit_penalty = PYVRP_MAX_PENALTY * min(self.load_scale(load.capacity), self.time_scale(load.timing))
        return min(PYVRP_HEADROOM_BITS, math.floor(math.log2(unit_penalty / 10)))

    def routes(
        self, arcs: np.ndarray, load: Load, time_limit: float | None
    ) -> tuple[list[list[int]] | None, str, bool]:
        pyvrp = self.pyvrp
        vehicles = self.n if self.spec.n_vehicles is None else min(self.spec.n_vehicles, self.n)
        scale = self.load_scale(load.capacity)
        delivery = (load.demands * scale).tolist()
        timing = load.timing
        if timing is None:
            clients = [pyvrp.Client(location=i + 1, delivery=[d]) for i, d in enumerate(delivery)]
            depots, durations = self.depots, self.zero
            fleet = [pyvrp.VehicleType(num_available=vehicles, capacity=[load.capacity * scale])]
        else:
            ts = self.time_scale(timing)
            windows, service = (timing.windows * ts).tolist(), (timing.service * ts).tolist()
            clients = [
                pyvrp.Client(
                    location=i,
                    delivery=[delivery[i - 1]],
                    service_duration=service[i],
                    tw_early=windows[i][0],
                    tw_late=windows[i][1],
                )
                for i in range(1, self.nodes)
            ]
            early, late = windows[0]
            depots = [pyvrp.Depot(location=0, tw_early=early, tw_late=late, service_duration=service[0])]
            durations = timing.travel * ts * self.off_diagonal
            fleet = [
                pyvrp.VehicleType(
                    num_available=vehicles, capacity=[load.capacity * scale], tw_early=early, tw_late=late
                )
            ]
        data = pyvrp.ProblemData(self.locations, clients, depots, fleet, [arcs], [durations])
        seconds = time_limit if time_limit is not None else (None if self.spec.iterations else HEURISTIC_TIME_LIMIT)
        deadline = None if seconds is None else time.perf_counter() + seconds
        self.flag[0] = False
        result = pyvrp.solve(
            data, _Stop(self.spec.iterations, deadline, self.flag), seed=self.spec.seed, collect_stats=False
        )
        if self.flag[0]:
            return None, "INTERRUPTED", False
        best = result.best
        if not best.is_feasible():
            return None, "NO_FEASIBLE_SOLUTION", False
        routes = [[a.idx + 1 for a in route if a.is_client()] for route in best.routes()]
        return [r for r in routes if r], "FEASIBLE", False


@dataclass(frozen=True)
class VrpHeuristicSpec(ModelSpec):
    n: int
    sense: Sense
    method: str
    demands: tuple[int, ...]
    capacity: int
    n_vehicles: int | None
    symmetric: bool
    seed: int
    iterations: int | None
    time_windows: tuple[tuple[int, int], ...] | None = None
    service_times: tuple[int, ...] | None = None
    travel_times: tuple[tuple[int, ...], ...] | None = None
    fields: tuple[DataField, ...] = dataclasses.field(init=False)

    timing = _timing

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _fields(self.n, timed=self.time_windows is not None))

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        nodes = self.n + 1
        return (nodes * self.n // 2,) if self.symmetric else (nodes, nodes)

    def build(self) -> ResidentSolver:
        return PyVrpSolver(self) if self.method == "pyvrp" else RoutingVrpSolver(self)

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        return vrp_equalities(self.n, symmetric=self.symmetric)


def _integers(values: Any, name: str, *, where: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all() or (arr != np.round(arr)).any() or (arr < 0).any() or (arr > DATA_HIGH).any():
        raise ValueError(f"{where}: {name} must be integers in [0, 2^40], got {values!r}")
    return arr.astype(np.int64)


def _checked_timing(n: int, time_windows: Any, service_times: Any, travel_times: Any, *, where: str) -> Timing | None:
    """The constructor's time windows, service and travel times, checked; None without windows."""
    nodes = n + 1
    if time_windows is None:
        if service_times is not None or travel_times is not None:
            raise ValueError(f"{where}: service_times and travel_times apply only with time_windows")
        return None
    if travel_times is None:
        raise ValueError(f"{where}: time_windows need travel_times, an ({nodes}, {nodes}) matrix of integers")
    windows = _integers(time_windows, "time_windows", where=where)
    if windows.shape != (nodes, 2):
        raise ValueError(f"{where}: time_windows has shape {windows.shape}; expected ({nodes}, 2), the depot first")
    travel = _integers(travel_times, "travel_times", where=where)
    if travel.shape != (nodes, nodes):
        raise ValueError(f"{where}: travel_times has shape {travel.shape}; expected ({nodes}, {nodes})")
    service = (
        np.zeros(nodes, dtype=np.int64)
        if service_times is None
        else _integers(service_times, "service_times", where=where)
    )
    if service.shape != (nodes,):
        raise ValueError(f"{where}: service_times has shape {service.shape}; expected ({nodes},), the depot first")
    timing = Timing(windows, service, travel)
    why = timing.why_infeasible()
    if why == EMPTY_TIME_WINDOW:
        i = int(np.argmax(windows[:, 0] > windows[:, 1]))
        raise ValueError(f"{where}: node {i}'s time window {windows[i].tolist()} is empty (earliest after latest)")
    if why == TIME_WINDOW_UNREACHABLE:
        early, late = windows[:, 0], windows[:, 1]
        start = np.maximum(early[0] + service[0] + travel[0, 1:], early[1:])
        late_at = (start > late[1:]) | (start + service[1:] + travel[1:, 0] > late[0])
        i = int(np.argmax(late_at)) + 1
        raise ValueError(
            f"{where}: customer {i} cannot be served in its window {windows[i].tolist()} and back at the "
            f"depot by {int(late[0])}, even by a route serving it alone"
        )
    return timing


def vrp_spec(
    n_customers: int,
    capacity: Any,
    demands: Any,
    *,
    n_vehicles: int | None,
    method: str | None,
    symmetric: bool,
    sense: str,
    seed: int,
    iterations: int | None,
    time_windows: Any = None,
    service_times: Any = None,
    travel_times: Any = None,
    where: str,
) -> VrpCpSatSpec | VrpHeuristicSpec:
    n = check_size(n_customers, "n_customers", where=where)
    resolved = check_sense(sense, where=where)
    method = method or "exact"
    if method not in METHODS:
        raise ValueError(f"{where}: method={method!r} is not one of {', '.join(map(repr, METHODS))}")
    d = _integers(demands, "demands", where=where).reshape(-1)
    if len(d) != n:
        raise ValueError(f"{where}: demands has {len(d)} entries; expected one per customer ({n})")
    q = int(_integers(capacity, "capacity", where=where).reshape(-1)[0]) if np.ndim(capacity) == 0 else None
    if q is None:
        raise ValueError(f"{where}: capacity must be one integer (per-instance capacities go as data)")
    vehicles = None if n_vehicles is None else check_size(n_vehicles, "n_vehicles", where=where)
    if (d > q).any():
        i = int(np.argmax(d > q))
        raise ValueError(f"{where}: customer {i + 1}'s demand {d[i]} is above the capacity {q}")
    if vehicles is not None and int(d.sum()) > vehicles * q:
        raise ValueError(f"{where}: the total demand {int(d.sum())} is above n_vehicles * capacity = {vehicles * q}")
    timing = _checked_timing(n, time_windows, service_times, travel_times, where=where)
    timed: dict[str, Any] = {}
    if timing is not None:
        timed = {
            "time_windows": tuple(map(tuple, timing.windows.tolist())),
            "service_times": tuple(timing.service.tolist()),
            "travel_times": tuple(map(tuple, timing.travel.tolist())),
        }
    if method == "exact":
        if iterations is not None:
            raise ValueError(f"{where}: iterations applies only to the heuristics (method='routing' or 'pyvrp')")
        model, variables, data = arc_model(n, d, q, vehicles, symmetric=symmetric, timing=timing)
        base = cpsat_spec(model, declare(variables, cp_model.IntVar, resolved, data=data, where=where))
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.name != "fields"}
        return VrpCpSatSpec(
            **fields,
            fields=_fields(n, timed=timing is not None),
            n=n,
            demands=tuple(d.tolist()),
            capacity=q,
            n_vehicles=vehicles,
            symmetric=symmetric,
            **timed,
        )
    if method == "pyvrp":
        try:
            import pyvrp  # noqa: F401
        except ImportError:
            raise ImportError(f"{where}: method='pyvrp' needs PyVRP: pip install 'idproj_or[routing]'") from None
    budget = None if iterations is None else check_size(iterations, "iterations", where=where)
    return VrpHeuristicSpec(n, resolved, method, tuple(d.tolist()), q, vehicles, symmetric, int(seed), budget, **timed)
