"""Hand-made per-run analyses for the tests of pooling and reports."""

from __future__ import annotations

import math

from qphi.evaluation.code_stream import LevelCoding
from qphi.evaluation.pfa_levels import LevelSummary
from qphi.evaluation.results import RunAnalysis
from qphi.experiments.analysis import VERSION

LEVELS = ("mem_seq", "mem_prog", "icll", "random")


def analysis(seed: int, phi: dict[str, float], coded: dict[str, float] | None = None, kl: float | None = None):
    """A run's analysis: PHi (nats) per level, next-token loss 2 everywhere, the code stream's
    size in bits per character where given, and the diagnostic `kl` (bits) on every level."""
    levels = {
        name: LevelSummary(phi_mean=value, phi_bits_mean=value / math.log(2), nll_mean=2.0 + seed, phi_per_stage=[value],
                           n_tokens=100, n_blocks=4, kl_bits_mean=kl)
        for name, value in phi.items()
    }  # fmt: skip
    coding = None
    if coded is not None:
        coding = {name: LevelCoding(bits, bits * 0.99, 1 / 0.99, 100) for name, bits in coded.items()}
    return RunAnalysis(VERSION, 10, "gumbel", seed, levels, coding, None, None, [])
