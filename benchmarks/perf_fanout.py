"""Perf fan-out benchmark: evalscope perf run directly vs the service with 1, 2, ... shards, on one machine.

1. Throughput against a fast target (benchmarks/fast_target.py): req/s, and CPU per request of the whole processes
   that do the work, from start to report (the target's excluded): evalscope perf's process from start to exit;
   the service's processes (its whole Ray cluster) from the job's submission until its HTML report is on disk.
2. Fidelity against the same target with 100 ms TTFT and 10 ms between tokens at parallel 256: measured minus
   truth. The first row is the target alone: a bare client at parallel 1, timing as evalscope does.
3. Open loop, 500 req/s: the achieved arrival process against the requested Poisson one, for the service over 2
   shards and for evalscope perf (Kolmogorov-Smirnov distance of the inter-arrival times to the exponential).
4. Stream reader: one shard in this process with evalscope's OpenAI plugin vs the lean one (serve_app.perf.plugin).

Prints a table per part and writes everything to --out as JSON. Runs unchanged on any core count: the shard
counts tried grow with the cores (1, 2, 4, 8, ... up to the cores left after the targets).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from evalscope.perf.utils.db_util import DatabaseColumns, calculate_percentiles

import fast_target  # benchmarks/ is the script's directory, first on sys.path
from harness import REPO, SAMPLES, local_service

from serve_app.jobs.store import TERMINAL
from serve_app.simulator.process import free_port

PROMPTS = SAMPLES / "perf" / "openqa.jsonl"
EVALSCOPE = [sys.executable, "-m", "evalscope.cli.cli"]  # evalscope's own CLI, wherever it is installed
POLL_S = 0.5  # how often a job is polled: often enough to end its CPU window promptly, rarely enough to cost nothing
SAMPLE_S = 0.1  # how often ProcessTreeCpu reads /proc
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(point: dict, metric: str, label: str) -> float:
    return next(row[metric] for row in point["percentiles"] if row["Percentiles"] == label)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from its third field (state) on, or None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


class ProcessTreeCpu:
    """CPU seconds that the processes below `root`, except those in `exclude`, use while the context is open.

    A thread reads /proc every SAMPLE_S s; a process started meanwhile counts from its start, one that exits
    counts up to its last reading: Ray's raylet ignores SIGCHLD, so an exited worker's CPU reaches no parent's
    rusage and /proc is the only account. `exited` says how many exited, each with up to SAMPLE_S of CPU unseen.
    """

    def __init__(self, root: int, exclude: set[int]) -> None:
        self.exclude = exclude
        self.members = {root}  # pids below root, root included
        self.checked: set[int] = set()  # pids whose parent was looked at
        self.start_cpu: dict[tuple[int, str], float] = {}  # (pid, start time) -> CPU seconds when first read
        self.last_cpu: dict[tuple[int, str], float] = {}
        self.exited = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()

    @property
    def seconds(self) -> float:
        return sum(self.last_cpu[key] - self.start_cpu[key] for key in self.last_cpu)

    def __enter__(self) -> ProcessTreeCpu:
        self.read(opening=True)
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join()
        self.read(opening=False)

    def sample(self) -> None:
        while not self.stop.wait(SAMPLE_S):
            self.read(opening=False)

    def read(self, opening: bool) -> None:
        with self.lock:
            running = {int(name) for name in os.listdir("/proc") if name.isdigit()}
            self.exited += len(self.members - running)
            self.members &= running
            self.checked &= running
            stats = {pid: stat for pid in running - self.checked if (stat := proc_stat(pid))}
            for pid in sorted(stats, key=lambda pid: int(stats[pid][19])):  # parents before children
                if int(stats[pid][1]) in self.members:
                    self.members.add(pid)
            self.checked |= running
            for pid in self.members - self.exclude:
                if stat := proc_stat(pid):
                    key, cpu = (pid, stat[19]), (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
                    self.start_cpu.setdefault(key, cpu if opening else 0.0)
                    self.last_cpu[key] = cpu


def run_direct(
    url: str, parallel: int, number: int, max_tokens: int, rate: float, work: Path, warmup: int = 0
) -> tuple[dict, Path, float]:
    """`evalscope perf` in its own process: its result for the point, the point's directory, and the CPU seconds
    of the whole process (and any it waited for) from start to exit, its HTML report included."""
    out = work / f"direct_{parallel}_{number}_{time.monotonic_ns()}"
    cpu_before = children_cpu_s()
    subprocess.run(
        [*EVALSCOPE, "perf", "--url", url, "--model", "bench", "--api", "openai", "--dataset", "openqa",
         "--dataset-path", str(PROMPTS), "--parallel", str(parallel), "--number", str(number),
         "--max-tokens", str(max_tokens), "--rate", str(rate), "--warmup-num", str(warmup), "--stream",
         "--outputs-dir", str(out)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    cpu = children_cpu_s() - cpu_before
    point_dir = next(out.glob(f"*/*/parallel_{parallel}_number_{number}"))
    return {
        "metrics": json.loads((point_dir / "benchmark_summary.json").read_text()),
        "percentiles": json.loads((point_dir / "benchmark_percentile.json").read_text()),
    }, point_dir, cpu


def run_service(client: httpx.Client, url: str, parallel: int, number: int, max_tokens: int, rate: float,
                shards: int, warmup: int = 0) -> tuple[dict, Path]:
    """A perf job, followed until its HTML report is on disk (as evalscope perf writes its own before it exits):
    the point's result and its directory."""
    response = client.post("/api/v1/perf", params={"wait": "false"}, json={
        "model": "bench", "url": url, "dataset": "openqa", "dataset_path": str(PROMPTS), "parallel": parallel,
        "number": number, "max_tokens": max_tokens, "rate": rate, "shards": shards, "warmup": warmup,
    })
    if response.status_code != 202:
        raise RuntimeError(f"perf request failed ({response.status_code}): {response.text}")
    job_id = response.json()["job_id"]
    while (job := client.get(f"/api/v1/jobs/{job_id}").json())["status"] not in TERMINAL:
        time.sleep(POLL_S)
    if job["status"] != "succeeded":
        raise RuntimeError(f"perf job {job_id} {job['status']}: {job['error']}")
    # The file the report route serves, read from disk: fetching a report of megabytes would cost the service CPU.
    while not (Path(job["output_dir"]) / "perf_report.html").is_file():
        time.sleep(POLL_S)
    name = f"parallel_{parallel}_number_{number}"
    return job["result"]["results"][name], Path(job["result"]["output_dir"]) / name


