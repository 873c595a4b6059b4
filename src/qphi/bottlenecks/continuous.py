"""The paper's bottleneck: a diagonal Gaussian posterior over a continuous latent."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from qphi.bottlenecks.base import Bottleneck, BottleneckConfig, BottleneckOutput
from qphi.bottlenecks.registry import register
from qphi.errors import QPhiError
from qphi.latents import GaussianParams, LatentShape


@register
class ContinuousConfig(BottleneckConfig):
    """PHi_t = KL(N(μ, σ²) ‖ N(μ_p, σ_p²)) summed over the latent's dimensions (SPEC §2.2)."""

    name: Literal["continuous"] = "continuous"
    title: ClassVar[str] = "Continuous"
    table_order: ClassVar[int] = 0
    latent_dim: int | None = Field(None, ge=1, description="d_z, the latent's width (None = the host's d_model)")
    logvar_min: float = Field(-5.0, description="clamp of the posterior's and the prior's log-variance")
    logvar_max: float = 10.0

    @model_validator(mode="after")
    def _check(self) -> ContinuousConfig:
        if self.logvar_max <= self.logvar_min:
            raise ValueError(f"logvar_max={self.logvar_max} must be above logvar_min={self.logvar_min}")
        return self

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        return ()

    def latent(self, d_model: int) -> LatentShape:
        return LatentShape(self.latent_dim or d_model, (), (self.logvar_min, self.logvar_max))

    def build(self, d_model: int) -> GaussianBottleneck:
        return GaussianBottleneck(self, d_model)


class GaussianBottleneck(Bottleneck):
    """[μ, log σ²] = W h; z = μ + σ ε when sampling (μ otherwise); h' = W_dec z."""

    def __init__(self, config: ContinuousConfig, d_model: int):
        super().__init__()
        self.config = config
        code_dim = config.latent(d_model).code_dim
        self.encode = nn.Linear(d_model, 2 * code_dim)
        self.decode = nn.Linear(code_dim, d_model)

    def forward(self, h: Tensor, mask: Tensor, sample: bool | None = None) -> BottleneckOutput:
        sample = self.training if sample is None else sample
        mean, logvar = self.encode(h).chunk(2, dim=-1)
        mean = mean.contiguous()  # not a view: torch.compile (2.13) mis-replays a view it returns across a graph break
        logvar = logvar.clamp(self.config.logvar_min, self.config.logvar_max)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample else mean
        return BottleneckOutput(h=self.decode(z), z=z, posterior=GaussianParams(mean, logvar))

    @torch.no_grad()
    def start_as_identity(self, logvar: float = -4.0) -> None:
        """μ = h, log σ² = `logvar`, h' = z: the identity map plus small noise. A frozen host then
        behaves as without the layer from the first step, and training only has to trade that
        fidelity for predictability instead of first learning to pass h through."""
        d = self.decode.out_features
        if self.decode.in_features != d:
            raise QPhiError(
                "model.phi_init=identity needs the continuous bottleneck with latent_dim = the model width: "
                "use phi.bottleneck=continuous without phi.latent_dim, or model.phi_init=default"
            )
        self.encode.weight.zero_()
        self.encode.weight[:d].copy_(torch.eye(d))
        self.encode.bias.zero_()
        self.encode.bias[d:].fill_(logvar)
        self.decode.weight.copy_(torch.eye(d))
        self.decode.bias.zero_()

    def critic_scores(self, out: BottleneckOutput) -> Tensor:
        """ln N(z_j; μ_i, σ_i²) summed over dims, expanded so no (B, B, T, D) tensor is formed."""
        q = out.posterior
        assert isinstance(q, GaussianParams)
        precision = torch.exp(-q.logvar)
        quadratic = torch.einsum("itd,jtd->ijt", precision, out.z.pow(2))
        linear = torch.einsum("itd,jtd->ijt", q.mean * precision, out.z)
        own = (q.mean.pow(2) * precision + q.logvar).sum(-1)  # (B, T), depends on i only
        return -0.5 * (quadratic - 2.0 * linear + own.unsqueeze(1))
