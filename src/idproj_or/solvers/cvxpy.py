"""CVXPY adapter: a ``cp.Problem``, LP or MIP, whose objective is ``sum(parameter * variable)``
plus the model's own fixed part, any affine expression of its variables (kept unless
``objective="replace"``; the cost parameter stays out of it).

Spec: the compiled problem CVXPY builds once (``problem.get_problem_data(solver)``): its
``param_prob`` (a ``ParamConeProg``: ``min q(p)'x s.t. A x + b in K`` with ``q`` linear in the
parameters) and the solver interface, plus the compiled column of each cost entry. The
``Problem`` itself never reaches a worker.

The cost is exactly the parameter value: cost entry ``k`` (C order over ``variable.shape``) is
``parameter.value.flat[k]``. CVXPY stacks variables in column-major (Fortran) order, so entry
``(i, j)`` of a matrix variable sits at compiled column ``start + i + j * rows``. The compiled
objective is ``q = q_fixed + sign * scatter(w)`` with ``sign = -1`` for ``Maximize`` (CVXPY flips a
maximisation into a minimisation) and ``q_fixed`` (with an offset) the compiled fixed part at the
other parameters' values; its value at the decision is reported in the user's units
(``Outcome.fixed``). ``objective="replace"`` zeroes ``q_fixed`` in the spec's copy of the
compiled problem.

Resident solver:

- HiGHS (the default): a ``highspy.Highs`` model built once from the compiled data (the same
  matrices CVXPY's own HiGHS interface passes, with the fixed part's costs); each solve changes
  only the cost columns (fixed coefficient plus ``sign * w``), clears
  the previous basis and solution (no warm start, so ties do not depend on the previous
  instance) and runs: several times faster than ``problem.solve(solver="HIGHS")`` per
  instance (docs/benchmarks.md, "Design measurements").
- any other CVXPY solver (CLARABEL, SCS, SCIPY, OSQP, GUROBI, ...): per instance the compiled
  problem is re-instantiated with the new parameter value (``solver.apply(param_prob)``, the
  step CVXPY's own DPP fast path does) and passed to ``solver.solve_via_data``. This skips
  CVXPY's canonicalisation but not the solver's set-up. (For GLOP and PDLP,
  :class:`LinearSolverLayer` keeps the model resident instead.)

``last_info.solver_status`` is HiGHS's model status (e.g. ``"kTimeLimit"``) on the resident
HiGHS route and CVXPY's status (``"optimal_inaccurate"``, ``"user_limit"``, ...) on the others.
A time limit with a feasible point is a decision (``"feasible"``), as is
``"optimal_inaccurate"``; without one it is ``"time_limit"``.
"""

from __future__ import annotations

import math
import pickle
import time
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.utilities import scopes

from .. import statuses
from ..checks import ObjectiveMode, Sense, check_objective_mode
from ..statuses import Outcome
from .base import NO_DATA, Data, ModelSpec, ResidentSolver
from .scaling import beyond_range

# HiGHS model status -> common status; the others are "error".
_HIGHS_STATUS = {
    "kOptimal": statuses.OPTIMAL,
    "kInfeasible": statuses.INFEASIBLE,
    "kUnbounded": statuses.UNBOUNDED,
    "kUnboundedOrInfeasible": statuses.INFEASIBLE_OR_UNBOUNDED,
    "kTimeLimit": statuses.TIME_LIMIT,
    "kIterationLimit": statuses.TIME_LIMIT,
    "kSolutionLimit": statuses.TIME_LIMIT,
    "kInterrupt": statuses.INTERRUPTED,
}
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


