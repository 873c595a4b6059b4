"""Bootstrap intervals: whole clusters are resampled, their width follows the clusters' spread,
and resamples without a finite statistic are counted."""

from __future__ import annotations

import numpy as np
import pytest

from qphi.evaluation.stats import bootstrap


def test_a_cluster_resample_holds_whole_clusters():
    """Every resample, as `statistic` sees it, consists of whole clusters, as many as there are."""
    sizes = np.array([1, 4, 2, 7, 3])
    labels = np.repeat(np.arange(len(sizes)) * 10, sizes)  # labels need not be 0..k-1 nor sorted
    order = np.random.default_rng(0).permutation(labels.size)
    labels = labels[order]
    seen = []

    def record(rows: np.ndarray) -> float:
        seen.append(rows)
        return float(rows.mean())

    bootstrap(record, labels.astype(float), resamples=200, seed=1, clusters=labels)
    for rows in seen[:-1]:  # the last call is the statistic of the data itself
        counts = {label: int((rows == label).sum()) for label in np.unique(rows)}
        picks = {label: count / sizes[int(label) // 10] for label, count in counts.items()}
        assert all(p == int(p) for p in picks.values()), picks
        assert sum(picks.values()) == len(sizes)


def test_cluster_intervals_follow_the_spread_of_cluster_means():
    """Rows of a cluster share its effect: the row bootstrap's interval of the mean shrinks with
    the rows per cluster (too narrow), the cluster bootstrap's matches the standard error of the
    cluster means, computed directly."""
    rng = np.random.default_rng(3)
    k, size = 40, 25
    effects = rng.normal(size=k)
    labels = np.repeat(np.arange(k), size)
    values = effects[labels] + 0.1 * rng.normal(size=k * size)
    clustered = bootstrap(np.mean, values, resamples=2000, seed=0, clusters=labels)
    rows = bootstrap(np.mean, values, resamples=2000, seed=0)
    cluster_means = values.reshape(k, size).mean(1)
    expected = 2 * 1.96 * cluster_means.std(ddof=1) / np.sqrt(k)
    assert clustered.high - clustered.low == pytest.approx(expected, rel=0.15)
    assert rows.high - rows.low < 0.4 * expected
    assert (clustered.n, clustered.clusters, rows.clusters) == (k * size, k, None)
    assert clustered.value == rows.value == pytest.approx(values.mean())


def test_non_finite_resamples_are_counted_and_left_out():
    """A statistic undefined whenever row 0 is drawn: the count equals the resamples that drew it
    (the same draws, replayed), and the interval comes from the others."""
    values = np.arange(10.0)
    estimate = bootstrap(lambda v: np.nan if 0.0 in v else v.mean(), values, resamples=300, seed=5)
    rng = np.random.default_rng(5)
    expected = sum(0 in rng.integers(0, 10, 10) for _ in range(300))
    assert estimate.nonfinite == expected and 0 < expected < 300
    assert 1.0 <= estimate.low <= estimate.high <= 9.0
    nothing = bootstrap(lambda v: np.nan, values, resamples=20)
    assert nothing.nonfinite == 20 and np.isnan(nothing.low) and np.isnan(nothing.high)
