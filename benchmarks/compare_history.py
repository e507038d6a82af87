"""Compare, leaderboard and history latency over a store of 10,000 jobs.

Fills a SQLite job store with jobs as the service leaves them (a realistic mix: 60 % evals with evalscope-sized
reports, 40 % perf runs with summary, percentile and shard tables; 8 models, 6 datasets, 3 owners; review files,
2 subsets of 200 samples each, only for the evals that get compared), then times the calls through the API's real
path minus Ray: FastAPI's TestClient -> the routes -> the ManagerBackend test backend -> the real JobManager ->
the real SqliteJobStore on that file (the service adds one Ray actor call to leaderboard and history, two to
compare). Prints p50/p99 of each call over --calls calls (the goal: p99 under 200 ms) and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_app.api import create_api  # noqa: E402
from serve_app.jobs.store import SqliteJobStore  # noqa: E402
from serve_app.principals import Principal  # noqa: E402
from tests.unit.fakes import ManagerBackend  # noqa: E402

MODELS = [f"org/model-{i}" for i in range(8)]
DATASETS = ["gsm8k", "iquiz", "ceval", "mmlu", "arc", "hellaswag"]
OWNERS = ["team-a", "team-b", "team-c"]
TOKENS = {"admin-token": Principal("ops", admin=True), "team-a-token": Principal("team-a")}
SUBSETS = ("main", "extra")
SAMPLES = 200  # per subset of a compared eval
PERCENTILES = ["10%", "25%", "50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%"]
PERCENTILE_COLUMNS = ["TTFT (ms)", "ITL (ms)", "TPOT (ms)", "Latency (s)", "Input tokens", "Output tokens",
                      "Output (tok/s)", "Total (tok/s)"]
DESCRIPTION = "A benchmark description as evalscope writes it into every report. " * 30  # ~2 KB, as gsm8k's


def eval_result(rng: random.Random, datasets: list[str], output_dir: Path) -> dict:
    reports, scores = {}, {}
    for dataset in datasets:
        score = round(rng.random(), 4)
        scores[dataset] = score
        reports[dataset] = {
            "name": f"m@{dataset}", "dataset_name": dataset, "dataset_description": DESCRIPTION,
            "metrics": [{"identity": {"name": "acc"}, "num": SAMPLES * 2, "score": score, "categories": [
                {"name": ["default"], "num": SAMPLES * 2, "score": score,
                 "subsets": [{"name": subset, "score": score, "num": SAMPLES, "is_aggregate": False}
                             for subset in SUBSETS]}]}],
            "perf_metrics": {"summary": {"latency": {p: rng.random() for p in PERCENTILES}}},
        }
    return {"status": "success", "result": reports, "scores": scores, "failures": {}, "dataset_sources": {},
            "output_dir": str(output_dir)}


def perf_result(rng: random.Random, output_dir: Path) -> dict:
    point = {
        "metrics": {"Test Duration (s)": 10.0, "Total Requests": 200, "Success Requests": 200, "Failed Requests": 0,
                    "Req Throughput (req/s)": rng.uniform(10, 50), "Output Throughput (tok/s)": rng.uniform(500, 900),
                    "Avg Latency (s)": rng.uniform(0.2, 1), "Avg TTFT (ms)": rng.uniform(20, 90),
                    "Avg ITL (ms)": rng.uniform(5, 15), "Avg Output Tokens": 20.0, "Avg Input Tokens": 42.0},
        "percentiles": [{"Percentiles": p, **{c: rng.uniform(1, 100) for c in PERCENTILE_COLUMNS}}
                        for p in PERCENTILES],
        "shards": [{"shard": s, "parallel": 8, "number": 100, "rate": -1.0, "requests": 100, "succeeded": 100,
                    "req_per_s": 20.0, "cpu_ms_per_request": 1.2, "node": "n", "worker": f"w{s}"} for s in range(2)],
    }
    return {"status": "success", "output_dir": str(output_dir), "results": {"parallel_8_number_200": point}}


def write_reviews(rng: random.Random, output_dir: Path, model: str, datasets: list[str]) -> None:
    """Review lines of evalscope's size: the prompt and answer messages are most of each."""
    message = {"role": "user", "content": "A question as a benchmark asks it, with its few-shot examples. " * 25}
    for dataset in datasets:
        for subset in SUBSETS:
            path = output_dir / "reviews" / model.replace("/", "_") / f"{dataset}_{subset}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as reviews:
                for index in range(SAMPLES):
                    value = float(rng.random() < 0.6)
                    reviews.write(json.dumps({"index": index, "target": ["6"], "messages": [message], "sample_score": {
                        "score": {"value": {"acc": value}, "main_score_name": "acc", "prediction": "The answer is 6"},
                        "sample_id": index, "group_id": index}}) + "\n")


