"""The PHiLayer contract: output shapes, units, distribution objects, padding, bounds, loss terms,
determinism and mixed precision, for every bottleneck."""

from __future__ import annotations

import math

import pytest
import torch
from phi_cases import (
    CASES,
    D_MODEL,
    DISCRETE,
    evaluate,
    make_config,
    make_layer,
    random_h,
)
from torch.distributions import kl_divergence

from qphi import PHiLayer
from qphi.latents import kl_to_standard

B, T = 3, 8


def padding_mask() -> torch.Tensor:
    """Row 0 full, row 1 right-padded, row 2 left-padded."""
    steps = torch.arange(T)
    return torch.stack([steps >= 0, steps < T - 3, steps >= 2])


def num_stages(case: str) -> int:
    return len(make_config(case).stage_sizes) or 1


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", list(CASES))
def test_output_shapes_and_dtypes(case, training):
    layer = make_layer(case).train(training)
    config = layer.config
    torch.manual_seed(0)
    out = layer(random_h(B, T), padding_mask=padding_mask())
    q = num_stages(case)
    assert out.h.shape == (B, T, D_MODEL) and out.h.dtype == torch.float32
    assert out.phi.shape == (B, T) and out.phi.dtype == torch.float32
    assert out.phi_bits.shape == (B, T)
    assert out.phi_per_stage.shape == (q, B, T) and out.phi_per_stage.dtype == torch.float32
    assert out.z.shape == (B, T, config.code_dim)
    assert out.mask.dtype == torch.bool and out.mask.shape == (B, T)
    if case == "continuous":
        assert out.codes is None and out.kl_per_stage is None
        assert out.posterior.batch_shape == (B, T) and out.prior.batch_shape == (B, T)
    else:
        assert out.codes.shape == (q, B, T) and out.codes.dtype == torch.int64
        assert out.kl_per_stage.shape == (q, B, T) and out.kl_per_stage.dtype == torch.float32
        sizes = torch.tensor(config.stage_sizes).view(-1, 1, 1)
        assert (out.codes >= 0).all() and (out.codes < sizes).all()
        assert out.posterior.batch_shape == (q, B, T) and out.prior.batch_shape == (q, B, T)
    for name, value in out.losses.items():
        assert value.shape == () and value.dtype == torch.float32 and torch.isfinite(value), name
    assert out.loss.shape == ()


@pytest.mark.parametrize("case", list(CASES))
def test_units_and_code_lengths(case):
    layer = make_layer(case).eval()
    out = evaluate(layer, random_h(B, T), padding_mask=padding_mask())
    torch.testing.assert_close(out.phi, out.phi_per_stage.sum(0))
    torch.testing.assert_close(out.phi_bits, out.phi / math.log(2))
    torch.testing.assert_close(out.phi_bits * math.log(2), out.phi)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", list(CASES))
def test_distribution_objects_reproduce_the_per_stage_phi(case, training):
    """Continuous: PHi = KL(q ‖ p). Discrete: PHi = −ln p(sent code), the code length of what the
    upper layers receive, and KL(q ‖ p) is reported apart, as a diagnostic."""
    layer = make_layer(case).train(training)
    mask = padding_mask()
    torch.manual_seed(0)
    out = layer(random_h(B, T), padding_mask=mask)
    with torch.no_grad():
        kl = kl_divergence(out.posterior, out.prior)
        phi = kl.unsqueeze(0) if case == "continuous" else -out.prior.log_prob(out.codes)
    assert phi.shape == out.phi_per_stage.shape
    torch.testing.assert_close(phi[:, mask], out.phi_per_stage[:, mask], rtol=1e-4, atol=1e-4)
    assert out.phi_per_stage.abs().sum() > 0
    if case != "continuous":
        torch.testing.assert_close(kl[:, mask], out.kl_per_stage[:, mask], rtol=1e-4, atol=1e-4)
        assert not torch.allclose(out.kl_per_stage, out.phi_per_stage)


