"""`python -m tests.integration.multinode_cluster OUTPUTS_ROOT DATASETS_ROOT`: the service on a Ray cluster of three
nodes on this machine, as on KubeRay: a head without CPUs (Ray's control plane, the Serve proxy, the job manager, the
ingress) and two worker nodes with CPUs of their own, each at its own loopback address (what a shard or a dataset
reports as its node). Every node shares this machine's disk, so the outputs root is shared as a ReadWriteMany volume
shares it.

The service with `shard_placement: PACK` runs beside it at `/pack`. Prints `ready <base url>`, then obeys one command per stdin line, answering one line `answer <JSON>` each (Ray prints
its own lines on stdout too):

    placement-groups     the placement groups Ray still has, removed ones included: [{"name", "state"}]
    warm-shards          waits until the job manager's warm shards are up (a service that has been running a while)
    remove-node ADDRESS  kills that worker node's raylet and processes at once, as a lost machine goes
    add-node ADDRESS     starts a worker node at that address again (a replacement machine)

and stops everything at the end of its input. A process of its own: a driver joins one cluster, and the test session
may have its own.
"""

import json
import os
import sys
import time

import ray
from ray import serve
from ray.cluster_utils import Cluster
from ray.util.placement_group import placement_group_table

from serve_app.app import EvalscopeIngress
from serve_app.config import ServiceArgs
from tests.conftest import SAMPLES, free_port

WORKER_NODE_ADDRESSES = ("127.0.0.2", "127.0.0.3")
WORKER_NODE_CPUS = 2
SERVICE_ARGS = {
    "samples_root": str(SAMPLES),
    "perf_shard_num_cpus": 1.0,  # so that two jobs of two shards each need more than the cluster has
    "warm_workers": 2,
    "max_running_jobs": 2,
    "placement_timeout_s": 120,
    "progress_interval_s": 0.2,
}
PACK_ARGS = {"shard_placement": "PACK", "perf_shard_num_cpus": 0.5, "warm_workers": 0}
# A lost node is noticed within ~5 s (Ray's defaults: 30 s); not faster, or a busy machine's head misses its checks.
FAST_NODE_FAILURE = {"health_check_period_ms": 1000, "health_check_failure_threshold": 5,
                     "health_check_initial_delay_ms": 0}


def wait_for_warm_shards(count: int, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        shards = [ray.get_actor(actor["name"], namespace=actor["namespace"])
                  for actor in ray.util.list_named_actors(all_namespaces=True)
                  if actor["name"].startswith("perf-shard/")]
        if len(shards) >= count or time.monotonic() > deadline:
            ray.get([shard.name.remote() for shard in shards], timeout=max(1.0, deadline - time.monotonic()))
            return len(shards)
        time.sleep(0.2)


def main(outputs_root: str, datasets_root: str) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "resources": {"ingress": 1}, "include_dashboard": False, "_system_config": FAST_NODE_FAILURE,
    })
    workers = {address: cluster.add_node(num_cpus=WORKER_NODE_CPUS, node_ip_address=address)
               for address in WORKER_NODE_ADDRESSES}
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        args = ServiceArgs(outputs_root=outputs_root, datasets_root=datasets_root, **SERVICE_ARGS)
        # On the head, like the job manager: killing a worker node then leaves the service itself standing.
        ingress = EvalscopeIngress.options(ray_actor_options={"num_cpus": 0, "resources": {"ingress": 0.1}})
        serve.run(ingress.bind(args), name="evalscope", route_prefix="/")
        # Beside it, at /pack, the service with shard_placement PACK (its own outputs, so its own job manager).
        pack_args = args.model_copy(update={"outputs_root": args.outputs_root / "pack", **PACK_ARGS})
        serve.run(ingress.bind(pack_args), name="pack", route_prefix="/pack")
        print(f"ready http://127.0.0.1:{port}", flush=True)
        for line in sys.stdin:
            command, *operands = line.split()
            if command == "placement-groups":
                answer = [{"name": group["name"], "state": group["state"]}
                          for group in placement_group_table().values()]
            elif command == "warm-shards":
                answer = wait_for_warm_shards(SERVICE_ARGS["warm_workers"])
            elif command == "remove-node":
                cluster.remove_node(workers.pop(operands[0]), allow_graceful=False)
                answer = "removed"
            elif command == "add-node":
                workers[operands[0]] = cluster.add_node(num_cpus=WORKER_NODE_CPUS, node_ip_address=operands[0])
                cluster.wait_for_nodes()
                answer = "added"
            else:
                answer = f"unknown command {command!r}"
            print("answer", json.dumps(answer), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
