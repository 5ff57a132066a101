"""OR-Tools' MathOpt and model_builder models as :class:`~.linear.LinearSpec` (front side).

Both are converted to an ``MPModelProto`` and solved by the resident
:class:`~.linear.LinearSolver`: measured on OR-Tools 9.15 (benchmarks/mathopt.py,
docs/adapters/mathopt.md), that route takes 0.3x the time per solve of a resident MathOpt
``IncrementalSolver`` loop on a small LP (1.16x on a small MIP, where SCIP's own work dominates),
and at most that of a hand-written model_builder ``Solver`` loop (which it is, underneath).

A MathOpt ``ModelProto`` maps one to one on the linear part: variables (bounds, integrality),
linear constraints (bounds, sparse rows), the linear objective (offset, coefficients, sense);
element ids become proto positions. Every other element is refused.
"""

from __future__ import annotations

import math
from typing import Any

from ortools.linear_solver import linear_solver_pb2
from ortools.linear_solver.python import model_builder as mb
from ortools.math_opt import model_pb2
from ortools.math_opt.python import mathopt

from ..checks import Declared
from .bounds import UPPER, bound_fields, side_of
from .linear import LinearSpec, spec_from_proto

# MathOpt solver type -> (LP backend or None, MIP backend or None) of the resident route.
_MATHOPT_BACKENDS: dict[str, tuple[str | None, str | None]] = {
    "GLOP": ("GLOP", None),
    "PDLP": ("PDLP", None),
    "HIGHS": ("HIGHS_LP", "HIGHS"),
    "GSCIP": ("SCIP", "SCIP"),
    "CP_SAT": ("SAT", "SAT"),
}
# Why the other solver types are refused.
_MATHOPT_REFUSED = {
    "GUROBI": "needs Gurobi's library and licence, which OR-Tools' bundled route does not load",
    "GLPK": "is not linked in this OR-Tools build",
    "SANTORINI": "is an experimental MathOpt-only solver",
    "OSQP": "is a QP solver for continuous models; use CvxpyLayer for those",
    "ECOS": "is a conic solver for continuous models; use CvxpyLayer for those",
    "SCS": "is a conic solver for continuous models; use CvxpyLayer for those",
}
# model_builder solver name (upper case) -> (LP backend, MIP backend or None); an LP solver
# solves a MIP's relaxation, as model_builder's own Solver does.
_MODEL_BUILDER_BACKENDS: dict[str, tuple[str, str | None]] = {
    "GLOP": ("GLOP", None),
    "PDLP": ("PDLP", None),
    "HIGHS": ("HIGHS_LP", "HIGHS"),
    "SCIP": ("SCIP", "SCIP"),
    "SAT": ("SAT", "SAT"),
    "CP_SAT": ("SAT", "SAT"),
}


def mathopt_to_mp(proto: model_pb2.ModelProto, *, where: str) -> linear_solver_pb2.MPModelProto:
    """The linear model of a MathOpt ``ModelProto`` as an ``MPModelProto`` (positions for ids);
    refuses every element that is not linear."""
    others = {
        "quadratic_constraints": "quadratic constraints",
        "second_order_cone_constraints": "second-order cone constraints",
        "sos1_constraints": "SOS1 constraints",
        "sos2_constraints": "SOS2 constraints",
        "indicator_constraints": "indicator constraints",
        "auxiliary_objectives": "auxiliary objectives (multi-objective)",
    }
    for field, what in others.items():
        if len(getattr(proto, field)):
            raise ValueError(
                f"{where}: the model has {what}, which this layer does not support; it takes linear "
                "models (variables, linear constraints, a linear objective)"
            )
    if len(proto.objective.quadratic_coefficients.row_ids):
        raise ValueError(
            f"{where}: the model's objective has a quadratic part, which this layer does not support "
            "(it differentiates a linear objective); state a linear objective"
        )
    out = linear_solver_pb2.MPModelProto()
    variables = proto.variables
    for lo, hi, integer in zip(variables.lower_bounds, variables.upper_bounds, variables.integers):
        out.variable.add(lower_bound=lo, upper_bound=hi, is_integer=integer)
    var_pos = {v: k for k, v in enumerate(variables.ids)}
    rows = proto.linear_constraints
    for lo, hi in zip(rows.lower_bounds, rows.upper_bounds):
        out.constraint.add(lower_bound=lo, upper_bound=hi)
    row_pos = {r: k for k, r in enumerate(rows.ids)}
    matrix = proto.linear_constraint_matrix
    for r, v, a in zip(matrix.row_ids, matrix.column_ids, matrix.coefficients):
        ct = out.constraint[row_pos[r]]
        ct.var_index.append(var_pos[v])
        ct.coefficient.append(a)
    objective = proto.objective
    out.maximize = objective.maximize
    out.objective_offset = objective.offset
    for v, c in zip(objective.linear_coefficients.ids, objective.linear_coefficients.values):
        out.variable[var_pos[v]].objective_coefficient = c
    return out