@dataclass(frozen=True, eq=False)
class CvxpySpec(ModelSpec):
    solver: str  # CVXPY solver name, e.g. "HIGHS"
    interface: Any  # the CVXPY solver interface (a picklable reduction object)
    param_prob: Any  # compiled ParamConeProg (a private copy)
    param_id: int  # id of the cost parameter inside ``param_prob``
    cols: tuple[int, ...]  # compiled column of each cost entry (C order over ``shape``)
    shape: tuple[int, ...]
    sense: Sense

    @property
    def on_caller_thread(self) -> bool:  # type: ignore[override]
        return self.solver == "HIGHS"  # the resident HiGHS model can be stopped mid-solve

    def cost_parameter(self) -> cp.Parameter:
        return next(p for p in self.param_prob.parameters if p.id == self.param_id)

    def build(self) -> ResidentSolver:
        # The constraints do not depend on the cost: compile them with a zero cost.
        self.cost_parameter().value = np.zeros(self.shape)
        if self.solver == "HIGHS":
            return HighsSolver(self)
        return GenericSolver(self)

    def parameter_values(self, cost: np.ndarray | None = None) -> dict[int, np.ndarray]:
        """Values of every parameter of ``param_prob``, with the cost parameter set to ``cost``
        (zeros when None)."""
        values = {p.id: np.asarray(p.value, dtype=float) for p in self.param_prob.parameters if p.id != self.param_id}
        values[self.param_id] = np.zeros(self.shape) if cost is None else cost.reshape(self.shape)
        return values

    def equalities(self) -> tuple[np.ndarray, np.ndarray]:
        # param_prob's constraints are A x + b in K with the zero cone first.
        _, _, a, b = self.param_prob.apply_parameters(self.parameter_values())
        zero = self.param_prob.cone_dims.zero
        a = sp.csr_array(a)[:zero]
        a.eliminate_zeros()
        cols = np.asarray(self.cols)
        inside = np.zeros(a.shape[1], dtype=bool)
        inside[cols] = True
        # Keep the nonempty rows whose every column is a cost column.
        keep = [
            r
            for r in range(zero)
            if a.indptr[r + 1] > a.indptr[r] and inside[a.indices[a.indptr[r] : a.indptr[r + 1]]].all()
        ]
        rows = a[keep][:, cols].toarray() if keep else np.zeros((0, len(cols)))
        return rows, -np.asarray(b)[keep]


class CompiledSolver(ResidentSolver):
    """What the two routes share: the cost columns, the integer columns, and the fixed part of
    the compiled objective (``coeffs @ z + offset`` over the compiled columns ``z``, in the
    minimisation CVXPY compiles)."""

    check_unbounded = True

    def __init__(self, spec: CvxpySpec, coeffs: np.ndarray, offset: float) -> None:
        x = spec.param_prob.x
        # As CVXPY's own interfaces: booleans are integers in [0, 1].
        self.integer = np.array(sorted({int(t[0]) for t in x.boolean_idx + x.integer_idx}), dtype=np.int64)
        self.cols = np.asarray(spec.cols, dtype=np.int32)
        self.sign = -1.0 if spec.sense == "max" else 1.0
        self.coeffs = np.asarray(coeffs, dtype=np.float64)
        self.offset = float(offset)

    def decision(self, z: np.ndarray, common: str, word: str, cost: np.ndarray) -> Outcome:
        """The outcome for the compiled solution ``z`` of ``cost``: integers rounded, the cost
        entries, and the fixed part's value at them in the user's units (``sign`` undoes CVXPY's
        flip); "feasible" with an infinite scaling error for costs beyond what the solver's
        tolerances resolve (:data:`~idproj_or.solvers.scaling.RESOLVED_RANGE`)."""
        z = np.array(z, dtype=np.float64).reshape(-1)
        z[self.integer] = np.rint(z[self.integer]) + 0.0  # "+ 0.0": no -0.0
        fixed = self.sign * (float(self.coeffs @ z) + self.offset)
        if common == statuses.OPTIMAL and beyond_range(np.concatenate([cost, self.coeffs])):
            return Outcome(z[self.cols], statuses.FEASIBLE, word, fixed, math.inf)
        return Outcome(z[self.cols], common, word, fixed)


