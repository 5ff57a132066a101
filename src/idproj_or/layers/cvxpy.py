"""A CVXPY LP or MIP as a layer (the solver: :mod:`idproj_or.solvers.cvxpy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..rules.identity import OptLayer
from ..solvers.cvxpy import ParameterWatch, cvxpy_spec

if TYPE_CHECKING:
    import cvxpy as cp
    from typing_extensions import Unpack

    from ..options import LayerOptions


class CvxpyLayer(OptLayer):
    """A CVXPY LP or MIP as a layer: ``y = argmin/argmax sum(w * variable)``, ``w`` the value of
    ``parameter``.

    The problem's objective must be ``Minimize`` or ``Maximize`` of ``sum(parameter *
    variable)`` (``c @ x``, ``cp.sum(cp.multiply(c, x))``); the parameter may not appear in a
    constraint. Boolean and integer variables work (a MIP, with HiGHS by default).

    The values of the problem's other parameters are read again before each solve: a changed
    capacity is followed. A copy of the layer (``copy.deepcopy``, ``pickle``, ``torch.save``)
    carries its own copies of those parameters, with the values they had when it was made: it
    no longer follows your ``Parameter`` objects. To follow them after loading a checkpoint,
    build a new layer from the problem.

    Args:
        problem: the declared ``cp.Problem`` (DPP).
        parameter: the cost ``cp.Parameter``, same shape as ``variable``, without attributes.
        variable: the ``cp.Variable`` the layer returns; its shape is the cost shape.
        solver: a CVXPY conic solver name; default ``"HIGHS"`` (``"CLARABEL"`` for a continuous
            problem HiGHS cannot take).
        **options: ``projection``, ``noise``, ``workers``, ``route``, ``executor``,
            ``executor_workers``, ``time_limit``,
            ``on_failure``, ``generator`` (see :mod:`idproj_or.options`).

    Example:
        >>> import cvxpy as cp
        >>> import torch
        >>> c = cp.Parameter(4)
        >>> x = cp.Variable(4, boolean=True)
        >>> problem = cp.Problem(cp.Maximize(c @ x), [cp.sum(x) == 2])
        >>> layer = CvxpyLayer(problem, c, x)
        >>> layer(torch.tensor([1.0, 4.0, 2.0, 3.0])).tolist()
        [0.0, 1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        problem: cp.Problem,
        parameter: cp.Parameter,
        variable: cp.Variable,
        solver: str | None = None,
        **options: Unpack[LayerOptions],
    ) -> None:
        name = type(self).__name__
        time_limit = options.get("time_limit")
        spec = cvxpy_spec(problem, parameter, variable, solver, time_limit, where=name)
        super().__init__(spec, **options)
        self._handle.refresh = ParameterWatch(
            problem,
            parameter,
            variable,
            solver,
            time_limit,
            spec,
            auto=options.get("projection", "auto") == "auto",
            where=name,
        )
