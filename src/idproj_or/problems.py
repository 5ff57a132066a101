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
                ``generator`` (see :class:`idproj_or.layer.OptLayer`).

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
    d, n = w.shape
    if backend == "cpsat":
        from ortools.sat.python import cp_model

        model = cp_model.CpModel()
        x = _objects([model.new_bool_var(f"x{i}") for i in range(n)], (n,))
        for k in range(d):
            row, bound = integer_row(w[k], float(cap[k]), row=k, where=where, hint=_CPSAT_HINT)
            model.add(cp_model.LinearExpr.weighted_sum(list(x), row.tolist()) <= bound)
        _cpsat_sense(model, x, "max")
        return Problem(where, backend, model, x, "max")
    if backend == "pywraplp":
        lp = _pywraplp(solver, "SCIP", where=where)
        x = _objects([lp.BoolVar(f"x{i}") for i in range(n)], (n,))
        for k in range(d):
            _row(lp, -lp.infinity(), float(cap[k]), list(zip(x, w[k].tolist())))
        _declare_sense(lp, "max")
        return Problem(where, backend, lp, x, "max")
    import cvxpy as cp

    xv = cp.Variable(n, boolean=True, name="x")
    c = cp.Parameter(n, name="c")
    prob = cp.Problem(cp.Maximize(c @ xv), [w @ xv <= cap])
    return Problem(where, backend, prob, xv, "max", parameter=c, solver=solver)


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
    arcs = grid_arcs(h, w)
    a, b = grid_incidence(h, w)
    n_arcs = len(arcs)
    if backend == "cpsat":
        from ortools.sat.python import cp_model

        model = cp_model.CpModel()
        x = _objects([model.new_bool_var(f"x{t}_{u}") for t, u in arcs], (n_arcs,))
        for v in range(h * w):
            touching = np.flatnonzero(a[v])
            expr = cp_model.LinearExpr.weighted_sum([x[e] for e in touching], a[v, touching].astype(int).tolist())
            model.add(expr == int(b[v]))
        _cpsat_sense(model, x, "min")
        return Problem(where, backend, model, x, "min")
    if backend == "pywraplp":
        lp = _pywraplp(solver, "GLOP", where=where)
        x = _objects([lp.NumVar(0.0, 1.0, f"x{t}_{u}") for t, u in arcs], (n_arcs,))
        for v in range(h * w):
            touching = np.flatnonzero(a[v])
            _row(lp, b[v], b[v], [(x[e], a[v, e]) for e in touching])
        _declare_sense(lp, "min")
        return Problem(where, backend, lp, x, "min")
    import cvxpy as cp

    xv = cp.Variable(n_arcs, name="x")
    c = cp.Parameter(n_arcs, name="c")
    prob = cp.Problem(cp.Minimize(c @ xv), [a @ xv == b, xv >= 0, xv <= 1])
    return Problem(where, backend, prob, xv, "min", parameter=c, solver=solver)


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
    if backend == "cpsat":
        from .solvers.tsp import circuit_model

        model, arcs = circuit_model(n)
        x = _objects(arcs, (n, n))
        _cpsat_sense(model, x, "min")
        return Problem(where, backend, model, x, "min")
    pairs = [(i, j) for i in range(1, n) for j in range(1, n) if i != j]
    if backend == "pywraplp":
        lp = _pywraplp(solver, "SCIP", where=where)
        x = _objects([[lp.BoolVar(f"x{i}_{j}") for j in range(n)] for i in range(n)], (n, n))
        u = [None] + [lp.NumVar(1.0, n - 1.0, f"u{i}") for i in range(1, n)]
        for i in range(n):
            _row(lp, 0.0, 0.0, [(x[i, i], 1.0)])
            _row(lp, 1.0, 1.0, [(x[i, j], 1.0) for j in range(n) if j != i])
            _row(lp, 1.0, 1.0, [(x[j, i], 1.0) for j in range(n) if j != i])
        for i, j in pairs:
            _row(lp, -lp.infinity(), n - 2.0, [(u[i], 1.0), (u[j], -1.0), (x[i, j], n - 1.0)])
        _declare_sense(lp, "min")
        return Problem(where, backend, lp, x, "min")
    import cvxpy as cp

    xv = cp.Variable((n, n), boolean=True, name="x")
    uv = cp.Variable(n, name="u")
    c = cp.Parameter((n, n), name="c")
    constraints = [cp.diag(xv) == 0, cp.sum(xv, axis=1) == 1, cp.sum(xv, axis=0) == 1]
    if pairs:
        ii, jj = (np.array(v) for v in zip(*pairs))
        constraints += [
            uv[1:] >= 1,
            uv[1:] <= n - 1,
            uv[ii] - uv[jj] + (n - 1) * cp.hstack([xv[i, j] for i, j in pairs]) <= n - 2,
        ]
    prob = cp.Problem(cp.Minimize(cp.sum(cp.multiply(c, xv))), constraints)
    return Problem(where, backend, prob, xv, "min", parameter=c, solver=solver)


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
    if backend == "cpsat":
        from ortools.sat.python import cp_model

        model = cp_model.CpModel()
        x = _objects([[model.new_bool_var(f"x{i}_{j}") for j in range(m)] for i in range(n)], (n, m))
        for i in range(n):
            (model.add_exactly_one if row_eq else model.add_at_most_one)(list(x[i]))
        for j in range(m):
            (model.add_exactly_one if col_eq else model.add_at_most_one)(list(x[:, j]))
        _cpsat_sense(model, x, "min")
        return Problem(where, backend, model, x, "min")
    if backend == "pywraplp":
        lp = _pywraplp(solver, "GLOP", where=where)
        x = _objects([[lp.NumVar(0.0, 1.0, f"x{i}_{j}") for j in range(m)] for i in range(n)], (n, m))
        for i in range(n):
            _row(lp, 1.0 if row_eq else -lp.infinity(), 1.0, [(v, 1.0) for v in x[i]])
        for j in range(m):
            _row(lp, 1.0 if col_eq else -lp.infinity(), 1.0, [(v, 1.0) for v in x[:, j]])
        _declare_sense(lp, "min")
        return Problem(where, backend, lp, x, "min")
    import cvxpy as cp

    xv = cp.Variable((n, m), name="x")
    c = cp.Parameter((n, m), name="c")
    rows, cols = cp.sum(xv, axis=1), cp.sum(xv, axis=0)
    constraints = [xv >= 0, rows == 1 if row_eq else rows <= 1, cols == 1 if col_eq else cols <= 1]
    prob = cp.Problem(cp.Minimize(cp.sum(cp.multiply(c, xv))), constraints)
    return Problem(where, backend, prob, xv, "min", parameter=c, solver=solver)


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
    if backend == "cpsat":
        from ortools.sat.python import cp_model

        model = cp_model.CpModel()
        x = _objects([model.new_bool_var(f"x{i}") for i in range(n)], (n,))
        model.add(cp_model.LinearExpr.sum(list(x)) == k)
        _cpsat_sense(model, x, "max")
        return Problem(where, backend, model, x, "max")
    if backend == "pywraplp":
        lp = _pywraplp(solver, "GLOP", where=where)
        x = _objects([lp.NumVar(0.0, 1.0, f"x{i}") for i in range(n)], (n,))
        _row(lp, float(k), float(k), [(v, 1.0) for v in x])
        _declare_sense(lp, "max")
        return Problem(where, backend, lp, x, "max")
    import cvxpy as cp

    xv = cp.Variable(n, name="x")
    c = cp.Parameter(n, name="c")
    prob = cp.Problem(cp.Maximize(c @ xv), [cp.sum(xv) == k, xv >= 0, xv <= 1])
    return Problem(where, backend, prob, xv, "max", parameter=c, solver=solver)
