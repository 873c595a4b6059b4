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
