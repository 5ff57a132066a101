"""The travelling salesman problem as a layer (the solver: :mod:`idproj_or.solvers.tsp`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..rules.identity import OptLayer
from ..solvers.tsp import ROUTING_TIME_LIMIT, tsp_spec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LayerOptions


class TSPLayer(OptLayer):
    """Travelling salesman as a layer: costs ``(n, n)`` -> 0/1 tour adjacency ``(n, n)``.

    ``y[i, j] = 1`` when the tour goes ``i -> j``. Costs may be asymmetric; the diagonal is
    ignored (it must still be finite). ``projection="auto"`` uses the in/out-degree equalities
    and ``y[i, i] = 0``: adding a constant to a row or a column, or changing the diagonal, never
    changes the optimal tour.

    Args:
        n: number of nodes (>= 2).
        method: ``"cpsat"`` (exact; ``layer.last_info.status`` is ``"optimal"`` when proven) or
            ``"routing"`` (OR-Tools routing heuristic for large n; its status is ``"feasible"``,
            ``"optimal"`` only when the search space is exhausted, i.e. tiny n).
        sense: ``"min"`` (default) or ``"max"``.
        first_solution: routing only; a ``FirstSolutionStrategy`` name (default
            ``"PATH_CHEAPEST_ARC"``).
        metaheuristic: routing only; a ``LocalSearchMetaheuristic`` name (default
            ``"GUIDED_LOCAL_SEARCH"``, which runs until the time limit).
        solution_limit: routing only; stop after this many solutions (deterministic results).
        time_limit: seconds per instance. ``"cpsat"``: default None (prove optimality).
            ``"routing"``: default ``ROUTING_TIME_LIMIT`` (1 s).
        **options: ``projection``, ``noise``, ``workers``, ``executor``, ``generator`` (see
            :mod:`idproj_or.options`).

    Example:
        >>> import torch
        >>> layer = TSPLayer(3)
        >>> c = torch.tensor([[0.0, 1.0, 9.0], [9.0, 0.0, 1.0], [1.0, 9.0, 0.0]])
        >>> layer(c).tolist()
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """

    def __init__(
        self,
        n: int,
        method: str = "cpsat",
        sense: str = "min",
        *,
        first_solution: str | None = None,
        metaheuristic: str | None = None,
        solution_limit: int | None = None,
        **options: Unpack[LayerOptions],
    ) -> None:
        spec = tsp_spec(
            n,
            method,
            sense,
            first_solution=first_solution,
            metaheuristic=metaheuristic,
            solution_limit=solution_limit,
            where=type(self).__name__,
        )
        if method == "routing" and options.get("time_limit") is None:
            options["time_limit"] = ROUTING_TIME_LIMIT
        super().__init__(spec, **options)
        self.method = method

    def extra_repr(self) -> str:
        return f"method={self.method!r}, " + super().extra_repr()
