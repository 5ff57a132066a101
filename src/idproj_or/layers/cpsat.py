"""Any CP-SAT model as a layer (the solver: :mod:`idproj_or.solvers.cpsat`)."""

from __future__ import annotations

from typing import Any

from ortools.sat.python import cp_model

from ..checks import Declared
from ..solvers.cpsat import CpSatSpec, cpsat_spec
from .declared import DeclaredLayer


class CpSatLayer(DeclaredLayer):
    """Any OR-Tools CP-SAT ``CpModel`` as a layer: ``y = argmin/argmax own(x) + sum(w * y)`` over
    the model, ``y`` the cost variables and ``own`` the model's own objective (a known part of the
    objective next to the predicted one; none if the model declares none).

    The gradient is that of the predicted term alone (the method's ``-I`` / ``+I`` through the
    projection): ``own`` does not depend on the costs. ``last_info.objective`` is the total.
    CP-SAT optimises integers: see :mod:`idproj_or.solvers.scaling` for how the costs are scaled
    and when a decision is reported ``"feasible"`` with its ``scaling_error``.

    Per-instance data: ``data={"cap": [ct0, ct1]}`` names linear constraints (``model.add(expr
    <= k)``, enforced or not) or variables of the model, with interval domains; the layer then
    takes ``layer(costs, cap=values)``, integers of shape ``(2,)`` or ``(B, 2)``. A single value
    sets a ``<=`` row's upper bound, a ``>=`` row's lower bound, both ends of an equality (and
    the upper end of any other row); a variable's upper bound. A trailing dimension of 2 gives
    ``(lower, upper)`` pairs. Names an instance does not give keep the model's own bounds. The
    bounds are those of the constraint's linear part as CP-SAT stores it (constants moved to the
    right-hand side). Bounds that cross make the instance ``"infeasible"``.

    Outcomes: ``last_info.bound`` is CP-SAT's proven bound on the total objective, in the
    costs' units (widened by what the integer scaling can move it); with ``solve(costs,
    duals=True)``, ``last_info.binding`` flags, per constraint of the model in its order, the
    linear constraints (enforced ones only when enforced) whose activity is at an end of their
    domain; every other constraint is False. CP-SAT has no duals.

    Args:
        model: the declared model (left untouched).
        variables: array-like of the model's variables (bool or integer); its shape is the cost
            shape. A dict of array-likes (cost groups, e.g. ``{"open": y, "assign": x}``) makes
            the layer take and return a dict of tensors, one per group.
        sense: ``"min"`` or ``"max"``; default: the model's declared objective sense, else min.
            With the model's objective kept, it must agree with that objective's direction.
        objective: ``"keep"`` (default): the model's own objective plus the predicted term;
            ``"replace"``: the predicted term alone.
        data: per-instance bounds: name -> array-like of linear constraints or of variables.
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``,
            ``on_failure``, ``generator`` (see :mod:`idproj_or.options`).

    Example:
        >>> # a knapsack whose capacity each instance gives
        >>> import torch
        >>> from ortools.sat.python import cp_model
        >>> m = cp_model.CpModel()
        >>> x = [m.new_bool_var(f"x{i}") for i in range(4)]
        >>> cap = m.add(3 * x[0] + 4 * x[1] + 2 * x[2] + 5 * x[3] <= 7)
        >>> layer = CpSatLayer(m, x, sense="max", data={"cap": [cap]})
        >>> values = torch.tensor([[1.0, 4.0, 2.0, 3.5], [1.0, 4.0, 2.0, 3.5]])
        >>> layer(values, cap=torch.tensor([[7], [9]])).tolist()
        [[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]
    """

    _variable_type = cp_model.IntVar

    @staticmethod
    def _spec(model: Any, solver: Any, declared: Declared) -> CpSatSpec:
        return cpsat_spec(model, declared)
