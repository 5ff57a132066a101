"""OR-Tools CP-SAT adapter: any ``CpModel`` with objective ``own(x) + sum(w * x)`` over chosen
variables (``own``: the model's own objective, kept unless ``objective="replace"``).

Spec: the model's proto in text format (objective removed), the proto indices of the cost
variables, and the model's own objective as plain numbers. A worker parses the proto once; each
solve rewrites only the objective.

CP-SAT optimises integer objectives: each instance's objective is scaled by a power of two as
large as the int64 headroom allows and rounded (:mod:`idproj_or.solvers.scaling`); the bound on
what the rounding can cost is reported as ``scaling_error``, and a decision is ``"optimal"`` only
when that bound is within the float64 rounding of its objective.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from .. import statuses
from ..checks import Declared, Sense, resolve_sense
from ..statuses import Outcome
from .base import NO_DATA, Data, DataField, LinearRows, ResidentSolver, cost_rows, dense_rows, repeat_rows
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
from .certificate import cpsat_box
from .scaling import integer_costs, proven, scale_exponent, scaling_error, sum_error


def own_objective(proto: Any) -> tuple[dict[int, float], float, Sense]:
    """The model's objective as ``({variable: coefficient}, offset, sense)`` in its own units."""
    if proto.has_floating_point_objective():
        fo = proto.floating_point_objective
        terms: dict[int, float] = {}
        for v, c in zip(fo.vars, fo.coeffs):
            terms[v] = terms.get(v, 0.0) + float(c)
        return terms, float(fo.offset), "max" if fo.maximize else "min"
    if proto.has_objective():
        obj = proto.objective
        factor = obj.scaling_factor or 1.0  # value = factor * (sum coeffs x + offset)
        terms = {}
        for v, c in zip(obj.vars, obj.coeffs):
            terms[v] = terms.get(v, 0.0) + factor * c
        return terms, factor * obj.offset, "max" if factor < 0 else "min"
    return {}, 0.0, "min"


