"""Token-level PHi and next-token loss of texts under a pretrained LM with a PHi layer.

Record t of a text pairs the PHi of the latent computed after reading token t with the
next-token loss at t, −ln p(token_{t+1} | tokens_≤t) — the same pairing as the training
objective and the level evaluations. The last token has no next token (NaN loss).

A text is either plain (scored on its non-special tokens after the first) or a `Chat`
(rendered with the tokenizer's chat template and scored on the assistant's content only).
The first token of a sequence is never scored: it has no past, and in models that add no
BOS it serves as the attention sink, whose hidden state is an outlier (SmolLM2's gives PHi
thousands of times the typical value). A text longer
than the model's context is refused unless `max_tokens` truncates it: windows would restart
the learned prior mid-text and change what PHi measures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from qphi.errors import QPhiError
from qphi.io import FloatOrNaN
from qphi.models import PHiModel
from qphi.models.splice import IGNORE_INDEX
from qphi.tasks.chat import encode_chat


@dataclass(frozen=True)
class Chat:
    """A user turn and the assistant turn to score (optionally a system turn)."""

    user: str
    assistant: str
    system: str | None = None


@dataclass
class Encoded:
    """A tokenised text: input_ids (N,), mask (N,) bool of the scored tokens, pieces: each token's text."""

    input_ids: Tensor
    mask: Tensor
    pieces: list[str]


@dataclass(frozen=True)
class ScoreSummary:
    """Token-pooled means over the scored tokens of one or more texts: PHi in nats, bits and nats
    per latent dimension, per stage (Q,), the next-token loss with the PHi layer and, when it was
    scored, the plain base model's (the loss means skip the NaN of a text's last token)."""

    phi_mean: float
    phi_bits_mean: float
    phi_per_dim_mean: float
    phi_per_stage: list[float]
    nll_mean: FloatOrNaN
    n_tokens: int
    base_nll_mean: FloatOrNaN | None = None


@dataclass
class TokenScores:
    """Scores of one text's N tokens; Q = stages of the latent (1 for the continuous bottleneck)."""

    token_ids: np.ndarray  # (N,) int
    pieces: list[str]  # token texts; their concatenation is the tokenised text
    mask: np.ndarray  # (N,) bool: scored tokens
    phi: np.ndarray  # (N,) nats
    phi_per_stage: np.ndarray  # (Q, N) nats
    nll: np.ndarray  # (N,) nats, −ln p(token_{t+1} | tokens_≤t); NaN at the last token
    base_nll: np.ndarray | None  # (N,) the same with the PHi layer bypassed (the plain base model)
    latent_dim: int  # width of the latent, to report PHi per dimension

    @property
    def surprisal(self) -> np.ndarray:
        """(N,) nats, −ln p(token_t | tokens_<t): the next-token loss moved onto the token it
        scores (NaN at the first token, which has no past)."""
        return np.concatenate([[math.nan], self.nll[:-1]])

    def summary(self) -> ScoreSummary:
        return summarize([self])


def summarize(scores: Sequence[TokenScores]) -> ScoreSummary:
    """Token-pooled means over the scored tokens of several texts."""
    phi = np.concatenate([s.phi[s.mask] for s in scores])
    stages = np.concatenate([s.phi_per_stage[:, s.mask] for s in scores], axis=1)
    nll = np.concatenate([s.nll[s.mask] for s in scores])
    base = None
    if all(s.base_nll is not None for s in scores):
        base = float(np.nanmean(np.concatenate([s.base_nll[s.mask] for s in scores])))
    return ScoreSummary(
        phi_mean=float(phi.mean()),
        phi_bits_mean=float(phi.mean() / math.log(2)),
        phi_per_dim_mean=float(phi.mean() / scores[0].latent_dim),
        phi_per_stage=stages.mean(1).tolist(),
        nll_mean=float(np.nanmean(nll)),
        n_tokens=int(phi.size),
        base_nll_mean=base,
    )


def _pieces(text: str, offsets: Tensor) -> list[str]:
    """Each token's text, gaps attached to the token before, so the pieces concatenate to `text`.
    Tokens that share a character (a multi-byte character split over tokens) give it to the last."""
    starts = offsets[:, 0].tolist()
    bounds = [*starts[1:], len(text)]
    pieces = [text[s:e] for s, e in zip(starts, bounds, strict=True)]
    pieces[0] = text[: bounds[0]]
    return pieces


