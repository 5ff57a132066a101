"""Any pywraplp model as a layer (the solver: :mod:`idproj_or.solvers.linear`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..rules.identity import OptLayer
from ..solvers.linear import linear_spec

if TYPE_CHECKING:
    from ortools.linear_solver import pywraplp
    from typing_extensions import Unpack

    from ..options import LayerOptions


class LinearSolverLayer(OptLayer):
    """Any OR-Tools ``pywraplp.Solver`` (LP or MIP) as a layer: ``y = argmin/argmax sum(w * x)``.

    Works with every backend linked in this OR-Tools build: SCIP, CBC, CP-SAT, BOP, HiGHS (MIP
    and LP), GLOP, CLP, PDLP. An LP whose optimal face is not a vertex returns the point the
    backend finds (a vertex for simplex, possibly an interior point of the face for PDLP): any
    optimum is valid. ``FEASIBLE`` (a time limit hit with an incumbent) is a decision, reported
    as ``"feasible"`` in ``last_info.status``; an instance without a decision fails as
    ``on_failure`` says (docs/batching.md has the status table). An LP that a backend calls
    INFEASIBLE is checked once with a zero cost, so that an unbounded objective is reported as
    ``"unbounded"``.

    Args:
        solver: the declared model; its own objective (if any) is replaced.
        variables: array-like of the solver's variables; its shape is the cost shape.
        sense: ``"min"`` or ``"max"``; default: the solver's declared objective sense.
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``,
            ``on_failure``, ``generator`` (see :mod:`idproj_or.options`).

    Example:
        >>> import torch
        >>> from ortools.linear_solver import pywraplp
        >>> solver = pywraplp.Solver.CreateSolver("SCIP")
        >>> x = [solver.BoolVar(f"x{i}") for i in range(4)]
        >>> _ = solver.Add(sum(x) == 2)
        >>> layer = LinearSolverLayer(solver, x, sense="max")
        >>> layer(torch.tensor([1.0, 4.0, 2.0, 3.0])).tolist()
        [0.0, 1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        solver: pywraplp.Solver,
        variables: Any,
        sense: str | None = None,
        **options: Unpack[LayerOptions],
    ) -> None:
        spec = linear_spec(solver, variables, sense, where=type(self).__name__)
        super().__init__(spec, **options)
