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
from pydantic import Field, model_validator
from torch import Tensor, nn
from typing_extensions import Self

from qphi.configuration import Config
from qphi.errors import QPhiError
from qphi.latents import CategoricalParams, CodeParams, LatentShape, Posterior, Prior, divergence, expected_code_length


@dataclass
class BottleneckOutput:
    h: Tensor  # (B, T, d_model) reconstruction h' for the upper part
    z: Tensor  # (B, T, code_dim) latent vector (sum over stages for residual quantization)
    posterior: Posterior
    codes: Tensor | None = None  # (Q, B, T) int64 for discrete bottlenecks
    aux_losses: dict[str, Tensor] = field(default_factory=dict)  # in training, weighted by the bottleneck's options


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

    def rate(self, q: Posterior, p: Prior) -> Tensor:
        """The rate term training minimises, per stage in nats (Q, B, T): by default PHi itself."""
        return divergence(q, p)

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


class DiscreteConfig(BottleneckConfig):
    """Options every discrete bottleneck shares: its temperature and how its rate is annealed.

    Every discrete bottleneck has a categorical posterior q over each stage's codes. In training the
    code sent upward is drawn from q (exploration: codes that are not needed can merge onto the ones
    the prior predicts); at evaluation it is q's mode (the argmax, the nearest code) unless
    `deterministic_eval` is off. τ anneals along a cosine: for VQ, FSQ and LFQ it is the temperature
    of q itself, whose logits live on a normalised scale (so τ means the same whatever the scale of
    the encoder's output), and the training channel ends close to the evaluation channel; for Gumbel
    stages, whose logits are learned, it is the temperature of the soft sample that carries the gradient.

    The rate trained is the expected code length of the sent code, E_q[−ln p(c)] = KL(q ‖ p) + H(q).
    With `entropy_anneal`, its gradient starts as the bits-back rate KL(q ‖ p) and gains the entropy
    term between the two fractions of training: deterministic annealing (Rose 1998, "Deterministic
    annealing for clustering, compression, classification, regression, and related optimization
    problems"). The posteriors of inputs nothing downstream needs first align with the prior, then
    all sharpen onto its mode together, instead of each freezing onto a code of its own.
    """

    tau_start: float = Field(1.0, gt=0, description="temperature at the start of training")
    tau_end: float = Field(0.1, gt=0, description="... and at the end (cosine anneal)")
    entropy_anneal: tuple[float, float] | None = Field(
        (0.4, 0.8),
        description="fractions of training between which the rate's gradient goes from KL(q ‖ p) to the expected "
        "code length KL(q ‖ p) + H(q); None: the expected code length throughout",
    )

    @model_validator(mode="after")
    def _check_schedules(self) -> Self:
        if self.tau_end > self.tau_start:
            raise ValueError(f"tau_end={self.tau_end} must not exceed tau_start={self.tau_start}: τ anneals downwards")
        if self.entropy_anneal is not None and not 0 <= self.entropy_anneal[0] < self.entropy_anneal[1] <= 1:
            raise ValueError(
                f"entropy_anneal={list(self.entropy_anneal)} must be two fractions of training, start < end, "
                "within [0, 1] (e.g. [0.4, 0.8]), or null"
            )
        return self


class DiscreteBottleneck(Bottleneck):
    """A bottleneck whose latent is a code stream: it emits `CodeParams`, follows its temperature
    schedule (kept in the checkpoint, so a loaded model evaluates at the temperature it reached),
    trains the expected code length of its codes and scores codes for the self-critic."""

    def __init__(self, config: DiscreteConfig):
        super().__init__()
        self.tau_start, self.tau_end = config.tau_start, config.tau_end
        self.entropy_anneal = config.entropy_anneal
        self.register_buffer("progress", torch.zeros(()))

    def set_progress(self, fraction: float) -> None:
        self.progress.fill_(min(1.0, max(0.0, fraction)))

    def tau(self) -> Tensor:
        """The temperature as a 0-dim tensor (computed on the device, so a compiled graph need not
        change when it does): τ_start → τ_end along half a cosine of the progress."""
        return self.tau_end + (self.tau_start - self.tau_end) * 0.5 * (1.0 + torch.cos(math.pi * self.progress))

    @property
    def temperature(self) -> float:
        return float(self.tau())

    def entropy_weight(self) -> Tensor:
        """The weight of H(q) in the rate's gradient, a 0-dim tensor like `tau`: 0 → 1 across
        `entropy_anneal` (1 without it)."""
        start, end = self.entropy_anneal or (-1.0, 0.0)
        return ((self.progress - start) / (end - start)).clamp(0.0, 1.0)

    def rate(self, q: Posterior, p: Prior) -> Tensor:
        assert isinstance(q, CodeParams) and isinstance(p, CategoricalParams)
        return expected_code_length(q, p, self.entropy_weight())

    def critic_scores(self, out: BottleneckOutput) -> Tensor:
        """Σ_s ln q̃_i⁽ˢ⁾(c_j⁽ˢ⁾): item i's relaxed posterior's log-probability of item j's codes. → (B, B, T)."""
        q = out.posterior
        assert isinstance(q, CodeParams)
        log_q = q.log_probs()  # (Q, B, T, K)
        stages, batch, steps = q.codes.shape
        index = q.codes.permute(0, 2, 1).unsqueeze(1).expand(stages, batch, steps, batch)  # [s, i, t, j] = c_j
        return log_q.gather(-1, index).sum(0).permute(0, 2, 1)


def draw(logits: Tensor) -> Tensor:
    """Codes (…) drawn from softmax(logits) (…, K) by the Gumbel-max trick."""
    return (logits - torch.empty_like(logits).exponential_().log()).argmax(-1)


def standardise(logits: Tensor) -> Tensor:
    """Logits minus their mean, divided by their standard deviation over the last dimension: the
    normalised scale of a relaxed posterior. Shift and scale invariant, so an encoder cannot sharpen
    or flatten the posterior by rescaling its output."""
    return (logits - logits.mean(-1, keepdim=True)) / logits.std(-1, keepdim=True).clamp_min(1e-6)


def cosine_anneal(start: float, end: float, fraction: float) -> float:
    """From `start` at fraction 0 to `end` at fraction 1 along half a cosine (e.g. a temperature 1 → 0.1)."""
    fraction = min(1.0, max(0.0, fraction))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * fraction))


def distance_logits(encoded: Tensor, codebook: Tensor) -> Tensor:
    """−‖e − c_k‖² up to terms constant in k: logits of the distance-softmax over a codebook.

    encoded: (B, T, D), codebook: (K, D) → (B, T, K), without materialising (B, T, K, D).
    """
    return 2.0 * encoded @ codebook.T - codebook.pow(2).sum(-1)