class CpSatSolver(ResidentSolver):
    def __init__(self, spec: CpSatSpec) -> None:
        self.model = cp_model.CpModel()
        self.model.proto.parse_text_format(spec.proto_text)
        index = np.asarray(spec.var_index, dtype=np.int64)
        own = np.asarray(spec.own_vars, dtype=np.int64)
        # The objective's variables: the cost variables and those of the model's own objective.
        self.vars, inverse = np.unique(np.concatenate([index, own]), return_inverse=True)
        self.inverse = inverse[: len(index)]
        self.index = index
        self.own = np.zeros(len(self.vars))
        np.add.at(self.own, inverse[len(index) :], np.asarray(spec.own_coeffs, dtype=np.float64))
        self.own_offset = spec.own_offset
        # Cost entries summed into each objective coefficient (a variable repeated in the costs).
        self.terms = np.bincount(self.inverse, minlength=len(self.vars))
        self.repeated = bool((self.terms > 1).any())
        domains = [list(self.model.proto.variables[v].domain) for v in self.vars.tolist()]
        self.low = np.array([d[0] for d in domains], dtype=np.float64)
        self.high = np.array([d[-1] for d in domains], dtype=np.float64)
        self._domains_changed()
        self.bounds = Bounds(spec.bounds, [self._own_bounds(f) for f in spec.bounds]) if spec.bounds else None
        # Where each variable named in data stands among the objective's variables (-1: not there).
        self.objective_position = {
            f.name: np.where(np.isin(f.index, self.vars), np.searchsorted(self.vars, f.index), -1)
            for f in spec.bounds
            if f.variables
        }
        objective = self.model.proto.objective
        objective.vars.extend(self.vars.tolist())
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
        self.all_vars = list(range(len(self.model.proto.variables)))

    def _hint(self) -> None:
        """The instance's previous solution as CP-SAT's hint (every variable), or none."""
        proto = self.model.proto
        hint = self.hint
        if hint is None or len(hint) != len(self.all_vars) or np.abs(hint).max(initial=0) >= 2**53:
            if proto.has_solution_hint():
                proto.clear_solution_hint()
            return
        proto.clear_solution_hint()
        proto.solution_hint.vars.extend(self.all_vars)
        proto.solution_hint.values.extend(hint.astype(np.int64).tolist())

    def _domains_changed(self) -> None:
        self.peaks = np.maximum(np.abs(self.low), np.abs(self.high))
        self.spans = self.high - self.low

    def _own_bounds(self, field: BoundField) -> tuple[np.ndarray, np.ndarray]:
        proto = self.model.proto
        if field.variables:
            domains = [proto.variables[i].domain for i in field.index]
        else:
            domains = [proto.constraints[i].linear.domain for i in field.index]
        return np.array([d[0] for d in domains], dtype=np.int64), np.array([d[1] for d in domains], dtype=np.int64)

    def _write(self, change: Change) -> None:
        """Set the domains of the entries that change (intervals, checked by the spec)."""
        proto = self.model.proto
        field = change.field
        for pos, lo, hi in zip(change.positions.tolist(), change.lower.tolist(), change.upper.tolist()):
            i = field.index[pos]
            domain = proto.variables[i].domain if field.variables else proto.constraints[i].linear.domain
            domain[0], domain[1] = lo, hi
        if field.variables:
            at = self.objective_position[field.name][change.positions]
            inside = at >= 0
            if inside.any():  # the integer scaling's headroom follows the domains
                self.low[at[inside]] = change.lower[inside]
                self.high[at[inside]] = change.upper[inside]
                self._domains_changed()

    def interrupt(self) -> None:
        self._interrupted = True
        self.solver.stop_search()

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        if self.bounds is not None:
            for change in self.bounds.update(data):
                self._write(change)
            if self.bounds.crossed():  # CP-SAT refuses an empty domain as an invalid model
                return statuses.no_decision(statuses.INFEASIBLE, INFEASIBLE_BOUNDS)
        size = len(self.vars)
        summed = np.bincount(self.inverse, weights=cost, minlength=size)
        total = self.own + summed
        exponent = scale_exponent(total, self.peaks)
        # A variable fixed at 0 adds nothing whatever its cost; the headroom ignores it, so its
        # scaled cost could pass int64 (e.g. an item switched off by data, ub=0).
        scaled = integer_costs(self.sign * np.where(self.peaks > 0, total, 0.0), exponent)
        magnitude = np.bincount(self.inverse, weights=np.abs(cost), minlength=size) if self.repeated else summed
        rounding = sum_error(self.own, summed, total, self.terms, magnitude)
        error = scaling_error(scaled.residual + rounding, self.spans)
        self.coeffs.clear()
        self.coeffs.extend(scaled.coeffs.tolist())
        if time_limit != self._time_limit:
            self.solver.parameters.max_time_in_seconds = float("inf") if time_limit is None else time_limit
            self._time_limit = time_limit
        self._interrupted = False
        self._hint()
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
        x = values[self.vars]
        common = statuses.OPTIMAL if status == cp_model.OPTIMAL and proven(error, total, x) else statuses.FEASIBLE
        fixed = float(self.own @ x) + self.own_offset
        # The solver's bound is on the rounded objective, sum(t x) / S: within what the rounding
        # can move any objective value, sum(r |x|) <= sum(r peaks), of the bound on the true one.
        # Read as the exact integer (best_objective_bound is that integer through float
        # arithmetic, which can land on the wrong side of it), rounded down to a float.
        inner = self.solver.response_proto.inner_objective_lower_bound
        low = float(inner)
        if int(low) > inner:
            low = math.nextafter(low, -math.inf)
        slack = float((scaled.residual + rounding) @ self.peaks)
        bound = self.sign * (low / scaled.scale - slack) + self.own_offset
        binding = binding_rows(self.model.proto, self.solver.response_proto.solution) if self.duals_requested else None
        warm = values if self.warm_requested else None
        return Outcome(values[self.index], common, name, fixed, error, bound, binding=binding, warm=warm)


def binding_rows(proto: Any, values: Sequence[int]) -> np.ndarray:
    """Per constraint of the model: a linear constraint (enforced, if it has enforcement literals)
    whose activity at the solution ``values`` equals a finite end of its domain (exact integer
    arithmetic); other constraints False."""

    def value(ref: int) -> int:
        return int(values[ref]) if ref >= 0 else 1 - int(values[-ref - 1])

    out = np.zeros(len(proto.constraints), dtype=bool)
    for k, ct in enumerate(proto.constraints):
        if not ct.has_linear() or not all(value(lit) == 1 for lit in ct.enforcement_literal):
            continue
        lin = ct.linear
        activity = sum(c * value(v) for v, c in zip(lin.vars, lin.coeffs))
        out[k] = any(activity == end for end in lin.domain if cp_model.INT_MIN < end < cp_model.INT_MAX)
    return out


