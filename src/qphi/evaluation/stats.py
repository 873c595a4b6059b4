"""Statistics of the experiments: correlations, partial correlations, bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap 95 % interval (percentile method)."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def residualize(y: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """y minus its least-squares fit on the controls plus a bias."""
    design = np.column_stack([np.ones(len(y)), controls.reshape(len(y), -1)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ coef


def partial_correlation(x: np.ndarray, y: np.ndarray, controls: np.ndarray) -> float:
    """Pearson correlation of x and y after regressing both on the controls (+ bias)."""
    return float(stats.pearsonr(residualize(x, controls), residualize(y, controls))[0])


def bootstrap(statistic: Callable[..., float], *arrays: np.ndarray, resamples: int = 1000, seed: int = 0) -> Estimate:
    """`statistic(*arrays)` and its 95 % percentile interval over `resamples` resamples of the
    rows (the arrays are resampled together, so paired structure is kept)."""
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        index = rng.integers(0, n, n)
        value = statistic(*(a[index] for a in arrays))
        if np.isfinite(value):
            values.append(value)
    low, high = np.percentile(values, [2.5, 97.5]) if values else (np.nan, np.nan)
    return Estimate(value=float(statistic(*arrays)), low=float(low), high=float(high), n=n)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.pearsonr(x, y)[0])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.spearmanr(x, y)[0])
