"""Decision quality: regret of the decisions that predicted costs induce, measured on true costs.

For one instance with true cost ``c``, optimal objective ``z* = <c, y(c)>`` and predicted cost
``c_hat``, the regret is ``<c, y(c_hat)> - z*`` for a minimisation model and ``z* - <c, y(c_hat)>``
for a maximisation model, so it is ``>= 0`` either way. The normalized regret of a set of
instances is ``sum_i regret_i / sum_i |z*_i|`` (PyEPO's ``reduction="normalized"``).

Decisions come from ``layer.solve``: exact, with no projection or noise, batched through the
layer's pool when it has ``workers=``.

:func:`unambiguous_regret` is PyEPO's ``unambRegret``: when ``c_hat`` has several optima, the
regret of the worst of them for ``c`` rather than of the one the solver returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .data import OptDataset
from .errors import SolverError

if TYPE_CHECKING:
    from .rules.identity import OptLayer

REDUCTIONS = ("none", "sum", "mean")

Costs = torch.Tensor | np.ndarray


def _as_batch(layer: OptLayer, costs: Costs, name: str, where: str) -> torch.Tensor:
    t = torch.as_tensor(costs)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if tuple(t.shape[1:]) != layer.shape:
        raise ValueError(
            f"{where}: {name} must have shape (B, {', '.join(map(str, layer.shape))}) for this layer, "
            f"got {tuple(t.shape)}"
        )
    return t


def _optimal(
    layer: OptLayer, true: torch.Tensor, optimal: Costs | None, where: str, data: Mapping[str, Any]
) -> torch.Tensor:
    """``(B,)`` float64 optimal objectives on the CPU: as given, or solved for ``true``."""
    if optimal is None:
        flat = true.to("cpu").reshape(len(true), -1)
        return (flat * layer.solve(true.to("cpu"), **data).reshape(len(true), -1)).sum(dim=1)
    best = torch.as_tensor(optimal, dtype=torch.float64).to("cpu").reshape(-1)
    if len(best) != len(true):
        raise ValueError(f"{where}: optimal has {len(best)} entries for {len(true)} instances")
    return best


def _regrets(
    layer: OptLayer, pred_costs: Costs, true_costs: Costs, optimal: Costs | None, data: dict[str, Any], where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B,)`` float64 regrets (NaN for an instance without a decision) and the optimal
    objectives they are measured from."""
    pred = _as_batch(layer, pred_costs, "pred_costs", where)
    true = _as_batch(layer, true_costs, "true_costs", where).to(torch.float64)
    if len(pred) != len(true):
        raise ValueError(f"{where}: {len(pred)} predicted and {len(true)} true cost vectors; they must match")
    decisions = layer.solve(pred.detach().to("cpu"), **data).to(torch.float64)
    achieved = (true.to("cpu").reshape(len(true), -1) * decisions.reshape(len(true), -1)).sum(dim=1)
    best = _optimal(layer, true, optimal, where, data)
    return (best - achieved if layer.sense == "max" else achieved - best), best


