"""The PHi layer: bottleneck → learned prior → PHi loss, on the main pathway of a model.

h_t ──q──▶ z_t ──decode──▶ h'_t          (the upper layers see only h')
            │
            └── p(z_t | z_<t) ──▶ PHi_t = KL(q ‖ p) (continuous), −ln p(c_t | c_<t) (discrete codes c_t)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from qphi.bottlenecks.base import BottleneckOutput
from qphi.latents import CodeParams, Posterior, Prior, categorical_kl, divergence, kl_to_standard, scale_gradient
from qphi.phi.config import PHiConfig
from qphi.phi.losses import masked_mean, self_critic_loss
from qphi.prior.attention import SequenceLayout
from qphi.prior.prior import AutoregressivePrior


@dataclass
class PHiOutput:
    """Everything one PHi-layer pass computed. PHi values are 0 at padding."""

    h: Tensor  # (B, T, d_model): what the upper part of the model receives
    phi_per_stage: Tensor  # (Q, B, T) nats; Q = 1 for the continuous bottleneck; no gradient (see `losses`)
    z: Tensor  # (B, T, code_dim)
    codes: Tensor | None  # (Q, B, T) int64 for discrete bottlenecks: what the upper layers receive
    kl_per_stage: Tensor | None  # (Q, B, T) nats, KL(q ‖ p) of a discrete posterior: a diagnostic, not PHi
    posterior_params: Posterior
    prior_params: Prior
    mask: Tensor  # (B, T) bool
    losses: dict[str, Tensor] = field(default_factory=dict)  # weighted terms to add to the model's loss

    @property
    def phi(self) -> Tensor:
        """PHi per token in nats, summed over stages. → (B, T). For a discrete bottleneck this is the
        code length of the codes the upper layers receive: Σ_t of it is the range-coded size of the
        code stream under the prior, up to the coder's overhead."""
        return self.phi_per_stage.sum(0)

    @property
    def phi_bits(self) -> Tensor:
        return self.phi / math.log(2.0)

    @property
    def posterior(self) -> Distribution:
        return self.posterior_params.distribution()

    @property
    def prior(self) -> Distribution:
        return self.prior_params.distribution()

    @property
    def loss(self) -> Tensor:
        """Sum of the weighted loss terms."""
        return sum(self.losses.values(), torch.zeros((), device=self.h.device))


class PHiLayer(nn.Module):
    """Information bottleneck with a learned autoregressive prior (see `PHiConfig`)."""

    def __init__(self, config: PHiConfig):
        super().__init__()
        self.config = config
        self.bottleneck = config.bottleneck.build(config.require_d_model())
        self.prior = AutoregressivePrior(config.prior, config.prior_width, config.latent)
        self.set_progress(0.0)

    def set_progress(self, fraction: float) -> None:
        """Where training stands, 0 at the first step and 1 at the last; a training loop calls it every
        step. It sets the schedules: the bottleneck's (e.g. its temperature) and the rate warm-up,
        which scales the PHi term's gradient into the posterior (the *rate* gradient) from 0 to 1 over
        `loss.rate_warmup` of training while the prior keeps learning at full weight (0 throughout
        with detached targets)."""
        self.bottleneck.set_progress(fraction)
        w = self.config.loss
        ramp = min(1.0, fraction / w.rate_warmup) if w.rate_warmup else 1.0
        self.rate_scale = 0.0 if w.detach_targets else ramp
        fade = max(0.0, 1.0 - fraction / w.self_critic_fade) if w.self_critic_fade else 1.0
        self.critic_weight = w.self_critic * fade

    @property
    def sampling(self) -> bool:
        """Whether the bottleneck samples its latent (training, or evaluation without deterministic_eval)."""
        return self.training or not self.config.deterministic_eval

    def transmit(self, h: Tensor, mask: Tensor) -> Tensor:
        """What the upper layers receive for h (B, T, d_model), without the prior: for generation,
        where PHi is not needed. In evaluation every bottleneck works token by token (mean / argmax /
        nearest code), so KV-cached generation through it is exact."""
        with torch.autocast(h.device.type, enabled=False):
            return self.bottleneck(h.float(), mask, self.sampling).h.to(h.dtype)

    def forward(
        self,
        h: Tensor,
        padding_mask: Tensor | None = None,
        document_ids: Tensor | None = None,
        loss_mask: Tensor | None = None,
    ) -> PHiOutput:
        """h: (B, T, d_model). padding_mask: (B, T) bool, True at real tokens. document_ids:
        (B, T) ints marking packed documents (the prior never looks across them). loss_mask:
        (B, T) bool, the tokens the loss terms average over (default: all real tokens)."""
        mask = padding_mask.bool() if padding_mask is not None else h.new_ones(h.shape[:2], dtype=torch.bool)
        loss_mask = mask if loss_mask is None else loss_mask.bool() & mask
        with torch.autocast(h.device.type, enabled=False):
            b = self.bottleneck(h.float(), mask, self.sampling)
        target = b.posterior.scale_gradient(self.rate_scale)
        prior_input = b.codes if b.codes is not None else scale_gradient(b.z, self.rate_scale)
        prior = self.prior(prior_input, SequenceLayout.build(mask, document_ids)).float()
        rate = self.bottleneck.rate(target, prior).masked_fill(~mask, 0.0)
        phi_per_stage = divergence(b.posterior, prior).detach().masked_fill(~mask, 0.0)
        kl = None
        if isinstance(b.posterior, CodeParams):
            kl = categorical_kl(b.posterior, prior).detach().masked_fill(~mask, 0.0)
        return PHiOutput(
            h=b.h.to(h.dtype),
            phi_per_stage=phi_per_stage,
            z=b.z,
            codes=b.codes,
            kl_per_stage=kl,
            posterior_params=b.posterior,
            prior_params=prior,
            mask=mask,
            losses=self._losses(h.float(), b, rate, loss_mask),
        )

    def _losses(self, h: Tensor, b: BottleneckOutput, rate: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Weighted loss terms; the auxiliary ones only in training (they are training signals). The
        bottleneck's own auxiliary terms come weighted by its own options."""
        w = self.config.loss
        losses = {"phi": w.phi * masked_mean(rate.sum(0), mask)}
        if not self.training:
            return losses
        if self.critic_weight > 0 and h.shape[0] > 1:
            losses["self_critic"] = self.critic_weight * self_critic_loss(self.bottleneck.critic_scores(b), mask)
        if w.reconstruction > 0:
            losses["reconstruction"] = w.reconstruction * masked_mean((h - b.h).pow(2).sum(-1), mask)
        losses.update(b.aux_losses)
        if w.latent_kl > 0:
            losses["latent_kl"] = w.latent_kl * masked_mean(kl_to_standard(b.posterior).sum(0), mask)
        return losses
