"""The LLM training mixture: step-indexed rows, assistant-only loss, packing, round robin."""

from __future__ import annotations

import json

import pytest
import torch

from qphi.errors import QPhiError
from qphi.models.splice import IGNORE_INDEX
from qphi.tasks.chat import PFA_CHAT_PROMPT
from qphi.training import load_run_config
from qphi.training.mixture import MixtureSource, load_texts

from .conftest import mixture_overrides


@pytest.fixture(scope="module")
def source(checkpoint, data, tokenizer) -> MixtureSource:
    config = load_run_config(
        "cpu-quick", [*mixture_overrides(checkpoint, data), "train.batch_size=4", "data.row_length=512"]
    )
    return MixtureSource(config, tokenizer)


def test_rows_are_a_pure_function_of_seed_step_and_row(source):
    full = source.batches(0, 4)
    again = source.batches(0, 4)
    tail = source.batches(2, 2)  # e.g. the second of two processes
    for step in (0, 5):
        a, b, c = full[step], again[step], tail[step]
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.targets, b.targets)
        assert torch.equal(a.input_ids[2:], c.input_ids) and torch.equal(a.meta["loss_mask"][2:], c.meta["loss_mask"])
    assert not torch.equal(full[0].input_ids, full[1].input_ids)


def test_loss_only_on_assistant_tokens_within_each_document(source, tokenizer):
    batch = source.batches(0, 4)[3]
    mask, targets, ids = batch.meta["loss_mask"], batch.targets, batch.input_ids
    assert torch.equal(targets != IGNORE_INDEX, mask)
    assert bool(mask.any())
    # a target is the next token of the same document
    rows, cols = mask.nonzero(as_tuple=True)
    assert torch.equal(targets[rows, cols], ids[rows, cols + 1])
    assert torch.equal(batch.document_ids[rows, cols], batch.document_ids[rows, cols + 1])
    # no role header, user turn or end-of-turn token is a scored position
    scored = tokenizer.decode(ids[mask])
    assert "<|im_start|>" not in scored and "<|im_end|>" not in scored
    assert PFA_CHAT_PROMPT[:20] not in scored and "How many?" not in scored


def test_positions_restart_per_document_and_rows_are_packed(source):
    batch = source.batches(0, 4)[1]
    starts = batch.positions == 0
    assert torch.equal(starts[:, 1:], batch.document_ids[:, 1:] != batch.document_ids[:, :-1])
    assert len(batch.documents) > batch.shape[0], "short documents must share rows"
    assert batch.fill_ratio > 0.9


def test_round_robin_over_the_components(source):
    components = source.config.data.mixture.components
    firsts = [source.row(0, r)[0][1].component for r in range(6)]
    assert firsts == [components[r % len(components)] for r in range(6)]
    within = [origin.component for _, origin in source.row(0, 0)]
    assert within == [components[i % len(components)] for i in range(len(within))]


def test_unpacked_rows_hold_one_document(checkpoint, data, tokenizer):
    config = load_run_config("cpu-quick", [*mixture_overrides(checkpoint, data), "data.pack=false"])
    batch = MixtureSource(config, tokenizer).batches(0, 2)[0]
    assert len(batch.documents) == 2 and int(batch.document_ids[batch.padding_mask].max()) == 0


def test_general_text(checkpoint, data, tokenizer, tmp_path):
    (tmp_path / "a.txt").write_text("Once upon a time " * 40)
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "def f(x): return x"}) + "\n")
    overrides = [*mixture_overrides(checkpoint, data), "data.mixture.components=[text]",
                 f"data.mixture.text_paths=[{tmp_path / 'a.txt'},{tmp_path / 'b.jsonl'}]"]  # fmt: skip
    source = MixtureSource(load_run_config("cpu-quick", overrides), tokenizer)
    batch = source.batches(0, 2)[0]
    assert {d.component for d in batch.documents} == {"text"}
    mask = batch.meta["loss_mask"]
    assert mask[batch.padding_mask].float().mean() > 0.9  # plain text counts everywhere
    assert len(load_texts([str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")])) == 2


def test_config_errors(checkpoint, data, tmp_path):
    with pytest.raises(QPhiError, match="text_paths"):
        load_run_config("cpu-quick", [*mixture_overrides(checkpoint, data), "data.mixture.components=[math,text]"])
    with pytest.raises(QPhiError, match=r"data\.source=mixture"):
        load_run_config("cpu-quick", ["model.architecture=pretrained", f"model.pretrained={checkpoint}"])
    with pytest.raises(QPhiError, match="not found"):
        load_texts([str(tmp_path / "missing.txt")])
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(QPhiError, match="UTF-8"):
        load_texts([str(tmp_path / "bad.txt")])


def test_presets_load():
    smol = load_run_config("smollm2-cpu")
    assert (
        smol.model.pretrained == "smollm2" and smol.data.source == "mixture" and smol.phi.bottleneck.latent_dim is None
    )
    paper = load_run_config("llama3b-paper", ["model.pretrained=/models/Llama-3.2-3B-Instruct"])
    assert paper.model.phi_after == 19 and paper.optim.lr == 1e-4 and paper.phi.loss.self_critic == 0
    assert paper.phi.loss.phi == 1.0 and paper.phi.deterministic_eval
    residual = load_run_config("llama3b-paper", ["model.pretrained=/m", "phi.bottleneck=residual"])
    assert residual.phi.bottleneck.num_stages == 3 and residual.phi.bottleneck.codebook_size == 128
