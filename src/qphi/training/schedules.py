"""The learning-rate schedule (the PHi layer schedules its own temperature and rate warm-up: `set_progress`)."""

from __future__ import annotations

import math


def learning_rate(step: int, total: int, base: float, warmup: int, kind: str, min_ratio: float) -> float:
    """Linear warm-up to `base`, then constant or cosine decay to `min_ratio · base`."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if kind == "constant":
        return base
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
