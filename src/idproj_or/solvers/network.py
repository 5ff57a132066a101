"""The network path shortcut: a unit-flow LP on an acyclic network, decided by dynamic programming.

A linear model whose every row is an equality with coefficients ``+1`` / ``-1``, each variable
with exactly one ``+1`` (its arc's tail) and one ``-1`` (its head) over the rows, is a network
flow: row ``k`` reads ``out(k) - in(k) = b_k``. A variable with a single entry is an arc to or from
the one node whose row the model left out (its row is minus the sum of the others, implied by
them, with ``-sum(b)`` on the right). Either sign convention (``in - out`` or ``out - in``) is the
same LP: it only swaps the names tail and head.

When ``b`` is ``+1`` at one node (the source), ``-1`` at another (the sink) and 0 elsewhere, every
variable has lower bound 0 and upper bound at least 1, and the arcs form no cycle, every feasible
``x`` is a convex combination of source-sink paths (a flow decomposes into paths and cycles, and
there are no cycles; the upper bounds never bind a path's indicator). The LP's optimum is then a
shortest path for the costs ``t`` (a longest for ``max``), found exactly by a pass over the nodes in
topological order; its indicator is an optimal vertex, integral, so it is optimal for a MIP of
integer arcs as well. An unreachable sink is left to the solver (it reports infeasible).

:func:`detect` reads the structure once per model, from the arrays of the box certificate
(:class:`~idproj_or.solvers.certificate.LinearBox`); :func:`shortest` solves a batch with the
ready shortest-path layer's exact solver (:class:`~idproj_or.solvers.shortest_path.DagPathSolver`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .shortest_path import DagPathSolver, ShortestPathSpec, _reachable, _topological_order


@dataclass(frozen=True, eq=False)
class Network:
    """A unit flow from ``source`` to ``sink`` on an acyclic network.

    Args:
        tail, head: ``(v,)`` each variable's arc (node indices; the node of the model's missing
            row, if any, is the last).
        rhs: ``(m,)`` the rows' right-hand side (every instance must keep it).
        source, sink: the nodes of supply and demand.
        nodes: how many (the model's rows, and the missing row's node if any).
        reachable: whether a path leads from source to sink (if not, the solver reports every
            instance infeasible).
    """

    tail: np.ndarray
    head: np.ndarray
    rhs: np.ndarray
    source: int
    sink: int
    nodes: int
    reachable: bool

    @functools.cached_property
    def solver(self) -> DagPathSolver:
        """The ready shortest-path layer's solver on these arcs (built once per process)."""
        arcs = (tuple(self.tail.tolist()), tuple(self.head.tolist()))
        return DagPathSolver(ShortestPathSpec(*arcs, self.nodes, self.source, self.sink, "min"))


def detect(
    matrix: sparse.csr_array, row_low: np.ndarray, row_high: np.ndarray, low: np.ndarray, high: np.ndarray
) -> Network | None:
    """The unit-flow network of a linear model (rows ``row_low <= matrix x <= row_high``,
    bounds ``low <= x <= high``), or None when the model is not one (exact checks only)."""
    m, v = matrix.shape
    if not m or not v:
        return None
    if not (np.array_equal(row_low, row_high) and np.isfinite(row_low).all()):
        return None
    if not ((low == 0).all() and (high >= 1).all()):
        return None
    a = sparse.csc_array(matrix)
    a.sum_duplicates()
    a.eliminate_zeros()
    if not np.isin(a.data, (1.0, -1.0)).all():
        return None
    counts = np.diff(a.indptr)
    if ((counts < 1) | (counts > 2)).any():
        return None
    n_plus = np.zeros(v, dtype=np.int64)
    cols = np.repeat(np.arange(v), counts)
    is_plus = a.data > 0
    np.add.at(n_plus, cols, is_plus)
    if ((counts == 2) & (n_plus != 1)).any():
        return None
    plus = np.full(v, m, dtype=np.int64)  # node m: the model's missing row
    minus = np.full(v, m, dtype=np.int64)
    plus[cols[is_plus]] = a.indices[is_plus]
    minus[cols[~is_plus]] = a.indices[~is_plus]
    virtual = bool((counts == 1).any())
    nodes = m + virtual
    b = np.append(row_low, -row_low.sum()) if virtual else row_low.astype(np.float64)
    if not (np.isin(b, (-1.0, 0.0, 1.0)).all() and (b == 1).sum() == 1 and (b == -1).sum() == 1):
        return None
    source, sink = int(np.flatnonzero(b == 1)[0]), int(np.flatnonzero(b == -1)[0])
    if _topological_order(nodes, plus, minus) is None:
        return None
    reachable = bool(_reachable(nodes, plus, minus, source)[sink])
    return Network(plus, minus, np.asarray(row_low, dtype=np.float64).copy(), source, sink, nodes, reachable)


def shortest(net: Network, weights: np.ndarray) -> np.ndarray:
    """For each row of ``weights`` ``(B, v)`` (finite arc costs), a shortest source-sink path's
    indicator ``(B, v)``."""
    return net.solver.decide_chunk(weights)
