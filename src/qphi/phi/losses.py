"""Loss helpers of the PHi layer: masked means and the self-critic (anti-collapse) loss."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` (…, B, T) over the positions where mask (B, T) is True."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / (weights.sum() * values[..., 0, 0].numel()).clamp_min(1.0)


def self_critic_loss(scores: Tensor, mask: Tensor) -> Tensor:
    """Each posterior must recognise its own latent among the batch (SPEC §2.4).

    scores[i, j, t] is item i's log-likelihood of item j's latent at step t; the loss is the
    cross-entropy over j with target i, averaged over real positions (i, t). Items that are
    padding at step t are not candidates.
    """
    candidates = scores.masked_fill(~mask.unsqueeze(0), -torch.inf)
    own = torch.diagonal(scores, dim1=0, dim2=1).transpose(0, 1)  # (B, T): scores[i, i, t]
    nll = torch.logsumexp(candidates, dim=1) - own
    return masked_mean(torch.where(mask, nll, torch.zeros_like(nll)), mask)