def regret(
    layer: OptLayer,
    pred_costs: Costs,
    true_costs: Costs,
    *,
    optimal: Costs | None = None,
    reduction: str = "none",
    data: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Regret of ``layer``'s decisions for ``pred_costs``, measured on ``true_costs``.

    Args:
        layer: the model the decisions are taken in; its ``sense`` sets the sign.
        pred_costs: ``(B, *layer.shape)`` predicted costs.
        true_costs: ``(B, *layer.shape)`` true costs.
        optimal: ``(B,)`` optimal objectives for the true costs, when known (e.g.
            ``OptDataset.objectives``); otherwise solved here.
        reduction: ``"none"`` (per instance, shape ``(B,)``), ``"sum"`` or ``"mean"``.
        data: the instances' per-instance data (name -> ``(B, ...)``), for a layer declared
            with data: both decisions are taken with it.

    Returns:
        float64 tensor of regrets (``>= 0`` up to solver tolerance).

    Example:
        >>> import idproj_or as ipo
        >>> from ortools.sat.python import cp_model
        >>> m = cp_model.CpModel()
        >>> x = [m.new_bool_var(f"x{i}") for i in range(3)]
        >>> _ = m.add(sum(x) == 1)
        >>> layer = ipo.CpSatLayer(m, x, sense="max")
        >>> regret(layer, torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[5.0, 2.0, 1.0]])).tolist()
        [3.0]
    """
    _check_reduction(reduction, "regret")
    r, _ = _regrets(layer, pred_costs, true_costs, optimal, dict(data or {}), "regret")
    return _reduce(r, reduction)


def _check_reduction(reduction: str, where: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{where}: reduction={reduction!r} must be one of {', '.join(map(repr, REDUCTIONS))}")


def _reduce(r: torch.Tensor, reduction: str) -> torch.Tensor:
    # Instances without a decision (on_failure="nan") are NaN here and skipped by the reductions.
    if reduction == "sum":
        return r.nansum()
    if reduction == "mean":
        return r.nanmean()
    return r


def _normalized(r: torch.Tensor, best: torch.Tensor, where: str) -> float:
    denominator = float(best.abs().sum())
    if denominator == 0.0:
        raise ValueError(f"{where}: every optimal objective is 0; the normalized regret is undefined")
    return float(r.nansum()) / denominator


def normalized_regret(
    layer: OptLayer,
    pred_costs: Costs,
    true_costs: Costs,
    *,
    optimal: Costs | None = None,
    data: Mapping[str, Any] | None = None,
) -> float:
    """``sum_i regret_i / sum_i |z*_i|`` over a batch (see :func:`regret` for the arguments).

    Raises:
        ValueError: when every optimal objective is 0 (the ratio is undefined).

    Example:
        >>> import idproj_or as ipo
        >>> knapsack = ipo.KnapsackLayer([[3, 4, 5]], [7])  # best: items 0 and 1 (value 4)
        >>> true = torch.tensor([[2.0, 2.0, 3.0], [2.0, 2.0, 3.0]])
        >>> normalized_regret(knapsack, torch.tensor([[0.0, 0.0, 1.0], [2.0, 2.0, 3.0]]), true)
        0.125
    """
    r, best = _regrets(layer, pred_costs, true_costs, optimal, dict(data or {}), "normalized_regret")
    return _normalized(r, best, "normalized_regret")


def unambiguous_regret(
    layer: OptLayer,
    pred_costs: Costs,
    true_costs: Costs,
    *,
    optimal: Costs | None = None,
    reduction: str = "none",
    data: Mapping[str, Any] | None = None,
    tolerance: float = 1e-5,
    max_iter: int = 10,
) -> torch.Tensor:
    """Unambiguous regret (PyEPO's ``unambRegret``): the regret of the *worst* optimum of the
    predicted costs, measured on the true costs.

    As PyEPO's ``calUnambRegret``: the predicted cost is rounded, ``c_r = round(c_hat / tolerance)``,
    and solved (``y_r``). The decisions tied with ``y_r`` are those with ``<c_r, y> <= ceil(<c_r,
    y_r>) + 0.01`` (maximisation: ``>= floor(<c_r, y_r>) - 0.01``); PyEPO adds that constraint and
    solves for the worst true objective. A layer takes no extra constraint, so the second solve
    here is ``c_r - delta * c`` (``delta = 1 / (1 + 4 s b sum|c|)``, ``b = max(1, max|y_r|)``,
    ``s = 1``): with integral decisions the values of ``<c_r, y>`` are integers, so no decision
    outside the tie set can win. A tied answer of that solve is the worst tie for ``c`` whatever
    ``delta > 0`` is; so the first try uses ``s = min(1, 250 / max|c_r|)``, a ``delta`` large
    enough to stand out of the solver's tolerance next to a large ``c_r`` (with the safe ``delta``
    a solver may return a better tie: ``delta c`` is then below its relative tolerance). Each
    answer is checked to be tied; if not, ``s`` grows by 1024. If the
    second solve fails, the instance is retried with ``tolerance * 10`` (PyEPO's retry). Each retry
    counts against ``max_iter``. Both solves are batches through ``layer.solve``.

    A solver's own tolerances still bound this: GLOP on rounded costs of about ``1e8`` (predictions
    of ``1e3`` at the default tolerance) returned a better tie for 5 of 200 random 3x3-grid LPs
    (shortcuts off); a coarser ``tolerance`` keeps ``c_r`` small.

    For an LP whose vertices are not integral, PyEPO's tie set also holds points up to 1.01 units
    of ``<c_r, y>`` above the optimum and its worst case may exceed this one's (the worst optimal
    vertex of ``c_r``) by that share of the true cost's spread.

    Args:
        layer: the model the decisions are taken in; its ``sense`` sets the sign.
        pred_costs: ``(B, *layer.shape)`` predicted costs.
        true_costs: ``(B, *layer.shape)`` true costs.
        optimal: ``(B,)`` optimal objectives for the true costs, when known; otherwise solved here.
        reduction: ``"none"`` (per instance, shape ``(B,)``), ``"sum"`` or ``"mean"``.
        data: the instances' per-instance data (name -> ``(B, ...)``); every solve takes it.
        tolerance: the rounding step of the predicted costs (ties are ties after rounding).
        max_iter: attempts per instance (PyEPO's: its first call and its retries).

    Returns:
        float64 tensor of regrets, ``>=`` :func:`regret`'s; NaN for an instance without a
        decision (``on_failure="nan"``).

    Raises:
        SolverError: with ``on_failure="raise"``, when the rounded predicted cost has no decision,
            or an instance finds no tied worst case in ``max_iter`` attempts (PyEPO: a
            ``RuntimeError``).

    Example:
        >>> import idproj_or as ipo
        >>> from ortools.sat.python import cp_model
        >>> m = cp_model.CpModel()
        >>> x = [m.new_bool_var(f"x{i}") for i in range(3)]
        >>> _ = m.add(sum(x) == 1)
        >>> layer = ipo.CpSatLayer(m, x, sense="min")
        >>> # items 0 and 1 tie for the prediction; item 1 is the worse for the truth (3 vs 0)
        >>> unambiguous_regret(layer, torch.tensor([[1.0, 1.0, 5.0]]), torch.tensor([[0.0, 3.0, 1.0]])).tolist()
        [3.0]
    """
    _check_reduction(reduction, "unambiguous_regret")
    r, _ = _unambiguous_regrets(
        layer, pred_costs, true_costs, optimal, dict(data or {}), tolerance, max_iter, "unambiguous_regret"
    )
    return _reduce(r, reduction)


def normalized_unambiguous_regret(
    layer: OptLayer,
    pred_costs: Costs,
    true_costs: Costs,
    *,
    optimal: Costs | None = None,
    data: Mapping[str, Any] | None = None,
    tolerance: float = 1e-5,
    max_iter: int = 10,
) -> float:
    """``sum_i uregret_i / sum_i |z*_i|`` over a batch: PyEPO's ``unambRegret`` (see
    :func:`unambiguous_regret` for the arguments).

    Raises:
        ValueError: when every optimal objective is 0 (PyEPO adds ``1e-7`` to the denominator).

    Example:
        >>> import idproj_or as ipo
        >>> layer = ipo.TopKLayer(3, 1)  # picks the largest entry (maximisation)
        >>> normalized_unambiguous_regret(layer, torch.tensor([[2.0, 2.0, 1.0]]), torch.tensor([[4.0, 1.0, 2.0]]))
        0.75
    """
    r, best = _unambiguous_regrets(
        layer, pred_costs, true_costs, optimal, dict(data or {}), tolerance, max_iter, "normalized_unambiguous_regret"
    )
    return _normalized(r, best, "normalized_unambiguous_regret")


# The worst-tie solve first tries delta * b * sum|c| ~ max|c_r| / (4 BOLD), then the safe delta.
BOLD = 250.0


def _unambiguous_regrets(
    layer: OptLayer,
    pred_costs: Costs,
    true_costs: Costs,
    optimal: Costs | None,
    data: dict[str, Any],
    tolerance: float,
    max_iter: int,
    where: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B,)`` float64 unambiguous regrets (NaN without a decision) and the optimal objectives."""
    if not (
        isinstance(tolerance, Real)
        and not isinstance(tolerance, bool)
        and math.isfinite(float(tolerance))
        and float(tolerance) > 0
    ):
        raise ValueError(f"{where}: tolerance={tolerance!r} must be a finite positive number")
    if not isinstance(max_iter, (int, np.integer)) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"{where}: max_iter={max_iter!r} must be a positive int")
    pred = _as_batch(layer, pred_costs, "pred_costs", where).detach().to("cpu", torch.float64)
    true = _as_batch(layer, true_costs, "true_costs", where).detach().to("cpu", torch.float64)
    if len(pred) != len(true):
        raise ValueError(f"{where}: {len(pred)} predicted and {len(true)} true cost vectors; they must match")
    best = _optimal(layer, true, optimal, where, data)
    rows = layer.handle.check_data(data, len(true))
    p, c = pred.reshape(len(pred), -1).numpy(), true.reshape(len(true), -1).numpy()
    maximise = layer.sense == "max"
    worst = np.full(len(c), np.nan)  # <c, y> of the worst tie
    tol = np.full(len(c), float(tolerance))
    spread = np.ones(len(c))  # s: how much smaller than first guessed delta must be
    left = np.full(len(c), int(max_iter))
    todo = np.arange(len(c))
    while len(todo):
        rounded = np.around(p[todo] / tol[todo, None])
        first, _ = _solve_rows(layer, rounded, rows, todo, where, keep_going=False)
        solved = ~np.isnan(first).any(axis=1)  # on_failure="nan": an instance without a decision is NaN
        todo, rounded, first = todo[solved], rounded[solved], first[solved]
        if not len(todo):
            break
        level = np.einsum("ij,ij->i", rounded, first)
        # PyEPO's loose-side rounding of the tied level, and its 0.01 margin
        level = np.floor(level) - 1e-2 if maximise else np.ceil(level) + 1e-2
        size = np.maximum(1.0, np.abs(first).max(axis=1, initial=0.0))
        # First try a delta far above the safe one, so that delta * c stands out of the solver's
        # tolerance next to a large c_r: a tied answer is the worst tie for any delta > 0.
        bold = np.minimum(1.0, BOLD / np.maximum(1.0, np.abs(rounded).max(axis=1, initial=0.0)))
        delta = 1.0 / (1.0 + 4.0 * spread[todo] * bold * size * np.abs(c[todo]).sum(axis=1))
        # one solve for max <c, y> (min: worst) or min <c, y> (max) among the optima of `rounded`
        second, status = _solve_rows(layer, rounded - delta[:, None] * c[todo], rows, todo, where, keep_going=True)
        ok = ~np.isnan(second).any(axis=1)
        achieved = np.einsum("ij,ij->i", rounded, np.where(ok[:, None], second, 0.0))
        tied = ok & (achieved >= level if maximise else achieved <= level)
        worst[todo[tied]] = np.einsum("ij,ij->i", c[todo[tied]], second[tied])
        used = tol.copy()
        tol[todo[~ok]] *= 10.0  # PyEPO's retry after a failed solve: a coarser rounding
        spread[todo[ok & ~tied]] *= 1024.0  # a decision outside the tie set won: a smaller delta
        retry = todo[~tied]
        left[retry] -= 1
        out = retry[left[retry] == 0]
        if len(out) and layer.on_failure == "raise":
            i = int(out[0])
            j = int(np.flatnonzero(todo == i)[0])
            why = f"its second solve has no decision ({status[j]})" if not ok[j] else "no tied decision was found"
            raise SolverError(
                f"{where}: instance {i}: {why} after {max_iter} attempts (last tolerance {used[i]:g})",
                index=i,
                status=status[j],
            )
        todo = retry[left[retry] > 0]
    r = worst - best.numpy() if not maximise else best.numpy() - worst
    return torch.from_numpy(r), best


