"""Tasks and data: PFA automata, learning levels, the character tokenizer, packing, real-data loaders.

The names below are imported lazily, so light modules of this package (the data-file helpers
the command line's `qphi data` uses) load without torch.
"""

from typing import Any

_EXPORTS = {
    "LEVEL_KEYS": "qphi.tasks.levels",
    "LEVEL_NAMES": "qphi.tasks.levels",
    "PFA_LEVELS": "qphi.tasks.levels",
    "TRAINING_LEVELS": "qphi.tasks.levels",
    "LevelConfig": "qphi.tasks.levels",
    "PFALevels": "qphi.tasks.levels",
    "Sample": "qphi.tasks.levels",
    "IGNORE_INDEX": "qphi.tasks.packing",
    "Batch": "qphi.tasks.packing",
    "pack_rows": "qphi.tasks.packing",
    "pack_samples": "qphi.tasks.packing",
    "ALPHABET": "qphi.tasks.pfa",
    "PFA": "qphi.tasks.pfa",
    "random_pfa": "qphi.tasks.pfa",
    "PackedBatches": "qphi.tasks.stream",
    "SampleStream": "qphi.tasks.stream",
    "CharTokenizer": "qphi.tasks.tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'qphi.tasks' has no attribute {name!r}")
