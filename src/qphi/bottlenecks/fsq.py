"""Finite scalar quantization: a few bounded scalars, each rounded to a fixed number of levels.

The implicit codebook is the product of the levels, so there are no codebook parameters and
nothing can collapse. Each dimension is cut into L equal-width bins of the bounded range
(−1, 1) and represented by the bin centre; gradients pass straight through the rounding.

The posterior of a dimension is the softmax over its levels of −((b − centre) / w)² / τ, w the
bin width: distances on the scale of the bins, so τ = 1 spreads a value over its neighbouring
levels whatever the number of levels. Its mode is the bin b falls in; in training a level is
drawn from it (from the joint posterior over all Π L codes with the joint prior).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn
from typing_extensions import Self

from qphi.bottlenecks.base import BottleneckOutput, DiscreteBottleneck, DiscreteConfig, distance_logits, draw
from qphi.bottlenecks.registry import register
from qphi.errors import QPhiError
from qphi.latents import CodeParams, LatentShape

MAX_LEVEL = 8  # the sweep adds dimensions until no level needs more than about this many


@register
class FSQConfig(DiscreteConfig):
    name: Literal["fsq"] = "fsq"
    title: ClassVar[str] = "FSQ"
    table_order: ClassVar[int] = 4
    tau_start: float = Field(0.6, gt=0, description="temperature of the posterior at the start of training")
    tau_end: float = Field(0.05, gt=0, description="... and at the end (cosine anneal)")
    entropy_anneal: tuple[float, float] | None = None  # the fixed grid merges unneeded inputs without it (measured)
    fsq_levels: list[int] = Field(default_factory=lambda: [8, 5, 5, 5], description="levels per dimension")
    fsq_bound: Literal["tanh", "ifsq"] = "tanh"
    fsq_prior: Literal["factorised", "joint"] = Field(
        "factorised",
        description="factorised: one categorical per FSQ dimension, coarse-to-fine; joint: one over all codes",
    )

    @field_validator("fsq_levels")
    @classmethod
    def _check_levels(cls, levels: list[int]) -> list[int]:
        if not levels or min(levels) < 2:
            raise ValueError("must be a non-empty list of levels per FSQ dimension, each >= 2 (e.g. [8, 5, 5, 5])")
        return levels

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        levels = tuple(self.fsq_levels)
        return levels if self.fsq_prior == "factorised" else (math.prod(levels),)

    def latent(self, d_model: int) -> LatentShape:
        return LatentShape(len(self.fsq_levels), self.stage_sizes)

    def build(self, d_model: int) -> FSQBottleneck:
        return FSQBottleneck(self, d_model)

    def sized(self, size: int, stages: int | None = None) -> Self:
        if stages not in (None, 1):
            raise QPhiError("FSQ has no stages to sweep: its depth is the number of levels, chosen from the size")
        return self.replace(fsq_levels=levels_for(size))

    @property
    def sweep_size(self) -> int:
        """The implied codebook: the product of the levels."""
        return math.prod(self.fsq_levels)


def levels_for(size: int) -> list[int]:
    """FSQ levels whose product (the implied codebook) is the size asked for, or near it.

    Rule: d = ⌈log₈ size⌉ dimensions, so that no dimension needs more than about 8 levels; every
    level is b = ⌊size^(1/d)⌋ or b + 1, raising one dimension at a time and keeping the product
    nearest to `size` in log ratio; largest levels first. Exact when `size` is a d-th power:
    16 → [4, 4], 64 → [8, 8], 4096 → [8, 8, 8, 8]; otherwise near: 256 → [7, 6, 6] (252),
    1024 → [6, 6, 6, 5] (1080).
    """
    if size < 2:
        raise QPhiError(f"an FSQ codebook needs at least 2 codes, got size {size}: use sizes >= 2")
    dims = max(1, math.ceil(math.log(size) / math.log(MAX_LEVEL) - 1e-9))
    base = max(2, round(size ** (1 / dims)))
    while base > 2 and base**dims > size:
        base -= 1
    candidates = [[base + 1] * raised + [base] * (dims - raised) for raised in range(dims + 1)]
    return min(candidates, key=lambda levels: abs(math.log(math.prod(levels) / size)))


def bound(x: Tensor, kind: str) -> Tensor:
    """Squash to (−1, 1): tanh, or the iFSQ bound 2·sigmoid(1.6x) − 1."""
    return torch.tanh(x) if kind == "tanh" else 2.0 * torch.sigmoid(1.6 * x) - 1.0


class FSQBottleneck(DiscreteBottleneck):
    def __init__(self, config: FSQConfig, d_model: int):
        super().__init__(config)
        self.config = config
        levels = torch.tensor(config.fsq_levels, dtype=torch.long)
        self.register_buffer("levels", levels, persistent=False)
        radix = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
        self.register_buffer("radix", radix, persistent=False)
        steps = torch.arange(max(config.fsq_levels))
        self.register_buffer("centres", (2.0 * steps + 1.0) / levels.unsqueeze(-1) - 1.0, persistent=False)
        self.register_buffer("valid_levels", steps < levels.unsqueeze(-1), persistent=False)  # (n_dims, max L)
        if config.fsq_prior == "joint":  # the implicit codebook: centre vectors of all Π L codes, (K, n_dims)
            digits = torch.arange(int(levels.prod())).unsqueeze(-1) // radix % levels
            self.register_buffer("codebook", (2.0 * digits + 1.0) / levels - 1.0, persistent=False)
        self.encode = nn.Linear(d_model, len(config.fsq_levels))
        self.decode = nn.Linear(len(config.fsq_levels), d_model)

    def forward(self, h: Tensor, mask: Tensor, sample: bool | None = None) -> BottleneckOutput:
        sample = self.training if sample is None else sample
        bounded = bound(self.encode(h), self.config.fsq_bound)
        levels = self.levels.to(bounded.dtype)
        logits = self._logits(bounded, levels)
        joint = self.config.fsq_prior == "joint"
        if sample:
            codes = draw(logits)  # (Q, B, T)
            index = codes[0].unsqueeze(-1) // self.radix % self.levels if joint else codes.permute(1, 2, 0)
        else:
            index = torch.floor((bounded + 1.0) * 0.5 * levels).clamp(min=0).minimum(self.levels - 1).long()
            per_dim = index.permute(2, 0, 1)  # (n_dims, B, T)
            codes = (per_dim * self.radix.view(-1, 1, 1)).sum(0, keepdim=True) if joint else per_dim
        centre = (2.0 * index + 1.0) / levels - 1.0
        z = bounded + (centre - bounded).detach()
        return BottleneckOutput(h=self.decode(z), z=z, posterior=CodeParams(codes, logits), codes=codes)

    def _logits(self, bounded: Tensor, levels: Tensor) -> Tensor:
        """−Σ ((b − centre) / w)² / τ over the codes of each prior factor (one per dimension, or all
        dimensions at once for the joint prior), w = 2 / L the bin width. (B, T, n_dims) → (Q, B, T, K)."""
        scaled = bounded * levels / 2.0  # in bin widths
        tau = self.tau()
        if self.config.fsq_prior == "joint":
            return (distance_logits(scaled, self.codebook * levels / 2.0) / tau).unsqueeze(0)
        logits = -(scaled.unsqueeze(-1) - self.centres * levels.unsqueeze(-1) / 2.0).pow(2) / tau  # (B, T, n_dims, L)
        return logits.masked_fill(~self.valid_levels, -torch.inf).permute(2, 0, 1, 3)