def _solve_rows(
    layer: OptLayer,
    costs: np.ndarray,
    rows: Mapping[str, torch.Tensor],
    index: np.ndarray,
    where: str,
    *,
    keep_going: bool,
) -> tuple[np.ndarray, list[str]]:
    """Decisions (NaN rows without) and common statuses of the instances ``index`` for ``costs``,
    in one ``layer.solve``. With ``on_failure="raise"`` a failure raises :class:`SolverError` naming
    the instance (its index in the caller's batch), or with ``keep_going`` gives its NaN row: the
    others are solved again without it (each result depends on its own instance only)."""
    out = np.full(costs.shape, np.nan)
    status = [""] * len(index)
    todo = np.arange(len(index))
    while len(todo):
        batch = torch.from_numpy(costs[todo]).reshape(len(todo), *layer.shape)
        at = torch.from_numpy(index[todo])
        given: dict[str, Any] = {name: values[at] for name, values in rows.items()}
        try:
            y = layer.solve(batch, **given)
        except SolverError as error:
            i = int(todo[error.index])
            if not keep_going:
                raise SolverError(
                    f"{where}: instance {int(index[i])} has no decision for its rounded predicted cost "
                    f"(status {error.status})",
                    index=int(index[i]),
                    status=error.status,
                    solver_status=error.solver_status,
                ) from error
            status[i] = error.status
            todo = np.delete(todo, error.index)
            continue
        out[todo] = y.reshape(len(todo), -1).to(torch.float64).numpy()
        info = layer.last_info
        for row, word in zip(todo, info.status if info is not None else ()):
            status[row] = word
        break
    return out, status


