"""A CVXPY LP or MIP as a layer (the solver: :mod:`idproj_or.solvers.cvxpy`), and the watch
that follows the problem's undeclared parameters between calls (front side: it holds the CVXPY
objects, which never cross to a worker)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checks import ObjectiveMode
from ..rules.identity import OptLayer
from ..solvers.cvxpy import CvxpySpec, cost_pairs, cvxpy_spec

if TYPE_CHECKING:
    import cvxpy as cp
    from typing_extensions import Unpack

    from ..options import LayerOptions


class CvxpyLayer(OptLayer):
    """A CVXPY LP or MIP as a layer: ``y = argmin/argmax sum(w * variable) + fixed``, ``w`` the
    value of ``parameter`` and ``fixed`` the rest of the problem's objective (a known part of the
    objective next to the predicted one).

    The problem's objective must be ``Minimize`` or ``Maximize`` of ``sum(parameter * variable)``
    (``c @ x``, ``cp.sum(cp.multiply(c, x))``, coefficient 1) plus any affine expression of the
    problem's variables: terms on other variables or on ``variable`` itself, a constant, other
    parameters as coefficients (DPP). A quadratic or other nonlinear term is refused, as is (unless
    ``objective="replace"``) a term in which ``parameter`` appears outside the predicted term;
    ``parameter`` may not appear in a constraint. The sense is the declared one. Boolean and integer variables work (a MIP, with
    HiGHS by default).

    The gradient is that of the predicted term alone (the method's ``-I`` / ``+I`` through the
    projection): ``fixed`` does not depend on the costs. ``last_info.objective`` is the total,
    the problem's value at the decision.

    Per-instance data: ``data={"cap": cap}`` declares parameters of the problem (not the costs)
    whose values each call may give, ``layer(costs, cap=caps)`` with ``caps`` of the parameter's
    shape (every instance) or ``(B, *shape)`` (one per instance); an instance without it uses the
    parameter's value when the layer was built. The problem is compiled once (DPP): each
    instance's values are applied to the compiled data, never recompiled. A parameter's
    attributes check the values (``nonneg``, ``nonpos``, ``integer``, ``boolean``, scalar
    ``bounds``; ``pos`` and ``neg`` as their closed ranges).

    Cost groups: dicts with the same keys for ``parameter`` and ``variable`` (one parameter per
    variable, each ``sum(parameter * variable)`` in the objective); the layer then takes and
    returns dicts of tensors, ``layer({"open": w1, "assign": w2})``.

    The values of the problem's other parameters (neither costs nor data) are read again before
    each solve: a changed capacity is followed (by compiling the problem again). A copy of the layer (``copy.deepcopy``, ``pickle``, ``torch.save``)
    carries its own copies of those parameters, with the values they had when it was made: it
    no longer follows your ``Parameter`` objects. To follow them after loading a checkpoint,
    build a new layer from the problem.

    Args:
        problem: the declared ``cp.Problem`` (DPP).
        parameter: the cost ``cp.Parameter``, same shape as ``variable``, without attributes; or a
            dict of them, one per cost group.
        variable: the ``cp.Variable`` the layer returns; its shape is the cost shape; or a dict
            of them with the keys of ``parameter``.
        solver: a CVXPY conic solver name; default ``"HIGHS"`` (``"CLARABEL"`` for a continuous
            problem HiGHS cannot take).
        objective: ``"keep"`` (default): the problem's objective, predicted term and fixed part;
            ``"replace"``: the predicted term alone (the fixed part is left out of the solve and
            of ``last_info.objective``).
        data: per-instance data, ``{name: cp.Parameter}`` (keywords of the layer's call).
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

        A known part of the objective (picking item 1 costs 2.5) is kept, unless replaced:

        >>> problem = cp.Problem(cp.Maximize(c @ x - 2.5 * x[1]), [cp.sum(x) == 2])
        >>> layer = CvxpyLayer(problem, c, x)
        >>> layer(torch.tensor([1.0, 4.0, 2.0, 3.0])).tolist(), layer.last_info.objective.tolist()
        ([0.0, 0.0, 1.0, 1.0], [5.0])
        >>> layer = CvxpyLayer(problem, c, x, objective="replace")
        >>> layer(torch.tensor([1.0, 4.0, 2.0, 3.0])).tolist(), layer.last_info.objective.tolist()
        ([0.0, 1.0, 0.0, 1.0], [7.0])
    """

    def __init__(
        self,
        problem: cp.Problem,
        parameter: cp.Parameter | Mapping[str, cp.Parameter],
        variable: cp.Variable | Mapping[str, cp.Variable],
        solver: str | None = None,
        *,
        objective: ObjectiveMode = "keep",
        data: Mapping[str, cp.Parameter] | None = None,
        **options: Unpack[LayerOptions],
    ) -> None:
        name = type(self).__name__
        time_limit = options.get("time_limit")
        args = (problem, parameter, variable, solver, time_limit)
        spec, groups = cvxpy_spec(*args, objective=objective, data=data, where=name)
        super().__init__(spec, **options)
        self._handle.groups = groups
        self._handle.refresh = ParameterWatch(*args, objective=objective, data=data, where=name)


class ParameterWatch:
    """Re-reads the problem's other parameters (neither costs nor declared data) before each
    solve: a changed value (a capacity, a demand) recompiles the spec, so that the layer never
    solves a stale model. A change of the equality rows over the cost variables is followed too:
    the handle takes "auto"'s basis from the current spec
    (:meth:`~idproj_or.handle.SolveHandle.invariance_basis`). Declared data is per instance and
    never recompiles."""

    def __init__(
        self,
        problem: cp.Problem,
        parameter: Any,
        variable: Any,
        solver: str | None,
        time_limit: float | None,
        *,
        objective: ObjectiveMode,
        data: Mapping[str, cp.Parameter] | None,
        where: str,
    ) -> None:
        self.args = (problem, parameter, variable, solver, time_limit)
        self.objective = objective
        self.data = data
        pairs, _ = cost_pairs(parameter, variable, where=where)
        skip = {p.id for p, _ in pairs.values()} | {p.id for p in (data or {}).values()}
        self.others = [p for p in problem.parameters() if p.id not in skip]
        self.values = [np.array(p.value, dtype=float) for p in self.others]
        self.where = where

    def __call__(self) -> CvxpySpec | None:
        changed = [i for i, (p, v) in enumerate(zip(self.others, self.values)) if not np.array_equal(p.value, v)]
        if not changed:
            return None
        unset = [self.others[i].name() for i in changed if self.others[i].value is None]
        if unset:
            raise ValueError(f"{self.where}: parameters {unset} have no value; set them before solving")
        spec, _ = cvxpy_spec(*self.args, objective=self.objective, data=self.data, where=self.where)
        self.values = [np.array(p.value, dtype=float) for p in self.others]
        return spec
