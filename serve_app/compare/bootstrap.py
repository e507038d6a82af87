"""The paired bootstrap: how sure a score difference between two runs over the same samples is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0  # fixed: the same two jobs always get the same interval
_CELLS_PER_CHUNK = 4_000_000  # counts or indices drawn at once (32 MB of int64)
_FEW_VALUES = 16  # a multinomial costs per value and draw: below this, far less than drawing every index


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
    values, frequencies = np.unique(differences, return_counts=True)
    few = len(values) <= _FEW_VALUES
    chunk = max(1, _CELLS_PER_CHUNK // (len(values) if few else count))
    means = np.concatenate([
        # Drawing n pairs with replacement is drawing how often each distinct difference comes up: a multinomial
        # over the few distinct values (at most -1, 0 and 1 for right/wrong scores), however many samples there are;
        # with many distinct values (continuous scores), drawing the pairs' indices is cheaper.
        rng.multinomial(count, frequencies / count, size=size) @ values / count if few
        else differences[rng.integers(0, count, size=(size, count), dtype=np.int32)].mean(axis=1)
        for size in (min(chunk, resamples - start) for start in range(0, resamples, chunk))
    ])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(differences.mean()), float(low), float(high))
