"""Eval parallelism benchmark: three datasets in one request vs the same three one request at a time.

The target is the project's simulator with a small injected latency (a model server that is not the
bottleneck): every dataset runs as its own Ray task, so one 3-dataset request should take well under the
sum of the three single-dataset requests. Prints a table and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
from harness import REPO, SAMPLES, local_service

from serve_app.simulator.process import SimulatorProcess
DATASET_ARGS = {
    "gsm8k": {"local_path": str(SAMPLES / "gsm8k")},
    "iquiz": {"local_path": str(SAMPLES / "iquiz")},
    "ceval": {"local_path": str(SAMPLES / "ceval"), "subset_list": ["computer_network", "high_school_mathematics"]},
}


def evaluate(client: httpx.Client, api_url: str, datasets: list[str], limit: int) -> tuple[float, dict]:
    started = time.perf_counter()
    response = client.post("/api/v1/eval", json={
        "model": "simulator", "api_url": api_url, "datasets": datasets, "limit": limit,
        "dataset_args": {name: DATASET_ARGS[name] for name in datasets},
    })
    response.raise_for_status()
    return time.perf_counter() - started, response.json()["scores"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=10, help="samples per subset")
    parser.add_argument("--ttft-ms", type=float, default=30.0)
    parser.add_argument("--itl-ms", type=float, default=3.0)
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "eval_parallel.json"))
    options = parser.parse_args()

    base, _, cores = local_service("eval_parallel")
    with SimulatorProcess(ttft_ms=options.ttft_ms, itl_ms=options.itl_ms) as simulator, \
            httpx.Client(base_url=base, timeout=1800) as client:
        evaluate(client, simulator.base_url, ["iquiz"], 1)  # warm the cluster's worker pool once
        singles = {name: evaluate(client, simulator.base_url, [name], options.limit) for name in DATASET_ARGS}
        together, scores = evaluate(client, simulator.base_url, list(DATASET_ARGS), options.limit)
    total = sum(seconds for seconds, _ in singles.values())
    rows = [(name, f"{seconds:.2f}", s[name]) for name, (seconds, s) in singles.items()]
    rows += [("sum of the three", f"{total:.2f}", ""), ("all three in one request", f"{together:.2f}", scores),
             ("ratio (one request / sum)", f"{together / total:.2f}", "")]
    print(f"\n## Eval: 3 datasets in one request vs one at a time ({cores} cores, limit {options.limit})")
    for row in rows:
        print(f"{row[0]:>28}  {row[1]:>8}  {row[2]}")
    report = {"cores": cores, "limit": options.limit, "single_s": {n: s for n, (s, _) in singles.items()},
              "sum_s": total, "together_s": together, "ratio": together / total, "scores": scores}
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {options.out}")


if __name__ == "__main__":
    sys.exit(main())
