"""Warm starts, kept in the caller: the last state each instance id's solve left (e.g. every
variable's value), shipped with the instance the next time it is solved.

The states live in the calling process, not in the workers, so that a decision depends only on
the instance's cost, data and state, whichever route solves it: serial, pool and executor give
identical results. In decision-focused learning the same training instances come back every
epoch with slowly moving costs; their previous optimum is a good start.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

# The states kept per layer, at most (least recently used go first): losing one costs a cold
# start, never a different objective.
STATE_BYTES = 256 << 20


class WarmStates:
    """Instance id -> the ``(s,)`` float64 state of its last solve, least recently used first."""

    def __init__(self, limit: int = STATE_BYTES) -> None:
        self.limit = limit
        self._states: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._states)

    def clear(self) -> None:
        self._states.clear()
        self._bytes = 0

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """``(B, s)`` states of ``ids`` (NaN rows for ids without one; ``s = 0`` when no id has one)."""
        found = [self._states.get(i) for i in ids.tolist()]
        like = next((s for s in found if s is not None), None)
        if like is None:
            return np.empty((len(ids), 0))
        out = np.full((len(ids), len(like)), np.nan)
        for k, state in enumerate(found):
            if state is not None and len(state) == len(like):
                out[k] = state
        return out

    def keep(self, ids: np.ndarray, states: np.ndarray | None) -> None:
        """Keep the non-NaN rows of ``states`` as their ids' (a repeated id: its last row)."""
        if states is None or not states.shape[1]:
            return
        keep = ~np.isnan(states).any(axis=1)
        for i, state in zip(ids[keep].tolist(), states[keep]):
            old = self._states.pop(i, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._states[i] = state.copy()
            self._bytes += state.nbytes
        while self._bytes > self.limit and len(self._states) > 1:
            _, old = self._states.popitem(last=False)
            self._bytes -= old.nbytes
