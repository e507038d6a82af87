"""Perf fan-out benchmark: evalscope perf run directly vs the service with 1, 2, ... shards, on one machine.

1. Throughput against a fast target (benchmarks/fast_target.py): req/s and load-generator CPU ms per request.
2. Fidelity against the same target with 100 ms TTFT and 10 ms between tokens at parallel 256: measured minus
   truth (its timers add microseconds, so the error shown is the load generator's).
3. Open loop: rate 500 req/s over 2 shards, achieved / requested.
4. Stream reader: one shard in this process with evalscope's OpenAI plugin vs the lean one (serve_app.perf.plugin).

Prints a table per part and writes everything to --out as JSON. Runs unchanged on any core count: the shard
counts tried grow with the cores (1, 2, 4, 8, ... up to the cores left after the targets).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx

import fast_target  # benchmarks/ is the script's directory, first on sys.path
from harness import REPO, SAMPLES, local_service

from serve_app.simulator.process import free_port

PROMPTS = SAMPLES / "perf" / "openqa.jsonl"
EVALSCOPE = [sys.executable, "-m", "evalscope.cli.cli"]  # evalscope's own CLI, wherever it is installed


def percentile(point: dict, metric: str, label: str) -> float:
    return next(row[metric] for row in point["percentiles"] if row["Percentiles"] == label)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_direct(
    url: str, parallel: int, number: int, max_tokens: int, rate: float, work: Path, warmup: int = 0
) -> tuple[dict, float]:
    """`evalscope perf` in its own process; returns its result for the point and its CPU seconds."""
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
    }, cpu


def run_service(client: httpx.Client, url: str, parallel: int, number: int, max_tokens: int, rate: float,
                shards: int, warmup: int = 0) -> dict:
    response = client.post("/api/v1/perf", json={
        "model": "bench", "url": url, "dataset": "openqa", "dataset_path": str(PROMPTS), "parallel": parallel,
        "number": number, "max_tokens": max_tokens, "rate": rate, "shards": shards, "warmup": warmup,
    })
    if response.status_code != 200:
        raise RuntimeError(f"perf request failed ({response.status_code}): {response.text}")
    return response.json()["results"][f"parallel_{parallel}_number_{number}"]


def table(title: str, headers: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([f"\n## {title}", line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests-per-shard", type=int, default=4000, help="throughput test: requests per shard")
    parser.add_argument("--parallel-per-shard", type=int, default=64)
    parts = ["throughput", "fidelity", "open_loop", "stream_reader"]
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "perf_fanout.json"))
    options = parser.parse_args()

    cores = os.cpu_count() or 2
    target_workers = max(1, cores // 8)
    max_shards = max(2, cores - target_workers)
    shard_counts = sorted({1, 2, *[n for n in (4, 8, 12, 16, 24, 32, 48, 64) if n <= max_shards], max_shards})
    report: dict = {"cores": cores, "target_workers": target_workers}

    fast_port = free_port()
    fast_processes = fast_target.start(fast_port, tokens=20, workers=target_workers)
    fast_url = f"http://127.0.0.1:{fast_port}/v1/chat/completions"
    wait_until_fast_target(fast_url)
    base, work, _ = local_service("perf_fanout", max_shards=max(shard_counts), perf_shard_num_cpus=0.5)
    client = httpx.Client(base_url=base, timeout=1800)

    if "throughput" in options.parts:
        report["throughput"] = throughput_part(client, fast_url, options, max_shards, shard_counts, work, cores)
    if "fidelity" in options.parts:
        report["fidelity"] = fidelity_part(client, max_shards, target_workers, work)
    if "open_loop" in options.parts:
        report["open_loop"] = open_loop_part(client, fast_url)
    if "stream_reader" in options.parts:
        report["stream_reader"] = stream_reader_part(fast_url, work)

    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {options.out}")
    for process in fast_processes:
        process.terminate()


def throughput_part(client, fast_url, options, max_shards, shard_counts, work, cores) -> dict:
    """The same total parallel and number for every mode."""
    parallel = options.parallel_per_shard * max_shards
    number = options.requests_per_shard * max_shards
    idle_cpu = run_direct(fast_url, 1, 1, 20, -1, work)[1]  # evalscope's start-up cost, taken off its CPU below
    direct, direct_cpu = run_direct(fast_url, parallel, number, 20, -1, work)
    direct_rps = direct["metrics"]["Req Throughput (req/s)"]
    rows = [["evalscope perf (1 process)", parallel, number, round(direct_rps, 1),
             round(1000 * (direct_cpu - idle_cpu) / number, 3), "1.00"]]
    throughput = {"parallel": parallel, "number": number, "direct": {"req_per_s": direct_rps,
                  "cpu_ms_per_request": 1000 * (direct_cpu - idle_cpu) / number}, "service": {}}
    for shards in shard_counts:
        point = run_service(client, fast_url, parallel, number, 20, -1, shards)
        rps = point["metrics"]["Req Throughput (req/s)"]
        cpu_ms = sum(s["cpu_ms_per_request"] * s["requests"] for s in point["shards"]) / number
        throughput["service"][shards] = {"req_per_s": rps, "cpu_ms_per_request": cpu_ms, "ratio": rps / direct_rps,
                                         "failed": point["metrics"]["Failed Requests"]}
        rows.append([f"service, {shards} shard(s)", parallel, number, round(rps, 1), round(cpu_ms, 3),
                     f"{rps / direct_rps:.2f}"])
    print(table(f"Throughput vs a fast target ({cores} cores)",
                ["mode", "parallel", "number", "req/s", "client CPU ms/req", "x direct"], rows))
    return throughput


def fidelity_part(client, max_shards, target_workers, work) -> dict:
    """100 ms TTFT, 10 ms between tokens, parallel 256: 8 measured waves after one warm-up wave for every mode.

    The first row is the target alone at parallel 1: what its own timers and the loopback add to the truth.
    """
    port = free_port()
    processes = fast_target.start(port, tokens=10, workers=target_workers, ttft_ms=100, itl_ms=10)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    wait_until_fast_target(url)
    try:
        fidelity = {}
        runs = {
            "target alone (service, parallel 1)": run_service(client, url, 1, 100, 10, -1, 1),
            "evalscope perf (1 process)": run_direct(url, 256, 2048, 10, -1, work, warmup=256)[0],
        }
        for shards in sorted({1, 2, min(max_shards, 8), max_shards}):
            runs[f"service, {shards} shard(s)"] = run_service(client, url, 256, 2048, 10, -1, shards, warmup=256)
        rows = []
        for mode, point in runs.items():
            errors = {
                "ttft_p50": percentile(point, "TTFT (ms)", "50%") - 100,
                "ttft_p99": percentile(point, "TTFT (ms)", "99%") - 100,
                "itl_p50": percentile(point, "ITL (ms)", "50%") - 10,
            }
            fidelity[mode] = errors
            rows.append([mode, *(f"{v:+.2f}" for v in errors.values())])
    finally:
        for process in processes:
            process.terminate()
    print(table("Fidelity: measured minus truth (TTFT 100 ms, ITL 10 ms, parallel 256)",
                ["mode", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms"], rows))
    return fidelity


def open_loop_part(client, fast_url) -> dict:
    """500 req/s split over 2 shards, each an independent Poisson stream."""
    point = run_service(client, fast_url, 256, 5000, 20, 500, 2)
    achieved = point["metrics"]["Req Throughput (req/s)"]
    print(table("Open loop over 2 shards", ["requested req/s", "achieved req/s", "ratio"],
                [[500, round(achieved, 2), f"{achieved / 500:.4f}"]]))
    return {"requested": 500, "achieved": achieved, "ratio": achieved / 500}


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
        stats = runner.run(time.time() + 0.2).stats()
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
