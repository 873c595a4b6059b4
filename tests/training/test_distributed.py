"""Two `torchrun` processes (gloo, CPU) train exactly like one process that accumulates two
micro-batches over the same global batch, and only the first process writes files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qphi.errors import QPhiError
from qphi.training import train

from .runs import cli_env, free_port, metric_records, newest, tiny_config, tiny_overrides, weights

OVERRIDES = ("train.steps=3", "train.checkpoint_every=2", "train.tensorboard=true")


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("ddp")
    cwd = root / "cwd"
    cwd.mkdir()
    run = root / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
        "-m", "qphi.cli.main", "train", "cpu-quick", *tiny_overrides(*OVERRIDES), "--out", str(run),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return run, cwd, done


def test_two_processes_match_one_process_accumulating_two_micro_batches(two_process_run, tmp_path):
    run, _, _ = two_process_run
    single = tmp_path / "single"
    train(tiny_config(*OVERRIDES, "train.grad_accum=2"), single)
    distributed, reference = metric_records(run), metric_records(single)
    assert [(r["step"], r["kind"]) for r in distributed] == [(r["step"], r["kind"]) for r in reference]
    for got, want in zip(distributed, reference, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (got["step"], got["kind"], key)
    ddp_weights, single_weights = weights(run), weights(single)
    for key, value in single_weights.items():
        assert (ddp_weights[key] - value).abs().max() <= 1e-5, key


def test_only_the_first_process_writes(two_process_run):
    run, cwd, done = two_process_run
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    tensorboard = [f for f in files if f.startswith("tensorboard/")]
    assert len(tensorboard) == 1 and "events.out.tfevents" in tensorboard[0]
    checkpoint_files = [
        f"checkpoints/step-000000{s}/{name}" for s in (2, 3) for name in ("model.safetensors", "optimizer.safetensors", "state.json")
    ]  # fmt: skip
    expected = sorted(["config.yaml", "eval.json", "metrics.jsonl", "checkpoints/latest", *checkpoint_files])
    assert sorted(set(files) - set(tensorboard)) == expected
    assert not any(cwd.iterdir())  # nothing written where the command ran
    assert done.stdout.count("run directory:") == 1
    assert len([r for r in metric_records(run) if r["kind"] == "train"]) == 3  # one line per step, not two
    assert newest(run).state.world_size == 2


def test_resuming_with_a_different_world_size_is_refused(two_process_run, tmp_path):
    run, _, _ = two_process_run
    with pytest.raises(QPhiError, match=r"written by 2 process\(es\) but this run has 1.*--nproc-per-node=2"):
        train(tiny_config(*OVERRIDES, "train.steps=5"), run, resume=True)
