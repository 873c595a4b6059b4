"""Configuration of a PHi layer: which bottleneck, its prior, and the loss weights."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from qphi.configuration import Config

BottleneckName = Literal["continuous", "gumbel", "vq", "residual", "fsq"]
BOTTLENECKS: tuple[str, ...] = ("continuous", "gumbel", "vq", "residual", "fsq")


class PriorConfig(Config):
    """The learned autoregressive prior: one causal self-attention block + RMSNorm + SwiGLU head."""

    width: int | None = Field(None, ge=8, description="model width of the prior; None = the host's d_model")
    n_heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(8 / 3, gt=0)
    rope_base: float = Field(10_000.0, gt=0)


class VQConfig(Config):
    """Options of nearest-codebook quantization (the `vq` bottleneck and VQ stages of `residual`)."""

    codebook_update: Literal["ema", "gradient"] = "ema"
    ema_decay: float = Field(0.95, gt=0, lt=1)
    kmeans_init: bool = True
    dead_code_threshold: float = Field(
        2.0, ge=0, description="revive codes whose EMA usage count per batch falls below this (0 = never)"
    )
    gradient: Literal["straight_through", "rotation"] = "rotation"
    critic_temperature: float = Field(
        1.0, gt=0, description="temperature of the soft (distance-softmax) posterior used only by the self-critic"
    )


class LossWeights(Config):
    """Weights λ of the PHi layer's loss terms (SPEC §2.4). Means are over loss-masked tokens."""

    phi: float = Field(1.0, ge=0)
    self_critic: float = Field(0.1, ge=0)
    reconstruction: float = Field(0.0, ge=0, description="weight of ||h - h'||² summed over the model width")
    commitment: float = Field(0.25, ge=0, description="β of the VQ commitment loss")
    latent_kl: float = Field(0.0, ge=0, description="KL of the posterior to N(0, I) or to Uniform(K)")
    detach_targets: bool = Field(
        False,
        description="detach the posterior (and the prior's input) inside the PHi term, so only the prior learns from it",
    )


class PHiConfig(Config):
    """A PHi layer placed on the main pathway of a sequence model of width `d_model`."""

    d_model: int | None = Field(None, ge=1, description="width of the host model; None = filled in by the model builder")
    bottleneck: BottleneckName = "gumbel"
    latent_dim: int | None = Field(
        None, ge=1, description="continuous: d_z (None = d_model); discrete: codebook vector width (None = min(d_model, 64))"
    )
    codebook_size: int = Field(64, ge=2, description="K, codes per stage (gumbel, vq, residual)")
    num_stages: int = Field(2, ge=1, description="Q, residual quantization stages")
    residual_quantizer: Literal["gumbel", "vq"] = "gumbel"
    fsq_levels: list[int] = Field(default_factory=lambda: [8, 5, 5, 5])
    fsq_bound: Literal["tanh", "ifsq"] = "tanh"
    fsq_prior: Literal["factorised", "joint"] = Field(
        "factorised", description="factorised: one categorical per FSQ dimension, coarse-to-fine; joint: one over all codes"
    )
    tau_start: float = Field(1.0, gt=0, description="Gumbel-softmax temperature at the start of training")
    tau_end: float = Field(0.1, gt=0, description="... and at the end (cosine anneal)")
    deterministic_eval: bool = Field(True, description="evaluation uses the posterior mean / argmax code, not a sample")
    logvar_min: float = -5.0
    logvar_max: float = 10.0
    prior: PriorConfig = PriorConfig()
    vq: VQConfig = VQConfig()
    loss: LossWeights = LossWeights()

    @model_validator(mode="after")
    def _check(self) -> PHiConfig:
        if any(level < 2 for level in self.fsq_levels) or not self.fsq_levels:
            raise ValueError(f"fsq_levels must be a non-empty list of integers >= 2, got {self.fsq_levels}")
        if self.logvar_min >= self.logvar_max:
            raise ValueError("logvar_min must be below logvar_max")
        if self.d_model is None:
            return self
        if self.prior_width % self.prior.n_heads:
            raise ValueError(
                f"the prior's width {self.prior_width} must be divisible by prior.n_heads={self.prior.n_heads}"
            )
        if (self.prior_width // self.prior.n_heads) % 2:
            raise ValueError("the prior's head width (width / n_heads) must be even for rotary embeddings")
        return self

    @property
    def prior_width(self) -> int:
        return self.prior.width or self.require_d_model()

    def require_d_model(self) -> int:
        if self.d_model is None:
            raise ValueError("PHiConfig.d_model is not set: give the host model's width (d_model=...)")
        return self.d_model

    @property
    def code_dim(self) -> int:
        """Width of the latent vector z (d_z for continuous, the codebook width for discrete)."""
        if self.bottleneck == "continuous":
            return self.latent_dim or self.require_d_model()
        if self.bottleneck == "fsq":
            return len(self.fsq_levels)
        return self.latent_dim or min(self.require_d_model(), 64)

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        """Codes per stage of the discrete latent (empty for the continuous bottleneck)."""
        if self.bottleneck == "continuous":
            return ()
        if self.bottleneck == "fsq":
            levels = tuple(self.fsq_levels)
            return levels if self.fsq_prior == "factorised" else (math.prod(levels),)
        stages = self.num_stages if self.bottleneck == "residual" else 1
        return (self.codebook_size,) * stages

    @property
    def max_phi_nats(self) -> float:
        """Upper bound of PHi per token for discrete bottlenecks: Σ_s ln K_s (inf for continuous)."""
        sizes = self.stage_sizes
        return sum(math.log(k) for k in sizes) if sizes else math.inf
