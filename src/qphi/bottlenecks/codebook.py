"""Codebook bottlenecks: quantizer stages stacked on successive residuals.

h → e = W_in h → Q stages, stage s quantizing what stages < s left over → z = Σ_s z⁽ˢ⁾ → h' = W_out z.
A plain Gumbel or VQ bottleneck is a stack of one stage; residual quantization stacks Q. Each
stage emits its codes, its latent vectors and — for a categorical stage — its posterior logits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from pydantic import Field
from torch import Tensor, nn
from typing_extensions import Self

from qphi.bottlenecks.base import Bottleneck, BottleneckConfig, BottleneckOutput, distance_scores
from qphi.errors import QPhiError
from qphi.latents import CategoricalParams, CodeParams, LatentShape


class CodebookConfig(BottleneckConfig):
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
    z: Tensor  # (B, T, D)
    codes: Tensor  # (B, T) int64
    logits: Tensor | None  # (B, T, K) posterior logits of a categorical stage, None for hard VQ
    commitment: Tensor | None
    relaxed: Tensor | None = None  # (B, T, K) distance-softmax of a hard VQ stage (see CodeParams)


class CodebookStage(nn.Module, ABC):
    """One quantizer stage: the residual r (B, T, D) → its codes and code vectors."""

    critic_temperature: float = 1.0  # of the distance-softmax that scores hard codes for the self-critic

    @abstractmethod
    def forward(self, r: Tensor, mask: Tensor, sample: bool) -> StageOutput: ...

    def set_progress(self, fraction: float) -> None:
        """Follow the training schedule (see `Bottleneck.set_progress`)."""

    @property
    def temperature(self) -> float | None:
        return None


class CodebookStack(Bottleneck):
    """Stages on successive residuals of the encoded input (see the module docstring)."""

    def __init__(self, d_model: int, code_dim: int, stages: list[CodebookStage]):
        super().__init__()
        self.encode = nn.Linear(d_model, code_dim)
        self.decode = nn.Linear(code_dim, d_model)
        self.stages = nn.ModuleList(stages)
        self.num_codes = max(s.num_codes for s in stages)

    def set_progress(self, fraction: float) -> None:
        for stage in self.stages:
            stage.set_progress(fraction)

    @property
    def temperature(self) -> float | None:
        return self.stages[0].temperature

    def forward(self, h: Tensor, mask: Tensor, sample: bool | None = None) -> BottleneckOutput:
        sample = self.training if sample is None else sample
        encoded = self.encode(h)
        residual, z = encoded, torch.zeros_like(encoded)
        outs = []
        for stage in self.stages:
            out = stage(residual, mask, sample)
            residual = residual - out.z.detach()
            z = z + out.z
            outs.append(out)
        codes = torch.stack([o.codes for o in outs])
        if all(o.logits is not None for o in outs):
            posterior = CategoricalParams(torch.stack([o.logits for o in outs]))
        else:
            posterior = CodeParams(codes, self.num_codes, torch.stack([o.relaxed for o in outs]))
        commitments = [o.commitment for o in outs if o.commitment is not None]
        aux = {"commitment": torch.stack(commitments).sum()} if commitments and self.training else {}
        return BottleneckOutput(
            h=self.decode(z), z=z, posterior=posterior, codes=codes, aux_losses=aux, critic_features=(encoded,)
        )

    def critic_scores(self, out: BottleneckOutput) -> Tensor:
        if isinstance(out.posterior, CategoricalParams):
            return categorical_scores(out.posterior, out.codes)
        (encoded,) = out.critic_features
        return distance_scores(encoded, out.z, self.stages[0].critic_temperature)


def categorical_scores(posterior: CategoricalParams, codes: Tensor) -> Tensor:
    """Σ_s ln q_i⁽ˢ⁾(c_j⁽ˢ⁾): item i's log-probability of item j's codes. → (B, B, T)."""
    log_q = posterior.log_probs()  # (Q, B, T, K)
    q_stages, batch, steps = codes.shape
    index = codes.permute(0, 2, 1).unsqueeze(1).expand(q_stages, batch, steps, batch)  # [s, i, t, j] = c_j
    return log_q.gather(-1, index).sum(0).permute(0, 2, 1)
