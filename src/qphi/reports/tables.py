"""Plain-text and Markdown tables of per-level results."""

from __future__ import annotations

from typing import Any


def level_table(levels: dict[str, dict[str, Any]]) -> str:
    """One line per level: PHi (nats, bits) and next-token loss."""
    lines = [f"{'level':<16} {'PHi nats':>10} {'PHi bits':>10} {'NLL nats':>10} {'tokens':>8}"]
    for name, v in levels.items():
        lines.append(
            f"{name:<16} {v['phi_mean']:>10.3f} {v['phi_bits_mean']:>10.3f} {v['nll_mean']:>10.3f} {v['n_tokens']:>8d}"
        )
    return "\n".join(lines)


def health_table(health: dict[str, Any]) -> str:
    """One line per codebook stage (`CodebookHealth.to_dict()`): used codes, perplexity, usage
    entropy and the prior's mean code length in bits."""
    lines = [f"{'stage':<16} {'used/K':>10} {'perplexity':>10} {'H(usage)':>10} {'code len':>10}"]
    for s in health["stages"]:
        code_length = "–" if s["code_length_bits"] is None else f"{s['code_length_bits']:.3f}"
        lines.append(
            f"{s['stage']:<16} {str(s['used_codes']) + '/' + str(s['num_codes']):>10} {s['perplexity']:>10.2f} "
            f"{s['usage_entropy_bits']:>10.3f} {code_length:>10}"
        )
    return "\n".join(lines)
