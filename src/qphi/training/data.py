"""What a run trains on and how it is evaluated: a `DataSource`.

Training batches are a pure function of (seed, step, row): row i of the global batch at
step s is filled from its own random generator, seeded by (seed, s, i). So the data never
depends on how many processes or loader workers share the work, a resumed run sees exactly
the batches an uninterrupted run would have seen, and each process builds only its rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from qphi.evaluation.code_stream import code_stream_observer
from qphi.evaluation.codebook_health import CodebookHealth
from qphi.evaluation.pfa_levels import LevelResults, evaluate_levels
from qphi.models import PHiModel
from qphi.seeding import mix_seed
from qphi.tasks import Batch, CharTokenizer, PFALevels, Sample, pack_rows
from qphi.tasks.packing import document_length, fit_document
from qphi.training.config import RunConfig

MIN_TAIL = 16  # a row's last document is kept if at least this many tokens fit


class Evaluation(Protocol):
    """A source's evaluation of a model at a step: a typed result written as eval.json, whose
    `levels` (one dataclass of numbers per level) the metrics log records too."""

    step: int
    levels: Mapping[str, object]
    codebook_health: CodebookHealth | None


class DataSource(Protocol):
    def batches(self, first_row: int, rows: int) -> Dataset:
        """`dataset[step]`: rows [first_row, first_row + rows) of the global batch of `step`."""

    def evaluate(self, model: PHiModel, device: torch.device, step: int) -> Evaluation:
        """The evaluation of `model` (trained for `step` steps) that eval.json records."""


def build_source(config: RunConfig) -> DataSource:
    if config.data.source == "pfa":
        return PFASource(config)
    if config.data.source == "mixture":
        from qphi.training.mixture import MixtureSource

        return MixtureSource(config)
    raise NotImplementedError(f"data source '{config.data.source}'")


class PFASource:
    """The PFA learning levels (SPEC §4.2) for the character-level models."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.levels = PFALevels(config.data.pfa)
        self.tokenizer = CharTokenizer()

    def batches(self, first_row: int, rows: int) -> Dataset:
        return PFABatches(self.config, self.levels, self.tokenizer, first_row, rows)

    def evaluate(self, model: PHiModel, device: torch.device, step: int) -> LevelResults:
        observer = code_stream_observer(model.phi.config.stage_sizes)
        evaluation = evaluate_levels(
            model, self.levels, self.tokenizer, self.config.eval, self.config.data.row_length, device, observer
        )
        return LevelResults(
            step=step,
            bottleneck=self.config.phi.bottleneck.name,
            levels=evaluation.summary(),
            codebook_health=observer.health_summary() if observer else None,
        )


class PFABatches(Dataset):
    def __init__(self, config: RunConfig, levels: PFALevels, tokenizer: CharTokenizer, first_row: int, rows: int):
        self.config = config
        self.levels = levels
        self.tokenizer = tokenizer
        self.first_row = first_row
        self.rows = rows

    def __len__(self) -> int:
        return self.config.train.steps

    def row_samples(self, step: int, row: int) -> list[Sample]:
        """Whole documents while they fit; the first that does not is truncated to the space left
        (unless that is under MIN_TAIL tokens). Without packing, one (truncated) document."""
        data = self.config.data
        limit = min(data.row_length, data.max_doc_length or data.row_length)
        generator = torch.Generator().manual_seed(mix_seed(self.config.train.seed, step, row))
        space, samples = data.row_length, []
        while space >= MIN_TAIL:
            level = data.levels[int(torch.randint(len(data.levels), (), generator=generator))]
            sample = fit_document(self.levels.sample(level, generator), min(limit, space))
            samples.append(sample)
            space -= document_length(sample)
            if not data.pack or sample.truncated:
                break
        return samples

    def __getitem__(self, step: int) -> Batch:
        rows = [self.row_samples(step, self.first_row + i) for i in range(self.rows)]
        return pack_rows(rows, self.tokenizer, self.config.data.row_length)


def split_rows(batch: Batch, parts: int) -> list[Batch]:
    """Micro-batches of consecutive rows, each with its own documents (for gradient accumulation)."""
    if parts == 1:
        return [batch]
    chunks = []
    for rows in torch.arange(batch.shape[0]).chunk(parts):
        piece = batch._map(lambda t, rows=rows: t[rows])
        docs = piece.meta["doc_index"]
        first = int(docs[docs >= 0].min()) if bool((docs >= 0).any()) else 0
        piece.meta["doc_index"] = torch.where(docs >= 0, docs - first, docs)
        piece.documents = batch.documents[first : int(docs.max()) + 1]
        chunks.append(piece)
    return chunks


def training_loader(dataset: Dataset, start: int, num_workers: int) -> DataLoader:
    """Batches for steps start, start+1, … (each worker builds whole steps)."""
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=range(start, len(dataset)),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers else None,
    )
