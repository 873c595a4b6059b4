"""Codebook quantizers: Gumbel-softmax and VQ stages, stacked on successive residuals.

`gumbel` and `vq` are a residual quantizer with one stage; `residual` stacks Q stages, stage
s quantizing what stages < s left over (z = Σ_s z⁽ˢ⁾). Each stage emits its code, its latent
vector and — for Gumbel — its posterior logits over the K codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vector_quantize_pytorch import VectorQuantize

from qphi.bottlenecks.base import Bottleneck, BottleneckOutput, distance_logits, distance_scores
from qphi.latents import CategoricalParams, CodeParams
from qphi.phi.config import PHiConfig, VQConfig


@dataclass
class StageOutput:
    z: Tensor  # (B, T, D)
    codes: Tensor  # (B, T) int64
    logits: Tensor | None  # (B, T, K) posterior logits of a categorical stage, None for hard VQ
    commitment: Tensor | None
    relaxed: Tensor | None = None  # (B, T, K) distance-softmax of a hard VQ stage (see CodeParams)


class GumbelStage(nn.Module):
    """Categorical posterior over K codes; a hard Gumbel-softmax sample in training.

    The logits read the RMS-normalised input, so their initial spread is `logit_init` whatever
    the scale of the host's hidden states: small gives broad posteriors that sharpen only where
    the next-token loss asks for information (and little flows at first); large gives
    near-deterministic, VQ-like codes from the start.
    """

    def __init__(self, dim: int, num_codes: int, logit_init: float):
        super().__init__()
        self.norm = nn.RMSNorm(dim, elementwise_affine=False)
        self.to_logits = nn.Linear(dim, num_codes)
        nn.init.normal_(self.to_logits.weight, std=logit_init / dim**0.5)
        nn.init.zeros_(self.to_logits.bias)
        self.codebook = nn.Parameter(torch.randn(num_codes, dim) / dim**0.5)

    def forward(self, r: Tensor, mask: Tensor, sample: bool, tau: float) -> StageOutput:
        logits = self.to_logits(self.norm(r))
        if sample:
            one_hot = F.gumbel_softmax(logits, tau=tau, hard=True)
        else:
            one_hot = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        return StageOutput(z=one_hot @ self.codebook, codes=one_hot.argmax(-1), logits=logits, commitment=None)


class VQStage(nn.Module):
    """Nearest-codebook quantization (k-means init, EMA or gradient updates, dead-code revival,
    straight-through or rotation-trick gradients), delegated to `vector_quantize_pytorch`."""

    def __init__(self, dim: int, num_codes: int, options: VQConfig):
        super().__init__()
        ema = options.codebook_update == "ema"
        self.temperature = options.critic_temperature
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

    def forward(self, r: Tensor, mask: Tensor, sample: bool, tau: float) -> StageOutput:
        quantized, codes, commitment = self._quantize(r, mask)
        # A copy: the next training pass updates the codebook in place (EMA, dead-code revival).
        codebook = self.vq.codebook.detach().clone()
        relaxed = torch.softmax(distance_logits(r, codebook, self.temperature), dim=-1)
        return StageOutput(z=quantized, codes=codes.clamp_min(0), logits=None, commitment=commitment, relaxed=relaxed)


class ResidualQuantizer(Bottleneck):
    """h → e = W_in h → Q quantizer stages on successive residuals → z = Σ z⁽ˢ⁾ → h' = W_out z."""

    def __init__(self, config: PHiConfig, kind: str, num_stages: int):
        super().__init__()
        self.config = config
        self.kind = kind
        dim, k = config.code_dim, config.codebook_size
        self.encode = nn.Linear(config.d_model, dim)
        self.decode = nn.Linear(dim, config.d_model)
        if kind == "gumbel":
            self.stages = nn.ModuleList(GumbelStage(dim, k, config.gumbel_logit_init) for _ in range(num_stages))
        else:
            self.stages = nn.ModuleList(VQStage(dim, k, config.vq) for _ in range(num_stages))
        self.temperature = config.tau_start

    def set_temperature(self, tau: float) -> None:
        self.temperature = float(tau)

    def forward(self, h: Tensor, mask: Tensor) -> BottleneckOutput:
        encoded = self.encode(h)
        sample = self.training or not self.config.deterministic_eval
        residual, z = encoded, torch.zeros_like(encoded)
        outs = []
        for stage in self.stages:
            out = stage(residual, mask, sample, self.temperature)
            residual = residual - out.z.detach()
            z = z + out.z
            outs.append(out)
        codes = torch.stack([o.codes for o in outs])
        if self.kind == "gumbel":
            posterior = CategoricalParams(torch.stack([o.logits for o in outs]))
        else:
            posterior = CodeParams(codes, self.config.codebook_size, torch.stack([o.relaxed for o in outs]))
        aux = {}
        if self.kind == "vq" and self.training:
            aux["commitment"] = torch.stack([o.commitment for o in outs]).sum()
        return BottleneckOutput(
            h=self.decode(z), z=z, posterior=posterior, codes=codes, aux_losses=aux, critic_features=(encoded,)
        )

    def critic_scores(self, out: BottleneckOutput) -> Tensor:
        if isinstance(out.posterior, CategoricalParams):
            return categorical_scores(out.posterior, out.codes)
        (encoded,) = out.critic_features
        return distance_scores(encoded, out.z, self.config.vq.critic_temperature)


def categorical_scores(posterior: CategoricalParams, codes: Tensor) -> Tensor:
    """Σ_s ln q_i⁽ˢ⁾(c_j⁽ˢ⁾): item i's log-probability of item j's codes. → (B, B, T)."""
    log_q = posterior.log_probs()  # (Q, B, T, K)
    q_stages, batch, steps = codes.shape
    index = codes.permute(0, 2, 1).unsqueeze(1).expand(q_stages, batch, steps, batch)  # [s, i, t, j] = c_j
    return log_q.gather(-1, index).sum(0).permute(0, 2, 1)
