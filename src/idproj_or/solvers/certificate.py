"""The box certificate: an exact answer without a solve, for linear models.

For ``min sum(t_j x_j)`` over ``low <= x <= high`` and linear rows ``row_low <= A x <= row_high``,
the corner ``x_j = low_j`` where ``t_j > 0`` and ``high_j`` where ``t_j < 0`` attains the smallest
objective over the whole box, a relaxation of the feasible set. When that corner satisfies every
row it is optimal, whatever the rest of the model: no solver can do better. A variable with
``t_j = 0`` may take any value of its range, so the rows must hold over that whole range (interval
arithmetic); it takes its lower bound. ``max`` mirrors it.

In decision-focused learning this is common: SPO+ solves at ``2 c_hat - c``, often negative for a
maximisation (a knapsack's best set is then the empty one), and the early epochs of training predict
costs whose favoured corner is feasible. The check is a few matrix products per batch, in the
caller, before any instance is shipped to a solver; certified rows are reported ``"optimal"`` with
solver status ``"BOX_CERTIFICATE"``, and the same rows are certified on every route (serial, pool,
executor), so results stay identical.

Integral models (CP-SAT's) are checked exactly: an instance whose row sums could pass 2^52 in
magnitude is left to the solver. Others are checked within ``FLOAT_TOLERANCE`` relative, the
feasibility tolerance solvers use.

CVXPY's compiled LPs and MIPs (:class:`AffineBox`): bounds, right-hand sides and the own objective
affine in the parameters that per-instance data fill, applied per instance; a row of a single
coefficient also bounds its variable (the row stays, and is checked).

The basis certificate (LPs on GLOP or CLP, with warm starts): each instance id keeps its last
optimal vertex ``x*`` and an optimal basis there (:func:`choose_basis`, in the worker). For the
instance's new cost ``t`` the basis gives duals ``y`` (``B^T y = t_B``) and reduced costs
``d = t - [A | -I]^T y`` over the variables and the rows' logicals; ``x*`` is optimal when it
is feasible for the instance's bounds and ``d`` has the KKT signs there (``d >= 0`` at a lower
bound, ``<= 0`` at an upper one, ``0`` strictly between), all within ``DUAL_TOLERANCE`` of the
cost's scale, 100 times tighter than GLOP's own optimality tolerance. The check needs no solver,
only a batched ``m x m`` solve in the caller.

The network path shortcut (:mod:`idproj_or.solvers.network`): an LP that is a unit flow on an
acyclic network (a shortest path written as flow conservation and ``0 <= x <= 1``) is decided by a
shortest-path pass over its nodes, every instance, in the caller; status ``"NETWORK_PATH"``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
from scipy import sparse

from .base import Data
from .bounds import BOTH, LOWER, UPPER, BoundField
from .network import Network, detect, shortest

BOX_CERTIFICATE = "BOX_CERTIFICATE"
BASIS_CERTIFICATE = "BASIS_CERTIFICATE"
NETWORK_PATH = "NETWORK_PATH"
FLOAT_TOLERANCE = 1e-9
DUAL_TOLERANCE = 1e-9
OPEN_BOUND = 1e20
# Rows of an LP with the basis certificate, at most: its check solves one dense m x m system per
# instance.
BASIS_ROWS = 256
# Integral data at most this large: every sum of a row is exact in float64.
EXACT_LIMIT = 2.0**52


class Certified(NamedTuple):
    """The rows of a batch the certificate decides: ``mask`` ``(B,)``; for those rows the cost
    entries' values ``x`` ``(k, n)``, the model's own objective there ``fixed`` and the optimum
    in the user's sense ``bound``; ``seconds`` spent on the whole check, and the solver status
    word the decided rows report."""

    mask: np.ndarray
    x: np.ndarray
    fixed: np.ndarray
    bound: np.ndarray
    seconds: float
    word: str = BOX_CERTIFICATE


class Instance(NamedTuple):
    """A batch's model as the certificates read it after each row's data: ``(B, v)`` variable
    and ``(B, m)`` row bounds, the own objective (``(v,)`` or ``(B, v)``) and its constant
    (``(B,)``), and ``exact``: the rows the arrays describe exactly (the others are left to the
    solver)."""

    low: np.ndarray
    high: np.ndarray
    row_low: np.ndarray
    row_high: np.ndarray
    own: np.ndarray
    offset: np.ndarray
    exact: np.ndarray


def _own_value(chosen: np.ndarray, own: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The own objective's coefficients at ``chosen`` ``(k, v)``: ``own`` ``(v,)`` or the ``rows``
    of a per-instance ``(B, v)``."""
    return chosen @ own if own.ndim == 1 else np.einsum("ij,ij->i", own[rows], chosen)


