"""Shortest paths over the vertices of a grid as a layer (the solver: :mod:`idproj_or.solvers.grid_path`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..checks import check_size
from ..rules.identity import OptLayer
from ..solvers.grid_path import grid_path_spec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LayerOptions


class GridShortestPathLayer(OptLayer):
    """Cheapest ``source -> target`` path over the cells of an ``H x W`` grid as a layer (the
    Warcraft task of blackbox-backprop and of Sahoo et al.): vertex costs ``(H, W)`` -> the 0/1
    indicator ``(H, W)`` of the cells on the path.

    A path steps between 8-neighbouring cells (or 4 with ``neighbours=4``) and costs the sum of
    the costs of its cells, both end cells included. Solved exactly by a compiled Dijkstra,
    vectorised over the chunk; ties are broken deterministically (see the module docstring).

    Dijkstra needs costs ``>= 0``. A negative cost (a noise margin or a perturbation can produce
    one) is clamped at zero inside the solver, as blackbox-backprop does: the decision is a
    cheapest path for ``max(w, 0)``, and such a row has status ``"feasible"`` (solver status
    ``NEGATIVE_COSTS_CLAMPED``), never ``"optimal"``, since the cheapest path for ``w`` itself is
    NP-hard to find. Negative costs of the two end cells are the exception: they never change the
    decision (every path pays them), so the row stays ``"optimal"``. The clamp is not part of the
    projection: the backward passes every entry.

    Projections: the forward always solves the costs as given (plus the noise margin); the
    projection shapes the backward. ``"norm"`` and ``"none"`` keep the backward's story exact;
    ``"mean"`` and ``"std"`` centre the costs, which changes which path is cheapest (paths have
    different lengths), so their Jacobian belongs to another problem: prefer ``"norm"``.

    ``projection="auto"`` uses the two equalities ``y[source] = y[target] = 1``: the end cells'
    costs are set to zero (every path pays them), then the costs are normalised.

    Args:
        height: rows of the grid.
        width: columns of the grid.
        neighbours: 8 (default: diagonal steps too) or 4.
        source: ``(row, column)`` of the start cell; negative indices count from the end.
            Default: the top-left cell.
        target: ``(row, column)`` of the end cell. Default: the bottom-right cell.
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``, ``on_failure``, ``generator`` (see
            :mod:`idproj_or.options`). ``time_limit`` is refused (a ValueError): every solve is
            exact and takes microseconds.

    Example:
        >>> import torch
        >>> layer = GridShortestPathLayer(3, 3, projection="none")
        >>> w = torch.tensor([[1.0, 9.0, 9.0], [1.0, 9.0, 9.0], [5.0, 1.0, 1.0]])
        >>> layer(w).int().tolist()
        [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
        >>> GridShortestPathLayer(3, 3, neighbours=4, projection="none")(w).int().tolist()
        [[1, 0, 0], [1, 0, 0], [1, 1, 1]]
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        neighbours: int = 8,
        source: Any = (0, 0),
        target: Any = (-1, -1),
        **options: Unpack[LayerOptions],
    ) -> None:
        where = type(self).__name__
        h, w = check_size(height, "height", where=where), check_size(width, "width", where=where)
        super().__init__(grid_path_spec(h, w, neighbours, source, target, where=where), **options)
