"""idproj_or: declared OR-Tools / CVXPY optimisation models as PyTorch layers, trained with
identity-with-projection gradients (Sahoo et al., ICLR 2023) or the rules it is compared with
(every rule of PyEPO: SPO+, blackbox differentiation, perturbed optimisers, Fenchel-Young, I-MLE
and the rest; :mod:`idproj_or.rules.acronyms` has PyEPO's names).

Imports are lazy: ``import idproj_or`` is cheap, and solver workers load only what they use.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys
from typing import TYPE_CHECKING, Any

from .errors import SolverError, SolverWarning, WorkerError


def _quiet_ortools_probe(record: logging.LogRecord) -> bool:
    """A CVXPY whose GLOP/PDLP interfaces refuse the installed OR-Tools (1.8 with 9.15, 1.9 with a
    9.16 that the ortools range allows) logs so at import and at every solver probe. Those
    interfaces are never used here (LinearSolverLayer covers both): drop that message, and only
    that one, from CVXPY's own logger."""
    return "Unrecognized new version of ortools" not in record.getMessage()


class _QuietCvxpyOnImport(importlib.abc.MetaPathFinder):
    """Adds the filter to CVXPY's logger as soon as ``cvxpy.settings`` creates it, before CVXPY
    probes its solvers. The logger is not created earlier: a ``logging.config.dictConfig`` of
    the user's in between would disable it, and CVXPY's other messages with it."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "cvxpy.settings":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_and_quiet(module: Any) -> None:
                exec_module(module)
                logging.getLogger("__cvxpy__").addFilter(_quiet_ortools_probe)

            spec.loader.exec_module = exec_and_quiet  # type: ignore[method-assign]
        return spec


if "cvxpy.settings" in sys.modules:  # imported before this package: its import-time lines are out
    logging.getLogger("__cvxpy__").addFilter(_quiet_ortools_probe)
else:
    sys.meta_path.insert(0, _QuietCvxpyOnImport())

# public name -> (module, attribute); attribute None means the module itself
_LAZY: dict[str, tuple[str, str | None]] = {
    "OptLayer": ("rules.identity", "OptLayer"),
    "ProjectedIdentity": ("rules.identity", "ProjectedIdentity"),
    "Identity": ("rules.identity", "ProjectedIdentity"),  # the same class, under its first name
    "SPOPlus": ("rules.spo", "SPOPlus"),
    "Blackbox": ("rules.blackbox", "Blackbox"),
    "PerturbedOpt": ("rules.perturbed", "PerturbedOpt"),
    "FenchelYoung": ("rules.perturbed", "FenchelYoung"),
    "IMLE": ("rules.imle", "IMLE"),
    "AdaptiveIMLE": ("rules.aimle", "AdaptiveIMLE"),
    "PerturbationGradient": ("rules.pg", "PerturbationGradient"),
    "ConeAligned": ("rules.cave", "ConeAligned"),
    "RegularizedFrankWolfe": ("rules.regularized", "RegularizedFrankWolfe"),
    "RegularizedFenchelYoung": ("rules.regularized", "RegularizedFenchelYoung"),
    "NoiseContrastive": ("rules.contrastive", "NoiseContrastive"),
    "ContrastiveMAP": ("rules.contrastive", "ContrastiveMAP"),
    "PointwiseLTR": ("rules.rank", "PointwiseLTR"),
    "PairwiseLTR": ("rules.rank", "PairwiseLTR"),
    "ListwiseLTR": ("rules.rank", "ListwiseLTR"),
    "BatchInfo": ("batch.results", "BatchInfo"),
    "STATUSES": ("statuses", "STATUSES"),
    "ModelSpec": ("solvers.base", "ModelSpec"),
    "ResidentSolver": ("solvers.base", "ResidentSolver"),
    "DataField": ("solvers.base", "DataField"),
    "Outcome": ("statuses", "Outcome"),
    "CpSatLayer": ("layers.cpsat", "CpSatLayer"),
    "LinearSolverLayer": ("layers.linear", "LinearSolverLayer"),
    "MathOptLayer": ("layers.mathopt", "MathOptLayer"),
    "ModelBuilderLayer": ("layers.mathopt", "ModelBuilderLayer"),
    "CvxpyLayer": ("layers.cvxpy", "CvxpyLayer"),
    "AssignmentLayer": ("layers.assignment", "AssignmentLayer"),
    "TSPLayer": ("layers.tsp", "TSPLayer"),
    "VRPLayer": ("layers.vrp", "VRPLayer"),
    "KnapsackLayer": ("layers.knapsack", "KnapsackLayer"),
    "ShortestPathLayer": ("layers.shortest_path", "ShortestPathLayer"),
    "GridShortestPathLayer": ("layers.grid_path", "GridShortestPathLayer"),
    "TopKLayer": ("layers.sorting", "TopKLayer"),
    "RankingLayer": ("layers.sorting", "RankingLayer"),
    "problems": ("problems", None),
    "data": ("data", None),
    "metrics": ("metrics", None),
    "acronyms": ("rules.acronyms", None),
}

__all__ = ["SolverError", "SolverWarning", "WorkerError", *_LAZY]

if TYPE_CHECKING:
    from . import data, metrics, problems
    from .batch.results import BatchInfo
    from .layers.assignment import AssignmentLayer
    from .layers.cpsat import CpSatLayer
    from .layers.cvxpy import CvxpyLayer
    from .layers.grid_path import GridShortestPathLayer
    from .layers.knapsack import KnapsackLayer
    from .layers.linear import LinearSolverLayer
    from .layers.mathopt import MathOptLayer, ModelBuilderLayer
    from .layers.shortest_path import ShortestPathLayer
    from .layers.sorting import RankingLayer, TopKLayer
    from .layers.tsp import TSPLayer
    from .layers.vrp import VRPLayer
    from .rules import acronyms
    from .rules.aimle import AdaptiveIMLE
    from .rules.blackbox import Blackbox
    from .rules.cave import ConeAligned
    from .rules.contrastive import ContrastiveMAP, NoiseContrastive
    from .rules.identity import OptLayer, ProjectedIdentity
    from .rules.identity import ProjectedIdentity as Identity
    from .rules.imle import IMLE
    from .rules.perturbed import FenchelYoung, PerturbedOpt
    from .rules.pg import PerturbationGradient
    from .rules.rank import ListwiseLTR, PairwiseLTR, PointwiseLTR
    from .rules.regularized import RegularizedFenchelYoung, RegularizedFrankWolfe
    from .rules.spo import SPOPlus
    from .solvers.base import DataField, ModelSpec, ResidentSolver
    from .statuses import Outcome


def __getattr__(name: str) -> Any:
    if name == "__version__":  # pyproject.toml's, from the installed metadata (importlib.metadata: ~20 ms)
        from importlib.metadata import PackageNotFoundError, version

        try:
            globals()[name] = version(__name__)
        except PackageNotFoundError:
            raise AttributeError(f"{__name__} has no package metadata: install it (pip install -e .)") from None
        return globals()[name]
    if name not in _LAZY:
        raise AttributeError(f"module 'idproj_or' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(f".{module}", __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
