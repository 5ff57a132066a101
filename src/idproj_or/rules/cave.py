"""Cone-aligned vector estimation (CaVE; Tang & Khalil, CPAIOR 2024), as PyEPO's ``coneAlignedCosine``.

At an optimal decision ``y*`` of ``min <c, y>`` over a model stated as rows ``a_i y <= b_i``, the
negated true cost ``-c`` lies in the cone spanned by the normals ``a_i`` of the rows that bind at
``y*`` (the optimality condition of the LP). CaVE needs no solve in training: it pulls the
prediction towards that cone. For a prediction ``c_hat`` (``s c_hat`` with ``s = -1`` for a
minimisation, ``+1`` for a maximisation, PyEPO's sign):

    loss = 1 - cos(s c_hat, proj),    proj = argmin_{p in cone(a_i : i binds at y*)} ||s c_hat - p||

``proj`` is held constant (no gradient through it). As PyEPO, the projection is a QP in the cone's
coefficients, ``min ||lam A - s c_hat||^2`` over ``lam >= 0``, solved per instance by Clarabel
with ``max_iter=3`` iterations: the CaVE+ preset of the paper, which stops the interior-point
method inside the cone on purpose. With ``solve_ratio < 1`` (the CaVE Hybrid preset) each call
(one batch, one coin, as PyEPO) takes the QP with probability ``solve_ratio`` and otherwise the
heuristic ``proj = (1 - inner_ratio) s c_hat / ||s c_hat|| + inner_ratio * mean_i(a_i / ||a_i||)``.
An instance without a binding row (an empty cone) has ``proj = s c_hat`` on the QP branch (loss 0).

**The binding normals** come from the model's own linear description over the cost variables
(:meth:`~idproj_or.solvers.base.ModelSpec.linear_rows`), not from a Gurobi model: rows in the
canonical ``<=`` orientation, as PyEPO's ``optDatasetConstrs``: a row ``a y <= u`` tight at the
true decision gives ``a``, a row ``a y >= l`` gives ``-a``, an equality gives ``a`` and ``-a``; a
cost entry at its lower bound gives ``-e_k``, at its upper bound ``+e_k`` (for binary variables,
PyEPO's ``-e_k`` at 0 and ``+e_k`` at 1). Tight means within ``1e-5`` (PyEPO's tolerance) times
``max(1, |bound|)``. They are read by evaluating the rows at the true decision (numpy, one
matrix product per batch, no solve): exact wherever the rows involve the cost variables only,
and cheaper than solving the true costs again with duals. :meth:`ConeAligned.normals`
precomputes them for a dataset so that training reads them as labels.

Which models: the declared LP/MIP layers (pywraplp, MathOpt, model_builder), CVXPY problems with
linear constraints, CP-SAT models whose constraints are linear (``linear``, ``exactly_one``,
``at_most_one``, ``bool_or``, without enforcement literals), and the knapsack, shortest path,
assignment and top-k layers. A constraint that is not linear (a CP-SAT ``circuit``,
``no_overlap``, an indicator constraint), or a linear one that also involves variables other
than the cost variables (unless fixed), is a ValueError naming it: which rows bind is read from
the cost entries of the true decision. PyEPO restricts CaVE to binary linear programs (it
refuses a non-binary true decision); here any decision is accepted and the variables' own bounds
are used. For a binary or integer program the cone is that of the LP relaxation's rows binding
at the true decision: it contains ``s c`` when the decision is also optimal for the relaxation
(e.g. shortest path, assignment), otherwise (e.g. a knapsack, as in PyEPO's experiments) it is a
heuristic target.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import clarabel
import numpy as np
import torch
from scipy import sparse

from ..handle import real_scalar
from ..options import CostOptions, RuleOptions, with_defaults
from ..solvers.base import LinearRows
from .base import Rule, as_handle, check_reduction, positive_int, reduce

if TYPE_CHECKING:
    from typing_extensions import Unpack

# PyEPO's tolerance for a binding row (relative here: times max(1, |bound|)).
TIGHT = 1e-5
# Rows of a smaller L1 norm are no normal (PyEPO drops them before the projection).
ZERO_ROW = 1e-7

DEFAULTS: CostOptions = {"projection": "none", "noise": 0.0, "generator": None}


class ConeAligned(Rule):
    """CaVE over any idproj_or layer whose model is linear: ``loss = cave(pred_cost, true_sol)``.

    Costs and decisions of shape ``(B, *layer.shape)``; the loss is reduced by ``reduction``
    (``"mean"``, ``"sum"`` or ``"none"`` for ``(B,)``). No solver call: the layer supplies the
    model's rows, the true decisions which of them bind. For training, compute the normals once
    (``normals = cave.normals(true_sols)``, a ``(N, K, n)`` tensor, zero-padded as PyEPO's
    ``collate_tight_constraints``) and pass a batch of them: ``cave(pred_cost, normals=batch)``.
    The rule's ``last_info`` stays None (nothing is solved).

    Args:
        layer: any idproj_or layer with a linear description (see the module docstring), or its
            ``.handle``.
        max_iter: Clarabel's iterations per projection (default 3, the paper's CaVE+ preset; more
            converges to the exact projection, a different loss).
        solve_ratio: probability, per call, of the QP projection; otherwise the heuristic of the
            CaVE Hybrid preset (default 1: always the QP). The coin is drawn from ``generator``
            (or the global torch RNG) only when ``0 < solve_ratio < 1``; PyEPO draws it from its
            own unseeded ``numpy.random.RandomState`` at every call.
        inner_ratio: weight of the mean binding normal in the heuristic (default 0.2).
        reduction: as PyEPO, default ``"mean"``.
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator``
            (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> cave = ipo.ConeAligned(layer)
        >>> normals = cave.normals(torch.tensor([[1.0, 1.0, 0.0]]))  # capacity, y2 = 0, y0 = y1 = 1
        >>> normals[0].tolist()
        [[3.0, 4.0, 5.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
        >>> pred = torch.tensor([[4.0, 4.0, 4.0]], requires_grad=True)  # 1 (3, 4, 5) + e0 - e2
        >>> loss = cave(pred, normals=normals); round(loss.item(), 3)
        0.0
        >>> pred = torch.tensor([[1.0, -1.0, 0.0]])  # the cone's nearest point is e0, at 45 degrees
        >>> exact = ipo.ConeAligned(layer, max_iter=100)  # converged: 1 - cos(45 degrees)
        >>> round(exact(pred, normals=normals).item(), 3)
        0.293
        >>> round(cave(pred, normals=normals).item(), 2)  # CaVE+ (3 iterations): a point inside the cone
        0.34
    """

    def __init__(
        self,
        layer: Any,
        *,
        max_iter: int = 3,
        solve_ratio: float = 1.0,
        inner_ratio: float = 0.2,
        reduction: str = "mean",
        **options: Unpack[CostOptions],
    ) -> None:
        name = type(self).__name__
        handle = as_handle(layer, where=name)
        # the rule's own solve_ratio picks the projection, not the solution cache (CaVE never solves)
        opts: RuleOptions = with_defaults(options, where=name, defaults=DEFAULTS)
        opts["solve_ratio"] = 1.0
        super().__init__(handle, opts)
        self.max_iter = positive_int(max_iter, where=name, name="max_iter")
        self.solve_ratio = _probability(solve_ratio, where=name, name="solve_ratio")
        self.inner_ratio = _probability(inner_ratio, where=name, name="inner_ratio")
        self.reduction = check_reduction(reduction, where=name)
        self._rows: tuple[Any, LinearRows] | None = None
        self.linear_rows()  # a model whose constraints CaVE cannot read fails here, not in training

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, max_iter={self.max_iter}, solve_ratio={self.solve_ratio}, "
            f"inner_ratio={self.inner_ratio}"
        )

    def linear_rows(self, data: dict[str, np.ndarray] | None = None) -> LinearRows:
        """The model's linear rows over the cost entries, with one instance's ``data`` (the
        current version of the model; without data, read once per version)."""
        handle = self.handle
        handle.sync()
        spec = handle.spec
        if not data and self._rows is not None and self._rows[0] is spec:
            return self._rows[1]
        try:
            rows = spec.linear_rows(data or {})
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__}: {handle.name}: {exc}") from None
        if not data:
            self._rows = (spec, rows)
        return rows

    def normals(self, true_sol: Any, **data: Any) -> torch.Tensor:
        """The binding normals at each true decision, in the canonical ``<=`` orientation (PyEPO's
        order: ``<=`` rows, negated ``>=`` rows, equalities, their negations, then ``-e_k`` at a
        lower bound, ``+e_k`` at an upper bound), zero-padded to a ``(B, K, n)`` float64 CPU
        tensor (``n``: the flattened cost size; ``K``: the most rows of any instance).

        Args:
            true_sol: ``(B, *layer.shape)`` (or ``layer.shape``) true decisions, e.g.
                ``layer.solve(true_costs)`` or a dataset's solutions.
            **data: the instances' data, for a layer declared with per-instance data (bounds,
                capacities): the rows of each instance are its own.
        """
        name = type(self).__name__
        y = self._decisions(true_sol)
        found = {k: v.numpy() for k, v in self.handle.check_data(data, len(y)).items() if k != "ids"}
        if found:
            cones = [
                _tight(self.linear_rows({k: v[i] for k, v in found.items()}), y[i : i + 1], i, where=name)[0]
                for i in range(len(y))
            ]
        else:
            cones = _tight(self.linear_rows(), y, 0, where=name)
        size = max((len(c) for c in cones), default=0)
        out = torch.zeros(len(y), size, y.shape[1], dtype=torch.float64)
        for i, c in enumerate(cones):
            out[i, : len(c)] = torch.from_numpy(c)
        return out

    def _decisions(self, true_sol: Any) -> np.ndarray:
        """``true_sol`` as ``(B, n)`` float64 numpy, checked."""
        name = type(self).__name__
        handle = self.handle
        if handle.groups is not None:
            t = handle.check_costs({k: torch.as_tensor(v, dtype=torch.float64) for k, v in true_sol.items()})[0]
        else:
            t = torch.as_tensor(true_sol)
            if tuple(t.shape) == self.shape:
                t = t.unsqueeze(0)
            elif tuple(t.shape[1:]) != self.shape or len(t) == 0:
                dims = ", ".join(map(str, self.shape))
                raise ValueError(f"{name}: true_sol must have shape (B, {dims}) or ({dims}), got {tuple(t.shape)}")
        y = t.detach().to(device="cpu", dtype=torch.float64).reshape(len(t), -1).numpy()
        bad = ~np.isfinite(y)
        if bad.any():
            i, j = np.argwhere(bad)[0].tolist()
            raise ValueError(f"{name}: true_sol[{i}] has a non-finite entry {y[i, j]} at flat index {j}")
        return y

    def forward(self, pred_cost: Any, true_sol: Any = None, *, normals: Any = None, **data: Any) -> torch.Tensor:
        """The CaVE loss of the predictions ``pred_cost`` against the true decisions ``true_sol``
        (their normals computed here, with the instances' ``data``) or their precomputed
        ``normals`` (``(B, K, n)``, from :meth:`normals`); exactly one of the two."""
        name = type(self).__name__
        w, _, dtype = self.flat(pred_cost)
        if (true_sol is None) == (normals is None):
            raise ValueError(
                f"{name}: pass the true decisions (cave(pred, true_sol)) or their binding normals "
                "(cave(pred, normals=cave.normals(true_sol))), exactly one of the two"
            )
        if normals is None:
            cones = self.normals(true_sol, **data)
        elif data:
            raise ValueError(
                f"{name}: data ({', '.join(data)}) goes with true_sol, to read each instance's rows; "
                "precomputed normals already hold them"
            )
        else:
            cones = self._check_normals(normals)
        if len(cones) != len(w):
            raise ValueError(f"{name}: {len(w)} predictions but {len(cones)} instances of true decisions or normals")
        z, _ = self.prepare(w)
        signed = -self.sign * z  # PyEPO: -c_hat for a minimisation, +c_hat for a maximisation
        with torch.no_grad():
            if self._projects():
                proj = project(signed.detach(), cones, self.max_iter)
            else:
                unit = signed / signed.norm(dim=1, keepdim=True).clamp(min=1e-8)
                mean = mean_normal(cones).to(device=signed.device, dtype=signed.dtype)
                proj = (1 - self.inner_ratio) * unit + self.inner_ratio * mean
        loss = 1.0 - torch.nn.functional.cosine_similarity(signed, proj, dim=1)
        return reduce(loss.to(dtype), self.reduction)

    def _check_normals(self, normals: Any) -> torch.Tensor:
        name = type(self).__name__
        t = torch.as_tensor(normals)
        if t.ndim != 3 or t.shape[2] != self.size or not t.is_floating_point():
            raise ValueError(
                f"{name}: normals must be a float (B, K, {self.size}) tensor (from cave.normals), got "
                f"{tuple(t.shape)} of dtype {t.dtype}"
            )
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}: normals has a non-finite entry")
        return t.detach()

    def _projects(self) -> bool:
        """This call's coin: the QP projection (with probability ``solve_ratio``) or the heuristic."""
        if self.solve_ratio >= 1.0 or self.solve_ratio <= 0.0:
            return self.solve_ratio >= 1.0
        gen = self.generator
        device = gen.device if gen is not None else None
        return bool(torch.rand((), generator=gen, device=device, dtype=torch.float64) < self.solve_ratio)


def _probability(value: Any, *, where: str, name: str) -> float:
    x = real_scalar(value, where=where, name=name)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{where}: {name}={value!r} must be in [0, 1]")
    return x


def _tight(rows: LinearRows, y: np.ndarray, first: int, *, where: str) -> list[np.ndarray]:
    """Per row of the decisions ``y`` (instance ``first + i``): its binding normals, in PyEPO's
    order; a ValueError for a decision outside the rows or bounds."""
    a, lower, upper = rows.a, rows.lower, rows.upper
    activity = y @ a.T
    at_lower, at_upper = _sides(activity, lower, upper, where=where, first=first, what=lambda k: _row_name(rows, k))
    var_low, var_high = _sides(y, rows.var_lower, rows.var_upper, where=where, first=first, what=_entry_name)
    equal = np.isfinite(lower) & (lower == upper)
    normal = np.abs(a).sum(axis=1) > ZERO_ROW
    eye = np.eye(y.shape[1])
    out = []
    for i in range(len(y)):
        le = at_upper[i] & ~equal & normal
        ge = at_lower[i] & ~equal & normal
        eq = equal & normal
        parts = [a[le], -a[ge], a[eq], -a[eq], -eye[var_low[i]], eye[var_high[i]]]
        out.append(np.concatenate(parts).reshape(-1, y.shape[1]) + 0.0)  # + 0.0: no -0.0
    return out


def _sides(
    values: np.ndarray, lower: np.ndarray, upper: np.ndarray, *, where: str, first: int, what: Callable[[int], str]
) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``values`` (``(B, m)``) sit at their finite lower and upper bounds (within
    ``TIGHT`` times ``max(1, |bound|)``); a ValueError for one beyond a bound by more."""
    slack_lo = TIGHT * np.maximum(1.0, np.abs(np.where(np.isfinite(lower), lower, 0.0)))
    slack_hi = TIGHT * np.maximum(1.0, np.abs(np.where(np.isfinite(upper), upper, 0.0)))
    over = np.maximum(lower - slack_lo - values, values - upper - slack_hi)
    if (over > 0).any():
        i, k = np.argwhere(over > 0)[0].tolist()
        raise ValueError(
            f"{where}: true_sol[{first + i}] is not a feasible decision of the model: {what(k)} is "
            f"{values[i, k]:g}, outside [{lower[k]:g}, {upper[k]:g}]"
        )
    at_lower = np.isfinite(lower) & (np.abs(values - lower) <= slack_lo)
    at_upper = np.isfinite(upper) & (np.abs(values - upper) <= slack_hi)
    return at_lower, at_upper


def _row_name(rows: LinearRows, k: int) -> str:
    origin = int(rows.origin[k])
    if origin < 0:
        return "the equality of a variable repeated in the costs"
    return f"the activity of the model's constraint {origin}"


def _entry_name(k: int) -> str:
    return f"cost entry {k} (flat index)"


@functools.cache
def _settings(max_iter: int) -> Any:
    """PyEPO's Clarabel settings: ``max_iter`` iterations, one thread, no presolve or
    equilibration, silent."""
    settings = clarabel.DefaultSettings()
    settings.max_iter = int(max_iter)
    settings.verbose = False
    settings.max_threads = 1
    settings.presolve_enable = False
    settings.equilibrate_enable = False
    return settings


def project_one(point: np.ndarray, normals: np.ndarray, max_iter: int) -> np.ndarray:
    """``point`` projected onto the cone ``{lam @ normals : lam >= 0}`` by Clarabel (``max_iter``
    iterations of ``min lam (N N^T) lam - 2 lam N point``, PyEPO's QP); rows of ``normals`` with
    an L1 norm of at most ``ZERO_ROW`` (padding) are left out, and without any row the
    projection is ``point`` itself."""
    normals = normals[np.abs(normals).sum(axis=1) > ZERO_ROW]
    if not len(normals):
        return point
    m = len(normals)
    p = sparse.triu(sparse.csc_matrix(2.0 * (normals @ normals.T))).tocsc()
    q = -2.0 * (normals @ point)
    a = (-sparse.eye(m, format="csc")).tocsc()
    solver = clarabel.DefaultSolver(p, q, a, np.zeros(m), [clarabel.NonnegativeConeT(m)], _settings(max_iter))
    lam = np.asarray(solver.solve().x)
    return lam @ normals


def project(points: torch.Tensor, normals: torch.Tensor, max_iter: int) -> torch.Tensor:
    """:func:`project_one` for each row of the ``(B, n)`` ``points`` and its ``(K, n)`` normals,
    in float64; the result in ``points``' dtype and device."""
    x = points.detach().to(device="cpu", dtype=torch.float64).numpy()
    cones = normals.detach().to(device="cpu", dtype=torch.float64).numpy()
    out = np.stack([project_one(x[i], cones[i], max_iter) for i in range(len(x))])
    return torch.from_numpy(out).to(device=points.device, dtype=points.dtype)


def mean_normal(normals: torch.Tensor) -> torch.Tensor:
    """Per instance, the mean of its unit binding normals (padding rows, of norm at most 1e-7,
    left out; 0 without any): the heuristic branch's inner direction, as PyEPO's ``_average_ctrs``."""
    norms = normals.norm(dim=2, keepdim=True)
    valid = (norms > ZERO_ROW).to(normals.dtype)
    unit = normals / norms.clamp(min=1e-8) * valid
    return unit.sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)