@dataclass(frozen=True)
class CpSatSpec(DeclaredSpec):
    resident_solver = CpSatSolver
    on_caller_thread = True
    proto_text: str
    var_index: tuple[int, ...]  # proto index of each cost entry (flattened)
    shape: tuple[int, ...]
    sense: Sense

    @property
    def warm_start(self) -> bool:
        # Hints are supported but off by default: measured in training, they cost 4-16% on a
        # 48x3 knapsack (SPO+, Blackbox) and gained 7% on a scheduling model (docs/warm_start.md).
        return False

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        model = cp_model.CpModel()
        model.proto.parse_text_format(self.proto_text)
        return cpsat_equalities(model.proto, np.asarray(self.var_index), self.bounds)

    def linear_rows(self, data: Data = NO_DATA) -> LinearRows:
        model = cp_model.CpModel()
        model.proto.parse_text_format(self.proto_text)
        return cpsat_linear_rows(model.proto, np.asarray(self.var_index), self.bounds, data)


def _finite(end: int) -> float:
    """A CP-SAT domain end as a float bound (its int64 extremes are open sides)."""
    if end <= cp_model.INT_MIN:
        return -math.inf
    return math.inf if end >= cp_model.INT_MAX else float(end)


# The kinds of ConstraintProto (the proto wrapper has has_<kind>(), no WhichOneof).
_KINDS = (
    "linear",
    "exactly_one",
    "at_most_one",
    "bool_or",
    "bool_and",
    "bool_xor",
    "all_diff",
    "automaton",
    "circuit",
    "cumulative",
    "element",
    "int_div",
    "int_mod",
    "int_prod",
    "interval",
    "inverse",
    "lin_max",
    "no_overlap",
    "no_overlap_2d",
    "reservoir",
    "routes",
    "table",
    "dummy_constraint",
)
# Constraints over literals that state one linear row: (lower, upper) of the sum of the literals.
_LITERAL_ROWS = {"exactly_one": (1.0, 1.0), "at_most_one": (-math.inf, 1.0), "bool_or": (1.0, math.inf)}


