"""The natural-language-levels experiment (SPEC §5.5) on a trained PHi layer inside a pretrained LLM:
score every level's texts, write nl_levels.json and the two figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from qphi.configuration import Config
from qphi.evaluation.nl_levels import LevelSummary, TextSummary, evaluate_nl_levels
from qphi.experiments.llm_run import load_llm_run
from qphi.io import write_json
from qphi.reports.nl_levels import plot_nl_levels
from qphi.tasks.natural_language import load_nl_levels
from qphi.training.run_dir import saved_config


class NLLevelsConfig(Config):
    run_dir: Path  # a PHi layer trained inside a pretrained LLM
    data: Path | None = None  # folder of {level, user, assistant} JSON files (None: the run's)
    out: Path | None = None  # None: RUN_DIR/nl_levels
    max_tokens: int | None = Field(None, ge=1)  # scored tokens per text (None: the run's eval_max_tokens)
    all_tokens: bool = False  # score whole texts (up to the model's context), whatever max_tokens says
    batch_size: int = Field(2, ge=1)
    device: str = "cpu"

    @property
    def out_dir(self) -> Path:
        return self.out or self.run_dir / "nl_levels"


@dataclass(frozen=True)
class NLLevelsResult:
    """nl_levels.json."""

    run: str
    step: int
    model: str
    levels: dict[str, LevelSummary]
    texts: list[TextSummary]
    max_tokens: int | None


def run(config: NLLevelsConfig) -> NLLevelsResult:
    mixture = saved_config(config.run_dir).data.mixture
    records = load_nl_levels(config.data if config.data is not None else mixture.nl_levels_path)  # before the slow load
    run_config, model, tokenizer, step = load_llm_run(config.run_dir, device=config.device)
    max_tokens = config.max_tokens if config.max_tokens is not None else mixture.eval_max_tokens
    if config.all_tokens:
        max_tokens = None
    evaluation = evaluate_nl_levels(model, tokenizer, records, max_tokens, config.batch_size, progress=True)
    result = NLLevelsResult(
        run=str(config.run_dir),
        step=step,
        model=run_config.model.pretrained,
        levels=evaluation.levels,
        texts=evaluation.texts,
        max_tokens=evaluation.max_tokens,
    )
    write_json(config.out_dir / "nl_levels.json", result)
    title = f"{run_config.model.pretrained}, PHi after block {run_config.model.phi_after} ({run_config.phi.bottleneck.name})"
    plot_nl_levels(config.out_dir, result.levels, title=title)
    return result
