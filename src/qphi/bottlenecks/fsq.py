"""Finite scalar quantization: a few bounded scalars, each rounded to a fixed number of levels.

The implicit codebook is the product of the levels, so there are no codebook parameters and
nothing can collapse. Each dimension is cut into L equal-width bins of the bounded range
(−1, 1) and represented by the bin centre; gradients pass straight through the rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qphi.bottlenecks.base import Bottleneck, BottleneckOutput, distance_logits, distance_scores
from qphi.latents import CodeParams
from qphi.phi.config import PHiConfig


def bound(x: Tensor, kind: str) -> Tensor:
    """Squash to (−1, 1): tanh, or the iFSQ bound 2·sigmoid(1.6x) − 1."""
    return torch.tanh(x) if kind == "tanh" else 2.0 * torch.sigmoid(1.6 * x) - 1.0


class FSQBottleneck(Bottleneck):
    def __init__(self, config: PHiConfig):
        super().__init__()
        self.config = config
        levels = torch.tensor(config.fsq_levels, dtype=torch.long)
        self.register_buffer("levels", levels, persistent=False)
        radix = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
        self.register_buffer("radix", radix, persistent=False)
        steps = torch.arange(max(config.fsq_levels))
        self.register_buffer("centres", (2.0 * steps + 1.0) / levels.unsqueeze(-1) - 1.0, persistent=False)
        self.register_buffer("valid_levels", steps < levels.unsqueeze(-1), persistent=False)  # (n_dims, max L)
        if config.fsq_prior == "joint":  # the implicit codebook: centre vectors of all Π L codes, (K, n_dims)
            digits = torch.arange(int(levels.prod())).unsqueeze(-1) // radix % levels
            self.register_buffer("codebook", (2.0 * digits + 1.0) / levels - 1.0, persistent=False)
        self.encode = nn.Linear(config.d_model, len(config.fsq_levels))
        self.decode = nn.Linear(len(config.fsq_levels), config.d_model)

    def forward(self, h: Tensor, mask: Tensor) -> BottleneckOutput:
        bounded = bound(self.encode(h), self.config.fsq_bound)
        levels = self.levels.to(bounded.dtype)
        index = torch.floor((bounded + 1.0) * 0.5 * levels).clamp(min=0).minimum(self.levels - 1).long()
        centre = (2.0 * index + 1.0) / levels - 1.0
        z = bounded + (centre - bounded).detach()
        per_dim = index.permute(2, 0, 1)  # (n_dims, B, T)
        if self.config.fsq_prior == "factorised":
            codes = per_dim
        else:
            codes = (per_dim * self.radix.view(-1, 1, 1)).sum(0, keepdim=True)
        posterior = CodeParams(codes, max(self.config.stage_sizes), self._relaxed(bounded))
        return BottleneckOutput(h=self.decode(z), z=z, posterior=posterior, codes=codes, critic_features=(bounded,))

    def _relaxed(self, bounded: Tensor) -> Tensor:
        """The distance-softmax q(k) ∝ exp(−‖b − centre_k‖² / τ) over the codes of each prior factor
        (one per dimension, or all at once for the joint prior). (B, T, n_dims) → (Q, B, T, K)."""
        tau = self.config.vq.critic_temperature
        if self.config.fsq_prior == "joint":
            return torch.softmax(distance_logits(bounded, self.codebook, tau), dim=-1).unsqueeze(0)
        logits = -(bounded.unsqueeze(-1) - self.centres).pow(2) / tau  # (B, T, n_dims, max L)
        return torch.softmax(logits.masked_fill(~self.valid_levels, -torch.inf), dim=-1).permute(2, 0, 1, 3)

    def critic_scores(self, out: BottleneckOutput) -> Tensor:
        (bounded,) = out.critic_features
        return distance_scores(bounded, out.z, self.config.vq.critic_temperature)
