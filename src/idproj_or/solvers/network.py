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
(:class:`~idproj_or.solvers.certificate.LinearBox`); :func:`shortest` runs the pass for a batch,
vectorised over the batch's rows, one step per level of the topological order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass(frozen=True, eq=False)
class Network:
    """A unit flow from ``source`` to ``sink`` on an acyclic network.

    Args:
        tail, head: ``(v,)`` each variable's arc (node indices; the node of the model's missing
            row, if any, is the last).
        rhs: ``(m,)`` the rows' right-hand side (every instance must keep it).
        source, sink: the nodes of supply and demand.
        levels: per level of the topological order (in order), its nodes ``(k,)`` and their
            incoming arcs ``(k, d)``, padded with ``-1``.
    """

    tail: np.ndarray
    head: np.ndarray
    rhs: np.ndarray
    source: int
    sink: int
    nodes: int
    levels: tuple[tuple[np.ndarray, np.ndarray], ...]


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
    levels = _levels(plus, minus, nodes)
    if levels is None:
        return None
    return Network(
        plus,
        minus,
        np.asarray(row_low, dtype=np.float64).copy(),
        int(np.flatnonzero(b == 1)[0]),
        int(np.flatnonzero(b == -1)[0]),
        nodes,
        levels,
    )


def _levels(tail: np.ndarray, head: np.ndarray, nodes: int) -> tuple[tuple[np.ndarray, np.ndarray], ...] | None:
    """The nodes by level of a topological order (Kahn's), each with its incoming arcs padded
    with -1; None when the arcs have a cycle."""
    indegree = np.bincount(head, minlength=nodes)
    order = np.argsort(head, kind="stable")
    starts = np.searchsorted(head[order], np.arange(nodes + 1))
    out_order = np.argsort(tail, kind="stable")
    out_starts = np.searchsorted(tail[out_order], np.arange(nodes + 1))
    level = np.flatnonzero(indegree == 0)
    remaining = indegree.copy()
    seen = 0
    out: list[tuple[np.ndarray, np.ndarray]] = []
    while len(level):
        seen += len(level)
        ins = [order[starts[k] : starts[k + 1]] for k in level]
        width = max((len(i) for i in ins), default=0)
        padded = np.full((len(level), max(width, 1)), -1, dtype=np.int64)
        for row, arcs in enumerate(ins):
            padded[row, : len(arcs)] = arcs
        out.append((level, padded))
        arcs_out = np.concatenate([out_order[out_starts[k] : out_starts[k + 1]] for k in level])
        np.subtract.at(remaining, head[arcs_out], 1)
        touched = np.unique(head[arcs_out])
        level = touched[remaining[touched] == 0]
    return tuple(out) if seen == nodes else None


def shortest(net: Network, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``weights`` ``(B, v)`` (finite arc costs), a shortest source-sink path's
    indicator ``(B, v)`` and whether the sink is reachable ``(B,)`` (unreachable rows: zeros)."""
    batch, v = weights.shape
    pred = np.full((batch, net.nodes), -1, dtype=np.int64)
    # arc -1 (padding) reads the extra column: an infinite cost from an infinite distance
    w = np.hstack([weights, np.full((batch, 1), np.inf)])
    tail = np.append(net.tail, net.nodes)
    dist = np.full((batch, net.nodes + 1), np.inf)  # and the padding's node
    for level, ins in net.levels:
        cand = dist[:, tail[ins]] + w[:, ins]  # (B, k, d)
        best = np.argmin(cand, axis=2)
        dist[:, level] = np.take_along_axis(cand, best[..., None], axis=2)[..., 0]
        pred[:, level] = ins[np.arange(len(level)), best]
        if net.source in level:  # the path starts here, whatever reaches it
            dist[:, net.source] = 0.0
            pred[:, net.source] = -1
    reach = np.isfinite(dist[:, net.sink])
    x = np.zeros((batch, v))
    rows = np.flatnonzero(reach)
    cur = np.full(len(rows), net.sink, dtype=np.int64)
    for _ in range(net.nodes):
        moving = cur != net.source
        if not moving.any():
            break
        rows, cur = rows[moving], cur[moving]
        arc = pred[rows, cur]
        x[rows, arc] = 1.0
        cur = net.tail[arc]
    return x, reach
