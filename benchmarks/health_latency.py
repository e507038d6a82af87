"""/health latency while jobs run: the ingress must stay responsive however busy the cluster is.

Starts the service and a simulator, keeps a perf job and an eval job running, and times sequential GET /health
calls meanwhile. Prints p50/p99/max and writes JSON to --out. Goal: p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import httpx
from harness import REPO, SAMPLES, local_service

from serve_app.simulator.process import SimulatorProcess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "health_latency.json"))
    options = parser.parse_args()

    base, _, cores = local_service("health_latency", datasets_root=str(SAMPLES))
    with SimulatorProcess(ttft_ms=20, itl_ms=2) as simulator, httpx.Client(base_url=base, timeout=60) as client:
        perf = client.post("/api/v1/perf?wait=false", json={
            "model": "simulator", "url": simulator.chat_url, "dataset_path": "perf/openqa.jsonl",
            "number": 10_000_000, "parallel": 64, "max_tokens": 16,
        }).json()["job_id"]
        evaluation = client.post("/api/v1/eval?wait=false", json={
            "model": "simulator", "api_url": simulator.base_url, "datasets": ["gsm8k"],
            "dataset_args": {"gsm8k": {"local_path": str(SAMPLES / "gsm8k")}}, "eval_batch_size": 4,
        }).json()["job_id"]
        while client.get(f"/api/v1/jobs/{perf}").json()["progress"]["done"] == 0:
            time.sleep(0.2)
        latencies = []
        for _ in range(options.calls):
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            latencies.append((time.perf_counter() - started) * 1000)
        perf_job = client.get(f"/api/v1/jobs/{perf}").json()
        client.post(f"/api/v1/jobs/{perf}/cancel")
        client.post(f"/api/v1/jobs/{evaluation}/cancel")
    latencies.sort()
    report = {
        "cores": cores, "calls": len(latencies),
        "p50_ms": statistics.median(latencies), "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": latencies[-1], "perf_job_req_per_s": perf_job["progress"].get("req_per_s"),
    }
    print(f"\n## GET /health while a perf job ({report['perf_job_req_per_s']} req/s) and an eval job run "
          f"({cores} cores, {len(latencies)} calls)")
    print(f"p50 {report['p50_ms']:.2f} ms   p99 {report['p99_ms']:.2f} ms   max {report['max_ms']:.2f} ms")
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {options.out}")


if __name__ == "__main__":
    main()
