"""Job API under load: many clients submit, re-send and follow small jobs while a long perf job runs.

Starts the service and a simulator and keeps one perf job running in the background. Then --clients concurrent
clients work for --duration seconds; each submits a small job (?wait=false, a fresh Idempotency-Key), re-sends it
once with the same key and body (it must get the same job back), polls it until it ends and submits the next,
alternating perf and eval jobs. Meanwhile GET /health is timed every 50 ms. Then the clients wait for their jobs
to end (giving up once none has ended for 180 s), and every job a client got back must be listed exactly once by
GET /api/v1/jobs, which may list nothing else but the background job.

The queue limits are the defaults (4 running, 64 queued): each client has at most one job outstanding, so up to
67 clients never see a 429. Prints a report (and writes JSON to --json); exits 1 if a job was lost or duplicated,
a re-send got another job, any answer was a 5xx, or any other answer was unexpected.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import ray
from harness import SAMPLES, local_service
from ray import serve

from serve_app.config import ServiceArgs
from serve_app.simulator.process import SimulatorProcess

TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}
SERVICE_ARGS = {"datasets_root": str(SAMPLES), "perf_shard_num_cpus": 0.1, "eval_task_num_cpus": 0.1}
POLL_S = 1.0  # how often a client polls its job, as serve_app.client does without events
PROBE_S = 0.05
DRAIN_IDLE_S = 180.0  # after the duration, waiting stops once no job has ended for this long: stuck, not slow
BACKGROUND_RATE = 25  # req/s: steady work for the cluster without starving the small jobs of CPU
TIMEOUT = httpx.Timeout(120.0, connect=30.0)  # generous: a slow answer is measured, not turned into an error


@dataclass
class Window:
    """Clients submit until `stop_at`, then wait for their jobs until the drain stalls."""

    stop_at: float
    last_end: float = 0.0  # when a client last saw its job end

    def submitting(self) -> bool:
        return time.monotonic() < self.stop_at

    def stalled(self) -> bool:
        return time.monotonic() - max(self.stop_at, self.last_end) > DRAIN_IDLE_S


@dataclass
class Tally:
    submit_ms: list[float] = field(default_factory=list)
    resend_ms: list[float] = field(default_factory=list)
    poll_ms: list[float] = field(default_factory=list)
    keys: dict[str, set[str]] = field(default_factory=dict)  # job id -> Idempotency-Keys that got it
    resend_mismatches: list[str] = field(default_factory=list)
    server_errors: int = 0
    throttled: int = 0
    unexpected: int = 0  # non-5xx answers a correct service never gives here (400, 404, 409, ...)
    transport_errors: int = 0
    problems: Counter = field(default_factory=Counter)  # what went wrong, for the report

    def answer(self, call: str, response: httpx.Response) -> None:
        if response.status_code >= 500:
            self.server_errors += 1
        else:
            self.unexpected += 1
        self.problems[f"{call} -> {response.status_code}: {response.text[:200]}"] += 1

    def dropped(self, call: str, exc: httpx.TransportError) -> None:
        self.transport_errors += 1
        self.problems[f"{call} -> {type(exc).__name__}: {exc}"] += 1

    def add_errors(self, other: Tally) -> None:
        self.server_errors += other.server_errors
        self.unexpected += other.unexpected
        self.transport_errors += other.transport_errors
        self.problems += other.problems


def small_jobs(simulator: SimulatorProcess) -> list[tuple[str, dict]]:
    perf = {
        "model": "simulator", "url": simulator.chat_url, "dataset": "openqa", "dataset_path": "perf/openqa.jsonl",
        "number": 10, "parallel": 2, "max_tokens": 8, "shards": 1,
    }
    evaluation = {
        "model": "simulator", "api_url": simulator.base_url, "datasets": ["iquiz"], "limit": 1,
        "dataset_args": {"iquiz": {"local_path": "iquiz"}},
    }
    return [("/api/v1/perf", perf), ("/api/v1/eval", evaluation)]


async def post_job(http: httpx.AsyncClient, tally: Tally, window: Window, path: str, body: dict, key: str,
                   latencies: list[float]) -> str | None:
    """Submit until the service answers with a job; None if it refused (or stayed full past the duration).

    429 waits Retry-After; a 5xx or a dropped connection is retried with the same key, which is safe by design.
    """
    while not window.stalled():
        started = time.perf_counter()
        try:
            response = await http.post(path, params={"wait": "false"}, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:
            tally.dropped(f"POST {path}", exc)
            await asyncio.sleep(1)
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code == 202:
            return response.json()["job_id"]
        if response.status_code == 429:
            tally.throttled += 1
            if not window.submitting():
                return None
            await asyncio.sleep(float(response.headers.get("Retry-After", 1)))
            continue
        tally.answer(f"POST {path}", response)
        if response.status_code < 500:
            return None
        await asyncio.sleep(1)
    tally.problems[f"POST {path}: no job before the drain stalled"] += 1
    return None


async def follow(http: httpx.AsyncClient, tally: Tally, window: Window, job_id: str) -> dict | None:
    """Poll the job until it ends; its last view, or None if the drain stalled first or the job vanished."""
    while not window.stalled():
        started = time.perf_counter()
        try:
            response = await http.get(f"/api/v1/jobs/{job_id}")
        except httpx.TransportError as exc:
            tally.dropped("GET /api/v1/jobs/{id}", exc)
        else:
            tally.poll_ms.append((time.perf_counter() - started) * 1000)
            if response.status_code == 200:
                if (job := response.json())["status"] in TERMINAL:
                    window.last_end = time.monotonic()
                    return job
            else:
                tally.answer("GET /api/v1/jobs/{id}", response)
                if response.status_code == 404:
                    return None
        await asyncio.sleep(POLL_S)
    return None


async def client(http: httpx.AsyncClient, tally: Tally, window: Window, jobs: list[tuple[str, dict]],
                 first: int) -> None:
    for turn in itertools.count(first):
        if not window.submitting():
            return
        path, body = jobs[turn % len(jobs)]
        key = str(uuid.uuid4())
        job_id = await post_job(http, tally, window, path, body, key, tally.submit_ms)
        if job_id is None:
            continue
        tally.keys.setdefault(job_id, set()).add(key)
        again = await post_job(http, tally, window, path, body, key, tally.resend_ms)
        if again != job_id:
            tally.resend_mismatches.append(f"key {key}: {job_id}, then {again}")
        await follow(http, tally, window, job_id)


def probe_health(base: str, stop: threading.Event) -> tuple[list[float], Tally]:
    """GET /health every PROBE_S until `stop`, in its own thread so the clients' event loop does not delay it.

    Its failures go to a Tally of its own (the clients' one belongs to the event loop's thread).
    """
    latencies, tally = [], Tally()
    with httpx.Client(base_url=base, timeout=TIMEOUT) as http:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = http.get("/health")
            except httpx.TransportError as exc:
                tally.dropped("GET /health", exc)
            else:
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    tally.answer("GET /health", response)
            stop.wait(max(0.0, PROBE_S - (time.perf_counter() - started)))
    return latencies, tally


async def start_background(http: httpx.AsyncClient, simulator: SimulatorProcess, duration: float) -> str:
    """A rate-limited perf job sized to outlast the measurement; returns once its first requests completed."""
    response = await http.post("/api/v1/perf", params={"wait": "false"}, json={
        "model": "simulator", "url": simulator.chat_url, "dataset": "openqa", "dataset_path": "perf/openqa.jsonl",
        "number": int(BACKGROUND_RATE * (duration + 10)), "parallel": 8, "rate": BACKGROUND_RATE,
        "max_tokens": 16, "shards": 1,
    })
    response.raise_for_status()
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 120
    while (job := (await http.get(f"/api/v1/jobs/{job_id}")).json())["progress"]["done"] == 0:
        if job["status"] in TERMINAL or time.monotonic() > deadline:
            raise RuntimeError(f"the background perf job never got going: {job['status']} {job.get('error')}")
        await asyncio.sleep(0.2)
    return job_id


async def list_all(http: httpx.AsyncClient) -> tuple[list[dict], int]:
    """Every job, page by page, and the total the service reported."""
    jobs, total = [], None
    while total is None or len(jobs) < total:
        response = await http.get("/api/v1/jobs", params={"limit": 500, "offset": len(jobs)})
        response.raise_for_status()
        page = response.json()
        total = page["total"]
        if not page["jobs"]:
            break
        jobs += page["jobs"]
    return jobs, total


def summary(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    if not ordered:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"count": len(ordered), "p50_ms": statistics.median(ordered),
            "p99_ms": ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)], "max_ms": ordered[-1]}


def throughput(job: dict) -> float | None:
    """The finished perf job's measured req/s, else the last progress rate."""
    points = (job.get("result") or {}).get("results") or {}
    if points:
        return next(iter(points.values()))["metrics"]["Req Throughput (req/s)"]
    return job["progress"].get("req_per_s")


