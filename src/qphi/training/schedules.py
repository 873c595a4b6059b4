"""Schedules over training steps: learning rate and the rate warm-up (bottlenecks schedule their own temperature)."""

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


def linear_warmup(step: int, warmup: int) -> float:
    """A factor rising linearly from 0 to 1 over `warmup` steps (1 throughout when warmup = 0)."""
    return 1.0 if warmup == 0 else min(1.0, step / warmup)
