"""Where gradients flow: encoder, codebooks, prior; and what `loss.detach_targets` cuts (SPEC §2.4)."""

from __future__ import annotations

import pytest
import torch
from phi_cases import CASES, DISCRETE, make_config, make_layer, random_h
from torch.distributions import Categorical, kl_divergence

from qphi import PHiLayer

B, T = 4, 6


def posterior_parameters(layer: PHiLayer) -> dict[str, torch.nn.Parameter]:
    """The parameters that shape the posterior q(z | h): the encoder (and Gumbel stages' logit maps)."""
    return {
        name: p
        for name, p in layer.bottleneck.named_parameters()
        if name.startswith("encode.") or ".to_logits." in name
    }


def grad_norm(p: torch.nn.Parameter) -> float:
    return 0.0 if p.grad is None else p.grad.abs().sum().item()


def phi_backward(case: str, detach: bool) -> PHiLayer:
    layer = make_layer(case, randomized=False, loss={"detach_targets": detach, "rate_warmup": 0.0}).train()
    torch.manual_seed(0)
    layer(random_h(B, T)).losses["phi"].backward()
    return layer


@pytest.mark.parametrize("case", list(CASES))
def test_detached_targets_cut_exactly_the_posterior_gradient_of_the_phi_term(case):
    layer = phi_backward(case, detach=True)
    assert posterior_parameters(layer)
    for name, p in posterior_parameters(layer).items():
        assert grad_norm(p) == 0.0, name
    prior_grads = {name: grad_norm(p) for name, p in layer.prior.named_parameters()}
    assert all(g > 0 for g in prior_grads.values()), prior_grads


@pytest.mark.parametrize("case", list(CASES))
def test_without_detached_targets_the_phi_term_also_trains_the_posterior(case):
    """A rate term: for soft posteriors through the KL, for hard codes through a straight-through
    relaxation of the code length."""
    layer = phi_backward(case, detach=False)
    for name, p in posterior_parameters(layer).items():
        assert grad_norm(p) > 0, name
    assert all(grad_norm(p) > 0 for p in layer.prior.parameters())


@pytest.mark.parametrize("progress", [0.0, 1.0], ids=["start", "end"])
@pytest.mark.parametrize("case", DISCRETE)
def test_the_rate_gradient_into_the_encoder_is_that_of_the_annealed_expected_code_length(case, progress):
    """d rate / d h = d/dh mean_t Σ_s [KL(q ‖ p) + w · H(q)], p held fixed, w the bottleneck's entropy
    weight (0 early in an entropy anneal: the KL; 1 at the end: the expected code length Σ_k q_k (−ln p_k))."""
    layer = make_layer(case, randomized=False, loss={"rate_warmup": 0.0}).eval()
    layer.set_progress(progress)
    h = random_h(B, T)
    torch.manual_seed(0)
    with torch.no_grad():
        layer(h)  # VQ k-means initialisation happens here, not below
    h1 = h.clone().requires_grad_(True)
    out = layer(h1)
    out.losses["phi"].backward()

    h2 = h.clone().requires_grad_(True)
    # codes a stage lacks (−inf): a large negative finite logit, which torch's KL differentiates without NaN
    q_logits = layer.bottleneck(h2, torch.ones(B, T, dtype=torch.bool)).posterior.logits
    q = Categorical(logits=q_logits.masked_fill(q_logits == -torch.inf, -1e4))
    p_logits = out.prior_params.logits.detach()
    p = Categorical(logits=p_logits.masked_fill(p_logits == -torch.inf, -1e4))
    weight = float(layer.bottleneck.entropy_weight())
    assert weight == (0.0 if progress == 0.0 and make_config(case).bottleneck.entropy_anneal else 1.0)
    surrogate = kl_divergence(q, p) + weight * q.entropy()  # (Q, B, T)
    surrogate.sum(0).mean().backward()
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-4, atol=1e-6)
    assert h1.grad.abs().sum() > 0


def test_the_layer_schedules_the_rate_warmup_and_the_self_critic_fade():
    layer = make_layer("gumbel", loss={"rate_warmup": 0.4, "self_critic": 0.2, "self_critic_fade": 0.5})
    for progress, rate, critic in [
        (0.0, 0.0, 0.2),
        (0.2, 0.5, 0.12),
        (0.4, 1.0, 0.04),
        (0.5, 1.0, 0.0),
        (1.0, 1.0, 0.0),
    ]:
        layer.set_progress(progress)
        assert layer.rate_scale == pytest.approx(rate) and layer.critic_weight == pytest.approx(critic)
    detached = make_layer("gumbel", loss={"detach_targets": True})
    detached.set_progress(1.0)
    assert detached.rate_scale == 0.0
    layer.train().set_progress(0.6)  # the self-critic has faded out: no term at all
    assert "self_critic" not in layer(random_h(B, T)).losses


@pytest.mark.parametrize("case", list(CASES))
def test_every_parameter_learns_from_the_layer_and_downstream_losses(case):
    """out.loss plus a stand-in for the upper model's loss reaches every trainable parameter."""
    overrides = {"vq": {"codebook_update": "gradient"}} if "vq" in case else {}
    layer = make_layer(case, randomized=False, loss={"reconstruction": 0.1, "latent_kl": 0.1}, **overrides).train()
    torch.manual_seed(0)
    out = layer(random_h(B, T))
    (out.loss + out.h.pow(2).mean()).backward()
    missing = [name for name, p in layer.named_parameters() if grad_norm(p) == 0]
    assert not missing


def codebooks(layer: PHiLayer) -> list[torch.Tensor]:
    return [stage.vq.codebook for stage in layer.bottleneck.stages]


@pytest.mark.parametrize("case", ["vq", "residual_vq"])
def test_vq_codebook_is_a_parameter_only_with_gradient_updates(case):
    def codebook_parameters(layer: PHiLayer) -> list[str]:
        return [name for name, _ in layer.named_parameters() if name.endswith("codebook.embed")]

    stages = len(make_layer(case).bottleneck.stages)
    assert len(codebook_parameters(make_layer(case, vq={"codebook_update": "gradient"}))) == stages
    assert codebook_parameters(make_layer(case, vq={"codebook_update": "ema"})) == []


@pytest.mark.parametrize("case", ["vq", "residual_vq"])
def test_ema_updates_move_the_vq_codebook_in_training_only(case):
    layer = make_layer(case, randomized=False, vq={"dead_code_threshold": 0.0}).eval()
    h = random_h(B, T)
    torch.manual_seed(0)
    with torch.no_grad():
        layer(h)  # k-means initialisation
        initial = [c.clone() for c in codebooks(layer)]
        layer(random_h(B, T, seed=3))
        assert all(torch.equal(c, i) for c, i in zip(codebooks(layer), initial, strict=True))
        layer.train()(random_h(B, T, seed=3))
    assert all(not torch.equal(c, i) for c, i in zip(codebooks(layer), initial, strict=True))


def test_self_critic_gradient_reaches_the_encoder():
    layer = make_layer("continuous", randomized=False, loss={"phi": 0.0, "self_critic": 1.0}).train()
    torch.manual_seed(0)
    layer(random_h(B, T)).losses["self_critic"].backward()
    assert grad_norm(layer.bottleneck.encode.weight) > 0
    assert all(p.grad is None for p in layer.prior.parameters())
