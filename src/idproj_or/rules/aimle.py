"""Adaptive implicit maximum-likelihood estimation (Minervini, Franceschi & Niepert, AAAI 2023),
as PyEPO's ``adaptiveImplicitMLE`` (AIMLE): I-MLE (:mod:`.imle`) whose target-distribution step
``lambda`` is set at each backward pass instead of fixed.

Forward is I-MLE's: the mean decision of ``n_samples`` Sum-of-Gamma perturbations
``c_s = c_hat + sigma eps_s`` (``kappa = 5``). Backward, for the batch's ``(B, n)`` costs
``c_hat`` and ``g = dL/dy``, first the step, with Frobenius norms over the whole batch (as PyEPO,
not per instance):

    lambda = alpha ||c_hat|| / ||g||        (0 when g = 0)

then I-MLE's difference with it, its divisor guarded by PyEPO's ``1e-8`` (``lambda`` may be 0):

    dL/dc_hat = s mean_s (y(c_s + s lambda g) - y(c_s)) / (lambda + 1e-8)

(``s = +1`` min, ``-1`` max; ``two_sides=True``:
``mean_s (y(c_s + lambda g) - y(c_s - lambda g)) / (2 lambda + 1e-8)``), and last the adaptive
state's update from the gradient ``d = dL/dc_hat`` just computed:

    density = the fraction of the batch's entries of d with |d| > 1e-8
    average = 0.9 average + 0.1 density
    alpha   = alpha + 1e-3 if average < 1 else max(0, alpha - 1e-3)

from ``alpha = 1`` and ``average = 1``: PyEPO's constants, none of them an option (PyEPO has
none). The target density is 1, so ``alpha`` grows by ``1e-3`` per batch while some entry of the
gradient is 0 (for a combinatorial solver, nearly always) and shrinks only while all are dense.

The adaptive state (``alpha``, ``grad_norm_avg`` = ``average``, and ``lambd``, the last step) is
the rule's own: each backward pass through the rule (one per training batch) updates it once,
after the gradient; a forward alone (evaluation) never does. It is a function of the gradients
computed so far, in order: the same seeds and batches give the same steps, in-process, in the
pool and on any executor. Copies and pickles of the rule carry it on, ``state_dict()`` holds it
(as extra state: ``alpha`` and ``grad_norm_avg``) so that a resumed run continues it, and threads
that share one rule share it. Under ``torch.compile`` the step and the update are opaque
operators, as the solve is, so a compiled step updates it as eager code does.

With ``projection=``, ``c_hat`` is ``P(pred)`` (plus the training noise margin).
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

import torch

from ..handle import real_scalar
from ..options import RuleOptions
from .base import Registry, empty_like_first
from .imle import PerturbAndMAP
from .perturbed import EPS

if TYPE_CHECKING:
    from typing_extensions import Unpack

# PyEPO's adaptive constants: the start of alpha and of the density average, alpha's step per
# batch.
ALPHA = 1.0
AVERAGE = 1.0
STEP = 1e-3


class AdaptiveState:
    """The adaptive state of one :class:`AdaptiveIMLE` (see the module docstring), reached by the
    opaque operators through its int ``key`` (a compiled graph holds the int, never the object)."""

    def __init__(self) -> None:
        self.alpha = ALPHA
        self.average = AVERAGE
        self.lambd: float | None = None
        self._start()

    def _start(self) -> None:
        self.key = next(_state_keys)
        _states.add(self.key, self)

    def __getstate__(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "average": self.average, "lambd": self.lambd}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.alpha, self.average, self.lambd = state["alpha"], state["average"], state["lambd"]
        self._start()

    def step(self, z: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``lambda = alpha ||z|| / ||grad||`` (0 for ``grad = 0``), a 0-dim tensor in ``z``'s
        dtype and on its device; remembered as :attr:`lambd`."""
        norm = torch.norm(grad)
        lambd = self.alpha * torch.norm(z) / norm if norm > 0 else z.new_zeros(())
        self.lambd = lambd.item()
        return lambd

    def observe(self, grad: torch.Tensor) -> None:
        """The update from the gradient ``grad = dL/dc_hat`` of one backward."""
        density = (grad.abs() > EPS).float().mean().item()
        self.average = 0.9 * self.average + 0.1 * density  # PyEPO's literals (1 - 0.9 is not 0.1)
        if self.average < 1:
            self.alpha += STEP
        else:
            self.alpha = max(0.0, self.alpha - STEP)


_states: Registry[AdaptiveState] = Registry("adaptive I-MLE state")
_state_keys = itertools.count(1)


