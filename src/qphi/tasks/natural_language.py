"""The natural-language levels (SPEC §4.3): texts for a frozen pretrained LLM, scored on the assistant turn."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from qphi.tasks.data_files import MANIFEST, data_path, missing, read_json, require_keys

# the file-level names and how the paper's figure labels them
NL_CATEGORIES: dict[str, str] = {
    "predictable": "Trivial",
    "licenses": "Memorized",
    "shuffled": "Random",
    "literature": "Literature",
    "code": "Code",
}


@dataclass(frozen=True)
class NLRecord:
    """One text: `name` is the file stem (e.g. 'code_3'), `level` its group, `category` the paper's label."""

    name: str
    level: str
    user: str
    assistant: str

    @property
    def category(self) -> str:
        return NL_CATEGORIES.get(self.level, self.level)


def _natural_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def load_nl_levels(path: str | os.PathLike | None = None) -> list[NLRecord]:
    """Every `*.json` file of the folder (default: <data>/natural_language_levels) but the fetch's
    SOURCE.json, in natural name order."""
    folder = data_path(path, "natural_language_levels")
    texts = [p for p in folder.glob("*.json") if p.name != MANIFEST] if folder.is_dir() else []
    files = sorted(texts, key=lambda p: _natural_key(p.stem))
    if not files:
        raise missing(
            "natural-language levels",
            folder,
            "a folder of {level, user, assistant} JSON files",
            "natural_language_levels",
        )
    records = []
    for file in files:
        data = require_keys(read_json(file), ("level", "user", "assistant"), f"'{file}'")
        records.append(NLRecord(file.stem, str(data["level"]), str(data["user"]), str(data["assistant"])))
    return records
