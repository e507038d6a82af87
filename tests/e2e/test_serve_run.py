"""The whole service, started the way the README says, against a real model (SmolLM2-135M on llama.cpp)."""

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from serve_app.metrics import METRICS, PREFIX, exported_series
from tests.conftest import SAMPLES, SimulatorProcess

pytestmark = pytest.mark.slow


def reviews(output_dir: Path, dataset: str) -> list[dict]:
    """evalscope's review of every sample of `dataset` in a run directory: the model's answer and its score."""
    paths = sorted((output_dir / "reviews").rglob(f"{dataset}*.jsonl"))
    return [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]


def test_health_answers_on_the_configured_port(served):
    body = served.get("/health").json()
    assert body["status"] == "ok" and body["service"] == "evalscope"


def test_eval_of_a_real_model_on_two_samples(served, smollm2):
    response = served.post(
        "/api/v1/eval",
        json={
            "model": "smollm2",
            "api_url": smollm2,
            "datasets": ["gsm8k"],
            "limit": 2,
            "generation_config": {"max_tokens": 96},
            "dataset_args": {"gsm8k": {"local_path": str(SAMPLES / "gsm8k"), "few_shot_num": 0}},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"]["gsm8k"]["metrics"]
    assert body["output_dir"].startswith(str(served.workdir))
    # The score is the model's own: two samples it answered, scored, and averaged into the reported score.
    scores = [review["sample_score"]["score"] for review in reviews(Path(body["output_dir"]), "gsm8k")]
    assert len(scores) == 2 and all(score["prediction"].strip() for score in scores), scores
    sample_values = [score["value"][score["main_score_name"]] for score in scores]
    assert body["scores"]["gsm8k"] == pytest.approx(sum(sample_values) / 2)


def test_small_perf_run_against_a_real_model(served, smollm2):
    response = served.post(
        "/api/v1/perf",
        json={
            "model": "smollm2",
            "url": f"{smollm2}/chat/completions",
            "dataset": "openqa",
            "dataset_path": str(SAMPLES / "perf" / "openqa.jsonl"),
            "number": 4,
            "parallel": 2,
            "max_tokens": 16,
        },
    )
    assert response.status_code == 200, response.text
    metrics = response.json()["results"]["parallel_2_number_4"]["metrics"]
    assert metrics["Total Requests"] == 4
    assert metrics["Success Requests"] == 4
    assert metrics["Avg TTFT (ms)"] > 0


def test_demo_eval_against_the_simulator_scores_the_shipped_samples(served):
    with SimulatorProcess() as simulator:
        response = served.post(
            "/api/v1/eval",
            json={
                "model": "simulator",
                "api_url": simulator.base_url,
                "datasets": ["iquiz"],
                "dataset_args": {"iquiz": {"local_path": str(SAMPLES / "iquiz")}},
                "limit": 3,
            },
        )
    assert response.status_code == 200, response.text
    assert response.json()["scores"] == {"iquiz": 1.0}


def test_every_metric_is_exported_on_a_fresh_cluster_after_its_first_event(served):
    """Gauges included: on a cluster no earlier test warmed up, one eval and one perf job must make every series
    the dashboard reads appear on the node's metrics export port."""
    with SimulatorProcess() as simulator:
        evaluated = served.post("/api/v1/eval", json={
            "model": "fresh", "api_url": simulator.base_url, "datasets": ["iquiz"], "limit": 1,
            "dataset_args": {"iquiz": {"local_path": str(SAMPLES / "iquiz")}}})
        loaded = served.post("/api/v1/perf", json={
            "model": "fresh", "url": simulator.chat_url, "dataset_path": str(SAMPLES / "perf" / "openqa.jsonl"),
            "number": 8, "parallel": 2, "max_tokens": 8})
    assert evaluated.status_code == loaded.status_code == 200, (evaluated.text, loaded.text)
    # Series with a model label must carry this test's own model: values earlier tests set do not count.
    model_series = {f"ray_{PREFIX}{name}" for name, (_, labels) in METRICS.items() if "model" in labels}

    def exported(series: str, lines: list[str]) -> bool:
        own = 'model="fresh"' if any(series.startswith(name) for name in model_series) else ""
        return any(line.startswith(f"{series}{{") and own in line for line in lines)

    deadline, missing = time.monotonic() + 60, exported_series()
    while missing and time.monotonic() < deadline:
        lines = httpx.get(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=10).text.splitlines()
        missing = {series for series in missing if not exported(series, lines)}
        time.sleep(2)
    assert not missing, f"never exported: {sorted(missing)}"


def test_random_prompts_reach_a_real_model_at_the_token_length_asked(served, smollm2, smollm_tokenizer):
    shutil.copytree(smollm_tokenizer, served.workdir / "datasets" / "tokenizers" / "smollm2")
    response = served.post("/api/v1/perf", json={
        "model": "smollm2", "url": f"{smollm2}/completions", "dataset": "random", "tokenizer_path": "tokenizers/smollm2",
        "min_prompt_length": 48, "max_prompt_length": 48, "number": 4, "parallel": 2, "max_tokens": 4,
    })
    assert response.status_code == 200, response.text
    metrics = response.json()["results"]["parallel_2_number_4"]["metrics"]
    assert metrics["Success Requests"] == 4
    # The model's own count of the prompts evalscope drew: 48 tokens, give or take what re-tokenizing decoded text
    # merges or splits.
    assert 44 <= metrics["Avg Input Tokens"] <= 52, metrics
