"""A run directory has one writer at a time, recovers what a kill leaves behind, and finds its
newest checkpoint without the `latest` pointer. (Refusals are in tests/reliability.)"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from qphi import io
from qphi.cli.main import main
from qphi.errors import QPhiError
from qphi.training import load_run, train
from qphi.training.run_dir import LOCK, RunLock, config_text, latest, saved_config

from .runs import assert_same_tensors, cli_env, file_digests, metric_records, tiny_config, tiny_overrides, weights
from .test_resume import stop_at
from .test_signals import start_training, wait_for

SCHEDULE = ("train.steps=6", "train.checkpoint_every=2", "train.log_every=1")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(*SCHEDULE), run)
    return run


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """The same run, crashed in step 5 (checkpoints at steps 2 and 4)."""
    run = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.MonkeyPatch.context() as patch:
        stop_at(patch, 4, "crash")
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(tiny_config(*SCHEDULE), run)
    return run


@pytest.fixture
def part(stopped, tmp_path) -> Path:
    return Path(shutil.copytree(stopped, tmp_path / "part"))


def test_without_the_latest_pointer_a_resume_continues_from_the_newest_checkpoint(part, finished):
    (part / "checkpoints" / "latest").unlink()
    assert latest(part).name == "step-0000004"
    assert load_run(part)[2] == 4  # eval, score, ... load it too
    result = train(tiny_config(*SCHEDULE), part, resume=True)
    assert result.step == 6
    assert_same_tensors(weights(part), weights(finished))
    assert metric_records(part) == metric_records(finished)


def test_a_checkpoint_folder_without_its_state_file_is_not_the_newest(part):
    """Only a renamed, complete folder counts (one without state.json was damaged by hand)."""
    (part / "checkpoints" / "latest").unlink()
    (part / "checkpoints" / "step-0000004" / "state.json").unlink()
    assert latest(part).name == "step-0000002"


def test_a_killed_writers_leftovers_are_removed_on_the_next_start(part, finished):
    """A SIGKILL can leave a half-written checkpoint folder and temporary files of atomic writes
    beside a `.lock` file whose process is gone; the next start removes them and takes over."""
    leftovers = [
        part / "checkpoints" / ".step-0000006.k1ll3d",
        part / ".metrics.jsonl.x7y.tmp",
        part / ".eval.json.a1b.tmp",
        part / "checkpoints" / ".latest.q2w.tmp",
    ]
    leftovers[0].mkdir()
    (leftovers[0] / "model.safetensors").write_bytes(b"\0" * 10)
    for path in leftovers[1:]:
        path.write_text("torn")
    (part / LOCK).write_text("999999999 nowhere\n")  # no process holds it
    others = [part / ".notes.txt.tmp", part / "checkpoints" / ".backup.tmp", part / "checkpoints" / ".step-x.old"]
    for path in others:  # hidden files that are not qphi's: `--out` may name a folder holding more
        path.write_text("keep")
    train(tiny_config(*SCHEDULE), part, resume=True)
    assert not any(p.exists() for p in leftovers)
    assert all(p.read_text() == "keep" for p in others)
    for path in others:
        path.unlink()
    assert not (part / LOCK).exists()
    assert_same_tensors(weights(part), weights(finished))
    assert sorted(p.name for p in part.iterdir()) == ["checkpoints", "config.yaml", "eval.json", "metrics.jsonl"]


def test_a_second_training_process_is_refused_with_the_pid_of_the_first(part, finished, tmp_path):
    """Two writers of one folder used to interleave their metrics and mix their checkpoints."""
    process = start_training(part, schedule=(*SCHEDULE, "train.steps=100000"), resume=True)
    try:
        wait_for(
            lambda: (part / LOCK).is_file() and (part / LOCK).read_text().split()[:1] == [str(process.pid)], process
        )
        before = {k: v for k, v in file_digests(part).items() if not k.startswith(("metrics", "checkpoints"))}
        with pytest.raises(QPhiError, match=rf"is being written by another qphi process \(PID {process.pid}\)"):
            train(tiny_config(*SCHEDULE), part, resume=True)
        assert {k: v for k, v in file_digests(part).items() if k in before} == before
    finally:
        process.kill()
        process.wait()
    # the kill left the lock file behind; its lock died with the process
    train(tiny_config(*SCHEDULE), part, resume=True)
    assert not (part / LOCK).exists()


def test_a_lock_that_cannot_be_taken_creates_nothing(tmp_path):
    """A refused start into a new folder leaves no empty run directory behind either."""
    target = tmp_path / "a" / "b" / "run"
    with RunLock(target):
        assert (target / LOCK).is_file()
        with pytest.raises(QPhiError, match="is being written by another qphi process"), RunLock(target):
            pass
    assert not (tmp_path / "a").exists()


def test_a_config_that_is_the_runs_own_record_may_be_passed_back(finished, tmp_path, capsys):
    """`qphi train RUN/config.yaml --out RUN --resume`: the file is qphi's dump, rewriting it loses nothing."""
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    assert (run / "config.yaml").read_text() == config_text(saved_config(run))
    argv = ["train", str(run / "config.yaml"), "train.steps=8", "--out", str(run), "--resume"]
    assert main(argv) == 0, capsys.readouterr().err
    assert saved_config(run).train.steps == 8


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(part, finished, monkeypatch, capsys):
    """ENOSPC while the step-6 checkpoint is written (safetensors reports it in its own error)."""
    save_file = io.save_file

    def full(tensors, path, metadata=None):
        save_file(tensors, path, metadata=metadata)
        if ".step-0000006." in path:
            raise io.SafetensorError(
                f"Error while serializing: I/O error: No space left on device (os error {errno.ENOSPC})"
            )

    with monkeypatch.context() as patch:
        patch.setattr(io, "save_file", full)
        argv = ["train", "cpu-quick", *tiny_overrides(*SCHEDULE), "--out", str(part), "--resume"]
        assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("qphi train: error: cannot write '") and "(No space left on device)" in line
    assert line.endswith(": free some disk space and run the command again")
    assert sorted(p.name for p in (part / "checkpoints").iterdir()) == ["latest", "step-0000002", "step-0000004"]
    assert latest(part).name == "step-0000004" and not (part / LOCK).exists()
    train(tiny_config(*SCHEDULE), part, resume=True)
    assert_same_tensors(weights(part), weights(finished))


