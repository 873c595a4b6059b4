"""What an evaluation measures on the code stream of a discrete PHi layer (SPEC §2.5).

`CodeStreamObserver` is an `evaluate_levels` observer: batch by batch it counts codebook
health over the evaluated characters of every level pooled and, when asked, range-codes each
block's codes under the learned prior per level. The trainer's evaluations take health only
(cheap: counts and the prior's log-probs, already computed); the reproduction and the codebook
sweep also take the coding (a real coder run over every block, and decoded again to verify).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qphi.evaluation.codebook_health import CodebookHealth, CodebookHealthAccumulator
from qphi.evaluation.coding import measure_coding
from qphi.evaluation.pfa_levels import evaluated_positions
from qphi.models import PHiModelOutput
from qphi.tasks import LEVEL_KEYS, Batch


@dataclass(frozen=True)
class LevelCoding:
    """One level's code stream, range-coded block by block under the learned prior (bits per
    evaluated character): what the coder wrote, and Σ −log2 p(code) of the same codes."""

    coded_bits_per_token: float
    ideal_bits_per_token: float
    ratio: float | None  # coded / ideal; None when the ideal length is 0
    tokens: int


class CodeStreamObserver:
    """Codebook health of all evaluated characters and (with `coding`) coded bits per level.

    Only `evaluated_positions` count, the same positions `evaluate_levels` pools PHi over.
    """

    def __init__(self, stage_sizes: Sequence[int], coding: bool = False):
        self.health = CodebookHealthAccumulator(stage_sizes)
        self.coding = coding
        self._coded: dict[int, list[float]] = {}  # level → [coded bits, ideal bits, characters]

    def __call__(self, level: int, batch: Batch, out: PHiModelOutput) -> None:
        mask = evaluated_positions(batch).cpu()
        codes = out.phi.codes.cpu()  # (Q, B, T)
        log_probs = out.phi.prior_params.log_probs().float().cpu()  # (Q, B, T, K)
        self.health.update(codes, log_probs, mask)
        if self.coding:
            report = measure_coding(codes, log_probs, mask)
            tally = self._coded.setdefault(level, [0.0, 0.0, 0.0])
            tally[0] += float(report.coded_bits.sum())
            tally[1] += float(report.ideal_bits.sum())
            tally[2] += float(mask.sum())

    def health_summary(self) -> CodebookHealth:
        return self.health.compute()

    def coding_summary(self) -> dict[str, LevelCoding]:
        """Per level (by its key, e.g. "icll")."""
        return {
            LEVEL_KEYS[level]: LevelCoding(
                coded_bits_per_token=coded / tokens,
                ideal_bits_per_token=ideal / tokens,
                ratio=coded / ideal if ideal else None,
                tokens=int(tokens),
            )
            for level, (coded, ideal, tokens) in sorted(self._coded.items())
        }


def code_stream_observer(stage_sizes: Sequence[int], coding: bool = False) -> CodeStreamObserver | None:
    """An observer for a discrete bottleneck's stage sizes; None for the continuous one (no codes)."""
    return CodeStreamObserver(stage_sizes, coding) if stage_sizes else None
