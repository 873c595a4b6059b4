"""The key-results tables (SPEC §5.1) in the thesis's layout: rows = bottlenecks, columns = levels.

Rendered from `KeyResults` as Markdown (key_results.md, the printed table) and as the rows of
report.html's tables, so both show the same cells: mean ± std over seeds, the mean alone for
one seed.
"""

from __future__ import annotations

from collections.abc import Mapping

from qphi.bottlenecks import registry
from qphi.evaluation.results import TABLE_LEVELS, BottleneckResults, KeyResults, Spread

LEVEL_TITLES = {
    "mem_seq": "Mem. Seq.",
    "mem_prog": "Mem. Prog.",
    "fixed_structure": "Fixed Struct.",
    "icll": "ICLL",
    "random": "Random",
    "copy": "Copy",
}

Table = tuple[list[str], list[list[str]]]  # header, rows of cells
KL_TITLE = "KL(q ‖ p) of the posterior (bits/token): a diagnostic beside PHi"


def cell(spread: Spread | None, digits: int = 3) -> str:
    """ "mean ± std", the mean alone when there is no spread (one seed), "–" when absent."""
    if spread is None:
        return "–"
    if spread.std is None:
        return f"{spread.mean:.{digits}f}"
    return f"{spread.mean:.{digits}f} ± {spread.std:.{digits}f}"


def level_table(
    bottlenecks: Mapping[str, BottleneckResults], field: str, levels: tuple[str, ...] = TABLE_LEVELS
) -> Table:
    """One row per bottleneck, one column per level present: `field` of `PooledLevel.spread`."""
    columns = [lv for lv in levels if any(lv in b.levels for b in bottlenecks.values())]
    rows = []
    for name, b in bottlenecks.items():
        cells = [cell(b.levels[lv].spread(field)) if lv in b.levels else "–" for lv in columns]
        rows.append([registry.title(name), *cells])
    return ["Bottleneck", *(LEVEL_TITLES[lv] for lv in columns)], rows


def kl_table(results: KeyResults, levels: tuple[str, ...] = TABLE_LEVELS) -> Table | None:
    """The per-level diagnostic beside PHi (bits), for the bottlenecks that report one; None if none does."""
    reporting = {
        n: b for n, b in results.bottlenecks.items() if any(v.kl_bits_mean is not None for v in b.levels.values())
    }
    return level_table(reporting, "kl_bits", levels) if reporting else None


def coded_table(
    results: KeyResults, field: str = "coded_over_phi", levels: tuple[str, ...] = TABLE_LEVELS
) -> Table | None:
    """Per level, for the bottlenecks with a code stream, the range coder against Σ PHi: `field`
    "coded_over_phi" (coded bits ÷ Σ PHi) or "coder_overhead_bits" (coded − Σ PHi, bits per block);
    None if no bottleneck has a code stream."""
    coded = {n: b for n, b in results.bottlenecks.items() if b.coding}
    return level_table(coded, field, levels) if coded else None


def directions_table(results: KeyResults) -> Table:
    """Per bottleneck: in how many seeds ICLL has the highest PHi of the levels, Random the lowest,
    and each seed's ICLL / Mem. Seq."""

    def seeds(count: int | None, n: int) -> str:
        return "–" if count is None else f"{count} of {n}"

    rows = []
    for name, b in results.bottlenecks.items():
        d = b.directions
        ratios = "–" if d.icll_over_mem_seq is None else ", ".join(f"{r:.2f}" for r in d.icll_over_mem_seq)
        rows.append([registry.title(name), seeds(d.icll_highest, d.n_seeds), seeds(d.random_lowest, d.n_seeds), ratios])
    return ["Bottleneck", "ICLL highest PHi", "Random lowest PHi", "ICLL / Mem. Seq. per seed"], rows


def seeds_note(results: KeyResults) -> str:
    seeds = sorted({len(b.seeds) for b in results.bottlenecks.values()})
    if seeds == [1]:
        return f"Preset `{results.preset}`; one seed per bottleneck: its means, no spread ({results.units})."
    shown = "/".join(map(str, seeds))
    return f"Preset `{results.preset}`; mean ± std over {shown} seed(s) of per-seed means ({results.units})."


def markdown(table: Table) -> str:
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_tables(results: KeyResults) -> str:
    """key_results.md and the printed table: PHi, PHi normalised, next-token loss, the per-seed
    directions, the range coder against Σ PHi (discrete bottlenecks) and the KL diagnostic where present."""
    sections: list[tuple[str, Table | None]] = [
        ("PHi (nats/token)", level_table(results.bottlenecks, "phi")),
        ("PHi normalised to Mem. Seq.", level_table(results.bottlenecks, "phi_normalised")),
        ("Next-token loss (nats/token)", level_table(results.bottlenecks, "nll")),
        ("Per seed: the published directions", directions_table(results)),
        ("Range-coded code stream ÷ Σ PHi", coded_table(results)),
        ("Range coder's overhead beyond Σ PHi (bits per block)", coded_table(results, "coder_overhead_bits")),
        (KL_TITLE, kl_table(results)),
    ]
    out = [f"### {title}\n\n{markdown(table)}\n" for title, table in sections if table is not None]
    return "\n".join(out) + "\n" + seeds_note(results) + "\n"
