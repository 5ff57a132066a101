"""PyEPO's names for the rules, so that code written for ``pyepo.func`` reads the same here.

Each name is the idproj_or rule itself (``acronyms.DBB is ipo.Blackbox``), except four whose
PyEPO module fixes an option: ``NID`` is identity without projection, ``DPOMul`` and ``PFYMul``
the multiplicative perturbations, and ``SPOPlus`` keeps its name. The rules take a layer (any
idproj_or layer, or its ``.handle``) where PyEPO's take an ``optModel``, and keyword-only options.

| PyEPO (``pyepo.func``) | here | idproj_or rule |
|---|---|---|
| ``smartPredictThenOptimizePlus``, ``SPOPlus`` | ``SPOPlus`` | :class:`~idproj_or.SPOPlus` |
| ``perturbationGradient``, ``PG`` | ``PG`` | :class:`~idproj_or.PerturbationGradient` |
| ``blackboxOpt``, ``DBB`` | ``DBB`` | :class:`~idproj_or.Blackbox` |
| ``negativeIdentity``, ``NID`` | ``NID`` | :class:`~idproj_or.ProjectedIdentity` with ``projection="none"`` |
| ``perturbedOpt``, ``DPO`` | ``DPO`` | :class:`~idproj_or.PerturbedOpt` |
| ``perturbedOptMul``, ``DPOMul`` | ``DPOMul`` | :class:`~idproj_or.PerturbedOpt` with ``multiplicative=True`` |
| ``perturbedFenchelYoung``, ``PFY`` | ``PFY`` | :class:`~idproj_or.FenchelYoung` |
| ``perturbedFenchelYoungMul``, ``PFYMul`` | ``PFYMul`` | :class:`~idproj_or.FenchelYoung` with ``multiplicative=True`` |
| ``implicitMLE``, ``IMLE`` | ``IMLE`` | :class:`~idproj_or.IMLE` |
| ``adaptiveImplicitMLE``, ``AIMLE`` | ``AIMLE`` | :class:`~idproj_or.AdaptiveIMLE` |
| ``regularizedFrankWolfeOpt``, ``RFWO`` | ``RFWO`` | :class:`~idproj_or.RegularizedFrankWolfe` |
| ``regularizedFrankWolfeFenchelYoung``, ``RFY`` | ``RFY`` | :class:`~idproj_or.RegularizedFenchelYoung` |
| ``noiseContrastiveEstimation``, ``NCE`` | ``NCE`` | :class:`~idproj_or.NoiseContrastive` |
| ``contrastiveMAP``, ``CMAP`` | ``CMAP`` | :class:`~idproj_or.ContrastiveMAP` |
| ``pointwiseLearningToRank``, ``ptLTR`` | ``ptLTR`` | :class:`~idproj_or.PointwiseLTR` |
| ``pairwiseLearningToRank``, ``prLTR`` | ``prLTR`` | :class:`~idproj_or.PairwiseLTR` |
| ``listwiseLearningToRank``, ``lsLTR`` | ``lsLTR`` | :class:`~idproj_or.ListwiseLTR` |
| ``coneAlignedCosine``, ``CaVE`` | ``CaVE`` | :class:`~idproj_or.ConeAligned` |

Example:
    >>> import idproj_or as ipo
    >>> from idproj_or.rules.acronyms import DBB, NID
    >>> DBB is ipo.Blackbox
    True
    >>> NID(ipo.KnapsackLayer([[3, 4, 5]], [7])).projection
    'none'
"""

# ruff: noqa: N802, N814, N817  (the module exists to give PyEPO's names)
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .aimle import AdaptiveIMLE as AIMLE
from .blackbox import Blackbox as DBB
from .cave import ConeAligned as CaVE
from .contrastive import ContrastiveMAP as CMAP
from .contrastive import NoiseContrastive as NCE
from .identity import ProjectedIdentity
from .imle import IMLE
from .perturbed import FenchelYoung as PFY
from .perturbed import PerturbedOpt as DPO
from .pg import PerturbationGradient as PG
from .rank import ListwiseLTR as lsLTR
from .rank import PairwiseLTR as prLTR
from .rank import PointwiseLTR as ptLTR
from .regularized import RegularizedFenchelYoung as RFY
from .regularized import RegularizedFrankWolfe as RFWO
from .spo import SPOPlus

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import RuleOptions

__all__ = [
    "AIMLE",
    "CMAP",
    "DBB",
    "DPO",
    "IMLE",
    "NCE",
    "NID",
    "PFY",
    "PG",
    "RFWO",
    "RFY",
    "CaVE",
    "DPOMul",
    "PFYMul",
    "SPOPlus",
    "lsLTR",
    "prLTR",
    "ptLTR",
]


def NID(layer: Any, **options: Unpack[RuleOptions]) -> ProjectedIdentity:
    """PyEPO's negative identity: :class:`~idproj_or.ProjectedIdentity` with ``projection="none"``
    unless ``projection=`` is given."""
    return ProjectedIdentity(layer, **{"projection": "none", **options})  # type: ignore[arg-type]


def DPOMul(layer: Any, **kwargs: Any) -> DPO:
    """PyEPO's ``perturbedOptMul``: :class:`~idproj_or.PerturbedOpt` with ``multiplicative=True``."""
    return DPO(layer, multiplicative=True, **kwargs)


def PFYMul(layer: Any, **kwargs: Any) -> PFY:
    """PyEPO's ``perturbedFenchelYoungMul``: :class:`~idproj_or.FenchelYoung` with
    ``multiplicative=True``."""
    return PFY(layer, multiplicative=True, **kwargs)
