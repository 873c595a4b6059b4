"""Sequence models that host a PHi layer, and the splice that puts it there."""

from __future__ import annotations

from qphi.bottlenecks.continuous import GaussianBottleneck
from qphi.errors import QPhiError
from qphi.models.config import ModelConfig
from qphi.models.lstm import ResidualLSTM
from qphi.models.splice import IGNORE_INDEX, PHiModel, PHiModelOutput, decoder_blocks
from qphi.models.transformer import build_transformer
from qphi.phi import PHiConfig


def build_model(model: ModelConfig, phi: PHiConfig) -> PHiModel:
    """A from-scratch transformer or LSTM with a PHi layer after block `model.phi_after`."""
    if model.architecture == "transformer":
        base = build_transformer(model)
    elif model.architecture == "lstm":
        base = ResidualLSTM(model.vocab_size, model.d_model, model.n_layers)
    else:
        from qphi.models.pretrained import load_pretrained

        base = load_pretrained(model.pretrained)
    width = base.config.hidden_size if model.architecture == "pretrained" else model.d_model
    phi = phi.replace(d_model=width) if phi.d_model is None else phi
    spliced = PHiModel(base, phi, model.phi_after, freeze_base=model.freeze_base or model.architecture == "pretrained")
    if model.phi_init == "identity":
        if not isinstance(spliced.phi.bottleneck, GaussianBottleneck):
            raise QPhiError(
                "model.phi_init=identity starts a continuous bottleneck as the identity map: "
                "use phi.bottleneck=continuous, or model.phi_init=default"
            )
        spliced.phi.bottleneck.start_as_identity()
    return spliced


__all__ = [
    "IGNORE_INDEX",
    "ModelConfig",
    "PHiModel",
    "PHiModelOutput",
    "ResidualLSTM",
    "build_model",
    "build_transformer",
    "decoder_blocks",
]
