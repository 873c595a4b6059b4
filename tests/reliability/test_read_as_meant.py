"""Inputs that are valid but used to be read as something else than their author meant.
(Inputs that are refused are in test_bad_inputs.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from qphi.configuration import load_yaml
from qphi.experiments.score import read_inputs
from qphi.training import load_run_config


@pytest.mark.parametrize(
    ("text", "value"),
    [("010", 10), ("-007", -7), ("0", 0), ("1_000", 1000), ("0x10", 16), ("'010'", "010"), ("0o10", "0o10")],
)
def test_integers_with_leading_zeros_are_decimal(text, value):
    """YAML 1.1 reads 010 as octal 8; qphi reads it as written (0x… stays hexadecimal)."""
    assert load_yaml(f"a: {text}") == {"a": value}


def test_leading_zeros_in_a_config_file_and_an_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  steps: 010\n")
    assert load_run_config(path).train.steps == 10
    assert load_run_config("cpu-quick", ["train.steps=010"]).train.steps == 10


def test_an_anchor_without_an_alias_is_plain_yaml():
    assert load_yaml("a: &name 3\nb: 4") == {"a": 3, "b": 4}


def test_a_byte_order_mark_is_not_scored(tmp_path):
    """Editors on Windows start UTF-8 files with U+FEFF; it is not part of the text."""
    plain, marked = Path(tmp_path / "plain.txt"), Path(tmp_path / "marked.txt")
    plain.write_text("Once upon a time", encoding="utf-8")
    marked.write_text("Once upon a time", encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_inputs(marked, None)[0] == read_inputs(plain, None)[0] == ["Once upon a time"]