@pytest.mark.parametrize("case", list(CASES))
def test_phi_is_exactly_zero_at_padding_and_padding_cannot_change_real_outputs(case):
    mask = padding_mask()
    h = random_h(B, T)
    noisy = h.clone()
    noisy[~mask] = torch.randn(int((~mask).sum()), D_MODEL) * 100.0
    # fresh, identical layers for each input, so VQ's k-means initialisation sees each input once
    base = evaluate(make_layer(case).eval(), h, padding_mask=mask)
    moved = evaluate(make_layer(case).eval(), noisy, padding_mask=mask)
    assert (base.phi_per_stage[:, ~mask] == 0).all() and (moved.phi[~mask] == 0).all()
    torch.testing.assert_close(moved.phi_per_stage, base.phi_per_stage, rtol=0, atol=1e-6)
    torch.testing.assert_close(moved.h[mask], base.h[mask], rtol=0, atol=1e-6)
    torch.testing.assert_close(moved.z[mask], base.z[mask], rtol=0, atol=1e-6)
    torch.testing.assert_close(moved.losses["phi"], base.losses["phi"])
    torch.testing.assert_close(base.losses["phi"], base.phi[mask].mean() * make_config(case).loss.phi)
    if case != "continuous":
        assert (base.kl_per_stage[:, ~mask] == 0).all()
        torch.testing.assert_close(moved.codes[:, mask], base.codes[:, mask], rtol=0, atol=0)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_padded_row_reports_what_the_unpadded_sequence_reports(case, side):
    layer = make_layer(case).eval()
    h = random_h(1, T - 3)
    padding = random_h(1, 3, seed=9)
    padded = torch.cat([padding, h] if side == "left" else [h, padding], dim=1)
    real = torch.arange(T) >= 3 if side == "left" else torch.arange(T) < T - 3
    alone = evaluate(layer, h)
    out = evaluate(layer, padded, padding_mask=real.unsqueeze(0))
    torch.testing.assert_close(out.phi_per_stage[:, :, real], alone.phi_per_stage, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.h[:, real], alone.h, rtol=1e-5, atol=1e-5)


def uniform_prior_layer(case: str) -> PHiLayer:
    layer = make_layer(case).eval()
    with torch.no_grad():
        layer.prior.out_weight.zero_()
        layer.prior.out_bias.zero_()
    return layer


@pytest.mark.parametrize("case", DISCRETE)
def test_phi_under_a_uniform_prior_is_bounded_by_log_codebook_size(case):
    layer = uniform_prior_layer(case)
    sizes = torch.tensor(layer.config.stage_sizes, dtype=torch.float32).view(-1, 1, 1)
    out = evaluate(layer, random_h(B, T))
    eps = 1e-5
    assert (out.phi_per_stage <= torch.log(sizes) + eps).all()
    assert (out.phi <= layer.config.max_phi_nats + eps).all()
    # a sent code costs exactly ln K under a uniform prior; the KL of q is ln K − H(q), below it
    torch.testing.assert_close(out.phi_per_stage, torch.log(sizes).expand_as(out.phi_per_stage))
    torch.testing.assert_close(out.kl_per_stage, kl_to_standard(out.posterior_params))
    assert (out.kl_per_stage < torch.log(sizes) - 1e-3).any()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("gumbel", math.log(8)),
        ("vq", math.log(8)),
        ("residual", 3 * math.log(6)),
        ("residual_vq", 2 * math.log(6)),
        ("fsq", math.log(4) + math.log(3) + math.log(5)),
        ("fsq_joint", math.log(60)),
        ("lfq", 4 * math.log(2)),
        ("continuous", math.inf),
    ],
)
def test_max_phi_nats(case, expected):
    assert make_config(case).max_phi_nats == pytest.approx(expected)


