"""The self-critic loss and every bottleneck's critic scores against naive computations."""

from __future__ import annotations

import math

import pytest
import torch
from phi_cases import CASES, make_layer, random_h
from torch.distributions import Categorical, Normal

from qphi.latents import GaussianParams
from qphi.phi.losses import masked_mean, self_critic_loss


def naive_self_critic(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real (i, t) of −log softmax over the real items j of scores[i, :, t], at j = i."""
    batch, _, steps = scores.shape
    losses = []
    for t in range(steps):
        real = [j for j in range(batch) if mask[j, t]]
        for i in real:
            row = torch.stack([scores[i, j, t] for j in real])
            losses.append(-(scores[i, i, t] - torch.logsumexp(row, 0)))
    return torch.stack(losses).mean()


def test_self_critic_loss_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 4, 6, generator=g) * 3
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, :2] = False
    mask[:, 5] = False  # a step where every item is padding
    torch.testing.assert_close(self_critic_loss(scores, mask), naive_self_critic(scores, mask))


def test_self_critic_loss_ignores_scores_of_padding_and_keeps_gradients_finite():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 3, 5, generator=g)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2, 3:] = False
    mask[:, 4] = False
    changed = scores.clone()
    changed[:, 2, 3:] = 1e4  # the candidate j = 2 at its padded steps
    changed[2, :, 3:] = -1e4  # and item i = 2's own (padded) rows
    torch.testing.assert_close(self_critic_loss(changed, mask), self_critic_loss(scores, mask))
    scores.requires_grad_(True)
    self_critic_loss(scores, mask).backward()
    assert torch.isfinite(scores.grad).all()
    assert scores.grad[:, :, 4].abs().sum() == 0


def test_self_critic_loss_is_log_batch_for_uninformative_scores():
    mask = torch.ones(5, 3, dtype=torch.bool)
    torch.testing.assert_close(self_critic_loss(torch.zeros(5, 5, 3), mask), torch.tensor(math.log(5)))


def test_masked_mean_matches_boolean_indexing():
    g = torch.Generator().manual_seed(2)
    values, mask = torch.randn(3, 4, 6, generator=g), torch.rand(4, 6, generator=g) > 0.3
    torch.testing.assert_close(masked_mean(values, mask), values[:, mask].mean())


def naive_scores(out) -> torch.Tensor:
    """scores[i, j, t] computed pair by pair with torch.distributions: item i's posterior's log-likelihood
    of item j's latent (Gaussian) or codes (discrete, summed over stages). → (B, B, T)."""
    batch, steps = out.z.shape[:2]
    scores = torch.empty(batch, batch, steps)
    for i in range(batch):
        for j in range(batch):
            if isinstance(out.posterior, GaussianParams):
                q = Normal(out.posterior.mean[i], torch.exp(0.5 * out.posterior.logvar[i]))
                scores[i, j] = q.log_prob(out.z[j]).sum(-1)
            else:
                q = Categorical(logits=out.posterior.logits[:, i])  # (Q, T) distributions
                scores[i, j] = q.log_prob(out.codes[:, j]).sum(0)
    return scores


@pytest.mark.parametrize("case", list(CASES))
def test_critic_scores_match_naive_pairwise_scores(case):
    layer = make_layer(case).train()
    torch.manual_seed(3)
    with torch.no_grad():
        out = layer.bottleneck(random_h(batch=4, steps=5), torch.ones(4, 5, dtype=torch.bool))
        scores = layer.bottleneck.critic_scores(out)
    expected = naive_scores(out)
    assert scores.shape == (4, 4, 5)
    # Terms constant in j may be dropped: compare the differences over j.
    torch.testing.assert_close(scores - scores[:, :1], expected - expected[:, :1], rtol=1e-4, atol=1e-4)
    if case != "continuous":  # categorical scores are exact log-probabilities
        torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)
