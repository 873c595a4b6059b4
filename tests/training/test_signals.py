"""Real `qphi train` processes stopped from outside: Ctrl-C (SIGINT) saves a checkpoint at the
current step and exits cleanly with a message; SIGKILL loses at most the steps after the last
checkpoint. Either way, resuming ends on the weights of an uninterrupted run, bit for bit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qphi.training import train

from .runs import (
    assert_same_tensors,
    cli_env,
    free_port,
    latest_step,
    metric_records,
    newest,
    qphi_command,
    tiny_config,
    tiny_overrides,
    weights,
)

SCHEDULE = ("train.steps=30", "train.checkpoint_every=4", "train.log_every=1")


def start_training(run: Path, *overrides: str, schedule=SCHEDULE, resume: bool = False, **popen) -> subprocess.Popen:
    flags = ["--resume"] if resume else []
    command = qphi_command("train", "cpu-quick", *tiny_overrides(*schedule, *overrides), "--out", str(run), *flags)
    return subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"training ended before it could be stopped: {process.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("training did not get going in time")
        time.sleep(0.01)


def finish_and_compare(run: Path, tmp_path: Path, schedule=SCHEDULE) -> None:
    """Resume `run` in this process and compare it with an uninterrupted run."""
    config = tiny_config(*schedule)
    train(config, run, resume=True)
    train(config, tmp_path / "uninterrupted")
    assert_same_tensors(weights(run), weights(tmp_path / "uninterrupted"))
    assert metric_records(run) == metric_records(tmp_path / "uninterrupted")


def test_ctrl_c_saves_the_current_step_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    process = start_training(run)
    wait_for(lambda: (run / "metrics.jsonl").is_file(), process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "interrupted: saving a checkpoint after this step" in stdout
    stopped = int(stdout.split("stopped at step ")[1].split(";")[0])
    assert f"--out {run} --resume" in stdout
    assert 1 <= stopped < 30
    assert latest_step(run) == stopped  # saved at the step it stopped, not the last scheduled one
    assert newest(run).step == stopped
    finish_and_compare(run, tmp_path)


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    run = tmp_path / "run"
    process = start_training(run)
    wait_for(lambda: (latest_step(run) or 0) >= 4, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert latest_step(run) < 30  # killed mid-run
    finish_and_compare(run, tmp_path)


def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    """A checkpoint every step, so kills also land inside saves; every restart resumes from
    whatever survived the previous kill."""
    schedule = ("train.steps=80", "train.checkpoint_every=1", "train.log_every=1")
    run, delays = tmp_path / "run", random.Random(0)
    for kill in range(3):
        process = start_training(run, schedule=schedule, resume=kill > 0)
        before = latest_step(run) or 0
        wait_for(lambda before=before: (latest_step(run) or 0) > before, process)
        time.sleep(delays.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        assert newest(run).step == latest_step(run)  # the newest one is complete
    assert latest_step(run) < 80
    finish_and_compare(run, tmp_path, schedule)


@pytest.mark.slow
def test_ctrl_c_under_torchrun_stops_every_process_after_the_same_step(tmp_path):
    """A terminal's Ctrl-C reaches torchrun and both workers (and torchrun passes it on again);
    the workers agree on one step, save it, and the checkpoint is complete."""
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
        "-m", "qphi.cli.main", "train", "cpu-quick",
        *tiny_overrides("train.steps=400", "train.checkpoint_every=1000", "train.log_every=1"), "--out", str(run),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    wait_for(lambda: (run / "metrics.jsonl").is_file(), process)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
    stdout, _ = process.communicate(timeout=120)
    stopped = int(stdout.split("stopped at step ")[1].split(";")[0])
    assert latest_step(run) == stopped < 400
    assert newest(run).state.world_size == 2