async def measure(base: str, simulator: SimulatorProcess, clients: int, duration: float) -> dict:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT, limits=limits) as http:
        background = await start_background(http, simulator, duration)
        tally = Tally()
        window = Window(stop_at=time.monotonic() + duration)
        stop_probe = threading.Event()
        probe = asyncio.create_task(asyncio.to_thread(probe_health, base, stop_probe))
        jobs = small_jobs(simulator)
        workers = [asyncio.create_task(client(http, tally, window, jobs, i)) for i in range(clients)]
        await asyncio.sleep(duration)
        stop_probe.set()
        health_ms, health_tally = await probe
        await asyncio.gather(*workers)
        drain_s = time.monotonic() - window.stop_at
        background_job = await follow(http, tally, window, background) or (
            await http.get(f"/api/v1/jobs/{background}")).json()
        listed, total = await list_all(http)

    tally.add_errors(health_tally)
    args = ServiceArgs(**SERVICE_ARGS)
    listed_ids = Counter(job["job_id"] for job in listed)
    final = {job["job_id"]: job for job in listed}
    submitted = set(tally.keys)
    missing = sorted(submitted - set(listed_ids))
    never_ended = sorted(j for j in submitted & set(final) if final[j]["status"] not in TERMINAL)
    errors = Counter((final[j]["error"] or "")[:200] for j in submitted & set(final) if final[j]["status"] == "failed")
    return {
        "clients": clients, "duration_s": duration,
        "queue_limits": {"max_running_jobs": args.max_running_jobs, "max_queued_jobs": args.max_queued_jobs},
        "submitted": len(submitted),
        "submitted_by_kind": dict(Counter(final[j]["kind"] for j in submitted if j in final)),
        "completed_by_status": dict(Counter(final[j]["status"] for j in submitted if j in final)),
        "failed_job_errors": dict(errors.most_common(5)),
        "lost": {
            "missing_from_listing": missing, "never_terminal": never_ended,
            # two submissions with different keys got one job: one of them has none of its own
            "shared_by_several_keys": sorted(j for j, keys in tally.keys.items() if len(keys) > 1),
        },
        "duplicated": {
            "listed_more_than_once": sorted(j for j, n in listed_ids.items() if n > 1),
            "listed_but_not_submitted": sorted(set(listed_ids) - submitted - {background}),
        },
        "listing": {"jobs": len(listed), "total": total},
        "resend_mismatches": tally.resend_mismatches,
        "http_5xx": tally.server_errors, "http_429": tally.throttled, "unexpected_answers": tally.unexpected,
        "transport_errors": tally.transport_errors, "problems": dict(tally.problems.most_common(10)),
        "drain_s": drain_s,
        "health": summary(health_ms), "submit": summary(tally.submit_ms), "resend": summary(tally.resend_ms),
        "poll": summary(tally.poll_ms),
        "background_perf": {"job_id": background, "status": background_job["status"],
                            "req_per_s": throughput(background_job), "error": background_job.get("error")},
    }


