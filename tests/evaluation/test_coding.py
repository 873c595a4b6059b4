"""Range coding of code streams under the prior: exact round trips and sizes near Σ −log2 p."""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, kl_divergence

from qphi.errors import QPhiError
from qphi.evaluation import (
    decode,
    decode_with_prior,
    encode,
    measure_coding,
    prior_log_probs,
)
from qphi.phi import PHiConfig, PHiLayer

LN2 = math.log(2.0)


def random_distributions(
    seed: int, shape: tuple[int, ...], num_codes: int, scale: float, invalid: float
) -> torch.Tensor:
    """Log-probs (*shape, K): logits ~ N(0, scale²), a share `invalid` of entries −inf (never a whole row)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, num_codes, generator=gen, dtype=torch.float64) * scale
    drop = torch.rand(*shape, num_codes, generator=gen) < invalid
    drop.scatter_(-1, torch.randint(num_codes, (*shape, 1), generator=gen), False)
    return torch.log_softmax(logits.masked_fill(drop, -torch.inf), dim=-1)


def sample(log_probs: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return Categorical(logits=log_probs).sample()


@settings(max_examples=60, deadline=None)
@given(
    num_stages=st.integers(1, 3),
    steps=st.integers(1, 40),
    num_codes=st.integers(2, 24),
    scale=st.sampled_from([0.0, 1.0, 4.0, 30.0]),
    invalid=st.sampled_from([0.0, 0.3, 0.8]),
    drawn=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trip_is_exact(num_stages, steps, num_codes, scale, invalid, drawn, seed):
    log_probs = random_distributions(seed, (num_stages, steps), num_codes, scale, invalid)
    if drawn:
        codes = sample(log_probs, seed)
    else:  # any valid code, however unlikely
        codes = sample(torch.where(torch.isfinite(log_probs), 0.0, -torch.inf), seed)
    mask = torch.rand(steps, generator=torch.Generator().manual_seed(seed)) < 0.8
    stream = encode(codes, log_probs, mask)
    decoded = decode(stream, log_probs, mask)
    assert torch.equal(decoded[:, mask], codes[:, mask])
    assert stream.words.dtype == np.uint32 and stream.num_symbols == num_stages * int(mask.sum())
    expected = -Categorical(logits=log_probs).log_prob(codes)[:, mask].sum() / LN2
    assert stream.information_bits == pytest.approx(float(expected), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("scale", [0.3, 2.0, 8.0])
def test_coded_size_is_within_one_percent_of_the_information_content(scale):
    log_probs = random_distributions(1, (2, 6000), 64, scale, invalid=0.1)
    codes = sample(log_probs, 2)
    stream = encode(codes, log_probs)
    ideal = stream.information_bits
    assert 0.99 * ideal - 64 <= stream.num_bits <= 1.01 * ideal + 64
    assert stream.num_symbols == 12_000


def test_codes_not_drawn_from_the_prior_cost_more_and_still_code_tightly():
    log_probs = random_distributions(3, (1, 12_000), 64, 2.0, invalid=0.0)
    entropy_bits = float(Categorical(logits=log_probs).entropy().sum()) / LN2
    uniform = sample(torch.zeros_like(log_probs), 4)
    stream = encode(uniform, log_probs)
    assert stream.information_bits > 1.2 * entropy_bits
    assert 0.99 * stream.information_bits - 64 <= stream.num_bits <= 1.01 * stream.information_bits + 64


@pytest.mark.parametrize("log_p", [-40.0, -200.0, -1000.0])
def test_a_valid_code_of_tiny_or_underflowing_probability_still_codes(log_p):
    log_probs = torch.full((1, 1000, 4), -torch.inf, dtype=torch.float64)
    log_probs[..., 0], log_probs[..., 1] = 0.0, log_p  # code 2 and 3 impossible
    codes = torch.randint(2, (1, 1000), generator=torch.Generator().manual_seed(0))
    stream = encode(codes, log_probs)
    assert torch.equal(decode(stream, log_probs), codes)
    # the coder's 24-bit precision floors a probability at 2⁻²⁴: an unlikely code costs ~24 bits
    assert stream.num_bits <= 24 * int(codes.sum()) + 64


def test_impossible_codes_and_bad_shapes_are_refused():
    log_probs = torch.log_softmax(torch.tensor([[[0.0, 0.0, -torch.inf]]]), -1)
    with pytest.raises(QPhiError, match="probability 0"):
        encode(torch.tensor([[2]]), log_probs)
    with pytest.raises(QPhiError, match=r"codes must be integers in \[0, 3\)"):
        encode(torch.tensor([[3]]), log_probs)
    with pytest.raises(QPhiError, match="one sequence"):
        encode(torch.tensor([[[0]]]), log_probs)
    with pytest.raises(QPhiError, match="not normalised"):
        encode(torch.tensor([[1]]), log_probs + 1.0)
    with pytest.raises(QPhiError, match="nan"):
        encode(torch.tensor([[1]]), torch.full((1, 1, 3), torch.nan))
    stream = encode(torch.tensor([[1]]), log_probs)
    with pytest.raises(QPhiError, match="holds 1 codes"):
        decode(stream, log_probs.expand(1, 2, 3))


# --- a real PHi-layer prior ---------------------------------------------------------------

CONFIGS = {
    "gumbel": dict(bottleneck="gumbel", codebook_size=16),
    "vq": dict(bottleneck="vq", codebook_size=16),
    "residual": dict(bottleneck="residual", codebook_size=8, num_stages=3),
    "fsq-factorised": dict(bottleneck="fsq", fsq_levels=[8, 5, 3]),
    "fsq-joint": dict(bottleneck="fsq", fsq_levels=[4, 3], fsq_prior="joint"),
    "lfq": dict(bottleneck="lfq", lfq_bits=5),
}
D_MODEL, BATCH, STEPS = 16, 3, 12


def hidden_states(seed: int) -> torch.Tensor:
    """(B, T, d) hidden states with a repeating pattern, so a prior has something to learn."""
    gen = torch.Generator().manual_seed(seed)
    pattern = torch.randn(4, D_MODEL, generator=gen)
    return pattern[torch.arange(STEPS) % 4].expand(BATCH, -1, -1) + 0.3 * torch.randn(
        BATCH, STEPS, D_MODEL, generator=gen
    )


@functools.cache
def make_layer(name: str, train_steps: int) -> PHiLayer:
    """A PHi layer (eval mode; shared between tests, which must not change it), random or briefly trained."""
    torch.manual_seed(0)
    layer = PHiLayer(PHiConfig(d_model=D_MODEL, **CONFIGS[name]))
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for step in range(train_steps):
        loss = layer(hidden_states(step)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return layer.eval()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h (B, T, d); mask with left padding in row 1; document ids packing two documents in row 2."""
    mask = torch.ones(BATCH, STEPS, dtype=torch.bool)
    mask[1, :3] = False
    document_ids = torch.zeros(BATCH, STEPS, dtype=torch.long)
    document_ids[2, 5:] = 1
    return hidden_states(99), mask, document_ids


