"""The job manager's worker processes (Ray glue for serve_app.warm_pool): perf shards and task workers (eval
datasets), `warm_workers` of each started ahead of need. A run takes what it needs and kills it when done.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from serve_app.config import ServiceArgs
from serve_app.perf.worker import PerfShardWorker
from serve_app.warm_pool import WarmPool
from serve_app.worker import TaskWorkerActor


@dataclass(frozen=True)
class _Settings:
    warm_workers: int
    task_cpus: float  # idle shards reserve none: a change of perf_shard_num_cpus leaves them as they are


def _settings(args: ServiceArgs) -> _Settings:
    return _Settings(args.warm_workers, args.eval_task_num_cpus)


@dataclass(frozen=True)
class Warm:
    """A worker process started ahead of need, on a node of its pool's choosing."""

    actor: ray.actor.ActorHandle
    node_id: str | None  # None: no node had CPUs when it started


def worker_nodes() -> dict[str, str]:
    """The live nodes that have CPUs (a KubeRay head has none: no work runs there): node id -> address."""
    return {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()
            if node["Alive"] and node["Resources"].get("CPU", 0) > 0}


def _warm_on_the_emptiest_node(
    start: Callable[[str | None], ray.actor.ActorHandle],
) -> Callable[[Sequence[Warm]], Warm]:
    """Start each warm worker on the worker node with the fewest idle ones of its pool: a test point finds a warm
    shard on each node its CPUs were placed on, and an eval's datasets run on as many nodes as there are."""

    def start_warm(idle: Sequence[Warm]) -> Warm:
        nodes = sorted(worker_nodes())
        node = min(nodes, key=lambda node: sum(warm.node_id == node for warm in idle)) if nodes else None
        return Warm(start(node), node)

    return start_warm


class WorkerPools:
    def __init__(self, args: ServiceArgs, shard_actor=PerfShardWorker) -> None:
        """`shard_actor`: the perf shard's actor class (tests pass a subclass that keeps more)."""
        self.settings = _settings(args)
        self.shard_actor = shard_actor

        def start_task_worker(node_id: str | None) -> ray.actor.ActorHandle:
            # On that node while it has the CPUs, else on another one.
            strategy = NodeAffinitySchedulingStrategy(node_id, soft=True, _spill_on_unavailable=True) \
                if node_id else "SPREAD"
            return TaskWorkerActor.options(
                name=f"job-worker/{uuid.uuid4().hex[:12]}", num_cpus=args.eval_task_num_cpus,
                scheduling_strategy=strategy,
            ).remote()

        self.shards = WarmPool(_warm_on_the_emptiest_node(self.start_shard), _stop, args.warm_workers)
        self.tasks = WarmPool(_warm_on_the_emptiest_node(start_task_worker), _stop, args.warm_workers)

    def start_shard(self, node_id: str | None) -> ray.actor.ActorHandle:
        """A shard process on this node. It reserves no CPU of its own: a test point's placement group reserves
        its shards' CPUs on their nodes, so an idle warm shard holds memory only, and a shard that lives on after its
        point (for its last live metrics) does not hold the next point's CPUs."""
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False) if node_id else "SPREAD"
        # Named so operators (and tests) can find a shard with `ray list actors`; a job's log and result name it.
        return self.shard_actor.options(
            name=f"perf-shard/{uuid.uuid4().hex[:12]}",
            num_cpus=0,
            scheduling_strategy=strategy,
            max_concurrency=2,  # progress questions are answered while the shard runs
        ).remote()

    def shards_on(self, node_ids: list[str], live: dict[str, str]) -> list[ray.actor.ActorHandle]:
        """A shard process on each of these nodes (one per bundle of a test point's placement group): a warm one
        started there, else a new one. `live`: worker_nodes(), as the caller just read them."""
        _drop_lost(self.shards, live)
        taken = [self.shards.take_fitting(lambda warm, node=node: warm.node_id == node) for node in node_ids]
        return [warm.actor if warm else self.start_shard(node) for warm, node in zip(taken, node_ids)]

    def take_task_worker(self) -> ray.actor.ActorHandle:
        """A task worker (an eval dataset's): a warm one, else a new one."""
        _drop_lost(self.tasks, worker_nodes())
        return self.tasks.take().actor

    def configured(self, args: ServiceArgs) -> WorkerPools:
        """These pools, or new ones when `args` change their size or reservations (the old idle workers stopped)."""
        if _settings(args) == self.settings:
            return self
        self.close()
        return WorkerPools(args, self.shard_actor)

    @contextmanager
    def measuring(self) -> Iterator[None]:
        """No worker starts while a perf test measures (see WarmPool.refills_held)."""
        with ExitStack() as stack:
            stack.enter_context(self.shards.refills_held())
            stack.enter_context(self.tasks.refills_held())
            yield

    def close(self) -> None:
        self.shards.close()
        self.tasks.close()


def _stop(warm: Warm) -> None:
    ray.kill(warm.actor)


# A busy node may take a second or two to end a killed process. Bounded well under the CLI's 5 s wait for a
# cancel to be confirmed: past it the job ends anyway, its processes already told to exit.
KILL_WAIT_S = 3.0


async def kill_and_wait(actors: Sequence[ray.actor.ActorHandle], timeout_s: float = KILL_WAIT_S) -> None:
    """Kill these worker processes and return once each is gone (or `timeout_s` passed). ray.kill returns before
    the process ends, and a shard keeps sending requests until then: a job that reads cancelled or failed has
    stopped its traffic."""
    for actor in actors:
        ray.kill(actor)
    deadline = time.monotonic() + timeout_s
    for actor in actors:
        while time.monotonic() < deadline:
            try:  # a call to a killed actor fails once its process is gone; until then it is answered or queued
                await asyncio.wait_for(actor.name.remote(), max(deadline - time.monotonic(), 0.01))
            except (RayActorError, asyncio.TimeoutError):
                break
            await asyncio.sleep(0.05)


def _drop_lost(pool: WarmPool[Warm], live: dict[str, str]) -> None:
    """Replace the idle workers of nodes that are not `live` (they left the cluster): handed out, they would fail
    their job at once."""
    pool.drop(lambda warm: warm.node_id is not None and warm.node_id not in live)
