"""OR-Tools CP-SAT adapter: any ``CpModel`` with objective ``sum(w * x)`` over chosen variables.

Spec: the model's proto in text format (objective removed) plus the proto indices of the cost
variables. A worker parses it once; each solve rewrites only the objective coefficients.

CP-SAT optimises integer objectives, so each instance's float cost is scaled so that its largest
magnitude maps to ``RESOLUTION`` and rounded. "Optimal" means optimal for the rounded cost; its
true objective is within ``max|w| * sum_j max|x_j| / RESOLUTION`` of the true optimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from .. import statuses
from ..checks import Sense, as_variable_array, check_sense
from ..statuses import Outcome
from .base import ModelSpec, ResidentSolver, dense_rows, repeat_rows

RESOLUTION = 2**20  # largest |cost| of an instance becomes +-1,048,576 (>= 1e6)
# CP-SAT rejects objectives whose bound may leave int64; keep a wide margin.
_OBJECTIVE_BOUND = 2**62


def _declared_sense(proto: Any) -> Sense:
    if proto.has_floating_point_objective():
        return "max" if proto.floating_point_objective.maximize else "min"
    if proto.has_objective() and proto.objective.scaling_factor < 0:
        return "max"
    return "min"


class CpSatSolver(ResidentSolver):
    def __init__(self, spec: CpSatSpec) -> None:
        self.model = cp_model.CpModel()
        self.model.proto.parse_text_format(spec.proto_text)
        index = np.asarray(spec.var_index, dtype=np.int64)
        self.unique, self.inverse = np.unique(index, return_inverse=True)
        self.index = index
        objective = self.model.proto.objective
        objective.vars.extend(self.unique.tolist())
        self.coeffs = objective.coeffs
        self.sign = -1.0 if spec.sense == "max" else 1.0
        self.solver = cp_model.CpSolver()
        self.solver.parameters.num_workers = 1
        self.solver.parameters.random_seed = 0
        # The default (True) replaces the process's SIGINT handler for good: Ctrl-C then kills
        # Python outright, and one landing mid-solve turns into a FEASIBLE answer.
        self.solver.parameters.catch_sigint_signal = False
        self._time_limit: float | None = None
        self._interrupted = False

    def interrupt(self) -> None:
        self._interrupted = True
        self.solver.stop_search()

    def solve(self, cost: np.ndarray, time_limit: float | None) -> Outcome:
        peak = float(np.abs(cost).max())
        scaled = np.rint(cost * (self.sign * RESOLUTION / peak)) if peak > 0 else np.zeros_like(cost)
        coeffs = np.bincount(self.inverse, weights=scaled, minlength=len(self.unique))
        self.coeffs.clear()
        self.coeffs.extend(coeffs.astype(np.int64).tolist())
        if time_limit != self._time_limit:
            self.solver.parameters.max_time_in_seconds = float("inf") if time_limit is None else time_limit
            self._time_limit = time_limit
        self._interrupted = False
        status = self.solver.solve(self.model)
        name = self.solver.status_name(status)
        if self._interrupted:  # a stopped search may still report FEASIBLE: never a decision
            return statuses.no_decision(statuses.INTERRUPTED, name)
        if status == cp_model.INFEASIBLE:
            return statuses.no_decision(statuses.INFEASIBLE, name)
        if status == cp_model.UNKNOWN:  # only a limit or a stop ends a search without a verdict
            common = statuses.TIME_LIMIT if time_limit is not None else statuses.ERROR
            return statuses.no_decision(common, name)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return statuses.no_decision(statuses.ERROR, name)
        values = np.asarray(self.solver.response_proto.solution, dtype=np.float64)
        common = statuses.OPTIMAL if status == cp_model.OPTIMAL else statuses.FEASIBLE
        return Outcome(values[self.index], common, name)


@dataclass(frozen=True)
class CpSatSpec(ModelSpec):
    resident_solver = CpSatSolver
    on_caller_thread = True
    proto_text: str
    var_index: tuple[int, ...]  # proto index of each cost entry (flattened)
    shape: tuple[int, ...]
    sense: Sense

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        model = cp_model.CpModel()
        model.proto.parse_text_format(self.proto_text)
        return cpsat_equalities(model.proto, np.asarray(self.var_index))


def cpsat_equalities(proto: Any, var_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equalities over cost variables that the CP-SAT model states.

    Sources: linear constraints with a single-value domain, ``exactly_one``, the in/out degree
    rows of ``circuit``, fixed variables, and repeated cost variables (``y_j = y_k``). Rows with an
    enforcement literal, or touching a variable that is not a cost variable, are skipped.
    """
    n = len(var_index)
    first, rows = repeat_rows(var_index)

    def literal_row(literals: Sequence[int]) -> tuple[dict[int, float], float] | None:
        row: dict[int, float] = {}
        rhs = 1.0
        for lit in literals:
            var, coef = (lit, 1.0) if lit >= 0 else (-lit - 1, -1.0)
            if var not in first:
                return None
            if coef < 0:
                rhs -= 1.0  # not(x) = 1 - x
            row[first[var]] = row.get(first[var], 0.0) + coef
        return row, rhs

    for v, pos in first.items():
        dom = list(proto.variables[v].domain)
        if len(dom) == 2 and dom[0] == dom[1]:
            rows.append(({pos: 1.0}, float(dom[0])))
    for ct in proto.constraints:
        if len(ct.enforcement_literal):
            continue
        if ct.has_linear():
            lin = ct.linear
            dom = list(lin.domain)
            if len(dom) != 2 or dom[0] != dom[1]:
                continue
            row: dict[int, float] = {}
            for var, coef in zip(lin.vars, lin.coeffs):
                if var < 0 or var not in first:
                    break
                row[first[var]] = row.get(first[var], 0.0) + float(coef)
            else:
                rows.append((row, float(dom[0])))
        elif ct.has_exactly_one():
            r = literal_row(list(ct.exactly_one.literals))
            if r is not None:
                rows.append(r)
        elif ct.has_circuit():
            circ = ct.circuit
            tails, heads, lits = list(circ.tails), list(circ.heads), list(circ.literals)
            for node in sorted(set(tails) | set(heads)):
                for ends in (tails, heads):
                    r = literal_row([lit for end, lit in zip(ends, lits) if end == node])
                    if r is not None:
                        rows.append(r)
    return dense_rows(rows, n)


