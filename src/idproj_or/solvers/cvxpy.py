"""CVXPY adapter: a ``cp.Problem``, LP or MIP, whose objective is ``sum(parameter * variable)``
(one such term per cost group) plus the model's own fixed part, any affine expression of its
variables (kept unless ``objective="replace"``; the cost parameters stay out of it).

Spec: plain arrays taken from the problem CVXPY compiles once (``problem.get_problem_data``):
the ``ParamConeProg``'s parameter tensors (``min q(p)'z s.t. A(p) z + b(p) in K``, ``q``, ``A``
and ``b`` linear in the parameter vector ``p``), the base parameter vector (costs zero, the
other parameters at their values), the compiled column of each cost entry, the slots of ``p``
that each declared data parameter fills, and the map from compiled rows to the problem's
constraint entries (for duals). The ``Problem`` itself never reaches a worker. The resident
HiGHS route needs nothing else; any other solver also needs CVXPY's own solver interface and
compiled problem, which format the data in solver-specific ways (cone layouts, option names):
that route keeps them as pickled bytes (``interface``), rebuilt once per worker.

The cost is exactly the parameter value: cost entry ``k`` (C order over ``variable.shape``) is
``parameter.value.flat[k]``. CVXPY stacks variables in column-major (Fortran) order, so entry
``(i, j)`` of a matrix variable sits at compiled column ``start + i + j * rows``. The compiled
objective is ``q = q_fixed + sign * scatter(w)`` with ``sign = -1`` for ``Maximize`` (CVXPY flips a
maximisation into a minimisation) and ``q_fixed`` (with an offset) the compiled fixed part at the
other parameters' values; its value at the decision is reported in the user's units
(``Outcome.fixed``). ``objective="replace"`` zeroes ``q_fixed``.

Per-instance data: the values of declared parameters, applied to the compiled tensors
(``p`` with this instance's values; the DPP fast path, never a recompilation). HiGHS rewrites the
row bounds, coefficients, column bounds and column costs whose values differ from the previous
instance's; the other solvers re-instantiate the compiled problem.

Resident solver:

- HiGHS (the default): a resident model (:mod:`idproj_or.solvers.highs`) built once from the
  compiled data (the same matrices CVXPY's own HiGHS interface passes); each solve changes the
  cost columns and what the data changes, clears the previous basis and solution (ties do not
  depend on the previous instance; an LP with warm starts then starts from the basis shipped
  with the instance, and reports its optimal basis as the state to keep) and runs: several times faster than
  ``problem.solve(solver="HIGHS")`` per instance (docs/benchmarks.md, "Design measurements").
- any other CVXPY solver (CLARABEL, SCS, SCIPY, OSQP, GUROBI, ...): per instance the compiled
  problem is re-instantiated with the new parameter values (``solver.apply(param_prob)``, the
  step CVXPY's own DPP fast path does) and passed to ``solver.solve_via_data``. This skips
  CVXPY's canonicalisation but not the solver's set-up. (For GLOP and PDLP,
  :class:`LinearSolverLayer` keeps the model resident instead.)

Shortcuts: an LP or MIP (no cone but the zero and nonnegative ones) carries its compiled form as
the box certificate and the network path shortcut read it (:func:`compiled_box`, an
:class:`~idproj_or.solvers.certificate.AffineBox`: what data reach, applied per instance in the
caller), on every route.

Outcomes: ``bound`` is HiGHS's dual bound (a MIP) or optimum (an LP) in the user's units with the
fixed part (NaN on the other routes). With duals requested, an LP reports ``duals``: one entry per
entry of each constraint, ``np.ravel(constraint.dual_value)`` concatenated in
``problem.constraints`` order with CVXPY's signs; ``reduced_costs``: per cost entry, the reduced
cost of the column in the user's sense (``d objective / d x_j`` once the constraints' duals are
priced in; nonzero only at a bound); ``binding`` (LPs and MIPs, HiGHS route): per constraint
entry, tight at the decision (equalities always).

``last_info.solver_status`` is HiGHS's model status (e.g. ``"kTimeLimit"``) on the resident
HiGHS route and CVXPY's status (``"optimal_inaccurate"``, ``"user_limit"``, ...) on the others.
A time limit with a feasible point is a decision (``"feasible"``), as is
``"optimal_inaccurate"``; without one it is ``"time_limit"``.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.solution import Solution
from cvxpy.reductions.solvers import utilities
from cvxpy.utilities import scopes

from .. import statuses
from ..checks import ObjectiveMode, Sense, check_objective_mode
from ..statuses import Outcome
from .base import NO_DATA, Data, DataField, LinearRows, ModelSpec, ResidentSolver, cost_rows
from .certificate import AffineBox, opened
from .highs import HighsArrays, HighsModel
from .scaling import beyond_range

# CVXPY status -> common status (a status with a decision only when a point came back).
_CVXPY_STATUS = {
    "optimal": statuses.OPTIMAL,
    "optimal_inaccurate": statuses.FEASIBLE,
    "user_limit": statuses.FEASIBLE,
    "infeasible": statuses.INFEASIBLE,
    "infeasible_inaccurate": statuses.INFEASIBLE,
    "unbounded": statuses.UNBOUNDED,
    "unbounded_inaccurate": statuses.UNBOUNDED,
    "infeasible_or_unbounded": statuses.INFEASIBLE_OR_UNBOUNDED,
}
# How each solver's interface takes a time limit (seconds); value None means nested options.
_TIME_LIMIT = {"CLARABEL": "time_limit", "SCS": "time_limit_secs", "SCIPY": None}
# One thread per solve (the pool provides the parallelism).
_FIXED_OPTIONS: dict[str, dict[str, Any]] = {"CLARABEL": {"max_threads": 1}}
# A row is binding when its slack is within this of zero (relative to its right-hand side):
# HiGHS's primal feasibility tolerance is 1e-7.
_BINDING_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class CvxpySpec(ModelSpec):
    solver: str  # CVXPY solver name, e.g. "HIGHS"
    shape: tuple[int, ...]  # flat (the groups' sizes summed) for a layer with cost groups
    sense: Sense
    cols: tuple[int, ...]  # compiled column of each cost entry (C order, groups concatenated)
    q: sp.csc_array  # (n + 1, P + 1): compiled objective coefficients and offset per parameter entry
    a: sp.csc_array  # (m (n + 1), P + 1): compiled [A | b] (column-major) per parameter entry
    lower: sp.csc_array | None  # (n, P + 1): parametric column bounds, None: see col_lower
    upper: sp.csc_array | None
    col_lower: np.ndarray  # the column bounds when they do not depend on parameters
    col_upper: np.ndarray
    p0: np.ndarray  # base parameter vector: costs 0, the others at their values, constant 1
    zero: int  # the first ``zero`` compiled rows are equalities, the rest ``>= 0``
    integer: tuple[int, ...]  # integer (boolean included) compiled columns
    boolean: tuple[int, ...]
    slots: tuple[tuple[int, tuple[int, ...]], ...]  # per field: start in p, parameter shape
    dual_index: np.ndarray | None  # per constraint entry: its compiled row; None: unknown
    dual_sign: np.ndarray | None
    cost_params: tuple[tuple[int, tuple[int, ...]], ...]  # per group: parameter id, shape
    data_params: tuple[int, ...]  # per field: parameter id (the generic route sets them)
    interface: bytes = b""  # generic route: pickled (CVXPY solver interface, ParamConeProg)
    fields: tuple[DataField, ...] = ()
    box: AffineBox | None = None  # the box certificate and network path shortcut (LP/MIP only)

    @property
    def on_caller_thread(self) -> bool:  # type: ignore[override]
        return self.solver == "HIGHS"  # the resident HiGHS model can be stopped mid-solve

    @property
    def rows(self) -> int:
        return self.a.shape[0] // (len(self.col_lower) + 1)

    @property
    def warm_start(self) -> bool | None:
        # An LP on the resident HiGHS model starts from each instance's last optimal basis.
        return False if self.solver == "HIGHS" and not self.integer else None

    def build(self) -> ResidentSolver:
        if self.solver == "HIGHS":
            return HighsSolver(self)
        return GenericSolver(self)

    def parameters(self, data: Data = NO_DATA) -> np.ndarray:
        """The parameter vector with this instance's data (costs zero)."""
        p = self.p0
        if data:
            p = p.copy()
            for f, (start, shape) in zip(self.fields, self.slots):
                if f.name in data:
                    values = np.asarray(data[f.name], dtype=np.float64).reshape(shape).ravel(order="F")
                    p[start : start + len(values)] = values
        return p

    def matrix(self, p: np.ndarray) -> tuple[sp.csc_array, np.ndarray]:
        """The compiled ``A`` and ``b`` at the parameter vector ``p``."""
        n = len(self.col_lower)
        flat = sp.csc_array(self.a @ sp.csc_array(p[:, None]))
        m = sp.csc_array(flat.reshape((-1, n + 1), order="F"))
        return sp.csc_array(m[:, :n]), m[:, [n]].toarray().ravel()

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.matrix(self.p0)
        a = sp.csr_array(a[: self.zero])
        a.eliminate_zeros()
        cols = np.asarray(self.cols)
        inside = np.zeros(a.shape[1], dtype=bool)
        inside[cols] = True
        # Rows whose coefficients depend on data differ per instance: no invariance to claim.
        varying = set(_data_rows(self)[1].tolist())
        # Keep the nonempty rows whose every column is a cost column.
        keep = [
            r
            for r in range(self.zero)
            if a.indptr[r + 1] > a.indptr[r]
            and r not in varying
            and inside[a.indices[a.indptr[r] : a.indptr[r + 1]]].all()
        ]
        rows = a[keep][:, cols].toarray() if keep else np.zeros((0, len(cols)))
        return rows, -np.asarray(b)[keep]

    def linear_rows(self, data: Data = NO_DATA) -> LinearRows:
        if self.interface:  # the generic route may compile cones other than the linear ones
            dims = pickle.loads(self.interface)[1].cone_dims
            if dims.zero + dims.nonneg != self.rows:
                raise ValueError(
                    "the compiled problem has cone constraints (second-order, exponential, ...) besides "
                    "linear ones; CaVE reads linear constraints only"
                )
        p = self.parameters(data)
        a, b = self.matrix(p)
        col_lower, col_upper = column_bounds(self, p)
        # compiled rows A z + b == 0 (the first ``zero``), A z + b >= 0 (the others)
        rows = sp.csr_array(a)
        upper = np.where(np.arange(self.rows) < self.zero, -b, math.inf)
        terms = []
        for r in range(self.rows):
            span = slice(rows.indptr[r], rows.indptr[r + 1])
            terms.append(
                (dict(zip(rows.indices[span].tolist(), rows.data[span].tolist())), float(-b[r]), float(upper[r]))
            )
        entry: dict[int, int] = {}
        if self.dual_index is not None:
            for k, r in enumerate(np.asarray(self.dual_index).tolist()):
                entry.setdefault(int(r), k)

        def describe(r: int) -> str:
            at = f" (entry {entry[r]} of the constraints, in problem.constraints order)" if r in entry else ""
            return f"compiled constraint row {r}{at}"

        return cost_rows(np.asarray(self.cols), terms, col_lower, col_upper, describe)


