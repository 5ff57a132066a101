"""idproj_or: declared OR-Tools / CVXPY optimisation models as PyTorch layers, trained with
identity-with-projection gradients (Sahoo et al., ICLR 2023).

Imports are lazy so that solver worker processes never load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import SolverError, WorkerError

__version__ = "0.1.0"

_LAZY = {
    "OptLayer": "layer",
    "CpSatLayer": "adapters.cpsat",
    "BatchInfo": "batch",
}

__all__ = ["SolverError", "WorkerError", *_LAZY]

if TYPE_CHECKING:
    from .adapters.cpsat import CpSatLayer
    from .batch import BatchInfo
    from .layer import OptLayer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'idproj_or' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
