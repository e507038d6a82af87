"""/health latency while jobs run: the ingress must stay responsive however busy the cluster is.

Starts the service, a perf job against a fast simulator and an eval job against a slow one (one sample at a time,
a second each, so that it outlasts the calls), and once both are sending requests times sequential GET /health
calls. Prints p50/p99/max and how many calls each job overlapped, and writes JSON to --out. Goal: p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime
from pathlib import Path

import httpx
from harness import REPO, SAMPLES, local_service

from serve_app.jobs.store import TERMINAL
from serve_app.simulator.process import SimulatorProcess


def submit(client: httpx.Client, path: str, body: dict) -> str:
    response = client.post(path, params={"wait": "false"}, json=body)
    if response.status_code != 202:
        raise RuntimeError(f"POST {path} failed ({response.status_code}): {response.text}")
    return response.json()["job_id"]


def ran(job: dict, at: float) -> bool:
    """Whether the job was running at wall-clock time `at`."""
    started, finished = (datetime.fromisoformat(job[key]).timestamp() if job[key] else None
                         for key in ("started_at", "finished_at"))
    return started is not None and started <= at and (finished is None or at < finished)


def wait_until_both_run(client: httpx.Client, perf: str, evaluation: str) -> None:
    """Until the perf job has completed a request and the eval job has loaded its dataset (phase running)."""
    while True:
        perf_job, eval_job = (client.get(f"/api/v1/jobs/{job_id}").json() for job_id in (perf, evaluation))
        if ended := [job for job in (perf_job, eval_job) if job["status"] in TERMINAL]:
            raise RuntimeError(f"job {ended[0]['job_id']} ended before the calls: {ended[0]['error']}")
        if perf_job["progress"]["done"] and eval_job["progress"]["phase"] == "running":
            return
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "health_latency.json"))
    options = parser.parse_args()

    base, _, cores = local_service("health_latency", datasets_root=str(SAMPLES))
    with SimulatorProcess(ttft_ms=20, itl_ms=2) as simulator, SimulatorProcess(ttft_ms=1000) as slow_simulator, \
            httpx.Client(base_url=base, timeout=60) as client:
        perf = submit(client, "/api/v1/perf", {
            "model": "simulator", "url": simulator.chat_url, "dataset_path": "perf/openqa.jsonl",
            "number": 1_000_000, "parallel": 64, "max_tokens": 16,  # the most a request may ask (max_number)
        })
        evaluation = submit(client, "/api/v1/eval", {
            "model": "simulator", "api_url": slow_simulator.base_url, "datasets": ["gsm8k"],
            "dataset_args": {"gsm8k": {"local_path": str(SAMPLES / "gsm8k")}}, "eval_batch_size": 1,
        })
        wait_until_both_run(client, perf, evaluation)
        latencies, call_times = [], []
        for _ in range(options.calls):
            call_times.append(time.time())
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            latencies.append((time.perf_counter() - started) * 1000)
        perf_job = client.get(f"/api/v1/jobs/{perf}").json()
        eval_job = client.get(f"/api/v1/jobs/{evaluation}").json()
        client.post(f"/api/v1/jobs/{perf}/cancel")
        client.post(f"/api/v1/jobs/{evaluation}/cancel")
    latencies.sort()
    report = {
        "cores": cores, "calls": len(latencies),
        "p50_ms": statistics.median(latencies), "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": latencies[-1], "perf_job_req_per_s": perf_job["progress"].get("req_per_s"),
        "perf_job_status": perf_job["status"], "eval_job_status": eval_job["status"],
        "calls_while_perf_ran": sum(ran(perf_job, at) for at in call_times),
        "calls_while_eval_ran": sum(ran(eval_job, at) for at in call_times),
    }
    print(f"\n## GET /health during a perf job ({report['perf_job_req_per_s']} req/s) and an eval job "
          f"({cores} cores, {len(latencies)} calls)")
    print(f"p50 {report['p50_ms']:.2f} ms   p99 {report['p99_ms']:.2f} ms   max {report['max_ms']:.2f} ms")
    print(f"calls while the perf job ran: {report['calls_while_perf_ran']}, while the eval job ran: "
          f"{report['calls_while_eval_ran']} (after the last call: {report['perf_job_status']}, "
          f"{report['eval_job_status']})")
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {options.out}")


if __name__ == "__main__":
    main()
