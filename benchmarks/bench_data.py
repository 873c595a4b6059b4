"""Throughput of the PFA data pipeline against what training consumes.

Measures, side by side: sample generation per level, generation + packing in one process,
and the same through a DataLoader with worker processes; prints each rate beside the
consumption of the `cpu` and `paper` training shapes, and the fill ratio of the packing.

    PYTHONPATH=src python benchmarks/bench_data.py [--seconds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import itertools
import pickle
import time
from multiprocessing.reduction import ForkingPickler

import torch
from torch.utils.data import DataLoader

from qphi.tasks import (
    LEVEL_NAMES,
    TRAINING_LEVELS,
    CharTokenizer,
    LevelConfig,
    PackedBatches,
    PFALevels,
    SampleStream,
)

# (batch, row length, steps per second): the cpu preset's 16 rows × 256 tokens at a generous
# 7 steps/s (bench_train.py: 0.15 s per step for the compiled model without PHi layer on two cores);
# the paper shape's pace depends on the GPU, so the pipeline's rate is reported as steps/s it can feed
PRESETS = {"cpu": (16, 256, 7.0), "paper": (16, 2048, None)}


def _timed(iterator, seconds: float) -> tuple[int, float, list]:
    """Draw from `iterator` for about `seconds`; (items, elapsed seconds, items)."""
    items = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        items.append(next(iterator))
    return len(items), time.perf_counter() - start, items


def bench_levels(levels: PFALevels, seconds: float) -> None:
    print("generation per level (one process)")
    generator = torch.Generator().manual_seed(0)
    for level, name in LEVEL_NAMES.items():
        n, elapsed, samples = _timed(iter(lambda lv=level: levels.sample(lv, generator), None), seconds / 3)
        chars = sum(len(s.text) for s in samples)
        print(f"  level {level} {name:<32} {n / elapsed:9.0f} samples/s {chars / elapsed / 1e3:8.0f} k chars/s")


def bench_batches(levels: PFALevels, batch: int, row: int, max_doc: int | None, workers: int, seconds: float) -> float:
    """Positions (batch x row per batch) per second of packed batches; returns that rate."""
    dataset = PackedBatches(SampleStream(levels, seed=0), CharTokenizer(), batch, row, max_doc_length=max_doc)
    if workers:
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=workers,
            persistent_workers=False,
            prefetch_factor=4,
        )
        iterator = iter(loader)
        next(iterator)  # start-up of the workers is not throughput
    else:
        iterator = iter(dataset)
    n, elapsed, batches = _timed(iterator, seconds)
    real = sum(int(b.padding_mask.sum()) for b in batches)
    documents = sum(len(b.documents) for b in batches)
    fill = real / (n * batch * row)
    rate = n * batch * row / elapsed
    where = f"{workers} workers" if workers else "one process"
    print(
        f"  ({batch}, {row}) max_doc={max_doc}, {where:<11}: {n / elapsed:7.1f} batches/s "
        f"{documents / elapsed:8.0f} samples/s {rate / 1e3:7.0f} k positions/s {real / elapsed / 1e3:7.0f} k real tokens/s  fill {fill:.3f}"
    )
    return rate


def bench_transfer(levels: PFALevels, batch: int = 16, row: int = 2048, repeats: int = 10) -> None:
    """Worker-to-main cost of one batch: Batch pickles its tensors as arrays (through the pipe);
    torch's default for tensors moves each storage into a new shared-memory block."""
    batches = list(itertools.islice(iter(PackedBatches(SampleStream(levels), CharTokenizer(), batch, row)), repeats))
    as_tensors = [{**vars(b), "meta": dict(b.meta), "documents": None} for b in batches]
    print(f"transfer of one ({batch}, {row}) batch between processes (pickle + unpickle, documents included)")
    for name, objects in (
        ("Batch, tensors as arrays", batches),
        ("torch shared-memory tensors", as_tensors),
    ):
        start = time.perf_counter()
        for obj in objects:
            buffer = io.BytesIO()
            ForkingPickler(buffer).dump(obj)
            pickle.loads(buffer.getvalue())
        print(f"  {name:<28}: {(time.perf_counter() - start) / repeats * 1e3:6.1f} ms")


def bench_fill(levels: PFALevels, batch: int = 16) -> None:
    """Fill ratio and truncated share by row shape and pool size (documents waiting to be placed)."""
    print(f"fill ratio of {batch} rows (10 batches each)")
    shapes = [(384, None), (512, None), (512, 384), (1024, None), (2048, None)]
    configs = [(row, max_doc, 8 * batch) for row, max_doc in shapes]
    configs += [(2048, None, pool) for pool in (batch, 4 * batch, 32 * batch)]
    for row, max_doc, pool in configs:
        stream = SampleStream(levels, seed=1)
        dataset = PackedBatches(stream, CharTokenizer(), batch, row, max_doc_length=max_doc, pool_size=pool)
        batches = list(itertools.islice(iter(dataset), 10))
        fill = sum(b.fill_ratio for b in batches) / len(batches)
        documents = [d for b in batches for d in b.documents]
        truncated = sum(d.truncated for d in documents) / len(documents)
        print(
            f"  row {row:4d} max_doc {max_doc!s:>4} pool {pool:3d}: fill {fill:.3f}, {truncated:5.1%} of documents truncated"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per configuration")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the multi-process run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    levels = PFALevels(LevelConfig())
    print(f"levels drawn: {TRAINING_LEVELS}, torch threads 1\n")
    bench_levels(levels, args.seconds)
    print("\ngeneration + packing")
    for preset, (batch, row, steps_per_s) in PRESETS.items():
        max_doc = None
        single = bench_batches(levels, batch, row, max_doc, 0, args.seconds)
        multi = bench_batches(levels, batch, row, max_doc, args.workers, args.seconds)
        per_step = batch * row
        if steps_per_s is not None:
            need = per_step * steps_per_s
            print(
                f"  {preset} preset consumes {per_step} tokens/step x {steps_per_s} steps/s = {need / 1e3:.0f} k tokens/s: "
                f"one process supplies {single / need:.1f}x, {args.workers} workers {multi / need:.1f}x"
            )
        else:
            print(
                f"  {preset} preset consumes {per_step} tokens/step: one process feeds {single / per_step:.1f} steps/s, "
                f"{args.workers} workers {multi / per_step:.1f} steps/s (10x headroom up to "
                f"{multi / per_step / 10:.2f} steps/s; add workers to scale)"
            )
    print()
    bench_transfer(levels)
    print()
    bench_fill(levels)


if __name__ == "__main__":
    main()
