"""Result files: strict JSON out, typed results back in, one-line errors for files qphi did not write."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from qphi.errors import QPhiError
from qphi.io import FloatOrNaN, append_jsonl, read_json, read_jsonl, write_json, write_jsonl


@dataclass
class Level:
    phi: FloatOrNaN
    per_stage: list[FloatOrNaN]


@dataclass
class Result:
    name: str
    levels: dict[str, Level]
    shape: tuple[int, int] = (2, 3)
    path: Path = Path("runs/x")
    notes: list[str] = field(default_factory=list)


def test_typed_result_round_trips_with_non_finite_values_as_null(tmp_path: Path) -> None:
    result = Result("gumbel", {"icll": Level(math.nan, [1.5, math.inf]), "random": Level(0.25, [])})
    with pytest.warns(UserWarning, match=r"levels\.icll\.phi, levels\.icll\.per_stage\[1\]"):
        write_json(tmp_path / "r.json", result)
    text = (tmp_path / "r.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["levels"]["icll"] == {"phi": None, "per_stage": [1.5, None]}
    back = read_json(tmp_path / "r.json", Result)
    assert math.isnan(back.levels["icll"].phi) and back.levels["icll"].per_stage[0] == 1.5
    assert back.levels["random"] == result.levels["random"]
    assert back.shape == (2, 3) and back.path == Path("runs/x")


def test_numpy_and_torch_values_are_written_as_numbers(tmp_path: Path) -> None:
    write_json(tmp_path / "n.json", {"a": np.int64(3), "b": np.arange(3), "c": torch.tensor([0.5]), "d": np.float32(2)})
    assert json.loads((tmp_path / "n.json").read_text()) == {"a": 3, "b": [0, 1, 2], "c": [0.5], "d": 2.0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        ('{"name": "x", "levels": {"a": {"phi": "high", "per_stage": []}}}', "levels.a.phi"),
        ("[1, 2]", "does not hold what qphi wrote"),
    ],
)
def test_foreign_files_are_one_line_errors(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(QPhiError, match=message) as info:
        read_json(path, Result)
    assert "\n" not in str(info.value)


def test_a_folder_or_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(QPhiError, match="is a folder"):
        read_json(tmp_path / "dir.json", Result)
    with pytest.raises(QPhiError, match="does not exist"):
        read_json(tmp_path / "missing.json", Result)


@dataclass(frozen=True)
class Line:
    id: str
    value: float | None


def test_jsonl_lines_are_typed_and_a_torn_tail_is_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    append_jsonl(path, Line("a", 1.5))
    append_jsonl(path, Line("b", None))
    with open(path, "a") as f:
        f.write('{"id": "c", "va')  # a kill mid-write
    assert read_jsonl(path, Line) == [Line("a", 1.5), Line("b", None)]
    append_jsonl(path, Line("c", 2.0))
    assert path.read_text().splitlines() == [
        '{"id": "a", "value": 1.5}',
        '{"id": "b", "value": null}',
        '{"id": "c", "value": 2.0}',
    ]
    path.write_text('{"id": "a", "value": "high"}\n{"id": "b", "value": 1}\n')
    with pytest.raises(QPhiError, match=r"line 1 does not hold what qphi wrote there \(value"):
        read_jsonl(path, Line)
    path.write_text('{"id": \n{"id": "b", "value": 1}\n')
    with pytest.raises(QPhiError, match="line 1 is not valid JSON"):
        read_jsonl(path, Line)


def test_jsonl_files_are_strict_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with pytest.warns(UserWarning, match=r"\[1\]\.value"):
        write_jsonl(path, [Line("ä", 0.5), Line("b", math.nan)])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ['{"id": "ä", "value": 0.5}', '{"id": "b", "value": null}']
    assert read_jsonl(path, Line) == [Line("ä", 0.5), Line("b", None)]


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_files_and_folders_get_the_users_umask(tmp_path: Path, umask: int) -> None:
    """What qphi writes is as readable as what `open` and `mkdir` make under the same umask."""
    from qphi.training.run_dir import save_checkpoint

    plain_file, plain_dir = tmp_path / "plain.txt", tmp_path / "plain"
    plain_file.write_text("x")
    plain_dir.mkdir()
    write_json(tmp_path / "out" / "r.json", {"a": 1})
    folder = save_checkpoint(tmp_path / "run", 3, {"w": torch.zeros(2)}, {"state": {}, "param_groups": []}, keep=1)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(plain_file) == 0o666 & ~umask and mode(plain_dir) == 0o777 & ~umask
    for written in (tmp_path / "out" / "r.json", folder / "model.safetensors", folder / "state.json"):
        assert mode(written) == mode(plain_file), written
    assert mode(folder) == mode(plain_dir)
