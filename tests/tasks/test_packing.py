"""Packing: nothing lost or duplicated, documents kept apart, targets inside documents, truncation."""

from __future__ import annotations

import math
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from qphi.errors import QPhiError
from qphi.tasks import (
    IGNORE_INDEX,
    Batch,
    CharTokenizer,
    PackedBatches,
    Sample,
    SampleStream,
    pack_samples,
    random_pfa,
)

TOK = CharTokenizer()
PFA0 = random_pfa(torch.Generator().manual_seed(0))


def _synthetic(lengths: list[int], seed: int = 0) -> list[Sample]:
    """Samples of the given text lengths with random letters and random metadata."""
    rng = np.random.default_rng(seed)
    samples = []
    for i, n in enumerate(lengths):
        text = "".join(rng.choice(list("abcdefgh "), size=n))
        samples.append(
            Sample(
                text=text,
                level=int(rng.integers(0, 6)),
                perturbed=rng.random(n) < 0.3,
                block_start=rng.random(n) < 0.1,
                clean_text=text,
                automaton=PFA0 if i % 2 else None,
            )
        )
    return samples


def _expected_texts(samples: list[Sample], limit: int) -> list[str]:
    """The texts packing must keep: BOS + text + EOS, or BOS + the first limit - 1 characters."""
    return [s.text[: limit - 1] if len(s.text) + 2 > limit else s.text for s in samples]


def check_batch(batch: Batch, expected_texts: list[str], row_length: int) -> None:
    """Every packing invariant; `expected_texts` are the documents that must be in the batch."""
    B, T = batch.input_ids.shape
    assert row_length == T
    for t in (
        batch.targets,
        batch.padding_mask,
        batch.document_ids,
        batch.positions,
        *batch.meta.values(),
    ):
        assert t.shape == (B, T)
    docs = batch.documents
    # the documents are the samples, each once, truncated only when over the limit
    assert sorted(d.text for d in docs) == sorted(expected_texts)
    assert sum(len(d.text) + (1 if d.truncated else 2) for d in docs) == int(batch.padding_mask.sum())
    doc_index, is_text = batch.meta["doc_index"], batch.meta["is_text"]
    assert set(doc_index[batch.padding_mask].tolist()) == set(range(len(docs)))
    assert (doc_index[~batch.padding_mask] == -1).all()
    for i, doc in enumerate(docs):
        where = doc_index == i
        rows = where.any(dim=1).nonzero().flatten().tolist()
        assert len(rows) == 1, "a document must lie in one row"
        r = rows[0]
        cols = where[r].nonzero().flatten()
        a, b = int(cols[0]), int(cols[-1]) + 1
        assert cols.numel() == b - a, "a document must be contiguous"
        assert TOK.decode(batch.input_ids[r, a:b][is_text[r, a:b]]) == doc.text
        assert batch.input_ids[r, a] == TOK.bos_id
        assert (batch.input_ids[r, b - 1] == TOK.eos_id) != doc.truncated
        assert batch.positions[r, a:b].tolist() == list(range(b - a))
        assert len(set(batch.document_ids[r, a:b].tolist())) == 1
        assert batch.targets[r, a : b - 1].tolist() == batch.input_ids[r, a + 1 : b].tolist()
        assert batch.targets[r, b - 1] == IGNORE_INDEX
        text = slice(a + 1, a + 1 + len(doc.text))
        assert is_text[r, text].all() and int(is_text[r, a:b].sum()) == len(doc.text)
        assert np.array_equal(batch.meta["perturbed"][r, a:b].numpy()[is_text[r, a:b].numpy()], doc.perturbed)
        assert np.array_equal(batch.meta["block_start"][r, text].numpy(), doc.block_start)
        assert (batch.meta["level"][r, a:b] == doc.level).all()
        for key in ("num_states", "num_edges", "vocab_size"):
            assert (batch.meta[key][r, a:b] == getattr(doc, key)).all()
        dl = batch.meta["description_length"][r, a:b]
        assert (
            dl.isnan().all()
            if math.isnan(doc.description_length)
            else torch.allclose(dl, torch.tensor(doc.description_length))
        )
    for r in range(B):
        real = batch.padding_mask[r]
        n_real = int(real.sum())
        assert real[:n_real].all() and not real[n_real:].any(), "padding sits at the end of a row"
        ids = batch.document_ids[r]
        assert len(set(ids[:n_real].tolist()) & set(ids[n_real:].tolist())) == 0, "padding has its own document id"
        assert (batch.targets[r, n_real:] == IGNORE_INDEX).all()
        assert (batch.input_ids[r, n_real:] == TOK.pad_id).all()
    assert int((batch.targets != IGNORE_INDEX).sum()) == int(batch.padding_mask.sum()) - len(docs)


def test_pack_level_samples(levels):
    generator = torch.Generator().manual_seed(0)
    samples = [levels.sample(level, generator) for level in (0, 1, 2, 3, 4, 5) * 6]
    batch = pack_samples(samples, TOK, row_length=2048)
    check_batch(batch, _expected_texts(samples, 2048), 2048)
    assert batch.fill_ratio > 0.9


