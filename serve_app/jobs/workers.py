"""The job manager's worker processes (Ray glue for serve_app.warm_pool): perf shards and task workers (eval
datasets, reports), `warm_workers` of each started ahead of need. A run takes what it needs and kills it when done.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import ray

from serve_app.config import ServiceArgs
from serve_app.perf.worker import PerfShardWorker
from serve_app.warm_pool import WarmPool
from serve_app.worker import TaskWorkerActor


@dataclass(frozen=True)
class _Settings:
    warm_workers: int
    shard_cpus: float
    task_cpus: float


def _settings(args: ServiceArgs) -> _Settings:
    return _Settings(args.warm_workers, args.perf_shard_num_cpus, args.eval_task_num_cpus)


class WorkerPools:
    def __init__(self, args: ServiceArgs, shard_actor=PerfShardWorker) -> None:
        """`shard_actor`: the perf shard's actor class (tests pass a subclass that keeps more)."""
        self.settings = _settings(args)
        self.shard_actor = shard_actor

        def start_shard() -> ray.actor.ActorHandle:
            # Named so operators (and tests) can find a shard with `ray list actors`; a job's log and result name it.
            return shard_actor.options(
                name=f"perf-shard/{uuid.uuid4().hex[:12]}",
                num_cpus=args.perf_shard_num_cpus,
                scheduling_strategy="SPREAD",
                max_concurrency=2,  # progress questions are answered while the shard runs
            ).remote()

        def start_task_worker() -> ray.actor.ActorHandle:
            return TaskWorkerActor.options(
                name=f"job-worker/{uuid.uuid4().hex[:12]}", num_cpus=args.eval_task_num_cpus
            ).remote()

        self.shards = WarmPool(start_shard, ray.kill, args.warm_workers)
        self.tasks = WarmPool(start_task_worker, ray.kill, args.warm_workers)

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