def round_inward(low: np.ndarray, high: np.ndarray, integer: np.ndarray) -> None:
    """Integer variables' ``(B, v)`` bounds rounded inward, in place, with a ``FLOAT_TOLERANCE``
    margin (a bound within it of an integer is that integer): the corner must be integral."""
    if integer.any():
        lo, hi = low[:, integer], high[:, integer]
        with np.errstate(invalid="ignore"):
            low[:, integer] = np.ceil(lo - FLOAT_TOLERANCE * np.maximum(1.0, np.abs(lo)))
            high[:, integer] = np.floor(hi + FLOAT_TOLERANCE * np.maximum(1.0, np.abs(hi)))


def opened(values: Any) -> np.ndarray:
    """Bounds of magnitude ``>= OPEN_BOUND`` as infinite, as the LP solvers read them."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.abs(values) >= OPEN_BOUND, np.copysign(np.inf, values), values)


@dataclass(frozen=True, eq=False)
class LinearBox:
    """A linear model as the certificate reads it (plain arrays: it travels with the spec).

    Args:
        var_index: ``(n,)`` the model variable of each cost entry (repeats sum).
        low, high: ``(v,)`` the variables' bounds (``-inf`` / ``inf`` when free).
        matrix: the ``(m, v)`` row coefficients (CSR).
        row_low, row_high: ``(m,)`` the rows' bounds.
        own: ``(v,)`` the model's own objective coefficients; ``own_offset`` its constant.
        sign: 1 for minimisation, -1 for maximisation.
        bounds: the data names (per-instance bounds of variables or constraints) and
            ``row_of``: each constraint index's row (-1: none).
        integral: every coefficient and bound is an integer (so are an instance's data).
        basis: the model is an LP whose solver reports optimal bases as warm states
            (:meth:`certify_basis`).
        flows: the model's rows and bounds are all it has (no other constraint), so
            :attr:`network` may read it as a network flow (:meth:`certify_network`).
    """

    var_index: np.ndarray
    low: np.ndarray
    high: np.ndarray
    matrix: sparse.csr_array
    row_low: np.ndarray
    row_high: np.ndarray
    own: np.ndarray
    own_offset: float
    sign: float
    bounds: tuple[BoundField, ...]
    row_of: np.ndarray
    integral: bool
    basis: bool = False
    flows: bool = False
    integer: np.ndarray | None = None

    def _key(self) -> tuple[Any, ...]:
        arrays: tuple[np.ndarray, ...] = (self.var_index, self.low, self.high, self.row_low, self.row_high, self.own)
        arrays = (*arrays, self.row_of, *(() if self.integer is None else (self.integer,)))
        m = self.matrix
        parts = (*arrays, m.data, m.indices, m.indptr)
        shape = (m.shape, self.own_offset, self.sign, self.bounds, self.integral, self.basis, self.flows)
        return (*(a.tobytes() for a in parts), *(a.shape for a in parts), *shape)

    def __eq__(self, other: object) -> bool:  # value equality: specs compare equal when rebuilt
        return isinstance(other, LinearBox) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @functools.cached_property
    def scatter(self) -> sparse.csr_array:
        """``(v, n)``: each cost entry into its variable's coefficient (repeats sum)."""
        n = len(self.var_index)
        return sparse.csr_array((np.ones(n), (self.var_index, np.arange(n))), shape=(len(self.low), n))

    @functools.cached_property
    def parts(self) -> tuple[sparse.csr_array, sparse.csr_array, sparse.csr_array]:
        """The matrix's positive and negative coefficients, and their magnitudes."""
        return self.matrix.maximum(0).tocsr(), self.matrix.minimum(0).tocsr(), abs(self.matrix).tocsr()

    def _instance_bounds(self, data: Data, batch: int) -> tuple[np.ndarray, ...]:
        """Per-instance ``(B, v)`` variable and ``(B, m)`` row bounds after the data."""
        low = np.broadcast_to(self.low, (batch, len(self.low))).copy()
        high = np.broadcast_to(self.high, (batch, len(self.high))).copy()
        row_low = np.broadcast_to(self.row_low, (batch, len(self.row_low))).copy()
        row_high = np.broadcast_to(self.row_high, (batch, len(self.row_high))).copy()
        for field in self.bounds:
            values = data.get(field.name)
            if values is None:
                continue
            index = np.asarray(field.index)
            lo, hi = (low, high) if field.variables else (row_low, row_high)
            at = index if field.variables else self.row_of[index]
            values = opened(values)
            if values.ndim == 3:  # (lower, upper) pairs
                lo[:, at], hi[:, at] = values[..., 0], values[..., 1]
                continue
            side = np.asarray(field.side)
            sets_low, sets_high = (side == LOWER) | (side == BOTH), (side == UPPER) | (side == BOTH)
            lo[:, at[sets_low]] = values[:, sets_low]
            hi[:, at[sets_high]] = values[:, sets_high]
        if self.integer is not None:  # data may give an integer variable a fractional bound
            round_inward(low, high, self.integer)
        return low, high, row_low, row_high

    def _instance(self, data: Data, batch: int) -> Instance:
        """The batch's bounds after ``data``'s rows, the own objective; every row exact."""
        low, high, row_low, row_high = self._instance_bounds(data, batch)
        offset = np.full(batch, self.own_offset)
        return Instance(low, high, row_low, row_high, self.own, offset, np.ones(batch, dtype=bool))

    def certify(self, costs: np.ndarray, data: Data) -> Certified:
        """Which rows of ``costs`` ``(B, n)`` (with ``data``'s rows) the corner decides."""
        t0 = time.perf_counter()
        batch = len(costs)
        low, high, row_low, row_high, own, offset, exact = self._instance(data, batch)
        total = (self.scatter @ costs.T).T + own
        signed = self.sign * total
        free = signed == 0
        floor = np.where(np.isfinite(low), low, np.where(np.isfinite(high), high, 0.0))
        x = np.where(signed > 0, low, np.where(signed < 0, high, floor))
        x_min, x_max = np.where(free, low, x), np.where(free, high, x)
        positive, negative, magnitude = self.parts
        with np.errstate(invalid="ignore"):  # inf - inf: a free variable in a row, not certified
            act_min = (positive @ x_min.T + negative @ x_max.T).T
            act_max = (positive @ x_max.T + negative @ x_min.T).T
        if self.integral:  # exact while every partial sum stays below 2^52
            slack_low = slack_high = 0.0
            reach = np.maximum(np.abs(x_min), np.abs(x_max))
            exact = exact & ((magnitude @ reach.T).T.max(axis=1, initial=0.0) <= EXACT_LIMIT)
            exact &= (np.abs(np.where(np.isfinite(row_low), row_low, 0.0)) <= EXACT_LIMIT).all(axis=1)
            exact &= (np.abs(np.where(np.isfinite(row_high), row_high, 0.0)) <= EXACT_LIMIT).all(axis=1)
        else:
            slack_low = FLOAT_TOLERANCE * np.maximum(1.0, np.abs(row_low))
            slack_high = FLOAT_TOLERANCE * np.maximum(1.0, np.abs(row_high))
        ok = (
            exact
            & np.isfinite(x).all(axis=1)
            & (low <= high).all(axis=1)
            & (act_min >= row_low - slack_low).all(axis=1)
            & (act_max <= row_high + slack_high).all(axis=1)
        )
        chosen = x[ok]
        fixed = _own_value(chosen, own, ok) + offset[ok]
        bound = np.einsum("ij,ij->i", total[ok], chosen) + offset[ok]
        return Certified(ok, chosen[:, self.var_index], fixed, bound, time.perf_counter() - t0)

    @functools.cached_property
    def network(self) -> Network | None:
        """The model as a unit flow on an acyclic network (read once), or None."""
        if not self.flows:
            return None
        rows = self.network_rows
        return detect(self.matrix[rows], self.row_low[rows], self.row_high[rows], self.low, self.high)

    @functools.cached_property
    def network_rows(self) -> np.ndarray:
        """The rows the network reads (the others hold in its variables' bounds)."""
        return np.arange(self.matrix.shape[0])

    def certify_network(self, costs: np.ndarray, data: Data) -> Certified:
        """Which rows of ``costs`` ``(B, n)`` (with ``data``'s rows) a shortest path decides: all
        whose data keep the network (its right-hand side, arcs in ``[0, >= 1]``) and whose costs
        are finite, when the sink is reachable."""
        t0 = time.perf_counter()
        net = self.network
        batch = len(costs)
        if net is None or not net.reachable:
            empty = np.empty((0, len(self.var_index)))
            return Certified(np.zeros(batch, dtype=bool), empty, np.empty(0), np.empty(0), 0.0, NETWORK_PATH)
        own, offset = self.own, np.full(batch, self.own_offset)
        ok = np.ones(batch, dtype=bool)
        if data:
            low, high, row_low, row_high, own, offset, ok = self._instance(data, batch)
            ok = ok & (low == 0).all(axis=1) & (high >= 1).all(axis=1)
            kept = self.network_rows
            ok &= (row_low[:, kept] == net.rhs).all(axis=1) & (row_high[:, kept] == net.rhs).all(axis=1)
        total = (self.scatter @ costs.T).T + own
        signed = self.sign * total
        ok &= np.isfinite(signed).all(axis=1)
        rows = np.flatnonzero(ok)
        chosen = shortest(net, signed[rows])
        mask = np.zeros(batch, dtype=bool)
        mask[rows] = True
        fixed = _own_value(chosen, own, mask) + offset[mask]
        bound = np.einsum("ij,ij->i", total[mask], chosen) + offset[mask]
        return Certified(mask, chosen[:, self.var_index], fixed, bound, time.perf_counter() - t0, NETWORK_PATH)

    @functools.cached_property
    def columns(self) -> np.ndarray:
        """The dense ``(m, v + m)`` matrix ``[A | -I]``: the variables, then each row's logical
        ``s = a x`` (within the row's bounds)."""
        m = self.matrix.shape[0]
        return np.hstack([self.matrix.toarray(), -np.eye(m)])

    def certify_basis(self, costs: np.ndarray, data: Data, states: np.ndarray) -> Certified:
        """Which rows of ``costs`` ``(B, n)`` (with ``data``'s rows) their state's vertex and
        basis (``states``: ``(B, 2v + m)`` from :func:`basis_state`, NaN rows: none) decide."""
        t0 = time.perf_counter()
        batch = len(costs)
        v, m = len(self.low), self.matrix.shape[0]
        mask = np.zeros(batch, dtype=bool)
        empty = np.empty((0, len(self.var_index)))
        if states.shape[1] != 2 * v + m:
            return Certified(mask, empty, np.empty(0), np.empty(0), time.perf_counter() - t0, BASIS_CERTIFICATE)
        basic = states[:, v:] > 0.5
        rows = np.flatnonzero(~np.isnan(states).any(axis=1) & (basic.sum(axis=1) == m))
        x = states[rows, :v]
        total = (self.scatter @ costs[rows].T).T + self.own
        signed = self.sign * total
        cols = self.columns
        ext = np.hstack([signed, np.zeros((len(rows), m))])
        where = np.argsort(~basic[rows], axis=1, kind="stable")[:, :m]  # the basic columns
        bases = np.transpose(cols[:, where], (1, 2, 0))  # (k, m basic, m rows): B^T per row
        y = _solve_rows(bases, np.take_along_axis(ext, where, axis=1))
        d = ext - y @ cols
        low, high, row_low, row_high = self._instance_bounds({k: a[rows] for k, a in data.items()}, len(rows))
        value = np.hstack([x, (self.matrix @ x.T).T])
        lo, hi = np.hstack([low, row_low]), np.hstack([high, row_high])
        with np.errstate(invalid="ignore"):  # inf - inf: an open side
            x_tol = FLOAT_TOLERANCE * np.maximum(
                1.0, np.maximum(np.abs(np.where(np.isfinite(lo), lo, 0)), np.abs(value))
            )
            at_low = np.abs(value - lo) <= x_tol
            at_high = np.abs(value - hi) <= x_tol
            feasible = ((value >= lo - x_tol) & (value <= hi + x_tol)).all(axis=1)
        scale = np.maximum(1.0, np.maximum(np.abs(ext).max(axis=1), (np.abs(y) @ np.abs(cols)).max(axis=1)))
        d_tol = DUAL_TOLERANCE * scale[:, None]
        signs = (at_low & at_high) | (at_low & (d >= -d_tol)) | (at_high & (d <= d_tol)) | (np.abs(d) <= d_tol)
        ok = feasible & signs.all(axis=1) & np.isfinite(d).all(axis=1)
        mask[rows[ok]] = True
        chosen = x[ok]
        fixed = chosen @ self.own + self.own_offset
        bound = np.einsum("ij,ij->i", total[ok], chosen) + self.own_offset
        return Certified(mask, chosen[:, self.var_index], fixed, bound, time.perf_counter() - t0, BASIS_CERTIFICATE)


def _solve_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a[i] y[i] = b[i]`` for each row; NaN rows where ``a[i]`` is singular."""
    try:
        return np.linalg.solve(a, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.full(b.shape, np.nan)
        for i in range(len(a)):
            with contextlib.suppress(np.linalg.LinAlgError):
                out[i] = np.linalg.solve(a[i], b[i])
        return out


def choose_basis(
    columns: np.ndarray, value: np.ndarray, low: np.ndarray, high: np.ndarray, reduced: np.ndarray
) -> np.ndarray | None:
    """An optimal basis at a solver's optimal vertex, as a ``(v + m,)`` mask over ``columns``
    (``[A | -I]``): every column strictly between its bounds (``value``: the variables' values
    and the rows' activities; ``low`` / ``high`` their bounds), completed to ``m`` independent
    columns from those with a zero reduced cost (``reduced``: the variables' reduced costs and
    the rows' duals). The duals of such a basis are the solver's, so it is optimal for the cost
    it was solved at; None when no such basis is found (the caller's check is the safeguard)."""
    m = columns.shape[0]
    scale = np.maximum(1.0, np.abs(np.where(np.isfinite(low), low, 0.0)))
    inside = (value > low + FLOAT_TOLERANCE * scale) & (value < high - FLOAT_TOLERANCE * scale)
    zero = np.abs(reduced) <= DUAL_TOLERANCE * max(1.0, float(np.abs(reduced).max(initial=0.0)))
    must = np.flatnonzero(inside)
    may = np.flatnonzero(zero & ~inside)
    if len(must) > m:
        return None
    chosen = list(must)
    rest = columns[:, may]
    if len(must):
        q, r = np.linalg.qr(columns[:, must])
        if np.abs(np.diag(r)).min() <= 1e-9 * max(1.0, np.abs(r).max()):
            return None
        rest = rest - q @ (q.T @ rest)
    need = m - len(must)
    if need:
        if rest.shape[1] < need:
            return None
        _, r, pivots = scipy.linalg.qr(rest, mode="economic", pivoting=True)
        diag = np.abs(np.diag(r))
        if len(diag) < need or diag[need - 1] <= 1e-9 * max(1.0, diag[0]):
            return None
        chosen += may[pivots[:need]].tolist()
    mask = np.zeros(columns.shape[1], dtype=bool)
    mask[chosen] = True
    return mask


def mp_box(
    proto: Any,
    var_index: Sequence[int],
    own: Mapping[int, float],
    own_offset: float,
    sense: str,
    bounds: Sequence[BoundField],
    *,
    is_mip: bool,
    basis: bool,
) -> LinearBox | None:
    """The certificate's view of an ``MPModelProto`` (pywraplp, MathOpt, model_builder), or None
    when it has general constraints (indicators, SOS, ...) or a quadratic part. Integer variables
    of a MIP take their bounds rounded inward (the corner must be integral)."""
    if len(proto.general_constraint) or (
        proto.HasField("quadratic_objective") and len(proto.quadratic_objective.coefficient)
    ):
        return None
    low = opened([var.lower_bound for var in proto.variable])
    high = opened([var.upper_bound for var in proto.variable])
    integer = np.array([var.is_integer for var in proto.variable], dtype=bool) if is_mip else None
    if integer is not None:
        low[integer], high[integer] = np.ceil(low[integer]), np.floor(high[integer])
    indptr = np.cumsum([0] + [len(ct.var_index) for ct in proto.constraint])
    indices = np.array([v for ct in proto.constraint for v in ct.var_index], dtype=np.int64)
    data = np.array([c for ct in proto.constraint for c in ct.coefficient], dtype=np.float64)
    matrix = sparse.csr_array((data, indices, indptr), shape=(len(proto.constraint), len(low)))
    matrix.sum_duplicates()
    own_coeffs = np.zeros(len(low))
    for v, c in own.items():
        own_coeffs[v] += c
    return LinearBox(
        np.asarray(var_index, dtype=np.int64),
        low,
        high,
        matrix,
        opened([ct.lower_bound for ct in proto.constraint]),
        opened([ct.upper_bound for ct in proto.constraint]),
        own_coeffs,
        float(own_offset),
        -1.0 if sense == "max" else 1.0,
        tuple(bounds),
        np.arange(len(proto.constraint), dtype=np.int64),
        integral=False,
        basis=basis and len(proto.constraint) <= BASIS_ROWS,
        flows=True,
        integer=integer if integer is not None and integer.any() else None,
    )


# CP-SAT's unbounded sides of a linear row (INT_MIN, INT_MAX) and anything as large.
CPSAT_INFINITY = 2**62
# CP-SAT constraints over literals that are linear rows: (field, lower, upper) of sum(literals).
_LITERAL_ROWS = {"at_most_one": (-np.inf, 1.0), "exactly_one": (1.0, 1.0), "bool_or": (1.0, np.inf)}


def cpsat_box(
    proto: Any,
    var_index: Sequence[int],
    own: Mapping[int, float],
    own_offset: float,
    sense: str,
    bounds: Sequence[BoundField],
) -> LinearBox | None:
    """The certificate's view of a CP-SAT model, or None when a constraint is not a plain linear
    row (an enforcement literal, a circuit, a table, a domain with holes, ...)."""
    rows: list[tuple[list[int], list[float], float, float]] = []
    row_of = np.full(len(proto.constraints), -1, dtype=np.int64)
    for k, ct in enumerate(proto.constraints):
        if len(ct.enforcement_literal):
            return None
        kind = next((k for k in ("linear", *_LITERAL_ROWS) if getattr(ct, f"has_{k}")()), None)
        if kind == "linear":
            domain = list(ct.linear.domain)
            if len(domain) != 2 or any(v < 0 for v in ct.linear.vars):
                return None
            lo, hi = (float(d) if abs(d) < CPSAT_INFINITY else math.copysign(math.inf, d) for d in domain)
            rows.append((list(ct.linear.vars), [float(c) for c in ct.linear.coeffs], lo, hi))
        elif kind in _LITERAL_ROWS:
            lo, hi = _LITERAL_ROWS[kind]
            vars_, coeffs = [], []
            for lit in getattr(ct, kind).literals:
                if lit >= 0:
                    vars_.append(lit)
                    coeffs.append(1.0)
                else:  # not(x) = 1 - x
                    vars_.append(-lit - 1)
                    coeffs.append(-1.0)
                    lo, hi = lo - 1.0, hi - 1.0
            rows.append((vars_, coeffs, lo, hi))
        else:
            return None
        row_of[k] = len(rows) - 1
    n_vars = len(proto.variables)
    domains = [list(v.domain) for v in proto.variables]
    low = np.array([d[0] for d in domains], dtype=np.float64)
    high = np.array([d[-1] for d in domains], dtype=np.float64)
    indptr = np.cumsum([0] + [len(r[0]) for r in rows])
    indices = np.array([v for r in rows for v in r[0]], dtype=np.int64)
    data = np.array([c for r in rows for c in r[1]], dtype=np.float64)
    matrix = sparse.csr_array((data, indices, indptr), shape=(len(rows), n_vars))
    matrix.sum_duplicates()
    own_coeffs = np.zeros(n_vars)
    for v, c in own.items():
        own_coeffs[v] += c
    return LinearBox(
        np.asarray(var_index, dtype=np.int64),
        low,
        high,
        matrix,
        np.array([r[2] for r in rows], dtype=np.float64),
        np.array([r[3] for r in rows], dtype=np.float64),
        own_coeffs,
        float(own_offset),
        -1.0 if sense == "max" else 1.0,
        tuple(bounds),
        row_of,
        integral=True,
    )


@dataclass(frozen=True, eq=False, kw_only=True)
class AffineBox(LinearBox):
    """A linear model whose bounds, right-hand sides and own objective are affine in a parameter
    vector ``p`` that per-instance data fill (CVXPY's compiled problems,
    :mod:`idproj_or.solvers.cvxpy`). The inherited arrays are the model at ``p0``.

    A row with a single coefficient (CVXPY compiles ``x >= 0`` and ``x <= 1`` as rows) also
    bounds its variable: each instance's box is the variables' own bounds intersected with those
    rows' (the rows stay, and are checked), integer variables' bounds rounded inward with a
    ``FLOAT_TOLERANCE`` margin (so the box never cuts off an integer the rows admit), and the
    network reads the other rows.

    Args:
        p0: ``(P + 1,)`` the base parameter vector (a trailing constant 1).
        slots: per data name, its start in ``p`` and its shape (entries column-major).
        affine: ``(r, P + 1)`` the entries of the stacked vector ``[col_low | col_high |
            row_low | row_high | own | own_offset | checked]`` that data reach, at ``target``.
        target: ``(r,)`` their positions in the stacked vector.
        checked: row coefficients that data reach, at ``p0``: an instance whose values differ
            is left to the solver.
        col_low, col_high: ``(v,)`` the variables' own bounds at ``p0``, before the rows'.
        clamp_low, clamp_high: ``(v,)`` bounds every instance's variable bounds are clamped to
            (booleans: ``[0, 1]``).
        integer: ``(v,)`` integer variables.
    """

    p0: np.ndarray
    slots: tuple[tuple[str, int, tuple[int, ...]], ...]
    affine: sparse.csr_array
    target: np.ndarray
    checked: np.ndarray
    col_low: np.ndarray
    col_high: np.ndarray
    clamp_low: np.ndarray
    clamp_high: np.ndarray

    def _key(self) -> tuple[Any, ...]:
        a = self.affine
        parts = [self.p0, self.target, self.checked, self.col_low, self.col_high, self.clamp_low, self.clamp_high]
        parts += [a.data, a.indices, a.indptr]
        return (*super()._key(), *(x.tobytes() for x in parts), *(x.shape for x in parts), a.shape, self.slots)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AffineBox) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @functools.cached_property
    def singles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows with a single nonzero coefficient: their indices, columns and coefficients."""
        m = self.matrix.copy()
        m.eliminate_zeros()
        rows = np.flatnonzero(np.diff(m.indptr) == 1)
        at = m.indptr[rows]
        return rows, m.indices[at].astype(np.int64), m.data[at].astype(np.float64)

    @functools.cached_property
    def network_rows(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.matrix.shape[0]), self.singles[0])

    def boxed(
        self, col_low: np.ndarray, col_high: np.ndarray, row_low: np.ndarray, row_high: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The variables' ``(B, v)`` bounds from their own ``(B, v)`` and the single-coefficient
        rows' ``(B, m)``: clamped, intersected, integers rounded inward."""
        low = np.maximum(col_low, self.clamp_low)
        high = np.minimum(col_high, self.clamp_high)
        rows, cols, coef = self.singles
        if len(rows):
            lo, hi = row_low[:, rows], row_high[:, rows]
            up = coef > 0
            with np.errstate(invalid="ignore"):
                implied_low = np.where(up, lo / coef, hi / coef)
                implied_high = np.where(up, hi / coef, lo / coef)
            np.maximum.at(low.T, cols, implied_low.T)  # the transposes are views: low and high change
            np.minimum.at(high.T, cols, implied_high.T)
        if self.integer is not None:
            round_inward(low, high, self.integer)
        return low, high

    def _instance(self, data: Data, batch: int) -> Instance:
        given = [(start, shape, data[name]) for name, start, shape in self.slots if data.get(name) is not None]
        if not given:
            return Instance(
                np.broadcast_to(self.low, (batch, len(self.low))),
                np.broadcast_to(self.high, (batch, len(self.high))),
                np.broadcast_to(self.row_low, (batch, len(self.row_low))),
                np.broadcast_to(self.row_high, (batch, len(self.row_high))),
                self.own,
                np.full(batch, self.own_offset),
                np.ones(batch, dtype=bool),
            )
        p = np.repeat(self.p0[None], batch, axis=0)
        for start, shape, values in given:
            values = np.asarray(values, dtype=np.float64).reshape((batch, *shape))
            flat = values.transpose((0, *range(len(shape), 0, -1))).reshape(batch, -1)  # column-major
            p[:, start : start + flat.shape[1]] = flat
        v, m = len(self.low), len(self.row_low)
        base = np.concatenate(
            [self.col_low, self.col_high, self.row_low, self.row_high, self.own, [self.own_offset], self.checked]
        )
        stacked = np.repeat(base[None], batch, axis=0)
        stacked[:, self.target] = (self.affine @ p.T).T
        cuts = np.cumsum([v, v, m, m, v, 1])
        col_low, col_high, row_low, row_high, own, offset, checked = np.split(stacked, cuts, axis=1)
        col_low, col_high, row_low, row_high = map(opened, (col_low, col_high, row_low, row_high))
        low, high = self.boxed(col_low, col_high, row_low, row_high)
        exact = (checked == self.checked).all(axis=1)
        return Instance(low, high, row_low, row_high, own, offset[:, 0], exact)

    def certify_basis(self, costs: np.ndarray, data: Data, states: np.ndarray) -> Certified:
        raise NotImplementedError("no basis certificate for a parametric model")
