"""Tiny hosts for the model tests (a 3-block Llama and a 3-layer residual LSTM of width 32) and a spy on the PHi layer."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qphi.models import ModelConfig, PHiModel, build_model
from qphi.phi import PHiConfig, PHiOutput

VOCAB, WIDTH, DEPTH, HEADS = 128, 32, 3, 2


def tiny_model(architecture: str, phi_after: int, bottleneck: str = "gumbel", seed: int = 0) -> PHiModel:
    torch.manual_seed(seed)
    model = ModelConfig(
        architecture=architecture, d_model=WIDTH, n_layers=DEPTH, n_heads=HEADS, max_length=64, phi_after=phi_after
    )
    options = {"latent_dim": 8} if bottleneck == "continuous" else {"codebook_size": 16, "latent_dim": 8}
    phi = PHiConfig(bottleneck=bottleneck, **options, prior={"n_heads": HEADS})
    return build_model(model, phi).eval()


class PHiSpy:
    """Wraps a model's PHi layer: records the hidden state it receives and optionally hands the
    upper blocks a chosen tensor instead of the layer's own reconstruction."""

    def __init__(self, model: PHiModel, monkeypatch: pytest.MonkeyPatch, replacement: torch.Tensor | None = None):
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[PHiOutput] = []
        self.replacement = replacement
        original = model.phi.forward

        def forward(h: torch.Tensor, **kwargs) -> PHiOutput:
            self.inputs.append(h.detach().clone())
            out = original(h, **kwargs)
            self.outputs.append(out)
            return out if self.replacement is None else dataclasses.replace(out, h=self.replacement)

        monkeypatch.setattr(model.phi, "forward", forward)
