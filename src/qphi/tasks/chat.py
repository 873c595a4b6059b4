"""Chat-formatted examples for pretrained models: the tokenizer's own chat template, user turns masked.

The text is rendered with `apply_chat_template`, so any model's format works; the assistant
content is then located in the rendered text and the tokens whose character span overlaps it
form the mask. Role headers, end-of-turn tokens and the user turn are never in the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qphi.errors import QPhiError

# the user turn of the PFA in-context-learning examples in the LLM training mixture (SPEC §3)
PFA_CHAT_PROMPT = (
    "Generate examples from a formal language defined by a probabilistic finite automaton. "
    "As tokens, use any of the lowercase letters of the alphabet."
)


@dataclass
class ChatEncoding:
    """input_ids (L,) int64; assistant_mask (L,) bool, True on tokens of the assistant's content;
    text: the rendered chat; offsets (L, 2) int64: each token's character span in `text`."""

    input_ids: Tensor
    assistant_mask: Tensor
    text: str
    offsets: Tensor


def _content_span(text: str, prompt: str, content: str) -> tuple[int, int]:
    """Character span of the assistant content in the rendered chat `text`.

    Searched after the part shared with the generation prompt (so a user turn quoting the
    answer is not taken for it), else at the last occurrence; templates that trim the
    content are handled by also trying the stripped content.
    """
    shared = next(
        (i for i, (a, b) in enumerate(zip(prompt, text, strict=False)) if a != b),
        min(len(prompt), len(text)),
    )
    for candidate in dict.fromkeys([content, content.strip()]):
        start = text.find(candidate, shared)
        if start < 0:
            start = text.rfind(candidate)
        if start >= 0:
            return start, start + len(candidate)
    raise QPhiError(
        "the chat template rewrites the assistant text, so its tokens cannot be located: use another template"
    )


def encode_chat(tokenizer: Any, user: str, assistant: str, system: str | None = None) -> ChatEncoding:
    """Token ids of a (system,) user, assistant exchange and the mask of the assistant's content tokens.

    `tokenizer` is a fast Hugging Face tokenizer with a chat template. Special tokens come
    from the template only (none are added on top, as in `apply_chat_template`).
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise QPhiError(
            "the tokenizer has no chat template: use an instruct model's tokenizer or set tokenizer.chat_template"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise QPhiError("encode_chat needs a fast tokenizer (character offsets): load it with use_fast=True")
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": user})
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    messages.append({"role": "assistant", "content": assistant})
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    start, end = _content_span(text, prompt, assistant)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = torch.tensor(encoded["offset_mapping"], dtype=torch.int64).reshape(-1, 2)
    mask = (offsets[:, 0] < end) & (offsets[:, 1] > start) & (offsets[:, 1] > offsets[:, 0])
    return ChatEncoding(torch.tensor(encoded["input_ids"], dtype=torch.int64), mask, text, offsets)
