"""Each bottleneck against an independent computation of what it should produce."""

from __future__ import annotations

import pytest
import torch
from phi_cases import D_MODEL, DISCRETE, make_config, make_layer, random_h

from qphi.bottlenecks.base import cosine_anneal
from qphi.bottlenecks.fsq import bound

B, T = 3, 6


def run(case: str, training: bool = False, seed: int = 0, **overrides):
    layer = make_layer(case, **overrides).train(training)
    h = random_h(B, T)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = layer.bottleneck(h, torch.ones(B, T, dtype=torch.bool))
    return layer.bottleneck, h, out


def test_gaussian_evaluation_uses_the_mean_and_clamps_the_log_variance():
    bottleneck, h, out = run("continuous", logvar_min=-2.0, logvar_max=1.0)
    mean, logvar = bottleneck.encode(h).chunk(2, dim=-1)
    torch.testing.assert_close(out.posterior.mean, mean)
    torch.testing.assert_close(out.posterior.logvar, logvar.clamp(-2.0, 1.0))
    assert (logvar < -2.0).any() and (logvar > 1.0).any()  # the clamp was exercised
    torch.testing.assert_close(out.z, mean)
    torch.testing.assert_close(out.h, bottleneck.decode(mean))


def test_gaussian_training_samples_z_from_the_posterior():
    bottleneck = make_layer("continuous").bottleneck.train()
    h = random_h(1, 1).expand(4000, 1, D_MODEL)
    torch.manual_seed(0)
    with torch.no_grad():
        out = bottleneck(h, torch.ones(4000, 1, dtype=torch.bool))
    standardised = (out.z - out.posterior.mean) / torch.exp(0.5 * out.posterior.logvar)
    assert standardised.mean(0).abs().max() < 0.1
    assert (standardised.std(0) - 1).abs().max() < 0.1


@pytest.mark.parametrize("case", ["gumbel", "residual"])
def test_gumbel_evaluation_takes_the_argmax_code_of_each_successive_residual(case):
    bottleneck, h, out = run(case)
    residual = bottleneck.encode(h)
    z = torch.zeros_like(residual)
    for s, stage in enumerate(bottleneck.stages):
        logits = stage.to_logits(torch.nn.functional.rms_norm(residual, residual.shape[-1:]))
        torch.testing.assert_close(out.posterior.logits[s], logits)
        code = logits.argmax(-1)
        assert torch.equal(out.codes[s], code)
        residual = residual - stage.codebook[code]
        z = z + stage.codebook[code]
    torch.testing.assert_close(out.z, z)
    torch.testing.assert_close(out.h, bottleneck.decode(z))


@pytest.mark.parametrize("case", ["gumbel", "residual"])
def test_gumbel_training_draws_one_codebook_vector_per_stage(case):
    bottleneck, _, out = run(case, training=True)
    expected = sum(stage.codebook[out.codes[s]] for s, stage in enumerate(bottleneck.stages))
    torch.testing.assert_close(out.z, expected)
    # sampling: with flat-ish posteriors, codes are not always the argmax
    assert not torch.equal(out.codes, out.posterior.logits.argmax(-1))


@pytest.mark.parametrize("case", ["vq", "residual_vq"])
def test_vq_evaluation_snaps_each_residual_to_its_nearest_codebook_vector(case):
    bottleneck = make_layer(case, vq={"codebook_update": "gradient"}).bottleneck.eval()
    h, mask = random_h(B, T), torch.ones(B, T, dtype=torch.bool)
    torch.manual_seed(0)
    with torch.no_grad():
        bottleneck(h, mask)  # k-means initialisation
        codebooks = [stage.vq.codebook.clone() for stage in bottleneck.stages]
        out = bottleneck(h, mask)
        residual = bottleneck.encode(h)
    z = torch.zeros_like(residual)
    tau = bottleneck.temperature
    for s, codebook in enumerate(codebooks):
        distances = torch.cdist(residual, codebook.expand(B, *codebook.shape)).pow(2)  # (B, T, K)
        code = distances.argmin(-1)
        assert torch.equal(out.codes[s], code)
        # the posterior: softmax of the standardised negative squared distances over τ
        standardised = (distances.mean(-1, keepdim=True) - distances) / distances.std(-1, keepdim=True)
        torch.testing.assert_close(out.posterior.logits[s], standardised / tau, rtol=1e-4, atol=1e-4)
        residual = residual - codebook[code]
        z = z + codebook[code]
    torch.testing.assert_close(out.z, z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.h, bottleneck.decode(out.z))


def test_vq_training_sends_drawn_codes_with_their_codebook_vectors():
    bottleneck = make_layer("vq", vq={"codebook_update": "gradient"}).bottleneck
    h, mask = random_h(B, T), torch.ones(B, T, dtype=torch.bool)
    torch.manual_seed(0)
    with torch.no_grad():
        bottleneck.eval()(h, mask)  # k-means initialisation
        codebook = bottleneck.stages[0].vq.codebook.clone()
        out = bottleneck.train()(h, mask)
    torch.testing.assert_close(out.z, codebook[out.codes[0]], rtol=1e-5, atol=1e-5)
    assert not torch.equal(out.codes, out.posterior.logits.argmax(-1))  # drawn, not always the nearest


