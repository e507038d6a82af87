"""The perf shard actor: a job worker (serve_app.worker, evalscope imported at start) bound to one shard of one run.

The class is plain and `PerfShardWorker` is its Ray actor, so a subclass can be made an actor too (tests do).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import ray

from serve_app.jobs.output import print_to_job_log
from serve_app.perf.plan import ShardPlan, point_schedule
from serve_app.perf.saturation import assess
from serve_app.perf.shard import ShardSpec, ShardStats
from serve_app.worker import TaskWorker, where_this_runs


class PerfShard(TaskWorker):
    runner: Any = None  # the ShardRunner, once bound

    def bind(self, spec: ShardSpec, job_dir: str) -> None:
        """Become shard `spec` of the job whose run directory is `job_dir`: what evalscope prints here goes to that
        job's log. Once per process: a shard never serves a second job."""
        if self.runner is not None:
            raise RuntimeError("this shard process is already bound to a run")
        # Not at the top: evalscope, which these import, must be imported after the process holds its output for
        # its job's log (serve_app.worker.JobWorker), or its logging would go to the service log.
        from serve_app.perf.records import check_point_directory
        from serve_app.perf.runner import ShardRunner

        check_point_directory(spec.work_dir)
        print_to_job_log(job_dir, f"{Path(spec.work_dir).name} shard {spec.plan.index}", secrets=spec.secrets)

        print(f"{where_this_runs()}, a process started {time.time() - self.started_at:.1f} s before")
        self.runner = ShardRunner(spec, node=ray.util.get_node_ip_address())

    def prepare(self) -> None:
        self.runner.prepare()

    def wall_clock(self) -> float:
        return time.time()

    def completed(self) -> int:
        return self.runner.completed if self.runner else 0

    def run(self, start_at: float, clock_offset_s: float) -> ShardStats:
        stats = self.runner.run(start_at, clock_offset_s)
        return dataclasses.replace(stats, worker=self.name(), worker_started_at=self.started_at)

    def write_rows(self) -> None:
        self.runner.write_rows()

    def merge(self, point: dict[str, Any], output_dir: str, shards: list[ShardStats], plans: list[ShardPlan],
              rows_written: list[ray.ObjectRef]) -> dict[str, Any]:
        """Pool every shard's record file and totals and let evalscope compute the point's metrics, here rather than
        in the ingress; with a rate, judge the sends of every shard against the point's schedule (`plans`: its
        shards'). `rows_written` are the shards' `write_rows` calls, still running when this begins: their rows
        are copied into benchmark_data.db once they are done, while the rest of the merge goes on."""
        from serve_app.perf.merge import merge_record_files
        from serve_app.perf.records import check_record_files, send_and_completion_times

        check_record_files(shards, self.runner.node)
        args = self.runner.args.model_copy(update=point)
        paths = [Path(shard.records_path) for shard in shards]
        schedule = point_schedule(plans)
        saturation = None if schedule is None else assess(schedule, *send_and_completion_times(paths))
        totals = [shard.totals for shard in shards]
        merged = merge_record_files(paths, totals, args, Path(output_dir), self.runner.spec.slo,  # removes the files
                                    rows_written=lambda: ray.get(rows_written))
        return {"metrics": merged.metrics, "percentiles": merged.percentiles, "goodput": merged.goodput,
                "saturation": saturation, "conversations": merged.conversations, "workload": merged.workload}


PerfShardWorker = ray.remote(max_restarts=0, max_task_retries=0)(PerfShard)