def column_bounds(spec: CvxpySpec, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The compiled columns' bounds at the parameter vector ``p``."""
    lower = spec.col_lower.copy() if spec.lower is None else np.asarray(spec.lower @ p, dtype=np.float64)
    upper = spec.col_upper.copy() if spec.upper is None else np.asarray(spec.upper @ p, dtype=np.float64)
    booleans = list(spec.boolean)  # as CVXPY's own interfaces: booleans are integers in [0, 1]
    lower[booleans] = np.maximum(lower[booleans], 0.0)
    upper[booleans] = np.minimum(upper[booleans], 1.0)
    return lower, upper


def _data_columns(spec: CvxpySpec) -> np.ndarray:
    cols = [np.arange(start, start + math.prod(shape)) for start, shape in spec.slots]
    return np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)


def _touched(tensor: sp.csc_array | None, cols: np.ndarray) -> np.ndarray:
    """Rows of ``tensor`` that the parameter entries ``cols`` reach."""
    if tensor is None or not len(cols):
        return np.zeros(0, dtype=np.int64)
    return np.unique(sp.csc_array(tensor[:, cols]).tocoo().row).astype(np.int64)


def _data_rows(spec: CvxpySpec) -> tuple[np.ndarray, np.ndarray]:
    """The entries of the flattened ``[A | b]`` that data reaches, and the rows of ``A`` whose
    coefficients it reaches."""
    entries = _touched(spec.a, _data_columns(spec))
    n = len(spec.col_lower)
    m = spec.rows
    coeff = entries[entries // m < n]
    return entries, np.unique(coeff % m)


class CompiledSolver(ResidentSolver):
    """What the two routes share: the cost columns, the integer columns, the fixed part of the
    compiled objective (``coeffs @ z + offset`` over the compiled columns ``z``, in the
    minimisation CVXPY compiles) at the current instance's data, and the constraint map."""

    check_unbounded = True

    def __init__(self, spec: CvxpySpec) -> None:
        self.spec = spec
        self.integer = np.asarray(spec.integer, dtype=np.int64)
        self.cols = np.asarray(spec.cols, dtype=np.int32)
        self.sign = -1.0 if spec.sense == "max" else 1.0
        n = len(spec.col_lower)
        self.n = n
        q = spec.q @ spec.p0
        self.coeffs = np.asarray(q[:n], dtype=np.float64)
        self.offset = float(q[n])
        self.q_rows = _touched(spec.q, _data_columns(spec))
        self.q_sub = sp.csr_array(spec.q)[self.q_rows] if len(self.q_rows) else None

    def apply_objective(self, p: np.ndarray) -> np.ndarray:
        """Update the fixed part for the parameter vector ``p``; the columns whose cost changed."""
        if self.q_sub is None:
            return np.zeros(0, dtype=np.int32)
        values = self.q_sub @ p
        cols = self.q_rows < self.n
        offset = values[~cols]
        if len(offset):
            self.offset = float(offset[0])
        j = self.q_rows[cols]
        changed = self.coeffs[j] != values[cols]
        self.coeffs[j] = values[cols]
        return j[changed].astype(np.int32)

    def decision(self, z: np.ndarray, common: str, word: str, cost: np.ndarray, **extra: Any) -> Outcome:
        """The outcome for the compiled solution ``z`` of ``cost``: integers rounded, the cost
        entries, and the fixed part's value at them in the user's units (``sign`` undoes CVXPY's
        flip); "feasible" with an infinite scaling error for costs beyond what the solver's
        tolerances resolve (:data:`~idproj_or.solvers.scaling.RESOLVED_RANGE`)."""
        z = np.array(z, dtype=np.float64).reshape(-1)
        z[self.integer] = np.rint(z[self.integer]) + 0.0  # "+ 0.0": no -0.0
        fixed = self.sign * (float(self.coeffs @ z) + self.offset)
        error = 0.0
        if common == statuses.OPTIMAL and beyond_range(np.concatenate([cost, self.coeffs])):
            common, error = statuses.FEASIBLE, math.inf
        return Outcome(z[self.cols], common, word, fixed, error, **extra)

    def constraint_duals(self, y: np.ndarray | None) -> np.ndarray | None:
        """Compiled-row duals ``y`` (CVXPY's conic convention) per constraint entry of the problem."""
        spec = self.spec
        if y is None or spec.dual_index is None or spec.dual_sign is None or not self.duals_requested:
            return None
        return spec.dual_sign * y[spec.dual_index]


class HighsSolver(CompiledSolver):
    """The compiled LP/MIP as a resident HiGHS model; per solve the cost columns change, and
    what this instance's data changes."""

    def __init__(self, spec: CvxpySpec) -> None:
        super().__init__(spec)
        self.p = spec.p0.copy()
        self.m = spec.rows
        self.entries, _ = _data_rows(spec)
        self.a_sub = sp.csr_array(spec.a)[self.entries] if len(self.entries) else None
        self.entry_values = self.a_sub @ self.p if self.a_sub is not None else np.zeros(0)
        data_cols = _data_columns(spec)
        self.bound_cols = np.union1d(_touched(spec.lower, data_cols), _touched(spec.upper, data_cols)).astype(np.int32)
        self.model = self._new_model()

    def _new_model(self) -> HighsModel:
        """The model at the current parameter vector, its matrix in canonical (sorted) order."""
        a, self.b = self.spec.matrix(self.p)
        a.sort_indices()
        lower, upper = self._col_bounds(self.p)
        zero = self.spec.zero
        upper_rows = np.concatenate([-self.b[:zero], np.full(self.m - zero, math.inf)])
        arrays = HighsArrays(
            self.coeffs.copy(), lower, upper, -self.b, upper_rows, a.indptr, a.indices, a.data, self.m, self.integer
        )
        return HighsModel(arrays)

    def _col_bounds(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return column_bounds(self.spec, p)

    def interrupt(self) -> None:
        self.model.interrupt()

    def _apply(self, p: np.ndarray) -> None:
        """Rewrite what the parameter vector ``p`` changes against the current one."""
        if np.array_equal(p, self.p):
            return
        self.p = p
        changed = self.apply_objective(p)
        values, old = (self.a_sub @ p, self.entry_values) if self.a_sub is not None else (self.entry_values,) * 2
        self.entry_values = values
        diff = values != old
        rows, cols = self.entries % self.m, self.entries // self.m
        coeff = diff & (cols < self.n)
        if ((values == 0) | (old == 0))[coeff].any():
            # An entry appears or vanishes: HiGHS would append or delete it in place, and the
            # order of a column's entries (its arithmetic) would depend on the instances before.
            self.model = self._new_model()
            return
        model = self.model
        if len(changed):
            model.set_costs(changed, self.coeffs[changed])
        rhs = diff & (cols == self.n)
        if rhs.any():
            i = rows[rhs].astype(np.int32)
            self.b[i] = values[rhs]
            model.set_row_bounds(i, -self.b[i], np.where(i < self.spec.zero, -self.b[i], math.inf))
        if coeff.any():
            model.set_coeffs(rows[coeff], cols[coeff], values[coeff])
        if len(self.bound_cols):
            lower, upper = self._col_bounds(p)
            model.set_col_bounds(self.bound_cols, lower[self.bound_cols], upper[self.bound_cols])

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        self._apply(self.spec.parameters(data))
        self.model.set_costs(self.cols, self.coeffs[self.cols] + self.sign * cost)
        run = self.model.run(time_limit, self.hint, keep=self.warm_requested)
        if run.x is None:
            return statuses.no_decision(run.status, run.word)
        bound = self.sign * (run.bound + self.offset)
        extra: dict[str, Any] = {"bound": bound, "warm": run.basis}
        if self.duals_requested and self.spec.dual_index is not None:
            assert run.row_value is not None
            slack = run.row_value + self.b
            tight = np.abs(slack) <= _BINDING_TOL * np.maximum(1.0, np.abs(self.b))
            tight[: self.spec.zero] = True
            extra["binding"] = tight[self.spec.dual_index]
            extra["duals"] = self.constraint_duals(run.row_dual)
            if run.col_dual is not None:
                extra["reduced_costs"] = self.sign * run.col_dual[self.cols]
        return self.decision(run.x, run.status, run.word, cost, **extra)


class GenericSolver(CompiledSolver):
    """Any other CVXPY solver: re-instantiate the compiled problem per instance, solve, invert."""

    def __init__(self, spec: CvxpySpec) -> None:
        super().__init__(spec)
        self.interface, self.param_prob = pickle.loads(spec.interface)
        by_id = {p.id: p for p in self.param_prob.parameters}
        self.cost_params = [(by_id[i], shape) for i, shape in spec.cost_params]
        self.data_params = [by_id[i] for i in spec.data_params]

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        t0 = time.perf_counter()
        spec = self.spec
        p = spec.parameters(data)
        self.apply_objective(p)
        start = 0
        for param, shape in self.cost_params:
            size = math.prod(shape)
            param.value = cost[start : start + size].reshape(shape)
            start += size
        for param, (begin, shape) in zip(self.data_params, spec.slots):
            param.value = p[begin : begin + math.prod(shape)].reshape(shape, order="F")
        compiled, inverse = self.interface.apply(self.param_prob)
        options = dict(_FIXED_OPTIONS.get(spec.solver, {}))
        if time_limit is not None:
            key = _TIME_LIMIT[spec.solver]
            if key is None:
                options["scipy_options"] = {"time_limit": float(time_limit)}
            else:
                options[key] = float(time_limit)
        raw = self.interface.solve_via_data(compiled, False, False, options)
        solution = self.interface.invert(raw, inverse)
        word = solution.status
        common = _CVXPY_STATUS.get(word, statuses.ERROR)
        values = list(solution.primal_vars.values())
        z = None
        if len(values) == 1 and values[0] is not None:
            z = np.asarray(values[0], dtype=np.float64).reshape(-1)
        if common in statuses.SOLVED and z is not None and np.isfinite(z).all():
            return self.decision(z, common, word, cost, duals=self.constraint_duals(self._row_duals(solution)))
        if common in statuses.SOLVED:  # a limit or an inaccurate end without a point
            common = statuses.unsolved(time_limit, time.perf_counter() - t0)
        return statuses.no_decision(common, word)

    def _row_duals(self, solution: Any) -> np.ndarray | None:
        duals = solution.dual_vars or {}
        parts = [duals.get(c.id) for c in self.param_prob.constraints]
        if not parts or any(v is None for v in parts):
            return None
        return np.concatenate([np.atleast_1d(np.asarray(v, dtype=np.float64)).ravel() for v in parts])


def _compiled_variable_id(chain: Any, variable: cp.Variable) -> int:
    """Id of ``variable`` in the compiled problem (reductions may substitute a fresh variable,
    e.g. for ``nonneg`` when the solver has no variable bounds)."""
    ids = [variable.id]
    for reduction in chain.reductions:
        mapping = getattr(reduction, "var_id_map", None) or {}
        ids = [j for i in ids for j in mapping.get(i, [i])]
    return ids[0] if len(ids) == 1 else -1


def cost_pairs(parameter: Any, variable: Any, *, where: str) -> tuple[dict[str, tuple[Any, Any]], bool]:
    """``{group: (parameter, variable)}`` (one unnamed group for a single pair) and whether the
    costs come in groups."""
    if isinstance(parameter, Mapping) or isinstance(variable, Mapping):
        if not (isinstance(parameter, Mapping) and isinstance(variable, Mapping)) or list(parameter) != list(variable):
            got = sorted(variable) if isinstance(variable, Mapping) else type(variable).__name__
            raise ValueError(
                f"{where}: cost groups need a dict of parameters and a dict of variables with the same "
                f"keys in the same order; got parameters {list(parameter) if isinstance(parameter, Mapping) else type(parameter).__name__} "
                f"and variables {got}"
            )
        if not parameter:
            raise ValueError(f"{where}: cost groups need at least one group")
        for key in parameter:
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"{where}: cost group name {key!r} must be a Python identifier")
        return {k: (parameter[k], variable[k]) for k in parameter}, True
    return {"": (parameter, variable)}, False


def cvxpy_spec(
    problem: cp.Problem,
    parameter: Any,
    variable: Any,
    solver: str | None,
    time_limit: float | None,
    *,
    objective: ObjectiveMode = "keep",
    data: Mapping[str, cp.Parameter] | None = None,
    where: str,
) -> tuple[CvxpySpec, dict[str, tuple[int, ...]] | None]:
    """The spec of ``problem`` with the costs ``parameter`` on ``variable`` (or dicts of them, one
    per cost group) and the declared per-instance ``data``; and the groups' shapes (None for a
    single cost)."""
    objective = check_objective_mode(objective, where=where)
    if not isinstance(problem, cp.Problem):
        raise TypeError(f"{where}: problem must be a cvxpy.Problem, got {type(problem).__name__}")
    pairs, grouped = cost_pairs(parameter, variable, where=where)
    for group, (param, var) in pairs.items():
        _check_pair(problem, param, var, where=where, label=f"cost group {group!r}: " if grouped else "")
    params = [p for p, _ in pairs.values()]
    if len({p.id for p in params}) < len(params) or len({v.id for _, v in pairs.values()}) < len(params):
        raise ValueError(f"{where}: each cost group needs its own parameter and its own variable")
    cost_ids = {p.id for p in params}
    declared = _check_data(problem, data or {}, cost_ids, where=where)
    unset = [p.name() for p in problem.parameters() if p.id not in cost_ids and p.value is None]
    if unset:
        raise ValueError(f"{where}: parameters {unset} have no value; set them before building the layer")
    if not problem.is_dcp():
        raise ValueError(f"{where}: the problem is not DCP")
    if not problem.is_dpp():
        raise ValueError(f"{where}: the problem is not DPP{_not_dpp(problem, declared)}")
    term = _nonlinear_term(problem.objective.expr)
    if term is not None:
        kind = "quadratic" if term.is_quadratic() else f"nonlinear ({term.curvature.lower()})"
        raise ValueError(
            f"{where}: the objective must be linear in the parameters and the variables; its term "
            f"{_short(term)} is {kind}. The layer's gradient is that of a linear objective: state "
            "the term as a constraint or leave it out"
        )
    sense: Sense = "max" if isinstance(problem.objective, cp.Maximize) else "min"
    name, (compiled, chain, inverse) = _resolve_and_compile(problem, solver, where=where)
    if time_limit is not None and name != "HIGHS" and name not in _TIME_LIMIT:
        raise ValueError(
            f"{where}: time_limit is not supported with solver {name}; supported: "
            f"{', '.join(sorted([*_TIME_LIMIT, 'HIGHS']))}"
        )
    param_prob = compiled["param_prob"]
    cols = np.concatenate(
        [
            _cost_columns(param_prob, chain, p, v, sense, keep=objective == "keep", where=where)
            for p, v in pairs.values()
        ]
    )
    slots = []
    for key, param in declared.items():
        if param.id not in param_prob.param_id_to_col:
            raise ValueError(
                f"{where}: data {key!r}: CVXPY replaces parameter {param.name()} by another (an attribute "
                "such as symmetric, diag or PSD); declare it without such attributes"
            )
        slots.append((int(param_prob.param_id_to_col[param.id]), tuple(param.shape)))
    spec_q = sp.csc_array(param_prob.q)
    if objective == "replace":  # the predicted terms alone: they enter through the cost columns
        spec_q = sp.csc_array(spec_q.shape)
    values = {
        p.id: np.zeros(p.shape) if p.id in cost_ids else np.asarray(p.value, dtype=float) for p in param_prob.parameters
    }
    _, _, _, _ = param_prob.apply_parameters(values)  # sets lower_bounds / upper_bounds
    p0 = _parameter_vector(param_prob, values)
    n = param_prob.x.size
    lower = np.full(n, -math.inf) if param_prob.lower_bounds is None else np.array(param_prob.lower_bounds, float)
    upper = np.full(n, math.inf) if param_prob.upper_bounds is None else np.array(param_prob.upper_bounds, float)
    x = param_prob.x
    index, sign = _dual_map(problem, chain, inverse, param_prob)
    interface = (
        b"" if name == "HIGHS" else _generic_bytes(chain.solver, param_prob, params, replace=objective == "replace")
    )
    fields = tuple(_field(key, param) for key, param in declared.items())
    groups = {k: tuple(v.shape) for k, (_, v) in pairs.items()} if grouped else None
    spec = CvxpySpec(
        solver=name,
        shape=(len(cols),) if grouped else tuple(params[0].shape),
        sense=sense,
        cols=tuple(cols.tolist()),
        q=spec_q,
        a=sp.csc_array(param_prob.A),
        lower=None if param_prob.lb_tensor is None else sp.csc_array(param_prob.lb_tensor),
        upper=None if param_prob.ub_tensor is None else sp.csc_array(param_prob.ub_tensor),
        col_lower=lower,
        col_upper=upper,
        p0=p0,
        zero=int(param_prob.cone_dims.zero),
        integer=tuple(sorted({int(t[0]) for t in x.boolean_idx + x.integer_idx})),
        boolean=tuple(sorted(int(t[0]) for t in x.boolean_idx)),
        slots=tuple(slots),
        dual_index=index,
        dual_sign=sign,
        cost_params=tuple((p.id, tuple(p.shape)) for p in params),
        data_params=tuple(p.id for p in declared.values()),
        interface=interface,
        fields=fields,
    )
    dims = param_prob.cone_dims
    if name == "HIGHS" or dims.zero + dims.nonneg == spec.rows:  # an LP or MIP: no other cone
        spec = dataclasses.replace(spec, box=compiled_box(spec))
    return spec, groups


def compiled_box(spec: CvxpySpec) -> AffineBox:
    """The compiled LP/MIP as the box certificate and the network path shortcut read it (in the
    user's sense: the cost entries at their compiled columns, the fixed part ``sign * q``): rows
    ``A z >= -b`` (equalities for the first ``zero``), the column bounds, and what data reach
    (right-hand sides, column bounds, the fixed part; changed coefficients: no shortcut)."""
    p0 = spec.p0
    a, b = spec.matrix(p0)
    matrix = sp.csr_array(a)
    matrix.sum_duplicates()
    matrix.sort_indices()
    n, m, zero = len(spec.col_lower), spec.rows, spec.zero
    sign = -1.0 if spec.sense == "max" else 1.0
    col_low = opened(spec.col_lower if spec.lower is None else spec.lower @ p0)
    col_high = opened(spec.col_upper if spec.upper is None else spec.upper @ p0)
    row_low = opened(-np.asarray(b, dtype=np.float64))
    row_high = np.where(np.arange(m) < zero, row_low, math.inf)
    q = spec.q @ p0
    boolean = np.zeros(n, dtype=bool)
    boolean[list(spec.boolean)] = True
    integer = np.zeros(n, dtype=bool)
    integer[list(spec.integer)] = True
    # the stacked vector [col_low | col_high | row_low | row_high | own | offset | checked]
    data_cols = _data_columns(spec)
    pieces: list[sp.csr_array] = []
    targets: list[np.ndarray] = []
    for tensor, at in ((spec.lower, 0), (spec.upper, n)):
        rows = _touched(tensor, data_cols)
        if len(rows):
            pieces.append(sp.csr_array(tensor)[rows])
            targets.append(at + rows)
    entries = _touched(spec.a, data_cols)
    entry_cols = entries // max(m, 1)
    tensor_a = sp.csr_array(spec.a)
    rhs = entries[entry_cols == n]
    if len(rhs):
        i = rhs % m
        pieces.append(-tensor_a[rhs])
        targets.append(2 * n + i)
        eq = i < zero
        pieces.append(-tensor_a[rhs[eq]])
        targets.append(2 * n + m + i[eq])
    coeff = entries[entry_cols < n]
    q_rows = _touched(spec.q, data_cols)
    if len(q_rows):
        pieces.append(sign * sp.csr_array(spec.q)[q_rows])
        targets.append(2 * n + 2 * m + q_rows)  # q's last row, the offset, lands on it
    checked = np.zeros(0)
    if len(coeff):
        checked_rows = tensor_a[coeff]
        checked = np.asarray(checked_rows @ p0[:, None], dtype=np.float64)[:, 0]
        pieces.append(checked_rows)
        targets.append(3 * n + 2 * m + 1 + np.arange(len(coeff)))
    width = len(p0)
    affine = sp.csr_array(sp.vstack(pieces)) if pieces else sp.csr_array((0, width))
    box = AffineBox(
        np.asarray(spec.cols, dtype=np.int64),
        col_low,
        col_high,
        matrix,
        row_low,
        row_high,
        sign * np.asarray(q[:n], dtype=np.float64),
        float(sign * q[n]),
        sign,
        (),
        np.zeros(0, dtype=np.int64),
        integral=False,
        flows=True,
        p0=p0,
        slots=tuple((f.name, start, shape) for f, (start, shape) in zip(spec.fields, spec.slots)),
        affine=affine,
        target=np.concatenate(targets).astype(np.int64) if targets else np.zeros(0, dtype=np.int64),
        checked=checked,
        col_low=col_low,
        col_high=col_high,
        clamp_low=np.where(boolean, 0.0, -math.inf),
        clamp_high=np.where(boolean, 1.0, math.inf),
        integer=integer,
    )
    low, high = box.boxed(col_low[None], col_high[None], row_low[None], row_high[None])
    return dataclasses.replace(box, low=low[0], high=high[0])


def _generic_bytes(interface: Any, param_prob: Any, costs: list[cp.Parameter], *, replace: bool) -> bytes:
    """The generic route's solver interface and a private copy of the compiled problem (later
    changes to the user's problem or parameters do not reach it); with ``replace`` its objective
    keeps the predicted terms only."""
    copy = pickle.loads(pickle.dumps(param_prob))
    if replace:
        mask = np.zeros(copy.q.shape[1])
        for p in costs:
            start = copy.param_id_to_col[p.id]
            mask[start : start + p.size] = 1.0
        # sp.diags, not diags_array: scipy 1.10 (supported) has none
        copy.q = sp.csc_array(sp.csc_array(copy.q) @ sp.diags(mask))
    return pickle.dumps((interface, copy))


def _check_pair(problem: cp.Problem, parameter: Any, variable: Any, *, where: str, label: str) -> None:
    if not isinstance(parameter, cp.Parameter):
        raise TypeError(f"{where}: {label}parameter must be a cvxpy.Parameter, got {type(parameter).__name__}")
    if not isinstance(variable, cp.Variable):
        raise TypeError(f"{where}: {label}variable must be a cvxpy.Variable, got {type(variable).__name__}")
    if parameter.shape != variable.shape:
        raise ValueError(
            f"{where}: {label}parameter.shape {parameter.shape} must equal variable.shape {variable.shape}"
        )
    if variable.id not in {v.id for v in problem.variables()}:
        raise ValueError(f"{where}: {label}variable {variable.name()} is not a variable of the problem")
    if parameter.id not in {p.id for p in problem.objective.parameters()}:
        raise ValueError(f"{where}: {label}parameter {parameter.name()} does not appear in the objective")
    attributes = [k for k, v in parameter.attributes.items() if v]
    if attributes:
        raise ValueError(
            f"{where}: {label}the cost parameter must be declared without attributes (got "
            f"{', '.join(attributes)}): projected and noisy costs take any value"
        )
    for i, constraint in enumerate(problem.constraints):
        if parameter.id in {p.id for p in constraint.parameters()}:
            raise ValueError(
                f"{where}: {label}the cost parameter appears in constraint {i} ({constraint}); it may "
                "only enter the objective"
            )


def _check_data(
    problem: cp.Problem, data: Mapping[str, Any], cost_ids: set[int], *, where: str
) -> dict[str, cp.Parameter]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: data must be a dict of name -> cvxpy.Parameter, got {type(data).__name__}")
    own = {p.id for p in problem.parameters()}
    seen: dict[int, str] = {}
    for key, param in data.items():
        if not isinstance(param, cp.Parameter):
            raise ValueError(f"{where}: data {key!r} must be a cvxpy.Parameter, got {type(param).__name__}")
        if param.id in cost_ids:
            raise ValueError(
                f"{where}: data {key!r} is the cost parameter {param.name()}; costs are the layer's first "
                "argument, data are the problem's other parameters"
            )
        if param.id not in own:
            raise ValueError(f"{where}: data {key!r}: parameter {param.name()} is not a parameter of the problem")
        if param.id in seen:
            raise ValueError(f"{where}: data {key!r} and {seen[param.id]!r} are the same parameter {param.name()}")
        seen[param.id] = key
    return dict(data)


def _field(name: str, param: cp.Parameter) -> DataField:
    """The data field of a declared parameter, with what its attributes say of its values
    (``pos`` and ``neg`` as their closed ranges)."""
    attrs = param.attributes
    low, high = -math.inf, math.inf
    if attrs.get("nonneg") or attrs.get("pos") or attrs.get("boolean"):
        low = 0.0
    if attrs.get("nonpos") or attrs.get("neg"):
        high = 0.0
    if attrs.get("boolean"):
        high = 1.0
    bounds = attrs.get("bounds")
    if bounds is not None and all(np.ndim(b) == 0 for b in bounds):
        low, high = max(low, float(bounds[0])), min(high, float(bounds[1]))
    integral = bool(attrs.get("integer") or attrs.get("boolean"))
    return DataField(name, tuple(param.shape), f"values of parameter {param.name()}", integral, False, low, high)


def _not_dpp(problem: cp.Problem, declared: Mapping[str, cp.Parameter]) -> str:
    """Where the problem leaves DPP, naming its parameters (the declared data by their names)."""
    parts = [("the objective", problem.objective)] + [(f"constraint {i}", c) for i, c in enumerate(problem.constraints)]
    names = {p.id: key for key, p in declared.items()}
    for label, part in parts:
        if not part.is_dpp():
            found = [f"data {names[p.id]!r}" if p.id in names else p.name() for p in part.parameters()]
            return (
                f": {label} ({_short(part)}) is not DPP in its parameters {', '.join(found)} (e.g. a "
                "product of parameters); write the objective as sum(parameter * variable) plus terms "
                "linear in the variables, and the constraints affine in the parameters"
            )
    return ""


def _parameter_vector(param_prob: Any, values: Mapping[int, np.ndarray]) -> np.ndarray:
    """CVXPY's parameter vector (entries column-major per parameter, a trailing constant 1)."""
    p = np.zeros(param_prob.total_param_size + 1)
    for pid, col in param_prob.param_id_to_col.items():
        if pid in values:
            flat = np.asarray(values[pid], dtype=float).ravel(order="F")
            p[col : col + len(flat)] = flat
        else:  # the constant's column
            p[col] = 1.0
    return p


def _dual_map(problem: cp.Problem, chain: Any, inverse: Any, param_prob: Any) -> tuple[Any, Any]:
    """Which compiled row (and with which sign) gives each entry of each constraint's
    ``dual_value`` (C order, constraints in ``problem.constraints`` order): read off CVXPY's own
    inversion of numbered duals, then checked on random ones. (None, None) when that inversion
    is not a signed selection of rows."""
    m = sum(c.size for c in param_prob.constraints)

    def invert(y: np.ndarray) -> np.ndarray | None:
        duals = utilities.get_dual_values(y, utilities.extract_dual_value, param_prob.constraints)
        solution = Solution(cp.OPTIMAL, 0.0, {param_prob.x.id: np.zeros(param_prob.x.size)}, duals, {})
        for reduction, data in reversed(list(zip(chain.reductions[:-1], inverse[:-1]))):
            solution = reduction.invert(solution, data)
        values = [solution.dual_vars.get(c.id) for c in problem.constraints]
        if any(v is None for v in values):
            return None
        return np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in values] or [np.zeros(0)])

    try:
        numbered = invert(np.arange(1.0, m + 1))
        check = np.random.default_rng(0).normal(size=m)
        inverted = invert(check)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):  # a reduction that needs more: no duals
        return None, None
    if numbered is None or inverted is None:
        return None, None
    index = np.rint(np.abs(numbered)).astype(np.int64) - 1
    sign = np.sign(numbered)
    if not (np.all((index >= 0) & (index < m)) and np.array_equal(sign * check[index], inverted)):
        return None, None
    return index, sign


