"""Whole-number options, checked when the command line is read: a count of 0 or a negative one
would otherwise mean something else further in (`--max-tokens -2` drops the last two tokens)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable


def at_least(low: int) -> Callable[[str], int]:
    """An argparse `type`: a whole number in decimal digits, `low` or more."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*[-+]?[0-9]+\s*", text):
            raise argparse.ArgumentTypeError(
                f"expected a whole number in decimal digits, got {text!r}: write it like {max(low, 1) * 16}"
            )
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}: pass {low} or more")
        return value

    return parse
