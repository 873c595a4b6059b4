"""Initialisations of a PHi layer placed inside a trained model."""

from __future__ import annotations

import torch

from qphi.errors import QPhiError
from qphi.phi import PHiLayer  # before the bottlenecks, which import qphi.phi themselves

from qphi.bottlenecks.continuous import GaussianBottleneck  # isort: skip


@torch.no_grad()
def identity_init(layer: PHiLayer, logvar: float = -4.0) -> None:
    """Start a continuous bottleneck as the identity map plus small noise: μ = h, log σ² = `logvar`,
    h' = z. A frozen host then behaves as without the layer from the first step, and training
    only has to trade that fidelity for predictability instead of first learning to pass h through."""
    bottleneck = layer.bottleneck
    d = layer.config.require_d_model()
    if not isinstance(bottleneck, GaussianBottleneck) or layer.config.code_dim != d:
        raise QPhiError(
            "model.phi_init=identity needs the continuous bottleneck with latent_dim = the model width: "
            "use phi.bottleneck=continuous without phi.latent_dim, or model.phi_init=default"
        )
    bottleneck.encode.weight.zero_()
    bottleneck.encode.weight[:d].copy_(torch.eye(d))
    bottleneck.encode.bias.zero_()
    bottleneck.encode.bias[d:].fill_(logvar)
    bottleneck.decode.weight.copy_(torch.eye(d))
    bottleneck.decode.bias.zero_()
