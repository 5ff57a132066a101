"""Any pywraplp model as a layer (the solver: :mod:`idproj_or.solvers.linear`)."""

from __future__ import annotations

from typing import Any

from ortools.linear_solver import pywraplp

from ..checks import Declared
from ..solvers.linear import LinearSpec, linear_spec
from .declared import DeclaredLayer


class LinearSolverLayer(DeclaredLayer):
    """Any OR-Tools ``pywraplp.Solver`` (LP or MIP) as a layer: ``y = argmin/argmax own(x) +
    sum(w * y)``, ``y`` the cost variables and ``own`` the solver's own objective (its
    coefficients and offset; none if it declares none).

    Works with every backend linked in this OR-Tools build: SCIP, CBC, CP-SAT, BOP, HiGHS (MIP
    and LP), GLOP, CLP, PDLP. An LP whose optimal face is not a vertex returns the point the
    backend finds (a vertex for simplex, possibly an interior point of the face for PDLP): any
    optimum is valid. ``FEASIBLE`` (a time limit hit with an incumbent) is a decision, reported
    as ``"feasible"`` in ``last_info.status``; an instance without a decision fails as
    ``on_failure`` says (docs/batching.md has the status table). An LP that a backend calls
    INFEASIBLE is checked once with a zero cost, so that an unbounded objective is reported as
    ``"unbounded"``.

    The gradient is that of the predicted term alone (``own`` does not depend on the costs);
    ``last_info.objective`` is the total. BOP (Boolean models only) and SAT (continuous variables
    solved approximately) refuse a model with a continuous variable.

    Per-instance data: ``data={"cap": [ct0, ct1]}`` names constraints or variables of the
    solver; the layer then takes ``layer(costs, cap=values)``, values of shape ``(2,)`` or
    ``(B, 2)``. A single value sets a ``<=`` row's upper bound, a ``>=`` row's lower bound, both
    ends of an equality (and the upper end of any other row); a variable's upper bound. A
    trailing dimension of 2 gives ``(lower, upper)`` pairs. Names an instance does not give keep
    the solver's own bounds. The bounds are those pywraplp stores (constants moved to the
    right-hand side). Bounds that cross make the instance ``"infeasible"``.

    Outcomes: ``last_info.bound`` is the backend's bound on the total objective (a MIP's best
    bound, an LP's objective). With ``solve(costs, duals=True)``: GLOP, CLP and PDLP report
    ``last_info.duals`` (per constraint of the solver, in its order, as the backend gives them:
    d objective / d bound, in the objective's own sense) and ``last_info.reduced_costs`` (per
    cost entry); the MIP backends and HiGHS LP report ``last_info.binding`` (per constraint: its
    activity within ``1e-9`` of its scale of a bound).

    Args:
        model: the declared ``pywraplp.Solver`` (left untouched).
        variables: array-like of the solver's variables; its shape is the cost shape. A dict of
            array-likes (cost groups, e.g. ``{"open": y, "assign": x}``) makes the layer take and
            return a dict of tensors, one per group.
        sense: ``"min"`` or ``"max"``; default: the solver's declared objective sense. With the
            solver's objective kept, it must agree with that objective's direction.
        objective: ``"keep"`` (default): the solver's own objective plus the predicted term;
            ``"replace"``: the predicted term alone.
        data: per-instance bounds: name -> array-like of constraints or of variables.
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``,
            ``on_failure``, ``generator`` (see :mod:`idproj_or.options`).

    Example:
        >>> # an LP, and its dual on the budget row
        >>> import torch
        >>> from ortools.linear_solver import pywraplp
        >>> solver = pywraplp.Solver.CreateSolver("GLOP")
        >>> x = [solver.NumVar(0.0, 1.0, f"x{i}") for i in range(3)]
        >>> budget = solver.Add(x[0] + x[1] + x[2] <= 2)
        >>> layer = LinearSolverLayer(solver, x, sense="max")
        >>> layer.solve(torch.tensor([1.0, 4.0, 2.0]), duals=True).tolist()
        [0.0, 1.0, 1.0]
        >>> layer.last_info.duals.tolist()  # one more unit of budget buys x0's value
        [[1.0]]
    """

    _variable_type = pywraplp.Variable

    @staticmethod
    def _spec(model: Any, solver: Any, declared: Declared) -> LinearSpec:
        return linear_spec(model, declared)