class AdaptiveIMLE(PerturbAndMAP):
    """Adaptive I-MLE over any idproj_or layer: ``y = aimle(pred_cost)``, the mean of
    ``n_samples`` perturb-and-MAP decisions, with a target-distribution step set at each backward
    (see the module docstring for the step and its state).

    Args:
        layer: any idproj_or layer, or its ``.handle``.
        n_samples: perturbations per instance (default 10).
        sigma: noise temperature (default 1).
        kappa: Sum-of-Gamma parameter (default 5; ``k`` of a top-k problem).
        two_sides: central difference in backward (default False).
        **options: ``projection`` (default ``"none"``), ``noise``, ``generator`` (draws the
            perturbations too), ``solve_ratio``, ``solutions`` (:mod:`idproj_or.options`).

    Example:
        >>> import torch, idproj_or as ipo
        >>> layer = ipo.KnapsackLayer([[3, 4, 5]], [7])
        >>> aimle = ipo.AdaptiveIMLE(layer, n_samples=100, sigma=0.5, generator=torch.Generator().manual_seed(0))
        >>> pred = torch.tensor([1.0, 2.0, 2.5], requires_grad=True)
        >>> y = aimle(pred)
        >>> [round(v, 2) for v in y.tolist()]
        [0.94, 0.94, 0.06]
        >>> (y * torch.tensor([1.0, 0.0, -1.0])).sum().backward()
        >>> round(aimle.lambd, 4)  # alpha ||pred|| / ||g||, alpha = 1 at the first backward
        2.3717
        >>> [round(v, 3) for v in pred.grad.tolist()]
        [0.396, 0.396, -0.396]
        >>> aimle.alpha  # every entry of the gradient is nonzero: alpha shrinks by 1e-3
        0.999
    """

    guard = EPS  # PyEPO's: lambda is 0 when the incoming gradient is

    def __init__(
        self,
        layer: Any,
        *,
        n_samples: int = 10,
        sigma: float = 1.0,
        kappa: float = 5.0,
        two_sides: bool = False,
        **options: Unpack[RuleOptions],
    ) -> None:
        super().__init__(layer, n_samples=n_samples, sigma=sigma, kappa=kappa, two_sides=two_sides, options=options)
        self._state = AdaptiveState()

    @property
    def alpha(self) -> float:
        """The step's current magnitude ``alpha`` (1 before any backward)."""
        return self._state.alpha

    @property
    def grad_norm_avg(self) -> float:
        """The moving average of the gradients' density (PyEPO's name; 1 before any backward)."""
        return self._state.average

    @property
    def lambd(self) -> float | None:
        """The step ``lambda`` of the last backward (None before any)."""
        return self._state.lambd

    def get_extra_state(self) -> dict[str, float]:
        return {"alpha": self._state.alpha, "grad_norm_avg": self._state.average}

    def set_extra_state(self, state: Any) -> None:
        name = type(self).__name__
        if not isinstance(state, dict) or set(state) != {"alpha", "grad_norm_avg"}:
            raise ValueError(f"{name}: the extra state must be a dict of alpha and grad_norm_avg, got {state!r}")
        alpha = real_scalar(state["alpha"], where=name, name="alpha")
        average = real_scalar(state["grad_norm_avg"], where=name, name="grad_norm_avg")
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"{name}: alpha={alpha!r} must be a finite number >= 0")
        if not 0 <= average <= 1:
            raise ValueError(f"{name}: grad_norm_avg={average!r} must be in [0, 1]")
        self._state.alpha, self._state.average = alpha, average

    def target_step(self, z: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return torch.ops.idproj_or.aimle_step(z, grad, self._state.key)

    def observe(self, grad: torch.Tensor) -> torch.Tensor:
        return torch.ops.idproj_or.aimle_observe(grad, self._state.key)


def _step_op(z: torch.Tensor, grad: torch.Tensor, state: int) -> torch.Tensor:
    return _states.get(state).step(z, grad)


def _observe_op(grad: torch.Tensor, state: int) -> torch.Tensor:
    _states.get(state).observe(grad)
    return grad.clone()  # an operator's output never aliases its input


# Opaque to torch.compile, which would otherwise read the state once, at tracing. Tagged as
# seeded random operators, as the draws are: never constant-folded, merged or recomputed.
# Defined with torch.library.Library, as the solve is (custom_op's first call imports Dynamo).
_LIB = torch.library.Library("idproj_or", "FRAGMENT")
_TAGS = (torch.Tag.nondeterministic_seeded,)
_LIB.define("aimle_step(Tensor z, Tensor grad, int state) -> Tensor", tags=_TAGS)
_LIB.define("aimle_observe(Tensor grad, int state) -> Tensor", tags=_TAGS)
_LIB.impl("aimle_step", _step_op, "CompositeExplicitAutograd")
_LIB.impl("aimle_observe", _observe_op, "CompositeExplicitAutograd")
torch.library.register_fake("idproj_or::aimle_step", lambda z, grad, state: z.new_empty(()), lib=_LIB)
torch.library.register_fake("idproj_or::aimle_observe", empty_like_first, lib=_LIB)
