"""A perf test point's CPUs, reserved for all its shards at once before any starts (Ray glue).

One placement group per point, a bundle of `perf_shard_num_cpus` per shard: Ray places every bundle or none, so two
jobs that together need more than the cluster has never each hold part of their shards and wait on each other;
one runs, the other waits for the CPUs (an autoscaling cluster adds nodes for a pending placement group).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group


def placement_name(output_dir: Path, point: str) -> str:
    """Named after the run directory (`<timestamp>_<random>`, above the model's) and the point, so operators and
    tests can tell whose it is in `ray list placement-groups`."""
    return f"perf/{output_dir.parent.name}/{point}"


class ShardPlacement:
    def __init__(self, name: str, shards: int, shard_cpus: float, strategy: str) -> None:
        self.shards = shards
        self.group = placement_group([{"CPU": shard_cpus}] * shards, strategy=strategy, name=name)

    async def placed(self, timeout_s: float) -> bool:
        """Whether the cluster found room for every shard within `timeout_s`."""
        try:
            await asyncio.wait_for(asyncio.wrap_future(self.group.ready().future()), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    def nodes(self) -> list[str]:
        """The node id of each bundle, in shard order."""
        bundle_nodes = placement_group_table(self.group)["bundles_to_node_id"]
        return [bundle_nodes[index] for index in range(self.shards)]

    def remove(self) -> None:
        remove_placement_group(self.group)


def cpus_free_and_total() -> tuple[float, float]:
    return ray.available_resources().get("CPU", 0.0), ray.cluster_resources().get("CPU", 0.0)
