"""Vector quantization (VQ-VAE style): a projection of h snapped to its nearest codebook vector."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor
from vector_quantize_pytorch import VectorQuantize

from qphi.bottlenecks.base import distance_logits, draw, standardise
from qphi.bottlenecks.codebook import CodebookConfig, CodebookStack, CodebookStage, StageOutput
from qphi.bottlenecks.registry import register
from qphi.configuration import Config


class VQOptions(Config):
    """Options of nearest-codebook quantization (the `vq` bottleneck and VQ stages of `residual`)."""

    codebook_update: Literal["ema", "gradient"] = "ema"
    ema_decay: float = Field(
        0.99, gt=0, lt=1, description="of the EMA codebook updates: slow, so that the prior can track the codes"
    )
    kmeans_init: bool = True
    dead_code_threshold: float = Field(
        0.0,
        ge=0,
        description="revive codes whose EMA usage count per batch falls below this (0 = never): revival re-seeds "
        "codes on current inputs, which moves the prior's targets and kept unneeded codes apart (measured)",
    )
    gradient: Literal["straight_through", "rotation"] = "rotation"
    commitment: float = Field(0.25, ge=0, description="β, the weight of the commitment loss")


# The temperatures of a VQ posterior over standardised distances (measured on the known-answer task:
# at τ = 1 its samples are too noisy to carry what is needed).
VQ_TAU_START, VQ_TAU_END = 0.7, 0.05


@register
class VQConfig(CodebookConfig):
    name: Literal["vq"] = "vq"
    title: ClassVar[str] = "VQ"
    table_order: ClassVar[int] = 2
    tau_start: float = Field(VQ_TAU_START, gt=0, description="temperature of the posterior at the start of training")
    tau_end: float = Field(VQ_TAU_END, gt=0, description="... and at the end (cosine anneal)")
    vq: VQOptions = VQOptions()

    def build(self, d_model: int) -> CodebookStack:
        code_dim = self.latent(d_model).code_dim
        return CodebookStack(self, d_model, code_dim, [VQStage(code_dim, self.codebook_size, self.vq)])


class VQStage(CodebookStage):
    """Nearest-codebook quantization (k-means init, EMA or gradient updates, dead-code revival,
    straight-through or rotation-trick gradients), delegated to `vector_quantize_pytorch`.

    The commitment loss comes weighted by β. The posterior is the softmax of the negative squared
    distances to the codes, standardised over the codes and divided by τ: its mode is the nearest
    code. A code drawn from it that is not the nearest passes its vector with a plain
    straight-through gradient; the nearest keeps the library's (rotation-trick) gradient."""

    def __init__(self, dim: int, num_codes: int, options: VQOptions):
        super().__init__()
        ema = options.codebook_update == "ema"
        self.vq = VectorQuantize(
            dim=dim,
            codebook_size=num_codes,
            decay=options.ema_decay,
            kmeans_init=options.kmeans_init,
            threshold_ema_dead_code=options.dead_code_threshold,
            rotation_trick=options.gradient == "rotation",
            ema_update=ema,
            learnable_codebook=not ema,
            commitment_weight=options.commitment,
        )

    @torch.compiler.disable(reason="codebook upkeep branches on data (k-means init, EMA, dead codes)")
    def _quantize(self, r: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The library's step runs eagerly under torch.compile: traced, its data-dependent codebook
        upkeep recompiled every step (5× slower on the `cpu` preset) or broke inductor outright."""
        return self.vq(r, mask=mask)

    def forward(self, r: Tensor, mask: Tensor, sample: bool, tau: Tensor) -> StageOutput:
        quantized, nearest, commitment = self._quantize(r, mask)
        nearest = nearest.clamp_min(0)
        # A copy: the next training pass updates the codebook in place (EMA, dead-code revival).
        codebook = self.vq.codebook.detach().clone()
        logits = standardise(distance_logits(r, codebook)) / tau
        if not sample:
            return StageOutput(z=quantized, codes=nearest, logits=logits, commitment=commitment)
        codes = draw(logits)
        drawn = r + (codebook[codes] - r).detach()
        z = torch.where((codes == nearest).unsqueeze(-1), quantized, drawn)
        return StageOutput(z=z, codes=codes, logits=logits, commitment=commitment)
