"""Any CP-SAT model as a layer (the solver: :mod:`idproj_or.solvers.cpsat`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..checks import ObjectiveMode, Sense
from ..rules.identity import OptLayer
from ..solvers.cpsat import cpsat_spec

if TYPE_CHECKING:
    from ortools.sat.python import cp_model
    from typing_extensions import Unpack

    from ..options import LayerOptions


class CpSatLayer(OptLayer):
    """Any OR-Tools CP-SAT ``CpModel`` as a layer: ``y = argmin/argmax own(x) + sum(w * y)`` over
    the model, ``y`` the cost variables and ``own`` the model's own objective (a known part of the
    objective next to the predicted one; none if the model declares none).

    The gradient is that of the predicted term alone (the method's ``-I`` / ``+I`` through the
    projection): ``own`` does not depend on the costs. ``last_info.objective`` is the total.
    CP-SAT optimises integers: see :mod:`idproj_or.solvers.scaling` for how the costs are scaled
    and when a decision is reported ``"feasible"`` with its ``scaling_error``.

    Args:
        model: the declared model (left untouched).
        variables: array-like of the model's variables (bool or integer); its shape is the cost
            shape.
        sense: ``"min"`` or ``"max"``; default: the model's declared objective sense, else min.
            With the model's objective kept, it must agree with that objective's direction.
        objective: ``"keep"`` (default): the model's own objective plus the predicted term;
            ``"replace"``: the predicted term alone.
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``,
            ``on_failure``, ``generator`` (see :mod:`idproj_or.options`).

    Example:
        >>> import torch
        >>> from ortools.sat.python import cp_model
        >>> m = cp_model.CpModel()
        >>> x = [m.new_bool_var(f"x{i}") for i in range(4)]
        >>> _ = m.add(sum(x) == 2)
        >>> layer = CpSatLayer(m, x, sense="max")
        >>> layer(torch.tensor([1.0, 4.0, 2.0, 3.0])).tolist()
        [0.0, 1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        model: cp_model.CpModel,
        variables: Any,
        sense: Sense | None = None,
        *,
        objective: ObjectiveMode = "keep",
        **options: Unpack[LayerOptions],
    ) -> None:
        spec = cpsat_spec(model, variables, sense, objective=objective, where=type(self).__name__)
        super().__init__(spec, **options)
