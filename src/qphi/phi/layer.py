"""The PHi layer: bottleneck → learned prior → PHi loss, on the main pathway of a model.

h_t ──q──▶ z_t ──decode──▶ h'_t          (the upper layers see only h')
            │
            └── p(z_t | z_<t) ──▶ PHi_t = D(q(z_t|h_t) ‖ p(z_t|z_<t))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from qphi.latents import CodeParams, Posterior, Prior, code_length, divergence, kl_to_standard, scale_gradient
from qphi.phi.config import PHiConfig
from qphi.phi.losses import masked_mean, self_critic_loss
from qphi.prior.attention import SequenceLayout
from qphi.prior.prior import AutoregressivePrior


@dataclass
class PHiOutput:
    """Everything one PHi-layer pass computed. PHi values are 0 at padding."""

    h: Tensor  # (B, T, d_model): what the upper part of the model receives
    phi_per_stage: Tensor  # (Q, B, T) nats; Q = 1 for the continuous bottleneck
    z: Tensor  # (B, T, code_dim)
    codes: Tensor | None  # (Q, B, T) int64 for discrete bottlenecks
    code_length: Tensor | None  # (Q, B, T) nats, −ln p(code) under the prior (discrete only)
    posterior_params: Posterior
    prior_params: Prior
    mask: Tensor  # (B, T) bool
    losses: dict[str, Tensor] = field(default_factory=dict)  # weighted terms to add to the model's loss

    @property
    def phi(self) -> Tensor:
        """PHi per token in nats, summed over stages. → (B, T)."""
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
        self.rate_scale = 1.0

    def set_progress(self, fraction: float) -> None:
        """Where training stands (0 → 1), for the bottleneck's own schedules (e.g. its temperature)."""
        self.bottleneck.set_progress(fraction)

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

    def set_rate_scale(self, factor: float) -> None:
        """Scale the PHi term's gradient into the posterior (the *rate* gradient) by `factor` ∈ [0, 1]
        while the prior keeps learning at full weight — a warm-up that lets information flow
        through the bottleneck before it is asked to be predictable. Ignored with detached targets."""
        self.rate_scale = float(factor)

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
        rate = 0.0 if self.config.loss.detach_targets else self.rate_scale
        target = b.posterior.scale_gradient(rate)
        prior_input = b.codes if b.codes is not None else scale_gradient(b.z, rate)
        prior = self.prior(prior_input, SequenceLayout.build(mask, document_ids)).float()
        phi_per_stage = divergence(target, prior).masked_fill(~mask, 0.0)
        lengths = None
        if b.codes is not None:
            lengths = phi_per_stage if isinstance(b.posterior, CodeParams) else code_length(b.codes, prior.detach())
            lengths = lengths.masked_fill(~mask, 0.0)
        losses = self._losses(h.float(), b, phi_per_stage, loss_mask)
        return PHiOutput(
            h=b.h.to(h.dtype),
            phi_per_stage=phi_per_stage,
            z=b.z,
            codes=b.codes,
            code_length=lengths,
            posterior_params=b.posterior,
            prior_params=prior,
            mask=mask,
            losses=losses,
        )

    def _losses(self, h: Tensor, b, phi_per_stage: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Weighted loss terms; the auxiliary ones only in training (they are training signals)."""
        w = self.config.loss
        losses = {"phi": w.phi * masked_mean(phi_per_stage.sum(0), mask)}
        if not self.training:
            return losses
        if w.self_critic > 0 and h.shape[0] > 1:
            losses["self_critic"] = w.self_critic * self_critic_loss(self.bottleneck.critic_scores(b), mask)
        if w.reconstruction > 0:
            losses["reconstruction"] = w.reconstruction * masked_mean((h - b.h).pow(2).sum(-1), mask)
        if w.commitment > 0 and "commitment" in b.aux_losses:
            losses["commitment"] = w.commitment * b.aux_losses["commitment"]
        latent_kl = kl_to_standard(b.posterior) if w.latent_kl > 0 else None
        if latent_kl is not None:
            losses["latent_kl"] = w.latent_kl * masked_mean(latent_kl.sum(0), mask)
        return losses
