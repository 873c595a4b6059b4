"""One checkpoint: written atomically, verified whole before any of it is used, never executing code.

    step-0000500/
        model.safetensors       trainable weights (only the PHi layer when the base is frozen)
        optimizer.safetensors   optimizer state tensors
        state.json              step, optimizer hyper-parameters, world size, the model's wiring,
                                SHA-256 hashes of every other file

A checkpoint is assembled in a hidden temporary folder and renamed into place, so a folder
named `step-N` is always complete. Loading checks everything it holds before any of it
reaches a model or an optimizer: the state file's types, that its hashes cover every file
and match, that the weights are finite, and (against the model and optimizer it is loaded
into) every tensor's name, shape and dtype. A wrong optimizer tensor would otherwise reach
the fused AdamW kernel, which does not check shapes and crashes the process.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file

from qphi.errors import QPhiError
from qphi.io import make_temp_dir, sha256_file, write_json, write_safetensors
from qphi.models import PHiModel

FORMAT_VERSION = 2  # 2: the model's wiring is recorded (format 1 checkpoints load without that check)
NAME = re.compile(r"step-(\d{7,})")
STATE = "state.json"
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors")
# AdamW's per-parameter state; the hyper-parameters of a group that only choose an implementation
ADAMW_STATE = ("step", "exp_avg", "exp_avg_sq")
IMPLEMENTATION_KEYS = {"params", "lr", "initial_lr", "fused", "foreach", "capturable", "differentiable"}


class OptimizerMeta(BaseModel):
    param_groups: list[dict[str, Any]]
    scalars: dict[str, Any] = {}


class MetricsWindow(BaseModel):
    """The metric sums since the last metrics line, so that a resumed run writes the same next line."""

    sums: dict[str, float]
    count: int = Field(ge=0)


class CheckpointState(BaseModel):
    """state.json, checked field by field when a checkpoint loads."""

    model_config = ConfigDict(extra="ignore")

    format: int = Field(ge=1, le=FORMAT_VERSION)
    step: int = Field(ge=0)
    optimizer: OptimizerMeta
    files: dict[str, str]
    world_size: int = Field(1, ge=1)
    metrics_window: MetricsWindow | None = None
    wiring: dict[str, Any] | None = None  # {"model": ModelConfig dump, "phi": PHiConfig dump}


@dataclass
class Checkpoint:
    path: Path
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    state: CheckpointState


def step_of(name: str) -> int | None:
    """The step of a checkpoint folder's name `step-NNNNNNN` (None for any other name)."""
    match = NAME.fullmatch(name)
    return int(match[1]) if match else None


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for index, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: OptimizerMeta) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta.scalars.items()]:
        index, _, key = name.partition(".")
        if not index.isdigit() or not key:
            raise ValueError(f"optimizer entry '{name}' is not of the form INDEX.NAME")
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta.param_groups}


