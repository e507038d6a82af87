"""Split one perf test point into shards: pure arithmetic, no Ray, no evalscope."""

from __future__ import annotations

import math
from dataclasses import dataclass

from serve_app.errors import RequestError

UNLIMITED_RATE = -1.0


@dataclass(frozen=True)
class ShardPlan:
    """The share of one test point that one load-generator process sends."""

    index: int
    parallel: int
    number: int
    rate: float  # requests/s of this shard's own Poisson stream; -1 = unlimited
    warmup: int  # requests sent first and left out of the results
    seed: int
    dataset_offset: int  # where this shard starts cycling the prompt set, so shards do not send identical sequences


def split_evenly(total: int, parts: int) -> list[int]:
    """`parts` integers that differ by at most one and sum exactly to `total`."""
    base, remainder = divmod(total, parts)
    return [base + (1 if i < remainder else 0) for i in range(parts)]


def choose_shard_count(
    *,
    parallel: int,
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
    """
    ceiling = min(parallel, number)
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
    needed = math.ceil(parallel / max_parallel_per_shard)
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


def plan_shards(
    *, parallel: int, number: int, rate: float, shards: int, warmup: int = 0, seed: int = 0
) -> list[ShardPlan]:
    """Divide parallel and number so they sum exactly to the point's, and the rate so the shards' rates sum to it.

    Independent Poisson streams at rate/k superpose to one Poisson stream at the full rate.
    """
    parallels = split_evenly(parallel, shards)
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
        )
        for i in range(shards)
    ]
