"""Models by hub ID or path, offline: a Hugging Face cache laid out as `huggingface_hub` lays it
out, holding the tiny Llama, with HF_HUB_OFFLINE on — the real hub client resolves it. A run
records the absolute path or the hub repo at its commit, and loads from any directory."""

from __future__ import annotations

import shutil

import pytest
import yaml

from qphi.cli.main import main
from qphi.errors import QPhiError
from qphi.experiments.llm_run import load_llm_run
from qphi.models.pretrained import HubModel, load_pretrained, pinned_spec, resolve_spec, same_model
from qphi.training import load_run_config, train

from .conftest import mixture_overrides

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, checkpoint):
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--tiny-org--tiny-llama"
    shutil.copytree(checkpoint, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo


def test_a_hub_id_loads_from_the_hugging_face_cache(hub_cache, checkpoint):
    assert resolve_spec("tiny-org/tiny-llama") == HubModel("tiny-org/tiny-llama", None)
    model, local = load_pretrained("tiny-org/tiny-llama"), load_pretrained(checkpoint)
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), local.state_dict().values(), strict=True))
    assert pinned_spec("tiny-org/tiny-llama") == f"tiny-org/tiny-llama@{COMMIT}"
    assert same_model("tiny-org/tiny-llama", f"tiny-org/tiny-llama@{COMMIT}")
    assert not same_model("tiny-org/tiny-llama@abc", f"tiny-org/tiny-llama@{COMMIT}")


def test_a_hub_model_missing_from_the_cache_offline_is_one_line(hub_cache):
    with pytest.raises(QPhiError, match=r"'tiny-org/other' is not in the Hugging Face cache.*HF_HUB_OFFLINE"):
        load_pretrained("tiny-org/other")
    with pytest.raises(QPhiError, match="not found: pass 'smollm2', a Hugging Face hub ID"):
        resolve_spec("./no/such/folder")


def test_a_run_records_the_hub_commit_and_scores_by_hub_id(hub_cache, data, tmp_path, capsys):
    overrides = [*mixture_overrides(hub_cache, data), "model.pretrained=tiny-org/tiny-llama", "train.steps=1"]
    train(load_run_config("cpu-quick", overrides), tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["pretrained"] == f"tiny-org/tiny-llama@{COMMIT}"
    text = tmp_path / "t.txt"
    text.write_text("Once upon a time")
    argv = ["score", "--phi", str(tmp_path / "run"), "--text", str(text), "--out", str(tmp_path / "out")]
    assert main([*argv, "--model", "tiny-org/tiny-llama"]) == 0
    assert main([*argv, "--model", "tiny-org/tiny-llama@1111111111111111111111111111111111111111"]) == 2
    assert "is not the base model of" in capsys.readouterr().err


def test_a_relative_model_path_is_recorded_absolute(checkpoint, data, tmp_path, monkeypatch):
    shutil.copytree(checkpoint, tmp_path / "models" / "tiny")
    monkeypatch.chdir(tmp_path)
    overrides = [*mixture_overrides(checkpoint, data), "model.pretrained=models/tiny", "train.steps=1"]
    train(load_run_config("cpu-quick", overrides), tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["pretrained"] == str(tmp_path / "models" / "tiny")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_llm_run(tmp_path / "run")[0].model.pretrained == str(tmp_path / "models" / "tiny")


def test_model_flag_rescues_a_run_whose_saved_path_no_longer_resolves(run_dir, checkpoint, tmp_path):
    """A run written by an older qphi with a relative path: --model names the model instead."""
    moved = shutil.copytree(run_dir, tmp_path / "run")
    saved = yaml.safe_load((moved / "config.yaml").read_text())
    saved["model"]["pretrained"] = "models/smol"
    (moved / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(QPhiError, match="model 'models/smol'"):
        load_llm_run(moved)
    config, *_ = load_llm_run(moved, str(checkpoint))
    assert config.model.pretrained == str(checkpoint)


def test_every_data_file_is_checked_before_the_model_loads(checkpoint, data, tmp_path, monkeypatch):
    """The evaluation texts are read before training starts, not after the last step."""
    import qphi.training.trainer as trainer

    monkeypatch.setattr(trainer, "build_model", lambda *a: pytest.fail("the model was built before the data check"))
    missing = tmp_path / "no-levels"
    overrides = [*mixture_overrides(checkpoint, data), f"data.mixture.nl_levels_path={missing}", "train.steps=1"]
    with pytest.raises(QPhiError, match=r"natural-language levels not found.*data\.mixture\.nl_levels_path"):
        train(load_run_config("cpu-quick", overrides), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
