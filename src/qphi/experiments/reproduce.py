"""Reproduce the findings on the PFA suite (SPEC §5.1–5.4): `ReproduceConfig` → `run` → `KeyResults`.

For every bottleneck and seed: train a model with a PHi layer on the learning levels (or
resume / reuse a run already in the output folder), evaluate it on fresh samples of each
level, and measure coding, codebook health and in-context-learning competence. Then pool
over seeds: the key-results table, level plots, PHi against next-token loss, PHi against
automaton complexity controlling for next-token loss, and one HTML report.

The runs can train one after another, in parallel processes (`jobs`), or on a cluster:
`experiments.runs.plan` writes one `qphi train` command per run (and a SLURM job array over
them), and `run` with `analyse_only` collects them once they have finished.
"""

from __future__ import annotations

import time
from typing import ClassVar

from pydantic import field_validator

from qphi.bottlenecks import registry
from qphi.evaluation.complexity import complexity_analysis
from qphi.evaluation.results import (
    UNITS,
    BottleneckResults,
    KeyResults,
    directions,
    pool_coding,
    pool_competence,
    pool_levels,
    pool_stages,
)
from qphi.experiments.analysis import AnalysedRun
from qphi.experiments.runs import (
    RUN_KEYS,
    ExperimentConfig,
    PlannedRun,
    analysed_runs,
    checked,
    planned_run,
    refuse_run_keys,
)
from qphi.io import write_json
from qphi.reports.reproduce import write_report

DEFAULT_SEEDS = {"cpu-quick": 1, "cpu": 3, "paper": 3}


class ReproduceConfig(ExperimentConfig):
    name: ClassVar[str] = "reproduce"
    marker: ClassVar[str] = "reproduce.json"
    what: ClassVar[str] = "reproduction"

    seeds: int | None = None  # per bottleneck (None: the preset's default, DEFAULT_SEEDS)
    bottlenecks: tuple[str, ...] | None = None  # None: every registered bottleneck
    icl_prompts: int = 64

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, seeds: int | None) -> int | None:
        if seeds is not None and seeds < 1:
            raise ValueError(f"must be >= 1, got {seeds}: leave it out for the preset's default")
        return seeds

    @field_validator("bottlenecks")
    @classmethod
    def _check_bottlenecks(cls, bottlenecks: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = [b for b in bottlenecks or () if b not in registry.names()]
        if unknown:
            raise ValueError(f"unknown bottleneck(s) {', '.join(unknown)}: choose from {', '.join(registry.names())}")
        return bottlenecks

    @field_validator("icl_prompts")
    @classmethod
    def _check_prompts(cls, prompts: int) -> int:
        if prompts < 1:
            raise ValueError(f"is {prompts}: the reproduction measures ICL competence on at least 1 prompt")
        return prompts

    @property
    def num_seeds(self) -> int:
        return self.seeds or DEFAULT_SEEDS.get(self.preset, 3)

    def runs(self) -> list[PlannedRun]:
        """Every bottleneck × seed, in the tables' order; a config that does not build is refused
        here, before the experiment writes anything."""
        refuse_run_keys(self.overrides, RUN_KEYS, "reproduction", "--bottlenecks, --seeds and --device")
        return checked(
            [
                planned_run(self.out, f"{b}-seed{s}", self.preset, b, s, self.device, *self.overrides)
                for b in self.bottlenecks or registry.names()
                for s in range(self.num_seeds)
            ]
        )

    def options(self) -> dict[str, object]:
        return {"seeds": self.num_seeds, "bottlenecks": self.bottlenecks, "icl_prompts": self.icl_prompts}


def run(config: ReproduceConfig) -> KeyResults:
    """Train/evaluate every bottleneck × seed in `out/runs`, then write the results and reports
    into `out`: key_results.{json,md}, complexity.json, icl_competence.json, codebook_health.json,
    the figures and report.html."""
    started = time.perf_counter()
    per_bottleneck: dict[str, list[AnalysedRun]] = {}
    for done in analysed_runs(config, config.icl_prompts):
        per_bottleneck.setdefault(done.analysis.bottleneck, []).append(done)
    complexity = {b: complexity_analysis([r.evaluation for r in done]) for b, done in per_bottleneck.items()}
    health = {
        b: [r.analysis.codebook_health for r in done]
        for b, done in per_bottleneck.items()
        if done[0].analysis.codebook_health is not None
    }
    bottlenecks = {}
    for name, done in per_bottleneck.items():
        analyses = [r.analysis for r in done]
        bottlenecks[name] = BottleneckResults(
            levels=pool_levels(analyses),
            seeds=[a.seed for a in analyses],
            steps=analyses[0].step,
            directions=directions(analyses),
            complexity=complexity[name].summary(),
            icl_competence=pool_competence(analyses),
            coding=pool_coding(analyses),
            codebook_utilisation=pool_stages(health[name], "utilisation") if name in health else None,
        )
    results = KeyResults(config.preset, UNITS, bottlenecks, wall_time_s=time.perf_counter() - started)
    out = config.out
    write_json(out / "key_results.json", results)
    write_json(out / "complexity.json", complexity)
    write_json(out / "icl_competence.json", {n: b.icl_competence for n, b in bottlenecks.items()})
    write_json(out / "codebook_health.json", health)
    write_report(out, results, complexity)
    return results
