"""Everything about a run directory: what it holds, who may write it, what may be continued.

    config.yaml                  the resolved run config
    metrics.jsonl                one JSON line per log record
    tensorboard/                 events (train.tensorboard)
    eval.json                    the final evaluation
    checkpoints/step-NNNNNNN/    complete checkpoints (see checkpoint.py)
    checkpoints/latest           the name of the checkpoint to continue from
    .lock                        held by the one process writing the run; its PID inside

A process writing a run holds its lock, so a second writer is refused with the holder's PID;
the kernel drops the lock of a killed process, so a `.lock` file left by a kill is simply taken
over. The holder first removes what a killed write left behind (hidden temporary files and
folders). Without a `latest` pointer the newest complete checkpoint is used. Everything a
resume depends on — the checkpoint, its step, its wiring, the config, metrics.jsonl — is
checked before anything in the folder changes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from qphi.configuration import build, read_yaml
from qphi.errors import QPhiError
from qphi.io import write_text
from qphi.models import PHiModel, build_model
from qphi.training import checkpoint, distributed
from qphi.training.config import RunConfig

CONFIG, METRICS, EVAL, LOCK, CHECKPOINTS = "config.yaml", "metrics.jsonl", "eval.json", ".lock", "checkpoints"

# Settings that may change when a run is resumed; everything else must match the saved config.
RESUMABLE_CHANGES = {
    "train.steps", "train.log_every", "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.num_workers", "train.tensorboard", "train.wandb", "train.device", "train.compile", "eval",
}  # fmt: skip
# Wiring keys that may differ from the checkpoint's: a local model folder may move.
MOVABLE_WIRING = {"model.pretrained"}


# ----------------------------------------------------------------- the config


def config_text(config: RunConfig) -> str:
    """config.yaml as qphi writes it: the resolved config, every key."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def saved_config(run_dir: Path) -> RunConfig:
    path = run_dir / CONFIG
    if not path.is_file():
        raise QPhiError(
            f"'{run_dir}' is not a qphi run directory (no config.yaml): pass the --out folder of a training run"
        )
    return build(RunConfig, read_yaml(path), source=f"saved config '{path}'")


def check_config_source(run_dir: Path, source: str | os.PathLike) -> None:
    """Refuse to train into the folder whose config.yaml is the config file being read, unless
    that file is qphi's own record (rewriting it then loses nothing the user wrote)."""
    saved, given = run_dir / CONFIG, Path(source)
    if not (given.is_file() and saved.is_file() and given.samefile(saved)):
        return
    if saved.read_text(encoding="utf-8") != config_text(saved_config(run_dir)):
        raise QPhiError(
            f"config file '{given}' is the run directory's own config.yaml, which training replaces with the resolved "
            f"config: pass a copy of it from elsewhere (e.g. cp '{given}' '{run_dir.parent / 'my-config.yaml'}'), "
            "or choose another --out"
        )


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(old: RunConfig, new: RunConfig) -> list[str]:
    """The keys that differ between two configs and that a resume may not change."""
    a, b = _flat(old.model_dump(mode="json")), _flat(new.model_dump(mode="json"))
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return [k for k in changed if not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)]


# ----------------------------------------------------------------- checkpoints


def latest(run_dir: Path) -> Path | None:
    """The checkpoint to continue from: the one `checkpoints/latest` names, or without that
    pointer the newest complete checkpoint (None when there is none)."""
    root = run_dir / CHECKPOINTS
    names = sorted(
        (p.name for p in root.glob("step-*") if checkpoint.step_of(p.name) is not None), key=checkpoint.step_of
    )
    pointer = root / "latest"
    if not (pointer.exists() or pointer.is_symlink()):
        complete = [n for n in names if (root / n / checkpoint.STATE).is_file()]
        return root / complete[-1] if complete else None
    fix = (
        f"write the name of one of its checkpoints ({', '.join(names)}) into it, or delete it to continue from the newest"
        if names
        else "delete it and start the run again"
    )
    try:
        name = pointer.read_bytes().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise QPhiError(f"'{pointer}' cannot be read ({reason}): {fix}") from None
    if not name:
        raise QPhiError(f"'{pointer}' is empty: {fix}")
    if checkpoint.step_of(name) is None:
        raise QPhiError(f"'{pointer}' names {name!r}, which is not a checkpoint folder of this run: {fix}")
    if name not in names:
        raise QPhiError(f"'{pointer}' names {name}, which does not exist: {fix}")
    return root / name