def encode(tokenizer, item: str | Chat) -> Encoded:
    """Token ids, scored-token mask and token texts of a plain text or a chat."""
    if isinstance(item, Chat):
        if not item.assistant.strip():
            raise QPhiError("a chat's assistant turn is empty: give it the text to score")
        chat = encode_chat(tokenizer, item.user, item.assistant, system=item.system)
        return Encoded(chat.input_ids, chat.assistant_mask, _pieces(chat.text, chat.offsets))
    if not item.strip():
        raise QPhiError("a text to score is empty: give it some text")
    encoded = tokenizer(item, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids = torch.tensor(encoded["input_ids"], dtype=torch.int64)
    offsets = torch.tensor(encoded["offset_mapping"], dtype=torch.int64).reshape(-1, 2)
    mask = torch.tensor(encoded["special_tokens_mask"], dtype=torch.bool).logical_not()
    mask[0] = False  # no past: without a BOS it is the model's attention sink, with outlier hidden states
    return Encoded(ids, mask, _pieces(item, offsets))


def context_length(model: PHiModel) -> int:
    return int(getattr(model.base.config, "max_position_embeddings", 0) or 1 << 30)


def fit_context(encoded: Encoded, limit: int, max_tokens: int | None) -> Encoded:
    """The text cut after its first `max_tokens` scored tokens (plus the token the last of them
    predicts); refused if it is (still) longer than the model's context `limit`."""
    if max_tokens is not None and max_tokens < 1:  # 0 would index from the end and keep everything
        raise QPhiError(f"max_tokens must be at least 1, got {max_tokens}: pass 1 or more (or None for whole texts)")
    scored = encoded.mask.nonzero().flatten()
    if max_tokens is not None and scored.numel() > max_tokens:
        last = int(scored[max_tokens - 1])
        mask = encoded.mask[: last + 2].clone()
        mask[last + 1 :] = False
        encoded = Encoded(encoded.input_ids[: last + 2], mask, encoded.pieces[: last + 2])
    if encoded.input_ids.numel() > limit:
        raise QPhiError(
            f"a text has {encoded.input_ids.numel()} tokens, more than the model's context of {limit}: "
            "split it, or score only its first tokens with max_tokens (--max-tokens)"
        )
    return encoded


def _right_padded(items: Sequence[Encoded], pad_id: int) -> tuple[Tensor, Tensor]:
    """input_ids (B, T) and padding_mask (B, T) of texts padded on the right."""
    length = max(e.input_ids.numel() for e in items)
    ids = torch.full((len(items), length), pad_id, dtype=torch.int64)
    padding = torch.zeros((len(items), length), dtype=torch.bool)
    for i, e in enumerate(items):
        ids[i, : e.input_ids.numel()] = e.input_ids
        padding[i, : e.input_ids.numel()] = True
    return ids, padding


def next_token_nll(logits: Tensor, input_ids: Tensor, padding_mask: Tensor) -> Tensor:
    """−ln p(x_{t+1} | x_≤t) per position (B, T), NaN where there is no next token."""
    targets = torch.full_like(input_ids, IGNORE_INDEX)
    targets[:, :-1] = input_ids[:, 1:].masked_fill(~padding_mask[:, 1:], IGNORE_INDEX)
    nll = torch.nn.functional.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    ).view_as(targets)
    return nll.masked_fill(targets == IGNORE_INDEX, math.nan)


@torch.no_grad()
def score_encoded(
    model: PHiModel,
    items: Sequence[Encoded],
    batch_size: int = 4,
    base_nll: bool = True,
    progress: bool = False,
) -> list[TokenScores]:
    """Score tokenised texts in batches of similar length (right padding, evaluation mode)."""
    device = next(model.parameters()).device
    latent_dim = model.phi.config.code_dim
    was_training = model.training
    model.eval()
    order = sorted(range(len(items)), key=lambda i: items[i].input_ids.numel())
    results: list[TokenScores | None] = [None] * len(items)
    try:
        for first in tqdm(range(0, len(order), batch_size), desc="scoring", disable=not progress, leave=False):
            chunk = order[first : first + batch_size]
            ids, padding = _right_padded([items[i] for i in chunk], pad_id=0)
            ids, padding = ids.to(device), padding.to(device)
            out = model(input_ids=ids, padding_mask=padding)
            nll = out.nll.float().masked_fill(~out.target_mask, math.nan).cpu().numpy()
            plain = None
            if base_nll:
                logits = model.base(input_ids=ids, attention_mask=padding.long(), use_cache=False).logits
                plain = next_token_nll(logits, ids, padding).cpu().numpy()
            stages = out.phi.phi_per_stage.float().cpu().numpy()
            for row, index in enumerate(chunk):
                e = items[index]
                n = e.input_ids.numel()
                results[index] = TokenScores(
                    token_ids=e.input_ids.numpy(),
                    pieces=e.pieces,
                    mask=e.mask.numpy(),
                    phi=stages[:, row, :n].sum(0),
                    phi_per_stage=stages[:, row, :n],
                    nll=nll[row, :n],
                    base_nll=None if plain is None else plain[row, :n],
                    latent_dim=latent_dim,
                )
    finally:
        model.train(was_training)
    return results


def score_texts(
    model: PHiModel,
    tokenizer,
    texts: Sequence[str | Chat],
    max_tokens: int | None = None,
    batch_size: int = 4,
    base_nll: bool = True,
    progress: bool = False,
) -> list[TokenScores]:
    """PHi and next-token loss per token of each text (plain strings or `Chat`s)."""
    limit = context_length(model)
    items = [fit_context(encode(tokenizer, t), limit, max_tokens) for t in texts]
    return score_encoded(model, items, batch_size=batch_size, base_nll=base_nll, progress=progress)
