"""`python -m tests.integration.spread_cluster URL OUTPUTS_ROOT`: run a two-shard perf point against URL on a Ray
cluster of three nodes on this machine, and print the nodes its shards ran on (a JSON list, the last line).

The head has no CPUs and each worker node has room for both shards (4 logical CPUs, 0.5 a shard), so Ray's
default policy would pack them onto one node: two nodes in the output are SPREAD's doing. Each worker node has
its own loopback address, which is what a shard reports as its node.
"""

import json
import os
import sys
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from tests.integration.perf_points import run_point

WORKER_NODE_ADDRESSES = ("127.0.0.2", "127.0.0.3")


def main(url: str, outputs_root: str) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for address in WORKER_NODE_ADDRESSES:
            cluster.add_node(num_cpus=4, node_ip_address=address)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        point = run_point(Path(outputs_root), url, number=20, parallel=2, shards=2, max_tokens=4)
        print(json.dumps([shard.node for shard in point.result.shards]))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
