"""The options every layer takes, defined once (keyword-only, after the model's own arguments).

==================== =======================================================================
``projection``       ``"none" | "mean" | "norm" | "std" | "auto"`` (docs/method.md); default
                     ``"auto"``
``noise``            width ``alpha`` of the training-only margin
                     ``xi in {-alpha/2, +alpha/2}^n`` (any real scalar, a 0-dim tensor
                     included); default 0
``workers``          None solves in-process; ``k`` uses the shared persistent pool of ``k``
                     processes (see ``route``)
``route``            where the batches of a layer with ``workers=k`` or ``executor=`` run:
                     ``"auto"`` (default): on the executor, or in the pool when the measured
                     solve time says the pool beats in-process; ``"pool"``: always in the pool
                     (needs ``workers=k``; ``k = 1`` too, to keep a solver crash out of the
                     calling process); ``"serial"``: always in-process. ``last_info.mode``
                     says where a batch ran; ``layer.route`` may be set later. A daemonic
                     process (a torch DataLoader worker) cannot start a pool: there a batch
                     runs in-process, with one warning
``executor``         any ``concurrent.futures.Executor`` (e.g. a Dask client's) to solve on;
                     not pickled (a pickled layer solves in-process until ``layer.executor``
                     is set)
``executor_workers`` how many chunks ``executor`` runs at once (its worker count): a batch is
                     cut into at least that many chunks. Required with any executor but a
                     Dask client's (``client.get_executor()``), which is asked for its
                     cluster's thread count at each call when this is None
``time_limit``       seconds per instance, or None. A solver stops at it and returns its best
                     decision as ``"feasible"`` (or ``"time_limit"`` without one). A layer
                     whose solver cannot stop refuses it with a ValueError rather than
                     ignoring it: the polynomial assignment and shortest-path solvers, CVXPY
                     solvers without a time-limit setting
``on_failure``       ``"raise"`` (default): an instance without a decision raises
                     :class:`idproj_or.SolverError`; ``"nan"``: its row is NaN and
                     ``last_info`` says why
``generator``        ``torch.Generator`` for the noise and a rule's perturbations, or None (the
                     global RNG); anything else is a ValueError at construction
``warm_start``       None (default): the backend's measured default; True / False: warm starts
                     on / off. On, a call with ``ids=`` (each instance's index in the dataset;
                     ``fit`` passes them) starts each instance's solve from what its previous
                     solve left (docs/warm_start.md); True makes ``ids=`` required in every
                     forward, and is a ValueError where the solver takes no start
==================== =======================================================================

Gradient rules (:mod:`idproj_or.rules`) over an existing layer take ``projection``, ``noise``
and ``generator`` with the same meaning (``projection`` defaults to ``"none"`` for the
baselines, so that they equal their published definitions), and two more:

=============== ============================================================================
``solve_ratio`` probability in ``[0, 1]`` that a call solves (default 1: always); otherwise
                the decision is the best member of the rule's pool of solutions (Mulamba et
                al. 2021), an approximation
``solutions``   ``(N, *shape)`` initial pool (e.g. ``OptDataset.solutions``); solved
                decisions join it as they come
=============== ============================================================================
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    import torch

Projection = Literal["none", "mean", "norm", "std", "auto"]
OnFailure = Literal["raise", "nan"]
ON_FAILURE = ("raise", "nan")
Route = Literal["auto", "pool", "serial"]
ROUTES = ("auto", "pool", "serial")


class CostOptions(TypedDict, total=False):
    """How the costs are prepared for the solver: by every layer and every rule."""

    projection: Projection
    noise: float
    generator: torch.Generator | None


class LayerOptions(CostOptions, total=False):
    """Keyword options of every layer (see the module docstring for their meaning)."""

    workers: int | None
    route: Route
    executor: Executor | None
    executor_workers: int | None
    time_limit: float | None
    on_failure: OnFailure
    warm_start: bool | None


class RuleOptions(CostOptions, total=False):
    """Keyword options of every gradient rule over a layer (see the module docstring)."""

    solve_ratio: float
    solutions: torch.Tensor | None


DEFAULTS: LayerOptions = {
    "projection": "auto",
    "noise": 0.0,
    "workers": None,
    "route": "auto",
    "executor": None,
    "executor_workers": None,
    "time_limit": None,
    "on_failure": "raise",
    "generator": None,
    "warm_start": None,
}


RULE_DEFAULTS: RuleOptions = {
    "projection": "none",
    "noise": 0.0,
    "generator": None,
    "solve_ratio": 1.0,
    "solutions": None,
}


def with_defaults(options: Any, *, where: str, defaults: Any = DEFAULTS) -> Any:
    """``options`` completed with ``defaults`` (:data:`DEFAULTS` or :data:`RULE_DEFAULTS`); a
    name that is not an option is a TypeError, as for any Python keyword argument."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(
            f"{where}() got an unexpected keyword argument {unknown[0]!r}; options are {', '.join(defaults)}"
        )
    return {**defaults, **options}