def cpsat_linear_rows(
    proto: Any, var_index: np.ndarray, bounds: Sequence[BoundField] = (), data: Data = NO_DATA
) -> LinearRows:
    """The CP-SAT model's linear description over the cost variables (CaVE), with one instance's
    ``data``: its linear constraints (an interval domain each), ``exactly_one``, ``at_most_one``
    and ``bool_or`` (sums of literals, ``not(x) = 1 - x``), intervals (``start + size == end``),
    and the domains of the variables (their convex hull). A constraint with enforcement literals or of another kind (circuit,
    no_overlap, element, ...) is a ValueError that names it."""

    def describe(k: int) -> str:
        name = proto.constraints[k].name
        return f"constraint {k}" + (f" ({name!r})" if name else "")

    m = len(proto.constraints)
    row_bounds = np.full((2, m), np.nan)
    rows: list[tuple[dict[int, float], float, float] | None] = []
    for k, ct in enumerate(proto.constraints):
        kind = next((name for name in _KINDS if getattr(ct, f"has_{name}")()), None)
        if kind is None or kind == "dummy_constraint":
            rows.append(None)
            continue
        if len(ct.enforcement_literal):
            raise ValueError(
                f"{describe(k)} has enforcement literals (only_enforce_if); CaVE reads constraints that "
                "always hold, as linear rows"
            )
        terms: dict[int, float] = {}
        if kind == "linear":
            domain = list(ct.linear.domain)
            if len(domain) != 2:
                raise ValueError(
                    f"{describe(k)} has a domain with holes (e.g. add(expr != k)), which is not a linear row"
                )
            for ref, coef in zip(ct.linear.vars, ct.linear.coeffs):
                var, sign = (ref, 1.0) if ref >= 0 else (-ref - 1, -1.0)  # a negated reference is -x
                terms[var] = terms.get(var, 0.0) + sign * coef
            lo, hi = _finite(domain[0]), _finite(domain[1])
        elif kind == "interval":  # start + size == end
            lo = hi = 0.0
            for expr, sign in ((ct.interval.start, 1.0), (ct.interval.size, 1.0), (ct.interval.end, -1.0)):
                lo = hi = lo - sign * expr.offset
                for ref, coef in zip(expr.vars, expr.coeffs):
                    var, neg = (ref, 1.0) if ref >= 0 else (-ref - 1, -1.0)
                    terms[var] = terms.get(var, 0.0) + sign * neg * coef
        elif kind in _LITERAL_ROWS:
            lo, hi = _LITERAL_ROWS[kind]
            for lit in getattr(ct, kind).literals:
                var, coef = (lit, 1.0) if lit >= 0 else (-lit - 1, -1.0)
                if coef < 0:  # not(x) = 1 - x
                    lo, hi = lo - 1.0, hi - 1.0
                terms[var] = terms.get(var, 0.0) + coef
        else:
            raise ValueError(
                f"{describe(k)} is a CP-SAT {kind} constraint; CaVE reads linear constraints only (linear, "
                "exactly_one, at_most_one, bool_or; an interval's start + size == end), the rows whose "
                "normals span its cone"
            )
        row_bounds[:, k] = lo, hi
        rows.append((terms, lo, hi))
    domains = [list(v.domain) for v in proto.variables]
    var_bounds = np.array([[_finite(d[0]), _finite(d[-1])] for d in domains]).reshape(-1, 2).T
    if data:
        found = with_data(bounds, {False: (row_bounds[0], row_bounds[1]), True: (var_bounds[0], var_bounds[1])}, data)
        row_bounds = np.stack(found[False])
        var_bounds = np.stack(found[True])
        rows = [
            None if r is None else (r[0], float(row_bounds[0, k]), float(row_bounds[1, k])) for k, r in enumerate(rows)
        ]
    return cost_rows(var_index, rows, var_bounds[0], var_bounds[1], describe)


