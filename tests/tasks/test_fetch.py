"""`qphi data fetch` / `check`, offline: the one download function is replaced by one that serves
small files in the hubs' own formats (parquet as the Hugging Face hub serves it; the PHi paper's
JSON files), so everything after the download — verification, conversion, the manifest, the
rename into place, the loaders — runs for real."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qphi.cli.main import main
from qphi.errors import QPhiError
from qphi.tasks import fetch as fetching
from qphi.tasks.fetch import MATH_SUBJECTS, NL_LEVELS_SHA256, RemoteFile, check, fetch
from qphi.tasks.natural_language import load_nl_levels
from qphi.tasks.reasoning import load_gsm8k, load_math

SHARED_DATA = Path(os.environ.get("QPHI_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
GSM8K = {
    split: [
        {"question": f"Ann has {i} pens and buys 2 more for ${i}. How many pens?", "answer": f"{i}+2=<<{i}+2={i + 2}>>{i + 2}\n#### {i + 2}"}
        for i in range(n)
    ]
    for split, n in (("train", 3), ("test", 2))
}  # fmt: skip
MATH = {
    (subject, split): [
        {"problem": f"{subject} {split} {i}: what is {i}+1?", "level": f"Level {1 + i}", "type": subject.title(),
         "solution": f"It is $\\boxed{{{i + 1}}}$."}
        for i in range(2 if split == "train" else 1)
    ]
    for subject in MATH_SUBJECTS
    for split in ("train", "test")
}  # fmt: skip


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """Serves the fixtures in place of the network; records what was asked for. A hub file is
    declared with its own SHA-256 (as the hub declares a git-LFS object), a GitHub file with none."""
    served = tmp_path / "served"
    served.mkdir()
    files: dict[str, Path] = {}
    for split, rows in GSM8K.items():
        files[f"main/{split}-00000-of-00001.parquet"] = served / f"gsm8k-{split}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), files[f"main/{split}-00000-of-00001.parquet"])
    for (subject, split), rows in MATH.items():
        path = served / f"{subject}-{split}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        files[f"{subject}/{split}-00000-of-00001.parquet"] = path
    for name in NL_LEVELS_SHA256:  # present where the tests that fetch them run (see shared_nl_levels)
        files[f"data/natural_language_levels/{name}.json"] = SHARED_DATA / "natural_language_levels" / f"{name}.json"
    requests: list[RemoteFile] = []

    def download(remote: RemoteFile, into: Path) -> tuple[Path, str | None]:
        requests.append(remote)
        source = files[remote.path]
        if remote.host == "hf":
            return source, hashlib.sha256(source.read_bytes()).hexdigest()
        copy = into / source.name
        copy.write_bytes(source.read_bytes())
        return copy, None

    monkeypatch.setattr(fetching, "download", download)
    monkeypatch.setitem(fetching.RECORDS, "gsm8k", {"train": 3, "test": 2})
    monkeypatch.setitem(fetching.RECORDS, "math", {"train": 2 * len(MATH_SUBJECTS), "test": len(MATH_SUBJECTS)})
    return requests, files


@pytest.fixture
def shared_nl_levels() -> Path:
    """The natural-language levels this project was developed with (the files the pins hash)."""
    path = SHARED_DATA / "natural_language_levels"
    if not path.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set QPHI_DATA to run these tests)")
    return path


def test_gsm8k_is_converted_from_the_hubs_parquet_at_the_pinned_commit(hub, tmp_path):
    requests, _ = hub
    report = fetch("gsm8k", tmp_path / "data")
    assert report.ok and "SHA-256 verified" in report.detail
    assert {(r.repo, r.revision) for r in requests} == {("openai/gsm8k", fetching.GSM8K_REVISION)}
    folder = tmp_path / "data" / "gsm8k"
    for split, rows in GSM8K.items():
        # the loaders' format, one record per line in the hub's order, text unchanged
        assert [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()] == rows
        assert [p.answer for p in load_gsm8k(folder, split)] == [str(int(r["answer"].split("#### ")[1])) for r in rows]
    manifest = json.loads((folder / "SOURCE.json").read_text())
    assert manifest["files"]["train.jsonl"] == hashlib.sha256((folder / "train.jsonl").read_bytes()).hexdigest()
    assert manifest["records"] == {"train": 3, "test": 2}


def test_math_subjects_become_one_file_per_split(hub, tmp_path):
    fetch("math", tmp_path)
    test = load_math(tmp_path / "math", "test")
    assert [p.subject for p in test] == list(MATH_SUBJECTS)  # sorted subjects, each in the mirror's order
    assert [(p.question, p.level, p.answer) for p in test] == [
        (r["problem"], int(r["level"][-1]), "1") for r in (MATH[s, "test"][0] for s in MATH_SUBJECTS)
    ]
    assert len(load_math(tmp_path / "math", "train")) == 2 * len(MATH_SUBJECTS)


def test_nl_levels_are_checked_against_the_pinned_hashes(hub, tmp_path, shared_nl_levels):
    requests, _ = hub
    report = fetch("natural_language_levels", tmp_path)
    assert report.ok and report.detail.startswith("texts 53")
    assert all(r.host == "github" and r.revision == fetching.PHI_REVISION for r in requests)
    assert load_nl_levels(tmp_path / "natural_language_levels") == load_nl_levels(shared_nl_levels)


def test_a_file_that_differs_from_its_pin_is_refused_and_nothing_is_left(hub, tmp_path, shared_nl_levels):
    _, files = hub
    damaged = tmp_path / "code_1.json"
    damaged.write_text(files["data/natural_language_levels/code_1.json"].read_text().replace("import", "imp0rt", 1))
    files["data/natural_language_levels/code_1.json"] = damaged
    with pytest.raises(QPhiError, match="does not have the pinned SHA-256"):
        fetch("natural_language_levels", tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []


def test_a_download_that_differs_from_what_the_hub_declares_is_refused(hub, tmp_path, monkeypatch):
    real = fetching.download
    monkeypatch.setattr(fetching, "download", lambda remote, into: (real(remote, into)[0], "0" * 64))
    with pytest.raises(QPhiError, match="does not have the pinned SHA-256"):
        fetch("gsm8k", tmp_path)
    assert not (tmp_path / "gsm8k").exists()


def test_other_record_counts_than_published_are_refused(hub, tmp_path, monkeypatch):
    monkeypatch.setitem(fetching.RECORDS, "gsm8k", {"train": 7473, "test": 1319})
    with pytest.raises(QPhiError, match="not the published"):
        fetch("gsm8k", tmp_path)
    assert not (tmp_path / "gsm8k").exists()


def test_a_second_fetch_keeps_the_copy_and_a_foreign_folder_is_not_touched(hub, tmp_path):
    requests, _ = hub
    fetch("gsm8k", tmp_path)
    asked = len(requests)
    assert fetch("gsm8k", tmp_path).ok and len(requests) == asked  # nothing downloaded again
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "mine.txt").write_text("keep me")
    with pytest.raises(QPhiError, match="already exists and is not a copy fetched by qphi"):
        fetch("math", tmp_path)
    assert [p.name for p in (tmp_path / "math").iterdir()] == ["mine.txt"]


def test_check_finds_missing_and_changed_datasets(hub, tmp_path, capsys, shared_nl_levels):
    assert main(["data", "fetch", "gsm8k", "nl-levels", "--to", str(tmp_path)]) == 0
    assert main(["data", "check", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert "gsm8k      ok" in out and "nl-levels  ok" in out and "math       PROBLEM  missing" in out
    assert f"run `qphi data fetch math --to {tmp_path}`" in err
    with (tmp_path / "gsm8k" / "test.jsonl").open("a") as f:
        f.write(json.dumps({"question": "extra", "answer": "#### 1"}) + "\n")
    assert not check(tmp_path / "gsm8k", "gsm8k").ok
    assert "test.jsonl changed since it was fetched" in check(tmp_path / "gsm8k", "gsm8k").detail


def test_fetch_goes_to_the_default_data_folder(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("QPHI_DATA", str(tmp_path / "env"))
    assert main(["data", "fetch", "gsm8k"]) == 0
    assert len(load_gsm8k(split="train")) == 3  # the loaders look there too


def test_the_real_hub_download_says_so_when_offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    remote = RemoteFile("hf", "openai/gsm8k", fetching.GSM8K_REVISION, "main/test-00000-of-00001.parquet")
    with pytest.raises(QPhiError, match=r"cannot download .*openai/gsm8k.*HF_HUB_OFFLINE"):
        fetching.download(remote, tmp_path)