def latency_line(s: dict) -> str:
    if not s["count"]:
        return "no calls"
    return f"p50 {s['p50_ms']:.2f} ms   p99 {s['p99_ms']:.2f} ms   max {s['max_ms']:.2f} ms   ({s['count']} calls)"


def print_report(report: dict, cores: int) -> None:
    limits = report["queue_limits"]
    lost, duplicated = report["lost"], report["duplicated"]
    print(f"\n## Job API under load ({cores} cores, {report['clients']} clients, {report['duration_s']:g} s; "
          f"default queue limits: {limits['max_running_jobs']} running, {limits['max_queued_jobs']} queued)")
    print(f"jobs submitted          {report['submitted']}  {report['submitted_by_kind']}")
    print(f"jobs by final status    {report['completed_by_status']}")
    for error, count in report["failed_job_errors"].items():
        print(f"  failed x{count}: {error}")
    print(f"lost jobs               {len(lost['missing_from_listing'])} missing from the listing, "
          f"{len(lost['never_terminal'])} never ended (drain took {report['drain_s']:.1f} s), "
          f"{len(lost['shared_by_several_keys'])} shared by several keys")
    print(f"duplicated jobs         {len(duplicated['listed_more_than_once'])} listed more than once, "
          f"{len(duplicated['listed_but_not_submitted'])} listed but not submitted")
    print(f"listing                 {report['listing']['jobs']} jobs, total {report['listing']['total']}")
    print(f"re-sends, other job     {len(report['resend_mismatches'])}")
    print(f"5xx answers             {report['http_5xx']}")
    print(f"429 answers             {report['http_429']}")
    print(f"other unexpected        {report['unexpected_answers']} answers, "
          f"{report['transport_errors']} dropped connections")
    for problem, count in report["problems"].items():
        print(f"  x{count}: {problem}")
    print(f"GET /health             {latency_line(report['health'])}")
    print(f"submit (POST)           {latency_line(report['submit'])}")
    print(f"re-send (POST)          {latency_line(report['resend'])}")
    print(f"poll (GET job)          {latency_line(report['poll'])}")
    background = report["background_perf"]
    rate = f"{background['req_per_s']:.2f} req/s" if background["req_per_s"] is not None else "no rate"
    print(f"background perf job     {background['status']}, {rate} (asked {BACKGROUND_RATE})"
          + (f": {background['error']}" if background["error"] else ""))


def passed(report: dict) -> bool:
    return not (any(report["lost"].values()) or any(report["duplicated"].values()) or report["resend_mismatches"]
                or report["http_5xx"] or report["unexpected_answers"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of submitting")
    parser.add_argument("--json", help="also write the report here")
    options = parser.parse_args()

    base, work, cores = local_service("job_load", **SERVICE_ARGS)
    try:
        with SimulatorProcess(ttft_ms=20, itl_ms=2) as simulator:
            report = asyncio.run(measure(base, simulator, options.clients, options.duration))
    finally:
        serve.shutdown()
        ray.shutdown()
    report.update(cores=cores, outputs=str(work), passed=passed(report))
    print_report(report, cores)
    print(f"outputs in {work}")
    if options.json:
        Path(options.json).parent.mkdir(parents=True, exist_ok=True)
        Path(options.json).write_text(json.dumps(report, indent=2))
        print(f"written to {options.json}")
    print("PASS" if report["passed"] else "FAIL")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
