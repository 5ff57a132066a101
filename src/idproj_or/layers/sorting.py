"""Top-k selection and ranking as layers (the solvers: :mod:`idproj_or.solvers.sorting`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..checks import Sense, check_sense, check_size
from ..rules.identity import OptLayer
from ..solvers.sorting import RankingSpec, TopKSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LayerOptions


class TopKLayer(OptLayer):
    """The k largest (or smallest) scores as a layer: scores ``(n,)`` -> a k-hot 0/1 vector.

    ``y = argmax_{y in {0,1}^n, sum(y) = k} <w, y>`` for ``sense="max"`` (the default): ``y[i] = 1``
    for the k largest scores; ``sense="min"`` selects the k smallest. Solved exactly by a stable
    sort of each row. Ties (equal costs as the solver receives them) select the lower index
    first, as ``torch.sort(w, descending=True, stable=True).indices[:k]`` does.

    ``k`` per instance: ``layer(costs, k=ks)`` with ``ks`` an integer (every instance) or of shape
    ``(B,)``, each ``0 <= k_i <= n``; row ``i`` selects its ``k_i`` largest (smallest) scores.
    Without it, every instance has the constructor's ``k``.

    ``projection="auto"`` uses the one equality ``sum(y) == k``: adding a constant to every score
    never changes the selection, whatever the instance's ``k``, so "auto" is the paper's
    ``P_std`` (mean removed, then normalised).

    Args:
        n: number of scores.
        k: how many to select, ``0 <= k <= n``: the default of every instance.
        sense: ``"max"`` (default: the k largest) or ``"min"`` (the k smallest).
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``,
            ``on_failure``, ``generator`` (see :mod:`idproj_or.options`). ``time_limit`` is refused
            (a ValueError): a sort always finishes.

    Example:
        >>> import torch
        >>> layer = TopKLayer(5, 2)
        >>> layer(torch.tensor([0.1, 3.0, -1.0, 2.0, 0.5])).tolist()
        [0.0, 1.0, 0.0, 1.0, 0.0]
        >>> layer.solve(torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0])).tolist()  # ties: lower index first
        [0.0, 1.0, 1.0, 0.0, 0.0]
        >>> layer.solve(torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5]] * 2), k=torch.tensor([1, 3])).tolist()
        [[0.0, 1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0, 1.0]]
    """

    def __init__(self, n: int, k: int, sense: Sense = "max", **options: Unpack[LayerOptions]) -> None:
        where = type(self).__name__
        n = check_size(n, "n", where=where)
        k = check_size(k, "k", where=where, minimum=0)
        if k > n:
            raise ValueError(f"{where}: k={k} must be at most n={n}")
        super().__init__(TopKSpec(n, k, check_sense(sense, where=where)), **options)


class RankingLayer(OptLayer):
    """Ranks of the scores as a layer: scores ``(n,)`` -> a permutation of ``1..n``.

    ``y = argmin_{y in perm(1..n)} <w, y>`` for ``sense="min"`` (the default, the paper's ranking
    solver): minimising pairs the largest score with the smallest rank, so the highest score is
    ranked 1. ``sense="max"`` (``argmax <w, y>``) ranks the lowest score 1. Solved exactly by a
    stable sort of each row, vectorised over the batch. Ties (equal costs as the solver receives
    them) give the lower index the smaller rank.

    ``projection="auto"`` uses the one equality ``sum(y) == n (n + 1) / 2``: adding a constant to
    every score never changes the ranks, so "auto" is the paper's ``P_std``.

    Args:
        n: number of scores.
        sense: ``"min"`` (default: highest score ranked 1) or ``"max"`` (lowest score ranked 1).
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``,
            ``on_failure``, ``generator`` (see :mod:`idproj_or.options`). ``time_limit`` is refused
            (a ValueError): a sort always finishes.

    Example:
        >>> import torch
        >>> layer = RankingLayer(4)
        >>> layer(torch.tensor([0.3, 2.0, -1.0, 0.9])).tolist()
        [3.0, 1.0, 4.0, 2.0]
        >>> RankingLayer(4, sense="max").solve(torch.tensor([0.3, 2.0, -1.0, 0.9])).tolist()
        [2.0, 4.0, 1.0, 3.0]
    """

    def __init__(self, n: int, sense: Sense = "min", **options: Unpack[LayerOptions]) -> None:
        where = type(self).__name__
        n = check_size(n, "n", where=where)
        super().__init__(RankingSpec(n, check_sense(sense, where=where)), **options)