def cpsat_spec(model: cp_model.CpModel, variables: Any, sense: str | None, *, where: str) -> CpSatSpec:
    if not isinstance(model, cp_model.CpModel):
        raise TypeError(f"{where}: model must be an ortools.sat.python.cp_model.CpModel, got {type(model).__name__}")
    arr = as_variable_array(variables, cp_model.IntVar, where=where)
    proto = model.proto
    n_vars = len(proto.variables)
    index = np.array([v.index for v in arr.reshape(-1)], dtype=np.int64)
    for pos, var in enumerate(arr.reshape(-1)):
        if var.model_proto is not proto or not 0 <= var.index < n_vars:
            raise ValueError(
                f"{where}: variables[{pos}] ({var.name!r}, proto index {var.index}) is not a variable of this model"
            )
    bound = 0.0
    for v in np.unique(index).tolist():
        dom = list(proto.variables[v].domain)
        bound += max(abs(dom[0]), abs(dom[-1])) * RESOLUTION * int((index == v).sum())
    if bound >= _OBJECTIVE_BOUND:
        raise ValueError(
            f"{where}: the objective could overflow CP-SAT's int64 (sum of |domain| bounds x "
            f"{RESOLUTION} = {bound:.3g} >= 2^62); tighten the cost variables' domains"
        )
    resolved = _declared_sense(proto) if sense is None else check_sense(sense, where=where)
    clean = model.clone()
    clean.proto.clear_objective()
    clean.proto.clear_floating_point_objective()
    return CpSatSpec(str(clean.proto), tuple(index.tolist()), tuple(arr.shape), resolved)
