"""Checkpoints that are damaged, foreign, or pickled are refused with one clear line, and a
refused resume leaves the run directory exactly as it was (the good checkpoint included)."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest

from qphi.errors import QPhiError
from qphi.training import checkpoint, load_run, train
from qphi.training.run_dir import latest
from qphi.training.trainer import Trainer

from .runs import assert_same_tensors, file_digests, newest, tiny_config, weights

SCHEDULE = ("train.steps=6", "train.checkpoint_every=3", "train.log_every=1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished run with checkpoints at steps 3 and 6; tests copy it before touching it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(tiny_config(*SCHEDULE), run)
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def latest_file(run: Path, name: str) -> Path:
    return latest(run) / name


def refused_resume(run: Path, *overrides: str, match: str) -> str:
    """Resume must fail with a one-line QPhiError and leave every file of the run untouched."""
    before = file_digests(run)
    with pytest.raises(QPhiError, match=match) as error:
        train(tiny_config(*SCHEDULE, *overrides), run, resume=True)
    assert "\n" not in str(error.value)
    assert file_digests(run) == before
    return str(error.value)


def test_the_run_keeps_its_newest_checkpoints(run):
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-0000003", "step-0000006"]
    assert newest(run).step == 6


def test_a_truncated_state_file_is_refused(run):
    state = latest_file(run, "state.json")
    state.write_text(state.read_text()[:40])
    refused_resume(run, match="cannot be read")


def test_a_checkpoint_without_its_state_file_is_incomplete(run):
    latest_file(run, "state.json").unlink()
    refused_resume(run, match="incomplete")


class CreatesMarker:
    """Unpickling this object creates a file: the proof that a pickle was executed."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_in_place_of_the_weights_is_never_unpickled(run, tmp_path):
    marker = tmp_path / "unpickled"
    target = latest_file(run, "model.safetensors")
    target.write_bytes(pickle.dumps(CreatesMarker(marker)))
    state_path = latest_file(run, "state.json")
    state = json.loads(state_path.read_text())  # a valid hash, so the loader really parses the file
    state["files"]["model.safetensors"] = hashlib.sha256(target.read_bytes()).hexdigest()
    state_path.write_text(json.dumps(state))
    refused_resume(run, match="cannot be read")
    with pytest.raises(QPhiError):
        load_run(run)
    assert not marker.exists()


def test_a_pickled_checkpoint_folder_is_refused_by_name(run, tmp_path):
    marker = tmp_path / "unpickled"
    folder = run / "checkpoints" / "step-0000009"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(pickle.dumps(CreatesMarker(marker)))
    (run / "checkpoints" / "latest").write_text("step-0000009\n")
    refused_resume(run, match="pickle files, which qphi never loads")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("override", "key"),
    [("phi.bottleneck=vq", "phi.bottleneck"), ("model.d_model=64", "model.d_model"), ("optim.lr=0.1", "optim.lr")],
)
def test_resume_with_a_different_config_is_refused(run, override, key):
    message = refused_resume(run, override, match="holds a run with a different config")
    assert key in message


def test_a_failed_save_leaves_the_previous_checkpoint_in_place(run, monkeypatch):
    """A crash while the next checkpoint is written (here: in its state file) leaves no partial
    checkpoint behind, `latest` still names the previous one, and resume continues from it."""
    reference = weights(run)
    shutil.rmtree(run / "checkpoints" / "step-0000006")
    (run / "checkpoints" / "latest").write_text("step-0000003\n")
    original = checkpoint.write_json

    def fail(path, obj):
        if obj.get("step") == 6:
            raise OSError("simulated I/O failure")
        return original(path, obj)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "write_json", fail)
        with pytest.raises(OSError, match="simulated I/O failure"):
            train(tiny_config(*SCHEDULE), run, resume=True)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-0000003"]
    train(tiny_config(*SCHEDULE), run, resume=True)
    assert_same_tensors(weights(run), reference)


def test_leftovers_of_a_save_killed_midway_are_ignored(run):
    """A kill during a save leaves only a hidden temporary folder; `latest` is untouched."""
    reference = weights(run)
    shutil.rmtree(run / "checkpoints" / "step-0000006")
    (run / "checkpoints" / "latest").write_text("step-0000003\n")
    leftover = run / "checkpoints" / ".step-0000006.k1ll3d"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"\x00" * 10)
    train(tiny_config(*SCHEDULE), run, resume=True)
    assert_same_tensors(weights(run), reference)


def test_saving_after_resuming_from_an_earlier_checkpoint_keeps_the_new_one(run, monkeypatch):
    """The user pointed `latest` back at step 3 (say step 6 was damaged) and resumes keeping one
    checkpoint: each new checkpoint must survive its own pruning, even with step-0000006 around."""
    (run / "checkpoints" / "latest").write_text("step-0000003\n")
    original = Trainer._train_step

    def crash_in_step_5(self, index, batch):
        if index == 4:
            raise RuntimeError("simulated crash")
        return original(self, index, batch)

    monkeypatch.setattr(Trainer, "_train_step", crash_in_step_5)
    with pytest.raises(RuntimeError):
        train(tiny_config(*SCHEDULE, "train.keep_checkpoints=1", "train.checkpoint_every=1"), run, resume=True)
    assert newest(run).step == 4
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-0000004"]
