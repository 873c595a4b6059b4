"""Shared fixtures of the PHi-layer tests: one small config per bottleneck, random weights, inputs."""

from __future__ import annotations

import torch
from torch import nn

from qphi import PHiConfig, PHiLayer

D_MODEL = 16

# Small configurations covering every bottleneck and prior factorisation.
CASES: dict[str, dict] = {
    "continuous": {"bottleneck": "continuous", "latent_dim": 8},
    "gumbel": {"bottleneck": "gumbel", "codebook_size": 8},
    "vq": {"bottleneck": "vq", "codebook_size": 8},
    "residual": {"bottleneck": "residual", "num_stages": 3, "codebook_size": 6},
    "residual_vq": {
        "bottleneck": "residual",
        "residual_quantizer": "vq",
        "num_stages": 2,
        "codebook_size": 6,
    },
    "fsq": {"bottleneck": "fsq", "fsq_levels": [4, 3, 5]},
    "fsq_joint": {"bottleneck": "fsq", "fsq_levels": [4, 3, 5], "fsq_prior": "joint"},
    "lfq": {"bottleneck": "lfq", "lfq_bits": 4},
}
DISCRETE = [name for name in CASES if name != "continuous"]


def make_config(case: str, **overrides) -> PHiConfig:
    data = {"d_model": D_MODEL, "prior": {"n_heads": 2}, **CASES[case], **overrides}
    return PHiConfig(**data)


def randomize_(module: nn.Module, std: float = 0.5, seed: int = 0) -> nn.Module:
    """Overwrite every parameter with N(0, std²) values, so no weight is a trivial zero or one."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)
    return module


def make_layer(case: str, seed: int = 0, randomized: bool = True, **overrides) -> PHiLayer:
    """A PHi layer with random, non-trivial weights (its prior's output layers are not near zero)."""
    torch.manual_seed(seed)
    layer = PHiLayer(make_config(case, **overrides))
    if randomized:
        randomize_(layer, seed=seed)
    return layer


def random_h(batch: int = 3, steps: int = 10, seed: int = 1) -> torch.Tensor:
    """(B, T, d_model) hidden states of unit scale."""
    return torch.randn(batch, steps, D_MODEL, generator=torch.Generator().manual_seed(seed)) * 2.0


def evaluate(layer: PHiLayer, h: torch.Tensor, seed: int = 0, **kwargs):
    """One forward pass with a fixed global seed (VQ k-means initialisation draws from it)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return layer(h, **kwargs)
