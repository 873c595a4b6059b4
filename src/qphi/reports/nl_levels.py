"""The natural-language-levels report: the paper's Figure 1 view, the loss bars and the table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from qphi.evaluation.nl_levels import LevelSummary
from qphi.reports.plots import grouped_bars, phi_vs_nll


def plot_nl_levels(out: str | os.PathLike, levels: Mapping[str, LevelSummary], title: str = "") -> list[Path]:
    """nl_levels.png (PHi against next-token loss per level) and nl_levels_nll.png (the
    next-token loss with and without the PHi layer)."""
    out = Path(out)
    phi_vs_nll(
        out / "nl_levels.png",
        {"PHi layer": {name: (level.nll_mean, level.phi_mean) for name, level in levels.items()}},
        title=title,
    )
    names = list(levels)
    grouped_bars(
        out / "nl_levels_nll.png",
        names,
        {
            "with PHi layer": ([levels[n].nll_mean for n in names], [0.0] * len(names)),
            "base model": ([levels[n].base_nll_mean for n in names], [0.0] * len(names)),
        },
        ylabel="next-token loss (nats/token)",
        title=title,
    )
    return [out / "nl_levels.png", out / "nl_levels_nll.png"]


def nl_levels_table(levels: Mapping[str, LevelSummary]) -> str:
    lines = [f"{'level':<12} {'PHi nats':>10} {'PHi/dim':>8} {'NLL':>7} {'base NLL':>9} {'tokens':>7}"]
    for name, v in levels.items():
        lines.append(
            f"{name:<12} {v.phi_mean:>10.2f} {v.phi_per_dim_mean:>8.4f} {v.nll_mean:>7.3f} "
            f"{v.base_nll_mean:>9.3f} {v.n_tokens:>7d}"
        )
    return "\n".join(lines)
