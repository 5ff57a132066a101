"""Training: decision losses and the two ways to learn a cost predictor.

- :func:`fit`: decision-focused. Predicted costs go through the layer (identity with
  projection) and the loss is taken on the decisions: ``"regret"`` (the realised objective
  ``<c, y>``, signed so that lower is better) or ``"hamming"`` (``||y - y*||^2`` to the optimal
  decision), see :func:`decision_loss`.
- :func:`fit_two_stage`: the usual baseline. Least-squares regression of the true costs on the
  features (the best linear fit in mean squared error), then solve.

Both return a :class:`History` with the normalized test regret before and after training;
:func:`oracle` gives the floor that the data's noise sets. The tables, plots and command-line
options of the examples live with them, in :mod:`idproj_or.demos`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .metrics import evaluate, normalized_regret

if TYPE_CHECKING:
    from .data import OptDataset
    from .rules.identity import OptLayer

LOSSES = ("regret", "hamming")


def decision_loss(
    name: str,
    decisions: torch.Tensor,
    costs: torch.Tensor,
    solutions: torch.Tensor,
    *,
    sense: str,
) -> torch.Tensor:
    """Mean over the batch of a loss on the decisions ``(B, *shape)``.

    Rows without a decision (NaN, from a layer with ``on_failure="nan"``) are skipped: they
    add 0 to the sum, which is still divided by the batch size, so the other rows' gradients
    are those of the full batch.

    Args:
        name: ``"regret"``: ``<c, y>`` for min, ``-<c, y>`` for max (its gradient is the regret's);
            ``"hamming"``: ``||y - y*||^2`` (for 0/1 decisions, the Hamming distance).
        decisions: the layer's output ``y``.
        costs: true costs ``c``.
        solutions: optimal decisions ``y*`` for ``c``.
        sense: the layer's ``"min"`` or ``"max"``.

    Returns:
        scalar tensor.

    Example:
        >>> y = torch.tensor([[1.0, 0.0]]); c = torch.tensor([[2.0, 3.0]]); s = torch.tensor([[0.0, 1.0]])
        >>> decision_loss("regret", y, c, s, sense="max").item(), decision_loss("hamming", y, c, s, sense="max").item()
        (-2.0, 2.0)
    """
    if name not in LOSSES:
        raise ValueError(f"decision_loss: loss={name!r} must be one of {', '.join(map(repr, LOSSES))}")
    b = len(decisions)
    y = decisions.reshape(b, -1)
    solved = ~torch.isnan(y).any(dim=1)
    # where, not a product: the gradient of a skipped row is 0, never NaN
    y = torch.where(solved[:, None], y, torch.zeros_like(y))
    if name == "regret":
        value = (costs.reshape(b, -1).to(y) * y).sum(dim=1)
        value = -value if sense == "max" else value
    else:
        value = ((y - solutions.reshape(b, -1).to(y)) ** 2).sum(dim=1)
    return torch.where(solved, value, torch.zeros_like(value)).sum() / b


@dataclass
class History:
    """What one training run measured.

    ``test_regret[k]`` is the normalized test regret after ``epochs[k]`` epochs (``epochs[0] == 0``
    is the untrained model); ``train_regret[k - 1]`` is the normalized regret of the decisions the
    layer took during epoch ``k`` (with the training noise, if any), measured on the true training
    costs: it is free, since those decisions were solved anyway. A baseline that does not train
    by epochs (two-stage, oracle) has no ``epochs`` and one ``test_regret``.
    """

    label: str
    seed: int
    epochs: list[int] = field(default_factory=list)
    test_regret: list[float] = field(default_factory=list)
    train_regret: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> float:
        return self.test_regret[-1]

    @property
    def untrained(self) -> float | None:
        return self.test_regret[0] if self.epochs and self.epochs[0] == 0 else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def fit(
    predictor: torch.nn.Module,
    layer: OptLayer,
    train: OptDataset,
    test: OptDataset,
    *,
    loss: str = "regret",
    epochs: int = 5,
    lr: float = 1e-2,
    batch_size: int = 32,
    seed: int = 0,
    eval_every: int = 1,
    label: str = "",
    progress: bool = True,
    noise_epochs: int | None = None,
) -> History:
    """Train ``predictor`` end to end through ``layer`` with Adam; decision loss ``loss``.

    Args:
        predictor: maps ``(B, p)`` features to ``(B, *layer.shape)`` (or flat) costs.
        layer: the optimisation layer (its projection and noise apply in training).
        train: training data (:func:`idproj_or.data.solve_dataset`); its per-instance ``data``
            goes to the layer with each batch, and the instances' indices as ``ids=`` (warm
            starts).
        test: test data, for the normalized regret.
        loss: ``"regret"`` or ``"hamming"`` (see :func:`decision_loss`).
        epochs: passes over ``train``.
        lr: Adam learning rate.
        batch_size: instances per step.
        seed: seeds the batch order.
        eval_every: test every this many epochs (0: only before and after training).
        label: name of the run in tables and plots.
        progress: show a tqdm bar.
        noise_epochs: the layer's noise margin applies in the first ``noise_epochs`` epochs
            only (Sahoo et al. use the first half of training), then 0 (restored afterwards);
            None: in every epoch.

    Returns:
        :class:`History`.

    Example:
        >>> history = fit(torch.nn.Linear(5, 32), layer, train, test, loss="regret")  # doctest: +SKIP
        >>> history.final  # doctest: +SKIP
        0.0339
    """
    if loss not in LOSSES:
        raise ValueError(f"fit: loss={loss!r} must be one of {', '.join(map(repr, LOSSES))}")
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs={epochs!r} must be an int >= 0")
    if noise_epochs is not None and (not isinstance(noise_epochs, int) or noise_epochs < 0):
        raise ValueError(f"fit: noise_epochs={noise_epochs!r} must be None or an int >= 0")
    history = History(label or f"{layer.projection}/{loss}", seed)
    history.epochs.append(0)
    history.test_regret.append(evaluate(predictor, layer, test))
    optimizer = torch.optim.Adam(predictor.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    sign = -1.0 if layer.sense == "max" else 1.0
    denominator = float(train.objectives.abs().sum()) or 1.0
    steps = math.ceil(len(train) / batch_size)
    start = time.perf_counter()
    bar = tqdm(total=epochs * steps, desc=history.label, disable=not progress, leave=False)
    predictor.train()
    layer.train()
    alpha = layer.noise
    try:
        for epoch in range(1, epochs + 1):
            if noise_epochs is not None:
                layer.noise = alpha if epoch <= noise_epochs else 0.0
            epoch_regret = 0.0
            for index in _batches(len(train), batch_size, generator):
                x, c, w, z = train[index][:4]
                # ids: each instance starts from its previous solve (where the layer warm-starts)
                y = layer(predictor(x).reshape(len(x), *layer.shape), **train.data_of(index, ids=True))
                value = decision_loss(loss, y, c, w, sense=layer.sense)
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
                achieved = (c.reshape(len(x), -1).double() * y.detach().reshape(len(x), -1).double()).sum(dim=1)
                epoch_regret += float((sign * (achieved - z)).nansum())  # rows without a decision: skipped
                bar.update()
                bar.set_postfix(loss=f"{value.item():.3g}")
            history.train_regret.append(epoch_regret / denominator)
            if epoch == epochs or (eval_every and epoch % eval_every == 0):
                history.epochs.append(epoch)
                history.test_regret.append(evaluate(predictor, layer, test))
                bar.set_postfix(test_regret=f"{history.test_regret[-1]:.2%}")
    finally:
        layer.noise = alpha
    bar.close()
    history.seconds = time.perf_counter() - start
    return history


def fit_two_stage(
    predictor: torch.nn.Linear,
    layer: OptLayer,
    train: OptDataset,
    test: OptDataset,
    *,
    seed: int = 0,
    label: str = "two-stage",
) -> History:
    """Two-stage baseline: least-squares fit of the true costs (the MSE-optimal linear
    ``predictor``), then solve. ``predictor`` is overwritten with the fit.

    Args:
        predictor: a ``torch.nn.Linear(p, prod(layer.shape))`` (with bias).
        layer: the optimisation layer (only its exact ``solve`` is used).
        train: training data.
        test: test data.
        seed: recorded in the history (the fit is deterministic).
        label: name of the run.

    Returns:
        :class:`History` with the fitted model's test regret.
    """
    if not isinstance(predictor, torch.nn.Linear) or predictor.bias is None:
        raise ValueError("fit_two_stage: predictor must be a torch.nn.Linear with a bias")
    history = History(label, seed)
    start = time.perf_counter()
    x = train.features.double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    target = train.costs.reshape(len(x), -1).double()
    coef = torch.linalg.lstsq(design, target).solution
    with torch.no_grad():
        predictor.weight.copy_(coef[:-1].T)
        predictor.bias.copy_(coef[-1])
    history.test_regret.append(evaluate(predictor, layer, test))
    history.seconds = time.perf_counter() - start
    return history


def oracle(layer: OptLayer, expected: torch.Tensor, test: OptDataset, *, seed: int = 0) -> History:
    """The Bayes floor: the regret of deciding on ``expected = E[c | x]`` (the generators'
    ``expected``). No predictor does better in expectation; the noise sets this level.

    Example:
        >>> oracle(layer, torch.as_tensor(data.expected[1000:]), test).final  # doctest: +SKIP
        0.0324
    """
    history = History("oracle E[c|x]", seed)
    start = time.perf_counter()
    history.test_regret.append(normalized_regret(layer, expected, test.costs, optimal=test.objectives, data=test.data))
    history.seconds = time.perf_counter() - start
    return history
