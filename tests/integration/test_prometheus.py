"""A real Prometheus scrapes Ray's metrics export port while the service runs jobs; its HTTP API must show
the job counters, the perf histograms consistent with the job's own result, and the eval score."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import httpx
import pytest

from serve_app.metrics import LATENCY_BUCKETS
from tests.conftest import SAMPLES, free_port, wait_until_healthy

pytestmark = pytest.mark.slow


def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:  # the tests run offline: installing is the README test command's first step, not theirs
        pytest.fail("prometheus is not on PATH: install it first, as README.md's test command does")
    return found


@pytest.fixture(scope="module")
def prometheus(service, tmp_path_factory):
    root = tmp_path_factory.mktemp("prometheus")
    config = root / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ray\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{service.metrics_port}']\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [_prometheus_binary(), f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_until_healthy(f"http://127.0.0.1:{port}/-/ready", 60, process)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client
    process.terminate()
    process.wait(20)


def query(prometheus, promql: str) -> float | None:
    result = prometheus.get("/api/v1/query", params={"query": promql}).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def eventually(prometheus, promql: str, check, timeout=60.0) -> float:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = query(prometheus, promql)
        if value is not None and check(value):
            return value
        time.sleep(1)
    raise AssertionError(f"{promql} = {value} after {timeout} s")


def settled(prometheus, *promqls: str) -> list[float]:
    """The values once two reads a few scrapes apart agree (series of earlier jobs have all arrived)."""
    eventually(prometheus, 'up{job="ray"}', lambda value: value == 1)  # Prometheus has scraped Ray
    previous = [query(prometheus, promql) for promql in promqls]
    while True:
        time.sleep(4)
        current = [query(prometheus, promql) for promql in promqls]
        if current == previous:
            return [value or 0.0 for value in current]
        previous = current


def test_jobs_perf_histograms_and_eval_scores_reach_prometheus(service, simulator, prometheus):
    model = f"prom-{uuid.uuid4().hex[:8]}"
    submitted = 'sum(ray_evalscope_serve_jobs_submitted_total{kind="perf"})'
    evals_succeeded = 'sum(ray_evalscope_serve_jobs_finished_total{kind="eval",status="succeeded"})'
    perf_before, evals_before = settled(prometheus, submitted, evals_succeeded)

    perf = service.post("/api/v1/perf", json={
        "model": model, "url": simulator.chat_url, "dataset_path": "perf/openqa.jsonl", "number": 120,
        "parallel": 4, "shards": 2, "max_tokens": 8,
    })
    assert perf.status_code == 200, perf.text
    result = perf.json()["results"]["parallel_4_number_120"]
    evaluation = service.post("/api/v1/eval", json={
        "model": model, "api_url": simulator.base_url, "datasets": ["iquiz"], "limit": 3,
        "dataset_args": {"iquiz": {"local_path": str(SAMPLES / "iquiz")}},
    })
    assert evaluation.status_code == 200, evaluation.text

    eventually(prometheus, submitted, lambda value: value == perf_before + 1)
    eventually(prometheus, f'sum(ray_evalscope_serve_perf_requests_total{{model="{model}",outcome="success"}})',
               lambda value: value == 120)
    eventually(prometheus, f'sum(ray_evalscope_serve_perf_output_tokens_total{{model="{model}"}})',
               lambda value: value == 120 * 8)
    eventually(prometheus, evals_succeeded, lambda value: value == evals_before + 1)

    # The histogram's median TTFT must fall in the bucket that holds the job's own median TTFT.
    job_p50_s = next(r["TTFT (ms)"] for r in result["percentiles"] if r["Percentiles"] == "50%") / 1000
    upper = next(bound for bound in LATENCY_BUCKETS if job_p50_s <= bound)
    lower = max([0.0] + [bound for bound in LATENCY_BUCKETS if bound < job_p50_s])
    estimate = query(prometheus, "histogram_quantile(0.5, sum by (le) "
                                 f'(ray_evalscope_serve_perf_ttft_seconds_bucket{{model="{model}"}}))')
    assert lower <= estimate <= upper, (estimate, job_p50_s)
    assert query(prometheus, f'sum(ray_evalscope_serve_perf_itl_seconds_count{{model="{model}"}})') > 0

    assert eventually(prometheus, f'ray_evalscope_serve_eval_score{{model="{model}",dataset="iquiz"}}',
                      lambda value: True) == 1.0
    eventually(prometheus, f'sum(ray_evalscope_serve_eval_samples_total{{model="{model}",dataset="iquiz"}})',
               lambda value: value == 6)  # 3 samples in each of iquiz's two subsets
