"""The configuration of one training run, loaded from a preset or YAML file plus overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from qphi.configuration import Config, apply_overrides, build, merge, read_yaml, section
from qphi.errors import QPhiError, closest
from qphi.evaluation.pfa_levels import EvalConfig
from qphi.models.config import ModelConfig
from qphi.phi.config import DEFAULT_BOTTLENECK, PHiConfig
from qphi.presets import PRESETS, preset_path
from qphi.tasks import CharTokenizer
from qphi.tasks.levels import TRAINING_LEVELS, LevelConfig

Beta = Annotated[float, Field(ge=0, lt=1)]


class OptimConfig(Config):
    lr: float = Field(1e-3, gt=0)
    betas: tuple[Beta, Beta] = Field((0.9, 0.95), description="AdamW's decay rates, each in [0, 1)")
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine schedule: final lr / lr")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm (0 = no clipping)")
    clip_phi_separately: bool = Field(
        True,
        description="clip the PHi layer's gradients apart from the model's, so a large PHi gradient cannot starve the language-model gradient (SPEC §7a)",
    )


MixtureComponent = Literal["math", "gsm8k", "pfa", "text"]


class MixtureConfig(Config):
    """The pretrained-LLM training mixture (SPEC §3): chats taken round-robin from its components.

    Data paths default to the data folder: $QPHI_DATA, else the user data folder `qphi data fetch` fills.
    """

    components: list[MixtureComponent] = Field(
        default_factory=lambda: ["math", "gsm8k", "pfa"],
        description="round-robin order; 'text' needs text_paths",
    )
    math_path: str | None = Field(None, description="MATH folder or .jsonl (None = <data>/math)")
    gsm8k_path: str | None = Field(None, description="GSM-8k folder or .jsonl (None = <data>/gsm8k)")
    text_paths: list[str] = Field(
        default_factory=list, description="general text: .txt files (one document each) or .jsonl files with 'text'"
    )
    nl_levels_path: str | None = Field(None, description="evaluation texts (None = <data>/natural_language_levels)")
    eval_max_tokens: int | None = Field(
        1024, ge=16, description="evaluation: score the first tokens of each chat (None = whole texts)"
    )
    eval_batch_size: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> MixtureConfig:
        if not self.components:
            raise ValueError("components must name at least one of math, gsm8k, pfa, text")
        if "text" in self.components and not self.text_paths:
            raise ValueError("the 'text' component needs text_paths (a list of .txt or .jsonl files)")
        return self


class DataConfig(Config):
    source: Literal["pfa", "mixture"] = "pfa"
    levels: list[int] = Field(
        default_factory=lambda: list(TRAINING_LEVELS), description="training levels, mixed uniformly"
    )
    row_length: int = Field(512, ge=8, description="tokens per row")
    pack: bool = Field(True, description="pack several documents per row (transformers only)")
    max_doc_length: int | None = Field(None, ge=3, description="truncate longer documents (None = row_length)")
    pfa: LevelConfig = LevelConfig()
    mixture: MixtureConfig = MixtureConfig()

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if not self.levels or any(not 0 <= level <= 5 for level in self.levels):
            raise ValueError(f"levels must be a non-empty list of level numbers 0..5, got {self.levels}")
        return self


class TrainConfig(Config):
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(16, ge=1, description="rows per optimizer step, summed over processes and accumulation")
    grad_accum: int = Field(1, ge=1)
    seed: int = Field(0, ge=0, lt=1 << 63, description="0 .. 2^63 - 1 (what torch.manual_seed takes)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on GPU, fp32 on CPU")
    compile: bool = Field(
        False,
        description="torch.compile the model: 5–14 % faster CPU steps after 20–35 s of compiling (needs a C++ compiler)",
    )
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(0, ge=0, description="0 = evaluate at the end only")
    checkpoint_every: int = Field(200, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    num_workers: int = Field(0, ge=0, description="data-loader worker processes per training process")
    tensorboard: bool = True
    wandb: bool = False


class RunConfig(Config):
    name: str = Field("run", description="names the default run folder runs/NAME-BOTTLENECK")
    model: ModelConfig = ModelConfig()
    phi: PHiConfig = PHiConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not 1 <= len(name) <= 100 or any(c in name for c in "/\\\0") or name in (".", ".."):
            raise ValueError("must be 1 to 100 characters without / or \\ (it names the run's folder)")
        return name

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.model.architecture == "lstm" and self.data.pack:
            raise ValueError("an LSTM cannot read packed rows: set data.pack=false")
        if (self.model.architecture == "pretrained") != (self.data.source == "mixture"):
            raise ValueError(
                "a pretrained model trains on data.source=mixture, and the mixture needs a pretrained model's tokenizer: "
                "set both model.architecture=pretrained and data.source=mixture, or neither"
            )
        if self.model.architecture != "pretrained" and self.model.max_length < self.data.row_length:
            raise ValueError(f"data.row_length={self.data.row_length} exceeds model.max_length={self.model.max_length}")
        chars = CharTokenizer.vocab_size
        if self.data.source == "pfa" and self.model.vocab_size < chars:
            raise ValueError(
                f"model.vocab_size={self.model.vocab_size} is below the {chars} ids of the character tokenizer: "
                f"set model.vocab_size={chars} or more"
            )
        return self


def load_run_config(source: str | os.PathLike, overrides: list[str] = (), bottleneck: str | None = None) -> RunConfig:
    """A preset name (see PRESETS) or a YAML path, plus `key=value` overrides.

    A file may hold `bottleneck_defaults: {NAME: {...}}`: the block of the selected bottleneck
    (`bottleneck`, else `phi.bottleneck` after the overrides) is applied under the overrides, so
    `qphi train cpu phi.bottleneck=vq` gets the preset's VQ settings while explicit overrides still win.
    """
    path = Path(source)
    origin = f"config file '{path}'"
    if not path.suffix and not path.exists():
        if str(source) not in PRESETS:
            raise QPhiError(
                f"'{source}' is neither a YAML file nor a preset{closest(str(source), PRESETS)}: presets are {', '.join(PRESETS)}"
            )
        path, origin = preset_path(str(source)), f"preset '{source}'"
    data = read_yaml(path)
    per_bottleneck = section(data, "bottleneck_defaults", origin)
    data.pop("bottleneck_defaults", None)
    if bottleneck is not None:
        data = merge(data, {"phi": {"bottleneck": bottleneck}})
    merged = apply_overrides(data, list(overrides))
    name = _bottleneck_name(merged.get("phi"))  # `phi` not a section: build() below names the key
    if isinstance(name, str) and name in per_bottleneck:
        block = section(per_bottleneck, name, f"{origin}, bottleneck_defaults")
        merged = merge(merge(data, block), apply_overrides({}, list(overrides)))
    return build(RunConfig, merged, source=origin, overrides=list(overrides))


def _bottleneck_name(phi: Any) -> str | None:
    """The bottleneck a `phi` block selects: a name, a mapping with `name`, or the default."""
    choice = phi.get("bottleneck", DEFAULT_BOTTLENECK) if isinstance(phi, dict) else None
    return choice.get("name") if isinstance(choice, dict) else choice
