"""Argument checks shared by the layers, the problem builders and the solvers' spec builders
(numpy only): each raises a ValueError that names the caller and the argument."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Sense = Literal["min", "max"]


def check_sense(sense: str, *, where: str) -> Sense:
    if sense not in ("min", "max"):
        raise ValueError(f"{where}: sense={sense!r} must be 'min' or 'max'")
    return sense  # type: ignore[return-value]


def check_size(value: Any, name: str, *, where: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats are refused)."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: {name}={value!r} must be an int >= {minimum}")
    try:
        size = operator.index(value)
    except TypeError:
        raise ValueError(f"{where}: {name}={value!r} must be an int >= {minimum}") from None
    if size < minimum:
        raise ValueError(f"{where}: {name}={value!r} must be an int >= {minimum}")
    return size


def as_variable_array(variables: Any, var_type: type, *, where: str) -> np.ndarray:
    """``variables`` as an object array whose elements are all ``var_type``; its shape is the cost
    shape."""
    flat_in = list(_flatten(variables))
    try:
        shape = variables.shape if isinstance(variables, np.ndarray) else np.shape(variables)
    except ValueError:
        shape = None
    if shape is None or math.prod(shape) != len(flat_in):
        raise ValueError(f"{where}: variables must be a rectangular array-like of variables")
    arr = np.empty(shape, dtype=object)
    arr.reshape(-1)[:] = flat_in
    if arr.size == 0:
        raise ValueError(f"{where}: variables is empty; pass at least one variable")
    for pos, v in enumerate(flat_in):
        if not isinstance(v, var_type):
            idx = tuple(int(k) for k in np.unravel_index(pos, arr.shape))
            raise ValueError(
                f"{where}: variables{list(idx)} is a {type(v).__name__}, expected a {var_type.__name__} of the model"
            )
    return arr


def as_variable_groups(
    variables: Any, var_type: type, *, where: str
) -> tuple[np.ndarray, dict[str, tuple[int, ...]] | None]:
    """``variables`` as :func:`as_variable_array`; a dict of array-likes (cost groups) as their
    concatenation, flattened in the dict's order, with each group's shape."""
    if not isinstance(variables, Mapping):
        return as_variable_array(variables, var_type, where=where), None
    if not variables or not all(isinstance(k, str) for k in variables):
        raise ValueError(f"{where}: variables as a dict needs at least one group, each named by a str")
    arrays = {
        name: as_variable_array(group, var_type, where=f"{where} (group {name!r})") for name, group in variables.items()
    }
    flat = np.concatenate([a.reshape(-1) for a in arrays.values()])
    return flat, {name: tuple(a.shape) for name, a in arrays.items()}


def _flatten(x: Any) -> Sequence[Any]:
    if isinstance(x, np.ndarray):
        return list(x.reshape(-1))
    if isinstance(x, (list, tuple)):
        out: list[Any] = []
        for item in x:
            out.extend(_flatten(item) if isinstance(item, (list, tuple, np.ndarray)) else [item])
        return out
    return [x]


ObjectiveMode = Literal["keep", "replace"]


def check_objective_mode(objective: str, *, where: str) -> ObjectiveMode:
    if objective not in ("keep", "replace"):
        raise ValueError(
            f"{where}: objective={objective!r} must be 'keep' (the model's own objective plus the "
            "predicted term) or 'replace' (the predicted term alone)"
        )
    return objective  # type: ignore[return-value]


@dataclass(frozen=True)
class Declared:
    """What a layer over a declared model is given besides the model, checked: the cost
    variables (an object array in the cost shape; cost groups concatenated flat, with each
    group's shape in ``groups``), the sense asked for (None: the model's), the objective mode,
    the per-instance data declaration and the caller's name for messages."""

    variables: np.ndarray
    groups: dict[str, tuple[int, ...]] | None
    sense: str | None
    objective: ObjectiveMode
    data: Mapping[str, Any] | None
    where: str


def declare(
    variables: Any,
    var_type: type,
    sense: str | None = None,
    *,
    objective: str = "keep",
    data: Mapping[str, Any] | None = None,
    where: str,
) -> Declared:
    """The checked :class:`Declared` of a model whose variables are ``var_type``."""
    flat, groups = as_variable_groups(variables, var_type, where=where)
    return Declared(flat, groups, sense, check_objective_mode(objective, where=where), data, where)


def resolve_sense(sense: str | None, declared: Sense, *, has_own: bool, where: str) -> Sense:
    """The layer's sense: ``sense`` if given, else the model's ``declared`` one. A model whose own
    objective is kept (``has_own``) must be optimised in its own direction."""
    if sense is None:
        return declared
    resolved = check_sense(sense, where=where)
    if has_own and resolved != declared:
        raise ValueError(
            f"{where}: sense={resolved!r} contradicts the model's own objective, which it declares "
            f"to {'maximise' if declared == 'max' else 'minimise'}; the layer keeps that objective "
            "and adds the predicted term: drop sense=, or pass objective='replace' to solve the "
            "predicted term alone"
        )
    return resolved
