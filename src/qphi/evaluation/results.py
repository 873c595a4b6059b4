"""The PFA experiments' results: one run's analysis (`RunAnalysis`, analysis.json) and the
analyses of several seeds pooled (`KeyResults` of the reproduction, `SweepResult` of the
codebook sweep). Typed, written with `qphi.io.write_json` and read back with `read_json`.

A run's analysis holds per-seed means; pooled, they become mean ± std over seeds (SPEC §5.1:
the thesis's table is mean ± std over seeds of the per-seed means). A std over one seed is
None, not 0: one seed says nothing about the spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qphi.bottlenecks import registry
from qphi.errors import QPhiError
from qphi.evaluation.code_stream import LevelCoding
from qphi.evaluation.codebook_health import CodebookHealth
from qphi.evaluation.complexity import ComplexitySummary
from qphi.evaluation.icl_competence import ICLCompetence
from qphi.evaluation.pfa_levels import BlockRecord, LevelSummary
from qphi.tasks import LEVEL_KEYS

LEVEL_ORDER = [LEVEL_KEYS[i] for i in sorted(LEVEL_KEYS)]
TABLE_LEVELS = ("mem_seq", "mem_prog", "icll", "random")  # the thesis's columns
UNITS = "nats/token"


@dataclass(frozen=True)
class RunAnalysis:
    """analysis.json: one run's numbers (its token records are in analysis_tokens.npz)."""

    version: int
    step: int
    bottleneck: str
    seed: int
    levels: dict[str, LevelSummary]
    coding: dict[str, LevelCoding] | None  # discrete bottlenecks
    codebook_health: CodebookHealth | None  # discrete bottlenecks
    icl_competence: ICLCompetence | None  # None when not measured
    blocks: list[BlockRecord]


@dataclass(frozen=True)
class Spread:
    """A mean over seeds and its sample standard deviation (None with one seed)."""

    mean: float
    std: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        array = np.asarray(values, dtype=float)
        return cls(float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else None)


@dataclass(frozen=True)
class PooledLevel:
    """One level over seeds. Normalised: PHi ÷ the same seed's PHi on Mem. Seq. (None without
    that level). coded_over_phi: the range-coded size of the code stream ÷ Σ PHi, per seed
    (discrete bottlenecks; ≈ 1 when PHi is the code length of the transmitted code);
    coder_overhead_bits: what the range coder pays beyond Σ PHi, in bits per block (≤ the flush of
    one 32-bit word plus rounding; the ratio alone looks large where PHi is small). kl_bits: a
    per-level diagnostic beside PHi (KL(q ‖ p) of the posterior), where the runs report one."""

    phi_mean: float
    phi_std: float | None
    nll_mean: float
    nll_std: float | None
    phi_bits_mean: float
    n_seeds: int
    phi_normalised_mean: float | None = None
    phi_normalised_std: float | None = None
    coded_over_phi_mean: float | None = None
    coded_over_phi_std: float | None = None
    coder_overhead_bits_mean: float | None = None
    coder_overhead_bits_std: float | None = None
    kl_bits_mean: float | None = None
    kl_bits_std: float | None = None

    def spread(self, field: str) -> Spread | None:
        """`field` ("phi", "nll", "phi_normalised", "coded_over_phi", "coder_overhead_bits", "kl_bits") as a
        `Spread`, or None."""
        mean = getattr(self, f"{field}_mean")
        return None if mean is None else Spread(mean, getattr(self, f"{field}_std"))


@dataclass(frozen=True)
class PooledCoding:
    """Means over seeds of a level's coding numbers (see `LevelCoding`)."""

    coded_bits_per_token: float
    ideal_bits_per_token: float
    ratio: float | None  # coded / ideal


@dataclass(frozen=True)
class Directions:
    """Per seed, the published directions among the table's levels present: in how many seeds ICLL
    has the highest PHi and Random the lowest (None: a level is missing), and ICLL / Mem. Seq."""

    n_seeds: int
    icll_highest: int | None
    random_lowest: int | None
    icll_over_mem_seq: list[float] | None  # per seed


@dataclass(frozen=True)
class PooledCompetence:
    """In-context-learning competence: means over seeds, and each seed's measurement."""

    accepted_prefix_length_mean: float
    uniform_baseline_mean: float
    generated_length_mean: float
    per_seed: list[ICLCompetence]


@dataclass(frozen=True)
class BottleneckResults:
    levels: dict[str, PooledLevel]
    seeds: list[int]
    steps: int
    directions: Directions
    complexity: ComplexitySummary | None = None
    icl_competence: PooledCompetence | None = None
    coding: dict[str, PooledCoding] | None = None  # discrete bottlenecks
    codebook_utilisation: list[float] | None = None  # per stage, mean over seeds; discrete bottlenecks


@dataclass(frozen=True)
class KeyResults:
    """key_results.json: per bottleneck, every level pooled over seeds, and the analyses on top."""

    preset: str
    units: str
    bottlenecks: dict[str, BottleneckResults]
    wall_time_s: float | None = None


@dataclass(frozen=True)
class SweepLevel(PooledLevel):
    """A level of a sweep configuration: pooled as in the key results, with its coding means."""

    coded_bits_per_token: float | None = None
    ideal_bits_per_token: float | None = None
    ratio: float | None = None  # coded / ideal


@dataclass(frozen=True)
class StageMeans:
    """One codebook stage's health, means over seeds (see `StageHealth`)."""

    utilisation: float
    perplexity: float
    dead_codes: float
    usage_entropy_bits: float
    prior_entropy_bits: float
    code_length_bits: float


