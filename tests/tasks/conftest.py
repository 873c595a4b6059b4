"""Shared fixtures of the tasks tests: the real data folder and one set of levels."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qphi.tasks import LevelConfig, PFALevels


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """$QPHI_DATA or <repo>/../shared/data; the test is skipped when it is absent."""
    path = Path(os.environ.get("QPHI_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set QPHI_DATA to run these tests)")
    return path


@pytest.fixture(scope="session")
def levels() -> PFALevels:
    return PFALevels(LevelConfig())
