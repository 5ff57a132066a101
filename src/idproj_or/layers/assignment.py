"""The assignment problem as a layer (the solver: :mod:`idproj_or.solvers.assignment`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..checks import Sense, check_sense, check_size
from ..rules.identity import OptLayer
from ..solvers.assignment import AssignmentSpec

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LayerOptions


class AssignmentLayer(OptLayer):
    """Min- (or max-) cost assignment as a layer: costs ``(n, m)`` -> a 0/1 matrix ``y``.

    ``y[i, j] = 1`` when row ``i`` is assigned to column ``j``. Square: a permutation matrix.
    ``n < m``: every row assigned to a distinct column. ``n > m``: every column to a distinct row.
    Solved exactly by OR-Tools' linear sum assignment on costs scaled to its int64 headroom and
    rounded (see :mod:`idproj_or.solvers.assignment`): ``"optimal"`` when the rounding cannot
    matter, else ``"feasible"`` with ``last_info.scaling_error``.

    ``projection="auto"`` uses the row-sum equalities (``n <= m``) and column-sum equalities
    (``n >= m``): adding a constant to a whole row (or column) never changes the argmin.

    Args:
        n: number of rows.
        m: number of columns; default ``n``.
        sense: ``"min"`` (default) or ``"max"``.
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``,
            ``on_failure``, ``generator`` (see :mod:`idproj_or.options`). ``time_limit`` is refused
            (a ValueError): every solve runs to optimality in polynomial time.

    Example:
        >>> import torch
        >>> layer = AssignmentLayer(2)
        >>> layer(torch.tensor([[1.0, 5.0], [2.0, 3.0]])).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """

    def __init__(
        self,
        n: int,
        m: int | None = None,
        sense: Sense = "min",
        **options: Unpack[LayerOptions],
    ) -> None:
        where = type(self).__name__
        n = check_size(n, "n", where=where)
        m = n if m is None else check_size(m, "m", where=where)
        spec = AssignmentSpec(n, m, check_sense(sense, where=where))
        super().__init__(spec, **options)
