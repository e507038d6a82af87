"""Run one perf test point through `PerfRun` on the Ray cluster this process is connected to, with shards that
also keep what production throws away, so tests can check the merge and the clocks against the raw records.

Imported by the Ray workers too (the shard class is pickled by reference), so it imports no test fixtures.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import ray
from evalscope.perf.utils.benchmark_util import BenchmarkData

from serve_app.config import ServiceArgs
from serve_app.jobs.workers import WorkerPools
from serve_app.perf import service as service_module
from serve_app.perf.datasets import perf_datasets
from serve_app.perf.records import RecordWriter
from serve_app.perf.service import PerfRun, plan_perf
from serve_app.perf.shard import ShardStats
from serve_app.perf.worker import PerfShard
from serve_app.schemas import PerfPointResult, PerfRequest

PROMPTS = Path(__file__).resolve().parents[2] / "examples" / "datasets" / "perf" / "openqa.jsonl"


@dataclass(frozen=True)
class ShardCapture:
    """One shard's view of a run: the instant it was told to start, its clock offset estimate, and each record
    as it was before compaction (times still on its own monotonic clock) with the times it wrote to its file."""

    index: int
    start_at: float  # coordinator wall clock
    clock_offset_s: float
    raw: list[BenchmarkData]
    written_times: list[tuple[float, float]]  # (start, completed) on the coordinator's clock, in `raw`'s order


class CapturingShard(PerfShard):
    """The production shard, writing its ShardCapture next to the point's results when its run ends."""

    def bind(self, spec, job_dir) -> None:
        super().bind(spec, job_dir)
        self.raw: list[BenchmarkData] = []
        add = RecordWriter.add

        def keep_then_add(writer: RecordWriter, record: BenchmarkData) -> None:
            self.raw.append(copy.deepcopy(record))
            add(writer, record)

        RecordWriter.add = keep_then_add  # this actor's process runs this shard only

    def run(self, start_at: float, clock_offset_s: float) -> ShardStats:
        stats = super().run(start_at, clock_offset_s)
        written = pq.read_table(stats.records_path, columns=["start_time", "completed_time"])
        capture = ShardCapture(
            index=self.runner.spec.plan.index,
            start_at=start_at,
            clock_offset_s=clock_offset_s,
            raw=self.raw,
            written_times=list(zip(*written.to_pydict().values())),
        )
        path = capture_path(self.runner.spec.work_dir, capture.index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(capture))
        return stats


CapturingShardWorker = ray.remote(max_restarts=0, max_task_retries=0)(CapturingShard)


def capture_path(point_dir: str | Path, index: int) -> Path:
    return Path(point_dir) / f"capture-shard-{index}.pkl"


@dataclass(frozen=True)
class RunPoint:
    result: PerfPointResult
    output_dir: Path  # the point's result files
    captures: list[ShardCapture]  # by shard index


def run_point(outputs_root: Path, url: str, **request_fields) -> RunPoint:
    """One test point of `request_fields` against `url`, run as the service runs it, with capturing shards."""
    request = PerfRequest(model="simulator", url=url, dataset="openqa", dataset_path=str(PROMPTS), **request_fields)
    args = ServiceArgs(outputs_root=outputs_root, warm_workers=0)  # each shard a process started for it
    plan = plan_perf(request, args, perf_datasets()["openqa"], cluster_cpus=service_module.cluster_cpus(args))
    (point,) = plan.points
    workers = WorkerPools(args, shard_actor=CapturingShardWorker)
    # The run's delayed stop of its idle shards dies with this loop; so do its handles, and Ray stops actors
    # that nobody holds.
    result = asyncio.run(PerfRun(plan, request, args, workers)._run_point(point))
    output_dir = plan.output_dir / point.name
    captures = [pickle.loads(capture_path(output_dir, shard.index).read_bytes()) for shard in point.shards]
    return RunPoint(result=result, output_dir=output_dir, captures=captures)
