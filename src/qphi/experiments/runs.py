"""What every experiment does with its runs: claim an output folder, train each run (or resume
or reuse it), and pool the per-run analyses over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from qphi.errors import QPhiError
from qphi.io import read_json, write_json
from qphi.training import RunConfig, train
from qphi.training.distributed import check_device
from qphi.training.run_dir import latest_step

EXPERIMENT_MARKERS = {"reproduce.json": "reproduction", "sweep_config.json": "sweep"}


def claim(out: Path, marker: str, wanted: dict[str, Any], what: str) -> None:
    """Record in `out/marker` what this folder holds; refuse to mix two different experiments
    (`what`, e.g. "reproduction") in one folder."""
    if (out / "config.yaml").is_file():
        raise QPhiError(f"'{out}' holds a training run (config.yaml), not a {what}: choose another --out folder")
    for other, kind in EXPERIMENT_MARKERS.items():
        if other != marker and (out / other).is_file():
            raise QPhiError(f"'{out}' holds a {kind} ({other}), not a {what}: choose another --out folder")
    path = out / marker
    if path.is_file():
        saved = read_json(path)  # a torn or foreign file is a one-line error
        if saved != wanted:
            raise QPhiError(
                f"'{out}' holds a {what} of {saved}, not {wanted}: use another --out, or the same options to resume"
            )
        return
    write_json(path, wanted)  # an unwritable folder is a QPhiError from write_json


def ensure_trained(config: RunConfig, run_dir: Path, label: str) -> None:
    """Train the run in `run_dir`, resume it from its last checkpoint, or reuse it when that
    checkpoint is the final step. An interrupted training raises KeyboardInterrupt (run the
    same command again to resume)."""
    done = latest_step(run_dir)
    state = "trained" if done == config.train.steps else ("resuming" if done else "training")
    tqdm.write(f"{label}: {state} ({run_dir})")
    if done != config.train.steps:
        result = train(config, run_dir, resume=done is not None, evaluate=False)
        if result.interrupted:
            raise KeyboardInterrupt


def eval_device(device: str) -> str:
    """Where analyses run: the training device (`auto` = CUDA when there is one). Asking for a GPU
    this machine lacks is refused here, before an experiment writes anything."""
    name = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    check_device(name)
    return name


def pool_levels(runs: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """Mean over seeds of every float in the per-level entries of `field` (e.g. "coding")."""
    pooled: dict[str, Any] = {}
    for level in runs[0][field]:
        values = [r[field][level] for r in runs if level in r[field]]
        pooled[level] = {
            k: float(np.mean([v[k] for v in values])) for k, v in values[0].items() if isinstance(v, float)
        }
    return pooled


def pool_stages(health: list[dict[str, Any]], key: str) -> list[float]:
    """Per stage, the mean over seeds of one codebook-health number (`CodebookHealth.to_dict()`)."""
    return [float(np.mean([h["stages"][s][key] for h in health])) for s in range(len(health[0]["stages"]))]
