"""The reproduction's report: key_results.md, the figures (PNG and SVG) and report.html, all
rendered from the typed results (`KeyResults`, `ComplexityAnalysis`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from qphi.bottlenecks import registry
from qphi.evaluation.complexity import ComplexityAnalysis
from qphi.evaluation.results import LEVEL_ORDER, KeyResults
from qphi.io import write_text
from qphi.reports import html as report_html
from qphi.reports import plots
from qphi.reports.key_results import (
    KL_TITLE,
    LEVEL_TITLES,
    Table,
    coded_table,
    directions_table,
    kl_table,
    level_table,
    markdown_tables,
)

FIGURES = {
    "levels_phi.png": "PHi per level (error bars: std over seeds, where there are several)",
    "levels_phi_normalised.png": "PHi per level, normalised to Mem. Seq.",
    "levels_nll.png": "Next-token loss per level",
    "phi_vs_nll.png": "PHi against next-token loss per level (the paper's Figure 1 view)",
    "complexity.png": "ICLL tokens: mean PHi per next-token-loss bin, by automaton complexity",
}
COMPLEXITY_HEADER = ["Bottleneck", "blocks", "automata", "Pearson", "Spearman", "partial | NLL, seed", "95 % CI",
                     "token partial | NLL, seed"]  # fmt: skip


def write_report(out: Path, results: KeyResults, complexity: Mapping[str, ComplexityAnalysis]) -> None:
    """key_results.md, the figures of `FIGURES` and report.html into `out`."""
    write_text(out / "key_results.md", markdown_tables(results))
    _plots(out, results, complexity)
    _html(out, results, complexity)


def _levels(results: KeyResults) -> tuple[str, ...]:
    return tuple(lv for lv in LEVEL_ORDER if any(lv in b.levels for b in results.bottlenecks.values()))


def _plots(out: Path, results: KeyResults, complexity: Mapping[str, ComplexityAnalysis]) -> None:
    levels = _levels(results)
    titles = [LEVEL_TITLES[lv] for lv in levels]

    def series(field: str) -> dict[str, tuple[list[float], list[float] | None]]:
        bars = {}
        for name, b in results.bottlenecks.items():
            spreads = [b.levels[lv].spread(field) if lv in b.levels else None for lv in levels]
            means = [math.nan if s is None else s.mean for s in spreads]
            errors = [s.std if s is not None and s.std is not None else 0.0 for s in spreads]
            spread = any(s is not None and s.std is not None for s in spreads)
            bars[registry.title(name)] = (means, errors if spread else None)  # one seed: no error bars
        return bars

    plots.grouped_bars(out / "levels_phi.png", titles, series("phi"), "PHi loss (nats/token)")
    plots.grouped_bars(out / "levels_phi_normalised.png", titles, series("phi_normalised"), "PHi / PHi(Mem. Seq.)")
    plots.grouped_bars(out / "levels_nll.png", titles, series("nll"), "next-token loss (nats/token)")
    points = {
        registry.title(n): {LEVEL_TITLES[lv]: (v.nll_mean, v.phi_mean) for lv, v in b.levels.items()}
        for n, b in results.bottlenecks.items()
    }
    plots.phi_vs_nll(out / "phi_vs_nll.png", points)
    plots.complexity_curves(
        out / "complexity.png", {registry.title(n): c.bins for n, c in complexity.items() if c.bins is not None}
    )


def _table(table: Table | None) -> str:
    return "" if table is None else report_html.table(*table)


def _html(out: Path, results: KeyResults, complexity: Mapping[str, ComplexityAnalysis]) -> None:
    b = results.bottlenecks
    levels = _levels(results)
    complexity_rows = []
    for name, c in complexity.items():
        p = c.partial_controlling_nll
        interval = None if p is None else f"[{p.low:.3f}, {p.high:.3f}]"
        complexity_rows.append(
            [registry.title(name), c.n_blocks, c.n_automata, c.pearson, c.spearman, None if p is None else p.value,
             interval, c.token_partial_controlling_nll]
        )  # fmt: skip
    competence_rows = [
        [registry.title(n), e.icl_competence.accepted_prefix_length_mean, e.icl_competence.uniform_baseline_mean,
         e.icl_competence.generated_length_mean]
        for n, e in b.items()
        if e.icl_competence is not None
    ]  # fmt: skip
    coding_rows = [
        [registry.title(name), LEVEL_TITLES[lv], e.levels[lv].phi_bits_mean if lv in e.levels else None,
         v.ideal_bits_per_token, v.coded_bits_per_token, v.ratio]
        for name, e in b.items()
        for lv, v in (e.coding or {}).items()
    ]  # fmt: skip
    health_rows = [
        [registry.title(n), ", ".join(f"{u:.2f}" for u in e.codebook_utilisation)]
        for n, e in b.items()
        if e.codebook_utilisation
    ]
    kl = kl_table(results, levels)
    sections = [
        ("PHi per level (nats/token)", _table(level_table(b, "phi", levels))),
        ("PHi normalised to Mem. Seq.", _table(level_table(b, "phi_normalised", levels))),
        ("Next-token loss per level (nats/token)", _table(level_table(b, "nll", levels))),
        (
            "Per seed: the published directions",
            _table(directions_table(results))
            + '<p class="note">Seeds in which ICLL has the highest PHi of Mem. Seq., Mem. Prog., ICLL and Random, '
            "and Random the lowest; ICLL ÷ Mem. Seq. of each seed.</p>",
        ),
        (
            "Range-coded code stream ÷ Σ PHi",
            _table(coded_table(results, levels=levels))
            + '<p class="note">The size of the code stream the upper layers receive, range-coded block by block '
            "under the learned prior, over the PHi the layer reports, per seed.</p>",
        ),
        (
            "Range coder's overhead beyond Σ PHi (bits per block)",
            _table(coded_table(results, "coder_overhead_bits", levels))
            + '<p class="note">What the coder pays beyond Σ PHi for each block\'s stream: at most the flush of '
            "one 32-bit word, plus rounding. Where PHi is small, this fixed cost makes the ratio above large.</p>",
        ),
        *([(KL_TITLE, _table(kl))] if kl else []),
        ("Figures", "".join(report_html.figure(out / f, caption) for f, caption in FIGURES.items())),
        (
            "PHi and automaton complexity (ICLL blocks)",
            report_html.table(COMPLEXITY_HEADER, complexity_rows)
            + '<p class="note">Partial correlation of PHi with the automaton\'s description length, controlling '
            "for next-token loss and for the model (one indicator per seed); the interval resamples automata, "
            "each with the blocks every seed's model scored on it (cluster bootstrap, 1000 resamples).</p>",
        ),
        (
            "In-context-learning competence",
            report_html.table(
                ["Bottleneck", "accepted prefix", "uniform baseline", "generated length"], competence_rows
            ),
        ),
        (
            "Coding the code stream under the learned prior (bits/token)",
            report_html.table(
                ["Bottleneck", "Level", "PHi", "Σ −log2 p(code)", "range-coded", "coded / ideal"], coding_rows
            )
            + '<p class="note">For Gumbel bottlenecks PHi is KL(q‖p) of the soft posterior; the coded stream is the '
            "argmax codes, whose ideal length is Σ −log2 p(code).</p>",
        ),
        ("Codebook utilisation per stage", report_html.table(["Bottleneck", "utilisation"], health_rows)),
    ]
    seeds = sorted({len(e.seeds) for e in b.values()})
    spread = "mean ± std over seeds of per-seed means" if max(seeds) > 1 else "one seed: no spread to show"
    intro = (
        f"<p>Preset <code>{results.preset}</code>; {results.units}; {'/'.join(map(str, seeds))} seed(s), {spread}. "
        "Training runs are in <code>runs/</code>; every number here is also in the JSON files beside this page.</p>"
    )
    report_html.write_page(out / "report.html", "qphi — PHi on the PFA learning levels", sections, intro)
