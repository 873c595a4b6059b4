"""Rendering a page in headless Chromium, offline: the DOM after the page's load event, and what
the page wrote to its console."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0",
]  # fmt: skip

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium is not installed (apt-get install -y chromium)"
)


def render(page: Path, profile: Path) -> tuple[str, list[str]]:
    """(the DOM Chromium built from `page`, its console messages: errors, uncaught exceptions)."""
    result = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout, [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