def _nonlinear_term(expr: Any) -> Any:
    """The innermost subexpression of ``expr`` that is not affine when parameters count as
    affine (DPP), e.g. ``quad_over_lin(z, 1.0)`` for ``c @ x + cp.sum_squares(z)``; None if
    ``expr`` is affine."""
    with scopes.dpp_scope():
        if expr.is_affine():
            return None
        inner = (_nonlinear_term(arg) for arg in expr.args)
        return next((t for t in inner if t is not None), expr)


def _short(expr: Any, limit: int = 80) -> str:
    text = " ".join(str(expr).split())  # a QuadForm prints its matrix over several lines
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _resolve_and_compile(problem: cp.Problem, solver: str | None, *, where: str) -> tuple[str, Any]:
    """The solver's name and CVXPY's compiled problem for it (compiled once)."""
    if solver is None:
        try:
            return "HIGHS", problem.get_problem_data("HIGHS")
        except cp.error.SolverError:
            # HiGHS takes LPs and MIPs only; a continuous conic problem goes to Clarabel.
            name = "HIGHS" if problem.is_mixed_integer() else "CLARABEL"
            return name, _compile(problem, name, where=where)
    name = solver.upper()
    installed = cp.installed_solvers()
    if name not in installed:
        raise ValueError(f"{where}: solver {solver!r} is not installed; installed: {', '.join(installed)}")
    return name, _compile(problem, name, where=where)


