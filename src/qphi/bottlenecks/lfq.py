"""Lookup-free quantization (LFQ; Yu et al. 2024, "Language Model Beats Diffusion — Tokenizer is Key to
Visual Generation", MAGVIT-v2): the sign of each of n projected dimensions is one bit of the code, so
the implicit codebook has 2ⁿ codes and no codebook parameters.

The prior factorises over the bits coarse to fine, like FSQ's over its dimensions: bit i of step t is
predicted from all bits of earlier steps and bits < i of step t. The posterior of a bit is the
softmax over ±1 of −(x̂ − (±1))² / τ, where x̂ is the projection divided by its root mean square over
the n dimensions (the normalised scale: rescaling the projection changes neither codes nor
posterior). In training a bit is drawn from it; its mode is the sign. MAGVIT-v2's entropy penalty
(each token's bits confident, the bits' usage over the batch even) comes weighted by
`entropy_weight`; the usage entropy is taken per bit, an upper bound of the usage entropy of the 2ⁿ
codes that needs no 2ⁿ-wide table.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from typing_extensions import Self

from qphi.bottlenecks.base import BottleneckOutput, DiscreteBottleneck, DiscreteConfig, draw
from qphi.bottlenecks.registry import register
from qphi.errors import QPhiError
from qphi.latents import CodeParams, LatentShape


@register
class LFQConfig(DiscreteConfig):
    name: Literal["lfq"] = "lfq"
    title: ClassVar[str] = "LFQ"
    table_order: ClassVar[int] = 5
    tau_end: float = Field(0.05, gt=0, description="temperature of the posterior at the end (cosine anneal)")
    entropy_anneal: tuple[float, float] | None = None  # with it, the bits' posteriors hedged and needed bits merged
    lfq_bits: int = Field(6, ge=1, le=20, description="n, bits per code: an implicit codebook of 2ⁿ codes")
    entropy_weight: float = Field(0.1, ge=0, description="weight of the entropy penalty (0 = off)")
    diversity: float = Field(1.0, ge=0, description="γ: weight of the bits' usage entropy within the penalty")

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        return (2,) * self.lfq_bits

    def latent(self, d_model: int) -> LatentShape:
        return LatentShape(self.lfq_bits, self.stage_sizes)

    def build(self, d_model: int) -> LFQBottleneck:
        return LFQBottleneck(self, d_model)

    def sized(self, size: int, stages: int | None = None) -> Self:
        if stages not in (None, 1):
            raise QPhiError("LFQ has no stages to sweep: its bits are chosen from the size")
        if size < 2:
            raise QPhiError(f"an LFQ codebook needs at least 2 codes, got size {size}: use sizes >= 2")
        return self.replace(lfq_bits=max(1, round(math.log2(size))))

    @property
    def sweep_size(self) -> int:
        return 2**self.lfq_bits


class LFQBottleneck(DiscreteBottleneck):
    """h → x = W h (B, T, n) → bits → z ∈ {−1, +1}ⁿ (straight-through from x̂) → h' = W_dec z."""

    def __init__(self, config: LFQConfig, d_model: int):
        super().__init__(config)
        self.config = config
        self.encode = nn.Linear(d_model, config.lfq_bits)
        self.decode = nn.Linear(config.lfq_bits, d_model)

    def forward(self, h: Tensor, mask: Tensor, sample: bool | None = None) -> BottleneckOutput:
        sample = self.training if sample is None else sample
        x = self.encode(h)
        scaled = x / x.pow(2).mean(-1, keepdim=True).add(1e-12).sqrt()
        # −(x̂ ∓ 1)² up to terms that do not depend on the bit: code 0 is −1, code 1 is +1
        logits = (torch.stack([-2.0 * scaled, 2.0 * scaled], dim=-1) / self.tau()).permute(2, 0, 1, 3)  # (n, B, T, 2)
        codes = draw(logits) if sample else (x > 0).long().permute(2, 0, 1)  # (n, B, T)
        value = 2.0 * codes.permute(1, 2, 0).to(x.dtype) - 1.0
        z = scaled + (value - scaled).detach()
        posterior = CodeParams(codes, logits)
        aux = (
            {"entropy": self._entropy_penalty(posterior, mask)} if self.training and self.config.entropy_weight else {}
        )
        return BottleneckOutput(h=self.decode(z), z=z, posterior=posterior, codes=codes, aux_losses=aux)

    def _entropy_penalty(self, posterior: CodeParams, mask: Tensor) -> Tensor:
        """entropy_weight · (E_t[Σ_i H(q_i,t)] − γ · Σ_i H(E_t[q_i,t])), means over real tokens, in nats."""
        q = posterior.log_probs().exp()  # (n, B, T, 2)
        weights = mask.to(q.dtype) / mask.sum().clamp_min(1)
        per_token = -(q * q.clamp_min(1e-12).log()).sum((0, 3))  # (B, T)
        usage = torch.einsum("nbtk,bt->nk", q, weights)
        usage_entropy = -(usage * usage.clamp_min(1e-12).log()).sum()
        return self.config.entropy_weight * ((per_token * weights).sum() - self.config.diversity * usage_entropy)
