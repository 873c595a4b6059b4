"""Sampling continuations of prompts: the one decode loop of every experiment that generates.

The in-context-learning competence samples letters from the PFA models *through* their PHi
bottleneck (it is part of the model); the reasoning-correctness experiment samples rationales
from a pretrained LLM with the bottleneck bypassed (the plain base model). Both go through
`generate`:

- Hugging Face models decode with a KV cache over left-padded prompts. Each distinct prompt
  passes through the model once and its keys and values are copied to every row that samples
  from it: a question's samples share one prompt pass instead of repeating it per row, which
  at batch 8 on a CPU cost as much as the sampling.
- Models without a cache (the residual LSTM) recompute the whole sequence at every step, with
  the rows right-padded, so a recurrent model never reads padding before a real token.
- Each token is drawn from softmax(logits / temperature) over the `top_k` largest logits of the
  allowed tokens, with a generator seeded per call, so a generation depends on its seed only.
- In evaluation mode every bottleneck works token by token (mean / argmax / nearest code), so
  running only the bottleneck (not the prior) inside the base model's forward is exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import DynamicCache, GenerationMixin

from qphi.models.splice import PHiModel


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn: at most `max_new_tokens` per row, from softmax(logits / temperature)
    over the `top_k` largest logits (None: all) among the `allowed` token ids (None: the whole
    vocabulary). A row that draws one of the `stop` ids ends there (the stop token is kept)."""

    max_new_tokens: int
    temperature: float = 1.0
    top_k: int | None = None
    allowed: tuple[int, ...] | None = None
    stop: tuple[int, ...] = ()


def sample_top_k(
    logits: Tensor, temperature: float, top_k: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """One token per row of `logits` (B, V) → (B, 1), drawn from softmax(logits / temperature)
    restricted to the row's `top_k` largest logits (None: the whole row) — the distribution of
    `transformers`' temperature and top-k warpers, without a softmax, mask and multinomial over
    the whole vocabulary (15 % of a batch-8 decode step of SmolLM2 on a CPU). top_k = 1 is greedy."""
    logits = logits.float()
    if top_k is None or top_k >= logits.shape[-1]:
        return torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)
    values, indices = logits.topk(top_k, dim=-1)
    choice = torch.multinomial(torch.softmax(values / temperature, dim=-1), 1, generator=generator)
    return indices.gather(-1, choice)


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """input_ids (B, T) and attention_mask (B, T) int64, the padding on the left."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(prompts), length), dtype=torch.int64)
    for i, p in enumerate(prompts):
        ids[i, length - len(p) :] = torch.tensor(p, dtype=torch.int64)
        mask[i, length - len(p) :] = 1
    return ids, mask


class _CachedDecoder:
    """Keys and values of the past in a `DynamicCache`; one new token per row and step."""

    def __init__(self, base: nn.Module, prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device):
        distinct = list(dict.fromkeys(map(tuple, prompts)))
        rows = torch.tensor([distinct.index(tuple(p)) for p in prompts], device=device)
        ids, mask = (t.to(device) for t in left_padded(distinct, pad_id))
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        self.base, self.cache = base, DynamicCache(config=base.config)
        out = base(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.cache.reorder_cache(rows)
        self.logits = out.logits[rows, -1]  # (B, V)
        self.mask, self.position = mask[rows], positions[rows, -1:]

    def advance(self, token: Tensor) -> Tensor:
        """Logits (B, V) after appending `token` (B, 1) to every row."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(token), 1)], dim=1)
        self.position = self.position + 1
        out = self.base(
            input_ids=token, attention_mask=self.mask, position_ids=self.position, cache=self.cache, use_cache=True
        )
        return out.logits[:, -1]


class _RecomputingDecoder:
    """The whole sequence again at every step, rows right-padded: row i's next-token logits are
    read at its last real token, and padding only ever follows the real tokens."""

    def __init__(self, base: nn.Module, prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device, room: int):
        self.base = base
        self.lengths = torch.tensor([len(p) for p in prompts], device=device)
        self.ids = torch.full((len(prompts), int(self.lengths.max()) + room), pad_id, device=device)
        for i, p in enumerate(prompts):
            self.ids[i, : len(p)] = torch.tensor(p, device=device)
        self.rows = torch.arange(len(prompts), device=device)
        self.logits = self._last_logits()

    def _last_logits(self) -> Tensor:
        logits = self.base(input_ids=self.ids[:, : int(self.lengths.max())]).logits
        return logits[self.rows, self.lengths - 1]

    def advance(self, token: Tensor) -> Tensor:
        self.ids[self.rows, self.lengths] = token.squeeze(1)
        self.lengths = self.lengths + 1
        return self._last_logits()


@contextmanager
def _inference(model: PHiModel, bottleneck: bool) -> Iterator[None]:
    """Evaluation mode for the duration; base-model calls go through the bottleneck or bypass it."""
    was_training = model.training
    model.eval()
    try:
        if bottleneck:
            with model.generating():
                yield
        else:
            yield
    finally:
        model.train(was_training)


@torch.no_grad()
def generate(
    model: PHiModel,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    sampling: Sampling,
    *,
    bottleneck: bool,
    seed: int,
) -> Tensor:
    """Sampled continuations of `prompts` (token id lists) → (B, N) new token ids, N ≤
    `sampling.max_new_tokens`; after its stop token a row continues with `pad_id`, and decoding
    ends when every row has stopped. `bottleneck`: run the PHi bottleneck inside the base model
    (True) or the plain base model (False). The draws depend on `seed` only."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    allowed = None if sampling.allowed is None else torch.tensor(sampling.allowed, device=device)
    stop = torch.tensor(sampling.stop, dtype=torch.int64, device=device)
    with _inference(model, bottleneck):
        if isinstance(model.base, GenerationMixin):
            decoder = _CachedDecoder(model.base, prompts, pad_id, device)
        else:
            decoder = _RecomputingDecoder(model.base, prompts, pad_id, device, sampling.max_new_tokens)
        logits = decoder.logits
        finished = torch.zeros(len(prompts), 1, dtype=torch.bool, device=device)
        tokens = []
        for step in range(sampling.max_new_tokens):
            if allowed is None:
                token = sample_top_k(logits, sampling.temperature, sampling.top_k, generator)
            else:
                token = allowed[sample_top_k(logits[:, allowed], sampling.temperature, sampling.top_k, generator)]
            token = token.masked_fill(finished, pad_id)
            tokens.append(token)
            finished |= torch.isin(token, stop)
            if step == sampling.max_new_tokens - 1 or bool(finished.all()):
                break
            logits = decoder.advance(token)
    return torch.cat(tokens, dim=1)
