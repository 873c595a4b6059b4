"""Reproduce the findings on the PFA suite (SPEC §5.1–5.4).

For every bottleneck and seed: train a model with a PHi layer on the learning levels (or
resume / reuse a run already in the output folder), evaluate it on fresh samples of each
level, and measure coding, codebook health and in-context-learning competence. Then pool
over seeds: the key-results table, level plots, PHi against next-token loss, PHi against
automaton complexity controlling for next-token loss, and one HTML report.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from qphi.bottlenecks import registry
from qphi.errors import QPhiError
from qphi.evaluation.complexity import complexity_analysis
from qphi.experiments.analysis import RunAnalysis, analyse_run
from qphi.experiments.runs import claim, ensure_trained, eval_device, pool_levels, pool_stages
from qphi.io import write_json, write_text
from qphi.reports import html as report_html
from qphi.reports import plots
from qphi.reports.key_results import LEVEL_ORDER, LEVEL_TITLES, key_results, markdown_tables
from qphi.training import load_run_config

DEFAULT_SEEDS = {"cpu-quick": 1, "cpu": 3, "paper": 3}


def run_dir_for(out: Path, bottleneck: str, seed: int) -> Path:
    return out / "runs" / f"{bottleneck}-seed{seed}"


def reproduce(
    preset: str,
    out: Path,
    seeds: int | None = None,
    bottlenecks: tuple[str, ...] | None = None,
    device: str = "auto",
    overrides: tuple[str, ...] = (),
    icl_prompts: int = 64,
) -> dict[str, Any]:
    """Train/evaluate every bottleneck × seed in `out/runs`, then write the reports into `out`."""
    bottlenecks = bottlenecks or registry.names()
    unknown = [b for b in bottlenecks if b not in registry.names()]
    if unknown:
        raise QPhiError(f"unknown bottleneck(s) {', '.join(unknown)}: choose from {', '.join(registry.names())}")
    if icl_prompts < 1:
        raise QPhiError(f"icl_prompts={icl_prompts}: the reproduction measures ICL competence on at least 1 prompt")
    if seeds is not None and seeds < 1:
        raise QPhiError(f"--seeds must be >= 1, got {seeds}: leave it out for the preset's default")
    num_seeds = seeds or DEFAULT_SEEDS.get(preset, 3)
    analysis_device = eval_device(device)
    claim(out, "reproduce.json", {"preset": preset, "overrides": list(overrides)}, "reproduction")
    jobs = [(b, s) for b in bottlenecks for s in range(num_seeds)]
    analyses: dict[str, list[RunAnalysis]] = {b: [] for b in bottlenecks}
    started = time.perf_counter()
    for index, (bottleneck, seed) in enumerate(tqdm(jobs, desc="reproduce", unit="run", position=0), start=1):
        config = load_run_config(preset, [f"train.seed={seed}", f"train.device={device}", *overrides], bottleneck)
        run_dir = run_dir_for(out, bottleneck, seed)
        ensure_trained(config, run_dir, f"[{index}/{len(jobs)}] {bottleneck} seed {seed}")
        analyses[bottleneck].append(analyse_run(run_dir, analysis_device, icl_prompts))
    results = write_reports(preset, out, analyses)
    results["wall_time_s"] = time.perf_counter() - started
    write_json(out / "key_results.json", results)
    print(markdown_tables(results))
    print(f"reports in {out} ({results['wall_time_s'] / 60:.1f} min)")
    return results


def write_reports(preset: str, out: Path, analyses: dict[str, list[RunAnalysis]]) -> dict[str, Any]:
    """key_results.{json,md}, level plots, phi_vs_nll, complexity, ICL competence, report.html."""
    summaries = {b: [a.summary for a in runs] for b, runs in analyses.items() if runs}
    results = key_results(preset, summaries)
    complexity = {b: complexity_analysis([a.evaluation for a in runs]) for b, runs in analyses.items() if runs}
    competence = {b: _pool_competence(s) for b, s in summaries.items()}
    coding = {b: pool_levels(s, "coding") for b, s in summaries.items() if s[0]["coding"]}
    health = {b: [r["codebook_health"] for r in s] for b, s in summaries.items() if s[0]["codebook_health"]}
    for name, entry in results["bottlenecks"].items():
        entry["complexity"] = {k: v for k, v in complexity[name].items() if k != "bins"}
        entry["icl_competence"] = competence[name]
        entry["coding"] = coding.get(name)
        entry["codebook_utilisation"] = pool_stages(health[name], "utilisation") if name in health else None
    write_json(out / "key_results.json", results)
    write_text(out / "key_results.md", markdown_tables(results))
    write_json(out / "complexity.json", complexity)
    write_json(out / "icl_competence.json", competence)
    write_json(out / "codebook_health.json", health)
    figures = _plots(out, results, complexity)
    _html(out, results, complexity, figures)
    return results


def _pool_competence(runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_seed = [r["icl_competence"] for r in runs]
    return {
        "accepted_prefix_length_mean": float(np.mean([c["accepted_prefix_length"]["value"] for c in per_seed])),
        "uniform_baseline_mean": float(
            np.mean([c["uniform_baseline_accepted_prefix_length"]["value"] for c in per_seed])
        ),
        "generated_length_mean": float(np.mean([c["generated_length_mean"] for c in per_seed])),
        "per_seed": per_seed,
    }


def _plots(out: Path, results: dict[str, Any], complexity: dict[str, Any]) -> dict[str, str]:
    b = results["bottlenecks"]
    levels = [lv for lv in LEVEL_ORDER if any(lv in e["levels"] for e in b.values())]
    titles = [LEVEL_TITLES[lv] for lv in levels]

    def series(field: str) -> dict[str, tuple[list[float], list[float]]]:
        return {
            registry.title(n): (
                [e["levels"].get(lv, {}).get(f"{field}_mean", math.nan) for lv in levels],
                [e["levels"].get(lv, {}).get(f"{field}_std", 0.0) for lv in levels],
            )
            for n, e in b.items()
        }

    plots.grouped_bars(out / "levels_phi.png", titles, series("phi"), "PHi loss (nats/token)")
    plots.grouped_bars(out / "levels_phi_normalised.png", titles, series("phi_normalised"), "PHi / PHi(Mem. Seq.)")
    plots.grouped_bars(out / "levels_nll.png", titles, series("nll"), "next-token loss (nats/token)")
    points = {
        registry.title(n): {LEVEL_TITLES[lv]: (v["nll_mean"], v["phi_mean"]) for lv, v in e["levels"].items()}
        for n, e in b.items()
    }
    plots.phi_vs_nll(out / "phi_vs_nll.png", points)
    plots.complexity_curves(
        out / "complexity.png", {registry.title(n): c["bins"] for n, c in complexity.items() if "bins" in c}
    )
    return {
        "levels_phi.png": "PHi per level (mean ± std over seeds)",
        "levels_phi_normalised.png": "PHi per level, normalised to Mem. Seq.",
        "levels_nll.png": "Next-token loss per level",
        "phi_vs_nll.png": "PHi against next-token loss per level (the paper's Figure 1 view)",
        "complexity.png": "ICLL tokens: mean PHi per next-token-loss bin, by automaton complexity",
    }


def _html(out: Path, results: dict[str, Any], complexity: dict[str, Any], figures: dict[str, str]) -> None:
    b = results["bottlenecks"]
    levels = [lv for lv in LEVEL_ORDER if any(lv in e["levels"] for e in b.values())]

    def level_rows(field: str) -> list[list[object]]:
        rows = []
        for name, e in b.items():
            cells = []
            for lv in levels:
                v = e["levels"].get(lv)
                cells.append(
                    f"{v[f'{field}_mean']:.3f} ± {v[f'{field}_std']:.3f}" if v and f"{field}_mean" in v else None
                )
            rows.append([registry.title(name), *cells])
        return rows

    header = ["Bottleneck", *(LEVEL_TITLES[lv] for lv in levels)]
    complexity_rows = []
    for name, c in complexity.items():
        p = c.get("partial_controlling_nll", {})
        complexity_rows.append(
            [registry.title(name), c.get("n_blocks"), c.get("pearson"), c.get("spearman"), p.get("value"),
             f"[{p.get('low', math.nan):.3f}, {p.get('high', math.nan):.3f}]", c.get("token_partial_controlling_nll")]
        )  # fmt: skip
    competence_rows = [
        [registry.title(n), e["icl_competence"]["accepted_prefix_length_mean"],
         e["icl_competence"]["uniform_baseline_mean"], e["icl_competence"]["generated_length_mean"]]
        for n, e in b.items()
    ]  # fmt: skip
    coding_rows = []
    for name, e in b.items():
        for lv, v in (e.get("coding") or {}).items():
            phi_bits = e["levels"][lv]["phi_bits_mean"] if lv in e["levels"] else None
            coding_rows.append(
                [
                    registry.title(name),
                    LEVEL_TITLES[lv],
                    phi_bits,
                    v["ideal_bits_per_token"],
                    v["coded_bits_per_token"],
                    v["ratio"],
                ]
            )
    health_rows = [
        [registry.title(n), ", ".join(f"{u:.2f}" for u in e["codebook_utilisation"])]
        for n, e in b.items()
        if e.get("codebook_utilisation")
    ]
    sections = [
        ("PHi per level (nats/token)", report_html.table(header, level_rows("phi"))),
        ("PHi normalised to Mem. Seq.", report_html.table(header, level_rows("phi_normalised"))),
        ("Next-token loss per level (nats/token)", report_html.table(header, level_rows("nll"))),
        ("Figures", "".join(report_html.figure(out / f, caption) for f, caption in figures.items())),
        (
            "PHi and automaton complexity (ICLL blocks)",
            report_html.table(
                ["Bottleneck", "blocks", "Pearson", "Spearman", "partial | NLL", "95 % CI", "token partial | NLL"],
                complexity_rows,
            ),
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
    intro = (
        f"<p>Preset <code>{results['preset']}</code>; {results['units']}; mean ± std over seeds of per-seed means. "
        "Training runs are in <code>runs/</code>; every number here is also in the JSON files beside this page.</p>"
    )
    report_html.write_page(out / "report.html", "qphi — PHi on the PFA learning levels", sections, intro)
