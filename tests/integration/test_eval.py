"""Eval through the real HTTP API on Ray Serve, against the project's simulator."""

import io
import json
import shutil
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from serve_app.simulator.process import SimulatorProcess
from tests.conftest import SAMPLES

SECRET = "sk-integration-eval-4f1c9a"


def eval_body(simulator, **fields):
    return {
        "model": "simulator",
        "api_url": simulator.chat_url,  # the full endpoint URL is accepted too
        "api_key": SECRET,
        "limit": 4,
        "generation_config": {"max_tokens": 128},
        **fields,
    }


def test_three_datasets_scored_in_one_response_and_one_directory(service, simulator):
    response = service.post(
        "/api/v1/eval",
        json=eval_body(
            simulator,
            datasets=["gsm8k", "iquiz", "ceval"],
            dataset_args={
                "gsm8k": {"local_path": str(SAMPLES / "gsm8k")},
                "iquiz": {"local_path": str(SAMPLES / "iquiz")},
                "ceval": {"local_path": str(SAMPLES / "ceval"), "subset_list": ["computer_network"]},
            },
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success" and body["message"] == "Evaluation completed"
    # The simulator answers the shipped questions correctly, so a working pipeline scores every dataset 1.0.
    assert body["scores"] == {"gsm8k": 1.0, "iquiz": 1.0, "ceval": 1.0}
    assert body["result"]["gsm8k"]["dataset_name"] == "gsm8k"
    assert {s["origin"] for s in body["dataset_sources"].values()} == {"request"}

    run_dir = Path(body["output_dir"])
    assert run_dir.parent.parent == service.root / "outputs" / "eval"
    for dataset in ("gsm8k", "iquiz", "ceval"):
        assert (run_dir / "reports" / "simulator" / f"{dataset}.json").is_file()
    assert (run_dir / "logs" / "eval_log.log").is_file()
    assert (run_dir / "configs" / "task_config.yaml").is_file()
    assert not (run_dir / "parts").exists()
    assert all(SECRET not in path.read_text(errors="ignore") for path in run_dir.rglob("*") if path.is_file())
    assert SECRET not in response.text


def test_dataset_staged_under_the_datasets_root_is_used_without_a_path(service, simulator):
    shutil.copytree(SAMPLES / "gsm8k", service.datasets_root / "gsm8k", dirs_exist_ok=True)
    response = service.post("/api/v1/eval", json=eval_body(simulator, datasets=["gsm8k"], limit=2))
    assert response.status_code == 200, response.text
    assert response.json()["dataset_sources"]["gsm8k"] == {
        "origin": "datasets_root",
        "path": str(service.datasets_root / "gsm8k"),
    }


# Written for this test: the simulator knows no answer to them, so a run scored on them scores 0.0.
UNKNOWN_GSM8K = {
    "test": [
        ("A lighthouse keeper climbs 113 steps four times a night. How many steps is that in one night?", 452),
        ("An orchard has 17 rows of 23 plum trees. How many plum trees does it have?", 391),
        ("A ferry carries 58 cars per crossing and makes 9 crossings. How many cars does it carry?", 522),
    ],
    "train": [  # gsm8k's four few-shot examples
        ("A violinist practises 25 minutes a day for 12 days. How many minutes is that?", 300),
        ("A library shelf holds 36 books. How many books fit on 14 shelves?", 504),
        ("A baker fills 27 trays with 16 rolls each. How many rolls does she bake?", 432),
        ("A cyclist rides 48 kilometres a day for 11 days. How far does she ride?", 528),
    ],
}


def jsonl_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prompts_of_predictions(output_dir: Path) -> str:
    """Every user message the run sent the model, as one text."""
    predictions = [record for path in (output_dir / "predictions").rglob("*.jsonl") for record in jsonl_records(path)]
    return "\n".join(m["content"] for record in predictions for m in record["messages"] if m["role"] == "user")


def stage_gsm8k_with_unknown_questions(directory: Path) -> Path:
    """A gsm8k directory in the shipped samples' layout (same README configs), with other questions."""
    shutil.copytree(SAMPLES / "gsm8k", directory)
    for split, records in UNKNOWN_GSM8K.items():
        lines = [json.dumps({"question": q, "answer": f"It is {a}.\n#### {a}"}) for q, a in records]
        (directory / "main" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def test_directories_with_one_name_are_each_scored_on_their_own_questions(service, simulator):
    # Two teams' staged copies of gsm8k: Hugging Face's cache key for a local directory ignores its path and
    # its contents, so a shared cache would score the later run on the earlier one's questions.
    teams = service.datasets_root / f"same-name-{uuid.uuid4().hex[:8]}"
    shipped = shutil.copytree(SAMPLES / "gsm8k", teams / "team-a" / "gsm8k")
    unknown = stage_gsm8k_with_unknown_questions(teams / "team-b" / "gsm8k")
    limit = len(UNKNOWN_GSM8K["test"])
    questions = {
        directory: [record["question"] for record in jsonl_records(directory / "main" / "test.jsonl")[:limit]]
        for directory in (shipped, unknown)
    }

    for directory, other, score in [(shipped, unknown, 1.0), (unknown, shipped, 0.0), (shipped, unknown, 1.0)]:
        request = eval_body(
            simulator, datasets=["gsm8k"], limit=limit, dataset_args={"gsm8k": {"local_path": str(directory)}}
        )
        response = service.post("/api/v1/eval", json=request)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["dataset_sources"]["gsm8k"]["path"] == str(directory)
        prompts = prompts_of_predictions(Path(result["output_dir"]))
        assert all(q in prompts for q in questions[directory]), f"not scored on {directory}'s questions"
        assert not any(q in prompts for q in questions[other]), f"scored on {other}'s questions"
        assert result["scores"] == {"gsm8k": score}


def test_dataset_neither_staged_nor_reachable_fails_in_seconds(service, simulator):
    started = time.monotonic()
    response = service.post("/api/v1/eval", json=eval_body(simulator, datasets=["arc"]))
    if response.status_code == 200:
        pytest.skip("this machine reaches the dataset hub")
    assert response.status_code == 400
    assert "arc" in response.json()["message"] and "stage" in response.json()["message"]
    assert time.monotonic() - started < 10


def test_unknown_dataset_is_a_400(service, simulator):
    response = service.post("/api/v1/eval", json=eval_body(simulator, datasets=["gsm8k", "no_such_bench"]))
    assert response.status_code == 400
    assert "no_such_bench" in response.json()["message"]


def test_a_dead_model_endpoint_fails_the_eval_in_seconds_with_the_reason(service):
    started = time.monotonic()
    response = service.post(
        "/api/v1/eval",
        json={
            "model": "m",
            "api_url": "http://127.0.0.1:9/v1",
            "datasets": ["gsm8k"],
            "limit": 1,
            "dataset_args": {"gsm8k": {"local_path": str(SAMPLES / "gsm8k")}},
        },
    )
    assert response.status_code == 500
    assert response.json()["message"] == "cannot reach the model endpoint: 127.0.0.1:9: Connection refused"
    # Not evalscope's default of 5 attempts 10 s apart for every sample.
    assert time.monotonic() - started < 10


def test_jobs_given_one_work_dir_each_write_only_to_a_directory_of_their_own(service, simulator):
    work_dir = f"shared-{uuid.uuid4().hex[:8]}"
    body = eval_body(simulator, datasets=["iquiz"], limit=1, work_dir=work_dir,
                     dataset_args={"iquiz": {"local_path": str(SAMPLES / "iquiz")}})
    jobs = [service.post("/api/v1/eval?wait=false", json=body).json() for _ in range(2)]
    ended = [_wait(service, job["job_id"]) for job in jobs]
    assert [job["status"] for job in ended] == ["succeeded", "succeeded"], ended
    dirs = [Path(job["output_dir"]) for job in ended]
    assert dirs[0] != dirs[1]
    assert all(d.parent.parent == service.root / "outputs" / work_dir for d in dirs)
    for job, own, other in ((ended[0], dirs[0], dirs[1]), (ended[1], dirs[1], dirs[0])):
        assert (own / "reports" / "simulator" / "iquiz.json").is_file()  # the combine step kept each one's parts
        names = _artifact_names(service, job["job_id"])
        assert "job.log" in names and not any(other.parent.name in name for name in names)
    # Naming a kind's directory is fine too: the artifacts still hold only this job's files.
    response = service.post("/api/v1/eval", json={**body, "work_dir": "eval"})
    assert response.status_code == 200, response.text
    job_id = service.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"][0]["job_id"]
    assert all(not name.startswith(("eval/", "perf/")) for name in _artifact_names(service, job_id))
    # Inside another job's directory: refused.
    inside = service.post("/api/v1/eval", json={**body, "work_dir": str(dirs[0] / "mine")})
    assert inside.status_code == 400 and "another job" in inside.json()["message"]


def test_an_overlong_model_name_is_a_400_naming_the_limit(service, simulator):
    response = service.post("/api/v1/eval", json=eval_body(simulator, model="m" * 300, datasets=["iquiz"]))
    assert response.status_code == 400
    assert "model: String should have at most 128 characters" in response.json()["message"]


def _wait(service, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while (job := service.get(f"/api/v1/jobs/{job_id}").json())["status"] not in {"succeeded", "failed", "cancelled"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    return job


def _artifact_names(service, job_id):
    archive = service.get(f"/api/v1/jobs/{job_id}/artifacts")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        return zipped.namelist()


def test_one_failed_dataset_fails_the_job_but_keeps_the_scores_of_the_others(service, simulator):
    broken = service.datasets_root / f"broken-{uuid.uuid4().hex[:8]}" / "iquiz"
    shutil.copytree(SAMPLES / "iquiz", broken)
    (broken / "IQ" / "test.jsonl").write_text("this is not json\n")
    body = eval_body(simulator, datasets=["gsm8k", "iquiz"], limit=2, dataset_args={
        "gsm8k": {"local_path": str(SAMPLES / "gsm8k")}, "iquiz": {"local_path": str(broken)}})
    response = service.post("/api/v1/eval?wait=false", json=body)
    job = _wait(service, response.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error"].startswith("evaluation failed (iquiz: ") and job["error"].endswith("scored: gsm8k 1.0")
    assert job["result"]["status"] == "partial" and job["result"]["scores"] == {"gsm8k": 1.0}
    assert list(job["result"]["failures"]) == ["iquiz"]
    # A synchronous caller learns both too.
    synchronous = service.post("/api/v1/eval", json=body)
    assert synchronous.status_code == 500 and "scored: gsm8k 1.0" in synchronous.json()["message"]


def test_a_limit_of_one_point_zero_scores_every_sample(service, simulator):
    content = '{"model": "simulator", "api_url": "%s", "datasets": ["iquiz"], "limit": 1.0, "dataset_args": ' \
              '{"iquiz": {"local_path": "%s", "subset_list": ["IQ"]}}}' % (simulator.base_url, SAMPLES / "iquiz")
    response = service.post("/api/v1/eval", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    samples = sum(1 for line in (SAMPLES / "iquiz" / "IQ" / "test.jsonl").read_text().splitlines() if line.strip())
    assert response.json()["result"]["iquiz"]["metrics"][0]["num"] == samples > 1


def test_evalscope_generation_settings_and_repeats_reach_the_endpoint(service, simulator):
    """A Qwen3-style run with thinking turned off: extra_body, seed and a penalty are sent with every request."""
    before = simulator.stats()["body_fields"]
    response = service.post("/api/v1/eval", json=eval_body(
        simulator, datasets=["gsm8k"], limit=2, repeats=2,
        dataset_args={"gsm8k": {"local_path": str(SAMPLES / "gsm8k")}},
        generation_config={"max_tokens": 128, "seed": 7, "presence_penalty": 0.5,
                           "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}))
    assert response.status_code == 200, response.text
    assert response.json()["scores"] == {"gsm8k": 1.0}
    sent = {field: count - before.get(field, 0) for field, count in simulator.stats()["body_fields"].items()}
    # Two samples asked twice each; extra_body's fields travel at the top level of the body, as the OpenAI SDK sends.
    assert sent["messages"] == 4
    assert sent["chat_template_kwargs"] == sent["seed"] == sent["presence_penalty"] == 4


def test_a_completions_endpoint_is_evaluated_with_one_prompt_per_sample(service, simulator):
    before = simulator.stats()
    response = service.post("/api/v1/eval", json=eval_body(
        simulator, api_url=simulator.base_url + "/completions", eval_type="openai_completions", datasets=["gsm8k"],
        limit=3, eval_batch_size=2, dataset_args={"gsm8k": {"local_path": str(SAMPLES / "gsm8k")}}))
    assert response.status_code == 200, response.text
    assert response.json()["scores"] == {"gsm8k": 1.0}
    after = simulator.stats()
    assert after["body_fields"]["prompt"] - before["body_fields"].get("prompt", 0) == 3
    assert after["chat_lengths"] == before["chat_lengths"]  # not one chat request


def test_an_llm_judge_scores_the_samples_with_its_own_key_and_settings(service, simulator):
    """The model (the simulator) answers both questions right, so the rules would score 1.0; a judge that grades
    every answer incorrect scores 0.0: the score is the judge's. It is asked once per sample, with its key."""
    with SimulatorProcess(judge="harsh") as judge:
        response = service.post("/api/v1/eval", json=eval_body(
            simulator, model="judged", datasets=["gsm8k"], limit=2,
            dataset_args={"gsm8k": {"local_path": str(SAMPLES / "gsm8k")}}, judge={"strategy": "llm", "models": [{"model_id": "harsh-judge", "api_url": judge.base_url,
                                                  "api_key": "sk-judge-4f1c9a", "generation_config": {"seed": 3}}]}))
        assert response.status_code == 200, response.text
        assert response.json()["scores"] == {"gsm8k": 0.0}
        stats = judge.stats()
    assert stats["requests_total"] == 2
    assert stats["headers"]["authorization"] == 2 and stats["body_fields"]["seed"] == 2
    (job,) = service.get("/api/v1/jobs", params={"model": "judged", "limit": 1}).json()["jobs"]
    assert job["request"]["judge"]["models"][0]["api_key"] == "**********"


@pytest.mark.parametrize("generation_config, message", [
    ({"seed": "seven"}, "generation_config.seed: 'seven' is not of type 'integer'"),
    ({"temprature": 0.5}, "generation_config.temprature is not an evalscope generation setting"),
    ({"extra_headers": {"Authorization": "Bearer x"}}, "generation_config.extra_headers is not taken here"),
])
def test_a_generation_setting_evalscope_would_not_take_is_a_400_naming_it(service, simulator, generation_config,
                                                                          message):
    response = service.post("/api/v1/eval", json=eval_body(simulator, datasets=["gsm8k"],
                                                           generation_config=generation_config))
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]


def _wait_for(service, job_id, done: int, timeout_s: float = 120) -> dict:
    """The job once it has `done` samples, or once it ended."""
    deadline = time.monotonic() + timeout_s
    while (job := service.get(f"/api/v1/jobs/{job_id}").json())["progress"].get("done", 0) < done:
        if job["status"] in {"succeeded", "failed", "cancelled", "interrupted"}:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def test_a_cancelled_eval_resumes_asking_only_the_samples_it_lacked(service):
    from tests.conftest import SimulatorProcess

    key = "sk-resume-7d2c"
    with SimulatorProcess(ttft_ms=400) as target:  # 0.4 s a sample, one at a time: cancelled part way
        body = {"model": "simulator", "api_url": target.base_url, "api_key": key, "datasets": ["gsm8k"],
                "limit": 8, "generation_config": {"max_tokens": 64},
                "dataset_args": {"gsm8k": {"local_path": str(SAMPLES / "gsm8k")}}}
        job_id = service.post("/api/v1/eval?wait=false", json=body).json()["job_id"]
        assert _wait_for(service, job_id, done=3)["status"] == "running"
        assert service.post(f"/api/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
        time.sleep(0.5)
        asked_before = target.requests_received()

        resumed = service.post(f"/api/v1/jobs/{job_id}/resume", json={"api_key": key})
        assert resumed.status_code == 200, resumed.text
        result = resumed.json()
        reused = result["reused_predictions"]["gsm8k"]
        assert 3 <= reused < 8 and result["resumed_from"] == job_id
        assert result["scores"] == {"gsm8k": 1.0}  # every sample scored, the reused ones too
        assert target.requests_received() - asked_before == 8 - reused
        predictions = list(Path(result["output_dir"]).glob("predictions/*/gsm8k_main.jsonl"))
        assert len(predictions[0].read_text().splitlines()) == 8
        assert key not in resumed.text
    # A retried resume (the Serve proxy retries) is the same job, and a job that ended well has nothing to resume.
    again = service.post(f"/api/v1/jobs/{job_id}/resume?wait=false", json={"api_key": key}).json()
    resumed_job = service.get("/api/v1/jobs", params={"model": "simulator", "limit": 50}).json()["jobs"]
    assert again["job_id"] in {job["job_id"] for job in resumed_job} and again["status"] == "succeeded"
    refused = service.post(f"/api/v1/jobs/{again['job_id']}/resume", json={"api_key": key})
    assert refused.status_code == 409
    assert refused.json()["message"] == (f"job {again['job_id']} is succeeded; only a job that failed, cancelled or "
                                         "interrupted resumes")