def latest_step(run_dir: Path) -> int | None:
    """The step of the checkpoint a resume would continue from (None if there is none)."""
    path = latest(run_dir)
    return checkpoint.step_of(path.name) if path else None


def save_checkpoint(
    run_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    keep: int,
    **fields: Any,
) -> Path:
    """Write checkpoint `step`, point `latest` at it, keep it and the newest `keep - 1` others."""
    root = run_dir / CHECKPOINTS
    final = checkpoint.write(root, step, model_state, optimizer_state, **fields)
    write_text(root / "latest", final.name + "\n")
    # never the one just written, even if folders of later steps (from before a resume) remain
    others = sorted(
        (p for p in root.glob("step-*") if checkpoint.step_of(p.name) is not None and p.is_dir() and p != final),
        key=lambda p: checkpoint.step_of(p.name),
    )
    for old in others[: -(keep - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def wiring(config: RunConfig) -> dict[str, Any]:
    """What a checkpoint records of how its model is built: every model and PHi-layer key."""
    return {"model": config.model.model_dump(mode="json"), "phi": config.phi.model_dump(mode="json")}


def check_wiring(ckpt: checkpoint.Checkpoint, config: RunConfig) -> None:
    """The config must build the model the checkpoint was trained as: the shapes can agree while
    the PHi layer sits after another block. Keys that only one side knows (a setting added to
    qphi after the checkpoint was written) are not compared."""
    if ckpt.state.wiring is None:  # format 1: not recorded
        return
    saved, now = _flat(ckpt.state.wiring), _flat(wiring(config))
    for key in sorted(set(saved) & set(now) - MOVABLE_WIRING):
        if saved[key] != now[key]:
            raise QPhiError(
                f"checkpoint '{ckpt.path}' was trained with {key}={saved[key]!r}, not {now[key]!r} as the config "
                f"says: set {key} back to {saved[key]!r} in config.yaml (and in the config you resume with)"
            )


def check_resumable(ckpt: checkpoint.Checkpoint, config: RunConfig, world_size: int) -> None:
    """Everything a resume from `ckpt` needs, checked before anything is written."""
    saved_world = ckpt.state.world_size
    if saved_world != world_size:
        raise QPhiError(
            f"checkpoint '{ckpt.path}' was written by {saved_world} process(es) but this run has {world_size}: "
            f"resume with torchrun --nproc-per-node={saved_world} (or the same total over nodes)"
        )
    if ckpt.step > config.train.steps:
        raise QPhiError(
            f"checkpoint '{ckpt.path}' is of step {ckpt.step}, beyond train.steps={config.train.steps}: "
            f"set train.steps={ckpt.step} or more to continue it"
        )
    check_wiring(ckpt, config)


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu", pretrained: str | None = None
) -> tuple[RunConfig, PHiModel, int]:
    """The config, the model with the latest checkpoint's weights, and its step. `pretrained`
    names the base model instead of the saved spec (e.g. a copy of it moved elsewhere)."""
    run_dir = Path(run_dir)
    device = distributed.check_device(device)
    config = saved_config(run_dir)
    if pretrained is not None:
        config = config.replace(model=config.model.replace(pretrained=pretrained))
    path = latest(run_dir)
    if path is None:
        raise QPhiError(f"run directory '{run_dir}' has no checkpoint yet: train it first (qphi train ...)")
    ckpt = checkpoint.load(path)
    check_wiring(ckpt, config)
    model = build_model(config.model, config.phi)
    checkpoint.load_weights(model, ckpt)
    return config, model.to(device).eval(), ckpt.step


# ----------------------------------------------------------------- starting a run


def prepare(run_dir: Path, config: RunConfig, resume: bool) -> None:
    """Refuse a start that would mix two runs or fail only after training."""
    for name in (CONFIG, METRICS, EVAL, f"{CHECKPOINTS}/latest"):
        if (run_dir / name).is_dir():
            raise QPhiError(f"'{run_dir / name}' is a folder, where the run writes a file: remove or rename it")
    for name in (CHECKPOINTS, "tensorboard"):
        if (run_dir / name).exists() and not (run_dir / name).is_dir():
            raise QPhiError(f"'{run_dir / name}' is a file, where the run keeps a folder: remove or rename it")
    if not (run_dir / CONFIG).is_file():
        return
    if not resume and latest(run_dir) is not None:
        raise QPhiError(
            f"'{run_dir}' already holds a trained run: pass resume=true to continue it, or choose another output directory"
        )
    if resume:
        changed = config_changes(saved_config(run_dir), config)
        if changed:
            raise QPhiError(
                f"'{run_dir}' holds a run with a different config ({', '.join(changed[:4])}): resume with the same config, or choose another output directory"
            )


def kept_metrics(run_dir: Path, start: int, steps: int) -> str | None:
    """metrics.jsonl without the records a stopped attempt wrote after its last checkpoint (all
    of them when starting from step 0) and those of a final evaluation that will run again
    (None when there is no file). A torn last line — a kill mid-write — is dropped; any other
    damage is refused before anything is written."""
    path = run_dir / METRICS
    if not path.is_file():
        return None
    fix = "or the whole file (it is a log: training does not need it)"
    try:
        lines = path.read_bytes().decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as e:
        raise QPhiError(f"'{path}' is not UTF-8 text (byte {e.start}): delete the damaged line, {fix}") from None
    kept = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise QPhiError(f"'{path}' line {number} is not a JSON record: delete that line, {fix}") from None
        if not (isinstance(record, dict) and type(record.get("step")) is int and isinstance(record.get("kind"), str)):
            raise QPhiError(
                f"'{path}' line {number} is not a metrics record (with an integer step and a kind): delete that line, {fix}"
            )
        step = record["step"]
        if step < start or (step == start and (record["kind"] == "train" or start < steps)):
            kept.append(line if line.endswith("\n") else line + "\n")
    return "".join(kept)


def clean_leftovers(run_dir: Path) -> None:
    """Remove what a killed write of the run left: the temporary files of its atomic writes
    (`.config.yaml.*.tmp`, …; see qphi.io) and half-written checkpoint folders
    (`checkpoints/.step-N.*`). Nothing else: `--out` may name a folder that holds other files.
    Only the lock holder may call this."""
    root = run_dir / CHECKPOINTS
    temporary = [
        *(p for name in (CONFIG, METRICS, EVAL) for p in run_dir.glob(f".{name}.*.tmp")),
        *root.glob(".latest.*.tmp"),
    ]
    for path in temporary:
        if path.is_file():
            path.unlink()
    for path in root.glob(".step-*.*"):
        if path.is_dir() and checkpoint.step_of(path.name[1:].split(".")[0]) is not None:
            shutil.rmtree(path)


class RunLock:
    """Held by the one process that writes a run directory (an exclusive `flock` on `.lock`).

    A second process is refused with the holder's PID. The kernel releases the lock when its
    holder exits in any way, SIGKILL included, so a leftover `.lock` file is taken over. With
    `create`, a missing run directory is created (and removed again if the process leaves it
    empty, e.g. after a refused start); without, a missing directory is not locked.
    """

    def __init__(self, run_dir: Path, create: bool = True):
        self.run_dir = run_dir
        self.create = create
        self.path = run_dir / LOCK
        self.fd: int | None = None
        self.created: list[Path] = []

    def __enter__(self) -> RunLock:
        try:
            if self.run_dir.exists() and not self.run_dir.is_dir():
                raise QPhiError(f"'{self.run_dir}' is a file, not a folder: choose another output folder")
            if not self.run_dir.exists():
                if not self.create:
                    return self
                self.created = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]
                self.run_dir.mkdir(parents=True)
            self.fd = self._acquire()
        except OSError as e:
            self._remove_created()
            fix = (
                "choose a shorter output folder" if e.errno == errno.ENAMETOOLONG else "choose a writable output folder"
            )
            raise QPhiError(f"cannot write '{e.filename or self.run_dir}' ({e.strerror}): {fix}") from None
        except QPhiError:
            self._remove_created()
            raise
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        return self

    def _acquire(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").split()
                os.close(fd)
                pid, host = [*holder, "?", "?"][:2]
                where = "" if host == socket.gethostname() else f" on {host}"
                raise QPhiError(
                    f"'{self.run_dir}' is being written by another qphi process (PID {pid}{where}): "
                    f"wait for it to finish or stop it (kill {pid}), or choose another output folder"
                ) from None
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
                warnings.warn(
                    f"'{self.path}': this file system cannot lock files; nothing stops a second writer", stacklevel=3
                )
                return fd
            # the previous holder may have removed the file between our open and our lock
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    return fd
            os.close(fd)

    def _remove_created(self) -> None:
        for path in self.created:  # innermost first; stops at the first folder that is not empty
            try:
                path.rmdir()
            except OSError:
                return

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: no one else can hold this file
            os.close(self.fd)
            self.fd = None
        self._remove_created()