def cpsat_equalities(
    proto: Any, var_index: np.ndarray, bounds: Sequence[BoundField] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Equalities over cost variables that the CP-SAT model states.

    Sources: linear constraints with a single-value domain, ``exactly_one``, the in/out degree
    rows of ``circuit``, fixed variables, and repeated cost variables (``y_j = y_k``). Rows with an
    enforcement literal, or touching a variable that is not a cost variable, are skipped, as are
    the constraints and variables named in ``bounds`` (an instance's data may make them ranges).
    """
    n = len(var_index)
    first, rows = repeat_rows(var_index)
    data_rows = {i for f in bounds if not f.variables for i in f.index}
    data_vars = {i for f in bounds if f.variables for i in f.index}

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
        if len(dom) == 2 and dom[0] == dom[1] and v not in data_vars:
            rows.append(({pos: 1.0}, float(dom[0])))
    for k, ct in enumerate(proto.constraints):
        if len(ct.enforcement_literal) or k in data_rows:
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


def cpsat_spec(model: cp_model.CpModel, declared: Declared) -> CpSatSpec:
    """The spec of a CP-SAT model over the cost variables of ``declared``."""
    where, objective, arr = declared.where, declared.objective, declared.variables
    if not isinstance(model, cp_model.CpModel):
        raise TypeError(f"{where}: model must be an ortools.sat.python.cp_model.CpModel, got {type(model).__name__}")
    proto = model.proto
    n_vars = len(proto.variables)
    index = np.array([v.index for v in arr.reshape(-1)], dtype=np.int64)
    for pos, var in enumerate(arr.reshape(-1)):
        if var.model_proto is not proto or not 0 <= var.index < n_vars:
            raise ValueError(
                f"{where}: variables[{pos}] ({var.name!r}, proto index {var.index}) is not a variable of this model"
            )
    terms, offset, own_sense = own_objective(proto)
    if objective == "replace":
        terms, offset = {}, 0.0
    terms = {v: c for v, c in terms.items() if c != 0.0}
    if objective == "keep" and proto.has_objective() and len(proto.objective.domain):
        raise ValueError(
            f"{where}: the model's objective has a domain (a bound on its value), which cannot be "
            "kept once the predicted term is added; pass objective='replace' or state the bound as "
            "a constraint"
        )
    resolved = resolve_sense(declared.sense, own_sense, has_own=bool(terms), where=where)
    bounds = bound_fields(declared.data, functools.partial(_identify, proto, where=where), where=where)
    clean = model.clone()
    clean.proto.clear_objective()
    clean.proto.clear_floating_point_objective()
    return CpSatSpec(
        str(clean.proto),
        tuple(index.tolist()),
        tuple(arr.shape),
        resolved,
        own_vars=tuple(terms),
        own_coeffs=tuple(terms.values()),
        own_offset=offset,
        bounds=bounds,
        fields=tuple(_data_field(proto, f, literal_vars(proto)) for f in bounds),
        box=cpsat_box(clean.proto, index.tolist(), terms, offset, resolved, bounds),
    )


# Largest magnitude of a bound given as data: CP-SAT's validator refuses linear domains beyond
# int64 / 2 and variable domains from 2^62 on (2^61: the float64 data below that, exactly).
DATA_LIMIT = float(2**62)
VARIABLE_LIMIT = float(2**61)


def _data_field(proto: Any, field: BoundField, literals: set[int]) -> DataField:
    """The data a name takes: integers within CP-SAT's limits; 0 or 1 when a variable is used
    as a literal (another bound makes the model invalid), checked before any solve."""
    if not field.variables:
        return field.field(integral=True, low=-DATA_LIMIT, high=DATA_LIMIT)
    if literals.intersection(field.index):
        return field.field(integral=True, low=0.0, high=1.0)
    return field.field(integral=True, low=-VARIABLE_LIMIT, high=VARIABLE_LIMIT)


# The constraints whose members are literals (Booleans), besides every enforcement literal.
_LITERAL_LISTS = (
    ("bool_or", "literals"),
    ("bool_and", "literals"),
    ("at_most_one", "literals"),
    ("exactly_one", "literals"),
    ("bool_xor", "literals"),
    ("circuit", "literals"),
    ("routes", "literals"),
    ("reservoir", "active_literals"),
)


def literal_vars(proto: Any) -> set[int]:
    """The variables the model uses as literals (a negated literal ``-i - 1`` is variable ``i``)."""
    refs: list[int] = []
    for ct in proto.constraints:
        refs.extend(ct.enforcement_literal)
        for name, members in _LITERAL_LISTS:
            if getattr(ct, f"has_{name}")():
                refs.extend(getattr(getattr(ct, name), members))
    return {r if r >= 0 else -r - 1 for r in refs}


def _identify(proto: Any, name: str, pos: int, item: Any, *, where: str) -> tuple[bool, int, int]:
    """A data entry as (a variable?, proto index, side): a linear constraint of this model with an
    interval domain (``add(expr <= k)``, with or without enforcement literals) or a variable of
    this model with an interval domain."""
    at = f"{where}: data {name!r}[{pos}]"
    if isinstance(item, cp_model.IntVar):
        if item.model_proto is not proto or not 0 <= item.index < len(proto.variables):
            raise ValueError(f"{at} ({item.name!r}) is not a variable of this model")
        if len(proto.variables[item.index].domain) != 2:
            raise ValueError(f"{at} ({item.name!r}) has a domain with holes; data sets a variable's (lower, upper)")
        return True, item.index, UPPER
    if isinstance(item, cp_model.Constraint):
        if item.model_proto is not proto or not 0 <= item.index < len(proto.constraints):
            raise ValueError(f"{at} is not a constraint of this model")
        ct = proto.constraints[item.index]
        if not ct.has_linear():
            raise ValueError(
                f"{at} is not a linear constraint; data sets the bounds of linear ones (model.add(expr <= k))"
            )
        domain = list(ct.linear.domain)
        if len(domain) != 2:
            raise ValueError(
                f"{at} has a domain with holes (e.g. add(expr != k)); data sets the (lower, upper) of "
                "a linear constraint with an interval domain"
            )
        return False, item.index, side_of(*domain, low_inf=cp_model.INT_MIN, high_inf=cp_model.INT_MAX)
    raise ValueError(
        f"{at} is a {type(item).__name__}; expected a linear constraint (model.add(...)) or a variable of the model"
    )
