"""The codebook-scaling experiment (SPEC §5.7): `SweepConfig` → `run` → `SweepResult`.

PHi, next-token loss, code usage and the range-coded size of the code stream as functions of
the codebook size K (and the RQ depth Q). One run per configuration and seed under `out/runs` —
trained, resumed or reused exactly as the reproduction does, in parallel processes (`jobs`) or
from the commands `experiments.runs.plan` writes — then the same per-run analysis (`analyse_run`, without the
ICL competence), pooled over seeds into sweep.json, sweep.png and sweep.html.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import ClassVar

from pydantic import field_validator

from qphi.bottlenecks import registry
from qphi.errors import QPhiError
from qphi.evaluation.codebook_health import HEALTH_SCALARS
from qphi.evaluation.results import (
    StageMeans,
    SweepConfiguration,
    SweepLevel,
    SweepResult,
    pool_coding,
    pool_levels,
    pool_stages,
)
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
from qphi.reports.sweep import write_sweep_report
from qphi.training import load_run_config

# what the sweep sets itself: an override of one of these would silently change every run
SWEPT_KEYS = (*RUN_KEYS, "phi.codebook_size", "phi.num_stages", "phi.fsq_levels")
UNITS = (
    "phi_mean/nll_mean: nats per character; phi_bits_mean, coded_bits_per_token, ideal_bits_per_token: bits per "
    "character; codebook_health: per stage, means over seeds"
)


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

    def overrides(self, preset: str, overrides: tuple[str, ...]) -> tuple[str, ...]:
        """`phi.KEY=VALUE` for every option that sizing the preset's bottleneck config changes."""
        base = load_run_config(preset, list(overrides), self.bottleneck).phi.bottleneck
        sized = base.sized(self.size, self.stages if base.depth_axis else None)
        before, after = base.model_dump(mode="json"), sized.model_dump(mode="json")
        return tuple(
            f"phi.{key}={json.dumps(value, separators=(',', ':'))}"
            for key, value in after.items()
            if before[key] != value
        )


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


class SweepConfig(ExperimentConfig):
    name: ClassVar[str] = "sweep"
    marker: ClassVar[str] = "sweep_config.json"
    what: ClassVar[str] = "sweep"

    bottleneck: str
    sizes: tuple[int, ...]
    stages: tuple[int, ...] | None = None  # depths (residual; None: the preset's)
    seeds: int = 1

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, seeds: int) -> int:
        if seeds < 1:
            raise ValueError(f"must be >= 1, got {seeds}: pass --seeds 1 or more")
        return seeds

    def points(self) -> list[SweepPoint]:
        refuse_run_keys(self.overrides, SWEPT_KEYS, "sweep", "--bottleneck/--sizes/--stages/--seeds")
        stages = self.stages
        if stages is None and registry.config_class(self.bottleneck).depth_axis:
            stages = (load_run_config(self.preset, list(self.overrides), self.bottleneck).phi.bottleneck.depth(),)
        return sweep_points(self.bottleneck, self.sizes, stages or (1,))

    def per_point(self) -> dict[SweepPoint, list[PlannedRun]]:
        """Per configuration, its run of every seed."""
        runs = {}
        for point in self.points():
            sized = (*self.overrides, *point.overrides(self.preset, self.overrides))
            label = point.label
            runs[point] = checked(
                [
                    planned_run(self.out, f"{label}-seed{s}", self.preset, self.bottleneck, s, self.device, *sized)
                    for s in range(self.seeds)
                ]
            )
        return runs

    def runs(self) -> list[PlannedRun]:
        return [run for runs in self.per_point().values() for run in runs]

    def options(self) -> dict[str, object]:
        return {"bottleneck": self.bottleneck, "sizes": self.sizes, "stages": self.stages, "seeds": self.seeds}

    def recorded(self) -> dict[str, object]:
        return {"preset": self.preset, "bottleneck": self.bottleneck, "overrides": list(self.overrides)}


def run(config: SweepConfig) -> SweepResult:
    """Train/analyse every configuration × seed in `out/runs`, then write sweep.{json,png,html}.

    Interrupted? Call it again with the same config: finished runs are reused, a stopped one
    resumes from its last checkpoint.
    """
    started = time.perf_counter()
    analysed = iter(analysed_runs(config, icl_prompts=0))
    configurations = []
    for point, point_runs in config.per_point().items():
        analyses = [next(analysed).analysis for _ in point_runs]
        coding = pool_coding(analyses) or {}
        levels = {
            name: SweepLevel(**vars(level), **(vars(coding[name]) if name in coding else {}))
            for name, level in pool_levels(analyses).items()
        }
        health = [a.codebook_health for a in analyses]
        stage_sizes = [s.num_codes for s in health[0].stages]
        per_stage = {key: pool_stages(health, key) for key in HEALTH_SCALARS}
        bottleneck = point_runs[0].config().phi.bottleneck
        configurations.append(
            SweepConfiguration(
                label=point.label,
                bottleneck=point.bottleneck,
                size=point.size,
                codebook_size=bottleneck.sweep_size,
                stages=point.stages,
                options=bottleneck,
                stage_sizes=stage_sizes,
                capacity_bits=float(sum(math.log2(k) for k in stage_sizes)),
                seeds=[a.seed for a in analyses],
                steps=analyses[0].step,
                levels=levels,
                codebook_health=[
                    StageMeans(**{key: per_stage[key][s] for key in HEALTH_SCALARS}) for s in range(len(stage_sizes))
                ],
            )
        )
    result = SweepResult(config.preset, config.bottleneck, UNITS, configurations, time.perf_counter() - started)
    write_json(config.out / "sweep.json", result)
    write_sweep_report(config.out, result)
    return result
