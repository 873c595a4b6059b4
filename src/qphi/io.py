"""Crash-safe file output.

Every result file is written to a temporary sibling and renamed into place, so a kill at
any moment leaves either the old complete file or the new complete file — never a torn one.
Files and folders get the permissions the user's umask gives a plain `open`/`mkdir` (0644 and
0755 under umask 022), not the private 0600/0700 of `tempfile`, so colleagues and web servers
on a shared machine can read runs and reports when the umask allows it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import torch
from pydantic import BeforeValidator, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from safetensors import SafetensorError
from safetensors.torch import save_file

from qphi.errors import QPhiError

# the ways an output folder can be unusable that the user fixes by choosing another one
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG}
_FULL = {errno.ENOSPC, errno.EDQUOT}


@contextmanager
def _full_disk_refused(target: Path) -> Iterator[None]:
    """A full disk (or quota) is the user's to fix: a `QPhiError` naming the file."""
    try:
        yield
    except OSError as e:
        if e.errno not in _FULL:
            raise
        raise QPhiError(
            f"cannot write '{target}' ({e.strerror}): free some disk space and run the command again"
        ) from None


def current_umask() -> int:
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A fresh folder in `parent` (to be renamed into place) with the umask's folder permissions."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    folder.chmod(0o777 & ~current_umask())
    return folder


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` on success. A full
    disk is a `QPhiError` (the old file, if any, is still in place)."""
    target = Path(path)
    try:
        if target.is_dir():
            raise QPhiError(f"cannot write '{target}': a folder of that name is in the way: remove or rename it")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        if e.errno not in _UNWRITABLE:
            raise
        raise QPhiError(f"cannot write '{target}' ({e.strerror}): choose a writable output folder") from None
    os.close(fd)
    try:
        with _full_disk_refused(target):
            yield Path(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return _write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _write_with(path, lambda tmp: tmp.write_bytes(data))


T = TypeVar("T")

# A float field of a result that may be NaN (e.g. a correlation of a constant): written as null,
# read back as NaN.
FloatOrNaN = Annotated[float, BeforeValidator(lambda v: math.nan if v is None else v)]


def _array_value(value: Any) -> Any:
    """numpy and torch scalars and arrays as Python numbers and lists."""
    if isinstance(value, np.generic | np.ndarray | torch.Tensor):
        return value.tolist()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def _finite(value: Any, replaced: list[str], where: str = "") -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        replaced.append(where or "(value)")
        return None
    if isinstance(value, dict):
        return {k: _finite(v, replaced, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v, replaced, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _strict(path: str | os.PathLike, obj: Any) -> Any:
    """`obj` as JSON-ready data, a non-finite float replaced by None with a warning naming where."""
    replaced: list[str] = []
    data = _finite(to_jsonable_python(obj, fallback=_array_value), replaced)
    if replaced:
        shown = ", ".join(replaced[:5]) + (" …" if len(replaced) > 5 else "")
        warnings.warn(f"{Path(path).name}: non-finite value(s) written as null at {shown}", stacklevel=3)
    return data


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` (plain data, a dataclass or a pydantic model) as strict JSON: a non-finite float
    is written as null, with a warning naming where it was, so every JSON reader can parse the file."""
    data = _strict(path, obj)
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> Path:
    """Write one strict JSON line per record (as `write_json` writes a file), replacing the file."""
    lines = [json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in _strict(path, list(records))]
    return write_text(path, "".join(lines))


def read_json(path: str | os.PathLike, cls: type[T] | Any = Any) -> T:
    """Read a JSON file back into `cls` (a dataclass, a pydantic model or a typing form), checked
    against its types: a missing, torn, hand-edited or foreign file is a one-line `QPhiError`."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QPhiError(f"'{p}' does not exist: run the command that writes it first") from None
    except IsADirectoryError:
        raise QPhiError(f"'{p}' is a folder, not a JSON file: remove or rename it") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise QPhiError(f"'{p}' is not valid JSON ({e}): delete it so that it is written again") from None
    return _validated(data, cls, f"'{p}'")


def _validated(data: Any, cls: type[T] | Any, where: str) -> T:
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(map(str, first["loc"])) or "(top level)"
        raise QPhiError(
            f"{where} does not hold what qphi wrote there ({loc}: {first['msg']}): delete it so that it is written again"
        ) from None


def write_safetensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        try:
            save_file(contiguous, str(tmp), metadata=metadata)
        except SafetensorError as e:  # an I/O failure, e.g. a full disk, arrives as a message with its errno
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise
            raise OSError(int(code[1]), os.strerror(int(code[1])), str(tmp)) from None

    return _write_with(path, write)


def write_figure(path: str | os.PathLike, fig: Any, **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (the format is taken from `path`'s suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return _write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_kwargs))


def append_jsonl(path: str | os.PathLike, record: Any) -> None:
    """Append one JSON line (plain data or a dataclass) and flush it to disk. A torn last line (a
    kill mid-write, which `read_jsonl` skips) is cut off first, so the new line is whole."""
    line = json.dumps(to_jsonable_python(record, fallback=_array_value)) + "\n"
    with _full_disk_refused(Path(path)), open(path, "ab+") as f:
        if f.seek(0, os.SEEK_END):
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.seek(0)
                f.truncate(f.read().rfind(b"\n") + 1)
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike, cls: type[T] | Any = Any) -> list[T]:
    """Read JSON lines, each checked against `cls` as `read_json` does, ignoring a last line torn
    by a kill mid-write; a damaged line before it is a one-line `QPhiError`."""
    records = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise QPhiError(
                f"'{path}' line {i + 1} is not valid JSON: delete the file so that it is written again"
            ) from None
        records.append(_validated(data, cls, f"'{path}' line {i + 1}"))
    return records