@pytest.mark.parametrize("kind", ["tanh", "ifsq"])
def test_fsq_rounds_each_bounded_dimension_to_its_bin_centre(kind):
    bottleneck, h, out = run("fsq", fsq_bound=kind)
    levels = torch.tensor([4, 3, 5])
    bounded = bound(bottleneck.encode(h), kind)
    reference = (
        torch.tanh(bottleneck.encode(h)) if kind == "tanh" else 2 * torch.sigmoid(1.6 * bottleneck.encode(h)) - 1
    )
    torch.testing.assert_close(bounded, reference)
    centres = [(2 * torch.arange(n) + 1) / n - 1 for n in levels.tolist()]  # bin centres of (−1, 1)
    for d, c in enumerate(centres):
        nearest = (bounded[..., d : d + 1] - c).abs().argmin(-1)
        assert torch.equal(out.codes[d], nearest)
        torch.testing.assert_close(out.z[..., d], c[nearest])
    assert len(torch.unique(out.codes[0])) > 1  # the inputs spread over several levels
    torch.testing.assert_close(out.h, bottleneck.decode(out.z))


def test_fsq_joint_code_is_the_mixed_radix_number_of_the_factorised_digits():
    _, _, factorised = run("fsq")
    _, _, joint = run("fsq_joint")
    digits = factorised.codes
    expected = digits[0] + 4 * digits[1] + 4 * 3 * digits[2]
    assert torch.equal(joint.codes, expected.unsqueeze(0))
    assert torch.equal(joint.z, factorised.z)


def test_fsq_gradient_passes_straight_through_the_rounding():
    bottleneck = make_layer("fsq").bottleneck.train()
    h = random_h(B, T).requires_grad_(True)
    out = bottleneck(h, torch.ones(B, T, dtype=torch.bool))
    weights = torch.randn_like(out.z)
    (out.z * weights).sum().backward()
    expected = torch.autograd.functional.vjp(lambda x: bound(bottleneck.encode(x), "tanh"), h.detach(), weights)[1]
    torch.testing.assert_close(h.grad, expected)


def test_fsq_posterior_measures_distances_in_bin_widths():
    bottleneck, h, out = run("fsq")
    bounded = bound(bottleneck.encode(h), "tanh")
    tau = bottleneck.temperature
    for d, levels in enumerate([4, 3, 5]):
        centres = (2 * torch.arange(levels) + 1) / levels - 1
        expected = -((bounded[..., d : d + 1] - centres) / (2 / levels)).pow(2) / tau  # (B, T, L)
        torch.testing.assert_close(out.posterior.logits[d, ..., :levels], expected, rtol=1e-5, atol=1e-5)
        assert (out.posterior.logits[d, ..., levels:] == -torch.inf).all()  # levels this dimension lacks
    # the joint posterior's logit of a code is the sum of its digits' logits
    _, _, joint = run("fsq_joint")
    digits = torch.cartesian_prod(torch.arange(5), torch.arange(3), torch.arange(4)).flip(-1)  # mixed radix order
    summed = sum(out.posterior.logits[d][..., digits[:, d]] for d in range(3))
    torch.testing.assert_close(
        torch.log_softmax(joint.posterior.logits[0], -1), torch.log_softmax(summed, -1), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("case", DISCRETE)
def test_training_draws_each_code_from_the_posterior(case):
    """One input repeated 6000 times: the sent codes' frequencies are the posterior's probabilities.

    A residual stage's posterior depends on the codes drawn before it, so the frequencies are compared
    with the posterior averaged over the draws (for one stage every draw has the same posterior)."""
    layer = make_layer(case, vq={"codebook_update": "gradient"}) if "vq" in case else make_layer(case)
    bottleneck = layer.bottleneck
    h = random_h(1, 1).expand(6000, 1, D_MODEL)
    mask = torch.ones(6000, 1, dtype=torch.bool)
    torch.manual_seed(0)
    with torch.no_grad():
        bottleneck.eval()(h[:64], mask[:64])  # VQ: k-means initialisation before the draws
        out = bottleneck.train()(h, mask)
    all_probs = out.posterior.log_probs()[:, :, 0].exp().mean(1)  # (Q, K): averaged over the draws
    stage = int(all_probs.amax(-1).argmin())  # the stage least sure of its code
    probs = all_probs[stage]
    frequencies = torch.bincount(out.codes[stage, :, 0], minlength=probs.shape[-1]).double() / 6000
    assert (frequencies - probs).abs().max() < 0.025
    assert probs.max() < 0.98  # a real draw, not a near-certain code


def test_gumbel_straight_through_gradient_reaches_the_logits():
    bottleneck = make_layer("gumbel").bottleneck.train()
    torch.manual_seed(0)
    out = bottleneck(random_h(B, T), torch.ones(B, T, dtype=torch.bool))
    out.h.sum().backward()
    assert bottleneck.stages[0].to_logits.weight.grad.abs().sum() > 0
    assert bottleneck.stages[0].codebook.grad.abs().sum() > 0


@pytest.mark.parametrize("case", DISCRETE)
def test_the_temperature_follows_its_schedule_and_travels_with_the_weights(case):
    config = make_config(case).bottleneck
    bottleneck = make_layer(case).bottleneck
    assert bottleneck.temperature == pytest.approx(config.tau_start)
    bottleneck.set_progress(0.5)
    assert bottleneck.temperature == pytest.approx(cosine_anneal(config.tau_start, config.tau_end, 0.5))
    bottleneck.set_progress(1.0)
    assert bottleneck.temperature == pytest.approx(config.tau_end)
    loaded = make_layer(case, seed=1).bottleneck
    loaded.load_state_dict(bottleneck.state_dict())
    assert loaded.temperature == pytest.approx(config.tau_end)  # a loaded model evaluates where training ended
