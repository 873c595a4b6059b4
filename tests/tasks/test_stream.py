"""Sample streams: reproducible per (seed, rank, worker), distinct across them, levels mixed as asked."""

from __future__ import annotations

from collections import Counter

import pytest
from scipy import stats
from torch.utils.data import DataLoader

from qphi.errors import QPhiError
from qphi.tasks import SampleStream


def _texts(stream: SampleStream, n: int) -> list[str]:
    return [s.text for s, _ in zip(stream, range(n), strict=False)]


def test_stream_replays_and_differs_by_seed_and_rank(levels):
    first = _texts(SampleStream(levels, seed=1), 20)
    assert _texts(SampleStream(levels, seed=1), 20) == first
    others = [SampleStream(levels, seed=2), SampleStream(levels, seed=1, rank=1, world_size=2)]
    for other in others:
        assert not set(_texts(other, 20)) & set(first)


def test_levels_are_mixed_uniformly(levels):
    counts = Counter(
        s.level for s, _ in zip(SampleStream(levels, levels_to_draw=(0, 1, 3, 4)), range(800), strict=False)
    )
    assert sorted(counts) == [0, 1, 3, 4]
    assert stats.chisquare(list(counts.values())).pvalue > 1e-4


def test_level_weights(levels):
    stream = SampleStream(levels, levels_to_draw=(1, 4), level_weights=(0.0, 1.0))
    assert {s.level for s, _ in zip(stream, range(30), strict=False)} == {4}


def test_workers_get_different_streams(levels):
    loader = DataLoader(SampleStream(levels, seed=0), batch_size=None, num_workers=2)
    texts = [s.text for s, _ in zip(loader, range(40), strict=False)]
    assert len(set(texts)) == len(texts)
    # the loader alternates workers; worker 0 replays the main process's stream of the same seed
    assert texts[0::2] == _texts(SampleStream(levels, seed=0), 20)


def test_bad_stream_arguments_are_user_errors(levels):
    with pytest.raises(QPhiError, match="levels_to_draw"):
        SampleStream(levels, levels_to_draw=(0, 9))
    with pytest.raises(QPhiError, match="rank"):
        SampleStream(levels, rank=2, world_size=2)
    with pytest.raises(QPhiError, match="level_weights"):
        SampleStream(levels, levels_to_draw=(0, 1), level_weights=(1.0,))
