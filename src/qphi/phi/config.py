"""Configuration of a PHi layer: which bottleneck, its prior, and the loss weights."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

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
        1.0,
        gt=0,
        description="temperature of the soft (distance-softmax) posterior of VQ and FSQ codes, used by the "
        "self-critic and by the straight-through rate gradient of the PHi term (without detached targets)",
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
        description="detach the posterior (and the prior's input) inside the PHi term, so only the prior learns from it; "
        "without it the PHi term is also a rate term that makes the posterior predictable",
    )


class PHiConfig(Config):
    """A PHi layer placed on the main pathway of a sequence model of width `d_model`."""

    d_model: int | None = Field(
        None, ge=1, description="width of the host model; None = filled in by the model builder"
    )
    bottleneck: BottleneckName = "gumbel"
    latent_dim: int | None = Field(
        None,
        ge=1,
        description="continuous: d_z (None = d_model); discrete: codebook vector width (None = min(d_model, 64))",
    )
    codebook_size: int = Field(64, ge=2, description="K, codes per stage (gumbel, vq, residual)")
    num_stages: int = Field(2, ge=1, description="Q, residual quantization stages")
    residual_quantizer: Literal["gumbel", "vq"] = "gumbel"
    fsq_levels: list[int] = Field(default_factory=lambda: [8, 5, 5, 5])
    fsq_bound: Literal["tanh", "ifsq"] = "tanh"
    fsq_prior: Literal["factorised", "joint"] = Field(
        "factorised",
        description="factorised: one categorical per FSQ dimension, coarse-to-fine; joint: one over all codes",
    )
    gumbel_logit_init: float = Field(
        4.0, gt=0, description="spread of the Gumbel posterior's initial logits (see GumbelStage)"
    )
    tau_start: float = Field(1.0, gt=0, description="Gumbel-softmax temperature at the start of training")
    tau_end: float = Field(0.1, gt=0, description="... and at the end (cosine anneal)")
    deterministic_eval: bool = Field(True, description="evaluation uses the posterior mean / argmax code, not a sample")
    logvar_min: float = -5.0
    logvar_max: float = 10.0
    prior: PriorConfig = PriorConfig()
    vq: VQConfig = VQConfig()
    loss: LossWeights = LossWeights()

    @field_validator("fsq_levels")
    @classmethod
    def _check_levels(cls, levels: list[int]) -> list[int]:
        if not levels or min(levels) < 2:
            raise ValueError("must be a non-empty list of levels per FSQ dimension, each >= 2 (e.g. [8, 5, 5, 5])")
        return levels

    @field_validator("logvar_max")
    @classmethod
    def _check_logvar(cls, logvar_max: float, info: ValidationInfo) -> float:
        if "logvar_min" in info.data and logvar_max <= info.data["logvar_min"]:
            raise ValueError(f"must be above logvar_min={info.data['logvar_min']}")
        return logvar_max

    @field_validator("prior")
    @classmethod
    def _check_prior(cls, prior: PriorConfig, info: ValidationInfo) -> PriorConfig:
        """Checked here rather than after the whole model, so that errors name the `prior` key."""
        width = prior.width or info.data.get("d_model")
        if width is None:  # d_model is not set yet (the model builder fills it in) or invalid (reported on its own)
            return prior
        if width % prior.n_heads:
            raise ValueError(
                f"the prior's width {width} must be divisible by n_heads={prior.n_heads}: change prior.n_heads or prior.width"
            )
        if (width // prior.n_heads) % 2:
            raise ValueError(
                f"the prior's head width {width} / {prior.n_heads} must be even for rotary embeddings: change prior.n_heads or prior.width"
            )
        return prior

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
        """Capacity of the discrete latent per token: Σ_s ln K_s nats (inf for continuous).

        It bounds the PHi under a uniform prior (a hard code then costs exactly this). A learned
        prior lowers the code length of predictable codes, but one token's PHi can exceed the
        capacity where the prior is confidently wrong.
        """
        sizes = self.stage_sizes
        return sum(math.log(k) for k in sizes) if sizes else math.inf
