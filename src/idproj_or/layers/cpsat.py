"""Any CP-SAT model as a layer (the solver: :mod:`idproj_or.solvers.cpsat`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..rules.identity import OptLayer
from ..solvers.cpsat import cpsat_spec

if TYPE_CHECKING:
    from ortools.sat.python import cp_model
    from typing_extensions import Unpack

    from ..options import LayerOptions


class CpSatLayer(OptLayer):
    """Any OR-Tools CP-SAT ``CpModel`` as a layer: ``y = argmin/argmax sum(w * x)`` over the model.

    Args:
        model: the declared model; its own objective (if any) is replaced.
        variables: array-like of the model's variables (bool or integer); its shape is the cost
            shape.
        sense: ``"min"`` or ``"max"``; default: the model's declared objective sense, else min.
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
        sense: str | None = None,
        **options: Unpack[LayerOptions],
    ) -> None:
        spec = cpsat_spec(model, variables, sense, where=type(self).__name__)
        super().__init__(spec, **options)