class HighsSolver(CompiledSolver):
    """The compiled LP/MIP as a resident highspy model; only column costs change per solve."""

    def __init__(self, spec: CvxpySpec) -> None:
        import highspy

        prob = spec.param_prob
        # A x + b in K, zero-cone rows first, then nonnegative rows (an LP/MIP has no others).
        c, d, a, b = prob.apply_parameters(spec.parameter_values())
        super().__init__(spec, c, d)
        a = sp.csc_array(a)
        b = np.asarray(b, dtype=float)
        n = a.shape[1]
        inf = highspy.kHighsInf
        zero = prob.cone_dims.zero
        lower = np.full(n, -inf) if prob.lower_bounds is None else np.array(prob.lower_bounds, float)
        upper = np.full(n, inf) if prob.upper_bounds is None else np.array(prob.upper_bounds, float)
        booleans = [int(t[0]) for t in prob.x.boolean_idx]
        if booleans:
            lower[booleans] = np.maximum(lower[booleans], 0.0)
            upper[booleans] = np.minimum(upper[booleans], 1.0)
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = a.shape[0]
        lp.col_cost_ = self.coeffs
        lp.col_lower_ = lower
        lp.col_upper_ = upper
        lp.row_lower_ = -b
        lp.row_upper_ = np.concatenate([-b[:zero], np.full(len(b) - zero, inf)])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr
        lp.a_matrix_.index_ = a.indices
        lp.a_matrix_.value_ = a.data
        if len(self.integer):
            kinds = [highspy.HighsVarType.kContinuous] * n
            for j in self.integer.tolist():
                kinds[j] = highspy.HighsVarType.kInteger
            lp.integrality_ = kinds
        self.lp = lp
        self._stop = False
        self.highs = self._new_highs()
        # The fixed part's coefficients on the cost columns, to which each cost is added.
        self.base = self.coeffs[self.cols]

    def _new_highs(self) -> Any:
        import highspy

        highs = highspy.Highs()
        for name, value in (("output_flag", False), ("threads", 1), ("random_seed", 0), ("mip_rel_gap", 0.0)):
            highs.setOptionValue(name, value)
        highs.passModel(self.lp)
        # interrupt() from another thread stops a MIP at its next node and an interior-point run
        # at its next iteration (no measurable cost; a check per simplex iteration costs ~5%)
        for event in ("cbIpmInterrupt", "cbMipInterrupt"):
            callback = getattr(highs, event)
            callback += self._check_stop
            setattr(highs, event, callback)
        self._time_limit: float | None = None
        return highs

    def _check_stop(self, event: Any) -> None:
        if self._stop:
            event.interrupt()

    def interrupt(self) -> None:
        self._stop = True

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        highs = self.highs
        highs.changeColsCost(len(self.cols), self.cols, self.base + self.sign * cost)
        # Forget the previous basis and solution: a warm start would make the optimum returned
        # among ties depend on the instance solved before.
        highs.clearSolver()
        self._stop = False
        if time_limit != self._time_limit:
            highs.setOptionValue("time_limit", math.inf if time_limit is None else float(time_limit))
            self._time_limit = time_limit
        highs.run()
        word = highs.getModelStatus().name
        common = _HIGHS_STATUS.get(word, statuses.ERROR)
        if common == statuses.INTERRUPTED:  # HiGHS keeps the interrupt for later runs: start anew
            self.highs = self._new_highs()
            return statuses.no_decision(common, word)
        feasible = highs.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible
        if common == statuses.TIME_LIMIT and feasible:
            common = statuses.FEASIBLE
        if common not in statuses.SOLVED:
            return statuses.no_decision(common, word)
        return self.decision(highs.getSolution().col_value, common, word, cost)