def table(title: str, headers: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([f"\n## {title}", line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests-per-shard", type=int, default=4000, help="throughput test: requests per shard")
    parser.add_argument("--parallel-per-shard", type=int, default=64)
    parser.add_argument("--no-live-metrics", action="store_true",
                        help="shards do not record requests in the live Prometheus metrics (perf_live_metrics)")
    parts = ["throughput", "fidelity", "open_loop", "stream_reader"]
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "perf_fanout.json"))
    options = parser.parse_args()

    cores = os.cpu_count() or 2
    target_workers = max(1, cores // 8)
    max_shards = max(2, cores - target_workers)
    shard_counts = sorted({1, 2, *[n for n in (4, 8, 12, 16, 24, 32, 48, 64) if n <= max_shards], max_shards})
    report: dict = {"cores": cores, "target_workers": target_workers, "live_metrics": not options.no_live_metrics}

    fast_port = free_port()
    fast_processes = fast_target.start(fast_port, tokens=20, workers=target_workers)
    fast_url = f"http://127.0.0.1:{fast_port}/v1/chat/completions"
    wait_until_fast_target(fast_url)
    base, work, _ = local_service("perf_fanout", max_shards=max(shard_counts), perf_shard_num_cpus=0.5,
                                  perf_live_metrics=not options.no_live_metrics)
    client = httpx.Client(base_url=base, timeout=1800)

    if "throughput" in options.parts:
        target_pids = {process.pid for process in fast_processes}
        report["throughput"] = throughput_part(client, fast_url, options, max_shards, shard_counts, work, cores,
                                               target_pids)
    if "fidelity" in options.parts:
        report["fidelity"] = fidelity_part(client, max_shards, target_workers, work)
    if "open_loop" in options.parts:
        report["open_loop"] = open_loop_part(client, fast_url, work)
    if "stream_reader" in options.parts:
        report["stream_reader"] = stream_reader_part(fast_url, work)

    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {options.out}")
    for process in fast_processes:
        process.terminate()


def throughput_part(client, fast_url, options, max_shards, shard_counts, work, cores, target_pids) -> dict:
    """The same total parallel and number for every mode."""
    parallel = options.parallel_per_shard * max_shards
    number = options.requests_per_shard * max_shards
    direct, _, direct_cpu = run_direct(fast_url, parallel, number, 20, -1, work)
    direct_rps = direct["metrics"]["Req Throughput (req/s)"]
    rows = [["evalscope perf (1 process)", parallel, number, round(direct_rps, 1), "1.00",
             round(1000 * direct_cpu / number, 3)]]
    throughput = {"parallel": parallel, "number": number, "direct": {"req_per_s": direct_rps,
                  "cpu_ms_per_request": 1000 * direct_cpu / number}, "service": {}}
    exited = 0
    for shards in shard_counts:
        # Every process below this one but itself (the benchmark's client) and the target: the service.
        with ProcessTreeCpu(os.getpid(), exclude={os.getpid(), *target_pids}) as cpu:
            point, _ = run_service(client, fast_url, parallel, number, 20, -1, shards)
        rps = point["metrics"]["Req Throughput (req/s)"]
        cpu_ms = 1000 * cpu.seconds / number
        exited += cpu.exited
        throughput["service"][shards] = {"req_per_s": rps, "cpu_ms_per_request": cpu_ms, "ratio": rps / direct_rps,
                                         "failed": point["metrics"]["Failed Requests"], "exited": cpu.exited}
        rows.append([f"service, {shards} shard(s)", parallel, number, round(rps, 1), f"{rps / direct_rps:.2f}",
                     round(cpu_ms, 3)])
    live = "on" if not options.no_live_metrics else "off"
    print(table(f"Throughput vs a fast target ({cores} cores, live metrics {live})",
                ["mode", "parallel", "number", "req/s", "x direct", "CPU ms/req"], rows))
    print("CPU: whole processes, the target's excluded. evalscope perf: its process from start to exit. Service: "
          "every process of its Ray cluster from submission until the HTML report is on disk, read from /proc every "
          f"{SAMPLE_S} s; {exited} exited during the runs, each with up to {SAMPLE_S} s of CPU unseen.")
    return throughput


def target_alone(port: int, requests: int) -> tuple[list[float], list[float]]:
    """TTFT and ITL samples (ms) of a bare blocking client at parallel 1, timed as evalscope's OpenAI plugin does:
    from just before the send to the first content chunk, then between content chunks."""
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    ttft, itl = [], []
    with socket.create_connection(("127.0.0.1", port)) as connection:
        for _ in range(requests):
            reply, content_times = b"", []
            sent = time.perf_counter()
            connection.sendall(request)
            while not reply.endswith(b"data: [DONE]\n\n"):
                received = connection.recv(65536)
                now = time.perf_counter()
                if not received:
                    raise ConnectionError("the target closed the connection")
                reply += received
                content_times += [now] * received.count(b'"content"')
            ttft.append(1000 * (content_times[0] - sent))
            itl += [1000 * (later - earlier) for earlier, later in zip(content_times, content_times[1:])]
    return ttft, itl


def fidelity_part(client, max_shards, target_workers, work) -> dict:
    """100 ms TTFT, 10 ms between tokens, parallel 256: 8 measured waves after one warm-up wave for every mode.

    The first row is the target alone at parallel 1: what its own timers and the loopback add to the truth.
    """
    port = free_port()
    processes = fast_target.start(port, tokens=10, workers=target_workers, ttft_ms=100, itl_ms=10)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    wait_until_fast_target(url)
    try:
        ttft, itl = target_alone(port, 100)
        ttft_at = calculate_percentiles(ttft, [50, 99])  # evalscope's nearest-rank percentiles
        measured = {"target alone (bare client, parallel 1)": (ttft_at[50], ttft_at[99],
                                                                calculate_percentiles(itl, [50])[50])}
        points = {"evalscope perf (1 process)": run_direct(url, 256, 2048, 10, -1, work, warmup=256)[0]}
        for shards in sorted({1, 2, min(max_shards, 8), max_shards}):
            points[f"service, {shards} shard(s)"] = run_service(client, url, 256, 2048, 10, -1, shards, warmup=256)[0]
        for mode, point in points.items():
            measured[mode] = (percentile(point, "TTFT (ms)", "50%"), percentile(point, "TTFT (ms)", "99%"),
                              percentile(point, "ITL (ms)", "50%"))
    finally:
        for process in processes:
            process.terminate()
    fidelity, rows = {}, []
    for mode, (ttft_p50, ttft_p99, itl_p50) in measured.items():
        fidelity[mode] = {"ttft_p50": ttft_p50 - 100, "ttft_p99": ttft_p99 - 100, "itl_p50": itl_p50 - 10}
        rows.append([mode, *(f"{error:+.2f}" for error in fidelity[mode].values())])
    print(table("Fidelity: measured minus truth (TTFT 100 ms, ITL 10 ms, parallel 256)",
                ["mode", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms"], rows))
    return fidelity


def arrivals_against_poisson(point_dir: Path, rate: float) -> dict:
    """The request start times in evalscope's result table against a Poisson process of `rate`: the achieved mean
    rate and the Kolmogorov-Smirnov distance D of the inter-arrival times to the exponential of mean 1 / rate."""
    with sqlite3.connect(point_dir / "benchmark_data.db") as connection:
        starts = np.sort([row[0] for row in connection.execute(f"SELECT {DatabaseColumns.START_TIME} FROM result")])
    gaps = np.sort(np.diff(starts))
    n = len(gaps)
    expected = 1 - np.exp(-rate * gaps)
    distance = max(np.max(np.arange(1, n + 1) / n - expected), np.max(expected - np.arange(n) / n))
    return {"n": n, "achieved_req_per_s": n / (starts[-1] - starts[0]), "ks_d": float(distance),
            "critical_5pct": 1.36 / math.sqrt(n)}


def open_loop_part(client, fast_url, work: Path) -> dict:
    """500 req/s, 5000 requests: the service over 2 shards (each an independent Poisson stream; their pooled
    arrivals should be one Poisson stream) and evalscope perf alone."""
    fits = {
        "service, 2 shards": arrivals_against_poisson(run_service(client, fast_url, 256, 5000, 20, 500, 2)[1], 500),
        "evalscope perf (1 process)": arrivals_against_poisson(run_direct(fast_url, 256, 5000, 20, 500, work)[1], 500),
    }
    rows = [[mode, fit["n"], round(fit["achieved_req_per_s"], 2), f"{fit['ks_d']:.4f}", f"{fit['critical_5pct']:.4f}"]
            for mode, fit in fits.items()]
    print(table("Open loop, 500 req/s requested: inter-arrival times vs the exponential (Kolmogorov-Smirnov)",
                ["mode", "gaps n", "achieved req/s", "D", "5% critical 1.36/sqrt(n)"], rows))
    return fits


def stream_reader_part(fast_url: str, work: Path) -> dict:
    """The same shard twice in this process, once per plugin: load-generator CPU per request."""
    from serve_app.perf.plan import plan_shards
    from serve_app.perf.runner import ShardRunner
    from serve_app.perf.shard import ShardSpec

    (plan,) = plan_shards(parallel=64, number=8000, rate=-1, shards=1, warmup=64)
    results, rows = {}, []
    for name, lean in (("evalscope openai plugin", False), ("openai_lean plugin", True)):
        runner = ShardRunner(ShardSpec(
            plan=plan, model="bench", url=fast_url, api="openai", api_key=None, dataset="openqa",
            dataset_path=str(PROMPTS), max_tokens=20, temperature=0.0, stream=True, debug=False,
            connect_timeout_s=5, request_timeout_s=60, work_dir=str(work), lean_client=lean,
        ))
        runner.prepare()
        stats = runner.run(time.time() + 0.2)
        results[name] = {"req_per_s": stats.req_per_s, "cpu_ms_per_request": stats.cpu_ms_per_request}
        rows.append([name, round(stats.req_per_s, 1), round(stats.cpu_ms_per_request, 3)])
    print(table("Stream reader, one shard (parallel 64, 8000 requests)", ["plugin", "req/s", "CPU ms/req"], rows))
    return results


def wait_until_fast_target(url: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.post(url, json={}, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(url)


if __name__ == "__main__":
    main()
