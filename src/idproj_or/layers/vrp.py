"""Capacitated vehicle routing as a layer (the solver: :mod:`idproj_or.solvers.vrp`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..checks import Sense
from ..rules.identity import OptLayer
from ..solvers.vrp import vrp_spec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LayerOptions


class VRPLayer(OptLayer):
    """Capacitated vehicle routing (CVRP) as a layer: edge costs -> how the optimal routes use
    each edge.

    Nodes ``0..n``: the depot 0 and customers ``1..n``. Every customer is served once by a route
    that starts and ends at the depot and carries at most ``capacity``; at most ``n_vehicles``
    routes. Symmetric (default): costs and decisions are per edge, in the order of
    ``itertools.combinations(range(n + 1), 2)`` (PyEPO's); ``y[e]`` is 1 on a route's edge and 2
    on the depot edge ``{0, i}`` of a route serving customer ``i`` alone (``0 -> i -> 0``).
    ``symmetric=False``: an ``(n + 1, n + 1)`` arc cost matrix (diagonal ignored) and the 0/1
    arcs of the routes. ``projection="auto"`` uses the customers' degree equalities.

    Per-instance data: ``layer(costs, demands=d, capacity=q)``, ``d`` of shape ``(n,)`` or
    ``(B, n)`` and ``q`` of shape ``()`` or ``(B,)``, integers; the constructor's otherwise. A
    layer built with time windows also takes ``time_windows``, ``service_times`` and
    ``travel_times`` per instance. An instance that no routing can serve is ``"infeasible"``
    (its solver status says why: ``DEMAND_ABOVE_CAPACITY``, ``DEMAND_ABOVE_FLEET_CAPACITY``,
    ``EMPTY_TIME_WINDOW``, ``TIME_WINDOW_UNREACHABLE``, or the exact solver's ``INFEASIBLE``),
    handled as ``on_failure`` says.

    Args:
        n_customers: number of customers ``n`` (>= 1).
        capacity: the vehicles' capacity, an integer.
        demands: the customers' demands, ``n`` integers (each at most ``capacity``).
        n_vehicles: the most routes (None: no limit).
        method: ``"exact"`` (default; CP-SAT, ``"optimal"`` when proven; the referee for small
            instances), ``"routing"`` (OR-Tools' routing heuristic) or ``"pyvrp"`` (PyVRP's
            iterated local search; ``pip install 'idproj_or[routing]'``). Heuristics report
            ``"feasible"``. docs/adapters/routing.md has the measured gaps and times.
        symmetric: edge costs and edge usages (default), or arc matrices.
        sense: ``"min"`` (default) or ``"max"``.
        seed: the heuristics' random seed.
        iterations: the heuristics' budget: OR-Tools' solution limit, PyVRP's iterations. With
            it, and no ``time_limit``, results are the same on every run, serial or in workers;
            with neither, a heuristic runs 1 s per instance.
        time_windows: ``(n + 1, 2)`` integers, the depot first: node ``i``'s service starts in
            ``[e_i, l_i]`` (a vehicle arriving early waits); routes leave the depot at or after
            ``e_0`` and are back by ``l_0``. None (default): no times.
        service_times: ``n + 1`` integers, each node's service time (the depot's is spent
            before leaving); default 0. Only with ``time_windows``.
        travel_times: ``(n + 1, n + 1)`` integers, the time from ``i`` to ``j``; needed with
            ``time_windows`` (the costs are what is learnt; the times are data).
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``, ``on_failure``, ``generator`` (see
            :mod:`idproj_or.options`).

    Example:
        >>> import torch
        >>> layer = VRPLayer(3, capacity=2, demands=[1, 1, 2])  # edges 01 02 03 12 13 23
        >>> layer(torch.tensor([1.0, 1.0, 4.0, 1.0, 9.0, 9.0])).tolist()
        [1.0, 1.0, 2.0, 1.0, 0.0, 0.0]
    """

    def __init__(
        self,
        n_customers: int,
        capacity: int,
        demands: Any,
        *,
        n_vehicles: int | None = None,
        method: str | None = None,
        symmetric: bool = True,
        sense: Sense = "min",
        seed: int = 0,
        iterations: int | None = None,
        time_windows: Any = None,
        service_times: Any = None,
        travel_times: Any = None,
        **options: Unpack[LayerOptions],
    ) -> None:
        spec = vrp_spec(
            n_customers,
            capacity,
            demands,
            n_vehicles=n_vehicles,
            method=method,
            symmetric=symmetric,
            sense=sense,
            seed=seed,
            iterations=iterations,
            time_windows=time_windows,
            service_times=service_times,
            travel_times=travel_times,
            where=type(self).__name__,
        )
        super().__init__(spec, **options)
        self.n_customers = spec.n
        self.method = method or "exact"
        self.symmetric = symmetric

    def extra_repr(self) -> str:
        return (
            f"n_customers={self.n_customers}, method={self.method!r}, symmetric={self.symmetric}, "
            + super().extra_repr()
        )
