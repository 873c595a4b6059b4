"""Configuration of a PHi layer: which bottleneck (with its own options), its prior, the loss weights.

The bottleneck is any registered `BottleneckConfig` (`qphi.bottlenecks.registry`), told apart by its
`name`. It can be given whole (`bottleneck=VQConfig(codebook_size=256)`, or a mapping with `name`)
or, as in the presets and on the command line, as a name with its options beside it
(`bottleneck="vq", codebook_size=256`): such a flat option is routed to the chosen bottleneck, and
one that belongs to another bottleneck is an error that says which.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from qphi.bottlenecks import registry
from qphi.bottlenecks.base import BottleneckConfig
from qphi.configuration import Config
from qphi.errors import closest
from qphi.latents import LatentShape
from qphi.prior.config import PriorConfig

DEFAULT_BOTTLENECK = "gumbel"


class LossWeights(Config):
    """Weights λ of the PHi layer's loss terms (SPEC §2.4). Means are over loss-masked tokens."""

    phi: float = Field(1.0, ge=0)
    self_critic: float = Field(
        0.1,
        ge=0,
        description="weight of the self-critic (InfoNCE), which keeps the posterior from collapsing but pays for "
        "information useful or not — up to one nat per nat: keep it below `phi`, so it cannot pay for what the rate "
        "would not",
    )
    self_critic_fade: float | None = Field(
        None,
        gt=0,
        le=1,
        description="fraction of training by which the self-critic's weight has fallen linearly to 0 (None: constant): "
        "it keeps the posterior from collapsing early, but rewards any information, useful or not",
    )
    reconstruction: float = Field(0.0, ge=0, description="weight of ||h - h'||² summed over the model width")
    latent_kl: float = Field(0.0, ge=0, description="KL of the posterior to N(0, I) or to Uniform(K)")
    rate_warmup: float = Field(
        0.4,
        ge=0,
        le=1,
        description="fraction of training over which the PHi term's gradient into the posterior (the rate) ramps "
        "from 0 to 1, so that information passes the bottleneck before it is asked to be predictable; the prior "
        "learns at full weight throughout",
    )
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
    bottleneck: registry.config_type() = Field(  # type: ignore[valid-type]
        default_factory=lambda: registry.config_class(DEFAULT_BOTTLENECK)(),
        description=f"the bottleneck and its options: one of {', '.join(registry.names())}",
    )
    deterministic_eval: bool = Field(True, description="evaluation uses the posterior mean / argmax code, not a sample")
    prior: PriorConfig = PriorConfig()
    loss: LossWeights = LossWeights()

    @model_validator(mode="before")
    @classmethod
    def _route_bottleneck_options(cls, data: Any) -> Any:
        """`bottleneck: NAME` with the bottleneck's options beside it → one bottleneck config."""
        if not isinstance(data, dict):
            return data
        choice = data.get("bottleneck", DEFAULT_BOTTLENECK)
        flat = {k: v for k, v in data.items() if k not in cls.model_fields and registry.owners(k)}
        if isinstance(choice, str):
            choice = {"name": choice}
        elif isinstance(choice, BottleneckConfig) and flat:
            choice = choice.model_dump(exclude_unset=True) | {"name": choice.name}
        elif not (isinstance(choice, dict) and flat):
            return data  # nothing to route; a wrong type is reported at `bottleneck`
        name = choice.get("name")
        for key in flat:
            if name in registry.names() and name not in registry.owners(key):
                owners = registry.owners(key)
                listed = ", ".join(owners[:-1]) + " and " + owners[-1] if len(owners) > 1 else owners[0]
                raise ValueError(
                    f"'{key}' is an option of the {listed} bottleneck{'s' if len(owners) > 1 else ''}, not of "
                    f"{name}: remove it, or choose one of those with bottleneck=..."
                )
        rest = {k: v for k, v in data.items() if k not in flat}
        return {**rest, "bottleneck": {**choice, **flat}}

    @field_validator("bottleneck", mode="before")
    @classmethod
    def _known_bottleneck(cls, value: Any) -> Any:
        name = value.get("name") if isinstance(value, dict) else None
        if name is not None and name not in registry.names():
            choices = registry.names()
            raise ValueError(
                f"unknown bottleneck {name!r}{closest(str(name), choices)}: choose one of {', '.join(choices)}"
            )
        return value

    @classmethod
    def flat_keys(cls) -> list[str]:
        """The keys a `phi` block accepts: its own and every bottleneck's options (for suggestions)."""
        options = {key for name in registry.names() for key in registry.config_class(name).model_fields}
        return [*cls.model_fields, *sorted(options - set(cls.model_fields) - {"name"})]

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
    def latent(self) -> LatentShape:
        """The latent the prior predicts (its width, and the codes per stage of a discrete one)."""
        return self.bottleneck.latent(self.require_d_model())

    @property
    def code_dim(self) -> int:
        """Width of the latent vector z (d_z for continuous, the codebook width for discrete)."""
        return self.latent.code_dim

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        """Codes per stage of the discrete latent (empty for the continuous bottleneck)."""
        return self.bottleneck.stage_sizes

    @property
    def max_phi_nats(self) -> float:
        """Capacity of the discrete latent per token: Σ_s ln K_s nats (inf for continuous).

        It bounds the PHi under a uniform prior (a hard code then costs exactly this). A learned
        prior lowers the code length of predictable codes, but one token's PHi can exceed the
        capacity where the prior is confidently wrong.
        """
        sizes = self.stage_sizes
        return sum(math.log(k) for k in sizes) if sizes else math.inf


_shadowed = {key for cls in registry.configs().values() for key in cls.model_fields} & set(PHiConfig.model_fields)
if _shadowed - {"name"}:
    raise TypeError(f"bottleneck options {sorted(_shadowed)} have the names of PHiConfig's own keys: rename them")
