"""The codebook-scaling experiment (SPEC §5.7): PHi, next-token loss, code usage and the
range-coded size of the code stream as functions of the codebook size K (and the RQ depth Q).

One run per configuration and seed under `out/runs` — trained, resumed or reused exactly as
the reproduction does — then the same per-run analysis (`analyse_run`, without the ICL
competence), pooled over seeds into sweep.json, sweep.png and sweep.html.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from qphi.bottlenecks import registry
from qphi.errors import QPhiError
from qphi.evaluation.codebook_health import HEALTH_SCALARS
from qphi.experiments.analysis import analyse_run
from qphi.experiments.runs import claim, ensure_trained, eval_device, pool_levels, pool_stages
from qphi.io import write_json
from qphi.reports import html as report_html
from qphi.reports import plots
from qphi.reports.key_results import LEVEL_ORDER, LEVEL_TITLES, key_results
from qphi.training import RunConfig, load_run_config

# what the sweep sets itself: an override of one of these would silently change every run
SWEPT_KEYS = ("phi.bottleneck", "phi.codebook_size", "phi.num_stages", "phi.fsq_levels", "train.seed", "train.device")


@dataclass(frozen=True)
class SweepPoint:
    """One configuration of the sweep: a bottleneck with a codebook of about `size` codes (per
    stage) and `stages` stages (for bottlenecks with a depth axis)."""

    bottleneck: str
    size: int
    stages: int = 1

    @property
    def label(self) -> str:
        depth = registry.config_class(self.bottleneck).depth_axis
        return f"{self.bottleneck}-K{self.size}" + (f"-Q{self.stages}" if depth else "")

    def configure(self, config: RunConfig) -> RunConfig:
        """`config` (with this point's bottleneck) with its codebook sized for this point."""
        bottleneck = config.phi.bottleneck
        sized = bottleneck.sized(self.size, self.stages if bottleneck.depth_axis else None)
        return config.replace(phi=config.phi.replace(bottleneck=sized))


def sweep_points(bottleneck: str, sizes: tuple[int, ...], stages: tuple[int, ...] = (1,)) -> list[SweepPoint]:
    """Every size × depth, sizes ascending (depths only for bottlenecks with a depth axis)."""
    discrete = registry.discrete_names()
    if bottleneck not in discrete:
        raise QPhiError(f"the codebook sweep needs a discrete bottleneck: choose one of {', '.join(discrete)}")
    if not sizes or min(sizes) < 2 or len(set(sizes)) != len(sizes):
        raise QPhiError(f"--sizes must list distinct codebook sizes >= 2, got {list(sizes)}: e.g. --sizes 16 64 256")
    if not stages or min(stages) < 1:
        raise QPhiError(f"--stages must list depths >= 1, got {list(stages)}: e.g. --stages 1 2 4")
    if not registry.config_class(bottleneck).depth_axis and tuple(stages) != (1,):
        raise QPhiError(f"--stages sets the depth of the residual bottleneck; {bottleneck} has one stage: drop it")
    return [SweepPoint(bottleneck, k, q) for q in sorted(set(stages)) for k in sorted(sizes)]


def sweep(
    preset: str,
    out: Path,
    bottleneck: str,
    sizes: tuple[int, ...],
    stages: tuple[int, ...] | None = None,
    seeds: int = 1,
    device: str = "auto",
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train/analyse every configuration × seed in `out/runs`, then write sweep.{json,png,html}.

    `stages` (residual only) defaults to the preset's depth. Interrupted? Call it again with the
    same arguments: finished runs are reused, a stopped one resumes from its last checkpoint.
    """
    swept = sorted({o.partition("=")[0].strip() for o in overrides} & set(SWEPT_KEYS))
    if swept:
        raise QPhiError(f"the sweep sets {', '.join(swept)} itself: use --bottleneck/--sizes/--stages/--seeds instead")
    if seeds < 1:
        raise QPhiError(f"--seeds must be >= 1, got {seeds}: pass --seeds 1 or more")
    if stages is None and registry.config_class(bottleneck).depth_axis:
        stages = (load_run_config(preset, list(overrides), bottleneck).phi.bottleneck.depth(),)
    points = sweep_points(bottleneck, tuple(sizes), tuple(stages or (1,)))
    analysis_device = eval_device(device)
    claim(out, "sweep_config.json", {"preset": preset, "bottleneck": bottleneck, "overrides": list(overrides)}, "sweep")
    jobs = [(p, s) for p in points for s in range(seeds)]
    summaries: dict[SweepPoint, list[dict[str, Any]]] = {p: [] for p in points}
    configs: dict[SweepPoint, RunConfig] = {}
    started = time.perf_counter()
    for index, (point, seed) in enumerate(tqdm(jobs, desc="sweep", unit="run", position=0), start=1):
        config = point.configure(
            load_run_config(preset, [f"train.seed={seed}", f"train.device={device}", *overrides], bottleneck)
        )
        configs[point] = config
        run_dir = out / "runs" / f"{point.label}-seed{seed}"
        ensure_trained(config, run_dir, f"[{index}/{len(jobs)}] {point.label} seed {seed}")
        summaries[point].append(analyse_run(run_dir, analysis_device, icl_prompts=0).summary)
    results = sweep_results(preset, bottleneck, summaries, configs)
    results["wall_time_s"] = time.perf_counter() - started
    write_sweep_reports(out, results)
    print(markdown_table(results))
    print(f"reports in {out} ({results['wall_time_s'] / 60:.1f} min)")
    return results


def sweep_results(
    preset: str,
    bottleneck: str,
    summaries: dict[SweepPoint, list[dict[str, Any]]],
    configs: dict[SweepPoint, RunConfig],
) -> dict[str, Any]:
    """Per configuration, pooled over seeds: PHi and next-token loss per level (mean ± std), coded
    bits per level and codebook health per stage (means)."""
    pooled = key_results(preset, {p.label: runs for p, runs in summaries.items()})["bottlenecks"]
    configurations = []
    for point, runs in summaries.items():
        levels = pooled[point.label]["levels"]
        for level, coding in pool_levels(runs, "coding").items():
            if level in levels:
                levels[level].update(coding)
        health = [r["codebook_health"] for r in runs]
        stage_sizes = [s["num_codes"] for s in health[0]["stages"]]
        per_stage = {key: pool_stages(health, key) for key in HEALTH_SCALARS}
        configurations.append(
            {
                "label": point.label,
                "bottleneck": point.bottleneck,
                "size": point.size,
                "codebook_size": configs[point].phi.bottleneck.sweep_size,
                "stages": point.stages,
                "options": configs[point].phi.bottleneck.model_dump(mode="json"),
                "stage_sizes": stage_sizes,
                "capacity_bits": float(sum(np.log2(stage_sizes))),
                "seeds": [r["seed"] for r in runs],
                "steps": runs[0]["step"],
                "levels": levels,
                "codebook_health": [
                    {key: per_stage[key][s] for key in HEALTH_SCALARS} for s in range(len(stage_sizes))
                ],
            }
        )
    return {"preset": preset, "bottleneck": bottleneck, "units": UNITS, "configurations": configurations}


UNITS = (
    "phi_mean/nll_mean: nats per character; phi_bits_mean, coded_bits_per_token, ideal_bits_per_token: bits per "
    "character; codebook_health: per stage, means over seeds"
)


def _levels(results: dict[str, Any]) -> list[str]:
    return [lv for lv in LEVEL_ORDER if any(lv in c["levels"] for c in results["configurations"])]


def markdown_table(results: dict[str, Any]) -> str:
    """PHi (bits/character) per level and utilisation per stage, one row per configuration."""
    levels = _levels(results)
    lines = [
        "| configuration | K | " + " | ".join(f"PHi {LEVEL_TITLES[lv]}" for lv in levels) + " | utilisation |",
        "|---|---:|" + "---:|" * (len(levels) + 1),
    ]
    for c in results["configurations"]:
        phi = [f"{c['levels'][lv]['phi_bits_mean']:.3f}" if lv in c["levels"] else "–" for lv in levels]
        used = ", ".join(f"{s['utilisation']:.2f}" for s in c["codebook_health"])
        lines.append(f"| {c['label']} | {c['codebook_size']} | " + " | ".join(phi) + f" | {used} |")
    return "\n".join(lines) + "\nPHi in bits per character (mean over seeds).\n"


def write_sweep_reports(out: Path, results: dict[str, Any]) -> None:
    """sweep.json, sweep.png (PHi, next-token loss, coded bits and utilisation against K), sweep.html."""
    write_json(out / "sweep.json", results)
    _plot(out / "sweep.png", results)
    _html(out, results)


def _plot(path: Path, results: dict[str, Any]) -> None:
    configurations = results["configurations"]
    depths = sorted({c["stages"] for c in configurations})

    def variant(q: int) -> str:
        return f"Q={q}" if len(depths) > 1 else ""

    def per_level(field: str, error: str | None = None, error_scale: float = 1.0) -> dict:
        curves = {}
        for q in depths:
            chosen = [c for c in configurations if c["stages"] == q]
            for lv in _levels(results):
                rows = [c["levels"][lv] | {"K": c["codebook_size"]} for c in chosen if field in c["levels"].get(lv, {})]
                if rows:
                    curves[(LEVEL_TITLES[lv], variant(q))] = (
                        [r["K"] for r in rows],
                        [r[field] for r in rows],
                        [r[error] * error_scale if error else 0.0 for r in rows],
                    )
        return curves

    utilisation = {}
    for q in depths:
        chosen = [c for c in configurations if c["stages"] == q]
        for s in range(max(len(c["codebook_health"]) for c in chosen)):
            rows = [c for c in chosen if s < len(c["codebook_health"])]
            utilisation[(f"stage {s}", variant(q))] = (
                [c["codebook_size"] for c in rows],
                [c["codebook_health"][s]["utilisation"] for c in rows],
                [0.0] * len(rows),
            )
    x_label = "codebook size (codes per stage; FSQ: ∏ levels)"
    plots.line_panels(
        path,
        [
            ("PHi (bits/character)", per_level("phi_bits_mean", "phi_std", 1 / math.log(2))),
            ("next-token loss (nats/character)", per_level("nll_mean", "nll_std")),
            ("range-coded code stream (bits/character)", per_level("coded_bits_per_token")),
            ("codebook utilisation", utilisation),
        ],
        x_label,
    )


def _html(out: Path, results: dict[str, Any]) -> None:
    levels = _levels(results)
    configurations = results["configurations"]

    def level_rows(field: str, spread: str | None = None) -> list[list[object]]:
        rows = []
        for c in configurations:
            cells: list[object] = []
            for lv in levels:
                v = c["levels"].get(lv, {})
                if field not in v:
                    cells.append(None)
                elif spread and len(c["seeds"]) > 1:
                    cells.append(f"{v[field]:.3f} ± {v[spread]:.3f}")
                else:
                    cells.append(v[field])
            rows.append([c["label"], c["codebook_size"], *cells])
        return rows

    header = ["Configuration", "K", *(LEVEL_TITLES[lv] for lv in levels)]
    health_rows = [
        [c["label"], s, c["stage_sizes"][s], *(h[key] for key in HEALTH_SCALARS)]
        for c in configurations
        for s, h in enumerate(c["codebook_health"])
    ]
    health_header = ["Configuration", "stage", "K_s", "utilisation", "perplexity", "dead codes", "H(usage) bits",
                     "prior entropy bits", "code length bits"]  # fmt: skip
    sections = [
        ("Figure", report_html.figure(out / "sweep.png", "PHi, next-token loss, coded bits and utilisation against K")),
        ("PHi per level (nats/character)", report_html.table(header, level_rows("phi_mean", "phi_std"))),
        ("Next-token loss per level (nats/character)", report_html.table(header, level_rows("nll_mean", "nll_std"))),
        (
            "Range-coded code stream per level (bits/character)",
            report_html.table(header, level_rows("coded_bits_per_token"))
            + '<p class="note">Σ −log2 p(code) of the same codes: ideal_bits_per_token in sweep.json.</p>',
        ),
        ("Codebook health per stage (means over seeds)", report_html.table(health_header, health_rows)),
    ]
    seeds = sorted({len(c["seeds"]) for c in configurations})
    intro = (
        f"<p>Bottleneck <code>{results['bottleneck']}</code>, preset <code>{results['preset']}</code>, "
        f"{'/'.join(map(str, seeds))} seed(s) per configuration; every number is also in "
        "<code>sweep.json</code>. Runs are in <code>runs/</code>.</p>"
    )
    report_html.write_page(out / "sweep.html", "qphi — codebook scaling", sections, intro)