def _compile(problem: cp.Problem, name: str, *, where: str) -> tuple[dict[str, Any], Any, Any]:
    try:
        return problem.get_problem_data(name)
    except (cp.error.SolverError, cp.error.DCPError, ValueError) as exc:
        raise ValueError(f"{where}: CVXPY cannot compile the problem for solver {name}: {exc}") from exc


def _cost_columns(
    param_prob: Any,
    chain: Any,
    parameter: cp.Parameter,
    variable: cp.Variable,
    sense: Sense,
    *,
    keep: bool,
    where: str,
) -> np.ndarray:
    """Compiled column of each cost entry (C order), after checking that the cost parameter
    enters the compiled objective exactly as ``sign * sum(parameter * variable)`` (and, when the
    rest is kept, nowhere else: the fixed part must not depend on the costs)."""
    n = param_prob.x.size
    size = parameter.size
    start = param_prob.param_id_to_col[parameter.id]
    if param_prob.P is not None and sp.csc_array(param_prob.P).count_nonzero():
        raise ValueError(f"{where}: the objective has quadratic terms; it must be linear")
    tensor = sp.csc_array(param_prob.A)
    if tensor[:, start : start + size].count_nonzero():
        raise ValueError(
            f"{where}: the cost parameter enters the compiled constraints (a nonlinear function of "
            "the parameter in the objective?); it must enter as sum(parameter * variable)"
        )
    q = sp.csc_array(param_prob.q)
    block = q[:n, start : start + size].toarray()  # compiled column x parameter entry (F order)
    vid = _compiled_variable_id(chain, variable)
    if vid not in param_prob.var_id_to_col or param_prob.var_id_to_col[vid] + size > n:
        raise ValueError(
            f"{where}: variable {variable.name()} has attributes that change its shape in the "
            "compiled problem; declare it plainly"
        )
    first = param_prob.var_id_to_col[vid]
    own = np.zeros(n, dtype=bool)
    own[first : first + size] = True
    if np.abs(block[~own]).max(initial=0.0) > 0:
        raise ValueError(
            f"{where}: the cost parameter multiplies variables other than {variable.name()}; the "
            "objective must be sum(parameter * variable)"
        )
    sign = -1.0 if sense == "max" else 1.0
    expected = sign * np.eye(size)
    if not np.array_equal(block[own], expected):
        bad = np.argwhere(block[own] != expected)[0]
        raise ValueError(
            f"{where}: the cost parameter must enter as sum(parameter * variable) with coefficient "
            f"1 (c @ x, cp.sum(cp.multiply(c, x))); parameter entry {int(bad[1])} (column-major) "
            f"meets variable entry {int(bad[0])} with coefficient {sign * block[own][tuple(bad)]:g}"
        )
    if keep and q[n, start : start + size].count_nonzero():
        raise ValueError(
            f"{where}: the objective has a term that depends on the cost parameter but not on "
            f"the variables (e.g. cp.sum({parameter.name()})); the model's own objective is kept "
            "and must not depend on the costs: leave the term out, or pass objective='replace' "
            "to solve the predicted term alone"
        )
    fortran = np.arange(size).reshape(variable.shape, order="F").ravel()
    return first + fortran