class GenericSolver(CompiledSolver):
    """Any other CVXPY solver: re-instantiate the compiled problem per cost, solve, invert."""

    def __init__(self, spec: CvxpySpec) -> None:
        c, d, _, _ = spec.param_prob.apply_parameters(spec.parameter_values())
        super().__init__(spec, c, d)
        self.spec = spec
        self.param = spec.cost_parameter()

    def solve(self, cost: np.ndarray, time_limit: float | None, data: Data = NO_DATA) -> Outcome:
        t0 = time.perf_counter()
        self.param.value = cost.reshape(self.spec.shape)
        data, inverse = self.spec.interface.apply(self.spec.param_prob)
        options = dict(_FIXED_OPTIONS.get(self.spec.solver, {}))
        if time_limit is not None:
            key = _TIME_LIMIT[self.spec.solver]
            if key is None:
                options["scipy_options"] = {"time_limit": float(time_limit)}
            else:
                options[key] = float(time_limit)
        raw = self.spec.interface.solve_via_data(data, False, False, options)
        solution = self.spec.interface.invert(raw, inverse)
        word = solution.status
        common = _CVXPY_STATUS.get(word, statuses.ERROR)
        values = list(solution.primal_vars.values())
        z = None
        if len(values) == 1 and values[0] is not None:
            z = np.asarray(values[0], dtype=np.float64).reshape(-1)
        if common in statuses.SOLVED and z is not None and np.isfinite(z).all():
            return self.decision(z, common, word, cost)
        if common in statuses.SOLVED:  # a limit or an inaccurate end without a point
            common = statuses.unsolved(time_limit, time.perf_counter() - t0)
        return statuses.no_decision(common, word)


def _compiled_variable_id(chain: Any, variable: cp.Variable) -> int:
    """Id of ``variable`` in the compiled problem (reductions may substitute a fresh variable,
    e.g. for ``nonneg`` when the solver has no variable bounds)."""
    ids = [variable.id]
    for reduction in chain.reductions:
        mapping = getattr(reduction, "var_id_map", None) or {}
        ids = [j for i in ids for j in mapping.get(i, [i])]
    return ids[0] if len(ids) == 1 else -1


def cvxpy_spec(
    problem: cp.Problem,
    parameter: cp.Parameter,
    variable: cp.Variable,
    solver: str | None,
    time_limit: float | None,
    *,
    objective: ObjectiveMode = "keep",
    where: str,
) -> CvxpySpec:
    objective = check_objective_mode(objective, where=where)
    if not isinstance(problem, cp.Problem):
        raise TypeError(f"{where}: problem must be a cvxpy.Problem, got {type(problem).__name__}")
    if not isinstance(parameter, cp.Parameter):
        raise TypeError(f"{where}: parameter must be a cvxpy.Parameter, got {type(parameter).__name__}")
    if not isinstance(variable, cp.Variable):
        raise TypeError(f"{where}: variable must be a cvxpy.Variable, got {type(variable).__name__}")
    if parameter.shape != variable.shape:
        raise ValueError(f"{where}: parameter.shape {parameter.shape} must equal variable.shape {variable.shape}")
    if variable.id not in {v.id for v in problem.variables()}:
        raise ValueError(f"{where}: variable {variable.name()} is not a variable of the problem")
    if parameter.id not in {p.id for p in problem.objective.parameters()}:
        raise ValueError(f"{where}: parameter {parameter.name()} does not appear in the objective")
    attributes = [k for k, v in parameter.attributes.items() if v]
    if attributes:
        raise ValueError(
            f"{where}: the cost parameter must be declared without attributes (got "
            f"{', '.join(attributes)}): projected and noisy costs take any value"
        )
    for i, constraint in enumerate(problem.constraints):
        if parameter.id in {p.id for p in constraint.parameters()}:
            raise ValueError(
                f"{where}: the cost parameter appears in constraint {i} ({constraint}); it may only enter the objective"
            )
    unset = [p.name() for p in problem.parameters() if p.id != parameter.id and p.value is None]
    if unset:
        raise ValueError(f"{where}: parameters {unset} have no value; set them before building the layer")
    if not problem.is_dcp():
        raise ValueError(f"{where}: the problem is not DCP")
    if not problem.is_dpp():
        raise ValueError(
            f"{where}: the problem is not DPP (e.g. a product of parameters); write the objective "
            "as sum(parameter * variable) plus terms linear in the variables whose coefficients "
            "are affine in the other parameters"
        )
    term = _nonlinear_term(problem.objective.expr)
    if term is not None:
        kind = "quadratic" if term.is_quadratic() else f"nonlinear ({term.curvature.lower()})"
        raise ValueError(
            f"{where}: the objective must be linear in the parameters and the variables; its term "
            f"{_short(term)} is {kind}. The layer's gradient is that of a linear objective: state "
            "the term as a constraint or leave it out"
        )
    sense: Sense = "max" if isinstance(problem.objective, cp.Maximize) else "min"
    name = _resolve_solver(problem, solver, where=where)
    if time_limit is not None and name != "HIGHS" and name not in _TIME_LIMIT:
        raise ValueError(
            f"{where}: time_limit is not supported with solver {name}; supported: "
            f"{', '.join(sorted([*_TIME_LIMIT, 'HIGHS']))}"
        )
    data, chain, _ = _compile(problem, name, where=where)
    param_prob = data["param_prob"]
    cols = _cost_columns(param_prob, chain, parameter, variable, sense, keep=objective == "keep", where=where)
    # A private copy: later changes to the user's problem or parameters do not reach the spec.
    param_prob = pickle.loads(pickle.dumps(param_prob))
    if objective == "replace":  # the compiled objective's map restricted to the cost parameter
        start = param_prob.param_id_to_col[parameter.id]
        mask = np.zeros(param_prob.q.shape[1])
        mask[start : start + parameter.size] = 1.0
        # sp.diags, not diags_array: scipy 1.10 (supported) has none
        param_prob.q = sp.csc_array(sp.csc_array(param_prob.q) @ sp.diags(mask))
    return CvxpySpec(name, chain.solver, param_prob, parameter.id, tuple(cols.tolist()), tuple(variable.shape), sense)


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


