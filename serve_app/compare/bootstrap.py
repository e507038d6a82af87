"""The paired bootstrap: how sure a score difference between two runs over the same samples is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0  # fixed: the same two jobs always get the same interval
_CELLS_PER_CHUNK = 4_000_000  # resampled indices drawn at once (32 MB of int64), whatever the sample count


@dataclass(frozen=True)
class Interval:
    difference: float  # mean of candidate - baseline over the paired samples
    low: float
    high: float

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no significant change"


def paired_bootstrap(baseline: np.ndarray, candidate: np.ndarray, resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = SEED) -> Interval:
    """The mean paired difference and its percentile interval: samples are resampled with replacement as pairs,
    so what both runs found hard or easy cancels out."""
    differences = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    count = len(differences)
    if count == 0:
        raise ValueError("a paired bootstrap needs at least one paired sample")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // count)
    means = np.concatenate([
        differences[rng.integers(0, count, size=(min(chunk, resamples - start), count))].mean(axis=1)
        for start in range(0, resamples, chunk)
    ])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(differences.mean()), float(low), float(high))