def write(
    root: Path, step: int, model_state: dict[str, torch.Tensor], optimizer_state: dict[str, Any], **fields: Any
) -> Path:
    """Write checkpoint `step` into `root` atomically (replacing one of the same step); `fields`
    are further keys of state.json (world_size, metrics_window, wiring)."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    tmp = make_temp_dir(root, prefix=f".{name}.")
    final = root / name
    try:
        write_safetensors(tmp / "model.safetensors", model_state)
        opt_tensors, opt_meta = _flatten_optimizer(optimizer_state)
        write_safetensors(tmp / "optimizer.safetensors", opt_tensors)
        files = {f: sha256_file(tmp / f) for f in TENSOR_FILES}
        write_json(
            tmp / STATE, {"format": FORMAT_VERSION, "step": step, "optimizer": opt_meta, "files": files, **fields}
        )
        if final.exists():
            shutil.rmtree(final)
        tmp.replace(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def load(path: Path) -> Checkpoint:
    """Load and verify a checkpoint folder; any damage becomes a `QPhiError` that says what to do."""
    others = sorted(p.name for p in path.parent.glob("step-*") if p != path and step_of(p.name) is not None)
    fix = (
        f"delete '{path}' and '{path.parent / 'latest'}' to continue from the newest other checkpoint ({others[-1]}), "
        "or start a new run"
        if others
        else "start a new run (this run has no other checkpoint)"
    )
    step = step_of(path.name)
    if step is None:
        raise QPhiError(f"'{path}' is not a checkpoint folder (named step-NNNNNNN): {fix}")
    state_file = path / STATE
    if not state_file.is_file():
        if any(path.glob("*.pt")) or any(path.glob("*.pkl")) or any(path.glob("*.bin")):
            raise QPhiError(
                f"'{path}' holds pickle files, which qphi never loads (they can run code): use a qphi checkpoint"
            )
        raise QPhiError(f"checkpoint '{path}' is incomplete (no {STATE}): {fix}")
    try:
        state = CheckpointState.model_validate(json.loads(state_file.read_text(encoding="utf-8")))
        _verify_files(path, state, fix)
        model = load_file(str(path / "model.safetensors"))
        optimizer = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), state.optimizer)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(top level)"
        raise QPhiError(f"checkpoint '{path}' has a damaged {STATE} ({where}: {first['msg']}): {fix}") from None
    except (OSError, ValueError, SafetensorError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise QPhiError(f"checkpoint '{path}' cannot be read ({type(e).__name__}: {e}): {fix}") from None
    if state.step != step:
        raise QPhiError(f"checkpoint '{path}' says it is of step {state.step}, not {step} as its name says: {fix}")
    tensors = {**model, **{f"optimizer {i}.{k}": v for i, s in optimizer["state"].items() for k, v in s.items()}}
    bad = [
        k
        for k, v in tensors.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise QPhiError(f"checkpoint '{path}' holds non-finite values (NaN or infinity) in {', '.join(bad[:3])}: {fix}")
    return Checkpoint(path=path, step=step, model=model, optimizer=optimizer, state=state)


def _verify_files(path: Path, state: CheckpointState, fix: str) -> None:
    """Every file but state.json must be listed with its hash, and both tensor files must be there:
    an empty or partial `files` map would otherwise switch the check off."""
    present = {p.name for p in path.iterdir()} - {STATE}
    listed = set(state.files)
    unlisted = sorted((present | set(TENSOR_FILES)) - listed)
    if unlisted:
        raise QPhiError(f"checkpoint '{path}' has files its {STATE} does not vouch for ({', '.join(unlisted)}): {fix}")
    for name in sorted(listed):
        if name not in present or Path(name).name != name:
            raise QPhiError(f"checkpoint file '{path / name}' named in its {STATE} is missing: {fix}")
        if sha256_file(path / name) != state.files[name]:
            raise QPhiError(f"checkpoint file '{path / name}' is corrupted (hash mismatch): {fix}")


def load_weights(model: PHiModel, ckpt: Checkpoint) -> None:
    """Copy the checkpoint's tensors into `model` after checking them against the model's
    trainable state dict: the same names, shapes and dtypes."""
    expected = model.trainable_state_dict()
    missing = sorted(set(expected) - set(ckpt.model))
    unexpected = sorted(set(ckpt.model) - set(expected))
    common = [k for k in expected if k in ckpt.model]
    mismatched = [k for k in common if ckpt.model[k].shape != expected[k].shape]
    retyped = [k for k in common if ckpt.model[k].dtype != expected[k].dtype]
    if missing or unexpected or mismatched or retyped:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape differs", mismatched),
                ("dtype differs", retyped),
            )
            if keys
        )
        raise QPhiError(
            f"checkpoint '{ckpt.path}' was made for a different model or bottleneck ({detail}): use the config it was trained with"
        )
    model.load_state_dict(ckpt.model, strict=False)  # checked above; tied and frozen tensors are absent


def load_optimizer(optimizer: torch.optim.Optimizer, ckpt: Checkpoint) -> None:
    """Load the checkpoint's AdamW state into `optimizer` after checking it against the optimizer's
    own parameter groups: the same groups and update settings, and per parameter the AdamW
    tensors with the parameter's shape and dtype and a scalar float32 step count."""
    saved, groups = ckpt.optimizer, optimizer.param_groups
    problem = _optimizer_problem(saved, groups)
    if problem:
        raise QPhiError(
            f"checkpoint '{ckpt.path}' holds an optimizer state that does not fit this model ({problem}): "
            "resume with the config it was trained with, or start a new run"
        )
    optimizer.load_state_dict(saved)


def _optimizer_problem(saved: dict[str, Any], groups: list[dict[str, Any]]) -> str | None:
    if len(saved["param_groups"]) != len(groups):
        return f"{len(saved['param_groups'])} parameter groups, not {len(groups)}"
    params: dict[int, torch.Tensor] = {}
    for number, (old, new) in enumerate(zip(saved["param_groups"], groups, strict=True)):
        indices = list(range(len(params), len(params) + len(new["params"])))
        params.update(zip(indices, new["params"], strict=True))
        if old.get("params") != indices:
            return f"group {number} lists other parameters"
        for key in sorted(set(old) & set(new) - IMPLEMENTATION_KEYS):
            if json.loads(json.dumps(new[key])) != old[key]:
                return f"group {number} has {key}={old[key]}, the config gives {new[key]}"
    expected = (*ADAMW_STATE, *(("max_exp_avg_sq",) if groups[0].get("amsgrad") else ()))
    for index, entry in saved["state"].items():
        if index not in params:
            return f"state for parameter {index}, which does not exist"
        if sorted(entry) != sorted(expected):
            return f"parameter {index} has state {sorted(entry)}, not {sorted(expected)}"
        param = params[index]
        step = entry["step"]
        if not isinstance(step, torch.Tensor) or step.shape != () or step.dtype != torch.float32 or step < 0:
            return f"parameter {index} has a step count that is not a non-negative float32 scalar"
        for key in expected[1:]:
            value = entry[key]
            if not isinstance(value, torch.Tensor) or value.shape != param.shape or value.dtype != param.dtype:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                return f"parameter {index}'s {key} is {shape}, not {tuple(param.shape)} {param.dtype}"
    return None
