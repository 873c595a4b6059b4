"""The divergences of `qphi.latents` against `torch.distributions`, the independent reference."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from qphi.latents import (
    CategoricalParams,
    CodeParams,
    GaussianParams,
    categorical_kl,
    code_length,
    divergence,
    expected_code_length,
    gaussian_kl,
    kl_to_standard,
)

LOGVAR_MIN, LOGVAR_MAX = -5.0, 10.0  # the default clamp range of PHiConfig


def gaussian(generator: torch.Generator, shape=(3, 5, 7), dtype=torch.float64) -> GaussianParams:
    mean = torch.randn(shape, generator=generator, dtype=dtype) * 3.0
    logvar = torch.empty(shape, dtype=dtype).uniform_(LOGVAR_MIN, LOGVAR_MAX, generator=generator)
    return GaussianParams(mean, logvar)


def normal(p: GaussianParams) -> Independent:
    return Independent(Normal(p.mean, torch.exp(0.5 * p.logvar)), 1)


def test_gaussian_kl_matches_torch_over_the_whole_clamp_range():
    g = torch.Generator().manual_seed(0)
    q, p = gaussian(g), gaussian(g)
    # Make sure the extremes of the clamp range are represented on both sides.
    q.logvar[0, 0], p.logvar[0, 0] = LOGVAR_MAX, LOGVAR_MIN
    q.logvar[0, 1], p.logvar[0, 1] = LOGVAR_MIN, LOGVAR_MAX
    expected = kl_divergence(normal(q), normal(p))
    assert gaussian_kl(q, p).shape == (3, 5)
    torch.testing.assert_close(gaussian_kl(q, p), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(divergence(q, p), expected.unsqueeze(0), rtol=1e-5, atol=1e-5)


def test_gaussian_kl_float32_moderate_values():
    g = torch.Generator().manual_seed(1)
    q, p = (GaussianParams(torch.randn(4, 6, 8, generator=g), torch.randn(4, 6, 8, generator=g)) for _ in range(2))
    torch.testing.assert_close(gaussian_kl(q, p), kl_divergence(normal(q), normal(p)), rtol=1e-5, atol=1e-5)


def test_gaussian_kl_is_zero_between_equal_distributions():
    q = gaussian(torch.Generator().manual_seed(2))
    torch.testing.assert_close(gaussian_kl(q, q), torch.zeros(3, 5, dtype=torch.float64))


def random_logits(g: torch.Generator, shape=(2, 3, 5, 6)) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64) * 3.0


@pytest.mark.parametrize("where_inf", ["none", "posterior", "both"])
def test_categorical_kl_matches_torch(where_inf):
    g = torch.Generator().manual_seed(3)
    q_logits, p_logits = random_logits(g), random_logits(g)
    if where_inf in ("posterior", "both"):
        q_logits[..., :2] = -torch.inf  # codes the posterior gives probability 0
    if where_inf == "both":
        p_logits[..., 0] = -torch.inf  # a code neither distribution has (e.g. a padded FSQ level)
    codes = torch.full(q_logits.shape[:-1], 3)
    expected = kl_divergence(Categorical(logits=q_logits), Categorical(logits=p_logits))
    assert torch.isfinite(expected).all()
    for q in (CategoricalParams(q_logits), CodeParams(codes, q_logits)):
        torch.testing.assert_close(categorical_kl(q, CategoricalParams(p_logits)), expected, rtol=1e-5, atol=1e-5)


def test_categorical_kl_is_infinite_where_the_prior_excludes_a_possible_code():
    g = torch.Generator().manual_seed(4)
    q_logits, p_logits = random_logits(g), random_logits(g)
    p_logits[0, 0, 0, 1] = -torch.inf
    kl = categorical_kl(CategoricalParams(q_logits), CategoricalParams(p_logits))
    assert kl[0, 0, 0] == torch.inf
    assert torch.isfinite(kl.flatten()[1:]).all()


def test_categorical_kl_has_finite_gradients_with_excluded_codes():
    """−inf logits (codes a stage does not have) must not turn gradients into NaN."""
    g = torch.Generator().manual_seed(5)
    q_logits, p_logits = random_logits(g), random_logits(g)
    q_logits[..., 0] = p_logits[..., 0] = -torch.inf
    q_logits.requires_grad_(True)
    p_logits.requires_grad_(True)
    categorical_kl(CategoricalParams(q_logits), CategoricalParams(p_logits)).sum().backward()
    assert torch.isfinite(q_logits.grad).all() and torch.isfinite(p_logits.grad).all()
    assert q_logits.grad[..., 1:].abs().sum() > 0 and p_logits.grad[..., 1:].abs().sum() > 0


def coded_batch(seed: int):
    """Posterior and prior logits (Q=2, B=3, T=5, K=6), the second stage with one code fewer, and codes."""
    g = torch.Generator().manual_seed(seed)
    q_logits, p_logits = random_logits(g), random_logits(g)
    q_logits[1, ..., -1] = p_logits[1, ..., -1] = -torch.inf
    codes = torch.randint(0, 5, p_logits.shape[:-1], generator=g)
    return q_logits, p_logits, codes


def test_discrete_phi_is_the_code_length_of_the_sent_codes():
    q_logits, p_logits, codes = coded_batch(6)
    prior = CategoricalParams(p_logits)
    expected = -Categorical(logits=p_logits).log_prob(codes)
    torch.testing.assert_close(code_length(codes, prior), expected)
    # whatever the posterior: PHi describes the codes that were sent, not the posterior's KL
    torch.testing.assert_close(divergence(CodeParams(codes, q_logits), prior), expected)
    assert not torch.allclose(categorical_kl(CodeParams(codes, q_logits), prior), expected)


@pytest.mark.parametrize("entropy_weight", [1.0, 0.0, 0.3])
def test_the_rate_reports_the_code_length_and_trains_the_expected_code_length(entropy_weight):
    """Value: −ln p(c). Gradient into the posterior: that of E_q[−ln p] − (1 − w) H(q) with p fixed
    (w = 1: the cross-entropy KL + H; w = 0: the KL); into the prior: that of −ln p(c)."""
    q_logits, p_logits, codes = coded_batch(7)
    q_var, p_var = q_logits.clone().requires_grad_(True), p_logits.clone().requires_grad_(True)
    rate = expected_code_length(CodeParams(codes, q_var), CategoricalParams(p_var), entropy_weight)
    weights = torch.rand(rate.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    (rate * weights).sum().backward()
    torch.testing.assert_close(rate.detach(), -Categorical(logits=p_logits).log_prob(codes))

    # the reference on the codes each stage has (torch's KL turns the −inf logits' 0·∞ into NaN gradients)
    assert torch.isfinite(q_var.grad).all()
    for stage, codes_of_stage in ((0, 6), (1, 5)):
        q_ref = q_logits[stage, ..., :codes_of_stage].clone().requires_grad_(True)
        q_dist, p_fixed = Categorical(logits=q_ref), Categorical(logits=p_logits[stage, ..., :codes_of_stage])
        surrogate = kl_divergence(q_dist, p_fixed) + entropy_weight * q_dist.entropy()
        (surrogate * weights[stage]).sum().backward()
        torch.testing.assert_close(q_var.grad[stage, ..., :codes_of_stage], q_ref.grad)

    p_ref = p_logits.clone().requires_grad_(True)
    (-Categorical(logits=p_ref).log_prob(codes) * weights).sum().backward()
    torch.testing.assert_close(p_var.grad, p_ref.grad)


def test_kl_to_standard_gaussian_matches_torch():
    q = gaussian(torch.Generator().manual_seed(7))
    standard = Independent(Normal(torch.zeros_like(q.mean), torch.ones_like(q.mean)), 1)
    expected = kl_divergence(normal(q), standard).unsqueeze(0)
    torch.testing.assert_close(kl_to_standard(q), expected, rtol=1e-5, atol=1e-5)


def test_kl_to_standard_categorical_is_the_kl_to_uniform_over_the_stage_codes():
    g = torch.Generator().manual_seed(8)
    logits = random_logits(g)
    logits[1, ..., -2:] = -torch.inf  # stage 2 has 4 codes, stage 1 has 6
    uniform = torch.where(torch.isfinite(logits), 0.0, -torch.inf)
    expected = kl_divergence(Categorical(logits=logits), Categorical(logits=uniform))
    q = CodeParams(torch.zeros(logits.shape[:-1], dtype=torch.long), logits)
    torch.testing.assert_close(kl_to_standard(q), expected, rtol=1e-5, atol=1e-5)
    # ln K − H(q) ≤ ln K, with K the codes of each stage
    assert (kl_to_standard(q)[1] <= math.log(4) + 1e-9).all()


def test_kl_to_standard_categorical_has_finite_gradients_with_excluded_codes():
    logits = random_logits(torch.Generator().manual_seed(9))
    logits[..., -1] = -torch.inf
    logits.requires_grad_(True)
    kl_to_standard(CodeParams(torch.zeros(logits.shape[:-1], dtype=torch.long), logits)).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_divergence_rejects_mismatched_families():
    q = gaussian(torch.Generator().manual_seed(10))
    with pytest.raises(TypeError, match="no divergence"):
        divergence(q, CategoricalParams(torch.zeros(1, 3, 5, 4)))


def test_distribution_objects_have_the_documented_shapes():
    q = gaussian(torch.Generator().manual_seed(11))
    assert q.distribution().batch_shape == (3, 5) and q.distribution().event_shape == (7,)
    c = CategoricalParams(torch.zeros(2, 3, 5, 4))
    assert c.distribution().batch_shape == (2, 3, 5)
    h = CodeParams(torch.zeros(2, 3, 5, dtype=torch.long), torch.zeros(2, 3, 5, 4))
    assert h.distribution().batch_shape == (2, 3, 5)
