"""Perf test size benchmark: memory and merge time of one test point at 10k, 100k and 1M requests.

Each size is one test point run as the service runs it (PerfRun on a private local Ray cluster, no Serve), fanned
out over `--shards` shards against the fast local target (benchmarks/fast_target.py), streamed, `--tokens` output
tokens a request; then `--long` requests at `--long-tokens` tokens (2048: thousands of gaps a record). For each it
prints the test duration and req/s from the merged result, the peak resident memory (RSS, read from /proc every
0.2 s) of the shard processes, of the merging one (the first shard whose load ended) and of every other Ray process,
and the merge time: from the last request's completion to the merged result, so that whatever a shard does after its
load (writing its rows of benchmark_data.db) counts too.

    python benchmarks/perf_scale.py                          # 10k, 100k, 1M at 16 tokens; 10k at 2048 tokens
    python benchmarks/perf_scale.py --sizes 10000 --long 0   # a quick run
    python benchmarks/perf_scale.py --rate 5000 --sizes 100000 1000000 --long 0   # arrivals at a rate (open loop)

Works unchanged against older code of the service (same PerfRun interface), for before/after figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import fast_target  # benchmarks/ is the script's directory, first on sys.path
import ray
from harness import REPO, SAMPLES

from serve_app.config import ServiceArgs
from serve_app.jobs.workers import WorkerPools
from serve_app.perf import service as service_module
from serve_app.perf.datasets import perf_datasets
from serve_app.perf.service import PerfRun, plan_perf
from serve_app.schemas import PerfRequest
from serve_app.simulator.process import free_port

PROMPTS = SAMPLES / "perf" / "openqa.jsonl"
SAMPLE_S = 0.2
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20


class RayProcessMemory:
    """Peak RSS of every process of this script's Ray cluster (its processes below this one: Ray's daemons and
    workers, `ray::<class>.<method>` by their titles) while open."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude  # not the point's (the target's processes)
        self.peaks: dict[int, int] = {}  # pid -> bytes
        self.titles: dict[int, set[str]] = {}  # pid -> every title seen (a worker's names the method it runs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def __enter__(self) -> RayProcessMemory:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _sample_until_stopped(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_S)

    def sample(self) -> None:
        parents = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(f"/proc/{entry.name}/stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        for pid in parents:
            if pid in self.exclude or not self._below_us(pid, parents):
                continue
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            except (OSError, IndexError, ValueError):
                continue
            if not title:  # exited, not yet reaped
                continue
            self.peaks[pid] = max(self.peaks.get(pid, 0), rss)
            self.titles.setdefault(pid, set()).add(title.split()[0][:60])

    @staticmethod
    def _below_us(pid: int, parents: dict[int, int]) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    def peak_of(self, pids: set[int]) -> int:
        return max((self.peaks.get(pid, 0) for pid in pids), default=0)

    def peak_except(self, pids: set[int]) -> tuple[int, str]:
        """The largest peak of the processes not in `pids`, and which process it was."""
        others = {pid: peak for pid, peak in self.peaks.items() if pid not in pids}
        if not others:
            return 0, ""
        pid = max(others, key=others.get)
        return others[pid], sorted(self.titles[pid])[0]


async def run_point(url: str, number: int, parallel: int, shards: int, tokens: int, outputs: Path,
                    rate: float = -1) -> dict:
    request = PerfRequest(model="fast", url=url, dataset="openqa", dataset_path=str(PROMPTS), number=number,
                          parallel=parallel, shards=shards, max_tokens=tokens, stream=True, rate=rate)
    args = ServiceArgs(outputs_root=outputs, warm_workers=0, perf_live_metrics=False, max_number=number)
    plan = plan_perf(request, args, perf_datasets()["openqa"], service_module.cluster_cpus(args))
    (point,) = plan.points
    run = _MergerNoted(plan, request, args, WorkerPools(args))
    shard_pids: list[int] = []  # in shard order

    async def watch() -> None:
        while True:
            if run._live and not shard_pids:  # the shards are running: note their processes
                calls = [shard.actor.__ray_call__.remote(_pid) for shard in run._live]
                shard_pids.extend(await asyncio.gather(*calls))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        result = await run._run_point(point)
    finally:
        watcher.cancel()
    merged_at = time.time()
    # The load ended with the last completion (this process is the coordinator: its wall clock is the records').
    with sqlite3.connect(plan.output_dir / point.name / "benchmark_data.db") as connection:
        (last_completion,) = connection.execute("SELECT max(completed_time) FROM result").fetchone()
    return {"result": result, "merge_s": merged_at - last_completion, "shard_pids": shard_pids,
            "merger": run.merger}


class _MergerNoted(PerfRun):
    """Notes which shard merges: the first whose load ended (shard 0 in older code, which returned only stats)."""

    merger = 0

    async def _start_together(self, *given):
        started = await super()._start_together(*given)
        if isinstance(started, tuple):
            _, ended, _ = started
            self.merger = ended[0]
        return started


def _pid(_actor) -> int:
    return os.getpid()


def measure(url: str, number: int, parallel: int, shards: int, tokens: int, work: Path, target: set[int],
            rate: float = -1) -> dict:
    earlier = RayProcessMemory(exclude=target)
    earlier.sample()  # shards of an earlier point that Ray has not stopped yet are not this point's
    target = target | {pid for pid, titles in earlier.titles.items() if any("PerfShard" in t for t in titles)}
    with RayProcessMemory(exclude=target) as memory:
        point = asyncio.run(run_point(url, number, parallel, shards, tokens, work / f"{number}_{tokens}", rate))
    metrics = point["result"].metrics
    # A shard's process is titled ray::PerfShard.... Its pid is asked for while the shards run, and may come back
    # only once they are done (an actor runs one call at a time): the titles catch it either way.
    pids = set(point["shard_pids"]) | {pid for pid, titles in memory.titles.items()
                                       if any("PerfShard" in title for title in titles)}
    merger = point["shard_pids"][point["merger"]]
    other_peak, other_name = memory.peak_except(pids)
    duration = metrics["Test Duration (s)"]
    return {
        "requests": number, "tokens": tokens, "succeeded": metrics["Success Requests"],
        "duration_s": round(duration, 2), "req_per_s": round(metrics["Req Throughput (req/s)"], 1),
        "shard_peak_mib": round(memory.peak_of(pids - {merger}) / MIB, 1),
        "merger_peak_mib": round(memory.peak_of({merger}) / MIB, 1),
        "other_ray_peak_mib": round(other_peak / MIB, 1), "other_ray_process": other_name,
        "merge_s": round(point["merge_s"], 3), "merge_fraction": round(point["merge_s"] / duration, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000],
                        help="requests per test point at --tokens tokens")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--long", type=int, default=10_000, help="requests at --long-tokens tokens (0: none)")
    parser.add_argument("--long-tokens", type=int, default=2048)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=128)
    parser.add_argument("--rate", type=float, default=-1,
                        help="arrivals per second over all shards (-1: as fast as `parallel` allows, a closed loop)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "perf_scale.json")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="perf_scale_"))  # the points' outputs: a 1M point's database is ~0.5 GB
    ray.init(address="local", num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    runs = [(number, options.tokens) for number in options.sizes]
    runs += [(options.long, options.long_tokens)] if options.long else []
    rows = []
    try:
        for number, tokens in runs:
            port = free_port()
            target = fast_target.start(port, tokens=tokens)
            try:
                time.sleep(1)  # the target's process binds its port
                row = measure(f"http://127.0.0.1:{port}/v1/chat/completions", number, options.parallel,
                              options.shards, tokens, work, {process.pid for process in target}, options.rate)
            finally:
                for process in target:
                    process.terminate()
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(rows, indent=2))
    print("\n| requests x tokens | test duration | req/s | peak RSS: shard / merging shard / other Ray "
          "| merge time (share of the test) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['requests']:,} x {row['tokens']} | {row['duration_s']} s | {row['req_per_s']} | "
              f"{row['shard_peak_mib']} / {row['merger_peak_mib']} / {row['other_ray_peak_mib']} MiB "
              f"({row['other_ray_process']}) | {row['merge_s']} s ({100 * row['merge_fraction']:.1f} %) |")


if __name__ == "__main__":
    main()
