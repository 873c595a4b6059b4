"""Codebook health against hand computations and torch.distributions."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Categorical

from qphi.errors import QPhiError
from qphi.evaluation import CodebookHealth, CodebookHealthAccumulator, codebook_health
from qphi.io import read_json, write_json
from qphi.phi import PHiConfig, PHiLayer


def test_usage_statistics_match_a_hand_computation():
    stage = codebook_health(torch.tensor([[0, 1, 1, 0]]), stage_sizes=[4]).stages[0]
    assert stage.counts == (2, 2, 0, 0)
    assert (stage.used_codes, stage.dead_codes, stage.num_tokens) == (2, 2, 4)
    assert stage.utilisation == 0.5
    assert stage.usage_entropy_nats == pytest.approx(math.log(2))
    assert stage.perplexity == pytest.approx(2.0)
    assert stage.usage_entropy_bits == pytest.approx(1.0)
    assert stage.prior_entropy_nats is None and stage.context_gain_nats is None


def test_a_prior_that_knows_every_code_removes_all_of_the_usage_entropy():
    codes = torch.tensor([[0, 1, 1, 0]])
    log_probs = torch.log_softmax(30.0 * torch.nn.functional.one_hot(codes, 4).double(), -1)
    stage = codebook_health(codes, [4], log_probs).stages[0]
    assert stage.code_length_nats == pytest.approx(0.0, abs=1e-11)
    assert stage.context_gain_nats == pytest.approx(math.log(2))
    uniform = codebook_health(codes, [4], torch.full((1, 4, 4), -math.log(4), dtype=torch.float64)).stages[0]
    assert uniform.code_length_nats == pytest.approx(math.log(4))
    assert uniform.prior_entropy_nats == pytest.approx(math.log(4))
    assert uniform.context_gain_nats == pytest.approx(math.log(2) - math.log(4))
    assert uniform.calibration_gap_nats == pytest.approx(0.0, abs=1e-12)


def random_batch(seed: int, stage_sizes=(4, 3), batch=3, steps=7):
    """codes (Q, B, T), log-probs (Q, B, T, K) with −inf beyond each stage's size, mask (B, T)."""
    gen = torch.Generator().manual_seed(seed)
    width = max(stage_sizes)
    invalid = torch.arange(width) >= torch.tensor(stage_sizes).view(-1, 1, 1, 1)
    logits = torch.randn(len(stage_sizes), batch, steps, width, generator=gen).masked_fill(invalid, -torch.inf)
    log_probs = torch.log_softmax(logits, -1)
    codes = Categorical(logits=log_probs).sample()
    mask = torch.rand(batch, steps, generator=gen) < 0.7
    return codes, log_probs, mask


def test_prior_statistics_match_torch_distributions():
    codes, log_probs, mask = random_batch(0)
    health = codebook_health(codes, [4, 3], log_probs, mask)
    dist = Categorical(logits=log_probs)
    for s, stage in enumerate(health.stages):
        assert stage.prior_entropy_nats == pytest.approx(float(dist.entropy()[s][mask].mean()), rel=1e-6)
        assert stage.code_length_nats == pytest.approx(float(-dist.log_prob(codes)[s][mask].mean()), rel=1e-6)
        assert stage.num_codes == (4, 3)[s]
        assert stage.counts == tuple(torch.bincount(codes[s][mask], minlength=(4, 3)[s]).tolist())


def test_padding_is_not_counted():
    codes = torch.tensor([[[0, 1, 3]]])  # code 3 only at the padded step
    mask = torch.tensor([[True, True, False]])
    stage = codebook_health(codes, [4], mask=mask).stages[0]
    assert stage.counts == (1, 1, 0, 0) and stage.dead_codes == 2


def test_accumulating_batches_equals_one_pass_over_all_of_them():
    batches = [random_batch(seed) for seed in range(3)]
    accumulator = CodebookHealthAccumulator([4, 3])
    for codes, log_probs, mask in batches:
        accumulator.update(codes, log_probs, mask)
    all_codes = torch.cat([c[:, m] for c, _, m in batches], dim=1)  # (Q, N)
    all_log_probs = torch.cat([lp[:, m] for _, lp, m in batches], dim=1)  # (Q, N, K)
    accumulated = accumulator.compute()
    one_pass = codebook_health(all_codes, [4, 3], all_log_probs)
    for a, b in zip(accumulated.stages, one_pass.stages, strict=True):
        assert a.counts == b.counts and a.num_tokens == b.num_tokens
        assert a.prior_entropy_nats == pytest.approx(b.prior_entropy_nats, rel=1e-12)
        assert a.code_length_nats == pytest.approx(b.code_length_nats, rel=1e-12)
    accumulator.reset()
    with pytest.raises(QPhiError, match="no codes"):
        accumulator.compute()


def test_user_mistakes_are_refused():
    codes, log_probs, mask = random_batch(0)
    with pytest.raises(QPhiError, match="outside"):
        codebook_health(codes, [2, 3], mask=mask)
    with pytest.raises(QPhiError, match=r"shape \(Q=1"):
        codebook_health(codes, [4])
    accumulator = CodebookHealthAccumulator([4, 3])
    accumulator.update(codes, log_probs, mask)
    with pytest.raises(QPhiError, match="every batch or with none"):
        accumulator.update(codes, None, mask)


def test_health_of_a_phi_layer_output_round_trips_through_json(tmp_path):
    torch.manual_seed(0)
    layer = PHiLayer(PHiConfig(d_model=16, bottleneck="fsq", fsq_levels=[5, 3])).eval()
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, :4] = False
    with torch.no_grad():
        out = layer(torch.randn(2, 9, 16), mask)
    accumulator = CodebookHealthAccumulator(layer.config.stage_sizes)
    accumulator.update_from_output(out)
    health = accumulator.compute()
    for s, stage in enumerate(health.stages):
        assert sum(stage.counts) == int(mask.sum())
        expected = float(out.phi_per_stage[s][mask].double().mean())
        assert stage.code_length_nats == pytest.approx(expected, rel=1e-5)
    write_json(tmp_path / "health.json", health)
    data = json.loads((tmp_path / "health.json").read_text())
    assert data["stages"][1]["num_codes"] == 3
    assert data["stages"][0]["code_length_bits"] == pytest.approx(health.stages[0].code_length_nats / math.log(2))
    assert read_json(tmp_path / "health.json", CodebookHealth) == health
    data["stages"][0]["code_length_bits"] = 123.0  # a derived number edited by hand is recomputed, not trusted
    (tmp_path / "health.json").write_text(json.dumps(data))
    assert read_json(tmp_path / "health.json", CodebookHealth) == health
