"""Packing variable-length samples into fixed-length rows.

Each document is tokenised as BOS + text + EOS and placed whole in one row; rows are filled
with several documents and padded at the end. Models keep documents apart with
`document_ids` (block-diagonal attention) and `positions` (restarting at 0 per document);
losses skip positions whose target is `IGNORE_INDEX`.

A document longer than the limit (the row, or `max_doc_length`) keeps its BOS and the first
limit − 1 characters and gets no EOS: the block did not end there, and an EOS would teach
the model that blocks stop mid-sequence. Its `Sample` is replaced by the truncated one, so
`documents[i].text` is always exactly the text in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor

from qphi.errors import QPhiError
from qphi.tasks.levels import Sample
from qphi.tasks.tokenizer import CharTokenizer

IGNORE_INDEX = -100


@dataclass
class Batch:
    """A packed batch; every tensor is (B, T).

    input_ids, targets (next token of the same document, IGNORE_INDEX where there is none),
    padding_mask (True at real tokens), document_ids (0.. per document within a row; the
    padding of a row has the id after its last document), positions (0.. per document, and
    0.. over the padding).
    meta: level (-1 on padding), perturbed, block_start, num_states, num_edges, vocab_size
    (-1 without an automaton), description_length (float32, NaN without an automaton),
    doc_index (into `documents`, -1 on padding), is_text (False on BOS/EOS/padding).
    BOS and EOS carry their document's level and automaton metadata.
    """

    input_ids: Tensor
    targets: Tensor
    padding_mask: Tensor
    document_ids: Tensor
    positions: Tensor
    meta: dict[str, Tensor]
    documents: list[Sample]

    def _map(self, fn) -> Batch:
        tensors = {f.name: fn(getattr(self, f.name)) for f in fields(self) if f.name not in ("meta", "documents")}
        return replace(self, **tensors, meta={k: fn(v) for k, v in self.meta.items()})

    def __reduce__(self) -> tuple:
        """Pickle the tensors as numpy arrays, which DataLoader workers send through their pipe.

        Torch would move each of the fourteen tensors into a new shared-memory block instead,
        which takes about twice as long (benchmarks/bench_data.py measures both).
        """
        arrays = self._map(lambda t: t.detach().cpu().numpy())
        return (_batch_from_arrays, (vars(arrays),))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True)."""
        return self._map(lambda t: t.pin_memory())

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)

    @property
    def fill_ratio(self) -> float:
        """Fraction of positions holding real tokens."""
        return float(self.padding_mask.float().mean())


def _batch_from_arrays(fields: dict) -> Batch:
    return Batch(**fields)._map(torch.from_numpy)


def document_length(sample: Sample) -> int:
    """Tokens the sample takes in a row: BOS + text (+ EOS unless truncated)."""
    return len(sample.text) + (1 if sample.truncated else 2)


def fit_document(sample: Sample, limit: int) -> Sample:
    """The sample, truncated (BOS + first limit − 1 characters, no EOS) if it takes more than `limit` tokens."""
    if limit < 2:
        raise QPhiError(f"row_length / max_doc_length must be at least 2 tokens, got {limit}")
    return sample if document_length(sample) <= limit else sample.truncate(limit - 1)


_INT_FIELDS = (
    "input_ids",
    "targets",
    "document_ids",
    "positions",
    "level",
    "num_states",
    "num_edges",
    "vocab_size",
    "doc_index",
)
_BOOL_FIELDS = ("padding_mask", "perturbed", "block_start", "is_text")
_MAIN_FIELDS = ("input_ids", "targets", "padding_mask", "document_ids", "positions")


def _empty_fields(shape: tuple[int, int], pad_id: int) -> dict[str, Tensor]:
    """Every field of a batch, filled as padding."""
    fields = {name: torch.full(shape, -1, dtype=torch.int64) for name in _INT_FIELDS}
    fields |= {name: torch.zeros(shape, dtype=torch.bool) for name in _BOOL_FIELDS}
    fields["description_length"] = torch.full(shape, math.nan, dtype=torch.float32)
    fields["input_ids"].fill_(pad_id)
    fields["targets"].fill_(IGNORE_INDEX)
    return fields


def pack_rows(rows: Sequence[Sequence[Sample]], tokenizer: CharTokenizer, row_length: int) -> Batch:
    """Lay out the given documents, row by row in the given order; each row must fit."""
    tensors = _empty_fields((len(rows), row_length), tokenizer.pad_id)
    a = {name: t.numpy() for name, t in tensors.items()}  # views for fast slice assignment
    ramp = np.arange(row_length)
    documents: list[Sample] = []
    for r, row in enumerate(rows):
        start = 0
        for j, doc in enumerate(row):
            text_ids = tokenizer.encode_array(doc.text)
            end = start + document_length(doc)
            if end > row_length:
                raise ValueError(f"row {r} holds {end} tokens, more than row_length={row_length}")
            text = slice(start + 1, start + 1 + text_ids.size)
            span = slice(start, end)
            a["input_ids"][r, start] = tokenizer.bos_id
            a["input_ids"][r, text] = text_ids
            if not doc.truncated:
                a["input_ids"][r, end - 1] = tokenizer.eos_id
            a["targets"][r, start : end - 1] = a["input_ids"][r, start + 1 : end]
            a["padding_mask"][r, span] = True
            a["document_ids"][r, span] = j
            a["positions"][r, span] = ramp[: end - start]
            a["level"][r, span] = doc.level
            a["perturbed"][r, text] = doc.perturbed
            a["block_start"][r, text] = doc.block_start
            a["num_states"][r, span] = doc.num_states
            a["num_edges"][r, span] = doc.num_edges
            a["vocab_size"][r, span] = doc.vocab_size
            a["description_length"][r, span] = doc.description_length
            a["doc_index"][r, span] = len(documents)
            a["is_text"][r, text] = True
            documents.append(doc)
            start = end
        a["document_ids"][r, start:] = len(row)
        a["positions"][r, start:] = ramp[: row_length - start]
    return Batch(**{name: tensors.pop(name) for name in _MAIN_FIELDS}, meta=tensors, documents=documents)


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group item indices into bins of `capacity`: longest first, each into the first bin it fits."""
    bins: list[list[int]] = []
    space: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b, free in enumerate(space):
            if lengths[i] <= free:
                bins[b].append(i)
                space[b] -= lengths[i]
                break
        else:
            bins.append([i])
            space.append(capacity - lengths[i])
    return bins


def pack_samples(
    samples: Sequence[Sample],
    tokenizer: CharTokenizer,
    row_length: int,
    max_doc_length: int | None = None,
) -> Batch:
    """Pack all samples into as few rows as first-fit-decreasing finds (at least one row)."""
    limit = min(row_length, max_doc_length or row_length)
    docs = [fit_document(s, limit) for s in samples]
    plan = first_fit_decreasing([document_length(d) for d in docs], row_length) or [[]]
    return pack_rows([[docs[i] for i in row] for row in plan], tokenizer, row_length)
