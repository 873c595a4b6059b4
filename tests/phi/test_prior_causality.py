"""The learned prior predicts z_t from z_<t only, never across packed documents, and conditions
each stage on the coarser stages of the same step (SPEC §2.3, §2.2 RQ)."""

from __future__ import annotations

import pytest
import torch
from phi_cases import CASES, evaluate, make_config, make_layer, random_h, randomize_

from qphi.latents import CategoricalParams, GaussianParams
from qphi.prior import AutoregressivePrior, SequenceLayout

B, T = 2, 9
PRIOR_CASES = ["continuous", "gumbel", "residual", "fsq", "fsq_joint", "lfq"]


def make_prior(case: str) -> AutoregressivePrior:
    config = make_config(case)
    torch.manual_seed(0)
    return randomize_(AutoregressivePrior(config.prior, config.prior_width, config.latent), std=0.5).eval()


def random_latents(prior: AutoregressivePrior, seed: int) -> torch.Tensor:
    """Codes (Q, B, T) drawn uniformly per stage, or z (B, T, D) for the continuous prior."""
    g = torch.Generator().manual_seed(seed)
    if not prior.stage_sizes:
        return torch.randn(B, T, prior.shape.code_dim, generator=g)
    return torch.stack([torch.randint(0, k, (B, T), generator=g) for k in prior.stage_sizes])


def params(prior_out) -> torch.Tensor:
    """The prior's prediction as one tensor with time at dim −2: (…, T, ·)."""
    if isinstance(prior_out, GaussianParams):
        return torch.cat([prior_out.mean, prior_out.logvar], -1)
    assert isinstance(prior_out, CategoricalParams)
    return prior_out.log_probs().masked_fill(prior_out.logits == -torch.inf, 0.0)


def assert_unchanged_up_to(changed: torch.Tensor, base: torch.Tensor, t: int) -> None:
    """Predictions (…, T, ·) for steps < t are equal, and so is the prediction for step t itself —
    of its first stage when there are several: finer stages at t read the coarser codes of t."""
    torch.testing.assert_close(changed[..., :t, :], base[..., :t, :], rtol=0, atol=1e-6)
    first = (slice(0, 1),) if changed.dim() == 4 else ()
    torch.testing.assert_close(
        changed[(*first, ..., t, slice(None))],
        base[(*first, ..., t, slice(None))],
        rtol=0,
        atol=1e-6,
    )


def on_steps(prior: AutoregressivePrior, steps: slice) -> tuple:
    """Index of `steps` on the time axis of latents: codes (Q, B, T) or z (B, T, D)."""
    return (..., steps) if prior.stage_sizes else (..., steps, slice(None))


def perturb_from(latents: torch.Tensor, prior: AutoregressivePrior, t: int, seed: int) -> torch.Tensor:
    """The latents with every step ≥ t redrawn."""
    changed = latents.clone()
    changed[on_steps(prior, slice(t, None))] = random_latents(prior, seed)[on_steps(prior, slice(t, None))]
    return changed


LAYOUTS = {
    "plain": lambda: (torch.ones(B, T, dtype=torch.bool), None),
    "right_padding": lambda: (torch.arange(T).expand(B, T) < torch.tensor([[T], [T - 3]]), None),
    "left_padding": lambda: (torch.arange(T).expand(B, T) >= torch.tensor([[0], [2]]), None),
    "packed": lambda: (
        torch.ones(B, T, dtype=torch.bool),
        torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2, 2], [5, 5, 5, 5, 5, 7, 7, 7, 7]]),
    ),
}


@pytest.mark.parametrize("layout_name", list(LAYOUTS))
@pytest.mark.parametrize("case", PRIOR_CASES)
def test_prior_prediction_for_step_t_ignores_steps_t_and_later(case, layout_name):
    prior = make_prior(case)
    mask, document_ids = LAYOUTS[layout_name]()
    layout = SequenceLayout.build(mask, document_ids)
    latents = random_latents(prior, seed=1)
    with torch.no_grad():
        base = params(prior(latents, layout))
        for t in range(T):
            changed = params(prior(perturb_from(latents, prior, t, seed=100 + t), layout))
            assert_unchanged_up_to(changed, base, t)
            if t + 1 < T:  # the test has power: later predictions do move
                assert not torch.allclose(changed[..., t + 1 :, :], base[..., t + 1 :, :], atol=1e-4)


def packed_row(prior: AutoregressivePrior, seed: int):
    """One row holding documents A (steps 0-2), B (3-6) and C (7-8)."""
    latents = random_latents(prior, seed)
    latents = latents[:, :1] if prior.stage_sizes else latents[:1]
    ids = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2, 2]])
    return latents, SequenceLayout.build(torch.ones(1, T, dtype=torch.bool), ids)


@pytest.mark.parametrize("case", PRIOR_CASES)
def test_packed_documents_do_not_see_each_other(case):
    prior = make_prior(case)
    latents, layout = packed_row(prior, seed=2)
    other, _ = packed_row(prior, seed=3)
    changed = latents.clone()
    doc_b = on_steps(prior, slice(3, 7))
    changed[doc_b] = other[doc_b]
    with torch.no_grad():
        base, moved = params(prior(latents, layout)), params(prior(changed, layout))
        plain = params(prior(latents, SequenceLayout.build(torch.ones(1, T, dtype=torch.bool))))
    # A (before B) and C (after B) are untouched by a change of document B ...
    torch.testing.assert_close(moved[..., :3, :], base[..., :3, :], rtol=0, atol=1e-6)
    torch.testing.assert_close(moved[..., 7:, :], base[..., 7:, :], rtol=0, atol=1e-6)
    assert not torch.allclose(moved[..., 4:7, :], base[..., 4:7, :], atol=1e-4)
    # ... whereas without document ids, C would read B (so the check above has power).
    assert not torch.allclose(plain[..., 7:, :], base[..., 7:, :], atol=1e-4)


