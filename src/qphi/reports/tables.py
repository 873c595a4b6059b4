"""Plain-text tables of per-level results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from qphi.evaluation.codebook_health import CodebookHealth


class LevelNumbers(Protocol):
    """What every evaluation reports per level (PFA levels, natural-language levels)."""

    phi_mean: float
    phi_bits_mean: float
    nll_mean: float
    n_tokens: int


def level_table(levels: Mapping[str, LevelNumbers]) -> str:
    """One line per level: PHi (nats, bits) and next-token loss."""
    lines = [f"{'level':<16} {'PHi nats':>10} {'PHi bits':>10} {'NLL nats':>10} {'tokens':>8}"]
    for name, v in levels.items():
        lines.append(f"{name:<16} {v.phi_mean:>10.3f} {v.phi_bits_mean:>10.3f} {v.nll_mean:>10.3f} {v.n_tokens:>8d}")
    return "\n".join(lines)


def health_table(health: CodebookHealth) -> str:
    """One line per codebook stage: used codes, perplexity, usage entropy and the prior's mean
    code length in bits."""
    lines = [f"{'stage':<16} {'used/K':>10} {'perplexity':>10} {'H(usage)':>10} {'code len':>10}"]
    for s in health.stages:
        code_length = "–" if s.code_length_bits is None else f"{s.code_length_bits:.3f}"
        lines.append(
            f"{s.stage:<16} {f'{s.used_codes}/{s.num_codes}':>10} {s.perplexity:>10.2f} "
            f"{s.usage_entropy_bits:>10.3f} {code_length:>10}"
        )
    return "\n".join(lines)
