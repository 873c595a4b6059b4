"""The learned autoregressive prior p(z_t | z_<t).

One causal self-attention block reads the latent sequence; its output at step t−1 is the
context for predicting z_t (a document's first latent is predicted from a learned initial
context instead). An RMSNorm + SwiGLU head then outputs

* Gaussian parameters (mean, log-variance) for the continuous bottleneck, or
* logits over each stage's codes for discrete bottlenecks, coarse to fine: stage s at step t
  also sees the codes of stages < s at step t, so
  p(c_t⁽¹···Q⁾ | c_<t) = Π_s p(c_t⁽ˢ⁾ | c_<t, c_t⁽<ˢ⁾).
All stages are predicted in one batched pass; there is no loop over time or stages.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qphi.latents import CategoricalParams, GaussianParams, LatentShape
from qphi.prior.attention import CausalSelfAttention, SequenceLayout, SwiGLU
from qphi.prior.config import PriorConfig


class AutoregressivePrior(nn.Module):
    """p(z_t | z_<t) for latents of `shape`, in a model of `width` (see the module docstring)."""

    def __init__(self, config: PriorConfig, width: int, shape: LatentShape):
        super().__init__()
        self.config = config
        self.shape = shape
        self.stage_sizes = shape.stage_sizes
        if self.stage_sizes:
            offsets = torch.tensor((0, *self.stage_sizes[:-1])).cumsum(0)
            self.register_buffer("offsets", offsets.view(-1, 1, 1), persistent=False)
            self.embed = nn.Embedding(sum(self.stage_sizes), width)
            num_stages, max_codes = len(self.stage_sizes), max(self.stage_sizes)
            self.stage_embed = nn.Parameter(torch.zeros(num_stages, width))
            self.out_weight = nn.Parameter(torch.randn(num_stages, width, max_codes) * 0.02)
            self.out_bias = nn.Parameter(torch.zeros(num_stages, max_codes))
            valid = torch.arange(max_codes) < torch.tensor(self.stage_sizes).unsqueeze(-1)
            self.register_buffer("invalid_codes", ~valid, persistent=False)
        else:
            self.embed = nn.Linear(shape.code_dim, width)
            self.out = nn.Linear(width, 2 * shape.code_dim)
        # Not zero: the bias-free SwiGLU head has zero gradient at a zero input, so a zero
        # initial context would never learn.
        self.initial = nn.Parameter(torch.randn(width) * 0.02)
        self.attn_norm = nn.RMSNorm(width)
        self.attn = CausalSelfAttention(width, config.n_heads, config.rope_base)
        self.head_norm = nn.RMSNorm(width)
        self.mlp = SwiGLU(width, int(config.mlp_ratio * width))

    def forward(self, latents: Tensor, layout: SequenceLayout) -> GaussianParams | CategoricalParams:
        """latents: codes (Q, B, T) int64 for discrete bottlenecks, z (B, T, D) for the continuous one."""
        if self.stage_sizes:
            stage_vectors = self.embed(latents + self.offsets)  # (Q, B, T, W)
            x = stage_vectors.sum(0)
        else:
            x = self.embed(latents)
        x = x + self.attn(self.attn_norm(x), layout)
        context = self._previous_step(x, layout.starts)
        if not self.stage_sizes:
            mean, logvar = self.out(self.mlp(self.head_norm(context))).chunk(2, dim=-1)
            return GaussianParams(mean, logvar.clamp(*self.shape.logvar_range))
        # codes of stages < s at the same step (an exclusive cumsum: stage s must not see its own code,
        # not even through rounding, or an entropy decoder could not reproduce its distribution)
        coarser = torch.cat([torch.zeros_like(stage_vectors[:1]), stage_vectors[:-1].cumsum(0)])
        u = context.unsqueeze(0) + coarser + self.stage_embed.view(-1, 1, 1, self.stage_embed.shape[-1])
        hidden = self.mlp(self.head_norm(u))
        logits = torch.einsum("qbtw,qwk->qbtk", hidden, self.out_weight) + self.out_bias.unsqueeze(1).unsqueeze(1)
        return CategoricalParams(logits.masked_fill(self.invalid_codes.unsqueeze(1).unsqueeze(1), -torch.inf))

    def _previous_step(self, x: Tensor, starts: Tensor) -> Tensor:
        """context[t] = x[t−1], or the learned initial context where a document starts."""
        shifted = torch.cat([x.new_zeros(x.shape[0], 1, x.shape[-1]), x[:, :-1]], dim=1)
        return torch.where(starts.unsqueeze(-1), self.initial.to(x.dtype).expand_as(x), shifted)
