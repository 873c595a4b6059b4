"""The one protocol every bottleneck follows, and the base of every bottleneck's own config.

A bottleneck maps the hidden states h (B, T, d_model) of the lower model part to

* a posterior q(z_t | h_t) — `Posterior` parameters a divergence can be computed from,
* a latent z_t (sampled in training, the mode at deterministic evaluation),
* the reconstruction h'_t = decode(z_t) that the upper part receives instead of h_t,
* the integer codes of discrete bottlenecks, and its own unweighted auxiliary losses.

It also scores its latents across the batch for the self-critic loss (SPEC §2.4).

Each bottleneck is one module that defines a `BottleneckConfig` subclass (its options, nothing
else) and registers it (`qphi.bottlenecks.registry.register`); the config builds the module.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn
from typing_extensions import Self

from qphi.configuration import Config
from qphi.errors import QPhiError
from qphi.latents import LatentShape, Posterior


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
    def forward(self, h: Tensor, mask: Tensor, sample: bool | None = None) -> BottleneckOutput:
        """h: (B, T, d_model) float32; mask: (B, T) bool, True at real tokens; sample: draw the latent
        from the posterior rather than take its mode (default: in training mode only; the PHi layer
        passes its own choice, see `PHiLayer.sampling`)."""

    @abstractmethod
    def critic_scores(self, out: BottleneckOutput) -> Tensor:
        """scores[i, j, t]: how well item i's posterior at step t explains item j's latent. → (B, B, T).

        Only differences over j matter (the self-critic is a softmax over j), so terms
        that depend on i alone may be dropped.
        """

    def set_progress(self, fraction: float) -> None:
        """Where training stands, 0 at the first step and 1 at the last: bottlenecks with a schedule
        (a temperature) follow it. A no-op for those without one."""

    @property
    def temperature(self) -> float | None:
        """The current temperature of a bottleneck that has one (logged with the training metrics)."""
        return None


class BottleneckConfig(Config, ABC):
    """The options of one bottleneck. `name` selects it; a subclass holds only options that apply to
    it, so a key that belongs to another bottleneck is refused rather than silently ignored."""

    name: str
    title: ClassVar[str]  # how tables and figures name it
    table_order: ClassVar[int]  # where it stands in tables and in `qphi reproduce`'s default list
    depth_axis: ClassVar[bool] = False  # whether the codebook sweep can also vary the number of stages

    @property
    @abstractmethod
    def stage_sizes(self) -> tuple[int, ...]:
        """Codes per stage of a discrete latent, coarse to fine; () for a continuous one."""

    @abstractmethod
    def latent(self, d_model: int) -> LatentShape:
        """The latent the prior predicts, for a host of width `d_model`."""

    @abstractmethod
    def build(self, d_model: int) -> Bottleneck:
        """The bottleneck module for a host of width `d_model`."""

    def sized(self, size: int, stages: int | None = None) -> Self:
        """The codebook-scaling axis (SPEC §5.7): this config with a codebook of about `size` codes
        (per stage, and `stages` stages, where `depth_axis`). Bottlenecks without a codebook refuse."""
        raise QPhiError(f"the {self.name} bottleneck has no codebook to scale: choose a discrete bottleneck")

    @property
    def sweep_size(self) -> int:
        """This config's position on the codebook-scaling axis: the inverse of `sized`."""
        raise QPhiError(f"the {self.name} bottleneck has no codebook to scale: choose a discrete bottleneck")

    def depth(self) -> int:
        """The number of quantizer stages on the sweep's depth axis (1 where there is none)."""
        return 1


def cosine_anneal(start: float, end: float, fraction: float) -> float:
    """From `start` at fraction 0 to `end` at fraction 1 along half a cosine (e.g. a temperature 1 → 0.1)."""
    fraction = min(1.0, max(0.0, fraction))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * fraction))


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
