"""The evaluation observer of code streams: it counts and codes exactly the evaluated characters
of each level (not BOS, EOS, padding, nor the last character of a truncated block, which has no
next token), checked against bincount and torch.distributions."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.distributions import Categorical

from qphi.evaluation.code_stream import CodeStreamObserver, code_stream_observer
from qphi.phi import PHiConfig, PHiLayer
from qphi.tasks.packing import IGNORE_INDEX

D_MODEL, BATCH, STEPS = 16, 3, 20
LEVELS = {0: "mem_seq", 3: "icll"}


def observed_batch(seed: int, layer: PHiLayer) -> tuple[SimpleNamespace, SimpleNamespace, torch.Tensor]:
    """A (batch, output) pair as `evaluate_levels` passes them, and the characters that count:
    rows padded at the end, BOS and EOS real tokens that are not characters (is_text False); the
    last row is a truncated block (no EOS), so its last character has no target."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([STEPS, 14, 9])
    padding = torch.arange(STEPS) < lengths.unsqueeze(1)
    is_text = padding.clone()
    is_text[:, 0] = False
    is_text[:2][torch.arange(2), lengths[:2] - 1] = False  # EOS of the two whole blocks
    targets = torch.randint(0, 18, (BATCH, STEPS), generator=gen)
    targets[~padding] = IGNORE_INDEX
    targets[torch.arange(BATCH), lengths - 1] = IGNORE_INDEX  # after EOS, or after a truncated block's end
    counted = is_text.clone()
    counted[2, lengths[2] - 1] = False
    with torch.no_grad():
        phi = layer(torch.randn(BATCH, STEPS, D_MODEL, generator=gen), padding)
    return SimpleNamespace(meta={"is_text": is_text}, targets=targets), SimpleNamespace(phi=phi), counted


@pytest.fixture(scope="module")
def layer() -> PHiLayer:
    torch.manual_seed(0)
    return PHiLayer(PHiConfig(d_model=D_MODEL, bottleneck="residual", codebook_size=8, num_stages=2)).eval()


def test_health_and_coding_cover_exactly_the_characters_of_each_level(layer):
    observer = CodeStreamObserver(layer.config.stage_sizes, coding=True)
    batches = {level: observed_batch(level, layer) for level in LEVELS}
    for level, (batch, out, _) in batches.items():
        observer(level, batch, out)
    health = observer.health_summary()
    for s, stage in enumerate(health.stages):
        codes = np.concatenate([out.phi.codes[s][counted].numpy() for _, out, counted in batches.values()])
        assert list(stage.counts) == np.bincount(codes, minlength=8).tolist()
    coding = observer.coding_summary()
    assert list(coding) == list(LEVELS.values())
    for level, (_, out, counted) in batches.items():
        bits = -Categorical(logits=out.phi.prior_params.logits).log_prob(out.phi.codes)[:, counted].sum() / math.log(2)
        entry = coding[LEVELS[level]]
        assert entry.tokens == int(counted.sum())
        assert entry.ideal_bits_per_token == pytest.approx(float(bits) / int(counted.sum()), rel=1e-5)
        # each block ends on a whole 32-bit word: at most 64 bits more per block
        overhead = (entry.coded_bits_per_token - entry.ideal_bits_per_token) * entry.tokens
        assert 0 <= overhead <= 64 * BATCH


def test_health_alone_codes_nothing(layer):
    observer = CodeStreamObserver(layer.config.stage_sizes)
    observer(0, *observed_batch(0, layer)[:2])
    assert observer.coding_summary() == {} and observer.health_summary().stages[0].num_tokens > 0


def test_a_continuous_bottleneck_has_no_observer():
    assert code_stream_observer(()) is None
    assert code_stream_observer((4, 4)).health.stage_sizes == (4, 4)
