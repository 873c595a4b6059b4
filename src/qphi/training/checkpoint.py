"""Checkpoints that survive a kill and never execute code when loaded.

Layout of a run directory:

    config.yaml                    the resolved run config
    checkpoints/step-000500/       one complete checkpoint
        model.safetensors          trainable weights (only the PHi layer when the base is frozen)
        optimizer.safetensors      optimizer state tensors
        state.json                 step, optimizer hyper-parameters, world size, file hashes
    checkpoints/latest             name of the newest complete checkpoint

A checkpoint is assembled in a temporary folder and renamed into place, and `latest` is
rewritten atomically afterwards, so a kill at any moment leaves the previous checkpoint
loadable. SHA-256 hashes in state.json catch truncated or corrupted files on load.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from qphi.errors import QPhiError
from qphi.io import make_temp_dir, sha256_file, write_json, write_safetensors, write_text

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    path: Path
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    state: dict[str, Any]


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for index, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save(
    run_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    extra: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, keep it and the newest `keep - 1` others."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    tmp = make_temp_dir(root, prefix=f".{name}.")
    try:
        write_safetensors(tmp / "model.safetensors", model_state)
        opt_tensors, opt_meta = _flatten_optimizer(optimizer_state)
        write_safetensors(tmp / "optimizer.safetensors", opt_tensors)
        files = {f: sha256_file(tmp / f) for f in ("model.safetensors", "optimizer.safetensors")}
        write_json(
            tmp / "state.json",
            {"format": FORMAT_VERSION, "step": step, "optimizer": opt_meta, "files": files, **extra},
        )
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    write_text(root / "latest", name + "\n")
    # never the one just written, even if folders of later steps (from before a resume) remain
    others = sorted(p for p in root.glob("step-*") if p.is_dir() and p != final)
    for old in others[: -(keep - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    return run_dir / "checkpoints" / pointer.read_text().strip()


def latest_step(run_dir: Path) -> int | None:
    """The step of the newest complete checkpoint, read from its state.json (None if there is none)."""
    path = latest(run_dir)
    try:
        return int(json.loads((path / "state.json").read_text())["step"]) if path else None
    except (OSError, ValueError, KeyError):
        return None


def load(path: Path) -> Checkpoint:
    """Load and verify a checkpoint folder; any damage becomes a `QPhiError` that says what to do."""
    state_file = path / "state.json"
    others = sorted(p.name for p in path.parent.glob("step-*") if p != path)
    fallback = f" (other checkpoints here: {', '.join(others)})" if others else ""
    fix = f"delete '{path}' and point '{path.parent / 'latest'}' at an earlier one{fallback}, or start a new run"
    if not state_file.is_file():
        if any(path.glob("*.pt")) or any(path.glob("*.pkl")) or any(path.glob("*.bin")):
            raise QPhiError(
                f"'{path}' holds pickle files, which qphi never loads (they can run code): use a qphi checkpoint"
            )
        raise QPhiError(f"checkpoint '{path}' is incomplete (no state.json): {fix}")
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        for name, digest in state["files"].items():
            if sha256_file(path / name) != digest:
                raise QPhiError(f"checkpoint file '{path / name}' is corrupted (hash mismatch): {fix}")
        model = load_file(str(path / "model.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise QPhiError(f"checkpoint '{path}' cannot be read ({type(e).__name__}: {e}): {fix}") from None
    optimizer = _unflatten_optimizer(opt_tensors, state["optimizer"])
    return Checkpoint(path=path, step=int(state["step"]), model=model, optimizer=optimizer, state=state)
