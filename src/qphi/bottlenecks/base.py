"""The one protocol every bottleneck follows.

A bottleneck maps the hidden states h (B, T, d_model) of the lower model part to

* a posterior q(z_t | h_t) — `Posterior` parameters a divergence can be computed from,
* a latent z_t (sampled in training, the mode at deterministic evaluation),
* the reconstruction h'_t = decode(z_t) that the upper part receives instead of h_t,
* the integer codes of discrete bottlenecks, and its own unweighted auxiliary losses.

It also scores its latents across the batch for the self-critic loss (SPEC §2.4).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from qphi.latents import Posterior


@dataclass
class BottleneckOutput:
    h: Tensor  # (B, T, d_model) reconstruction h' for the upper part
    z: Tensor  # (B, T, code_dim) latent vector (sum over stages for residual quantization)
    posterior: Posterior
    codes: Tensor | None = None  # (Q, B, T) int64 for discrete bottlenecks
    aux_losses: dict[str, Tensor] = field(default_factory=dict)  # unweighted, e.g. "commitment"
    critic_features: tuple[Tensor, ...] = ()  # what `critic_scores` needs beyond the posterior


class Bottleneck(nn.Module, ABC):
    """Base class of the continuous and quantized information bottlenecks."""

    @abstractmethod
    def forward(self, h: Tensor, mask: Tensor) -> BottleneckOutput:
        """h: (B, T, d_model) float32; mask: (B, T) bool, True at real tokens."""

    @abstractmethod
    def critic_scores(self, out: BottleneckOutput) -> Tensor:
        """scores[i, j, t]: how well item i's posterior at step t explains item j's latent. → (B, B, T).

        Only differences over j matter (the self-critic is a softmax over j), so terms
        that depend on i alone may be dropped.
        """

    def set_temperature(self, tau: float) -> None:
        """Set the Gumbel-softmax temperature (a no-op for bottlenecks without one)."""


def distance_logits(encoded: Tensor, codebook: Tensor, temperature: float) -> Tensor:
    """−‖e − c_k‖² / τ up to terms constant in k: logits of the distance-softmax over a codebook.

    encoded: (B, T, D), codebook: (K, D) → (B, T, K), without materialising (B, T, K, D).
    """
    return (2.0 * encoded @ codebook.T - codebook.pow(2).sum(-1)) / temperature


def distance_scores(encoded: Tensor, quantized: Tensor, temperature: float) -> Tensor:
    """−‖e_i − ẑ_j‖² / τ up to terms constant in j: the log of a distance-softmax posterior.

    encoded, quantized: (B, T, D) → (B, B, T), without materialising (B, B, T, D).
    """
    cross = torch.einsum("itd,jtd->ijt", encoded, quantized)
    return (2.0 * cross - quantized.pow(2).sum(-1).unsqueeze(0)) / temperature
