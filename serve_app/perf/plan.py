"""Split one perf test point into shards: pure arithmetic (numpy for the arrival schedule), no Ray, no evalscope."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from serve_app.errors import RequestError
from serve_app.perf.arrivals import LoadShape, shard_offsets, split_evenly

UNLIMITED_RATE = -1.0


@dataclass(frozen=True)
class ShardPlan:
    """The share of one test point that one load-generator process sends."""

    index: int
    parallel: int | None  # the most requests in flight; None: no cap (open loop without parallel)
    number: int
    rate: float  # requests/s of this shard's share of the arrivals; -1 = unlimited (as fast as slots free up)
    warmup: int  # requests sent first and left out of the results
    seed: int
    dataset_offset: int  # where this shard starts cycling the prompt set, so shards do not send identical sequences
    shards: int = 1  # of the point: the shard sends its share of the point's schedule (serve_app.perf.arrivals)
    point_warmup: int = 0  # the point's, which the schedule is dealt from
    point_number: int = 0
    shape: LoadShape = LoadShape()
    open_loop: bool = False  # arrivals go out on schedule, whatever is still in flight (up to `parallel` if set)
    stop_on_saturation: bool = False

    def arrival_offsets(self) -> np.ndarray | None:
        """This shard's send offsets from the point's start, warm-up first; None without a rate."""
        if self.rate == UNLIMITED_RATE:
            return None
        return shard_offsets(self.shape, self.rate * self.shards, self.point_warmup, self.point_number, self.index,
                             self.shards, self.seed)


def choose_shard_count(
    *,
    parallel: int | None,
    number: int,
    rate: float,
    requested: int | None,
    max_parallel_per_shard: int,
    max_rate_per_shard: float,
    max_shards: int,
    cluster_cpus: float,
    shard_cpus: float,
) -> int:
    """How many shards a test point runs on.

    An explicit request is honoured as long as every shard still gets at least one request and one slot, and the
    cluster, at its most `cluster_cpus`, could hold them all at once (a shard reserves `shard_cpus`); otherwise the
    count is the smallest one that keeps every shard under the per-shard load limits, capped by what the cluster holds.
    `parallel` None: no cap on what is in flight (an open loop), so only the rate sets the count.
    """
    ceiling = number if parallel is None else min(parallel, number)
    if requested is not None:
        if requested > ceiling:
            raise RequestError(
                f"shards={requested} is more than this test point can use: each shard needs at least one "
                f"concurrent request and one request to send (parallel={parallel}, number={number})"
            )
        if requested > max_shards:
            raise RequestError(f"shards={requested} is over the service limit of {max_shards}")
        if requested > shards_held(cluster_cpus, shard_cpus):
            raise RequestError(
                f"shards={requested} needs {shard_cpus_text(requested, shard_cpus)}, more than the cluster's "
                f"{cluster_cpus:g} CPUs at most (max_cluster_cpus, else the CPUs the cluster has now)"
            )
        return requested
    needed = 1 if parallel is None else math.ceil(parallel / max_parallel_per_shard)
    if rate != UNLIMITED_RATE:
        needed = max(needed, math.ceil(rate / max_rate_per_shard))
    return max(1, min(needed, ceiling, max_shards, shards_held(cluster_cpus, shard_cpus)))


def shards_held(cluster_cpus: float, shard_cpus: float) -> int:
    """How many shards of `shard_cpus` CPUs each fit in `cluster_cpus` (with slack for sums like 3 x 0.1)."""
    return math.floor(cluster_cpus / shard_cpus + 1e-9)


def shard_cpus_text(shards: int, shard_cpus: float) -> str:
    return f"{shards * shard_cpus:g} CPUs ({shards} shards x perf_shard_num_cpus={shard_cpus:g})"


def unplaceable_message(shards: int, shard_cpus: float, free_cpus: float, total_cpus: float, waited_s: float) -> str:
    """Why a test point's job failed when its shards found no room together within placement_timeout_s."""
    return (
        f"the cluster could not place this test point's shards within placement_timeout_s={waited_s:g} s: they need "
        f"{shard_cpus_text(shards, shard_cpus)} at once, and {free_cpus:g} of the cluster's {total_cpus:g} CPUs "
        "are free (other jobs or workers hold the rest)"
    )


def point_schedule(plans: list[ShardPlan]) -> np.ndarray | None:
    """The measured arrivals the point as a whole was asked to send (the union of its shards' schedules, sorted);
    None without a rate."""
    offsets = [plan.arrival_offsets() for plan in plans]
    if any(shard is None for shard in offsets):
        return None
    return np.sort(np.concatenate([shard[plan.warmup:] for plan, shard in zip(plans, offsets)]))


def plan_shards(
    *, parallel: int | None, number: int, rate: float, shards: int, warmup: int = 0, seed: int = 0,
    shape: LoadShape = LoadShape(), open_loop: bool = False, stop_on_saturation: bool = False,
) -> list[ShardPlan]:
    """Divide parallel and number so they sum exactly to the point's, and the rate so the shards' rates sum to it;
    each shard sends its share of the point's arrival schedule (serve_app.perf.arrivals: how each shape splits)."""
    parallels = [None] * shards if parallel is None else split_evenly(parallel, shards)
    numbers = split_evenly(number, shards)
    warmups = split_evenly(warmup, shards)
    shard_rate = UNLIMITED_RATE if rate == UNLIMITED_RATE else rate / shards
    offsets = [sum(numbers[:i]) for i in range(shards)]
    return [
        ShardPlan(
            index=i,
            parallel=parallels[i],
            number=numbers[i],
            rate=shard_rate,
            warmup=warmups[i],
            seed=seed + i,
            dataset_offset=offsets[i],
            shards=shards,
            point_warmup=warmup,
            point_number=number,
            shape=shape,
            open_loop=open_loop,
            stop_on_saturation=stop_on_saturation,
        )
        for i in range(shards)
    ]
