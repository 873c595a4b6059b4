"""Per-level evaluation on fresh samples: mean PHi and next-token loss per learning level.

Each block is evaluated whole in its own row (no packing), so every architecture — the
LSTM too — sees it exactly as a user would feed it.

Positions are pooled over the characters of each block that have a next token to predict
(`evaluated_positions`: BOS, EOS, padding and the last character of a truncated block, whose
target is ignored, excluded): at a character x_t, PHi_t is the information of the latent
computed after reading x_t and nll_t = −ln p(x_{t+1} | x_≤t). Token-level records are kept for
the complexity analysis, codebook health and coding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from qphi.configuration import Config
from qphi.evaluation.codebook_health import CodebookHealth
from qphi.models import PHiModel, PHiModelOutput
from qphi.seeding import mix_seed
from qphi.tasks import LEVEL_KEYS, Batch, CharTokenizer, PFALevels, Sample, pack_rows
from qphi.tasks.packing import IGNORE_INDEX, document_length, fit_document


class EvalConfig(Config):
    levels: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    samples_per_level: int = Field(64, ge=1)
    batch_size: int = Field(16, ge=1, description="documents per forward pass")
    seed: int = Field(
        1_000_003,
        ge=0,
        lt=1 << 63,
        description="evaluation samples come from their own seed (0 .. 2^63 - 1), never the training stream",
    )

    @field_validator("levels")
    @classmethod
    def _check_levels(cls, levels: list[int]) -> list[int]:
        """Checked here, so that a bad level is refused before training rather than after it."""
        if not levels or len(set(levels)) < len(levels) or any(level not in LEVEL_KEYS for level in levels):
            raise ValueError(f"must list distinct levels among {sorted(LEVEL_KEYS)}, at least one (e.g. [0, 1, 3, 4])")
        return levels


@dataclass
class TokenRecords:
    """Flat per-character arrays over all evaluated blocks (N characters, Q stages)."""

    level: np.ndarray  # (N,) int
    block: np.ndarray  # (N,) int, index into `blocks`
    phi: np.ndarray  # (N,) nats
    nll: np.ndarray  # (N,) nats
    phi_per_stage: np.ndarray  # (Q, N) nats
    kl: np.ndarray | None  # (Q, N) nats, KL(q ‖ p) of a discrete posterior: a diagnostic beside PHi
    codes: np.ndarray | None  # (Q, N) int


@dataclass(frozen=True)
class BlockRecord:
    """One evaluated block: its automaton's numbers and its PHi and next-token loss (means over
    its evaluated characters). `sample` is its index among its level's samples: with the same
    evaluation config, the same `(level, sample)` is the same block in every run."""

    level: int
    sample: int
    num_states: int  # -1 at levels without an automaton
    num_edges: int
    vocab_size: int
    description_length: float | None  # nats; None at levels without an automaton
    truncated: bool
    phi_mean: float
    nll_mean: float
    n_tokens: int


@dataclass(frozen=True)
class LevelSummary:
    """One level's evaluated characters pooled (nats per character unless named bits)."""

    phi_mean: float
    phi_bits_mean: float
    nll_mean: float
    phi_per_stage: list[float]  # (Q,)
    n_tokens: int
    n_blocks: int
    kl_bits_mean: float | None = None  # KL(q ‖ p) of a discrete posterior summed over stages: a diagnostic, not PHi


@dataclass(frozen=True)
class LevelResults:
    """What a run's evaluation on the PFA levels reports (eval.json)."""

    step: int
    bottleneck: str
    levels: dict[str, LevelSummary]
    codebook_health: CodebookHealth | None  # None for the continuous bottleneck


@dataclass
class LevelEvaluation:
    tokens: TokenRecords
    blocks: list[BlockRecord]

    def summary(self) -> dict[str, LevelSummary]:
        """Per level (by its key, e.g. "icll"), its characters pooled."""
        levels = {}
        t = self.tokens
        for level in sorted(set(t.level.tolist())):
            sel = t.level == level
            phi = float(t.phi[sel].mean())
            levels[LEVEL_KEYS[level]] = LevelSummary(
                phi_mean=phi,
                phi_bits_mean=phi / math.log(2),
                nll_mean=float(t.nll[sel].mean()),
                phi_per_stage=t.phi_per_stage[:, sel].mean(1).tolist(),
                n_tokens=int(sel.sum()),
                n_blocks=sum(1 for b in self.blocks if b.level == level),
                kl_bits_mean=None if t.kl is None else float(t.kl[:, sel].sum(0).mean()) / math.log(2),
            )
        return levels


