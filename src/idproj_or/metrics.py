"""Decision quality: regret of the decisions that predicted costs induce, measured on true costs.

For one instance with true cost ``c``, optimal objective ``z* = <c, y(c)>`` and predicted cost
``c_hat``, the regret is ``<c, y(c_hat)> - z*`` for a minimisation model and ``z* - <c, y(c_hat)>``
for a maximisation model, so it is ``>= 0`` either way. The normalized regret of a set of
instances is ``sum_i regret_i / sum_i |z*_i|`` (PyEPO's ``reduction="normalized"``).

Decisions come from ``layer.solve``: exact, with no projection or noise, batched through the
layer's pool when it has ``workers=``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .data import OptDataset

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
    if reduction not in REDUCTIONS:
        raise ValueError(f"regret: reduction={reduction!r} must be one of {', '.join(map(repr, REDUCTIONS))}")
    r, _ = _regrets(layer, pred_costs, true_costs, optimal, dict(data or {}), "regret")
    # Instances without a decision (on_failure="nan") are NaN here and skipped by the reductions.
    if reduction == "sum":
        return r.nansum()
    if reduction == "mean":
        return r.nanmean()
    return r


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
    denominator = float(best.abs().sum())
    if denominator == 0.0:
        raise ValueError("normalized_regret: every optimal objective is 0; the normalized regret is undefined")
    return float(r.nansum()) / denominator


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
