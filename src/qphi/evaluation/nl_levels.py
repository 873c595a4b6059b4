"""The natural-language levels with a frozen pretrained LLM (SPEC §4.3, §5.5).

Each text is a chat (the level's user prompt, the text as the assistant turn), scored on
the assistant's tokens. Per level (the paper's labels: Trivial, Memorized, Random,
Literature, Code) the PHi and next-token loss are pooled over tokens, beside the next-token
loss of the base model with the PHi layer bypassed — which shows how well the layer
preserves the model's behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qphi.evaluation.scoring import Chat, ScoreSummary, score_texts, summarize
from qphi.models import PHiModel
from qphi.tasks.natural_language import NLRecord


@dataclass(frozen=True, kw_only=True)
class LevelSummary(ScoreSummary):
    """A level's tokens pooled over its texts."""

    n_texts: int


@dataclass(frozen=True, kw_only=True)
class TextSummary(ScoreSummary):
    """One text's tokens: `name` its file, `level` the paper's label of its category."""

    name: str
    level: str


@dataclass(frozen=True)
class NLLevels:
    levels: dict[str, LevelSummary]  # by the paper's label, in the order the texts come
    texts: list[TextSummary]
    max_tokens: int | None  # scored tokens per text (None: whole texts)


def evaluate_nl_levels(
    model: PHiModel,
    tokenizer,
    records: Sequence[NLRecord],
    max_tokens: int | None = None,
    batch_size: int = 2,
    progress: bool = False,
) -> NLLevels:
    """PHi and next-token loss (with and without the PHi layer) per level and per text.
    `max_tokens` truncates each chat (None: whole texts)."""
    chats = [Chat(r.user, r.assistant) for r in records]
    scores = score_texts(model, tokenizer, chats, max_tokens=max_tokens, batch_size=batch_size, progress=progress)
    texts = [
        TextSummary(**vars(s.summary()), name=r.name, level=r.category) for r, s in zip(records, scores, strict=True)
    ]
    levels = {}
    for category in dict.fromkeys(r.category for r in records):
        members = [s for r, s in zip(records, scores, strict=True) if r.category == category]
        levels[category] = LevelSummary(**vars(summarize(members)), n_texts=len(members))
    return NLLevels(levels=levels, texts=texts, max_tokens=max_tokens)
