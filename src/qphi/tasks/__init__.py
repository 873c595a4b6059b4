"""Tasks and data: PFA automata, learning levels, the character tokenizer, packing, real-data loaders."""

from qphi.tasks.levels import (
    LEVEL_KEYS,
    LEVEL_NAMES,
    PFA_LEVELS,
    TRAINING_LEVELS,
    LevelConfig,
    PFALevels,
    Sample,
)
from qphi.tasks.packing import IGNORE_INDEX, Batch, pack_rows, pack_samples
from qphi.tasks.pfa import ALPHABET, PFA, random_pfa
from qphi.tasks.stream import PackedBatches, SampleStream
from qphi.tasks.tokenizer import CharTokenizer

__all__ = [
    "ALPHABET",
    "IGNORE_INDEX",
    "LEVEL_KEYS",
    "LEVEL_NAMES",
    "PFA",
    "PFA_LEVELS",
    "TRAINING_LEVELS",
    "Batch",
    "CharTokenizer",
    "LevelConfig",
    "PFALevels",
    "PackedBatches",
    "Sample",
    "SampleStream",
    "pack_rows",
    "pack_samples",
    "random_pfa",
]
