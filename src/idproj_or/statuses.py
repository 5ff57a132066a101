"""One status vocabulary for every backend (worker side: no torch).

Each solve reports a common ``status`` and the backend's own word (``solver_status``). Only
``optimal`` and ``feasible`` carry a decision.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

OPTIMAL = "optimal"  # proven optimal
FEASIBLE = "feasible"  # a decision not proven optimal (time limit, heuristic, inaccurate)
INFEASIBLE = "infeasible"
UNBOUNDED = "unbounded"
INFEASIBLE_OR_UNBOUNDED = "infeasible_or_unbounded"
TIME_LIMIT = "time_limit"  # no decision within the time limit
INTERRUPTED = "interrupted"
ERROR = "error"
NOT_SOLVED = "not_solved"  # never attempted

STATUSES = (
    OPTIMAL,
    FEASIBLE,
    INFEASIBLE,
    UNBOUNDED,
    INFEASIBLE_OR_UNBOUNDED,
    TIME_LIMIT,
    INTERRUPTED,
    ERROR,
    NOT_SOLVED,
)
SOLVED = (OPTIMAL, FEASIBLE)


class Outcome(NamedTuple):
    """One instance's result: the flattened decision (None unless ``status in SOLVED``), the
    common status and the backend's own status word; ``fixed``: the value of the model's own
    objective at the decision (0 without one), in the user's units; ``scaling_error``: how much
    worse than optimal the decision can be because of an integer scaling of the costs
    (:mod:`idproj_or.solvers.scaling`; 0 when the solver saw the costs exactly); ``bound``: the
    solver's proven bound on the objective it optimised (the total, own part included), in the
    user's units (NaN when it gives none); with duals requested, ``duals`` (one per constraint
    of the model, in the backend's order: d objective / d right-hand side), ``reduced_costs``
    (one per cost entry) and ``binding`` (per constraint: tight at the decision), None when the
    backend has none; with warm starts requested, ``warm``: what the backend keeps of this solve
    to start the instance's next one from (e.g. every variable's value), None otherwise."""

    x: np.ndarray | None
    status: str
    solver_status: str
    fixed: float = 0.0
    scaling_error: float = 0.0
    bound: float = math.nan
    duals: np.ndarray | None = None
    reduced_costs: np.ndarray | None = None
    binding: np.ndarray | None = None
    warm: np.ndarray | None = None


def no_decision(status: str, solver_status: str) -> Outcome:
    return Outcome(None, status, solver_status)


def unsolved(time_limit: float | None, elapsed: float) -> str:
    """Common status of a solve that stopped without a decision and without a verdict on the
    model: a time limit that ran out, or else a failure of the solver."""
    if time_limit is not None and elapsed >= 0.9 * time_limit:
        return TIME_LIMIT
    return ERROR


def cause(status: str, solver_status: str, time_limit: float | None) -> str:
    """Why an instance has no decision (or none proven optimal), in words."""
    said = f" (the solver said {solver_status})" if solver_status else ""
    if status == TIME_LIMIT:
        budget = f"time_limit={time_limit:g} s" if time_limit is not None else "the solver's budget"
        return f"no feasible point within {budget}{said}"
    if status == FEASIBLE:
        limit = f" within time_limit={time_limit:g} s" if time_limit is not None else ""
        return f"a feasible decision not proven optimal{limit}{said}"
    words = {
        OPTIMAL: "solved to optimality",
        INFEASIBLE: "the model has no feasible point",
        UNBOUNDED: "the objective is unbounded for this cost",
        INFEASIBLE_OR_UNBOUNDED: "the model is infeasible or the objective unbounded (the solver could not tell which)",
        INTERRUPTED: "the solve was interrupted",
        ERROR: "the solver failed",
        NOT_SOLVED: "not attempted (an earlier instance failed or the batch was interrupted)",
    }
    return words[status] + said
