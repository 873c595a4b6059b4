"""Locating and reading the real data files, with one-line errors that say how to fix a bad path."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qphi.errors import QPhiError

DATA_ENV = "QPHI_DATA"


def default_data_dir() -> Path:
    """$QPHI_DATA, else `shared/data` beside the repository (<repo>/../shared/data)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def data_path(path: str | os.PathLike | None, default_name: str) -> Path:
    """`path` if given, else the dataset folder `default_name` under the default data folder."""
    return Path(path) if path is not None else default_data_dir() / default_name


def missing(what: str, path: Path, expected: str) -> QPhiError:
    return QPhiError(
        f"{what} not found at '{path}': pass the path of {expected}, or set {DATA_ENV} to the folder holding it"
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
