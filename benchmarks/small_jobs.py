"""Small-job overhead: what the service adds to a short perf test and to a one-dataset eval, with and without warm
workers (ServiceArgs.warm_workers: processes started, evalscope imported, before a job asks).

1. Perf: a 2-shard, rate-limited test of a few seconds against the simulator, submitted and waited for (one
   synchronous POST); overhead = that call's wall time minus the test's own "Test Duration (s)".
2. Eval: gsm8k's shipped samples (limit 8) against the simulator through the service (one synchronous POST),
   against evalscope run directly on the same task config (`run_task` in a fresh `python -c` process with a fresh
   Hugging Face datasets cache, as the service gives each run): wall time from start to result.

Each service mode runs in a child process with a service of its own (started by harness.local_service); its first
job of each kind is not timed (the ingress lists evalscope's perf plugins once). Between timed jobs the script
waits --pause-s, the same in every mode, so a pool can refill as it would between a user's jobs. Medians of --runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import REPO, SAMPLES, local_service

from serve_app.config import ServiceArgs
from serve_app.eval.plan import plan_eval
from serve_app.schemas import EvalRequest
from serve_app.simulator.process import SimulatorProcess

DEFAULT_WARM = ServiceArgs.model_fields["warm_workers"].default
PERF = {"dataset": "openqa", "dataset_path": str(SAMPLES / "perf" / "openqa.jsonl"), "number": 100, "parallel": 4,
        "rate": 25, "shards": 2, "max_tokens": 8}  # 4 s at 25 req/s
EVAL_LIMIT = 8
RUN_DIRECTLY = (
    "import json, sys\n"
    "from evalscope.config import TaskConfig\n"
    "from evalscope.run import run_task\n"
    "run_task(TaskConfig(api_key='EMPTY', **json.loads(sys.argv[1])))\n"
)


def eval_body(api_url: str) -> dict:
    return {"model": "simulator", "api_url": api_url, "datasets": ["gsm8k"], "limit": EVAL_LIMIT,
            "dataset_args": {"gsm8k": {"local_path": str(SAMPLES / "gsm8k")}}}


def perf_overhead(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = client.post("/api/v1/perf", json={"model": "simulator", "url": url, **PERF})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    (point,) = response.json()["results"].values()
    return elapsed - point["metrics"]["Test Duration (s)"]


def service_eval_s(client: httpx.Client, api_url: str) -> float:
    started = time.perf_counter()
    response = client.post("/api/v1/eval", json=eval_body(api_url))
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    assert response.json()["scores"] == {"gsm8k": 1.0}, response.text
    return elapsed


def direct_eval_s(api_url: str, work: Path) -> float:
    """evalscope on the task config the service would give this dataset, in a fresh process."""
    (task,) = plan_eval(EvalRequest(**eval_body(api_url)), ServiceArgs(outputs_root=work, samples_root=SAMPLES)).tasks
    with tempfile.TemporaryDirectory(prefix="hf-datasets-") as cache:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", RUN_DIRECTLY, json.dumps(task.task_config)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "HF_DATASETS_CACHE": cache})
        return time.perf_counter() - started


def measure_service(warm_workers: int, runs: int, pause_s: float) -> dict:
    """In a child process: one service with `warm_workers`; the perf overheads and eval times of `runs` jobs."""
    base, _, cores = local_service(f"small_jobs_warm{warm_workers}", warm_workers=warm_workers)
    perf, evals = [], []
    with SimulatorProcess() as simulator, httpx.Client(base_url=base, timeout=600) as client:
        perf_overhead(client, simulator.chat_url)  # untimed: the ingress's first perf admission
        service_eval_s(client, simulator.base_url)
        for _ in range(runs):
            time.sleep(pause_s)
            perf.append(perf_overhead(client, simulator.chat_url))
        for _ in range(runs):
            time.sleep(pause_s)
            evals.append(service_eval_s(client, simulator.base_url))
    return {"cores": cores, "perf_overhead_s": perf, "eval_s": evals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pause-s", type=float, default=15.0, help="between timed jobs, in every mode")
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "small_jobs.json"))
    parser.add_argument("--child-warm-workers", type=int, help=argparse.SUPPRESS)  # one mode, in a child process
    options = parser.parse_args()
    if options.child_warm_workers is not None:
        print(json.dumps(measure_service(options.child_warm_workers, options.runs, options.pause_s)))
        return

    modes = {}
    for warm in (0, DEFAULT_WARM):  # one at a time: each service alone on the machine
        child = subprocess.run(
            [sys.executable, __file__, "--child-warm-workers", str(warm), "--runs", str(options.runs),
             "--pause-s", str(options.pause_s)], check=True, capture_output=True, text=True)
        modes[warm] = json.loads(child.stdout.strip().splitlines()[-1])
    with SimulatorProcess() as simulator, tempfile.TemporaryDirectory(prefix="small_jobs_direct_") as work:
        direct = []
        for _ in range(options.runs):
            time.sleep(options.pause_s)
            direct.append(direct_eval_s(simulator.base_url, Path(work)))

    median = statistics.median
    cores = modes[0]["cores"]
    duration = PERF["number"] / PERF["rate"]
    print(f"\n## Small jobs ({cores} cores, medians of {options.runs})")
    print(f"perf, 2 shards, {PERF['number']} requests at {PERF['rate']} req/s (~{duration:.0f} s): "
          "end-to-end minus Test Duration")
    for warm, mode in modes.items():
        print(f"  warm_workers={warm}: {median(mode['perf_overhead_s']):.2f} s   "
              f"(runs: {', '.join(f'{s:.2f}' for s in mode['perf_overhead_s'])})")
    print(f"eval, gsm8k samples, limit {EVAL_LIMIT}: wall time to the result")
    print(f"  evalscope run_task, fresh process: {median(direct):.2f} s   "
          f"(runs: {', '.join(f'{s:.2f}' for s in direct)})")
    for warm, mode in modes.items():
        print(f"  service, warm_workers={warm}: {median(mode['eval_s']):.2f} s "
              f"({median(mode['eval_s']) / median(direct):.2f}x)   "
              f"(runs: {', '.join(f'{s:.2f}' for s in mode['eval_s'])})")
    report = {"cores": cores, "runs": options.runs, "pause_s": options.pause_s, "perf": PERF,
              "eval_limit": EVAL_LIMIT, "direct_eval_s": direct, "service": modes}
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {options.out}")


if __name__ == "__main__":
    sys.exit(main())