def test_truncation_keeps_bos_drops_eos_and_keeps_metadata(levels):
    samples = [levels.sample(3, torch.Generator().manual_seed(s)) for s in range(5)]
    batch = pack_samples(samples, TOK, row_length=256, max_doc_length=100)
    check_batch(batch, _expected_texts(samples, 100), 256)
    assert all(d.truncated and len(d.text) == 99 for d in batch.documents)
    for doc, original in zip(
        sorted(batch.documents, key=lambda d: d.text),
        sorted(samples, key=lambda s: s.text[:99]),
        strict=True,
    ):
        assert original.text.startswith(doc.text)
        assert doc.automaton is original.automaton and doc.level == original.level


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 300), max_size=30),
    st.integers(2, 400),
    st.integers(2, 400),
    st.integers(0, 3),
)
def test_packing_never_loses_or_duplicates_tokens(lengths, row_length, max_doc_length, seed):
    samples = _synthetic(lengths, seed)
    batch = pack_samples(samples, TOK, row_length)
    check_batch(batch, _expected_texts(samples, row_length), row_length)
    batches = list(PackedBatches(samples, TOK, 2, row_length, max_doc_length=max_doc_length, pool_size=5))
    limit = min(row_length, max_doc_length)
    assert sorted(d.text for b in batches for d in b.documents) == sorted(_expected_texts(samples, limit))
    for b in batches:
        check_batch(b, [d.text for d in b.documents], row_length)


def test_packed_batches_consume_a_finite_stream_exactly_once():
    samples = _synthetic([int(n) for n in np.random.default_rng(1).integers(1, 120, size=200)])
    batches = list(PackedBatches(samples, TOK, batch_size=3, row_length=128, max_doc_length=64, pool_size=10))
    assert all(b.shape == (3, 128) for b in batches)
    documents = [d for b in batches for d in b.documents]
    assert Counter(d.text for d in documents) == Counter(_expected_texts(samples, 64))
    for b in batches:
        check_batch(b, [d.text for d in b.documents], 128)


def test_packed_batches_fill_long_rows(levels):
    batches = PackedBatches(SampleStream(levels, seed=3), TOK, batch_size=8, row_length=2048)
    ratios = [b.fill_ratio for b, _ in zip(batches, range(4), strict=False)]
    assert np.mean(ratios) > 0.9


def test_batch_to_moves_every_tensor(levels):
    batch = pack_samples([levels.sample(1, torch.Generator().manual_seed(0))], TOK, row_length=1024)
    moved = batch.to("meta")
    assert moved.input_ids.device.type == "meta" and all(t.device.type == "meta" for t in moved.meta.values())
    assert moved.documents is batch.documents and batch.input_ids.device.type == "cpu"


def test_data_loader_workers_produce_different_batches(levels):
    dataset = PackedBatches(SampleStream(levels, seed=0), TOK, batch_size=2, row_length=1024)
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    batches = [b for b, _ in zip(loader, range(4), strict=False)]
    assert all(isinstance(b, Batch) and b.shape == (2, 1024) for b in batches)
    texts = [d.text for b in batches for d in b.documents]
    assert len(texts) == len(set(texts)), "two workers produced the same sample"


def test_bad_sizes_are_user_errors(levels):
    with pytest.raises(QPhiError, match="row_length"):
        PackedBatches(SampleStream(levels), TOK, batch_size=0, row_length=512)
    with pytest.raises(QPhiError, match="max_doc_length"):
        PackedBatches(SampleStream(levels), TOK, batch_size=2, row_length=512, max_doc_length=1)


def test_a_text_that_fits_only_without_its_eos_is_marked_truncated():
    samples = _synthetic([1, 3])
    batch = pack_samples(samples, TOK, row_length=4)
    check_batch(batch, _expected_texts(samples, 4), 4)
    assert [d.truncated for d in sorted(batch.documents, key=lambda d: len(d.text))] == [
        False,
        True,
    ]


def test_batches_and_automata_survive_pickling(levels):
    generator = torch.Generator().manual_seed(5)
    batch = pack_samples([levels.sample(level, generator) for level in range(6)], TOK, row_length=2048)
    copy = pickle.loads(pickle.dumps(batch))
    for name in ("input_ids", "targets", "padding_mask", "document_ids", "positions"):
        assert torch.equal(getattr(copy, name), getattr(batch, name))
    for key, value in batch.meta.items():
        assert torch.equal(copy.meta[key].nan_to_num(-7.0), value.nan_to_num(-7.0))
    for a, b in zip(copy.documents, batch.documents, strict=True):
        assert a.text == b.text and a.automaton == b.automaton
        if b.automaton is not None:
            assert a.automaton.sample(torch.Generator().manual_seed(0)) == b.automaton.sample(
                torch.Generator().manual_seed(0)
            )
            assert torch.equal(a.automaton.transition_probs, b.automaton.transition_probs)