def fill(root: Path, jobs: int, compared_pairs: int, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The store's jobs; returns the eval pairs (with review files) and perf pairs to compare."""
    rng = random.Random(seed)
    store = SqliteJobStore(root / "jobs.sqlite3")
    evals: dict[str, list[str]] = {}
    perfs: dict[str, list[str]] = {}
    compared = {model: 0 for model in MODELS}
    try:
        for number in range(jobs):
            model, owner = rng.choice(MODELS), rng.choice(OWNERS)
            kind = "eval" if rng.random() < 0.6 else "perf"
            output_dir = root / "out" / str(number)
            datasets = ["gsm8k", "iquiz"] if kind == "eval" and compared[model] < compared_pairs else \
                rng.sample(DATASETS, rng.randint(1, 3))
            request = ({"model": model, "datasets": datasets, "limit": SAMPLES, "api_url": "http://t/v1"}
                       if kind == "eval" else {"model": model, "url": "http://t/v1/chat/completions", "number": 200,
                                               "parallel": 8})
            job = store.create(kind=kind, model=model, request=request, output_dir=str(output_dir), owner=owner)
            if kind == "eval" and datasets == ["gsm8k", "iquiz"]:
                compared[model] += 1
                write_reviews(rng, output_dir, model, datasets)
                evals.setdefault(model, []).append(job.id)
            elif kind == "perf":
                perfs.setdefault(model, []).append(job.id)
            result = eval_result(rng, datasets, output_dir) if kind == "eval" else perf_result(rng, output_dir)
            store.update(job.id, status="succeeded", started_at=time.time(), finished_at=time.time() + number,
                         result=result)
    finally:
        store.close()
    eval_pairs = [(ids[0], ids[1]) for ids in evals.values() if len(ids) >= 2]
    perf_pairs = [(ids[0], ids[-1]) for ids in perfs.values()]
    return eval_pairs, perf_pairs


def timed(client: TestClient, calls: list[tuple[str, dict, str]]) -> dict[str, float]:
    """Wall time per call, and CPU time (this process's threads: the client, the app and the store all run here),
    which a busy machine stretches less."""
    latencies, cpu = [], []
    for path, params, token in calls:
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        latencies.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: {response.status_code} {response.text[:300]}")
    return {**percentiles(latencies, "ms"), **percentiles(cpu, "cpu_ms"), "calls": len(calls)}


def percentiles(values: list[float], unit: str) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {f"p50_{unit}": round(cuts[49], 2), f"p99_{unit}": round(cuts[98], 2), f"max_{unit}": round(max(values), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200, help="calls of each endpoint")
    parser.add_argument("--compared-pairs", type=int, default=2, help="evals with review files, per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="compare_history_") as scratch:
        root = Path(scratch)
        started = time.monotonic()
        eval_pairs, perf_pairs = fill(root, args.jobs, args.compared_pairs, args.seed)
        fill_s = time.monotonic() - started
        database_mib = (root / "jobs.sqlite3").stat().st_size / 2**20
        admin, team = "admin-token", "team-a-token"
        compare_calls = [("/api/v1/compare", {"baseline": b, "candidate": c}, admin)
                         for b, c in (eval_pairs + perf_pairs) * args.calls][: args.calls]
        leaderboard_calls = [("/api/v1/leaderboard", rng.choice([
            {}, {"datasets": "gsm8k,iquiz"}, {"models": ",".join(rng.sample(MODELS, 3))}]), rng.choice([admin, team]))
            for _ in range(args.calls)]
        history_calls = [(f"/api/v1/models/{rng.choice(MODELS)}/history",
                          {"limit": 50, "offset": rng.choice([0, 50, 500])}, rng.choice([admin, team]))
                         for _ in range(args.calls)]
        with TestClient(create_api(ManagerBackend(root), tokens=TOKENS)) as client:
            timed(client, compare_calls[:5] + leaderboard_calls[:5] + history_calls[:5])  # warm-up
            load_before = os.getloadavg()[0]
            figures = {"compare": timed(client, compare_calls), "leaderboard": timed(client, leaderboard_calls),
                       "history": timed(client, history_calls)}
            load_after = os.getloadavg()[0]
    report = {"jobs": args.jobs, "database_mib": round(database_mib, 1), "fill_s": round(fill_s, 1),
              "eval_pairs": len(eval_pairs), "perf_pairs": len(perf_pairs),
              "samples_per_compared_eval": SAMPLES * len(SUBSETS) * 2, "cores": os.cpu_count(),
              "load_average_1m": [round(load_before, 2), round(load_after, 2)], **figures}
    print(f"{args.jobs} jobs ({database_mib:.1f} MiB store, filled in {fill_s:.1f} s); "
          f"{len(eval_pairs)} eval pairs with review files ({SAMPLES * len(SUBSETS) * 2} samples a job), "
          f"{len(perf_pairs)} perf pairs")
    for name, numbers in figures.items():
        print(f"{name}: p50 {numbers['p50_ms']} ms, p99 {numbers['p99_ms']} ms, max {numbers['max_ms']} ms; CPU p50 "
              f"{numbers['p50_cpu_ms']} ms, p99 {numbers['p99_cpu_ms']} ms ({numbers['calls']} calls)")
    print(f"load average (1 min) {load_before:.2f} before the calls, {load_after:.2f} after, {os.cpu_count()} cores")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
