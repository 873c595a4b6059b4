"""Presets: the paper settings of SPEC §7, per-bottleneck defaults under explicit overrides."""

from __future__ import annotations

import pytest

from qphi.bottlenecks import registry
from qphi.errors import QPhiError
from qphi.training import PRESETS, load_run_config
from qphi.training.config import preset_path


@pytest.mark.parametrize("preset", PRESETS)
def test_every_shipped_preset_loads_with_every_bottleneck(preset):
    assert preset_path(preset).is_file()
    for bottleneck in registry.names():
        assert load_run_config(preset, [f"phi.bottleneck={bottleneck}"]).phi.bottleneck.name == bottleneck
        assert load_run_config(preset, bottleneck=bottleneck).phi.bottleneck.name == bottleneck


def test_the_llm_presets_name_their_model():
    """Nothing to fill in: the paper's model by its hub ID, the offline default by its short name."""
    assert load_run_config("llama3b-paper").model.pretrained == "meta-llama/Llama-3.2-3B-Instruct"
    assert load_run_config("smollm2-cpu").model.pretrained == "smollm2"


def test_a_pretrained_model_needs_a_name():
    with pytest.raises(QPhiError, match=r"override 'model\.pretrained=null'.*needs model\.pretrained"):
        load_run_config("llama3b-paper", ["model.pretrained=null"])


def test_paper_preset_has_the_reference_settings():
    config = load_run_config("paper")
    model, train_, optim, data, loss = config.model, config.train, config.optim, config.data, config.phi.loss
    assert (model.n_layers, model.d_model, model.n_heads, model.phi_after) == (12, 768, 6, 5)
    assert (data.row_length, data.pack, train_.batch_size, train_.steps) == (2048, True, 16, 30_000)
    assert (optim.lr, optim.warmup_steps, optim.schedule, optim.grad_clip) == (3e-4, 500, "constant", 1.0)
    assert train_.precision == "auto"  # bf16 autocast on a GPU
    assert (loss.phi, loss.self_critic, config.phi.prior.n_heads) == (1.0, 0.1, 6)
    assert config.phi.bottleneck.name == "continuous"


def test_paper_lstm_preset_reads_one_document_per_row():
    config = load_run_config("paper-lstm")
    assert config.model.architecture == "lstm" and config.model.n_layers == 2 and config.model.phi_after == 0
    assert not config.data.pack


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["phi.bottleneck=gumbel"], {"codebook_size": 1024}),
        (["phi.bottleneck=vq"], {"codebook_size": 1024}),
        (["phi.bottleneck=residual"], {"codebook_size": 64, "num_stages": 2}),
        (["phi.bottleneck=fsq"], {"fsq_levels": [8, 5, 5, 5]}),
        (["phi.bottleneck=gumbel", "phi.codebook_size=4096"], {"codebook_size": 4096}),  # an override wins
    ],
)
def test_bottleneck_defaults_apply_under_the_overrides(overrides, expected):
    phi = load_run_config("paper", overrides).phi
    assert {key: getattr(phi.bottleneck, key) for key in expected} == expected
