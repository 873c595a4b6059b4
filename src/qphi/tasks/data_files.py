"""Locating and reading the real data files, with one-line errors that say how to fix a bad path."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qphi.errors import QPhiError

DATA_ENV = "QPHI_DATA"
MANIFEST = "SOURCE.json"  # written by `qphi data fetch` into each dataset folder: where it came from

# dataset folder → (`qphi data fetch` name, the config key that points at it)
DATASETS: dict[str, tuple[str, str]] = {
    "gsm8k": ("gsm8k", "data.mixture.gsm8k_path"),
    "math": ("math", "data.mixture.math_path"),
    "natural_language_levels": ("nl-levels", "data.mixture.nl_levels_path"),
}


def default_data_dir() -> Path:
    """$QPHI_DATA, else the platform's user data folder (~/.local/share/qphi on Linux), where
    `qphi data fetch` puts the datasets."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    from platformdirs import user_data_path

    return user_data_path("qphi")


def _development_data_dir() -> Path | None:
    """`shared/data` beside a source checkout of qphi (<repo>/../shared/data), if there is one."""
    repo = Path(__file__).resolve().parents[3]
    folder = repo.parent / "shared" / "data"
    return folder if (repo / "pyproject.toml").is_file() and folder.is_dir() else None


def data_path(path: str | os.PathLike | None, default_name: str) -> Path:
    """`path` if given, else the dataset folder `default_name` in the default data folder — or,
    without $QPHI_DATA and while that folder lacks it, in a source checkout's ../shared/data."""
    if path is not None:
        return Path(path).expanduser()
    fetched = default_data_dir() / default_name
    development = _development_data_dir()
    if not fetched.exists() and not os.environ.get(DATA_ENV) and development and (development / default_name).exists():
        return development / default_name
    return fetched


def missing(what: str, path: Path, expected: str, dataset: str) -> QPhiError:
    """The error for a dataset that is not where a command looks: where it comes from and every
    way to point at a copy."""
    fetch, key = DATASETS[dataset]
    return QPhiError(
        f"{what} not found at '{path}': download it with `qphi data fetch {fetch}` (into {default_data_dir()}; "
        f"--to DIR and {DATA_ENV}=DIR for another folder), or give the path of {expected} "
        f"(the command's --data option, or {key} in the config)"
    )


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise QPhiError(f"cannot read '{path}' ({e.strerror}): check that it is a readable file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise QPhiError(f"'{path}' is not valid UTF-8 JSON ({e}): replace it with an intact copy") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-empty line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise QPhiError(f"cannot read '{path}' ({e.strerror}): check that it is a readable file") from None
    except UnicodeDecodeError:
        raise QPhiError(f"'{path}' is not UTF-8 text: replace it with an intact copy") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise QPhiError(f"'{path}' line {number} is not valid JSON ({e.msg}): fix or remove that line") from None
        if not isinstance(record, dict):
            raise QPhiError(f"'{path}' line {number} is not a JSON object: each line must be one {{...}} record")
        records.append(record)
    return records


def require_keys(record: Any, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    """`record` if it is a mapping holding every key, else a `QPhiError` naming what is missing."""
    if not isinstance(record, dict):
        raise QPhiError(f"{where} is not a JSON object with keys {', '.join(keys)}")
    absent = [k for k in keys if k not in record]
    if absent:
        raise QPhiError(f"{where} lacks the key(s) {', '.join(absent)}: is this the right dataset?")
    return record
