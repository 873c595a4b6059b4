"""Statistics of the experiments: correlations, partial correlations, bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from qphi.io import FloatOrNaN


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap 95 % interval (percentile method).

    n: rows the statistic is computed on; clusters: how many groups of rows were resampled
    (None: rows were resampled one by one); nonfinite: resamples whose statistic was not finite
    (e.g. a correlation of a constant), left out of the interval and counted here so that an
    interval resting on few resamples shows."""

    value: FloatOrNaN
    low: FloatOrNaN
    high: FloatOrNaN
    n: int
    clusters: int | None = None
    nonfinite: int = 0

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def residualize(y: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """y minus its least-squares fit on the controls plus a bias."""
    design = np.column_stack([np.ones(len(y)), controls.reshape(len(y), -1)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ coef


def partial_correlation(x: np.ndarray, y: np.ndarray, controls: np.ndarray) -> float:
    """Pearson correlation of x and y after regressing both on the controls (+ bias)."""
    return float(stats.pearsonr(residualize(x, controls), residualize(y, controls))[0])


def _cluster_draws(clusters: np.ndarray, rng: np.random.Generator) -> tuple[int, Callable[[], np.ndarray]]:
    """The number of clusters and a function drawing one resample's row indices: as many clusters
    as there are, with replacement, each contributing all its rows (a cluster drawn twice twice)."""
    order = np.argsort(clusters, kind="stable")  # rows grouped by cluster
    _, starts, sizes = np.unique(clusters[order], return_index=True, return_counts=True)

    def draw() -> np.ndarray:
        picks = rng.integers(0, len(sizes), len(sizes))
        lengths = sizes[picks]
        # row j of the resample is row (j - first row of its pick in the resample) of that pick's cluster
        shift = starts[picks] - (np.cumsum(lengths) - lengths)
        return order[np.repeat(shift, lengths) + np.arange(lengths.sum())]

    return len(sizes), draw


def bootstrap(
    statistic: Callable[..., float],
    *arrays: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    clusters: np.ndarray | None = None,
) -> Estimate:
    """`statistic(*arrays)` and its 95 % percentile interval over `resamples` resamples.

    The arrays (n rows each) are resampled together, so paired structure is kept. Without
    `clusters` the rows are drawn independently; with `clusters` (n labels, e.g. the question
    each rationale answers) whole clusters are drawn, which keeps the interval honest when rows
    of a cluster are correlated. Non-finite resampled statistics are counted in `nonfinite`."""
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    if clusters is None:
        n_clusters, draw = None, lambda: rng.integers(0, n, n)
    else:
        labels = np.asarray(clusters)
        if labels.shape != (n,):
            raise ValueError(f"clusters has shape {labels.shape}, the arrays have {n} rows")
        n_clusters, draw = _cluster_draws(labels, rng)
    values = np.array([statistic(*(a[index] for a in arrays)) for index in (draw() for _ in range(resamples))])
    finite = values[np.isfinite(values)]
    low, high = np.percentile(finite, [2.5, 97.5]) if finite.size else (np.nan, np.nan)
    return Estimate(
        value=float(statistic(*arrays)),
        low=float(low),
        high=float(high),
        n=n,
        clusters=n_clusters,
        nonfinite=int(resamples - finite.size),
    )


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.pearsonr(x, y)[0])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.spearmanr(x, y)[0])
