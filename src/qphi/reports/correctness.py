"""The reasoning-correctness report: the paper's MATH figure and the table the command prints."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from qphi.evaluation.correctness import LevelAnalysis
from qphi.evaluation.stats import Estimate
from qphi.reports.plots import Band, selection_chances

ESTIMATES = {
    "highest_phi": "highest PHi",
    "lowest_nll": "lowest next-token loss",
    "random": "random pick",
    "partial_correlation": "partial correlation",
}


def plot_correctness(path: str | os.PathLike, levels: Mapping[str, LevelAnalysis], title: str = "") -> None:
    """Chance of a correct pick per difficulty level (levels with at least two mixed questions;
    'all' alone when no level has them) and the partial correlation beside it."""
    shown = {name: level for name, level in levels.items() if level.highest_phi is not None}
    names = [name for name in shown if name != "all"] or list(shown)

    def band(key: str) -> Band:
        missing = Estimate(math.nan, math.nan, math.nan, 0)
        estimates = [getattr(shown[name], key) or missing for name in names]
        return [e.value for e in estimates], [e.low for e in estimates], [e.high for e in estimates]

    selection_chances(
        path,
        names,
        {ESTIMATES[key]: band(key) for key in ("highest_phi", "lowest_nll", "random")},
        correlation=band("partial_correlation"),
        xlabel="difficulty level" if names != ["all"] else "",
        title=title,
    )


def correctness_table(levels: Mapping[str, LevelAnalysis]) -> str:
    """One line per level: counts, accuracy (strict, flexible) and the four estimates ('-' where there is none);
    then a note for every interval that left out resamples whose statistic was not finite."""
    lines = [
        f"{'level':<6} {'questions':>9} {'mixed':>6} {'accuracy':>9} {'flexible':>9} {'highest PHi':>12} "
        f"{'lowest NLL':>11} {'random':>7} {'partial r':>10}"
    ]
    notes = []
    for name, level in levels.items():
        estimates = [getattr(level, key) for key in ESTIMATES]
        cells = [f"{e.value:.3f}" if e is not None else "-" for e in estimates]
        flexible = "-" if level.accuracy_flexible is None else f"{level.accuracy_flexible:.3f}"
        lines.append(
            f"{name:<6} {level.n_questions:>9d} {level.n_mixed:>6d} {level.accuracy:>9.3f} {flexible:>9} "
            f"{cells[0]:>12} {cells[1]:>11} {cells[2]:>7} {cells[3]:>10}"
        )
        for key, e in zip(ESTIMATES, estimates, strict=True):
            if e is not None and e.nonfinite:
                notes.append(
                    f"level {name}, {ESTIMATES[key]}: {e.nonfinite} bootstrap resamples gave no finite value "
                    "and are left out of its interval"
                )
    return "\n".join(lines + notes)
