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


def test_version_and_help_do_not_import_torch():
    """`qphi --help` answers in well under a second because it imports no command's dependencies."""
    import subprocess
    import sys

    from qphi import __version__

    code = "import sys; from qphi.cli.main import main; main(sys.argv[1:])"
    for flag in ("--version", "--help"):
        probe = f"{code}\nimport sys as s; assert 'torch' not in s.modules"
        done = subprocess.run([sys.executable, "-c", probe, flag], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True)
    assert done.stdout.strip() == f"qphi {__version__}"
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, qphi.cli.main; print('torch' in sys.modules, 'transformers' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert loaded.stdout.split() == ["False", "False"]


def test_presets_lists_every_preset_with_its_purpose_and_cost(capsys):
    from qphi.presets import CATALOG

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for preset in CATALOG.values():
        assert preset.name in out and preset.purpose in out and preset.cost in out
    assert "Q4_1 GGUF, dequantised" in out


def test_config_show_prints_the_resolved_config_as_a_usable_file(tmp_path, capsys):
    from qphi.training import load_run_config

    assert main(["config", "show", "cpu", "phi.bottleneck=vq", "train.steps=7"]) == 0
    (tmp_path / "shown.yaml").write_text(capsys.readouterr().out)
    expected = load_run_config("cpu", ["phi.bottleneck=vq", "train.steps=7"])
    assert load_run_config(tmp_path / "shown.yaml") == expected
    assert expected.phi.bottleneck.vq.dead_code_threshold == 0  # the preset's VQ settings came along


def test_an_override_typo_is_reported_against_the_override(capsys):
    assert main(["config", "show", "cpu", "train.stpes=3"]) == 2
    err = capsys.readouterr().err
    assert "override 'train.stpes=3': unknown key 'train.stpes' (did you mean 'steps'?)" in err
    assert "cpu.yaml" not in err


def test_help_texts_name_every_preset_and_the_defaults(capsys):
    from qphi.presets import PFA_PRESETS, PRESETS

    for argv in (["train", "--help"], ["reproduce", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
    train_help, reproduce_help = capsys.readouterr().out.split("usage: qphi reproduce")
    assert all(p in train_help for p in PRESETS)
    assert "(default: cpu-quick)" in reproduce_help and "(default: 64)" in reproduce_help
    assert all(p in reproduce_help for p in PFA_PRESETS) and "smollm2-cpu" not in reproduce_help


@pytest.mark.parametrize("command", ["reproduce", "sweep"])
def test_reproduce_and_sweep_refuse_the_llm_presets(command, tmp_path, capsys):
    extra = ["--bottleneck", "vq", "--sizes", "16"] if command == "sweep" else []
    with pytest.raises(SystemExit) as exit_:
        main([command, "--preset", "smollm2-cpu", "--out", str(tmp_path / "out"), *extra])
    assert exit_.value.code == 2 and "invalid choice: 'smollm2-cpu'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
