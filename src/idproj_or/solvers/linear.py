"""OR-Tools linear solver adapter: any ``pywraplp.Solver`` (LP or MIP) with objective
``own(x) + sum(w * x)`` (``own``: the model's own objective, kept unless ``objective="replace"``).

Spec: the model's ``MPModelProto`` bytes (objective cleared, names dropped, integrality dropped
for LP backends, which solve the relaxation), the backend name, the proto indices of the cost
variables and the model's own objective as plain numbers. A worker parses it once; each solve
writes only the objective coefficients.

Each solve runs a fresh solver instance on the resident model, so that no state passes from
one instance to the next:

- backends that ``model_builder`` supports (SCIP, GLOP, PDLP, HiGHS, CP-SAT): a resident
  ``ModelBuilderHelper``, whose objective is set with one vectorised call, solved by a new
  ``ModelSolverHelper``;
- the others (CBC, CLP, BOP): a resident ``MPModelProto`` whose objective coefficients are
  overwritten in place, loaded into a new ``pywraplp.Solver`` and solved by its ``Solve`` with a
  zero relative MIP gap.

Why not keep a ``pywraplp.Solver`` and call ``Objective().SetCoefficient``: measured on OR-Tools
9.15, a resident pywraplp solver carries state from one solve to the next. GLOP and CLP warm
start from the previous basis, and SCIP reuses the previous solution when it is still optimal
(even with ``limits/maxorigsol = 0``): with tied costs the returned optimum depended on the
previous instance in 29/100 (GLOP) and 7/30 (SCIP) cases, which breaks the serial / pool parity
contract. The price of a fresh solver per solve, and why the per-variable SWIG calls
(``SetCoefficient``, ``solution_value``) are avoided, is measured in docs/benchmarks.md
("Design measurements").

These routes solve a MIP to a zero gap (``pywraplp.Solver.Solve`` defaults to a relative gap
of 1e-4).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp
from ortools.linear_solver.python import model_builder_helper as mbh

from .. import statuses
from ..checks import Declared, Sense, resolve_sense
from ..statuses import Outcome
from .base import NO_DATA, Data, LinearRows, ResidentSolver, cost_rows, dense_rows, repeat_rows
from .bounds import (
    INFEASIBLE_BOUNDS,
    UPPER,
    BoundField,
    Bounds,
    Change,
    DeclaredSpec,
    bound_fields,
    side_of,
    with_data,
)
from .certificate import OPEN_BOUND, choose_basis, mp_box, opened
from .scaling import beyond_range

# Backend name (as accepted by pywraplp.Solver.CreateSolver) -> MPModelRequest solver type.
_SOLVER_TYPE = {
    "SCIP": "SCIP_MIXED_INTEGER_PROGRAMMING",
    "CBC": "CBC_MIXED_INTEGER_PROGRAMMING",
    "SAT": "SAT_INTEGER_PROGRAMMING",
    "BOP": "BOP_INTEGER_PROGRAMMING",
    "HIGHS": "HIGHS_MIXED_INTEGER_PROGRAMMING",
    "GLOP": "GLOP_LINEAR_PROGRAMMING",
    "CLP": "CLP_LINEAR_PROGRAMMING",
    "PDLP": "PDLP_LINEAR_PROGRAMMING",
    "HIGHS_LP": "HIGHS_LINEAR_PROGRAMMING",
}
# One thread per solve (the pool provides the parallelism), no solver log, and Ctrl-C left to
# Python (CP-SAT and SCIP otherwise take SIGINT over and turn it into a FEASIBLE answer).
_SOLVER_PARAMETERS = {
    "SAT": "num_workers:1 catch_sigint_signal:false",
    "SCIP": "misc/catchctrlc = FALSE",
    "HIGHS": "output_flag = false\nthreads = 1",
    "HIGHS_LP": "output_flag = false\nthreads = 1",
    "PDLP": "num_threads: 1",
}
# Backend words (model_builder's SolveStatus and MPSolverResponseStatus share them) with a verdict.
_VERDICT = {
    "OPTIMAL": statuses.OPTIMAL,
    "FEASIBLE": statuses.FEASIBLE,
    "INFEASIBLE": statuses.INFEASIBLE,
    "UNBOUNDED": statuses.UNBOUNDED,
    "CANCELLED_BY_USER": statuses.INTERRUPTED,
}
# Words for a solve that stopped without a verdict (a limit, an interrupt, a failure).
_UNSETTLED = ("NOT_SOLVED", "UNKNOWN_STATUS", "ABNORMAL", "FEASIBLE", "OPTIMAL")
# LP backends whose duals and reduced costs OR-Tools 9.15 reports: its HiGHS interface gives row
# activities in place of HiGHS LP's duals (and model_builder no reduced costs), so HiGHS LP,
# like the MIP backends, reports binding constraints instead.
_DUAL_BACKENDS = ("GLOP", "CLP", "PDLP")
# A constraint is binding when its activity is within this fraction of its scale of a bound.
BINDING_TOLERANCE = 1e-9


class _Raw(NamedTuple):
    """What one route's solve gives: all variable values (or None), the backend's word, its
    bound on its own objective (NaN if none), and with duals requested, duals and reduced costs
    of every variable (None where the backend has none)."""

    values: np.ndarray | None
    word: str
    bound: float = math.nan
    duals: np.ndarray | None = None
    reduced_costs: np.ndarray | None = None


def detect_backend(solver: pywraplp.Solver, *, where: str) -> str:
    """The ``CreateSolver`` name of the backend behind ``solver``.

    pywraplp has no getter for the problem type, so this reads ``SolverVersion()``. In 9.15 the
    HiGHS interface reports PDLP's version string: a MIP is then HiGHS, and PDLP is told apart
    from HiGHS LP by ``InterruptSolve()``, which only PDLP supports (it does not affect the next
    solve).
    """
    version = solver.SolverVersion()
    is_mip = solver.IsMip()
    prefixes = {"SCIP": "SCIP", "Cbc": "CBC", "Clp": "CLP", "Glop": "GLOP", "CP-SAT": "SAT", "Bop": "BOP"}
    for prefix, name in prefixes.items():
        if version.startswith(prefix):
            return name
    if version.startswith("HiGHS") or (version.startswith("PDLP") and is_mip):
        return "HIGHS" if is_mip else "HIGHS_LP"
    if version.startswith("PDLP"):
        return "PDLP" if solver.InterruptSolve() else "HIGHS_LP"
    raise ValueError(f"{where}: unsupported pywraplp backend {version!r}; supported: {', '.join(sorted(_SOLVER_TYPE))}")


# Backends that take a solution hint (model_builder's): warm starts ship each instance's
# previous solution. Off by default: measured on a SCIP facility location, docs/warm_start.md.
_HINT_BACKENDS = ("SCIP", "SAT")
# LP backends whose optimal bases the basis certificate reads (from their duals and reduced
# costs, :func:`~idproj_or.solvers.certificate.choose_basis`). Off by default: measured on a 6x6
# grid shortest path, choosing a basis costs about one more solve, and it decided at most a
# third of the instances in 4 epochs (docs/warm_start.md).
_BASIS_BACKENDS = ("GLOP", "CLP")


class LinearSolver(ResidentSolver):
    check_unbounded = True

    def __init__(self, spec: LinearSpec) -> None:
        proto = spec.proto()
        index = np.asarray(spec.var_index, dtype=np.int64)
        own = np.asarray(spec.own_vars, dtype=np.int64)
        self.index = index
        # The objective's variables: the cost variables and those of the model's own objective.
        self.unique, inverse = np.unique(np.concatenate([index, own]), return_inverse=True)
        self.inverse = inverse[: len(index)]
        self.own = np.zeros(len(self.unique))
        np.add.at(self.own, inverse[len(index) :], np.asarray(spec.own_coeffs, dtype=np.float64))
        self.own_offset = spec.own_offset
        self.unique_list: list[int] = self.unique.tolist()
        # Without repeated variables or an own objective the costs go to the solver as they are;
        # otherwise they are summed per variable onto the own coefficients.
        self.aggregate = len(self.unique) < len(index) or len(own) > 0
        self.index_list: list[int] = index.tolist()
        self.backend = spec.backend
        self.parameters = _SOLVER_PARAMETERS.get(spec.backend, "")
        integer = np.array([var.is_integer for var in proto.variable], dtype=bool) & spec.is_mip
        self.integer = integer
        self.round = integer[index]
        self.is_mip = spec.is_mip
        self.has_duals = spec.backend in _DUAL_BACKENDS
        # The rows as (row of each entry, variable, coefficient), and their current bounds.
        self.rows = np.repeat(np.arange(len(proto.constraint)), [len(ct.var_index) for ct in proto.constraint])
        self.cols = np.array([v for ct in proto.constraint for v in ct.var_index], dtype=np.int64)
        self.coefs = np.array([a for ct in proto.constraint for a in ct.coefficient], dtype=np.float64)
        self.row_lower = np.array([ct.lower_bound for ct in proto.constraint], dtype=np.float64)
        self.row_upper = np.array([ct.upper_bound for ct in proto.constraint], dtype=np.float64)
        self.var_lower = np.array([var.lower_bound for var in proto.variable], dtype=np.float64)
        self.var_upper = np.array([var.upper_bound for var in proto.variable], dtype=np.float64)
        self.takes_hints = spec.backend in _HINT_BACKENDS
        self.hinted = False
        # The basis certificate's view of the model, when warm states carry optimal bases.
        self.box = spec.box if spec.box is not None and spec.box.basis else None
        self.bounds = Bounds(spec.bounds, [_own_bounds(proto, f) for f in spec.bounds]) if spec.bounds else None
        self.helper: Any = None
        self._active: Any = None  # the model_builder solver of the solve in progress
        self._interrupted = False
        if mbh.ModelSolverHelper(spec.backend).solver_is_supported():
            # model_builder reads protos only from files.
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.pb")
                with open(path, "wb") as f:
                    f.write(spec.model)
                self.helper = mbh.ModelBuilderHelper()
                if not self.helper.read_model_from_proto_file(path):
                    raise RuntimeError(f"LinearSolver: model_builder could not read the {spec.backend} model")
            self.maximize = proto.maximize
        else:
            self.model = proto
            self.variables = proto.variable
            self.problem_type = getattr(pywraplp.Solver, _SOLVER_TYPE[spec.backend])
            # Solve's default relative MIP gap is 1e-4: solve to optimality.
            self.mp_parameters = pywraplp.MPSolverParameters()
            if spec.is_mip:
                self.mp_parameters.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 0.0)

    def interrupt(self) -> None:
        self._interrupted = True
        active = self._active
        if isinstance(active, pywraplp.Solver):
            active.InterruptSolve()  # BOP stops; CBC and CLP cannot, and finish the instance
        elif active is not None:
            active.interrupt_solve()

    def _write(self, change: Change) -> None:
        """Set the bounds of the entries that change, in the resident model of the route."""
        field = change.field
        index = np.asarray(field.index)[change.positions]
        # A bound of magnitude >= 1e20 is infinite, as HiGHS, CPLEX and Gurobi read it: passed as
        # given, GLOP stops ABNORMAL and PDLP returns a point outside the row, labelled OPTIMAL.
        lower = np.where(change.lower <= -OPEN_BOUND, -math.inf, change.lower)
        upper = np.where(change.upper >= OPEN_BOUND, math.inf, change.upper)
        change = change._replace(lower=lower, upper=upper)
        if field.variables:
            self.var_lower[index], self.var_upper[index] = change.lower, change.upper
        else:
            self.row_lower[index], self.row_upper[index] = change.lower, change.upper
        if self.helper is not None:
            set_lower = self.helper.set_var_lower_bound if field.variables else self.helper.set_constraint_lower_bound
            set_upper = self.helper.set_var_upper_bound if field.variables else self.helper.set_constraint_upper_bound
            for i, lo, hi in zip(index.tolist(), change.lower.tolist(), change.upper.tolist()):
                set_lower(i, lo)
                set_upper(i, hi)
        else:
            entries = self.model.variable if field.variables else self.model.constraint
            for i, lo, hi in zip(index.tolist(), change.lower.tolist(), change.upper.tolist()):
                entries[i].lower_bound, entries[i].upper_bound = lo, hi

    def binding(self, values: np.ndarray) -> np.ndarray:
        """Per constraint: its activity at ``values`` (integer variables rounded) is within
        ``BINDING_TOLERANCE`` times its scale (1, the bound, the sum of its terms' magnitudes)
        of a finite bound."""
        x = np.where(self.integer, np.rint(values), values)
        terms = self.coefs * x[self.cols]
        m = len(self.row_lower)
        activity = np.bincount(self.rows, weights=terms, minlength=m)
        magnitude = np.bincount(self.rows, weights=np.abs(terms), minlength=m)
        out = np.zeros(m, dtype=bool)
        for bound in (self.row_lower, self.row_upper):
            finite = np.isfinite(bound)
            scale = np.maximum(np.maximum(1.0, magnitude), np.abs(np.where(finite, bound, 0.0)))
            out |= finite & (np.abs(activity - bound) <= BINDING_TOLERANCE * scale)
        return out

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        if self.bounds is not None:
            for change in self.bounds.update(data):
                self._write(change)
            if self.bounds.crossed():  # pywraplp refuses to load crossed bounds
                return statuses.no_decision(statuses.INFEASIBLE, INFEASIBLE_BOUNDS)
        if self.aggregate:
            indices = self.unique_list
            coeffs = (self.own + np.bincount(self.inverse, weights=cost, minlength=len(self.unique))).tolist()
        else:
            indices, coeffs = self.index_list, cost.tolist()
        self._interrupted = False
        t0 = time.perf_counter()
        if self.helper is not None:
            raw = self._solve_model_builder(indices, coeffs, time_limit)
        else:
            raw = self._solve_pywraplp(indices, coeffs, time_limit)
        elapsed = time.perf_counter() - t0
        word = raw.word
        if self._interrupted:
            return statuses.no_decision(statuses.INTERRUPTED, word)
        common = _VERDICT.get(word, statuses.ERROR)
        values = raw.values
        if common in statuses.SOLVED and values is not None:
            fixed = float(self.own @ values[self.unique]) + self.own_offset if len(self.own) else 0.0
            x = values[self.index]
            # "+ 0.0" turns the -0.0 some solvers report into 0.0.
            x[self.round] = np.rint(x[self.round]) + 0.0
            error = 0.0
            if common == statuses.OPTIMAL and beyond_range(np.asarray(coeffs)):
                common, error = statuses.FEASIBLE, math.inf
            reduced = None if raw.reduced_costs is None else raw.reduced_costs[self.index]
            binding = self.binding(values) if self.duals_requested and not self.has_duals else None
            bound = raw.bound + self.own_offset
            warm = self._state(values, raw) if self.warm_requested else None
            duals = raw.duals if self.duals_requested else None
            reduced = reduced if self.duals_requested else None
            return Outcome(x, common, word, fixed, error, bound, duals, reduced, binding, warm)
        if word in _UNSETTLED:
            common = statuses.unsolved(time_limit, elapsed)
        return statuses.no_decision(common, word)

    def _state(self, values: np.ndarray, raw: _Raw) -> np.ndarray | None:
        """What a warm start keeps of this solve: every variable's value, and for the basis
        certificate an optimal basis there (all-zero when none is found)."""
        if self.box is None:
            return values if self.takes_hints else None
        if raw.duals is None or raw.reduced_costs is None:
            return None
        activity = np.bincount(self.rows, weights=self.coefs * values[self.cols], minlength=len(self.row_lower))
        mask = choose_basis(
            self.box.columns,
            np.concatenate([values, activity]),
            np.concatenate([self.var_lower, self.row_lower]),
            np.concatenate([self.var_upper, self.row_upper]),
            np.concatenate([raw.reduced_costs, raw.duals]),
        )
        basic = np.zeros(len(values) + len(activity)) if mask is None else mask.astype(np.float64)
        return np.concatenate([values, basic])

    def _solve_model_builder(self, indices: list[int], coeffs: list[float], time_limit: float | None) -> _Raw:
        helper = self.helper
        # set_objective_coefficients skips zero coefficients (keeps the previous value), so
        # clear first.
        helper.clear_objective()
        if self.hinted:
            helper.clear_hints()
            self.hinted = False
        if self.hint is not None and self.takes_hints:
            for i, v in enumerate(self.hint.tolist()):
                helper.add_hint(i, v)
            self.hinted = True
        helper.set_maximize(self.maximize)
        helper.set_objective_coefficients(indices, coeffs)
        # A new solver helper per solve: a reused one keeps state (CP-SAT then reports its time
        # limit reached on the second solve).
        solver = mbh.ModelSolverHelper(self.backend)
        if self.parameters:
            solver.set_solver_specific_parameters(self.parameters)
        if time_limit is not None:
            solver.set_time_limit_in_seconds(float(time_limit))
        self._active = solver
        try:
            solver.solve(helper)
        finally:
            self._active = None
        status = solver.status().name
        if not solver.has_solution():
            return _Raw(None, status)
        # The arrays are views into the solver's memory: copy them while it lives.
        values = np.array(solver.variable_values(), dtype=np.float64)
        # An LP's bound is its objective (model_builder reports 0 for GLOP and PDLP).
        bound = solver.best_objective_bound() if self.is_mip else solver.objective_value()
        if not (self._wants_duals() and self.has_duals):
            return _Raw(values, status, bound)
        duals = np.array(solver.dual_values(), dtype=np.float64)
        return _Raw(values, status, bound, duals, np.array(solver.reduced_costs(), dtype=np.float64))

    def _wants_duals(self) -> bool:
        return self.duals_requested or (self.warm_requested and self.box is not None)

    def _solve_pywraplp(self, indices: list[int], coeffs: list[float], time_limit: float | None) -> _Raw:
        variables = self.variables
        for i, c in zip(indices, coeffs):
            variables[i].objective_coefficient = c
        # pywraplp's own Solve (unlike SolveWithProto) releases the GIL, so that a Ctrl-C is
        # seen while CBC or CLP runs, and BOP can be interrupted; a fresh solver per instance.
        solver = pywraplp.Solver("", self.problem_type)
        error = solver.LoadModelFromProto(self.model)
        if error:
            raise RuntimeError(f"LinearSolver: {self.backend} could not load the model: {error}")
        if self.parameters:
            solver.SetSolverSpecificParametersAsString(self.parameters)
        if time_limit is not None:
            solver.SetTimeLimit(math.ceil(float(time_limit) * 1000))
        self._active = solver
        try:
            solver.Solve(self.mp_parameters)
        finally:
            self._active = None
        response = linear_solver_pb2.MPSolutionResponse()
        solver.FillSolutionResponseProto(response)
        status = linear_solver_pb2.MPSolverResponseStatus.Name(response.status).removeprefix("MPSOLVER_")
        if not len(response.variable_value):
            return _Raw(None, status)
        values = np.array(response.variable_value, dtype=np.float64)
        bound = response.best_objective_bound if self.is_mip else response.objective_value
        if not (self._wants_duals() and self.has_duals):
            return _Raw(values, status, bound)
        duals = np.array(response.dual_value, dtype=np.float64)
        return _Raw(values, status, bound, duals, np.array(response.reduced_cost, dtype=np.float64))


@dataclass(frozen=True)
class LinearSpec(DeclaredSpec):
    resident_solver = LinearSolver
    # SCIP can ignore stop requests for seconds and CBC/CLP cannot be stopped: a helper thread
    # keeps Ctrl-C prompt (the hand-off, ~0.2 ms a call, is small beside a fresh solver per solve)
    model: bytes  # serialized MPModelProto, objective cleared, direction set from ``sense``
    backend: str  # pywraplp.Solver.CreateSolver name, e.g. "SCIP"
    var_index: tuple[int, ...]  # proto index of each cost entry (flattened)
    shape: tuple[int, ...]
    sense: Sense
    is_mip: bool

    @property
    def warm_start(self) -> bool | None:
        if self.backend in _BASIS_BACKENDS:
            return False if self.box is not None and self.box.basis else None
        return False if self.backend in _HINT_BACKENDS else None

    def proto(self) -> linear_solver_pb2.MPModelProto:
        proto = linear_solver_pb2.MPModelProto()
        proto.ParseFromString(self.model)
        return proto

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        return linear_equalities(self.proto(), np.asarray(self.var_index), self.bounds)

    def linear_rows(self, data: Data = NO_DATA) -> LinearRows:
        return mp_linear_rows(self.proto(), np.asarray(self.var_index), self.bounds, data)


def mp_linear_rows(
    proto: linear_solver_pb2.MPModelProto,
    var_index: np.ndarray,
    bounds: Sequence[BoundField] = (),
    data: Data = NO_DATA,
) -> LinearRows:
    """The model's linear description over the cost variables (CaVE), with one instance's
    ``data``: its constraints and variable bounds (a magnitude of 1e20 or more is infinite, as
    for the solvers). A general constraint (indicator, SOS, ...) is a ValueError that names it."""
    if len(proto.general_constraint):
        kind = proto.general_constraint[0].WhichOneof("general_constraint")
        raise ValueError(
            f"general constraint 0 of the model is a {kind} constraint; CaVE reads linear constraints only"
        )

    # the bounds of the constraints (key False) and of the variables (key True), in model order
    rows = {
        kind: (np.array([e.lower_bound for e in entries]), np.array([e.upper_bound for e in entries]))
        for kind, entries in ((False, proto.constraint), (True, proto.variable))
    }
    if data:
        rows = with_data(bounds, rows, data)
    lower, upper = (opened(a) for a in rows[False])
    terms = [
        (_sum_terms(ct.var_index, ct.coefficient), float(lo), float(hi))
        for ct, lo, hi in zip(proto.constraint, lower, upper)
    ]
    return cost_rows(
        var_index, terms, opened(rows[True][0]), opened(rows[True][1]), lambda k: f"constraint {k} of the model"
    )


def _sum_terms(variables: Sequence[int], coefficients: Sequence[float]) -> dict[int, float]:
    out: dict[int, float] = {}
    for v, c in zip(variables, coefficients):
        out[v] = out.get(v, 0.0) + float(c)
    return out


def linear_equalities(
    proto: linear_solver_pb2.MPModelProto, var_index: np.ndarray, bounds: Sequence[BoundField] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Equalities over cost variables that the model states.

    Sources: constraints with ``lower_bound == upper_bound`` whose variables are all cost
    variables, fixed cost variables (``lb == ub``), and repeated cost variables (``y_j = y_k``);
    not the constraints and variables named in ``bounds`` (an instance's data may make them
    ranges).
    """
    n = len(var_index)
    first, rows = repeat_rows(var_index)
    data_rows = {i for f in bounds if not f.variables for i in f.index}
    data_vars = {i for f in bounds if f.variables for i in f.index}
    for v, pos in first.items():
        var = proto.variable[v]
        if var.lower_bound == var.upper_bound and v not in data_vars:
            rows.append(({pos: 1.0}, float(var.lower_bound)))
    for k, ct in enumerate(proto.constraint):
        if ct.lower_bound != ct.upper_bound or not np.isfinite(ct.lower_bound) or k in data_rows:
            continue
        row: dict[int, float] = {}
        for var, coef in zip(ct.var_index, ct.coefficient):
            if var not in first:
                break
            row[first[var]] = row.get(first[var], 0.0) + float(coef)
        else:
            rows.append((row, float(ct.lower_bound)))
    return dense_rows(rows, n)


def linear_spec(solver: pywraplp.Solver, declared: Declared) -> LinearSpec:
    """The spec of a pywraplp model over the cost variables of ``declared``."""
    where, arr = declared.where, declared.variables
    if not isinstance(solver, pywraplp.Solver):
        raise TypeError(
            f"{where}: solver must be an ortools.linear_solver.pywraplp.Solver, got {type(solver).__name__}"
        )
    n_vars = solver.NumVariables()
    index: list[int] = []
    for pos, v in enumerate(arr.reshape(-1).tolist()):
        i = v.index()
        # A variable of another solver can have a valid index: compare the C++ objects.
        if not (0 <= i < n_vars and int(solver.variable(i).this) == int(v.this)):
            raise ValueError(f"{where}: variables[{pos}] ({v.name()!r}) is not a variable of this solver")
        index.append(i)
    backend = detect_backend(solver, where=where)
    is_mip = bool(solver.IsMip())
    proto = linear_solver_pb2.MPModelProto()
    solver.ExportModelToProto(proto)
    bounds = bound_fields(declared.data, functools.partial(_identify, solver, proto, where=where), where=where)
    return spec_from_proto(proto, index, backend, is_mip, declared, bounds)


def spec_from_proto(
    proto: linear_solver_pb2.MPModelProto,
    index: list[int],
    backend: str,
    is_mip: bool,
    declared: Declared,
    bounds: Any,
) -> LinearSpec:
    """The resident spec of ``proto`` (modified; from pywraplp, MathOpt or model_builder): its own
    objective split off, names dropped."""
    where, objective = declared.where, declared.objective
    check_backend_takes_the_variables(proto, backend, where=where)
    if objective == "keep" and proto.HasField("quadratic_objective") and len(proto.quadratic_objective.coefficient):
        raise ValueError(
            f"{where}: the model's objective has a quadratic part, which the layer cannot keep (it "
            "differentiates a linear objective); pass objective='replace' to solve the predicted term alone"
        )
    keep = objective == "keep"
    terms = {i: var.objective_coefficient for i, var in enumerate(proto.variable) if keep and var.objective_coefficient}
    offset = proto.objective_offset if keep else 0.0
    own_sense: Sense = "max" if proto.maximize else "min"
    resolved = resolve_sense(declared.sense, own_sense, has_own=bool(terms), where=where)
    proto.ClearField("name")
    proto.ClearField("objective_offset")
    proto.ClearField("quadratic_objective")
    proto.ClearField("solution_hint")
    proto.maximize = resolved == "max"
    for var in proto.variable:
        var.ClearField("name")
        var.ClearField("objective_coefficient")
        if not is_mip:
            # An LP backend solves the relaxation; PDLP rejects integer variables outright.
            var.is_integer = False
    for ct in proto.constraint:
        ct.ClearField("name")
    box = mp_box(proto, index, terms, offset, resolved, bounds, is_mip=is_mip, basis=backend in _BASIS_BACKENDS)
    return LinearSpec(
        proto.SerializeToString(deterministic=True),
        backend,
        tuple(index),
        tuple(declared.variables.shape),
        resolved,
        is_mip,
        own_vars=tuple(terms),
        own_coeffs=tuple(float(c) for c in terms.values()),
        own_offset=float(offset),
        bounds=bounds,
        fields=tuple(f.field(integral=False, low=-math.inf, high=math.inf, infinite=True) for f in bounds),
        box=box,
    )


def _identify(
    solver: pywraplp.Solver, proto: linear_solver_pb2.MPModelProto, name: str, pos: int, item: Any, *, where: str
) -> tuple[bool, int, int]:
    """A data entry as (a variable?, proto index, side): a constraint or variable of ``solver``."""
    at = f"{where}: data {name!r}[{pos}]"
    # An object of another solver can have a valid index: compare the C++ objects.
    if isinstance(item, pywraplp.Variable):
        i = item.index()
        if not (0 <= i < solver.NumVariables() and int(solver.variable(i).this) == int(item.this)):
            raise ValueError(f"{at} ({item.name()!r}) is not a variable of this solver")
        return True, i, UPPER
    if isinstance(item, pywraplp.Constraint):
        i = item.index()
        if not (0 <= i < solver.NumConstraints() and int(solver.constraint(i).this) == int(item.this)):
            raise ValueError(f"{at} ({item.name()!r}) is not a constraint of this solver")
        ct = proto.constraint[i]
        return False, i, side_of(ct.lower_bound, ct.upper_bound, low_inf=-math.inf, high_inf=math.inf)
    raise ValueError(
        f"{at} is a {type(item).__name__}; expected a constraint (solver.Add(...)) or a variable of the solver"
    )


def _own_bounds(proto: linear_solver_pb2.MPModelProto, field: BoundField) -> tuple[np.ndarray, np.ndarray]:
    entries = proto.variable if field.variables else proto.constraint
    lower = np.array([entries[i].lower_bound for i in field.index], dtype=np.float64)
    return lower, np.array([entries[i].upper_bound for i in field.index], dtype=np.float64)


def check_backend_takes_the_variables(proto: linear_solver_pb2.MPModelProto, backend: str, *, where: str) -> None:
    """BOP takes Boolean models only (a continuous variable fails at the first solve, ABNORMAL),
    and OR-Tools' SAT backend solves continuous variables only approximately (it returns worse
    objectives than SCIP labelled OPTIMAL): refuse both before any solve."""
    if backend not in ("BOP", "SAT"):
        return
    for i, var in enumerate(proto.variable):
        if not var.is_integer:
            name = var.name or f"#{i}"
            why = (
                "BOP solves Boolean models only"
                if backend == "BOP"
                else "OR-Tools' SAT backend solves continuous variables only approximately and can "
                "label a worse decision optimal"
            )
            raise ValueError(
                f"{where}: variable {name!r} is continuous and {why}; create the solver with SCIP, "
                "HIGHS or CBC (pywraplp.Solver.CreateSolver('SCIP')), or make the variable integer"
            )
