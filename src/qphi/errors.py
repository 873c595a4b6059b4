"""User-facing errors.

A `QPhiError` is a mistake the user can fix (a bad config value, a missing file, a
checkpoint from another run). The CLI prints its message on one line and exits with a
non-zero status instead of a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class QPhiError(Exception):
    """An error caused by the user's input; the message names the problem and the fix."""


def closest(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for a misspelt name, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""
