"""The thesis's main quantized bottleneck: a categorical posterior over K codes, sampled with
the Gumbel-softmax (hard sample forward, soft straight-through gradient)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from qphi.bottlenecks.base import DiscreteConfig
from qphi.bottlenecks.codebook import CodebookConfig, CodebookStack, CodebookStage, StageOutput
from qphi.bottlenecks.registry import register


class GumbelOptions(DiscreteConfig):
    """Options of a Gumbel-softmax stage (the `gumbel` bottleneck and Gumbel stages of `residual`)."""

    gumbel_logit_init: float = Field(
        4.0, gt=0, description="spread of the posterior's initial logits (see GumbelStage)"
    )
    rate: Literal["code_length", "kl"] = Field(
        "code_length",
        description="code_length: train the expected code length of the sent codes; kl: the first implementation's "
        "rate, for the ablation: KL(q ‖ p) throughout, which rewards broad posteriors whose argmax costs far more",
    )


@register
class GumbelConfig(CodebookConfig, GumbelOptions):
    name: Literal["gumbel"] = "gumbel"
    title: ClassVar[str] = "Gumbel"
    table_order: ClassVar[int] = 1

    def build(self, d_model: int) -> CodebookStack:
        code_dim = self.latent(d_model).code_dim
        stage = GumbelStage(code_dim, self.codebook_size, self)
        return CodebookStack(self, d_model, code_dim, [stage], kl_rate=self.rate == "kl")


class GumbelStage(CodebookStage):
    """Categorical posterior q = softmax(ℓ) over K codes: a code drawn from it (Gumbel-max) when
    sampling, its mode otherwise; the soft Gumbel-softmax sample at temperature τ carries the gradient.

    The logits read the RMS-normalised input, so their initial spread is `gumbel_logit_init` whatever
    the scale of the host's hidden states. Their scale is learned: how sharp q is, input by input, is
    the posterior's to choose. (Standardising them over the codes, as the VQ, FSQ and LFQ posteriors
    are, was measured on the known-answer task: it either let needed codes merge, at τ ≥ 1.15, or kept
    unneeded ones apart, at τ = 1 — see docs/coding.md.)
    """

    def __init__(self, dim: int, num_codes: int, options: GumbelOptions):
        super().__init__()
        self.kl_rate = options.rate == "kl"
        self.norm = nn.RMSNorm(dim, elementwise_affine=False)
        self.to_logits = nn.Linear(dim, num_codes)
        nn.init.normal_(self.to_logits.weight, std=options.gumbel_logit_init / dim**0.5)
        nn.init.zeros_(self.to_logits.bias)
        self.codebook = nn.Parameter(torch.randn(num_codes, dim) / dim**0.5)

    def forward(self, r: Tensor, mask: Tensor, sample: bool, tau: Tensor) -> StageOutput:
        logits = self.to_logits(self.norm(r))
        if sample:
            one_hot = F.gumbel_softmax(logits, tau=tau, hard=True)
        else:
            one_hot = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        return StageOutput(z=one_hot @ self.codebook, codes=one_hot.argmax(-1), logits=logits)