def test_non_finite_evaluation_values_are_written_as_null_with_a_warning(finished, tmp_path, monkeypatch):
    """eval.json stays strict JSON: bare NaN is not JSON, and many readers refuse it."""
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    from qphi.training import data

    real = data.PFASource.evaluate

    def with_nan(self, model, device, step):
        evaluation = real(self, model, device, step)
        first, level = next(iter(evaluation.levels.items()))
        return replace(evaluation, levels={**evaluation.levels, first: replace(level, phi_mean=float("nan"))})

    monkeypatch.setattr(data.PFASource, "evaluate", with_nan)
    with pytest.warns(
        UserWarning, match=r"eval.json: non-finite value\(s\) written as null at levels\.mem_seq\.phi_mean"
    ):
        assert main(["eval", str(run)]) == 0

    def refuse(token: str) -> float:
        raise ValueError(f"not JSON: {token}")

    summary = json.loads((run / "eval.json").read_text(), parse_constant=refuse)
    assert summary["levels"]["mem_seq"]["phi_mean"] is None


@pytest.mark.slow  # two torchrun processes: about 20 s
def test_the_first_process_of_a_distributed_run_that_is_refused_stops_every_process(tmp_path):
    """Only the first process takes the lock; the others must learn of its refusal rather than
    wait for it in their first collective."""
    from .runs import free_port

    run = tmp_path / "run"
    with RunLock(run):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
            "-m", "qphi.cli.main", "train", "cpu-quick", *tiny_overrides("train.steps=2"), "--out", str(run),
        ]  # fmt: skip
        done = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=300)
        assert sorted(p.name for p in run.iterdir()) == [LOCK]
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("qphi train: error: ")]
    assert len(errors) == 2, done.stderr[-3000:]
    assert any(f"is being written by another qphi process (PID {os.getpid()})" in line for line in errors)
    assert any("the first process of this run refused to start: see its error" in line for line in errors)
    assert "qphi/" not in done.stderr  # torchrun reports the failed children; no traceback runs through qphi
