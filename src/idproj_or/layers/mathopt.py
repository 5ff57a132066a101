"""OR-Tools' MathOpt and model_builder models as layers (the conversion:
:mod:`idproj_or.solvers.mathopt`; the solver: :mod:`idproj_or.solvers.linear`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ortools.linear_solver.python import model_builder as mb
from ortools.math_opt.python import mathopt

from ..checks import Declared, ObjectiveMode, Sense
from ..solvers.linear import LinearSpec
from ..solvers.mathopt import mathopt_spec, model_builder_spec
from .declared import DeclaredLayer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LayerOptions


class _SolverChoiceLayer(DeclaredLayer):
    """A declared model whose layer also takes the solver that solves it."""

    def __init__(
        self,
        model: Any,
        variables: Any,
        *,
        solver: Any = None,
        sense: Sense | None = None,
        objective: ObjectiveMode = "keep",
        data: Mapping[str, Any] | None = None,
        **options: Unpack[LayerOptions],
    ) -> None:
        self._declare(model, solver, variables, sense, objective, data, options)


class MathOptLayer(_SolverChoiceLayer):
    """A linear MathOpt model (LP or MIP) as a layer: ``y = argmin/argmax own(x) + sum(w * y)``,
    ``y`` the cost variables and ``own`` the model's own linear objective (coefficients and
    offset; none if it declares none).

    The model is exported once and solved by the resident route of
    :class:`~idproj_or.LinearSolverLayer` (its ``MPModelProto``, rewritten per instance): on a small
    LP that is 3x faster per solve than MathOpt's own ``IncrementalSolver``, on a small MIP about
    as fast (docs/adapters/mathopt.md has the numbers). Solver types: ``GLOP`` and ``PDLP`` (LPs),
    ``HIGHS``, ``GSCIP``, ``CP_SAT`` (CP-SAT: integer variables only). The others are refused.
    Refused at construction as well: quadratic objectives, quadratic, second-order cone, SOS and
    indicator constraints, auxiliary objectives. Later changes to the model are not seen.

    Statuses, time limits, Ctrl-C, ``last_info.bound`` and, with ``solve(costs, duals=True)``,
    duals (GLOP, PDLP) or binding constraints (the others) are those of
    :class:`~idproj_or.LinearSolverLayer`; duals and binding are per linear constraint, in the
    model's order.

    Per-instance data: ``data={"cap": [c0, c1]}`` names linear constraints or variables of the
    model; the layer then takes ``layer(costs, cap=values)``, values of shape ``(2,)`` or
    ``(B, 2)``. A single value sets a ``<=`` row's upper bound, a ``>=`` row's lower bound, both
    ends of an equality (the upper end of any other row); a variable's upper bound. A trailing
    dimension of 2 gives ``(lower, upper)`` pairs.

    Args:
        model: the MathOpt model (left untouched).
        variables: array-like of the model's variables; its shape is the cost shape. A dict of
            array-likes (cost groups) makes the layer take and return a dict of tensors.
        solver: a ``mathopt.SolverType``; default ``GSCIP``.
        sense: ``"min"`` or ``"max"``; default: the model's declared objective sense. With the
            model's objective kept, it must agree with that objective's direction.
        objective: ``"keep"`` (default): the model's own objective plus the predicted term;
            ``"replace"``: the predicted term alone.
        data: per-instance bounds: name -> array-like of linear constraints or of variables.
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``, ``on_failure``, ``generator`` (see
            :mod:`idproj_or.options`).

    Example:
        >>> import torch
        >>> from ortools.math_opt.python import mathopt
        >>> model = mathopt.Model()
        >>> x = [model.add_binary_variable(name=f"x{i}") for i in range(4)]
        >>> _ = model.add_linear_constraint(sum(x) == 2)
        >>> layer = MathOptLayer(model, x, solver=mathopt.SolverType.GSCIP, sense="max")
        >>> layer(torch.tensor([1.0, 4.0, 2.0, 3.0])).tolist()
        [0.0, 1.0, 0.0, 1.0]
    """

    _variable_type = mathopt.Variable

    @staticmethod
    def _spec(model: Any, solver: Any, declared: Declared) -> LinearSpec:
        return mathopt_spec(model, solver, declared)


class ModelBuilderLayer(_SolverChoiceLayer):
    """A model_builder model (``ortools.linear_solver.python.model_builder.Model``, LP or MIP) as
    a layer: ``y = argmin/argmax own(x) + sum(w * y)``, as :class:`MathOptLayer`.

    The model's ``MPModelProto`` is solved by the resident route of
    :class:`~idproj_or.LinearSolverLayer`, which is model_builder's own solver underneath.
    Solver names: ``"scip"``, ``"highs"``, ``"sat"`` (or ``"cp_sat"``; integer variables only),
    and the LP solvers ``"glop"``, ``"pdlp"``, which solve a MIP's relaxation as model_builder
    does. Enforced (indicator) constraints and quadratic objectives are refused at construction.

    Statuses, time limits, Ctrl-C, outcomes and per-instance data (``data=`` naming linear
    constraints or variables of the model) are those of :class:`MathOptLayer`.

    Args:
        model: the model_builder model (left untouched).
        variables: array-like (or dict of array-likes) of the model's variables.
        solver: a name as ``model_builder.Solver`` takes it; default ``"scip"``.
        sense: ``"min"`` or ``"max"``; default: the model's declared objective sense.
        objective: ``"keep"`` (default) or ``"replace"``.
        data: per-instance bounds: name -> array-like of linear constraints or of variables.
        **options: see :mod:`idproj_or.options`.

    Example:
        >>> # an LP whose budget each instance gives
        >>> import torch
        >>> from ortools.linear_solver.python import model_builder as mb
        >>> model = mb.Model()
        >>> x = [model.new_num_var(0.0, 1.0, f"x{i}") for i in range(3)]
        >>> budget = model.add(x[0] + x[1] + x[2] <= 2)
        >>> layer = ModelBuilderLayer(model, x, solver="glop", sense="max", data={"budget": [budget]})
        >>> layer(torch.tensor([1.0, 4.0, 2.0]), budget=torch.tensor([1.5])).tolist()
        [0.0, 1.0, 0.5]
    """

    _variable_type = mb.Variable

    @staticmethod
    def _spec(model: Any, solver: Any, declared: Declared) -> LinearSpec:
        return model_builder_spec(model, solver, declared)