@pytest.mark.parametrize("case", PRIOR_CASES)
@pytest.mark.parametrize("steps", [slice(3, 7), slice(7, 9)], ids=["middle", "last"])
def test_a_packed_document_is_predicted_as_if_it_started_a_fresh_row(case, steps):
    """Each document's first latent comes from the learned initial context, and its rotary
    positions restart, so its whole prior equals that of the same document alone in a row."""
    prior = make_prior(case)
    latents, layout = packed_row(prior, seed=4)
    document = latents[on_steps(prior, steps)]
    length = steps.stop - steps.start
    with torch.no_grad():
        packed = params(prior(latents, layout))[..., steps, :]
        alone = params(prior(document, SequenceLayout.build(torch.ones(1, length, dtype=torch.bool))))
        # also at the start of a padded row
        padded_latents = torch.cat(
            [document, latents[on_steps(prior, slice(0, T - length))]],
            dim=-1 if prior.stage_sizes else -2,
        )
        padded_mask = (torch.arange(T) < length).unsqueeze(0)
        padded = params(prior(padded_latents, SequenceLayout.build(padded_mask)))[..., :length, :]
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", PRIOR_CASES)
def test_first_step_is_predicted_from_the_initial_context(case):
    prior = make_prior(case)
    latents = random_latents(prior, seed=5)
    layout = SequenceLayout.build(torch.ones(B, T, dtype=torch.bool))
    with torch.no_grad():
        base = params(prior(latents, layout))
        prior.initial.add_(1.0)
        moved = params(prior(latents, layout))
    assert not torch.allclose(moved[..., 0, :], base[..., 0, :], atol=1e-4)
    torch.testing.assert_close(moved[..., 1:, :], base[..., 1:, :], rtol=0, atol=0)


@pytest.mark.parametrize("case", ["residual", "fsq"])
def test_each_stage_is_conditioned_on_the_coarser_stages_of_the_same_step(case):
    """Changing stage s at step t changes the prior of stages > s at step t, and never of stages ≤ s."""
    prior = make_prior(case)
    latents = random_latents(prior, seed=6)
    layout = SequenceLayout.build(torch.ones(B, T, dtype=torch.bool))
    num_stages = len(prior.stage_sizes)
    t = 4
    with torch.no_grad():
        base = params(prior(latents, layout))  # (Q, B, T, K)
        for s in range(num_stages):
            changed = latents.clone()
            changed[s, :, t] = (changed[s, :, t] + 1) % prior.stage_sizes[s]
            moved = params(prior(changed, layout))
            torch.testing.assert_close(moved[: s + 1, :, t], base[: s + 1, :, t], rtol=0, atol=1e-6)
            for finer in range(s + 1, num_stages):
                assert (moved[finer, :, t] - base[finer, :, t]).abs().amax(-1).min() > 1e-4, (
                    s,
                    finer,
                )
            torch.testing.assert_close(moved[:, :, :t], base[:, :, :t], rtol=0, atol=1e-6)


# Layer level: perturbing h at steps ≥ t leaves the PHi (and everything else) at steps < t unchanged.


@pytest.mark.parametrize("packed", [False, True], ids=["one_document", "packed"])
@pytest.mark.parametrize("case", list(CASES))
def test_layer_phi_before_t_ignores_h_from_t_on(case, packed):
    layer = make_layer(case).eval()
    h = random_h(batch=2, steps=T)
    document_ids = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, 1], [3, 3, 4, 4, 4, 4, 4, 6, 6]]) if packed else None
    base = evaluate(layer, h, document_ids=document_ids)
    other = random_h(batch=2, steps=T, seed=7)
    any_change = False
    for t in range(T):
        changed_h = h.clone()
        changed_h[:, t:] = other[:, t:]
        out = evaluate(layer, changed_h, document_ids=document_ids)
        torch.testing.assert_close(out.phi_per_stage[..., :t], base.phi_per_stage[..., :t], rtol=0, atol=1e-6)
        assert_unchanged_up_to(params(out.prior_params), params(base.prior_params), t)
        torch.testing.assert_close(out.h[:, :t], base.h[:, :t], rtol=0, atol=1e-6)
        any_change |= not torch.allclose(out.phi[:, t:], base.phi[:, t:], atol=1e-4)
    assert any_change


@pytest.mark.parametrize("case", list(CASES))
def test_layer_documents_are_independent(case):
    """Changing document B of a packed row leaves the PHi of documents A and C unchanged, and C's
    PHi equals that of C alone in a fresh row."""
    layer = make_layer(case).eval()
    h = random_h(batch=1, steps=T)
    ids = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2, 2]])
    base = evaluate(layer, h, document_ids=ids)
    changed_h = h.clone()
    changed_h[:, 3:7] = random_h(batch=1, steps=T, seed=8)[:, 3:7]
    moved = evaluate(layer, changed_h, document_ids=ids)
    torch.testing.assert_close(moved.phi_per_stage[..., :3], base.phi_per_stage[..., :3], rtol=0, atol=1e-6)
    torch.testing.assert_close(moved.phi_per_stage[..., 7:], base.phi_per_stage[..., 7:], rtol=0, atol=1e-6)
    alone = evaluate(layer, h[:, 7:])
    torch.testing.assert_close(base.phi_per_stage[..., 7:], alone.phi_per_stage, rtol=1e-5, atol=1e-5)
