"""The base of the layers over a model the user declares (CP-SAT, pywraplp, MathOpt,
model_builder): the arguments they share are checked once (:func:`idproj_or.checks.declare`) and
each layer only turns its model into a spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..checks import Declared, ObjectiveMode, Sense, declare
from ..rules.identity import OptLayer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LayerOptions
    from ..solvers.base import ModelSpec


class DeclaredLayer(OptLayer):
    """A declared model as a layer: ``model``, its cost ``variables`` (an array-like, or a dict
    of array-likes for cost groups), ``sense``, ``objective`` and per-instance ``data``, as each
    subclass documents."""

    _variable_type: ClassVar[type]

    def __init__(
        self,
        model: Any,
        variables: Any,
        sense: Sense | None = None,
        *,
        objective: ObjectiveMode = "keep",
        data: Mapping[str, Any] | None = None,
        **options: Unpack[LayerOptions],
    ) -> None:
        self._declare(model, None, variables, sense, objective, data, options)

    def _declare(
        self,
        model: Any,
        solver: Any,
        variables: Any,
        sense: Sense | None,
        objective: ObjectiveMode,
        data: Mapping[str, Any] | None,
        options: LayerOptions,
    ) -> None:
        where = type(self).__name__
        declared = declare(variables, self._variable_type, sense, objective=objective, data=data, where=where)
        super().__init__(self._spec(model, solver, declared), **options)
        self._handle.groups = declared.groups

    @staticmethod
    def _spec(model: Any, solver: Any, declared: Declared) -> ModelSpec:
        """The spec of ``model`` solved by ``solver`` (None: the layer's default)."""
        raise NotImplementedError
