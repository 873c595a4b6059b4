"""Tiny training runs for the training tests: a 2-block d=32 transformer on 64-token rows,
4 rows per step, a handful of steps (about 0.1 s per step on one core)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from qphi.io import read_jsonl
from qphi.training import RunConfig, load_run_config
from qphi.training import checkpoint as ckpt
from qphi.training.run_dir import latest

SRC = Path(__file__).resolve().parents[2] / "src"

TINY = (
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.phi_after=0",
    "model.max_length=64",
    "data.row_length=64",
    "phi.prior.n_heads=2",
    "train.batch_size=4",
    "train.steps=6",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "train.tensorboard=false",
    "optim.warmup_steps=2",
    "phi.loss.rate_warmup=0.4",
    "eval.samples_per_level=2",
    "eval.batch_size=4",
)
TIMING_KEYS = ("tokens_per_s",)  # measured, not computed: differs between any two runs


def tiny_overrides(*overrides: str) -> list[str]:
    return [*TINY, *overrides]


def tiny_config(*overrides: str) -> RunConfig:
    return load_run_config("cpu-quick", tiny_overrides(*overrides))


def newest(run_dir: Path) -> ckpt.Checkpoint:
    """The checkpoint a resume would continue from, loaded and verified."""
    return ckpt.load(latest(run_dir))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The latest checkpoint's model tensors."""
    return newest(run_dir).model


def optimizer_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    state = newest(run_dir).optimizer["state"]
    return {f"{i}.{k}": v for i, s in state.items() for k, v in s.items() if isinstance(v, torch.Tensor)}


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


def metric_records(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without the timing fields."""
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(run_dir / "metrics.jsonl")]


def file_digests(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def cli_env() -> dict[str, str]:
    """Environment of a `qphi` subprocess: this worktree's package and one thread, like the
    in-process runs (results are bit-identical only at the same thread count)."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def qphi_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "qphi.cli.main", *args]


def run_qphi(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(qphi_command(*args), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latest_step(run_dir: Path) -> int | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    state = pointer.parent / pointer.read_text().strip() / "state.json"
    return json.loads(state.read_text())["step"] if state.is_file() else None
