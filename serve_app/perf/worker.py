"""The perf shard actor: a fresh process per shard, so evalscope's process-wide state never mixes two runs.

evalscope is imported inside the actor only (the runner module), never in the ingress that creates it.
The class is plain and `PerfShardWorker` is its Ray actor, so a subclass can be made an actor too (tests do).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import ray

from serve_app.jobs.output import print_to_job_log
from serve_app.perf.shard import ShardSpec, ShardStats


class PerfShard:
    def __init__(self, spec: ShardSpec, job_dir: str) -> None:
        """A shard of the job whose run directory is `job_dir`: what evalscope prints here goes to that job's log."""
        print_to_job_log(job_dir, f"{Path(spec.work_dir).name} shard {spec.plan.index}", secrets=[spec.api_key])
        from serve_app.perf.runner import ShardRunner

        self.runner = ShardRunner(spec, node=ray.util.get_node_ip_address())
        self.last_run = None

    def prepare(self) -> None:
        self.runner.prepare()

    def wall_clock(self) -> float:
        return time.time()

    def completed(self) -> int:
        return self.runner.completed

    def run(self, start_at: float, clock_offset_s: float) -> ShardStats:
        self.last_run = self.runner.run(start_at, clock_offset_s)
        return self.last_run.stats()

    def records(self) -> list:
        return self.last_run.records

    def merge(self, point: dict[str, Any], output_dir: str, *record_lists: list) -> dict[str, Any]:
        """Pool every shard's records and let evalscope compute the point's metrics, here rather than in the ingress."""
        from serve_app.perf.merge import merge_records
        from serve_app.perf.slo import count_good

        args = self.runner.args.model_copy(update=point)
        records = [record for records in record_lists for record in records]
        merged = merge_records(records, args, Path(output_dir))
        result = {"metrics": merged.metrics, "percentiles": merged.percentiles, "goodput": None, "good": None}
        if self.runner.spec.slo is not None:
            result["goodput"], result["good"] = count_good(record_lists, self.runner.spec.slo, merged.duration_s)
        return result


PerfShardWorker = ray.remote(max_restarts=0, max_task_retries=0)(PerfShard)
