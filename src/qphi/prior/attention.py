"""Causal self-attention over the latent sequence, respecting packed-document boundaries."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SequenceLayout:
    """Where documents start in a (B, T) batch of possibly packed, possibly padded rows.

    Padding is its own segment, so real tokens never attend to it and the first real token
    after left padding counts as a document start.
    """

    positions: Tensor  # (B, T) int64, position within the segment (restarts at every document)
    starts: Tensor  # (B, T) bool, True at the first token of each segment
    attn_mask: Tensor | None  # (B, 1, T, T) bool, True = may attend; None = plain causal

    @staticmethod
    def build(mask: Tensor, document_ids: Tensor | None = None) -> SequenceLayout:
        batch, steps = mask.shape
        idx = torch.arange(steps, device=mask.device).expand(batch, steps)
        if document_ids is None and bool(mask.all()):
            starts = idx == 0
            return SequenceLayout(positions=idx, starts=starts, attn_mask=None)
        segments = document_ids.long() if document_ids is not None else torch.zeros_like(idx)
        segments = torch.where(mask, segments, torch.full_like(segments, -1))
        starts = torch.ones_like(mask)
        starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
        start_index = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
        same_segment = start_index.unsqueeze(-1) == start_index.unsqueeze(-2)
        causal = torch.ones(steps, steps, dtype=torch.bool, device=mask.device).tril()
        return SequenceLayout(
            positions=idx - start_index, starts=starts, attn_mask=(same_segment & causal).unsqueeze(1)
        )


def rotate(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """Rotary position embedding of x (B, H, T, Dh) at integer positions (B, T)."""
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.unsqueeze(-1).float() * freqs  # (B, T, half)
    cos, sin = angles.cos().unsqueeze(1).to(x.dtype), angles.sin().unsqueeze(1).to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, n_heads: int, rope_base: float):
        super().__init__()
        self.n_heads = n_heads
        self.rope_base = rope_base
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)

    def forward(self, x: Tensor, layout: SequenceLayout) -> Tensor:
        batch, steps, width = x.shape
        q, k, v = self.qkv(x).view(batch, steps, 3, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, layout.positions, self.rope_base), rotate(k, layout.positions, self.rope_base)
        if layout.attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.attn_mask)
        return self.out(y.transpose(1, 2).reshape(batch, steps, width))


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gate_up = nn.Linear(width, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # Two products on halves of the one weight: chunks of a joint product are strided views,
        # on which SiLU, the product and their backward run ~2× slower on a CPU (bench_train.py).
        gate = F.linear(x, self.gate_up.weight[: self.hidden])
        up = F.linear(x, self.gate_up.weight[self.hidden :])
        return self.down(F.silu(gate) * up)