@pytest.mark.parametrize("case", list(CASES))
def test_deterministic_evaluation_is_repeatable(case):
    layer = make_layer(case).eval()
    h, mask = random_h(B, T), padding_mask()
    first = evaluate(layer, h, padding_mask=mask, seed=1)
    second = evaluate(layer, h, padding_mask=mask, seed=2)
    for name in ("h", "phi_per_stage", "z"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    if first.codes is not None:
        assert torch.equal(first.codes, second.codes)


@pytest.mark.parametrize("case", ["continuous", "gumbel", "residual"])
def test_evaluation_samples_when_deterministic_eval_is_off(case):
    layer = make_layer(case, deterministic_eval=False).eval()
    h = random_h(B, T)
    first, second = evaluate(layer, h, seed=1), evaluate(layer, h, seed=2)
    assert not torch.equal(first.z, second.z)


def train_losses(case: str, seed: int, steps: int = 3) -> list[float]:
    torch.manual_seed(seed)
    layer = PHiLayer(make_config(case, loss={"reconstruction": 1e-2, "latent_kl": 1e-2}))
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    h, mask = random_h(4, T), torch.ones(4, T, dtype=torch.bool)
    losses = []
    for _ in range(steps):
        out = layer(h, padding_mask=mask)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    return losses


@pytest.mark.parametrize("case", list(CASES))
def test_same_seed_gives_identical_training_losses(case):
    assert train_losses(case, seed=5) == train_losses(case, seed=5)
    assert train_losses(case, seed=5) != train_losses(case, seed=6)


@pytest.mark.parametrize("case", list(CASES))
def test_loss_terms_are_named_weighted_and_masked(case):
    weights = {"phi": 0.5, "self_critic": 0.3, "reconstruction": 0.2, "latent_kl": 0.4}
    options = {"vq": {"commitment": 0.7}} if "vq" in case else {}  # a VQ option: the bottleneck weighs it
    layer = make_layer(case, loss=weights, **options).train()
    h, mask = random_h(B, T), padding_mask()
    loss_mask = mask.clone()
    loss_mask[0, :3] = False
    torch.manual_seed(0)
    out = layer(h, padding_mask=mask, loss_mask=loss_mask)
    expected = {"phi", "self_critic", "reconstruction", "latent_kl"}
    if "vq" in case:
        expected.add("commitment")
    if case == "lfq":
        expected.add("entropy")
    assert set(out.losses) == expected
    torch.testing.assert_close(out.losses["phi"], 0.5 * out.phi[loss_mask].mean())
    torch.testing.assert_close(out.losses["reconstruction"], 0.2 * (h - out.h).pow(2).sum(-1)[loss_mask].mean())
    if "latent_kl" in expected:
        kl = kl_to_standard(out.posterior_params).sum(0)
        torch.testing.assert_close(out.losses["latent_kl"], 0.4 * kl[loss_mask].mean())
    torch.testing.assert_close(out.loss, sum(out.losses.values()))
    # Evaluation reports only the PHi term; the others are training signals.
    assert set(layer.eval()(h, padding_mask=mask).losses) == {"phi"}


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")  # RMSNorm of bf16 input
@pytest.mark.parametrize("case", list(CASES))
def test_bf16_autocast_keeps_the_bottleneck_and_phi_in_float32(case):
    layer = make_layer(case, randomized=False).eval()
    h, mask = random_h(B, T), padding_mask()
    reference = evaluate(layer, h, padding_mask=mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = evaluate(layer, h, padding_mask=mask)
    assert out.phi.dtype == out.phi_per_stage.dtype == torch.float32
    assert out.z.dtype == torch.float32 and out.h.dtype == h.dtype
    for name, value in vars(out.posterior_params).items():
        if torch.is_tensor(value) and value.is_floating_point():
            assert value.dtype == torch.float32, name
    # the bottleneck is computed exactly as without autocast; only the prior runs in bf16
    torch.testing.assert_close(out.z, reference.z, rtol=0, atol=0)
    torch.testing.assert_close(out.h, reference.h, rtol=0, atol=0)
    if out.codes is not None:
        assert torch.equal(out.codes, reference.codes)
    torch.testing.assert_close(out.phi, reference.phi, rtol=0.05, atol=0.05)
