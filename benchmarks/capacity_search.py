"""Capacity search: the service's search against evalscope's own `--sla-auto-tune`, on one simulator of known
capacity, with the equivalent criterion.

The simulator serves at most C requests at once (the others queue) in a fixed T each (`simulate --max-concurrency C
--ttft-ms T`). At `parallel` P <= C every request takes T; at P > C some wait a whole T more. So the highest P at
which 99% of the requests finish within 1.5 T is exactly C:
- the service: `slo: {e2e_ms: 1.5 T}`, `search: {vary: parallel, min_goodput: 0.99}`;
- evalscope (run directly, in a fresh process): `sla_variable: parallel`, `sla_params: [{"p99_latency": "<=1.5T"}]`,
  its other settings left at their defaults (3 runs a probe, number = 2 x parallel).
Both search P in [1, --high]. Printed for each: the capacity found against the truth, probes (test points run),
wall time, and the requests the simulator received.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import REPO, SAMPLES, local_service

from serve_app.simulator.process import SimulatorProcess

PROMPTS = str(SAMPLES / "perf" / "openqa.jsonl")
RUN_EVALSCOPE = """
import json, sys
from evalscope.perf.arguments import Arguments
from evalscope.perf.main import run_perf_benchmark
result = run_perf_benchmark(Arguments(**json.loads(sys.argv[1])))
print(json.dumps({"selected": [s.selected_value for s in result.selections],
                  "probes": [p.value for p in result.probes]}))
"""


def ours(url: str, capacity_ms: float, high: int, probe_duration_s: float) -> dict:
    base, _, _ = local_service("capacity_search")
    body = {"model": "simulator", "url": url, "dataset": "openqa", "dataset_path": PROMPTS, "max_tokens": 1,
            "number": 2000, "slo": {"e2e_ms": capacity_ms},
            "search": {"vary": "parallel", "low": 1, "high": high, "min_goodput": 0.99,
                       "probe_duration_s": probe_duration_s}}
    with httpx.Client(base_url=base, timeout=3600) as client:
        started = time.perf_counter()
        response = client.post("/api/v1/perf", json=body)
        wall_s = time.perf_counter() - started
    response.raise_for_status()
    search = response.json()["search"]
    return {"found": search["max_passing"], "probes": len(search["probes"]), "wall_s": wall_s,
            "loads": [probe["load"] for probe in search["probes"]], "verdict": search["verdict"]}


def evalscope_direct(url: str, capacity_ms: float, high: int, work: str) -> dict:
    arguments = {"model": "simulator", "url": url, "api": "openai", "dataset": "openqa", "dataset_path": PROMPTS,
                 "max_tokens": 1, "parallel": 1, "number": 2, "outputs_dir": work, "no_test_connection": True,
                 "sla_auto_tune": True, "sla_variable": "parallel", "sla_lower_bound": 1, "sla_upper_bound": high,
                 "sla_params": [{"p99_latency": f"<={capacity_ms:g}ms"}]}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", RUN_EVALSCOPE, json.dumps(arguments)], check=True,
                         capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return {"found": result["selected"][0], "probes": len(result["probes"]), "wall_s": wall_s,
            "loads": result["probes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=8, help="C: requests the simulator serves at once")
    parser.add_argument("--service-ms", type=float, default=200.0, help="T: time each request is served")
    parser.add_argument("--high", type=int, default=64, help="the highest parallel both searches may try")
    parser.add_argument("--probe-duration-s", type=float, default=3.0, help="the service's probes")
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "capacity_search.json"))
    options = parser.parse_args()
    limit_ms = 1.5 * options.service_ms
    results = {}
    with SimulatorProcess(max_concurrency=options.capacity, ttft_ms=options.service_ms, output_tokens=1) as target:
        for name, search in (("service", lambda: ours(target.chat_url, limit_ms, options.high,
                                                      options.probe_duration_s)),
                             ("evalscope --sla-auto-tune", lambda: evalscope_direct(
                                 target.chat_url, limit_ms, options.high, tempfile.mkdtemp(prefix="sla_")))):
            before = target.requests_received()
            results[name] = search()
            results[name]["requests"] = target.requests_received() - before

    print(f"\n## Capacity search: true capacity {options.capacity} concurrent requests "
          f"({options.service_ms:g} ms each; 99% within {limit_ms:g} ms), parallel in [1, {options.high}]")
    print("| search | capacity found | error | probes | wall time | requests sent |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, result in results.items():
        found = result["found"]
        error = "n/a" if found is None else f"{abs(found - options.capacity) / options.capacity:.0%}"
        print(f"| {name} | {result['found']} | {error} | {result['probes']} | {result['wall_s']:.1f} s | "
              f"{result['requests']} |")
    for name, result in results.items():
        print(f"{name} probed: {result['loads']}")
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps({"options": vars(options), "results": results}, indent=2))
    print(f"\nwritten to {options.out}")


if __name__ == "__main__":
    sys.exit(main())