def mathopt_spec(model: mathopt.Model, solver: Any, declared: Declared) -> LinearSpec:
    """The spec of a MathOpt model solved by ``solver`` (a ``mathopt.SolverType``; None: GSCIP)."""
    where = declared.where
    if not isinstance(model, mathopt.Model):
        raise TypeError(f"{where}: model must be an ortools.math_opt.python.mathopt.Model, got {type(model).__name__}")
    solver = mathopt.SolverType.GSCIP if solver is None else solver
    if not isinstance(solver, mathopt.SolverType):
        raise TypeError(f"{where}: solver must be a mathopt.SolverType, got {solver!r}")
    name = solver.name
    if name not in _MATHOPT_BACKENDS:
        supported = ", ".join(f"SolverType.{k}" for k in _MATHOPT_BACKENDS)
        why = _MATHOPT_REFUSED.get(name, "is not supported")
        raise ValueError(f"{where}: solver=SolverType.{name} {why}; supported: {supported}")
    proto = mathopt_to_mp(model.export_model(), where=where)
    is_mip = any(var.is_integer for var in proto.variable)
    lp_backend, mip_backend = _MATHOPT_BACKENDS[name]
    if is_mip and mip_backend is None:
        raise ValueError(
            f"{where}: SolverType.{name} solves LPs only and the model has integer variables; use "
            "SolverType.GSCIP or SolverType.HIGHS, or make the variables continuous"
        )
    backend = mip_backend if is_mip else lp_backend
    assert backend is not None
    positions = {var.id: k for k, var in enumerate(model.variables())}
    rows = {ct.id: k for k, ct in enumerate(model.linear_constraints())}

    def variable_index(item: Any, at: str) -> int:
        try:
            model.check_compatible(item)
        except ValueError:
            raise ValueError(f"{at} ({item.name!r}) is not a variable of this model") from None
        return positions[item.id]

    flat = declared.variables.reshape(-1).tolist()
    index = [variable_index(v, f"{where}: variables[{pos}]") for pos, v in enumerate(flat)]

    def identify(name: str, pos: int, item: Any) -> tuple[bool, int, int]:
        at = f"{where}: data {name!r}[{pos}]"
        if isinstance(item, mathopt.Variable):
            return True, variable_index(item, at), UPPER
        if isinstance(item, mathopt.LinearConstraint):
            try:
                model.check_compatible(item)
            except ValueError:
                raise ValueError(f"{at} ({item.name!r}) is not a linear constraint of this model") from None
            k = rows[item.id]
            ct = proto.constraint[k]
            return False, k, side_of(ct.lower_bound, ct.upper_bound, low_inf=-math.inf, high_inf=math.inf)
        raise ValueError(
            f"{at} is a {type(item).__name__}; expected a linear constraint (model.add_linear_constraint) "
            "or a variable of the model"
        )

    return spec_from_proto(proto, index, backend, is_mip, declared, bound_fields(declared.data, identify, where=where))


def model_builder_spec(model: mb.Model, solver: str | None, declared: Declared) -> LinearSpec:
    """The spec of a model_builder model solved by ``solver`` (a name as ``model_builder.Solver``
    takes it; None: ``"scip"``)."""
    where = declared.where
    if not isinstance(model, mb.Model):
        raise TypeError(
            f"{where}: model must be an ortools.linear_solver.python.model_builder.Model, got {type(model).__name__}"
        )
    solver = "scip" if solver is None else solver
    key = solver.upper() if isinstance(solver, str) else None
    if key not in _MODEL_BUILDER_BACKENDS:
        supported = ", ".join(repr(k.lower()) for k in _MODEL_BUILDER_BACKENDS)
        raise ValueError(
            f"{where}: solver={solver!r} is not supported (the resident route runs OR-Tools' "
            f"bundled solvers); supported: {supported}"
        )
    proto = model.export_to_proto()
    if len(proto.general_constraint):
        raise ValueError(
            f"{where}: the model has enforced (indicator) or other general constraints, which this "
            "layer does not support; it takes linear models (variables, linear constraints, a linear objective)"
        )
    if len(proto.quadratic_objective.coefficient):
        raise ValueError(
            f"{where}: the model's objective has a quadratic part, which this layer does not support "
            "(it differentiates a linear objective); state a linear objective"
        )
    lp_backend, mip_backend = _MODEL_BUILDER_BACKENDS[key]
    is_mip = mip_backend is not None and any(var.is_integer for var in proto.variable)
    backend = mip_backend if is_mip and mip_backend else lp_backend

    def own(item: Any, at: str, what: str) -> int:
        if item.helper is not model.helper:
            raise ValueError(f"{at} ({item.name!r}) is not a {what} of this model")
        return int(item.index)

    index = [own(v, f"{where}: variables[{pos}]", "variable") for pos, v in enumerate(declared.variables.flat)]

    def identify(name: str, pos: int, item: Any) -> tuple[bool, int, int]:
        at = f"{where}: data {name!r}[{pos}]"
        if isinstance(item, mb.Variable):
            return True, own(item, at, "variable"), UPPER
        if isinstance(item, mb.LinearConstraint):
            k = own(item, at, "linear constraint")
            ct = proto.constraint[k]
            return False, k, side_of(ct.lower_bound, ct.upper_bound, low_inf=-math.inf, high_inf=math.inf)
        raise ValueError(
            f"{at} is a {type(item).__name__}; expected a linear constraint (model.add(...)) or a variable of the model"
        )

    return spec_from_proto(proto, index, backend, is_mip, declared, bound_fields(declared.data, identify, where=where))
