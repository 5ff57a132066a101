"""The multi-dimensional 0/1 knapsack as a layer (the solver: :mod:`idproj_or.solvers.knapsack`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..checks import Sense, check_sense
from ..rules.identity import OptLayer
from ..solvers.knapsack import knapsack_arrays, knapsack_spec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LayerOptions


class KnapsackLayer(OptLayer):
    """Multi-dimensional 0/1 knapsack as a layer: item values ``(n,)`` -> the packed items ``y``.

    Solved exactly by a compiled branch and bound (see the module docstring for the integer
    scaling of weights and values). A ``CpSatLayer`` over :func:`idproj_or.problems.knapsack`
    gives optimal decisions of the same value, about a hundred times slower.

    Capacities per instance: ``layer(costs, capacity=caps)`` with ``caps`` of shape ``(d,)`` (every
    instance) or ``(B, d)``, non-negative; without it, every instance has the constructor's. They
    are rounded down on each weight row's integer scale as the constructor's are (exact). Weights
    per instance: ``weights=`` of shape ``(d, n)`` or ``(B, d, n)``, non-negative integers (scale
    decimal weights and the capacities yourself); without it, the constructor's.
    ``projection="auto"`` is ``"norm"``: a knapsack has no equality (an item heavier than the
    constructor's capacity may fit an instance's larger one, so it is not fixed).

    Args:
        weights: ``(d, n)`` (or ``(n,)`` for one dimension) non-negative item weights: the default
            of every instance.
        capacities: ``(d,)`` (or a scalar) non-negative capacities: the default of every instance.
        sense: ``"max"`` (default: values to maximise) or ``"min"``.
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``,
            ``on_failure``, ``generator`` (see :mod:`idproj_or.options`). When ``time_limit`` stops a
            search, the best packing found is returned with status ``"FEASIBLE"``.

    Example:
        >>> import torch
        >>> layer = KnapsackLayer([[3, 4, 5]], [7])
        >>> layer(torch.tensor([1.0, 2.0, 2.5])).tolist()
        [1.0, 1.0, 0.0]
        >>> layer(torch.tensor([[1.0, 2.0, 2.5], [1.0, 2.0, 2.5]]), capacity=[[5], [9]]).tolist()
        [[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]]
    """

    def __init__(
        self,
        weights: Any,
        capacities: Any,
        sense: Sense = "max",
        **options: Unpack[LayerOptions],
    ) -> None:
        where = type(self).__name__
        sense = check_sense(sense, where=where)
        w, cap = knapsack_arrays(weights, capacities, where=where)
        if (w < 0).any():
            k, i = np.argwhere(w < 0)[0]
            raise ValueError(f"{where}: weights[{k}, {i}]={float(w[k, i])!r} is negative; weights must be >= 0")
        if (cap < 0).any():
            k = int(np.flatnonzero(cap < 0)[0])
            raise ValueError(f"{where}: capacities[{k}]={float(cap[k])!r} is negative; no packing fits")
        super().__init__(knapsack_spec(w, cap, sense, where=where), **options)
