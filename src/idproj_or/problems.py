"""Ready-made problems: declared models plus their cost variables, in several modelling backends.

Each builder returns a :class:`Problem`: the declared model, the array of variables whose
objective coefficients are the predicted costs (its shape is the cost shape), the optimisation
sense, and for CVXPY the cost ``Parameter``. ``problem.layer(**options)`` turns it into the
matching layer (:class:`~idproj_or.CpSatLayer`, :class:`~idproj_or.LinearSolverLayer` or
:class:`~idproj_or.CvxpyLayer`). The same arguments give the same feasible set in every backend,
so one instance can be solved, and compared, with each of them.

============================  ======  ========  =============================================
builder                       sense   shape     pywraplp / CVXPY formulation
============================  ======  ========  =============================================
``knapsack(weights, caps)``   max     (n,)      MIP (default SCIP) / boolean MIP
``shortest_path_grid(h, w)``  min     (arcs,)   LP (default GLOP) / LP, integral (network)
``tsp(n)``                    min     (n, n)    MIP with MTZ subtour cuts (SCIP) / boolean MIP
``assignment(n, m)``          min     (n, m)    LP (GLOP) / LP, integral (bipartite matching)
``top_k(n, k)``               max     (n,)      LP (GLOP) / LP, integral
============================  ======  ========  =============================================

The LP formulations are totally unimodular, so a vertex optimum (what simplex returns) is 0/1.
Each ``Problem`` owns a fresh model: builders never share state between calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .checks import Sense, check_size
from .solvers.knapsack import integer_row, knapsack_arrays
from .solvers.shortest_path import grid_arcs

if TYPE_CHECKING:
    from .rules.identity import OptLayer

BACKENDS: tuple[str, ...] = ("cpsat", "pywraplp", "cvxpy")
_CPSAT_HINT = ", or use backend='pywraplp' / 'cvxpy'"


@dataclass(frozen=True)
class Problem:
    """A declared model of a ready problem and what a layer needs to use it.

    Attributes:
        name: the builder's name (``"knapsack"``, ``"tsp"``, ...).
        backend: ``"cpsat"``, ``"pywraplp"`` or ``"cvxpy"``.
        model: a ``cp_model.CpModel``, a ``pywraplp.Solver`` or a ``cvxpy.Problem``.
        variables: the cost variables: a numpy object array of ``IntVar`` / ``pywraplp.Variable``,
            or a ``cvxpy.Variable``; its shape is the cost shape.
        sense: ``"min"`` or ``"max"``.
        parameter: the cost ``cvxpy.Parameter`` (CVXPY only; ``None`` otherwise).
        solver: the CVXPY solver name given to the builder (``None``: the layer's default).
    """

    name: str
    backend: str
    model: Any
    variables: Any
    sense: Sense
    parameter: Any = None
    solver: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.variables.shape)

    def layer(self, **options: Any) -> OptLayer:
        """The layer of this problem's backend, with the problem's sense.

        Args:
            **options: ``projection``, ``noise``, ``workers``, ``executor``, ``time_limit``,
                ``generator`` (see :class:`idproj_or.rules.identity.OptLayer`).

        Returns:
            a ``CpSatLayer``, ``LinearSolverLayer`` or ``CvxpyLayer``.
        """
        # Imported here so this module loads before (and without) every adapter.
        if self.backend == "cpsat":
            from .layers.cpsat import CpSatLayer

            return CpSatLayer(self.model, self.variables, sense=self.sense, **options)
        if self.backend == "pywraplp":
            from .layers.linear import LinearSolverLayer

            return LinearSolverLayer(self.model, self.variables, sense=self.sense, **options)
        from .layers.cvxpy import CvxpyLayer

        if self.solver is not None:
            options = {"solver": self.solver, **options}
        return CvxpyLayer(self.model, self.parameter, self.variables, **options)


def _check_backend(backend: str, solver: str | None, *, where: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"{where}: backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    if backend == "cpsat" and solver is not None:
        raise ValueError(f"{where}: solver={solver!r} does not apply to backend='cpsat'")


def _pywraplp(solver: str | None, default: str, *, where: str) -> Any:
    from ortools.linear_solver import pywraplp

    name = default if solver is None else solver
    created = pywraplp.Solver.CreateSolver(name)
    if created is None:
        raise ValueError(f"{where}: pywraplp has no solver {name!r} in this OR-Tools build")
    return created


def _row(lp: Any, lb: float, ub: float, terms: Sequence[tuple[Any, float]]) -> None:
    """``lb <= sum(coef * var) <= ub`` as an explicit pywraplp row (empty sides allowed)."""
    ct = lp.Constraint(lb, ub)
    for var, coef in terms:
        ct.SetCoefficient(var, coef)


def _objects(items: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.empty(shape, dtype=object)
    arr.reshape(-1)[:] = list(np.asarray(items, dtype=object).reshape(-1))
    return arr


def _names(shape: tuple[int, ...]) -> list[str]:
    return ["x" + "_".join(map(str, idx)) for idx in np.ndindex(*shape)]


@dataclass(frozen=True)
class _Rows:
    """A ready problem as ``lower <= rows @ [x, u] <= upper`` over the cost variables ``x``
    (flattened in C order, 0/1) and continuous auxiliaries ``u`` (``aux`` bounds): what each
    backend's builder turns into its own model, so that every backend gets the same feasible set.

    ``integral``: Boolean ``x`` in the pywraplp and CVXPY models; otherwise their LP with
    ``0 <= x <= 1`` (totally unimodular: simplex vertices are 0/1). CP-SAT always uses Booleans.
    """

    name: str
    shape: tuple[int, ...]
    sense: Sense
    rows: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    integral: bool
    default_solver: str
    aux: tuple[tuple[float, float], ...] = ()

    @classmethod
    def stack(
        cls, name: str, shape: tuple[int, ...], sense: Sense, parts: Sequence[tuple[Any, Any, Any]], **kw: Any
    ) -> _Rows:
        """From ``(rows, lower, upper)`` blocks (scalars broadcast over a block's rows)."""
        rows = np.vstack([np.atleast_2d(np.asarray(r, dtype=np.float64)) for r, _, _ in parts])
        lower = np.concatenate(
            [np.broadcast_to(np.asarray(lo, dtype=np.float64), (len(np.atleast_2d(r)),)) for r, lo, _ in parts]
        )
        upper = np.concatenate(
            [np.broadcast_to(np.asarray(hi, dtype=np.float64), (len(np.atleast_2d(r)),)) for r, _, hi in parts]
        )
        return cls(name, shape, sense, rows, lower, upper, **kw)


def _declare_sense(lp: Any, sense: Sense) -> None:
    # A zero objective with the problem's sense, so the model states its own direction.
    if sense == "max":
        lp.Objective().SetMaximization()
    else:
        lp.Objective().SetMinimization()


def _cpsat_sense(model: Any, variables: np.ndarray, sense: Sense) -> None:
    from ortools.sat.python import cp_model

    flat = list(variables.reshape(-1))
    zero = cp_model.LinearExpr.weighted_sum(flat, [0] * len(flat))
    if sense == "max":
        model.maximize(zero)
    else:
        model.minimize(zero)


def _build(problem: _Rows, backend: str, solver: str | None, *, cpsat: Any = None) -> Problem:
    """``problem`` as a declared model of ``backend`` (``cpsat``: a function that returns the
    CP-SAT model and its variables, for a problem with a better CP-SAT formulation)."""
    if backend == "cpsat":
        model, x = cpsat() if cpsat is not None else _cpsat_model(problem)
        x = _objects(x, problem.shape)
        _cpsat_sense(model, x, problem.sense)
        return Problem(problem.name, backend, model, x, problem.sense)
    if backend == "pywraplp":
        lp, x = _pywraplp_model(problem, solver)
        return Problem(problem.name, backend, lp, x, problem.sense)
    prob, x, c = _cvxpy_model(problem)
    return Problem(problem.name, backend, prob, x, problem.sense, parameter=c, solver=solver)


def _cpsat_model(problem: _Rows) -> tuple[Any, list[Any]]:
    from ortools.sat.python import cp_model

    assert not problem.aux, "CP-SAT models of ready problems have no auxiliary variables"
    model = cp_model.CpModel()
    x = [model.new_bool_var(n) for n in _names(problem.shape)]
    for r, (coefs, lo, hi) in enumerate(zip(problem.rows, problem.lower, problem.upper)):
        nz = np.flatnonzero(coefs)
        if math.isinf(lo):  # a <= row: scaled to integers (knapsack weights with decimals)
            ints, bound = integer_row(coefs[nz], float(hi), row=r, where=problem.name, hint=_CPSAT_HINT)
            model.add(cp_model.LinearExpr.weighted_sum([x[k] for k in nz], ints.tolist()) <= bound)
        else:  # equalities and ranges of the ready problems have integer data
            expr = cp_model.LinearExpr.weighted_sum([x[k] for k in nz], [int(v) for v in coefs[nz]])
            model.add_linear_constraint(expr, int(lo), int(hi) if math.isfinite(hi) else cp_model.INT_MAX)
    return model, x


def _pywraplp_model(problem: _Rows, solver: str | None) -> tuple[Any, np.ndarray]:
    lp = _pywraplp(solver, problem.default_solver, where=problem.name)
    inf = lp.infinity()
    names = _names(problem.shape)
    x = [lp.BoolVar(n) if problem.integral else lp.NumVar(0.0, 1.0, n) for n in names]
    variables = x + [lp.NumVar(lo, hi, f"u{k + 1}") for k, (lo, hi) in enumerate(problem.aux)]
    for coefs, lo, hi in zip(problem.rows, problem.lower, problem.upper):
        nz = np.flatnonzero(coefs)
        _row(lp, max(lo, -inf), min(hi, inf), [(variables[k], float(coefs[k])) for k in nz])
    _declare_sense(lp, problem.sense)
    return lp, _objects(x, problem.shape)


def _cvxpy_model(problem: _Rows) -> tuple[Any, Any, Any]:
    import cvxpy as cp
    import scipy.sparse as sp

    x = cp.Variable(problem.shape, boolean=problem.integral, name="x")
    c = cp.Parameter(problem.shape, name="c")
    terms = cp.vec(x, order="C") if len(problem.shape) > 1 else x
    constraints = [] if problem.integral else [x >= 0, x <= 1]
    if problem.aux:
        u = cp.Variable(len(problem.aux), name="u")
        lo, hi = (np.array(b) for b in zip(*problem.aux))
        terms = cp.hstack([terms, u])
        constraints += [u >= lo, u <= hi]
    a, lower, upper = sp.csr_matrix(problem.rows), problem.lower, problem.upper
    eq = lower == upper
    for keep, side in ((eq, "=="), (~eq & np.isfinite(upper), "<="), (~eq & np.isfinite(lower), ">=")):
        if keep.any():
            lhs = a[np.flatnonzero(keep)] @ terms
            constraints.append(
                lhs == upper[keep] if side == "==" else lhs <= upper[keep] if side == "<=" else lhs >= lower[keep]
            )
    cost = c @ x if len(problem.shape) == 1 else cp.sum(cp.multiply(c, x))
    objective = cp.Maximize(cost) if problem.sense == "max" else cp.Minimize(cost)
    return cp.Problem(objective, constraints), x, c


# --------------------------------------------------------------------------- knapsack


def knapsack(
    weights: Any,
    capacities: Any,
    *,
    backend: str = "cpsat",
    solver: str | None = None,
) -> Problem:
    """Multi-dimensional 0/1 knapsack: ``max sum(c * x)`` s.t. ``weights @ x <= capacities``.

    The predicted costs ``c`` are the item values. CP-SAT needs integer constraint coefficients:
    each row is multiplied by the smallest power of ten (up to 10^6) that makes its weights
    integers, and its capacity is rounded down on that scale, which keeps the feasible set
    exactly (e.g. PyEPO's two-decimal weights work as they are).

    Args:
        weights: ``(d, n)`` (or ``(n,)`` for one dimension) finite item weights.
        capacities: ``(d,)`` (or a scalar) finite capacities.
        backend: ``"cpsat"``, ``"pywraplp"`` or ``"cvxpy"``.
        solver: pywraplp solver name (default ``"SCIP"``) or CVXPY solver name (default: the
            layer's).

    Returns:
        a :class:`Problem` with sense ``"max"`` and cost shape ``(n,)``.

    Example:
        >>> import torch
        >>> p = knapsack([[3, 4, 5]], [7])
        >>> p.layer(projection="norm")(torch.tensor([1.0, 2.0, 2.5])).tolist()
        [1.0, 1.0, 0.0]
    """
    where = "knapsack"
    _check_backend(backend, solver, where=where)
    w, cap = knapsack_arrays(weights, capacities, where=where)
    rows = _Rows.stack(where, (w.shape[1],), "max", [(w, -np.inf, cap)], integral=True, default_solver="SCIP")
    return _build(rows, backend, solver)


# --------------------------------------------------------------------------- shortest path


def grid_incidence(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flow conservation ``A x = b`` of :func:`grid_arcs`: ``A[v, e]`` is +1 when arc ``e`` leaves
    node ``v`` and -1 when it enters it; ``b`` is +1 at the source (node 0), -1 at the sink
    (node ``h*w - 1``), 0 elsewhere."""
    arcs = grid_arcs(h, w)
    a = np.zeros((h * w, len(arcs)))
    for e, (tail, head) in enumerate(arcs):
        a[tail, e] = 1.0
        a[head, e] = -1.0
    b = np.zeros(h * w)
    b[0], b[-1] = 1.0, -1.0
    return a, b


def shortest_path_grid(h: int, w: int, *, backend: str = "cpsat", solver: str | None = None) -> Problem:
    """Shortest path on the ``h x w`` grid from the top-left to the bottom-right node.

    Arcs go right and down only (PyEPO's benchmark; order in :func:`grid_arcs`); the costs are
    the arc lengths, one per arc. Constraints: flow conservation at every node
    (:func:`grid_incidence`), which ``projection="auto"`` uses (adding node potentials
    ``p_tail - p_head`` to the arc costs shifts every path's length by the same amount).
    CP-SAT uses Boolean arcs; pywraplp and CVXPY solve the LP with ``0 <= x <= 1``, whose vertices
    are paths.

    Args:
        h: rows of nodes (>= 1).
        w: columns of nodes (>= 1); ``h * w >= 2``.
        backend: ``"cpsat"``, ``"pywraplp"`` or ``"cvxpy"``.
        solver: pywraplp solver name (default ``"GLOP"``) or CVXPY solver name.

    Returns:
        a :class:`Problem` with sense ``"min"`` and cost shape ``(h (w-1) + (h-1) w,)``.

    Example:
        >>> import torch
        >>> p = shortest_path_grid(2, 2)
        >>> p.layer()(torch.tensor([1.0, 5.0, 1.0, 1.0])).tolist()
        [1.0, 0.0, 1.0, 0.0]
    """
    where = "shortest_path_grid"
    h = check_size(h, "h", where=where)
    w = check_size(w, "w", where=where)
    if h * w < 2:
        raise ValueError(f"{where}: the grid needs at least 2 nodes, got {h}x{w}")
    _check_backend(backend, solver, where=where)
    a, b = grid_incidence(h, w)
    rows = _Rows.stack(where, (a.shape[1],), "min", [(a, b, b)], integral=False, default_solver="GLOP")
    return _build(rows, backend, solver)


# --------------------------------------------------------------------------- TSP


def tsp(n: int, *, backend: str = "cpsat", solver: str | None = None) -> Problem:
    """Asymmetric travelling salesman on ``n`` nodes: ``y[i, j] = 1`` when the tour goes ``i -> j``.

    CP-SAT: one Boolean per arc and ``add_circuit`` (the diagonal entries are the constant 0).
    pywraplp / CVXPY: binary ``(n, n)`` matrix with ``y[i, i] = 0``, in/out degree 1, and
    Miller-Tucker-Zemlin subtour elimination ``u_i - u_j + (n-1) y[i, j] <= n - 2`` over
    ``1 <= u_i <= n - 1`` (``i, j >= 1``), which is slow beyond a dozen nodes: for larger tours use
    :class:`~idproj_or.TSPLayer`. The diagonal costs never matter.

    Args:
        n: number of nodes (>= 2).
        backend: ``"cpsat"``, ``"pywraplp"`` or ``"cvxpy"``.
        solver: pywraplp solver name (default ``"SCIP"``) or CVXPY solver name.

    Returns:
        a :class:`Problem` with sense ``"min"`` and cost shape ``(n, n)``.

    Example:
        >>> import torch
        >>> p = tsp(3)
        >>> c = torch.tensor([[0.0, 1.0, 9.0], [9.0, 0.0, 1.0], [1.0, 9.0, 0.0]])
        >>> p.layer()(c).tolist()
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    where = "tsp"
    n = check_size(n, "n", where=where, minimum=2)
    _check_backend(backend, solver, where=where)
    eye, ones = np.eye(n), np.ones(n)
    off = np.ones((n, n)) - eye
    pairs = [(i, j) for i in range(1, n) for j in range(1, n) if i != j]
    mtz = np.zeros((len(pairs), n * n + n - 1))  # u_i - u_j + (n-1) y[i, j] <= n - 2
    for r, (i, j) in enumerate(pairs):
        mtz[r, n * n + i - 1], mtz[r, n * n + j - 1], mtz[r, i * n + j] = 1.0, -1.0, n - 1.0
    pad = np.zeros((n, n - 1))
    parts = [
        (np.hstack([np.vstack([np.kron(eye[i], eye[i]) for i in range(n)]), pad]), 0.0, 0.0),  # y[i, i] = 0
        (np.hstack([np.kron(eye, ones) * off.reshape(-1), pad]), 1.0, 1.0),  # out-degree 1
        (np.hstack([np.kron(ones, eye) * off.reshape(-1), pad]), 1.0, 1.0),  # in-degree 1
    ]
    if pairs:
        parts.append((mtz, -np.inf, n - 2.0))
    rows = _Rows.stack(
        where, (n, n), "min", parts, integral=True, default_solver="SCIP", aux=((1.0, n - 1.0),) * (n - 1)
    )
    return _build(rows, backend, solver, cpsat=lambda: _circuit(n))


def _circuit(n: int) -> tuple[Any, Any]:
    from .solvers.tsp import circuit_model

    return circuit_model(n)


# --------------------------------------------------------------------------- assignment


def assignment(n: int, m: int | None = None, *, backend: str = "cpsat", solver: str | None = None) -> Problem:
    """Min-cost assignment of ``n`` rows to ``m`` columns (default ``m = n``).

    ``y[i, j] = 1`` when row ``i`` takes column ``j``. The smaller side is fully assigned: row sums
    are 1 when ``n <= m`` (else at most 1), column sums are 1 when ``n >= m`` (else at most 1);
    the equalities are what ``projection="auto"`` uses. pywraplp and CVXPY solve the LP with
    ``y >= 0`` (bipartite matching: its vertices are 0/1). The same problem as
    :class:`~idproj_or.AssignmentLayer`, which is much faster.

    Args:
        n: rows (>= 1).
        m: columns (>= 1), default ``n``.
        backend: ``"cpsat"``, ``"pywraplp"`` or ``"cvxpy"``.
        solver: pywraplp solver name (default ``"GLOP"``) or CVXPY solver name.

    Returns:
        a :class:`Problem` with sense ``"min"`` and cost shape ``(n, m)``.

    Example:
        >>> import torch
        >>> assignment(2).layer()(torch.tensor([[1.0, 5.0], [2.0, 3.0]])).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    where = "assignment"
    n = check_size(n, "n", where=where)
    m = n if m is None else check_size(m, "m", where=where)
    _check_backend(backend, solver, where=where)
    row_eq, col_eq = n <= m, n >= m
    parts = [
        (np.kron(np.eye(n), np.ones(m)), 1.0 if row_eq else -np.inf, 1.0),  # each row assigned once
        (np.kron(np.ones(n), np.eye(m)), 1.0 if col_eq else -np.inf, 1.0),  # each column once
    ]
    rows = _Rows.stack(where, (n, m), "min", parts, integral=False, default_solver="GLOP")
    return _build(rows, backend, solver)


# --------------------------------------------------------------------------- top-k


def top_k(n: int, k: int, *, backend: str = "cpsat", solver: str | None = None) -> Problem:
    """Pick the ``k`` of ``n`` items with the largest costs: ``max sum(c * x)`` s.t. ``sum(x) = k``.

    pywraplp and CVXPY solve the LP with ``0 <= x <= 1`` (its vertices are the k-subsets).
    ``projection="auto"`` uses ``sum(x) = k``, i.e. it is ``"std"``.

    Args:
        n: items (>= 1).
        k: how many to pick, ``0 <= k <= n``.
        backend: ``"cpsat"``, ``"pywraplp"`` or ``"cvxpy"``.
        solver: pywraplp solver name (default ``"GLOP"``) or CVXPY solver name.

    Returns:
        a :class:`Problem` with sense ``"max"`` and cost shape ``(n,)``.

    Example:
        >>> import torch
        >>> top_k(4, 2).layer()(torch.tensor([1.0, 4.0, 2.0, 3.0])).tolist()
        [0.0, 1.0, 0.0, 1.0]
    """
    where = "top_k"
    n = check_size(n, "n", where=where)
    k = check_size(k, "k", where=where, minimum=0)
    if k > n:
        raise ValueError(f"{where}: k={k} must be at most n={n}")
    _check_backend(backend, solver, where=where)
    rows = _Rows.stack(where, (n,), "max", [(np.ones(n), float(k), float(k))], integral=False, default_solver="GLOP")
    return _build(rows, backend, solver)
