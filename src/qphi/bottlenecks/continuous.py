"""The paper's bottleneck: a diagonal Gaussian posterior over a continuous latent."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qphi.bottlenecks.base import Bottleneck, BottleneckOutput
from qphi.latents import GaussianParams
from qphi.phi.config import PHiConfig


class GaussianBottleneck(Bottleneck):
    """[μ, log σ²] = W h; z = μ + σ ε in training (μ at deterministic evaluation); h' = W_dec z."""

    def __init__(self, config: PHiConfig):
        super().__init__()
        self.config = config
        self.encode = nn.Linear(config.d_model, 2 * config.code_dim)
        self.decode = nn.Linear(config.code_dim, config.d_model)

    def forward(self, h: Tensor, mask: Tensor) -> BottleneckOutput:
        mean, logvar = self.encode(h).chunk(2, dim=-1)
        mean = mean.contiguous()  # not a view: torch.compile (2.13) mis-replays a view it returns across a graph break
        logvar = logvar.clamp(self.config.logvar_min, self.config.logvar_max)
        if self.training or not self.config.deterministic_eval:
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        else:
            z = mean
        return BottleneckOutput(h=self.decode(z), z=z, posterior=GaussianParams(mean, logvar))

    def critic_scores(self, out: BottleneckOutput) -> Tensor:
        """ln N(z_j; μ_i, σ_i²) summed over dims, expanded so no (B, B, T, D) tensor is formed."""
        q = out.posterior
        assert isinstance(q, GaussianParams)
        precision = torch.exp(-q.logvar)
        quadratic = torch.einsum("itd,jtd->ijt", precision, out.z.pow(2))
        linear = torch.einsum("itd,jtd->ijt", q.mean * precision, out.z)
        own = (q.mean.pow(2) * precision + q.logvar).sum(-1)  # (B, T), depends on i only
        return -0.5 * (quadratic - 2.0 * linear + own.unsqueeze(1))
