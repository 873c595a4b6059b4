"""The `paper` presets have the sizes of SPEC §3: a ≈85M-parameter host and a ≈10M-parameter PHi
layer. Models are built on the meta device, so no memory is allocated for their weights."""

from __future__ import annotations

import pytest
import torch

from qphi.bottlenecks import registry
from qphi.models import PHiModel, ResidualLSTM, build_model
from qphi.training import load_run_config


def build_on_meta(preset: str, bottleneck: str) -> PHiModel:
    config = load_run_config(preset, [f"phi.bottleneck={bottleneck}"])
    with torch.device("meta"):
        return build_model(config.model, config.phi)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # shared (tied) parameters once


def llama_count(vocab: int, d: int, layers: int, hidden: int) -> int:
    """Attention q, k, v, o (no biases) + SwiGLU gate, up, down + two RMSNorms per block; tied
    embedding; final RMSNorm."""
    return layers * (4 * d * d + 3 * d * hidden + 2 * d) + vocab * d + d


def continuous_phi_count(d: int, d_z: int, prior_width: int, mlp_hidden: int) -> int:
    """Posterior W_post (d → 2 d_z) and W_dec (d_z → d) with biases; the prior: input map d_z → W,
    one attention block (qkv, out; no biases), RMSNorms, the initial context, a SwiGLU head and
    the Gaussian output map W → 2 d_z."""
    bottleneck = (d * 2 * d_z + 2 * d_z) + (d_z * d + d)
    w = prior_width
    prior = (d_z * w + w) + 4 * w * w + 2 * w + w + 3 * w * mlp_hidden + (w * 2 * d_z + 2 * d_z)
    return bottleneck + prior


def test_paper_transformer_is_85m_parameters_with_a_10m_phi_layer():
    model = build_on_meta("paper", "continuous")
    assert len(model.base.model.layers) == 12 and model.layer_index == 5
    assert model.base.config.hidden_size == 768 and model.base.config.num_attention_heads == 6
    assert model.base.config.intermediate_size == 2048  # 8/3 · 768
    assert count(model.base) == llama_count(128, 768, 12, 2048)
    assert 84e6 < count(model.base) < 86e6
    assert count(model.phi) == continuous_phi_count(768, 768, 768, 2048)
    assert 9.5e6 < count(model.phi) < 11.5e6
    assert model.phi.prior.attn.n_heads == 6  # the host's head layout


def test_paper_lstm_is_two_residual_layers_of_similar_size():
    model = build_on_meta("paper-lstm", "continuous")
    assert isinstance(model.base, ResidualLSTM) and len(model.base.layers) == 2 and model.layer_index == 0
    d = 2304
    lstm_layer = 2 * 4 * d * d + 2 * 4 * d + d  # W_ih, W_hh, two biases, RMSNorm
    assert count(model.base) == 2 * lstm_layer + 128 * d + d
    assert 80e6 < count(model.base) < 90e6
    assert count(model.phi) == continuous_phi_count(d, 768, 768, 2048)
    assert count(model.phi) < 16e6


# the codebooks of SPEC §7 (the thesis's K = 1024, RQ Q = 2 × K = 64) and of our FSQ default
SPEC_CODES = {"gumbel": (1024,), "vq": (1024,), "residual": (64, 64), "fsq": (8, 5, 5, 5), "continuous": ()}


@pytest.mark.parametrize("preset", ["paper", "paper-lstm"])
@pytest.mark.parametrize("bottleneck", registry.names())
def test_every_bottleneck_of_the_paper_presets_builds_a_layer_of_similar_size(preset, bottleneck):
    model = build_on_meta(preset, bottleneck)
    assert 5e6 < count(model.phi) < 16e6
    if bottleneck in SPEC_CODES:
        assert model.phi.config.stage_sizes == SPEC_CODES[bottleneck]
