"""The natural-language levels with a frozen pretrained LLM (SPEC §4.3, §5.5).

Each text is a chat (the level's user prompt, the text as the assistant turn), scored on
the assistant's tokens. Per level (the paper's labels: Trivial, Memorized, Random,
Literature, Code) the PHi and next-token loss are pooled over tokens, beside the next-token
loss of the base model with the PHi layer bypassed — which shows how well the layer
preserves the model's behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qphi.evaluation.scoring import Chat, score_texts, summarize
from qphi.io import write_json
from qphi.models import PHiModel
from qphi.reports.plots import grouped_bars, phi_vs_nll
from qphi.tasks.natural_language import NLRecord


def evaluate_nl_levels(
    model: PHiModel,
    tokenizer,
    records: Sequence[NLRecord],
    max_tokens: int | None = None,
    batch_size: int = 2,
    progress: bool = False,
) -> dict[str, Any]:
    """{"levels": {category: summary}, "texts": [per-text summary]}; a summary holds phi_mean
    (nats), phi_bits_mean, phi_per_dim_mean, phi_per_stage, nll_mean, base_nll_mean, n_tokens
    (levels also n_texts). `max_tokens` truncates each chat (None: whole texts)."""
    chats = [Chat(r.user, r.assistant) for r in records]
    scores = score_texts(model, tokenizer, chats, max_tokens=max_tokens, batch_size=batch_size, progress=progress)
    texts = [{"name": r.name, "level": r.category, **s.summary()} for r, s in zip(records, scores, strict=True)]
    levels = {}
    for category in dict.fromkeys(r.category for r in records):
        members = [s for r, s in zip(records, scores, strict=True) if r.category == category]
        levels[category] = {**summarize(members), "n_texts": len(members)}
    return {"levels": levels, "texts": texts, "max_tokens": max_tokens}


def write_nl_report(summary: dict[str, Any], out: str | os.PathLike, title: str = "") -> list[Path]:
    """nl_levels.json, the Figure-1-style plot (PHi against next-token loss) and the bars of
    the next-token loss with and without the PHi layer."""
    out = Path(out)
    levels = summary["levels"]
    paths = [write_json(out / "nl_levels.json", summary)]
    phi_vs_nll(
        out / "nl_levels.png",
        {"PHi layer": {name: (v["nll_mean"], v["phi_mean"]) for name, v in levels.items()}},
        title=title,
    )
    names = list(levels)
    grouped_bars(
        out / "nl_levels_nll.png",
        names,
        {
            "with PHi layer": ([levels[n]["nll_mean"] for n in names], [0.0] * len(names)),
            "base model": ([levels[n]["base_nll_mean"] for n in names], [0.0] * len(names)),
        },
        ylabel="next-token loss (nats/token)",
        title=title,
    )
    return [*paths, out / "nl_levels.png", out / "nl_levels_nll.png"]
