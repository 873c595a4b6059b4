"""Lookup-free quantization against an independent computation of what it should produce."""

from __future__ import annotations

import math

import pytest
import torch
from phi_cases import make_layer, random_h
from torch.distributions import Bernoulli

from qphi.errors import QPhiError
from qphi.phi import PHiConfig

B, T = 3, 6


def test_evaluation_sends_the_sign_of_each_projected_dimension():
    layer = make_layer("lfq").eval()
    bottleneck, h = layer.bottleneck, random_h(B, T)
    with torch.no_grad():
        out = bottleneck(h, torch.ones(B, T, dtype=torch.bool))
        x = bottleneck.encode(h)  # (B, T, n)
    assert torch.equal(out.codes, (x > 0).long().permute(2, 0, 1))
    torch.testing.assert_close(out.z, torch.where(x > 0, 1.0, -1.0))
    torch.testing.assert_close(out.h, bottleneck.decode(out.z))


def test_a_bits_posterior_is_a_logistic_of_the_normalised_projection_over_the_temperature():
    """q(bit = 1) = exp(−(x̂ − 1)² / τ) / (exp(−(x̂ − 1)² / τ) + exp(−(x̂ + 1)² / τ)), x̂ = x / rms(x)."""
    layer = make_layer("lfq").eval()
    bottleneck, h = layer.bottleneck, random_h(B, T)
    bottleneck.set_progress(0.3)
    with torch.no_grad():
        out = bottleneck(h, torch.ones(B, T, dtype=torch.bool))
        x = bottleneck.encode(h).double()
    scaled, tau = x / x.pow(2).mean(-1, keepdim=True).sqrt(), bottleneck.temperature
    up, down = torch.exp(-((scaled - 1) ** 2) / tau), torch.exp(-((scaled + 1) ** 2) / tau)
    expected = (up / (up + down)).permute(2, 0, 1)
    torch.testing.assert_close(out.posterior.log_probs()[..., 1].exp().double(), expected, rtol=1e-4, atol=1e-5)
    # rescaling the projection changes neither the codes nor the posterior
    with torch.no_grad():
        bottleneck.encode.weight.mul_(7.0)
        bottleneck.encode.bias.mul_(7.0)
        rescaled = bottleneck(h, torch.ones(B, T, dtype=torch.bool))
    assert torch.equal(rescaled.codes, out.codes)
    torch.testing.assert_close(rescaled.posterior.logits, out.posterior.logits, rtol=1e-4, atol=1e-4)


def test_the_gradient_passes_straight_through_the_sign_into_the_normalised_projection():
    bottleneck = make_layer("lfq").bottleneck.train()
    h = random_h(B, T).requires_grad_(True)
    torch.manual_seed(0)
    out = bottleneck(h, torch.ones(B, T, dtype=torch.bool))
    weights = torch.randn_like(out.z)
    (out.z * weights).sum().backward()

    def normalised(x_in: torch.Tensor) -> torch.Tensor:
        x = bottleneck.encode(x_in)
        return x / x.pow(2).mean(-1, keepdim=True).add(1e-12).sqrt()

    expected = torch.autograd.functional.vjp(normalised, h.detach(), weights)[1]
    torch.testing.assert_close(h.grad, expected, rtol=1e-4, atol=1e-5)


def test_the_entropy_penalty_is_magvit_v2s_with_the_usage_taken_per_bit():
    layer = make_layer("lfq", entropy_weight=0.3, diversity=0.7).train()
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, :2] = False
    torch.manual_seed(0)
    out = layer.bottleneck(random_h(B, T), mask)
    q = Bernoulli(logits=out.posterior.logits[..., 1] - out.posterior.logits[..., 0])  # (n, B, T) bits
    per_token = q.entropy().sum(0)[mask].mean()
    usage = Bernoulli(probs=q.probs[:, mask].mean(-1)).entropy().sum()
    torch.testing.assert_close(out.aux_losses["entropy"], 0.3 * (per_token - 0.7 * usage), rtol=1e-5, atol=1e-6)
    assert "entropy" in layer(random_h(B, T)).losses  # the PHi layer adds it to its loss terms
    assert "entropy" not in layer.eval()(random_h(B, T)).losses


def test_the_implicit_codebook_has_two_to_the_bits_codes_and_the_sweep_sizes_it():
    config = PHiConfig(d_model=16, bottleneck="lfq", lfq_bits=5)
    assert config.stage_sizes == (2,) * 5 and config.code_dim == 5
    assert config.max_phi_nats == pytest.approx(5 * math.log(2))
    assert config.bottleneck.sweep_size == 32
    assert config.bottleneck.sized(256).lfq_bits == 8 and config.bottleneck.sized(100).sweep_size == 128
    with pytest.raises(QPhiError, match="no stages"):
        config.bottleneck.sized(64, stages=2)
