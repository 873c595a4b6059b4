"""Codebook bottlenecks: quantizer stages stacked on successive residuals.

h → e = W_in h → Q stages, stage s quantizing what stages < s left over → z = Σ_s z⁽ˢ⁾ → h' = W_out z.
A plain Gumbel or VQ bottleneck is a stack of one stage; residual quantization stacks Q. Each
stage emits its codes, its code vectors and the logits of its relaxed posterior over its K codes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from pydantic import Field
from torch import Tensor, nn
from typing_extensions import Self

from qphi.bottlenecks.base import BottleneckOutput, DiscreteBottleneck, DiscreteConfig
from qphi.errors import QPhiError
from qphi.latents import CategoricalParams, CodeParams, LatentShape, Posterior, Prior, categorical_kl


class CodebookConfig(DiscreteConfig):
    """Options shared by the bottlenecks that learn codebooks of K vectors per stage."""

    codebook_size: int = Field(64, ge=2, description="K, codes per stage")
    latent_dim: int | None = Field(None, ge=1, description="width of the codebook vectors (None = min(d_model, 64))")

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        return (self.codebook_size,) * self.depth()

    def latent(self, d_model: int) -> LatentShape:
        return LatentShape(self.latent_dim or min(d_model, 64), self.stage_sizes)

    def sized(self, size: int, stages: int | None = None) -> Self:
        if stages not in (None, self.depth()):
            raise QPhiError(f"the {self.name} bottleneck has one stage: sweep the depth with the residual bottleneck")
        return self.replace(codebook_size=size)

    @property
    def sweep_size(self) -> int:
        return self.codebook_size


@dataclass
class StageOutput:
    z: Tensor  # (B, T, D) code vectors (with their straight-through gradient)
    codes: Tensor  # (B, T) int64
    logits: Tensor  # (B, T, K) posterior logits, already divided by the temperature
    commitment: Tensor | None = None


class CodebookStage(nn.Module, ABC):
    """One quantizer stage: the residual r (B, T, D) → its codes and code vectors."""

    @abstractmethod
    def forward(self, r: Tensor, mask: Tensor, sample: bool, tau: Tensor) -> StageOutput: ...


class CodebookStack(DiscreteBottleneck):
    """Stages on successive residuals of the encoded input (see the module docstring).

    `kl_rate` trains KL(q ‖ p) instead of the expected code length: the first implementation's rate,
    kept for the ablation (it rewards broad posteriors, SPEC §2.6)."""

    def __init__(
        self, config: DiscreteConfig, d_model: int, code_dim: int, stages: list[CodebookStage], kl_rate: bool = False
    ):
        super().__init__(config)
        self.encode = nn.Linear(d_model, code_dim)
        self.decode = nn.Linear(code_dim, d_model)
        self.stages = nn.ModuleList(stages)
        self.kl_rate = kl_rate

    def forward(self, h: Tensor, mask: Tensor, sample: bool | None = None) -> BottleneckOutput:
        sample = self.training if sample is None else sample
        tau = self.tau()
        residual = self.encode(h)
        z = torch.zeros_like(residual)
        outs = []
        for stage in self.stages:
            out = stage(residual, mask, sample, tau)
            residual = residual - out.z.detach()
            z = z + out.z
            outs.append(out)
        codes = torch.stack([o.codes for o in outs])
        posterior = CodeParams(codes, torch.stack([o.logits for o in outs]))
        commitments = [o.commitment for o in outs if o.commitment is not None]
        aux = {"commitment": torch.stack(commitments).sum()} if commitments and self.training else {}
        return BottleneckOutput(h=self.decode(z), z=z, posterior=posterior, codes=codes, aux_losses=aux)

    def rate(self, q: Posterior, p: Prior) -> Tensor:
        if self.kl_rate:
            assert isinstance(q, CodeParams) and isinstance(p, CategoricalParams)
            return categorical_kl(q, p)
        return super().rate(q, p)