@torch.no_grad()
def evaluate(
    predictor: torch.nn.Module,
    layer: OptLayer,
    dataset: OptDataset,
    *,
    batch_size: int = 1000,
) -> float:
    """Normalized regret of ``predictor``'s costs on ``dataset`` (features -> costs -> decisions).

    The predictor runs in ``eval()`` mode without gradients; its previous mode is restored.
    ``predictor(features)`` must return ``(B, *layer.shape)`` costs (or ``(B, prod(shape))``).
    The decisions are taken with the data set's per-instance ``data``.

    Example:
        >>> import idproj_or as ipo
        >>> from ortools.sat.python import cp_model
        >>> m = cp_model.CpModel()
        >>> x = [m.new_bool_var(f"x{i}") for i in range(3)]
        >>> _ = m.add(sum(x) <= 2)
        >>> layer = ipo.CpSatLayer(m, x, sense="max")
        >>> ds = ipo.data.solve_dataset(layer, torch.eye(3), torch.eye(3) + 1.0, progress=False)
        >>> evaluate(torch.nn.Linear(3, 3), layer, ds) >= 0.0
        True
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"evaluate: batch_size={batch_size!r} must be a positive int")
    was_training = predictor.training
    predictor.eval()
    try:
        preds = [predictor(dataset.features[i : i + batch_size]) for i in range(0, len(dataset), batch_size)]
    finally:
        predictor.train(was_training)
    pred = torch.cat(preds).reshape(len(dataset), *layer.shape)
    return normalized_regret(layer, pred, dataset.costs, optimal=dataset.objectives, data=dataset.data)
