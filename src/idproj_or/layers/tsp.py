"""The travelling salesman problem as a layer (the solver: :mod:`idproj_or.solvers.tsp`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..checks import Sense
from ..rules.identity import OptLayer
from ..solvers.tsp import ROUTING_TIME_LIMIT, SymmetricTspSpec, tsp_spec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LayerOptions


class TSPLayer(OptLayer):
    """Travelling salesman as a layer: costs ``(n, n)`` -> 0/1 tour adjacency ``(n, n)``, or with
    ``symmetric=True`` edge costs ``(n (n - 1) / 2,)`` -> the 0/1 edge vector of a tour.

    Asymmetric (default): ``y[i, j] = 1`` when the tour goes ``i -> j``. Costs may be asymmetric;
    the diagonal is ignored (it must still be finite). ``projection="auto"`` uses the
    in/out-degree equalities and ``y[i, i] = 0``: adding a constant to a row or a column, or
    changing the diagonal, never changes the optimal tour.

    Symmetric: edges in the order of ``itertools.combinations(range(n), 2)`` (PyEPO's);
    ``y[e] = 1`` when edge ``e`` is on the tour. Solved exactly by a Held-Karp 1-tree branch and
    bound (:mod:`idproj_or.solvers._tsp_hk`). A symmetric ``(n, n)`` (or ``(B, n, n)``) cost
    matrix is accepted too and gives the symmetric ``(n, n)`` adjacency of the tour (its edge
    costs are ``(C[i, j] + C[j, i]) / 2``; an asymmetric matrix is a ValueError).
    ``projection="auto"`` uses the degree-2 equalities (a constant added to every edge at a node
    never changes the tour).

    Args:
        n: number of nodes (>= 2).
        method: asymmetric: ``"cpsat"`` (default; exact, ``layer.last_info.status`` is
            ``"optimal"`` when proven) or ``"routing"`` (OR-Tools routing heuristic for large n;
            its status is ``"feasible"``, ``"optimal"`` only when the search space is exhausted,
            i.e. tiny n). Symmetric: ``"held_karp"`` (default, exact).
        sense: ``"min"`` (default) or ``"max"``.
        first_solution: routing only; a ``FirstSolutionStrategy`` name (default
            ``"PATH_CHEAPEST_ARC"``).
        metaheuristic: routing only; a ``LocalSearchMetaheuristic`` name (default
            ``"GUIDED_LOCAL_SEARCH"``, which runs until the time limit).
        solution_limit: routing only; stop after this many solutions (deterministic results).
        symmetric: edge costs and edge decisions (see above).
        time_limit: seconds per instance. ``"cpsat"``, ``"held_karp"``: default None (prove
            optimality; with a limit, the best tour found, status ``"feasible"``).
            ``"routing"``: default ``ROUTING_TIME_LIMIT`` (1 s).
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``generator`` (see
            :mod:`idproj_or.options`).

    Example:
        >>> import torch
        >>> layer = TSPLayer(3)
        >>> c = torch.tensor([[0.0, 1.0, 9.0], [9.0, 0.0, 1.0], [1.0, 9.0, 0.0]])
        >>> layer(c).tolist()
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
        >>> tour = TSPLayer(4, symmetric=True)  # edges 01 02 03 12 13 23
        >>> tour(torch.tensor([1.0, 5.0, 1.0, 1.0, 5.0, 1.0])).tolist()
        [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        n: int,
        method: str | None = None,
        sense: Sense = "min",
        *,
        symmetric: bool = False,
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
            symmetric=symmetric,
            where=type(self).__name__,
        )
        if method == "routing" and options.get("time_limit") is None:
            options["time_limit"] = ROUTING_TIME_LIMIT
        super().__init__(spec, **options)
        self.n = spec.n if isinstance(spec, SymmetricTspSpec) else self.shape[0]
        self.method = method or ("held_karp" if symmetric else "cpsat")
        self.symmetric = symmetric
        self.register_buffer("_upper", torch.triu_indices(self.n, self.n, 1), persistent=False)

    @property
    def upper(self) -> torch.Tensor:
        """Row and column indices of the edges, in the order of the edge costs."""
        upper = self._upper
        assert isinstance(upper, torch.Tensor)
        return upper

    def extra_repr(self) -> str:
        return f"method={self.method!r}, symmetric={self.symmetric}, " + super().extra_repr()

    def _as_edges(self, costs: Any) -> tuple[torch.Tensor, bool]:
        """Symmetric layer: an ``(n, n)``/``(B, n, n)`` matrix as edge costs, and whether it was one."""
        t = costs if isinstance(costs, torch.Tensor) else torch.as_tensor(costs)
        n = self.n
        if not self.symmetric or tuple(t.shape[-2:]) != (n, n) or t.ndim not in (2, 3):
            return t, False
        if t.is_floating_point() and not torch.equal(t, t.transpose(-1, -2)):
            batch = t.reshape(-1, n, n)
            k = int(torch.nonzero((batch != batch.transpose(-1, -2)).flatten(1).any(1))[0])
            raise ValueError(
                f"{type(self).__name__}: symmetric=True takes a symmetric cost matrix; costs[{k}] is not "
                "(pass edge costs of shape (n (n - 1) / 2,) for any other)"
            )
        i, j = self.upper
        return (t[..., i, j] + t[..., j, i]) / 2, True

    def _as_matrix(self, y: torch.Tensor) -> torch.Tensor:
        out = y.new_zeros(*y.shape[:-1], self.n, self.n)
        i, j = self.upper
        out[..., i, j] = y
        out[..., j, i] = y
        return out

    def forward(self, costs: Any, **data: Any) -> Any:
        edges, matrix = self._as_edges(costs)
        y = super().forward(edges, **data)
        return self._as_matrix(y) if matrix else y

    def solve(self, costs: Any, *, duals: bool = False, **data: Any) -> Any:
        edges, matrix = self._as_edges(costs)
        y = super().solve(edges, duals=duals, **data)
        return self._as_matrix(y) if matrix else y
