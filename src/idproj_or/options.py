"""The options every layer takes, defined once (keyword-only, after the model's own arguments).

=============== ============================================================================
``projection``  ``"none" | "mean" | "norm" | "std" | "auto"`` (docs/method.md); default ``"auto"``
``noise``       width ``alpha`` of the training-only margin ``xi in {-alpha/2, +alpha/2}^n``
                (any real scalar, a 0-dim tensor included); default 0
``workers``     None solves in-process; ``k`` uses the shared persistent pool of ``k`` processes
``executor``    any ``concurrent.futures.Executor`` (e.g. a Dask client's) to solve on; not
                pickled (a pickled layer solves in-process until ``layer.executor`` is set)
``time_limit``  seconds per instance, or None. A solver stops at it and returns its best
                decision as ``"feasible"`` (or ``"time_limit"`` without one). A layer whose
                solver cannot stop refuses it with a ValueError rather than ignoring it: the
                polynomial assignment and shortest-path solvers, CVXPY solvers without a
                time-limit setting
``on_failure``  ``"raise"`` (default): an instance without a decision raises
                :class:`idproj_or.SolverError`; ``"nan"``: its row is NaN and ``last_info``
                says why
``generator``   ``torch.Generator`` for the noise; the global RNG when None
=============== ============================================================================
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:
    import torch

OnFailure = Literal["raise", "nan"]
ON_FAILURE = ("raise", "nan")


class LayerOptions(TypedDict, total=False):
    """Keyword options of every layer (see the module docstring for their meaning)."""

    projection: str
    noise: float
    workers: int | None
    executor: Executor | None
    time_limit: float | None
    on_failure: OnFailure
    generator: torch.Generator | None


DEFAULTS: LayerOptions = {
    "projection": "auto",
    "noise": 0.0,
    "workers": None,
    "executor": None,
    "time_limit": None,
    "on_failure": "raise",
    "generator": None,
}


def with_defaults(options: LayerOptions, *, where: str) -> LayerOptions:
    """``options`` completed with :data:`DEFAULTS`; a name that is not an option is a TypeError,
    as for any Python keyword argument."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(
            f"{where}() got an unexpected keyword argument {unknown[0]!r}; options are {', '.join(DEFAULTS)}"
        )
    return {**DEFAULTS, **options}