def evaluated_positions(batch: Batch) -> Tensor:
    """(B, T) bool: the characters whose PHi, next-token loss and codes an evaluation counts."""
    return batch.meta["is_text"] & (batch.targets != IGNORE_INDEX)


@torch.no_grad()
def evaluate_levels(
    model: PHiModel,
    levels: PFALevels,
    tokenizer: CharTokenizer,
    config: EvalConfig,
    row_length: int,
    device: torch.device | str = "cpu",
    observe: Callable[[int, Batch, PHiModelOutput], None] | None = None,
) -> LevelEvaluation:
    """Run `model` in evaluation mode on `config.samples_per_level` fresh blocks of each level.

    `observe(level, batch, output)` sees every evaluated batch (codebook health, coding, …)."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("level", "block", "phi", "nll", "stages", "kl", "codes")}
    blocks: list[BlockRecord] = []
    try:
        for level in config.levels:
            generator = torch.Generator().manual_seed(mix_seed(config.seed, level))
            samples = [levels.sample(level, generator) for _ in range(config.samples_per_level)]
            for first in range(0, len(samples), config.batch_size):
                docs = [fit_document(s, row_length) for s in samples[first : first + config.batch_size]]
                batch = pack_rows([[d] for d in docs], tokenizer, max(map(document_length, docs))).to(device)
                out = _collect(model, batch, first, len(blocks), parts, blocks)
                if observe is not None:
                    observe(level, batch, out)
    finally:
        model.train(was_training)
    cat = {k: np.concatenate(v, axis=-1) if v else None for k, v in parts.items()}
    tokens = TokenRecords(
        level=cat["level"],
        block=cat["block"],
        phi=cat["phi"],
        nll=cat["nll"],
        phi_per_stage=cat["stages"],
        kl=cat["kl"],
        codes=cat["codes"],
    )
    return LevelEvaluation(tokens=tokens, blocks=blocks)


def _collect(
    model: PHiModel, batch: Batch, first_sample: int, block_offset: int, parts: dict, blocks: list
) -> PHiModelOutput:
    out = model(input_ids=batch.input_ids, targets=batch.targets, padding_mask=batch.padding_mask)
    kept = evaluated_positions(batch)
    doc = batch.meta["doc_index"][kept]
    phi = out.phi.phi[kept].float()
    nll = out.nll[kept].float()
    parts["level"].append(batch.meta["level"][kept].cpu().numpy())
    parts["block"].append((doc + block_offset).cpu().numpy())
    parts["phi"].append(phi.cpu().numpy())
    parts["nll"].append(nll.cpu().numpy())
    parts["stages"].append(out.phi.phi_per_stage[:, kept].float().cpu().numpy())
    if out.phi.codes is not None:
        parts["codes"].append(out.phi.codes[:, kept].cpu().numpy())
    if out.phi.kl_per_stage is not None:
        parts["kl"].append(out.phi.kl_per_stage[:, kept].float().cpu().numpy())
    for index, sample in enumerate(batch.documents):
        sel = doc == index
        blocks.append(_block_record(sample, first_sample + index, phi[sel], nll[sel]))
    return out


def _block_record(sample: Sample, index: int, phi: Tensor, nll: Tensor) -> BlockRecord:
    dl = sample.description_length
    return BlockRecord(
        level=sample.level,
        sample=index,
        num_states=sample.num_states,
        num_edges=sample.num_edges,
        vocab_size=sample.vocab_size,
        description_length=None if math.isnan(dl) else dl,
        truncated=sample.truncated,
        phi_mean=float(phi.mean()),
        nll_mean=float(nll.mean()),
        n_tokens=int(phi.numel()),
    )
