"""Reproducible, endless streams of level samples, and of packed batches made from them.

Every (seed, rank, data-loader worker) triple gets its own generator, derived with numpy's
`SeedSequence` so that nearby seeds give unrelated streams: several workers and several
processes never produce the same samples, and a restarted iterator replays its stream.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from qphi.errors import QPhiError
from qphi.tasks.levels import LEVEL_NAMES, TRAINING_LEVELS, PFALevels, Sample
from qphi.tasks.packing import Batch, document_length, fit_document, pack_rows
from qphi.tasks.tokenizer import CharTokenizer


def _worker() -> tuple[int, int]:
    """(worker id, number of workers) of the current DataLoader worker; (0, 1) in the main process."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class SampleStream(IterableDataset):
    """Endless samples whose level is drawn from `levels_to_draw` (uniformly, or by `level_weights`).

    The stream of rank r, DataLoader worker w is fixed by (seed, r, w); iterating again starts
    it over.
    """

    def __init__(
        self,
        levels: PFALevels,
        levels_to_draw: Sequence[int] = TRAINING_LEVELS,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        level_weights: Sequence[float] | None = None,
    ) -> None:
        unknown = [lv for lv in levels_to_draw if lv not in LEVEL_NAMES]
        if not levels_to_draw or unknown:
            raise QPhiError(f"levels_to_draw {list(levels_to_draw)} is invalid: choose from {sorted(LEVEL_NAMES)}")
        if seed < 0:
            raise QPhiError(f"seed must be >= 0, got {seed}")
        if not 0 <= rank < world_size:
            raise QPhiError(f"rank {rank} is outside 0..world_size-1 (world_size={world_size})")
        weights = [1.0] * len(levels_to_draw) if level_weights is None else list(level_weights)
        if len(weights) != len(levels_to_draw) or min(weights) < 0 or sum(weights) <= 0:
            raise QPhiError("level_weights must be one non-negative weight per level in levels_to_draw, not all zero")
        self.levels = levels
        self.levels_to_draw = tuple(levels_to_draw)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._weights = torch.tensor(weights, dtype=torch.float64)

    def generator(self) -> torch.Generator:
        """A fresh generator for this (seed, rank, current worker)."""
        worker, _ = _worker()
        state = np.random.SeedSequence([self.seed, self.rank, worker]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def __iter__(self) -> Iterator[Sample]:
        generator = self.generator()
        while True:
            choices = torch.multinomial(self._weights, 256, replacement=True, generator=generator).tolist()
            for choice in choices:
                yield self.levels.sample(self.levels_to_draw[choice], generator)


class PackedBatches(IterableDataset):
    """Batches of shape (batch_size, row_length) packed from a stream of samples.

    Documents wait in a pool of `pool_size`; each row takes the longest waiting document
    that still fits until none does, so short documents fill the gaps. Use with
    `DataLoader(batch_size=None, num_workers=n)`: an `IterableDataset` stream (such as
    `SampleStream`) splits itself across workers; any other iterable is split by position.
    A finite stream ends with its remaining documents in padded batches.
    """

    def __init__(
        self,
        stream: Iterable[Sample],
        tokenizer: CharTokenizer,
        batch_size: int,
        row_length: int,
        max_doc_length: int | None = None,
        pool_size: int | None = None,
    ) -> None:
        if batch_size < 1 or row_length < 2:
            raise QPhiError(f"batch_size must be >= 1 and row_length >= 2, got {batch_size} and {row_length}")
        if max_doc_length is not None and max_doc_length < 2:
            raise QPhiError(f"max_doc_length must be at least 2 tokens (BOS + one character), got {max_doc_length}")
        self.stream = stream
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.row_length = row_length
        self.doc_limit = min(row_length, max_doc_length or row_length)
        self.pool_size = pool_size if pool_size is not None else 8 * batch_size

    def _samples(self) -> Iterator[Sample]:
        if isinstance(self.stream, IterableDataset):
            return iter(self.stream)
        worker, workers = _worker()
        return itertools.islice(iter(self.stream), worker, None, workers)

    def __iter__(self) -> Iterator[Batch]:
        samples = self._samples()
        arrival = itertools.count()
        pool: list[tuple[int, int, Sample]] = []  # (tokens, arrival, document), sorted
        while True:
            rows = []
            for _ in range(self.batch_size):
                for sample in itertools.islice(samples, self.pool_size - len(pool)):
                    doc = fit_document(sample, self.doc_limit)
                    bisect.insort(pool, (document_length(doc), next(arrival), doc))
                row, space = [], self.row_length
                while (i := bisect.bisect_right(pool, (space, float("inf"))) - 1) >= 0:
                    tokens, _, doc = pool.pop(i)
                    row.append(doc)
                    space -= tokens
                rows.append(row)
            if not any(rows):
                return
            yield pack_rows(rows, self.tokenizer, self.row_length)