BottleneckOptions = registry.config_type()


@dataclass(frozen=True)
class SweepConfiguration:
    label: str
    bottleneck: str
    size: int  # the size asked for
    codebook_size: int  # the codebook it gave (FSQ: ∏ levels)
    stages: int
    options: BottleneckOptions  # the bottleneck's whole config
    stage_sizes: list[int]
    capacity_bits: float  # Σ log2 K_s
    seeds: list[int]
    steps: int
    levels: dict[str, SweepLevel]
    codebook_health: list[StageMeans]


@dataclass(frozen=True)
class SweepResult:
    """sweep.json: one entry per configuration, pooled over its seeds."""

    preset: str
    bottleneck: str
    units: str
    configurations: list[SweepConfiguration]
    wall_time_s: float | None = None


def pool_levels(runs: Sequence[RunAnalysis]) -> dict[str, PooledLevel]:
    """The levels every run has, in the levels' order, pooled over the runs (one per seed)."""
    present = [key for key in LEVEL_ORDER if all(key in r.levels for r in runs)]
    pooled = {}
    for key in present:
        phi = Spread.of([r.levels[key].phi_mean for r in runs])
        nll = Spread.of([r.levels[key].nll_mean for r in runs])
        normalised = coded = overhead = kl = None
        if key == "mem_seq":
            normalised = Spread(1.0, None)  # 1 in every seed by definition: no spread to show
        elif "mem_seq" in present:
            normalised = Spread.of([r.levels[key].phi_mean / r.levels["mem_seq"].phi_mean for r in runs])
        if all(r.coding and key in r.coding for r in runs):
            coded = Spread.of([r.coding[key].coded_bits_per_token / r.levels[key].phi_bits_mean for r in runs])
            overhead = Spread.of([coder_overhead_per_block(r, key) for r in runs])
        if all(r.levels[key].kl_bits_mean is not None for r in runs):
            kl = Spread.of([r.levels[key].kl_bits_mean for r in runs])
        spreads = {
            "phi": phi,
            "nll": nll,
            "phi_normalised": normalised,
            "coded_over_phi": coded,
            "coder_overhead_bits": overhead,
            "kl_bits": kl,
        }
        pooled[key] = PooledLevel(
            phi_bits_mean=phi.mean / math.log(2),
            n_seeds=len(runs),
            **{f"{name}_mean": None if s is None else s.mean for name, s in spreads.items()},
            **{f"{name}_std": None if s is None else s.std for name, s in spreads.items()},
        )
    return pooled


def coder_overhead_per_block(run: RunAnalysis, level: str) -> float:
    """Bits the range coder paid beyond Σ PHi on `level`, per block (each block is one coded stream)."""
    coding, blocks = run.coding[level], run.levels[level].n_blocks
    if blocks < 1:
        raise QPhiError(
            f"the analysis of seed {run.seed} codes level {level} but counts {blocks} blocks of it: "
            "delete its analysis.json and run the command again to re-analyse the run"
        )
    return (coding.coded_bits_per_token - coding.ideal_bits_per_token) * coding.tokens / blocks


def pool_coding(runs: Sequence[RunAnalysis]) -> dict[str, PooledCoding] | None:
    """Per level of the first run, the means over the runs that coded it; None without codes."""
    if not runs[0].coding:
        return None
    pooled = {}
    for level in runs[0].coding:
        values = [r.coding[level] for r in runs if r.coding and level in r.coding]
        ratios = [v.ratio for v in values if v.ratio is not None]
        pooled[level] = PooledCoding(
            coded_bits_per_token=float(np.mean([v.coded_bits_per_token for v in values])),
            ideal_bits_per_token=float(np.mean([v.ideal_bits_per_token for v in values])),
            ratio=float(np.mean(ratios)) if ratios else None,
        )
    return pooled


def pool_stages(health: Sequence[CodebookHealth], key: str) -> list[float]:
    """Per stage, the mean over seeds of one codebook-health number (a `StageHealth` field)."""
    return [float(np.mean([getattr(h.stages[s], key) for h in health])) for s in range(len(health[0].stages))]


def directions(runs: Sequence[RunAnalysis]) -> Directions:
    def count(test: Callable[[dict[str, float]], bool]) -> int:
        return sum(test({lv: r.levels[lv].phi_mean for lv in TABLE_LEVELS if lv in r.levels}) for r in runs)

    def has(*levels: str) -> bool:
        return all(lv in r.levels for r in runs for lv in levels)

    return Directions(
        n_seeds=len(runs),
        icll_highest=count(lambda phi: max(phi, key=phi.get) == "icll") if has("icll") else None,
        random_lowest=count(lambda phi: min(phi, key=phi.get) == "random") if has("random") else None,
        icll_over_mem_seq=[r.levels["icll"].phi_mean / r.levels["mem_seq"].phi_mean for r in runs]
        if has("icll", "mem_seq")
        else None,
    )


def pool_competence(runs: Sequence[RunAnalysis]) -> PooledCompetence | None:
    per_seed = [r.icl_competence for r in runs]
    if None in per_seed:
        return None
    return PooledCompetence(
        accepted_prefix_length_mean=float(np.mean([c.accepted_prefix_length.value for c in per_seed])),
        uniform_baseline_mean=float(np.mean([c.uniform_baseline_accepted_prefix_length.value for c in per_seed])),
        generated_length_mean=float(np.mean([c.generated_length_mean for c in per_seed])),
        per_seed=per_seed,
    )
