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

import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp
from ortools.linear_solver.python import model_builder_helper as mbh

from .. import statuses
from ..checks import ObjectiveMode, Sense, as_variable_array, check_objective_mode, resolve_sense
from ..statuses import Outcome
from .base import NO_DATA, Data, ModelSpec, ResidentSolver, dense_rows, repeat_rows
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
        integer = np.array([proto.variable[i].is_integer for i in index.tolist()], dtype=bool)
        self.round = integer if spec.is_mip else np.zeros(len(index), dtype=bool)
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

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        if self.aggregate:
            indices = self.unique_list
            coeffs = (self.own + np.bincount(self.inverse, weights=cost, minlength=len(self.unique))).tolist()
        else:
            indices, coeffs = self.index_list, cost.tolist()
        self._interrupted = False
        t0 = time.perf_counter()
        if self.helper is not None:
            x, word = self._solve_model_builder(indices, coeffs, time_limit)
        else:
            x, word = self._solve_pywraplp(indices, coeffs, time_limit)
        elapsed = time.perf_counter() - t0
        if self._interrupted:
            return statuses.no_decision(statuses.INTERRUPTED, word)
        common = _VERDICT.get(word, statuses.ERROR)
        if common in statuses.SOLVED and x is not None:
            fixed = float(self.own @ x[self.unique]) + self.own_offset if len(self.own) else 0.0
            x = x[self.index]
            # "+ 0.0" turns the -0.0 some solvers report into 0.0.
            x[self.round] = np.rint(x[self.round]) + 0.0
            if common == statuses.OPTIMAL and beyond_range(np.asarray(coeffs)):
                return Outcome(x, statuses.FEASIBLE, word, fixed, math.inf)
            return Outcome(x, common, word, fixed)
        if word in _UNSETTLED:
            common = statuses.unsolved(time_limit, elapsed)
        return statuses.no_decision(common, word)

    def _solve_model_builder(
        self, indices: list[int], coeffs: list[float], time_limit: float | None
    ) -> tuple[np.ndarray | None, str]:
        helper = self.helper
        # set_objective_coefficients skips zero coefficients (keeps the previous value), so
        # clear first.
        helper.clear_objective()
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
            return None, status
        # variable_values() is a view into the solver's memory: copy it while it lives.
        return np.array(solver.variable_values(), dtype=np.float64), status

    def _solve_pywraplp(
        self, indices: list[int], coeffs: list[float], time_limit: float | None
    ) -> tuple[np.ndarray | None, str]:
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
            return None, status
        return np.array(response.variable_value, dtype=np.float64), status


@dataclass(frozen=True)
class LinearSpec(ModelSpec):
    resident_solver = LinearSolver
    # SCIP can ignore stop requests for seconds and CBC/CLP cannot be stopped: a helper thread
    # keeps Ctrl-C prompt (the hand-off, ~0.2 ms a call, is small beside a fresh solver per solve)
    model: bytes  # serialized MPModelProto, objective cleared, direction set from ``sense``
    backend: str  # pywraplp.Solver.CreateSolver name, e.g. "SCIP"
    var_index: tuple[int, ...]  # proto index of each cost entry (flattened)
    shape: tuple[int, ...]
    sense: Sense
    is_mip: bool
    # The model's own objective, own(x) = sum(own_coeffs * x[own_vars]) + own_offset (kept).
    own_vars: tuple[int, ...] = ()
    own_coeffs: tuple[float, ...] = ()
    own_offset: float = 0.0

    def proto(self) -> linear_solver_pb2.MPModelProto:
        proto = linear_solver_pb2.MPModelProto()
        proto.ParseFromString(self.model)
        return proto

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        return linear_equalities(self.proto(), np.asarray(self.var_index))


def linear_equalities(proto: linear_solver_pb2.MPModelProto, var_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equalities over cost variables that the model states.

    Sources: constraints with ``lower_bound == upper_bound`` whose variables are all cost
    variables, fixed cost variables (``lb == ub``), and repeated cost variables (``y_j = y_k``).
    """
    n = len(var_index)
    first, rows = repeat_rows(var_index)
    for v, pos in first.items():
        var = proto.variable[v]
        if var.lower_bound == var.upper_bound:
            rows.append(({pos: 1.0}, float(var.lower_bound)))
    for ct in proto.constraint:
        if ct.lower_bound != ct.upper_bound or not np.isfinite(ct.lower_bound):
            continue
        row: dict[int, float] = {}
        for var, coef in zip(ct.var_index, ct.coefficient):
            if var not in first:
                break
            row[first[var]] = row.get(first[var], 0.0) + float(coef)
        else:
            rows.append((row, float(ct.lower_bound)))
    return dense_rows(rows, n)


def linear_spec(
    solver: pywraplp.Solver,
    variables: Any,
    sense: str | None,
    *,
    objective: ObjectiveMode = "keep",
    where: str,
) -> LinearSpec:
    if not isinstance(solver, pywraplp.Solver):
        raise TypeError(
            f"{where}: solver must be an ortools.linear_solver.pywraplp.Solver, got {type(solver).__name__}"
        )
    objective = check_objective_mode(objective, where=where)
    arr = as_variable_array(variables, pywraplp.Variable, where=where)
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
    _check_backend_takes_the_variables(proto, backend, where=where)
    if objective == "keep" and proto.HasField("quadratic_objective") and len(proto.quadratic_objective.coefficient):
        raise ValueError(
            f"{where}: the model's objective has a quadratic part, which the layer cannot keep (it "
            "differentiates a linear objective); pass objective='replace' to solve the predicted term alone"
        )
    terms = {}
    if objective == "keep":
        terms = {i: var.objective_coefficient for i, var in enumerate(proto.variable) if var.objective_coefficient}
    offset = proto.objective_offset if objective == "keep" else 0.0
    declared: Sense = "max" if solver.Objective().maximization() else "min"
    resolved = resolve_sense(sense, declared, has_own=bool(terms), where=where)
    proto.ClearField("name")
    proto.ClearField("objective_offset")
    proto.ClearField("quadratic_objective")
    proto.maximize = resolved == "max"
    for var in proto.variable:
        var.ClearField("name")
        var.ClearField("objective_coefficient")
        if not is_mip:
            # An LP backend solves the relaxation; PDLP rejects integer variables outright.
            var.is_integer = False
    for ct in proto.constraint:
        ct.ClearField("name")
    return LinearSpec(
        proto.SerializeToString(deterministic=True),
        backend,
        tuple(index),
        tuple(arr.shape),
        resolved,
        is_mip,
        tuple(terms),
        tuple(float(c) for c in terms.values()),
        float(offset),
    )


def _check_backend_takes_the_variables(proto: linear_solver_pb2.MPModelProto, backend: str, *, where: str) -> None:
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
