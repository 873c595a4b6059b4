"""The reasoning-correctness experiment (SPEC §5.6): sample rationales, mark, score, analyse, report.

Generations and scores are cached as JSON lines in the output folder, one line per question
appended as soon as it is done, so an interrupted run resumes where it stopped and the
analysis re-runs without regenerating. A cache made with other generation settings is
refused before anything is written: mixing them would bias the analysis.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, field_validator
from tqdm.auto import tqdm

from qphi.configuration import Config
from qphi.errors import QPhiError
from qphi.evaluation.correctness import (
    GenerationSettings,
    LevelAnalysis,
    Rationales,
    RationaleScores,
    analyse,
    sample_rationales,
    score_rationales,
)
from qphi.experiments.llm_run import load_llm_run
from qphi.io import append_jsonl, read_jsonl, write_json
from qphi.models import PHiModel
from qphi.reports.correctness import plot_correctness
from qphi.seeding import mix_seed
from qphi.tasks.reasoning import ReasoningProblem, load_gsm8k, load_math

R = TypeVar("R", Rationales, RationaleScores)


class CorrectnessConfig(Config):
    run_dir: Path  # a PHi layer trained inside a pretrained LLM
    dataset: Literal["gsm8k", "math"]
    data: Path | None = None  # dataset folder or .jsonl (None: <data>/gsm8k or <data>/math)
    split: Literal["train", "test"] = "test"
    questions: int = Field(100, ge=1)  # drawn at random (seeded) from the split
    samples_per_question: int = 8
    max_new_tokens: int = Field(512, ge=1)
    temperature: float = 0.6
    top_k: int = Field(300, ge=1)
    batch_size: int = Field(8, ge=1)  # sequences decoded together
    seed: int = 0
    resamples: int = Field(1000, ge=1)  # bootstrap resamples
    out: Path | None = None  # None: RUN_DIR/correctness-DATASET
    device: str = "cpu"

    @field_validator("samples_per_question")
    @classmethod
    def _comparable(cls, value: int) -> int:
        if value < 2:
            raise ValueError("must be at least 2 to compare rationales of a question: pass 2 or more")
        return value

    @field_validator("temperature")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not 0 < value < math.inf:
            raise ValueError(f"must be a positive number, got {value}: pass a temperature above 0 (e.g. 0.6)")
        return value

    @property
    def out_dir(self) -> Path:
        return self.out or self.run_dir / f"correctness-{self.dataset}"

    @property
    def settings(self) -> GenerationSettings:
        return GenerationSettings(
            samples=self.samples_per_question,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            seed=self.seed,
        )


@dataclass(frozen=True)
class CorrectnessResult:
    """correctness.json: the run, the questions, the sampling, and the analysis per level."""

    run: str
    step: int
    model: str
    phi_after: int
    dataset: str
    split: str
    questions: int
    settings: GenerationSettings
    levels: dict[str, LevelAnalysis]


def run(config: CorrectnessConfig) -> CorrectnessResult:
    """Sample (or resume), score and analyse; write correctness.json and correctness.png (when
    some level has questions with both correct and incorrect rationales) into `config.out_dir`."""
    loader = load_gsm8k if config.dataset == "gsm8k" else load_math
    problems = [p for p in loader(config.data, config.split) if p.answer is not None]
    problems = random.Random(config.seed).sample(problems, min(config.questions, len(problems)))
    run_config, model, tokenizer, step = load_llm_run(config.run_dir, device=config.device)
    out = config.out_dir
    sampled = generations(model, tokenizer, problems, config.settings, out / "generations.jsonl", config.batch_size)
    scored = scores(model, tokenizer, problems, sampled, out / "scores.jsonl")
    result = CorrectnessResult(
        run=str(config.run_dir),
        step=step,
        model=run_config.model.pretrained,
        phi_after=run_config.model.phi_after,
        dataset=config.dataset,
        split=config.split,
        questions=len(problems),
        settings=config.settings,
        levels=analyse(scored, resamples=config.resamples, seed=config.seed),
    )
    write_json(out / "correctness.json", result)
    if any(level.highest_phi is not None for level in result.levels.values()):
        title = f"{config.dataset}: PHi after block {result.phi_after}"
        plot_correctness(out / "correctness.png", result.levels, title=title)
    return result


def _cached(path: Path, cls: type[R]) -> dict[str, R]:
    """A cache's records by question id (its torn last line, if a kill left one, is skipped here
    and cut off by the next append)."""
    return {r.id: r for r in read_jsonl(path, cls)} if path.is_file() else {}


def generations(
    model: PHiModel,
    tokenizer,
    problems: Sequence[ReasoningProblem],
    settings: GenerationSettings,
    cache: Path,
    batch_size: int = 8,
) -> list[Rationales]:
    """Every problem's rationales, read from / appended to the JSONL `cache`."""
    done = _cached(cache, Rationales)
    other = next((r.settings for r in done.values() if r.settings != settings), None)
    if other is not None:
        raise QPhiError(f"'{cache}' was made with other settings ({other}): use another --out folder or delete it")
    cache.parent.mkdir(parents=True, exist_ok=True)
    group = max(1, batch_size // settings.samples)  # questions per decoded batch
    todo = [p for p in problems if p.id not in done]
    progress = tqdm(total=len(todo), desc="generating", unit="question")
    for first in range(0, len(todo), group):
        chunk = todo[first : first + group]
        seed = mix_seed(settings.seed, zlib.crc32(chunk[0].id.encode("utf-8")))
        for record in sample_rationales(model, tokenizer, chunk, settings, batch_size, seed):
            append_jsonl(cache, record)
            done[record.id] = record
        progress.update(len(chunk))
    progress.close()
    return [done[p.id] for p in problems]


def scores(
    model: PHiModel,
    tokenizer,
    problems: Sequence[ReasoningProblem],
    sampled: Sequence[Rationales],
    cache: Path,
    batch_size: int = 4,
) -> list[RationaleScores]:
    """Every problem's rationale scores, read from / appended to the JSONL `cache`."""
    done = _cached(cache, RationaleScores)
    for problem, record in tqdm(list(zip(problems, sampled, strict=True)), desc="scoring", unit="question"):
        if record.id not in done:
            done[record.id] = score_rationales(model, tokenizer, problem, record, batch_size)
            append_jsonl(cache, done[record.id])
    return [done[r.id] for r in sampled]
