"""Vector quantization (VQ-VAE style): a projection of h snapped to its nearest codebook vector."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor
from vector_quantize_pytorch import VectorQuantize

from qphi.bottlenecks.base import distance_logits
from qphi.bottlenecks.codebook import CodebookConfig, CodebookStack, CodebookStage, StageOutput
from qphi.bottlenecks.registry import register
from qphi.configuration import Config


class VQOptions(Config):
    """Options of nearest-codebook quantization (the `vq` bottleneck and VQ stages of `residual`)."""

    codebook_update: Literal["ema", "gradient"] = "ema"
    ema_decay: float = Field(0.95, gt=0, lt=1)
    kmeans_init: bool = True
    dead_code_threshold: float = Field(
        2.0, ge=0, description="revive codes whose EMA usage count per batch falls below this (0 = never)"
    )
    gradient: Literal["straight_through", "rotation"] = "rotation"
    critic_temperature: float = Field(
        1.0,
        gt=0,
        description="temperature of the soft (distance-softmax) posterior of the codes, used by the "
        "self-critic and by the straight-through rate gradient of the PHi term (without detached targets)",
    )


@register
class VQConfig(CodebookConfig):
    name: Literal["vq"] = "vq"
    title: ClassVar[str] = "VQ"
    table_order: ClassVar[int] = 2
    vq: VQOptions = VQOptions()

    def build(self, d_model: int) -> CodebookStack:
        code_dim = self.latent(d_model).code_dim
        return CodebookStack(d_model, code_dim, [VQStage(code_dim, self.codebook_size, self.vq)])


class VQStage(CodebookStage):
    """Nearest-codebook quantization (k-means init, EMA or gradient updates, dead-code revival,
    straight-through or rotation-trick gradients), delegated to `vector_quantize_pytorch`."""

    def __init__(self, dim: int, num_codes: int, options: VQOptions):
        super().__init__()
        ema = options.codebook_update == "ema"
        self.num_codes = num_codes
        self.critic_temperature = options.critic_temperature
        self.vq = VectorQuantize(
            dim=dim,
            codebook_size=num_codes,
            decay=options.ema_decay,
            kmeans_init=options.kmeans_init,
            threshold_ema_dead_code=options.dead_code_threshold,
            rotation_trick=options.gradient == "rotation",
            ema_update=ema,
            learnable_codebook=not ema,
            commitment_weight=1.0,
        )

    @torch.compiler.disable(reason="codebook upkeep branches on data (k-means init, EMA, dead codes)")
    def _quantize(self, r: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The library's step runs eagerly under torch.compile: traced, its data-dependent codebook
        upkeep recompiled every step (5× slower on the `cpu` preset) or broke inductor outright."""
        return self.vq(r, mask=mask)

    def forward(self, r: Tensor, mask: Tensor, sample: bool) -> StageOutput:
        quantized, codes, commitment = self._quantize(r, mask)
        # A copy: the next training pass updates the codebook in place (EMA, dead-code revival).
        codebook = self.vq.codebook.detach().clone()
        relaxed = torch.softmax(distance_logits(r, codebook, self.critic_temperature), dim=-1)
        return StageOutput(z=quantized, codes=codes.clamp_min(0), logits=None, commitment=commitment, relaxed=relaxed)
