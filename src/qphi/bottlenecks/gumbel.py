"""The thesis's main quantized bottleneck: a categorical posterior over K codes, sampled with
the Gumbel-softmax (hard sample forward, soft straight-through gradient)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from qphi.bottlenecks.base import BottleneckConfig, cosine_anneal
from qphi.bottlenecks.codebook import CodebookConfig, CodebookStack, CodebookStage, StageOutput
from qphi.bottlenecks.registry import register


class GumbelOptions(BottleneckConfig):
    """Options of a Gumbel-softmax stage (the `gumbel` bottleneck and Gumbel stages of `residual`)."""

    gumbel_logit_init: float = Field(
        4.0, gt=0, description="spread of the posterior's initial logits (see GumbelStage)"
    )
    tau_start: float = Field(1.0, gt=0, description="Gumbel-softmax temperature at the start of training")
    tau_end: float = Field(0.1, gt=0, description="... and at the end (cosine anneal)")


@register
class GumbelConfig(CodebookConfig, GumbelOptions):
    name: Literal["gumbel"] = "gumbel"
    title: ClassVar[str] = "Gumbel"
    table_order: ClassVar[int] = 1

    def build(self, d_model: int) -> CodebookStack:
        code_dim = self.latent(d_model).code_dim
        return CodebookStack(d_model, code_dim, [GumbelStage(code_dim, self.codebook_size, self)])


class GumbelStage(CodebookStage):
    """Categorical posterior over K codes; a hard Gumbel-softmax sample when sampling.

    The logits read the RMS-normalised input, so their initial spread is `gumbel_logit_init`
    whatever the scale of the host's hidden states: small gives broad posteriors that sharpen only
    where the next-token loss asks for information (and little flows at first); large gives
    near-deterministic, VQ-like codes from the start.
    """

    def __init__(self, dim: int, num_codes: int, options: GumbelOptions):
        super().__init__()
        self.options = options
        self.num_codes = num_codes
        self.tau = options.tau_start
        self.norm = nn.RMSNorm(dim, elementwise_affine=False)
        self.to_logits = nn.Linear(dim, num_codes)
        nn.init.normal_(self.to_logits.weight, std=options.gumbel_logit_init / dim**0.5)
        nn.init.zeros_(self.to_logits.bias)
        self.codebook = nn.Parameter(torch.randn(num_codes, dim) / dim**0.5)

    def set_progress(self, fraction: float) -> None:
        self.tau = cosine_anneal(self.options.tau_start, self.options.tau_end, fraction)

    @property
    def temperature(self) -> float:
        return self.tau

    def forward(self, r: Tensor, mask: Tensor, sample: bool) -> StageOutput:
        logits = self.to_logits(self.norm(r))
        if sample:
            one_hot = F.gumbel_softmax(logits, tau=self.tau, hard=True)
        else:
            one_hot = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        return StageOutput(z=one_hot @ self.codebook, codes=one_hot.argmax(-1), logits=logits, commitment=None)