@pytest.mark.parametrize("train_steps", [0, 15], ids=["random-init", "trained"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_decode_with_prior_recovers_the_codes_of_a_phi_layer(name, train_steps):
    layer = make_layer(name, train_steps)
    h, mask, document_ids = padded_batch()
    with torch.no_grad():
        out = layer(h, mask, document_ids)
    for b in range(BATCH):
        codes, row_mask, ids = out.codes[:, b], mask[b], document_ids[b]
        log_probs = prior_log_probs(layer.prior, codes, row_mask, ids)
        torch.testing.assert_close(  # the float64 coding copy computes the layer's prior
            log_probs.float()[:, row_mask],
            out.prior_params.log_probs()[:, b][:, row_mask],
            rtol=1e-4,
            atol=1e-4,
        )
        stream = encode(codes, log_probs, row_mask)
        decoded = decode_with_prior(stream, layer.prior, row_mask, ids)
        assert torch.equal(decoded[:, row_mask], codes[:, row_mask])


def test_decode_with_prior_really_uses_the_prior():
    trained, untrained = make_layer("gumbel", 15), make_layer("gumbel", 0)
    with torch.no_grad():
        codes = trained(hidden_states(99)).codes[:, 0]
    stream = encode(codes, prior_log_probs(trained.prior, codes))
    assert torch.equal(decode_with_prior(stream, trained.prior, STEPS), codes)
    with contextlib.suppress(QPhiError):  # the wrong prior may also decode an impossible code
        assert not torch.equal(decode_with_prior(stream, untrained.prior, STEPS), codes)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_reported_phi_is_what_the_range_coder_pays_for_the_sent_codes(name, training):
    """Σ PHi bits of each sequence = Σ −log2 p(sent code), and the coded stream decodes to those codes."""
    layer = make_layer(name, 15).train(training)
    h, mask, document_ids = padded_batch()
    torch.manual_seed(0)
    with torch.no_grad():
        out = layer(h, mask, document_ids)
    layer.eval()
    report = measure_coding(out.codes, out.prior_params.log_probs(), out.mask)  # decodes and checks each stream
    np.testing.assert_allclose(report.ideal_bits, out.phi_bits.double().sum(1).numpy(), rtol=1e-6)
    assert report.num_codes.tolist() == (len(layer.config.stage_sizes) * mask.sum(1)).tolist()
    assert np.all(report.coded_bits % 32 == 0)
    assert np.all(report.coded_bits <= 1.01 * report.ideal_bits + 64)
    np.testing.assert_allclose(report.ratio, report.coded_bits / report.ideal_bits, rtol=1e-5)
    assert report.to_dict()["total_coded_bits"] == int(report.coded_bits.sum())


def test_the_kl_diagnostic_is_the_bits_back_rate_not_the_code_length():
    layer = make_layer("gumbel", 15)
    h, mask, _ = padded_batch()
    with torch.no_grad():
        out = layer(h, mask)
    q, p = out.posterior, out.prior
    cross_entropy = -(q.probs * p.logits).sum(-1)  # E_q[−ln p]
    torch.testing.assert_close(out.kl_per_stage[:, mask], (cross_entropy - q.entropy())[:, mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.kl_per_stage, kl_divergence(q, p).masked_fill(~mask, 0.0), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out.kl_per_stage[:, mask], out.phi_per_stage[:, mask], rtol=0.01)
