"""When each request of a test point is sent: the point's arrival schedule, split over its shards.

Pure arithmetic (numpy), no evalscope: the shards and the coordinator compute the same schedule from the same
seeds, the shards to send on it and the coordinator to judge the sends against it (serve_app.perf.saturation).

evalscope draws only Poisson arrivals, inside its strategies. Every shape here becomes a list of send offsets that
the shard hands to evalscope's open-loop strategy as the per-request arrival offsets its trace replay already
honours (serve_app.perf.runner), so evalscope still dispatches, times and records every request.

Offsets count from the point's start instant, shared by every shard. The offsets a stream would have without a ramp
are warped by the ramp: the rate rises linearly from 0 to `rate` over `ramp_up_s`, so the
expected arrivals by time t are rate * t^2 / (2 * ramp_up_s) during the ramp, and a stationary stream warped
through the inverse of that has exactly that intensity (each shard ramps, so their sum does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Arrival = Literal["poisson", "constant", "gamma"]


@dataclass(frozen=True)
class LoadShape:
    """How a rate is delivered: the distribution of the gaps between arrivals, and a linear ramp at the start."""

    arrival: Arrival = "poisson"
    burstiness: float = 1.0  # gamma's shape: 1 is Poisson, below 1 burstier, above 1 more regular (as vLLM's bench)
    ramp_up_s: float = 0.0


def split_evenly(total: int, parts: int) -> list[int]:
    """`parts` integers that differ by at most one and sum exactly to `total`."""
    base, remainder = divmod(total, parts)
    return [base + (1 if i < remainder else 0) for i in range(parts)]


def shard_offsets(shape: LoadShape, rate: float, warmup: int, number: int, shard: int, shards: int,
                  seed: int) -> np.ndarray:
    """Send offsets (s from the point's start) of shard `shard`'s warm-up requests, then its measured ones.

    Constant: the point's arrivals fall every 1/rate s and shard i takes every k-th of them starting at the i-th
    (warm-up slots, then measured slots, each dealt round-robin, which gives each shard exactly split_evenly's
    share), so the shards' phases are offset and their union is evenly spaced. Poisson and gamma: each shard draws
    its own stream at rate/k from its seed; independent Poisson streams sum to a Poisson stream at the full rate,
    and gamma streams sum to the full rate with their burstiness softened (a superposition tends to Poisson).
    Like evalscope's own draw, a random stream is rescaled so that its last arrival falls where its count at its
    rate says, so the achieved rate is the one asked for and not the sample's.
    """
    warmups, numbers = split_evenly(warmup, shards)[shard], split_evenly(number, shards)[shard]
    count = warmups + numbers
    if count == 0:
        return np.empty(0)
    if shape.arrival == "constant":
        slots = np.concatenate([np.arange(shard, warmup, shards), warmup + np.arange(shard, number, shards)])
        unramped = (slots + 1) / rate
    else:
        shard_rate = rate / shards
        rng = np.random.default_rng(seed)
        if shape.arrival == "gamma":
            gaps = rng.gamma(shape.burstiness, 1.0 / (shard_rate * shape.burstiness), count)
        else:
            gaps = rng.exponential(1.0 / shard_rate, count)
        stream = np.cumsum(gaps)
        unramped = stream * (count / shard_rate / stream[-1]) if stream[-1] > 0 else stream
    return ramp_warp(unramped, shape.ramp_up_s)


def ramp_warp(unramped: np.ndarray, ramp_up_s: float) -> np.ndarray:
    """The offsets of arrivals that would fall at `unramped` at the full rate, under a linear ramp: during the ramp
    t is sqrt(2 * ramp_up_s * u) (the arrivals expected by t are rate * t^2 / (2 * ramp_up_s)), after it the stream
    runs at the full rate, ramp_up_s / 2 behind (the ramp delivers half the arrivals the full rate would)."""
    if ramp_up_s <= 0:
        return unramped
    half = ramp_up_s / 2
    return np.where(unramped <= half, np.sqrt(2 * ramp_up_s * np.minimum(unramped, half)), unramped + half)