def _resolve_solver(problem: cp.Problem, solver: str | None, *, where: str) -> str:
    if solver is None:
        try:
            problem.get_problem_data("HIGHS")
            return "HIGHS"
        except cp.error.SolverError:
            # HiGHS takes LPs and MIPs only; a continuous conic problem goes to Clarabel.
            return "HIGHS" if problem.is_mixed_integer() else "CLARABEL"
    name = solver.upper()
    installed = cp.installed_solvers()
    if name not in installed:
        raise ValueError(f"{where}: solver {solver!r} is not installed; installed: {', '.join(installed)}")
    return name


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


class ParameterWatch:
    """Re-reads the problem's other parameters before each solve: a changed value (a capacity,
    a demand) recompiles the spec, so that the layer never solves a stale model. A change of the
    equality rows over the cost variables is followed too: the handle takes "auto"'s basis from
    the current spec (:meth:`~idproj_or.handle.SolveHandle.invariance_basis`)."""

    def __init__(
        self,
        problem: cp.Problem,
        parameter: cp.Parameter,
        variable: cp.Variable,
        solver: str | None,
        time_limit: float | None,
        *,
        objective: ObjectiveMode,
        where: str,
    ) -> None:
        self.args = (problem, parameter, variable, solver, time_limit)
        self.objective = objective
        self.others = [p for p in problem.parameters() if p.id != parameter.id]
        self.values = [np.array(p.value, dtype=float) for p in self.others]
        self.where = where

    def __call__(self) -> CvxpySpec | None:
        changed = [i for i, (p, v) in enumerate(zip(self.others, self.values)) if not np.array_equal(p.value, v)]
        if not changed:
            return None
        unset = [self.others[i].name() for i in changed if self.others[i].value is None]
        if unset:
            raise ValueError(f"{self.where}: parameters {unset} have no value; set them before solving")
        spec = cvxpy_spec(*self.args, objective=self.objective, where=self.where)
        self.values = [np.array(p.value, dtype=float) for p in self.others]
        return spec
