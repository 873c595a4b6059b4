"""End to end: a briefly trained PHi layer reports little new information for a memorised
pattern and much for uniform noise (SPEC §1: boring-but-predictable has low PHi)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qphi import PHiConfig, PHiLayer

VOCAB, STEPS, D_MODEL, ROWS = 8, 12, 16, 16
PATTERN = torch.tensor([5, 2, 7, 0, 3, 6, 1, 4, 5, 2, 7, 0])  # one fixed row, seen again and again

DETACHED, RATE = {"detach_targets": True}, {"detach_targets": False}
BOTTLENECKS = {
    # the paper's setting: λ_phi = 1 without detached targets
    "continuous": {"bottleneck": "continuous", "latent_dim": 4, "loss": RATE},
    # the thesis's setting: detached targets
    "gumbel": {"bottleneck": "gumbel", "codebook_size": 16, "latent_dim": 8, "tau_end": 0.5, "loss": DETACHED},
    "vq": {"bottleneck": "vq", "codebook_size": 8, "latent_dim": 8, "loss": DETACHED},
    "residual": {
        "bottleneck": "residual",
        "num_stages": 2,
        "codebook_size": 4,
        "latent_dim": 8,
        "tau_end": 0.5,
        "loss": DETACHED,
    },
    # With detached targets nothing keeps FSQ codes off the bin edges: they flip from step to step
    # and the prior chases them. The straight-through rate term keeps them predictable.
    "fsq": {"bottleneck": "fsq", "fsq_levels": [3, 3, 3], "loss": RATE},
}


def batch(generator: torch.Generator, noise: bool) -> torch.Tensor:
    """(ROWS, STEPS) tokens: the fixed pattern, or i.i.d. uniform tokens."""
    if noise:
        return torch.randint(0, VOCAB, (ROWS, STEPS), generator=generator)
    return PATTERN.expand(ROWS, STEPS)


class ToyModel(nn.Module):
    """Frozen token embedding → PHi layer → a linear read-out that must recover the token
    (standing in for the upper model, so that information has to pass the bottleneck)."""

    def __init__(self, config: PHiConfig):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL).requires_grad_(False)
        self.phi = PHiLayer(config)
        self.readout = nn.Linear(D_MODEL, VOCAB)

    def forward(self, tokens: torch.Tensor):
        out = self.phi(self.embed(tokens))
        task = nn.functional.cross_entropy(self.readout(out.h).flatten(0, 1), tokens.flatten())
        return out, task


@pytest.mark.parametrize("case", list(BOTTLENECKS))
def test_training_separates_a_memorised_pattern_from_noise(case):
    torch.manual_seed(0)
    config = PHiConfig(d_model=D_MODEL, prior={"n_heads": 2}, **BOTTLENECKS[case])
    model = ToyModel(config)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    steps = 200
    for step in range(steps):
        model.phi.set_progress(step / steps)
        tokens = torch.cat([batch(g, noise=False), batch(g, noise=True)])
        out, task = model(tokens)
        optimizer.zero_grad()
        (out.loss + task).backward()
        optimizer.step()

    model.eval()
    with torch.no_grad():
        pattern, _ = model(batch(g, noise=False))
        noise, noise_task = model(batch(g, noise=True))
    ln_vocab = math.log(VOCAB)
    # information does pass the bottleneck: the read-out recovers the tokens, and a noise token
    # is reported as most of its ln 8 nats of new information ...
    assert noise_task < 0.5 * ln_vocab
    assert noise.phi.mean() > 0.5 * ln_vocab
    # ... while the memorised pattern is reported as (almost) nothing new
    assert pattern.phi.mean() < 0.25 * noise.phi.mean(), (
        pattern.phi.mean().item(),
        noise.phi.mean().item(),
    )
