"""`qphi train` and `qphi eval` as a user calls them: results on success, one error line and
exit status 2 on a user mistake."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from training.runs import newest, tiny_overrides

from qphi.cli.main import main

OVERRIDES = tiny_overrides("train.steps=2", "train.checkpoint_every=2")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "cpu-quick", *OVERRIDES, "--out", str(run)]) == 0
    return run


def test_train_writes_a_run_directory(trained):
    assert newest(trained).step == 2
    assert (trained / "eval.json").is_file() and (trained / "config.yaml").is_file()


def test_default_run_directory_is_named_after_the_preset_and_bottleneck(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "cpu-quick", *OVERRIDES, "phi.bottleneck=fsq"]) == 0
    assert "run directory: runs/cpu-quick-fsq" in capsys.readouterr().out
    assert (tmp_path / "runs" / "cpu-quick-fsq" / "eval.json").is_file()


def test_eval_prints_the_level_table_and_writes_eval_json(trained, capsys):
    (trained / "eval.json").unlink()
    assert main(["eval", str(trained), "--samples", "3"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((trained / "eval.json").read_text())
    assert summary["step"] == 2 and summary["bottleneck"] == "gumbel"
    assert list(summary["levels"]) == ["mem_seq", "mem_prog", "icll", "random"]
    assert all(level["n_blocks"] == 3 for level in summary["levels"].values())
    lines = out.splitlines()
    assert lines[0].split() == ["level", "PHi", "nats", "PHi", "bits", "NLL", "nats", "tokens"]
    for name, row in zip(summary["levels"], lines[1:5], strict=True):
        assert row.split()[0] == name and float(row.split()[1]) == pytest.approx(
            summary["levels"][name]["phi_mean"], abs=1e-3
        )
    assert f"wrote {trained / 'eval.json'}" in out


@pytest.mark.parametrize("flag", [["--resume"], ["resume=true"]])
def test_resume_continues_a_run(trained, tmp_path, flag):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert main(["train", "cpu-quick", *OVERRIDES, "train.steps=3", "--out", str(run), *flag]) == 0
    assert newest(run).step == 3


def test_overrides_may_follow_options_but_unknown_options_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "cpu-quick", "--out", "x", "--bogus"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
