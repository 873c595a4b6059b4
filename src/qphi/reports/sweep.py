"""The codebook sweep's report: sweep.png (and .svg), sweep.html and the printed table, rendered
from `SweepResult`."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from qphi.evaluation.results import LEVEL_ORDER, Spread, SweepConfiguration, SweepLevel, SweepResult
from qphi.reports import html as report_html
from qphi.reports import plots
from qphi.reports.key_results import LEVEL_TITLES, cell

Number = Callable[[SweepLevel], float | None]  # one number of a level, e.g. its PHi


def _levels(result: SweepResult) -> list[str]:
    return [lv for lv in LEVEL_ORDER if any(lv in c.levels for c in result.configurations)]


def markdown_table(result: SweepResult) -> str:
    """PHi (bits/character) per level and utilisation per stage, one row per configuration."""
    levels = _levels(result)
    lines = [
        "| configuration | K | " + " | ".join(f"PHi {LEVEL_TITLES[lv]}" for lv in levels) + " | utilisation |",
        "|---|---:|" + "---:|" * (len(levels) + 1),
    ]
    for c in result.configurations:
        phi = [f"{c.levels[lv].phi_bits_mean:.3f}" if lv in c.levels else "–" for lv in levels]
        used = ", ".join(f"{s.utilisation:.2f}" for s in c.codebook_health)
        lines.append(f"| {c.label} | {c.codebook_size} | " + " | ".join(phi) + f" | {used} |")
    return "\n".join(lines) + "\nPHi in bits per character (mean over seeds).\n"


def write_sweep_report(out: Path, result: SweepResult) -> None:
    """sweep.png (PHi, next-token loss, coded bits and utilisation against K, with its SVG) and sweep.html."""
    _plot(out / "sweep.png", result)
    _html(out, result)


def _plot(path: Path, result: SweepResult) -> None:
    configurations = result.configurations
    depths = sorted({c.stages for c in configurations})

    def variant(q: int) -> str:
        return f"Q={q}" if len(depths) > 1 else ""

    def per_level(value: Number, error: Number | None = None) -> dict[tuple[str, str], plots.Curve]:
        """value(level) → y, error(level) → its error bar or None (one seed: no error bars)."""
        curves = {}
        for q in depths:
            for lv in _levels(result):
                chosen = [c for c in configurations if c.stages == q and lv in c.levels]
                ys = [value(c.levels[lv]) for c in chosen]
                if chosen and None not in ys:
                    errors = [error(c.levels[lv]) for c in chosen] if error else [None]
                    curves[(LEVEL_TITLES[lv], variant(q))] = (
                        [c.codebook_size for c in chosen],
                        ys,
                        None if None in errors else errors,
                    )
        return curves

    utilisation = {}
    for q in depths:
        chosen = [c for c in configurations if c.stages == q]
        for s in range(max(len(c.codebook_health) for c in chosen)):
            rows = [c for c in chosen if s < len(c.codebook_health)]
            utilisation[(f"stage {s}", variant(q))] = (
                [c.codebook_size for c in rows],
                [c.codebook_health[s].utilisation for c in rows],
                None,
            )
    bits = 1 / math.log(2)
    plots.line_panels(
        path,
        [
            ("PHi (bits/character)", per_level(lambda v: v.phi_bits_mean, lambda v: _scaled(v.phi_std, bits))),
            ("next-token loss (nats/character)", per_level(lambda v: v.nll_mean, lambda v: v.nll_std)),
            ("range-coded code stream (bits/character)", per_level(lambda v: v.coded_bits_per_token)),
            ("codebook utilisation", utilisation),
        ],
        "codebook size (codes per stage; FSQ: ∏ levels)",
    )


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _html(out: Path, result: SweepResult) -> None:
    levels = _levels(result)
    configurations = result.configurations

    def level_rows(spread: Callable[[SweepLevel], Spread | float | None]) -> list[list[object]]:
        """spread(level) → a `Spread` or a number, per configuration and level."""

        def shown(c: SweepConfiguration, lv: str) -> object:
            if lv not in c.levels:
                return None
            value = spread(c.levels[lv])
            return cell(value) if isinstance(value, Spread) else value

        return [[c.label, c.codebook_size, *(shown(c, lv) for lv in levels)] for c in configurations]

    def coded(level: SweepLevel) -> float | None:
        return level.coded_bits_per_token

    header = ["Configuration", "K", *(LEVEL_TITLES[lv] for lv in levels)]
    health_rows = [
        [c.label, s, c.stage_sizes[s], h.utilisation, h.perplexity, h.dead_codes, h.usage_entropy_bits,
         h.prior_entropy_bits, h.code_length_bits]
        for c in configurations
        for s, h in enumerate(c.codebook_health)
    ]  # fmt: skip
    health_header = ["Configuration", "stage", "K_s", "utilisation", "perplexity", "dead codes", "H(usage) bits",
                     "prior entropy bits", "code length bits"]  # fmt: skip
    sections = [
        ("Figure", report_html.figure(out / "sweep.png", "PHi, next-token loss, coded bits and utilisation against K")),
        ("PHi per level (nats/character)", report_html.table(header, level_rows(lambda v: v.spread("phi")))),
        (
            "Next-token loss per level (nats/character)",
            report_html.table(header, level_rows(lambda v: v.spread("nll"))),
        ),
        (
            "Range-coded code stream per level (bits/character)",
            report_html.table(header, level_rows(coded))
            + '<p class="note">Σ −log2 p(code) of the same codes: ideal_bits_per_token in sweep.json.</p>',
        ),
        ("Codebook health per stage (means over seeds)", report_html.table(health_header, health_rows)),
    ]
    seeds = sorted({len(c.seeds) for c in configurations})
    intro = (
        f"<p>Bottleneck <code>{result.bottleneck}</code>, preset <code>{result.preset}</code>, "
        f"{'/'.join(map(str, seeds))} seed(s) per configuration; every number is also in "
        "<code>sweep.json</code>. Runs are in <code>runs/</code>.</p>"
    )
    report_html.write_page(out / "sweep.html", "qphi — codebook scaling", sections, intro)
