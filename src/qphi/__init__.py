"""qphi: measure in-context computation by predicting a model's own (quantized) hidden states.

The top-level names are imported lazily, so `import qphi.tasks` (e.g. in data-loader worker
processes) does not pay for importing the PHi layer's dependencies.
"""

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "PHiConfig": "qphi.phi",
    "PHiLayer": "qphi.phi",
    "PHiOutput": "qphi.phi",
    "LossWeights": "qphi.phi",
    "PriorConfig": "qphi.phi",
    "VQConfig": "qphi.bottlenecks.vq",
    "QPhiError": "qphi.errors",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'qphi' has no attribute {name!r}")
