"""Shortest paths in a DAG as a layer (the solver: :mod:`idproj_or.solvers.shortest_path`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..checks import Sense, check_size
from ..rules.identity import OptLayer
from ..solvers.shortest_path import dag_path_spec, grid_arcs

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LayerOptions


class ShortestPathLayer(OptLayer):
    """Shortest (or longest) ``source -> target`` path in a directed graph as a layer: arc costs
    ``(E,)`` -> the path's 0/1 arc indicator ``y``.

    On a directed acyclic graph: exact for costs of any sign, vectorised over the batch; see the
    module docstring. A graph with cycles is solved by Dijkstra (compiled), for ``sense="min"``
    and costs ``>= 0``: a negative cost is clamped at zero and the row labelled ``"feasible"``
    (solver status ``NEGATIVE_COSTS_CLAMPED``), since a cheapest simple path with negative costs
    is NP-hard to find; its ``projection="auto"`` is ``"norm"``.

    On a DAG, ``projection="auto"`` uses flow conservation: adding node potentials
    ``p_tail - p_head`` to the arc costs shifts every path's length by the same amount (whatever
    the instance's pair), so the decision does not change.

    A pair per instance: ``layer(costs, source=s, target=t)`` with integer node indices (one for
    every instance, or of shape ``(B,)``; either may be left out: the constructor's). Row ``i``
    gets the decision of a layer built with ``(s_i, t_i)``, ties included; ``s_i == t_i`` is the
    empty path (all zeros). A target its source does not reach has no decision: a
    :class:`~idproj_or.SolverError` (status ``"infeasible"``), or a NaN row with
    ``on_failure="nan"``.

    Args:
        arcs: ``(E, 2)`` int pairs ``(tail, head)``; the cost of arc ``e`` is ``w[..., e]``.
            Parallel arcs and cycles are allowed, self-loops are not.
        source: start node (the default of every instance).
        target: end node, reachable from ``source``, other than it (the default of every instance).
        n_nodes: number of nodes; default ``max(arcs) + 1``.
        sense: ``"min"`` (default) or ``"max"`` (longest path; a DAG only).
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``,
            ``on_failure``, ``generator`` (see :mod:`idproj_or.options`). ``time_limit`` is refused
            (a ValueError): every solve is exact and polynomial.

    Example:
        >>> import torch
        >>> layer = ShortestPathLayer([(0, 1), (1, 3), (0, 2), (2, 3)], source=0, target=3)
        >>> layer(torch.tensor([1.0, 1.0, 0.5, 2.0])).tolist()
        [1.0, 1.0, 0.0, 0.0]
        >>> layer(torch.tensor([[1.0, 1.0, 0.5, 2.0]] * 2), source=torch.tensor([0, 2])).tolist()
        [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    """

    def __init__(
        self,
        arcs: Any,
        source: int,
        target: int,
        n_nodes: int | None = None,
        sense: Sense = "min",
        **options: Unpack[LayerOptions],
    ) -> None:
        spec = dag_path_spec(arcs, source, target, n_nodes=n_nodes, sense=sense, where=type(self).__name__)
        super().__init__(spec, **options)

    @classmethod
    def grid(cls, h: int, w: int, **options: Any) -> ShortestPathLayer:
        """The ``h x w`` grid of PyEPO's benchmark (arcs right and down, in
        :func:`idproj_or.problems.grid_arcs` order), from the top-left to the bottom-right node.

        Example:
            >>> ShortestPathLayer.grid(5, 5).spec.shape
            (40,)
        """
        where = f"{cls.__name__}.grid"
        h, w = check_size(h, "h", where=where), check_size(w, "w", where=where)
        if h * w < 2:
            raise ValueError(f"{where}: the grid needs at least 2 nodes, got {h}x{w}")
        return cls(grid_arcs(h, w), 0, h * w - 1, n_nodes=h * w, **options)
